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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

import ocimerge
import ocimerge.sinks.bundle as staging_module
from imagebuilder import OCI_INDEX, OCI_MANIFEST, Image, descriptor, docker_save, dumps, oci_layout, tar_bytes
from ocimerge.bundle import bundle, lock, lock_images, read_lock, staged_by, staging_path
from ocimerge.errors import DocumentError, InputError, OutputError, SourceNotFoundError, UsageError
from ocimerge.model.digest import Digest
from ocimerge.model.lock import Lock, parse_image_list
from ocimerge.model.platform import Platform
from ocimerge.sinks._copy import copy_verified
from ocimerge.sinks.oci_layout import move_into_place
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


# -- review findings: the staging directory, nested indexes, lock round trips ------------------


def staged_blob(data: bytes) -> ocimerge.Blob:
    return ocimerge.Blob.from_bytes(
        ocimerge.Descriptor("application/octet-stream", Digest.of(data), len(data)), data, "test blob"
    )


def test_a_staging_directory_is_trusted_only_when_every_part_of_it_is_ours(tmp_path: Path) -> None:
    """[BUNDLE-5] A symlinked ``blobs``, ``blobs/sha256`` or ``.tmp``, a staging directory of
    another user (empty or not) or one others may write to, and a symlinked staging itself
    are refused, naming the path; nothing they point to is written or deleted."""
    victim = tmp_path / "victim"
    (victim / "sha256").mkdir(parents=True)
    (victim / "sha256" / "important.txt").write_text("keep")

    def plant_sha256(staging: Path) -> None:
        (staging / "blobs").mkdir()
        (staging / "blobs" / "sha256").symlink_to(victim / "sha256")

    cases: dict[str, Callable[[Path], object]] = {
        "blobs": lambda p: (p / "blobs").symlink_to(victim),
        ".tmp": lambda p: (p / ".tmp").symlink_to(victim / "sha256"),
        "sha256": plant_sha256,
        "index.json": lambda p: (p / "index.json").symlink_to(victim / "sha256" / "important.txt"),
    }
    for name, plant in cases.items():
        staging = tmp_path / f"{name}.partial"
        staging.mkdir(mode=0o700)
        plant(staging)
        with pytest.raises(OutputError, match=rf"{name}.partial/(blobs/)?{name}: is not a (directory|regular file)"):
            staging_module.StagingLayout(str(staging))
        assert sorted(p.name for p in (victim / "sha256").iterdir()) == ["important.txt"], name
        assert (victim / "sha256" / "important.txt").read_text() == "keep"
        assert not Path(f"{staging}.lock").exists()  # let go on the way out

    linked = tmp_path / "linked.partial"
    linked.symlink_to(victim)
    with pytest.raises(OutputError, match=r"linked\.partial: exists and is not a bundle's staging directory"):
        staging_module.StagingLayout(str(linked))

    shared = tmp_path / "shared.partial"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(OutputError, match=r"shared\.partial: others may write to it \(mode 0o777\)"):
        staging_module.StagingLayout(str(shared))

    if os.getuid() == 0:  # an empty directory of another user is not adopted either
        foreign = tmp_path / "o1.partial"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        with pytest.raises(OutputError, match=r"o1\.partial: belongs to another user \(uid 65534\)"):
            staging_module.StagingLayout(str(foreign))
        assert os.listdir(foreign) == []


def test_a_symlink_planted_among_the_staged_blobs_is_removed_not_followed(tmp_path: Path) -> None:
    """[BUNDLE-5][BUNDLE-6] A link at a blob's name (even to a file holding the right bytes)
    is not kept: it is unlinked and the blob written; a link that is no blob of the bundle is
    unlinked at the end; their targets stay, and the output holds regular files only."""
    wanted, other = staged_blob(b"wanted"), staged_blob(b"other")
    staging = tmp_path / "out.partial"
    with staging_module.StagingLayout(str(staging)):
        pass
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "right-bytes").write_bytes(b"wanted")
    (outside / "precious").write_text("keep")
    blobs = staging / "blobs" / "sha256"
    (blobs / wanted.digest.encoded).symlink_to(outside / "right-bytes")
    (blobs / other.digest.encoded).symlink_to(outside / "precious")
    with staging_module.StagingLayout(str(staging)) as layout:
        assert layout.add(wanted) == staging_module.WRITTEN
        layout.finish([], str(tmp_path / "out"), archive=False)
    out = tmp_path / "out" / "blobs" / "sha256"
    assert [p.name for p in out.iterdir()] == [wanted.digest.encoded]
    assert not (out / wanted.digest.encoded).is_symlink()
    assert (out / wanted.digest.encoded).read_bytes() == b"wanted"
    assert (outside / "right-bytes").read_bytes() == b"wanted"
    assert (outside / "precious").read_text() == "keep"


def test_the_disk_refusing_a_staged_write_is_an_output_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[BUNDLE-5] A full disk while staging, or a directory where a blob should be removed at
    the end, is an ``OutputError`` naming the file, and the staging stays for the next run."""
    staging = tmp_path / "full.partial"
    blob = staged_blob(b"layer")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with staging_module.StagingLayout(str(staging)) as layout:
        monkeypatch.setattr(os, "fsync", full)
        with pytest.raises(OutputError, match=rf"full\.partial/\.tmp/{blob.digest.encoded}: .*No space left on device"):
            layout.add(blob)
        monkeypatch.undo()
        assert not list((staging / ".tmp").iterdir())
        assert layout.add(blob) == staging_module.WRITTEN
        (staging / "blobs" / "sha256" / "0123").mkdir()
        with pytest.raises(OutputError, match=r"blobs/sha256/0123: is a directory"):
            layout.finish([], str(tmp_path / "full"), archive=False)
    assert staging.is_dir()
    assert not (tmp_path / "full").exists()


def test_the_staging_lock_is_held_until_the_output_is_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[BUNDLE-5][BUNDLE-6] The run's lock is a file beside the staging, never moved: a second
    run trying in the window before the rename is refused; the lock file goes at the end."""
    staging = tmp_path / "out.partial"
    lock_file = Path(f"{staging}.lock")
    real = move_into_place
    refused: list[str] = []

    def racing(directory: str, destination: str) -> None:
        with pytest.raises(OutputError, match="another bundle run is writing here") as caught:
            staging_module.StagingLayout(str(staging))
        refused.append(str(caught.value))
        real(directory, destination)

    monkeypatch.setattr(staging_module, "move_into_place", racing)
    with staging_module.StagingLayout(str(staging)) as layout:
        assert lock_file.is_file()
        layout.add(staged_blob(b"x"))
        layout.finish([], str(tmp_path / "out"), archive=False)
    assert refused
    assert not lock_file.exists()
    assert not staging.exists()
    assert (tmp_path / "out" / "index.json").is_file()


def test_a_lock_or_image_list_too_large_is_refused_not_cut_short(tmp_path: Path) -> None:
    """[BUNDLE-1][LOCK-3] A file past the limit is a ``UsageError`` saying so, never parsed
    truncated (a reference cut mid-line would be locked)."""
    big_lock = tmp_path / "big.lock"
    with big_lock.open("wb") as f:
        f.truncate(64 * 1024 * 1024 + 1)
    with pytest.raises(UsageError, match=r"big\.lock: the lock file is larger than 64 MiB"):
        read_lock(str(big_lock))
    big_list = tmp_path / "IMAGES.txt"
    big_list.write_bytes(b"# x\n" * (4 * 1024 * 1024) + b"registry.example/app:1\n")
    with pytest.raises(UsageError, match=r"IMAGES\.txt: the image list is larger than 16 MiB"):
        lock(str(big_list), str(tmp_path / "out.lock"))
    assert not (tmp_path / "out.lock").exists()


def test_a_docker_archive_image_is_named_by_its_repo_tag(tmp_path: Path) -> None:
    """[BUNDLE-2] docker's ``RepoTags`` ``redis:7`` is a reference: the bundle names the
    image ``docker.io/library/redis:7``; a bare tag still falls back to the source text."""
    archive = tmp_path / "redis.tar"
    docker_save([Image(layers=[BASE])], repo_tags=[["redis:7"]]).write_tar(str(archive))
    result = bundle([f"docker-archive:{archive}"], str(tmp_path / "out"))
    assert [i.reference for i in result.images] == ["docker.io/library/redis:7"]
    index = json.loads((tmp_path / "out" / "index.json").read_bytes())
    assert index["manifests"][0]["annotations"][CONTAINERD_NAME] == "docker.io/library/redis:7"


def push_layout(layout: Any, tmp_path: Path, reference: str) -> None:
    directory = tmp_path / unique("in")
    layout.write_dir(str(directory))
    ocimerge.push(str(directory), [reference])


def test_nested_indexes_are_locked_and_bundled_with_every_child(registry: RegistryServer, tmp_path: Path) -> None:
    """[BUNDLE-1][BUNDLE-2] Outer index -> inner index -> two images: the lock pins the two
    images below (whatever the depth), bundling from the lock and from the reference both
    store both indexes and every manifest, config and layer; a platform list cannot pick
    through the nested index, and says so."""
    images = images_of("nested")
    layout = oci_layout(images, shape="index")
    inner = json.loads(layout.files["index.json"])["manifests"][0]
    outer = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [inner]})
    layout.add_blob(outer)
    layout.files["index.json"] = dumps({"schemaVersion": 2, "manifests": [descriptor(OCI_INDEX, outer)]})
    reference = f"{registry.host}/{unique('nested')}/app:1"
    push_layout(layout, tmp_path, reference)

    listing = tmp_path / "IMAGES.txt"
    listing.write_text(f"{reference}\n")
    locked = lock(str(listing), str(tmp_path / "images.lock")).lock
    [image] = locked.images
    assert str(image.digest) == Digest.of(outer).__str__() == str(image.bundled)
    assert sorted(str(p.digest) for p in image.platforms) == sorted(i.digest for i in images)
    for sources, out in ((locked, tmp_path / "from-lock"), ([reference], tmp_path / "from-ref")):
        result = bundle(sources, str(out))
        assert [str(p) for p in result.images[0].platforms] == ["linux/amd64", "linux/arm64"]
        found = referenced_digests(out)
        assert {f"sha256:{f}" for f in blob_files(out)} == found
        assert inner["digest"] in found
        assert all(d in found for i in images for d in i.blobs)
    with pytest.raises(UsageError, match="nested"):
        lock_images(parse_image_list(f"{reference} linux/amd64\n"))


def test_lock_refuses_what_it_could_not_read_back(registry: RegistryServer, tmp_path: Path) -> None:
    """[BUNDLE-1][LOCK-3] An index with two linux/amd64 images is a ``UsageError`` naming the
    image and the platform (a lock pins one per platform), and the previous lock stays
    readable; a single manifest of another platform names the image, not an internal error."""
    twins = [Image(layers=[BASE]), Image(layers=[BASE, tar_bytes({"twin": b"2"})])]
    prefix = unique("twins")
    reference = f"{registry.host}/{prefix}/app:1"
    push_layout(oci_layout(twins, shape="index"), tmp_path, reference)
    listing = tmp_path / "IMAGES.txt"
    listing.write_text(f"{reference}\n")
    with pytest.raises(UsageError, match=rf"{prefix}/app:1: holds two images of linux/amd64"):
        lock(str(listing), str(tmp_path / "images.lock"))
    assert not (tmp_path / "images.lock").exists()

    single = f"{registry.host}/{prefix}/single:1"
    push_layout(oci_layout([Image(layers=[BASE])]), tmp_path, single)
    with pytest.raises(UsageError, match=rf"{prefix}/single:1: a single image manifest, not linux/arm64") as caught:
        lock_images(parse_image_list(f"{single} linux/arm64\n"))
    assert "linux/amd64" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_names_are_checked_before_anything_is_fetched_and_failures_say_what_was_staged(
    registry: RegistryServer, release: dict[str, Any], tmp_path: Path
) -> None:
    """[BUNDLE-2] One reference twice (however written) is refused before a request; [BUNDLE-5]
    ``staged_by`` names the staging directory of a run that opened it and failed, and is None
    for a run that failed before opening one."""
    a = release["refs"]["a"]
    before = len(registry.requests())
    with pytest.raises(UsageError, match="two images under one name") as twice:
        bundle([a, f"docker://{a}"], str(tmp_path / "twice"))
    assert len(registry.requests()) == before
    assert staged_by(twice.value) is None
    assert not os.path.exists(staging_path(str(tmp_path / "twice")))

    locked = lock(str(release["list"]), str(tmp_path / "images.lock")).lock
    before = len(registry.requests())
    with pytest.raises(UsageError, match="two images under one name"):
        bundle(Lock((locked.images[0], locked.images[0])), str(tmp_path / "twice"))
    assert len(registry.requests()) == before

    wrong = Lock((*locked.images[:1], attrs.evolve(locked.images[1], bundled=Digest.of(b"other"))))
    out = tmp_path / "bad.tar"
    with pytest.raises(InputError) as failed:
        bundle(wrong, str(out))
    assert staged_by(failed.value) == staging_path(str(out))
    out.write_bytes(b"there")
    with pytest.raises(OutputError, match="already exists") as exists:
        bundle(wrong, str(out))
    assert staged_by(exists.value) is None
