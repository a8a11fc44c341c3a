"""Issue 12: ``restore`` of a bundle into a registry under a prefix ([RESTORE-1] .. [RESTORE-8]).

The bundle is built here by hand: three images (``imagebuilder`` indexes of two platforms
each, every platform sharing one base layer), each named in ``index.json`` with its full
reference, and each index's cosign signature (``signing``) as an untagged entry beside
them, as oras stores one. Every registry test runs on Distribution 2.8 (no referrers API:
the fallback tag) and on :class:`ocimerge.testing.Registry` (the referrers API); what the
registry holds is read back over HTTP and by skopeo, not through ocimerge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from imagebuilder import OCI_INDEX, OCI_MANIFEST, Image, Layout, descriptor, dumps, oci_layout, sha256, tar_bytes
from ocimerge import restore as restore_module
from ocimerge.bundle import bundle as make_bundle
from ocimerge.errors import OcimergeError, SignatureError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.digest import Digest
from ocimerge.model.reference import Reference
from ocimerge.model.referrers import fallback_tag
from ocimerge.registry.api import RegistryOptions
from ocimerge.registry.transport import RetryPolicy
from ocimerge.restore import MapRule, RestoreMap, partial_restore, restore, target_for
from ocimerge.signatures import load_public_key
from ocimerge.sinks.journal import UploadJournal
from ocimerge.sinks.registry import BlobAction, PushEvent, PushEventKind, PushOptions
from registries import RegistryServer
from signing import SIGNATURE_ARTIFACT_TYPE, Artifact, make_key, signature_for

pytestmark = pytest.mark.registry_backends("distribution", "inprocess")

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
WRITES = ("PUT", "POST", "PATCH", "DELETE")
NAMES = ("docker.io/library/redis:7", "docker.io/library/nginx:1", "ghcr.io/acme/app:1")
#: the repositories the NAMES go to under a prefix ([RESTORE-1]: the source host dropped)
PATHS = ("library/redis", "library/nginx", "acme/app")
BASE = tar_bytes({"etc/os-release": b"ID=base\n" * 64})
#: per image: two configs, two own layers, the signature's payload and config
OWN_BLOBS = 6
#: blobs of the bundle: the base layer once, each image's own
ALL_BLOBS = 1 + 3 * OWN_BLOBS


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocimerge", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=os.environ,
    )


@dataclass
class Restorable:
    """One image of a bundle: its name, platform images, index bytes and signature."""

    name: str
    images: list[Image]
    index: bytes
    signature: Artifact

    @property
    def digest(self) -> str:
        return sha256(self.index)

    @property
    def tag(self) -> str:
        return self.name.rpartition(":")[2]


def add_entry(layout: Layout, artifact: Artifact) -> None:
    """Store ``artifact`` in ``layout``, listed untagged with its artifactType (as oras does)."""
    layout.add_blobs(artifact["blobs"])
    layout.add_blob(artifact["manifest"])
    index = json.loads(layout.files["index.json"])
    index["manifests"].append(descriptor(OCI_MANIFEST, artifact["manifest"], artifactType=SIGNATURE_ARTIFACT_TYPE))
    layout.files["index.json"] = dumps(index)


def bundle(path: Path, names: tuple[str, ...] = NAMES, *, extra: dict[str, Image] | None = None) -> list[Restorable]:
    """A bundle tar at ``path``: one named index per image, then each index's signature, then
    ``extra`` single images listed under those ``ref.name`` values."""
    private, _ = make_key("ecdsa")
    layout = Layout({"oci-layout": dumps({"imageLayoutVersion": "1.0.0"})})
    entries = []
    out = []
    for name in names:
        short = name.rsplit("/", 1)[1].replace(":", "-")
        images = [
            Image(architecture=arch, layers=[BASE, tar_bytes({f"{short}.txt": f"{short} {arch}\n".encode()})])
            for arch in ("amd64", "arm64")
        ]
        for image in images:
            layout.add_blobs(image.blobs)
        index = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [i.entry() for i in images]})
        layout.add_blob(index)
        entries.append(descriptor(OCI_INDEX, index, annotations={REF_NAME: name, CONTAINERD_NAME: name}))
        signature = signature_for(sha256(index), len(index), OCI_INDEX, private, name.rpartition(":")[0])
        out.append(Restorable(name, images, index, signature))
    layout.files["index.json"] = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    for item in out:
        add_entry(layout, item.signature)
    for name, image in (extra or {}).items():
        layout.add_blobs(image.blobs)
        index = json.loads(layout.files["index.json"])
        index["manifests"].append(image.entry(annotations={REF_NAME: name}))
        layout.files["index.json"] = dumps(index)
    layout.write_tar(str(path))
    return out


# -- reading the registry -------------------------------------------------------------------------


def get(server: RegistryServer, path: str) -> httpx.Response:
    accept = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST])
    return httpx.get(f"http://{server.host}{path}", headers={"Accept": accept}, timeout=30)


def tags_of(server: RegistryServer, repo: str) -> list[str]:
    answer = get(server, f"/v2/{repo}/tags/list")
    if answer.status_code == 404:
        return []
    assert answer.status_code == 200, answer.text
    return sorted(t for t in answer.json().get("tags") or [] if not t.startswith("sha256-"))


def listed(server: RegistryServer, repo: str, subject: str) -> list[dict[str, Any]]:
    """The referrers listed for ``subject``: the fallback tag on Distribution, else the API."""
    if server.is_distribution:
        answer = get(server, f"/v2/{repo}/manifests/{fallback_tag(Digest.parse(subject))}")
    else:
        answer = get(server, f"/v2/{repo}/referrers/{subject}")
    assert answer.status_code == 200, answer.text
    manifests: list[dict[str, Any]] = answer.json()["manifests"]
    return manifests


def since(server: RegistryServer, start: int, prefix: str) -> list[tuple[str, str, int]]:
    """The requests served since ``start`` whose path is under ``prefix``."""
    return [r for r in server.requests()[start:] if r[1].startswith(f"/v2/{prefix}/")]


def mounts(requests: list[tuple[str, str, int]]) -> int:
    """Cross-repository mounts the registry carried out (201 to ``POST ...?mount=``)."""
    return sum(1 for m, p, s in requests if m == "POST" and "mount=" in p and s == 201)


def commits(requests: list[tuple[str, str, int]]) -> int:
    """Blob uploads the registry committed (the final ``PUT`` of an upload session)."""
    return sum(1 for m, p, s in requests if m == "PUT" and "/blobs/uploads/" in p and s == 201)


def skopeo_pull(server: RegistryServer, reference: str, dest: Path) -> bytes:
    """skopeo copies every platform of ``reference``, digests preserved; the raw index it got."""
    result = subprocess.run(
        [
            "skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
            f"docker://{server.host}/{reference}", f"oci:{dest}:pulled",
        ],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    inspected = subprocess.run(
        ["skopeo", "--insecure-policy", "inspect", "--raw", f"oci:{dest}:pulled"],
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    return inspected.stdout


def restored_everything(server: RegistryServer, prefix: str, items: list[Restorable], tmp_path: Path) -> None:
    """Each image is under ``prefix`` with its path, tagged, pullable with its digests, signed."""
    for item, path in zip(items, PATHS, strict=True):
        repo = f"{prefix}/{path}"
        assert tags_of(server, repo) == [item.tag]
        raw = skopeo_pull(server, f"{repo}:{item.tag}", tmp_path / unique("pulled"))
        assert raw == item.index
        [referrer] = listed(server, repo, item.digest)
        assert (referrer["digest"], referrer["artifactType"]) == (item.signature["digest"], SIGNATURE_ARTIFACT_TYPE)
        assert get(server, f"/v2/{repo}/manifests/{item.signature['digest']}").content == item.signature["manifest"]


# -- the pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "to", "expected"),
    [
        ("docker.io/library/redis:7", "harbor.site/mirror", "harbor.site/mirror/library/redis:7"),
        ("ghcr.io/acme/app:1", "harbor.site/mirror/", "harbor.site/mirror/acme/app:1"),
        ("docker.io/library/redis:7", "harbor.site", "harbor.site/library/redis:7"),
        ("docker.io/library/redis:7", "docker://127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b/library/redis:7"),
        ("ghcr.io/acme/app@sha256:" + "a" * 64, "localhost:5000", "localhost:5000/acme/app@sha256:" + "a" * 64),
    ],
)
def test_target_for_keeps_the_repository_path_under_the_prefix(name: str, to: str, expected: str) -> None:
    """[RESTORE-1]"""
    assert str(target_for(Reference.parse(name, default_tag=None), to)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("docker.io/library harbor.site/base extra", "map.txt:1: expected 'SOURCE TARGET'"),
        ("\n# c\nmirror harbor.site", "map.txt:3: 'mirror' does not start with a registry host"),
        ("a.io b.io/x\na.io/ c.io", "map.txt:2: a.io is mapped already on line 1"),
        ("a.io b.io/UPPER", "map.txt:1: 'b.io/UPPER' is not a valid"),
    ],
)
def test_a_bad_map_file_names_the_line(text: str, message: str) -> None:
    """[RESTORE-2]"""
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        RestoreMap.parse(text, where="map.txt")


@pytest.mark.parametrize("target", ["harbor.site", "localhost:5000", "127.0.0.1:5000/"])
def test_a_bare_host_target_of_a_source_with_a_path_is_refused(target: str) -> None:
    """[RESTORE-2] ``ghcr.io/acme/app harbor.site`` would leave the image no repository: its
    target ``harbor.site:1`` parses as ``docker.io/library/harbor.site:1``, a push to Docker
    Hub. Refused at parse time, naming the line and a rule that works."""
    with pytest.raises(UsageError, match=r"map.txt:2: the target .* is a bare registry host") as caught:
        RestoreMap.parse(f"ghcr.io harbor.site/ghcr\nghcr.io/acme/app {target}", where="map.txt")
    assert "ghcr.io/acme/app " in str(caught.value)
    host_only = RestoreMap.parse("ghcr.io harbor.site")  # a bare host for a bare host keeps the path
    assert str(target_for(Reference.parse("ghcr.io/acme/app:1"), "x.site", host_only)) == "harbor.site/acme/app:1"


def test_a_target_off_the_named_host_is_refused_naming_the_rule() -> None:
    """[RESTORE-2] A rule built by hand (no parse-time check) that leaves no repository: the
    target would be on Docker Hub, not the host the rule names; a UsageError naming the line."""
    mapping = RestoreMap((MapRule("ghcr.io/acme/app", "harbor.site", 4, "m.txt"),))
    with pytest.raises(UsageError, match=r"ghcr.io/acme/app:1: m.txt:4 sends it to 'harbor.site:1'") as caught:
        target_for(Reference.parse("ghcr.io/acme/app:1"), "x.site", mapping)
    assert "docker.io/library/harbor.site" in str(caught.value)


def test_a_map_file_larger_than_the_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[RESTORE-2] The map file is read at most MAX_MAP_BYTES + 1: a larger one is refused."""
    monkeypatch.setattr(restore_module, "MAX_MAP_BYTES", 64)
    path = tmp_path / "map.txt"
    path.write_text(("a.io b.io/x  # " + "x" * 64)[:63] + "\n")
    assert len(path.read_bytes()) == 64
    assert RestoreMap.read(path).lookup("a.io/y") == "b.io/x/y"
    path.write_text("a.io b.io/x\n" + "#" * 64)
    with pytest.raises(UsageError, match=r"map\.txt: the map file is larger than 64 bytes"):
        RestoreMap.read(path)


def test_the_longest_source_prefix_wins_on_whole_components() -> None:
    """[RESTORE-2]"""
    mapping = RestoreMap.parse("docker.io/library harbor.site/base\ndocker.io/library/redis cache.site/redis\n")
    assert mapping.lookup("docker.io/library/redis") == "cache.site/redis"
    assert mapping.lookup("docker.io/library/redis-x") == "harbor.site/base/redis-x"
    assert mapping.lookup("docker.io/libraryx/a") is None
    redis = target_for(Reference.parse("docker.io/library/redis:7"), "ignored.site/x", mapping)
    assert str(redis) == "cache.site/redis:7"


def test_a_bad_to_fails_before_anything_is_read(tmp_path: Path) -> None:
    """[RESTORE-1] A prefix without a registry host is a usage error, before the bundle is opened."""
    with pytest.raises(UsageError, match="--to: 'mirror' does not start with a registry host"):
        restore(str(tmp_path / "missing.tar"), "mirror")


def test_two_images_that_would_meet_under_one_name_are_refused(tmp_path: Path) -> None:
    """[RESTORE-1] ``a.example/app:1`` and ``b.example/app:1`` are one name under ``--to`` once
    their registries are dropped: refused (naming both and the way out) before anything is
    sent, since the second push would move the first's tag; a map file keeps them apart."""
    path = tmp_path / "two.tar"
    bundle(path, ("a.example/team/app:1",), extra={"b.example/team/app:1": Image(architecture="s390x")})
    with pytest.raises(UsageError) as caught:
        restore(str(path), "127.0.0.1:9/mirror")
    message = str(caught.value)
    assert (
        "a.example/team/app:1 and b.example/team/app:1 would both be restored as 127.0.0.1:9/mirror/team/app:1"
        in message
    )
    assert "--map" in message
    mapping = RestoreMap.parse("b.example/team 127.0.0.1:9/other/team")
    with pytest.raises(OcimergeError) as unreachable:  # planned apart: it goes on to the (closed) registry
        restore(
            str(path),
            "127.0.0.1:9/mirror",
            mapping=mapping,
            options=PushOptions(RegistryOptions(retry=RetryPolicy(attempts=1))),
        )
    assert not isinstance(unreachable.value, UsageError)


# -- against registries -----------------------------------------------------------------------------


def test_restore_keeps_names_digests_tags_signatures_and_mounts_the_shared_base(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """[RESTORE-1][RESTORE-3][RESTORE-4] Every image under the prefix, pullable with its digests,
    tagged, its signature listed; the base layer uploaded once and mounted into the two other
    repositories; one summary line per image."""
    items = bundle(tmp_path / "release.tar")
    prefix = unique("mirror")
    start = len(registry.requests())
    result = restore(str(tmp_path / "release.tar"), f"{registry.host}/{prefix}")
    requests = since(registry, start, prefix)
    assert [str(i.target) for i in result.images] == [
        f"{registry.host}/{prefix}/{p}:{i.tag}" for p, i in zip(PATHS, items, strict=True)
    ]
    assert [str(i.digest) for i in result.images] == [i.digest for i in items]
    assert (result.uploaded, result.mounted, result.skipped) == (ALL_BLOBS, 2, 0)
    assert [p.count(BlobAction.MOUNT) for p in result.pushed] == [0, 1, 1]
    assert mounts(requests) == 2
    assert commits(requests) == ALL_BLOBS
    assert result.referrers == 3
    restored_everything(registry, prefix, items, tmp_path)

    lines = result.summary_lines()
    assert len(lines) == 4  # one per image, then the totals
    assert lines[1].startswith(f"docker.io/library/nginx:1 -> {registry.host}/{prefix}/library/nginx:1 (")
    assert "uploaded 6 blob(s)" in lines[1]
    assert "mounted 1," in lines[1]
    assert "tagged 1" in lines[1]
    document = json.loads(json.dumps(result.to_json()))
    assert document["blobs"]["uploaded"] == ALL_BLOBS
    assert document["blobs"]["mounted"] == 2
    first = document["images"][0]
    assert (first["source"], first["digest"], first["status"], first["tags"]) == (
        NAMES[0],
        items[0].digest,
        "pushed",
        ["7"],
    )
    assert first["blobs"]["uploaded"] == 1 + OWN_BLOBS
    assert document["errors"] == []


def test_a_second_prefix_of_the_same_registry_mounts_everything(registry: RegistryServer, tmp_path: Path) -> None:
    """[RESTORE-3] Restored again under another prefix, mounting from the first restore: every
    blob mounted, nothing uploaded; the images are all there as the first time."""
    items = bundle(tmp_path / "release.tar")
    first, second = unique("mirror"), unique("again")
    restore(str(tmp_path / "release.tar"), f"{registry.host}/{first}")
    start = len(registry.requests())
    result = restore(str(tmp_path / "release.tar"), f"{registry.host}/{second}", mount_from=f"{registry.host}/{first}")
    requests = since(registry, start, second)
    assert (result.uploaded, result.mounted, result.skipped) == (0, ALL_BLOBS + 2, 0)
    assert commits(requests) == 0
    assert not [r for r in requests if r[0] == "PATCH"]
    assert mounts(requests) == ALL_BLOBS + 2
    restored_everything(registry, second, items, tmp_path)


def test_mount_from_follows_a_map_rule_under_the_prefix(registry: RegistryServer, tmp_path: Path) -> None:
    """[RESTORE-3] nginx mapped to ``PREFIX/web`` in both restores: the second mounts nginx's
    blobs from ``FIRST/web`` (its path relative to --to), not from ``FIRST/library/nginx``,
    where nothing is; so again nothing is uploaded."""
    items = bundle(tmp_path / "release.tar")
    first, second = unique("mirror"), unique("again")
    for prefix in (first, second):
        (tmp_path / f"{prefix}.map").write_text(f"docker.io/library/nginx {registry.host}/{prefix}/web\n")
    restore(
        str(tmp_path / "release.tar"),
        f"{registry.host}/{first}",
        mapping=RestoreMap.read(tmp_path / f"{first}.map"),
    )
    start = len(registry.requests())
    result = restore(
        str(tmp_path / "release.tar"),
        f"{registry.host}/{second}",
        mapping=RestoreMap.read(tmp_path / f"{second}.map"),
        mount_from=f"{registry.host}/{first}",
    )
    requests = since(registry, start, second)
    assert [i.outcome.repository for i in result.images][1] == f"{second}/web"
    assert (result.uploaded, result.mounted, result.skipped) == (0, ALL_BLOBS + 2, 0)
    assert commits(requests) == 0
    assert any(f"from={first}/web" in unquote(p) for m, p, s in requests if m == "POST" and s == 201)
    assert get(registry, f"/v2/{second}/web/manifests/1").content == items[1].index


def test_referrer_types_keep_only_those_and_a_required_signature_travels(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """[RESTORE-1][SIGNED-2] ``referrer_types`` keeps only those artifact types (the bundle's
    signatures are none of them: no referrer is pushed); with ``require_signature`` cosign's
    signatures are looked for as well, so they are checked and carried."""
    path = tmp_path / "release.tar"
    items = bundle(path)
    only_sboms = ("application/spdx+json",)
    result = restore(str(path), f"{registry.host}/{unique('m')}", referrer_types=only_sboms)
    assert (len(result.pushed), result.referrers) == (3, 0)
    (tmp_path / "ecdsa.pub").write_bytes(make_key("ecdsa")[1])  # the bundle's signer (one key per run)
    signer = load_public_key(str(tmp_path / "ecdsa.pub"))
    prefix = unique("signed")
    signed = restore(str(path), f"{registry.host}/{prefix}", referrer_types=only_sboms, require_signature=signer)
    assert signed.referrers == 3
    restored_everything(registry, prefix, items, tmp_path)


def test_without_mount_from_a_second_prefix_uploads_once_and_mounts_the_rest(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """[RESTORE-3] A restore knows only what it pushed itself: the base is mounted within the run."""
    bundle(tmp_path / "release.tar")
    restore(str(tmp_path / "release.tar"), f"{registry.host}/{unique('mirror')}")
    result = restore(str(tmp_path / "release.tar"), f"{registry.host}/{unique('again')}")
    assert (result.uploaded, result.mounted) == (ALL_BLOBS, 2)


def test_an_interrupted_restore_run_again_uploads_only_what_is_missing(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """[RESTORE-4][RESTORE-5] Ctrl-C at the second image's first upload: the first image is
    tagged, the second and third are not; run again, only what is missing goes up and every
    image is tagged."""
    items = bundle(tmp_path / "release.tar")
    prefix = unique("mirror")
    to = f"{registry.host}/{prefix}"
    journal = UploadJournal(tmp_path / "journal")
    started: list[PushEvent] = []

    def interrupt(event: PushEvent) -> None:
        if event.kind is PushEventKind.START:
            started.append(event)
            if len(started) == 1 + OWN_BLOBS + 1:  # the first image's uploads, then one more
                raise KeyboardInterrupt

    options = PushOptions(jobs=1, on_event=interrupt, journal=journal)
    start = len(registry.requests())
    with pytest.raises(KeyboardInterrupt):
        restore(str(tmp_path / "release.tar"), to, options=options)
    first_run = since(registry, start, prefix)
    assert commits(first_run) == 1 + OWN_BLOBS
    assert tags_of(registry, f"{prefix}/library/redis") == ["7"]
    assert tags_of(registry, f"{prefix}/library/nginx") == []  # its push did not finish: no tag
    assert tags_of(registry, f"{prefix}/acme/app") == []

    start = len(registry.requests())
    result = restore(str(tmp_path / "release.tar"), to, options=PushOptions(jobs=1, journal=journal))
    second_run = since(registry, start, prefix)
    # only the own blobs of two images go up; nginx's base is there already (mounted before the
    # interrupt) or mounted now (when the interrupt came first: which, the worker's timing says)
    assert result.uploaded == commits(second_run) == 2 * OWN_BLOBS
    assert [p.count(BlobAction.UPLOAD) for p in result.pushed] == [0, OWN_BLOBS, OWN_BLOBS]
    assert [p.count(BlobAction.SKIP) + p.count(BlobAction.MOUNT) for p in result.pushed] == [1 + OWN_BLOBS, 1, 1]
    assert result.pushed[2].count(BlobAction.MOUNT) == 1  # app's base: from an earlier image
    assert result.pushed[0].manifests_pushed == 0  # the first image was complete
    assert commits(first_run) + commits(second_run) == ALL_BLOBS  # each blob uploaded once overall
    restored_everything(registry, prefix, items, tmp_path)


def test_a_map_file_sends_one_image_elsewhere(registry: RegistryServer, tmp_path: Path) -> None:
    """[RESTORE-2][RESTORE-3] nginx goes where the map says (and still mounts the base, being on
    the same registry); the others keep their paths under the prefix."""
    items = bundle(tmp_path / "release.tar")
    prefix, elsewhere = unique("mirror"), unique("edge")
    map_file = tmp_path / "restore.map"
    map_file.write_text(f"# nginx is served from the edge\ndocker.io/library/nginx  {registry.host}/{elsewhere}/web\n")
    result = restore(str(tmp_path / "release.tar"), f"{registry.host}/{prefix}", mapping=RestoreMap.read(map_file))
    assert [i.outcome.repository for i in result.images] == [
        f"{prefix}/library/redis",
        f"{elsewhere}/web",
        f"{prefix}/acme/app",
    ]
    assert tags_of(registry, f"{elsewhere}/web") == ["1"]
    assert tags_of(registry, f"{prefix}/library/nginx") == []
    assert get(registry, f"/v2/{elsewhere}/web/manifests/1").content == items[1].index
    assert result.mounted == 2


def test_dry_run_writes_nothing_and_plans_uploads_and_mounts(registry: RegistryServer, tmp_path: Path) -> None:
    """[RESTORE-7] Nothing written; the blobs image 1 would upload, images 2 and 3 would mount."""
    bundle(tmp_path / "release.tar")
    prefix = unique("mirror")
    start = len(registry.requests())
    result = restore(str(tmp_path / "release.tar"), f"{registry.host}/{prefix}", options=PushOptions(dry_run=True))
    assert not [r for r in registry.requests()[start:] if r[0] in WRITES]
    assert result.dry_run
    assert all(p.dry_run for p in result.pushed)
    assert (result.uploaded, result.mounted, result.skipped) == (ALL_BLOBS, 2, 0)
    assert [p.count(BlobAction.MOUNT) for p in result.pushed] == [0, 1, 1]
    assert result.referrers == 3
    lines = result.summary_lines()
    assert "would upload 6 blob(s)" in lines[1]
    assert "would mount 1" in lines[1]
    # the root index counted as the real run counts it: two children and the index
    assert "would push 3 manifest(s)" in lines[1]
    assert [p.manifests_pushed for p in result.pushed] == [3, 3, 3]
    assert lines[-1].endswith(
        f"would upload {ALL_BLOBS} blob(s) ({result.bytes_uploaded} bytes), would mount 2, would skip 0; 3 referrer(s)"
    )
    assert tags_of(registry, f"{prefix}/library/redis") == []
    done = restore(str(tmp_path / "release.tar"), f"{registry.host}/{prefix}")
    assert [p.manifests_pushed for p in done.pushed] == [3, 3, 3]
    assert "3 manifest(s) pushed" in done.summary_lines()[1]
    again = restore(str(tmp_path / "release.tar"), f"{registry.host}/{prefix}", options=PushOptions(dry_run=True))
    assert [(p.manifests_pushed, p.manifests_skipped) for p in again.pushed] == [(0, 3)] * 3
    assert again.summary_lines()[-1].endswith(
        f"would upload 0 blob(s) (0 bytes), would mount 0, would skip {ALL_BLOBS + 2}; 0 referrer(s)"
    )


def test_a_failing_image_does_not_stop_the_others(registry: RegistryServer, tmp_path: Path) -> None:
    """[RESTORE-6] nginx mapped to a registry that refuses connections: redis and app are
    restored, then the error names nginx's target; the whole result comes with it."""
    items = bundle(tmp_path / "release.tar")
    prefix = unique("mirror")
    mapping = RestoreMap.parse("docker.io/library/nginx 127.0.0.1:9/nowhere/nginx")
    options = PushOptions(registry=RegistryOptions(retry=RetryPolicy(attempts=1)))
    with pytest.raises(OcimergeError) as caught:
        restore(str(tmp_path / "release.tar"), f"{registry.host}/{prefix}", mapping=mapping, options=options)
    result = partial_restore(caught.value)
    assert result is not None
    assert [i.ok for i in result.images] == [True, False, True]
    [failure] = result.failed
    assert (failure.registry, failure.repository, failure.tags) == ("127.0.0.1:9", "nowhere/nginx", ("1",))
    line = result.summary_lines()[1]
    assert line.startswith("docker.io/library/nginx:1 -> 127.0.0.1:9/nowhere/nginx:1")
    assert ": failed: " in line
    assert tags_of(registry, f"{prefix}/library/redis") == ["7"]
    assert tags_of(registry, f"{prefix}/acme/app") == ["1"]
    assert get(registry, f"/v2/{prefix}/acme/app/manifests/1").content == items[2].index
    assert result.to_json()["errors"][0]["repository"] == "nowhere/nginx"


def test_unnamed_entries_are_skipped_and_a_digest_name_is_pushed_without_a_tag(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """[RESTORE-8][RESTORE-1] An entry named only by a tag is no image to restore (a note says
    so); an image named by digest is pushed by digest and tagged nothing."""
    stray = Image(architecture="s390x")
    pinned = Image(architecture="ppc64le")
    path = tmp_path / "release.tar"
    typed = Image(architecture="riscv64")
    names = {"latest": stray, f"ghcr.io/acme/pinned@{pinned.digest}": pinned, "oci-archive:app.tar": typed}
    bundle(path, NAMES[:1], extra=names)
    prefix = unique("mirror")
    result = restore(str(path), f"{registry.host}/{prefix}")
    assert [str(i.target) for i in result.images] == [
        f"{registry.host}/{prefix}/library/redis:7",
        f"{registry.host}/{prefix}/acme/pinned@{pinned.digest}",
    ]
    skipped = [n for n in result.notes if "not a full reference" in n and n.endswith("skipped")]
    assert len(skipped) == 2
    assert "'latest'" in skipped[0]
    assert "'oci-archive:app.tar'" in skipped[1]
    assert tags_of(registry, f"{prefix}/acme/pinned") == []
    assert get(registry, f"/v2/{prefix}/acme/pinned/manifests/{pinned.digest}").content == pinned.manifest


def test_the_command_line_prints_a_line_per_image_and_json(registry: RegistryServer, tmp_path: Path) -> None:
    """[RESTORE-1][RESTORE-6] ``ocimerge push BUNDLE --to``: one line per image and the totals;
    ``--json`` the same result; a failing image's error after every line, with a failing exit."""
    bundle(tmp_path / "release.tar")
    prefix = unique("mirror")
    to = f"{registry.host}/{prefix}"
    done = cli("push", str(tmp_path / "release.tar"), "--to", to)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"docker.io/library/redis:7 -> {to}/library/redis:7 (")
    again = cli("push", str(tmp_path / "release.tar"), "--to", to, "--json")
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert document["blobs"]["skipped"] == ALL_BLOBS + 2
    assert [i["status"] for i in document["images"]] == ["pushed"] * 3
    (tmp_path / "restore.map").write_text("ghcr.io/acme 127.0.0.1:9/nowhere\n")
    failed = cli("push", str(tmp_path / "release.tar"), "--to", to, "--map", str(tmp_path / "restore.map"))
    assert failed.returncode != 0
    assert len(failed.stdout.splitlines()) == 4
    assert "127.0.0.1:9/nowhere/app:1" in failed.stdout.splitlines()[2]
    assert "127.0.0.1:9" in failed.stderr


def test_the_command_line_takes_options_anywhere_and_passes_referrer_types(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """``push SRC --dry-run TARGET`` and options between and after the targets parse again (they
    were 'unrecognized arguments'); ``push --to`` with options on both sides of it; and
    ``--referrers-type`` reaches the restore (it was ignored with --to)."""
    single = oci_layout([Image(architecture="s390x")]).write_tar(str(tmp_path / "one.tar"))
    repo = f"{registry.host}/{unique('cli')}"
    start = len(registry.requests())
    planned = cli("push", single, "--dry-run", f"{repo}/a:1", "--jobs", "2", f"{repo}/b:1", "--json")
    assert planned.returncode == 0, planned.stderr
    document = json.loads(planned.stdout)
    assert [(p["repository"].rsplit("/", 1)[1], p["dryRun"]) for p in document["pushed"]] == [("a", True), ("b", True)]
    assert not [r for r in registry.requests()[start:] if r[0] in WRITES]
    pushed = cli("push", single, f"{repo}/c:1", "--quiet", f"{repo}/d:1")
    assert pushed.returncode == 0, pushed.stderr
    assert [tags_of(registry, repo.split("/", 1)[1] + f"/{n}") for n in "cd"] == [["1"], ["1"]]

    bundle(tmp_path / "release.tar")
    to = f"{registry.host}/{unique('mirror')}"
    restored = cli(
        "push", "--quiet", str(tmp_path / "release.tar"), "--referrers-type", "application/spdx+json",
        "--to", to, "--json",
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    document = json.loads(restored.stdout)
    assert (len(document["pushed"]), document["referrers"]) == (3, 0)
    again = cli("push", str(tmp_path / "release.tar"), "--dry-run", "--to", to, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["referrers"] == 3  # all types: the signatures, not yet there


def test_a_bundle_made_by_ocimerge_bundle_restores(registry: RegistryServer, tmp_path: Path) -> None:
    """[RESTORE-8][RESTORE-3] What ``ocimerge.bundle`` writes from three named layouts (each
    with its signature) restores: every image under its path, signed, the base mounted twice."""
    items = bundle(tmp_path / "all.tar")  # for the images and signatures; split into layouts below
    sources = []
    for item in items:
        layout = Layout({"oci-layout": dumps({"imageLayoutVersion": "1.0.0"})})
        for image in item.images:
            layout.add_blobs(image.blobs)
        layout.add_blob(item.index)
        entry = descriptor(OCI_INDEX, item.index, annotations={REF_NAME: item.name})
        layout.files["index.json"] = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})
        add_entry(layout, item.signature)
        sources.append(layout.write_dir(str(tmp_path / unique("layout"))))
    made = make_bundle(sources, str(tmp_path / "release.tar"))
    assert made.referrers == 3
    prefix = unique("mirror")
    result = restore(str(tmp_path / "release.tar"), f"{registry.host}/{prefix}")
    assert [str(i.source) for i in result.images] == list(NAMES)
    assert (result.uploaded, result.mounted, result.referrers) == (ALL_BLOBS, 2, 3)
    restored_everything(registry, prefix, items, tmp_path)


def test_require_signature_checks_every_image_before_anything_is_sent(registry: RegistryServer, tmp_path: Path) -> None:
    """[RESTORE-6][SIGNED-2] The signer's key restores all three; another key refuses the whole
    restore before any write; without the referrers there is nothing to check: a usage error."""
    bundle(tmp_path / "release.tar")
    for kind in ("ecdsa", "ed25519"):
        (tmp_path / f"{kind}.pub").write_bytes(make_key(kind)[1])
    signer, stranger = load_public_key(str(tmp_path / "ecdsa.pub")), load_public_key(str(tmp_path / "ed25519.pub"))
    prefix = unique("mirror")
    start = len(registry.requests())
    with pytest.raises(SignatureError, match="refusing to push unsigned images"):
        restore(str(tmp_path / "release.tar"), f"{registry.host}/{prefix}", require_signature=stranger)
    assert not [r for r in registry.requests()[start:] if r[0] in WRITES]
    with pytest.raises(UsageError, match="--referrers none"):
        restore(str(tmp_path / "release.tar"), f"{registry.host}/{prefix}", require_signature=signer, referrers=False)
    result = restore(str(tmp_path / "release.tar"), f"{registry.host}/{prefix}", require_signature=signer)
    assert len(result.pushed) == 3
