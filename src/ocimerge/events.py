"""Progress events: the life of each blob a command moves, for whoever draws it ([PUSH-3]).

One protocol for every command that reads or writes blobs: a push (upload, mount, copy,
skip), ``create -o`` (written into a layout or archive), ``verify`` (re-hashed) and
``bundle`` (fetched into the staging). [PROGRESS-2] Each blob is first *planned* (so a view
knows the totals before any byte moves), then started, reported as its bytes move, and
done, with what was done to it. A library function takes an optional ``on_event`` callback;
None (the default) costs nothing: no event is even built.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

import attrs

from ocimerge.content import Blob
from ocimerge.model.digest import Digest

__all__ = ["BlobAction", "EventCallback", "PushEvent", "PushEventKind", "copy_reported", "plan"]


class BlobAction(enum.Enum):
    """[PUSH-1] What a command did with one blob (a push: the first five; [PROGRESS-2] the rest)."""

    SKIP = "skip"  # the repository (or the bundle's staging) holds it already
    MOUNT = "mount"  # another repository of the same registry holds it
    UPLOAD = "upload"  # sent from a local source
    COPY = "copy"  # streamed from another registry
    FOREIGN = "foreign"  # a non-distributable layer: never pushed
    WRITE = "write"  # written into a layout or archive (create -o)
    VERIFY = "verify"  # read to the end and re-hashed (verify)
    FETCH = "fetch"  # read from its source into a bundle's staging (bundle)


class PushEventKind(enum.Enum):
    """[PUSH-3][PROGRESS-2] The life of one blob: planned, started, bytes moved, finished."""

    PLAN = "plan"  # the command will handle this blob: counted in the totals up front
    START = "start"
    PROGRESS = "progress"
    DONE = "done"


@attrs.frozen
class PushEvent:
    """[PUSH-3] What happened to one blob; ``done`` is a running total of its bytes moved.

    ``action`` is set on ``DONE``; a ``DONE`` without one means the blob was given up (its
    content was bad: ``verify`` reports it as a problem).
    """

    kind: PushEventKind
    digest: Digest
    size: int
    done: int = 0
    action: BlobAction | None = None


#: What a library function takes as ``on_event``; it may be called from several threads.
EventCallback = Callable[[PushEvent], None]
#: A verified copy of one blob into a writer, returning the bytes copied.
Copier = Callable[[Blob, Callable[[memoryview], object]], int]


def plan(on_event: EventCallback | None, blobs: Iterable[Blob]) -> None:
    """[PROGRESS-2] One ``PLAN`` event per blob of ``blobs`` (the caller passes each digest once)."""
    if on_event is None:
        return
    for blob in blobs:
        on_event(PushEvent(PushEventKind.PLAN, blob.digest, blob.descriptor.size))


def copy_reported(
    copy: Copier, blob: Blob, write: Callable[[memoryview], object], on_event: EventCallback | None, action: BlobAction
) -> int:
    """``copy(blob, write)``, reported as ``START``, a ``PROGRESS`` per chunk and ``DONE`` with ``action``.

    A copy that raises reports ``DONE`` without an action (the blob was given up), then the
    error goes on; without ``on_event`` this is ``copy(blob, write)`` and nothing more.
    """
    if on_event is None:
        return copy(blob, write)
    digest, size = blob.digest, blob.descriptor.size
    on_event(PushEvent(PushEventKind.START, digest, size))
    moved = 0

    def counted(chunk: memoryview) -> object:
        nonlocal moved
        result = write(chunk)
        moved += len(chunk)
        on_event(PushEvent(PushEventKind.PROGRESS, digest, size, moved))
        return result

    try:
        total = copy(blob, counted)
    except BaseException:
        on_event(PushEvent(PushEventKind.DONE, digest, size, moved))
        raise
    on_event(PushEvent(PushEventKind.DONE, digest, size, total, action))
    return total
