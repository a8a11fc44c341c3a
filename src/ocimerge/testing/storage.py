"""The registry's state: blobs, repositories' links, manifests, tags and uploads ([TESTREG-2]).

Laid out like Distribution's filesystem driver, on a :mod:`~ocimerge.testing.backends`
backend: a blob's bytes once under ``blobs/<alg>/<hex>``; a repository holds a blob when it
has a link ``repositories/<name>/_layers/<alg>/<hex>`` (so a blob pushed to one repository is
unknown to another until mounted), a manifest when it has a revision link (whose value is
the manifest's media type), a tag as a file holding a digest, and a referrer link per
manifest with a ``subject``. Upload sessions live in memory (their bytes in the backend),
so a restart keeps blobs, manifests and tags but forgets unfinished uploads.

Thread-safe: one lock orders the metadata changes; the bytes of a session are written by
one request at a time (its own lock).

>>> from ocimerge.model.digest import Digest
>>> storage = Storage.memory()
>>> upload = storage.start_upload("team/app")
>>> storage.receive(upload, [b"some ", b"bytes"])
10
>>> storage.commit(upload, Digest.of(b"some bytes"))
>>> storage.blob_size("team/app", Digest.of(b"some bytes")), storage.blob_size("other", Digest.of(b"some bytes"))
(10, None)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import attrs

from ocimerge.model.digest import Digest
from ocimerge.testing.backends import Backend, DirectoryBackend, MemoryBackend
from ocimerge.testing.exchange import PIECE

__all__ = ["Storage", "Stored", "Upload", "UploadDigestError"]


class UploadDigestError(Exception):
    """The bytes of an upload do not hash to the digest its closing PUT named."""


@attrs.define(eq=False)
class Upload:
    """One upload session: where its bytes go, how many came, and their running sha256."""

    uuid: str
    repository: str
    secret: str  # keys the ``_state`` its Location carries
    size: int = 0
    hasher: hashlib._Hash = attrs.field(factory=hashlib.sha256)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    @property
    def key(self) -> str:
        return f"uploads/{self.uuid}"

    @property
    def state(self) -> str:
        """The opaque ``_state`` of the session's latest Location: it changes with every byte
        stored, as Distribution's (an HMAC of the offset) does."""
        mac = hmac.new(self.secret.encode(), f"{self.uuid}:{self.size}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:16]).decode().rstrip("=")


@attrs.frozen
class Stored:
    """A manifest as stored: its exact bytes, the media type it was put with, its digest."""

    raw: bytes
    media_type: str
    digest: Digest


def _path(digest: Digest) -> str:
    return f"{digest.algorithm}/{digest.encoded}"


class Storage:
    """Blobs, manifests, tags and uploads on a backend; see the module docstring for the layout."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._lock = threading.RLock()
        self._uploads: dict[str, Upload] = {}

    @classmethod
    def memory(cls) -> Storage:
        """Storage that lives as long as the object."""
        return cls(MemoryBackend())

    @classmethod
    def directory(cls, root: str | Path) -> Storage:
        """Storage under ``root`` (created if needed), kept across restarts."""
        return cls(DirectoryBackend(root))

    # -- blobs ------------------------------------------------------------------------------

    def blob_size(self, repository: str, digest: Digest) -> int | None:
        """The size of ``digest`` when ``repository`` holds it, else None."""
        with self._lock:
            if self.backend.size(f"repositories/{repository}/_layers/{_path(digest)}") is None:
                return None
            return self.backend.size(f"blobs/{_path(digest)}")

    def open_blob(self, digest: Digest, offset: int = 0) -> BinaryIO:
        """A stream of the blob's bytes from ``offset``; :class:`KeyError` when there is none."""
        return self.backend.open(f"blobs/{_path(digest)}", offset)

    def mount(self, repository: str, digest: Digest, source: str) -> bool:
        """Link ``digest`` into ``repository`` when ``source`` holds it; whether it did."""
        with self._lock:
            if self.blob_size(source, digest) is None:
                return False
            self._link(repository, digest)
            return True

    def _link(self, repository: str, digest: Digest) -> None:
        self.backend.write(f"repositories/{repository}/_layers/{_path(digest)}", b"")

    def delete_blob(self, repository: str, digest: Digest) -> bool:
        """Unlink ``digest`` from ``repository`` (its bytes stay for other repositories)."""
        with self._lock:
            return self.backend.delete(f"repositories/{repository}/_layers/{_path(digest)}")

    # -- uploads ----------------------------------------------------------------------------

    def start_upload(self, repository: str) -> Upload:
        """A new, empty upload session in ``repository``."""
        upload = Upload(secrets.token_hex(16), repository, secrets.token_urlsafe(16))
        self.backend.write(upload.key, b"")
        with self._lock:
            self._uploads[upload.uuid] = upload
        return upload

    def upload(self, repository: str, uuid: str) -> Upload | None:
        """The session ``uuid`` of ``repository``, or None (unknown, finished or cancelled)."""
        with self._lock:
            upload = self._uploads.get(uuid)
        return upload if upload is not None and upload.repository == repository else None

    def receive(self, upload: Upload, pieces: Iterable[bytes]) -> int:
        """Append ``pieces`` to the session, hashing on the way; the session's size after.

        All or nothing: a stream that fails part-way (a connection cut short, a body over a
        limit) leaves the session as it was before, its bytes and its hash.
        """
        size, hasher = upload.size, upload.hasher.copy()
        try:
            with self.backend.appender(upload.key) as out:
                for piece in pieces:
                    out.write(piece)
                    upload.hasher.update(piece)
                    upload.size += len(piece)
        except BaseException:
            self.backend.truncate(upload.key, size)
            upload.size, upload.hasher = size, hasher
            raise
        return upload.size

    def commit(self, upload: Upload, digest: Digest) -> None:
        """Make the session's bytes the blob ``digest`` in its repository, and end the session.

        :class:`UploadDigestError` when they hash to something else (the session is ended
        too, as Distribution does).
        """
        actual = self._digest_of(upload, digest.algorithm)
        with self._lock:
            self._uploads.pop(upload.uuid, None)
            if actual != digest:
                self.backend.delete(upload.key)
                raise UploadDigestError(f"the upload's {upload.size} bytes hash to {actual}, not {digest}")
            if self.backend.size(f"blobs/{_path(digest)}") is None:
                self.backend.move(upload.key, f"blobs/{_path(digest)}")
            else:
                self.backend.delete(upload.key)
            self._link(upload.repository, digest)

    def _digest_of(self, upload: Upload, algorithm: str) -> Digest:
        if algorithm == "sha256":
            return Digest("sha256", upload.hasher.hexdigest())
        hasher = Digest.new_hasher(algorithm)  # another algorithm: hash the stored bytes again
        with self.backend.open(upload.key) as stream:
            while piece := stream.read(PIECE):
                hasher.update(piece)
        return Digest(algorithm, hasher.hexdigest())

    def cancel(self, upload: Upload) -> None:
        """End the session and drop its bytes."""
        with self._lock:
            self._uploads.pop(upload.uuid, None)
            self.backend.delete(upload.key)

    # -- manifests and tags -------------------------------------------------------------------

    def put_manifest(
        self, repository: str, stored: Stored, *, tag: str | None = None, subject: Digest | None = None
    ) -> None:
        """Store ``stored`` in ``repository`` (its bytes unchanged), tagged ``tag`` when given.

        ``subject`` records it as a referrer of that digest.
        """
        with self._lock:
            self.backend.write(f"blobs/{_path(stored.digest)}", stored.raw)
            revisions = f"repositories/{repository}/_manifests/revisions"
            self.backend.write(f"{revisions}/{_path(stored.digest)}", stored.media_type.encode())
            if subject is not None:
                referrer = f"repositories/{repository}/_referrers/{_path(subject)}/{_path(stored.digest)}"
                self.backend.write(referrer, b"")
            if tag is not None:
                self.backend.write(f"repositories/{repository}/_manifests/tags/{tag}", str(stored.digest).encode())

    def resolve(self, repository: str, reference: str) -> Digest | None:
        """The digest a tag or digest names in ``repository``, when it holds that manifest."""
        with self._lock:
            if ":" in reference:
                digest = Digest.parse(reference)
            else:
                raw = self.backend.read(f"repositories/{repository}/_manifests/tags/{reference}")
                if raw is None:
                    return None
                digest = Digest.parse(raw.decode())
            return digest if self._media_type(repository, digest) is not None else None

    def _media_type(self, repository: str, digest: Digest) -> str | None:
        raw = self.backend.read(f"repositories/{repository}/_manifests/revisions/{_path(digest)}")
        return None if raw is None else raw.decode()

    def manifest(self, repository: str, digest: Digest) -> Stored | None:
        """The manifest ``digest`` of ``repository``, or None."""
        with self._lock:
            media_type = self._media_type(repository, digest)
            raw = self.backend.read(f"blobs/{_path(digest)}") if media_type is not None else None
        return None if raw is None or media_type is None else Stored(raw, media_type, digest)

    def untag(self, repository: str, tag: str) -> bool:
        """Remove ``tag`` (the manifest stays); whether it was there."""
        with self._lock:
            return self.backend.delete(f"repositories/{repository}/_manifests/tags/{tag}")

    def delete_manifest(self, repository: str, digest: Digest, subject: Digest | None) -> bool:
        """Remove the manifest ``digest``, every tag naming it, and its referrer link."""
        with self._lock:
            removed = self.backend.delete(f"repositories/{repository}/_manifests/revisions/{_path(digest)}")
            for tag in self.tags(repository):
                if self.resolve(repository, tag) is None:
                    self.untag(repository, tag)
            if subject is not None:
                self.backend.delete(f"repositories/{repository}/_referrers/{_path(subject)}/{_path(digest)}")
            return removed

    def tags(self, repository: str) -> list[str]:
        """The tags of ``repository``, sorted."""
        prefix = f"repositories/{repository}/_manifests/tags/"
        return sorted(key[len(prefix) :] for key in self.backend.keys(prefix))

    def referrers(self, repository: str, subject: Digest) -> list[Stored]:
        """The manifests of ``repository`` whose ``subject`` is ``subject``, by digest."""
        prefix = f"repositories/{repository}/_referrers/{_path(subject)}/"
        found = []
        for key in self.backend.keys(prefix):
            algorithm, _, encoded = key[len(prefix) :].partition("/")
            stored = self.manifest(repository, Digest(algorithm, encoded))
            if stored is not None:
                found.append(stored)
        return found

    def repositories(self) -> list[str]:
        """Every repository holding a blob or a manifest, sorted."""
        names = {key[len("repositories/") :].split("/_", 1)[0] for key in self.backend.keys("repositories/")}
        return sorted(names)

    def has_repository(self, repository: str) -> bool:
        """Whether anything was ever pushed to ``repository`` (and not all removed)."""
        return bool(self.backend.keys(f"repositories/{repository}/_"))
