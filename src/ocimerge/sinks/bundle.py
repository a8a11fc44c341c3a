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
import errno
import fcntl
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from functools import partial
from typing import BinaryIO, TypeVar

import attrs

from ocimerge.content import CHUNK_SIZE, Blob
from ocimerge.errors import OutputError
from ocimerge.events import BlobAction, EventCallback, copy_reported
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
_STAGING_DIRECTORIES = frozenset({_TEMP, "blobs"})


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

    Opening it takes the run's lock (``flock`` on ``<path>.lock`` beside it, a file that is
    never moved, removed when the run lets go), then creates ``<path>`` (0700) or adopts the
    one an earlier run left: a real directory (no symlink), owned by this user, writable by no
    one else, holding only a staging layout's names (the marker, ``.tmp``, ``blobs/sha256``,
    ``oci-layout``, ``index.json``), each a real directory or a regular file as it should be.
    Anything else is an :class:`OutputError` naming it, and nothing there is touched. Every
    file operation after that is relative to the directories opened then, never following a
    symlink. Temporaries a killed run left are removed.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.resumed = False
        self._lock_path = self.path + ".lock"
        self._lock = -1
        self._dir = -1
        self._blobs = -1
        self._temp = -1
        self._added: dict[Digest, Blob] = {}
        try:
            self._lock = _hold(self._lock_path, self.path)
            self._dir = self._adopt()
            blobs = _subdirectory(self.path, "blobs", self._dir)
            try:
                names = set(_attempt(f"{self.path}/blobs", "list", lambda: os.listdir(blobs)))
                if not names.issubset({"sha256"}):
                    raise OutputError(f"{self.path}/blobs: holds more than sha256/; remove {self.path}")
                self._blobs = _subdirectory(f"{self.path}/blobs", "sha256", blobs, root=self.path)
            finally:
                os.close(blobs)
            temp = f"{self.path}/{_TEMP}"
            # a killed run's half-written blobs (rmtree with dir_fd never follows a symlink)
            _attempt(temp, "clear", lambda: _clear(_TEMP, self._dir))
            self._temp = _subdirectory(self.path, _TEMP, self._dir)
        except BaseException:
            self.close()
            raise

    def _adopt(self) -> int:
        """Create or adopt the staging directory; its descriptor, opened without following a link."""
        try:
            os.mkdir(self.path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot create the staging directory ({_reason(exc)})") from None
        fd = _open_directory(self.path, self.path, None, root=self.path)
        try:
            _check_owned(self.path, os.fstat(fd), self.path)
            names = set(_attempt(self.path, "list", lambda: os.listdir(fd)))
            if not names.issubset(_STAGING_NAMES):
                raise OutputError(f"{self.path}: exists and is not a bundle's staging directory; remove it")
            for name in names:
                info = _attempt(f"{self.path}/{name}", "read", partial(os.stat, name, dir_fd=fd, follow_symlinks=False))
                wanted = stat.S_ISDIR if name in _STAGING_DIRECTORIES else stat.S_ISREG
                if not wanted(info.st_mode):
                    kind = "a directory" if name in _STAGING_DIRECTORIES else "a regular file"
                    raise OutputError(f"{self.path}/{name}: is not {kind} (a symlink?); remove {self.path}")
                _check_owned(f"{self.path}/{name}", info, self.path)
            self.resumed = bool(names - {MARKER, _TEMP})
            _attempt(self.path, "make private", lambda: os.fchmod(fd, 0o700))  # [SEC-6]
            _write_at(fd, MARKER, b"", f"{self.path}/{MARKER}")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def close(self) -> None:
        """Release the staging directory (what is staged stays for the next run) and its lock."""
        for name in ("_temp", "_blobs", "_dir"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)
        if self._lock >= 0:
            # unlinked while still held: a run waiting on it finds it gone and takes a new one
            with contextlib.suppress(OSError):
                os.unlink(self._lock_path)
            os.close(self._lock)
            self._lock = -1

    def __enter__(self) -> StagingLayout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _name(self, digest: Digest) -> str:
        if digest.algorithm != "sha256":
            raise OutputError(f"{digest}: only sha256 blobs can be bundled")
        return digest.encoded

    def _where(self, name: str) -> str:
        return f"{self.path}/blobs/sha256/{name}"

    def has(self, blob: Blob) -> bool:
        """Whether the staging holds ``blob`` whole: a file found there is re-hashed, and
        deleted when it is not the blob (a wrong size or digest, or no regular file), so it
        is fetched again."""
        if blob.digest in self._added:
            return True
        name = self._name(blob.digest)
        where = self._where(name)
        try:
            info = os.stat(name, dir_fd=self._blobs, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise OutputError(f"{where}: cannot read ({_reason(exc)})") from None
        if stat.S_ISDIR(info.st_mode):
            raise OutputError(f"{where}: is a directory, not a blob; remove {self.path}")
        whole = stat.S_ISREG(info.st_mode) and info.st_size == blob.descriptor.size
        if whole and _attempt(where, "read", lambda: _hashes_to(self._blobs, name, blob.digest)):
            return True
        _attempt(where, "remove", lambda: os.unlink(name, dir_fd=self._blobs))  # a link itself, never its target
        return False

    def add(self, blob: Blob, on_event: EventCallback | None = None) -> str:
        """[BUNDLE-5] Stage ``blob``: :data:`KEPT` when it is there already (verified), else
        :data:`WRITTEN`, streamed to a temporary, verified, renamed into ``blobs/``.
        ``OutputError`` naming the file when the disk refuses (full, no permission).
        ``on_event`` is told of the fetch as it goes (``FETCH``, [PROGRESS-2]); not of a kept blob."""
        if self.has(blob):
            self._added.setdefault(blob.digest, self._staged(blob.descriptor))
            return KEPT
        name = self._name(blob.digest)
        where = f"{self.path}/{_TEMP}/{name}"
        fd = _attempt(where, "create", lambda: os.open(name, _WRITE | os.O_EXCL | os.O_TRUNC, 0o666, dir_fd=self._temp))
        try:
            with os.fdopen(fd, "wb") as out:

                def write(data: bytes | bytearray | memoryview) -> object:
                    return _attempt(where, "write", lambda: out.write(data))

                copy_reported(copy_verified, blob, write, on_event, BlobAction.FETCH)
                _attempt(where, "write", out.flush)
                _attempt(where, "write", lambda: os.fsync(out.fileno()))
            _attempt(
                self._where(name),
                "write",
                lambda: os.replace(name, name, src_dir_fd=self._temp, dst_dir_fd=self._blobs),
            )
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=self._temp)
            raise
        self._added[blob.digest] = self._staged(blob.descriptor)
        return WRITTEN

    def _staged(self, descriptor: Descriptor) -> Blob:
        name = self._name(descriptor.digest)
        blobs = self._blobs

        def opener() -> BinaryIO:
            return os.fdopen(os.open(name, _READ, dir_fd=blobs), "rb")

        return Blob(descriptor, opener, self._where(name))

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Every blob staged in this run, in the order added (each digest once)."""
        return tuple(self._added.values())

    def finish(
        self,
        entries: Iterable[BundleEntry],
        output: str,
        *,
        archive: bool,
        force: bool = False,
        on_event: EventCallback | None = None,
    ) -> None:
        """[BUNDLE-6] Write ``index.json`` and ``oci-layout`` and turn the staging into ``output``.

        A directory is renamed into place; an archive is written from the staged blobs (read
        and verified again, locally) to a temporary that is renamed, then the staging is
        removed. On failure the staging stays for the next run. The run's lock is held until
        the staging is gone, so no other run can adopt it meanwhile. ``on_event`` is told of
        each blob the archive is written from ([PROGRESS-2]); a directory copies nothing.
        """
        index = bundle_index_json(entries)
        if archive:
            write_archive(output, self.blobs, index, force=force, on_event=on_event)
            shutil.rmtree(self.path, ignore_errors=True)
            return
        claim_destination(output, force=force)
        _write_at(self._dir, "oci-layout", LAYOUT_HEADER, f"{self.path}/oci-layout")
        # [SINK-3] index.json last: a reader that sees it sees every blob it names
        _write_at(self._dir, "index.json", index, f"{self.path}/index.json")
        # a blob not of this bundle (left by an earlier run of another lock) does not go out;
        # unlink removes a symlink itself, never what it points to
        wanted = {d.encoded for d in self._added}
        for name in _attempt(f"{self.path}/blobs/sha256", "list", lambda: os.listdir(self._blobs)):
            if name not in wanted:
                self._drop(name)
        _attempt(f"{self.path}/{_TEMP}", "clear", lambda: _clear(_TEMP, self._dir))
        _attempt(f"{self.path}/{MARKER}", "remove", lambda: os.unlink(MARKER, dir_fd=self._dir))
        mode = 0o777 & ~_umask()  # [SEC-6] the mode `mkdir` would have given it
        _attempt(self.path, "set the mode of", lambda: os.fchmod(self._dir, mode))
        if not _same(self.path, os.fstat(self._dir)):
            raise OutputError(f"{self.path}: was replaced while the bundle was written; run again")
        move_into_place(self.path, output)

    def _drop(self, name: str) -> None:
        where = self._where(name)
        info = _attempt(where, "read", lambda: os.stat(name, dir_fd=self._blobs, follow_symlinks=False))
        if stat.S_ISDIR(info.st_mode):
            raise OutputError(f"{where}: is a directory, not a blob; remove it")
        _attempt(where, "remove", lambda: os.unlink(name, dir_fd=self._blobs))


_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_T = TypeVar("_T")


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _attempt(where: str, what: str, action: Callable[[], _T]) -> _T:
    """``action()``, its ``OSError`` (disk full, no permission, a planted file) an
    ``OutputError`` naming ``where`` ([BUNDLE-5])."""
    try:
        return action()
    except OSError as exc:
        raise OutputError(f"{where}: cannot {what} ({_reason(exc)})") from None


def _hold(lock_path: str, staging: str) -> int:
    """[BUNDLE-5] One run at a time per staging directory: ``flock`` on ``<staging>.lock``.

    The lock file is never moved with the staging; a run that ends unlinks it while it
    still holds it, so a lock taken on a file no longer at that name is tried again."""
    for _ in range(5):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise OutputError(f"{lock_path}: cannot open the staging lock ({_reason(exc)}); remove it") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                raise OutputError(f"{lock_path}: is not this user's staging lock; remove it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise OutputError(f"{staging}: another bundle run is writing here; wait for it to end") from None
        except BaseException:
            os.close(fd)
            raise
        if _same(lock_path, info):
            return fd
        os.close(fd)  # the run before us let go and removed it: take the new one
    raise OutputError(f"{staging}: other bundle runs keep taking the staging lock {lock_path}; run again")


def _same(path: str, info: os.stat_result) -> bool:
    try:
        now = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)


def _check_owned(where: str, info: os.stat_result, staging: str) -> None:
    """[SEC-6] Adopted only when this user owns it and no one else may write to it."""
    if info.st_uid != os.getuid():
        raise OutputError(f"{where}: belongs to another user (uid {info.st_uid}), not adopted; remove {staging}")
    if stat.S_ISDIR(info.st_mode) and info.st_mode & 0o022:
        mode = oct(info.st_mode & 0o777)
        raise OutputError(f"{where}: others may write to it (mode {mode}), not adopted; remove {staging}")


def _open_directory(where: str, name: str, dir_fd: int | None, *, root: str) -> int:
    """``name`` (under ``dir_fd``) opened as a directory, never through a symlink."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            if where == root:
                raise OutputError(f"{where}: exists and is not a bundle's staging directory; remove it") from None
            raise OutputError(f"{where}: is not a directory (a symlink?); remove {root}") from None
        raise OutputError(f"{where}: cannot open ({_reason(exc)})") from None


def _subdirectory(parent: str, name: str, dir_fd: int, *, root: str | None = None) -> int:
    """``parent/name`` created (0700) or found, a real directory this user owns; its descriptor."""
    root = root or parent
    where = f"{parent}/{name}"
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise OutputError(f"{where}: cannot create ({_reason(exc)})") from None
    fd = _open_directory(where, name, dir_fd, root=root)
    try:
        _check_owned(where, os.fstat(fd), root)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _clear(name: str, dir_fd: int) -> None:
    """Remove the tree ``name`` under ``dir_fd`` if it is there (rmtree with a ``dir_fd``
    works through descriptors and never follows a symlink)."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(name, dir_fd=dir_fd)


def _write_at(dir_fd: int, name: str, data: bytes, where: str) -> None:
    """``name`` under ``dir_fd`` written with ``data`` (a symlink there is refused, not followed)."""
    fd = _attempt(where, "write", lambda: os.open(name, _WRITE | os.O_TRUNC, 0o666, dir_fd=dir_fd))
    with os.fdopen(fd, "wb") as f:
        _attempt(where, "write", lambda: f.write(data))


def _hashes_to(dir_fd: int, name: str, digest: Digest) -> bool:
    hasher = digest.hasher()
    with os.fdopen(os.open(name, _READ, dir_fd=dir_fd), "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            hasher.update(chunk)
    return digest.matches(hasher)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
