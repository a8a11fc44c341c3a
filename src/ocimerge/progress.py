"""Progress on a terminal: one bar per blob being uploaded, and a total line ([PUSH-3]).

Drawn on stderr only when it is a terminal (the CLI decides that), at most ten times a
second; the push reports events from several threads, so counting and drawing take a lock.
Each redraw moves the cursor up over the lines drawn last time and clears them, so the bars
update in place instead of scrolling. [PUSH-5] A line written by someone else (the Ctrl-C
notice) is kept: :func:`before_note` makes every view draw its next frame below it.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TextIO

from ocimerge.sinks.registry import BlobAction, PushEvent, PushEventKind
from ocimerge.text import printable

__all__ = ["ProgressView", "before_note"]

#: Characters in one bar.
_WIDTH = 24
#: Seconds between redraws: a terminal repainted faster only flickers.
_INTERVAL = 0.1
#: ANSI: cursor up one line, then erase that whole line.
_UP_AND_CLEAR = "\x1b[1A\x1b[2K"
#: The actions that send bytes, and so count as uploaded.
_SENDING = (BlobAction.UPLOAD, BlobAction.COPY)

#: The views alive, for :func:`before_note`; weak, so a finished view is forgotten.
_VIEWS: weakref.WeakSet[ProgressView] = weakref.WeakSet()


def before_note() -> None:
    """[PUSH-5] Call before writing a line of one's own on a view's stream: no view clears it.

    Safe in a signal handler: it waits at most a moment for a view's lock (the interrupted
    thread may hold it) and goes on without it rather than deadlock.
    """
    for view in list(_VIEWS):
        view.keep_above()


def _mib(n: int) -> str:
    """Bytes as MiB to a tenth, without the unit.

    >>> _mib(3 * 1024 * 1024 // 2)
    '1.5'
    """
    return f"{n / (1024 * 1024):.1f}"


def _bar(done: int, size: int) -> str:
    """A bar ``[###.....]`` filled in proportion to ``done`` of ``size`` (full for an empty blob).

    >>> _bar(1, 2)
    '[############............]'
    """
    filled = int(_WIDTH * done / size) if size else _WIDTH
    return f"[{'#' * filled}{'.' * (_WIDTH - filled)}]"


class ProgressView:
    """Renders :class:`PushEvent` values as bars; call :meth:`finish` when the push ends.

    Pass :meth:`on_event` as a push's ``on_event``; it may be called from any thread.
    """

    def __init__(self, out: TextIO) -> None:
        """Draw on ``out`` (a terminal stream); nothing is drawn before the first event."""
        self._out = out
        self._lock = threading.Lock()
        # short digest -> (bytes sent, blob size), for the blobs in flight
        self._active: dict[str, tuple[int, int]] = {}
        self._done = self._skipped = self._mounted = 0
        self._bytes = 0
        self._lines = 0  # lines drawn last time, to be cleared before the next draw
        self._last = 0.0
        _VIEWS.add(self)

    def keep_above(self) -> None:
        """Leave what is on the stream now in place: the next frame is drawn below it."""
        locked = self._lock.acquire(timeout=0.2)
        try:
            self._lines = 0
        finally:
            if locked:
                self._lock.release()

    def on_event(self, event: PushEvent) -> None:
        """Count ``event``, and redraw when a blob finished or the interval has passed."""
        with self._lock:
            self._count(event)
            now = time.monotonic()
            # a finished blob is always drawn, so the totals never lag behind the end
            if event.kind is PushEventKind.DONE or now - self._last >= _INTERVAL:
                self._last = now
                self._draw()

    def _count(self, event: PushEvent) -> None:
        """Fold ``event`` into the tallies (the caller holds the lock)."""
        key = event.digest.short
        if event.kind in (PushEventKind.START, PushEventKind.PROGRESS):
            # events carry a running total: add only what is new since the last one
            previous = self._active.get(key, (0, event.size))[0]
            self._bytes += event.done - previous
            self._active[key] = (event.done, event.size)
            return
        previous = self._active.pop(key, (0, event.size))[0]
        if event.action in _SENDING:
            # the last progress event may have come before the last bytes: count the rest
            self._bytes += event.size - previous
            self._done += 1
        elif event.action is BlobAction.MOUNT:
            self._mounted += 1
        else:
            self._skipped += 1

    def _draw(self) -> None:
        """Replace the lines drawn last time with a bar per blob in flight and the totals line."""
        # [SEC-5] the labels are short digests today; escaped anyway, since this view is the
        # one writer of deliberate escape codes and must never pass on anyone else's
        lines = [
            f"  {printable(key)}  {_bar(done, size)} {_mib(done)}/{_mib(size)} MiB"
            for key, (done, size) in sorted(self._active.items())
        ]
        lines.append(
            f"  uploaded {self._done} blobs ({_mib(self._bytes)} MiB), mounted {self._mounted}, "
            f"already there {self._skipped}"
        )
        # one write, so another thread's output (or the terminal) never splits a frame
        self._out.write(_UP_AND_CLEAR * self._lines + "\n".join(lines) + "\n")
        self._out.flush()
        self._lines = len(lines)

    def finish(self) -> None:
        """Draw the final state (no blob in flight)."""
        with self._lock:
            self._active.clear()
            self._draw()
