"""Machine-readable outputs (issue 13 item 1), end to end through ``python -m ocimerge``.

``-q`` prints only the result (``REGISTRY/REPO:TAG@DIGEST`` per tag pushed, the digest for
``-o``, the path for ``lock``/``bundle``); ``--dry-run`` stdout is exactly the index (the digest
on stderr); ``--json`` is one JSON document on stdout, nothing else there; ``push
--metadata-file`` writes buildx's keys as ``create`` does. Against a real registry, twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from imagebuilder import oci_layout, sample_images
from registries import RegistryServer

pytestmark = pytest.mark.registry_backends("distribution", "inprocess")

SKOPEO = "/usr/bin/skopeo"


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "ocimerge", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result


def one_json_document(stdout: str) -> dict[str, object]:
    """``stdout`` parsed as exactly one JSON document (``raw_decode`` stops at its end)."""
    payload, end = json.JSONDecoder().raw_decode(stdout)
    assert stdout[end:] == "\n", f"more than the document on stdout: {stdout[end:]!r}"
    assert isinstance(payload, dict)
    return payload


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    return [oci_layout([image]).write_tar(str(tmp_path / f"in{i}.tar")) for i, image in enumerate(sample_images()[:2])]


def skopeo_digest(reference: str) -> str:
    """What skopeo reads for ``REGISTRY/REPO:TAG@DIGEST`` (plain HTTP): the digest of the bytes
    at the tag and at the digest, which must agree. skopeo refuses a reference holding both
    ("not supported"), so it is asked twice; docker, podman and crane take the whole line."""
    name, _, digest = reference.partition("@")
    repository, _, tag = name.rpartition(":")
    found = set()
    for asked in (f"{repository}:{tag}", f"{repository}@{digest}"):
        run = subprocess.run(
            [SKOPEO, "inspect", "--tls-verify=false", "--raw", f"docker://{asked}"],
            capture_output=True,
            check=False,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr.decode()
        found.add(f"sha256:{hashlib.sha256(run.stdout).hexdigest()}")
    [one] = found
    return one


def test_create_q_with_o_prints_only_the_index_digest(tmp_path: Path, inputs: list[str]) -> None:
    quiet = cli("create", "-q", "-o", str(tmp_path / "out.tar"), *inputs)
    digest = quiet.stdout.removesuffix("\n")
    assert quiet.stdout == f"{digest}\n"
    assert digest.startswith("sha256:")
    assert quiet.stderr == ""
    index = json.loads(cli("inspect", "--json", str(tmp_path / "out.tar")).stdout)
    assert index["entries"][0]["root"]["digest"] == digest


def test_create_q_with_tags_prints_a_pinned_reference_per_tag(registry: RegistryServer, inputs: list[str]) -> None:
    repo = unique("outputs/app")
    tags = [f"{registry.host}/{repo}:1.0", f"{registry.host}/{repo}:latest"]
    quiet = cli("create", "-q", "-t", tags[0], "-t", tags[1], *inputs)
    lines = quiet.stdout.splitlines()
    assert [line.split("@")[0] for line in lines] == tags
    digest = lines[0].split("@")[1]
    assert lines == [f"{t}@{digest}" for t in tags]
    for line in lines:
        assert skopeo_digest(line) == digest
    # the summary's "Pushed" line starts with the same references, then the counts
    again = cli("create", "-t", tags[0], "-t", tags[1], *inputs)
    [pushed] = [line for line in again.stdout.splitlines() if line.startswith("Pushed ")]
    assert pushed.startswith(f"Pushed {lines[0]} {lines[1]} (")


def test_dry_run_stdout_is_the_index_and_the_digest_is_on_stderr(tmp_path: Path, inputs: list[str]) -> None:
    plan = cli("create", "--dry-run", *inputs)
    raw = plan.stdout.encode()
    assert plan.stderr == f"Digest: sha256:{hashlib.sha256(raw).hexdigest()}\n"
    assert json.loads(raw)["mediaType"] == "application/vnd.oci.image.index.v1+json"
    # the same bytes a real run writes
    written = cli("create", "-q", "-o", str(tmp_path / "out.tar"), *inputs).stdout.strip()
    assert plan.stderr == f"Digest: {written}\n"
    assert cli("create", "--dry-run", "-q", *inputs).stderr == ""


def test_dry_run_with_tags_plans_on_stderr(registry: RegistryServer, inputs: list[str]) -> None:
    target = f"{registry.host}/{unique('outputs/plan')}:1"
    plan = cli("create", "--dry-run", "-t", target, *inputs)
    json.loads(plan.stdout)
    assert any(line.startswith(f"Would push {target}@sha256:") for line in plan.stderr.splitlines())


def test_push_q_and_metadata_file(registry: RegistryServer, tmp_path: Path, inputs: list[str]) -> None:
    archive = str(tmp_path / "merged.tar")
    digest = cli("create", "-q", "-o", archive, *inputs).stdout.strip()
    repo = unique("outputs/pushed")
    targets = [f"{registry.host}/{repo}:1", f"{registry.host}/{repo}:2"]
    metadata = tmp_path / "meta.json"
    quiet = cli("push", "-q", archive, *targets, "--metadata-file", str(metadata))
    assert quiet.stdout.splitlines() == [f"{t}@{digest}" for t in targets]
    assert skopeo_digest(f"{targets[1]}@{digest}") == digest
    written = json.loads(metadata.read_text())
    assert written["containerimage.digest"] == digest
    assert written["containerimage.descriptor"]["digest"] == digest
    assert written["containerimage.descriptor"]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert written["image.name"] == ",".join(targets)
    assert written["ocimerge"]["references"] == [f"{t}@{digest}" for t in targets]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".meta.json")]  # no temporary left
    # a dry run under -q pushes nothing, so prints nothing
    assert cli("push", "-q", "--dry-run", archive, targets[0]).stdout == ""


def test_every_command_json_is_one_document(registry: RegistryServer, tmp_path: Path, inputs: list[str]) -> None:
    repo = unique("outputs/json")
    tag = f"{registry.host}/{repo}:1"
    created = one_json_document(cli("create", "--json", "-t", tag, *inputs).stdout)
    digest = created["digest"]
    assert created["references"] == [f"{tag}@{digest}"]
    manifests = created["manifests"]
    assert isinstance(manifests, list)
    assert manifests[0]["platformObject"] == {"architecture": "amd64", "os": "linux"}
    assert {m["platform"] for m in manifests} == {"linux/amd64", "linux/arm64/v8"}

    archive = str(tmp_path / "merged.tar")
    cli("create", "-q", "-o", archive, *inputs)
    pushed = one_json_document(cli("push", "--json", archive, f"{registry.host}/{repo}:2").stdout)
    assert pushed["references"] == [f"{registry.host}/{repo}:2@{digest}"]
    assert pushed["size"] == created["size"]
    assert [m["platformObject"] for m in pushed["manifests"]] == [m["platformObject"] for m in manifests]  # type: ignore[attr-defined]

    assert one_json_document(cli("inspect", "--json", tag).stdout)["source"] == tag
    assert one_json_document(cli("verify", "--json", archive).stdout)["ok"] is True

    images = tmp_path / "images.txt"
    images.write_text(f"{tag}\n")
    lock_path = tmp_path / "images.lock"
    locked = one_json_document(cli("lock", "--json", str(images), "-o", str(lock_path)).stdout)
    assert locked["path"] == str(lock_path)
    assert cli("lock", "-q", str(images), "-o", str(lock_path)).stdout == f"{lock_path}\n"

    release = tmp_path / "release.tar"
    bundled = one_json_document(cli("bundle", "--json", "--lock", str(lock_path), "-o", str(release)).stdout)
    assert bundled["output"] == str(release)

    to = f"{registry.host}/{unique('mirror')}"
    restored = one_json_document(cli("push", "--json", str(release), "--to", to).stdout)
    assert restored["errors"] == []
    quiet = cli("push", "-q", str(release), "--to", unique_prefix(to))
    [line] = quiet.stdout.splitlines()
    assert line.endswith(f"/{repo}:1@{digest}")
    assert skopeo_digest(line) == digest


def unique_prefix(to: str) -> str:
    return f"{to}-{uuid.uuid4().hex[:4]}"


def test_json_on_a_failure_is_still_one_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json promises one document on stdout: a failure before any result is that document."""
    from ocimerge.cli import main
    from ocimerge.cli.exits import code_for
    from ocimerge.errors import SourceNotFoundError

    missing = str(tmp_path / "nonexist.tar")
    for argv in (["create", "--json", "-o", str(tmp_path / "out.tar"), missing], ["verify", "--json", missing]):
        code = main(argv)
        assert code == code_for(SourceNotFoundError)
        captured = capsys.readouterr()
        document = one_json_document(captured.out)
        assert document == {"error": "SourceNotFoundError", "message": document["message"], "exitCode": code}
        assert "nonexist.tar" in str(document["message"])
        assert captured.err.count("\n") == 1  # and the one error line on stderr, as without --json
