"""Read-only file systems over a directory or a tar archive, members read in place by offset.

[TAR-1] Member names are cleaned (``./x`` is ``x``); an absolute name or one with a ``..``
component is refused, as is a symbolic or hard link whose target leaves the archive.
[TAR-2] Nothing is extracted: a member is a window (offset, size) on the archive file,
opened afresh for each reader. A member whose data runs past the end of the file means the
archive is truncated. [TAR-3] An archive compressed as a whole (gzip, zstd, bzip2, xz) is
decompressed once, streaming, into an anonymous, capped spool file, but only once its first
inflated block has proved to be a tar header [SEC-4]. [TAR-4] Only regular files are ever
opened, and extended tar headers over 1 MiB are refused before tarfile reads them [SEC-9].

Why windows rather than ``tarfile.extractfile``: a ``TarFile`` has one file position, so two
readers of one archive would fight over it; an independent ``open`` per reader lets a
push stream many members at once, in constant memory, without extracting them.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import posixpath
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

import attrs
import zstandard

from ocimerge.errors import (
    ArchiveError,
    BlobMissingError,
    DocumentError,
    NotAnImageError,
    SourceNotFoundError,
    UsageError,
)

__all__ = ["DirFS", "FileSystem", "TarFS", "open_filesystem"]

# [TAR-1] the same bound as Linux's MAXSYMLINKS: deep enough for any real archive, and it
# turns a link cycle (a -> b -> a) into an error instead of a hang
_MAX_LINK_DEPTH = 40


class FileSystem(Protocol):
    """What image readers need of a directory or an archive.

    Paths are archive paths (``/``-separated, relative); every implementation cleans them
    by [TAR-1] and refuses any that would leave the directory or archive. ``size`` and
    ``open`` raise ``BlobMissingError`` for a path that names nothing; ``exists``, ``size``
    and ``open`` raise ``ArchiveError`` for one that names something other than a regular
    file (a fifo, a device, a directory) [SEC-9].
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

    def identity(self, path: str) -> object:
        """A hashable value equal for two paths that resolve to one file (links followed)."""
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
    """A bounded raw stream over ``[offset, offset + size)`` of an open file.

    It owns ``fd`` (a descriptor of its own, usually an ``os.dup`` of the archive's) and
    reads with ``pread``, so windows never share a file position and any number of them can
    stream one archive at once — even a spool whose name is already unlinked ([SEC-4]). It
    never reads past the window, so a member cannot leak the next header's bytes into a
    digest; unbuffered, because the ``VerifyingReader`` above it does its own chunking.
    """

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self._fd = fd
        self._position = offset
        self._remaining = size

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left when ``n < 0``); ``b""`` at the window's end."""
        if self._remaining <= 0:
            return b""
        want = self._remaining if n < 0 else min(n, self._remaining)
        data = os.pread(self._fd, want, self._position)
        self._position += len(data)
        self._remaining -= len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` from the window without copying; 0 at its end (the copy loops use it)."""
        if self._remaining <= 0:
            return 0
        view = memoryview(buffer)
        if len(view) > self._remaining:
            view = view[: self._remaining]
        n = os.preadv(self._fd, [view], self._position)
        self._position += n
        self._remaining -= n
        return n

    def close(self) -> None:
        """Close the window's own descriptor; idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

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


#: [TAR-4][SEC-9] Extended headers (PAX ``x``/``g``/``X``, GNU long names ``L``/``K``) carry names
#: and attributes: a few hundred bytes in real archives. tarfile reads one whole into memory,
#: so a larger one is refused from its header block, before tarfile ever sees it.
MAX_EXTENDED_HEADER = 1024 * 1024
# [SEC-9] extended headers in a row before the member they describe: real archives chain at
# most three (g, x, L); tarfile recurses once per link, so a long chain must not reach it.
_MAX_EXTENDED_CHAIN = 16
_EXTENDED_TYPES = frozenset(b"xgXLK")
_BLOCK = 512


def _header_size(block: bytes) -> int | None:
    """The size field of a tar header block (octal or GNU base-256); None when unreadable."""
    field = block[124:136]
    if field[0] & 0x80:  # GNU base-256: big-endian, the top bit of the first byte marks it
        value = int.from_bytes(field[1:], "big")
        return -value if field[0] == 0xFF else value
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text or b"0", 8)
    except ValueError:
        return None


def _check_extended_headers(fd: int, offset: int, archive: str) -> None:
    """[TAR-4][SEC-9] Refuse an oversized or endless chain of extended headers starting at ``offset``.

    Reads only 512-byte header blocks (seeking over each extended header's data), so the
    check costs nothing for a normal member; a header tarfile would reject anyway (bad
    checksum, end of archive) is left for tarfile to report.
    """
    for _ in range(_MAX_EXTENDED_CHAIN):
        block = os.pread(fd, _BLOCK, offset)
        if len(block) < _BLOCK or block[156] not in _EXTENDED_TYPES:
            return
        size = _header_size(block)
        if size is None or size < 0:
            return
        if size > MAX_EXTENDED_HEADER:
            raise ArchiveError(
                f"{archive}: an extended tar header at offset {offset} is {size} bytes, over the "
                f"{MAX_EXTENDED_HEADER}-byte limit; refusing the archive"
            )
        offset += _BLOCK + -(-size // _BLOCK) * _BLOCK
    raise ArchiveError(
        f"{archive}: more than {_MAX_EXTENDED_CHAIN} extended tar headers in a row; refusing the archive"
    )


class TarFS:
    """An uncompressed tar file seen as a read-only file system (members by offset).

    The archive is scanned once, on construction; afterwards it is only read by offset,
    through windows on descriptors duplicated from the one this file system holds.
    """

    def __init__(self, file: BinaryIO, *, name: str) -> None:
        """Scan the open, seekable ``file`` (it becomes ours); ``name`` is for messages.

        The file may be a spool whose name is already gone ([SEC-4]): nothing here needs
        a path. Raises ``ArchiveError`` for an unreadable, truncated or hostile archive
        ([TAR-1], [TAR-2], [SEC-9]); the file is closed even then, so a spool never outlives
        a failed open.
        """
        self._file = file
        self._fd = file.fileno()
        self._name = name
        self._members: dict[str, _Member] = {}
        self._links: dict[str, str] = {}
        # [TAR-4][SEC-9] names whose last member is not a regular file (a fifo, a device): refused
        # by name rather than treated as absent, so the error says what is wrong
        self._others: dict[str, str] = {}
        try:
            self._scan()
        except BaseException:
            self.close()
            raise

    def _scan(self) -> None:
        """Index every regular member and link; a later member replaces an earlier one."""
        length = os.fstat(self._fd).st_size
        try:
            _check_extended_headers(self._fd, 0, self._name)
            with tarfile.open(fileobj=self._file, mode="r:") as tar:
                while (member := tar.next()) is not None:
                    self._add(member, length)
                    tar.members.clear()  # type: ignore[attr-defined]  # our index is enough
                    _check_extended_headers(self._fd, tar.offset, self._name)
        except tarfile.TarError as exc:
            raise ArchiveError(f"{self._name}: not a readable tar archive ({exc})") from None
        except (EOFError, ValueError):  # tarfile's sparse-header parsing fails with ValueError
            raise ArchiveError(f"{self._name}: truncated archive") from None

    def _add(self, member: tarfile.TarInfo, length: int) -> None:
        """Index one member: a link, a regular file's window, or a non-regular name."""
        name = clean_member_name(member.name, self._name)
        if not name or member.isdir():  # the archive root and directories carry no content
            return
        self._members.pop(name, None)
        self._links.pop(name, None)
        self._others.pop(name, None)
        if member.issym() or member.islnk():
            self._links[name] = _link_target(member, name, self._name)
        elif member.isreg():
            # [TAR-2] fail at open, not halfway through a push, on a cut-off file
            if member.offset_data + member.size > length:
                raise ArchiveError(
                    f"{self._name}: truncated archive: member {member.name!r} "
                    f"needs {member.size} bytes but the file ends first"
                )
            self._members[name] = _Member(member.offset_data, member.size)
        else:
            # [SEC-9] fifos and devices carry no image content: never opened
            self._others[name] = "a fifo" if member.isfifo() else "a device or special file"

    @property
    def name(self) -> str:
        return self._name

    def _resolve(self, path: str) -> _Member | None:
        """The member ``path`` ends at after following links; None when it names nothing.

        ``ArchiveError`` when it ends at a fifo or device member ([SEC-9]) or links loop.
        """
        path = posixpath.normpath(path)
        for _ in range(_MAX_LINK_DEPTH):
            member = self._members.get(path)
            if member is not None:
                return member
            target = self._links.get(path)
            if target is None:
                other = self._others.get(path)
                if other is not None:
                    raise ArchiveError(f"{self._name}: member {path} is {other}, not a regular file")
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
        return _Window(os.dup(self._fd), member.offset, member.size)  # type: ignore[return-value]

    def identity(self, path: str) -> object:
        """What ``path`` resolves to (its member's window): equal for two names of one file."""
        return self._resolve(path)

    def names(self) -> list[str]:
        """Every regular file and link name, cleaned."""
        return sorted({*self._members, *self._links})

    def close(self) -> None:
        """Close the archive; a spool ([SEC-4]) is freed when its last window closes. Idempotent."""
        self._file.close()


class DirFS:
    """A directory seen as a read-only file system; links may not leave it.

    Every path is resolved (symlinks included) before use and must stay under the root,
    so an OCI layout directory cannot make us read ``/etc/shadow`` through a planted link;
    and only regular files are ever opened, so a fifo planted as a ``Config`` cannot hang
    the run nor a device be read as a layer [SEC-9].
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

    def _stat(self, path: str) -> os.stat_result | None:
        """[TAR-4][SEC-9] The regular file's status; None when absent, ``ArchiveError`` when not regular."""
        try:
            status = self._path(path).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        self._require_regular(status, path)
        return status

    def _require_regular(self, status: os.stat_result, path: str) -> None:
        """[SEC-9] Raise ``ArchiveError`` naming ``path`` unless ``status`` is a regular file's."""
        if not stat.S_ISREG(status.st_mode):
            kind = "a directory" if stat.S_ISDIR(status.st_mode) else "a fifo, device or socket"
            raise ArchiveError(f"{self._name}: {path} is {kind}, not a regular file; refusing it")

    def exists(self, path: str) -> bool:
        return self._stat(path) is not None

    def size(self, path: str) -> int:
        status = self._stat(path)
        if status is None:
            raise BlobMissingError(f"{self._name}: {path} is missing")
        return status.st_size

    def open(self, path: str) -> BinaryIO:
        full = self._path(path)
        # [SEC-9] O_NONBLOCK: opening a fifo must not wait for a writer, and the check is
        # on the descriptor itself (fstat), so swapping the file after a stat gains nothing
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise BlobMissingError(f"{self._name}: {path} is missing") from None
        except IsADirectoryError:
            raise ArchiveError(f"{self._name}: {path} is a directory, not a regular file; refusing it") from None
        try:
            self._require_regular(os.fstat(fd), path)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return open(fd, "rb", buffering=0)

    def identity(self, path: str) -> object:
        """The file's (device, inode): equal for two paths that reach one file."""
        status = self._stat(path)
        return None if status is None else (status.st_dev, status.st_ino)

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


#: [SEC-4] The most a compressed archive may inflate to in the spool: far above any real
#: image archive, far below filling a disk. ``OCIMERGE_MAX_SPOOL`` (bytes) overrides it.
MAX_SPOOL = 64 * 1024**3
SPOOL_ENV = "OCIMERGE_MAX_SPOOL"
# [SEC-3] 1 MiB per inflate step: every decompressor here returns at most what is asked
_CHUNK = 1024 * 1024


def spool_limit() -> int:
    """[SEC-4] The spool cap in bytes: ``$OCIMERGE_MAX_SPOOL`` when set, else :data:`MAX_SPOOL`.

    Raises ``UsageError`` when the variable is set to anything but a positive integer.
    """
    raw = os.environ.get(SPOOL_ENV)
    if raw is None:
        return MAX_SPOOL
    if not raw.strip().isdigit() or int(raw) <= 0:
        raise UsageError(f"{SPOOL_ENV}={raw!r}: expected a positive number of bytes")
    return int(raw)


def _is_tar_header(head: bytes) -> bool:
    """[TAR-3] Whether ``head`` (a file's first 512 bytes) is a tar header block (ustar or v7)."""
    if len(head) < _BLOCK:
        return False
    if head[257:262] == b"ustar":
        return True
    try:  # old v7 tars have no magic: a header whose checksum verifies is a tar
        tarfile.TarInfo.frombuf(head[:_BLOCK], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _read_head(stream: BinaryIO) -> bytes:
    """The first 512 bytes of ``stream`` (fewer only at its end), in bounded reads."""
    head = b""
    while len(head) < _BLOCK and (chunk := stream.read(_BLOCK - len(head))):
        head += chunk
    return head


def _spool(stream: BinaryIO, label: str) -> BinaryIO:
    """[SEC-4] Inflate ``stream`` into an anonymous, capped spool file, rewound for reading.

    The first inflated block must be a tar header before anything is written
    (``NotAnImageError`` otherwise), and more than :func:`spool_limit` bytes is an
    ``ArchiveError`` naming the file and the limit. The spool has no name on disk from the
    moment it is opened (``O_TMPFILE``, else unlinked at once), so no signal, not even
    SIGKILL, can leave it behind; it is freed when its last descriptor closes.
    """
    head = _read_head(stream)
    if not _is_tar_header(head):
        raise NotAnImageError(f"{label}: compressed, but not a tar archive inside")
    limit = spool_limit()
    spool = tempfile.TemporaryFile(prefix="ocimerge-", suffix=".tar")  # noqa: SIM115 - returned
    try:
        spool.write(head)
        total = len(head)
        while chunk := stream.read(_CHUNK):  # [SEC-3] at most 1 MiB of output per step
            total += len(chunk)
            if total > limit:
                raise ArchiveError(
                    f"{label}: inflates to more than {limit} bytes, the limit for a compressed "
                    f"archive ({SPOOL_ENV} raises it); refusing it"
                )
            spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def _open_compressed(stream: BinaryIO, label: str) -> TarFS:
    """[TAR-3][SEC-4] The tar inside a compressed archive, spooled once; errors as one line."""
    try:
        with stream:
            spool = _spool(stream, label)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise ArchiveError(f"{label}: cannot decompress ({exc})") from None
    except zstandard.ZstdError as exc:
        raise ArchiveError(f"{label}: cannot decompress ({exc})") from None
    return TarFS(spool, name=label)


def open_filesystem(path: str, *, name: str | None = None) -> DirFS | TarFS:
    """Open ``path`` as a directory or a (possibly compressed) tar; sniffed, not guessed.

    ``name`` labels messages (default: ``path``). Raises ``SourceNotFoundError`` when
    nothing is there, ``NotAnImageError`` when the file is no tar (compressed or not),
    ``ArchiveError`` when it is a broken one or inflates past the spool cap ([SEC-4]). The
    caller owns the result and must close it.
    """
    label = name or path
    if os.path.isdir(path):
        return DirFS(path, name=label)
    if not os.path.exists(path):
        raise SourceNotFoundError(f"{label}: no such file or directory")
    # [SEC-9] non-blocking, so a fifo given as the source is refused instead of waited on
    file = open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb", buffering=0)  # noqa: SIM115 - owned by the TarFS, or closed here
    try:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise NotAnImageError(f"{label}: not a directory or a regular file, so not an image archive")
        os.set_blocking(file.fileno(), True)
        magic = os.pread(file.fileno(), 8, 0)
        stream = _decompressor(magic, path)
        if stream is not None:
            file.close()
            # decompress once to a seekable file: members are then windows on it, as for a
            # plain tar, instead of re-inflating the stream for every member read
            return _open_compressed(stream, label)
        if not _is_tar_header(os.pread(file.fileno(), _BLOCK, 0)):
            raise NotAnImageError(f"{label}: not an OCI layout, an OCI archive or a docker-save archive")
    except BaseException:
        file.close()
        raise
    return TarFS(file, name=label)
