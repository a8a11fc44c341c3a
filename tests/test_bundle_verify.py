"""A bundle held to its lock, offline: ``verify(..., lock=)`` and ``inspect(..., lock=)`` [LOCK-6].

Bundles are built here directly (one OCI layout, one ``index.json`` entry per image, named by
its full reference under both ``org.opencontainers.image.ref.name`` and
``io.containerd.image.name``, signatures beside them), and locks from the built images'
digests with :mod:`ocimerge.model.lock`'s values: no registry is involved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from imagebuilder import OCI_INDEX, Image, Layout, attestation_for, descriptor, dumps, sha256, tar_bytes
from ocimerge.errors import UsageError
from ocimerge.inspection import Missing, inspect, verify
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.lock import Lock, LockedImage, LockedPlatform, filter_index
from ocimerge.model.manifest import Document, decode_index
from ocimerge.model.platform import Platform
from ocimerge.model.reference import Reference
from ocimerge.signatures import load_public_key
from signing import signature_for, write_keys

REDIS = "docker.io/library/redis:7"
NGINX = "docker.io/library/nginx:1.27"
APP = "ghcr.io/acme/app:1.4"


@dataclass
class Built:
    """One image of a bundle: its platform images and the index the bundle holds for it."""

    reference: str
    images: list[Image]
    index: bytes
    full: bytes  # the index the tag names (``index`` itself unless filtered)

    @property
    def digest(self) -> str:
        return sha256(self.index)


@dataclass
class Bundle:
    layout: Layout = field(default_factory=lambda: Layout({"oci-layout": dumps({"imageLayoutVersion": "1.0.0"})}))
    entries: list[dict[str, Any]] = field(default_factory=list)
    built: dict[str, Built] = field(default_factory=dict)

    def add(
        self, reference: str, images: Sequence[Image], *, attestations: bool = False, index: bytes | None = None
    ) -> Built:
        """``images`` under ``reference``: an index of them (or ``index``), named twice."""
        children = [i.entry() for i in images]
        for image in images:
            self.layout.add_blobs(image.blobs)
            if attestations:
                entry, blobs = attestation_for(image)
                self.layout.add_blobs(blobs)
                children.append(entry)
        full = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
        held = index if index is not None else full
        self.layout.add_blob(held)
        self.name(reference, held)
        built = Built(reference, list(images), held, full)
        self.built[reference] = built
        return built

    def name(self, reference: str, raw: bytes, media_type: str = OCI_INDEX) -> None:
        names = {"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": reference}
        self.entries.append(descriptor(media_type, raw, annotations=names))

    def sign(self, digest: str, size: int, media_type: str, private_pem: bytes) -> None:
        """A cosign signature of the subject, beside it in ``index.json`` (found by its ``subject``)."""
        signature = signature_for(digest, size, media_type, private_pem)
        self.layout.add_blobs(signature["blobs"])
        self.layout.add_blob(signature["manifest"])
        self.entries.append(descriptor("application/vnd.oci.image.manifest.v1+json", signature["manifest"]))

    def files(self) -> Layout:
        self.layout.files["index.json"] = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries})
        return self.layout

    def write_dir(self, path: Path) -> str:
        return self.files().write_dir(str(path))

    def write_tar(self, path: Path) -> str:
        return self.files().write_tar(str(path))


def locked_platform(image: Image) -> LockedPlatform:
    manifest = json.loads(image.manifest)
    content = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    return LockedPlatform(
        Platform.parse(image.platform), Digest.parse(image.digest), image.media_type, len(image.manifest), content
    )


def locked(built: Built, images: Sequence[Image] | None = None) -> LockedImage:
    """The lock entry of ``built``: the tag names ``full``; the bundle holds ``index``."""
    return LockedImage(
        reference=Reference.parse(built.reference),
        digest=Digest.parse(sha256(built.full)),
        media_type=OCI_INDEX,
        size=len(built.full),
        platforms=tuple(locked_platform(i) for i in (images if images is not None else built.images)),
        bundled=Digest.parse(built.digest),
    )


def images(name: str, *architectures: str) -> list[Image]:
    """Distinct images per name: the layer's text carries the name."""
    return [Image(architecture=a, layers=[tar_bytes({f"{a}.txt": f"{name} on {a}\n".encode()})]) for a in architectures]


def standard() -> Bundle:
    bundle = Bundle()
    bundle.add(REDIS, images("redis", "amd64", "arm64"), attestations=True)
    bundle.add(NGINX, images("nginx", "amd64", "arm64"))
    return bundle


def lock_of(bundle: Bundle) -> Lock:
    return Lock(tuple(locked(b) for b in bundle.built.values()))


def layer_of(image: Image) -> str:
    return str(json.loads(image.manifest)["layers"][0]["digest"])


# -- a good bundle -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dir", "tar"])
def test_a_good_bundle_verifies_against_its_lock(tmp_path: Path, kind: str) -> None:
    bundle = standard()
    source = bundle.write_dir(tmp_path / "b") if kind == "dir" else bundle.write_tar(tmp_path / "b.tar")
    lock = Lock.parse(lock_of(bundle).encode())  # through the file format, as the CLI reads it
    report = verify(source, lock=lock)
    assert report.ok, report.problems
    assert report.locked == 2
    assert report.to_json()["lock"] == {"images": 2}
    assert report.blobs_checked > 0


def test_without_a_lock_the_report_says_none(tmp_path: Path) -> None:
    report = verify(standard().write_dir(tmp_path / "b"))
    assert report.ok, report.problems
    assert (report.locked, report.to_json()["lock"]) == (None, None)


# -- tampering -----------------------------------------------------------------------------


def test_a_tampered_layer_names_the_image_and_the_blob(tmp_path: Path) -> None:
    bundle = standard()
    source = bundle.write_dir(tmp_path / "b")
    amd64 = bundle.built[NGINX].images[0]
    layer = layer_of(amd64)
    path = Path(source, "blobs", "sha256", layer.split(":")[1])
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    path.write_bytes(bytes(data))
    report = verify(source, lock=lock_of(bundle))
    assert not report.ok
    (problem,) = report.problems
    assert f"({NGINX})" in problem
    assert "linux/amd64" in problem
    assert Digest.parse(layer).short in problem
    assert "does not match its digest" in problem


def test_a_blob_shared_by_two_images_names_both(tmp_path: Path) -> None:
    """A blob is read once; a second image holding it still gets a problem of its own."""
    shared = images("shared", "amd64")
    bundle = Bundle()
    bundle.add(REDIS, shared)
    bundle.add(APP, shared + images("app", "arm64"))
    source = bundle.write_dir(tmp_path / "b")
    layer = layer_of(shared[0])
    path = Path(source, "blobs", "sha256", layer.split(":")[1])
    path.write_bytes(path.read_bytes()[::-1])
    problems = verify(source, lock=lock_of(bundle)).problems
    assert len(problems) == 2
    assert f"({REDIS}): linux/amd64" in problems[0]
    assert f"({APP}): linux/amd64: blob {layer} is bad (see" in problems[1]


def test_a_swapped_image_names_the_image(tmp_path: Path) -> None:
    """The entry named redis holds nginx's index: its root and both platforms differ."""
    bundle = standard()
    lock = lock_of(bundle)
    redis_entry, nginx_entry = bundle.entries
    bundle.entries[0] = {**nginx_entry, "annotations": redis_entry["annotations"]}
    bundle.entries[1] = nginx_entry
    report = verify(bundle.write_tar(tmp_path / "b.tar"), lock=lock)
    assert not report.ok
    assert all(REDIS in p for p in report.problems), report.problems
    text = "\n".join(report.problems)
    assert f"the bundle holds {bundle.built[NGINX].digest} but the lock pins {bundle.built[REDIS].digest}" in text
    for image in bundle.built[REDIS].images:
        assert f"({REDIS}): {image.platform}: the bundle holds" in text
        assert f"but the lock pins {image.digest}" in text


def test_a_swapped_platform_image_names_the_image_and_platform(tmp_path: Path) -> None:
    """redis's index lists another arm64 manifest: the root and that one platform differ."""
    bundle = Bundle()
    redis = images("redis", "amd64", "arm64")
    other = images("other", "arm64")
    honest = bundle.add(REDIS, redis)
    lock = Lock((locked(honest),))
    bundle = Bundle()
    bundle.layout.add_blobs(redis[1].blobs)
    bundle.add(REDIS, [redis[0], other[0]])
    problems = verify(bundle.write_dir(tmp_path / "b"), lock=lock).problems
    assert len(problems) == 2, problems
    assert f"the lock pins {honest.digest}" in problems[0]
    assert (
        f"({REDIS}): linux/arm64: the bundle holds {other[0].digest} but the lock pins {redis[1].digest}" in problems[1]
    )


# -- missing and extra -----------------------------------------------------------------------


def test_a_missing_image_is_reported(tmp_path: Path) -> None:
    bundle = standard()
    app = Bundle().add(APP, images("app", "amd64"))
    lock = Lock((*lock_of(bundle).images, locked(app)))
    source = bundle.write_dir(tmp_path / "b")
    (problem,) = verify(source, lock=lock).problems
    assert problem == f"{source}: {APP}: missing from the bundle (the lock pins {app.digest})"


def test_an_extra_image_is_reported(tmp_path: Path) -> None:
    bundle = standard()
    lock = lock_of(bundle)
    bundle.add(APP, images("app", "amd64"))
    (problem,) = verify(bundle.write_tar(tmp_path / "b.tar"), lock=lock).problems
    assert f"({APP}): extra: {APP} ({bundle.built[APP].digest}) is in the bundle but not in the lock" in problem


def test_an_extra_entry_that_is_not_an_image_is_reported(tmp_path: Path) -> None:
    """[LOCK-6] An artifact under a name the lock does not pin is extra too: an entry that is
    not an image is no reason to let it through."""
    bundle = standard()
    lock = lock_of(bundle)
    config = b"{}"
    bundle.layout.add_blob(config)
    artifact = dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/x-evil",
            "config": descriptor("application/vnd.oci.empty.v1+json", config),
            "layers": [],
        }
    )
    bundle.layout.add_blob(artifact)
    bundle.name("ghcr.io/acme/evil:1", artifact, "application/vnd.oci.image.manifest.v1+json")
    report = verify(bundle.write_tar(tmp_path / "b.tar"), lock=lock)
    assert not report.ok
    (extra,) = [p for p in report.problems if "extra" in p]
    assert f"extra: ghcr.io/acme/evil:1 ({sha256(artifact)}) is in the bundle but not in the lock" in extra


def test_a_missing_platform_and_an_extra_platform_are_reported(tmp_path: Path) -> None:
    redis = images("redis", "amd64", "arm64", "s390x")
    honest = Bundle().add(REDIS, redis[:2])
    lock = Lock((locked(honest),))
    bundle = Bundle()
    built = bundle.add(REDIS, [redis[0], redis[2]])
    problems = verify(bundle.write_dir(tmp_path / "b"), lock=lock).problems
    assert problems[0].endswith(f"({REDIS}): the bundle holds {built.digest} but the lock pins {honest.digest}")
    assert problems[1].endswith(f"({REDIS}): linux/arm64: missing from the bundle (the lock pins {redis[1].digest})")
    assert problems[2].endswith(f"({REDIS}): linux/s390x {redis[2].digest} is in the bundle but not in the lock")
    assert len(problems) == 3


def test_a_listed_platform_whose_manifest_is_not_held(tmp_path: Path) -> None:
    bundle = standard()
    lock = lock_of(bundle)
    arm64 = bundle.built[NGINX].images[1]
    del bundle.layout.files[f"blobs/sha256/{arm64.digest.split(':')[1]}"]
    problems = verify(bundle.write_dir(tmp_path / "b"), lock=lock).problems
    assert any(
        p.endswith(f"({NGINX}): linux/arm64: {arm64.digest} is listed but its manifest is not in the bundle")
        for p in problems
    ), problems


def test_names_are_matched_as_full_references(tmp_path: Path) -> None:
    """A name written short (``redis:7``) answers to its normalised reference."""
    bundle = Bundle()
    built = bundle.add("redis:7", images("redis", "amd64"))
    lock = Lock((locked(built),))
    assert str(lock.images[0].reference) == REDIS
    assert verify(bundle.write_dir(tmp_path / "b"), lock=lock).ok


def test_a_lock_with_a_selector_is_refused(tmp_path: Path) -> None:
    bundle = standard()
    source = bundle.write_dir(tmp_path / "b")
    with pytest.raises(UsageError, match="whole bundle"):
        verify(f"{source}:{REDIS}", lock=lock_of(bundle))
    with pytest.raises(UsageError, match="whole bundle"):
        inspect(f"{source}@{bundle.built[REDIS].digest}", lock=lock_of(bundle))


# -- platform subsets --------------------------------------------------------------------------


def filtered(full: bytes, keep: Sequence[str]) -> bytes:
    document = Document(full, decode_index(full), Descriptor(OCI_INDEX, Digest.of(full), len(full)))
    return filter_index(document, [Platform.parse(p) for p in keep]).raw


def test_a_platform_subset_bundle_verifies(tmp_path: Path) -> None:
    """The lock pins the tag's index; the bundle holds it filtered to the kept platforms."""
    redis = images("redis", "amd64", "arm64", "s390x")
    full = Bundle().add(REDIS, redis, attestations=True).full
    subset = filtered(full, ["linux/amd64", "linux/s390x"])
    assert sha256(subset) != sha256(full)
    bundle = Bundle()
    for image in redis:
        bundle.layout.add_blobs(attestation_for(image)[1])
    built = bundle.add(REDIS, [redis[0], redis[2]], index=subset)
    built.full = full
    entry = locked(built)
    assert (str(entry.digest), str(entry.bundled)) == (sha256(full), sha256(subset))
    report = verify(bundle.write_tar(tmp_path / "b.tar"), lock=Lock((entry,)))
    assert report.ok, report.problems
    # the full index under the same name is not what the lock bundles
    other = Bundle()
    other.add(REDIS, redis, attestations=True)
    problems = verify(other.write_dir(tmp_path / "full"), lock=Lock((entry,))).problems
    assert len(problems) == 2, problems
    assert f"the lock pins {sha256(subset)}" in problems[0]
    assert "linux/arm64" in problems[1]
    assert "not in the lock" in problems[1]


# -- signatures ------------------------------------------------------------------------------


def test_a_signed_bundle_passes_and_an_unsigned_image_fails_naming_it(tmp_path: Path) -> None:
    private, public = write_keys(tmp_path, "ecdsa")
    key = load_public_key(str(public))
    bundle = standard()
    lock = lock_of(bundle)
    redis, nginx = bundle.built[REDIS], bundle.built[NGINX]
    bundle.sign(redis.digest, len(redis.index), OCI_INDEX, private.read_bytes())
    report = verify(bundle.write_dir(tmp_path / "half"), lock=lock, key=key, key_name=str(public))
    assert not report.ok
    assert report.problems, report.problems
    assert all(f"({NGINX})" in p and "has no valid signature" in p for p in report.problems), report.problems
    assert len(report.problems) == 2  # each nginx platform image; the index is not itself a problem
    bundle.sign(nginx.digest, len(nginx.index), OCI_INDEX, private.read_bytes())
    report = verify(bundle.write_tar(tmp_path / "signed.tar"), lock=lock, key=key)
    assert report.ok, report.problems
    assert {s.label for s in report.signatures if s.check.ok} == {"index"}


# -- inspect ----------------------------------------------------------------------------------


def test_inspect_with_a_lock_lists_what_the_bundle_lacks(tmp_path: Path) -> None:
    bundle = standard()
    redis = bundle.built[REDIS]
    app = Bundle().add(APP, images("app", "amd64"))
    s390x = images("redis", "s390x")[0]
    lock = Lock((locked(redis, [*redis.images, s390x]), locked(bundle.built[NGINX]), locked(app)))
    report = inspect(bundle.write_tar(tmp_path / "b.tar"), lock=lock)
    assert report.expected == (
        Missing(REDIS, Digest.parse(s390x.digest), Platform.parse("linux/s390x")),
        Missing(APP, Digest.parse(app.digest)),
    )
    document = report.to_json()
    assert document["missing"] == [
        {
            "reference": REDIS,
            "platform": "linux/s390x",
            "platformObject": {"architecture": "s390x", "os": "linux"},
            "digest": s390x.digest,
        },
        {"reference": APP, "platform": None, "platformObject": None, "digest": app.digest},
    ]
    # the entries are inspect's as ever: images with platforms, sizes and referrers
    assert [e["names"][-1] for e in document["entries"]] == [REDIS, NGINX]
    assert [i["platform"] for i in document["entries"][0]["images"]] == ["linux/amd64", "linux/arm64"]
    assert document["entries"] == inspect(str(tmp_path / "b.tar")).to_json()["entries"]


def test_inspect_without_a_lock_lists_nothing_missing(tmp_path: Path) -> None:
    report = inspect(standard().write_dir(tmp_path / "b"))
    assert (report.expected, report.to_json()["missing"]) == ((), [])


def test_inspect_of_a_complete_bundle_lists_nothing_missing(tmp_path: Path) -> None:
    bundle = standard()
    assert inspect(bundle.write_dir(tmp_path / "b"), lock=lock_of(bundle)).expected == ()


def test_inspect_lists_signatures_as_referrers(tmp_path: Path) -> None:
    private, _ = write_keys(tmp_path, "ecdsa")
    bundle = standard()
    redis = bundle.built[REDIS]
    bundle.sign(redis.digest, len(redis.index), OCI_INDEX, private.read_bytes())
    report = inspect(bundle.write_dir(tmp_path / "b"), lock=lock_of(bundle))
    entries: Mapping[str, Any] = {e["names"][-1]: e for e in report.to_json()["entries"]}
    assert set(entries) == {REDIS, NGINX}
    assert len(entries[REDIS]["referrers"]) == 1
    assert entries[NGINX]["referrers"] == []
    assert report.expected == ()
