"""The blob upload strategy: one monolithic PUT, or chunked PATCHes ([API-4], [API-5], [API-7]).

A blob up to ``Chunking.threshold`` (1 GiB) goes in one ``PUT <location>?digest=``; a larger
one, or any blob when a chunk size is set, goes in ``PATCH`` chunks closed by an empty PUT. A
monolithic PUT refused as too large (413, :class:`RequestTooLargeError`) starts a new session
and goes in chunks instead.
[API-4] Every ``Location`` is followed exactly as given, query string included, resolved
against the request URL; ``digest=`` is appended to its query.
[API-5] Bodies stream from the blob's opener through one verifying reader, with an explicit
``Content-Length``; a retried chunk re-opens the blob and skips to its start.
[API-7] Chunks carry ``Content-Range: start-end`` (inclusive, no ``bytes``) and are no
smaller than the ``OCI-Chunk-Min-Length`` the registry announces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import attrs
import httpx

from ocimerge.content import CHUNK_SIZE, Blob, VerifyingReader
from ocimerge.errors import RegistryError, RequestTooLargeError
from ocimerge.model.digest import Digest
from ocimerge.registry.transport import Outgoing, Sender

__all__ = ["DEFAULT_CHUNK", "Chunking", "UploadSession", "Uploader", "check_digest", "location_of"]

DEFAULT_CHUNK = 16 * 1024 * 1024
Progress = Callable[[int], None]


@attrs.frozen
class UploadSession:
    """An open upload session: the absolute ``Location`` URL the registry gave [API-4]."""

    location: str


@attrs.frozen
class Chunking:
    """When to upload in chunks: always when ``chunk_size`` is set, else above ``threshold``."""

    chunk_size: int | None = None
    threshold: int = 1024 * 1024 * 1024


def location_of(response: httpx.Response) -> str:
    """[API-4] The absolute upload location an answer names, resolved against its request URL."""
    location = response.headers.get("location")
    if not location:
        raise RegistryError(f"{response.request.url.host}: upload answer without a Location header")
    return str(response.request.url.join(location))


def check_digest(response: httpx.Response, digest: Digest, host: str, what: str) -> None:
    """Refuse an answer whose ``Docker-Content-Digest`` disputes the digest we sent."""
    header = response.headers.get("docker-content-digest")
    if header and header != str(digest):
        raise RegistryError(f"{host}: {what}: the registry says {header}, we sent {digest}")


def _with_digest(location: str, digest: Digest) -> httpx.URL:
    """[API-4] The location with ``digest=`` added to whatever query it already carries."""
    return httpx.URL(location).copy_add_param("digest", str(digest))


class _Chunks:
    """[API-5][API-7] Upload bodies streamed from one verifying reader, hashed on the way.

    A monolithic PUT is one chunk of the whole blob. Chunks are read in order from one stream,
    so a blob is read once however many chunks it takes. A chunk sent again (a retry)
    re-opens the blob and skips to its start; the skipped bytes are hashed too, so the digest
    check, when the last byte is read, still covers the whole blob.
    """

    def __init__(self, blob: Blob, progress: Progress | None) -> None:
        self.blob = blob
        self.progress = progress
        self._reader: VerifyingReader | None = None
        self._position = 0

    def body(self, start: int, length: int) -> Iterator[bytes]:
        """The bytes ``start`` to ``start + length`` of the blob, as a streamed body."""
        if self._reader is None or self._position != start:
            self.close()
            self._reader = self.blob.open()
            self._position = 0
            while self._position < start:
                self._position += len(self._reader.read(min(CHUNK_SIZE, start - self._position)))
        reader = self._reader
        left = length
        while left > 0 and (data := reader.read(min(CHUNK_SIZE, left))):
            left -= len(data)
            self._position += len(data)
            if self.progress is not None:
                self.progress(len(data))
            yield data
        if self._position == self.blob.descriptor.size:
            self.close()  # the whole blob was read (and its digest checked)

    def close(self) -> None:
        """Close the open reader, if any (a body abandoned mid-blob, or the last one done)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class Uploader:
    """Uploads blobs into sessions through one :class:`Sender`, by the :class:`Chunking` rule."""

    def __init__(self, sender: Sender, chunking: Chunking) -> None:
        self.sender = sender
        self.chunking = chunking

    def upload(
        self, blob: Blob, session: UploadSession, restart: Callable[[], UploadSession], progress: Progress | None
    ) -> None:
        """Upload ``blob`` into ``session``; ``restart`` opens a new one after a 413."""
        chunk = self.chunking.chunk_size
        if chunk is None and blob.descriptor.size <= self.chunking.threshold:
            try:
                self._put(blob, session, progress)
                return
            except RequestTooLargeError:
                session = restart()  # too big for one request: chunk it, in a fresh session
        self._chunked(blob, session, chunk or DEFAULT_CHUNK, progress)

    def _put(self, blob: Blob, session: UploadSession, progress: Progress | None) -> None:
        digest, size = blob.digest, blob.descriptor.size
        url = _with_digest(session.location, digest)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        response = self.sender.send(
            Outgoing(
                lambda: self.sender.client.build_request(
                    "PUT", url, headers=headers, content=_Chunks(blob, progress).body(0, size)
                ),
                kind="PUT blob",
                what=f"upload blob {digest.short}",
                blob_size=size,  # [SEC-8] a blob body: the blob deadline
            )
        )
        check_digest(response, digest, self.sender.host, "blob upload")

    def _chunked(self, blob: Blob, session: UploadSession, chunk: int, progress: Progress | None) -> None:
        size = blob.descriptor.size
        chunks = _Chunks(blob, progress)
        location, start = session.location, 0
        try:
            while start < size:
                length = min(chunk, size - start)
                response = self._patch(blob, chunks, location, start, length)
                location = location_of(response)
                minimum = response.headers.get("oci-chunk-min-length")
                if minimum and minimum.isdigit() and chunk < int(minimum):
                    chunk = int(minimum)  # [API-7] the registry's floor wins over ours
                start += length
        finally:
            chunks.close()
        url = _with_digest(location, blob.digest)
        response = self.sender.send(
            Outgoing(
                lambda: self.sender.client.build_request("PUT", url, headers={"Content-Length": "0"}),
                kind="PUT blob",
                what=f"finish upload of blob {blob.digest.short}",
            )
        )
        check_digest(response, blob.digest, self.sender.host, "blob upload")

    def _patch(self, blob: Blob, chunks: _Chunks, location: str, start: int, length: int) -> httpx.Response:
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
            "Content-Range": f"{start}-{start + length - 1}",
        }
        return self.sender.send(
            Outgoing(
                lambda: self.sender.client.build_request(
                    "PATCH", location, headers=headers, content=chunks.body(start, length)
                ),
                kind="PATCH chunk",
                what=f"upload chunk of blob {blob.digest.short}",
                blob_size=length,  # [SEC-8] a blob body: the blob deadline
            )
        )
