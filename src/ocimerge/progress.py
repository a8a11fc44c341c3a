"""Progress on stderr: bars redrawn in place on a terminal, or plain lines for logs ([PROGRESS-1]).

Both views take the same :class:`~ocimerge.events.PushEvent` values, from a push, ``create -o``,
``verify`` or ``bundle`` alike; the events come from several threads, so counting and
drawing take a lock. [PROGRESS-2] ``PLAN`` events give the totals up front; the rate is
smoothed over the last few seconds of bytes moved, and the ETA is what is left at that rate.

:class:`TerminalView` [PROGRESS-3] redraws in place: it moves the cursor up over the lines it
drew last time and clears them. That holds only if no line wrapped, so every line is shorter
than the terminal's width, read again at each frame: bars shrink, then fields are dropped,
then the line is cut. It draws nothing until ``delay`` has passed, so a quick run stays silent.

:class:`PlainView` [PROGRESS-4] never writes an escape code: a line per finished blob, a
summary every ``interval`` seconds, and a final summary.

[PUSH-5] A line written by someone else (the Ctrl-C notice) is kept: :func:`before_note`
makes every terminal view draw its next frame below it.
"""

from __future__ import annotations

import abc
import collections
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import TextIO

from ocimerge.events import BlobAction, PushEvent, PushEventKind
from ocimerge.text import human, printable

__all__ = [
    "DELAY",
    "FRAME_INTERVAL",
    "SUMMARY_INTERVAL",
    "PlainView",
    "ProgressView",
    "TerminalView",
    "before_note",
    "duration",
    "fit",
]

#: ANSI: cursor up one line, then erase that whole line.
_UP_AND_CLEAR = "\x1b[1A\x1b[2K"
#: The actions that move bytes: their bytes count towards the rate.
_MOVING = frozenset({BlobAction.UPLOAD, BlobAction.COPY, BlobAction.WRITE, BlobAction.VERIFY, BlobAction.FETCH})
#: [PROGRESS-4] What each action is called in a line, in the order the summary lists them.
VERBS: dict[BlobAction | None, str] = {
    BlobAction.UPLOAD: "uploaded",
    BlobAction.COPY: "copied",
    BlobAction.MOUNT: "mounted",
    BlobAction.WRITE: "written",
    BlobAction.VERIFY: "verified",
    BlobAction.FETCH: "fetched",
    BlobAction.SKIP: "already there",
    BlobAction.FOREIGN: "foreign, not copied",
    None: "failed",
}
#: Seconds of history the rate is smoothed over.
_WINDOW = 5.0
#: [PROGRESS-5] Seconds a view waits before anything periodic: a quick run stays silent.
DELAY = 1.0
#: Seconds between a terminal view's frames: a terminal repainted faster only flickers.
FRAME_INTERVAL = 0.1
#: [PROGRESS-4] Seconds between a plain view's summary lines.
SUMMARY_INTERVAL = 5.0
#: Characters in a full bar.
_BAR = 24

#: A clock: seconds, monotonic.
Clock = Callable[[], float]

#: The views alive, for :func:`before_note`; weak, so a finished view is forgotten.
_VIEWS: weakref.WeakSet[ProgressView] = weakref.WeakSet()


def before_note() -> None:
    """[PUSH-5] Call before writing a line of one's own on a view's stream: no view clears it.

    Safe in a signal handler: it waits at most a moment for a view's lock (the interrupted
    thread may hold it) and goes on without it rather than deadlock.
    """
    for view in list(_VIEWS):
        view.keep_above()


def duration(seconds: float) -> str:
    """An ETA or elapsed time, to the second: ``42s``, ``3m05s``, ``2h07m``.

    >>> duration(42.4), duration(185), duration(7620)
    ('42s', '3m05s', '2h07m')
    """
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _bar(done: int, size: int, width: int) -> str:
    """A bar ``[###...]`` of ``width`` inner characters, filled in proportion (full when empty).

    >>> _bar(1, 2, 8)
    '[####....]'
    """
    filled = min(width, int(width * done / size)) if size else width
    return f"[{'#' * filled}{'.' * (width - filled)}]"


class _Tally:
    """Totals over the events so far: planned, done, bytes moved, and a smoothed rate."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.planned = self.planned_bytes = 0
        self.done = self.done_bytes = 0
        self.moved = 0  # bytes read or sent: what the rate measures (a skip moves none)
        self.counts: collections.Counter[BlobAction | None] = collections.Counter()
        # short digest -> (bytes moved, blob size), for the blobs in flight
        self.active: dict[str, tuple[int, int]] = {}
        self.started = clock()
        self._samples: collections.deque[tuple[float, int]] = collections.deque([(self.started, 0)])

    def count(self, event: PushEvent) -> None:
        """Fold ``event`` into the totals."""
        key = event.digest.short
        if event.kind is PushEventKind.PLAN:
            self.planned += 1
            self.planned_bytes += event.size
            return
        previous = self.active.pop(key, (0, event.size))[0]
        if event.kind is PushEventKind.DONE:
            self.done += 1
            self.counts[event.action] += 1
            # a blob skipped or mounted is done in full without a byte moved; one given up
            # (action None) moved what it moved, and the rest of it is no longer to come
            moved = event.size if event.action in _MOVING else event.done if event.action is None else previous
            self._move(moved - previous)
            self.done_bytes += event.size - moved
            return
        # events carry a running total: add only what is new since the last one
        self._move(event.done - previous)
        self.active[key] = (event.done, event.size)

    def _move(self, n: int) -> None:
        self.moved += n
        self.done_bytes += n
        now = self.clock()
        self._samples.append((now, self.moved))
        while len(self._samples) > 2 and self._samples[1][0] <= now - _WINDOW:
            self._samples.popleft()

    def rate(self) -> float | None:
        """Bytes a second over the last :data:`_WINDOW` seconds; None before any time passed."""
        now = self.clock()
        since, moved = self._samples[0]
        if now - since <= 0:
            return None
        return (self.moved - moved) / (now - since)

    def eta(self) -> float | None:
        """Seconds left at :meth:`rate`; None when the totals or the rate are not known, or all is done."""
        rate = self.rate()
        left = self.planned_bytes - self.done_bytes
        if not self.planned or not rate or left <= 0:  # nothing left: no ETA to give
            return None
        return left / rate

    def fields(self) -> list[str]:
        """[PROGRESS-2] The totals, most important first: blobs, bytes, rate, ETA, what was done."""
        blobs = f"{self.done}/{self.planned} blobs" if self.planned >= self.done else f"{self.done} blobs"
        size = (
            f"{human(self.done_bytes)}/{human(self.planned_bytes)}"
            if self.planned_bytes >= self.done_bytes and self.planned
            else human(self.done_bytes)
        )
        found = [blobs, size]
        rate, eta = self.rate(), self.eta()
        if rate is not None:
            found.append(f"{human(int(rate))}/s")
        if eta is not None:
            found.append(f"ETA {duration(eta)}")
        counts = ", ".join(f"{verb} {self.counts[a]}" for a, verb in VERBS.items() if self.counts[a])
        if counts:
            found.append(counts)
        return found


class ProgressView(abc.ABC):
    """What both views share: the lock, the totals, and the calls a command makes.

    Pass :meth:`on_event` as a command's ``on_event`` (any thread); call :meth:`finish` once
    at the end, however the command ended.
    """

    def __init__(self, out: TextIO, *, clock: Clock = time.monotonic, delay: float = DELAY) -> None:
        """Write on ``out``; ``clock`` is injectable for tests; nothing periodic before ``delay`` seconds."""
        self._out = out
        self._clock = clock
        self._delay = delay
        self._lock = threading.Lock()
        self._tally = _Tally(clock)
        self._finished = False
        self._stopped = False
        _VIEWS.add(self)

    def keep_above(self) -> None:  # noqa: B027 - deliberately empty: only a terminal view redraws
        """[PUSH-5] Leave what is on the stream now in place (only a terminal view redraws)."""

    def on_event(self, event: PushEvent) -> None:
        """Count ``event`` and write whatever it calls for."""
        with self._lock:
            self._tally.count(event)
            self._after(event)

    def finish(self, *, stopped: bool = False) -> None:
        """Write the final state (no blob in flight); a second call writes nothing.

        ``stopped``: the run ended by an error or an interrupt, so the plain view's last line
        says ``stopped:`` rather than ``done:`` ([PROGRESS-4]).
        """
        with self._lock:
            if self._finished:
                return
            self._finished = True
            self._stopped = stopped
            self._tally.active.clear()
            self._final()

    def _due(self) -> bool:
        """Whether ``delay`` has passed since the view was made: the run took more than a moment."""
        return self._clock() - self._tally.started >= self._delay

    def _write(self, text: str) -> None:
        # one write, so another thread's output (or the terminal) never splits a frame
        self._out.write(text)
        self._out.flush()

    @abc.abstractmethod
    def _after(self, event: PushEvent) -> None:
        """Write what ``event`` calls for (the caller holds the lock)."""

    @abc.abstractmethod
    def _final(self) -> None:
        """Write the last frame or summary (the caller holds the lock)."""


def _terminal_size(out: TextIO) -> tuple[int, int]:
    """``out``'s terminal (columns, rows), read now; 80 by 24 when it has none."""
    try:
        size = os.get_terminal_size(out.fileno())
    except (OSError, ValueError, AttributeError):
        return 80, 24
    return (size.columns or 80), (size.lines or 24)


def fit(fields: list[str], width: int, sep: str = "  ") -> str:
    """[PROGRESS-3] As many of ``fields`` (most important first) as fit in fewer than ``width``
    characters, indented by two; the first alone cut when even it does not fit.

    >>> fit(["3/10 blobs", "1.0/4.0 MiB", "2.0 MiB/s"], 30)
    '  3/10 blobs  1.0/4.0 MiB'
    >>> fit(["3/10 blobs", "1.0/4.0 MiB"], 8)
    '  3/10 '
    """
    line = "  " + fields[0]
    for field in fields[1:]:
        if len(line) + len(sep) + len(field) >= width:
            break
        line += sep + field
    return line[: max(width - 1, 0)]


class TerminalView(ProgressView):
    """[PROGRESS-3] A bar per blob in flight and a totals line, redrawn in place on a terminal."""

    def __init__(
        self,
        out: TextIO,
        *,
        clock: Clock = time.monotonic,
        delay: float = DELAY,
        interval: float = FRAME_INTERVAL,
        size: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        """Draw on ``out`` at most every ``interval`` seconds, after ``delay``; ``size`` gives
        (columns, rows), by default ``out``'s terminal's, read at every frame."""
        super().__init__(out, clock=clock, delay=delay)
        self._interval = interval
        self._size = size or (lambda: _terminal_size(out))
        self._lines = 0  # lines drawn last time, to be cleared before the next draw
        self._last: float | None = None
        self._drawn = False

    def keep_above(self) -> None:
        """Leave what is on the stream now in place: the next frame is drawn below it."""
        locked = self._lock.acquire(timeout=0.2)
        try:
            self._lines = 0
        finally:
            if locked:
                self._lock.release()

    def _after(self, _event: PushEvent) -> None:
        now = self._clock()
        if not self._due() or (self._last is not None and now - self._last < self._interval):
            return
        self._last = now
        self._draw()

    def _final(self) -> None:
        if self._drawn or self._due():  # a quick run stays silent to the end
            self._draw()

    def frame(self) -> list[str]:
        """The lines of one frame for the terminal's size now, each shorter than its width."""
        columns, rows = self._size()
        # never more lines than the terminal has rows: "cursor up" stops at the top line
        room = max(rows - 2, 0)
        lines = [self._blob_line(key, done, size, columns) for key, (done, size) in sorted(self._tally.active.items())]
        return [*lines[:room], fit(self._tally.fields(), columns)]

    @staticmethod
    def _blob_line(key: str, done: int, size: int, columns: int) -> str:
        """One blob in flight: its short digest, a bar as wide as fits, its bytes."""
        # [SEC-5] the labels are short digests; escaped anyway, since this view is the one
        # writer of deliberate escape codes and must never pass on anyone else's
        label, amount = f"  {printable(key)}", f"{human(done)}/{human(size)}"
        width = min(_BAR, columns - 1 - len(label) - len(amount) - 5)  # 5: two spaces, brackets, a space
        if width >= 4:
            return f"{label}  {_bar(done, size, width)} {amount}"
        return fit([printable(key), amount], columns)

    def _draw(self) -> None:
        """Replace the lines drawn last time with a new frame."""
        lines = self.frame()
        self._write(_UP_AND_CLEAR * self._lines + "\n".join(lines) + "\n")
        self._lines = len(lines)
        self._drawn = True


class PlainView(ProgressView):
    """[PROGRESS-4] Lines for a log: one per finished blob, a summary every ``interval`` seconds."""

    def __init__(
        self, out: TextIO, *, clock: Clock = time.monotonic, delay: float = DELAY, interval: float = SUMMARY_INTERVAL
    ) -> None:
        """Write on ``out``; summaries every ``interval`` seconds once ``delay`` has passed."""
        super().__init__(out, clock=clock, delay=delay)
        self._interval = interval
        self._last = self._tally.started

    def _after(self, event: PushEvent) -> None:
        lines = []
        if event.kind is PushEventKind.DONE:
            size = human(event.size)
            lines.append(f"{VERBS[event.action]} {printable(event.digest)[:19]}… {size}")
        now = self._clock()
        if self._due() and now - self._last >= self._interval:
            self._last = now
            lines.append(f"progress: {', '.join(self._tally.fields()[:4])}")
        if lines:
            self._write("".join(f"{line}\n" for line in lines))

    def _final(self) -> None:
        tally = self._tally
        if not tally.done:
            return  # nothing happened (a dry run, a failure before the first blob)
        elapsed = self._clock() - tally.started
        average = f", {human(int(tally.moved / elapsed))}/s" if elapsed > 0 and tally.moved else ""
        fields = tally.fields()
        word = "stopped" if self._stopped else "done"
        self._write(f"{word}: {fields[-1]}; {fields[0]}, {fields[1]} in {duration(elapsed)}{average}\n")
