"""The ``ocimerge`` command line: ``create``, ``push``, ``inspect``, ``verify``, ``doctor``.

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

from ocimerge import progress
from ocimerge.cli import render
from ocimerge.cli.commands import COMMANDS
from ocimerge.cli.exits import EXIT_CODES, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, exit_code
from ocimerge.cli.parser import build_parser
from ocimerge.errors import OcimergeError
from ocimerge.sinks.registry import uploads_in_flight
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


def _notice() -> str:
    """[PUSH-5] What the first Ctrl-C or SIGTERM says at once: what stops, and how to abort."""
    count = uploads_in_flight()
    if count == 0:
        return "ocimerge: stopping; Ctrl-C again to abort now\n"
    return f"ocimerge: stopping: {count} upload{'s' if count != 1 else ''} in flight; Ctrl-C again to abort now\n"


class _Interrupts:
    """[SEC-6][PUSH-5] The SIGINT and SIGTERM handler: the first stops cleanly, the second at once.

    The first signal writes :func:`_notice` and raises ``KeyboardInterrupt`` (:class:`Terminated`
    for SIGTERM) in the main thread, so the push stops its uploads and every clean-up runs;
    a second signal of either kind ends the process with ``os._exit`` and that signal's code,
    skipping clean-ups that might hang on a stalled connection.
    """

    def __init__(self) -> None:
        self.stopping = False

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        code = EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED
        if self.stopping:
            sys.stderr.write("ocimerge: error: aborted\n")
            sys.stderr.flush()
            os._exit(code)
        self.stopping = True
        # a progress frame drawn after this line must not clear it on its way up
        progress.before_note()
        sys.stderr.write(_notice())
        sys.stderr.flush()
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """[SEC-6] SIGINT and SIGTERM go to :class:`_Interrupts` for the block; old handlers restored.

    Only the main thread may set handlers; ``main`` called from another thread (a test, an
    embedding program) keeps the process's own behaviour.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = _Interrupts()
    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _leave_stragglers(code: int) -> None:
    """[PUSH-5] After an interrupt, exit now if an upload thread outlived the push's grace period.

    The interpreter joins worker threads at exit; one stuck in a network read would hold the
    exit for as long as the read lasts, so the process ends without joining (output flushed).
    """
    if any(t.name.startswith("ocimerge-push") and t.is_alive() for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


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
    the command through the same clean-ups, with 130 and 143 ([SEC-6]); the first says at
    once on stderr what stops, a second aborts at once ([PUSH-5]).
    """
    args = build_parser().parse_args(argv)
    render.forget_json()
    # the handlers stay in place while an interrupt is reported, so a second one aborts then too
    with _signals_as_interrupt():
        try:
            return COMMANDS[args.command](args)
        except OcimergeError as exc:
            code = _report_error(exc)
            if getattr(args, "json", False):  # --json: one document on stdout, failures too
                render.print_json_error(exc, code, sys.stdout)
            return code
        except KeyboardInterrupt as exc:
            code = _report_interrupt(exc)
            if threading.current_thread() is threading.main_thread():
                _leave_stragglers(code)
            return code
        except BrokenPipeError:
            # the reader went away (`ocimerge inspect … | head`): not a failure of ours
            return EXIT_OK
        except Exception as exc:
            return _report_internal(exc)
