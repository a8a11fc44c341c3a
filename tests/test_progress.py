"""Progress on stderr ([PROGRESS-1] .. [PROGRESS-5]): the two views fed events with a fake
clock, the command line in each mode, and the terminal view in a real pseudo-terminal of a
fixed width (100, 40 and 20 columns), where no line may wrap and no stale line may be left.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import uuid
from pathlib import Path

import pytest

from imagebuilder import Image, oci_layout, tar_bytes
from ocimerge import progress
from ocimerge.cli import main
from ocimerge.cli.commands import progress_mode
from ocimerge.cli.exits import code_for
from ocimerge.errors import UsageError
from ocimerge.events import BlobAction, PushEvent, PushEventKind
from ocimerge.model.digest import Digest
from ocimerge.progress import PlainView, TerminalView
from registries import RegistryServer

MiB = 1024 * 1024
A, B, C = (Digest.of(x) for x in (b"a", b"b", b"c"))
#: Any escape sequence a view could write (CSI), for stripping and for "there is none".
CSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def event(kind: PushEventKind, digest: Digest, size: int, done: int = 0, action: BlobAction | None = None) -> PushEvent:
    return PushEvent(kind, digest, size, done, action)


def feed_push(view: progress.ProgressView, clock: FakeClock) -> None:
    """Three blobs: A (10 MiB) uploaded over 4 s, B mounted, C (2 MiB) already there."""
    for digest, size in ((A, 10 * MiB), (B, 1 * MiB), (C, 2 * MiB)):
        view.on_event(event(PushEventKind.PLAN, digest, size))
    view.on_event(event(PushEventKind.DONE, C, 2 * MiB, 2 * MiB, BlobAction.SKIP))
    view.on_event(event(PushEventKind.START, A, 10 * MiB))
    for second in range(1, 5):
        clock.now += 1
        view.on_event(event(PushEventKind.PROGRESS, A, 10 * MiB, second * 2 * MiB))
    view.on_event(event(PushEventKind.DONE, B, 1 * MiB, 1 * MiB, BlobAction.MOUNT))
    clock.now += 1
    view.on_event(event(PushEventKind.DONE, A, 10 * MiB, 10 * MiB, BlobAction.UPLOAD))


# -- the plain view ----------------------------------------------------------------------------


def test_plain_view_writes_a_line_per_blob_summaries_and_a_final_line() -> None:
    """[PROGRESS-4] A line per finished blob, a summary each interval, a final summary; no escape."""
    clock, out = FakeClock(), io.StringIO()
    view = PlainView(out, clock=clock, delay=0, interval=2)
    feed_push(view, clock)
    view.finish()
    view.finish()  # a second call writes nothing
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.splitlines() == [
        f"already there sha256:{C.short}… 2.0 MiB",
        # at 2 s: 4 MiB of A moved, C's 2 MiB done without a byte moved; 7 MiB left at 2 MiB/s
        "progress: 1/3 blobs, 6.0 MiB/13.0 MiB, 2.0 MiB/s, ETA 4s",
        "progress: 1/3 blobs, 10.0 MiB/13.0 MiB, 2.0 MiB/s, ETA 2s",
        f"mounted sha256:{B.short}… 1.0 MiB",
        f"uploaded sha256:{A.short}… 10.0 MiB",
        "done: uploaded 1, mounted 1, already there 1; 3/3 blobs, 13.0 MiB/13.0 MiB in 5s, 2.0 MiB/s",
    ]


def test_plain_view_holds_summaries_back_for_the_delay_but_not_blob_lines() -> None:
    """[PROGRESS-4][PROGRESS-5] Before the delay only the per-blob lines are written."""
    clock, out = FakeClock(), io.StringIO()
    view = PlainView(out, clock=clock, delay=10, interval=1)
    feed_push(view, clock)
    assert not any(line.startswith("progress:") for line in out.getvalue().splitlines())
    assert len(out.getvalue().splitlines()) == 3


def test_a_blob_given_up_is_reported_failed_and_the_local_verbs() -> None:
    """[PROGRESS-2] DONE without an action is a blob given up; write, verify, fetch have their verbs."""
    clock, out = FakeClock(), io.StringIO()
    view = PlainView(out, clock=clock, delay=0)
    for action in (BlobAction.WRITE, BlobAction.VERIFY, BlobAction.FETCH, None):
        view.on_event(event(PushEventKind.DONE, A, 5, 5, action))
    assert [line.split()[0] for line in out.getvalue().splitlines()] == ["written", "verified", "fetched", "failed"]


def test_nothing_done_writes_nothing() -> None:
    """[PROGRESS-4] A dry run or a failure before the first blob: no final line."""
    out = io.StringIO()
    PlainView(out, clock=FakeClock(), delay=0).finish()
    assert out.getvalue() == ""


# -- the terminal view -------------------------------------------------------------------------


def frames(text: str) -> list[list[str]]:
    """The frames of a terminal view's output: split where it moves the cursor up to redraw."""
    return [chunk.split("\n")[:-1] for chunk in re.split(r"(?:\x1b\[1A\x1b\[2K)+", text) if chunk]


def test_terminal_view_draws_totals_rate_and_eta() -> None:
    """[PROGRESS-3] A bar per blob in flight, then the totals line: blobs, bytes, rate, ETA, counts."""
    clock, out = FakeClock(), io.StringIO()
    view = TerminalView(out, clock=clock, delay=0, interval=0, size=lambda: (100, 24))
    feed_push(view, clock)
    drawn = frames(out.getvalue())
    during = drawn[6]  # after A's second progress event (frame 7): its bar, then the totals
    assert during[0] == f"  {A.short}  [#########...............] 4.0 MiB/10.0 MiB"
    assert during[1] == "  1/3 blobs  6.0 MiB/13.0 MiB  2.0 MiB/s  ETA 4s  already there 1"
    view.finish()
    last = frames(out.getvalue())[-1]
    assert last == ["  3/3 blobs  13.0 MiB/13.0 MiB  2.0 MiB/s  uploaded 1, mounted 1, already there 1"]


@pytest.mark.parametrize("columns", [100, 62, 40, 20, 8])
def test_every_terminal_line_is_narrower_than_the_terminal(columns: int) -> None:
    """[PROGRESS-3] At any width, no line reaches the last column (so none wraps)."""
    clock, out = FakeClock(), io.StringIO()
    view = TerminalView(out, clock=clock, delay=0, interval=0, size=lambda: (columns, 24))
    feed_push(view, clock)
    view.finish()
    drawn = frames(out.getvalue())
    assert len(drawn) > 5
    assert all(len(line) < columns for frame in drawn for line in frame)
    assert drawn[-1][0].startswith("  3/3 ")


def test_terminal_view_rereads_the_width_each_frame_and_keeps_to_the_rows() -> None:
    """[PROGRESS-3] A terminal made narrower between frames gets narrower lines; never more
    lines than it has rows, less one."""
    clock, out, size = FakeClock(), io.StringIO(), [120, 24]
    view = TerminalView(out, clock=clock, delay=0, interval=0, size=lambda: (size[0], size[1]))
    for digest in (A, B, C):
        view.on_event(event(PushEventKind.START, digest, MiB))
    assert len(view.frame()) == 4
    size[:] = [30, 3]
    assert len(view.frame()) == 2
    assert all(len(line) < 30 for line in view.frame())


def test_a_quick_run_draws_nothing_on_a_terminal() -> None:
    """[PROGRESS-3] Nothing before the delay, and then no last frame either."""
    clock, out = FakeClock(), io.StringIO()
    view = TerminalView(out, clock=clock, delay=1, interval=0, size=lambda: (80, 24))
    view.on_event(event(PushEventKind.PLAN, A, MiB))
    clock.now += 0.5
    view.on_event(event(PushEventKind.DONE, A, MiB, MiB, BlobAction.WRITE))
    view.finish()
    assert out.getvalue() == ""


def test_before_note_keeps_a_line_above_the_next_frame() -> None:
    """[PUSH-5] After before_note() the next frame clears nothing: the notice stays."""
    clock, out = FakeClock(), io.StringIO()
    view = TerminalView(out, clock=clock, delay=0, interval=0, size=lambda: (80, 24))
    view.on_event(event(PushEventKind.START, A, MiB))
    progress.before_note()
    out.write("ocimerge: stopping\n")
    mark = len(out.getvalue())
    view.on_event(event(PushEventKind.PROGRESS, A, MiB, 10))
    assert not out.getvalue()[mark:].startswith("\x1b")
    view.on_event(event(PushEventKind.PROGRESS, A, MiB, 20))
    assert out.getvalue().count("\x1b[1A") == 2  # the frame after that one redraws as usual


# -- choosing the mode -------------------------------------------------------------------------


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    "case",
    [
        (None, None, True, "xterm", "tty"),
        (None, None, True, "dumb", "plain"),
        (None, None, False, "xterm", "plain"),
        (None, "quiet", True, "xterm", "quiet"),
        ("plain", "quiet", True, "xterm", "plain"),
        ("tty", None, False, "xterm", "tty"),
    ],
)
def test_the_mode_from_the_flag_the_environment_and_the_terminal(
    monkeypatch: pytest.MonkeyPatch, case: tuple[str | None, str | None, bool, str, str]
) -> None:
    """[PROGRESS-1] --progress, else $OCIMERGE_PROGRESS, else auto: tty on a terminal not "dumb"."""
    given, env, tty, term, expected = case
    monkeypatch.setattr(sys, "stderr", _Stream(tty))
    monkeypatch.setenv("TERM", term)
    if env is None:
        monkeypatch.delenv("OCIMERGE_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("OCIMERGE_PROGRESS", env)
    assert progress_mode(argparse.Namespace(progress=given, quiet=False)) == expected
    # -q is quiet whatever the environment says
    assert progress_mode(argparse.Namespace(progress=None, quiet=True)) == "quiet"
    # a dry run moves nothing: quiet unless --progress asks, which it then gets
    assert progress_mode(argparse.Namespace(progress=None, quiet=False, dry_run=True)) == "quiet"
    if given is not None:
        assert progress_mode(argparse.Namespace(progress=given, quiet=False, dry_run=True)) == expected


def test_a_bad_environment_value_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIMERGE_PROGRESS", "fancy")
    with pytest.raises(UsageError, match="OCIMERGE_PROGRESS=fancy"):
        progress_mode(argparse.Namespace(progress=None, quiet=False))


@pytest.mark.parametrize("name", ["OCIMERGE_PROGRESS_DELAY", "OCIMERGE_PROGRESS_INTERVAL"])
def test_a_knob_that_is_not_seconds_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """[PROGRESS-5] The knobs take seconds; anything else names the variable."""
    monkeypatch.setenv("OCIMERGE_PROGRESS", "plain")
    monkeypatch.setenv(name, "soon")
    assert main(["verify", str(tmp_path)]) == code_for(UsageError)
    assert f"{name}=soon: expected seconds" in capsys.readouterr().err


# -- the command line, stderr not a terminal ---------------------------------------------------


def unique(name: str) -> str:
    return f"progress/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def archive(tmp_path: Path) -> str:
    """An image of 3 MiB of random layers (uncompressed, so it stays that size)."""
    layers = [tar_bytes({"big": os.urandom(2 * MiB)}), tar_bytes({"small": os.urandom(MiB)})]
    return oci_layout([Image(layers=layers, gzip_layers=False)]).write_tar(str(tmp_path / "in.tar"))


@pytest.fixture
def no_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIMERGE_PROGRESS_DELAY", "0")
    monkeypatch.delenv("OCIMERGE_PROGRESS", raising=False)


@pytest.mark.registry_backends("distribution", "inprocess")
@pytest.mark.usefixtures("no_delay")
def test_push_on_a_pipe_writes_plain_lines_and_stdout_is_unchanged(
    registry: RegistryServer, archive: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """[PROGRESS-1][PROGRESS-4] stderr not a terminal: auto is plain; quiet writes nothing; stdout
    is the same in both modes."""
    plain_repo, quiet_repo = unique("plain"), unique("quiet")
    assert main(["push", archive, f"{registry.host}/{plain_repo}:1"]) == 0
    plain = capsys.readouterr()
    assert "\x1b" not in plain.err
    lines = plain.err.splitlines()
    assert sum(line.startswith("uploaded sha256:") for line in lines) == 3  # two layers and the config
    assert lines[-1].startswith("done: uploaded 3; 3/3 blobs, 3.0 MiB/3.0 MiB in ")
    assert main(["push", "--progress", "quiet", archive, f"{registry.host}/{quiet_repo}:1"]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == ""
    assert plain.out.replace(plain_repo, "REPO") == quiet.out.replace(quiet_repo, "REPO")


@pytest.mark.registry_backends("inprocess")
@pytest.mark.usefixtures("no_delay")
def test_json_keeps_progress_on_stderr(
    registry: RegistryServer, archive: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """[PROGRESS-1] --json: one document on stdout, the plain lines on stderr."""
    assert main(["push", "--json", archive, f"{registry.host}/{unique('json')}:1"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["references"]
    assert "done: uploaded 3" in captured.err


def test_quiet_with_another_progress_is_a_usage_error(archive: str, capsys: pytest.CaptureFixture[str]) -> None:
    """[PROGRESS-1] -q means quiet: -q --progress plain is refused before any work."""
    assert main(["push", "-q", "--progress", "plain", archive, "127.0.0.1:9/x:1"]) == code_for(UsageError)
    assert "-q and --progress plain disagree" in capsys.readouterr().err
    # auto is the default: saying it beside -q is no disagreement (-q wins), as quiet is not
    assert progress_mode(argparse.Namespace(progress="auto", quiet=True)) == "quiet"


def test_a_stopped_run_says_stopped_not_done() -> None:
    """[PROGRESS-4] An error or Ctrl-C ends the log with stopped:, never done: above the error."""
    clock, out = FakeClock(), io.StringIO()
    view = PlainView(out, clock=clock, delay=0, interval=60)
    feed_push(view, clock)
    view.finish(stopped=True)
    assert out.getvalue().splitlines()[-1].startswith("stopped: uploaded 1, mounted 1, already there 1; 3/3 blobs")


@pytest.mark.usefixtures("no_delay")
def test_create_verify_and_bundle_report_their_blobs(
    archive: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """[PROGRESS-2] create -o writes, verify re-hashes, bundle fetches: a line per blob each."""
    out = str(tmp_path / "out.tar")
    assert main(["create", "--progress", "plain", "-o", out, archive]) == 0
    created = capsys.readouterr()
    # two layers, the config, the image manifest and the new index
    assert sum(line.startswith("written sha256:") for line in created.err.splitlines()) == 5
    assert created.err.splitlines()[-1].startswith("done: written 5; 5/5 blobs")
    assert created.out.startswith("Wrote ")
    assert main(["verify", "--progress", "plain", out]) == 0
    verified = capsys.readouterr()
    assert sum(line.startswith("verified sha256:") for line in verified.err.splitlines()) == 2
    assert " OK; " in verified.out
    bundled = str(tmp_path / "bundle.tar")
    assert main(["bundle", "--progress", "plain", "-o", bundled, f"oci-archive:{out}"]) == 0
    fetched = capsys.readouterr().err.splitlines()
    assert sum(line.startswith("fetched sha256:") for line in fetched) == 5
    # an archive is written from the staging afterwards: the same blobs again
    assert sum(line.startswith("written sha256:") for line in fetched) == 5
    assert fetched[-1].startswith("done: written 5, fetched 5; 10/10 blobs")
    assert main(["verify", "--progress", "quiet", out]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.registry_backends("inprocess")
@pytest.mark.usefixtures("no_delay")
def test_bundle_from_a_registry_and_its_restore_report_their_blobs(
    registry: RegistryServer, archive: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """[PROGRESS-1][PROGRESS-2] bundle fetches from a registry; push BUNDLE --to uploads."""
    source = f"{registry.host}/{unique('source')}:1"
    assert main(["push", "--progress", "quiet", archive, source]) == 0
    bundled = str(tmp_path / "release")
    assert main(["bundle", "-o", bundled, source]) == 0
    fetched = capsys.readouterr().err.splitlines()
    assert sum(line.startswith("fetched sha256:") for line in fetched) == 4  # two layers, config, manifest
    assert main(["push", bundled, "--to", f"{registry.host}/{unique('mirror')}"]) == 0
    restored = capsys.readouterr()
    assert sum(line.startswith("uploaded sha256:") for line in restored.err.splitlines()) == 3
    assert restored.err.splitlines()[-1].startswith("done: uploaded 3; 3/3 blobs")
    assert "uploaded sha256" not in restored.out


# -- a real pseudo-terminal --------------------------------------------------------------------


def run_in_pty(args: list[str], columns: int, rows: int = 24) -> tuple[int, str, str]:
    """``python -m ocimerge ARGS`` with stdin and stderr on a pty of ``columns`` x ``rows``,
    stdout on a pipe; returns the exit code, stdout, and everything written to the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm", "OCIMERGE_PROGRESS_DELAY": "0", "OCIMERGE_PROGRESS_INTERVAL": "0"}
    env.pop("OCIMERGE_PROGRESS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "ocimerge", *args], stdin=slave, stderr=slave, stdout=subprocess.PIPE, env=env
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError as exc:  # Linux: EIO once the last writer closed the slave
                if exc.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    assert process.stdout is not None
    stdout = process.stdout.read().decode()
    code = process.wait(timeout=120)
    return code, stdout, b"".join(chunks).decode()


class Screen:
    """A tiny terminal emulator for the codes the view writes (cursor up, erase line, CR, LF),
    wrapping at the last column as a terminal does: what is left on screen after a run."""

    def __init__(self, columns: int) -> None:
        self.columns = columns
        self.lines: list[list[str]] = [[]]
        self.row = self.col = 0

    def feed(self, text: str) -> list[str]:
        """Apply ``text``; return the non-blank lines on screen."""
        for token in re.split(r"(\x1b\[[0-9;]*[A-Za-z]|\r|\n)", text):
            self._token(token)
        return ["".join(line).rstrip() for line in self.lines if "".join(line).strip()]

    def _token(self, token: str) -> None:
        if token == "\x1b[1A":
            self.row = max(self.row - 1, 0)
        elif token == "\x1b[2K":
            self._line().clear()
        elif token == "\r":
            self.col = 0
        elif token == "\n":
            self.row += 1
        elif token.startswith("\x1b"):
            raise AssertionError(f"unexpected escape {token!r}")
        else:
            for char in token:
                self._put(char)

    def _line(self) -> list[str]:
        while len(self.lines) <= self.row:
            self.lines.append([])
        return self.lines[self.row]

    def _put(self, char: str) -> None:
        if self.col >= self.columns:  # wrapped: this is what broke "cursor up N"
            self.row, self.col = self.row + 1, 0
        line = self._line()
        line.extend(" " * max(self.col + 1 - len(line), 0))
        line[self.col] = char
        self.col += 1


@pytest.fixture(scope="module")
def big_archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Eight layers of 1 MiB and one of 4 MiB: enough progress events for many frames."""
    layers = [tar_bytes({f"l{i}": os.urandom(MiB)}) for i in range(8)] + [tar_bytes({"big": os.urandom(4 * MiB)})]
    path = tmp_path_factory.mktemp("pty") / "big.tar"
    return oci_layout([Image(layers=layers, gzip_layers=False)]).write_tar(str(path))


@pytest.mark.registry_backends("distribution")
@pytest.mark.parametrize("columns", [100, 40, 20])
def test_push_in_a_pseudo_terminal_redraws_cleanly(registry: RegistryServer, big_archive: str, columns: int) -> None:
    """[PROGRESS-3] In a real pty of a fixed width: no line between cursor moves reaches the
    width, the screen ends with the final totals and nothing stale, and stdout is the push's."""
    repo = unique(f"pty{columns}")
    code, stdout, terminal = run_in_pty(["push", big_archive, f"{registry.host}/{repo}:1"], columns)
    assert code == 0, terminal
    visible = [CSI.sub("", chunk) for chunk in re.split(r"\x1b\[1A\x1b\[2K", terminal)]
    drawn = [line for chunk in visible for line in chunk.split("\r\n") if line]
    assert len(drawn) > 3  # frames were drawn during the push, not only the last
    assert all(len(line) < columns for line in drawn), [line for line in drawn if len(line) >= columns]
    shown = Screen(columns).feed(terminal)
    assert len(shown) == 1, shown  # the last frame alone: nothing stale above it
    assert shown[0].startswith("  10/10 ")
    assert stdout.startswith(f"Pushed {registry.host}/{repo}:1")
