"""An in-process OCI registry for tests: ``ocimerge.testing.Registry`` ([TESTREG-1] .. [TESTREG-12]).

A standard-library HTTP server on 127.0.0.1 and an ephemeral port that serves what the
distribution spec defines and tooling needs (blobs, chunked and monolithic uploads, mounts,
manifests with content negotiation, tags and the catalog with pagination, the referrers
API), validates as Distribution does, authenticates with Basic or Bearer tokens of its own,
and can be told to behave like a specific registry or to fail on demand::

    from ocimerge.testing import Registry

    with Registry() as registry:
        ...  # push to registry.host, then look at registry.requests()

Also a pytest fixture (``pytest_plugins = ["ocimerge.testing.pytest_plugin"]``) and a
command (``python -m ocimerge.testing --port 5000 --storage DIR``). Nothing here is imported
by ``import ocimerge``.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from ocimerge.testing.auth import BasicAuth, Gate, TokenAuth
from ocimerge.testing.behaviour import Behaviour, Faults
from ocimerge.testing.routes import Routes
from ocimerge.testing.server import HTTPServer
from ocimerge.testing.site import Site
from ocimerge.testing.storage import Storage

__all__ = ["BasicAuth", "Behaviour", "Faults", "Registry", "TokenAuth"]


class Registry:
    """[TESTREG-1] An OCI registry served from this process on ``127.0.0.1:<ephemeral port>``.

    ``storage`` is a directory to keep everything in (kept across restarts, [TESTREG-2]), or
    None for memory. ``auth`` is None (anonymous), :class:`BasicAuth` or :class:`TokenAuth`.
    ``behaviour`` sets the knobs ([TESTREG-7]); :attr:`faults` arms faults at run time
    ([TESTREG-8]). ``tls`` is ``(certificate, key)`` PEM files to serve HTTPS with; the
    certificate is then :attr:`ca_file` (give a self-signed one for 127.0.0.1). ``port`` 0
    picks a free one.

    Use it as a context manager, or :meth:`start` and :meth:`stop`. :attr:`host` is
    ``127.0.0.1:PORT``, :attr:`url` ``scheme://host``; :meth:`requests` lists ``(method,
    path with query, status)`` of every request answered, in order (status 0 for a
    connection a fault dropped); the token endpoint's are in :meth:`token_requests`.
    """

    def __init__(
        self,
        *,
        storage: str | Path | None = None,
        auth: BasicAuth | TokenAuth | None = None,
        behaviour: Behaviour | None = None,
        tls: tuple[str | Path, str | Path] | None = None,
        port: int = 0,
    ) -> None:
        self.storage = Storage.memory() if storage is None else Storage.directory(storage)
        self.behaviour = behaviour if behaviour is not None else Behaviour()
        self.auth = auth
        self.faults = Faults()
        self.gate = Gate(auth, lambda: f"{self.url}/token")
        self.routes = Routes(Site(self.storage, self.behaviour, self.gate))
        self._tls = tls
        self._port = port
        self._server: HTTPServer | None = None
        self._last: HTTPServer | None = None  # requests() still answers after stop()

    # -- lifetime ---------------------------------------------------------------------------

    def start(self) -> Registry:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the registry is already running")
        server = HTTPServer(self.routes, self.faults, self._tls)
        server.start(self._port)
        self._server = self._last = server
        return self

    def stop(self) -> None:
        """Stop serving and close every connection (directory storage keeps its content)."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # -- what tests look at -------------------------------------------------------------------

    def _running(self) -> HTTPServer:
        if self._server is None:
            raise RuntimeError("the registry is not running: use it as a context manager or call start()")
        return self._server

    @property
    def port(self) -> int:
        return self._running().port

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, for image references (``f"{registry.host}/team/app:1.0"``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        """``https`` with ``tls``, else ``http``."""
        return "https" if self._tls else "http"

    @property
    def url(self) -> str:
        """``scheme://127.0.0.1:PORT``."""
        return f"{self.scheme}://{self.host}"

    @property
    def ca_file(self) -> Path | None:
        """The certificate to trust (the ``tls`` certificate), None without TLS."""
        return Path(self._tls[0]) if self._tls else None

    def requests(self) -> list[tuple[str, str, int]]:
        """``(method, path with query, status)`` of every request since the last start, in order."""
        if self._last is None:
            raise RuntimeError("the registry was never started")
        return self._last.requests()

    def token_requests(self) -> list[tuple[str, str, int]]:
        """``(method, path with query, status)`` of every request to the ``/token`` endpoint
        since the last start, in order (kept out of :meth:`requests`, as a token service's
        requests are out of Distribution's log)."""
        if self._last is None:
            raise RuntimeError("the registry was never started")
        return self._last.token_requests()

    def expire_tokens(self) -> None:
        """[TESTREG-8] Every Bearer token issued so far is refused from now on (401 ``invalid_token``)."""
        self.gate.expire_tokens()
