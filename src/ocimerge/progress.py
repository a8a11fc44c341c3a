"""Progress on a terminal: one bar per blob being uploaded, and a total line ([PUSH-3]).

Drawn on stderr only when it is a terminal, at most ten times a second; the push reports
events from several threads, so drawing takes a lock.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

from ocimerge.sinks.registry import BlobAction, PushEvent, PushEventKind

__all__ = ["ProgressView"]

_WIDTH = 24
_INTERVAL = 0.1


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f}"


class ProgressView:
    """Renders :class:`PushEvent` values as bars; call :meth:`finish` when the push ends."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._active: dict[str, tuple[int, int]] = {}
        self._done = self._skipped = self._mounted = 0
        self._bytes = 0
        self._lines = 0
        self._last = 0.0

    def on_event(self, event: PushEvent) -> None:
        with self._lock:
            key = event.digest.short
            if event.kind in (PushEventKind.START, PushEventKind.PROGRESS):
                previous = self._active.get(key, (0, event.size))[0]
                self._bytes += event.done - previous
                self._active[key] = (event.done, event.size)
            elif event.kind is PushEventKind.DONE:
                previous = self._active.pop(key, (0, event.size))[0]
                if event.action in (BlobAction.UPLOAD, BlobAction.COPY):
                    self._bytes += event.size - previous
                    self._done += 1
                elif event.action is BlobAction.MOUNT:
                    self._mounted += 1
                else:
                    self._skipped += 1
            now = time.monotonic()
            if event.kind is PushEventKind.DONE or now - self._last >= _INTERVAL:
                self._last = now
                self._draw()

    def _draw(self) -> None:
        lines = []
        for key, (done, size) in sorted(self._active.items()):
            filled = int(_WIDTH * done / size) if size else _WIDTH
            lines.append(f"  {key}  [{'#' * filled}{'.' * (_WIDTH - filled)}] {_mib(done)}/{_mib(size)} MiB")
        lines.append(
            f"  uploaded {self._done} blobs ({_mib(self._bytes)} MiB), mounted {self._mounted}, "
            f"already there {self._skipped}"
        )
        text = "".join("\x1b[1A\x1b[2K" for _ in range(self._lines))  # up and clear our old lines
        text += "\n".join(lines) + "\n"
        self._out.write(text)
        self._out.flush()
        self._lines = len(lines)

    def finish(self) -> None:
        """Draw the final state (no blob in flight)."""
        with self._lock:
            self._active.clear()
            self._draw()
