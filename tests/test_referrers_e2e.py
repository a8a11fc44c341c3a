"""Issue 11 end to end: signatures, SBOMs and attestations carried through create, push,
inspect and verify, on both registry backends ([REFERRERS-9] .. [REFERRERS-12], [CARRY-*],
[SIGNED-*], [COSIGN-9], [ATTEST-4]).

The inputs are built here by hand (``imagebuilder`` images, ``signing`` signatures made with
``cryptography`` alone) and stored as the tools that make them store them: a signature as an
untagged top-level ``index.json`` entry (oras), or under cosign's tag name
(``sha256-<hex>.sig``). Every registry test runs on Distribution 2.8 (no referrers API: the
fallback tag ``sha256-<hex>`` holds the listing) and on :class:`ocimerge.testing.Registry`
(referrers API, ``OCI-Subject``); what the registry holds is read back over HTTP, not
through ocimerge.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

import ocimerge
from conftest import CORPUS
from imagebuilder import OCI_INDEX, OCI_MANIFEST, Image, Layout, descriptor, dumps, oci_layout, sha256
from ocimerge.errors import DocumentError, SignatureError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.cosign import parse_payload
from ocimerge.model.digest import Digest
from ocimerge.model.referrers import fallback_tag
from ocimerge.signatures import load_private_key, load_public_key
from ocimerge.sinks.registry import BlobAction
from ocimerge.sources.oci_layout import OciLayout
from ocimerge.sources.referrers import MAX_CANDIDATES
from registries import RegistryServer
from signing import SIGNATURE_ARTIFACT_TYPE, Artifact, signature_for, write_keys

pytestmark = pytest.mark.registry_backends("distribution", "inprocess")
DISTRIBUTION_ONLY = pytest.mark.registry_backends(
    "distribution", reason="a tag the client controls: the in-process registry answers the referrers API instead"
)

REF_NAME = "org.opencontainers.image.ref.name"
SBOM = "application/spdx+json"
ATTESTATION_ARTIFACT_TYPE = "application/vnd.docker.attestation.manifest.v1+json"
BUILDKIT = CORPUS / "actions-toolkit" / "oci-archive" / "hello-oci-multiplatform-gzip.tar"
WRITES = ("PUT", "POST", "PATCH", "DELETE")


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocimerge", *args], capture_output=True, text=True, check=False, timeout=300
    )


def one_line(stderr: str) -> str:
    """The one line a failing command printed (notes aside: none are expected here)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# -- building inputs ------------------------------------------------------------------------------


def cosign_tag_of(digest: str) -> str:
    return digest.replace(":", "-", 1) + ".sig"


def without_subject(artifact: Artifact) -> Artifact:
    """The artifact as cosign stores it under its tag: no ``subject``, no ``artifactType``."""
    manifest = json.loads(artifact["manifest"])
    del manifest["subject"], manifest["artifactType"]
    raw = dumps(manifest)
    return {"manifest": raw, "digest": sha256(raw), "blobs": artifact["blobs"]}


def add_entry(layout: Layout, artifact: Artifact, *, name: str | None = None, artifact_type: str | None = None) -> None:
    """Store ``artifact`` in ``layout`` and list it in ``index.json``: named ``name``, or
    untagged with its ``artifactType`` as oras-go's store lists what it is given."""
    layout.add_blobs(artifact["blobs"])
    layout.add_blob(artifact["manifest"])
    extra: dict[str, Any] = {}
    if artifact_type is not None:
        extra["artifactType"] = artifact_type
    if name is not None:
        extra["annotations"] = {REF_NAME: name}
    index = json.loads(layout.files["index.json"])
    index["manifests"].append(descriptor(OCI_MANIFEST, artifact["manifest"], **extra))
    layout.files["index.json"] = dumps(index)


def sign(image_digest: str, size: int, media_type: str, private_pem: bytes, *, cosign_tag: bool) -> Artifact:
    artifact = signature_for(image_digest, size, media_type, private_pem)
    return without_subject(artifact) if cosign_tag else artifact


def signed_layout(path: Path, image: Image, private_pem: bytes | None, *, cosign_tag: bool = False) -> Artifact | None:
    """A one-image OCI layout directory, the image named ``latest``, with its signature (when
    a key is given) stored beside it; returns the signature."""
    layout = oci_layout([image], shape="manifest", names={0: "latest"})
    signature = None
    if private_pem is not None:
        signature = sign(image.digest, len(image.manifest), image.media_type, private_pem, cosign_tag=cosign_tag)
        if cosign_tag:
            add_entry(layout, signature, name=cosign_tag_of(image.digest))
        else:
            add_entry(layout, signature, artifact_type=SIGNATURE_ARTIFACT_TYPE)
    layout.write_dir(str(path))
    return signature


def sbom_for(image: Image) -> Artifact:
    """An SPDX SBOM referrer of ``image``: the empty config, one SPDX layer."""
    payload = b'{"spdxVersion":"SPDX-2.3","name":"' + image.architecture.encode() + b'"}'
    raw = dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SBOM,
            "config": descriptor(mt.OCI_EMPTY, b"{}"),
            "layers": [descriptor(SBOM, payload)],
            "subject": {"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest)},
        }
    )
    return {"manifest": raw, "digest": sha256(raw), "blobs": {sha256(b"{}"): b"{}", sha256(payload): payload}}


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """Two key pairs, ``ecdsa`` (the signer) and ``ed25519`` (another signer)."""
    return {kind: write_keys(tmp_path, kind) for kind in ("ecdsa", "ed25519")}


# -- reading the registry -------------------------------------------------------------------------


def get(server: RegistryServer, path: str) -> httpx.Response:
    accept = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST])
    return httpx.get(f"http://{server.host}{path}", headers={"Accept": accept}, timeout=30)


def listed(server: RegistryServer, repo: str, subject: str) -> list[dict[str, Any]]:
    """The referrers the registry lists for ``subject``: the fallback tag's OCI index on
    Distribution, else the referrers API (and then no fallback tag was written)."""
    tag = get(server, f"/v2/{repo}/manifests/{fallback_tag(Digest.parse(subject))}")
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


def nothing_listed(server: RegistryServer, repo: str, subject: str) -> bool:
    """No referrer listed for ``subject``: no fallback tag, and an empty referrers API answer
    (or none at all, on Distribution)."""
    if get(server, f"/v2/{repo}/manifests/{fallback_tag(Digest.parse(subject))}").status_code != 404:
        return False
    api = get(server, f"/v2/{repo}/referrers/{subject}")
    return api.status_code == 404 or api.json()["manifests"] == []


def tags_of(server: RegistryServer, repo: str) -> list[str]:
    answer = get(server, f"/v2/{repo}/tags/list")
    if answer.status_code == 404:
        return []
    assert answer.status_code == 200, answer.text
    return sorted(answer.json().get("tags") or [])


def writes(server: RegistryServer, since: int) -> list[tuple[str, str, int]]:
    return [r for r in server.requests()[since:] if r[0] in WRITES]


def signatures_are_on(
    server: RegistryServer, repo: str, images: list[Image], signatures: list[Artifact], *, cosign: bool
) -> None:
    """Each image's signature is stored by digest, byte for byte, and findable: under cosign's
    tag, or listed (with its artifactType) by the referrers API or the fallback tag."""
    for image, signature in zip(images, signatures, strict=True):
        assert get(server, f"/v2/{repo}/manifests/{signature['digest']}").content == signature["manifest"]
        if cosign:
            tagged = get(server, f"/v2/{repo}/manifests/{cosign_tag_of(image.digest)}")
            assert tagged.status_code == 200
            assert tagged.headers["docker-content-digest"] == signature["digest"]
        else:
            [listing] = listed(server, repo, image.digest)
            assert (listing["digest"], listing["artifactType"]) == (signature["digest"], SIGNATURE_ARTIFACT_TYPE)


# -- 1. a child's signature survives the merge, an archive and a registry -----------------------


@pytest.mark.parametrize("stored", ["referrer", "cosign-tag"])
def test_child_signatures_travel_through_an_archive_and_a_registry(
    registry: RegistryServer, tmp_path: Path, keys: dict[str, tuple[Path, Path]], stored: str
) -> None:
    """[REFERRERS-10][CARRY-1..3][SIGNED-1] Each single-arch layout holds its image's signature
    (untagged with a subject, or under cosign's tag): create carries both into the archive,
    push puts them on the registry (listed by the API or the fallback tag, or under cosign's
    tag), and verify --key of the registry image passes; a copy registry to registry too."""
    private, public = keys["ecdsa"]
    cosign = stored == "cosign-tag"
    images = [Image(architecture="amd64"), Image(architecture="arm64")]
    signatures = []
    for image in images:
        signature = signed_layout(tmp_path / image.architecture, image, private.read_bytes(), cosign_tag=cosign)
        assert signature is not None
        signatures.append(signature)
    merged = tmp_path / "merged.tar"
    result = ocimerge.create([str(tmp_path / "amd64"), str(tmp_path / "arm64")], str(merged))
    expected = {(image.digest, s["digest"]) for image, s in zip(images, signatures, strict=True)}
    assert {(str(r.subject), str(r.digest)) for r in result.referrers} == expected

    [entry] = ocimerge.inspect(str(merged)).images
    assert entry.root is not None
    assert entry.root.digest == result.index.descriptor.digest
    found = {(str(r.subject), str(r.digest), r.found, r.tag) for r in entry.referrers}
    if cosign:
        assert found == {(i, s, "cosign tag", cosign_tag_of(i)) for i, s in expected}
    else:
        assert found == {(i, s, "layout", None) for i, s in expected}

    repo = unique("e2e/app")
    pushed = cli("push", "-q", str(merged), f"{registry.host}/{repo}:1")
    assert pushed.returncode == 0, pushed.stderr
    signatures_are_on(registry, repo, images, signatures, cosign=cosign)

    verified = cli("verify", "--key", str(public), f"docker://{registry.host}/{repo}:1")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # the check has teeth: another key's verify of the same image fails, naming each platform
    other = cli("verify", "--key", str(keys["ed25519"][1]), f"docker://{registry.host}/{repo}:1")
    assert other.returncode == 3, other.stdout + other.stderr
    assert "linux/amd64" in other.stdout
    assert "linux/arm64" in other.stdout

    copy = unique("e2e/copy")
    copied = ocimerge.push(f"docker://{registry.host}/{repo}:1", [f"{registry.host}/{copy}:1"])
    [copied_result] = copied.pushed
    assert copied_result.count(BlobAction.MOUNT) > 0
    assert copied_result.count(BlobAction.UPLOAD) == 0
    assert {str(r.digest) for r in copied.referrers} == {s["digest"] for s in signatures}
    signatures_are_on(registry, copy, images, signatures, cosign=cosign)
    report = ocimerge.verify(f"docker://{registry.host}/{copy}:1", key=load_public_key(str(public)))
    assert report.ok, report.problems
    assert {(s.label, s.ok) for s in report.signatures} == {
        ("index", False),
        ("linux/amd64", True),
        ("linux/arm64", True),
    }


def test_create_pushes_the_child_signatures_straight_to_the_registry(
    registry: RegistryServer, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """[REFERRERS-10][CARRY-1] create -t, no archive between: the same signatures, listed the
    same way, and verify --key of the pushed image passes."""
    private, public = keys["ecdsa"]
    images = [Image(architecture="amd64"), Image(architecture="arm64")]
    signatures = [signed_layout(tmp_path / i.architecture, i, private.read_bytes()) for i in images]
    repo = unique("e2e/direct")
    run = cli("create", "-q", "-t", f"{registry.host}/{repo}:1", *(str(tmp_path / i.architecture) for i in images))
    assert run.returncode == 0, run.stderr
    signatures_are_on(registry, repo, images, [s for s in signatures if s is not None], cosign=False)
    verified = cli("verify", "--key", str(public), f"docker://{registry.host}/{repo}:1")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_children_rewritten_for_a_docker_list_leave_their_signatures_behind(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """[REFERRERS-10] --format docker converts the children: their signatures name digests the
    output no longer holds, so none travels, and a note names each one left behind."""
    private, public = keys["ecdsa"]
    images, sources = two_layouts(tmp_path, private.read_bytes())
    out = tmp_path / "docker.tar"
    result = ocimerge.create(sources, str(out), format=ocimerge.IndexFormat.DOCKER)
    assert result.index.descriptor.media_type == mt.DOCKER_MANIFEST_LIST
    assert {str(m.descriptor.digest) for m in result.assembly.manifests}.isdisjoint({i.digest for i in images})
    assert result.referrers == ()
    left = [n for n in result.notes if "left behind 1 referrer(s)" in n]
    assert len(left) == 2
    assert not ocimerge.verify(str(out), key=load_public_key(str(public))).ok


# -- 2. the merged index is a new digest: unsigned until --sign-key signs it --------------------


def two_layouts(tmp_path: Path, private_pem: bytes | None = None) -> tuple[list[Image], list[str]]:
    """amd64 and arm64 layout directories (each image signed when a key is given)."""
    images = [Image(architecture="amd64"), Image(architecture="arm64")]
    for image in images:
        signed_layout(tmp_path / image.architecture, image, private_pem)
    return images, [str(tmp_path / image.architecture) for image in images]


def test_the_merged_index_is_not_signed_by_its_childrens_signatures(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """[SIGNED-1][REFERRERS-12] The children's signatures name the children: verify --key
    reports the index unsigned, each child signed, and passes."""
    private, public = keys["ecdsa"]
    images, sources = two_layouts(tmp_path, private.read_bytes())
    merged = tmp_path / "merged.tar"
    result = ocimerge.create(sources, str(merged))
    report = ocimerge.verify(str(merged), key=load_public_key(str(public)))
    assert report.ok, report.problems
    checked = {s.label: s for s in report.signatures}
    assert set(checked) == {"index", "linux/amd64", "linux/arm64"}
    index = checked["index"]
    assert (index.digest, index.ok, index.check.valid) == (result.index.descriptor.digest, False, ())
    for image in images:
        child = checked[f"linux/{image.architecture}"]
        assert str(child.digest) == image.digest
        assert child.check.ok
        assert child.through is None
    run = cli("verify", "--key", str(public), str(merged))
    assert run.returncode == 0, run.stdout + run.stderr


def signature_of(result: ocimerge.CreateResult) -> ocimerge.Referrer:
    """The one signature ``create --sign-key`` made: of the merged index, under cosign's tag."""
    index = str(result.index.descriptor.digest)
    [signature] = [r for r in result.referrers if r.tag == cosign_tag_of(index)]
    assert str(signature.subject) == index
    return signature


def test_sign_key_signs_the_merged_index_once_however_often_it_runs(
    registry: RegistryServer, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """[COSIGN-9][CARRY-3][CARRY-6] create --sign-key: a cosign signature whose payload names
    the new index digest, under cosign's tag in the output layout and on the registry, listed
    as the index's referrer; signing again (same key, same inputs) makes the same signature
    and lists nothing twice; verify --key passes through the index's signature."""
    private, public = keys["ecdsa"]
    _, sources = two_layouts(tmp_path)  # the children unsigned: only the index signature counts
    repo = unique("e2e/signed")
    target = f"{registry.host}/{repo}:1"
    out = tmp_path / "out"
    result = ocimerge.create(sources, str(out), tags=[target], sign_key=load_private_key(str(private), None))
    index = str(result.index.descriptor.digest)
    signature = signature_of(result)
    [payload] = signature.document.value.layers
    raw = (out / "blobs" / "sha256" / payload.digest.encoded).read_bytes()
    assert str(parse_payload(raw, "payload").digest) == index
    entries = json.loads((out / "index.json").read_bytes())["manifests"]
    named = [e for e in entries if e.get("annotations", {}).get(REF_NAME) == cosign_tag_of(index)]
    assert [e["digest"] for e in named] == [str(signature.digest)]

    tagged = get(registry, f"/v2/{repo}/manifests/{cosign_tag_of(index)}")
    assert (tagged.status_code, tagged.content) == (200, signature.document.raw)
    assert [e["digest"] for e in listed(registry, repo, index)] == [str(signature.digest)]

    # again, through the command line: the same signature, nothing listed twice, no tag rewritten
    before = len(registry.requests())
    again = cli(
        "create", "-q", "--json", "--sign-key", str(private), "-o", str(tmp_path / "again"), "-t", target, *sources
    )
    assert again.returncode == 0, again.stderr
    made = json.loads(again.stdout)
    assert made["digest"] == index
    assert [r["digest"] for r in made["referrers"]] == [str(signature.digest)]
    assert [e["digest"] for e in listed(registry, repo, index)] == [str(signature.digest)]
    assert [path for method, path, _ in writes(registry, before) if method == "PUT"] == []

    verified = cli("verify", "--key", str(public), f"docker://{target}")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = ocimerge.verify(f"docker://{target}", key=load_public_key(str(public)))
    assert {(s.label, s.check.ok, str(s.through) if s.through else None) for s in report.signatures} == {
        ("index", True, None),
        ("linux/amd64", False, index),
        ("linux/arm64", False, index),
    }


def test_two_keys_signing_one_index_both_verify(
    registry: RegistryServer, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """[CARRY-4] Signed by one key, then by another: cosign's tag ends up with both layers
    (merged, not replaced), and each key verifies the image; a third key does not."""
    repo = unique("e2e/twokeys")
    target = f"{registry.host}/{repo}:1"
    _, sources = two_layouts(tmp_path)
    made = []
    for kind in ("ecdsa", "ed25519"):
        private, _ = keys[kind]
        made.append(ocimerge.create(sources, tags=[target], sign_key=load_private_key(str(private), None)))
    index = str(made[0].index.descriptor.digest)
    assert str(made[1].index.descriptor.digest) == index
    first, second = (signature_of(m) for m in made)
    assert first.digest != second.digest
    tagged = get(registry, f"/v2/{repo}/manifests/{cosign_tag_of(index)}")
    merged = tagged.json()
    layers = [layer["annotations"]["dev.cosignproject.cosign/signature"] for layer in merged["layers"]]
    expected = [r.document.value.layers[0].annotation("dev.cosignproject.cosign/signature") for r in (first, second)]
    assert layers == expected
    expected_listed = {str(first.digest), str(second.digest)}
    if not registry.is_distribution:
        # the merged manifest keeps the first one's subject, and a registry with the API lists it
        # too; without the API only the referrers ocimerge put by digest reach the fallback tag
        expected_listed.add(tagged.headers["docker-content-digest"])
    assert {e["digest"] for e in listed(registry, repo, index)} == expected_listed
    for kind in ("ecdsa", "ed25519"):
        report = ocimerge.verify(f"docker://{target}", key=load_public_key(str(keys[kind][1])))
        assert report.ok, (kind, report.problems)
        [index_check] = [s for s in report.signatures if s.label == "index"]
        assert index_check.check.ok, kind
    _, stranger = write_keys(tmp_path, "ecdsa-p384")
    refused = cli("verify", "--key", str(stranger), f"docker://{target}")
    assert refused.returncode == 3, refused.stdout + refused.stderr


# -- 3. the signature of a source index --------------------------------------------------------------


def signed_index_source(tmp_path: Path, private_pem: bytes) -> tuple[Path, str, Artifact]:
    """A 2-platform index written by ocimerge, then signed as oras would store it: the index's
    layout directory, its digest, and the signature."""
    _, sources = two_layouts(tmp_path)
    path = tmp_path / "signed-index"
    index = ocimerge.create(sources, str(path)).index
    digest = str(index.descriptor.digest)
    signature = signature_for(digest, index.descriptor.size, index.descriptor.media_type, private_pem)
    for data in (*signature["blobs"].values(), signature["manifest"]):
        (path / "blobs" / "sha256" / sha256(data).split(":")[1]).write_bytes(data)
    listing = json.loads((path / "index.json").read_bytes())
    listing["manifests"].append(descriptor(OCI_MANIFEST, signature["manifest"], artifactType=SIGNATURE_ARTIFACT_TYPE))
    (path / "index.json").write_bytes(dumps(listing))
    return path, digest, signature


def test_a_source_index_signature_does_not_sign_the_new_index(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """[REFERRERS-12] Only linux/amd64 of a signed 2-platform index: a new index, so its
    signature is left behind with a note naming it and the digest to sign instead."""
    private, public = keys["ecdsa"]
    source, digest, signature = signed_index_source(tmp_path, private.read_bytes())
    out = tmp_path / "amd64-only.tar"
    result = ocimerge.create([str(source)], str(out), platforms=[ocimerge.Platform.parse("linux/amd64")])
    new = str(result.index.descriptor.digest)
    assert new != digest
    assert [str(i.platform) for i in result.images] == ["linux/amd64"]
    [note] = [n for n in result.notes if "sign the new index" in n]
    assert Digest.parse(signature["digest"]).short in note
    assert note.endswith(f"sign the new index {new}")
    assert result.referrers == ()
    assert ocimerge.inspect(str(out)).images[0].referrers == ()
    report = ocimerge.verify(str(out), key=load_public_key(str(public)))
    assert not report.ok
    [problem] = report.problems
    assert "linux/amd64" in problem


def test_an_index_given_back_unchanged_keeps_its_signature(tmp_path: Path, keys: dict[str, tuple[Path, Path]]) -> None:
    """[REFERRERS-12] One source, nothing changed: the very same index digest, so its signature
    still names it and travels; verify --key passes through it."""
    private, public = keys["ecdsa"]
    source, digest, signature = signed_index_source(tmp_path, private.read_bytes())
    out = tmp_path / "same.tar"
    result = ocimerge.create([str(source)], str(out))
    assert str(result.index.descriptor.digest) == digest
    assert [(str(r.subject), str(r.digest)) for r in result.referrers] == [(digest, signature["digest"])]
    assert not [n for n in result.notes if "sign the new index" in n]
    [entry] = ocimerge.inspect(str(out)).images
    assert [str(r.digest) for r in entry.referrers] == [signature["digest"]]
    report = ocimerge.verify(str(out), key=load_public_key(str(public)))
    assert report.ok, report.problems
    assert [str(s.through) for s in report.signatures if s.label != "index"] == [digest, digest]


# -- 4. BuildKit's attestations moved out of the index, as referrers ---------------------------------


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    binary = shutil.which("skopeo")
    if binary is None:
        pytest.fail("skopeo is not installed: run 'apt-get install skopeo' (make test does it as root)")
    result = subprocess.run([binary, "--insecure-policy", *args], capture_output=True, check=False, timeout=300)
    assert result.returncode == 0, f"skopeo {' '.join(args)} failed: {result.stderr!r}"
    return result


def test_buildkit_attestations_become_referrers_and_still_pull(registry: RegistryServer, tmp_path: Path) -> None:
    """[ATTEST-4][CARRY-1] --attestations referrers on BuildKit's multi-platform archive: the
    index lists the two images only; each attestation is re-authored with a subject naming its
    image and BuildKit's artifactType, noted with its old and new digest; pushed, the registry
    lists them (API or fallback tag) and ocimerge reads them back; skopeo pulls everything and
    reads the archive written."""
    with ocimerge.open_images(str(BUILDKIT)) as source:
        attested = {str(a.entry.digest): str(i.digest) for i in source.images for a in i.attestations}
    assert len(attested) == 2
    out = tmp_path / "out.tar"
    result = ocimerge.create([str(BUILDKIT)], str(out), attestations=ocimerge.AttestationPolicy.REFERRERS)
    index = json.loads(result.index.raw)
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
    ]
    assert {m["digest"] for m in index["manifests"]} == set(attested.values())
    moved = {str(r.subject): r for r in result.referrers}
    assert set(moved) == set(attested.values())
    for old, image in attested.items():
        referrer = moved[image]
        manifest = json.loads(referrer.document.raw)
        assert manifest["subject"]["digest"] == image
        assert manifest["artifactType"] == ATTESTATION_ARTIFACT_TYPE
        assert referrer.artifact_type == ATTESTATION_ARTIFACT_TYPE
        assert str(referrer.digest) != old
        [note] = [n for n in result.notes if Digest.parse(old).short in n]
        assert f"as referrer {referrer.digest.short} of {Digest.parse(image).short}" in note

    repo = unique("e2e/buildkit")
    target = f"{registry.host}/{repo}:1"
    [pushed] = ocimerge.push(str(out), [target]).pushed
    assert pushed.referrers_pushed == 2
    for image, referrer in moved.items():
        [entry] = listed(registry, repo, image)
        assert (entry["digest"], entry["artifactType"]) == (str(referrer.digest), ATTESTATION_ARTIFACT_TYPE)
        assert get(registry, f"/v2/{repo}/manifests/{referrer.digest}").content == referrer.document.raw
    [back] = ocimerge.inspect(f"docker://{target}").images
    assert back.root is not None
    assert back.root.digest == result.index.descriptor.digest
    how = "fallback tag" if registry.is_distribution else "referrers API"
    assert {(str(r.subject), str(r.digest), r.found) for r in back.referrers} == {
        (image, str(r.digest), how) for image, r in moved.items()
    }

    pulled = tmp_path / "pulled"
    skopeo("copy", "--all", "--preserve-digests", "--src-tls-verify=false", f"docker://{target}", f"oci:{pulled}:p")
    assert skopeo("inspect", "--raw", f"oci:{pulled}:p").stdout == result.index.raw
    for manifest in index["manifests"]:
        stored = (pulled / "blobs" / "sha256" / manifest["digest"].split(":")[1]).read_bytes()
        assert sha256(stored) == manifest["digest"]
        for layer in json.loads(stored)["layers"]:
            assert sha256((pulled / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes()) == layer["digest"]
    assert skopeo("inspect", "--raw", f"oci-archive:{out}:latest").stdout == result.index.raw


# -- 5. push --require-signature --key ---------------------------------------------------------------


def nothing_stored(server: RegistryServer, repo: str, image: Image, since: int) -> None:
    """Nothing of ``image`` reached ``repo``: no write at all since ``since``, no tag, no blob."""
    assert writes(server, since) == []
    assert tags_of(server, repo) == []
    for digest in image.blobs:
        assert httpx.head(f"http://{server.host}/v2/{repo}/blobs/{digest}", timeout=30).status_code == 404


@pytest.mark.parametrize("signer", [None, "ed25519"], ids=["unsigned", "another-key"])
def test_require_signature_refuses_before_uploading_anything(
    registry: RegistryServer, tmp_path: Path, keys: dict[str, tuple[Path, Path]], signer: str | None
) -> None:
    """[SIGNED-2] No signature, or one by another key: SignatureError naming the platform, the
    digest and the key file (exit 3 and one line from the CLI), and the registry holds nothing."""
    _, public = keys["ecdsa"]
    image = Image(architecture="arm64")
    signed_layout(tmp_path / "in", image, keys[signer][0].read_bytes() if signer else None)
    repo = unique("e2e/refused")
    before = len(registry.requests())
    with pytest.raises(SignatureError) as raised:
        ocimerge.push(
            str(tmp_path / "in"),
            [f"{registry.host}/{repo}:1"],
            require_signature=load_public_key(str(public)),
            key_name=str(public),
        )
    message = str(raised.value)
    assert f"linux/arm64 {image.digest} has no valid signature by {public}" in message
    assert "\n" not in message
    run = cli("push", "--require-signature", "--key", str(public), str(tmp_path / "in"), f"{registry.host}/{repo}:1")
    assert run.returncode == 3, run.stderr
    line = one_line(run.stderr)
    for part in ("linux/arm64", image.digest, str(public)):
        assert part in line, (part, line)
    nothing_stored(registry, repo, image, before)


def test_require_signature_passes_a_signed_image(
    registry: RegistryServer, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """[SIGNED-2] Signed by the key: pushed, tagged, its signature with it."""
    private, public = keys["ecdsa"]
    image = Image(architecture="arm64")
    signature = signed_layout(tmp_path / "in", image, private.read_bytes())
    assert signature is not None
    repo = unique("e2e/admitted")
    run = cli(
        "push", "-q", "--require-signature", "--key", str(public), str(tmp_path / "in"), f"{registry.host}/{repo}:1"
    )
    assert run.returncode == 0, run.stderr
    assert get(registry, f"/v2/{repo}/manifests/1").content == image.manifest
    assert [e["digest"] for e in listed(registry, repo, image.digest)] == [signature["digest"]]


def test_require_signature_with_referrers_type_still_finds_and_carries_the_signature(
    registry: RegistryServer, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """[SIGNED-2] --referrers-type SBOM with --require-signature: the signatures are looked for
    too (to be checked), so the push passes and carries the SBOM and the signature."""
    private, public = keys["ecdsa"]
    image = Image()
    signature, sbom = signed_with_sbom(tmp_path / "in", image, private.read_bytes())
    repo = unique("e2e/typed")
    result = ocimerge.push(
        str(tmp_path / "in"),
        [f"{registry.host}/{repo}:1"],
        referrer_types=[SBOM],
        require_signature=load_public_key(str(public)),
    )
    assert {str(r.digest) for r in result.referrers} == {signature["digest"], sbom["digest"]}
    assert {e["digest"] for e in listed(registry, repo, image.digest)} == {signature["digest"], sbom["digest"]}


def test_require_signature_with_referrers_none_is_a_usage_error(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """[SIGNED-2] The signatures are found with the referrers: asking for none is a usage error
    (exit 2), before any registry is asked (this target listens nowhere)."""
    private, public = keys["ecdsa"]
    signed_layout(tmp_path / "in", Image(), private.read_bytes())
    target = "127.0.0.1:9/e2e/none:1"
    run = cli("push", "--referrers", "none", "--require-signature", "--key", str(public), str(tmp_path / "in"), target)
    assert run.returncode == 2, run.stderr
    assert "--referrers none" in one_line(run.stderr)
    with pytest.raises(UsageError):
        ocimerge.push(str(tmp_path / "in"), [target], referrers=False, require_signature=load_public_key(str(public)))


# -- 6. what --referrers none and --referrers-type carry ------------------------------------------


def signed_with_sbom(path: Path, image: Image, private_pem: bytes) -> tuple[Artifact, Artifact]:
    """A layout of ``image`` with its signature and an SPDX SBOM beside it, both untagged."""
    layout = oci_layout([image], shape="manifest", names={0: "latest"})
    signature = signature_for(image.digest, len(image.manifest), image.media_type, private_pem)
    sbom = sbom_for(image)
    add_entry(layout, signature, artifact_type=SIGNATURE_ARTIFACT_TYPE)
    add_entry(layout, sbom, artifact_type=SBOM)
    layout.write_dir(str(path))
    return signature, sbom


def test_referrers_none_carries_nothing(
    registry: RegistryServer, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """[REFERRERS-10] --referrers none: the image and its tag, and no referrer, listing or cosign tag."""
    image = Image()
    signature, sbom = signed_with_sbom(tmp_path / "in", image, keys["ecdsa"][0].read_bytes())
    repo = unique("e2e/bare")
    run = cli("push", "-q", "--json", "--referrers", "none", str(tmp_path / "in"), f"{registry.host}/{repo}:1")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["referrers"] == []
    assert tags_of(registry, repo) == ["1"]
    assert nothing_listed(registry, repo, image.digest)
    for artifact in (signature, sbom):
        assert get(registry, f"/v2/{repo}/manifests/{artifact['digest']}").status_code == 404


def test_referrers_type_carries_only_that_type(
    registry: RegistryServer, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """[REFERRERS-8] --referrers-type application/spdx+json: the SBOM travels, the signature does not."""
    image = Image()
    signature, sbom = signed_with_sbom(tmp_path / "in", image, keys["ecdsa"][0].read_bytes())
    repo = unique("e2e/sbom")
    run = cli("push", "-q", "--referrers-type", SBOM, str(tmp_path / "in"), f"{registry.host}/{repo}:1")
    assert run.returncode == 0, run.stderr
    [entry] = listed(registry, repo, image.digest)
    assert (entry["digest"], entry["artifactType"]) == (sbom["digest"], SBOM)
    assert get(registry, f"/v2/{repo}/manifests/{sbom['digest']}").content == sbom["manifest"]
    assert get(registry, f"/v2/{repo}/manifests/{signature['digest']}").status_code == 404
    assert tags_of(registry, repo) == (
        ["1", fallback_tag(Digest.parse(image.digest))] if registry.is_distribution else ["1"]
    )


# -- 7. a re-run writes nothing ------------------------------------------------------------------------


def test_pushing_the_same_source_again_writes_no_manifest(
    registry: RegistryServer, tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """[CARRY-5] A merged archive with an untagged signature, a cosign-tagged one and an SBOM:
    the second identical push puts nothing (no manifest, tag, fallback index or blob)."""
    private = keys["ecdsa"][0].read_bytes()
    amd64, arm64 = Image(architecture="amd64"), Image(architecture="arm64")
    signed_with_sbom(tmp_path / "amd64", amd64, private)
    signed_layout(tmp_path / "arm64", arm64, private, cosign_tag=True)
    merged = tmp_path / "merged.tar"
    result = ocimerge.create([str(tmp_path / "amd64"), str(tmp_path / "arm64")], str(merged))
    assert len(result.referrers) == 3
    target = f"{registry.host}/{unique('e2e/rerun')}:1"
    [first] = ocimerge.push(str(merged), [target]).pushed
    assert first.referrers_pushed == 3
    before = len(registry.requests())
    [second] = ocimerge.push(str(merged), [target]).pushed
    assert second.referrers_pushed == 0
    assert [r for r in registry.requests()[before:] if r[0] == "PUT"] == []
    assert writes(registry, before) == []
    again = cli("push", "-q", str(merged), target)
    assert again.returncode == 0, again.stderr
    assert writes(registry, before) == []


# -- 8. hostile listings ---------------------------------------------------------------------------------


def sbom_naming(subject: str, n: int) -> bytes:
    """A tiny SBOM manifest (number ``n``) whose subject is ``subject``."""
    return dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SBOM,
            "config": descriptor(mt.OCI_EMPTY, b"{}"),
            "layers": [descriptor(mt.OCI_EMPTY, b"{}")],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": n + 1},
        }
    )


def fallback_index(manifests: list[bytes]) -> bytes:
    return dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_MANIFEST, m) for m in manifests]}
    )


def layout_with_fallback(image: Image, index: bytes, names: list[str], stored: list[bytes]) -> Layout:
    """A layout of ``image`` (named latest) and ``index`` listed in index.json under each of ``names``."""
    layout = oci_layout([image], shape="manifest", names={0: "latest"})
    layout.add_blob(b"{}")
    for data in stored:
        layout.add_blob(data)
    layout.add_blob(index)
    listing = json.loads(layout.files["index.json"])
    listing["manifests"] += [descriptor(OCI_INDEX, index, annotations={REF_NAME: name}) for name in names]
    layout.files["index.json"] = dumps(listing)
    return layout


@pytest.fixture
def document_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often each digest is read as a document from a layout (``OciLayout.document`` counted)."""
    counts: dict[str, int] = {}
    original = OciLayout.document

    def counted(self: OciLayout, descriptor: Any, where: str) -> bytes:
        counts[str(descriptor.digest)] = counts.get(str(descriptor.digest), 0) + 1
        return original(self, descriptor, where)

    monkeypatch.setattr(OciLayout, "document", counted)
    return counts


def test_a_fallback_index_listing_thousands_of_strangers_is_refused(
    tmp_path: Path, document_reads: dict[str, int]
) -> None:
    """[REFERRERS-9][SEC-2] The fallback tag of the image lists 5000 stored manifests, each naming
    another subject: refused with one line once the candidate bound is passed, not read 5000 times."""
    image = Image()
    stranger = sha256(b"another image")
    manifests = [sbom_naming(stranger, n) for n in range(5000)]
    path = tmp_path / "hostile"
    layout_with_fallback(
        image, fallback_index(manifests), [fallback_tag(Digest.parse(image.digest))], manifests
    ).write_dir(str(path))
    with pytest.raises(DocumentError, match="referrers listed; refusing them") as raised:
        ocimerge.create([str(path)], str(tmp_path / "out.tar"))
    assert "\n" not in str(raised.value)
    strangers_read = sum(document_reads.get(sha256(m), 0) for m in manifests)
    assert strangers_read <= MAX_CANDIDATES < len(manifests)
    assert max(document_reads.get(sha256(m), 0) for m in manifests) == 1
    run = cli("create", str(path), "-o", str(tmp_path / "cli.tar"))
    assert run.returncode == 3, run.stderr
    assert "refusing them" in one_line(run.stderr)
    assert not (tmp_path / "out.tar").exists()
    assert not (tmp_path / "cli.tar").exists()


@pytest.mark.parametrize("subjects", ["one", "many"], ids=["one-subject", "500-subjects"])
def test_one_fallback_index_under_500_names_is_read_once(
    tmp_path: Path, document_reads: dict[str, int], subjects: str
) -> None:
    """[REFERRERS-11][SEC-2] One ~100 KiB fallback index listed in index.json under 500 fallback
    names (after a name and a colon, or bare for 500 different subjects): read once, not 500
    times (50 MB); the layout still merges, its image alone."""
    image = Image()
    hexes = (
        [image.digest.split(":")[1]] * 500
        if subjects == "one"
        else [sha256(b"%d" % n).split(":")[1] for n in range(500)]
    )
    names = [f"n{n}:sha256-{h}" if subjects == "one" else f"sha256-{h}" for n, h in enumerate(hexes)]
    listed_only = [sbom_naming(sha256(b"elsewhere"), n) for n in range(680)]  # listed, not stored
    index = fallback_index(listed_only)
    assert 90 * 1024 < len(index) < 110 * 1024
    path = tmp_path / "fanout"
    layout_with_fallback(image, index, names, []).write_dir(str(path))
    # the 500 names of other subjects are orphans, entries of their own: the image is chosen by name
    result = ocimerge.create([f"{path}:latest"], str(tmp_path / "out.tar"))
    assert [str(i.digest) for i in result.images] == [image.digest]
    assert result.referrers == ()
    assert document_reads.get(sha256(index), 0) == 1


def test_a_listed_referrer_of_another_image_is_skipped_with_a_note(tmp_path: Path) -> None:
    """[REFERRERS-9] The image's fallback index lists a stored SBOM whose own subject is another
    image: only the referrer's bytes say what it refers to, so it is skipped, with a note, and
    does not travel."""
    image = Image()
    stranger = sha256(b"another image")
    sbom = sbom_naming(stranger, 0)
    path = tmp_path / "mislisted"
    layout_with_fallback(image, fallback_index([sbom]), [fallback_tag(Digest.parse(image.digest))], [sbom]).write_dir(
        str(path)
    )
    [entry] = ocimerge.inspect(str(path)).images
    assert entry.referrers == ()
    short = Digest.parse(sha256(sbom)).short
    [note] = [n for n in entry.notes if short in n]
    assert f"it names {Digest.parse(stranger).short} as its subject" in note
    result = ocimerge.create([str(path)], str(tmp_path / "out"))
    assert result.referrers == ()
    assert any(short in n for n in result.notes)
    out_entries = json.loads((tmp_path / "out" / "index.json").read_bytes())["manifests"]
    assert [e["digest"] for e in out_entries] == [str(result.index.descriptor.digest)]
    assert not (tmp_path / "out" / "blobs" / "sha256" / sha256(sbom).split(":")[1]).exists()


@DISTRIBUTION_ONLY
@pytest.mark.parametrize("shape", ["image", "index"])
def test_a_fallback_tag_holding_the_image_itself_is_ignored(
    registry: RegistryServer, tmp_path: Path, shape: str
) -> None:
    """[REFERRERS-5] GitLab is reported to answer the image for its fallback tag: PUT the image's
    own manifest (or index: its platform entries must not pass for referrers) under its fallback
    tag; inspect and verify of the registry image find no referrer and do not fail."""
    repo = unique("e2e/gitlab")
    target = f"{registry.host}/{repo}:1"
    images = (
        [Image(architecture="amd64")]
        if shape == "image"
        else [Image(architecture="amd64"), Image(architecture="arm64")]
    )
    sources = [oci_layout([i]).write_dir(str(tmp_path / i.architecture)) for i in images]
    if shape == "image":
        ocimerge.push(sources[0], [target])
        root, media_type = images[0].manifest, OCI_MANIFEST
    else:
        made = ocimerge.create(sources, tags=[target])
        root, media_type = made.index.raw, made.index.descriptor.media_type
    tag = fallback_tag(Digest.parse(sha256(root)))
    put = httpx.put(
        f"http://{registry.host}/v2/{repo}/manifests/{tag}",
        content=root,
        headers={"Content-Type": media_type},
        timeout=30,
    )
    assert put.status_code == 201, put.text
    assert tag in tags_of(registry, repo)
    [entry] = ocimerge.inspect(f"docker://{target}").images
    assert entry.referrers == ()
    assert entry.root_document.raw == root
    assert [str(i.digest) for i in entry.images] == [i.digest for i in images]
    run = cli("inspect", "--json", f"docker://{target}")
    assert run.returncode == 0, run.stderr
    [listed_entry] = json.loads(run.stdout)["entries"]
    assert listed_entry["referrers"] == []
    assert ocimerge.verify(f"docker://{target}").ok
