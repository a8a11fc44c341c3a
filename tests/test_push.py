"""Pushing to a real registry (CNCF Distribution) in its three auth modes, checked by skopeo.

Every registry test here runs twice (issue 10 item 4): against Distribution (``/usr/bin/docker-registry``
or its container, see ``conftest.py``), whose token-auth registry gets its tokens from the test
suite's token server, and against :class:`ocimerge.testing.Registry` in the same modes (its
tokens from its own endpoint). A test that holds on Distribution only says why in its marker.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import ocimerge
from imagebuilder import Image, docker_save, oci_layout, sample_images
from ocimerge.errors import AuthError, BlobMissingError
from ocimerge.registry.api import Registry, RegistryOptions
from ocimerge.registry.transport import RetryPolicy, TLSOptions
from ocimerge.sinks.registry import BlobAction
from registries import USERS, Fault, FaultProxy, RegistryServer
from signing import make_key

pytestmark = pytest.mark.registry_backends("distribution", "inprocess")
#: the suite's TokenServer is what Distribution trusts; the in-process registry issues its own tokens
SUITE_TOKEN_SERVER = pytest.mark.registry_backends(
    "distribution", reason="looks at the suite's TokenServer, which only Distribution uses"
)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    images = sample_images()
    return [
        oci_layout([image], attestations=(i == 0)).write_tar(str(tmp_path / f"in{i}.tar"))
        for i, image in enumerate(images)
    ]


def alice(server: RegistryServer, **extra: object) -> RegistryOptions:
    return RegistryOptions(tls=TLSOptions(ca_file=server.ca_file), username="alice", password=USERS["alice"], **extra)  # type: ignore[arg-type]


def skopeo_pull_all(server: RegistryServer, reference: str, dest: Path) -> bytes:
    args = ["skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests", "--src-tls-verify=false"]
    if server.mode not in ("anonymous", "relative"):
        args += ["--src-creds", f"alice:{USERS['alice']}"]
    result = subprocess.run(
        [*args, f"docker://{server.host}/{reference}", f"oci:{dest}:pulled"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return subprocess.run(
        ["skopeo", "--insecure-policy", "inspect", "--raw", f"oci:{dest}:pulled"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocimerge", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=300,
    )


# -- the main job ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["registry", "relative_registry", "tls_registry", "token_registry"])
def test_create_and_push_then_skopeo_pulls_every_digest(
    request: pytest.FixtureRequest, registry_backend: str, mode: str, inputs: list[str], tmp_path: Path
) -> None:
    server: RegistryServer = request.getfixturevalue(mode)
    repo = unique("team/app")
    options = alice(server) if server.mode not in ("anonymous", "relative") else RegistryOptions()
    result = ocimerge.create(inputs, tags=[f"{server.host}/{repo}:1.0"], registry_options=options)
    [pushed] = result.pushed
    assert pushed.tags == ("1.0",)
    assert pushed.count(BlobAction.UPLOAD) == len({str(b.digest) for i in result.images for b in i.blobs()}) + 2
    raw = skopeo_pull_all(server, f"{repo}:1.0", tmp_path / "pulled")
    assert raw == result.index.raw
    index = json.loads(raw)
    ours = {str(d.descriptor.digest) for d in (*result.assembly.manifests, *result.assembly.attestations)}
    assert {m["digest"] for m in index["manifests"]} == ours
    for digest in ours:  # every child skopeo stored hashes to its digest
        data = (tmp_path / "pulled" / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
        assert ocimerge.Digest.of(data) == ocimerge.Digest.parse(digest)


def test_pushing_again_uploads_nothing(registry: RegistryServer, inputs: list[str]) -> None:
    repo = unique("team/again")
    first = ocimerge.create(inputs, tags=[f"{registry.host}/{repo}:1"])
    before = len(registry.requests())
    second = ocimerge.create(inputs, tags=[f"{registry.host}/{repo}:1"])
    assert second.index.descriptor.digest == first.index.descriptor.digest
    [pushed] = second.pushed
    assert pushed.count(BlobAction.UPLOAD) == 0
    assert pushed.count(BlobAction.SKIP) == len(pushed.blobs)
    writes = [r for r in registry.requests()[before:] if r[0] in ("POST", "PUT", "PATCH")]
    assert writes == [], writes


def test_create_push_and_create_o_then_push_give_the_same_index(
    registry: RegistryServer, inputs: list[str], tmp_path: Path
) -> None:
    direct = ocimerge.create(inputs, tags=[f"{registry.host}/{unique('team/direct')}:1"])
    archive = tmp_path / "multi.tar"
    ocimerge.create(inputs, str(archive))
    repo = unique("team/airgap")
    carried = ocimerge.push(str(archive), [f"{registry.host}/{repo}:1"])
    assert carried.root.digest == direct.index.descriptor.digest
    with Registry(registry.host) as client:
        document = client.manifest_get(ocimerge.Reference.parse(f"{client.host}/{repo}:1"))
    raw, media_type = document.raw, document.descriptor.media_type
    assert raw == direct.index.raw
    assert media_type == "application/vnd.oci.image.index.v1+json"


def test_push_single_platform_and_docker_save_as_they_are(registry: RegistryServer, tmp_path: Path) -> None:
    image = Image(architecture="arm64", variant="v8")
    layout = oci_layout([image]).write_tar(str(tmp_path / "one.tar"))
    repo = unique("team/single")
    result = ocimerge.push(layout, [f"{registry.host}/{repo}:v1"])
    assert str(result.root.digest) == image.digest
    save = docker_save([Image(gzip_layers=False)], repo_tags=[["app:1"]]).write_tar(str(tmp_path / "save.tar"))
    saved = ocimerge.push(save, [f"{registry.host}/{repo}:saved"])
    with Registry(registry.host) as client:
        assert client.manifest_head(ocimerge.Reference.parse(f"{client.host}/{repo}:saved")).digest == saved.root.digest  # type: ignore[union-attr]


def test_several_tags_and_repositories_in_one_run_mount_within_the_registry(
    registry: RegistryServer, inputs: list[str]
) -> None:
    a, b = unique("team/a"), unique("team/b")
    result = ocimerge.create(
        inputs, tags=[f"{registry.host}/{a}:1", f"{registry.host}/{a}:latest", f"{registry.host}/{b}:1"]
    )
    first, second = result.pushed
    assert first.tags == ("1", "latest")
    assert first.count(BlobAction.UPLOAD) > 0
    assert second.count(BlobAction.UPLOAD) == 0
    assert second.count(BlobAction.MOUNT) == first.count(BlobAction.UPLOAD)


def test_dry_run_plans_and_writes_nothing(registry: RegistryServer, inputs: list[str]) -> None:
    repo = unique("team/dry")
    before = len(registry.requests())
    result = ocimerge.create(inputs, tags=[f"{registry.host}/{repo}:1"], dry_run=True)
    [plan] = result.pushed
    assert plan.dry_run
    assert plan.count(BlobAction.UPLOAD) > 0
    assert all(r[0] in ("GET", "HEAD") for r in registry.requests()[before:])
    with Registry(registry.host) as client:
        assert client.manifest_head(ocimerge.Reference.parse(f"{client.host}/{repo}:1")) is None


def test_chunked_upload(registry: RegistryServer, tmp_path: Path) -> None:
    image = Image(gzip_layers=False, layers=[os.urandom(300_000)])
    path = oci_layout([image]).write_tar(str(tmp_path / "big.tar"))
    repo = unique("team/chunks")
    before = len(registry.requests())
    ocimerge.push(path, [f"{registry.host}/{repo}:1"], registry_options=RegistryOptions(chunk_size=100_000))
    patches = [r for r in registry.requests()[before:] if r[0] == "PATCH"]
    assert len(patches) >= 3
    with Registry(registry.host) as client:
        assert client.blob_exists(repo, ocimerge.Digest.parse(json.loads(image.manifest)["layers"][0]["digest"]))


# -- auth -----------------------------------------------------------------------------------


@SUITE_TOKEN_SERVER
def test_token_server_sees_only_the_scopes_needed(token_registry: RegistryServer, inputs: list[str]) -> None:
    assert token_registry.token_server is not None
    seen = len(token_registry.token_server.requests)
    repo = unique("team/scoped")
    ocimerge.create(inputs, tags=[f"{token_registry.host}/{repo}:1"], registry_options=alice(token_registry))
    asked = [r["scopes"] for r in token_registry.token_server.requests[seen:]]
    assert asked == [[f"repository:{repo}:pull,push"]]


@SUITE_TOKEN_SERVER
def test_second_repository_asks_pull_on_its_mount_source(token_registry: RegistryServer, inputs: list[str]) -> None:
    assert token_registry.token_server is not None
    seen = len(token_registry.token_server.requests)
    a, b = unique("team/src"), unique("team/dst")
    result = ocimerge.create(
        inputs,
        tags=[f"{token_registry.host}/{a}:1", f"{token_registry.host}/{b}:1"],
        registry_options=alice(token_registry),
    )
    assert result.pushed[1].count(BlobAction.MOUNT) == result.pushed[0].count(BlobAction.UPLOAD)
    scopes = {s for r in token_registry.token_server.requests[seen:] for s in r["scopes"]}
    assert f"repository:{a}:pull" in scopes or f"repository:{a}:pull,push" in scopes
    assert not any(s.startswith(f"repository:{b}") and "delete" in s for s in scopes)


@SUITE_TOKEN_SERVER
def test_identity_token_uses_the_refresh_grant(
    token_registry: RegistryServer, inputs: list[str], tmp_path: Path
) -> None:
    assert token_registry.token_server is not None
    server = token_registry.token_server
    refresh = server.answer("alice", [], offline=True)["refresh_token"]
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"auths": {token_registry.host: {"identitytoken": refresh}}}))
    seen = len(server.requests)
    result = cli(
        "create",
        "-q",
        "--json",
        "-t",
        f"{token_registry.host}/{unique('team/idt')}:1",
        *inputs,
        env={"DOCKER_CONFIG": str(config)},
    )
    assert result.returncode == 0, result.stderr
    grants = [r.get("grant") for r in server.requests[seen:]]
    assert grants
    assert all(g == "refresh_token" for g in grants)
    assert refresh not in result.stdout + result.stderr


def test_docker_config_auth_and_credential_helper(
    tls_registry: RegistryServer, inputs: list[str], tmp_path: Path
) -> None:
    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(f"alice:{USERS['alice']}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {f"https://{tls_registry.host}/v2/": {"auth": auth}}}))
    common = ["--ca-file", str(tls_registry.ca_file)]
    result = cli(
        "create",
        "-q",
        "-t",
        f"{tls_registry.host}/{unique('team/cfg')}:1",
        *common,
        *inputs,
        env={"DOCKER_CONFIG": str(config)},
    )
    assert result.returncode == 0, result.stderr
    # a credential helper, speaking docker's protocol, found on PATH
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-ocimergetest"
    helper.write_text(
        "#!/bin/sh\nread server\n"
        f'printf \'{{"ServerURL":"%s","Username":"alice","Secret":"{USERS["alice"]}"}}\' "$server"\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    (config / "config.json").write_text(json.dumps({"credHelpers": {tls_registry.host: "ocimergetest"}}))
    result = cli(
        "create",
        "-q",
        "-t",
        f"{tls_registry.host}/{unique('team/helper')}:1",
        *common,
        *inputs,
        env={"DOCKER_CONFIG": str(config), "PATH": f"{bindir}:{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("mode", ["tls_registry", "token_registry"])
def test_wrong_password_is_a_clear_auth_error(
    request: pytest.FixtureRequest, registry_backend: str, mode: str, inputs: list[str]
) -> None:
    server: RegistryServer = request.getfixturevalue(mode)
    secret = "not-the-password-9f2c"
    args = ["create", "-t", f"{server.host}/{unique('team/x')}:1", "--username", "alice", "--password-stdin", *inputs]
    if server.ca_file:
        args += ["--ca-file", server.ca_file]
    result = cli(*args, stdin=secret + "\n")
    assert result.returncode == 4, result.stderr
    assert server.host in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert secret not in result.stderr + result.stdout


@pytest.mark.parametrize("mode", ["token_registry"])
def test_pull_only_user_is_denied(
    request: pytest.FixtureRequest, registry_backend: str, mode: str, inputs: list[str]
) -> None:
    server: RegistryServer = request.getfixturevalue(mode)
    repo = unique("team/nopush")
    options = RegistryOptions(username="bob", password=USERS["bob"])
    with pytest.raises(AuthError, match=repo.split("/")[1]) as caught:
        ocimerge.create(inputs, tags=[f"{server.host}/{repo}:1"], registry_options=options)
    assert "denied" in str(caught.value).lower() or "authentication failed" in str(caught.value)
    assert USERS["bob"] not in str(caught.value)


def test_tls_needs_the_ca_or_insecure(tls_registry: RegistryServer, inputs: list[str]) -> None:
    target = f"{tls_registry.host}/{unique('team/tls')}:1"
    result = cli(
        "create", "-t", target, "--username", "alice", "--password-stdin", *inputs, stdin=USERS["alice"] + "\n"
    )
    assert result.returncode == 4
    assert "CERTIFICATE" in result.stderr.upper() or "SSL" in result.stderr.upper()
    insecure = cli(
        "create",
        "-q",
        "-t",
        target,
        "--insecure",
        "--username",
        "alice",
        "--password-stdin",
        *inputs,
        stdin=USERS["alice"] + "\n",
    )
    assert insecure.returncode == 0, insecure.stderr


def test_unreachable_registry(inputs: list[str]) -> None:
    from registries import free_port

    result = cli("create", "-t", f"127.0.0.1:{free_port()}/team/app:1", *inputs)
    assert result.returncode == 4
    assert "ocimerge: error:" in result.stderr
    assert "Traceback" not in result.stderr


# -- failures in the middle -------------------------------------------------------------------

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


@pytest.mark.parametrize("status", [500, None], ids=["500", "dropped-connection"])
def test_a_failed_blob_upload_is_retried(registry: RegistryServer, inputs: list[str], status: int | None) -> None:
    proxy = FaultProxy(registry.host)
    try:
        proxy.faults.append(Fault("PUT", "/blobs/uploads/", times=1, status=status))
        repo = unique("team/retry")
        result = ocimerge.create(
            inputs, tags=[f"{proxy.host}/{repo}:1"], registry_options=RegistryOptions(retry=FAST_RETRY), jobs=1
        )
        assert proxy.faults[0].seen == 1
        assert result.pushed[0].tags == ("1",)
    finally:
        proxy.stop()


def test_interrupted_push_leaves_no_tag_and_a_rerun_uploads_only_what_is_missing(
    registry: RegistryServer, inputs: list[str]
) -> None:
    proxy = FaultProxy(registry.host)
    try:
        repo = unique("team/interrupted")
        # every manifest PUT fails: the blobs land, the children and the tag do not
        proxy.faults.append(Fault("PUT", "/manifests/", times=1000, status=503))
        with pytest.raises(ocimerge.RemoteError):
            ocimerge.create(inputs, tags=[f"{proxy.host}/{repo}:1"], registry_options=RegistryOptions(retry=FAST_RETRY))
        with Registry(registry.host) as client:
            assert client.manifest_head(ocimerge.Reference.parse(f"{client.host}/{repo}:1")) is None
        proxy.faults.clear()
        result = ocimerge.create(inputs, tags=[f"{proxy.host}/{repo}:1"])
        [pushed] = result.pushed
        assert pushed.count(BlobAction.UPLOAD) == 0
        assert pushed.tags == ("1",)
    finally:
        proxy.stop()


def test_partial_archive_is_not_tagged_when_children_are_missing(registry: RegistryServer, tmp_path: Path) -> None:
    # a partial export (like containerd's docker save of one platform): the index names an
    # arm64 manifest the archive does not hold
    present, absent = Image(), Image(architecture="arm64")
    layout = oci_layout([present, absent])
    for digest in absent.blobs:
        del layout.files[f"blobs/sha256/{digest.split(':')[1]}"]
    partial = layout.write_tar(str(tmp_path / "partial.tar"))
    repo = unique("library/hello")
    with pytest.raises(BlobMissingError, match="refusing to tag"):
        ocimerge.push(str(partial), [f"{registry.host}/{repo}:latest"])
    with Registry(registry.host) as client:
        assert client.manifest_head(ocimerge.Reference.parse(f"{client.host}/{repo}:latest")) is None


# -- inspect and the CLI ------------------------------------------------------------------------


def test_remote_inspect_and_raw(registry: RegistryServer, inputs: list[str]) -> None:
    repo = unique("team/inspect")
    result = ocimerge.create(inputs, tags=[f"{registry.host}/{repo}:1"])
    shown = cli("inspect", "--json", f"{registry.host}/{repo}:1")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    [entry] = report["entries"]
    assert entry["root"]["digest"] == str(result.index.descriptor.digest)
    assert sorted(i["platform"] for i in entry["images"]) == ["linux/amd64", "linux/arm/v7", "linux/arm64/v8"]
    assert sum(len(i["attestations"]) for i in entry["images"]) == 1
    raw = cli("inspect", "--raw", f"docker://{registry.host}/{repo}:1")
    assert raw.stdout.encode() == result.index.raw
    table = cli("inspect", f"{registry.host}/{repo}:1")
    assert "linux/arm64/v8" in table.stdout


def test_cli_json_and_secrets_never_printed(tls_registry: RegistryServer, inputs: list[str]) -> None:
    repo = unique("team/json")
    result = cli(
        "create",
        "--json",
        "-t",
        f"{tls_registry.host}/{repo}:1",
        "--ca-file",
        str(tls_registry.ca_file),
        "--username",
        "alice",
        "--password-stdin",
        *inputs,
        stdin=USERS["alice"] + "\n",
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    [pushed] = payload["pushed"]
    assert pushed["tags"] == ["1"]
    assert pushed["blobs"]["uploaded"] > 0
    assert {m["platform"] for m in payload["manifests"]} == {"linux/amd64", "linux/arm64/v8", "linux/arm/v7"}
    assert USERS["alice"] not in result.stdout + result.stderr


def test_skopeo_is_installed() -> None:
    assert shutil.which("skopeo"), "skopeo is needed: apt-get install skopeo"


def test_readme_library_example_runs(registry: RegistryServer, tmp_path: Path) -> None:
    import re
    import runpy

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    [code] = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "import ocimerge" in block]
    for arch, image in (
        ("amd64", Image()),
        ("arm64", Image(architecture="arm64")),
        ("riscv64", Image(architecture="riscv64")),
    ):
        oci_layout([image]).write_tar(str(tmp_path / f"app-{arch}.tar"))
    private, public = make_key("ecdsa")  # the example signs with cosign.key, checks with cosign.pub
    (tmp_path / "cosign.key").write_bytes(private)
    (tmp_path / "cosign.pub").write_bytes(public)
    script = tmp_path / "example.py"
    script.write_text(code.replace("localhost:5000", registry.host))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        runpy.run_path(str(script))
    finally:
        os.chdir(cwd)
    with Registry(registry.host) as client:
        assert client.manifest_head(ocimerge.Reference.parse(f"{client.host}/team/app:1.0")) is not None
        assert client.manifest_head(ocimerge.Reference.parse(f"{client.host}/team/app:1.0-archive")) is not None
        # the append added riscv64 to what team/app:1.0 held
        index = json.loads(client.manifest_get(ocimerge.Reference.parse(f"{client.host}/team/app:1.0")).raw)
        assert sorted(e["platform"]["architecture"] for e in index["manifests"]) == ["amd64", "arm64", "riscv64"]


def test_relative_locations_and_chunks(relative_registry: RegistryServer, tmp_path: Path) -> None:
    image = Image(gzip_layers=False, layers=[os.urandom(250_000)])
    path = oci_layout([image]).write_tar(str(tmp_path / "rel.tar"))
    repo = unique("team/relative")
    ocimerge.push(path, [f"{relative_registry.host}/{repo}:1"], registry_options=RegistryOptions(chunk_size=100_000))
    with Registry(relative_registry.host) as client:
        raw = client.manifest_get(ocimerge.Reference.parse(f"{client.host}/{repo}:1")).raw
    assert raw == image.manifest


# -- [PROFILE-8] the upload flags that override a registry's profile ----------------------------


def test_max_request_size_keeps_every_body_under_a_proxys_limit(registry: RegistryServer, tmp_path: Path) -> None:
    """``--max-request-size`` is known in advance: bigger blobs go in chunks, and no 413 is ever seen."""
    image = Image(gzip_layers=False, layers=[os.urandom(3_000_000)])
    path = oci_layout([image]).write_tar(str(tmp_path / "big.tar"))
    proxy = FaultProxy(registry.host)
    try:
        proxy.max_body = 1_500_000  # a corporate proxy's limit
        repo = unique("team/limited")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "ocimerge",
                "push",
                "-q",
                "--max-request-size",
                "1M",
                path,
                f"{proxy.host}/{repo}:1",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert max(length for _method, length in proxy.bodies) <= 1024 * 1024
        assert not [entry for entry in proxy.log if entry[2] == 413]
    finally:
        proxy.stop()
    with Registry(registry.host) as client:
        assert client.manifest_head(ocimerge.Reference.parse(f"{client.host}/{repo}:1")) is not None


def test_no_mount_uploads_into_a_second_repository(registry: RegistryServer, inputs: list[str]) -> None:
    """``--no-mount``: a second repository of the run gets its blobs uploaded, never mounted."""
    first, second = unique("team/mount-a"), unique("team/mount-b")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ocimerge",
            "create",
            "--json",
            "--no-mount",
            *inputs,
            "-t",
            f"{registry.host}/{first}:1",
            "-t",
            f"{registry.host}/{second}:1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pushed = json.loads(done.stdout)["pushed"]
    assert [p["blobs"]["mounted"] for p in pushed] == [0, 0]
    assert pushed[1]["blobs"]["uploaded"] == pushed[0]["blobs"]["uploaded"] > 0
