"""The ``ocimerge`` command line: ``create``, ``push``, ``inspect``, ``verify``.

Results go to stdout, notes and errors to stderr. Every deliberate failure is one line,
``ocimerge: error: …``, and an exit code from :data:`EXIT_CODES`; no traceback unless
``OCIMERGE_DEBUG=1``, which prints it with every chained cause.

The package splits the work: :mod:`~ocimerge.cli.parser` builds the flags of each
subcommand, :mod:`~ocimerge.cli.commands` turns them into one library call each,
:mod:`~ocimerge.cli.render` prints the typed results, and :mod:`~ocimerge.cli.exits` holds
the one table of exit codes. This module only ties them together and catches what escapes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from types import FrameType

from ocimerge.cli.commands import COMMANDS
from ocimerge.cli.exits import EXIT_CODES, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, exit_code
from ocimerge.cli.parser import build_parser
from ocimerge.errors import OcimergeError
from ocimerge.text import printable

__all__ = ["EXIT_CODES", "exit_code", "main"]


def _debugging() -> bool:
    """Whether ``OCIMERGE_DEBUG`` asks for tracebacks (any non-empty value does)."""
    return bool(os.environ.get("OCIMERGE_DEBUG"))


class Terminated(KeyboardInterrupt):
    """[SEC-6] SIGTERM, raised in the main thread as Ctrl-C is, so the same clean-ups run.

    A KeyboardInterrupt subclass: every ``except BaseException`` / ``finally`` that removes
    a temporary output or a spool on Ctrl-C removes it on SIGTERM (a CI timeout) too.
    """


def _raise_terminated(_signum: int, _frame: FrameType | None) -> None:
    raise Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """[SEC-6] SIGTERM raises :class:`Terminated` for the block; the old handler is restored.

    Only the main thread may set handlers; ``main`` called from another thread (a test, an
    embedding program) keeps the process's own SIGTERM behaviour.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report_error(exc: OcimergeError) -> int:
    """A deliberate failure: its one line on stderr (after the traceback when debugging); its code."""
    if _debugging():
        # the chain shows the OS, HTTP or decoder error the one-line message was made from
        traceback.print_exception(exc)
    # [SEC-5] messages quote names, fields and server text: escaped, and so one line
    sys.stderr.write(f"ocimerge: error: {printable(exc)}\n")
    return exit_code(exc)


def _report_interrupt(exc: KeyboardInterrupt) -> int:
    """[SEC-6] Ctrl-C or SIGTERM, after the clean-ups ran: one line, and 130 or 143 as shells say."""
    if isinstance(exc, Terminated):
        sys.stderr.write("ocimerge: error: terminated (SIGTERM)\n")
        return EXIT_TERMINATED
    sys.stderr.write("ocimerge: error: interrupted (SIGINT)\n")
    return EXIT_INTERRUPTED


def _report_internal(exc: Exception) -> int:
    """A bug: what it was in one line, and how to get the traceback; the internal-error code."""
    if _debugging():
        traceback.print_exception(exc)
    sys.stderr.write(
        f"ocimerge: internal error: {type(exc).__name__}: {printable(exc)} "
        "(set OCIMERGE_DEBUG=1 for a traceback, and please report it)\n"
    )
    return EXIT_INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    The console script and ``python -m ocimerge`` exit with it. Usage errors found by the
    parser exit from inside it with the usage code, as argparse does. SIGINT and SIGTERM end
    the command through the same clean-ups, with 130 and 143 ([SEC-6]).
    """
    args = build_parser().parse_args(argv)
    try:
        with _sigterm_as_interrupt():
            return COMMANDS[args.command](args)
    except OcimergeError as exc:
        return _report_error(exc)
    except KeyboardInterrupt as exc:
        return _report_interrupt(exc)
    except BrokenPipeError:
        # the reader went away (`ocimerge inspect … | head`): not a failure of ours
        return EXIT_OK
    except Exception as exc:
        return _report_internal(exc)
