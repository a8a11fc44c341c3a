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

import os
import sys
import traceback
from collections.abc import Sequence

from ocimerge.cli.commands import COMMANDS
from ocimerge.cli.exits import EXIT_CODES, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, exit_code
from ocimerge.cli.parser import build_parser
from ocimerge.errors import OcimergeError

__all__ = ["EXIT_CODES", "exit_code", "main"]


def _debugging() -> bool:
    """Whether ``OCIMERGE_DEBUG`` asks for tracebacks (any non-empty value does)."""
    return bool(os.environ.get("OCIMERGE_DEBUG"))


def _report_error(exc: OcimergeError) -> int:
    """A deliberate failure: its one line on stderr (after the traceback when debugging); its code."""
    if _debugging():
        # the chain shows the OS, HTTP or decoder error the one-line message was made from
        traceback.print_exception(exc)
    sys.stderr.write(f"ocimerge: error: {exc}\n")
    return exit_code(exc)


def _report_internal(exc: Exception) -> int:
    """A bug: what it was in one line, and how to get the traceback; the internal-error code."""
    if _debugging():
        traceback.print_exception(exc)
    sys.stderr.write(
        f"ocimerge: internal error: {type(exc).__name__}: {exc} "
        "(set OCIMERGE_DEBUG=1 for a traceback, and please report it)\n"
    )
    return EXIT_INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    The console script and ``python -m ocimerge`` exit with it. Usage errors found by the
    parser exit from inside it with the usage code, as argparse does.
    """
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except OcimergeError as exc:
        return _report_error(exc)
    except KeyboardInterrupt:
        sys.stderr.write("ocimerge: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`ocimerge inspect … | head`): not a failure of ours
        return EXIT_OK
    except Exception as exc:
        return _report_internal(exc)
