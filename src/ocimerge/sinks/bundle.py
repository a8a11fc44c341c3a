"""The bundle's resumable staging layout ([BUNDLE-5], [BUNDLE-6]).

[BUNDLE-5] A bundle is written into a private staging directory ``<output>.partial`` beside
the output: each blob is streamed to a temporary name, verified on the way (the blob's
verifying reader), and only then renamed to ``blobs/sha256/<hex>``. So every file under
``blobs/`` is whole and verified, and a run that stops (Ctrl-C, a network failure, a kill)
leaves them for the next run, which re-hashes each one it finds (local, cheap) and keeps it
when it matches, or deletes it and fetches it again.
[BUNDLE-6] Only at the end are ``oci-layout`` and ``index.json`` written, and the staging
directory becomes the output atomically: renamed (a directory), or written as an archive to a
temporary file that is renamed ([SINK-1]), after which the staging directory is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
from collections.abc import Iterable
from typing import BinaryIO

import attrs

from ocimerge.content import CHUNK_SIZE, Blob
from ocimerge.errors import OutputError
from ocimerge.model import mediatype as mt
from ocimerge.model.annotations import CONTAINERD_NAME, REF_NAME
from ocimerge.model.codec import encode_json
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.sinks._copy import copy_verified
from ocimerge.sinks.oci_layout import LAYOUT_HEADER, claim_destination, move_into_place, write_archive

__all__ = ["KEPT", "MARKER", "WRITTEN", "BundleEntry", "StagingLayout", "bundle_index_json", "staging_path"]

#: What :meth:`StagingLayout.add` did with a blob.
WRITTEN = "written"
KEPT = "kept"
#: [BUNDLE-5] The file that marks a directory as ocimerge's staging of a bundle.
MARKER = ".ocimerge-bundle"
_TEMP = ".tmp"
#: What a staging directory may hold; anything else there means it is not ours to reuse.
_STAGING_NAMES = frozenset({MARKER, _TEMP, "blobs", "oci-layout", "index.json"})


def staging_path(output: str) -> str:
    """[BUNDLE-5] Where the bundle for ``output`` is staged: ``<output>.partial`` beside it."""
    return os.path.abspath(output) + ".partial"


@attrs.frozen
class BundleEntry:
    """[BUNDLE-2] One ``index.json`` entry: a root descriptor and its name (a full reference
    for an image, written as both ``ref.name`` and containerd's name; a cosign tag, or none,
    for a referrer)."""

    descriptor: Descriptor
    name: str | None = None
    image: bool = True


def bundle_index_json(entries: Iterable[BundleEntry]) -> bytes:
    """[BUNDLE-2] The bundle's ``index.json``: each image named by its full reference under
    ``org.opencontainers.image.ref.name`` and ``io.containerd.image.name``; referrers as the
    layout sink lists them ([CARRY-6]). Canonical bytes ([JSON-2])."""
    manifests = []
    for entry in entries:
        d = entry.descriptor
        plain = Descriptor(d.media_type, d.digest, d.size, artifact_type=d.artifact_type)
        if entry.name and entry.image:
            plain = plain.with_annotations({REF_NAME: entry.name, CONTAINERD_NAME: entry.name})
        elif entry.name:
            plain = plain.with_annotations({REF_NAME: entry.name})
        manifests.append(plain.to_json())
    return encode_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests})


class StagingLayout:
    """[BUNDLE-5] The staging directory of one bundle: blobs in, verified, kept across runs.

    Opening it creates ``<output>.partial`` (0700) or adopts the one an earlier run left (a
    directory holding the marker, or only layout files); anything else there is an
    :class:`OutputError` naming it. Temporaries a killed run left are removed.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.resumed = False
        self._adopt()
        self._lock = self._hold()
        self._blobs = os.path.join(self.path, "blobs", "sha256")
        self._temp = os.path.join(self.path, _TEMP)
        os.makedirs(self._blobs, exist_ok=True)
        shutil.rmtree(self._temp, ignore_errors=True)  # a killed run's half-written blobs
        os.makedirs(self._temp, mode=0o700)
        self._added: dict[Digest, Blob] = {}

    def _adopt(self) -> None:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            os.mkdir(self.path, 0o700)
            self._mark()
            return
        if not stat.S_ISDIR(info.st_mode):
            raise OutputError(f"{self.path}: exists and is not a bundle's staging directory; remove it")
        names = set(os.listdir(self.path))
        if not names.issubset(_STAGING_NAMES) or (names and info.st_uid != os.getuid()):
            raise OutputError(f"{self.path}: exists and is not a bundle's staging directory; remove it")
        os.chmod(self.path, 0o700)  # [SEC-6] private while it is being written
        self.resumed = bool(names - {MARKER, _TEMP})
        self._mark()

    def _mark(self) -> None:
        with open(os.path.join(self.path, MARKER), "ab"):
            pass

    def _hold(self) -> int:
        """[BUNDLE-5] One run at a time per staging directory: a lock on the marker file."""
        fd = os.open(os.path.join(self.path, MARKER), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OutputError(f"{self.path}: another bundle run is writing here; wait for it to end") from None
        return fd

    def close(self) -> None:
        """Release the staging directory (what is staged stays for the next run)."""
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def __enter__(self) -> StagingLayout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _name(self, digest: Digest) -> str:
        if digest.algorithm != "sha256":
            raise OutputError(f"{digest}: only sha256 blobs can be bundled")
        return os.path.join(self._blobs, digest.encoded)

    def has(self, blob: Blob) -> bool:
        """Whether the staging holds ``blob`` whole: a file found there is re-hashed, and
        deleted when it is not the blob (a wrong size or digest), so it is fetched again."""
        if blob.digest in self._added:
            return True
        path = self._name(blob.digest)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISREG(info.st_mode) and info.st_size == blob.descriptor.size and _hashes_to(path, blob.digest):
            return True
        os.unlink(path)
        return False

    def add(self, blob: Blob) -> str:
        """[BUNDLE-5] Stage ``blob``: :data:`KEPT` when it is there already (verified), else
        :data:`WRITTEN`, streamed to a temporary, verified, renamed into ``blobs/``."""
        if self.has(blob):
            self._added.setdefault(blob.digest, self._staged(blob.descriptor))
            return KEPT
        final = self._name(blob.digest)
        temp = os.path.join(self._temp, blob.digest.encoded)
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            with os.fdopen(fd, "wb") as out:
                copy_verified(blob, out.write)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        self._added[blob.digest] = self._staged(blob.descriptor)
        return WRITTEN

    def _staged(self, descriptor: Descriptor) -> Blob:
        path = self._name(descriptor.digest)

        def opener() -> BinaryIO:
            return open(path, "rb")

        return Blob(descriptor, opener, f"{self.path}: blobs/sha256/{descriptor.digest.encoded}")

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Every blob staged in this run, in the order added (each digest once)."""
        return tuple(self._added.values())

    def finish(self, entries: Iterable[BundleEntry], output: str, *, archive: bool, force: bool = False) -> None:
        """[BUNDLE-6] Write ``index.json`` and ``oci-layout`` and turn the staging into ``output``.

        A directory is renamed into place; an archive is written from the staged blobs (read
        and verified again, locally) to a temporary that is renamed, then the staging is
        removed. On failure the staging stays for the next run.
        """
        index = bundle_index_json(entries)
        if archive:
            write_archive(output, self.blobs, index, force=force)
            shutil.rmtree(self.path, ignore_errors=True)
            return
        claim_destination(output, force=force)
        with open(os.path.join(self.path, "oci-layout"), "wb") as f:
            f.write(LAYOUT_HEADER)
        # [SINK-3] index.json last: a reader that sees it sees every blob it names
        with open(os.path.join(self.path, "index.json"), "wb") as f:
            f.write(index)
        # a blob not of this bundle (left by an earlier run of another lock) does not go out
        wanted = {d.encoded for d in self._added}
        for name in os.listdir(self._blobs):
            if name not in wanted:
                os.unlink(os.path.join(self._blobs, name))
        shutil.rmtree(self._temp, ignore_errors=True)
        os.unlink(os.path.join(self.path, MARKER))
        os.chmod(self.path, 0o777 & ~_umask())  # [SEC-6] the mode `mkdir` would have given it
        move_into_place(self.path, output)


def _hashes_to(path: str, digest: Digest) -> bool:
    hasher = digest.hasher()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)
    return digest.matches(hasher)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
