"""Platforms as they really are, end to end: Windows os.version matching ([PLATFORM-7]),
annotations copied from labels and kept entry annotations ([INDEX-7]), through the library's
``create`` and the command line, on images built by ``imagebuilder``."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

import ocimerge
from imagebuilder import Image, oci_layout
from ocimerge.cli import main
from ocimerge.errors import PlatformMismatchError
from ocimerge.model.assemble import Annotation
from ocimerge.model.platform import Platform

LTSC2019 = "10.0.17763.5329"
LTSC2022 = "10.0.20348.2227"
LABELS = {
    "org.opencontainers.image.source": "https://github.com/example/app",
    "org.opencontainers.image.description": "an example",
    "maintainer": "someone",
}


def index_of(archive: Path) -> dict[str, Any]:
    """The merged index of an OCI archive written by ``create``."""
    with tarfile.open(archive) as tar:
        root = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        digest = root["manifests"][0]["digest"].split(":", 1)[1]
        return json.loads(tar.extractfile(f"blobs/sha256/{digest}").read())  # type: ignore[union-attr,no-any-return]


@pytest.fixture
def windows(tmp_path: Path) -> Path:
    """One source index: Windows Server 2019 and 2022 amd64 images, and a Linux one."""
    images = [
        Image("windows", "amd64", os_version=LTSC2019, labels=LABELS),
        Image("windows", "amd64", os_version=LTSC2022, labels=LABELS),
        Image("linux", "amd64", labels=LABELS),
    ]
    return Path(oci_layout(images, shape="index").write_tar(str(tmp_path / "win.tar")))


def test_windows_platform_without_os_version_takes_every_release(tmp_path: Path, windows: Path) -> None:
    """[PLATFORM-7] --platform windows/amd64 keeps both releases; they do not conflict ([INDEX-3])."""
    result = ocimerge.create([str(windows)], str(tmp_path / "out.tar"), platforms=[Platform.parse("windows/amd64")])
    assert [m["platform"].get("os.version") for m in index_of(tmp_path / "out.tar")["manifests"]] == [
        LTSC2019,
        LTSC2022,
    ]
    assert len(result.images) == 2


def test_windows_platform_with_os_version_takes_that_release(tmp_path: Path, windows: Path) -> None:
    ocimerge.create([str(windows)], str(tmp_path / "out.tar"), platforms=[Platform.parse(f"windows/amd64:{LTSC2022}")])
    (entry,) = index_of(tmp_path / "out.tar")["manifests"]
    assert entry["platform"] == {"architecture": "amd64", "os": "windows", "os.version": LTSC2022}


def test_src_equals_platform_matches_any_os_version(tmp_path: Path) -> None:
    """[PLATFORM-5] [PLATFORM-7] SRC=windows/amd64 agrees with a config that names a release."""
    win = Image("windows", "amd64", os_version=LTSC2019)
    src = oci_layout([win]).write_tar(str(tmp_path / "win.tar"))
    ocimerge.create([f"{src}=windows/amd64"], str(tmp_path / "out.tar"))
    with pytest.raises(PlatformMismatchError, match=re.escape("given as windows/amd64 (10.0.20348.2227)")):
        ocimerge.create([f"{src}=windows/amd64:{LTSC2022}"], str(tmp_path / "out2.tar"))


def test_annotations_from_labels_and_kept_entry_annotations(tmp_path: Path) -> None:
    """[INDEX-7] shared org.opencontainers.image.* labels reach the index; entry annotations stay."""
    amd = Image("linux", "amd64", labels=LABELS, entry_annotations={"org.example.built-by": "ci"})
    arm = Image("linux", "arm64", labels={**LABELS, "org.opencontainers.image.description": "another"})
    src = oci_layout([amd, arm], shape="index").write_tar(str(tmp_path / "src.tar"))
    out = tmp_path / "out.tar"
    ocimerge.create(
        [src],
        str(out),
        annotations_from_labels=True,
        annotations=[Annotation.parse("org.opencontainers.image.title=app")],
    )
    index = index_of(out)
    assert index["annotations"] == {
        "org.opencontainers.image.source": "https://github.com/example/app",
        "org.opencontainers.image.title": "app",
    }
    by_arch = {m["platform"]["architecture"]: m.get("annotations") for m in index["manifests"]}
    assert by_arch == {"amd64": {"org.example.built-by": "ci"}, "arm64": None}
    # without the flag, labels stay labels; the entry's annotations are kept all the same
    ocimerge.create([src], str(tmp_path / "plain.tar"))
    plain = index_of(tmp_path / "plain.tar")
    assert "annotations" not in plain
    assert plain["manifests"][0]["annotations"] == {"org.example.built-by": "ci"}


def test_cli_annotations_from_labels_and_windows_platform(tmp_path: Path, windows: Path) -> None:
    out = tmp_path / "out.tar"
    code = main(
        [
            "create",
            "-q",
            "--annotations-from-labels",
            "--annotation",
            "index:org.opencontainers.image.description=merged",
            "--platform",
            "windows/amd64",
            "-o",
            str(out),
            str(windows),
        ]
    )
    assert code == 0
    index = index_of(out)
    assert index["annotations"] == {
        "org.opencontainers.image.description": "merged",
        "org.opencontainers.image.source": "https://github.com/example/app",
    }
    assert {m["platform"]["os"] for m in index["manifests"]} == {"windows"}


def test_cli_refuses_unknown_annotation_scope(
    tmp_path: Path, windows: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """[INDEX-6] manifest:K=V is refused, naming the valid scopes, not written as an index key."""
    code = main(["create", "--annotation", "manifest:org.x=1", "-o", str(tmp_path / "out.tar"), str(windows)])
    assert code != 0
    assert "manifest: does not apply to create" in capsys.readouterr().err
    assert not (tmp_path / "out.tar").exists()
