"""[CRED-1][CRED-5][CRED-6] login/logout against real registries, containers' auth.json, --debug."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import stat
import sys
from pathlib import Path

import pytest

import ocimerge
from imagebuilder import oci_layout, sample_images
from ocimerge.cli.login import COMMANDS, add_parsers, debug_options
from ocimerge.errors import AuthError
from ocimerge.registry.credentials import resolve_credentials
from ocimerge.registry.login import login, logout
from ocimerge.registry.options import RegistryOptions
from ocimerge.registry.transport import TLSOptions
from registries import USERS, RegistryServer


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DOCKER_CONFIG, and no containers' file of the user's leaking in."""
    directory = tmp_path / "docker"
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("OCIMERGE_USERNAME", raising=False)
    monkeypatch.delenv("OCIMERGE_PASSWORD", raising=False)
    return directory / "config.json"


def tls(server: RegistryServer) -> RegistryOptions:
    return RegistryOptions(tls=TLSOptions(ca_file=server.ca_file))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("mode", ["tls_registry", "token_registry"])
def test_login_checks_then_writes_config_keeping_other_keys(
    mode: str, request: pytest.FixtureRequest, docker_config: Path
) -> None:
    server: RegistryServer = request.getfixturevalue(mode)
    docker_config.parent.mkdir()
    docker_config.write_text(json.dumps({"auths": {"other.example": {"auth": b64("x:y")}}, "psFormat": "table"}))
    stored = login(server.host, "alice", USERS["alice"], options=tls(server))
    config = json.loads(docker_config.read_text())
    assert config["psFormat"] == "table"
    assert config["auths"]["other.example"] == {"auth": b64("x:y")}
    assert config["auths"][server.host] == {"auth": b64(f"alice:{USERS['alice']}")}
    assert stat.S_IMODE(docker_config.stat().st_mode) == 0o600
    assert USERS["alice"] not in repr(stored)
    found = resolve_credentials(server.host)
    assert found is not None
    assert found.username == "alice"
    assert logout(server.host).changed
    config = json.loads(docker_config.read_text())
    assert server.host not in config["auths"]
    assert config["psFormat"] == "table"
    assert not logout(server.host).changed


@pytest.mark.parametrize("mode", ["tls_registry", "token_registry"])
def test_a_refused_login_writes_nothing(mode: str, request: pytest.FixtureRequest, docker_config: Path) -> None:
    server: RegistryServer = request.getfixturevalue(mode)
    with pytest.raises(AuthError) as caught:
        login(server.host, "alice", "wrong-password-42", options=tls(server))
    assert "wrong-password-42" not in str(caught.value)
    assert not docker_config.exists()


def test_login_into_the_credential_store(
    tmp_path: Path, docker_config: Path, monkeypatch: pytest.MonkeyPatch, tls_registry: RegistryServer
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    store = tmp_path / "store.json"
    helper = bin_dir / "docker-credential-test"
    helper.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"path = {str(store)!r}\n"
        "try:\n    data = json.load(open(path))\nexcept FileNotFoundError:\n    data = {{}}\n"
        "action, text = sys.argv[1], sys.stdin.read().strip()\n"
        "if action == 'store':\n    entry = json.loads(text); data[entry['ServerURL']] = entry\n"
        "elif action == 'get':\n"
        "    if text not in data: print('credentials not found in native keychain'); sys.exit(1)\n"
        "    print(json.dumps(data[text]))\n"
        "elif action == 'erase':\n"
        "    if text not in data: print('credentials not found in native keychain'); sys.exit(1)\n"
        "    del data[text]\n"
        "json.dump(data, open(path, 'w'))\n".replace("{{}}", "{}")
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    docker_config.parent.mkdir()
    docker_config.write_text(json.dumps({"credsStore": "test"}))
    stored = login(tls_registry.host, "alice", USERS["alice"], options=tls(tls_registry))
    assert stored.where == "credential helper docker-credential-test"
    assert json.loads(store.read_text())[tls_registry.host]["Secret"] == USERS["alice"]
    config_text = docker_config.read_text()
    assert USERS["alice"] not in config_text
    assert json.loads(config_text)["credsStore"] == "test"
    found = resolve_credentials(tls_registry.host)
    assert found is not None
    assert found.password == USERS["alice"]
    assert logout(tls_registry.host).changed
    assert json.loads(store.read_text()) == {}


@pytest.mark.parametrize("where", ["REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR"])
def test_a_push_with_credentials_from_auth_json(
    where: str, tmp_path: Path, docker_config: Path, monkeypatch: pytest.MonkeyPatch, tls_registry: RegistryServer
) -> None:
    entry = {"auths": {tls_registry.host: {"auth": b64(f"alice:{USERS['alice']}")}}}
    if where == "REGISTRY_AUTH_FILE":
        path = tmp_path / "mine.json"
        monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
    else:
        path = tmp_path / "run" / "containers" / "auth.json"
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entry))
    inputs = [oci_layout([image]).write_tar(str(tmp_path / f"in{i}.tar")) for i, image in enumerate(sample_images())]
    result = ocimerge.create(
        inputs, tags=[f"{tls_registry.host}/login/auth-json:{where.lower()}"], registry_options=tls(tls_registry)
    )
    assert len(result.pushed) == 1


def test_debug_logs_requests_never_secrets(docker_config: Path, token_registry: RegistryServer) -> None:
    lines: list[str] = []
    args = argparse.Namespace(debug=True)
    assert debug_options(args, tls(token_registry)).debug is not None
    login(token_registry.host, "alice", USERS["alice"], options=RegistryOptions(tls=TLSOptions(), debug=lines.append))
    text = "\n".join(lines)
    assert f"> GET http://{token_registry.host}/v2/" in text or f"> GET https://{token_registry.host}/v2/" in text
    assert "< 401 GET" in text
    assert "WWW-Authenticate: Bearer" in text
    assert "< 200 GET" in text
    assert USERS["alice"] not in text
    assert b64(f"alice:{USERS['alice']}") not in text
    assert token_registry.token_server is not None
    assert "Authorization" not in text
    assert 'token":' not in text


def test_cli_login_reads_the_password_from_stdin(
    docker_config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tls_registry: RegistryServer,
) -> None:
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "login",
            tls_registry.host,
            "-u",
            "alice",
            "--password-stdin",
            "--ca-file",
            str(tls_registry.ca_file),
            "--debug",
        ]
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(USERS["alice"] + "\n"))
    assert COMMANDS["login"](args) == 0
    out, err = capsys.readouterr()
    assert "Login succeeded" in out
    assert "ocimerge: debug: > GET https://" in err
    assert USERS["alice"] not in out + err
    assert COMMANDS["logout"](parser.parse_args(["logout", tls_registry.host])) == 0
    assert "Removed" in capsys.readouterr().out
