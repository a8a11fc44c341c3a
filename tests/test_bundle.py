"""Issue 12: air-gap bundles. Lock a list of images against a real registry, then bundle them
into one OCI layout (archive or directory) that skopeo reads, resumably ([BUNDLE-1] ..
[BUNDLE-6], [LOCK-1] .. [LOCK-5]).

Three images of two platforms each, every platform image signed (a referrer with a subject),
all sharing one base layer, are pushed to the registry; both backends run every test.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest

import ocimerge
import ocimerge.sinks.bundle as staging_module
from imagebuilder import OCI_MANIFEST, Image, descriptor, dumps, oci_layout, tar_bytes
from ocimerge.bundle import bundle, lock, lock_images, read_lock, staging_path
from ocimerge.errors import DocumentError, InputError, OutputError, SourceNotFoundError, UsageError
from ocimerge.model.digest import Digest
from ocimerge.model.lock import Lock, parse_image_list
from ocimerge.model.platform import Platform
from ocimerge.sinks._copy import copy_verified
from registries import RegistryServer
from signing import SIGNATURE_ARTIFACT_TYPE, make_key, signature_for

pytestmark = pytest.mark.registry_backends("distribution", "inprocess")

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
BASE = tar_bytes({"etc/os-release": b"ID=base\n"})


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def images_of(name: str, version: str = "1") -> list[Image]:
    return [
        Image(architecture=arch, layers=[BASE, tar_bytes({f"{name}.txt": f"{name} {version} {arch}\n".encode()})])
        for arch in ("amd64", "arm64")
    ]


def push_signed(registry: RegistryServer, tmp_path: Path, name: str, reference: str, version: str = "1") -> list[Image]:
    """An index of two platform images, each signed, pushed to ``reference``."""
    private, _ = make_key("ecdsa")
    images = images_of(name, version)
    layout = oci_layout(images, shape="index")
    index = json.loads(layout.files["index.json"])
    for image in images:
        signature = signature_for(image.digest, len(image.manifest), image.media_type, private)
        layout.add_blobs(signature["blobs"])
        layout.add_blob(signature["manifest"])
        index["manifests"].append(descriptor(OCI_MANIFEST, signature["manifest"], artifactType=SIGNATURE_ARTIFACT_TYPE))
    layout.files["index.json"] = dumps(index)
    directory = tmp_path / unique(f"in-{name}")
    layout.write_dir(str(directory))
    ocimerge.push(str(directory), [reference])
    return images


@pytest.fixture
def release(registry: RegistryServer, tmp_path: Path) -> dict[str, Any]:
    """Three signed two-platform images in the registry, and an image list naming them (the
    second one kept to linux/amd64)."""
    prefix = unique("release")
    refs = {n: f"{registry.host}/{prefix}/{n}:1" for n in ("a", "b", "c")}
    built = {n: push_signed(registry, tmp_path, n, ref) for n, ref in refs.items()}
    listing = tmp_path / "IMAGES.txt"
    listing.write_text(f"# the release\n{refs['a']}\n{refs['b']} linux/amd64  # amd64 only\n\n{refs['c']}\n")
    return {"refs": refs, "images": built, "list": listing, "prefix": prefix}


def blob_files(directory: Path) -> list[str]:
    return sorted(p.name for p in (directory / "blobs" / "sha256").iterdir())


def referenced_digests(directory: Path) -> set[str]:
    """Every digest reachable from index.json, read back from the layout's own files."""
    found: set[str] = set()
    pending = list(json.loads((directory / "index.json").read_bytes())["manifests"])
    while pending:
        entry = pending.pop()
        digest = entry["digest"]
        if digest in found:
            continue
        found.add(digest)
        data = (directory / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
        assert Digest.of(data) == Digest.parse(digest)
        if entry["mediaType"].endswith(("manifest.v1+json", "image.index.v1+json")):
            document = json.loads(data)
            pending.extend(document.get("manifests", []))
            pending.extend([document["config"], *document.get("layers", [])] if "config" in document else [])
    return found


# -- lock --------------------------------------------------------------------------------------


def test_lock_pins_every_image_and_a_relock_reports_what_moved(
    registry: RegistryServer, release: dict[str, Any], tmp_path: Path
) -> None:
    """[BUNDLE-1][LOCK-2][LOCK-4] Each tag pinned to its index, each kept platform to its
    manifest, sizes recorded; the subset's ``bundled`` is a filtered index; re-tagging one
    image and locking again reports it moved, and only it."""
    out = tmp_path / "images.lock"
    first = lock(str(release["list"]), str(out))
    assert first.previous is False
    assert first.changes == ()
    assert read_lock(str(out)) == first.lock
    on_disk = json.loads(out.read_bytes())
    assert on_disk["version"] == 1
    a, b, c = first.lock.images
    assert [str(i.reference) for i in (a, b, c)] == list(release["refs"].values())
    for image, name in ((a, "a"), (c, "c")):
        built = release["images"][name]
        assert [str(p.platform) for p in image.platforms] == ["linux/amd64", "linux/arm64"]
        assert [str(p.digest) for p in image.platforms] == [i.digest for i in built]
        assert image.bundled == image.digest
        for p, i in zip(image.platforms, built, strict=True):
            assert p.size == len(i.manifest)
            assert p.content_size == sum(len(x) for d, x in i.blobs.items() if d != i.digest)
    assert [str(p.platform) for p in b.platforms] == ["linux/amd64"]
    assert b.bundled != b.digest

    again = lock(str(release["list"]), str(out))
    assert again.previous is True
    assert again.changes == ()

    push_signed(registry, tmp_path, "b", release["refs"]["b"], version="2")
    moved = lock(str(release["list"]), str(out))
    [change] = moved.changes
    assert (change.reference, change.kind) == (release["refs"]["b"], "moved")
    assert "linux/amd64 changed" in change.detail
    assert read_lock(str(out)) == moved.lock


def test_lock_errors_name_the_image(registry: RegistryServer, release: dict[str, Any], tmp_path: Path) -> None:
    """[BUNDLE-1] A missing tag names it; a platform the index lacks names the image; a
    corrupt previous lock names the file and nothing is written."""
    missing = f"{registry.host}/{release['prefix']}/a:nope"
    with pytest.raises(SourceNotFoundError, match="a:nope"):
        lock_images(parse_image_list(f"{missing}\n"))
    with pytest.raises(UsageError, match=f"{release['prefix']}/a:1.*s390x"):
        lock_images(parse_image_list(f"{release['refs']['a']} linux/s390x\n"))
    corrupt = tmp_path / "corrupt.lock"
    corrupt.write_text("{not json")
    with pytest.raises(DocumentError, match=r"corrupt\.lock"):
        lock(str(release["list"]), str(corrupt))
    assert corrupt.read_text() == "{not json"


# -- bundle ------------------------------------------------------------------------------------


def skopeo_raw(transport: str, path: Path, name: str) -> bytes:
    run = subprocess.run(
        ["skopeo", "--insecure-policy", "inspect", "--raw", f"{transport}:{path}:{name}"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode()
    return run.stdout


def test_bundle_from_the_lock_as_a_tar_and_a_directory(release: dict[str, Any], tmp_path: Path) -> None:
    """[BUNDLE-2][BUNDLE-3][BUNDLE-4][BUNDLE-6] One layout: each image named by its full
    reference (ref.name and containerd's name), every blob once (the shared base layer too),
    the signatures of the kept images beside them (not the subset's arm64 one, whose image
    is not bundled); skopeo reads every image by name from the archive and the directory."""
    locked = lock(str(release["list"]), str(tmp_path / "images.lock")).lock
    directory = tmp_path / "release"
    result = bundle(locked, str(directory))
    assert result.output == str(directory)
    assert not result.archive
    assert not os.path.exists(staging_path(str(directory)))
    index = json.loads((directory / "index.json").read_bytes())
    named = [m for m in index["manifests"] if CONTAINERD_NAME in m.get("annotations", {})]
    assert [(m["annotations"][REF_NAME], m["annotations"][CONTAINERD_NAME]) for m in named] == [
        (str(i.reference), str(i.reference)) for i in locked.images
    ]
    assert [m["digest"] for m in named] == [str(i.bundled) for i in locked.images]
    signatures = [m for m in index["manifests"] if m.get("artifactType") == SIGNATURE_ARTIFACT_TYPE]
    assert len(signatures) == 5  # two each for a and c, one for b's amd64
    assert result.referrers == 5

    files = blob_files(directory)
    assert len(files) == len(set(files))
    assert {f"sha256:{f}" for f in files} == referenced_digests(directory)
    base_layers = [x for x in release["images"]["a"][0].blobs if release["images"]["a"][0].blobs[x][:2] == b"\x1f\x8b"]
    base = next(d for d in base_layers if all(d in i.blobs for imgs in release["images"].values() for i in imgs))
    assert base.split(":")[1] in files
    assert result.blobs_written == len(files)
    assert result.blobs_kept == 0

    archive = tmp_path / "release.tar"
    tarred = bundle(locked, str(archive))
    assert tarred.archive
    assert archive.is_file()
    assert not os.path.exists(staging_path(str(archive)))
    for image in locked.images:
        want = (directory / "blobs" / "sha256" / image.bundled.encoded).read_bytes()
        assert skopeo_raw("oci", directory, str(image.reference)) == want
        assert skopeo_raw("oci-archive", archive, str(image.reference)) == want
    b = json.loads((directory / "blobs" / "sha256" / locked.images[1].bundled.encoded).read_bytes())
    assert [m["platform"]["architecture"] for m in b["manifests"]] == ["amd64"]

    with pytest.raises(OutputError, match="already exists"):
        bundle(locked, str(archive))
    assert bundle(locked, str(archive), force=True).blobs_written == len(files)


def test_an_interrupted_bundle_continues_and_keeps_what_it_verified(
    registry: RegistryServer, release: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[BUNDLE-5] Ctrl-C after a few blobs leaves the staging directory and no output; the
    next run keeps those blobs (no registry GET of them again), re-fetches one that was
    corrupted meanwhile, and writes an archive identical to an uninterrupted run's."""
    locked = lock(str(release["list"]), str(tmp_path / "images.lock")).lock
    out = tmp_path / "resumed.tar"
    real = copy_verified
    copies: list[str] = []

    def interrupting(blob: ocimerge.Blob, write: Any) -> int:
        if len(copies) == 4:
            raise KeyboardInterrupt
        copies.append(str(blob.digest))
        return real(blob, write)

    monkeypatch.setattr(staging_module, "copy_verified", interrupting)
    with pytest.raises(KeyboardInterrupt):
        bundle(locked, str(out))
    monkeypatch.setattr(staging_module, "copy_verified", real)
    assert not out.exists()
    staged = Path(staging_path(str(out)))
    assert (staged.stat().st_mode & 0o777) == 0o700
    assert {f"sha256:{f}" for f in blob_files(staged)} == set(copies)
    assert not list((staged / ".tmp").iterdir())
    # one staged blob is damaged: it must be fetched again, not kept
    damaged = copies[-1]
    (staged / "blobs" / "sha256" / damaged.split(":")[1]).write_bytes(b"garbage")

    before = len(registry.requests())
    resumed = bundle(locked, str(out))
    fetched = [p for m, p, _ in registry.requests()[before:] if m == "GET" and "/blobs/sha256:" in p]
    assert resumed.blobs_kept == len(copies) - 1
    assert any(damaged in p for p in fetched)
    configs = {str(Digest.of(i.config)) for images in release["images"].values() for i in images}
    for digest in set(copies[:-1]) - configs:
        # a kept blob is not fetched again (a config is, to walk the image)
        assert all(digest not in p for p in fetched), digest
    assert any("continued the bundle" in n for n in resumed.notes)
    assert not staged.exists()

    whole = tmp_path / "whole.tar"
    bundle(locked, str(whole))
    assert out.read_bytes() == whole.read_bytes()


def test_bundle_straight_from_references_and_local_sources(release: dict[str, Any], tmp_path: Path) -> None:
    """[BUNDLE-2] Without a lock: registry references stored as they are, named by their full
    reference; a local archive named by its source text (its root's name is only a tag)."""
    local = tmp_path / "local.tar"
    oci_layout(images_of("local"), shape="index", names={0: "latest"}).write_tar(str(local))
    refs = release["refs"]
    out = tmp_path / "plain"
    result = bundle([f"docker://{refs['a']}", refs["c"], f"oci-archive:{local}"], str(out))
    names = [i.reference for i in result.images]
    assert names == [refs["a"], refs["c"], f"oci-archive:{local}"]
    index = json.loads((out / "index.json").read_bytes())
    named = [m["annotations"][REF_NAME] for m in index["manifests"] if CONTAINERD_NAME in m.get("annotations", {})]
    assert named == names
    assert result.referrers == 4
    assert [[str(p) for p in i.platforms] for i in result.images] == [["linux/amd64", "linux/arm64"]] * 3
    files = blob_files(out)
    assert {f"sha256:{f}" for f in files} == referenced_digests(out)
    with pytest.raises(UsageError, match="two images under one name"):
        bundle([refs["a"], f"docker://{refs['a']}"], str(tmp_path / "twice"))


def test_a_lock_the_registry_disagrees_with_fails_and_writes_nothing(
    registry: RegistryServer, release: dict[str, Any], tmp_path: Path
) -> None:
    """[BUNDLE-2] The tag moving after the lock is fine (the bundle reads by digest and holds
    what was locked); a lock whose ``bundled`` digest is not what the locked index filters to
    is an error, and nothing is written."""
    locked = lock(str(release["list"]), str(tmp_path / "images.lock")).lock
    push_signed(registry, tmp_path, "c", release["refs"]["c"], version="2")
    pinned = bundle(locked, str(tmp_path / "pinned"))
    assert [i.digest for i in pinned.images] == [i.bundled for i in locked.images]
    wrong = Lock((*locked.images[:1], attrs.evolve(locked.images[1], bundled=Digest.of(b"other"))))
    out = tmp_path / "bad.tar"
    with pytest.raises(InputError, match="the lock and the registry disagree"):
        bundle(wrong, str(out))
    assert not out.exists()
    assert Platform.parse("linux/amd64") in {p.platform for p in locked.images[1].platforms}


def test_a_foreign_directory_at_the_staging_name_is_never_adopted(tmp_path: Path) -> None:
    """[BUNDLE-5] Something else at ``<output>.partial`` is an error naming it, left as it is;
    a second run on the same staging directory while one holds it is refused."""
    out = tmp_path / "out.tar"
    foreign = Path(staging_path(str(out)))
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"out\.tar\.partial: exists and is not a bundle's staging directory"):
        staging_module.StagingLayout(str(foreign))
    assert (foreign / "notes.txt").read_text() == "mine"
    other = tmp_path / "other.partial"
    with (
        staging_module.StagingLayout(str(other)),
        pytest.raises(OutputError, match="another bundle run is writing here"),
    ):
        staging_module.StagingLayout(str(other))
    with staging_module.StagingLayout(str(other)) as again:
        assert again.path == str(other)
