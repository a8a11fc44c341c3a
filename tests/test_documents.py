"""The encoder's golden bytes, the strict decoder, and manifest/index/config parsing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocimerge.errors import DocumentError, UnsupportedMediaTypeError
from ocimerge.model import mediatype as mt
from ocimerge.model.codec import MAX_DOCUMENT_SIZE, decode_json, encode_json
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import (
    Document,
    ImageIndex,
    ImageManifest,
    decode_config,
    decode_index,
    decode_manifest,
    decode_manifest_or_index,
)
from ocimerge.model.platform import Platform

# image-format.md §4 and §5: the compact forms of the spec examples and their digests.
CONFIG_DIGEST = "sha256:9727e6ceaed916a5c70c33eaf2424d280683ad4032cdec87b1ba33ac40879d7a"
LAYER_DIGEST = "sha256:fd4db45ddb87e94ec00990dfe6770d4b439ddfcb82b8ac9d356407ec07bf3b6b"
MANIFEST_DIGEST = "sha256:8e078fd79740ab0f1babb5aacef28b6bb8b87e22004f9e2b18c3d84114287796"
ARM64_DIGEST = "sha256:753343f2688f2420da82548b40a544a3cbb5addc027b65a04e35912c4f4e3ae0"
INDEX_DIGEST = "sha256:98bbdb1393c1a76ac0fdd91301fb41bc43d81217c347cda1ab7366c2255b3f28"
CONFIG_BYTES = (
    b'{"architecture":"amd64","os":"linux","config":{"Cmd":["/hello"]},"rootfs":{"type":"layers",'
    b'"diff_ids":["sha256:cbe5938529a030af21cf8d57719891a79e694bf6a59481c292bc9c9bdc548b61"]}}'
)


def test_golden_manifest_bytes() -> None:
    manifest = ImageManifest(
        config=Descriptor(mt.OCI_CONFIG, Digest.parse(CONFIG_DIGEST), 179),
        layers=(Descriptor(mt.OCI_LAYER_GZIP, Digest.parse(LAYER_DIGEST), 113),),
    )
    doc = Document.author(manifest)
    assert doc.descriptor.size == 401
    assert str(doc.descriptor.digest) == MANIFEST_DIGEST
    assert decode_manifest(doc.raw) == manifest


def test_golden_index_bytes() -> None:
    index = ImageIndex(
        manifests=(
            Descriptor(mt.OCI_MANIFEST, Digest.parse(MANIFEST_DIGEST), 401, platform=Platform("linux", "amd64")),
            Descriptor(mt.OCI_MANIFEST, Digest.parse(ARM64_DIGEST), 401, platform=Platform("linux", "arm64", "v8")),
        )
    )
    doc = Document.author(index)
    assert doc.descriptor.size == 506
    assert str(doc.descriptor.digest) == INDEX_DIGEST
    assert decode_index(doc.raw) == index


def test_golden_config_is_parsed() -> None:
    assert str(Digest.of(CONFIG_BYTES)) == CONFIG_DIGEST
    config = decode_config(CONFIG_BYTES)
    assert config.platform == Platform("linux", "amd64")
    assert [str(d) for d in config.diff_ids] == [
        "sha256:cbe5938529a030af21cf8d57719891a79e694bf6a59481c292bc9c9bdc548b61"
    ]


def test_encoder_golden_bytes() -> None:
    assert encode_json({"b": 1, "a": [True, None, "é<>&"]}) == '{"b":1,"a":[true,null,"é<>&"]}'.encode()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_encoder_is_stable_and_decodable(value: object) -> None:
    raw = encode_json(value)
    assert encode_json(decode_json(raw, where="x")) == raw
    assert json.loads(raw) == value


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b'{"a":1,"a":2}', "duplicate"),
        (b'{"a":NaN}', "NaN"),
        (b'{"a":Infinity}', "Infinity"),
        (b"\xff\xfe{}", "UTF-8"),
        (b"{", "invalid JSON"),
        (b"", "invalid JSON"),
    ],
)
def test_decoder_is_strict(raw: bytes, fragment: str) -> None:
    with pytest.raises(DocumentError, match=fragment):
        decode_json(raw, where="blob x")


def test_decoder_caps_size() -> None:
    raw = b'{"pad":"' + b"x" * MAX_DOCUMENT_SIZE + b'"}'
    with pytest.raises(DocumentError, match="limit"):
        decode_json(raw, where="big")


def _manifest(**extra: object) -> bytes:
    value = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": CONFIG_DIGEST, "size": 179},
        "layers": [],
    }
    value.update(extra)
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("raw", "error", "fragment"),
    [
        (_manifest(schemaVersion=1), UnsupportedMediaTypeError, "schema 1"),
        (_manifest(mediaType=mt.DOCKER_SCHEMA1_SIGNED), UnsupportedMediaTypeError, "schema 1"),
        (_manifest(schemaVersion=3), DocumentError, "schemaVersion"),
        (_manifest(mediaType="application/x-unknown"), UnsupportedMediaTypeError, "unknown media type"),
        (_manifest(layers="nope"), DocumentError, "layers"),
        (b"[]", DocumentError, "JSON object"),
        (json.dumps({"schemaVersion": 2}).encode(), UnsupportedMediaTypeError, "unknown media type"),
    ],
)
def test_document_errors(raw: bytes, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        decode_manifest_or_index(raw, where="doc")


def test_document_without_media_type_is_sniffed() -> None:
    raw = json.dumps(
        {"schemaVersion": 2, "config": {"mediaType": mt.OCI_CONFIG, "digest": CONFIG_DIGEST, "size": 1}, "layers": []}
    ).encode()
    parsed = decode_manifest_or_index(raw)
    assert isinstance(parsed, ImageManifest)
    assert parsed.media_type is None
    assert parsed.effective_media_type == mt.OCI_MANIFEST
    assert isinstance(decode_manifest_or_index(b'{"schemaVersion":2,"manifests":null}'), ImageIndex)


def test_config_without_platform_is_not_an_image_config() -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="not an image config"):
        decode_config(b"{}")
