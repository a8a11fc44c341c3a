"""Every input shape the builder writes is read back; every kind of bad input is refused."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

import ocimerge
from imagebuilder import Image, Layout, attestation_for, docker_save, dumps, oci_layout, sample_images, sha256
from ocimerge.errors import (
    ArchiveError,
    BlobMissingError,
    DigestMismatchError,
    DocumentError,
    InputError,
    NotAnImageError,
    PlatformMismatchError,
    SelectionError,
    UnsupportedMediaTypeError,
)


def platforms(source: str) -> list[str]:
    with ocimerge.open_images(source) as images:
        return sorted(str(i.platform) for i in images.images)


def read_all(source: str) -> ocimerge.ImageSet:
    """Load a source and stream every blob of every image (verifying them)."""
    from ocimerge.content import drain

    with ocimerge.open_images(source) as images:
        for image in images.images:
            for blob in image.blobs():
                drain(blob)
        return images


# -- shapes -------------------------------------------------------------------------------

SHAPES = {
    "oci-dir-manifest": lambda d: oci_layout([Image()]).write_dir(str(d / "layout")),
    "oci-tar-manifest": lambda d: oci_layout([Image()]).write_tar(str(d / "a.tar")),
    "oci-tar-dot-prefixed": lambda d: oci_layout([Image()]).write_tar(str(d / "a.tar"), prefix="./"),
    "oci-tar-gzip": lambda d: oci_layout([Image()]).write_tar(str(d / "a.tar.gz"), compression="gzip"),
    "oci-tar-zstd": lambda d: oci_layout([Image()]).write_tar(str(d / "a.tar.zst"), compression="zstd"),
    "buildkit-index-with-attestation": lambda d: oci_layout([Image()], attestations=True).write_tar(str(d / "bk.tar")),
    "docker-save-classic": lambda d: docker_save([Image(gzip_layers=False)], repo_tags=[["app:1"]]).write_tar(
        str(d / "s.tar")
    ),
    "docker-save-25": lambda d: docker_save([Image(gzip_layers=False)], repo_tags=[["app:1"]], modern=True).write_tar(
        str(d / "s.tar")
    ),
    "docker-save-gzip-whole": lambda d: docker_save([Image(gzip_layers=False)]).write_tar(
        str(d / "s.tgz"), compression="gzip"
    ),
    "docker-types-in-oci-layout": lambda d: oci_layout([Image(docker_types=True)]).write_dir(str(d / "dl")),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_is_read(tmp_path: Path, shape: str) -> None:
    path = SHAPES[shape](tmp_path)
    images = read_all(path)
    assert [str(i.platform) for i in images.images] == ["linux/amd64"]
    image = images.images[0]
    assert image.digest == ocimerge.Digest.of(image.manifest.raw)
    if shape == "buildkit-index-with-attestation":
        [attestation] = image.attestations
        assert attestation.entry.annotation("vnd.docker.reference.digest") == str(image.digest)


def test_oci_layout_keeps_manifest_bytes(tmp_path: Path) -> None:
    source = Image(architecture="arm64", variant="v8")
    path = oci_layout([source]).write_tar(str(tmp_path / "a.tar"))
    with ocimerge.open_images(path) as images:
        assert images.images[0].manifest.raw == source.manifest


def test_docker_save_manifest_is_authored_from_diff_ids(tmp_path: Path) -> None:
    source = Image(gzip_layers=False, layers=[b"a" * 1024, b"b" * 2048])
    path = docker_save([source]).write_tar(str(tmp_path / "s.tar"))
    with ocimerge.open_images(path) as images:
        manifest = json.loads(images.images[0].manifest.raw)
    assert [layer["digest"] for layer in manifest["layers"]] == [sha256(b"a" * 1024), sha256(b"b" * 2048)]
    assert manifest["config"]["digest"] == sha256(source.config)


def test_docker_save_symlinked_layers(tmp_path: Path) -> None:
    shared = b"shared layer" * 100
    images = [
        Image(gzip_layers=False, layers=[shared]),
        Image(architecture="arm64", gzip_layers=False, layers=[shared]),
    ]
    path = docker_save(images, repo_tags=[["a:1"], ["b:1"]], symlink_shared=True).write_tar(str(tmp_path / "s.tar"))
    assert platforms(f"{path}:a:1") == ["linux/amd64"]
    assert platforms(f"{path}:b:1") == ["linux/arm64"]
    read_all(f"{path}:b:1")


def test_multi_platform_source_filtered_by_platform(tmp_path: Path) -> None:
    path = oci_layout(sample_images()).write_tar(str(tmp_path / "multi.tar"))
    assert platforms(path) == ["linux/amd64", "linux/arm/v7", "linux/arm64/v8"]
    assert platforms(f"{path}=linux/arm64") == ["linux/arm64/v8"]
    with pytest.raises(PlatformMismatchError, match="no linux/s390x"):
        platforms(f"{path}=linux/s390x")


def test_platform_given_must_agree_with_config(tmp_path: Path) -> None:
    path = oci_layout([Image(architecture="arm64")]).write_tar(str(tmp_path / "arm64.tar"))
    with pytest.raises(PlatformMismatchError, match=r"linux/amd64.*linux/arm64"):
        platforms(f"{path}=linux/amd64")


def test_selection_by_tag_and_digest(tmp_path: Path) -> None:
    images = [Image(), Image(architecture="arm64")]
    path = oci_layout(images, shape="manifest", names={0: "amd", 1: "arm"}).write_dir(str(tmp_path / "l"))
    assert platforms(f"{path}:arm") == ["linux/arm64"]
    assert platforms(f"{path}@{images[0].digest}") == ["linux/amd64"]
    with pytest.raises(SelectionError, match=r"several images.*amd.*arm"):
        platforms(path)
    with pytest.raises(SelectionError, match="no image tagged 'nope'"):
        platforms(f"{path}:nope")


def test_prefixes(tmp_path: Path) -> None:
    oci = oci_layout([Image()]).write_tar(str(tmp_path / "a.tar"))
    save = docker_save([Image(gzip_layers=False)]).write_tar(str(tmp_path / "s.tar"))
    assert platforms(f"oci-archive:{oci}") == ["linux/amd64"]
    assert platforms(f"docker-archive:{save}") == ["linux/amd64"]
    d = oci_layout([Image()], shape="manifest", names={0: "t"}).write_dir(str(tmp_path / "d"))
    assert platforms(f"oci:{d}:t") == ["linux/amd64"]


def test_docker_25_with_layers_out_of_order_falls_back_to_manifest_json(tmp_path: Path) -> None:
    image = Image(gzip_layers=False, layers=[b"first" * 100, b"second" * 100])
    layout = docker_save([image], repo_tags=[["app:1"]], modern=True)
    # rewrite the OCI manifest with the layers swapped, as Docker 25.0.0 could
    [entry] = json.loads(layout.files["index.json"])["manifests"]
    manifest = json.loads(layout.files[f"blobs/sha256/{entry['digest'].split(':')[1]}"])
    manifest["layers"].reverse()
    raw = dumps(manifest)
    layout.add_blob(raw)
    entry.update(digest=sha256(raw), size=len(raw))
    layout.files["index.json"] = dumps({"schemaVersion": 2, "manifests": [entry]})
    path = layout.write_tar(str(tmp_path / "s.tar"))
    with ocimerge.open_images(path) as images:
        layers = [d.digest for d in images.images[0].manifest.value.layers]
    assert [str(d) for d in layers] == [sha256(b"first" * 100), sha256(b"second" * 100)]


# -- bad input ----------------------------------------------------------------------------


def corrupt_blob(layout: Layout, digest: str) -> None:
    layout.files[f"blobs/sha256/{digest.split(':')[1]}"] += b"!"


def bad_inputs(tmp: Path) -> dict[str, tuple[str, type[Exception], str]]:
    out: dict[str, tuple[str, type[Exception], str]] = {}
    image = Image()
    layout = oci_layout([image])
    layer_digest = json.loads(image.manifest)["layers"][0]["digest"]
    layout.files[f"blobs/sha256/{layer_digest.split(':')[1]}"] = b"X" * len(image.blobs[layer_digest])
    out["blob-mismatch"] = (
        layout.write_tar(str(tmp / "mismatch.tar")),
        DigestMismatchError,
        "does not match its digest",
    )

    layout = oci_layout([image])
    del layout.files[f"blobs/sha256/{image.digest.split(':')[1]}"]
    out["index-names-missing-blob"] = (
        layout.write_tar(str(tmp / "missing.tar")),
        BlobMissingError,
        "not in the layout",
    )

    layout = oci_layout([image])
    layout.files["index.json"] = b'{"schemaVersion":2,"manifests":['
    out["invalid-json"] = (layout.write_tar(str(tmp / "json.tar")), DocumentError, "index.json: invalid JSON")

    layout = oci_layout([image])
    layout.files["index.json"] = b'{"schemaVersion":2,"manifests":"no"}'
    out["not-an-index"] = (layout.write_tar(str(tmp / "notindex.tar")), DocumentError, "'manifests' must be a list")

    layout = oci_layout([image])
    bogus = dumps({"schemaVersion": 2, "mediaType": "application/x-bogus"})
    layout.add_blob(bogus)
    layout.files["index.json"] = dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(bogus), "size": len(bogus)}
            ],
        }
    )
    out["unknown-media-type"] = (
        layout.write_tar(str(tmp / "unknown.tar")),
        UnsupportedMediaTypeError,
        "application/x-bogus",
    )

    layout = oci_layout([image])
    big = b'{"schemaVersion":2,"pad":"' + b"x" * (4 * 1024 * 1024) + b'"}'
    layout.add_blob(big)
    layout.files["index.json"] = dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(big), "size": len(big)}
            ],
        }
    )
    out["manifest-over-4mib"] = (layout.write_tar(str(tmp / "big.tar")), DocumentError, "limit")

    layout = Layout(
        {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": b'{"schemaVersion":2,"manifests":[]}'}
    )
    out["no-image"] = (layout.write_dir(str(tmp / "empty")), SelectionError, "holds no image")

    (tmp / "junk.bin").write_bytes(os.urandom(4096))
    out["not-an-archive"] = (str(tmp / "junk.bin"), NotAnImageError, "junk.bin")

    layout = oci_layout([image])
    layout.files["../escape"] = b"x"
    out["dotdot-member"] = (layout.write_tar(str(tmp / "dotdot.tar")), ArchiveError, r"'\.\.'")

    layout = oci_layout([image])
    layout.symlinks["blobs/sha256/evil"] = "../../../../etc/passwd"
    out["symlink-outside"] = (layout.write_tar(str(tmp / "symlink.tar")), ArchiveError, "outside")

    full = oci_layout([image]).write_tar(str(tmp / "full.tar"))
    data = Path(full).read_bytes()
    with tarfile.open(full) as tar:
        last = max(tar.getmembers(), key=lambda m: m.offset_data)
    Path(tmp / "cut.tar").write_bytes(data[: last.offset_data + last.size // 2])
    out["truncated"] = (str(tmp / "cut.tar"), InputError, "cut.tar")

    save = docker_save([Image(gzip_layers=False)])
    layer_path = next(n for n in save.files if n.endswith("layer.tar"))
    save.files[layer_path] = save.files[layer_path][:-1] + b"!"
    out["docker-save-layer-vs-diff-id"] = (save.write_tar(str(tmp / "save.tar")), DigestMismatchError, "layer.tar")
    return out


BAD = [
    "blob-mismatch",
    "index-names-missing-blob",
    "invalid-json",
    "not-an-index",
    "unknown-media-type",
    "manifest-over-4mib",
    "no-image",
    "not-an-archive",
    "dotdot-member",
    "symlink-outside",
    "truncated",
    "docker-save-layer-vs-diff-id",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_refused_with_a_clear_error(tmp_path: Path, case: str) -> None:
    path, error, fragment = bad_inputs(tmp_path)[case]
    with pytest.raises(error, match=fragment) as info:
        read_all(path)
    message = str(info.value)
    assert "\n" not in message
    assert Path(path).name in message


def test_attestation_dropped_when_its_image_is_absent(tmp_path: Path) -> None:
    image = Image()
    entry, blobs = attestation_for(Image(architecture="s390x"))
    layout = oci_layout([image])
    layout.add_blobs(blobs)
    index = dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [image.entry(), entry],
        }
    )
    layout.add_blob(index)
    layout.files["index.json"] = dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha256(index), "size": len(index)}
            ],
        }
    )
    with ocimerge.open_images(layout.write_dir(str(tmp_path / "l"))) as images:
        assert images.images[0].attestations == ()
        assert any("dropped attestation" in n for n in images.notes)


def test_large_blob_hashed_on_a_second_thread_still_fails_on_mismatch(tmp_path: Path) -> None:
    big = os.urandom(6 * 1024 * 1024)  # above the threaded-hashing threshold
    image = Image(gzip_layers=False, layers=[big])
    layout = oci_layout([image])
    layer = json.loads(image.manifest)["layers"][0]["digest"]
    layout.files[f"blobs/sha256/{layer.split(':')[1]}"] = big[:-1] + bytes([big[-1] ^ 1])
    path = layout.write_tar(str(tmp_path / "big.tar"))
    with pytest.raises(DigestMismatchError, match=r"big\.tar"):
        ocimerge.create([path], str(tmp_path / "out.tar"))
    assert not (tmp_path / "out.tar").exists()
    good = oci_layout([image]).write_tar(str(tmp_path / "good.tar"))
    ocimerge.create([good], str(tmp_path / "ok.tar"))
    assert ocimerge.verify(str(tmp_path / "ok.tar")).ok


# -- selectors on file names with dots ----------------------------------------------------


def test_docker_save_selector_on_a_dotted_file_name(tmp_path: Path) -> None:
    """README: ``save.tar:acme/app:1.0`` picks by RepoTags; it is not a registry reference."""
    two = [Image(architecture="amd64"), Image(architecture="arm64", variant="v8")]
    path = docker_save(two, repo_tags=[["acme/app:1.0"], ["acme/app:2.0"]]).write_tar(str(tmp_path / "save.tar"))
    assert platforms(f"{path}:acme/app:1.0") == ["linux/amd64"]
    relative = os.path.relpath(path)
    assert platforms(f"{relative}:acme/app:2.0") == ["linux/arm64/v8"]


def test_the_several_images_advice_works_as_printed(tmp_path: Path) -> None:
    """The "several images" error shows a selector; running it as shown selects one image."""
    two = [Image(architecture="amd64"), Image(architecture="arm64", variant="v8")]
    path = docker_save(two, repo_tags=[["acme/app:1.0"], ["acme/app:2.0"]]).write_tar(str(tmp_path / "save.tar"))
    with pytest.raises(SelectionError) as caught:
        platforms(path)
    advice = str(caught.value).split("(e.g. ", 1)[1].split(")", 1)[0]
    assert platforms(advice) == ["linux/amd64"]
