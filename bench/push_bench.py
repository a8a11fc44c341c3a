"""Benchmark pushing a multi-platform image to a registry: ``ocimerge create -t`` against buildah.

What is measured, and why:

* Two cases of per-platform OCI archives. (a) big blobs: 3 platforms (linux/amd64,
  linux/arm64/v8, linux/arm/v7) of ``--size-mb`` MiB each, i.e. three layers of random bytes
  per image plus one tiny layer that all three images share. (b) many small blobs:
  5 platforms x 40 layers of 64 KiB of random bytes.
* ``ocimerge create -q --json -t HOST/REPO:TAG in*.tar``: merge the archives into one index
  and push blobs, manifests, index and tag. Timed "fresh" (empty registry) and "again" (the
  same command once everything is there). Wall time, peak RSS and user+sys CPU come from
  ``os.wait4`` in a tiny launcher process, as in ``merge_bench.py``.
* buildah, the usual way to do the same job: ``manifest create LIST``, ``manifest add LIST
  oci-archive:X`` for each input and ``manifest push --all LIST docker://HOST/REPO:TAG``, with
  vfs storage in a fresh ``--root``/``--runroot`` for every sequence. The whole sequence is
  buildah's fresh figure; the push step alone is shown too.
* Every fresh push goes to a NEW Distribution process (``/usr/bin/docker-registry``, started
  by ``tests/registries.py``) with empty storage: blobs are content-addressed per registry,
  so a fresh repository name on a used registry would not be fresh. The registry's own CPU
  (``/proc/PID/stat``) is shown for every push.

Targets: (a) fresh ocimerge/buildah <= 0.45; (a) again < 0.5 s including interpreter
start-up; (b) fresh ocimerge/buildah <= 0.5; ocimerge peak RSS < 64 MiB in every run; ocimerge
user+sys CPU < 1.5 s per GiB pushed in (a) fresh.

The layers are gzip streams (stored deflate blocks, so still incompressible random bytes)
typed ``application/vnd.oci.image.layer.v1.tar+gzip``. buildah (containers/image) gzips any
layer that does not look compressed when it pushes to a registry, so with plain random layers
it would push other blobs than ocimerge and spend its time in gzip. With gzip layers both
tools push the same bytes; the script checks that from the manifests buildah pushed.

Inputs are written once under ``bench/work/`` and reused while they match (``--regen``
rewrites them); they are read once before timing, so every run starts with a warm page cache.
Before every timed run: ``sync``, then a wait (``--quiet-wait``) until the machine is idle,
since it may be shared. ``--pycache`` gives ocimerge cached bytecode when the environment
forbids writing it (``PYTHONDONTWRITEBYTECODE``). "MiB" is 2**20 bytes, "GiB" 2**30, ``--size-mb`` counts
MiB. The script exits 0 when a target is missed (it is a report), 1 when a command fails and
2 when a tool is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from merge_bench import (
    CHUNK,
    CONFIG_TYPE,
    LAUNCHER,
    MANIFEST_TYPE,
    MIB,
    OCIMERGE,
    PLATFORMS,
    ROOT,
    WORK,
    CommandError,
    _add_blob,
    _add_bytes,
    _header,
    _json,
    tool_version,
    verdict,
    write_report,
)
from registries import (
    REGISTRY_BINARY,
    cleanup,
    start_registry,
)

BUILDAH = "/usr/bin/buildah"
GIB = 1024 * MIB
LAYER_GZIP_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX_ACCEPT = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = f"{MANIFEST_TYPE}, application/vnd.docker.distribution.manifest.v2+json"
SHARED_LAYER_BYTES = 4096
LIST_NAME = "benchlist"
TAG = "latest"
# (architecture, variant, file and tag name): merge_bench's three, and two more for case (b)
PLATFORMS_B = (*PLATFORMS, ("ppc64le", None, "ppc64le"), ("s390x", None, "s390x"))
RATIO_A, RATIO_B, AGAIN_LIMIT_S, RSS_LIMIT_MIB, CPU_LIMIT_S_PER_GIB = 0.45, 0.5, 0.5, 64.0, 1.5


@dataclass(frozen=True)
class Case:
    """One input set: its platforms, the random layers of each image, an optional shared layer."""

    key: str
    folder: Path
    platforms: tuple[tuple[str, str | None, str], ...]
    layer_sizes: tuple[int, ...]
    shared_bytes: int
    ratio_limit: float

    @property
    def repository(self) -> str:
        return f"bench/push-{self.key}"

    def describe(self) -> str:
        sizes = sorted(set(self.layer_sizes))
        each = "/".join(_size(s) for s in sizes)
        shared = f" + 1 layer of {_size(self.shared_bytes)} shared by all" if self.shared_bytes else ""
        return f"{len(self.platforms)} platforms x ({len(self.layer_sizes)} layers of {each}{shared})"


def _size(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n / 1024:.0f} KiB"


def cases(size_mib: int) -> list[Case]:
    return [
        Case("a", WORK / f"push-a-{size_mib}mib", PLATFORMS, (size_mib * MIB // 3,) * 3, SHARED_LAYER_BYTES, RATIO_A),
        Case("b", WORK / "push-b-5x40x64kib", PLATFORMS_B, (64 * 1024,) * 40, 0, RATIO_B),
    ]


# -- inputs -----------------------------------------------------------------------------------


def _random_chunks(size: int) -> Iterator[bytes]:
    for offset in range(0, size, CHUNK):
        yield os.urandom(min(CHUNK, size - offset))


def _add_gzip_blob(out: BinaryIO, content: int | bytes) -> tuple[dict[str, Any], str]:
    """Stream a layer: a gzip of ``content`` (random bytes of that size, or these bytes).

    Deflate level 0 (stored blocks) keeps random data random and costs nothing; gzip output
    of the same bytes is identical, so a shared layer has one digest in every archive. The
    tar header is patched once the size and hash are known. Returns (descriptor, diff_id).
    """
    start = out.tell()
    out.write(_header("blobs/sha256/" + "0" * 64, 0))
    blob_hash, diff_hash = hashlib.sha256(), hashlib.sha256()
    size = 0
    gzip = zlib.compressobj(0, zlib.DEFLATED, 31)

    def emit(data: bytes) -> None:
        nonlocal size
        blob_hash.update(data)
        out.write(data)
        size += len(data)

    for chunk in [content] if isinstance(content, bytes) else _random_chunks(content):
        diff_hash.update(chunk)
        emit(gzip.compress(chunk))
    emit(gzip.flush())
    out.write(b"\0" * (-size % 512))
    end = out.tell()
    out.seek(start)
    out.write(_header(f"blobs/sha256/{blob_hash.hexdigest()}", size))
    out.seek(end)
    descriptor = {"mediaType": LAYER_GZIP_TYPE, "digest": "sha256:" + blob_hash.hexdigest(), "size": size}
    return descriptor, "sha256:" + diff_hash.hexdigest()


def write_archive(path: Path, arch: str, variant: str | None, layers: Sequence[int | bytes]) -> dict[str, int]:
    """One single-platform OCI archive; returns its config and layer blobs (digest: size)."""
    temp = path.with_name(path.name + ".part")
    with open(temp, "wb") as out:
        _add_bytes(out, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        out.write(_header("blobs/", 0, directory=True))
        out.write(_header("blobs/sha256/", 0, directory=True))
        added = [_add_gzip_blob(out, layer) for layer in layers]
        plat: dict[str, str] = {"architecture": arch, "os": "linux"}
        if variant:
            plat["variant"] = variant
        config = {
            **plat,
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in added]},
        }
        config_descriptor = {"mediaType": CONFIG_TYPE, **_add_blob(out, _json(config))}
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": config_descriptor,
            "layers": [d for d, _ in added],
        }
        entry = {"mediaType": MANIFEST_TYPE, **_add_blob(out, _json(manifest)), "platform": plat}
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}
        _add_bytes(out, "index.json", _json(index))
        out.write(b"\0" * 1024)
    os.replace(temp, path)
    return {d["digest"]: d["size"] for d in [config_descriptor, *(d for d, _ in added)]}


def ensure_inputs(case: Case, regen: bool) -> tuple[list[Path], dict[str, int]]:
    """The archives of ``case``, generated unless cached; and every blob to push (digest: size)."""
    paths = [case.folder / f"in-{name}.tar" for _, _, name in case.platforms]
    stamp = case.folder / "stamp.json"
    spec = {
        "layers": list(case.layer_sizes),
        "shared": case.shared_bytes,
        "gzip": "stored",
        "platforms": [name for _, _, name in case.platforms],
    }
    if not regen and stamp.exists():
        saved = json.loads(stamp.read_text())
        if saved.get("spec") == spec and all(
            p.exists() and p.stat().st_size == saved["files"].get(p.name) for p in paths
        ):
            print(f"reusing inputs in {case.folder} (--regen to rewrite them)", flush=True)
            return paths, {str(k): int(v) for k, v in saved["blobs"].items()}
    shutil.rmtree(case.folder, ignore_errors=True)
    case.folder.mkdir(parents=True)
    start = time.perf_counter()
    shared = [os.urandom(case.shared_bytes)] if case.shared_bytes else []
    blobs: dict[str, int] = {}
    for (arch, variant, _), path in zip(case.platforms, paths, strict=True):
        blobs.update(write_archive(path, arch, variant, [*shared, *case.layer_sizes]))
    stamp.write_text(json.dumps({"spec": spec, "files": {p.name: p.stat().st_size for p in paths}, "blobs": blobs}))
    print(f"generated {case.folder} in {time.perf_counter() - start:.1f} s", flush=True)
    return paths, blobs


def warm(paths: Sequence[Path]) -> None:
    """Read the inputs once so that every timed run finds them in the page cache."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(CHUNK):
                pass


# -- measuring --------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    max_rss_kib: int
    user_s: float
    sys_s: float
    registry_cpu_s: float = 0.0
    rest_cpu_s: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def launch(argv: Sequence[str]) -> tuple[Run, str]:
    """Run a command through the launcher: its figures and its stdout; raise if it fails."""
    with tempfile.NamedTemporaryFile("r") as figures:
        launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, figures.name, *argv]
        done = subprocess.run(launcher, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-4000:]
            raise CommandError(f"{shlex.join(argv)} exited with {done.returncode}:\n{output}")
        seconds, rss, user, system = figures.read().split()
    return Run(float(seconds), int(rss), float(user), float(system)), done.stdout


def process_cpu(pid: int) -> float:
    """User+system CPU seconds a running process has used so far (``/proc/PID/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (``/proc/stat``: all but idle and iowait)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def wait_until_quiet(limit_s: float) -> None:
    """Wait up to ``limit_s`` until the machine is idle (under 0.2 CPU busy over half a second).

    The machine may be shared (a test suite running next to the benchmark): a run that starts
    while something else is busy measures the other job as much as the command.
    """
    deadline = time.monotonic() + limit_s
    while True:
        busy = machine_busy()
        time.sleep(0.5)
        if (machine_busy() - busy) / 0.5 < 0.2:
            return
        if time.monotonic() >= deadline:
            print(f"  (machine still busy after waiting {limit_s:.0f} s: running anyway)", flush=True)
            return


def total(runs: Sequence[Run]) -> Run:
    """Steps run one after the other: summed times, the largest peak RSS."""
    return Run(
        sum(r.seconds for r in runs),
        max(r.max_rss_kib for r in runs),
        sum(r.user_s for r in runs),
        sum(r.sys_s for r in runs),
        sum(r.registry_cpu_s for r in runs),
        sum(r.rest_cpu_s for r in runs),
    )


class Registry:
    """A fresh Distribution process (``tests/registries.py``); stopped and deleted on exit."""

    def __init__(self, quiet_wait_s: float) -> None:
        self.quiet_wait_s = quiet_wait_s
        self.server = start_registry("anonymous")
        self.host: str = self.server.host
        assert self.server.process is not None  # start_registry always starts a process
        self.pid: int = self.server.process.pid

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        cleanup(self.server)
        os.sync()  # write back the deletion now, not during the next timed run

    def timed(self, argvs: Sequence[Sequence[str]]) -> list[tuple[Run, str]]:
        """Run the commands in turn after a ``sync``, each with the registry's CPU during it."""
        os.sync()
        if self.quiet_wait_s > 0:
            wait_until_quiet(self.quiet_wait_s)
        out = []
        for argv in argvs:
            before, busy = process_cpu(self.pid), machine_busy()
            run, stdout = launch(argv)
            run.registry_cpu_s = process_cpu(self.pid) - before
            run.rest_cpu_s = max(0.0, machine_busy() - busy - run.registry_cpu_s - run.cpu_s)
            out.append((run, stdout))
        return out

    def _get(self, reference: str, repository: str, accept: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://{self.host}/v2/{repository}/manifests/{reference}", headers={"Accept": accept}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            value: dict[str, Any] = json.load(response)
        return value

    def pushed_blobs(self, repository: str) -> tuple[int, set[str]]:
        """The tagged index: how many manifests it names, and every blob those name."""
        index = self._get(TAG, repository, INDEX_ACCEPT)
        blobs: set[str] = set()
        for entry in index["manifests"]:
            manifest = self._get(entry["digest"], repository, MANIFEST_ACCEPT)
            blobs.add(manifest["config"]["digest"])
            blobs.update(layer["digest"] for layer in manifest["layers"])
        return len(index["manifests"]), blobs


def ocimerge_argv(host: str, case: Case, inputs: Sequence[Path], jobs: int | None) -> list[str]:
    extra = ["--jobs", str(jobs)] if jobs else []
    return [str(OCIMERGE), "create", "-q", "--json", *extra, "-t", f"{host}/{case.repository}:{TAG}", *map(str, inputs)]


def buildah_argvs(host: str, case: Case, inputs: Sequence[Path], folder: Path) -> list[list[str]]:
    base = [BUILDAH, "--storage-driver", "vfs", "--root", str(folder / "root"), "--runroot", str(folder / "runroot")]
    return [
        [*base, "manifest", "create", LIST_NAME],
        *([*base, "manifest", "add", LIST_NAME, f"oci-archive:{p}"] for p in inputs),
        [
            *base,
            "manifest",
            "push",
            "-q",
            "--all",
            "--tls-verify=false",
            LIST_NAME,
            f"docker://{host}/{case.repository}:{TAG}",
        ],
    ]


def check_ocimerge(stdout: str, blobs: dict[str, int], *, fresh: bool) -> int:
    """What ocimerge says it pushed must be every blob (fresh) or none (again); bytes pushed."""
    pushed = json.loads(stdout)["pushed"][0]["blobs"]
    want = (len(blobs), 0, sum(blobs.values())) if fresh else (0, len(blobs), 0)
    got = (pushed["uploaded"], pushed["skipped"], pushed["bytesUploaded"])
    if got != want:
        raise CommandError(f"ocimerge pushed (uploaded, skipped, bytes) = {got}, expected {want}")
    return int(pushed["bytesUploaded"])


def check_registry(registry: Registry, case: Case, blobs: dict[str, int], who: str) -> bool:
    """The tag names an index of every platform; True when its blobs are exactly the inputs'."""
    count, found = registry.pushed_blobs(case.repository)
    if count != len(case.platforms):
        raise CommandError(f"{who}: the pushed index names {count} manifests, not {len(case.platforms)}")
    return found == set(blobs)


@dataclass
class CaseResult:
    case: str
    description: str
    blobs: int
    bytes_to_push: int
    ratio_limit: float
    commands: dict[str, list[str]] = field(default_factory=dict)
    runs: dict[str, list[Run]] = field(default_factory=dict)
    buildah_steps: list[dict[str, float]] = field(default_factory=list)
    buildah_same_blobs: list[bool] = field(default_factory=list)

    def add(self, name: str, run: Run) -> None:
        self.runs.setdefault(name, []).append(run)

    def median(self, name: str) -> float:
        return statistics.median(r.seconds for r in self.runs[name])

    def median_cpu_per_gib(self, name: str) -> float:
        return statistics.median(r.cpu_s for r in self.runs[name]) / (self.bytes_to_push / GIB)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["median_s"] = {name: self.median(name) for name in self.runs}
        out["median_cpu_s"] = {name: statistics.median(r.cpu_s for r in runs) for name, runs in self.runs.items()}
        out["peak_rss_mib"] = {name: max(r.max_rss_kib for r in runs) / 1024 for name, runs in self.runs.items()}
        return out


def buildah_sequence(registry: Registry, case: Case, inputs: Sequence[Path]) -> tuple[list[Run], list[str]]:
    """create, add each input, push --all, in a buildah root of its own (deleted after)."""
    folder = Path(tempfile.mkdtemp(prefix="buildah-", dir=WORK))
    try:
        argvs = buildah_argvs(registry.host, case, inputs, folder)
        return [run for run, _ in registry.timed(argvs)], [shlex.join(a) for a in argvs]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def bench_case(case: Case, repeat: int, jobs: int | None, regen: bool, quiet_wait_s: float) -> CaseResult:
    inputs, blobs = ensure_inputs(case, regen)
    warm(inputs)
    result = CaseResult(case.key, case.describe(), len(blobs), sum(blobs.values()), case.ratio_limit)
    for i in range(repeat):
        with Registry(quiet_wait_s) as registry:
            argv = ocimerge_argv(registry.host, case, inputs, jobs)
            [(fresh, out)] = registry.timed([argv])
            check_ocimerge(out, blobs, fresh=True)
            if not check_registry(registry, case, blobs, "ocimerge"):
                raise CommandError("ocimerge: the pushed manifests do not name exactly the input blobs")
            [(again, out)] = registry.timed([argv])
            check_ocimerge(out, blobs, fresh=False)
        result.add("ocimerge fresh", fresh)
        result.add("ocimerge again", again)
        result.commands.setdefault("ocimerge", [shlex.join(argv)])
        print(
            f"  ({case.key}) run {i + 1}/{repeat} ocimerge  fresh {fresh.seconds:7.2f} s   "
            f"again {again.seconds:5.2f} s",
            flush=True,
        )
        with Registry(quiet_wait_s) as registry:
            steps, commands = buildah_sequence(registry, case, inputs)
            result.buildah_same_blobs.append(check_registry(registry, case, blobs, "buildah"))
            again_steps, _ = buildah_sequence(registry, case, inputs)
        result.add("buildah fresh", total(steps))
        result.add("buildah push", steps[-1])
        result.add("buildah again", total(again_steps))
        result.buildah_steps.append(
            {"create": steps[0].seconds, "add": sum(r.seconds for r in steps[1:-1]), "push": steps[-1].seconds}
        )
        result.commands.setdefault("buildah", commands)
        print(
            f"  ({case.key}) run {i + 1}/{repeat} buildah   fresh {total(steps).seconds:7.2f} s   "
            f"again {total(again_steps).seconds:5.2f} s",
            flush=True,
        )
    return result


# -- report -----------------------------------------------------------------------------------


def report(results: list[CaseResult]) -> dict[str, bool]:
    """Print the figures of every case; return each target's verdict."""
    targets: dict[str, bool] = {}
    for res in results:
        mib = res.bytes_to_push / MIB
        print(f"\ncase ({res.case}): {res.description}; {res.blobs} blobs, {mib:.1f} MiB to push")
        print(
            f"  {'':22s} {'median':>8s} {'min':>7s} {'max':>7s} {'MiB/s':>7s} {'peak RSS':>9s} "
            f"{'CPU u+s':>8s} {'registry CPU':>13s} {'rest of machine':>16s}"
        )
        for name in ("ocimerge fresh", "ocimerge again", "buildah fresh", "buildah push", "buildah again"):
            runs = res.runs[name]
            secs = [r.seconds for r in runs]
            med = res.median(name)
            rate = f"{mib / med:7.0f}" if "again" not in name else f"{'-':>7s}"
            label = "  of which push" if name == "buildah push" else name
            print(
                f"  {label:22s} {med:6.2f} s {min(secs):7.2f} {max(secs):7.2f} {rate} "
                f"{max(r.max_rss_kib for r in runs) / 1024:5.1f} MiB "
                f"{statistics.median(r.cpu_s for r in runs):6.2f} s "
                f"{statistics.median(r.registry_cpu_s for r in runs):10.2f} s "
                f"{statistics.median(r.rest_cpu_s for r in runs):13.2f} s"
            )
        steps = {k: statistics.median(s[k] for s in res.buildah_steps) for k in ("create", "add", "push")}
        print(
            f"  buildah fresh steps (median): create {steps['create']:.2f} s, "
            f"add x{len(res.commands['buildah']) - 2} {steps['add']:.2f} s, push {steps['push']:.2f} s"
        )
        same = all(res.buildah_same_blobs)
        print(f"  buildah pushed exactly the input blobs (no recompression): {'yes' if same else 'NO'}")
        ratio = res.median("ocimerge fresh") / res.median("buildah fresh")
        limit = res.ratio_limit
        ok = targets[f"{res.case}_fresh_ratio"] = ratio <= limit
        print(f"  {'ocimerge / buildah fresh':30s} {ratio:8.2f}      {f'target <= {limit}':22s} {verdict(ok)}")
        print(f"  {'(ocimerge / buildah push only)':30s} {res.median('ocimerge fresh') / steps['push']:8.2f}")
        cpu = res.median_cpu_per_gib("ocimerge fresh")
        if res.case == "a":
            again = res.median("ocimerge again")
            ok = targets["a_again_s"] = again < AGAIN_LIMIT_S
            print(f"  {'ocimerge again':30s} {again:8.2f} s    {f'target < {AGAIN_LIMIT_S} s':22s} {verdict(ok)}")
            ok = targets["a_cpu_per_gib"] = cpu < CPU_LIMIT_S_PER_GIB
            print(
                f"  {'ocimerge CPU per GiB pushed':30s} {cpu:8.2f} s    "
                f"{f'target < {CPU_LIMIT_S_PER_GIB} s':22s} {verdict(ok)}"
            )
        else:
            print(f"  {'ocimerge CPU per GiB pushed':30s} {cpu:8.2f} s    (information: start-up dominates)")
    rss = (
        max(max(r.max_rss_kib for r in res.runs[n]) for res in results for n in ("ocimerge fresh", "ocimerge again"))
        / 1024
    )
    ok = targets["rss"] = rss < RSS_LIMIT_MIB
    print(
        f"\nocimerge peak RSS, all runs of all cases: {rss:.1f} MiB   target < {RSS_LIMIT_MIB:.0f} MiB   {verdict(ok)}"
    )
    return targets


def use_pycache() -> None:
    """Give ocimerge cached bytecode, as an installed copy has, without writing into ``src/``.

    ``PYTHONPYCACHEPREFIX`` puts every ``.pyc`` under ``bench/work/pycache`` (stdlib and
    site-packages included, since Python then looks only there), filled here by compileall.
    The launcher runs with ``-I`` and is not affected.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")
    python = str(OCIMERGE.parent / "python")
    paths = subprocess.run(
        [python, "-c", "import sys; print(*(p for p in sys.path if p), sep='\\n')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    print(f"compiling bytecode into {WORK / 'pycache'} ...", flush=True)
    skip = r"/(tests?|idlelib|tkinter|lib2to3|ensurepip|turtledemo|pydoc_data)/"
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", "-x", skip, *paths],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


def bytecode_note() -> str:
    if os.environ.get("PYTHONPYCACHEPREFIX"):
        return f"cached in {os.environ['PYTHONPYCACHEPREFIX']} (--pycache)"
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not (ROOT / "src" / "ocimerge" / "__pycache__").is_dir():
        return "PYTHONDONTWRITEBYTECODE is set and src/ocimerge has no __pycache__: compiled at every start"
    return "as found"


def machine_info() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory = next(
        (
            int(line.split()[1]) // 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_mib": memory,
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "buildah": tool_version([BUILDAH, "--version"]),
        "registry": tool_version([REGISTRY_BINARY, "--version"]),
        "ocimerge": tool_version([str(OCIMERGE), "--version"]),
        "ocimerge_bytecode": bytecode_note(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--size-mb", type=int, default=420, help="MiB of layer data per image in case (a) (default 420)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per command (median; default 1)")
    parser.add_argument("--jobs", type=int, help="pass --jobs N to ocimerge (default: ocimerge's own, 4)")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="wait up to S seconds for an idle machine before each timed run (default 60; 0: no)",
    )
    parser.add_argument(
        "--pycache",
        action="store_true",
        help="run ocimerge with cached bytecode (PYTHONPYCACHEPREFIX under bench/work)",
    )
    parser.add_argument("--regen", action="store_true", help="rewrite the cached inputs")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.size_mb < 3 or args.repeat < 1 or (args.jobs is not None and args.jobs < 1):
        parser.error("--size-mb must be at least 3, --repeat and --jobs at least 1")
    for tool, fix in (
        (str(OCIMERGE), "make"),
        (BUILDAH, "apt-get install -y buildah"),
        (REGISTRY_BINARY, "apt-get install -y docker-registry"),
    ):
        if not os.access(tool, os.X_OK):
            print(f"push_bench: error: {tool} is not installed (run: {fix})", file=sys.stderr)
            return 2
    command = shlex.join([sys.executable, *sys.argv])
    if args.pycache:
        use_pycache()
    machine = machine_info()
    results: list[CaseResult] = []
    try:
        startups = [launch([str(OCIMERGE), "--version"])[0] for _ in range(3)]
        startup = statistics.median(r.seconds for r in startups)
        startup_cpu = statistics.median(r.cpu_s for r in startups)
        floor = launch(["true"])[0].max_rss_kib / 1024
        for case in cases(args.size_mb):
            print(f"== case ({case.key}): {case.describe()}, {args.repeat} timed run(s)", flush=True)
            results.append(bench_case(case, args.repeat, args.jobs, args.regen, args.quiet_wait))
    except (CommandError, OSError, RuntimeError) as exc:
        print(f"push_bench: error: {exc}", file=sys.stderr)
        return 1
    print("\n==== ocimerge push benchmark ====")
    print(f"command:  {command}")
    print(
        f"machine:  nproc {machine['nproc']}, {machine['cpu']}, {machine['memory_mib']} MiB RAM, "
        f"load {' '.join(machine['loadavg_at_start'])} at start\n          {machine['python']}, "
        f"{machine['system']}\n          {machine['buildah']}, {machine['registry']}, {machine['ocimerge']}\n"
        f"          ocimerge bytecode: {machine['ocimerge_bytecode']}"
    )
    print(
        f"method:   median of {args.repeat} run(s); each fresh push to a new, empty Distribution on "
        "127.0.0.1 (plain HTTP),\n          'again' = the same command once more on that registry; "
        "buildah in a fresh vfs root every time;\n          inputs read once before timing (warm page "
        f"cache); sync, then a wait (up to {args.quiet_wait:.0f} s) for an idle machine, before every run;\n"
        "          layers are gzip streams of random bytes; 'rest of machine' "
        "= busy CPU (/proc/stat) not charged to the client or the registry: other processes and\n          "
        "kernel work (loopback softirq, write-back); a large value means the run was disturbed"
    )
    print(
        f"fixed:    ocimerge start-up ({OCIMERGE.name} --version) {startup:.2f} s, CPU {startup_cpu:.2f} s; "
        f"RSS floor of the launcher {floor:.1f} MiB"
    )
    for res in results:
        for name, cmds in res.commands.items():
            print(f"timed:    ({res.case}) [{name}] " + "\n            && ".join(cmds))
    targets = report(results)
    failed = [k for k, ok in targets.items() if not ok]
    print(
        f"\nresult: {len(targets) - len(failed)}/{len(targets)} targets met"
        + (f" (missed: {', '.join(failed)})" if failed else "")
    )
    if args.json:
        payload = {
            "command": command,
            "machine": machine,
            "repeat": args.repeat,
            "jobs": args.jobs,
            "quiet_wait_s": args.quiet_wait,
            "size_mib_per_image": args.size_mb,
            "ocimerge_startup_s": startup,
            "ocimerge_startup_cpu_s": startup_cpu,
            "rss_floor_mib": floor,
            "cases": [r.to_json() for r in results],
            "targets": targets,
        }
        write_report(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
