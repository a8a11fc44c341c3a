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
[API-10] A blob request that fails part-way (a transport error, 408/429/5xx, a 416) is not
sent again blindly: ``GET <location>`` asks where the session stands, and the upload goes on
from there when the answer is consistent, or restarts in a new session when it is gone.
[API-11] A 413 halves the request size (never below 64 KiB or ``OCI-Chunk-Min-Length``),
restarts the blob in chunks, and the limit is kept for the rest of the run.
[PROFILE-8] The :class:`Chunking` rule carries the registry profile's facts: chunks capped at
its largest chunk, no chunks where it takes none (then a 413 is final), and no resuming from a
``Range`` it cannot be trusted with (a recovery restarts the blob instead).
[PUSH-5] A body whose progress callback is a :class:`Watch` checks its stop flag before every
chunk it reads, and raises :class:`UploadStopped` out of the body once it is set: httpx then
abandons the request (and closes its connection), so an interrupted push ends its uploads
within one chunk instead of when they finish.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import attrs
import httpx

from ocimerge.content import CHUNK_SIZE, Blob, VerifyingReader
from ocimerge.errors import (
    BlobUploadInvalidError,
    BlobUploadUnknownError,
    OcimergeError,
    RegistryError,
    RemoteError,
    RequestTooLargeError,
    TransportError,
)
from ocimerge.model.digest import Digest
from ocimerge.registry.transport import Outgoing, RetryPolicy, Sender

__all__ = [
    "DEFAULT_CHUNK",
    "MIN_CHUNK",
    "Chunking",
    "UploadSession",
    "UploadStopped",
    "Uploader",
    "Watch",
    "check_digest",
    "location_of",
]

DEFAULT_CHUNK = 16 * 1024 * 1024
#: [API-11] no 413 shrinks a request below this (nor below the registry's OCI-Chunk-Min-Length)
MIN_CHUNK = 64 * 1024
Progress = Callable[[int], None]


class UploadStopped(Exception):  # noqa: N818 - a stop asked for, not an error shown to anyone
    """[PUSH-5] Raised out of an upload body (and so out of the upload) once its stop flag is set.

    Not a :class:`~ocimerge.errors.OcimergeError`, nor an httpx error: neither the request
    loop nor the uploader's recovery takes it for a fault to retry, so it ends the upload at once.
    """


@attrs.frozen
class Watch:
    """[PUSH-5] A progress callback with a stop flag, checked by the body before every chunk.

    Calling it reports ``n`` bytes sent to ``report``; :meth:`check` raises
    :class:`UploadStopped` when ``stop`` is set. The flag is owned by whoever runs the upload
    (a push sets it on Ctrl-C); the upload only reads it.
    """

    report: Progress
    stop: threading.Event = attrs.field(eq=False)

    def __call__(self, n: int) -> None:
        """Report ``n`` more bytes sent."""
        self.report(n)

    def check(self) -> None:
        """Raise :class:`UploadStopped` if the stop flag is set; else nothing."""
        if self.stop.is_set():
            raise UploadStopped("upload stopped")


@attrs.frozen
class UploadSession:
    """An open upload session: the absolute ``Location`` URL the registry gave [API-4].

    ``min_chunk`` is the ``OCI-Chunk-Min-Length`` the registry announced for it, if any [API-7].
    """

    location: str
    min_chunk: int | None = None


@attrs.frozen
class Chunking:
    """When to upload in chunks: always when ``chunk_size`` is set, else above ``threshold``.

    [PROFILE-8] ``max_chunk`` (the registry's) and ``max_request`` (a known request-size limit)
    cap every chunk; a blob above ``max_request`` goes in chunks from the start. Where the
    registry takes no chunks (``supported=False``) every blob is one PUT and a 413 is final;
    ``trusts_range=False`` makes a recovery restart the blob rather than resume it [API-10].
    ``registry`` names the registry family in messages.
    """

    chunk_size: int | None = None
    threshold: int = 1024 * 1024 * 1024
    max_chunk: int | None = None
    max_request: int | None = None
    supported: bool = True
    trusts_range: bool = True
    registry: str = "registry"

    @property
    def size(self) -> int:
        """The chunk size used when chunking: the one set (or 16 MiB), capped by the limits."""
        caps = [c for c in (self.max_chunk, self.max_request) if c is not None]
        return min([self.chunk_size or DEFAULT_CHUNK, *caps])


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
        # [PUSH-5] checked before each read, so a stopped upload sends at most one more chunk
        while left > 0 and self._go_on() and (data := reader.read(min(CHUNK_SIZE, left))):
            left -= len(data)
            self._position += len(data)
            if self.progress is not None:
                self.progress(len(data))
            yield data
        if self._position == self.blob.descriptor.size:
            self.close()  # the whole blob was read (and its digest checked)

    def _go_on(self) -> bool:
        """True, unless the progress callback is a stopped :class:`Watch`: then :class:`UploadStopped`."""
        if isinstance(self.progress, Watch):
            self.progress.check()
        return True

    def close(self) -> None:
        """Close the open reader, if any (a body abandoned mid-blob, or the last one done)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class _Restart(Exception):  # noqa: N818 - a control-flow signal, not an error shown to anyone
    """The session is gone or unusable: open a new one and send the blob from byte 0 [API-10]."""


@attrs.frozen
class _Where:
    """Where a session stands by the registry's own account: its newest Location and stored bytes."""

    location: str
    stored: int


def _stored(header: str | None) -> int | None:
    """[API-10] The bytes a ``Range: 0-N`` (or ``bytes=0-N``) says are stored; ``0-0`` counts as 0.

    Distribution answers ``0-0`` for both 0 and 1 stored bytes; chunks are never 1 byte, so 0.
    """
    value = (header or "").strip().removeprefix("bytes=")
    first, _, last = value.partition("-")
    if first != "0" or not last.isdigit():
        return None
    end = int(last)
    return 0 if end == 0 else end + 1


class _Budget:
    """[API-10] The failures one blob request may meet: the retry policy's attempts, each waited for.

    Counted as the request loop counts one request's attempts: a chunk the registry took
    starts the count afresh (:meth:`progressed`), so every chunk gets the policy's attempts.
    """

    def __init__(self, policy: RetryPolicy, sleep: Callable[[float], None]) -> None:
        self._policy = policy
        self._sleep = sleep
        self._failures = 0

    def spend(self, error: Exception) -> None:
        """Count one failure and wait the policy's delay; re-raise ``error`` once none are left."""
        self._failures += 1
        if self._failures >= self._policy.attempts:
            raise error
        self._sleep(self._policy.delay(self._failures))

    def progressed(self) -> None:
        """A request of the blob succeeded: the next one gets all the attempts again."""
        self._failures = 0


def _recoverable(error: OcimergeError) -> bool:
    """Whether a failed blob request is one a retry can fix (transport errors, 408/429/5xx).

    [SEC-8] A missed deadline is final, as in the request loop: the loop raises it as a
    :class:`TransportError` of its own, not chained from the httpx failure as the others are.
    """
    if isinstance(error, TransportError) and error.__cause__ is None:
        return False
    return isinstance(error, RemoteError) and error.retryable


class Uploader:
    """Uploads blobs into sessions through one :class:`Sender`, by the :class:`Chunking` rule.

    [API-10] A failed blob request is never blindly repeated: the session is asked where it
    stands and the upload goes on from there, or restarts in a new session. [API-11] A 413
    lowers :attr:`limit`, this host's request size for the rest of the run.
    """

    def __init__(self, sender: Sender, chunking: Chunking, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.sender = sender
        self.chunking = chunking
        self._sleep = sleep
        self._lock = threading.Lock()
        #: [API-11] the largest request body this host takes: the known limit [PROFILE-8], lowered by a 413
        self.limit: int | None = chunking.max_request

    def upload(
        self, blob: Blob, session: UploadSession, restart: Callable[[], UploadSession], progress: Progress | None
    ) -> None:
        """Upload ``blob`` into ``session``; ``restart`` opens a new session when one is needed.

        Faults a retry can fix (transport errors, 408/429/5xx, a lost session, 416) are
        recovered from within the retry policy's attempts [API-10]; a 413 shrinks the request
        size and restarts the blob in chunks [API-11]. Anything else raises.
        """
        budget = _Budget(self.sender.policy, self._sleep)
        size = blob.descriptor.size
        chunked = False  # once a 413 refused this blob, it goes in chunks whatever its size
        while True:
            chunk = self._chunk_for(size, chunked=chunked)
            try:
                if chunk is None:
                    self._put(blob, session, budget, progress)
                else:
                    self._chunked(blob, session, chunk, budget, progress)
                return
            except RequestTooLargeError as exc:
                if not self.chunking.supported:
                    raise self._final_413(exc, blob) from exc
                self._shrink(exc, chunk or size, chunk is not None, session.min_chunk)
                chunked = True
            except _Restart:
                pass
            session = restart()

    def _final_413(self, error: RequestTooLargeError, blob: Blob) -> RequestTooLargeError:
        """[PROFILE-2] A 413 where no chunked upload is possible: final, naming registry and size."""
        size = blob.descriptor.size
        return RequestTooLargeError(
            f"{self.sender.host}: blob {blob.digest.short} ({size} bytes) was refused as too large (413), "
            f"and {self.chunking.registry} takes no chunked uploads, so it cannot be sent in smaller "
            "requests; a proxy in front of the registry may be limiting request sizes",
            status=error.status,
            url=error.url,
        )

    def _chunk_for(self, size: int, *, chunked: bool) -> int | None:
        """The chunk size for a blob of ``size``, or None for one monolithic PUT."""
        rule, limit = self.chunking, self.limit
        if not rule.supported:
            return None  # [PROFILE-2] the registry takes no chunks: one PUT, whatever its size
        chunk = rule.size if limit is None else min(rule.size, limit)
        if chunked or rule.chunk_size is not None:
            return chunk
        return chunk if size > (rule.threshold if limit is None else min(limit, rule.threshold)) else None

    def _shrink(self, error: RequestTooLargeError, refused: int, was_chunk: bool, minimum: int | None) -> None:
        """[API-11] Halve the request size after a 413 at ``refused`` bytes, down to the floor.

        A refused whole-blob PUT always gets one chunked try; a refused chunk already at the
        floor (64 KiB, or the registry's ``OCI-Chunk-Min-Length``) re-raises ``error``.
        """
        floor = max(MIN_CHUNK, minimum or 0)
        if was_chunk and refused <= floor:
            raise error
        with self._lock:
            wanted = max(floor, min(refused, self.chunking.size) // 2)
            self.limit = wanted if self.limit is None else min(self.limit, wanted)

    def _status(self, location: str, what: str) -> _Where:
        """[API-10] ``GET <location>``: where the session stands; :class:`_Restart` when it is gone."""
        try:
            response = self.sender.send(
                Outgoing(
                    lambda: self.sender.client.build_request("GET", location),
                    kind="GET upload",
                    what=f"query upload of {what}",
                )
            )
        except (BlobUploadUnknownError, BlobUploadInvalidError) as exc:
            raise _Restart from exc
        except RegistryError as exc:
            if exc.status in (400, 404):
                raise _Restart from exc
            raise
        stored = _stored(response.headers.get("range"))
        if stored is None:
            raise _Restart  # no Range to trust: start over
        return _Where(location_of(response) if response.headers.get("location") else location, stored)

    def _put(self, blob: Blob, session: UploadSession, budget: _Budget, progress: Progress | None) -> None:
        location = session.location
        while True:
            try:
                response = self._put_once(blob, location, progress)
            except (BlobUploadUnknownError, BlobUploadInvalidError) as exc:
                budget.spend(exc)
                raise _Restart from exc
            except RemoteError as exc:
                if not _recoverable(exc):
                    raise
                budget.spend(exc)
                if not self.chunking.trusts_range:
                    raise _Restart from exc  # [PROFILE-3] its answer cannot be trusted: start over
                where = self._status(location, f"blob {blob.digest.short}")
                if where.stored:
                    raise _Restart from exc  # part of a whole-blob PUT was kept: it cannot go on
                location = where.location
                continue
            check_digest(response, blob.digest, self.sender.host, "blob upload")
            return

    def _chunked(
        self, blob: Blob, session: UploadSession, chunk: int, budget: _Budget, progress: Progress | None
    ) -> None:
        size = blob.descriptor.size
        chunks = _Chunks(blob, progress)
        location, start = session.location, 0
        if session.min_chunk and chunk < session.min_chunk:
            chunk = session.min_chunk  # [API-7] the registry's floor wins over ours
        try:
            while start < size:
                length = min(chunk, size - start)
                try:
                    response = self._patch(blob, chunks, location, start, length)
                except RemoteError as exc:
                    location, start = self._resume(exc, budget, location, start + length, blob)
                    continue
                budget.progressed()
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

    def _resume(self, error: RemoteError, budget: _Budget, location: str, sent: int, blob: Blob) -> tuple[str, int]:
        """[API-10] After a failed chunk: the location and offset to go on from, or :class:`_Restart`.

        A 416 or a retryable failure asks the session where it stands; an answer within what
        was sent (``sent`` bytes at most) is consistent and the upload continues there (the
        body streamer re-reads and hashes the prefix, so the digest check covers every byte).
        """
        if isinstance(error, RequestTooLargeError):
            raise error
        gone = isinstance(error, BlobUploadUnknownError | BlobUploadInvalidError)
        if not (gone or _recoverable(error) or getattr(error, "status", None) == 416):
            raise error
        budget.spend(error)
        if gone or not self.chunking.trusts_range:
            raise _Restart from error  # [PROFILE-3] a Range we cannot trust is no place to go on from
        where = self._status(location, f"blob {blob.digest.short}")
        if where.stored > min(sent, blob.descriptor.size):
            raise _Restart from error  # the registry claims bytes we never sent: not consistent
        return where.location, where.stored

    def _put_once(self, blob: Blob, location: str, progress: Progress | None) -> httpx.Response:
        digest, size = blob.digest, blob.descriptor.size
        url = _with_digest(location, digest)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        return self.sender.send(
            Outgoing(
                lambda: self.sender.client.build_request(
                    "PUT", url, headers=headers, content=_Chunks(blob, progress).body(0, size)
                ),
                kind="PUT blob",
                what=f"upload blob {digest.short}",
                retry=False,  # [API-10] a failed body is recovered by the uploader, never re-sent blindly
                blob_size=size,  # [SEC-8] a blob body: the blob deadline
            )
        )

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
                retry=False,  # [API-10] a failed chunk is recovered by the uploader
                blob_size=length,  # [SEC-8] a blob body: the blob deadline
            )
        )
