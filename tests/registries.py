"""Real registries for the tests, on 127.0.0.1, and a real token server.

A registry is started on a free port with a temporary root, in one of four modes:

- ``anonymous``: plain HTTP, no auth (``relative``: the same with relative upload Locations);
- ``htpasswd``: TLS with a CA made here (``cryptography``), Basic auth from a bcrypt htpasswd;
- ``token``: Bearer tokens. On Distribution they come from :class:`TokenServer`, which runs in
  this process and speaks the Docker token protocol (GET with optional Basic credentials,
  OAuth2 POST with the ``password`` and ``refresh_token`` grants), signing RS256 JWTs with a
  key whose certificate is Distribution's ``rootcertbundle``. Its ACL grants per user and
  repository, so a missing scope is really refused by the registry. The in-process registry
  issues its own, from the same users and ACL.

Three backends serve them (:func:`choose_backend`, ``OCIMERGE_TEST_REGISTRY``):

- ``binary``: CNCF Distribution, ``/usr/bin/docker-registry`` (Debian package ``docker-registry``);
- ``container``: Distribution in a container through testcontainers (``OCIMERGE_TEST_REGISTRY_IMAGE``,
  default ``registry:2``), on the host's network, configured by ``REGISTRY_*`` variables made
  from the same configuration as the binary's file, with the root mounted at the same path;
- ``inprocess``: :class:`ocimerge.testing.Registry`.

No mocks: every request in an integration test reaches a registry, and
:meth:`RegistryServer.requests` lists what it served whatever the backend.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import email.utils
import fnmatch
import functools
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

    from ocimerge.testing import Registry as InProcessRegistry

REGISTRY_BINARY = "/usr/bin/docker-registry"
SERVICE = "ocimerge-test-registry"
ISSUER = "ocimerge-test-token-issuer"

USERS = {"alice": "alice-s3cret", "bob": "bob-s3cret"}
# user -> [(repository glob, actions)]; "*" is anyone, authenticated or not
ACL: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "alice": [("*", ("pull", "push"))],
    "bob": [("*", ("pull",))],
    "": [("public/*", ("pull",))],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class KeyPair:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )


def make_cert(
    common_name: str, *, issuer: KeyPair | None = None, ca: bool = False, sans: list[x509.GeneralName] | None = None
) -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.cert.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    return KeyPair(key, cert)


def allowed(user: str, repository: str, asked: list[str]) -> list[str]:
    granted: set[str] = set()
    for who in (user, ""):
        for pattern, actions in ACL.get(who, []):
            if fnmatch.fnmatch(repository, pattern):
                granted.update(actions)
    return [a for a in asked if a in granted]


@dataclass
class TokenServer:
    """The Docker token protocol, with an ACL, answering on 127.0.0.1."""

    signing: KeyPair
    port: int = field(default_factory=free_port)
    expires_in: int = 300
    shape: str = "both"  # "token", "access_token" or "both"
    requests: list[dict[str, Any]] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)
    #: statuses to answer, one per token request, before answering normally again
    failures: list[int] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def issue(self, user: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository":
                continue
            granted = allowed(user, name, actions.split(","))
            access.append({"type": "repository", "name": name, "actions": granted})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self.signing.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": ISSUER,
            "sub": user,
            "aud": SERVICE,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self.signing.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def answer(self, user: str, scopes: list[str], *, offline: bool) -> dict[str, Any]:
        token = self.issue(user, scopes)
        body: dict[str, Any] = {
            "expires_in": self.expires_in,
            "issued_at": datetime.datetime.now(datetime.UTC).isoformat(),
        }
        if self.shape in ("token", "both"):
            body["token"] = token
        if self.shape in ("access_token", "both"):
            body["access_token"] = token
        if offline and user:
            refresh = secrets.token_hex(16)
            self.refresh_tokens[refresh] = user
            body["refresh_token"] = refresh
        return body

    def start(self) -> None:  # noqa: C901 - the handler is a class in here so it closes over the server
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _basic_user(self) -> str | None:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return ""
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                return user if USERS.get(user) == password else None

            def _failing(self) -> bool:
                if not server.failures:
                    return False
                status = server.failures.pop(0)
                server.requests.append({"method": self.command, "failed": status})
                self._reply(status, {"details": "the token service fails, as asked"})
                return True

            def do_GET(self) -> None:
                if self._failing():
                    return
                query = parse_qs(urlparse(self.path).query)
                user = self._basic_user()
                scopes = query.get("scope", [])
                server.requests.append(
                    {"method": "GET", "user": user, "scopes": scopes, "authorization": "Authorization" in self.headers}
                )
                if user is None:
                    self._reply(401, {"details": "bad credentials"})
                    return
                offline = query.get("offline_token", [""])[0] == "true"
                self._reply(200, server.answer(user, scopes, offline=offline))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                if self._failing():
                    self.rfile.read(length)
                    return
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                scopes = form.get("scope", "").split()
                grant = form.get("grant_type")
                server.requests.append(
                    {
                        "method": "POST",
                        "grant": grant,
                        "scopes": scopes,
                        "authorization": "Authorization" in self.headers,
                    }
                )
                if grant == "password":
                    user = form.get("username", "")
                    if USERS.get(user) != form.get("password"):
                        self._reply(401, {"error": "invalid_grant"})
                        return
                elif grant == "refresh_token":
                    found = server.refresh_tokens.get(form.get("refresh_token", ""))
                    if found is None:
                        self._reply(401, {"error": "invalid_grant"})
                        return
                    user = found
                else:
                    self._reply(400, {"error": "unsupported_grant_type"})
                    return
                body = server.answer(user, scopes, offline=form.get("access_type") == "offline")
                body.pop("token", None)
                body["access_token"] = server.issue(user, scopes)
                self._reply(200, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# -- which registry serves the tests -------------------------------------------------------------

#: ``binary``, ``container`` or ``inprocess``: forces the backend (else the first available of
#: the binary and a container)
BACKEND_VARIABLE = "OCIMERGE_TEST_REGISTRY"
#: the image the container backend runs (Distribution 2.x; CI builds a local one, see .ci/dockerd.sh)
IMAGE_VARIABLE = "OCIMERGE_TEST_REGISTRY_IMAGE"
DEFAULT_IMAGE = "registry:2"
#: what .ci/dockerd.sh builds from the Debian binary where nothing can be pulled
CI_IMAGE = "localhost/ocimerge-test-registry:2.8"
BACKENDS = ("binary", "container", "inprocess")
MODES = ("anonymous", "relative", "htpasswd", "token")
HOW_TO_GET_ONE = (
    "install Debian's Distribution (apt-get install docker-registry), "
    "or start a Docker engine (make test-containers starts one of its own; or point DOCKER_HOST at yours), "
    f"or set {BACKEND_VARIABLE}=inprocess to use ocimerge.testing.Registry"
)
#: a query parameter only requests() sends: the log line it leaves marks how far the log is read
_MARK = "ocimerge-log-mark"


class NoRegistryBackendError(RuntimeError):
    """No registry can serve the tests as asked; the message says what to install or set."""


def docker_engine_problem() -> str | None:
    """None when a Docker engine answers ``docker info`` (through the docker SDK that
    testcontainers brings: ``DOCKER_HOST``, else the default socket), else what went wrong."""
    try:
        from testcontainers.core.docker_client import DockerClient

        client = DockerClient(timeout=10)
    except Exception as exc:  # the SDK's DockerException, requests' ConnectionError, OSError...
        return f"{type(exc).__name__}: {exc}"
    try:
        client.client.info()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        client.client.close()
    return None


def choose_backend(environ: Mapping[str, str] = os.environ, binary: str = REGISTRY_BINARY) -> str:
    """The backend for this run: ``$OCIMERGE_TEST_REGISTRY`` when set (checked to be usable),
    else the binary when it is installed, else a container when a Docker engine answers.

    Raises :class:`NoRegistryBackendError` naming what to install, start or set.
    """
    forced = environ.get(BACKEND_VARIABLE, "")
    if forced:
        if forced not in BACKENDS:
            raise NoRegistryBackendError(f"{BACKEND_VARIABLE}={forced!r} is none of {', '.join(BACKENDS)}")
        if forced == "binary" and not os.access(binary, os.X_OK):
            raise NoRegistryBackendError(
                f"{BACKEND_VARIABLE}=binary but {binary} is missing: apt-get install docker-registry"
            )
        if forced == "container" and (problem := docker_engine_problem()) is not None:
            raise NoRegistryBackendError(
                f"{BACKEND_VARIABLE}=container but no Docker engine answers ({problem}): start one "
                "(make test-containers starts its own) or point DOCKER_HOST at one"
            )
        return forced
    if os.access(binary, os.X_OK):
        return "binary"
    problem = docker_engine_problem()
    if problem is None:
        return "container"
    raise NoRegistryBackendError(
        f"no registry for the integration tests: {binary} is missing and no Docker engine answers ({problem}); "
        + HOW_TO_GET_ONE
    )


@functools.cache
def default_backend() -> str:
    """:func:`choose_backend` once per process (asking a Docker engine takes a moment)."""
    return choose_backend()


# -- Distribution's configuration, as a file or as its environment -------------------------------


def distribution_config(mode: str, root: Path, port: int, realm: str | None = None) -> dict[str, Any]:
    """Distribution's configuration for ``mode``, as the tree its ``config.yml`` holds.

    Every path is under ``root``; the container backend mounts ``root`` at the same path, so
    one tree serves the binary (:func:`config_yaml`) and a container (:func:`config_environment`).
    """
    http: dict[str, Any] = {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)}
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "storage")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "health": {"storagedriver": {"enabled": False}},
        "http": http,
    }
    if mode == "relative":  # upload Locations relative to the request, not absolute
        http["relativeurls"] = True
    if mode == "htpasswd":
        http["tls"] = {"certificate": str(root / "server.crt"), "key": str(root / "server.key")}
        config["auth"] = {"htpasswd": {"realm": "ocimerge-test", "path": str(root / "htpasswd")}}
    elif mode == "token":
        config["auth"] = {
            "token": {"realm": realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(root / "token.crt")}
        }
    return config


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    plain = text and all(c.isalnum() or c in "._/:-" for c in text) and ": " not in text
    return text if plain else json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def config_yaml(tree: dict[str, Any], indent: str = "") -> str:
    """``tree`` as YAML block mappings, two spaces a level (the config.yml the binary reads)."""
    lines = []
    for key, value in tree.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:\n{config_yaml(value, indent + '  ')}")
        else:
            lines.append(f"{indent}{key}: {_scalar(value)}\n")
    return "".join(lines)


def config_environment(tree: dict[str, Any]) -> dict[str, str]:
    """``tree`` as the ``REGISTRY_*`` variables that override an image's config.yml.

    Distribution maps ``REGISTRY_A_B_C`` onto config fields, but below the first level of a
    driver map (``storage.maintenance.uploadpurging``) it only sets a whole value, so deeper
    mappings are given as one JSON (that is, YAML) value.
    """
    out: dict[str, str] = {}

    def walk(prefix: str, value: object, depth: int) -> None:
        in_driver_map = prefix.split("_")[1] in ("STORAGE", "AUTH") and depth >= 3
        if isinstance(value, dict) and not in_driver_map:
            for key, inner in value.items():
                walk(f"{prefix}_{key.upper()}", inner, depth + 1)
        elif isinstance(value, dict):
            out[prefix] = json.dumps(value)
        elif prefix != "REGISTRY_VERSION":  # the image's file says which version it is
            out[prefix] = value if isinstance(value, str) else _scalar(value)

    for key, value in tree.items():
        walk(f"REGISTRY_{key.upper()}", value, 1)
    return out


def distribution_requests(log: str) -> list[tuple[str, str, int]]:
    """(method, path with query, status) of every ``response completed`` line in a Distribution
    log (the binary's file or ``docker logs``: the same text), in order; requests()'s own marks left out."""
    out = []
    for line in log.splitlines():
        if "response completed" not in line:
            continue
        fields = dict(_logfmt(line))
        uri = fields.get("http.request.uri", "")
        if _MARK in uri:
            continue
        out.append((fields.get("http.request.method", ""), uri, int(fields.get("http.response.status", "0") or 0)))
    return out


# -- one registry, whichever backend serves it ----------------------------------------------------


@dataclass
class RegistryServer:
    """One test registry and what a client needs to reach it.

    ``backend`` says what serves it: ``binary`` (a ``docker-registry`` process), ``container``
    (Distribution in a container on the host's network, through testcontainers) or
    ``inprocess`` (:class:`ocimerge.testing.Registry` in this process). ``mode`` is one of
    :data:`MODES`. Whatever the backend, the address is on 127.0.0.1 and :meth:`requests`
    lists what it served.
    """

    mode: str
    root: Path
    backend: str = "binary"
    image: str = DEFAULT_IMAGE
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    container: DockerContainer | None = None
    inprocess: InProcessRegistry | None = None
    ca_file: str | None = None
    token_server: TokenServer | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.mode == "htpasswd" else "http"

    @property
    def log(self) -> Path:
        """The binary's log file (the container's log is ``docker logs``)."""
        return self.root / "registry.log"

    @property
    def is_distribution(self) -> bool:
        return self.backend in ("binary", "container")

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path with query, status) of every request the registry served, in order.

        Every backend records a request once its answer is sent, so the client may already
        have the answer to its last request when it asks. So a request of our own goes first,
        and the list is read once that request shows up in it (in Distribution's log, which a
        container's reaches through the engine, a moment late, or in the in-process
        registry's list); that request is not listed.
        """
        mark = uuid.uuid4().hex
        self._get(f"/v2/?{_MARK}={mark}")
        deadline = time.monotonic() + 10
        while True:
            if self.inprocess is not None:
                served = [(m, p, int(s)) for m, p, s in self.inprocess.requests()]
                if any(mark in p for _, p, _ in served) or time.monotonic() > deadline:
                    return [r for r in served if _MARK not in r[1]]
            else:
                text = self._log_text()
                if mark in text or time.monotonic() > deadline:
                    return distribution_requests(text)
            time.sleep(0.02)

    def blob_file(self, digest: str) -> Path:
        """Where the registry keeps the bytes of blob ``sha256:…`` on disk (both store a directory)."""
        hexdigest = digest.split(":", 1)[1]
        if self.inprocess is not None:
            return self.root / "storage" / "blobs" / "sha256" / hexdigest
        return self.root / "storage" / f"docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"

    def _log_text(self) -> str:
        if self.container is not None:
            data: bytes = self.container.get_wrapped_container().logs()  # stdout and stderr, in order
            return data.decode(errors="replace")
        return self.log.read_text(errors="replace")

    def start(self) -> RegistryServer:
        if self.backend == "inprocess":
            self._start_inprocess()
            return self
        if self.backend == "binary" and not os.access(REGISTRY_BINARY, os.X_OK):
            raise NoRegistryBackendError(
                f"{REGISTRY_BINARY} is missing: install the Debian package 'docker-registry' "
                "(apt-get install docker-registry; make test does it when run as root)"
            )
        self._prepare_files()
        realm = self.token_server.realm if self.token_server is not None else None
        config = distribution_config(self.mode, self.root, self.port, realm)
        (self.root / "storage").mkdir(parents=True, exist_ok=True)
        (self.root / "config.yml").write_text(config_yaml(config))
        if self.backend == "container":
            self._start_container(config)
        else:
            log = open(self.log, "wb")  # noqa: SIM115 - kept open for the process's life
            self.process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(self.root / "config.yml")], stdout=log, stderr=subprocess.STDOUT
            )
        self._wait()
        return self

    def _prepare_files(self) -> None:
        """The certificates, htpasswd and token server a mode needs, under ``root``."""
        if self.mode == "htpasswd":
            ca, server = tls_pair()
            (self.root / "ca.crt").write_bytes(ca.cert_pem)
            (self.root / "server.crt").write_bytes(server.cert_pem + ca.cert_pem)
            (self.root / "server.key").write_bytes(server.key_pem)
            self.ca_file = str(self.root / "ca.crt")
            entries = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}" for u, p in USERS.items()]
            (self.root / "htpasswd").write_text("\n".join(entries) + "\n")
        elif self.mode == "token":
            signing = make_cert("ocimerge token signer")
            (self.root / "token.crt").write_bytes(signing.cert_pem)
            self.token_server = TokenServer(signing)
            self.token_server.start()

    def _start_container(self, config: dict[str, Any]) -> None:
        """Distribution from ``image``, configured by ``REGISTRY_*`` variables, with ``root``
        (certificates, htpasswd, token bundle, storage) mounted at the same path."""
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer

        if "zot" in self.image.rsplit("/", 1)[-1]:
            raise NoRegistryBackendError(
                f"{IMAGE_VARIABLE}={self.image}: zot is not supported by the container backend "
                "(its configuration and log are other formats); use a Distribution image such as registry:2"
            )
        # Ryuk, testcontainers' reaper, is an image to pull, and nothing can be pulled in CI;
        # cleanup() and the atexit hook below stop what we start
        os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
        testcontainers_config.ryuk_disabled = True
        container = DockerContainer(
            self.image,
            env=config_environment(config),
            volumes=[(str(self.root), str(self.root), "rw")],
        ).with_kwargs(
            # the host's network: Distribution listens on 127.0.0.1:PORT itself, no bridge, no
            # NAT. (docker-py's ``network="host"`` is ``network_mode="host"``; given as
            # ``network_mode``, testcontainers would guess a network by resolving a host name.)
            network="host"
        )
        try:
            container.start()
        except Exception as exc:  # the SDK's ImageNotFound / APIError when the image cannot be pulled
            raise NoRegistryBackendError(
                f"cannot start a container from {self.image} ({type(exc).__name__}: {exc}); where nothing can be "
                f"pulled, `.ci/dockerd.sh image` builds {CI_IMAGE} from /usr/bin/docker-registry "
                f"(make test-containers does) and {IMAGE_VARIABLE}={CI_IMAGE} uses it"
            ) from exc
        self.container = container
        atexit.register(self._stop_container)

    def _start_inprocess(self) -> None:
        """:class:`ocimerge.testing.Registry` in the same mode, storing under ``root``."""
        from ocimerge import testing

        behaviour = testing.Behaviour(relative_locations=self.mode == "relative")
        auth: testing.BasicAuth | testing.TokenAuth | None = None
        tls = None
        if self.mode == "htpasswd":
            self._prepare_files()  # the same CA and server certificate as Distribution's
            tls = (self.root / "server.crt", self.root / "server.key")
            auth = testing.BasicAuth(USERS)
        elif self.mode == "token":  # its own token endpoint: the suite's TokenServer is Distribution's
            auth = testing.TokenAuth(USERS, ACL)
        self.inprocess = testing.Registry(storage=self.root / "storage", auth=auth, behaviour=behaviour, tls=tls)
        self.inprocess.start()
        self.port = self.inprocess.port

    def _get(self, path: str) -> int:
        """GET ``path`` from the registry: its status (any answer, 401 included), or 0 when none came."""
        import ssl
        import urllib.error
        import urllib.request

        context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        try:
            with urllib.request.urlopen(f"{self.scheme}://{self.host}{path}", timeout=2, context=context) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def _gone(self) -> str | None:
        """Why the registry is not running any more, if it is not."""
        if self.process is not None and self.process.poll() is not None:
            return f"docker-registry exited: {self._log_text()[-2000:]}"
        if self.container is not None:
            self.container.reload()
            if self.container.status in ("exited", "dead"):
                return f"the {self.image} container exited: {self._log_text()[-2000:]}"
        return None

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (gone := self._gone()) is not None:
                raise RuntimeError(gone)
            if self._get("/v2/") in (200, 401):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the registry did not answer on {self.host}: {self._log_text()[-2000:]}")

    def _stop_container(self) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):  # already gone, or the engine with it
                self.container.stop()
            self.container = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._stop_container()
        if self.inprocess is not None:
            self.inprocess.stop()
        if self.token_server is not None:
            self.token_server.stop()


def tls_pair() -> tuple[KeyPair, KeyPair]:
    """A CA made here and a server certificate it signed for 127.0.0.1 and localhost."""
    ca = make_cert("ocimerge test CA", ca=True)
    server = make_cert(
        "127.0.0.1", issuer=ca, sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    )
    return ca, server


def _logfmt(line: str) -> Iterator[tuple[str, str]]:
    i = 0
    while i < len(line):
        eq = line.find("=", i)
        if eq < 0:
            return
        key = line[i:eq].rsplit(" ", 1)[-1]
        if eq + 1 < len(line) and line[eq + 1] == '"':
            end = eq + 2
            while end < len(line) and line[end] != '"':
                end += 2 if line[end] == "\\" else 1
            yield key, line[eq + 2 : end]
            i = end + 1
        else:
            end = line.find(" ", eq)
            end = len(line) if end < 0 else end
            yield key, line[eq + 1 : end]
            i = end


def start_registry(mode: str, backend: str | None = None) -> RegistryServer:
    """A registry in ``mode`` (one of :data:`MODES`), served by ``backend`` (default: this run's
    choice, :func:`default_backend`), storing under a fresh temporary directory."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is none of {', '.join(MODES)}")
    backend = backend or default_backend()
    root = Path(tempfile.mkdtemp(prefix=f"ocimerge-registry-{mode}-"))
    image = os.environ.get(IMAGE_VARIABLE) or DEFAULT_IMAGE
    server = RegistryServer(mode, root, backend=backend, image=image)
    try:
        return server.start()
    except BaseException:
        cleanup(server)
        raise


def cleanup(server: RegistryServer) -> None:
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)


@contextlib.contextmanager
def distribution_without_delete() -> Iterator[RegistryServer]:
    """CNCF Distribution (the binary) as the suite starts it, restarted with
    ``storage.delete.enabled: false``: every DELETE answered 405 ``UNSUPPORTED``."""
    server = start_registry("anonymous", "binary")
    try:
        server.stop()
        config = server.root / "config.yml"
        text = config.read_text()
        assert "  delete:\n    enabled: true\n" in text
        config.write_text(text.replace("  delete:\n    enabled: true\n", "  delete:\n    enabled: false\n"))
        with open(server.log, "ab") as log:
            server.process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        server._wait()
        yield server
    finally:
        cleanup(server)


class Registries:
    """Test registries started on first use, one per (backend, mode), stopped together by :meth:`close`.

    A backend that cannot start is remembered, so its error is raised again at once for
    every later test rather than tried anew.
    """

    def __init__(self, choose: Callable[[], str] = default_backend) -> None:
        self._choose = choose
        self._servers: dict[tuple[str | None, str], RegistryServer] = {}
        self._errors: dict[tuple[str | None, str], Exception] = {}

    def get(self, mode: str, backend: str | None = None) -> RegistryServer:
        """The registry in ``mode`` on ``backend`` (None: the run's choice), started if need be;
        :class:`NoRegistryBackendError` when there is none."""
        key = (backend, mode)
        if key in self._errors:
            raise self._errors[key]
        if key not in self._servers:
            try:
                self._servers[key] = start_registry(mode, backend or self._choose())
            except Exception as exc:
                self._errors[key] = exc
                raise
        return self._servers[key]

    def close(self) -> None:
        for server in self._servers.values():
            cleanup(server)
        self._servers.clear()


@dataclass
class Fault:
    """Fail requests whose method and path match: answer ``status``, or drop the connection.

    ``after_bytes`` (with ``status`` None) drops the connection once that many bytes of the
    body are read, and ``forward`` first hands those bytes on to the registry as a truncated
    request (as a connection lost on the way would). ``lose_response`` (with ``status`` None)
    forwards the whole request, lets the registry act on it and answer, then drops the client's
    connection without sending that answer (a response lost on the way back: the registry did
    the work, the client cannot know). ``expire`` (with ``status`` 401) refuses the bearer token
    the request carried, now and for every later request, as expired. ``retry_after`` is sent
    as the answer's ``Retry-After`` header as given; ``retry_after_date`` sends it instead as
    the HTTP-date that many seconds after the answer (computed when answering, whole seconds
    as HTTP-dates are). ``text`` is the answer's body, ``text/plain`` (Docker Hub's 429 bodies
    are not JSON); without it the body is empty. ``min_body`` matches only requests with at least that many body bytes, and
    ``after`` lets that many matching requests through before the fault starts.
    """

    method: str
    path_contains: str
    times: int = 1
    status: int | None = 500
    seen: int = 0
    after_bytes: int | None = None
    forward: bool = False
    lose_response: bool = False
    expire: bool = False
    retry_after: str | None = None
    retry_after_date: float | None = None
    text: str | None = None
    min_body: int = 0
    after: int = 0


class FaultProxy:
    """A small HTTP proxy in front of a real registry that injects failures on request.

    Used for what a registry will not do on its own: a 500 or a dropped connection in the
    middle of a push. Everything else is forwarded to Distribution unchanged.
    ``max_body`` answers 413 to any request whose body is larger (a corporate proxy's limit);
    ``expired`` holds bearer tokens answered 401 ``invalid_token`` (see :attr:`Fault.expire`);
    ``bodies`` lists the ``Content-Length`` of every request with a body, in order.
    ``log`` lists (method, path, status) of every request the proxy answered or dropped, in
    order: the registry's status when it was forwarded (also for a lost response), the fault's
    status when the proxy answered itself, 0 for a dropped connection. ``arrivals`` lists
    (method, path, ``time.monotonic()``) of every request as its headers arrived, so a test can
    tell how long a client waited before trying again.
    """

    def __init__(self, upstream: str) -> None:  # noqa: C901 - the handler is a class in here so it closes over the proxy
        self.upstream = upstream
        self.port = free_port()
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []
        self.max_body: int | None = None
        self.expired: set[str] = set()
        self.bodies: list[tuple[str, int]] = []
        self.arrivals: list[tuple[str, str, float]] = []
        self.challenge = ""
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _drop(self) -> None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def _refuse(self, status: int, headers: dict[str, str] | None = None, text: str | None = None) -> None:
                data = (text or "").encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if text is not None:
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                if status == 413:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _fail(self, fault: Fault) -> None:
                """Answer as ``fault`` says, instead of the registry."""
                assert fault.status is not None
                proxy.log.append((self.command, self.path, fault.status))
                if fault.expire:
                    proxy.expired.add(self._token())
                    self._expired()
                    return
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                if fault.retry_after_date is not None:
                    headers["Retry-After"] = email.utils.formatdate(time.time() + fault.retry_after_date, usegmt=True)
                self._refuse(fault.status, headers, fault.text)

            def _token(self) -> str:
                header = self.headers.get("Authorization", "")
                return header[len("Bearer ") :] if header.startswith("Bearer ") else ""

            def _expired(self) -> None:
                challenge = proxy.challenge or 'Bearer realm="unknown"'
                self._refuse(401, {"WWW-Authenticate": f'{challenge},error="invalid_token"'})

            def _handle(self) -> None:  # noqa: C901 - one fault kind per branch, in the order they apply
                length = int(self.headers.get("Content-Length") or 0)
                with proxy._lock:
                    proxy.arrivals.append((self.command, self.path, time.monotonic()))
                    if length:
                        proxy.bodies.append((self.command, length))
                fault = proxy.match(self.command, self.path, length)
                if fault is not None and fault.status is None and fault.after_bytes is not None:
                    data = self.rfile.read(min(fault.after_bytes, length))
                    proxy.log.append((self.command, self.path, 0))
                    if fault.forward:
                        proxy.forward_truncated(self.command, self.path, dict(self.headers.items()), data)
                    self._drop()
                    return
                body = self.rfile.read(length) if length else b""
                if proxy.max_body is not None and length > proxy.max_body:
                    proxy.log.append((self.command, self.path, 413))
                    self._refuse(413)
                    return
                if self._token() and self._token() in proxy.expired:
                    proxy.log.append((self.command, self.path, 401))
                    self._expired()
                    return
                if fault is not None and fault.status is None and not fault.lose_response:
                    proxy.log.append((self.command, self.path, 0))
                    self._drop()
                    return
                if fault is not None and fault.status is not None:
                    self._fail(fault)
                    return
                status, headers, data = self._forward(body)
                proxy.log.append((self.command, self.path, status))
                if fault is not None:  # lose_response: the registry acted; its answer never arrives
                    self._drop()
                    return
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                """Send the request to the registry: its status, headers to relay, and body."""
                import http.client

                connection = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                headers["Host"] = f"127.0.0.1:{proxy.port}"
                try:
                    connection.request(self.command, self.path, body=body or None, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                finally:
                    connection.close()
                if response.status == 401 and response.getheader("WWW-Authenticate"):
                    proxy.challenge = response.getheader("WWW-Authenticate", "").split(",error=")[0]
                relayed = [
                    (key, value)
                    for key, value in response.getheaders()
                    if key.lower() not in ("content-length", "transfer-encoding", "connection")
                ]
                return response.status, relayed, data

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815 - http.server names

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def match(self, method: str, path: str, length: int) -> Fault | None:
        """The first fault with uses left that matches the request, now used once more."""
        with self._lock:
            for fault in self.faults:
                if fault.method != method or fault.path_contains not in path or length < fault.min_body:
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    continue
                if fault.seen < fault.times:
                    fault.seen += 1
                    return fault
        return None

    def forward_truncated(self, method: str, path: str, headers: dict[str, str], data: bytes) -> None:
        """Send the registry ``data``, the start of a body it was told is longer, and end the request.

        Waits for the registry's answer (to a body cut short), so it has acted on it before the
        client, whose connection is dropped next, asks about it.
        """
        import http.client

        connection = http.client.HTTPConnection(self.upstream, timeout=60)
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in headers.items():
            if key.lower() != "host":
                connection.putheader(key, value)
        connection.putheader("Host", f"127.0.0.1:{self.port}")
        connection.endheaders()
        connection.send(data)
        assert connection.sock is not None
        connection.sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError, http.client.HTTPException):  # the registry may just close
            connection.getresponse().read()
        connection.close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
