"""Messages for what goes wrong with registries [MSG-1] .. [MSG-4], met for real where we can.

Real servers only, all on 127.0.0.1: the suite's Distribution in its three modes and a closed
port. What no loopback server can produce — a name that does not resolve (resolving one would
send a DNS query off this machine) and a plain-HTTP server on a non-loopback host (loopback
registries fall back to HTTP by design, [TLS-1]) — comes from an ``httpx.MockTransport``
raising the very error httpx raises for it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import uuid
from pathlib import Path

import httpx
import pytest

import ocimerge
from hostile import Outcome, assert_one_line_error, run_cli
from imagebuilder import oci_layout, sample_images
from ocimerge.errors import RemoteError, TransportError, UnauthorizedError
from ocimerge.model.reference import Reference
from ocimerge.operations import PushSourceResult, partial_result
from ocimerge.registry.api import Registry, RegistryOptions
from ocimerge.registry.transport import RetryPolicy, TLSOptions, transport_error
from ocimerge.sinks.registry import PushFailure
from registries import ACL, USERS, RegistryServer


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def archive(tmp_path: Path) -> str:
    return oci_layout([sample_images()[0]]).write_tar(str(tmp_path / "app.tar"))


def ocimerge_cli(tmp_path: Path, *args: str, password: str | None = None) -> Outcome:
    """``ocimerge ARGS`` with an empty docker config and no ``OCIMERGE_*`` credentials."""
    env = {"DOCKER_CONFIG": str(tmp_path / "docker"), "OCIMERGE_USERNAME": "", "OCIMERGE_PASSWORD": ""}
    stdin = f"{password}\n".encode() if password is not None else b""
    return run_cli(args, env=env, stdin=stdin, timeout=120)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: bound, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- [MSG-1] no credentials found ---------------------------------------------------------------


def test_a_401_without_credentials_says_where_we_looked(
    tls_registry: RegistryServer, archive: str, tmp_path: Path
) -> None:
    assert tls_registry.ca_file is not None
    target = f"{tls_registry.host}/{unique('team/app')}:1"
    outcome = ocimerge_cli(tmp_path, "push", "--ca-file", tls_registry.ca_file, archive, target)
    assert_one_line_error(
        outcome,
        4,
        tls_registry.host,
        "refused to anonymous access (401) and no credentials were found",
        "--username/--password-stdin",
        "OCIMERGE_USERNAME/OCIMERGE_PASSWORD",
        f"{tmp_path}/docker/config.json (no such file)",
        f"docker login {tls_registry.host}",
    )


def test_the_docker_config_keys_read_are_named(tls_registry: RegistryServer, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"auths": {"other.example": {"auth": ""}}}))
    monkey = pytest.MonkeyPatch()
    monkey.setenv("DOCKER_CONFIG", str(config))
    monkey.delenv("OCIMERGE_USERNAME", raising=False)
    monkey.delenv("OCIMERGE_PASSWORD", raising=False)
    try:
        options = RegistryOptions(tls=TLSOptions(ca_file=tls_registry.ca_file))
        with Registry(tls_registry.host, options) as client, pytest.raises(UnauthorizedError) as caught:
            client.manifest_head(Reference.parse(f"{tls_registry.host}/team/app:1"))
    finally:
        monkey.undo()
    host = tls_registry.host
    assert f"{config}/config.json (credHelpers['{host}'], credsStore, auths['{host}'])" in str(caught.value)


def test_refused_credentials_keep_their_own_message(tls_registry: RegistryServer, archive: str, tmp_path: Path) -> None:
    assert tls_registry.ca_file is not None
    target = f"{tls_registry.host}/{unique('team/app')}:1"
    args = ["push", "--ca-file", tls_registry.ca_file, "--username", "alice", "--password-stdin", archive, target]
    line = assert_one_line_error(ocimerge_cli(tmp_path, *args, password="wrong"), 4, tls_registry.host)
    assert "no credentials were found" not in line


@pytest.mark.parametrize(
    ("repository", "refusal"),
    [
        ("team/app", "anonymous access may not pull,push {repo}: the token service granted nothing"),
        ("public/app", "anonymous access may pull {repo} but not push: the token service granted pull only"),
    ],
    ids=["granted-nothing", "granted-pull-only"],
)
def test_a_token_registry_without_credentials_says_where_we_looked(
    token_registry: RegistryServer, archive: str, tmp_path: Path, repository: str, refusal: str
) -> None:
    # [TOKEN-9] meets [MSG-1]: the token service answered 200 to the anonymous request, with
    # less than a push needs (the suite's ACL lets anyone pull public/*), and Distribution refused
    (tmp_path / "docker").mkdir()  # an empty docker config directory
    repo = unique(repository)
    outcome = ocimerge_cli(tmp_path, "push", archive, f"{token_registry.host}/{repo}:1")
    assert_one_line_error(
        outcome,
        4,
        f"{token_registry.host}: access denied: {refusal.format(repo=repo)}, and no credentials were found",
        "looked at --username/--password-stdin, OCIMERGE_USERNAME/OCIMERGE_PASSWORD",
        f"{tmp_path}/docker/config.json (no such file)",
        f"docker login {token_registry.host}",
    )
    assert "ask for the right" not in outcome.stderr  # another account's rights are not the fix


def test_a_token_service_refusing_anonymous_access_says_where_we_looked(
    token_registry: RegistryServer, archive: str, tmp_path: Path
) -> None:
    assert token_registry.token_server is not None
    token_registry.token_server.failures = [401]  # the suite's token service refuses the anonymous GET
    (tmp_path / "docker").mkdir()
    outcome = ocimerge_cli(tmp_path, "push", archive, f"{token_registry.host}/{unique('team/app')}:1")
    assert_one_line_error(
        outcome,
        4,
        f"{token_registry.host}: the token service 127.0.0.1 refused anonymous access (401)",
        "and no credentials were found; looked at --username/--password-stdin",
        f"{tmp_path}/docker/config.json (no such file)",
        f"docker login {token_registry.host}",
    )
    assert "check the username and password" not in outcome.stderr
    assert token_registry.token_server.failures == []


# -- [MSG-2] connection failures ------------------------------------------------------------------


def test_connection_refused_says_nothing_listens(archive: str, tmp_path: Path) -> None:
    port = closed_port()
    outcome = ocimerge_cli(tmp_path, "push", archive, f"127.0.0.1:{port}/team/app:1")
    assert_one_line_error(outcome, 4, f"nothing listens on 127.0.0.1:{port}", "is the registry running?")


def test_plain_http_to_a_tls_registry_says_drop_plain_http(
    tls_registry: RegistryServer, archive: str, tmp_path: Path
) -> None:
    target = f"{tls_registry.host}/{unique('team/app')}:1"
    outcome = ocimerge_cli(tmp_path, "push", "--plain-http", archive, target)
    assert_one_line_error(outcome, 4, f"{tls_registry.host} speaks HTTPS; drop --plain-http")


def test_an_untrusted_certificate_names_ca_file(tls_registry: RegistryServer, archive: str, tmp_path: Path) -> None:
    outcome = ocimerge_cli(tmp_path, "push", archive, f"{tls_registry.host}/team/app:1")
    assert_one_line_error(outcome, 4, tls_registry.host, "not trusted", "--ca-file")


def test_tls_to_the_real_plain_registry_is_recognised(registry: RegistryServer) -> None:
    # the real OpenSSL failure against Distribution's plain HTTP, named as if the host were
    # not loopback (a loopback registry falls back to HTTP instead, [TLS-1])
    with pytest.raises(httpx.ConnectError) as caught:
        httpx.get(f"https://{registry.host}/v2/", timeout=10)
    message = str(transport_error(caught.value, "reg.example", "API version check"))
    assert f"{registry.host} speaks plain HTTP, not TLS; pass --plain-http if that is intended" in message


def failing(text: str) -> httpx.MockTransport:
    """A network whose every connection fails as httpx fails with ``text``."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(text, request=request)

    return httpx.MockTransport(handler)


def quick(host: str, transport: httpx.MockTransport) -> Registry:
    options = RegistryOptions(retry=RetryPolicy(attempts=2))
    return Registry(host, options, transport=transport, sleep=lambda _s: None)


def test_an_unknown_host_says_it_cannot_be_resolved() -> None:
    # httpx's own text for a failed getaddrinfo, raised by a mock: resolving a real unknown
    # name (registry.invalid) would send a DNS query off this machine
    unknown = failing("[Errno -2] Name or service not known")
    with quick("registry.invalid", unknown) as client, pytest.raises(TransportError) as caught:
        client.ping()
    assert "cannot resolve registry.invalid" in str(caught.value)


def test_tls_to_a_plain_server_elsewhere_says_pass_plain_http() -> None:
    # a non-loopback host: no fallback to HTTP, so the message must give the fix
    text = "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"
    with quick("registry.example:5000", failing(text)) as client, pytest.raises(TransportError) as caught:
        client.ping()
    assert "registry.example:5000 speaks plain HTTP, not TLS; pass --plain-http if that is intended" in str(
        caught.value
    )


def test_a_tls_alert_to_plain_http_says_drop_plain_http(archive: str, tmp_path: Path) -> None:
    # a server on 127.0.0.1 that answers a plain request as some TLS servers do: an alert record
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def answer() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                with connection:
                    connection.recv(65536)
                    connection.sendall(b"\x15\x03\x01\x00\x02\x02\x46")  # TLS 1.0 alert: protocol_version

    threading.Thread(target=answer, daemon=True).start()
    try:
        outcome = ocimerge_cli(tmp_path, "push", "--plain-http", archive, f"127.0.0.1:{port}/team/app:1")
    finally:
        listener.close()
    assert_one_line_error(
        outcome, 4, f"127.0.0.1:{port} did not answer in HTTP", "if it speaks HTTPS, drop --plain-http"
    )


# -- [MSG-3] --ca-file --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "directory", "garbage"])
def test_a_bad_ca_file_is_a_usage_error_naming_it(kind: str, archive: str, tmp_path: Path) -> None:
    path = tmp_path / "ca.crt"
    if kind == "directory":
        path.mkdir()
    elif kind == "garbage":
        path.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    # the port is closed: a usage error must come before any connection is tried
    outcome = ocimerge_cli(tmp_path, "push", "--ca-file", str(path), archive, f"127.0.0.1:{closed_port()}/team/app:1")
    reason = {"missing": "no such file", "directory": "is a directory", "garbage": "not a PEM"}[kind]
    assert_one_line_error(outcome, 2, f"--ca-file {path}", reason)


# -- [MSG-4] several targets ------------------------------------------------------------------------


@pytest.fixture
def bob_pushes_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    """bob may pull anything and push to ``team/ok-*`` only (the token server reads the ACL live)."""
    monkeypatch.setitem(ACL, "bob", [("*", ("pull",)), ("team/ok-*", ("pull", "push"))])


def tags_of(server: RegistryServer, repository: str) -> tuple[str, ...]:
    options = RegistryOptions(username="alice", password=USERS["alice"])
    with Registry(server.host, options) as client:
        return tuple(t for t in ("1", "2") if client.manifest_head(Reference.parse(f"{server.host}/{repository}:{t}")))


@pytest.mark.usefixtures("bob_pushes_ok")
def test_several_targets_one_refused_json_tells_both(
    token_registry: RegistryServer, archive: str, tmp_path: Path
) -> None:
    host = token_registry.host
    refused, allowed = unique("team/no"), unique("team/ok")
    # the refused one first: its failure must not stop the next
    args = ["push", "--json", "--username", "bob", "--password-stdin", archive, f"{host}/{refused}:1"]
    outcome = ocimerge_cli(tmp_path, *args, f"{host}/{allowed}:1", f"{host}/{allowed}:2", password=USERS["bob"])
    assert_one_line_error(outcome, 4, host, refused)
    payload = json.loads(outcome.stdout)
    assert [(p["repository"], p["tags"]) for p in payload["pushed"]] == [(allowed, ["1", "2"])]
    [error] = payload["errors"]
    assert (error["registry"], error["repository"], error["tags"], error["exitCode"]) == (host, refused, ["1"], 4)
    assert host in error["message"]
    assert tags_of(token_registry, allowed) == ("1", "2")
    assert tags_of(token_registry, refused) == ()


@pytest.mark.usefixtures("bob_pushes_ok")
def test_several_targets_one_refused_summary_has_a_line_each(
    token_registry: RegistryServer, archive: str, tmp_path: Path
) -> None:
    host = token_registry.host
    refused, allowed = unique("team/no"), unique("team/ok")
    args = ["create", archive, "-t", f"{host}/{allowed}:1", "-t", f"{host}/{refused}:1"]
    outcome = ocimerge_cli(tmp_path, *args, "--username", "bob", "--password-stdin", password=USERS["bob"])
    assert_one_line_error(outcome, 4, refused)
    lines = outcome.stdout.splitlines()
    pushed = [line for line in lines if line.startswith("Pushed ")]
    assert len(pushed) == 1
    assert pushed[0].startswith(f"Pushed {host}/{allowed}:1@sha256:")  # a reference to copy
    failed = [line for line in lines if line.startswith("Failed ")]
    assert len(failed) == 1
    assert failed[0].startswith(f"Failed {host}/{refused} [1], nothing tagged: {host}")
    assert tags_of(token_registry, allowed) == ("1",)
    assert tags_of(token_registry, refused) == ()


@pytest.mark.usefixtures("bob_pushes_ok")
def test_the_library_raises_the_first_failure_with_the_whole_result(
    token_registry: RegistryServer, archive: str
) -> None:
    host = token_registry.host
    refused, allowed = unique("team/no"), unique("team/ok")
    options = RegistryOptions(username="bob", password=USERS["bob"])
    with pytest.raises(RemoteError) as caught:
        ocimerge.push(archive, [f"{host}/{refused}:1", f"{host}/{allowed}:1"], registry_options=options)
    result = partial_result(caught.value)
    assert isinstance(result, PushSourceResult)
    assert [p.repository for p in result.pushed] == [allowed]
    assert [(f.repository, f.error) for f in result.failed] == [(refused, caught.value)]
    assert isinstance(result.failed[0], PushFailure)
    assert result.to_json()["errors"][0]["repository"] == refused
