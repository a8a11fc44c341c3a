"""Interop with a foreign client: skopeo reads what we write and writes what we read.

skopeo is installed by ``.ci/run`` (and by ``make test`` when apt-get is usable). These tests
fail, not skip, when it is missing: an interop claim that was not checked is not green.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import ocimerge
from imagebuilder import Image, oci_layout, sample_images

pytestmark = pytest.mark.interop


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("skopeo")
    if binary is None:
        pytest.fail("skopeo is not installed: run 'apt-get install skopeo' (make test does it as root)")
    result = subprocess.run(
        [binary, "--insecure-policy", *args], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, f"skopeo {' '.join(args)} failed: {result.stderr}"
    return result


@pytest.fixture
def merged(tmp_path: Path) -> tuple[Path, ocimerge.CreateResult]:
    inputs = [
        oci_layout([image], attestations=(i == 0)).write_tar(str(tmp_path / f"in{i}.tar"))
        for i, image in enumerate(sample_images())
    ]
    out = tmp_path / "merged.tar"
    return out, ocimerge.create(inputs, str(out))


def test_skopeo_copies_our_archive_with_every_digest_preserved(
    tmp_path: Path, merged: tuple[Path, ocimerge.CreateResult]
) -> None:
    out, result = merged
    copy = tmp_path / "copy"
    skopeo("copy", "--all", "--preserve-digests", f"oci-archive:{out}", f"oci:{copy}:latest")
    raw = skopeo("inspect", "--raw", f"oci:{copy}:latest").stdout.encode()
    assert raw == result.index.raw
    index = json.loads(raw)
    platforms = {(m["platform"]["architecture"], m["platform"].get("variant")) for m in index["manifests"]}
    assert ("unknown", None) in platforms  # the attestation travelled along
    for entry in index["manifests"]:  # skopeo 1.9 has no oci:DIR@DIGEST; look in its blobs
        child = (copy / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_bytes()
        assert ocimerge.Digest.of(child) == ocimerge.Digest.parse(entry["digest"])
    # and we read skopeo's copy back
    with ocimerge.open_images(str(copy)) as images:
        assert sorted(str(i.digest) for i in images.images) == sorted(
            str(m.descriptor.digest) for m in result.assembly.manifests
        )
    assert ocimerge.verify(str(copy)).ok


def test_skopeo_reads_our_directory_layout(tmp_path: Path) -> None:
    inputs = [oci_layout([image]).write_dir(str(tmp_path / f"in{i}")) for i, image in enumerate(sample_images())]
    out = tmp_path / "layout"
    result = ocimerge.create(inputs, str(out), tag_name="v1")
    raw = skopeo("inspect", "--raw", f"oci:{out}:v1").stdout.encode()
    assert raw == result.index.raw
    arm = json.loads(skopeo("inspect", "--override-arch", "arm", "--override-variant", "v7", f"oci:{out}:v1").stdout)
    assert arm["Architecture"] == "arm"


def test_we_read_what_skopeo_writes(tmp_path: Path) -> None:
    source = oci_layout([Image(architecture="arm64", variant="v8")], shape="manifest", names={0: "t"}).write_dir(
        str(tmp_path / "src")
    )
    skopeo("copy", f"oci:{source}:t", f"oci-archive:{tmp_path / 'sk-oci.tar'}:t")
    skopeo("copy", f"oci:{source}:t", f"docker-archive:{tmp_path / 'sk-docker.tar'}:acme/app:1.0")
    sources = [str(tmp_path / "sk-oci.tar"), str(tmp_path / "sk-docker.tar")]
    for path in sources:
        with ocimerge.open_images(path) as images:
            assert [str(i.platform) for i in images.images] in (["linux/arm64/v8"], ["linux/arm64"])
        assert ocimerge.verify(path).ok
    # skopeo's docker-archive and our own amd64 image merge; skopeo reads the result
    amd64 = oci_layout([Image()]).write_tar(str(tmp_path / "amd64.tar"))
    out = tmp_path / "mixed.tar"
    ocimerge.create([str(tmp_path / "sk-docker.tar"), amd64], str(out))
    listed = json.loads(skopeo("inspect", "--raw", f"oci-archive:{out}").stdout)
    assert len(listed["manifests"]) == 2
