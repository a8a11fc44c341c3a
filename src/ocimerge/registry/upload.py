"""The blob upload strategy: one monolithic PUT, or chunked PATCHes ([API-4], [API-5], [API-7]).

A blob up to ``Chunking.threshold`` (64 MiB) goes in one ``PUT <location>?digest=``; a larger
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
[PUSH-5] A body checks its :class:`StopFlag` before every piece it reads and raises
:class:`UploadStopped` out of the body once it is set: httpx then abandons the request (and
closes its connection), so an interrupted push ends its uploads at once instead of when they
finish. [RESUME-4] A chunk already in flight gets :data:`CHUNK_GRACE` to finish first, and
chunks are sized to the link so that it usually does: a chunk cut short makes Distribution
cancel the whole session, a finished one leaves it resumable.
[RESUME-3] A :class:`Checkpoint` is told where the session stands after every chunk the
registry took; given the location an earlier run recorded, the upload asks the registry
where that session stands and continues from its ``Range``, re-reading and hashing the local
prefix so the digest check still covers every byte, or restarts from byte 0 with a note.
Progress counts the furthest byte reached, so bytes sent again after a recovery are not
counted twice and a resumed prefix counts once.
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
    DigestInvalidError,
    OcimergeError,
    RegistryError,
    RemoteError,
    RequestTooLargeError,
    TransportError,
)
from ocimerge.model.digest import Digest
from ocimerge.registry.transport import Outgoing, RetryPolicy, Sender

__all__ = [
    "CHUNK_GRACE",
    "DEFAULT_CHUNK",
    "MIN_CHUNK",
    "Checkpoint",
    "Chunking",
    "StopFlag",
    "UploadHooks",
    "UploadSession",
    "UploadStopped",
    "Uploader",
    "check_digest",
    "location_of",
]

DEFAULT_CHUNK = 16 * 1024 * 1024
#: [API-11] no 413 shrinks a request below this (nor below the registry's OCI-Chunk-Min-Length)
MIN_CHUNK = 64 * 1024
Progress = Callable[[int], None]
#: [RESUME-4] seconds a chunk in flight when a stop comes may take to finish (the push waits 2 s)
CHUNK_GRACE = 1.0
#: [RESUME-4] how long a chunk should take when its size is ours to choose: under the grace
CHUNK_SECONDS = 0.5
#: [RESUME-4] the first chunk of a blob whose chunk size is ours, and the smallest one paced
FIRST_CHUNK = 1024 * 1024
PACED_FLOOR = 256 * 1024
#: paced chunk sizes are multiples of this
PACED_GRAIN = 64 * 1024
#: [RESUME-4] the largest paced chunk: on a fast link a chunk is half a second's worth, so the
#: registry's turnaround between chunks (tens of ms for Distribution) stays a few percent
PACED_MAX = 256 * 1024 * 1024


class UploadStopped(Exception):  # noqa: N818 - a stop asked for, not an error shown to anyone
    """[PUSH-5] Raised out of an upload body (and so out of the upload) once its stop flag is set.

    Not a :class:`~ocimerge.errors.OcimergeError`, nor an httpx error: neither the request
    loop nor the uploader's recovery takes it for a fault to retry, so it ends the upload at once.
    """


class StopFlag:
    """[PUSH-5] A stop asked for by whoever runs the uploads (a push, on Ctrl-C), and since when.

    The uploads only read it: a body raises :class:`UploadStopped` at its next piece, or, in
    the middle of a chunk, once :data:`CHUNK_GRACE` has passed since the stop [RESUME-4].
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._event = threading.Event()
        self._at: float | None = None

    def set(self) -> None:
        """Ask for the stop (once; later calls change nothing)."""
        if self._at is None:
            self._at = self._clock()
        self._event.set()

    def is_set(self) -> bool:
        """Whether the stop was asked for."""
        return self._event.is_set()

    def elapsed(self) -> float:
        """Seconds since the stop was asked for (0 when it was not)."""
        return 0.0 if self._at is None else self._clock() - self._at


@attrs.frozen
class Checkpoint:
    """[RESUME-3] What an upload keeps for a later run, and where an earlier run left it.

    ``record(session, stored)`` is called after every chunk the registry took (and, for a
    blob that goes in one PUT where it would have gone in chunks, once with 0 before it), so
    an interrupted upload can be continued; ``note`` gets one line when an earlier run's
    upload cannot be continued, or is; ``resume`` is the session that run recorded (its
    location and the ``OCI-Chunk-Min-Length`` it announced).
    """

    record: Callable[[UploadSession, int], None] = attrs.field(eq=False)
    note: Callable[[str], None] = attrs.field(eq=False)
    resume: UploadSession | None = None


@attrs.frozen
class UploadTarget:
    """The repository an upload goes into: ``new_session`` opens a session there, ``holds``
    says whether a blob is already in it (after an answer was lost, the blob may be)."""

    new_session: Callable[[], UploadSession] = attrs.field(eq=False)
    holds: Callable[[Blob], bool] = attrs.field(eq=False)


@attrs.frozen
class UploadHooks:
    """How the caller of an upload follows and steers it: all optional.

    ``progress`` is called with each number of bytes the upload gets further into the blob;
    ``checkpoint`` keeps where the session stands [RESUME-3]; ``stop`` ends the upload early
    [PUSH-5].
    """

    progress: Progress | None = attrs.field(default=None, eq=False)
    checkpoint: Checkpoint | None = None
    stop: StopFlag | None = attrs.field(default=None, eq=False)


@attrs.frozen
class UploadSession:
    """An open upload session: the absolute ``Location`` URL the registry gave [API-4].

    ``min_chunk`` is the ``OCI-Chunk-Min-Length`` the registry announced for it, if any [API-7];
    ``refused`` the status of the mount it was opened in place of (202 [API-6], or 401/403/404
    [PROFILE-6]), if any.
    """

    location: str
    min_chunk: int | None = None
    refused: int | None = None


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
    threshold: int = 64 * 1024 * 1024  # [RESUME-3] the profiles' RESUMABLE_ABOVE
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

    def __init__(self, blob: Blob, reach: _Reach) -> None:
        self.blob = blob
        self.reach = reach
        self._reader: VerifyingReader | None = None
        self._position = 0

    def seek(self, start: int) -> None:
        """Be at byte ``start`` of the blob: where the reader is, or a fresh reader skipped to it.

        [RESUME-3] The skipped prefix (the part the registry holds) is read and hashed, not
        sent; called before the request is built, so the re-read counts against no request's
        deadline and keeps no connection waiting. A stop asked for ends it.
        """
        if self._reader is not None and self._position == start:
            return
        self.close()
        self._reader = self.blob.open()
        self._position = 0
        while self._position < start and self.reach.go_on():
            read = len(self._reader.read(min(CHUNK_SIZE, start - self._position)))
            if not read:
                break  # a short source: the verifying reader has raised, or will at the next read
            self._position += read
            self.reach.at(self._position)

    def body(self, start: int, length: int) -> Iterator[bytes]:
        """The bytes ``start`` to ``start + length`` of the blob, as a streamed body."""
        self.seek(start)  # a no-op when the caller already sought: a retried body re-reads here
        reader = self._reader
        assert reader is not None
        left = length
        # [PUSH-5] checked before each read, so a stopped upload sends at most one more chunk
        while left > 0 and self.reach.go_on(in_chunk=left < length) and (data := reader.read(min(CHUNK_SIZE, left))):
            left -= len(data)
            self._position += len(data)
            self.reach.at(self._position)
            yield data
        if self._position == self.blob.descriptor.size:
            self.close()  # the whole blob was read (and its digest checked)

    def close(self) -> None:
        """Close the open reader, if any (a body abandoned mid-blob, or the last one done)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class _Reach:
    """[RESUME-3] Progress as the furthest byte of the blob reached, and the stop flag's check.

    Bytes sent again after a recovery (below the furthest reached) are not reported again,
    so progress never passes the blob's size; a prefix resumed from counts once.
    """

    def __init__(self, progress: Progress | None, stop: StopFlag | None) -> None:
        self._progress = progress
        self._stop = stop
        self._furthest = 0

    def at(self, position: int) -> None:
        """The body has read the blob up to ``position``."""
        if position > self._furthest:
            if self._progress is not None:
                self._progress(position - self._furthest)
            self._furthest = position

    def go_on(self, *, in_chunk: bool = False) -> bool:
        """True, unless a stop was asked for: then :class:`UploadStopped`.

        [RESUME-4] In the middle of a chunk (``in_chunk``) the stop waits :data:`CHUNK_GRACE`
        first, so a chunk about to finish leaves its session resumable.
        """
        stop = self._stop
        if stop is not None and stop.is_set() and not (in_chunk and stop.elapsed() < CHUNK_GRACE):
            raise UploadStopped("upload stopped")
        return True


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
    beyond the furthest byte any session of this blob reached starts the count afresh
    (:meth:`progressed`), so every new chunk gets the policy's attempts, while a link that
    cuts every session at the same place runs out of them.
    """

    def __init__(self, policy: RetryPolicy, sleep: Callable[[float], None]) -> None:
        self._policy = policy
        self._sleep = sleep
        self._failures = 0
        self._furthest = 0

    def spend(self, error: Exception) -> None:
        """Count one failure and wait; re-raise ``error`` once none are left.

        The wait is the registry's ``Retry-After`` when its answer had one (capped as the
        request loop caps it), else the policy's backoff [RETRY-1].
        """
        self._failures += 1
        if self._failures >= self._policy.attempts:
            raise error
        asked = getattr(error, "retry_after", None)
        policy = self._policy
        self._sleep(min(asked, policy.max_delay) if asked is not None else policy.delay(self._failures))

    def progressed(self, stored: int) -> None:
        """The registry holds ``stored`` bytes: past the furthest yet, the next request gets every attempt."""
        if stored > self._furthest:
            self._furthest = stored
            self._failures = 0


def _recoverable(error: OcimergeError) -> bool:
    """Whether a failed blob request is one a retry can fix (transport errors, 408/429/5xx).

    [SEC-8] A missed deadline is final, as in the request loop: the loop raises it as a
    :class:`TransportError` of its own, not chained from the httpx failure as the others are.
    """
    if isinstance(error, TransportError) and error.__cause__ is None:
        return False
    return isinstance(error, RemoteError) and error.retryable


class _Pace:
    """[RESUME-4] The size of the next chunk: the given one, or one sized to the link.

    When the chunk size is ours to choose (``paced``), a blob starts with :data:`FIRST_CHUNK`
    and each chunk after is what the last one's rate sends in :data:`CHUNK_SECONDS`, at least
    :data:`PACED_FLOOR`. Every chunk is capped by ``ceiling()`` as it stands when the chunk is
    sent (the rule's size: the default, a registry's largest chunk, a request-size limit, and
    a limit a 413 taught any upload of the run, [API-11]) and is at least the registry's
    ``OCI-Chunk-Min-Length`` [API-7]. So a chunk in flight when Ctrl-C comes usually finishes
    within :data:`CHUNK_GRACE`, and its session stays resumable.
    """

    def __init__(
        self, ceiling: Callable[[], int], minimum: int | None, *, paced: bool, clock: Callable[[], float]
    ) -> None:
        self._ceiling = ceiling
        self.floor = minimum or 0
        self._paced = paced
        self._clock = clock
        self._size = FIRST_CHUNK if paced else ceiling()

    @property
    def size(self) -> int:
        """The next chunk's size."""
        return max(min(self._size, self._ceiling()), self.floor)

    def took(self, length: int, began: float, minimum: int | None) -> None:
        """A chunk of ``length`` bytes sent from ``began`` (the clock's time) and answered now."""
        if minimum:
            self.floor = max(self.floor, minimum)  # [API-7] the registry's floor wins over ours
        if self._paced and length >= self.size:  # a short last chunk says little about the link
            rate = length / max(self._clock() - began, 1e-3)
            self._size = max(PACED_FLOOR, int(rate * CHUNK_SECONDS) // PACED_GRAIN * PACED_GRAIN)


@attrs.define
class _Job:
    """One blob's upload: the blob, where it goes, its failure budget, its progress, its checkpoint.

    ``resumed`` is set while the upload continues a session an earlier run recorded [RESUME-3].
    """

    blob: Blob
    target: UploadTarget
    budget: _Budget
    reach: _Reach
    checkpoint: Checkpoint | None = None
    resumed: bool = False

    @property
    def what(self) -> str:
        """The blob as messages name it."""
        return f"blob {self.blob.digest.short}"

    def record(self, session: UploadSession, stored: int) -> None:
        """[RESUME-3] Tell the checkpoint, if any, where the session stands."""
        if self.checkpoint is not None:
            self.checkpoint.record(session, stored)

    def note(self, text: str) -> None:
        """A line for the push's notes (through the checkpoint; without one, nobody asked)."""
        if self.checkpoint is not None:
            self.checkpoint.note(text)


class Uploader:
    """Uploads blobs into sessions through one :class:`Sender`, by the :class:`Chunking` rule.

    [API-10] A failed blob request is never blindly repeated: the session is asked where it
    stands and the upload goes on from there, or restarts in a new session. [API-11] A 413
    lowers :attr:`limit`, this host's request size for the rest of the run. [RESUME-3] A
    checkpoint keeps where each session stands, and an earlier run's session is continued.
    """

    def __init__(
        self,
        sender: Sender,
        chunking: Chunking,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sender = sender
        self.chunking = chunking
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        #: [API-11] the largest request body this host takes: the known limit [PROFILE-8], lowered by a 413
        self.limit: int | None = chunking.max_request

    def upload(
        self,
        blob: Blob,
        session: UploadSession | None,
        target: UploadTarget,
        hooks: UploadHooks | None = None,
    ) -> None:
        """Upload ``blob`` into ``session``, or into a new one of ``target`` when None.

        Faults a retry can fix (transport errors, 408/429/5xx, a lost session, 416) are
        recovered from within the retry policy's attempts [API-10]; a 413 shrinks the request
        size and goes on in chunks [API-11]; a session lost as often as the policy has
        attempts is final. [RESUME-3] Without ``session``, a ``checkpoint`` naming an earlier
        run's session is continued from where the registry holds it (else a note, and a new
        session). ``hooks`` report progress, keep checkpoints and carry the stop flag.
        Anything else raises.
        """
        hooks = hooks or UploadHooks()
        reach = _Reach(hooks.progress, hooks.stop)
        job = _Job(blob, target, _Budget(self.sender.policy, self._sleep), reach, hooks.checkpoint)
        session, start = self._opening(job, session)
        chunked = start > 0  # a resumed session, or a blob a 413 refused whole, goes in chunks
        restarts = 0
        while True:
            chunk = self._chunk_for(blob.descriptor.size, chunked=chunked)
            try:
                if chunk is None:
                    self._put(job, session)
                else:
                    self._chunked(job, session, start)
                return
            except RequestTooLargeError as exc:
                if not self.chunking.supported:
                    raise self._final_413(exc, blob) from exc
                if chunk is not None:
                    raise  # [API-11] a chunk refused at the floor: final (smaller ones went on in place)
                self._shrink(exc, blob.descriptor.size, False, session.min_chunk)
                chunked = True  # the whole-blob PUT refused: in chunks, in a new session
            except _Restart as restart:
                restarts += 1
                if restarts >= self.sender.policy.attempts:
                    raise self._lost(job, restart, restarts) from restart
            job.resumed = False
            session, start = target.new_session(), 0

    def _lost(self, job: _Job, restart: _Restart, times: int) -> OcimergeError:
        """The error ending an upload whose sessions were lost ``times`` times: the last cause, if any."""
        cause = restart.__cause__
        if isinstance(cause, OcimergeError):
            return cause
        return RegistryError(
            f"{self.sender.host}: upload of {job.what} failed: the registry lost its upload session {times} times"
        )

    def _opening(self, job: _Job, session: UploadSession | None) -> tuple[UploadSession, int]:
        """The session to start in and the offset to start from: given, resumed, or new."""
        if session is not None:
            return session, 0
        resumed = self._resumed(job)
        if resumed is None:
            return job.target.new_session(), 0
        job.resumed = True
        return resumed

    def _resumed(self, job: _Job) -> tuple[UploadSession, int] | None:
        """[RESUME-3] An earlier run's session and where the registry holds it; None (and a note) if gone."""
        checkpoint = job.checkpoint
        if checkpoint is None or checkpoint.resume is None:
            return None
        where, why = self._recorded(job, checkpoint.resume.location)
        if where is None:
            checkpoint.note(f"{job.what} restarts from byte 0: {why}")
            return None
        if where.stored:
            percent = 100 * where.stored // job.blob.descriptor.size
            checkpoint.note(f"{job.what}: continuing an interrupted upload at byte {where.stored} ({percent}%)")
        return UploadSession(where.location, checkpoint.resume.min_chunk), where.stored

    def _recorded(self, job: _Job, location: str) -> tuple[_Where | None, str]:
        """Where a recorded session stands by the registry's account, or why it cannot be continued."""
        rule = self.chunking
        if not rule.supported:
            return None, f"{rule.registry} takes no chunked uploads, so an interrupted one cannot continue"
        if not rule.trusts_range:  # [PROFILE-3]
            return None, f"{rule.registry}'s upload status cannot be trusted"
        try:
            where = self._status(location, job.what)
        except _Restart:
            return None, "the registry no longer holds the interrupted upload"
        except RemoteError as exc:
            return None, f"the registry could not say where the interrupted upload stands ({exc})"
        if where.stored > job.blob.descriptor.size:
            return None, "the registry claims more bytes than the blob has"
        return where, ""

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
        chunk = self._ceiling(paced=False)
        if chunked or rule.chunk_size is not None:
            return chunk
        return chunk if size > (rule.threshold if limit is None else min(limit, rule.threshold)) else None

    def _ceiling(self, *, paced: bool) -> int:
        """[RESUME-4] The largest chunk now: the rule's size (a paced one may reach :data:`PACED_MAX`),
        under the registry's largest chunk, the known request limit and what a 413 taught [API-11]."""
        rule = self.chunking
        caps = [c for c in (rule.max_chunk, rule.max_request, self.limit) if c is not None]
        return min([PACED_MAX if paced else rule.size, *caps])

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

    def _put(self, job: _Job, session: UploadSession) -> None:
        location = session.location
        if not self.chunking.supported and job.blob.descriptor.size > self.chunking.threshold:
            job.record(session, 0)  # [RESUME-3] so that a re-run can say why this blob starts over
        while True:
            try:
                response = self._put_once(job, location)
            except (BlobUploadUnknownError, BlobUploadInvalidError) as exc:
                job.budget.spend(exc)
                raise _Restart from exc
            except RemoteError as exc:
                if not _recoverable(exc):
                    raise
                job.budget.spend(exc)
                if not self.chunking.trusts_range:
                    raise _Restart from exc  # [PROFILE-3] its answer cannot be trusted: start over
                where = self._where(job, location)
                if where is None:
                    return  # the PUT went through, only its answer was lost [API-12]
                if where.stored:
                    raise _Restart from exc  # part of a whole-blob PUT was kept: it cannot go on
                location = where.location
                continue
            check_digest(response, job.blob.digest, self.sender.host, "blob upload")
            return

    def _chunked(self, job: _Job, session: UploadSession, start: int) -> None:
        """Chunks from ``start`` (where the session stands), then the closing PUT."""
        blob, size = job.blob, job.blob.descriptor.size
        chunks = _Chunks(blob, job.reach)
        location = session.location
        paced = self.chunking.chunk_size is None
        pace = _Pace(lambda: self._ceiling(paced=paced), session.min_chunk, paced=paced, clock=self._clock)
        try:
            while start < size:
                length = min(pace.size, size - start)
                chunks.seek(start)  # [RESUME-3] a prefix to re-read is read before the request
                began = self._clock()
                try:
                    response = self._patch(job, chunks, location, start, length)
                except RemoteError as exc:
                    location, start = self._resume(job, exc, location, start, length, floor=pace.floor)
                    continue
                start += length
                job.budget.progressed(start)
                location = location_of(response)
                minimum = response.headers.get("oci-chunk-min-length")
                pace.took(length, began, int(minimum) if minimum and minimum.isdigit() else None)
                job.record(UploadSession(location, pace.floor or None), start)  # what a later run continues from
        finally:
            chunks.close()
        job.reach.at(size)  # a session resumed with every byte stored has nothing left to send
        self._close(job, location)

    def _close(self, job: _Job, location: str) -> None:
        """The empty PUT that ends a chunked upload, and what its failures mean.

        [API-12] Sent again after its answer was lost, it finds the session closed: the blob
        may be in. [RESUME-3] A resumed session whose bytes do not make the blob (an earlier
        run sent from a source since mended) restarts once from byte 0, with a note.
        """
        blob = job.blob
        url = _with_digest(location, blob.digest)
        try:
            response = self.sender.send(
                Outgoing(
                    lambda: self.sender.client.build_request("PUT", url, headers={"Content-Length": "0"}),
                    kind="PUT blob",
                    what=f"finish upload of blob {blob.digest.short}",
                )
            )
        except (BlobUploadUnknownError, BlobUploadInvalidError) as exc:
            if job.target.holds(blob):
                return
            job.budget.spend(exc)
            raise _Restart from exc
        except DigestInvalidError as exc:
            if not job.resumed:
                raise
            job.note(f"{job.what} restarts from byte 0: the interrupted upload it continued does not match the blob")
            raise _Restart from exc
        check_digest(response, blob.digest, self.sender.host, "blob upload")

    def _where(self, job: _Job, location: str) -> _Where | None:
        """Where the session stands after a failed whole-blob PUT; None if the blob got in after all.

        [API-12] A session that is gone may be gone because the PUT completed and only its
        answer was lost: then the repository holds the blob, and nothing is sent again.
        """
        try:
            return self._status(location, job.what)
        except _Restart:
            if job.target.holds(job.blob):
                return None
            raise

    def _resume(  # noqa: PLR0913 - the failed chunk: where it went, from where, how long, the floor
        self, job: _Job, error: RemoteError, location: str, start: int, length: int, *, floor: int
    ) -> tuple[str, int]:
        """[API-10] After a failed chunk: the location and offset to go on from, or :class:`_Restart`.

        A 416 or a retryable failure asks the session where it stands; an answer within what
        was sent (``start + length`` bytes at most) is consistent and the upload continues there
        (the body streamer re-reads and hashes the prefix, so the digest check covers every
        byte). [API-11] A 413 refused the request, not the session: the request size is halved
        (from the ``length`` refused, down to the floor) and the upload goes on where it stands.
        """
        if isinstance(error, RequestTooLargeError):
            self._shrink(error, length, True, floor or None)
        elif isinstance(error, BlobUploadUnknownError | BlobUploadInvalidError):
            job.budget.spend(error)
            raise _Restart from error
        elif _recoverable(error) or getattr(error, "status", None) == 416:
            job.budget.spend(error)
        else:
            raise error
        if not self.chunking.trusts_range:
            raise _Restart from error  # [PROFILE-3] a Range we cannot trust is no place to go on from
        where = self._status(location, job.what)
        if where.stored > min(start + length, job.blob.descriptor.size):
            raise _Restart from error  # the registry claims bytes we never sent: not consistent
        return where.location, where.stored

    def _put_once(self, job: _Job, location: str) -> httpx.Response:
        blob = job.blob
        digest, size = blob.digest, blob.descriptor.size
        url = _with_digest(location, digest)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        return self.sender.send(
            Outgoing(
                lambda: self.sender.client.build_request(
                    "PUT", url, headers=headers, content=_Chunks(blob, job.reach).body(0, size)
                ),
                kind="PUT blob",
                what=f"upload blob {digest.short}",
                retry=False,  # [API-10] a failed body is recovered by the uploader, never re-sent blindly
                blob_size=size,  # [SEC-8] a blob body: the blob deadline
            )
        )

    def _patch(self, job: _Job, chunks: _Chunks, location: str, start: int, length: int) -> httpx.Response:
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
                what=f"upload chunk of blob {job.blob.digest.short}",
                retry=False,  # [API-10] a failed chunk is recovered by the uploader
                blob_size=length,  # [SEC-8] a blob body: the blob deadline
            )
        )
