"""Shared fixtures: a scratch directory of built images and the path to the real corpus."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from registries import RegistryServer, cleanup, start_registry

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


@pytest.fixture
def corpus() -> Path:
    return CORPUS


@pytest.fixture(scope="session", autouse=True)
def _private_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """[RESUME-1] Pushes keep an upload journal under ``$XDG_STATE_HOME``: the suite's (and the
    CLI processes' it starts) is a temporary directory, never the user's home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
        yield


def _serving(mode: str) -> Iterator[RegistryServer]:
    server = start_registry(mode)
    yield server
    cleanup(server)


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryServer]:
    """Distribution, anonymous, plain HTTP on 127.0.0.1."""
    yield from _serving("anonymous")


@pytest.fixture(scope="session")
def relative_registry() -> Iterator[RegistryServer]:
    """Distribution, anonymous, answering uploads with relative Location headers."""
    yield from _serving("relative")


@pytest.fixture(scope="session")
def tls_registry() -> Iterator[RegistryServer]:
    """Distribution with TLS (our own CA) and htpasswd Basic auth."""
    yield from _serving("htpasswd")


@pytest.fixture(scope="session")
def token_registry() -> Iterator[RegistryServer]:
    """Distribution with Bearer token auth from the test suite's token server."""
    yield from _serving("token")
