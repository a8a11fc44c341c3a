"""Benchmark pushing through a rate-limited link: ocimerge against line rate, and a resumed push.

What is measured, and why:

* The link: a TCP relay on 127.0.0.1 in front of a fresh Distribution. Every byte a client
  sends towards the registry passes one token bucket (``--rate-mib`` MiB/s, default 20,
  shared by all connections, as one uplink is), so four parallel uploads share the rate
  instead of getting it each. Responses are relayed unthrottled: a push's responses are a few
  KiB, and a typical uplink is the slow direction. The relay counts the bytes each way, per
  connection and in total.
* Line rate: ``ocimerge create -q --json -t RELAY/bench/link:latest in-*.tar`` with push_bench's
  case (a) inputs (3 platforms x ``--size-mb`` MiB, default 340: about 1 GiB of blobs).
  Line-rate time = the bytes that crossed the relay towards the registry / the rate. The
  ratio ocimerge wall time / line-rate time (start-up included) has the target <= 1.05; the
  relay bytes / blob bytes (HTTP overhead) are shown too. skopeo pushing the same archives
  through the same kind of link is timed for comparison (``--no-skopeo`` skips it).
* Resume: one image with one ``--resume-mb`` MiB layer (default 500). ``ocimerge push --json
  ARCHIVE RELAY/bench/resume:1``; once half of the blob's bytes have crossed the relay, SIGINT
  goes to ocimerge, which should exit 130 within about two seconds. The same command then runs
  again against the same registry, relay and ``XDG_STATE_HOME`` (a temporary directory, so the
  two runs share the resume journal and nothing lands in the real home). Target: the second
  run sends at most 0.55 of the blob towards the registry, exits 0, and the tag names the image.

Inputs, the launcher (wall time, peak RSS and CPU from ``wait4``), the registry and the idle
wait come from ``push_bench.py`` and ``merge_bench.py``. "MiB" is 2**20 bytes. The script exits
0 when a target is missed (it is a report), 1 when a command fails or a push leaves the wrong
thing in the registry, and 2 when a tool is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from merge_bench import (
    LAUNCHER,
    MIB,
    OCIMERGE,
    PLATFORMS,
    SKOPEO,
    WORK,
    CommandError,
    tool_version,
    verdict,
    write_report,
)
from push_bench import (
    MANIFEST_ACCEPT,
    Case,
    Registry,
    Run,
    cases,
    check_ocimerge,
    check_registry,
    ensure_inputs,
    machine_info,
    total,
    use_pycache,
    wait_until_quiet,
    warm,
)
from registries import REGISTRY_BINARY

LINE_RATE_LIMIT, RESUME_LIMIT = 1.05, 0.55
#: Bytes read from a socket at once; at 20 MiB/s one read is about 3 ms of link time.
READ = 64 * 1024
#: What an idle link may send at once (about 12 ms at 20 MiB/s): small against a push's time.
BURST = 256 * 1024
#: The relay's receive buffer towards the registry: little link-side buffering, so the bytes
#: counted when SIGINT is sent are close to what the client had handed to the link.
RECEIVE_BUFFER = 256 * 1024
#: The longest the first resume run may take to exit after SIGINT before it is killed.
EXIT_GRACE_S = 30.0


@dataclass(frozen=True)
class LinkCase(Case):
    """push_bench's :class:`Case`, pushed to a repository and tag of its own."""

    name: str = "bench/link"
    tag: str = "latest"

    @property
    def repository(self) -> str:
        return self.name


def line_rate_case(size_mib: int) -> LinkCase:
    """push_bench's case (a) at ``size_mib`` (the same cached inputs), pushed to bench/link."""
    a = cases(size_mib)[0]
    return LinkCase(a.key, a.folder, a.platforms, a.layer_sizes, a.shared_bytes, LINE_RATE_LIMIT)


def resume_case(size_mib: int) -> LinkCase:
    """One linux/amd64 image whose one layer is ``size_mib`` MiB, pushed to bench/resume:1."""
    folder = WORK / f"link-resume-{size_mib}mib"
    return LinkCase("resume", folder, PLATFORMS[:1], (size_mib * MIB,), 0, RESUME_LIMIT, "bench/resume", "1")


# -- the link ---------------------------------------------------------------------------------


class TokenBucket:
    """``rate`` bytes a second shared by every caller, at most ``burst`` bytes ahead when idle."""

    def __init__(self, rate: float, burst: int = BURST) -> None:
        self.rate, self.burst = rate, burst
        self._lock = threading.Lock()
        self._tokens, self._stamp = float(burst), time.monotonic()

    def take(self, n: int) -> None:
        """Block until ``n`` bytes may pass.

        The bucket goes into debt and the caller sleeps it off, so a later caller waits behind
        it: the total over all connections stays at ``rate`` however many there are.
        """
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate) - n
            self._stamp = now
            wait = -self._tokens / self.rate
        if wait > 0:
            time.sleep(wait)


@dataclass
class Connection:
    """One relayed connection: bytes client -> registry (up) and back (down)."""

    up: int = 0
    down: int = 0
    open: bool = True
    #: monotonic times of the first and the last bytes up
    first_up: float = 0.0
    last_up: float = 0.0


@dataclass(frozen=True)
class Traffic:
    """What crossed the relay over some stretch of time."""

    connections: int
    up: int
    down: int
    largest_up: int
    #: from the first byte up to the last (monotonic seconds), and when the last went
    busy_s: float = 0.0
    last_up: float = 0.0

    def to_json(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if k != "last_up"}


class Relay:
    """127.0.0.1:port to ``upstream``; client -> registry through a :class:`TokenBucket`, counted.

    Registry -> client is copied as fast as it comes, and counted.
    """

    def __init__(self, upstream: str, bucket: TokenBucket) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._bucket = bucket
        self._listener = socket.create_server(("127.0.0.1", 0))
        # set before accept, so every accepted connection inherits it
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self.connections: list[Connection] = []
        self._up_total = 0
        self._watches: list[tuple[int, threading.Event]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()

    def when_up(self, n: int) -> threading.Event:
        """An event set once ``n`` more bytes (from now, all connections) went towards the registry."""
        event = threading.Event()
        with self._lock:
            self._watches.append((self._up_total + n, event))
        return event

    def traffic(self, since: int = 0) -> Traffic:
        """The connections opened from the ``since``-th on (see :meth:`mark`), summed."""
        with self._lock:
            conns = self.connections[since:]
            sent = [c for c in conns if c.up]
            first, last = min((c.first_up for c in sent), default=0.0), max((c.last_up for c in sent), default=0.0)
            return Traffic(
                len(conns),
                sum(c.up for c in conns),
                sum(c.down for c in conns),
                max((c.up for c in conns), default=0),
                last - first,
                last,
            )

    def mark(self) -> int:
        """How many connections were opened so far: a ``since`` for :meth:`traffic`."""
        with self._lock:
            return len(self.connections)

    def wait_closed(self, limit_s: float) -> None:
        """Wait up to ``limit_s`` until no connection is open (the last run's have drained)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            with self._lock:
                if not any(c.open for c in self.connections):
                    return
            time.sleep(0.05)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream)
            except OSError:  # the registry is gone: refuse this client, as a dead link would
                client.close()
                continue
            conn = Connection()
            with self._lock:
                self.connections.append(conn)
            ends = {"up": threading.Event(), "down": threading.Event()}
            for direction, source, sink in (("up", client, server), ("down", server, client)):
                thread = threading.Thread(target=self._copy, args=(source, sink, conn, direction, ends), daemon=True)
                thread.start()

    def _copy(
        self,
        source: socket.socket,
        sink: socket.socket,
        conn: Connection,
        direction: str,
        ends: dict[str, threading.Event],
    ) -> None:
        try:
            while data := source.recv(READ):
                if direction == "up":
                    self._bucket.take(len(data))
                sink.sendall(data)
                self._count(conn, direction, len(data))
        except OSError:
            pass
        finally:
            # one end gone: the whole connection goes, as a cut link would
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            ends[direction].set()
            if all(e.is_set() for e in ends.values()):
                source.close()
                sink.close()
                with self._lock:
                    conn.open = False

    def _count(self, conn: Connection, direction: str, n: int) -> None:
        with self._lock:
            if direction == "down":
                conn.down += n
                return
            now = time.monotonic()
            conn.first_up = conn.first_up or now
            conn.up, conn.last_up = conn.up + n, now
            self._up_total += n
            for limit, event in self._watches:
                if self._up_total >= limit:
                    event.set()


@contextlib.contextmanager
def state_home() -> Iterator[Path]:
    """A temporary ``XDG_STATE_HOME`` for the ocimerge runs in the block (the resume journal)."""
    saved = os.environ.get("XDG_STATE_HOME")
    with tempfile.TemporaryDirectory(prefix="link-state-", dir=WORK) as folder:
        os.environ["XDG_STATE_HOME"] = folder
        try:
            yield Path(folder)
        finally:
            if saved is None:
                os.environ.pop("XDG_STATE_HOME", None)
            else:
                os.environ["XDG_STATE_HOME"] = saved


# -- case "line rate" -------------------------------------------------------------------------


@dataclass
class LinkRun:
    """One timed push through the link: the launcher's figures and the relay's."""

    run: Run
    traffic: Traffic
    rate: float
    #: from the last byte up to the command's exit (manifests, index, tag and exit)
    after_last_byte_s: float = 0.0

    @property
    def seconds(self) -> float:
        return self.run.seconds

    @property
    def line_rate_s(self) -> float:
        return self.traffic.up / self.rate

    @property
    def ratio(self) -> float:
        return self.run.seconds / self.line_rate_s

    @property
    def before_first_byte_s(self) -> float:
        """Wall time the link was not busy before the first byte (start-up, reading the inputs)."""
        return self.run.seconds - self.traffic.busy_s - self.after_last_byte_s

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self.run),
            "traffic": self.traffic.to_json(),
            "line_rate_s": self.line_rate_s,
            "over_line_rate": self.ratio,
            "after_last_byte_s": self.after_last_byte_s,
            "before_first_byte_s": self.before_first_byte_s,
        }


@dataclass
class LineRateResult:
    description: str
    blob_bytes: int
    commands: dict[str, list[str]] = field(default_factory=dict)
    runs: dict[str, list[LinkRun]] = field(default_factory=dict)

    def add(self, name: str, argvs: Sequence[Sequence[str]], run: LinkRun) -> None:
        self.commands.setdefault(name, [shlex.join(a) for a in argvs])
        self.runs.setdefault(name, []).append(run)

    def median(self, name: str, what: str) -> float:
        return float(statistics.median(getattr(r, what) for r in self.runs[name]))

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "blob_bytes": self.blob_bytes,
            "commands": self.commands,
            "runs": {name: [r.to_json() for r in runs] for name, runs in self.runs.items()},
            "median_over_line_rate": {name: self.median(name, "ratio") for name in self.runs},
        }


def skopeo_argvs(host: str, case: LinkCase, inputs: Sequence[Path]) -> list[list[str]]:
    """skopeo copies each archive in turn, keeping its blobs byte for byte (the same bytes go up)."""
    return [
        [
            SKOPEO,
            "copy",
            "-q",
            "--preserve-digests",
            "--dest-tls-verify=false",
            f"oci-archive:{path}",
            f"docker://{host}/{case.repository}-skopeo:{name}",
        ]
        for path, (_, _, name) in zip(inputs, case.platforms, strict=True)
    ]


def through_link(registry: Registry, rate: float, argvs: Callable[[str], list[list[str]]]) -> tuple[LinkRun, str]:
    """Run the commands ``argvs(relay host)`` through a new relay to ``registry``; the last stdout."""
    with Relay(registry.host, TokenBucket(rate)) as relay:
        runs = registry.timed(argvs(relay.host))
        end = time.monotonic()
        relay.wait_closed(5.0)
        traffic = relay.traffic()
        return LinkRun(total([r for r, _ in runs]), traffic, rate, end - traffic.last_up), runs[-1][1]


def bench_line_rate(case: LinkCase, args: argparse.Namespace) -> LineRateResult:
    inputs, blobs = ensure_inputs(case, args.regen)
    warm(inputs)
    rate = args.rate_mib * MIB
    result = LineRateResult(case.describe(), sum(blobs.values()))

    def ocimerge(host: str) -> list[list[str]]:
        return [
            [str(OCIMERGE), "create", "-q", "--json", "-t", f"{host}/{case.repository}:{case.tag}", *map(str, inputs)]
        ]

    for i in range(args.repeat):
        with Registry(args.quiet_wait) as registry, state_home():
            link, out = through_link(registry, rate, ocimerge)
            check_ocimerge(out, blobs, fresh=True)
            if not check_registry(registry, case, blobs, "ocimerge"):
                raise CommandError("ocimerge: the pushed manifests do not name exactly the input blobs")
        result.add("ocimerge", ocimerge("RELAY"), link)
        print(
            f"  (line rate) run {i + 1}/{args.repeat} ocimerge {link.run.seconds:7.2f} s  x{link.ratio:.3f}", flush=True
        )
        if args.skopeo:
            with Registry(args.quiet_wait) as registry:
                link, _ = through_link(registry, rate, lambda host: skopeo_argvs(host, case, inputs))
            result.add("skopeo", skopeo_argvs("RELAY", case, inputs), link)
            print(
                f"  (line rate) run {i + 1}/{args.repeat} skopeo   {link.run.seconds:7.2f} s  x{link.ratio:.3f}",
                flush=True,
            )
    return result


# -- case "resume" ----------------------------------------------------------------------------


@dataclass
class Outcome:
    """One launched command: its exit code, the launcher's figures, its output."""

    code: int
    run: Run
    stdout: str
    stderr: str
    #: bytes that had gone towards the registry when SIGINT was sent, and the time to exit after
    sigint_at: int | None = None
    exit_after_sigint_s: float | None = None


def _child_pid(launcher: subprocess.Popen[str]) -> int:
    """The command the launcher forked (``/proc/PID/task/PID/children``): SIGINT goes to it alone."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and launcher.poll() is None:
        if pids := children.read_text().split():
            return int(pids[0])
        time.sleep(0.01)
    raise CommandError("the launcher did not start its command")


def _interrupt(launcher: subprocess.Popen[str], relay: Relay, at: int) -> tuple[int, float]:
    """SIGINT to the command once ``at`` more bytes went up; (bytes up then, seconds to its exit)."""
    reached, pid = relay.when_up(at), _child_pid(launcher)
    while not reached.wait(0.05):
        if launcher.poll() is not None:
            raise CommandError(f"the first run exited with {launcher.returncode} before {at} bytes went up")
    sent = relay.traffic().up
    os.kill(pid, signal.SIGINT)
    start = time.perf_counter()
    try:
        launcher.wait(EXIT_GRACE_S)
    except subprocess.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
        raise CommandError(f"the first run was still running {EXIT_GRACE_S:.0f} s after SIGINT (killed)") from None
    return sent, time.perf_counter() - start


def launch_through(argv: Sequence[str], relay: Relay, interrupt_at: int | None = None) -> Outcome:
    """Run ``argv`` through merge_bench's launcher, SIGINT to it once ``interrupt_at`` bytes went up.

    Unlike push_bench's ``launch``, a non-zero exit is an outcome, not an error: the
    interrupted run is expected to exit 130.
    """
    with contextlib.ExitStack() as stack:
        figures = stack.enter_context(tempfile.NamedTemporaryFile("r"))
        out, err = (stack.enter_context(tempfile.TemporaryFile("w+")) for _ in range(2))
        launcher = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", LAUNCHER, figures.name, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            text=True,
        )
        try:
            sent, took = _interrupt(launcher, relay, interrupt_at) if interrupt_at is not None else (None, None)
            code = launcher.wait()
        finally:
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()
        seconds, rss, user, system = figures.read().split()
        out.seek(0)
        err.seek(0)
        run = Run(float(seconds), int(rss), float(user), float(system))
        return Outcome(code, run, out.read(), err.read(), sent, took)


@dataclass
class ResumeRun:
    """Both runs of one resume trial."""

    blob_bytes: int
    first: Outcome
    first_traffic: Traffic
    journal_after_first: list[str]
    second: Outcome
    second_traffic: Traffic
    journal_after_second: list[str]
    tag_names_image: bool

    @property
    def ratio(self) -> float:
        return self.second_traffic.up / self.blob_bytes

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["second_over_blob"] = self.ratio
        return out


def journal_files(state: Path) -> list[str]:
    """What ocimerge keeps under ``$XDG_STATE_HOME/ocimerge/`` (the resume journal), relative paths."""
    folder = state / "ocimerge"
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def tag_names_image(registry: Registry, case: LinkCase, blobs: dict[str, int]) -> bool:
    """The tag names an image manifest whose config and layers are exactly the input blobs."""
    manifest = registry._get(case.tag, case.repository, MANIFEST_ACCEPT)
    named = {manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])}
    return named == set(blobs)


def resume_argv(host: str, case: LinkCase, archive: Path) -> list[str]:
    return [str(OCIMERGE), "push", "--json", str(archive), f"{host}/{case.repository}:{case.tag}"]


def resume_trial(case: LinkCase, archive: Path, blobs: dict[str, int], args: argparse.Namespace) -> ResumeRun:
    """Push, SIGINT at half the layer, push again: one registry, one relay, one state directory."""
    layer = max(blobs.values())
    with Registry(args.quiet_wait) as registry, Relay(registry.host, TokenBucket(args.rate_mib * MIB)) as relay:
        with state_home() as state:
            argv = resume_argv(relay.host, case, archive)
            os.sync()
            wait_until_quiet(args.quiet_wait)
            first = launch_through(argv, relay, interrupt_at=layer // 2)
            relay.wait_closed(5.0)
            first_traffic, journal_first, mark = relay.traffic(), journal_files(state), relay.mark()
            os.sync()
            wait_until_quiet(args.quiet_wait)
            second = launch_through(argv, relay)
            relay.wait_closed(5.0)
            journal_second = journal_files(state)
        if second.code != 0:
            raise CommandError(f"the second run exited with {second.code}:\n{second.stderr[-4000:]}")
        named = tag_names_image(registry, case, blobs)
        return ResumeRun(layer, first, first_traffic, journal_first, second, relay.traffic(mark), journal_second, named)


def bench_resume(case: LinkCase, args: argparse.Namespace) -> tuple[list[ResumeRun], str]:
    [archive], blobs = ensure_inputs(case, args.regen)
    warm([archive])
    trials = []
    for i in range(args.repeat):
        trial = resume_trial(case, archive, blobs, args)
        trials.append(trial)
        print(
            f"  (resume) run {i + 1}/{args.repeat}: first exit {trial.first.code} "
            f"{trial.first.exit_after_sigint_s or 0:.2f} s after SIGINT; second run {trial.second.run.seconds:.2f} s, "
            f"sent x{trial.ratio:.3f} of the blob",
            flush=True,
        )
    return trials, shlex.join(resume_argv("RELAY", case, archive))


# -- report -----------------------------------------------------------------------------------


def _target(label: str, value: str, target: str, ok: bool) -> None:
    print(f"  {label:32s} {value}   {target:18s} {verdict(ok)}")


def report_line_rate(res: LineRateResult, rate_mib: float) -> dict[str, bool]:
    mib = res.blob_bytes / MIB
    print(f"\nline rate: {res.description}; {mib:.1f} MiB of blobs; link {rate_mib:g} MiB/s up")
    print(
        f"  {'':10s} {'median':>8s} {'min':>7s} {'max':>7s} {'relay up':>10s} {'down':>8s} {'conns':>5s} "
        f"{'up/blobs':>8s} {'line-rate time':>14s} {'ratio':>6s} {'peak RSS':>9s}"
    )
    for name, runs in res.runs.items():
        secs = [r.run.seconds for r in runs]
        last = runs[-1].traffic
        print(
            f"  {name:10s} {res.median(name, 'seconds'):6.2f} s {min(secs):7.2f} "
            f"{max(secs):7.2f} {last.up / MIB:6.1f} MiB {last.down / 1024:4.0f} KiB {last.connections:5d} "
            f"{last.up / res.blob_bytes:8.4f} {res.median(name, 'line_rate_s'):12.2f} s "
            f"{res.median(name, 'ratio'):6.3f} {max(r.run.max_rss_kib for r in runs) / 1024:5.1f} MiB"
        )
    for name in res.runs:
        print(
            f"  {name}: link idle {res.median(name, 'before_first_byte_s'):.2f} s before the first byte up "
            f"(start-up, reading), busy {statistics.median(r.traffic.busy_s for r in res.runs[name]):.2f} s, "
            f"idle {res.median(name, 'after_last_byte_s'):.2f} s after the last (medians)"
        )
    ratio = res.median("ocimerge", "ratio")
    ok = ratio <= LINE_RATE_LIMIT
    _target("ocimerge / line rate", f"{ratio:8.3f}", f"target <= {LINE_RATE_LIMIT}", ok)
    if "skopeo" in res.runs:
        print(f"  {'(skopeo / line rate)':32s} {res.median('skopeo', 'ratio'):8.3f}")
        versus = res.median("ocimerge", "seconds") / res.median("skopeo", "seconds")
        print(f"  {'(ocimerge / skopeo, wall time)':32s} {versus:8.3f}")
    return {"line_rate": ok}


def report_resume(trials: list[ResumeRun]) -> dict[str, bool]:
    blob = trials[0].blob_bytes
    print(f"\nresume: one layer of {blob / MIB:.1f} MiB; SIGINT once half of it went through the relay")
    for i, t in enumerate(trials, 1):
        f, s = t.first, t.second
        print(
            f"  run {i}: first: SIGINT at {(f.sigint_at or 0) / MIB:.1f} MiB up, exit {f.code} "
            f"{f.exit_after_sigint_s or 0:.2f} s later, {t.first_traffic.up / MIB:.1f} MiB up in all; "
            f"journal kept: {', '.join(t.journal_after_first) or 'none'}"
        )
        print(
            f"         second: exit {s.code} in {s.run.seconds:.2f} s, {t.second_traffic.up / MIB:.1f} MiB up "
            f"({t.second_traffic.connections} connections) = {t.ratio:.3f} of the blob; tag names the image: "
            f"{'yes' if t.tag_names_image else 'NO'}; journal left: {', '.join(t.journal_after_second) or 'none'}"
        )
        notes = [line for line in (f.stderr + s.stderr).splitlines() if line.strip()]
        for line in notes[-6:]:
            print(f"         | {line}")
    ratio = statistics.median(t.ratio for t in trials)
    targets = {
        "resume_ratio": ratio <= RESUME_LIMIT,
        "resume_exit_130": all(t.first.code == 130 for t in trials),
        "resume_result": all(t.tag_names_image for t in trials),
    }
    exit_s = max(t.first.exit_after_sigint_s or 0.0 for t in trials)
    codes = ",".join(str(t.first.code) for t in trials)
    named = "yes" if targets["resume_result"] else "NO"
    _target("second run / blob size", f"{ratio:8.3f}", f"target <= {RESUME_LIMIT}", targets["resume_ratio"])
    _target("first run exit code", f"{codes:>8s}", "target 130", targets["resume_exit_130"])
    print(f"  {'first run exit after SIGINT, max':32s} {exit_s:8.2f} s (information: the goal is about 2 s)")
    _target("second run: tag names the image", f"{named:>8s}", "exit 0, the image", targets["resume_result"])
    return targets


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=int, default=340, help="MiB of layer data per image, line rate (default 340)")
    parser.add_argument(
        "--resume-mb", type=int, default=500, help="MiB of the one layer in the resume case (default 500)"
    )
    parser.add_argument("--rate-mib", type=float, default=20.0, help="the link's rate up, MiB/s (default 20)")
    parser.add_argument(
        "--case", choices=("all", "line-rate", "resume"), default="all", help="which case (default all)"
    )
    parser.add_argument("--skopeo", action=argparse.BooleanOptionalAction, default=True, help="time skopeo too")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each case (median; default 1)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="wait up to S seconds for an idle machine before each timed run (default 60; 0: no)",
    )
    parser.add_argument("--pycache", action="store_true", help="run ocimerge with cached bytecode")
    parser.add_argument("--regen", action="store_true", help="rewrite the cached inputs")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.size_mb < 3 or args.resume_mb < 1 or args.repeat < 1 or args.rate_mib <= 0:
        parser.error("--size-mb must be at least 3, --resume-mb and --repeat at least 1, --rate-mib above 0")
    return args


def missing_tool(args: argparse.Namespace) -> str | None:
    tools = [(str(OCIMERGE), "make"), (REGISTRY_BINARY, "apt-get install -y docker-registry")]
    if args.skopeo and args.case != "resume":
        tools.append((SKOPEO, "apt-get install -y skopeo"))
    for tool, fix in tools:
        if not os.access(tool, os.X_OK):
            return f"{tool} is not installed (run: {fix})"
    return None


def print_header(command: str, machine: dict[str, Any], args: argparse.Namespace) -> None:
    print("\n==== ocimerge link benchmark ====")
    print(f"command:  {command}")
    print(
        f"machine:  nproc {machine['nproc']}, {machine['cpu']}, {machine['memory_mib']} MiB RAM, "
        f"load {' '.join(machine['loadavg_at_start'])} at start\n          {machine['python']}, "
        f"{machine['system']}\n          {machine['registry']}, {machine['ocimerge']}, {machine['skopeo']}\n"
        f"          ocimerge bytecode: {machine['ocimerge_bytecode']}"
    )
    print(
        f"link:     a TCP relay on 127.0.0.1 in front of a new Distribution for every trial; client -> registry\n"
        f"          through one token bucket of {args.rate_mib:g} MiB/s (burst {BURST // 1024} KiB) shared by all "
        "connections;\n          registry -> client unthrottled; bytes counted each way per connection\n"
        "method:   line-rate time = bytes up through the relay / rate; ratio = wall time (start-up included) / it;\n"
        f"          median of {args.repeat} run(s); sync and a wait (up to {args.quiet_wait:.0f} s) for an idle "
        "machine before every run;\n          each ocimerge run with a temporary XDG_STATE_HOME (the resume "
        "case's two runs share one)"
    )


def report(
    line: LineRateResult | None, trials: list[ResumeRun], resume_command: str, rate_mib: float
) -> dict[str, bool]:
    """Print the commands and both cases' figures; return each target's verdict."""
    targets: dict[str, bool] = {}
    if line is not None:
        for name, cmds in line.commands.items():
            print(f"timed:    (line rate) [{name}] " + "\n            && ".join(cmds))
    if resume_command:
        print(f"timed:    (resume) twice: {resume_command}")
    if line is not None:
        targets.update(report_line_rate(line, rate_mib))
    if trials:
        targets.update(report_resume(trials))
    failed = [k for k, ok in targets.items() if not ok]
    print(
        f"\nresult: {len(targets) - len(failed)}/{len(targets)} targets met"
        + (f" (missed: {', '.join(failed)})" if failed else "")
    )
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if problem := missing_tool(args):
        print(f"link_bench: error: {problem}", file=sys.stderr)
        return 2
    command = shlex.join([sys.executable, *sys.argv])
    if args.pycache:
        use_pycache()
    machine = {**machine_info(), "skopeo": tool_version([SKOPEO, "--version"]) if os.access(SKOPEO, os.X_OK) else "-"}
    line: LineRateResult | None = None
    trials: list[ResumeRun] = []
    resume_command = ""
    try:
        if args.case in ("all", "line-rate"):
            case = line_rate_case(args.size_mb)
            print(f"== line rate: {case.describe()}, {args.repeat} timed run(s)", flush=True)
            line = bench_line_rate(case, args)
        if args.case in ("all", "resume"):
            print(f"== resume: one layer of {args.resume_mb} MiB, {args.repeat} trial(s)", flush=True)
            trials, resume_command = bench_resume(resume_case(args.resume_mb), args)
    except (CommandError, OSError, RuntimeError) as exc:
        print(f"link_bench: error: {exc}", file=sys.stderr)
        return 1
    print_header(command, machine, args)
    targets = report(line, trials, resume_command, args.rate_mib)
    if args.json:
        payload = {
            "command": command,
            "machine": machine,
            "options": {k: v for k, v in vars(args).items() if k != "json"},
            "rate_bytes_per_s": args.rate_mib * MIB,
            "burst_bytes": BURST,
            "line_rate": line.to_json() if line is not None else None,
            "resume": {"command": resume_command, "trials": [t.to_json() for t in trials]} if trials else None,
            "targets": targets,
        }
        write_report(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
