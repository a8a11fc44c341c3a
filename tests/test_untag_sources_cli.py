"""``create --untag-sources`` with pinned and digest sources, and with none to remove [TAG-6].

Against a real registry, twice: a source pinned as ``TAG@DIGEST`` has its tag removed only while
the tag names that digest; a source given by digest alone is listed as having no tag; a run with
only local sources says there was nothing to remove.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

import ocimerge
from imagebuilder import Image, oci_layout
from ocimerge.cli import main
from ocimerge.registry.api import Registry
from registries import RegistryServer

pytestmark = pytest.mark.registry_backends("distribution", "inprocess")


def push_image(host: str, reference: str, image: Image, tmp_path: Path) -> str:
    archive = oci_layout([image]).write_tar(str(tmp_path / f"{uuid.uuid4().hex}.tar"))
    return str(ocimerge.push(archive, [f"{host}/{reference}"]).root.digest)


def test_pinned_and_digest_sources_are_reported(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = f"pinned/app-{uuid.uuid4().hex[:8]}"
    amd64 = push_image(registry.host, f"{repo}:1-amd64", Image(architecture="amd64"), tmp_path)
    arm64 = push_image(registry.host, f"{repo}:1-arm64", Image(architecture="arm64", variant="v8"), tmp_path)
    sources = [f"docker://{registry.host}/{repo}:1-amd64@{amd64}", f"docker://{registry.host}/{repo}@{arm64}"]
    assert main(["create", "--json", "--untag-sources", "-t", f"{registry.host}/{repo}:1", *sources]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(u["reference"], u["status"]) for u in report["untagged"]] == [
        (f"{registry.host}/{repo}:1-amd64", "removed"),  # pinned: its tag still named the pin
        (f"{registry.host}/{repo}@{arm64}", "not a tag"),
    ]
    with Registry(registry.host) as client:
        assert sorted(client.tags(repo)) == ["1", "1-arm64"]


def test_a_pin_the_tag_no_longer_names_keeps_the_tag(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = f"pinned/app-{uuid.uuid4().hex[:8]}"
    old = push_image(registry.host, f"{repo}:1-amd64", Image(architecture="amd64"), tmp_path)
    new = push_image(registry.host, f"{repo}:1-amd64", Image(architecture="amd64", labels={"v": "2"}), tmp_path)
    source = f"docker://{registry.host}/{repo}:1-amd64@{old}"
    assert main(["create", "--json", "--untag-sources", "-t", f"{registry.host}/{repo}:1", source]) == 0
    [entry] = json.loads(capsys.readouterr().out)["untagged"]
    assert entry["status"] == "moved"
    with Registry(registry.host) as client:
        found = client.manifest_head(ocimerge.Reference.parse(f"{registry.host}/{repo}:1-amd64"))
    assert found is not None
    assert str(found.digest) == new


def test_only_local_sources_say_there_is_nothing_to_remove(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = oci_layout([Image(architecture="amd64")]).write_tar(str(tmp_path / "amd64.tar"))
    target = f"{registry.host}/pinned/local-{uuid.uuid4().hex[:8]}:1"
    assert main(["create", "-q", "--untag-sources", "-t", target, archive]) == 0
    capsys.readouterr()
    assert main(["create", "--untag-sources", "-t", target, archive]) == 0
    assert "no source is a registry tag; nothing to remove" in capsys.readouterr().err


def test_tag_and_untag_json_failures_are_one_document(
    registry: RegistryServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands that print their own partial document on a failure print no second one."""
    missing = f"{registry.host}/pinned/none-{uuid.uuid4().hex[:8]}:1"
    for argv in (["untag", "--json", missing], ["tag", "--json", missing, "2"]):
        assert main(argv) != 0
        out = capsys.readouterr().out
        document, end = json.JSONDecoder().raw_decode(out)
        assert out[end:] == "\n", f"{argv[0]}: more than one document: {out!r}"
        assert document["errors"][0]["exitCode"] == 3
