"""Shared fixtures: a scratch directory of built images, the path to the real corpus, and the
test registries.

The registry fixtures (``registry``, ``relative_registry``, ``tls_registry``,
``token_registry``) are session-wide and started on first use. Their backend is this run's
choice (:func:`registries.default_backend`: ``/usr/bin/docker-registry``, else Distribution in
a container, or what ``OCIMERGE_TEST_REGISTRY`` forces). A test module marked
``pytest.mark.registry_backends("distribution", "inprocess")`` runs each of its registry tests
against both that Distribution and :class:`ocimerge.testing.Registry` (the ``registry_backend``
fixture is parametrised); a test marked with ``"distribution"`` alone runs on Distribution only
and says why in the marker's ``reason``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from registries import BACKEND_VARIABLE, NoRegistryBackendError, Registries, RegistryServer

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
#: the values of the ``registry_backend`` parameter: this run's Distribution, and ours
SUITE_BACKENDS = ("distribution", "inprocess")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "registry_backends(*backends, reason=None): run the test's registries on each of "
        "'distribution' (the binary or a container) and 'inprocess' (ocimerge.testing.Registry)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``registry_backend`` over the backends a test's (or its module's) marker names.

    Session-scoped, so each backend's registries start once and pytest groups the tests by it.
    With ``OCIMERGE_TEST_REGISTRY=inprocess`` "distribution" would be the in-process registry
    too, so it is left out rather than run twice.
    """
    marker = metafunc.definition.get_closest_marker("registry_backends")
    if marker is None or "registry_backend" not in metafunc.fixturenames:
        return
    unknown = set(marker.args) - set(SUITE_BACKENDS)
    if unknown or not marker.args:
        raise pytest.UsageError(f"registry_backends takes some of {SUITE_BACKENDS}, not {marker.args}")
    backends = list(marker.args)
    if len(backends) > 1 and os.environ.get(BACKEND_VARIABLE) == "inprocess":
        backends.remove("distribution")
    metafunc.parametrize("registry_backend", backends, indirect=True, scope="session")


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


@pytest.fixture(scope="session")
def _registries() -> Iterator[Registries]:
    """Every registry the session started, stopped at its end (containers included: no reaper)."""
    pool = Registries()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def registry_backend(request: pytest.FixtureRequest) -> str:
    """ "distribution" (this run's Distribution: binary or container) or "inprocess"; parametrised
    by :func:`pytest_generate_tests` for tests marked ``registry_backends``, else "distribution"."""
    return str(getattr(request, "param", "distribution"))


def _serving(pool: Registries, mode: str, backend: str) -> RegistryServer:
    try:
        return pool.get(mode, "inprocess" if backend == "inprocess" else None)
    except NoRegistryBackendError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def registry(_registries: Registries, registry_backend: str) -> RegistryServer:
    """Anonymous, plain HTTP on 127.0.0.1."""
    return _serving(_registries, "anonymous", registry_backend)


@pytest.fixture(scope="session")
def relative_registry(_registries: Registries, registry_backend: str) -> RegistryServer:
    """Anonymous, answering uploads with relative Location headers."""
    return _serving(_registries, "relative", registry_backend)


@pytest.fixture(scope="session")
def tls_registry(_registries: Registries, registry_backend: str) -> RegistryServer:
    """TLS (our own CA) and Basic auth (htpasswd on Distribution)."""
    return _serving(_registries, "htpasswd", registry_backend)


@pytest.fixture(scope="session")
def token_registry(_registries: Registries, registry_backend: str) -> RegistryServer:
    """Bearer token auth (on Distribution from the test suite's token server)."""
    return _serving(_registries, "token", registry_backend)


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """[PROGRESS-1] No progress unless a test asks: stderr not being a terminal, the default would
    be plain lines, and a test that checks stderr checks its own lines. ``tests/test_progress.py``
    unsets it where progress is the point (subprocesses inherit it through ``os.environ``)."""
    monkeypatch.setenv("OCIMERGE_PROGRESS", "quiet")
