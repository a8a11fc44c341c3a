"""Where the test registry keeps its bytes: in memory or in a directory ([TESTREG-2]).

A backend is a flat map from ``/``-separated keys to byte strings, with streaming reads and
appends so that a blob never has to be held whole by the code that serves or receives it.
:mod:`ocimerge.testing.storage` gives the keys their registry meaning. Keys are built by
that module from validated repository names, tags and digests only.

>>> backend = MemoryBackend()
>>> with backend.appender("uploads/u1") as out:
...     _ = out.write(b"hello ")
...     _ = out.write(b"world")
>>> backend.move("uploads/u1", "blobs/x")
>>> backend.size("blobs/x"), backend.open("blobs/x", 6).read()
(11, b'world')
>>> backend.keys("blobs/")
['blobs/x']
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Protocol, cast

__all__ = ["Backend", "DirectoryBackend", "MemoryBackend"]


class Backend(Protocol):
    """What :class:`~ocimerge.testing.storage.Storage` needs of a place to keep bytes."""

    def read(self, key: str) -> bytes | None:
        """A small value whole (a tag, a link, a manifest), or None when absent."""

    def write(self, key: str, data: bytes) -> None:
        """Replace ``key`` with ``data``, atomically."""

    def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""

    def size(self, key: str) -> int | None:
        """The length of ``key``'s value, or None when absent."""

    def open(self, key: str, offset: int = 0) -> BinaryIO:
        """A stream of ``key``'s value from ``offset``; :class:`KeyError` when absent."""

    def appender(self, key: str) -> BinaryIO:
        """A stream that appends to ``key`` (made empty when absent); close it when done."""

    def truncate(self, key: str, size: int) -> None:
        """Cut an appended value back to its first ``size`` bytes."""

    def move(self, source: str, target: str) -> None:
        """Rename ``source`` to ``target``, replacing it."""

    def keys(self, prefix: str) -> list[str]:
        """Every key that starts with ``prefix``, sorted."""


class _Appending(io.RawIOBase):
    """A writable stream appending to one bytearray of a :class:`MemoryBackend`."""

    def __init__(self, target: bytearray, lock: threading.Lock) -> None:
        self._target = target
        self._lock = lock

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        with self._lock:
            self._target += data
        return len(data)


class _Reading(io.RawIOBase):
    """A readable stream over a memoryview: serving a blob from memory copies no more than a read asks."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        piece = self._view[self._at : self._at + len(buffer)]
        buffer[: len(piece)] = piece
        self._at += len(piece)
        return len(piece)


class MemoryBackend:
    """Values in a dict: ``bytes`` when written whole, ``bytearray`` when appended (uploads,
    and the blobs they became)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, bytes | bytearray] = {}

    def read(self, key: str) -> bytes | None:
        with self._lock:
            value = self._values.get(key)
        return None if value is None else bytes(value)

    def write(self, key: str, data: bytes) -> None:
        with self._lock:
            self._values[key] = bytes(data)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._values.pop(key, None) is not None

    def size(self, key: str) -> int | None:
        with self._lock:
            value = self._values.get(key)
        return None if value is None else len(value)

    def open(self, key: str, offset: int = 0) -> BinaryIO:
        with self._lock:
            value = self._values.get(key)
            if value is None:
                raise KeyError(key)
            # a memoryview slices the value without copying the blob
            view = memoryview(value)
        return cast(BinaryIO, io.BufferedReader(_Reading(view[offset:])))

    def appender(self, key: str) -> BinaryIO:
        with self._lock:
            value = self._values.get(key)
            if not isinstance(value, bytearray):
                value = self._values[key] = bytearray(value or b"")
        return cast(BinaryIO, io.BufferedWriter(cast(io.RawIOBase, _Appending(value, self._lock))))

    def truncate(self, key: str, size: int) -> None:
        with self._lock:
            value = self._values.get(key)
            if isinstance(value, bytearray):
                del value[size:]

    def move(self, source: str, target: str) -> None:
        with self._lock:
            self._values[target] = self._values.pop(source)  # no copy: a moved value is appended no more

    def keys(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(k for k in self._values if k.startswith(prefix))


class DirectoryBackend:
    """Values as files under ``root`` (a key is a relative path); survives a restart."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key

    def read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, path)  # a reader sees the old value or the new one

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, key: str, offset: int = 0) -> BinaryIO:
        try:
            stream = self._path(key).open("rb")
        except FileNotFoundError:
            raise KeyError(key) from None
        stream.seek(offset)
        return stream

    def appender(self, key: str) -> BinaryIO:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("ab")

    def truncate(self, key: str, size: int) -> None:
        with self._path(key).open("r+b") as stream:
            stream.truncate(size)

    def move(self, source: str, target: str) -> None:
        path = self._path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path(source), path)

    def keys(self, prefix: str) -> list[str]:
        # the prefix's directory part is walked; the rest filters names
        base = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else self.root
        if not base.is_dir():
            return []
        found = (p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())
        return sorted(k for k in found if k.startswith(prefix) and "/.tmp-" not in k)
