"""The pure referrers model: tag names, the referrer descriptor, the fallback index ([REFERRERS-1] .. [REFERRERS-8])."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocimerge.errors import DocumentError, ModelError
from ocimerge.model import mediatype as mt
from ocimerge.model.codec import encode_json
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageIndex, ImageManifest, decode_index, decode_manifest_or_index
from ocimerge.model.referrers import (
    ReferrersIndex,
    artifact_type_of,
    cosign_tag,
    cosign_tags,
    fallback_tag,
    filter_by_artifact_type,
    referrer_descriptor,
    refers_to,
    subject_of,
    with_referrer,
)

HEX64 = "8e078fd79740ab0f1babb5aacef28b6bb8b87e22004f9e2b18c3d84114287796"
HEX128 = "ab" * 64
IMAGE = Digest.parse(f"sha256:{HEX64}")
EMPTY = Descriptor(mt.OCI_EMPTY, Digest.of(b"{}"), 2)
SIG_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SPDX = "application/spdx+json"
TAG_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def subject() -> Descriptor:
    return Descriptor(mt.OCI_MANIFEST, IMAGE, 401)


# -- [REFERRERS-4] the fallback tag ---------------------------------------------------------


@pytest.mark.parametrize(
    ("digest", "tag"),
    [
        (IMAGE, f"sha256-{HEX64}"),
        (f"sha256:{HEX64}", f"sha256-{HEX64}"),
        # sha512: the encoded part is cut to 64 characters
        (Digest.parse(f"sha512:{HEX128}"), f"sha512-{HEX128[:64]}"),
        (f"sha512:{HEX128}", f"sha512-{HEX128[:64]}"),
        # an algorithm ocimerge cannot verify still has a tag; blake3 is 64 hex like sha256
        (f"blake3:{HEX64}", f"blake3-{HEX64}"),
        # '+' in the algorithm and '=' in the encoded part are not tag characters
        (
            "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564=",
            "sha256-b64u-LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564-",
        ),
        (
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
            "multihash-base58-QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
        ),
        # the algorithm is cut to 32 characters
        ("a" * 40 + ":abc", "a" * 32 + "-abc"),
        ("a" * 40 + ":" + "b" * 100, "a" * 32 + "-" + "b" * 64),
    ],
)
def test_fallback_tag(digest: Digest | str, tag: str) -> None:
    assert fallback_tag(digest) == tag


@pytest.mark.parametrize("text", ["", "sha256", f"SHA256:{HEX64}", f"sha256-{HEX64}", "sha256:", ":abc", "sha256:a/b"])
def test_fallback_tag_refuses_what_is_not_a_digest(text: str) -> None:
    with pytest.raises(DocumentError, match="invalid digest"):
        fallback_tag(text)


@given(
    st.from_regex(r"[a-z0-9]{1,40}([+._-][a-z0-9]{1,10}){0,3}", fullmatch=True),
    st.from_regex(r"[a-zA-Z0-9=_-]{1,200}", fullmatch=True),
)
def test_fallback_tag_is_always_a_tag(algorithm: str, encoded: str) -> None:
    tag = fallback_tag(f"{algorithm}:{encoded}")
    assert len(tag) <= 32 + 1 + 64
    assert set(tag) <= TAG_CHARACTERS
    assert tag[0].isalnum()  # a tag starts with [a-zA-Z0-9_]


# -- [REFERRERS-7] cosign's tags ----------------------------------------------------------


@pytest.mark.parametrize(
    ("digest", "suffix", "tag"),
    [
        (IMAGE, "sig", f"sha256-{HEX64}.sig"),
        (IMAGE, "att", f"sha256-{HEX64}.att"),
        (IMAGE, "sbom", f"sha256-{HEX64}.sbom"),
        (f"sha256:{HEX64}", "sig", f"sha256-{HEX64}.sig"),
        (f"blake3:{HEX64}", "att", f"blake3-{HEX64}.att"),
        # the spec's own example
        (
            "sha256:97fc222cee7991b5b061d4d4afdb5f3428fcb0c9054e1690313786befa1e4e36",
            "sig",
            "sha256-97fc222cee7991b5b061d4d4afdb5f3428fcb0c9054e1690313786befa1e4e36.sig",
        ),
    ],
)
def test_cosign_tag(digest: Digest | str, suffix: str, tag: str) -> None:
    assert cosign_tag(digest, suffix) == tag


def test_cosign_tags_in_order() -> None:
    assert cosign_tags(IMAGE) == (f"sha256-{HEX64}.sig", f"sha256-{HEX64}.att", f"sha256-{HEX64}.sbom")


def test_cosign_tags_are_not_cut() -> None:
    # cosign does not truncate: a sha512 digest makes a 139-character tag, which no registry takes
    with pytest.raises(ModelError, match="would not be a valid tag"):
        cosign_tags(Digest.parse(f"sha512:{HEX128}"))
    with pytest.raises(ModelError, match="would not be a valid tag"):
        cosign_tag("sha256+b64u:abc=", "sig")


def test_cosign_tag_refuses_an_unknown_suffix() -> None:
    with pytest.raises(ModelError, match="unknown cosign tag suffix"):
        cosign_tag(IMAGE, "sign")


# -- [REFERRERS-1] [REFERRERS-2] [REFERRERS-3] subject, artifactType, the listed descriptor ---


def signature_manifest(**fields: Any) -> ImageManifest:
    layer = Descriptor("application/vnd.dev.cosign.simplesigning.v1+json", Digest.of(b"payload"), 7)
    return ImageManifest(config=EMPTY, layers=(layer,), subject=subject(), **fields)


def test_subject_of_a_manifest_an_index_and_documents() -> None:
    manifest = signature_manifest(artifact_type=SIG_TYPE)
    assert subject_of(manifest) == subject()
    assert subject_of(Document.author(manifest)) == subject()
    index = ImageIndex(manifests=(), subject=subject())
    assert subject_of(index) == subject()
    assert subject_of(ImageIndex(manifests=())) is None
    assert subject_of(ImageManifest(config=EMPTY, layers=())) is None


def test_refers_to_names_exactly_the_subject() -> None:
    manifest = signature_manifest(artifact_type=SIG_TYPE)
    assert refers_to(manifest, IMAGE)
    assert refers_to(Document.author(manifest), IMAGE)
    assert not refers_to(manifest, Digest.of(b"another image"))
    # the same hex under another algorithm is another digest
    assert not refers_to(manifest, Digest.parse(f"sha512:{HEX64 * 2}"))
    assert not refers_to(ImageManifest(config=EMPTY, layers=()), IMAGE)


def test_subject_is_read_from_bytes() -> None:
    raw = encode_json(signature_manifest(artifact_type=SIG_TYPE).to_json())
    parsed = decode_manifest_or_index(raw)
    assert subject_of(parsed) == subject()
    assert artifact_type_of(parsed) == SIG_TYPE


def test_subject_of_refuses_other_values() -> None:
    with pytest.raises(ModelError, match="expected an image manifest or index"):
        subject_of(Document(b"{}", {"not": "a manifest"}, EMPTY))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (signature_manifest(artifact_type=SIG_TYPE), SIG_TYPE),
        # no artifactType: the config's media type
        (ImageManifest(config=Descriptor(mt.OCI_CONFIG, Digest.of(b"{}"), 2), layers=()), mt.OCI_CONFIG),
        (signature_manifest(), mt.OCI_EMPTY),
        (ImageIndex(manifests=(), artifact_type=SPDX), SPDX),
        (ImageIndex(manifests=()), None),
    ],
)
def test_artifact_type_of(value: ImageManifest | ImageIndex, expected: str | None) -> None:
    assert artifact_type_of(value) == expected


def test_referrer_descriptor_lists_what_the_api_lists() -> None:
    manifest = signature_manifest(artifact_type=SIG_TYPE, annotations={"org.opencontainers.image.created": "2026"})
    doc = Document.author(manifest)
    listed = referrer_descriptor(doc)
    assert listed.to_json() == {
        "mediaType": mt.OCI_MANIFEST,
        "digest": str(Digest.of(doc.raw)),
        "size": len(doc.raw),
        "annotations": {"org.opencontainers.image.created": "2026"},
        "artifactType": SIG_TYPE,
    }


def test_referrer_descriptor_of_a_read_document_hashes_its_raw_bytes() -> None:
    # Go-written bytes (spaces, other key order) are the truth, never a re-encoding [DOC-1]
    raw = (
        b'{"schemaVersion": 2, "layers": [], "config": {"size": 2, "digest": "' + str(EMPTY.digest).encode() + b'",'
        b' "mediaType": "application/vnd.oci.empty.v1+json"}, "artifactType": "application/spdx+json",'
        b' "mediaType": "application/vnd.oci.image.manifest.v1+json"}'
    )
    by = Descriptor(mt.OCI_MANIFEST, Digest.of(raw), len(raw), platform=None, annotations={"entry": "only"})
    doc = Document.reached(raw, decode_manifest_or_index(raw), by, where="sbom")
    listed = referrer_descriptor(doc)
    assert (listed.digest, listed.size, listed.artifact_type, listed.annotations) == (by.digest, len(raw), SPDX, ())


# -- [REFERRERS-8] filtering ----------------------------------------------------------------


def entry(n: int, artifact_type: str | None = SIG_TYPE) -> Descriptor:
    return Descriptor(mt.OCI_MANIFEST, Digest.parse(f"sha256:{n:064x}"), 100 + n, artifact_type=artifact_type)


@pytest.mark.parametrize(
    ("types", "kept"),
    [
        ([], [1, 2, 3]),
        ([SPDX], [2]),
        ([SIG_TYPE], [1]),
        ([SIG_TYPE, SPDX], [1, 2]),
        (["application/other"], []),
    ],
)
def test_filter_by_artifact_type(types: list[str], kept: list[int]) -> None:
    descriptors = [entry(1), entry(2, SPDX), entry(3, None)]
    assert [d.size - 100 for d in filter_by_artifact_type(descriptors, types)] == kept
    # an iterator is read once, in order
    assert [d.size - 100 for d in filter_by_artifact_type(iter(descriptors), iter(types))] == kept


# -- [REFERRERS-5] [REFERRERS-6] the fallback index -------------------------------------------

#: The fallback index after a cosign signature and then an SPDX SBOM were added: pinned bytes.
GOLDEN = (
    b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":['
    b'{"mediaType":"application/vnd.oci.image.manifest.v1+json",'
    b'"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":556,'
    b'"annotations":{"org.opencontainers.image.created":"2026-12-03T00:00:00Z"},'
    b'"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json"},'
    b'{"mediaType":"application/vnd.oci.image.manifest.v1+json",'
    b'"digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":789,'
    b'"artifactType":"application/spdx+json"}]}'
)
GOLDEN_DIGEST = "sha256:0b906ff4b0dad1611ad8a379da9bf744feb5d068964d2b06a6c57fa8dfcf9118"

SIGNATURE = Descriptor(
    mt.OCI_MANIFEST,
    Digest.parse("sha256:" + "1" * 64),
    556,
    artifact_type=SIG_TYPE,
    annotations={"org.opencontainers.image.created": "2026-12-03T00:00:00Z"},
)
SBOM = Descriptor(mt.OCI_MANIFEST, Digest.parse("sha256:" + "2" * 64), 789, artifact_type=SPDX)


def test_golden_fallback_index() -> None:
    first = with_referrer(None, SIGNATURE)
    doc = with_referrer(first.raw, SBOM)
    assert doc.raw == GOLDEN
    assert str(doc.descriptor.digest) == GOLDEN_DIGEST
    assert doc.descriptor == Descriptor(mt.OCI_INDEX, Digest.of(GOLDEN), len(GOLDEN))
    assert isinstance(doc.value, ImageIndex)
    # what we write reads back as the same index, with either decoder
    assert decode_index(doc.raw) == doc.value
    assert ReferrersIndex.parse(doc.raw).referrers == (SIGNATURE, SBOM)


def test_with_referrer_keeps_a_foreign_index_entries_and_annotations() -> None:
    # written by another client: pretty-printed, an entry of a type we do not know, annotations
    foreign = (
        b'{\n  "schemaVersion": 2,\n  "mediaType": "application/vnd.oci.image.index.v1+json",\n'
        b'  "manifests": [\n    {"mediaType": "application/vnd.example.unknown", "size": 3,'
        b' "digest": "sha256:' + b"3" * 64 + b'", "artifactType": "application/x"}\n  ],\n'
        b'  "annotations": {"org.example.owner": "someone"}\n}\n'
    )
    doc = with_referrer(foreign, SIGNATURE, subject=IMAGE)
    assert [str(d.digest) for d in doc.value.manifests] == ["sha256:" + "3" * 64, str(SIGNATURE.digest)]
    assert doc.value.manifests[0].media_type == "application/vnd.example.unknown"
    assert dict(doc.value.annotations) == {"org.example.owner": "someone"}
    assert doc.raw != foreign  # re-authored, canonically
    assert doc.raw == encode_json(doc.value.to_json())


def test_an_index_without_media_type_is_a_fallback_index() -> None:
    raw = b'{"schemaVersion":2,"manifests":[' + encode_json(SBOM.to_json()) + b"]}"
    assert ReferrersIndex.parse(raw).referrers == (SBOM,)
    assert ReferrersIndex.parse(b'{"schemaVersion":2,"manifests":null}').referrers == ()


def test_an_entry_already_listed_is_kept_as_it_was() -> None:
    first = with_referrer(None, SIGNATURE)
    again = with_referrer(first.raw, Descriptor(SIGNATURE.media_type, SIGNATURE.digest, SIGNATURE.size))
    assert again.raw == first.raw


def test_duplicates_in_a_foreign_index_are_listed_once() -> None:
    entries = [SBOM.to_json(), SIGNATURE.to_json(), SBOM.to_json()]
    raw = encode_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries})
    assert ReferrersIndex.parse(raw).referrers == (SBOM, SIGNATURE)


def image_manifest_bytes(media_type: str | None = mt.OCI_MANIFEST) -> bytes:
    value: dict[str, Any] = {"schemaVersion": 2}
    if media_type:
        value["mediaType"] = media_type
    value["config"] = Descriptor(mt.OCI_CONFIG, Digest.of(b"{}"), 2).to_json()
    value["layers"] = []
    return encode_json(value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # GitLab is reported to answer the image itself for the fallback tag
        (image_manifest_bytes(), "found application/vnd.oci.image.manifest.v1+json"),
        (image_manifest_bytes(None), "found application/vnd.oci.image.manifest.v1+json"),
        (image_manifest_bytes(mt.DOCKER_MANIFEST), "found application/vnd.docker.distribution.manifest.v2+json"),
        (
            encode_json({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": []}),
            "found application/vnd.docker.distribution.manifest.list.v2+json",
        ),
        (b"{}", "found no media type"),
        (b"[]", "found list"),
        (b'"sha256-abc"', "found str"),
        (b"<html>not found</html>", "invalid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (
            b'{"schemaVersion":1,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}',
            "schema 1 is not supported",
        ),
        (b'{"schemaVersion":2,"manifests":[],"layers":[]}', "ambiguous document"),
        (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":{}}', "must be a list"),
        (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{}]}', "mediaType"),
    ],
)
def test_refuses_what_is_not_a_referrers_index(raw: bytes, message: str) -> None:
    # DocumentError, whatever was wrong (schema 1 too), so a caller can tell the answer was not one
    with pytest.raises(DocumentError, match=re.escape(message)):
        ReferrersIndex.parse(raw, where="registry/app:sha256-x")
    with pytest.raises(DocumentError, match=re.escape(message)):
        with_referrer(raw, SIGNATURE)


def test_refuses_the_subject_itself_even_when_it_is_an_index() -> None:
    # a multi-arch image is an OCI index: only its digest tells it from its referrers
    image = Document.author(ImageIndex(manifests=(entry(7, None),)))
    with pytest.raises(DocumentError, match=r"answered the subject sha256:[0-9a-f]{64} itself"):
        ReferrersIndex.parse(image.raw, subject=image.descriptor.digest)
    with pytest.raises(DocumentError, match="answered the subject"):
        with_referrer(image.raw, SIGNATURE, subject=image.descriptor.digest)
    # another subject: the same bytes are a (strange but valid) fallback index
    assert ReferrersIndex.parse(image.raw, subject=IMAGE).referrers == (entry(7, None),)


def test_the_message_names_where() -> None:
    with pytest.raises(DocumentError, match=r"^registry/app:sha256-x: "):
        ReferrersIndex.parse(b"{}", where="registry/app:sha256-x")


# -- properties of with_referrer [REFERRERS-6] ------------------------------------------------

DESCRIPTORS = st.builds(
    lambda n, size, artifact_type, note: Descriptor(
        mt.OCI_MANIFEST,
        Digest.parse(f"sha256:{n:064x}"),
        size,
        artifact_type=artifact_type,
        annotations={"org.example.note": note} if note else None,
    ),
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from([None, SIG_TYPE, SPDX, "application/vnd.in-toto+json"]),
    st.one_of(st.none(), st.text(max_size=8)),
)


def build(descriptors: list[Descriptor]) -> Document[ImageIndex]:
    """The fallback index after adding ``descriptors`` one by one, each round trip through bytes."""
    raw: bytes | None = None
    doc = ReferrersIndex().author()
    for descriptor in descriptors:
        doc = with_referrer(raw, descriptor)
        raw = doc.raw
    return doc


@given(st.lists(DESCRIPTORS, max_size=12), DESCRIPTORS)
def test_with_referrer_is_idempotent(existing: list[Descriptor], new: Descriptor) -> None:
    once = with_referrer(build(existing).raw, new)
    twice = with_referrer(once.raw, new)
    assert twice.raw == once.raw
    assert twice.descriptor == once.descriptor


@given(st.lists(DESCRIPTORS, max_size=12), DESCRIPTORS)
def test_with_referrer_keeps_entries_in_order(existing: list[Descriptor], new: Descriptor) -> None:
    before = build(existing).value.manifests
    after = with_referrer(build(existing).raw, new).value.manifests
    # every entry already there is kept, unchanged and in its place
    assert after[: len(before)] == before
    digests = [d.digest for d in after]
    assert len(digests) == len(set(digests))  # each digest once
    if new.digest in {d.digest for d in before}:
        assert after == before
    else:
        assert after == (*before, new)


@given(st.lists(DESCRIPTORS, max_size=12))
def test_the_index_lists_first_occurrences_in_order(descriptors: list[Descriptor]) -> None:
    firsts: dict[Digest, Descriptor] = {}
    for d in descriptors:
        firsts.setdefault(d.digest, d)
    doc = build(descriptors)
    assert doc.value.manifests == tuple(firsts.values())
    assert ReferrersIndex.parse(doc.raw).referrers == tuple(firsts.values())
    # authored once, canonically: the bytes are a pure function of the list
    assert doc.raw == build(descriptors).raw == encode_json(doc.value.to_json())
