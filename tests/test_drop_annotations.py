"""``--format docker`` names the annotations it cannot carry, and ``--drop-annotations`` drops
them with a note per child (issue 13 item 4) [CONVERT-2]."""

from __future__ import annotations

import json
import os
import re
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagebuilder import Image, oci_layout
from ocimerge.cli import main
from ocimerge.cli.exits import code_for
from ocimerge.errors import ConversionError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.assemble import Annotation, Base, Child, IndexFormat, assemble, docker_losses, to_docker_manifest
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageManifest
from ocimerge.model.platform import Platform

CORPUS = Path(os.environ.get("OCIMERGE_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus")
ESTARGZ = CORPUS / "dive" / "test-oci-estargz-image.tar"
TOC = "containerd.io/snapshot/stargz/toc.digest"


def manifest(
    *,
    annotations: dict[str, str] | None = None,
    layer_annotations: tuple[dict[str, str], ...] = ({},),
    config_annotations: dict[str, str] | None = None,
    **fields: object,
) -> Document[ImageManifest]:
    layers = tuple(
        Descriptor(mt.OCI_LAYER_GZIP, Digest.of(b"layer %d" % i), 20, annotations=a)
        for i, a in enumerate(layer_annotations)
    )
    config = Descriptor(mt.OCI_CONFIG, Digest.of(b"config"), 10, annotations=config_annotations or {})
    return Document.author(ImageManifest(config=config, layers=layers, annotations=annotations or {}, **fields))  # type: ignore[arg-type]


def amd64(doc: Document[ImageManifest]) -> Child:
    return Child("app.tar", doc, Platform.parse("linux/amd64"))


def test_the_refusal_names_the_keys_of_manifest_config_and_layers() -> None:
    doc = manifest(
        annotations={"org.b": "1", "org.a": "2"}, config_annotations={"c.key": "x"}, layer_annotations=({TOC: "t"},)
    )
    with pytest.raises(ConversionError) as raised:
        assemble([amd64(doc)], format=IndexFormat.DOCKER)
    message = str(raised.value)
    assert f"has annotations a Docker manifest cannot carry: org.a, org.b, config:c.key, layer 0:{TOC}; " in message
    assert "pass --drop-annotations to drop them (the manifest's digest changes) or use --format oci" in message


def test_the_refusal_names_five_keys_then_how_many_more() -> None:
    doc = manifest(annotations={f"k{i}": "v" for i in range(8)})
    with pytest.raises(ConversionError, match=r": k0, k1, k2, k3, k4 and 3 more; pass --drop-annotations"):
        to_docker_manifest(doc, "app.tar")


def test_drop_removes_them_and_says_which_and_that_the_digest_changes() -> None:
    doc = manifest(annotations={"org.a": "1"}, layer_annotations=({TOC: "t"}, {}), config_annotations={"c": "x"})
    result = assemble([amd64(doc)], format=IndexFormat.DOCKER, drop_annotations=True)
    [converted] = result.manifests
    value = json.loads(converted.raw)
    assert value["mediaType"] == mt.DOCKER_MANIFEST
    assert "annotations" not in value
    assert "annotations" not in value["config"]
    assert all("annotations" not in layer for layer in value["layers"])
    # the same blobs: only the manifest was re-authored
    assert [layer["digest"] for layer in value["layers"]] == [str(d.digest) for d in doc.value.layers]
    assert converted.descriptor.digest != doc.descriptor.digest
    assert result.notes == (
        f"app.tar: dropped annotations a Docker manifest cannot carry (--drop-annotations): org.a, config:c, "
        f"layer 0:{TOC}; its manifest {doc.descriptor.digest} is now {converted.descriptor.digest}",
    )


def test_a_manifest_without_annotations_gets_no_note() -> None:
    result = assemble([amd64(manifest())], format=IndexFormat.DOCKER, drop_annotations=True)
    assert result.notes == ()


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"artifact_type": "application/vnd.example"}, "has an artifactType, which"),
        ({"subject": Descriptor(mt.OCI_MANIFEST, Digest.of(b"other"), 5)}, "has a subject, which"),
    ],
)
def test_subject_and_artifact_type_are_never_dropped(fields: dict[str, object], named: str) -> None:
    doc = manifest(annotations={"org.a": "1"}, **fields)  # type: ignore[arg-type]
    with pytest.raises(ConversionError, match=named):
        assemble([amd64(doc)], format=IndexFormat.DOCKER, drop_annotations=True)


def test_index_and_entry_annotations_are_dropped_with_notes_naming_them() -> None:
    given = [Annotation.parse("index:org.z=1"), Annotation.parse("manifest-descriptor[linux/amd64]:org.e=2")]
    with pytest.raises(ConversionError, match="drop --annotation, pass --drop-annotations to drop them"):
        assemble([amd64(manifest())], format=IndexFormat.DOCKER, annotations=given)
    result = assemble([amd64(manifest())], format=IndexFormat.DOCKER, annotations=given, drop_annotations=True)
    assert result.index.descriptor.media_type == mt.DOCKER_MANIFEST_LIST
    assert "annotations" not in json.loads(result.index.raw)
    assert "annotations" not in json.loads(result.index.raw)["manifests"][0]
    assert result.notes == (
        "dropped the index annotations (--drop-annotations): org.z; a Docker manifest list cannot carry them",
        "dropped the entry annotations (--drop-annotations): org.e; a Docker manifest list cannot carry them",
    )


def test_an_appended_tags_index_annotations_are_named_too() -> None:
    base = Base("reg/app:1", 1, {"org.opencontainers.image.version": "1"})
    with pytest.raises(ConversionError, match="drop the index annotations of reg/app:1, pass --drop-annotations"):
        assemble([amd64(manifest())], format=IndexFormat.DOCKER, base=base)
    result = assemble([amd64(manifest())], format=IndexFormat.DOCKER, base=base, drop_annotations=True)
    assert result.notes == (
        "dropped the index annotations (--drop-annotations): org.opencontainers.image.version; "
        "a Docker manifest list cannot carry them",
    )


KEYS = st.text(alphabet="abcdefghij.-/", min_size=1, max_size=8)


@given(
    st.dictionaries(KEYS, st.just("v"), max_size=4),
    st.lists(st.dictionaries(KEYS, st.just("v"), max_size=3), min_size=1, max_size=4),
)
def test_every_lost_key_is_named_once_and_the_drop_leaves_none(
    annotations: dict[str, str], layers: list[dict[str, str]]
) -> None:
    doc = manifest(annotations=annotations, layer_annotations=tuple(layers))
    lost = docker_losses(doc.value)
    assert len(lost) == len(annotations) + sum(len(a) for a in layers)
    if not lost:
        assert to_docker_manifest(doc, "p.tar").value.annotations == ()
        return
    with pytest.raises(ConversionError) as raised:
        to_docker_manifest(doc, "p.tar")
    listed = re.search(r"cannot carry: (.*); pass --drop-annotations", str(raised.value))
    assert listed is not None
    more = len(lost) - 5
    assert listed[1] == ", ".join(lost[:5]) + (f" and {more} more" if more > 0 else "")
    dropped = assemble([amd64(doc)], format=IndexFormat.DOCKER, drop_annotations=True)
    value = dropped.manifests[0].value
    assert value.annotations == ()
    assert all(layer.annotations == () for layer in value.layers)
    assert dropped.notes[-1].startswith("app.tar: dropped annotations")
    assert all(k in dropped.notes[-1] for k in lost)


def test_the_command_line_on_a_real_estargz_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out.tar"
    assert main(["create", "--format", "docker", "-o", str(output), str(ESTARGZ)]) == code_for(ConversionError)
    err = capsys.readouterr().err
    assert f"layer 0:{TOC}" in err
    assert "pass --drop-annotations" in err
    assert not output.exists()
    assert main(["create", "--format", "docker", "--drop-annotations", "-o", str(output), str(ESTARGZ)]) == 0
    err = capsys.readouterr().err
    assert f"dropped annotations a Docker manifest cannot carry (--drop-annotations): layer 0:{TOC}" in err
    assert re.search(r"its manifest sha256:[0-9a-f]{64} is now sha256:[0-9a-f]{64}", err)
    with tarfile.open(output) as tar:
        index_json = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        [root] = index_json["manifests"]
        listed = json.loads(tar.extractfile(f"blobs/sha256/{root['digest'].split(':')[1]}").read())  # type: ignore[union-attr]
        [entry] = listed["manifests"]
        image = json.loads(tar.extractfile(f"blobs/sha256/{entry['digest'].split(':')[1]}").read())  # type: ignore[union-attr]
    assert listed["mediaType"] == mt.DOCKER_MANIFEST_LIST
    assert image["mediaType"] == mt.DOCKER_MANIFEST
    assert all("annotations" not in layer for layer in image["layers"])


def test_drop_annotations_refuses_an_annotation_asked_for_in_the_same_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """[CONVERT-2] Asking to add an annotation and to drop what a Docker list cannot carry disagree."""
    archive = oci_layout([Image()]).write_tar(str(tmp_path / "amd64.tar"))
    args = ["create", "--format", "docker", "--drop-annotations", "-o", str(tmp_path / "out.tar")]
    assert main([*args, "--annotation", "index:org.example=1", archive]) == code_for(UsageError)
    assert "--drop-annotations and --annotation org.example disagree" in capsys.readouterr().err
    assert main([*args, "--annotations-from-labels", archive]) == code_for(UsageError)
    assert "--drop-annotations and --annotations-from-labels disagree" in capsys.readouterr().err
    assert not (tmp_path / "out.tar").exists()
