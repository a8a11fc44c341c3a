"""Benchmark ``ocimerge create`` against ``cp`` and ``skopeo copy`` on the same inputs.

What is measured, and why:

* ``ocimerge create -o OUT.tar a.tar b.tar c.tar``: merging three per-platform OCI archives
  (linux/amd64, linux/arm64/v8, linux/arm/v7) into one multi-platform OCI archive. ocimerge
  streams every blob and checks its sha256 on the way, so it cannot beat a plain copy; the
  question is how close it gets. Wall time and the child's peak RSS (``os.wait4``) are taken.
* ``cp a.tar b.tar c.tar DIR/``: the floor. The same bytes read and written once, no hashing.
  Target: ocimerge/cp <= 3.0.
* ``skopeo copy --preserve-digests oci-archive:X oci:LAYOUT:tagN`` for the three inputs in
  turn into one layout: what people do today without ocimerge (skopeo unpacks each archive to
  a temporary directory, then copies and verifies the blobs). Target: ocimerge/skopeo <= 0.5.
* Peak RSS of ocimerge at two input sizes (``--size-mb`` and a quarter of it). Streaming means
  memory must not grow with the images. Target: < 100 MiB at both sizes, within 10 MiB.

Inputs are incompressible (``os.urandom``) layers, written once under ``bench/work/`` and
reused while their sizes match (``--regen`` rewrites them). The page cache is not dropped
(that needs root and would be unrepresentative): every command gets one untimed warm-up run,
so all are measured warm; ``sync`` runs before each timed run so no command pays for the
write-back of the previous one. Each command is timed ``--repeat`` times, round-robin, and
the median is reported. "MiB" is 2**20 bytes, and ``--size-mb`` counts MiB.

The script exits 0 when a target is missed (it is a report) and non-zero when a command fails.
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
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
OCIMERGE = ROOT / ".venv" / "bin" / "ocimerge"
SKOPEO = "/usr/bin/skopeo"
MIB = 1024 * 1024
CHUNK = 4 * MIB
LAYERS_PER_IMAGE = 3
# (architecture, variant, file and tag name)
PLATFORMS = (("amd64", None, "amd64"), ("arm64", "v8", "arm64"), ("arm", "v7", "armv7"))
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
RATIO_CP, RATIO_SKOPEO, RSS_LIMIT_MIB, RSS_FLAT_MIB = 3.0, 0.5, 100.0, 10.0


class CommandError(Exception):
    """A benchmarked command exited non-zero."""


# -- inputs -----------------------------------------------------------------------------------


def _header(name: str, size: int, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    assert len(header) == tarfile.BLOCKSIZE
    return header


def _add_bytes(out: BinaryIO, name: str, data: bytes) -> None:
    out.write(_header(name, len(data)) + data + b"\0" * (-len(data) % tarfile.BLOCKSIZE))


def _add_blob(out: BinaryIO, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _add_bytes(out, f"blobs/sha256/{digest[7:]}", data)
    return {"digest": digest, "size": len(data)}


def _add_random_blob(out: BinaryIO, size: int) -> dict[str, Any]:
    """Stream ``size`` random bytes as a blob; the header is patched once the hash is known."""
    start = out.tell()
    out.write(_header("blobs/sha256/" + "0" * 64, size))
    hasher, left = hashlib.sha256(), size
    while left:
        chunk = os.urandom(min(CHUNK, left))
        hasher.update(chunk)
        out.write(chunk)
        left -= len(chunk)
    out.write(b"\0" * (-size % tarfile.BLOCKSIZE))
    end = out.tell()
    out.seek(start)
    out.write(_header(f"blobs/sha256/{hasher.hexdigest()}", size))
    out.seek(end)
    return {"mediaType": LAYER_TYPE, "digest": "sha256:" + hasher.hexdigest(), "size": size}


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def rooted(value: object) -> object:
    """``value`` with every path under the repository written relative to it (``bench/work/…``).

    A report names commands and inputs; relative paths say the same on any clone and leave the
    machine's layout out of a file that may be shared.
    """
    if isinstance(value, str):
        return value.replace(f"{ROOT}/", "").replace(str(ROOT), ".")
    if isinstance(value, dict):
        return {k: rooted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rooted(v) for v in value]
    return value


def write_report(path: str, payload: dict[str, Any]) -> None:
    """``--json FILE``: the report, paths under the repository relative to it."""
    Path(path).write_text(json.dumps(rooted(payload), indent=2) + "\n")


def write_archive(path: Path, arch: str, variant: str | None, layer_size: int) -> None:
    """One single-platform OCI archive: oci-layout, layers, config, manifest, index.json."""
    temp = path.with_name(path.name + ".part")
    with open(temp, "wb") as out:
        _add_bytes(out, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        out.write(_header("blobs/", 0, directory=True))
        out.write(_header("blobs/sha256/", 0, directory=True))
        layers = [_add_random_blob(out, layer_size) for _ in range(LAYERS_PER_IMAGE)]
        plat: dict[str, str] = {"architecture": arch, "os": "linux"}
        if variant:
            plat["variant"] = variant
        # The layers are random bytes, not tars: their digest stands in for the diff_id.
        config = {
            **plat,
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layers]},
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "layers": layers,
            "config": {"mediaType": CONFIG_TYPE, **_add_blob(out, _json(config))},
        }
        entry = {"mediaType": MANIFEST_TYPE, **_add_blob(out, _json(manifest)), "platform": plat}
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}
        _add_bytes(out, "index.json", _json(index))
        out.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    os.replace(temp, path)


def ensure_inputs(size_mib: int, regen: bool) -> list[Path]:
    """The three archives of ``size_mib`` MiB of layers each, generated unless cached."""
    folder = WORK / f"in-{size_mib}mib"
    paths = [folder / f"in-{name}.tar" for _, _, name in PLATFORMS]
    stamp = folder / "stamp.json"
    if not regen and stamp.exists():
        expected = json.loads(stamp.read_text())
        if expected.get("size_mib") == size_mib and all(
            p.exists() and p.stat().st_size == expected["files"].get(p.name) for p in paths
        ):
            print(f"reusing inputs in {folder} (--regen to rewrite them)", flush=True)
            return paths
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    for (arch, variant, _), path in zip(PLATFORMS, paths, strict=True):
        write_archive(path, arch, variant, size_mib * MIB // LAYERS_PER_IMAGE)
    stamp.write_text(json.dumps({"size_mib": size_mib, "files": {p.name: p.stat().st_size for p in paths}}))
    print(f"generated {folder} in {time.perf_counter() - start:.1f} s", flush=True)
    return paths


# -- measuring --------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    max_rss_kib: int


# Peak RSS needs a small launcher: Linux carries the hiwater RSS of the forking process over
# exec into the child's ru_maxrss, so a command forked straight from this script would report
# at least this script's RSS. The launcher (a bare interpreter, ~6-8 MiB, which is then the
# floor of every figure) forks the command, times it and reports its wait4 rusage (wall
# seconds, peak RSS KiB, user and system CPU seconds; push_bench.py uses the CPU figures too).
LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    except OSError as exc:
        print(f"cannot run {sys.argv[2]}: {exc}", file=sys.stderr, flush=True)
    os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{time.perf_counter() - start} {usage.ru_maxrss} {usage.ru_utime} {usage.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(argv: Sequence[str]) -> Run:
    """Run a command; wall time and its peak RSS. Raise :class:`CommandError` if it fails."""
    with tempfile.TemporaryFile() as log, tempfile.NamedTemporaryFile("r") as figures:
        launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, figures.name, *argv]
        code = subprocess.call(launcher, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if code != 0:
            log.seek(0)
            output = log.read().decode(errors="replace")[-4000:]
            raise CommandError(f"{shlex.join(argv)} exited with {code}:\n{output}")
        seconds, rss, _user, _system = figures.read().split()
    return Run(float(seconds), int(rss))


@dataclass
class Subject:
    """One benchmarked command: how to run it, and what to delete before each run."""

    name: str
    commands: list[list[str]]
    output: Path
    output_is_dir: bool = False
    runs: list[Run] = field(default_factory=list)

    def clean(self) -> None:
        if self.output.is_dir():
            shutil.rmtree(self.output)
        self.output.unlink(missing_ok=True)

    def measure(self) -> Run:
        """Run the commands in turn on a clean output: total time, largest peak RSS."""
        self.clean()
        if self.output_is_dir:
            self.output.mkdir()
        os.sync()  # write back the previous run's output now, not during this run
        runs = [run(c) for c in self.commands]
        return Run(sum(r.seconds for r in runs), max(r.max_rss_kib for r in runs))

    @property
    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def peak_rss_mib(self) -> float:
        return max(r.max_rss_kib for r in self.runs) / 1024


def subjects(inputs: list[Path]) -> list[Subject]:
    out = WORK / "out"
    out.mkdir(parents=True, exist_ok=True)
    merged, layout = out / "merged.tar", out / "skopeo-layout"
    names = [name for _, _, name in PLATFORMS]
    skopeo = [
        [SKOPEO, "copy", "-q", "--preserve-digests", f"oci-archive:{src}", f"oci:{layout}:{name}"]
        for src, name in zip(inputs, names, strict=True)
    ]
    return [
        Subject("ocimerge", [[str(OCIMERGE), "create", "-q", "-o", str(merged), *map(str, inputs)]], merged),
        Subject("cp", [["cp", *map(str, inputs), str(out / "cp") + "/"]], out / "cp", True),
        Subject("skopeo", skopeo, layout),
    ]


def bench_size(size_mib: int, repeat: int, regen: bool) -> dict[str, Any]:
    inputs = ensure_inputs(size_mib, regen)
    total = sum(p.stat().st_size for p in inputs)
    subs = subjects(inputs)
    try:
        for sub in subs:
            print(f"  warm-up {sub.name} ...", flush=True)
            sub.measure()
        merged = subs[0].output
        if merged.stat().st_size < total - MIB:
            raise CommandError(f"{merged} is {merged.stat().st_size} bytes; inputs: {total}")
        for i in range(repeat):
            for sub in subs:
                sub.runs.append(sub.measure())
                print(f"  run {i + 1}/{repeat} {sub.name:8s} {sub.runs[-1].seconds:7.2f} s", flush=True)
    finally:
        for sub in subs:
            sub.clean()
    by = {s.name: s for s in subs}
    return {
        "size_mib_per_image": size_mib,
        "input_bytes": total,
        "commands": {s.name: [shlex.join(c) for c in s.commands] for s in subs},
        "median_s": {s.name: s.median for s in subs},
        "runs": {s.name: [asdict(r) for r in s.runs] for s in subs},
        "peak_rss_mib": {s.name: s.peak_rss_mib for s in subs},
        "ocimerge_over_cp": by["ocimerge"].median / by["cp"].median,
        "ocimerge_over_skopeo": by["ocimerge"].median / by["skopeo"].median,
    }


# -- report -----------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def tool_version(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown version"


def report(results: list[dict[str, Any]]) -> dict[str, bool]:
    """Print the figures of every size; return each target's verdict."""
    targets: dict[str, bool] = {}
    for res in results:
        size, mib = res["size_mib_per_image"], res["input_bytes"] / MIB
        print(f"\nsize {size} MiB per image ({mib:.0f} MiB of input in total)")
        for name, label in (("ocimerge", "ocimerge create"), ("cp", "cp"), ("skopeo", "skopeo copy x3")):
            med, runs = res["median_s"][name], [r["seconds"] for r in res["runs"][name]]
            print(
                f"  {label:16s} {med:7.2f} s  (min {min(runs):5.2f}, max {max(runs):5.2f})  "
                f"{mib / med:5.0f} MiB/s  peak RSS {res['peak_rss_mib'][name]:5.1f} MiB"
            )
        for key, limit, label in (
            ("ocimerge_over_cp", RATIO_CP, "ocimerge / cp"),
            ("ocimerge_over_skopeo", RATIO_SKOPEO, "ocimerge / skopeo"),
        ):
            ok = targets[f"{key}@{size}"] = res[key] <= limit
            print(f"  {label:18s} {res[key]:8.2f}      {'target <= ' + str(limit):18s} {verdict(ok)}")
        rss = res["peak_rss_mib"]["ocimerge"]
        ok = targets[f"rss@{size}"] = rss < RSS_LIMIT_MIB
        print(f"  {'ocimerge peak RSS':18s} {rss:8.1f} MiB  {f'target < {RSS_LIMIT_MIB:.0f} MiB':18s} {verdict(ok)}")
    rss_all = [r["peak_rss_mib"]["ocimerge"] for r in results]
    spread = max(rss_all) - min(rss_all)
    ok = targets["rss_flat"] = spread <= RSS_FLAT_MIB
    sizes = ", ".join(
        f"{r['size_mib_per_image']} MiB/image: {x:.1f} MiB" for r, x in zip(results, rss_all, strict=True)
    )
    print(
        f"\nocimerge peak RSS flat ({sizes}): spread {spread:.1f} MiB   "
        f"target <= {RSS_FLAT_MIB:.0f} MiB   {verdict(ok)}"
    )
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--size-mb", type=int, default=420, help="MiB of layer data per image (default 420); a quarter is run too"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command (median)")
    parser.add_argument("--regen", action="store_true", help="rewrite the cached inputs")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.size_mb < 4 or args.repeat < 1:
        parser.error("--size-mb must be at least 4 and --repeat at least 1")
    for tool in (str(OCIMERGE), SKOPEO, shutil.which("cp") or "cp"):
        if not os.access(tool, os.X_OK):
            print(f"merge_bench: error: {tool} is not installed", file=sys.stderr)
            return 2
    command = shlex.join([sys.executable, *sys.argv])
    machine = {
        "nproc": len(os.sched_getaffinity(0)),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "skopeo": tool_version([SKOPEO, "--version"]),
        "ocimerge": tool_version([str(OCIMERGE), "--version"]),
    }
    results: list[dict[str, Any]] = []
    try:
        startup = statistics.median(run([str(OCIMERGE), "--version"]).seconds for _ in range(3))
        floor = run(["true"]).max_rss_kib / 1024
        for size in (args.size_mb, args.size_mb // 4):
            print(f"== {size} MiB per image, {args.repeat} timed run(s) per command", flush=True)
            results.append(bench_size(size, args.repeat, args.regen))
    except (CommandError, OSError) as exc:
        print(f"merge_bench: error: {exc}", file=sys.stderr)
        return 1
    print("\n==== ocimerge merge benchmark ====")
    print(f"command:  {command}")
    print(
        f"machine:  nproc {machine['nproc']}, {machine['python']}, {machine['system']}, "
        f"{machine['skopeo']}, {machine['ocimerge']}"
    )
    print(
        f"method:   median of {args.repeat} timed run(s) per command, round-robin, each "
        "after one untimed warm-up run;\n          page cache warm (not dropped), sync "
        "before every run; each image is 3 layers of random bytes"
    )
    print(
        f"fixed:    ocimerge start-up ({OCIMERGE.name} --version) {startup:.2f} s; "
        f"RSS floor of the launcher {floor:.1f} MiB (cp's RSS is this floor)"
    )
    for name, cmds in results[0]["commands"].items():
        print(f"timed:    [{name}] " + " && ".join(cmds))
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
            "ocimerge_startup_s": startup,
            "rss_floor_mib": floor,
            "results": results,
            "targets": targets,
        }
        write_report(args.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
