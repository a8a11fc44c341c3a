"""Read-only file systems over a directory or a tar archive, members read in place by offset.

[TAR-1] Member names are cleaned (``./x`` is ``x``); an absolute name or one with a ``..``
component is refused, as is a symbolic or hard link whose target leaves the archive.
[TAR-2] Nothing is extracted: a member is a window (offset, size) on the archive file,
opened afresh for each reader. A member whose data runs past the end of the file means the
archive is truncated. [TAR-3] An archive compressed as a whole (gzip, zstd, bzip2, xz) is
decompressed once, streaming, into an anonymous temporary file that is deleted on close.

Why windows rather than ``tarfile.extractfile``: a ``TarFile`` has one file position, so two
readers of one archive would fight over it; an independent ``open`` per reader lets a
push stream many members at once, in constant memory, without extracting them.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

import attrs
import zstandard

from ocimerge.errors import ArchiveError, BlobMissingError, DocumentError, NotAnImageError, SourceNotFoundError

__all__ = ["DirFS", "FileSystem", "TarFS", "open_filesystem"]

# [TAR-1] the same bound as Linux's MAXSYMLINKS: deep enough for any real archive, and it
# turns a link cycle (a -> b -> a) into an error instead of a hang
_MAX_LINK_DEPTH = 40


class FileSystem(Protocol):
    """What image readers need of a directory or an archive.

    Paths are archive paths (``/``-separated, relative); every implementation cleans them
    by [TAR-1] and refuses any that would leave the directory or archive. ``size`` and
    ``open`` raise ``BlobMissingError`` for a path that is not a regular file.
    """

    @property
    def name(self) -> str:
        """The path the user gave, for messages."""
        ...

    def exists(self, path: str) -> bool:
        """Whether ``path`` is a regular file (links followed); never raises for absence."""
        ...

    def size(self, path: str) -> int:
        """The length of the file in bytes, without reading it."""
        ...

    def open(self, path: str) -> BinaryIO:
        """A fresh raw stream over the member; its length is :meth:`size`."""
        ...

    def close(self) -> None:
        """Release what the file system holds; streams already opened stay usable."""
        ...


def read_small(fs: FileSystem, path: str, limit: int) -> bytes:
    """Read a whole member of at most ``limit`` bytes (a JSON document, never a layer).

    The size is checked before reading, so an oversized member costs nothing ([JSON-3]):
    ``DocumentError`` when it is over ``limit``, ``ArchiveError`` when fewer bytes arrive
    than the member declares. The bytes are not verified; callers hash them themselves.
    """
    size = fs.size(path)
    if size > limit:
        raise DocumentError(f"{fs.name}: {path} is {size} bytes, over the {limit}-byte limit for a document")
    with fs.open(path) as stream:
        data = stream.read(size)
    if len(data) != size:
        raise ArchiveError(f"{fs.name}: {path}: truncated")
    return data


class _Window:
    """A bounded raw stream over ``[offset, offset + size)`` of a file, opened on creation.

    It never reads past the window, so a member cannot leak the next header's bytes into
    a digest; unbuffered, because the ``VerifyingReader`` above it does its own chunking.
    """

    def __init__(self, path: str, offset: int, size: int) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._file.seek(offset)
        self._remaining = size

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left when ``n < 0``); ``b""`` at the window's end."""
        if self._remaining <= 0:
            return b""
        want = self._remaining if n < 0 else min(n, self._remaining)
        data = self._file.read(want) or b""
        self._remaining -= len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` from the window without copying; 0 at its end (the copy loops use it)."""
        if self._remaining <= 0:
            return 0
        view = memoryview(buffer)
        if len(view) > self._remaining:
            view = view[: self._remaining]
        n = self._file.readinto(view) or 0
        self._remaining -= n
        return n

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> _Window:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@attrs.frozen
class _Member:
    """Where a regular member's data lies in the (uncompressed) archive file."""

    offset: int
    size: int


def clean_member_name(name: str, archive: str) -> str:
    """[TAR-1] The cleaned name of a member; raise on absolute names and ``..``."""
    # a drive prefix is absolute too: extracted on Windows, C:/x would escape any directory
    if name.startswith("/") or (len(name) > 2 and name[0].isalpha() and name[1] == ":" and name[2] in "/\\"):
        raise ArchiveError(f"{archive}: member {name!r} has an absolute path; refusing the archive")
    if ".." in name.split("/"):
        raise ArchiveError(f"{archive}: member {name!r} has a '..' component; refusing the archive")
    cleaned = posixpath.normpath(name)
    # "." (and "./") name the archive root: the caller skips them like directory entries
    return "" if cleaned == "." else cleaned


def _link_target(member: tarfile.TarInfo, name: str, archive: str) -> str:
    """[TAR-1] The cleaned archive path a link points at; raise when it leaves the archive."""
    kind = "symlink" if member.issym() else "hard link"
    target = member.linkname
    outside = ArchiveError(f"{archive}: {kind} {member.name!r} points outside the archive ({target!r})")
    if target.startswith("/"):
        raise outside
    # A symlink is relative to its own directory; a hard link names an archive path.
    base = posixpath.dirname(name) if member.issym() else ""
    joined = posixpath.normpath(posixpath.join(base, target))
    if joined == ".." or joined.startswith("../"):
        raise outside
    return joined


class TarFS:
    """An uncompressed tar file seen as a read-only file system (members by offset).

    The archive is scanned once, on construction; afterwards it is only read by offset.
    """

    def __init__(self, path: str, *, name: str, temporary: bool = False) -> None:
        """Scan ``path``; ``name`` is for messages, ``temporary`` deletes the file on close.

        Raises ``ArchiveError`` for an unreadable, truncated or hostile archive ([TAR-1],
        [TAR-2]); a temporary file is deleted even then, so a failed open leaves nothing.
        """
        self._path = path
        self._name = name
        self._temporary = temporary
        self._members: dict[str, _Member] = {}
        self._links: dict[str, str] = {}
        try:
            self._scan()
        except BaseException:
            self.close()
            raise

    def _scan(self) -> None:
        """Index every regular member and link; a later member replaces an earlier one."""
        length = os.path.getsize(self._path)
        try:
            with tarfile.open(self._path, mode="r:") as tar:
                for member in tar:
                    name = clean_member_name(member.name, self._name)
                    if not name:  # the archive root itself
                        continue
                    if member.issym() or member.islnk():
                        self._links[name] = _link_target(member, name, self._name)
                        self._members.pop(name, None)
                    elif member.isreg():
                        # [TAR-2] fail at open, not halfway through a push, on a cut-off file
                        if member.offset_data + member.size > length:
                            raise ArchiveError(
                                f"{self._name}: truncated archive: member {member.name!r} "
                                f"needs {member.size} bytes but the file ends first"
                            )
                        self._members[name] = _Member(member.offset_data, member.size)
                        self._links.pop(name, None)
                    # directories, devices and fifos carry no image content: skipped
        except tarfile.TarError as exc:
            raise ArchiveError(f"{self._name}: not a readable tar archive ({exc})") from None
        except EOFError:
            raise ArchiveError(f"{self._name}: truncated archive") from None

    @property
    def name(self) -> str:
        return self._name

    def _resolve(self, path: str) -> _Member | None:
        """The member ``path`` ends at after following links; None when it names nothing."""
        path = posixpath.normpath(path)
        for _ in range(_MAX_LINK_DEPTH):
            member = self._members.get(path)
            if member is not None:
                return member
            target = self._links.get(path)
            if target is None:
                return None
            path = target
        raise ArchiveError(f"{self._name}: too many levels of links resolving {path!r}")

    def exists(self, path: str) -> bool:
        return self._resolve(path) is not None

    def size(self, path: str) -> int:
        member = self._resolve(path)
        if member is None:
            raise BlobMissingError(f"{self._name}: member {path} is missing")
        return member.size

    def open(self, path: str) -> BinaryIO:
        member = self._resolve(path)
        if member is None:
            raise BlobMissingError(f"{self._name}: member {path} is missing")
        return _Window(self._path, member.offset, member.size)  # type: ignore[return-value]

    def names(self) -> list[str]:
        """Every regular file and link name, cleaned."""
        return sorted({*self._members, *self._links})

    def close(self) -> None:
        """Delete the decompressed temporary copy, if this is one; idempotent."""
        if self._temporary:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)


class DirFS:
    """A directory seen as a read-only file system; links may not leave it.

    Every path is resolved (symlinks included) before use and must stay under the root,
    so an OCI layout directory cannot make us read ``/etc/shadow`` through a planted link.
    """

    def __init__(self, root: str, *, name: str) -> None:
        self._root = Path(root).resolve()
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def _path(self, path: str) -> Path:
        """The resolved file for ``path``; ``ArchiveError`` when it lies outside the root."""
        cleaned = clean_member_name(path, self._name)
        full = (self._root / cleaned).resolve()
        if full != self._root and self._root not in full.parents:
            raise ArchiveError(f"{self._name}: {path} resolves outside the directory")
        return full

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def size(self, path: str) -> int:
        full = self._path(path)
        try:
            return full.stat().st_size
        except FileNotFoundError:
            raise BlobMissingError(f"{self._name}: {path} is missing") from None

    def open(self, path: str) -> BinaryIO:
        full = self._path(path)
        try:
            return open(full, "rb", buffering=0)
        except (FileNotFoundError, IsADirectoryError):
            raise BlobMissingError(f"{self._name}: {path} is missing") from None

    def close(self) -> None:
        """Nothing to release: every ``open`` returns its own file."""


_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
_BZIP2 = b"BZh"
_XZ = b"\xfd7zXZ\x00"


def _decompressor(magic: bytes, path: str) -> BinaryIO | None:
    """[TAR-3] A decompressing stream over ``path`` when ``magic`` says it is compressed."""
    if magic.startswith(_GZIP):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if magic.startswith(_ZSTD):
        raw = open(path, "rb")  # noqa: SIM115 - closed with the reader
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    if magic.startswith(_BZIP2):
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if magic.startswith(_XZ):
        return lzma.open(path, "rb")  # type: ignore[return-value]
    return None


def _looks_like_tar(path: str) -> bool:
    """[TAR-3] Whether the file's first header block is a tar header (ustar or v7)."""
    with open(path, "rb") as f:
        head = f.read(512)
    if len(head) < 512:
        return False
    if head[257:262] == b"ustar":
        return True
    try:  # old v7 tars have no magic: a header whose checksum verifies is a tar
        tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def open_filesystem(path: str, *, name: str | None = None) -> DirFS | TarFS:
    """Open ``path`` as a directory or a (possibly compressed) tar; sniffed, not guessed.

    ``name`` labels messages (default: ``path``). Raises ``SourceNotFoundError`` when
    nothing is there, ``NotAnImageError`` when the file is no tar (compressed or not) and
    ``ArchiveError`` when it is a broken one. The caller owns the result and must close it.
    """
    label = name or path
    if os.path.isdir(path):
        return DirFS(path, name=label)
    if not os.path.exists(path):
        raise SourceNotFoundError(f"{label}: no such file or directory")
    with open(path, "rb") as f:
        magic = f.read(8)
    stream = _decompressor(magic, path)
    if stream is not None:
        # decompress once to a seekable file: members are then windows on it, as for a
        # plain tar, instead of re-inflating the stream for every member read
        fd, temp = tempfile.mkstemp(prefix="ocimerge-", suffix=".tar")
        try:
            with os.fdopen(fd, "wb") as out, stream:
                shutil.copyfileobj(stream, out, 1024 * 1024)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            os.unlink(temp)
            raise ArchiveError(f"{label}: cannot decompress ({exc})") from None
        except Exception as exc:  # zstandard.ZstdError has no common base we can name
            os.unlink(temp)
            raise ArchiveError(f"{label}: cannot decompress ({exc})") from None
        if not _looks_like_tar(temp):
            os.unlink(temp)
            raise NotAnImageError(f"{label}: compressed, but not a tar archive inside")
        return TarFS(temp, name=label, temporary=True)
    if not _looks_like_tar(path):
        raise NotAnImageError(f"{label}: not an OCI layout, an OCI archive or a docker-save archive")
    return TarFS(path, name=label)
