"""Small files written whole and atomically: a reader sees the old content or the new, never half.

Used for the files ocimerge replaces in place (the lock file, ``--metadata-file``): bytes go
to a temporary name of our own beside the target (pid and random, created ``O_EXCL`` so a
file someone else put there is never written through, mode left to the umask as a plain
``open`` would), are fsynced, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import os
import secrets

from ocimerge.errors import OutputError

__all__ = ["replace_file"]


def replace_file(path: str, data: bytes, *, what: str) -> None:
    """Write ``data`` to ``path`` atomically; any OS failure is an :class:`OutputError` naming
    ``path`` and ``what`` (``"the lock file"``), the temporary removed, the target untouched."""
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise OutputError(f"{path}: cannot write {what} ({exc.strerror or exc})") from exc
