"""The upload journal: where each interrupted blob upload stands, kept for the next run.

[RESUME-1] One small file per (registry, repository, blob) under the user's state directory
(``$XDG_STATE_HOME/ocimerge/uploads``, else ``~/.local/state/ocimerge/uploads``), written
after every chunk the registry took and removed once the blob is in. It holds the upload
``Location``, the bytes stored and when, never a credential or token: the file is mode 0600
in a 0700 directory all the same, written to a temporary and renamed so a kill leaves the old
entry or the new one, never half of one.
[RESUME-2] An entry is a hint, never trusted: a file that is not ours, is open to others, is
not the strict JSON we write, names another blob, size or registry origin, or is older than
:data:`STALE_AFTER` is ignored with a note (and removed); the registry's own answer to
``GET <location>`` decides where an upload goes on from [API-10].
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from ocimerge.model.digest import Digest

__all__ = ["JOURNAL_VERSION", "STALE_AFTER", "JournalEntry", "Lookup", "UploadJournal", "default_journal"]

JOURNAL_VERSION = 1
#: [RESUME-2] Distribution purges upload sessions older than a week by default (its
#: ``uploadpurging`` age is 168 h); an entry older than that names a session long gone
STALE_AFTER = 7 * 24 * 3600.0
#: an entry is a few hundred bytes; anything much larger is not ours
MAX_ENTRY = 16 * 1024


@attrs.frozen
class JournalEntry:
    """[RESUME-1] One interrupted upload: where the registry's session is and what it holds.

    ``location`` is the session's latest ``Location`` and ``stored`` the bytes the registry
    had taken when it was written; ``min_chunk`` the ``OCI-Chunk-Min-Length`` the session
    announced, if any; ``updated`` is when (seconds since the epoch).

    >>> e = JournalEntry("r.example", "team/app", Digest.of(b"x"), 1, "https://r.example/v2/u/1", 0)
    >>> JournalEntry.from_json(e.to_json()) == e
    True
    """

    registry: str
    repository: str
    digest: Digest
    size: int
    location: str
    stored: int
    min_chunk: int | None = None
    updated: float = 0.0

    @property
    def origin(self) -> str:
        """The ``scheme://host[:port]`` of the session's location."""
        url = urlsplit(self.location)
        return f"{url.scheme}://{url.netloc}"

    def to_json(self) -> dict[str, Any]:
        """The entry as the journal file holds it."""
        return {
            "version": JOURNAL_VERSION,
            "registry": self.registry,
            "repository": self.repository,
            "digest": str(self.digest),
            "size": self.size,
            "location": self.location,
            "stored": self.stored,
            "minChunk": self.min_chunk,
            "updated": self.updated,
        }

    @classmethod
    def from_json(cls, value: object) -> JournalEntry:
        """Parse what :meth:`to_json` wrote; anything else raises ``ValueError``."""
        if not isinstance(value, dict) or value.get("version") != JOURNAL_VERSION:
            raise ValueError("not a version 1 journal entry")
        fields = {
            "registry": str,
            "repository": str,
            "digest": str,
            "size": int,
            "location": str,
            "stored": int,
            "updated": float | int,
        }
        for key, kind in fields.items():
            item = value.get(key)
            # bool is an int: a size of true is as wrong as a size of "1"
            if not isinstance(item, kind) or (kind is int and isinstance(item, bool)):
                raise ValueError(f"field {key!r} is missing or of the wrong type")
        entry = cls(
            value["registry"],
            value["repository"],
            Digest.parse(value["digest"]),
            value["size"],
            value["location"],
            value["stored"],
            _min_chunk(value.get("minChunk")),
            float(value["updated"]),
        )
        url = urlsplit(entry.location)
        if not 0 <= entry.stored <= entry.size or url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("stored bytes or location out of range")
        if "@" in url.netloc:
            raise ValueError("a location with credentials in it")  # we never write one
        return entry


@attrs.frozen
class Lookup:
    """What the journal knows of one blob: an entry to resume from (or None), and a note.

    The note says why an entry found was not used (stale, corrupt, not ours); None when
    there was nothing to say.
    """

    entry: JournalEntry | None = None
    note: str | None = None


def _state_home(env: Mapping[str, str]) -> Path:
    """[RESUME-1] ``$XDG_STATE_HOME`` when it is an absolute path (the XDG rule), else ``~/.local/state``."""
    configured = env.get("XDG_STATE_HOME", "")
    if configured and os.path.isabs(configured):
        return Path(configured)
    return Path(env.get("HOME") or Path.home()) / ".local" / "state"


def default_journal() -> UploadJournal:
    """The journal in the user's state directory (nothing is created until an entry is written)."""
    return UploadJournal(_state_home(os.environ) / "ocimerge" / "uploads")


class UploadJournal:
    """[RESUME-1][RESUME-2] Interrupted uploads by (registry, repository, blob), one file each.

    Thread-safe by construction: each upload has its own file, and writes are atomic renames.
    A journal that cannot be written never fails a push: :meth:`record` gives up silently
    (the upload goes on; only a later resume is lost).
    """

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self._clock = clock

    def __repr__(self) -> str:
        return f"UploadJournal({str(self.directory)!r})"

    def path(self, registry: str, repository: str, digest: Digest) -> Path:
        """The file of one upload: named by a hash, so no registry-given text reaches a path."""
        key = hashlib.sha256(f"{registry}\n{repository}\n{digest}".encode()).hexdigest()[:40]
        return self.directory / f"{key}.json"

    def find(self, registry: str, repository: str, digest: Digest, size: int, origin: str) -> Lookup:
        """[RESUME-2] The entry for this upload if it can be used; else why not (removed if unusable).

        ``origin`` is the registry's API ``scheme://host[:port]``: an entry whose location is
        elsewhere would send our upload (and its credentials) to another host, so it is refused.
        A journal directory that is not private to this user is not used at all; a file that
        cannot be read for a passing reason (too many open files, an I/O error) is left alone.
        """
        path = self.path(registry, repository, digest)
        if not self._private_directory():
            return Lookup(note=f"the upload journal {self.directory} is not a private directory of this user; not used")
        try:
            entry = self._read(path)
        except FileNotFoundError:
            return Lookup()
        except ValueError as exc:
            self._remove(path)
            return Lookup(
                note=f"ignored an upload journal entry for {digest.short} that cannot be trusted ({path}: {exc})"
            )
        except OSError as exc:
            return Lookup(note=f"could not read the upload journal entry for {digest.short} ({path}: {exc.strerror})")
        return self._usable(path, entry, (registry, repository, digest, size), origin)

    def _usable(self, path: Path, entry: JournalEntry, upload: tuple[str, str, Digest, int], origin: str) -> Lookup:
        """``entry``, if it names ``upload`` on ``origin`` and is recent; else removed, with why."""
        short = upload[2].short
        why = None
        if (entry.registry, entry.repository, entry.digest, entry.size) != upload:
            why = f"ignored an upload journal entry for {short} that names another upload"
        elif entry.origin != origin:
            why = f"ignored an upload journal entry for {short}: its location is not on {origin}"
        elif abs(self._clock() - entry.updated) > STALE_AFTER:  # a future date is as wrong as an old one
            why = f"ignored a stale upload journal entry for {short} (over 7 days old)"
        if why is None:
            return Lookup(entry)
        self._remove(path)
        return Lookup(note=why)

    def record(self, entry: JournalEntry) -> None:
        """Write ``entry`` (stamped now), replacing the upload's previous one atomically."""
        if "@" in urlsplit(entry.location).netloc:
            return  # [RESUME-1] a location with credentials in it is never written down
        stamped = attrs.evolve(entry, updated=self._clock())
        path = self.path(entry.registry, entry.repository, entry.digest)
        with contextlib.suppress(OSError):
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self._private_directory():
                return  # [RESUME-2] never write into a directory others may change
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".entry-", suffix=".tmp")  # mode 0600
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(stamped.to_json(), out, sort_keys=True)
                os.replace(temporary, path)
            except BaseException:
                self._remove(Path(temporary))
                raise

    def forget(self, registry: str, repository: str, digest: Digest) -> None:
        """The upload is done (or its blob was found in the repository): drop its entry, if any."""
        self._remove(self.path(registry, repository, digest))

    def _private_directory(self) -> bool:
        """Whether the journal directory is absent, or a real directory of this user open to nobody else."""
        try:
            info = os.lstat(self.directory)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077

    def _read(self, path: Path) -> JournalEntry:
        """The entry in ``path``, checked: ours, private, small, strict JSON; else ``ValueError``.

        Opened without following a symlink and without blocking (a FIFO planted here cannot
        hang the push); a symlink is a ``ValueError`` like any other wrong file.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ValueError("a symbolic link") from exc
            raise
        with os.fdopen(fd, "rb") as stream:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
                raise ValueError("not a private file of this user")
            raw = stream.read(MAX_ENTRY + 1)
        if len(raw) > MAX_ENTRY:
            raise ValueError("too large")
        try:
            value = json.loads(raw.decode("utf-8"), parse_constant=_refuse)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ValueError("not JSON") from exc
        return JournalEntry.from_json(value)

    @staticmethod
    def _remove(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()


def _min_chunk(value: object) -> int | None:
    """``minChunk``: absent or null, or a positive integer."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError("field 'minChunk' is of the wrong type")
    return value


def _refuse(name: str) -> object:
    """``NaN`` and ``Infinity`` are not JSON: refuse them as a strict decoder does."""
    raise ValueError(f"{name} is not JSON")
