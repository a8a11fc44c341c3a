"""Benchmark an air-gap release: ocimerge lock + bundle + restore against skopeo sync.

What is measured, and why:

* The release: ``--images`` images (default 5), one platform each, sharing one base layer
  (``--base-mb``, default 300 MiB) with ``--unique-mb`` of their own (default 140 MiB): about
  1 GB of distinct blobs, as the issue asks. Layers are random bytes in stored gzip, so they
  neither compress nor dedupe by accident. They are pushed (untimed) into a source registry
  (CNCF Distribution, as in the tests) as ``bench/img<N>:1``.
* ocimerge: ``lock`` the five references, ``bundle --lock`` them into one OCI layout directory
  (the base layer stored once), then ``push DIR --to TARGET/mirror`` into a fresh registry.
* skopeo: ``skopeo sync --src docker --dest dir --scoped`` of the same five images into a
  directory, then ``skopeo sync --src dir --dest docker`` into another fresh registry.
  skopeo 1.9's ``sync`` reads and writes only its ``dir:`` format, not ``oci:`` layouts, so
  ``dir:`` is the "directory of layouts" here (one directory per image, each with its own
  copy of the base layer).
* Each restore goes through a counting TCP relay (``link_bench.Relay``, unthrottled) in front
  of its registry, so "bytes sent" is what crossed the wire towards the registry, HTTP
  included. Wall time and peak RSS come from the launcher's ``wait4`` (push_bench's). The
  directory each tool wrote is measured on disk too.

Ratios are ocimerge / skopeo from one run (``--json FILE`` writes every figure). The script
exits 0 with a report, 1 when a command fails or a restored image is wrong, 2 when a tool is
missing. "MiB" is 2**20 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from link_bench import Relay, TokenBucket
from merge_bench import MIB, OCIMERGE, SKOPEO, WORK, CommandError, tool_version, write_report
from push_bench import MANIFEST_ACCEPT, Registry, Run, launch, write_archive

#: The relay's rate: far above what one machine pushes, so it only counts.
UNTHROTTLED = 64.0 * 1024 * MIB


@dataclass(frozen=True)
class Release:
    """The images of one run: how many, and the sizes of the shared and own layers."""

    images: int
    base_mib: int
    unique_mib: int

    @property
    def folder(self) -> Path:
        return WORK / f"bundle-{self.images}x{self.base_mib}+{self.unique_mib}mib"

    @property
    def distinct_bytes(self) -> int:
        return (self.base_mib + self.images * self.unique_mib) * MIB


@dataclass
class Step:
    """One timed command: its figures and, for a restore, the bytes sent towards the registry."""

    name: str
    seconds: float
    max_rss_mib: float
    cpu_s: float
    bytes_up: int = 0

    @classmethod
    def of(cls, name: str, run: Run, bytes_up: int = 0) -> Step:
        return cls(name, run.seconds, run.max_rss_kib / 1024, run.cpu_s, bytes_up)


def ensure_inputs(release: Release, regen: bool) -> list[Path]:
    """One single-platform OCI archive per image, the base layer's bytes shared by all."""
    paths = [release.folder / f"img{i}.tar" for i in range(release.images)]
    stamp = release.folder / "stamp.json"
    spec = asdict(release)
    if not regen and stamp.exists() and json.loads(stamp.read_text()) == spec and all(p.exists() for p in paths):
        print(f"reusing inputs in {release.folder} (--regen to rewrite them)", flush=True)
        return paths
    shutil.rmtree(release.folder, ignore_errors=True)
    release.folder.mkdir(parents=True)
    base = os.urandom(release.base_mib * MIB)
    for path in paths:
        write_archive(path, "amd64", None, [base, release.unique_mib * MIB])
    stamp.write_text(json.dumps(spec))
    return paths


def disk_bytes(folder: Path) -> int:
    """Bytes of every regular file under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def manifest_digest(host: str, repository: str, tag: str) -> str:
    """The digest the registry answers for ``repository:tag``."""
    request = urllib.request.Request(
        f"http://{host}/v2/{repository}/manifests/{tag}", method="HEAD", headers={"Accept": MANIFEST_ACCEPT}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.headers["Docker-Content-Digest"])


def through(relay: Relay, argv: Sequence[str], name: str) -> Step:
    """Run ``argv`` and count the bytes that crossed ``relay`` towards its registry meanwhile."""
    mark = relay.mark()
    run, _ = launch(argv)
    relay.wait_closed(10)
    return Step.of(name, run, relay.traffic(mark).up)


def bench(release: Release, regen: bool) -> dict[str, Any]:
    """Set up the source registry, run both tools, and check what each restored."""
    inputs = ensure_inputs(release, regen)
    work = release.folder / "out"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    names = [f"bench/img{i}" for i in range(release.images)]
    steps: list[Step] = []
    with Registry(0) as source, Registry(0) as ours, Registry(0) as theirs:
        for path, name in zip(inputs, names, strict=True):
            launch([str(OCIMERGE), "push", "-q", str(path), f"{source.host}/{name}:1"])
        expected = {name: manifest_digest(source.host, name, "1") for name in names}
        listing = work / "images.txt"
        listing.write_text("".join(f"{source.host}/{name}:1\n" for name in names))
        lock, bundle = work / "images.lock", work / "release"
        run, _ = launch([str(OCIMERGE), "lock", "-q", str(listing), "-o", str(lock)])
        steps.append(Step.of("ocimerge lock", run))
        run, _ = launch([str(OCIMERGE), "bundle", "-q", "--lock", str(lock), "-o", str(bundle)])
        steps.append(Step.of("ocimerge bundle", run))
        with Relay(ours.host, TokenBucket(UNTHROTTLED)) as relay:
            steps.append(
                through(
                    relay,
                    [str(OCIMERGE), "push", "-q", str(bundle), "--to", f"{relay.host}/mirror"],
                    "ocimerge restore",
                )
            )
        synced = work / "skopeo"
        sync = [SKOPEO, "--insecure-policy", "sync", "--preserve-digests", "--all"]
        start = time.perf_counter()
        skopeo_out = []
        for name in names:
            run, _ = launch(
                [
                    *sync,
                    "--src",
                    "docker",
                    "--dest",
                    "dir",
                    "--scoped",
                    "--src-tls-verify=false",
                    f"{source.host}/{name}:1",
                    str(synced),
                ]
            )
            skopeo_out.append(run)
        steps.append(
            Step(
                "skopeo sync to dir",
                time.perf_counter() - start,
                max(r.max_rss_kib for r in skopeo_out) / 1024,
                sum(r.cpu_s for r in skopeo_out),
            )
        )
        with Relay(theirs.host, TokenBucket(UNTHROTTLED)) as relay:
            steps.append(
                through(
                    relay,
                    [
                        *sync,
                        "--src",
                        "dir",
                        "--dest",
                        "docker",
                        "--dest-tls-verify=false",
                        str(synced / source.host / "bench"),
                        f"{relay.host}/mirror",
                    ],
                    "skopeo sync to registry",
                )
            )
        restored = {
            "ocimerge": {n: manifest_digest(ours.host, f"mirror/{n}", "1") for n in names},
            "skopeo": {n: manifest_digest(theirs.host, "mirror/" + n.split("/", 1)[1], "1") for n in names},
        }
    return {
        "release": asdict(release),
        "distinct_bytes": release.distinct_bytes,
        "steps": [asdict(s) for s in steps],
        "disk": {"ocimerge bundle": disk_bytes(bundle), "skopeo dir": disk_bytes(synced)},
        "expected": expected,
        "restored": restored,
    }


def report(result: dict[str, Any]) -> dict[str, Any]:
    """Print the figures and the ocimerge / skopeo ratios; return the ratios."""
    steps = {s["name"]: s for s in result["steps"]}
    print(f"\n{'step':26s} {'wall':>8s} {'peak RSS':>10s} {'CPU':>7s} {'bytes up':>12s}")
    for s in result["steps"]:
        up = f"{s['bytes_up'] / MIB:9.1f} MiB" if s["bytes_up"] else ""
        print(f"{s['name']:26s} {s['seconds']:7.2f}s {s['max_rss_mib']:7.1f} MiB {s['cpu_s']:6.2f}s {up:>12s}")
    ours = ("ocimerge lock", "ocimerge bundle", "ocimerge restore")
    theirs = ("skopeo sync to dir", "skopeo sync to registry")
    ratios = {
        "time, export (lock + bundle / sync to dir)": (steps[ours[0]]["seconds"] + steps[ours[1]]["seconds"])
        / steps[theirs[0]]["seconds"],
        "time, restore": steps[ours[2]]["seconds"] / steps[theirs[1]]["seconds"],
        "time, whole": sum(steps[n]["seconds"] for n in ours) / sum(steps[n]["seconds"] for n in theirs),
        "bytes sent, restore": steps[ours[2]]["bytes_up"] / max(steps[theirs[1]]["bytes_up"], 1),
        "peak RSS": max(steps[n]["max_rss_mib"] for n in ours) / max(steps[n]["max_rss_mib"] for n in theirs),
        "disk, bundle / dir": result["disk"]["ocimerge bundle"] / max(result["disk"]["skopeo dir"], 1),
    }
    print(f"\ndistinct blob bytes: {result['distinct_bytes'] / MIB:.0f} MiB")
    disk = result["disk"]
    print(f"on disk: bundle {disk['ocimerge bundle'] / MIB:.0f} MiB, skopeo dir {disk['skopeo dir'] / MIB:.0f} MiB")
    print("\nocimerge / skopeo (one run; below 1 means ocimerge used less):")
    for name, value in ratios.items():
        print(f"  {name:44s} {value:6.3f}")
    return ratios


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--base-mb", type=int, default=300)
    parser.add_argument("--unique-mb", type=int, default=140)
    parser.add_argument("--regen", action="store_true")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if not Path(SKOPEO).exists() or not OCIMERGE.exists():
        print(f"needs {SKOPEO} and {OCIMERGE}", file=sys.stderr)
        return 2
    print(f"ocimerge bundle bench: {tool_version([str(OCIMERGE), '--version'])}, {tool_version([SKOPEO, '--version'])}")
    release = Release(args.images, args.base_mb, args.unique_mb)
    try:
        result = bench(release, args.regen)
    except CommandError as exc:
        print(exc, file=sys.stderr)
        return 1
    ratios = report(result)
    wrong = [
        f"{tool} {name}"
        for tool, digests in result["restored"].items()
        for name, digest in digests.items()
        if digest != result["expected"][name]
    ]
    if wrong:
        print(f"restored with the wrong digest: {', '.join(wrong)}", file=sys.stderr)
    if args.json:
        write_report(args.json, {**result, "ratios": ratios})
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
