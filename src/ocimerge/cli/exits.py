"""Exit codes: the one table from error class to process exit status.

The README's "Exit codes" section is this table in prose. Everything that turns a failure
into a number (``main``, the argument parser, ``verify``'s verdict) asks here, so a code
is never spelled as a literal anywhere else in the command line.
"""

from __future__ import annotations

from ocimerge.errors import (
    InputError,
    ModelError,
    OcimergeError,
    OutputError,
    RemoteError,
    UsageError,
)

__all__ = ["EXIT_CODES", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_TERMINATED", "code_for", "exit_code"]

#: The one table from error class to exit code (the first matching class wins, so a
#: subclass listed later than its base could never be reached: keep bases last).
EXIT_CODES: tuple[tuple[type[OcimergeError], int], ...] = (
    (UsageError, 2),
    (InputError, 3),
    (ModelError, 3),
    (RemoteError, 4),
    (OutputError, 5),
)
#: Success, including a closed pipe on stdout (``ocimerge inspect … | head``).
EXIT_OK = 0
#: Anything not an :class:`OcimergeError`: a bug, reported as one.
EXIT_INTERNAL = 1
#: Ctrl-C, as shells report a death by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130
#: SIGTERM (a CI timeout, ``kill``), as shells report a death by it (128 + 15), [SEC-6].
EXIT_TERMINATED = 143


def code_for(cls: type[BaseException]) -> int:
    """The exit code for errors of class ``cls``: its row of :data:`EXIT_CODES`, else internal.

    >>> code_for(UsageError), code_for(OutputError), code_for(ValueError)
    (2, 5, 1)
    """
    for error_class, code in EXIT_CODES:
        if issubclass(cls, error_class):
            return code
    return EXIT_INTERNAL


def exit_code(error: BaseException) -> int:
    """The exit code for one raised ``error`` (see :func:`code_for`)."""
    return code_for(type(error))
