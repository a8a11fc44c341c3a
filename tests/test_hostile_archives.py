"""Attacks by archive: bombs, spools, fifos, extended headers, ambiguous keys, index graphs.

Each test builds a hostile input with ``tests/imagebuilder.py``, runs the real command line
through ``tests/hostile.py`` and asserts the promise of ``spec-notes/security.md``: the exit
code, one clean error line, peak memory under :data:`PEAK_MIB` whatever the attack's size,
bounded time, nothing left in the run's private ``TMPDIR`` and no output left on failure.
Sizes are parametrised so that a fix which only moves a threshold shows up.

Peak memory is the child's own ``VmHWM`` (written at exit by a ``sitecustomize`` on the
child's ``PYTHONPATH``): ``ru_maxrss`` from ``wait4`` also counts the test runner's own
high-water mark, which a ``vfork``-and-``exec`` child inherits.
"""

from __future__ import annotations

import bz2
import functools
import lzma
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zstandard

from hostile import Outcome, assert_one_line_error, files_under, run_cli
from imagebuilder import (
    BOMB_UNIT,
    Image,
    Layout,
    docker_save,
    docker_save_layers,
    fanout_layout,
    gzip_bomb,
    oci_layout,
    tar_bytes,
    write_with_extended_header,
    zeros_digest,
    zstd_bomb,
)

MIB = 1024 * 1024
GIB = 1024 * MIB
#: The most any run here may hold resident, whatever the attack's size (an idle run is ~40).
PEAK_MIB = 120
#: Seconds a refusal may take: refusals happen before the attack's bulk is read.
QUICK = 10.0


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., Outcome]:
    """``run(*args, env=..., timeout=...)``: the CLI with a private, checked-empty TMPDIR.

    The outcome's ``peak_mib`` is the child's own VmHWM (see ``tests/hostile.py``). After every run the private TMPDIR
    must be empty: no spool or temporary survives a run, failed or not ([SEC-4], [SEC-6]).
    """
    private = tmp_path / "tmpdir"
    private.mkdir()

    def runner(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Outcome:
        outcome = run_cli(list(args), env={"TMPDIR": str(private), **(env or {})}, timeout=timeout)
        assert files_under(private) == set(), "left in TMPDIR"
        print(f"ocimerge {args[0]}: exit {outcome.code}, peak {outcome.peak_mib:.1f} MiB, {outcome.seconds:.2f} s")
        return outcome

    return runner


def assert_flat(outcome: Outcome, seconds: float = 60) -> None:
    """Memory under :data:`PEAK_MIB` and the run under ``seconds``."""
    assert outcome.peak_mib < PEAK_MIB, outcome.peak_mib
    assert outcome.seconds < seconds, outcome.seconds


@functools.cache
def _digest(size: int) -> str:
    """sha256 of ``size`` zeros, computed once per size for the whole module."""
    return zeros_digest(size)


_BOMBS: dict[str, Callable[[int], bytes]] = {"gzip": gzip_bomb, "zstd": zstd_bomb}


def _bomb_archive(tmp_path: Path, kind: str, size: int, *, diff_id: str | None = None) -> str:
    """A docker save whose one layer is a ``kind`` bomb of ``size`` zeros (its true DiffID by default)."""
    layout = docker_save_layers([("a/layer.tar", _BOMBS[kind](size), diff_id or _digest(size))])
    return layout.write_tar(str(tmp_path / f"{kind}-bomb.tar"))


# -- [SEC-3] decompression bombs in docker-save layers -----------------------------------------


# zlib inflates zeros at ~250 MB/s, zstd at ~1 GB/s: the largest sizes keep each run near 4 s
@pytest.mark.parametrize(
    ("kind", "size"),
    [
        ("gzip", 64 * MIB),
        ("gzip", 256 * MIB),
        ("gzip", GIB),
        ("zstd", 64 * MIB),
        ("zstd", 512 * MIB),
        ("zstd", 2 * GIB),
    ],
    ids=["gzip-64M", "gzip-256M", "gzip-1G", "zstd-64M", "zstd-512M", "zstd-2G"],
)
def test_a_layer_bomb_is_merged_in_flat_memory(
    run: Callable[..., Outcome], tmp_path: Path, kind: str, size: int
) -> None:
    """[SEC-3] A legal layer that inflates 1000:1 or more is hashed as it streams, never held."""
    archive = _bomb_archive(tmp_path, kind, size)
    out = tmp_path / "out.tar"
    outcome = run("create", "-q", "-o", str(out), archive)
    assert outcome.code == 0, outcome.stderr
    assert out.is_file()
    assert_flat(outcome)


@pytest.mark.parametrize("command", ["inspect", "verify"])
@pytest.mark.parametrize(("kind", "size"), [("gzip", 256 * MIB), ("zstd", GIB)], ids=["gzip-256M", "zstd-1G"])
def test_inspect_and_verify_read_a_layer_bomb_in_flat_memory(
    run: Callable[..., Outcome], tmp_path: Path, command: str, kind: str, size: int
) -> None:
    """[SEC-3] inspect and verify walk the source as create does: the same bounded inflate."""
    outcome = run(command, _bomb_archive(tmp_path, kind, size))
    assert outcome.code == 0, outcome.stderr
    assert_flat(outcome)


@pytest.mark.parametrize(("kind", "size"), [("gzip", 64 * MIB), ("zstd", 512 * MIB)], ids=["gzip-64M", "zstd-512M"])
def test_a_layer_bomb_with_a_wrong_diff_id_is_refused(
    run: Callable[..., Outcome], tmp_path: Path, kind: str, size: int
) -> None:
    """[SEC-3][DOCKER-4] The inflated stream is checked against its DiffID: exit 3, no output left."""
    archive = _bomb_archive(tmp_path, kind, size, diff_id=_digest(MIB))
    out = tmp_path / "out.tar"
    outcome = run("create", "-o", str(out), archive)
    assert_one_line_error(outcome, 3, "a/layer.tar", "does not match rootfs.diff_ids")
    assert not out.exists()
    assert_flat(outcome)


def test_a_truncated_layer_bomb_is_refused(run: Callable[..., Outcome], tmp_path: Path) -> None:
    """[SEC-3] A gzip stream that stops inside a member is corrupt, not a shorter layer."""
    bomb = gzip_bomb(BOMB_UNIT)[:-1000]
    archive = docker_save_layers([("a/layer.tar", bomb, _digest(BOMB_UNIT))]).write_tar(str(tmp_path / "cut.tar"))
    out = tmp_path / "out.tar"
    outcome = run("create", "-o", str(out), archive)
    assert_one_line_error(outcome, 3, "a/layer.tar", "cannot decompress")
    assert not out.exists()
    assert_flat(outcome, QUICK)


@pytest.mark.parametrize(("copies", "images", "links"), [(64, 1, 0), (16, 4, 0), (1, 1, 32)])
def test_a_layer_listed_many_times_is_inflated_once(
    run: Callable[..., Outcome], tmp_path: Path, copies: int, images: int, links: int
) -> None:
    """[SEC-3] One inflate per layer file, however many times (or by how many names) it is listed.

    The baseline is the same archive listing the layer once; inflated N times the run would
    take N times as long (64 x 128 MiB of gzip is over half a minute), so the bound catches it.
    """
    size = 128 * MIB
    bomb, digest = gzip_bomb(size), _digest(size)
    single = run("inspect", docker_save_layers([("a/layer.tar", bomb, digest)]).write_tar(str(tmp_path / "one.tar")))
    assert single.code == 0, single.stderr
    names = ["a/layer.tar"] * copies + [f"l{i}/layer.tar" for i in range(links)]
    layout = docker_save_layers([(name, bomb, digest) for name in names], images=images)
    for i in range(links):  # links to the one file: same identity, one inflate
        del layout.files[f"l{i}/layer.tar"]
        layout.symlinks[f"l{i}/layer.tar"] = "../a/layer.tar"
    archive = layout.write_tar(str(tmp_path / "many.tar"))
    outcome = run("inspect", archive, timeout=60)
    assert outcome.code == 0, outcome.stderr
    assert outcome.stdout.count("acme/app:") == (images if images > 1 else 0)
    assert_flat(outcome, 3 * single.seconds + 5)  # N inflations would take about N times as long


# -- [SEC-4] whole-archive compression: a tar before spooling, the spool capped ------------------


def _compressed(kind: str, unit: bytes, count: int) -> bytes:
    """``count`` copies of ``unit`` compressed as ``kind``: one unit compressed, streams concatenated.

    Every reader here accepts concatenated streams (gzip members, zstd frames, bzip2 and xz
    streams), so a 2 GiB stream costs one compression of ``unit`` to build.
    """
    return _compress_once(kind, unit) * count


@functools.cache
def _compress_once(kind: str, unit: bytes) -> bytes:
    """``unit`` compressed as ``kind`` (gzip, zstd, bzip2, xz), once per module run."""
    compress: dict[str, Callable[[bytes], bytes]] = {
        "gzip": lambda d: zlib.compress(d, 9, wbits=31),
        "zstd": lambda d: zstandard.ZstdCompressor(level=19).compress(d),
        "bzip2": lambda d: bz2.compress(d, 9),
        "xz": lzma.compress,
    }
    return compress[kind](unit)


@functools.cache
def _not_a_tar(kind: str, size: int) -> bytes:
    """``size`` bytes of text, compressed as ``kind``: a bomb that is no tar inside."""
    unit = b"not a tar; " * (4 * MIB // 11)
    return _compressed(kind, unit, size // len(unit))


@pytest.mark.parametrize("size", [64 * MIB, 2 * GIB], ids=["64M", "2G"])
@pytest.mark.parametrize("kind", ["gzip", "zstd", "bzip2", "xz"])
def test_a_compressed_file_that_is_no_tar_is_refused_before_spooling(
    run: Callable[..., Outcome], tmp_path: Path, kind: str, size: int
) -> None:
    """[SEC-4] The first inflated block must be a tar header: refused at once, nothing spooled."""
    path = tmp_path / f"bomb.{kind}"
    path.write_bytes(_not_a_tar(kind, size))
    outcome = run("inspect", str(path))
    assert_one_line_error(outcome, 3, str(path), "not a tar archive inside")
    assert_flat(outcome, QUICK)


def _big_member_archive(path: Path, kind: str, size: int) -> str:
    """A ``kind``-compressed tar whose one member is ``size`` zeros (a huge layer blob).

    Built from concatenated streams (header, zeros, end blocks), so it costs little to
    build whatever ``size`` is; it inflates to just over ``size`` bytes.
    """
    info = tarfile.TarInfo("blobs/sha256/" + _digest(BOMB_UNIT).split(":")[1])
    info.size = size
    info.mtime = 0
    header = info.tobuf(format=tarfile.GNU_FORMAT)  # base-256 sizes: over 8 GiB too
    data = _compressed(kind, header, 1) + _compressed(kind, bytes(BOMB_UNIT), size // BOMB_UNIT)
    path.write_bytes(data + _compressed(kind, bytes(1024), 1))
    return str(path)


@pytest.mark.parametrize("size", [64 * MIB, 512 * MIB, 2 * GIB], ids=["64M", "512M", "2G"])
@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_a_compressed_archive_over_the_spool_cap_is_refused(
    run: Callable[..., Outcome], tmp_path: Path, kind: str, size: int
) -> None:
    """[SEC-4] Past OCIMERGE_MAX_SPOOL the spool stops: exit 3 naming the file and the limit."""
    archive = _big_member_archive(tmp_path / f"big.tar.{kind}", kind, size)
    outcome = run("inspect", archive, env={"OCIMERGE_MAX_SPOOL": str(16 * MIB)})
    assert_one_line_error(outcome, 3, archive, str(16 * MIB), "OCIMERGE_MAX_SPOOL")
    assert_flat(outcome, QUICK)


@pytest.mark.parametrize(("limit", "code"), [(str(MIB), 0), ("4096", 3), ("lots", 2)])
def test_the_spool_cap_is_the_environments(run: Callable[..., Outcome], tmp_path: Path, limit: str, code: int) -> None:
    """[SEC-4] Under the cap a compressed archive reads as ever; over it, exit 3; a bad value, exit 2."""
    archive = oci_layout([Image()]).write_tar(str(tmp_path / "app.tar.gz"), compression="gzip")
    outcome = run("inspect", archive, env={"OCIMERGE_MAX_SPOOL": limit})
    if code:
        assert_one_line_error(outcome, code, "OCIMERGE_MAX_SPOOL")
    else:
        assert outcome.code == 0, outcome.stderr


_TEMPFILE_PROBE = re.compile(r"[a-z0-9_]{8}")


def _spool_watch(directory: Path, process: subprocess.Popen[bytes], seconds: float) -> Iterator[set[str]]:
    """What ``directory`` holds, every few milliseconds, for ``seconds`` or until ``process`` ends."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        yield files_under(directory)
        time.sleep(0.005)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["KILL", "TERM", "INT"])
def test_the_spool_never_has_a_name(tmp_path: Path, how: signal.Signals) -> None:
    """[SEC-4] While a big archive spools, TMPDIR stays empty, and a signal, even KILL, leaves nothing."""
    archive = _big_member_archive(tmp_path / "big.tar.zst", "zstd", 16 * GIB)
    private = tmp_path / "tmpdir"
    private.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "OCIMERGE_DEBUG"} | {"TMPDIR": str(private)}
    process = subprocess.Popen(
        [sys.executable, "-m", "ocimerge", "inspect", archive],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        seen = set().union(*_spool_watch(private, process, 1.0))
        assert process.poll() is None, "finished before it could be interrupted"
        process.send_signal(how)
        process.wait(timeout=20)
    finally:
        process.kill()
        process.wait()
    # tempfile's own probe of TMPDIR (gettempdir writes and unlinks an unprefixed 8-character
    # name, once per process) may flash by; no name of ours ever appears
    assert {name for name in seen if not _TEMPFILE_PROBE.fullmatch(name)} == set()
    assert files_under(private) == set()


# -- [SEC-9] only regular files; extended headers capped -------------------------------------------


def _classic_dir(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A classic docker-save directory of one image; its manifest.json, config and layer paths."""
    layout = docker_save([Image()])
    root = tmp_path / "save"
    layout.write_dir(str(root))
    config = next(
        name for name in layout.files if name.endswith(".json") and "/" not in name and name != "manifest.json"
    )
    layer = next(name for name in layout.files if name.endswith("/layer.tar"))
    return root, {"manifest.json": "manifest.json", "Config": config, "layer": layer}


@pytest.mark.parametrize("linked", [False, True], ids=["fifo", "link-to-fifo"])
@pytest.mark.parametrize("which", ["Config", "layer", "manifest.json"])
def test_a_fifo_in_a_docker_save_directory_is_refused(
    run: Callable[..., Outcome], tmp_path: Path, which: str, linked: bool
) -> None:
    """[SEC-9][TAR-4] A fifo (or a link to one) as Config, layer or manifest.json ends the run at once: exit 3."""
    root, paths = _classic_dir(tmp_path)
    target = root / paths[which]
    target.unlink()
    if linked:
        os.mkfifo(root / "pipe")
        target.symlink_to(os.path.relpath(root / "pipe", target.parent))
    else:
        os.mkfifo(target)
    out = tmp_path / "out.tar"
    outcome = run("create", "-o", str(out), str(root), timeout=20)
    assert_one_line_error(outcome, 3, paths[which], "not a regular file")
    assert_flat(outcome, QUICK)
    assert not out.exists()
    shown = run("inspect", str(root), timeout=20)  # inspect reports a bad entry in its place
    assert "not a regular file" in shown.stdout + shown.stderr
    assert_flat(shown, QUICK)


def test_a_fifo_given_as_the_source_is_refused(run: Callable[..., Outcome], tmp_path: Path) -> None:
    """[SEC-9] A fifo named on the command line is refused at once, never waited on: exit 3."""
    fifo = tmp_path / "app.tar"
    os.mkfifo(fifo)
    outcome = run("inspect", str(fifo), timeout=20)
    assert_one_line_error(outcome, 3, str(fifo), "not a directory or a regular file")
    assert_flat(outcome, QUICK)


def test_a_fifo_member_in_a_tar_is_never_a_config(run: Callable[..., Outcome], tmp_path: Path) -> None:
    """[SEC-9] In a tar, a fifo member named as the Config replaces the file and is refused by name."""
    layout = docker_save([Image()])
    config = next(name for name in layout.files if name.endswith(".json") and name != "manifest.json")
    archive = tmp_path / "fifo.tar"
    archive.write_bytes(layout.tar())
    with tarfile.open(archive, "a") as tar:
        fifo = tarfile.TarInfo(config)
        fifo.type = tarfile.FIFOTYPE
        tar.addfile(fifo)
    outcome = run("create", "-o", str(tmp_path / "out.tar"), str(archive))
    assert_one_line_error(outcome, 3, config, "fifo, not a regular file")


@pytest.mark.parametrize(
    ("size", "kind", "gzipped"),
    [(16 * MIB, "pax", False), (512 * MIB, "gnu", False), (128 * MIB, "pax", True)],
    ids=["pax-16M", "gnu-512M", "pax-128M-gz"],
)
def test_an_oversized_extended_header_is_refused_before_it_is_read(
    run: Callable[..., Outcome], tmp_path: Path, size: int, kind: str, gzipped: bool
) -> None:
    """[SEC-9][TAR-4] A PAX or GNU long-name header over 1 MiB is refused from its header block: exit 3."""
    archive = str(tmp_path / ("big-header.tar.gz" if gzipped else "big-header.tar"))
    write_with_extended_header(archive, oci_layout([Image()]), size, kind=kind, gzipped=gzipped)
    outcome = run("inspect", archive)
    assert_one_line_error(outcome, 3, archive, "extended tar header", f"{size} bytes")
    # a gzipped one is spooled first (a plain disk write); reading it is what must not happen
    assert_flat(outcome, 20 if gzipped else QUICK)


def test_a_modest_extended_header_is_read(run: Callable[..., Outcome], tmp_path: Path) -> None:
    """[SEC-9] Real archives' extended headers (well under 1 MiB) are read as ever."""
    archive = str(tmp_path / "header.tar")
    write_with_extended_header(archive, oci_layout([Image()]), 64 * 1024)
    outcome = run("inspect", archive)
    assert outcome.code == 0, outcome.stderr


# -- [SEC-7] manifest.json keys that differ only in case -----------------------------------------


@pytest.mark.parametrize(("key", "twin"), [("Config", "config"), ("Layers", "LAYERS"), ("RepoTags", "repotags")])
@pytest.mark.parametrize("command", ["create", "inspect"])
def test_case_duplicate_manifest_json_keys_are_refused(
    run: Callable[..., Outcome], tmp_path: Path, key: str, twin: str, command: str
) -> None:
    """[SEC-7] ``Config`` and ``config`` in one entry: docker load takes the last, so we take none."""
    layout = docker_save([Image()], repo_tags=[["acme/app:1.0"]])
    manifest = layout.files["manifest.json"].decode()
    value = {"Config": '"x.json"', "Layers": '["x/layer.tar"]', "RepoTags": '["evil:1"]'}[key]
    layout.files["manifest.json"] = manifest.replace(f'"{key}":', f'"{twin}": {value}, "{key}":', 1).encode()
    archive = layout.write_tar(str(tmp_path / "twins.tar"))
    out = tmp_path / "out.tar"
    args = ("create", "-o", str(out), archive) if command == "create" else ("inspect", archive)
    outcome = run(*args)
    line = assert_one_line_error(outcome, 3, "manifest.json[0]", "differ only in case")
    assert repr(key) in line
    assert repr(twin) in line
    assert not out.exists()


# -- [SEC-2] index graphs are walked as graphs ---------------------------------------------------


@pytest.mark.parametrize("width", [10, 100, 1000])
@pytest.mark.parametrize("command", ["create", "inspect", "verify"])
def test_an_index_fan_out_is_walked_once_per_digest(
    run: Callable[..., Outcome], tmp_path: Path, command: str, width: int
) -> None:
    """[SEC-2] An index listing an index ``width`` times, which lists one image ``width`` times.

    As a tree, 1000 x 1000 = a million entries; as a graph, 2000: the run takes the time of
    a small archive whatever ``width`` is.
    """
    archive = fanout_layout(Image(), width=width).write_tar(str(tmp_path / "fan.tar"))
    out = tmp_path / "out.tar"
    args = ("create", "-q", "-o", str(out), archive) if command == "create" else (command, archive)
    outcome = run(*args, timeout=30)
    assert outcome.code == 0, outcome.stderr
    assert_flat(outcome, QUICK)


def test_an_index_graph_over_the_entry_cap_is_refused(run: Callable[..., Outcome], tmp_path: Path) -> None:
    """[SEC-2] More than MAX_ENTRIES (10000) entries in one walk, duplicates counted: exit 3."""
    archive = fanout_layout(Image(), width=6000).write_tar(str(tmp_path / "wide.tar"))
    out = tmp_path / "out.tar"
    outcome = run("create", "-o", str(out), archive)
    assert_one_line_error(outcome, 3, "more than 10000 entries")
    assert not out.exists()
    assert_flat(outcome, QUICK)


@pytest.mark.parametrize("roots", [10, 1000])
@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_a_wide_graph_under_many_roots_is_read_once(
    run: Callable[..., Outcome], tmp_path: Path, command: str, roots: int
) -> None:
    """[SEC-2] ``index.json`` listing the 1000 x 1000 fan-out ``roots`` times: walked per root,
    read once per source, and refused past MAX_SOURCE_ENTRIES (100000) entries in all.

    Walking every root afresh took 35 s and 1.5 GiB for the 520 kB archive of 1000 roots.
    """
    archive = fanout_layout(Image(), width=1000, roots=roots).write_tar(str(tmp_path / "roots.tar"))
    outcome = run(command, archive, timeout=30)
    capped = roots * 2001 > 100_000
    assert outcome.code == (3 if capped and command == "verify" else 0), outcome.stderr
    assert ("more than 100000 entries in all" in outcome.stdout) is capped
    assert_flat(outcome, QUICK)


def test_builders_are_what_they_claim() -> None:
    """The hostile builders: a bomb inflates to its size; a wide layout is small."""
    assert len(zlib.decompress(gzip_bomb(BOMB_UNIT), wbits=31)) == BOMB_UNIT
    assert len(fanout_layout(Image(), width=1000).tar()) < 400 * 1024
    assert len(Layout().tar()) == len(tar_bytes({}))
