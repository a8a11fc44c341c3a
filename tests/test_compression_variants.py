"""[INDEX-8] One image in gzip and in zstd, end to end: merged, pushed, read back by skopeo.

podman's ``--add-compression zstd`` and containers/image write such pairs: the same config (the
DiffIDs are of the uncompressed tars, so both variants share it) and as many layers, one set
gzip and one zstd. The merge keeps both entries of the platform, gzip first (docker and
containerd take the first match and cannot all read zstd), the zstd one marked with
``io.github.containers.compression.zstd``. Against a real registry, twice.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import zstandard

import ocimerge
from imagebuilder import Image, Layout, descriptor, dumps, oci_layout
from registries import RegistryServer

pytestmark = pytest.mark.registry_backends("distribution", "inprocess")

SKOPEO = "/usr/bin/skopeo"
ZSTD = "io.github.containers.compression.zstd"


def zstd_twin(image: Image) -> Layout:
    """A layout of ``image`` with its layers zstd-compressed: same config, new layers, new manifest."""
    layers = [zstandard.ZstdCompressor().compress(x) for x in image.uncompressed]
    manifest = dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor("application/vnd.oci.image.config.v1+json", image.config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+zstd", x) for x in layers],
        }
    )
    layout = Layout({"oci-layout": dumps({"imageLayoutVersion": "1.0.0"})})
    for blob in (image.config, *layers, manifest):
        layout.add_blob(blob)
    entry = descriptor("application/vnd.oci.image.manifest.v1+json", manifest, platform=image.platform_json)
    layout.files["index.json"] = dumps({"schemaVersion": 2, "manifests": [entry]})
    return layout


def skopeo_raw(reference: str) -> bytes:
    run = subprocess.run(
        [SKOPEO, "inspect", "--tls-verify=false", "--raw", reference], capture_output=True, check=False, timeout=120
    )
    assert run.returncode == 0, run.stderr.decode()
    return run.stdout


def test_gzip_and_zstd_of_one_platform_merge_push_and_read_back(registry: RegistryServer, tmp_path: Path) -> None:
    amd64 = Image(architecture="amd64")
    arm64 = Image(architecture="arm64", variant="v8")
    inputs = [
        oci_layout([amd64]).write_tar(str(tmp_path / "amd64-gzip.tar")),
        zstd_twin(amd64).write_tar(str(tmp_path / "amd64-zstd.tar")),
        oci_layout([arm64]).write_tar(str(tmp_path / "arm64.tar")),
    ]
    tag = f"{registry.host}/variants-{uuid.uuid4().hex[:8]}/app:1"
    # the zstd source first on the command line: the order of the index is the rule's, not ours
    result = ocimerge.create([inputs[1], inputs[0], inputs[2]], str(tmp_path / "out.tar"), tags=[tag])

    entries = result.index.value.manifests
    assert [str(e.platform) for e in entries] == ["linux/amd64", "linux/amd64", "linux/arm64/v8"]
    assert str(entries[0].digest) == amd64.digest  # gzip first, its bytes untouched
    assert entries[0].annotation(ZSTD) is None
    assert entries[1].annotation(ZSTD) == "true"
    assert entries[2].annotation(ZSTD) is None  # a lone gzip image is not marked

    # the registry holds exactly what we built, and skopeo reads both variants by digest
    pushed: dict[str, Any] = json.loads(skopeo_raw(f"docker://{tag}"))
    assert f"sha256:{hashlib.sha256(skopeo_raw(f'docker://{tag}')).hexdigest()}" == str(result.index.descriptor.digest)
    assert [m["digest"] for m in pushed["manifests"]] == [str(e.digest) for e in entries]
    repository = tag.rpartition(":")[0]
    zstd_manifest = json.loads(skopeo_raw(f"docker://{repository}@{entries[1].digest}"))
    assert {layer["mediaType"] for layer in zstd_manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    # one config serves both variants: the same DiffIDs
    assert zstd_manifest["config"]["digest"] == json.loads(amd64.manifest)["config"]["digest"]

    # --platform linux/amd64 keeps both variants of it (a filter is not a conflict check)
    only = ocimerge.create(inputs, dry_run=True, platforms=[ocimerge.Platform.parse("linux/amd64")])
    assert [e.annotation(ZSTD) for e in only.index.value.manifests] == [None, "true"]
