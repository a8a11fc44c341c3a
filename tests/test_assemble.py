"""Assembly: ordering, duplicates, output format choice, conversion and attestations."""

from __future__ import annotations

import json
import re

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocimerge.errors import ConversionError, ModelError, PlatformConflictError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.assemble import (
    Annotation,
    AttestationPolicy,
    Child,
    IndexFormat,
    assemble,
)
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageManifest, decode_index
from ocimerge.model.platform import Platform

PLATFORMS = [
    "linux/amd64",
    "linux/arm64/v8",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/ppc64le",
    "linux/s390x",
    "linux/386",
    "linux/riscv64",
    "windows/amd64",
]


def manifest(
    seed: str, *, docker: bool = False, layer_type: str | None = None, annotations: dict[str, str] | None = None
) -> Document[ImageManifest]:
    config_type = mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG
    layer = layer_type or (mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP)
    value = ImageManifest(
        config=Descriptor(config_type, Digest.of(seed.encode()), 10),
        layers=(Descriptor(layer, Digest.of(b"layer" + seed.encode()), 20),),
        media_type=mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST,
        annotations=annotations or {},
    )
    return Document.author(value)


def child(platform: str, **kwargs: object) -> Child:
    return Child(
        source=f"{platform}.tar",
        manifest=manifest(platform, **kwargs),  # type: ignore[arg-type]
        platform=Platform.parse(platform),
    )


def attested(platform: str) -> Child:
    base = child(platform)
    att = manifest("att-" + platform)
    entry = Descriptor(
        mt.OCI_MANIFEST,
        att.descriptor.digest,
        att.descriptor.size,
        annotations={
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": str(base.manifest.descriptor.digest),
        },
        platform=Platform("unknown", "unknown"),
    )
    return Child(base.source, base.manifest, base.platform, attestations=((entry, att),))


@given(st.permutations(PLATFORMS))
def test_index_digest_does_not_depend_on_input_order(order: list[str]) -> None:
    reference = assemble([child(p) for p in PLATFORMS])
    shuffled = assemble([child(p) for p in order])
    assert shuffled.index.raw == reference.index.raw
    assert shuffled.index.descriptor.digest == reference.index.descriptor.digest


@given(st.lists(st.sampled_from(PLATFORMS), min_size=1, max_size=6, unique=True), st.booleans())
def test_every_entry_descriptor_matches_its_bytes(platforms: list[str], with_attestations: bool) -> None:
    children = [attested(p) if with_attestations else child(p) for p in platforms]
    result = assemble(children)
    docs = {str(d.descriptor.digest): d for d in (*result.manifests, *result.attestations)}
    index = decode_index(result.index.raw)
    assert result.index.descriptor.digest == Digest.of(result.index.raw)
    assert result.index.descriptor.size == len(result.index.raw)
    for entry in index.manifests:
        doc = docs[str(entry.digest)]
        assert Digest.of(doc.raw) == entry.digest
        assert len(doc.raw) == entry.size
    assert len(index.manifests) == len(platforms) * (2 if with_attestations else 1)


def test_entries_sorted_by_platform_and_attestations_follow() -> None:
    result = assemble([attested("linux/arm64"), attested("linux/amd64")])
    entries = json.loads(result.index.raw)["manifests"]
    assert [e["platform"]["architecture"] for e in entries] == ["amd64", "arm64", "unknown", "unknown"]
    image_digests = [e["digest"] for e in entries[:2]]
    assert [e["annotations"]["vnd.docker.reference.digest"] for e in entries[2:]] == image_digests


def test_platform_is_written_as_given() -> None:
    result = assemble([child("linux/arm64"), child("linux/arm/v7")])
    platforms = [e["platform"] for e in json.loads(result.index.raw)["manifests"]]
    assert {"architecture": "arm64", "os": "linux"} in platforms
    assert {"architecture": "arm", "os": "linux", "variant": "v7"} in platforms


@pytest.mark.parametrize(
    ("a", "b"), [("linux/arm64", "linux/arm64/v8"), ("linux/amd64", "linux/x86_64"), ("linux/arm", "linux/arm/v7")]
)
def test_same_normalised_platform_twice_is_a_conflict(a: str, b: str) -> None:
    with pytest.raises(PlatformConflictError, match=r"linux/.*\.tar.*\.tar"):
        assemble([child(a), Child("other.tar", manifest("other"), Platform.parse(b))])


def test_the_same_image_from_two_sources_says_so() -> None:
    """[INDEX-3] Not "two images of one platform" (nor the zstd hint): one image, given twice."""
    one = child("linux/amd64")
    with pytest.raises(
        PlatformConflictError,
        match=r"the same image \w+ \(linux/amd64\) comes from a\.tar and from b\.tar; give it once",
    ):
        assemble([attrs.evolve(one, source="a.tar"), attrs.evolve(one, source="b.tar")])


def test_unknown_platform_cannot_be_an_entry() -> None:
    with pytest.raises(ModelError, match="no platform"):
        assemble([Child("x.tar", manifest("x"), Platform("unknown", "unknown"))])


def test_no_children_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        assemble([])


def test_auto_picks_docker_only_when_all_children_are_docker() -> None:
    docker = assemble([child("linux/amd64", docker=True), child("linux/arm64", docker=True)])
    assert docker.index.descriptor.media_type == mt.DOCKER_MANIFEST_LIST
    mixed = assemble([child("linux/amd64", docker=True), child("linux/arm64")])
    assert mixed.index.descriptor.media_type == mt.OCI_INDEX
    # children keep their bytes in an OCI index
    assert mixed.manifests[0].raw == child("linux/amd64", docker=True).manifest.raw


def test_auto_keeps_oci_when_annotations_or_attestations_would_be_lost() -> None:
    annotated = assemble([child("linux/amd64", docker=True)], annotations=[Annotation.parse("org.x=1")])
    assert annotated.index.descriptor.media_type == mt.OCI_INDEX
    assert json.loads(annotated.index.raw)["annotations"] == {"org.x": "1"}


def test_docker_format_converts_gzip_oci_children() -> None:
    result = assemble([child("linux/amd64"), child("linux/arm64")], format=IndexFormat.DOCKER)
    assert result.index.descriptor.media_type == mt.DOCKER_MANIFEST_LIST
    for doc in result.manifests:
        value = json.loads(doc.raw)
        assert value["mediaType"] == mt.DOCKER_MANIFEST
        assert value["config"]["mediaType"] == mt.DOCKER_CONFIG
        assert value["layers"][0]["mediaType"] == mt.DOCKER_LAYER_GZIP
        # the blobs are the same: only the labels changed
    originals = [child("linux/amd64").manifest.value, child("linux/arm64").manifest.value]
    for doc, original in zip(result.manifests, originals, strict=True):
        assert doc.value.config.digest == original.config.digest
        assert [d.digest for d in doc.value.layers] == [d.digest for d in original.layers]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"layer_type": mt.OCI_LAYER_ZSTD}, "zstd"),
        ({"layer_type": mt.OCI_LAYER_TAR}, "--compress gzip"),
        ({"annotations": {"a": "b"}}, "annotations"),
    ],
)
def test_docker_format_refuses_lossy_conversion(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConversionError, match=fragment):
        assemble([child("linux/amd64", **kwargs)], format=IndexFormat.DOCKER)


def test_docker_format_refuses_attestations_unless_dropped() -> None:
    with pytest.raises(ConversionError, match="--attestations drop"):
        assemble([attested("linux/amd64")], format=IndexFormat.DOCKER)
    result = assemble([attested("linux/amd64")], format=IndexFormat.DOCKER, attestations=AttestationPolicy.DROP)
    assert len(json.loads(result.index.raw)["manifests"]) == 1


def test_attestations_dropped_on_request() -> None:
    result = assemble([attested("linux/amd64")], attestations=AttestationPolicy.DROP)
    assert result.attestations == ()
    assert len(json.loads(result.index.raw)["manifests"]) == 1


def test_oci_format_is_forced() -> None:
    result = assemble([child("linux/amd64", docker=True)], format=IndexFormat.OCI)
    assert result.index.descriptor.media_type == mt.OCI_INDEX


def test_entry_annotations_scoped_by_platform() -> None:
    result = assemble(
        [child("linux/amd64"), child("linux/arm64")],
        annotations=[
            Annotation.parse("manifest-descriptor:org.all=1"),
            Annotation.parse("manifest-descriptor[linux/arm64/v8]:org.arm=2"),
            Annotation.parse("index:org.index=3"),
        ],
    )
    value = json.loads(result.index.raw)
    assert value["annotations"] == {"org.index": "3"}
    by_arch = {e["platform"]["architecture"]: e.get("annotations") for e in value["manifests"]}
    assert by_arch == {"amd64": {"org.all": "1"}, "arm64": {"org.all": "1", "org.arm": "2"}}


@pytest.mark.parametrize(
    "bad",
    [
        "novalue",
        "=x",
        "index[linux/amd64]:a=b",
        "manifest-descriptor[bad]:a=b",
        "manifest-descriptor[]:a=b",
        "index:=b",
    ],
)
def test_annotation_parse_rejects(bad: str) -> None:
    with pytest.raises(UsageError):
        Annotation.parse(bad)


# [INDEX-6] scopes: buildx's spelling, an unknown or inapplicable one refused, never an index key
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("manifest:org.x=1", "manifest: does not apply to create"),
        ("index-descriptor:org.x=1", "index-descriptor: does not apply to create"),
        ("manifests:org.x=1", "unknown scope 'manifests:'; valid scopes: index:, manifest-descriptor:"),
        ("org.example:x=1", "'org.example' is not an annotation scope; valid scopes: index:"),
        ("index,manifest-descriptor:x=1", "one scope per --annotation"),
    ],
)
def test_annotation_scopes_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        Annotation.parse(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("org.x=a:b=c", Annotation("org.x", "a:b=c")),
        ("index:org.x=1", Annotation("org.x", "1")),
        ("index:a:b=1", Annotation("a:b", "1")),
        ("manifest-descriptor:org.x=", Annotation("org.x", "", on_index=False)),
        (
            "manifest-descriptor[windows/amd64:10.0.17763]:org.x=1",
            Annotation("org.x", "1", on_index=False, platform=Platform("windows", "amd64", os_version="10.0.17763")),
        ),
    ],
)
def test_annotation_scopes_accepted(text: str, expected: Annotation) -> None:
    assert Annotation.parse(text) == expected


def test_entry_annotation_platform_matches_any_os_version() -> None:
    """[PLATFORM-7] manifest-descriptor[windows/amd64]: reaches every Windows release's entry."""
    win = [
        attrs.evolve(child("linux/amd64", annotations={"n": v}), platform=Platform("windows", "amd64", os_version=v))
        for v in ("10.0.17763.1", "10.0.20348.1")
    ]
    result = assemble(win, annotations=[Annotation.parse("manifest-descriptor[windows/amd64]:org.win=1")])
    assert [e.annotation("org.win") for e in result.index.value.manifests] == ["1", "1"]


# [ATTEST-4] attestations as referrers


def provenance(
    of: Document[ImageManifest], *, subject: Descriptor | None = None
) -> tuple[Descriptor, Document[ImageManifest]]:
    """A BuildKit-style attestation of the image ``of``: its index entry and manifest document."""
    doc: Document[ImageManifest] = Document.author(
        ImageManifest(
            config=Descriptor(mt.OCI_CONFIG, Digest.of(b"att config " + of.raw), 167),
            layers=(Descriptor("application/vnd.in-toto+json", Digest.of(b"statement " + of.raw), 1000),),
            subject=subject,
        )
    )
    entry = Descriptor(
        mt.OCI_MANIFEST,
        doc.descriptor.digest,
        doc.descriptor.size,
        annotations={
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": str(of.descriptor.digest),
        },
        platform=Platform("unknown", "unknown"),
    )
    return entry, doc


def referred(platform: str, *, with_subject: bool = False, count: int = 1, **kwargs: object) -> Child:
    """A child of ``platform`` with ``count`` attestations, with or without a ``subject``."""
    base = child(platform, **kwargs)
    subject = base.manifest.descriptor if with_subject else None
    attestations = []
    for n in range(count):
        entry, doc = provenance(base.manifest, subject=subject)
        # distinct attestations of one image: another layer digest each
        value = attrs.evolve(
            doc.value, layers=(Descriptor(mt.OCI_LAYER_GZIP, Digest.of(f"{platform}{n}".encode()), 9),)
        )
        doc = Document.author(value)
        attestations.append((attrs.evolve(entry, digest=doc.descriptor.digest, size=doc.descriptor.size), doc))
    return Child(base.source, base.manifest, base.platform, attestations=tuple(attestations))


REFERRERS = AttestationPolicy.REFERRERS


def test_referrer_with_subject_is_unchanged() -> None:
    c = referred("linux/amd64", with_subject=True)
    ((_, original),) = c.attestations
    result = assemble([c], attestations=REFERRERS)
    (referrer,) = result.referrers
    assert referrer.raw == original.raw
    assert referrer.descriptor.digest == original.descriptor.digest
    assert result.notes == ()


def test_referrer_without_subject_is_rewritten_with_the_image_descriptor() -> None:
    c = referred("linux/amd64")
    ((_, original),) = c.attestations
    result = assemble([c], attestations=REFERRERS)
    (referrer,) = result.referrers
    image = result.manifests[0].descriptor
    assert json.loads(referrer.raw)["subject"] == {
        "mediaType": image.media_type,
        "digest": str(image.digest),
        "size": image.size,
    }
    assert referrer.descriptor.digest == Digest.of(referrer.raw) != original.descriptor.digest
    assert referrer.descriptor.size == len(referrer.raw)
    # nothing but the subject changed
    # [ATTEST-4] every other field kept; it gains BuildKit's attestation artifact type
    assert referrer.value.artifact_type == "application/vnd.docker.attestation.manifest.v1+json"
    assert attrs.evolve(referrer.value, subject=None, artifact_type=None) == original.value
    (note,) = result.notes
    assert original.descriptor.digest.short in note
    assert referrer.descriptor.digest.short in note


def test_referrers_leave_only_platform_entries_in_the_index() -> None:
    result = assemble(
        [referred("linux/amd64", count=2), referred("linux/arm64", with_subject=True)], attestations=REFERRERS
    )
    entries = json.loads(result.index.raw)["manifests"]
    assert [e["platform"]["architecture"] for e in entries] == ["amd64", "arm64"]
    assert all("annotations" not in e for e in entries)
    assert result.attestations == ()
    assert len(result.referrers) == 3
    listed = [e["digest"] for e in entries]
    assert [str(r.value.subject.digest) for r in result.referrers if r.value.subject] == [listed[0]] * 2 + [listed[1]]


def test_referrers_allow_a_docker_list() -> None:
    children = [referred("linux/amd64", docker=True), referred("linux/arm64", docker=True, with_subject=True)]
    auto = assemble(children, attestations=REFERRERS)
    assert auto.index.descriptor.media_type == mt.DOCKER_MANIFEST_LIST
    assert [m.raw for m in auto.manifests] == [c.manifest.raw for c in children]  # Docker children as they were
    assert len(auto.referrers) == 2
    assert all(r.value.media_type == mt.OCI_MANIFEST for r in auto.referrers)
    forced = assemble(children, format=IndexFormat.DOCKER, attestations=REFERRERS)
    assert forced.index.raw == auto.index.raw
    assert [r.raw for r in forced.referrers] == [r.raw for r in auto.referrers]


def test_referrers_of_a_converted_image_are_dropped_with_a_note() -> None:
    c = referred("linux/amd64", with_subject=True)
    ((entry, _),) = c.attestations
    result = assemble([c], format=IndexFormat.DOCKER, attestations=REFERRERS)
    assert result.manifests[0].descriptor.digest != c.manifest.descriptor.digest
    assert result.referrers == ()
    assert result.notes == (
        f"dropped attestation {entry.digest.short} of {c.source}: its image manifest was rewritten",
    )


def test_referrer_whose_subject_names_another_image_is_dropped_with_a_note() -> None:
    base = child("linux/amd64")
    other = child("linux/arm64").manifest.descriptor
    entry, doc = provenance(base.manifest, subject=other)
    result = assemble([Child(base.source, base.manifest, base.platform, ((entry, doc),))], attestations=REFERRERS)
    assert result.referrers == ()
    (note,) = result.notes
    assert note.startswith(f"dropped attestation {entry.digest.short}")
    assert other.digest.short in note


def test_docker_attestation_manifest_is_dropped_with_a_note() -> None:
    base = child("linux/amd64")
    doc = manifest("att", docker=True)
    entry = Descriptor(
        doc.descriptor.media_type,
        doc.descriptor.digest,
        doc.descriptor.size,
        annotations={"vnd.docker.reference.digest": str(base.manifest.descriptor.digest)},
    )
    result = assemble([Child(base.source, base.manifest, base.platform, ((entry, doc),))], attestations=REFERRERS)
    assert result.referrers == ()
    assert "cannot carry a subject" in result.notes[0]


@given(
    st.lists(st.sampled_from(PLATFORMS), min_size=1, max_size=5, unique=True).flatmap(
        lambda ps: st.tuples(st.just(ps), st.permutations(ps))
    ),
    st.booleans(),
)
def test_referrers_do_not_depend_on_input_order(platforms: tuple[list[str], list[str]], with_subject: bool) -> None:
    given_order, shuffled_order = platforms

    def build(order: list[str]) -> list[Child]:
        out = []
        for p in order:
            c = referred(p, with_subject=with_subject, count=3)
            # attestations of one image in reverse too: their order must not matter either
            out.append(
                attrs.evolve(c, attestations=c.attestations[::-1] if order is shuffled_order else c.attestations)
            )
        return out

    reference = assemble(build(given_order), attestations=REFERRERS)
    shuffled = assemble(build(shuffled_order), attestations=REFERRERS)
    assert shuffled.index.raw == reference.index.raw
    assert [r.raw for r in shuffled.referrers] == [r.raw for r in reference.referrers]
    assert shuffled.notes == reference.notes
    # image order of the index, then attestation digest (the original one, as listed by BuildKit)
    listed = [e.digest for e in reference.index.value.manifests]
    subjects = [r.value.subject.digest for r in reference.referrers if r.value.subject]
    assert subjects == [d for d in listed for _ in range(3)]


# [INDEX-7] labels onto the index, entry annotations kept, given annotations winning
OCI_LABELS = {"org.opencontainers.image.source": "https://example.com/src", "org.opencontainers.image.licenses": "MIT"}


def test_labels_shared_by_every_child_reach_the_index() -> None:
    a = attrs.evolve(child("linux/amd64"), labels={**OCI_LABELS, "maintainer": "x"})
    b = attrs.evolve(child("linux/arm64"), labels={**OCI_LABELS, "org.opencontainers.image.licenses": "GPL-2.0"})
    c = attrs.evolve(child("linux/s390x"), labels={})
    assert assemble([a, b], annotations_from_labels=True).index.value.annotations == (
        ("org.opencontainers.image.source", "https://example.com/src"),
    )
    assert assemble([a, b, c], annotations_from_labels=True).index.value.annotations == ()
    assert assemble([a, b]).index.value.annotations == ()  # only when asked
    given = assemble(
        [a, b], annotations_from_labels=True, annotations=[Annotation.parse("org.opencontainers.image.source=mine")]
    )
    assert dict(given.index.value.annotations) == {"org.opencontainers.image.source": "mine"}


def test_entry_annotations_are_kept_and_given_ones_win() -> None:
    a = attrs.evolve(child("linux/amd64"), entry_annotations={"org.a": "source", "org.b": "source"})
    result = assemble([a, child("linux/arm64")], annotations=[Annotation.parse("manifest-descriptor:org.b=given")])
    entries = [dict(e.annotations) for e in result.index.value.manifests]
    assert entries == [{"org.a": "source", "org.b": "given"}, {"org.b": "given"}]


def test_entry_annotations_keep_auto_oci_and_are_dropped_from_a_forced_docker_list() -> None:
    a = attrs.evolve(child("linux/amd64", docker=True), entry_annotations={"org.a": "1"})
    assert assemble([a]).index.value.media_type == mt.OCI_INDEX
    forced = assemble([a], format=IndexFormat.DOCKER)
    assert forced.index.value.media_type == mt.DOCKER_MANIFEST_LIST
    assert forced.index.value.manifests[0].annotations == ()
    assert forced.notes == ("dropped the source indexes' entry annotations: a Docker manifest list cannot carry them",)
    labelled = attrs.evolve(a, labels=OCI_LABELS)
    with pytest.raises(ConversionError, match="drop --annotations-from-labels"):
        assemble([labelled], format=IndexFormat.DOCKER, annotations_from_labels=True)
    assert (
        assemble([attrs.evolve(labelled, entry_annotations={})], annotations_from_labels=True).index.value.media_type
        == mt.OCI_INDEX
    )


# [INDEX-8] compression variants: one image in gzip and in zstd is two entries, gzip first
def variant(platform: str, layer_type: str, *, config: str = "shared", layers: int = 1, salt: str = "") -> Child:
    value = ImageManifest(
        config=Descriptor(mt.OCI_CONFIG, Digest.of(config.encode()), 10),
        layers=tuple(
            Descriptor(layer_type, Digest.of(f"{layer_type}{platform}{i}{salt}".encode()), 20) for i in range(layers)
        ),
        media_type=mt.OCI_MANIFEST,
    )
    return Child(source=f"{platform}-{layer_type}", manifest=Document.author(value), platform=Platform.parse(platform))


@given(st.permutations(range(4)))
def test_compression_variants_are_kept_gzip_first_in_any_input_order(order: list[int]) -> None:
    children = [
        variant("linux/amd64", mt.OCI_LAYER_ZSTD),
        variant("linux/amd64", mt.OCI_LAYER_GZIP),
        variant("linux/arm64", mt.OCI_LAYER_GZIP, config="arm"),
        variant("linux/arm64", mt.OCI_LAYER_ZSTD, config="arm"),
    ]
    result = assemble([children[i] for i in order])
    entries = result.index.value.manifests
    assert [(str(e.platform), e.annotation("io.github.containers.compression.zstd")) for e in entries] == [
        ("linux/amd64", None),
        ("linux/amd64", "true"),
        ("linux/arm64", None),
        ("linux/arm64", "true"),
    ]
    assert entries[0].digest == children[1].manifest.descriptor.digest


@pytest.mark.parametrize(
    "other",
    [
        variant("linux/amd64", mt.OCI_LAYER_ZSTD, config="different"),  # another image
        variant("linux/amd64", mt.OCI_LAYER_ZSTD, layers=2),  # not the same layers
        variant("linux/amd64", mt.OCI_LAYER_GZIP, salt="level 9"),  # compressed the same way
    ],
)
def test_not_compression_variants_still_conflict(other: Child) -> None:
    gzip = variant("linux/amd64", mt.OCI_LAYER_GZIP)
    with pytest.raises(PlatformConflictError, match="give one image per platform"):
        assemble([gzip, other])


def test_a_lone_zstd_image_is_not_annotated_and_given_annotations_win() -> None:
    lone = assemble([variant("linux/amd64", mt.OCI_LAYER_ZSTD)])
    assert lone.index.value.manifests[0].annotations == ()
    pair = [variant("linux/amd64", mt.OCI_LAYER_ZSTD), variant("linux/amd64", mt.OCI_LAYER_GZIP)]
    given = assemble(
        pair, annotations=[Annotation.parse("manifest-descriptor:io.github.containers.compression.zstd=no")]
    )
    assert [e.annotation("io.github.containers.compression.zstd") for e in given.index.value.manifests] == ["no", "no"]
