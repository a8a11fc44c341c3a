"""Shared tools for the attack tests (``tests/test_hostile_*.py``), [SEC-1] .. [SEC-9].

An attack test runs the real command line in a child process and asserts the promise
itself, not an implementation detail: the exit code, a single line on stderr with no raw
control characters, peak memory under a limit that does not grow with the attack's size,
bounded wall time, and nothing left behind. :func:`run_cli` measures the child alone: its
own ``VmHWM``, written at exit by a ``sitecustomize`` put on its ``PYTHONPATH``. (Not
``ru_maxrss`` from ``wait4``: a child that ``subprocess`` starts by vfork and exec inherits
the test runner's high-water mark, so after the runner held 300 MiB, ``--help`` "used" 313.)
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CONTROL", "Outcome", "assert_one_line_error", "files_under", "run_cli"]

_SITECUSTOMIZE = """\
import atexit, os

def _report_peak():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["OCIMERGE_TEST_PEAK"], "w") as out:
        out.write(peak)

atexit.register(_report_peak)
"""

#: C0 controls but tab and newline, DEL, and C1 controls: what must never reach a terminal raw.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


@dataclass(frozen=True)
class Outcome:
    """What one run of ``ocimerge`` did: exit code, output, peak RSS (MiB) and wall time (s)."""

    code: int
    stdout: str
    stderr: str
    peak_mib: float
    seconds: float


def run_cli(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    stdin: bytes = b"",
    cwd: str | Path | None = None,
) -> Outcome:
    """Run ``python -m ocimerge ARGS``; measure the child's own peak RSS and its wall time.

    The child runs with ``OCIMERGE_DEBUG`` unset (a traceback would break the one-line
    promise) and is killed after ``timeout`` seconds, which fails the test. Its peak RSS is
    its own ``VmHWM`` (MiB), reported at exit; a child killed before it could report falls
    back to ``wait4``'s figure, an upper bound. Output goes to files, not pipes, so the child
    never blocks on a full pipe.
    """
    environment = {k: v for k, v in os.environ.items() if k != "OCIMERGE_DEBUG"}
    environment.update(env or {})
    with tempfile.TemporaryDirectory(prefix="ocimerge-hostile-") as scratch:
        paths = [Path(scratch) / name for name in ("in", "out", "err")]
        paths[0].write_bytes(stdin)
        (Path(scratch) / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        peak_file = Path(scratch) / "peak"
        inherited = environment.get("PYTHONPATH", "")
        environment["PYTHONPATH"] = os.pathsep.join(p for p in (scratch, inherited) if p)
        environment["OCIMERGE_TEST_PEAK"] = str(peak_file)
        started = time.monotonic()
        with paths[0].open("rb") as inp, paths[1].open("wb") as out, paths[2].open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "ocimerge", *args], stdin=inp, stdout=out, stderr=err, env=environment, cwd=cwd
            )
            status, usage = _wait(process, started + timeout, args)
        seconds = time.monotonic() - started
        stdout, stderr = (p.read_text(errors="replace") for p in paths[1:])
        peak_kib = int(peak_file.read_text()) if peak_file.exists() else usage.ru_maxrss
    return Outcome(os.waitstatus_to_exitcode(status), stdout, stderr, peak_kib / 1024, seconds)


def _wait(process: subprocess.Popen[bytes], deadline: float, args: Sequence[str]) -> tuple[int, resource.struct_rusage]:
    """Reap ``process`` with ``wait4`` (polling, so a deadline applies); kill it past the deadline."""
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not reap it again
            return status, usage
        if time.monotonic() > deadline:
            process.kill()
            os.wait4(process.pid, 0)
            process.returncode = -9
            raise AssertionError(f"ocimerge {' '.join(args)} did not finish in time")
        time.sleep(0.02)


def assert_one_line_error(outcome: Outcome, code: int, *fragments: str) -> str:
    """The run failed with ``code`` and exactly one ``ocimerge: error:`` line, free of raw controls.

    Returns the line. Each of ``fragments`` must occur in it (the file, field or response named).
    """
    assert outcome.code == code, (outcome.code, outcome.stderr)
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ocimerge: error:")]
    assert len(errors) == 1, outcome.stderr
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert not CONTROL.search(outcome.stderr), repr(outcome.stderr)
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def files_under(path: Path) -> set[str]:
    """Every file and directory below ``path`` (relative), to show nothing was left behind."""
    return {str(p.relative_to(path)) for p in path.rglob("*")}
