"""Per-arch images already in registries as sources: pushed there by skopeo (a foreign client),
merged by ocimerge across repositories and registries, pulled back by skopeo.

Two registries take part: an anonymous one and one behind token auth. Each test runs with
both on Distribution (the binary or its container) and again with both in-process
(:class:`ocimerge.testing.Registry`, issue 10 item 4); one that holds on Distribution only says
why in its marker.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

import ocimerge
from imagebuilder import Image, oci_layout
from ocimerge.errors import AuthError, PlatformConflictError
from ocimerge.errors import SourceNotFoundError as MissingSourceError
from ocimerge.model.reference import Reference
from ocimerge.registry.api import Registry, RegistryOptions, RegistryPool
from ocimerge.sinks.registry import BlobAction
from ocimerge.sources import load, open_source, parse_source
from registries import USERS, RegistryServer

pytestmark = pytest.mark.registry_backends("distribution", "inprocess")

ALICE = RegistryOptions(username="alice", password=USERS["alice"])
PLATFORMS = [("amd64", None), ("arm64", "v8"), ("arm", "v7")]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def skopeo_push(server: RegistryServer, source: str, reference: str, *, all_: bool = False) -> None:
    args = ["skopeo", "--insecure-policy", "copy", "--preserve-digests", "--dest-tls-verify=false"]
    if all_:
        args.append("--all")
    if server.mode != "anonymous":
        args += ["--dest-creds", f"alice:{USERS['alice']}"]
    result = subprocess.run(
        [*args, source, f"docker://{server.host}/{reference}"], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr


def per_arch(server: RegistryServer, repository: str, tmp_path: Path, *, attestation: bool = False) -> dict[str, str]:
    """Push one image per platform as REPO:1.4-ARCHVARIANT with skopeo; return tag -> manifest digest."""
    digests = {}
    for arch, variant in PLATFORMS:
        image = Image(architecture=arch, variant=variant)
        tag = f"1.4-{arch}{variant or ''}"
        layout = oci_layout(
            [image], attestations=attestation, shape="index" if attestation else "manifest", names={0: tag}
        )
        path = layout.write_dir(str(tmp_path / f"{repository.replace('/', '_')}-{tag}"))
        skopeo_push(server, f"oci:{path}:{tag}", f"{repository}:{tag}", all_=attestation)
        digests[tag] = image.digest
    return digests


def skopeo_pull(server: RegistryServer, reference: str, dest: Path) -> dict[str, object]:
    args = ["skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests", "--src-tls-verify=false"]
    if server.mode != "anonymous":
        args += ["--src-creds", f"alice:{USERS['alice']}"]
    result = subprocess.run(
        [*args, f"docker://{server.host}/{reference}", f"oci:{dest}:x"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    index: dict[str, Any] = json.loads((dest / "index.json").read_text())
    [entry] = index["manifests"]
    manifest: dict[str, object] = json.loads((dest / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_bytes())
    return manifest


def writes(server: RegistryServer, since: int) -> list[tuple[str, str, int]]:
    return [r for r in server.requests()[since:] if r[0] in ("POST", "PUT", "PATCH")]


# -- moving as little as possible -----------------------------------------------------------------


def test_sources_in_the_target_repository_upload_nothing(registry: RegistryServer, tmp_path: Path) -> None:
    repo = unique("team/app")
    digests = per_arch(registry, repo, tmp_path)
    before = len(registry.requests())
    result = ocimerge.create(
        [f"docker://{registry.host}/{repo}:{t}" for t in digests], tags=[f"{registry.host}/{repo}:1.4"]
    )
    [pushed] = result.pushed
    assert pushed.count(BlobAction.UPLOAD) == 0
    assert pushed.count(BlobAction.MOUNT) == 0
    assert pushed.count(BlobAction.SKIP) == len(pushed.blobs)
    blob_writes = [r for r in writes(registry, before) if "/blobs/" in r[1]]
    assert blob_writes == []
    index = skopeo_pull(registry, f"{repo}:1.4", tmp_path / "pulled")
    assert {m["digest"] for m in index["manifests"]} == set(digests.values())  # type: ignore[attr-defined]


def test_same_registry_sources_are_mounted_not_uploaded(registry: RegistryServer, tmp_path: Path) -> None:
    source, target = unique("ci/app"), unique("release/app")
    digests = per_arch(registry, source, tmp_path)
    before = len(registry.requests())
    result = ocimerge.create([f"{registry.host}/{source}:{t}" for t in digests], tags=[f"{registry.host}/{target}:1.4"])
    [pushed] = result.pushed
    assert pushed.count(BlobAction.UPLOAD) == 0
    assert pushed.count(BlobAction.MOUNT) == len(pushed.blobs)
    mounts = [r for r in writes(registry, before) if "mount=" in r[1]]
    assert len(mounts) == len(pushed.blobs)
    assert all(r[2] == 201 for r in mounts)
    index = skopeo_pull(registry, f"{target}:1.4", tmp_path / "pulled")
    assert {m["digest"] for m in index["manifests"]} == set(digests.values())  # type: ignore[attr-defined]


def test_across_registries_blobs_stream_and_digests_survive(
    registry: RegistryServer, token_registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = unique("team/app")
    digests = per_arch(token_registry, repo, tmp_path)
    target = unique("mirror/app")
    # the source registry's credentials come from docker's config; --username would belong to the target
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(f"alice:{USERS['alice']}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {token_registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    result = ocimerge.create(
        [f"{token_registry.host}/{repo}:{t}" for t in digests], tags=[f"{registry.host}/{target}:1.4"]
    )
    [pushed] = result.pushed
    assert pushed.count(BlobAction.COPY) == len(pushed.blobs)
    assert all(b.source == f"{token_registry.host}/{repo}" for b in pushed.blobs)
    assert pushed.bytes_uploaded == sum(b.size for b in pushed.blobs)
    index = skopeo_pull(registry, f"{target}:1.4", tmp_path / "pulled")
    assert {m["digest"] for m in index["manifests"]} == set(digests.values())  # type: ignore[attr-defined]
    assert ocimerge.verify(str(tmp_path / "pulled")).ok


def test_mixed_local_and_registry_sources(registry: RegistryServer, tmp_path: Path) -> None:
    repo = unique("team/mixed")
    image = Image(architecture="arm64", variant="v8")
    path = oci_layout([image], names={0: "v"}, shape="manifest").write_dir(str(tmp_path / "arm64"))
    skopeo_push(registry, f"oci:{path}:v", f"{repo}:arm64")
    local = oci_layout([Image()]).write_tar(str(tmp_path / "amd64.tar"))
    result = ocimerge.create([local, f"docker://{registry.host}/{repo}:arm64"], tags=[f"{registry.host}/{repo}:multi"])
    assert sorted(str(i.platform) for i in result.images) == ["linux/amd64", "linux/arm64/v8"]
    with pytest.raises(PlatformConflictError, match="linux/arm64"):
        ocimerge.create([f"docker://{registry.host}/{repo}:arm64", f"{path}:v"], dry_run=True)


def test_index_source_flattened_filtered_with_attestations(registry: RegistryServer, tmp_path: Path) -> None:
    repo = unique("team/bk")
    images = [Image(architecture=a, variant=v) for a, v in PLATFORMS]
    layout = oci_layout(images, attestations=True, names={0: "all"}).write_dir(str(tmp_path / "bk"))
    skopeo_push(registry, f"oci:{layout}:all", f"{repo}:all", all_=True)
    result = ocimerge.create(
        [f"docker://{registry.host}/{repo}:all"],
        tags=[f"{registry.host}/{repo}:two"],
        platforms=[ocimerge.Platform.parse("linux/amd64"), ocimerge.Platform.parse("linux/arm/v7")],
    )
    assert sorted(str(i.platform) for i in result.images) == ["linux/amd64", "linux/arm/v7"]
    index = json.loads(result.index.raw)
    attestations = [m for m in index["manifests"] if m["platform"]["os"] == "unknown"]
    images_listed = [m["digest"] for m in index["manifests"] if m["platform"]["os"] != "unknown"]
    assert sorted(a["annotations"]["vnd.docker.reference.digest"] for a in attestations) == sorted(images_listed)
    shown = subprocess.run(
        [sys.executable, "-m", "ocimerge", "inspect", "--json", f"docker://{registry.host}/{repo}:two"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    [entry] = json.loads(shown.stdout)["entries"]
    assert all(len(i["attestations"]) == 1 for i in entry["images"])
    dropped = ocimerge.create(
        [f"docker://{registry.host}/{repo}:all"], dry_run=True, attestations=ocimerge.AttestationPolicy.DROP
    )
    assert all(m["platform"]["os"] != "unknown" for m in json.loads(dropped.index.raw)["manifests"])


# -- the command line: templates, spec files, plans, metadata ---------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocimerge", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ},
    )


def test_template_with_ignore_missing_and_metadata(registry: RegistryServer, tmp_path: Path) -> None:
    repo = unique("team/tpl")
    digests = per_arch(registry, repo, tmp_path)
    metadata = tmp_path / "meta.json"
    result = cli(
        "create",
        "--template",
        f"{registry.host}/{repo}:1.4-ARCHVARIANT",
        "--platforms",
        "linux/amd64,linux/arm64/v8,linux/arm/v7,linux/s390x",
        "--ignore-missing",
        "-t",
        f"{registry.host}/{repo}:1.4",
        "--metadata-file",
        str(metadata),
    )
    assert result.returncode == 0, result.stderr
    assert "s390x" in result.stderr
    assert "skipped" in result.stderr
    meta = json.loads(metadata.read_text())
    with Registry(registry.host) as client:
        head = client.manifest_head(Reference.parse(f"{client.host}/{repo}:1.4"))
    assert head is not None
    assert meta["containerimage.digest"] == str(head.digest)
    assert len(meta["ocimerge"]["manifests"]) == len(digests)
    missing = cli(
        "create",
        "--template",
        f"{registry.host}/{repo}:1.4-ARCHVARIANT",
        "--platforms",
        "linux/amd64,linux/s390x",
        "--dry-run",
    )
    assert missing.returncode == 3
    assert "1.4-s390x" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_spec_file_and_dry_run_plan(registry: RegistryServer, tmp_path: Path) -> None:
    repo = unique("team/spec")
    digests = per_arch(registry, repo, tmp_path)
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "image": f"{registry.host}/{unique('team/out')}:2.0",
                "tags": ["latest"],
                "manifests": [
                    {
                        "image": f"{registry.host}/{repo}:1.4-amd64",
                        "platform": {"os": "linux", "architecture": "amd64"},
                    },
                    {"image": f"docker://{registry.host}/{repo}:1.4-arm64v8", "platform": "linux/arm64/v8"},
                ],
                "annotations": {"org.opencontainers.image.source": "https://example.invalid/app"},
            }
        )
    )
    before = len(registry.requests())
    plan = cli("create", "--spec", str(spec), "--dry-run")
    assert plan.returncode == 0, plan.stderr
    # stdout is the index's exact bytes; the digest and the plan go to stderr
    raw = plan.stdout.encode()
    notes = plan.stderr.splitlines()
    assert f"Digest: {ocimerge.Digest.of(raw)}" in notes
    assert json.loads(raw)["annotations"] == {"org.opencontainers.image.source": "https://example.invalid/app"}
    assert any(line.strip().startswith("mount") for line in notes)
    assert writes(registry, before) == []
    done = cli("create", "--spec", str(spec), "--json", "-q")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["digest"] == str(ocimerge.Digest.of(raw))
    assert payload["pushed"][0]["tags"] == ["2.0", "latest"]
    assert {m["digest"] for m in payload["manifests"]} == {digests["1.4-amd64"], digests["1.4-arm64v8"]}


# -- bad input ---------------------------------------------------------------------------------


def test_missing_source_tag_is_named(registry: RegistryServer) -> None:
    repo = unique("team/none")
    with pytest.raises(MissingSourceError, match=f"{repo}:nope"):
        ocimerge.create([f"docker://{registry.host}/{repo}:nope"], dry_run=True)


def test_unauthorised_source_registry_names_registry_and_credentials(
    token_registry: RegistryServer, tmp_path: Path
) -> None:
    repo = unique("private/app")
    per_arch(token_registry, repo, tmp_path)
    with pytest.raises(AuthError) as caught:
        ocimerge.create([f"docker://{token_registry.host}/{repo}:1.4-amd64"], dry_run=True)
    message = str(caught.value)
    assert token_registry.host in message
    assert "anonymous" in message
    with pytest.raises(AuthError) as wrong:
        ocimerge.create(
            [f"docker://{token_registry.host}/{repo}:1.4-amd64"],
            dry_run=True,
            registry_options=RegistryOptions(username="alice", password="wrong-pass-77"),
        )
    assert "--username/--password-stdin" in str(wrong.value)
    assert "wrong-pass-77" not in str(wrong.value)


# -- edge cases a real registry cannot be made to produce (MockTransport) ---------------------------


def _mock_pool(documents: dict[str, tuple[bytes, str]]) -> RegistryPool:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        reference = request.url.path.rsplit("/", 1)[-1]
        if reference in documents:
            body, media_type = documents[reference]
            return httpx.Response(200, content=body, headers={"Content-Type": media_type})
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})

    pool = RegistryPool()
    pool._clients["reg.example"] = Registry("reg.example", transport=httpx.MockTransport(handle), credentials=None)
    return pool


def load_remote(reference: Reference, pool: RegistryPool) -> ocimerge.ImageSet:
    """Read a registry image the way every command does: open it as a source, walk it."""
    spec = parse_source(f"docker://{reference}")
    with open_source(spec, pool.get) as source:
        return load(spec, source)


def test_schema_1_source_is_refused_with_the_way_out() -> None:
    schema1 = json.dumps({"schemaVersion": 1, "name": "a", "tag": "old", "fsLayers": []}).encode()
    with (
        _mock_pool({"old": (schema1, "application/vnd.docker.distribution.manifest.v1+prettyjws")}) as pool,
        pytest.raises(ocimerge.UnsupportedMediaTypeError, match="schema 1 is not supported; re-push"),
    ):
        load_remote(Reference.parse("reg.example/team/a:old"), pool)


def test_source_index_with_missing_children_is_an_error() -> None:
    child = Image()
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [child.entry()]}
    ).encode()
    with (
        _mock_pool({"1.0": (index, "application/vnd.oci.image.index.v1+json")}) as pool,
        pytest.raises(MissingSourceError, match="does not have"),
    ):
        load_remote(Reference.parse("reg.example/team/a:1.0"), pool)


def test_push_copies_a_registry_image_as_it_is(registry: RegistryServer, tmp_path: Path) -> None:
    repo = unique("team/src")
    images = [Image(architecture=a, variant=v) for a, v in PLATFORMS[:2]]
    layout = oci_layout(images, attestations=True, names={0: "all"}).write_dir(str(tmp_path / "bk"))
    skopeo_push(registry, f"oci:{layout}:all", f"{repo}:all", all_=True)
    with Registry(registry.host) as client:
        source_root = client.manifest_head(Reference.parse(f"{client.host}/{repo}:all"))
    assert source_root is not None
    target = unique("team/copy")
    result = ocimerge.push(f"docker://{registry.host}/{repo}:all", [f"{registry.host}/{target}:all"])
    assert result.root.digest == source_root.digest
    [pushed] = result.pushed
    assert pushed.count(BlobAction.MOUNT) == len(pushed.blobs)
    index = skopeo_pull(registry, f"{target}:all", tmp_path / "pulled")
    assert len(index["manifests"]) == 4  # type: ignore[arg-type]


def test_a_corrupted_registry_blob_is_caught_by_verify_and_in_transit(
    registry: RegistryServer, relative_registry: RegistryServer, tmp_path: Path
) -> None:
    repo = unique("team/verify")
    image = Image(gzip_layers=False, layers=[os.urandom(50_000)])
    path = oci_layout([image]).write_tar(str(tmp_path / "v.tar"))
    ocimerge.push(path, [f"{registry.host}/{repo}:1"])
    assert ocimerge.verify(f"docker://{registry.host}/{repo}:1").ok
    # flip one byte of the layer as the registry stores it: it serves what it has, unchecked
    data = registry.blob_file(json.loads(image.manifest)["layers"][0]["digest"])
    content = bytearray(data.read_bytes())
    content[100] ^= 0xFF
    data.write_bytes(bytes(content))
    report = ocimerge.verify(f"docker://{registry.host}/{repo}:1")
    assert not report.ok
    assert any("does not match its digest" in p for p in report.problems)
    shown = cli("verify", f"docker://{registry.host}/{repo}:1")
    assert shown.returncode == 3
    assert "problem:" in shown.stdout
    # copying it to another registry fails in transit, and nothing is tagged there
    target = unique("mirror/verify")
    with pytest.raises(ocimerge.DigestMismatchError):
        ocimerge.create([f"docker://{registry.host}/{repo}:1"], tags=[f"{relative_registry.host}/{target}:1"])
    with Registry(relative_registry.host) as client:
        assert client.manifest_head(Reference.parse(f"{client.host}/{target}:1")) is None


# -- referrers: what finding them costs ----------------------------------------------------------


def test_finding_referrers_costs_one_probe_and_one_tag_list_per_source(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """[REFERRERS-9] Three per-arch sources with nothing attached: per source, the referrers API
    is asked once (Distribution: a 404, then the fallback tag's 404) and the tags are listed
    once; no cosign tag is asked for by name, since the list says there is none. With
    ``--referrers none`` none of these requests is sent."""
    repo = unique("team/app")
    digests = per_arch(registry, repo, tmp_path)
    sources = [f"docker://{registry.host}/{repo}:{t}" for t in digests]

    def discovery(since: int) -> list[tuple[str, str, int]]:
        return [
            r
            for r in registry.requests()[since:]
            if "/referrers/" in r[1] or "/tags/list" in r[1] or "/manifests/sha256-" in r[1]
        ]

    before = len(registry.requests())
    result = ocimerge.create(sources, dry_run=True)
    assert result.referrers == ()
    found = discovery(before)
    probes = [r for r in found if "/referrers/" in r[1]]
    listings = [r for r in found if "/tags/list" in r[1]]
    by_tag = [r for r in found if "/manifests/sha256-" in r[1]]
    assert len(listings) == len(sources)
    if registry.is_distribution:
        # no referrers API: its router answers 404 without a log line, so the probe is not
        # listed; the fallback tag asked for once per source (404) says it was made
        assert probes == []
        assert len(by_tag) == len(sources)
        assert {r[2] for r in by_tag} == {404}
    else:
        assert len(probes) == len(sources)
        assert {r[2] for r in probes} == {200}
        assert by_tag == []
    before = len(registry.requests())
    ocimerge.create(sources, dry_run=True, referrers=False)
    assert discovery(before) == []
