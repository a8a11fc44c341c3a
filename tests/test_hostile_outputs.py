"""Attacks on what ocimerge prints and writes: [SEC-5], [SEC-6], [SEC-7].

Each test builds a hostile input with the test builder, runs the real command line in a
child process (:func:`hostile.run_cli`) and asserts the promise itself: the exit code, one
clean ``ocimerge: error:`` line, no raw control character in anything printed, the thing at
``OUT`` untouched when it is not ours, nothing left beside the output or in ``TMPDIR``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hostile import CONTROL, Outcome, assert_one_line_error, files_under, run_cli
from imagebuilder import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    Image,
    Layout,
    descriptor,
    docker_save,
    dumps,
    oci_layout,
    sample_images,
)

# -- [SEC-5] text from outside never drives the terminal ---------------------------------

#: Escape sequences an attacker would plant: set the title, clear the screen, forge a note
#: line, a C1 CSI, DEL.
TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"
FORGED = "\nocimerge: note: forged"
C1_CSI = "\u009b2J"


def assert_clean(outcome: Outcome) -> None:
    """Nothing printed holds a raw control character or a forged line; a failure is one line of 3."""
    for stream in (outcome.stdout, outcome.stderr):
        assert not CONTROL.search(stream), repr(stream)
        assert not any(line.startswith("ocimerge: note: forged") for line in stream.splitlines()), stream
    assert "Traceback" not in outcome.stderr, outcome.stderr
    if outcome.code:
        assert_one_line_error(outcome, 3)


def assert_refused(outcome: Outcome, fragment: str) -> None:
    """Refused as bad input: exit 3 and one error line naming ``fragment``, or a report naming it
    (``inspect`` shows an unreadable entry and exits 0, ``verify`` lists it as a problem and
    exits 3); clean either way."""
    for stream in (outcome.stdout, outcome.stderr):
        assert not CONTROL.search(stream), repr(stream)
    if "ocimerge: error:" in outcome.stderr:
        assert_one_line_error(outcome, 3, fragment)
    else:
        assert outcome.code in (0, 3), outcome
        assert fragment in outcome.stdout, outcome.stdout


def _with_media_type(path: Path) -> str:
    layout = oci_layout([Image()])
    index = json.loads(layout.files["index.json"])
    index["manifests"][0]["mediaType"] += CLEAR
    layout.files["index.json"] = json.dumps(index).encode()
    return layout.write_dir(str(path))


def _layout_dir(images: list[Image], name: str, names: dict[int, str] | None = None) -> Callable[[Path], str]:
    return lambda tmp: oci_layout(images, names=names).write_dir(str(tmp / name))


#: Each kind of hostile source, built in a directory: escape sequences where text is shown.
SOURCES: dict[str, Callable[[Path], str]] = {
    "architecture": _layout_dir([Image(architecture="amd64" + TITLE)], "arch"),
    "os": lambda tmp: oci_layout([Image(os="linux" + CLEAR)]).write_tar(str(tmp / "os.tar")),
    "variant": _layout_dir([Image(architecture="arm64", variant="v8" + C1_CSI)], "variant"),
    "ref-name": _layout_dir([Image()], "refname", names={0: "1.0" + CLEAR + FORGED}),
    "repo-tags": lambda tmp: docker_save([Image()], repo_tags=[["evil:1" + TITLE]]).write_dir(str(tmp / "save")),
    "repo-tags-modern": lambda tmp: docker_save([Image()], repo_tags=[["evil:1" + TITLE]], modern=True).write_tar(
        str(tmp / "save25.tar")
    ),
    "media-type": lambda tmp: _with_media_type(tmp / "mediatype"),
    "file-name": lambda tmp: oci_layout([Image()]).write_tar(str(tmp / f"app{CLEAR}{C1_CSI}\x7f.tar")),
}


def hostile_source(kind: str, tmp: Path) -> str:
    """A source of ``kind`` (a key of :data:`SOURCES`) written under ``tmp``; its path."""
    return SOURCES[kind](tmp)


KINDS = sorted(SOURCES)


@pytest.mark.parametrize("kind", KINDS)
def test_outside_text_is_refused_or_printed_escaped(tmp_path: Path, kind: str) -> None:
    """[SEC-5] inspect (table and --json), verify and create: never a raw control character."""
    source = hostile_source(kind, tmp_path)
    for args in (["inspect", source], ["inspect", "--json", source], ["verify", source]):
        assert_clean(run_cli(args))
    assert_clean(run_cli(["create", "-o", str(tmp_path / "out.tar"), source]))


@pytest.mark.parametrize("field", ["architecture", "os", "variant"])
def test_platform_fields_outside_the_grammar_are_refused_naming_the_field(tmp_path: Path, field: str) -> None:
    """[SEC-5] [PLATFORM-6] A platform field with an escape sequence: exit 3, the field named."""
    source = hostile_source(field, tmp_path)
    line = assert_one_line_error(run_cli(["create", "-o", str(tmp_path / "out.tar"), source]), 3, repr(field))
    assert "\\x1b" in line or "\\x9b" in line
    assert not (tmp_path / "out.tar").exists()


def test_a_missing_file_name_is_quoted_escaped(tmp_path: Path) -> None:
    """[SEC-5] The name of a file that is not there reaches the error line escaped."""
    missing = str(tmp_path / f"gone{TITLE}.tar")
    line = assert_one_line_error(run_cli(["inspect", missing]), 3)
    assert "gone\\x1b]0;pwned\\x07" in line


def test_dry_run_and_json_output_stay_clean(tmp_path: Path) -> None:
    """[SEC-5] --dry-run prints the index bytes and --json the report: no raw controls either."""
    source = hostile_source("ref-name", tmp_path)
    for args in (["create", "--dry-run", source], ["create", "--json", "-o", str(tmp_path / "o.tar"), source]):
        outcome = run_cli(args)
        assert outcome.code == 0, outcome.stderr
        assert_clean(outcome)


# -- [SEC-6] --force replaces only what is ours ------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> str:
    return oci_layout([sample_images()[0]]).write_dir(str(tmp_path / "in"))


def _refused(outcome: Outcome, path: Path) -> None:
    assert_one_line_error(outcome, 5, str(path))


def test_force_refuses_a_directory_that_is_not_a_layout(tmp_path: Path, source: str) -> None:
    """[SEC-6] [SINK-7] A project directory survives ``-o DIR --force`` whole."""
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('mine')\n")
    _refused(run_cli(["create", "--force", "-o", str(project), source]), project)
    assert files_under(project) == {"src", "src/main.py"}


def test_force_refuses_a_directory_tree_named_like_an_archive(tmp_path: Path, source: str) -> None:
    """[SEC-6] ``out.tar`` that is a directory tree is not a file we wrote."""
    tree = tmp_path / "out.tar"
    (tree / "keep").mkdir(parents=True)
    _refused(run_cli(["create", "--force", "-o", str(tree), source]), tree)
    assert files_under(tree) == {"keep"}


def test_force_refuses_the_working_directory(tmp_path: Path, source: str) -> None:
    """[SEC-6] ``-o . --force`` never replaces the directory the user stands in."""
    here = tmp_path / "here"
    here.mkdir()
    (here / "notes.txt").write_text("mine\n")
    outcome = run_cli(["create", "--force", "-o", ".", source], cwd=here)
    assert_one_line_error(outcome, 5, "working")
    assert files_under(here) == {"notes.txt"}


def test_force_refuses_a_fifo(tmp_path: Path, source: str) -> None:
    """[SEC-6] A FIFO at OUT is refused (and not opened, so nothing blocks) and stays a FIFO."""
    fifo = tmp_path / "out.tar"
    os.mkfifo(fifo)
    _refused(run_cli(["create", "--force", "-o", str(fifo), source], timeout=30), fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_force_replaces_an_old_layout_directory_and_a_regular_file(tmp_path: Path, source: str) -> None:
    """[SEC-6] What we wrote before is ours to replace: a layout directory, an archive file."""
    for out in (tmp_path / "layout", tmp_path / "app.tar"):
        assert run_cli(["create", "-o", str(out), source]).code == 0
        outcome = run_cli(["create", "--force", "--tag-name", "2.0", "-o", str(out), source])
        assert outcome.code == 0, outcome.stderr
        assert run_cli(["verify", str(out)]).code == 0
    assert sorted(os.listdir(tmp_path)) == ["app.tar", "in", "layout"]


@pytest.mark.parametrize(("umask", "directory", "file"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_layout_permissions_follow_the_umask(
    tmp_path: Path, source: str, umask: int, directory: int, file: int
) -> None:
    """[SEC-6] [SINK-1] A layout gets the modes ``mkdir`` and ``open`` would give, not mkdtemp's 0700."""
    previous = os.umask(umask)  # the child inherits it
    try:
        assert run_cli(["create", "-o", str(tmp_path / "layout"), source]).code == 0
        assert run_cli(["create", "-o", str(tmp_path / "app.tar"), source]).code == 0
    finally:
        os.umask(previous)
    layout = tmp_path / "layout"
    assert stat.S_IMODE(os.stat(layout).st_mode) == directory
    assert stat.S_IMODE(os.stat(layout / "blobs" / "sha256").st_mode) == directory
    assert stat.S_IMODE(os.stat(layout / "index.json").st_mode) == file
    assert stat.S_IMODE(os.stat(tmp_path / "app.tar").st_mode) == 0o644 & ~umask


# -- [SEC-6] SIGTERM and SIGINT leave nothing behind --------------------------------------

LAYER_MIB = 200


def _big_layer(path: Path, seed: int) -> str:
    """Write ``LAYER_MIB`` MiB of incompressible bytes to ``path``; return the sha256 digest."""
    block = hashlib.shake_256(f"layer {seed}".encode()).digest(1024 * 1024)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(LAYER_MIB):
            f.write(block)
            digest.update(block)
    return "sha256:" + digest.hexdigest()


@pytest.fixture(scope="module")
def big_layout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An OCI layout of one image with three 200 MiB uncompressed layers, removed afterwards."""
    root = tmp_path_factory.mktemp("big") / "layout"
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layers = []
    for seed in range(3):
        temp = blobs / f"layer-{seed}"
        digest = _big_layer(temp, seed)
        temp.rename(blobs / digest.split(":")[1])
        layers.append({"mediaType": OCI_LAYER_TAR, "digest": digest, "size": LAYER_MIB * 1024 * 1024})
    diff_ids = [layer["digest"] for layer in layers]
    config = dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    manifest = dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(OCI_CONFIG, config), "layers": layers}
    )
    small = Layout({"oci-layout": dumps({"imageLayoutVersion": "1.0.0"})})
    small.add_blob(config)
    small.add_blob(manifest)
    small.files["index.json"] = dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_MANIFEST, manifest)]}
    )
    yield small.write_dir(str(root))
    shutil.rmtree(root)  # 600 MiB: not left for pytest's kept temporary directories


def _wait_for_temporary(directory: Path, process: subprocess.Popen[bytes]) -> None:
    """Block until the child's temporary output appears in ``directory`` (it is mid-write)."""
    deadline = time.monotonic() + 60
    while not any(name.startswith(".") for name in os.listdir(directory)):
        assert process.poll() is None, "finished before the temporary output was seen"
        assert time.monotonic() < deadline, "no temporary output appeared"
        time.sleep(0.005)


@pytest.mark.parametrize(
    ("signum", "code", "name"),
    [(signal.SIGTERM, 143, "out.tar"), (signal.SIGINT, 130, "out-dir"), (signal.SIGTERM, 143, "out-dir")],
)
def test_a_signal_mid_write_leaves_nothing_behind(
    tmp_path: Path, big_layout: str, signum: signal.Signals, code: int, name: str
) -> None:
    """[SEC-6] A CI timeout (SIGTERM) or Ctrl-C mid-copy: exit 143/130, one line, nothing left."""
    private_tmp, out_dir = tmp_path / "tmp", tmp_path / "out"
    private_tmp.mkdir()
    out_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "OCIMERGE_DEBUG"} | {"TMPDIR": str(private_tmp)}
    err_path = tmp_path / "stderr"
    with err_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "ocimerge", "create", "-o", str(out_dir / name), big_layout],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        try:
            _wait_for_temporary(out_dir, process)
            process.send_signal(signum)
            returncode = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    stderr = err_path.read_text()
    assert_one_line_error(Outcome(returncode, "", stderr, 0.0, 0.0), code, signum.name)
    assert os.listdir(out_dir) == []
    assert os.listdir(private_tmp) == []


# -- [SEC-7] hostile JSON is an input error -----------------------------------------------

DEPTHS = [10**3, 10**5, 10**6]


def deep(depth: int) -> bytes:
    """A JSON array nested ``depth`` levels (2 bytes a level, so 10^6 stays under 4 MiB)."""
    return b"[" * depth + b"]" * depth


def layout_with_index_json(tmp: Path, raw: bytes) -> str:
    layout = oci_layout([Image()])
    layout.files["index.json"] = raw
    return layout.write_dir(str(tmp / "layout"))


def layout_with_manifest(tmp: Path, raw: bytes) -> str:
    """A layout whose ``index.json`` names ``raw`` as its manifest, by its true digest and size."""
    layout = oci_layout([Image()])
    layout.add_blob(raw)
    layout.files["index.json"] = dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_MANIFEST, raw)]}
    )
    return layout.write_dir(str(tmp / "layout"))


def save_with_manifest_json(tmp: Path, raw: bytes) -> str:
    layout = docker_save([Image()])
    layout.files["manifest.json"] = raw
    return layout.write_dir(str(tmp / "save"))


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("where", ["index.json", "manifest", "manifest.json"])
def test_deeply_nested_documents_are_one_line_input_errors(tmp_path: Path, where: str, depth: int) -> None:
    """[SEC-7] [JSON-4] Nesting far past any real document: exit 3, one line naming the document."""
    build = {
        "index.json": layout_with_index_json,
        "manifest": layout_with_manifest,
        "manifest.json": save_with_manifest_json,
    }
    source = build[where](tmp_path, deep(depth))
    for command in ("inspect", "create"):
        args = [command, source] if command == "inspect" else [command, "-o", str(tmp_path / "out.tar"), source]
        outcome = run_cli(args, timeout=60)
        assert_refused(outcome, "nested deeper")
        assert command == "inspect" or outcome.code == 3
        assert outcome.peak_mib < 200, outcome.peak_mib


@pytest.mark.parametrize("depth", DEPTHS)
def test_a_deeply_nested_spec_file_is_one_line(tmp_path: Path, depth: int) -> None:
    """[SEC-7] A ``--spec`` file goes through the same decoder: one line, the file named."""
    spec = tmp_path / "spec.json"
    spec.write_bytes(deep(depth))
    outcome = run_cli(["create", "--dry-run", "--spec", str(spec)], timeout=60)
    # a spec file is part of the command line: a bad one is a usage error, as before
    assert_one_line_error(outcome, 2, "spec.json", "nested deeper")


def test_an_unpaired_surrogate_is_one_line(tmp_path: Path) -> None:
    """[SEC-7] ``"\\ud800"`` in a config is refused, not carried into a platform string."""
    image = Image()
    image.config = image.config.replace(b'"architecture":"amd64"', b'"architecture":"amd64\\ud800"')
    layout = Layout({"oci-layout": dumps({"imageLayoutVersion": "1.0.0"})})
    manifest = json.loads(image.manifest)
    manifest["config"] = descriptor(OCI_CONFIG, image.config)
    raw_manifest = dumps(manifest)
    for data in (*image.blobs.values(), image.config, raw_manifest):
        layout.add_blob(data)
    layout.files["index.json"] = dumps({"schemaVersion": 2, "manifests": [descriptor(OCI_MANIFEST, raw_manifest)]})
    source = layout.write_dir(str(tmp_path / "layout"))
    assert_one_line_error(run_cli(["create", "-o", str(tmp_path / "o.tar"), source]), 3, "surrogate")


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, OCI_INDEX, None])
def test_a_polyglot_document_is_refused(tmp_path: Path, media_type: str | None) -> None:
    """[SEC-7] [MANIFEST-3] One document that is both an index and a manifest: exit 3."""
    image = Image()
    polyglot = json.loads(image.manifest)
    polyglot["manifests"] = [image.entry()]
    if media_type is None:
        del polyglot["mediaType"]
    else:
        polyglot["mediaType"] = media_type
    source = layout_with_manifest(tmp_path, dumps(polyglot))
    for command in (["inspect"], ["verify"], ["create", "-o", str(tmp_path / "o.tar")]):
        outcome = run_cli([*command, source])
        assert_refused(outcome, "both an index and a manifest")
        assert command[0] != "create" or outcome.code == 3
