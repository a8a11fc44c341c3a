"""Which registry serves the tests (issue 10 items 1 and 4): the choice, its failure, and what
every backend must give a test alike.

The choice is checked with the environment and the binary's path given explicitly, and a
Docker engine made absent by pointing ``DOCKER_HOST`` at a socket that is not there, so these
tests say the same whatever this run's backend is. The last ones run on this run's
Distribution and on the in-process registry.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from conftest import _serving
from registries import (
    BACKEND_VARIABLE,
    IMAGE_VARIABLE,
    REGISTRY_BINARY,
    NoRegistryBackendError,
    Registries,
    RegistryServer,
    choose_backend,
    config_environment,
    config_yaml,
    distribution_config,
    distribution_requests,
)

pytestmark = pytest.mark.registry_backends("distribution", "inprocess")


@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """DOCKER_HOST names a socket nobody listens on; a binary path that does not exist."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    return tmp_path / "no-docker-registry"


@pytest.fixture
def binary(tmp_path: Path) -> str:
    """An executable where the choice looks for docker-registry (it is not run)."""
    path = tmp_path / "docker-registry"
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return str(path)


def test_the_binary_is_chosen_where_installed(binary: str) -> None:
    assert choose_backend({}, binary) == "binary"
    assert REGISTRY_BINARY == "/usr/bin/docker-registry"  # where Debian's docker-registry puts it


@pytest.mark.parametrize("forced", ["inprocess", "binary"])
def test_the_variable_forces_a_backend(binary: str, forced: str) -> None:
    assert choose_backend({BACKEND_VARIABLE: forced}, binary) == forced


def test_an_unknown_backend_is_refused_with_the_choices() -> None:
    with pytest.raises(NoRegistryBackendError, match="'podman' is none of binary, container, inprocess"):
        choose_backend({BACKEND_VARIABLE: "podman"}, "/nonexistent")


def test_no_backend_says_what_to_install(no_engine: Path) -> None:
    with pytest.raises(NoRegistryBackendError) as caught:
        choose_backend({}, str(no_engine))
    message = str(caught.value)
    assert f"{no_engine} is missing and no Docker engine answers" in message
    assert "apt-get install docker-registry" in message
    assert "start a Docker engine" in message
    assert f"{BACKEND_VARIABLE}=inprocess" in message


def test_forcing_a_missing_backend_says_what_is_missing(no_engine: Path) -> None:
    with pytest.raises(NoRegistryBackendError, match=r"binary but .* is missing: apt-get install docker-registry"):
        choose_backend({BACKEND_VARIABLE: "binary"}, str(no_engine))
    with pytest.raises(NoRegistryBackendError, match=r"container but no Docker engine answers .*DOCKER_HOST"):
        choose_backend({BACKEND_VARIABLE: "container"}, str(no_engine))
    # the in-process registry needs nothing installed
    assert choose_backend({BACKEND_VARIABLE: "inprocess"}, str(no_engine)) == "inprocess"


def test_the_fixtures_fail_with_that_message_and_do_not_try_again(no_engine: Path) -> None:
    tries: list[str] = []

    def choose() -> str:
        tries.append("asked")
        return choose_backend({}, str(no_engine))

    pool = Registries(choose)
    for _ in range(2):  # the second test to ask gets the same failure at once
        with pytest.raises(pytest.fail.Exception, match="apt-get install docker-registry"):
            _serving(pool, "anonymous", "distribution")
    assert tries == ["asked"]
    pool.close()


def test_zot_images_are_refused_by_name(tmp_path: Path) -> None:
    """The container backend speaks Distribution's configuration and log; zot has others."""
    server = RegistryServer("anonymous", tmp_path, backend="container", image="ghcr.io/project-zot/zot-linux-amd64:v2")
    with pytest.raises(NoRegistryBackendError, match=rf"{IMAGE_VARIABLE}=.*zot is not supported"):
        server.start()


# -- one configuration, as a file and as variables ------------------------------------------------


def test_the_container_gets_the_binarys_configuration_as_variables(tmp_path: Path) -> None:
    config = distribution_config("token", tmp_path, 5123, "http://127.0.0.1:5124/token")
    environment = config_environment(config)
    assert environment["REGISTRY_HTTP_ADDR"] == "127.0.0.1:5123"
    assert environment["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"] == str(tmp_path / "storage")
    assert environment["REGISTRY_STORAGE_DELETE_ENABLED"] == "true"
    assert environment["REGISTRY_AUTH_TOKEN_REALM"] == "http://127.0.0.1:5124/token"
    assert environment["REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE"] == str(tmp_path / "token.crt")
    assert environment["REGISTRY_LOG_ACCESSLOG_DISABLED"] == "true"
    # deeper than Distribution's variables reach into a driver map: one YAML (JSON) value
    assert environment["REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING"] == '{"enabled": false}'
    assert "REGISTRY_VERSION" not in environment
    text = config_yaml(config)
    assert "  delete:\n    enabled: true\n" in text
    assert "    rootcertbundle: " + str(tmp_path / "token.crt") in text
    assert 'realm: "http://127.0.0.1:5124/token"' in text or "realm: http://127.0.0.1:5124/token" in text


def test_docker_logs_and_the_binarys_log_read_alike() -> None:
    """Lines as ``docker logs`` showed them for the image .ci/dockerd.sh builds."""
    log = "\n".join(
        [
            'time="2026-12-03T12:18:52Z" level=info msg="listening on 127.0.0.1:5999" service=registry',
            'time="2026-12-03T12:18:54Z" level=info msg="response completed" http.request.method=GET '
            "http.request.uri=/v2/ http.response.status=200 http.response.written=2",
            'time="2026-12-03T12:18:54Z" level=error msg="response completed with error" err.code="manifest unknown" '
            'http.request.method=DELETE http.request.uri="/v2/a/manifests/sha256:00" http.response.status=404',
            'time="2026-12-03T12:18:55Z" level=info msg="response completed" http.request.method=GET '
            "http.request.uri=/v2/?ocimerge-log-mark=abc http.response.status=200",
        ]
    )
    assert distribution_requests(log) == [("GET", "/v2/", 200), ("DELETE", "/v2/a/manifests/sha256:00", 404)]


# -- what every backend gives a test --------------------------------------------------------------


def test_requests_lists_what_was_served_on_every_backend(registry: RegistryServer) -> None:
    missing = "sha256:" + "0" * 64
    with httpx.Client(base_url=f"http://{registry.host}") as client:
        assert client.get("/v2/").status_code == 200
        assert client.head(f"/v2/team/none/blobs/{missing}").status_code == 404
        assert client.get("/v2/team/none/tags/list?n=1").status_code == 404
    assert registry.requests()[-3:] == [
        ("GET", "/v2/", 200),
        ("HEAD", f"/v2/team/none/blobs/{missing}", 404),
        ("GET", "/v2/team/none/tags/list?n=1", 404),
    ]


def _listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp{,6} give them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hexport = local.rpartition(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(address)
    return found


@pytest.mark.parametrize("mode", ["registry", "relative_registry", "tls_registry", "token_registry"])
def test_every_registry_listens_on_127_0_0_1_only(
    request: pytest.FixtureRequest, registry_backend: str, mode: str
) -> None:
    server: RegistryServer = request.getfixturevalue(mode)
    assert _listening(server.port) == {"0100007F"}  # 127.0.0.1, and no other address
    if server.token_server is not None:
        assert _listening(server.token_server.port) == {"0100007F"}
    if server.container is not None:  # the host's network: no bridge, no published port
        attributes = server.container.get_wrapped_container().attrs
        assert attributes["HostConfig"]["NetworkMode"] == "host"
