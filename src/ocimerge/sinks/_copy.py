"""Copying a blob to a file with its hash computed on a second core ([VERIFY-2]).

The layout sink copies every layer through here; on a large layer, hashing inline
would make sha256 and not the disk the bottleneck of ``create``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from ocimerge.content import CHUNK_SIZE, Blob
from ocimerge.content import copy_verified as copy_inline
from ocimerge.model.digest import Hasher

__all__ = ["copy_verified"]


class _ThreadedHasher:
    """[VERIFY-2] Feeds a hasher from one worker thread, in order, while the caller does I/O.

    hashlib releases the GIL on large updates, so hashing chunk N overlaps reading and
    writing chunk N+1 on a second core. ``wait_for(buffer)`` blocks until every update that
    reads ``buffer`` is done, so a buffer is never refilled while it is being hashed.
    """

    def __init__(self, hasher: Hasher) -> None:
        self._hasher = hasher
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocimerge-hash")
        self._pending: dict[int, Future[None]] = {}

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        """Queue an update; the data is not copied, so its buffer must not change until
        :meth:`wait_for` returns for it (the single worker keeps updates in order)."""
        # keyed by the buffer a view is over: the caller waits on the buffer, not the view
        key = id(data.obj) if isinstance(data, memoryview) else id(data)
        self._pending[key] = self._pool.submit(self._hasher.update, data)

    def wait_for(self, buffer: bytearray) -> None:
        """Block until the queued update reading ``buffer`` is done; re-raise its error."""
        future = self._pending.pop(id(buffer), None)
        if future is not None:
            future.result()

    def hexdigest(self) -> str:
        """The digest once every queued update has run (the verifying reader calls this)."""
        for future in self._pending.values():
            future.result()
        self._pending.clear()
        return self._hasher.hexdigest()

    def close(self) -> None:
        """Stop the worker after it finishes what is queued; no thread outlives the copy."""
        self._pool.shutdown(wait=True)


#: Below this size a blob is hashed inline: a thread hand-off costs more than it saves.
_THREADED_MIN = 4 * CHUNK_SIZE


def copy_verified(blob: Blob, write: Callable[[memoryview], object]) -> int:
    """Stream ``blob`` into ``write`` chunk by chunk, verified; return the bytes copied.

    [VERIFY-2] Large blobs are hashed on a second thread, overlapping the copy, with two
    alternating buffers; the digest is still checked before this returns.
    ``write`` must consume the view before returning, since the buffer is reused; it
    raises ``DigestMismatchError`` for wrong or truncated content, after which the bytes
    already written are untrustworthy and the caller must discard them.
    """
    size = blob.descriptor.size
    if size < _THREADED_MIN:
        return copy_inline(blob, write)
    threaded = _ThreadedHasher(blob.digest.hasher())
    buffers = [bytearray(CHUNK_SIZE), bytearray(CHUNK_SIZE)]
    total = 0
    turn = 0
    try:
        with blob.open(threaded) as reader:
            while True:
                buffer = buffers[turn]
                threaded.wait_for(buffer)
                view = memoryview(buffer)
                n = reader.readinto(view)
                if not n:
                    break
                write(view[:n])
                total += n
                turn ^= 1
    finally:
        threaded.close()
    return total
