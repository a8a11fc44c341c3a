"""Referrers carried by the sinks, byte for byte, after their subjects ([CARRY-1] .. [CARRY-6]).

Publications are built here by hand (an image loaded from a layout, ``Referrer`` values added
with ``attrs.evolve``), so the tests do not depend on how sources discover referrers. Each
registry test runs on Distribution 2.8, which has no referrers API and answers no
``OCI-Subject`` (the fallback tag is kept), and on :class:`ocimerge.testing.Registry`, which
has the API (no fallback tag is written); what they hold is read back over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from imagebuilder import Image, descriptor, dumps, oci_layout
from ocimerge.content import FOUND_BY_COSIGN, FOUND_IN_LAYOUT, Blob, Referrer
from ocimerge.model import mediatype as mt
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageManifest, decode_manifest
from ocimerge.model.reference import Reference
from ocimerge.model.referrers import cosign_tag, fallback_tag
from ocimerge.registry.api import Registry, RegistryPool
from ocimerge.sinks.core import Publication, unique_blobs
from ocimerge.sinks.oci_layout import LayoutSink
from ocimerge.sinks.registry import PushOptions, PushResult, RegistrySink
from ocimerge.sources import load, open_source, parse_source
from registries import RegistryServer

pytestmark = pytest.mark.registry_backends("distribution", "inprocess")
DISTRIBUTION_ONLY = pytest.mark.registry_backends(
    "distribution", reason="the fallback tag: the in-process registry has the referrers API"
)

SBOM = "application/spdx+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
ZERO = "0001-01-01T00:00:00Z"
WRITES = ("PUT", "POST", "PATCH", "DELETE")


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


# -- building publications ------------------------------------------------------------------------


@pytest.fixture
def image_publication(tmp_path: Path) -> Iterator[Publication]:
    """One image from an OCI layout directory, loaded by ocimerge.sources; open while the test runs."""
    path = oci_layout([Image(architecture="arm64")]).write_dir(str(tmp_path / "in"))
    spec = parse_source(f"oci:{path}")
    with open_source(spec) as source:
        yield Publication.of_image_set(load(spec, source))


def _blob(media_type: str, data: bytes) -> Blob:
    return Blob.from_bytes(Descriptor(media_type, Digest.of(data), len(data)), data, "test referrer blob")


def _document(raw: bytes) -> Document[ImageManifest]:
    by = Descriptor(mt.OCI_MANIFEST, Digest.of(raw), len(raw))
    return Document.reached(raw, decode_manifest(raw), by, where="test referrer")


def sbom_referrer(subject: Descriptor, payload: bytes = b'{"spdxVersion":"SPDX-2.3"}') -> Referrer:
    """An artifact manifest naming ``subject``: the empty config, one SPDX layer."""
    raw = dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "artifactType": SBOM,
            "config": descriptor(mt.OCI_EMPTY, b"{}"),
            "layers": [descriptor(SBOM, payload)],
            "subject": subject.to_json(),
            "annotations": {"org.opencontainers.image.created": "2026-12-03T00:00:00Z"},
        }
    )
    return Referrer(subject.digest, _document(raw), (_blob(mt.OCI_EMPTY, b"{}"), _blob(SBOM, payload)))


def signature_referrer(subject: Digest, payload: bytes = b'{"critical":{"image":"one"}}') -> Referrer:
    """A cosign signature image (no subject) under ``sha256-<hex>.sig``, as cosign writes it."""
    config = dumps(
        {
            "architecture": "",
            "created": ZERO,
            "history": [{"created": ZERO}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [str(Digest.of(payload))]},
            "config": {},
        }
    )
    layer = descriptor(SIMPLESIGNING, payload, annotations={SIGNATURE_ANNOTATION: f"MEUC-{len(payload)}"})
    raw = dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": descriptor(mt.OCI_CONFIG, config),
            "layers": [layer],
        }
    )
    blobs = (_blob(mt.OCI_CONFIG, config), _blob(SIMPLESIGNING, payload))
    return Referrer(subject, _document(raw), blobs, FOUND_BY_COSIGN, cosign_tag(subject, "sig"))


def with_referrers(publication: Publication, *referrers: Referrer) -> Publication:
    blobs = [*publication.blobs, *(b for r in referrers for b in r.blobs)]
    return attrs.evolve(publication, referrers=referrers, blobs=tuple(unique_blobs(blobs)))


# -- pushing and looking --------------------------------------------------------------------------


def push(server: RegistryServer, publication: Publication, repo: str, *, dry_run: bool = False) -> PushResult:
    with RegistryPool() as pool:
        sink = RegistrySink(
            (Reference.parse(f"{server.host}/{repo}:1"),), pool, PushOptions(dry_run=dry_run, journal=None)
        )
        [outcome] = sink.publish(publication)
    assert isinstance(outcome, PushResult), outcome
    return outcome


def get(server: RegistryServer, path: str) -> httpx.Response:
    accept = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST])
    return httpx.get(f"http://{server.host}{path}", headers={"Accept": accept}, timeout=30)


def listed(server: RegistryServer, repo: str, subject: Digest) -> list[dict[str, Any]]:
    """What lists the referrers of ``subject``: the fallback tag on Distribution, else the API,
    checking on the way that only the expected one of the two exists."""
    tag = get(server, f"/v2/{repo}/manifests/{fallback_tag(subject)}")
    if server.is_distribution:
        assert tag.status_code == 200, tag.text
        assert tag.headers["content-type"] == mt.OCI_INDEX
        index = tag.json()
    else:
        assert tag.status_code == 404, "a registry answering OCI-Subject gets no fallback tag"
        api = get(server, f"/v2/{repo}/referrers/{subject}")
        assert api.status_code == 200, api.text
        index = api.json()
    assert index["mediaType"] == mt.OCI_INDEX
    manifests: list[dict[str, Any]] = index["manifests"]
    return manifests


def writes(server: RegistryServer, since: int) -> list[tuple[str, str, int]]:
    return [r for r in server.requests()[since:] if r[0] in WRITES]


def manifest_writes(server: RegistryServer, since: int) -> list[str]:
    return [path for method, path, _ in server.requests()[since:] if method == "PUT" and "/manifests/" in path]


def _position(paths: Sequence[str], suffix: str) -> int:
    found = [i for i, path in enumerate(paths) if path.endswith(suffix)]
    assert len(found) == 1, (suffix, paths)
    return found[0]


# -- registries -----------------------------------------------------------------------------------


def test_an_sbom_is_listed_by_the_api_or_the_fallback_tag(
    registry: RegistryServer, image_publication: Publication
) -> None:
    """[CARRY-1][CARRY-2] Pushed by digest, exact bytes; listed with its artifactType by the
    fallback tag (Distribution) or the API (OCI-Subject answered: no fallback tag); a second
    referrer pushed later keeps the first listed."""
    repo = unique("carry/sbom")
    subject = image_publication.root.descriptor
    sbom = sbom_referrer(subject)
    result = push(registry, with_referrers(image_publication, sbom), repo)
    assert (result.referrers_pushed, result.to_json()["referrers"], result.notes) == (1, 1, ())
    stored = get(registry, f"/v2/{repo}/manifests/{sbom.digest}")
    assert stored.status_code == 200
    assert stored.content == sbom.document.raw
    [entry] = listed(registry, repo, subject.digest)
    assert (entry["digest"], entry["artifactType"], entry["size"]) == (str(sbom.digest), SBOM, len(sbom.document.raw))
    assert entry["annotations"] == {"org.opencontainers.image.created": "2026-12-03T00:00:00Z"}

    second = sbom_referrer(subject, b'{"spdxVersion":"SPDX-2.3","name":"two"}')
    again = push(registry, with_referrers(image_publication, second), repo)
    assert again.referrers_pushed == 1
    both = [e["digest"] for e in listed(registry, repo, subject.digest)]
    if not registry.is_distribution:  # the API lists in an order of its own
        both.sort(key=[str(sbom.digest), str(second.digest)].index)
    assert both == [str(sbom.digest), str(second.digest)]


def test_a_referrer_whose_subject_is_nowhere_is_pushed_all_the_same(
    registry: RegistryServer, image_publication: Publication
) -> None:
    """[CARRY-1] A subject neither in the publication nor in the repository: no special case."""
    repo = unique("carry/orphan")
    elsewhere = Descriptor(mt.OCI_MANIFEST, Digest.of(b"a manifest pushed nowhere"), 25)
    orphan = sbom_referrer(elsewhere)
    result = push(registry, with_referrers(image_publication, orphan), repo)
    assert result.referrers_pushed == 1
    assert get(registry, f"/v2/{repo}/manifests/{orphan.digest}").content == orphan.document.raw
    assert [e["digest"] for e in listed(registry, repo, elsewhere.digest)] == [str(orphan.digest)]


def test_referrers_go_after_the_root_and_before_the_tag(
    registry: RegistryServer, image_publication: Publication
) -> None:
    """[CARRY-1][CARRY-3] Root by digest, then the SBOM (and its fallback tag), the signature and
    its cosign tag, and only then the image's tag; the cosign tag holds the signature's bytes."""
    repo = unique("carry/order")
    root = image_publication.root.descriptor
    sbom, signature = sbom_referrer(root), signature_referrer(root.digest)
    before = len(registry.requests())
    result = push(registry, with_referrers(image_publication, sbom, signature), repo)
    assert result.referrers_pushed == 2
    paths = manifest_writes(registry, before)
    at_root = _position(paths, f"/manifests/{root.digest}")
    at_sbom = _position(paths, f"/manifests/{sbom.digest}")
    at_signature = _position(paths, f"/manifests/{signature.digest}")
    at_cosign_tag = _position(paths, f"/manifests/{signature.tag}")
    at_tag = _position(paths, "/manifests/1")
    assert at_root < at_sbom < at_signature < at_cosign_tag < at_tag, paths
    if registry.is_distribution:
        assert at_sbom < _position(paths, f"/manifests/{fallback_tag(root.digest)}") < at_signature
    else:
        assert not any(p.endswith(fallback_tag(root.digest)) for p in paths)
    tagged = get(registry, f"/v2/{repo}/manifests/{signature.tag}")
    assert tagged.content == signature.document.raw
    assert tagged.headers["docker-content-digest"] == str(signature.digest)


def test_a_second_identical_push_writes_no_manifest(registry: RegistryServer, image_publication: Publication) -> None:
    """[CARRY-5] Everything there: no blob, no referrer, no fallback index, no tag written."""
    repo = unique("carry/again")
    root = image_publication.root.descriptor
    publication = with_referrers(image_publication, sbom_referrer(root), signature_referrer(root.digest))
    push(registry, publication, repo)
    before = len(registry.requests())
    again = push(registry, publication, repo)
    assert writes(registry, before) == []
    assert (again.referrers_pushed, again.notes) == (0, ())


def test_a_signature_is_merged_into_those_under_the_cosign_tag(
    registry: RegistryServer, image_publication: Publication
) -> None:
    """[CARRY-4][CARRY-5] Another signature under the tag: a new manifest with both layers, its
    config's diff_ids and history extended, noted; pushed again, nothing is written."""
    repo = unique("carry/merge")
    root = image_publication.root.descriptor
    first = signature_referrer(root.digest, b'{"critical":{"by":"ci"}}')
    push(registry, with_referrers(image_publication, first), repo)
    ours = signature_referrer(root.digest, b'{"critical":{"by":"release"}}')
    result = push(registry, with_referrers(image_publication, ours), repo)
    assert result.referrers_pushed == 1
    assert result.notes == (f"merged 1 signature into the 1 already under {ours.tag}",)
    assert get(registry, f"/v2/{repo}/manifests/{ours.digest}").content == ours.document.raw
    merged = get(registry, f"/v2/{repo}/manifests/{ours.tag}").json()
    layers = [(d["digest"], d["annotations"][SIGNATURE_ANNOTATION]) for d in merged["layers"]]
    expected = [(d.digest, d.annotation(SIGNATURE_ANNOTATION)) for r in (first, ours) for d in r.document.value.layers]
    assert layers == [(str(digest), value) for digest, value in expected]
    config = get(registry, f"/v2/{repo}/blobs/{merged['config']['digest']}")
    assert config.status_code == 200
    assert json.loads(config.content)["rootfs"]["diff_ids"] == [d for d, _ in layers]
    assert json.loads(config.content)["history"] == [{"created": ZERO}, {"created": ZERO}]
    assert Digest.of(config.content) == Digest.parse(merged["config"]["digest"])

    before = len(registry.requests())
    again = push(registry, with_referrers(image_publication, ours), repo)
    assert (again.notes, writes(registry, before)) == ((), [])


def test_a_dry_run_writes_nothing_and_counts_what_it_would_push(
    registry: RegistryServer, image_publication: Publication
) -> None:
    """[CARRY-1] dry run: no write at all; both referrers counted."""
    repo = unique("carry/dry")
    root = image_publication.root.descriptor
    before = len(registry.requests())
    result = push(
        registry,
        with_referrers(image_publication, sbom_referrer(root), signature_referrer(root.digest)),
        repo,
        dry_run=True,
    )
    assert (result.dry_run, result.referrers_pushed) == (True, 2)
    assert writes(registry, before) == []


@DISTRIBUTION_ONLY
def test_a_fallback_tag_holding_no_index_is_a_note(registry: RegistryServer, image_publication: Publication) -> None:
    """[CARRY-2] The image itself under its fallback tag (as GitLab is reported to answer): left
    as it is, noted; the SBOM is stored by digest and the image tagged."""
    repo = unique("carry/gitlab")
    root = image_publication.root
    push(registry, image_publication, repo)
    put = httpx.put(
        f"http://{registry.host}/v2/{repo}/manifests/{fallback_tag(root.descriptor.digest)}",
        content=root.raw,
        headers={"Content-Type": root.descriptor.media_type},
        timeout=30,
    )
    assert put.status_code == 201, put.text
    sbom = sbom_referrer(root.descriptor)
    result = push(registry, with_referrers(image_publication, sbom), repo)
    [note] = result.notes
    assert "stored by digest but not listed" in note, note
    assert result.tags == ("1",)
    assert get(registry, f"/v2/{repo}/manifests/{sbom.digest}").content == sbom.document.raw
    assert get(registry, f"/v2/{repo}/manifests/{fallback_tag(root.descriptor.digest)}").content == root.raw


@DISTRIBUTION_ONLY
def test_a_rerun_adds_the_fallback_entry_an_interrupted_push_left_out(
    registry: RegistryServer, image_publication: Publication
) -> None:
    """[CARRY-5] The SBOM stored by digest, its fallback entry missing (interrupted): the next
    push puts no referrer but adds the entry, keeping the one already there."""
    repo = unique("carry/resume")
    subject = image_publication.root.descriptor
    listed_already = sbom_referrer(subject, b'{"spdxVersion":"SPDX-2.3","name":"first"}')
    push(registry, with_referrers(image_publication, listed_already), repo)
    sbom = sbom_referrer(subject)
    with Registry(registry.host) as client:  # as far as the interrupted push got: blobs and the manifest
        for blob in sbom.blobs:
            client.upload(repo, blob)
        client.manifest_put(Reference(client.host, repo, digest=sbom.digest), sbom.document)
    result = push(registry, with_referrers(image_publication, listed_already, sbom), repo)
    assert result.referrers_pushed == 0
    assert [e["digest"] for e in listed(registry, repo, subject.digest)] == [
        str(listed_already.digest),
        str(sbom.digest),
    ]


# -- layouts --------------------------------------------------------------------------------------


def test_a_layout_lists_the_referrers_after_the_root(tmp_path: Path, image_publication: Publication) -> None:
    """[CARRY-6] index.json: the root named latest, the SBOM unnamed with its artifactType, the
    signature under cosign's tag; every blob there; skopeo and ocimerge still read the root."""
    root = image_publication.root
    sbom, signature = sbom_referrer(root.descriptor), signature_referrer(root.descriptor.digest)
    out = tmp_path / "out"
    LayoutSink(str(out), archive=False).publish(with_referrers(image_publication, sbom, signature))
    entries = json.loads((out / "index.json").read_bytes())["manifests"]
    assert entries == [
        {
            "mediaType": root.descriptor.media_type,
            "digest": str(root.descriptor.digest),
            "size": root.descriptor.size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        },
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": str(sbom.digest),
            "size": sbom.document.descriptor.size,
            "artifactType": SBOM,
        },
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": str(signature.digest),
            "size": signature.document.descriptor.size,
            "annotations": {"org.opencontainers.image.ref.name": signature.tag},
        },
    ]
    for referrer in (sbom, signature):
        assert (out / "blobs" / "sha256" / referrer.digest.encoded).read_bytes() == referrer.document.raw
        for blob in referrer.blobs:
            assert Digest.of((out / "blobs" / "sha256" / blob.digest.encoded).read_bytes()) == blob.digest
    raw = subprocess.run(
        ["skopeo", "--insecure-policy", "inspect", "--raw", f"oci:{out}:latest"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert raw == root.raw
    spec = parse_source(f"oci:{out}:latest")
    with open_source(spec) as source:
        loaded = load(spec, source)
    assert loaded.root_document.raw == root.raw
    assert [i.digest for i in loaded.images] == [root.descriptor.digest]


def test_a_referrer_found_in_a_layout_keeps_no_stale_name(tmp_path: Path, image_publication: Publication) -> None:
    """[CARRY-6] Only media type, digest, size and artifactType of a referrer's document reach
    index.json; a referrer listed twice is listed once."""
    sbom = sbom_referrer(image_publication.root.descriptor)
    assert sbom.found == FOUND_IN_LAYOUT
    out = tmp_path / "twice"
    LayoutSink(str(out), archive=False, tag_name=None).publish(with_referrers(image_publication, sbom, sbom))
    entries = json.loads((out / "index.json").read_bytes())["manifests"]
    assert [set(e) for e in entries] == [
        {"mediaType", "digest", "size"},
        {"mediaType", "digest", "size", "artifactType"},
    ]
