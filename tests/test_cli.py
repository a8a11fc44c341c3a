"""The command line: results, exit codes, one-line errors, and nothing left behind on failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagebuilder import Image, docker_save, oci_layout, sample_images, sha256


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocimerge", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
        timeout=120,
    )


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    return [oci_layout([image]).write_tar(str(tmp_path / f"in-{i}.tar")) for i, image in enumerate(sample_images())]


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ocimerge: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_create_writes_an_archive_and_inspect_reads_it(tmp_path: Path, inputs: list[str]) -> None:
    out = tmp_path / "out.tar"
    result = run("create", "-o", str(out), *inputs)
    assert result.returncode == 0, result.stderr
    assert "linux/arm64/v8" in result.stdout
    inspected = run("inspect", "--json", str(out))
    report = json.loads(inspected.stdout)
    [entry] = report["entries"]
    assert sorted(i["platform"] for i in entry["images"]) == ["linux/amd64", "linux/arm/v7", "linux/arm64/v8"]
    assert {i["digest"] for i in entry["images"]} == {image.digest for image in sample_images()}
    # the same platform as the image-spec object create --json gives, for tools that compare fields
    arm = next(i for i in entry["images"] if i["platform"] == "linux/arm/v7")
    assert arm["platformObject"] == {"architecture": "arm", "os": "linux", "variant": "v7"}
    assert run("verify", str(out)).returncode == 0


def test_create_writes_a_directory(tmp_path: Path, inputs: list[str]) -> None:
    out = tmp_path / "layout"
    assert run("create", "-o", str(out), "--tag-name", "1.0", *inputs).returncode == 0
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "1.0"}
    assert (out / "oci-layout").read_text() == '{"imageLayoutVersion":"1.0.0"}'


def test_same_inputs_any_order_same_digest(tmp_path: Path, inputs: list[str]) -> None:
    a = json.loads(run("create", "--dry-run", "--json", *inputs).stdout)
    b = json.loads(run("create", "--dry-run", "--json", *reversed(inputs)).stdout)
    assert a["digest"] == b["digest"]
    assert a["index"] == b["index"]


def test_dry_run_prints_the_index_and_its_digest_and_writes_nothing(tmp_path: Path, inputs: list[str]) -> None:
    """stdout is the index's exact bytes (no newline added), the digest goes to stderr."""
    result = run("create", "--dry-run", "-o", str(tmp_path / "never.tar"), *inputs)
    assert result.returncode == 0, result.stderr
    assert not result.stdout.endswith("\n")
    assert result.stderr == f"Digest: {sha256(result.stdout.encode())}\n"
    assert json.loads(result.stdout)["schemaVersion"] == 2
    assert not (tmp_path / "never.tar").exists()


def test_docker_save_gzipped_deterministically(tmp_path: Path) -> None:
    saves = [
        docker_save([image_], repo_tags=[[f"app:{i}"]]).write_tar(str(tmp_path / f"s{i}.tar"))
        for i, image_ in enumerate([Image(gzip_layers=False), Image(architecture="arm64", gzip_layers=False)])
    ]
    digests = set()
    for n in range(2):
        out = tmp_path / f"o{n}.tar"
        result = run("create", "--json", "--compress", "gzip", "-o", str(out), *saves)
        assert result.returncode == 0, result.stderr
        digests.add(json.loads(result.stdout)["digest"])
    assert len(digests) == 1
    docker = json.loads(run("create", "--json", "--dry-run", "--format", "docker", *saves).stdout)
    assert docker["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["create", "-o", "x.tar", "missing.tar"], 3, "missing.tar"),
        (["create", "-o", "x.tar", "IN0=linux/arm64"], 3, "config says linux/amd64"),
        (["create", "-o", "x.tar", "IN0", "IN0"], 3, "comes from"),
        (["create", "-o", "x.tar", "IN0=linux"], 2, "invalid platform"),
        (["create", "--annotation", "nokey", "-o", "x.tar", "IN0"], 2, "invalid annotation"),
        (["create", "IN0"], 2, "nothing to do"),
        (["inspect", "README-not-here"], 3, "README-not-here"),
    ],
)
def test_errors_are_one_line_with_their_exit_code(
    tmp_path: Path, inputs: list[str], args: list[str], code: int, fragment: str
) -> None:
    args = [a.replace("IN0", inputs[0]) for a in args]
    result = run(*args, cwd=tmp_path)
    assert_one_line_error(result, code, fragment)
    assert not (tmp_path / "x.tar").exists()


def test_usage_error_exit_code() -> None:
    result = run("create")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    image = Image()
    layout = oci_layout([image])
    layer = json.loads(image.manifest)["layers"][0]["digest"]
    layout.files[f"blobs/sha256/{layer.split(':')[1]}"] = b"\0" * len(image.blobs[layer])
    bad = layout.write_tar(str(tmp_path / "bad.tar"))
    good = oci_layout([Image(architecture="arm64")]).write_tar(str(tmp_path / "good.tar"))
    outdir = tmp_path / "out"
    outdir.mkdir()
    for target in ("x.tar", "x-layout"):
        result = run("create", "-o", str(outdir / target), good, bad)
        assert_one_line_error(result, 3, "bad.tar", "does not match its digest")
    assert list(outdir.iterdir()) == []


def test_existing_output_needs_force(tmp_path: Path, inputs: list[str]) -> None:
    out = tmp_path / "o.tar"
    out.write_bytes(b"precious")
    assert_one_line_error(run("create", "-o", str(out), *inputs), 5, "--force")
    assert out.read_bytes() == b"precious"
    assert run("create", "--force", "-o", str(out), *inputs).returncode == 0
    assert out.read_bytes() != b"precious"


def test_verify_reports_every_problem(tmp_path: Path) -> None:
    images = [Image(), Image(architecture="arm64")]
    layout = oci_layout(images)
    for image in images:
        layer = json.loads(image.manifest)["layers"][0]["digest"]
        layout.files[f"blobs/sha256/{layer.split(':')[1]}"] += b"!"
    path = layout.write_tar(str(tmp_path / "two-bad.tar"))
    result = run("verify", path)
    assert result.returncode == 3
    assert result.stdout.count("problem:") == 2


def test_version_and_module_entry_point() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("ocimerge ")


def test_gzipped_output_archive_is_deterministic_and_readable(tmp_path: Path, inputs: list[str]) -> None:
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tgz"
    assert run("create", "-o", str(first), *inputs).returncode == 0
    assert run("create", "-o", str(second), *inputs).returncode == 0
    assert first.read_bytes()[:2] == b"\x1f\x8b"
    assert first.read_bytes() == second.read_bytes()
    assert run("verify", str(second)).returncode == 0


# -- help: each command lists its own flags and ends with examples ---------------------------------

SUBCOMMANDS = ("create", "push", "inspect", "verify", "doctor")


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_read_only_commands_list_no_upload_flags(command: str) -> None:
    shown = run(command, "--help")
    assert shown.returncode == 0, shown.stderr
    assert "--jobs" not in shown.stdout
    assert "--chunk-size" not in shown.stdout
    assert "--ca-file" in shown.stdout  # but they do reach registries


@pytest.mark.parametrize("command", ["create", "push"])
def test_uploading_commands_list_upload_and_connection_flags(command: str) -> None:
    shown = run(command, "--help").stdout
    for flag in ("--jobs", "--chunk-size", "--username", "--password-stdin", "--ca-file", "--insecure", "--plain-http"):
        assert flag in shown, flag


def test_upload_flags_are_refused_where_nothing_is_uploaded(inputs: list[str]) -> None:
    result = run("verify", "--jobs", "2", inputs[0])
    assert result.returncode == 2
    assert "unrecognized arguments: --jobs" in result.stderr


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_help_ends_with_an_example(command: str) -> None:
    shown = run(command, "--help")
    assert shown.returncode == 0, shown.stderr
    last = shown.stdout.rstrip("\n").splitlines()[-1]
    assert last.startswith(f"  ocimerge {command} "), shown.stdout
    assert "examples:" in shown.stdout


def test_create_help_says_it_writes_or_pushes() -> None:
    summary = " ".join(run("--help").stdout.split())  # argparse wraps the summary column
    assert "write it (-o) or push it (-t)" in summary
    assert "write it (-o) or push it (-t)" in run("create", "--help").stdout


# -- exit codes come from the one table ------------------------------------------------------------


def table_code(name: str) -> int:
    from ocimerge import errors
    from ocimerge.cli import EXIT_CODES

    cls = getattr(errors, name)
    return next(code for error_class, code in EXIT_CODES if issubclass(cls, error_class))


def test_exit_code_table_is_the_documented_one() -> None:
    from ocimerge.cli import EXIT_CODES

    assert [(cls.__name__, code) for cls, code in EXIT_CODES] == [
        ("UsageError", 2),
        ("InputError", 3),
        ("ModelError", 3),
        ("RemoteError", 4),
        ("OutputError", 5),
    ]


def test_exit_code_for_a_usage_error(tmp_path: Path, inputs: list[str]) -> None:
    bad_flag = run("create", "--no-such-flag", cwd=tmp_path)
    assert bad_flag.returncode == table_code("UsageError")
    assert bad_flag.stderr.strip().splitlines()[-1].startswith("ocimerge: error: ")
    assert_one_line_error(
        run("create", "--jobs", "0", "-o", "x.tar", inputs[0], cwd=tmp_path), table_code("UsageError"), "--jobs"
    )
    assert_one_line_error(
        run("push", "--jobs", "0", inputs[0], "localhost:1/team/app:1", cwd=tmp_path),
        table_code("UsageError"),
        "--jobs",
    )
    assert not (tmp_path / "x.tar").exists()


def test_exit_code_for_a_missing_input(tmp_path: Path) -> None:
    for args in (
        ["create", "-o", "x.tar", "absent.tar"],
        ["inspect", "absent.tar"],
        ["verify", "absent.tar"],
        ["push", "absent.tar", "localhost:1/team/app:1"],
    ):
        assert_one_line_error(run(*args, cwd=tmp_path), table_code("InputError"), "absent.tar")


def test_exit_code_for_an_unwritable_output(tmp_path: Path, inputs: list[str]) -> None:
    assert_one_line_error(
        run("create", "-o", str(tmp_path / "no-dir" / "x.tar"), *inputs), table_code("OutputError"), "no-dir"
    )
    meta = tmp_path / "no-dir" / "meta.json"
    result = run("create", "-o", str(tmp_path / "x.tar"), "--metadata-file", str(meta), *inputs)
    assert_one_line_error(result, table_code("OutputError"), str(meta), "metadata file")


def test_verify_problems_use_the_input_error_code(tmp_path: Path) -> None:
    image = Image()
    layout = oci_layout([image])
    layer = json.loads(image.manifest)["layers"][0]["digest"]
    layout.files[f"blobs/sha256/{layer.split(':')[1]}"] += b"!"
    result = run("verify", "--json", layout.write_tar(str(tmp_path / "bad.tar")))
    assert result.returncode == table_code("InputError")
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert len(report["problems"]) == 1


def test_debug_prints_the_chained_cause_then_the_one_line(tmp_path: Path, inputs: list[str]) -> None:
    meta = tmp_path / "no-dir" / "meta.json"
    env = {**os.environ, "OCIMERGE_DEBUG": "1"}
    result = run("create", "-o", str(tmp_path / "x.tar"), "--metadata-file", str(meta), *inputs, env=env)
    assert result.returncode == 5
    assert "Traceback" in result.stderr
    assert "FileNotFoundError" in result.stderr  # the OS error the message was made from
    assert "direct cause" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("ocimerge: error: ")


# -- --metadata-file: buildx's keys, written atomically --------------------------------------------


def test_metadata_file_replaces_atomically(tmp_path: Path, inputs: list[str]) -> None:
    meta = tmp_path / "meta.json"
    meta.write_text("old")
    result = run("create", "--json", "-o", str(tmp_path / "x.tar"), "--metadata-file", str(meta), *inputs)
    assert result.returncode == 0, result.stderr
    written = json.loads(meta.read_text())
    printed = json.loads(result.stdout)
    assert written["containerimage.digest"] == printed["digest"]
    assert written["containerimage.descriptor"]["digest"] == printed["digest"]
    assert written["image.name"] == ""
    assert written["ocimerge"] == printed
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_write_metadata_failure_is_an_output_error_with_its_cause(tmp_path: Path, inputs: list[str]) -> None:
    import ocimerge
    from ocimerge.cli.commands import write_metadata

    result = ocimerge.create(inputs, dry_run=True)
    target = tmp_path / "a-directory"
    target.mkdir()
    with pytest.raises(ocimerge.OutputError, match="a-directory: cannot write the metadata file") as caught:
        write_metadata(str(target), result, ["registry.example/app:1"])
    assert isinstance(caught.value.__cause__, OSError)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # the temporary is cleaned up
    tags = ["registry.example/app:1", "registry.example/app:2"]
    write_metadata(str(tmp_path / "m.json"), result, tags)
    assert json.loads((tmp_path / "m.json").read_text())["image.name"] == ",".join(tags)


def test_sigterm_is_an_interrupt_only_while_a_command_runs(
    tmp_path: Path, inputs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """[SEC-6] main() raises SIGTERM as an interrupt during the command, then puts the old handler back."""
    import signal

    from ocimerge.cli import Terminated, main
    from ocimerge.cli.exits import EXIT_INTERRUPTED, EXIT_TERMINATED

    before = signal.getsignal(signal.SIGTERM)
    assert main(["inspect", inputs[0]]) == 0
    assert signal.getsignal(signal.SIGTERM) is before
    assert issubclass(Terminated, KeyboardInterrupt)  # so every BaseException clean-up runs
    assert (EXIT_INTERRUPTED, EXIT_TERMINATED) == (128 + signal.SIGINT, 128 + signal.SIGTERM)
    capsys.readouterr()


def test_error_lines_escape_what_they_quote(tmp_path: Path) -> None:
    """[SEC-5] A file name with an escape sequence and a newline stays one escaped error line."""
    missing = str(tmp_path / "gone\x1b[2J\nocimerge: note: forged.tar")
    result = run("inspect", missing)
    assert_one_line_error(result, 3, "gone\\x1b[2J\\x0aocimerge: note: forged.tar")
    assert "\x1b" not in result.stderr


def test_create_json_lists_no_errors_when_nothing_failed(inputs: list[str]) -> None:
    # [MSG-4] the key is always there, so a script reads it without checking for it
    payload = json.loads(run("create", "--dry-run", "--json", *inputs).stdout)
    assert (payload["pushed"], payload["errors"]) == ([], [])


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_a_missing_ca_file_is_a_usage_error_on_read_only_commands_too(command: str, tmp_path: Path) -> None:
    # [MSG-3] refused as the options are built: the registry named is never contacted
    missing = tmp_path / "missing.pem"
    result = run(command, "--ca-file", str(missing), "docker://127.0.0.1:9/team/app:1")
    assert_one_line_error(result, 2, f"--ca-file {missing}: no such file")


# -- push: options anywhere among the targets --------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "targets"),
    [
        (["--dry-run", "SRC", "a.io/x:1", "b.io/y:2"], ["a.io/x:1", "b.io/y:2"]),  # before
        (["SRC", "--dry-run", "a.io/x:1"], ["a.io/x:1"]),  # between SRC and the targets
        (["SRC", "a.io/x:1", "--dry-run", "--jobs", "2", "b.io/y:2"], ["a.io/x:1", "b.io/y:2"]),  # between targets
        (["SRC", "a.io/x:1", "b.io/y:2", "--dry-run"], ["a.io/x:1", "b.io/y:2"]),  # after
        (["SRC", "--dry-run", "--to", "a.io/m", "--map", "m.txt"], []),  # --to: no targets
        (["--dry-run", "SRC", "--map", "m.txt", "--to", "a.io/m"], []),
    ],
)
def test_push_takes_options_before_between_and_after_the_targets(argv: list[str], targets: list[str]) -> None:
    """``push SRC --dry-run TARGET`` parses: argparse fills a ``*`` positional in one go, so the
    targets after an option were 'unrecognized arguments' (exit 2) since --to made them optional."""
    from ocimerge.cli.parser import build_parser

    args = build_parser().parse_args(["push", *argv])
    assert (args.source, args.targets, args.dry_run) == ("SRC", targets, True)
    assert args.jobs == (2 if "--jobs" in argv else 4)
    assert args.map == ("m.txt" if "--map" in argv else None)


def test_push_still_refuses_unknown_options_and_leftovers_elsewhere(inputs: list[str]) -> None:
    """Only push's targets take the leftover positionals: an unknown option, or a second source
    for inspect, is still a usage error."""
    unknown = run("push", inputs[0], "--bogus", "a.io/x:1")
    assert unknown.returncode == 2
    assert "ocimerge: error: unrecognized arguments: --bogus\n" in unknown.stderr
    extra = run("inspect", inputs[0], "--json", inputs[1])
    assert extra.returncode == 2
    assert f"ocimerge: error: unrecognized arguments: {inputs[1]}\n" in extra.stderr


def test_push_with_targets_after_an_option_reaches_the_push(tmp_path: Path, inputs: list[str]) -> None:
    """End to end, the targets after ``--dry-run`` and ``--map`` are targets: the push itself
    answers (--map goes with --to), not the parser."""
    result = run("push", inputs[0], "--map", "m.txt", "127.0.0.1:9/x:1", cwd=tmp_path)
    assert_one_line_error(result, 2, "--map and --mount-from go with --to")
    result = run("push", inputs[0], "--dry-run", "--to", "127.0.0.1:9/m", "127.0.0.1:9/x:1", cwd=tmp_path)
    assert_one_line_error(result, 2, "give no REGISTRY/REPO:TAG as well")


@pytest.mark.parametrize("to", ["", "  "])
def test_push_with_an_empty_to_says_so(tmp_path: Path, to: str) -> None:
    """``--to ""`` is a bad --to (checked before the bundle is opened), not 'no target given'."""
    result = run("push", str(tmp_path / "missing.tar"), "--to", to)
    assert_one_line_error(result, 2, f"--to: {to!r} does not start with a registry host")


def test_push_to_refuses_a_key_without_require_signature(tmp_path: Path) -> None:
    """As plain push: ``--key`` alone would read as checked while nothing is checked."""
    (tmp_path / "k.pem").write_text("not read")
    result = run("push", str(tmp_path / "missing.tar"), "--to", "127.0.0.1:9/m", "--key", str(tmp_path / "k.pem"))
    assert_one_line_error(result, 2, "push --key goes with --require-signature")
