"""Attacks by hostile registries, storage hosts and token services ([SEC-1], [SEC-8]).

Every hostile behaviour is a real HTTP server in this process (``ThreadingHTTPServer`` on
127.0.0.1, an ephemeral port each), never ``httpx.MockTransport``: the registry, the storage
host a redirect leads to, and an "evil" token realm are separate servers, and each records
every request it receives (method, path, headers, body) so the tests can assert that no
``Authorization`` header and no password or token text ever reached a host but the registry
and its own realm. ocimerge is driven through the command line (:func:`hostile.run_cli`: exit
code, one line on stderr, the child's own peak RSS, wall time) or through the library
(``ocimerge.Registry``) where a setting the command line does not expose (a short deadline)
is needed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import ocimerge.registry.api as registry_api
from hostile import Outcome, assert_one_line_error, run_cli
from imagebuilder import OCI_MANIFEST, Image
from ocimerge import Registry, RegistryOptions
from ocimerge.content import Blob
from ocimerge.errors import RegistryError, TransportError, UnauthorizedError
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.reference import Reference
from ocimerge.registry.transport import Deadlines, RetryPolicy, TLSOptions

USER = "alice"
PASSWORD = "pw-Zq8XkW3-s3cret"  # distinctive, so any echo of it is found
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
TOKEN = "tok-Hj7Pq2Lm9-issued"
REPO = "team/app"
MiB = 1024 * 1024


# -- the servers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as a server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        """Everything the request carried, as text to search for secrets."""
        return f"{self.method} {self.path} {self.headers!r} {self.body.decode('latin-1')}"


class Exchange:
    """One request being answered: what came in, and the ways to answer it."""

    def __init__(self, handler: BaseHTTPRequestHandler, seen: Seen, stopping: threading.Event) -> None:
        self.handler = handler
        self.seen = seen
        self.stopping = stopping

    def head(self, status: int, headers: dict[str, str] | None = None, length: int = 0) -> None:
        """The status line and headers, with ``Content-Length: length``."""
        self.handler.send_response(status)
        for name, value in (headers or {}).items():
            self.handler.send_header(name, value)
        self.handler.send_header("Content-Length", str(length))
        self.handler.end_headers()

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """A whole answer (no body written for a HEAD)."""
        self.head(status, headers, len(body))
        if self.seen.method != "HEAD":
            self.handler.wfile.write(body)

    def json(self, status: int, value: object, headers: dict[str, str] | None = None) -> None:
        self.reply(status, json.dumps(value).encode(), {"Content-Type": "application/json", **(headers or {})})

    def drip(self, status: int, length: int, every: float = 1.0) -> None:
        """Announce ``length`` bytes, then send one byte every ``every`` seconds."""
        self.head(status, {"Content-Type": "application/octet-stream"}, length)
        for _ in range(length):
            if self.stopping.wait(every):
                return
            self.handler.wfile.write(b"x")
            self.handler.wfile.flush()

    def drip_headers(self, every: float = 1.0) -> None:
        """A status line, then a header that never ends, one byte every ``every`` seconds."""
        self.handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        while not self.stopping.wait(every):
            self.handler.wfile.write(b"x")
            self.handler.wfile.flush()

    def flood(self, status: int, length: int, headers: dict[str, str] | None = None) -> None:
        """Announce and stream ``length`` bytes of ``x`` (never held whole)."""
        self.head(status, headers, length)
        chunk = b"x" * (64 * 1024)
        for _ in range(length // len(chunk)):
            self.handler.wfile.write(chunk)

    def short(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Announce ``body`` whole, send half of it, and hang up."""
        self.head(200, headers, len(body))
        self.handler.wfile.write(body[: len(body) // 2])
        self.handler.close_connection = True


Behaviour = Callable[[Exchange], None]


class Server:
    """An HTTP server on an ephemeral port that records every request and answers by ``behaviour``."""

    def __init__(self, name: str, bind: str = "127.0.0.1") -> None:
        self.name = name
        self.requests: list[Seen] = []
        self.behaviour: Behaviour = lambda exchange: exchange.reply(404)
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer((bind, 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"hostile-{name}", daemon=True)
        self.thread.start()

    @property
    def netloc(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 4 * MiB))
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = Seen(self.command, self.path, headers, body)
                server.requests.append(seen)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client hung up, as it should
                    server.behaviour(Exchange(self, seen, server.stopping))

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def assert_given_nothing(self) -> None:
        """[SEC-1] No request here carried an ``Authorization`` header or any of our secrets."""
        for seen in self.requests:
            assert "authorization" not in seen.headers, (self.name, seen)
            for secret in (PASSWORD, BASIC, TOKEN):
                assert secret not in seen.text(), (self.name, secret, seen)


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    """A factory of recording servers; every one made is stopped after the test."""
    made: list[Server] = []

    def make(name: str, bind: str = "127.0.0.1") -> Server:
        made.append(Server(name, bind))
        return made[-1]

    yield make
    for server in made:
        server.close()


# -- registry behaviours --------------------------------------------------------------------------

IMAGE = Image()


def authorized(exchange: Exchange) -> bool:
    """Whether the request carries the Basic credentials or the token we issued."""
    header = exchange.seen.headers.get("authorization", "")
    return header in (f"Basic {BASIC}", f"Bearer {TOKEN}")


def serve_image(exchange: Exchange, blob: Behaviour | None = None) -> None:
    """Answer ``/v2/``, the manifest of :data:`IMAGE` by tag or digest, and its blobs (or ``blob``)."""
    path = exchange.seen.path.split("?")[0]
    prefix = f"/v2/{REPO}/"
    if path == "/v2/":
        exchange.reply(200)
    elif path in (f"{prefix}manifests/1.0", f"{prefix}manifests/{IMAGE.digest}"):
        headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": IMAGE.digest}
        exchange.reply(200, IMAGE.manifest, headers)
    elif path.startswith(f"{prefix}blobs/") and blob is not None:
        blob(exchange)
    elif path.startswith(f"{prefix}blobs/") and path.rsplit("/", 1)[1] in IMAGE.blobs:
        exchange.reply(200, IMAGE.blobs[path.rsplit("/", 1)[1]])
    else:
        exchange.json(404, {"errors": [{"code": "NAME_UNKNOWN", "message": "no such thing"}]})


def basic_guard(then: Behaviour) -> Behaviour:
    """A registry behind Basic auth: 401 with a Basic challenge until the credentials come."""

    def behave(exchange: Exchange) -> None:
        if not authorized(exchange):
            exchange.reply(401, headers={"WWW-Authenticate": 'Basic realm="registry"'})
        else:
            then(exchange)

    return behave


def bearer_guard(realm: str, then: Behaviour, token: Behaviour | None = None) -> Behaviour:
    """A registry behind Bearer auth whose realm is ``realm``; ``token`` answers ``/token`` here."""

    def behave(exchange: Exchange) -> None:
        if exchange.seen.path.startswith("/token"):
            (token or (lambda ex: ex.json(200, {"token": TOKEN, "expires_in": 300})))(exchange)
        elif not authorized(exchange):
            challenge = f'Bearer realm="{realm}",service="registry"'
            exchange.json(401, {"errors": [{"code": "UNAUTHORIZED"}]}, {"WWW-Authenticate": challenge})
        else:
            then(exchange)

    return behave


def cli(command: str, registry: Server, *flags: str, credentials: bool = True, tmp_path: Path) -> Outcome:
    """``ocimerge COMMAND --plain-http [--username alice --password-stdin] docker://REGISTRY/team/app:1.0``."""
    args = [command, *flags]
    if credentials:
        args += ["--username", USER, "--password-stdin"]
    args.append(f"docker://{registry.netloc}/{REPO}:1.0")
    env = {"DOCKER_CONFIG": str(tmp_path), "OCIMERGE_USERNAME": "", "OCIMERGE_PASSWORD": ""}
    return run_cli(args, env=env, timeout=60, stdin=f"{PASSWORD}\n".encode() if credentials else b"")


def assert_no_secret_printed(outcome: Outcome) -> None:
    for secret in (PASSWORD, BASIC, BASIC.rstrip("="), TOKEN):
        assert secret not in outcome.stderr + outcome.stdout, (secret, outcome.stderr)


def library(
    registry: Server, deadline: float = 60.0, credentials: bool = False
) -> Registry:  # a client with a short deadline, no retries, plain HTTP
    options = RegistryOptions(
        tls=TLSOptions(plain_http=True),
        retry=RetryPolicy(attempts=1),
        deadlines=Deadlines(blob=deadline, other=deadline),
        username=USER if credentials else None,
        password=PASSWORD if credentials else None,
    )
    return Registry(registry.netloc, options)


# -- [SEC-1] a storage host's realm never gets the registry's credentials ------------------------------


def guarded(registry: Server, scheme: str, then: Behaviour) -> Behaviour:
    """``then`` behind Basic auth, or behind Bearer tokens from the registry's own ``/token``."""
    return basic_guard(then) if scheme == "basic" else bearer_guard(f"{registry.url}/token", then)


@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_a_storage_host_401_with_its_own_realm_gets_nothing(
    servers: Callable[..., Server], tmp_path: Path, status: int, scheme: str
) -> None:
    registry, storage, evil = servers("registry"), servers("storage"), servers("evil")

    def redirect(exchange: Exchange) -> None:
        digest = exchange.seen.path.rsplit("/", 1)[1]
        exchange.reply(status, headers={"Location": f"{storage.url}/blobs/{digest}?sig=1"})

    registry.behaviour = guarded(registry, scheme, lambda ex: serve_image(ex, blob=redirect))
    # a plain-HTTP realm on loopback, which a realm the registry named could use: only the
    # origin of the challenge keeps the credentials from it
    challenge = f'Bearer realm="{evil.url}/token",service="storage"'
    storage.behaviour = lambda ex: ex.reply(401, headers={"WWW-Authenticate": challenge})
    outcome = cli("verify", registry, "--plain-http", tmp_path=tmp_path)
    assert_one_line_error(outcome, 4, storage.netloc, "401")
    assert storage.requests, "the redirect was followed"
    storage.assert_given_nothing()
    assert evil.requests == []
    assert any(authorized_by(s) for s in registry.requests)
    assert_no_secret_printed(outcome)


def authorized_by(seen: Seen) -> bool:
    return seen.headers.get("authorization") in (f"Basic {BASIC}", f"Bearer {TOKEN}")


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_a_redirected_head_cannot_teach_a_challenge_either(servers: Callable[..., Server], scheme: str) -> None:
    registry, storage, evil = servers("registry"), servers("storage"), servers("evil")
    registry.behaviour = guarded(
        registry,
        scheme,
        lambda ex: serve_image(ex, blob=lambda e: e.reply(307, headers={"Location": f"{storage.url}/b"})),
    )
    storage.behaviour = lambda ex: ex.reply(401, headers={"WWW-Authenticate": f'Bearer realm="{evil.url}/t"'})
    with library(registry, credentials=True) as client, pytest.raises(UnauthorizedError) as caught:
        client.blob_exists(REPO, Digest.of(b"x"))
    assert storage.netloc in str(caught.value)
    storage.assert_given_nothing()
    assert evil.requests == []
    assert len(client.auth.token_requests) == (scheme == "bearer")  # the registry's own realm only


# -- [SEC-8] --insecure changes TLS verification only --------------------------------------------------


def test_insecure_does_not_let_a_plain_realm_elsewhere_have_credentials(
    servers: Callable[..., Server], tmp_path: Path
) -> None:
    """``--insecure`` skips TLS verification only: credentials still never go to a plain-HTTP realm
    on another host. The realm's name does not resolve, and is refused before any connection,
    so the test sends no traffic beyond 127.0.0.1 (``--plain-http``, which does allow it, is
    covered by the unit tests' realm rules, with no server elsewhere to receive them)."""
    registry = servers("registry")
    registry.behaviour = bearer_guard("http://realm.invalid/token", serve_image)
    outcome = cli("inspect", registry, "--insecure", tmp_path=tmp_path)
    assert_one_line_error(outcome, 4, "plain HTTP", "refusing to send credentials", "--plain-http")
    assert_no_secret_printed(outcome)


# -- [SEC-8] deadlines ----------------------------------------------------------------------------------

SLACK = 4.0  # a drip of one byte a second is noticed within a second; start-up and teardown


@pytest.mark.parametrize("deadline", [1.0, 2.5])
@pytest.mark.parametrize("what", ["blob body", "manifest body", "token response", "manifest headers"])
def test_a_dripping_server_meets_the_deadline(servers: Callable[..., Server], deadline: float, what: str) -> None:
    registry = servers("registry")
    drip: Behaviour = lambda ex: ex.drip(200, 1000)  # noqa: E731 - the behaviour under test
    if what == "blob body":
        registry.behaviour = lambda ex: serve_image(ex, blob=drip)
    elif what in ("manifest body", "manifest headers"):
        slow = drip if what == "manifest body" else Exchange.drip_headers
        registry.behaviour = lambda ex: ex.reply(200) if ex.seen.path == "/v2/" else slow(ex)
    else:
        registry.behaviour = bearer_guard(f"{registry.url}/token", serve_image, token=drip)
    descriptor = Descriptor("application/octet-stream", Digest.of(b"x" * 1000), 1000)

    def read(client: Registry) -> None:
        if what == "blob body":
            with client.open_blob(REPO, descriptor) as reader:
                reader.read()
        else:
            client.manifest_get(Reference.parse(f"{registry.netloc}/{REPO}:1.0"))

    started = time.monotonic()
    with library(registry, deadline) as client, pytest.raises(TransportError) as caught:
        read(client)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert f"{deadline:g} s deadline" in message
    assert registry.netloc in message
    assert "\n" not in message
    assert deadline <= elapsed < deadline + SLACK, elapsed


# -- [SEC-8] secrets echoed by a server are not printed ---------------------------------------------------


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_an_error_body_echoing_authorization_is_printed_redacted(
    servers: Callable[..., Server], tmp_path: Path, scheme: str
) -> None:
    registry = servers("registry")

    def echo(exchange: Exchange) -> None:
        if exchange.seen.path == "/v2/":
            exchange.reply(200)
            return
        sent = exchange.seen.headers.get("authorization", "")
        message = f"bad request; you sent Authorization: {sent} (user {USER}, password {PASSWORD})"
        exchange.json(400, {"errors": [{"code": "MANIFEST_INVALID", "message": message}]})

    registry.behaviour = guarded(registry, scheme, echo)
    outcome = cli("inspect", registry, "--plain-http", tmp_path=tmp_path)
    line = assert_one_line_error(outcome, 4, "MANIFEST_INVALID", "you sent Authorization", "<redacted>")
    assert_no_secret_printed(outcome)
    assert USER in line  # only the secrets go, not the text around them


def test_a_malformed_header_quoting_authorization_is_printed_redacted(servers: Callable[..., Server]) -> None:
    registry = servers("registry")

    def echo_in_headers(exchange: Exchange) -> None:
        if exchange.seen.path == "/v2/":
            exchange.reply(200)
            return
        sent = exchange.seen.headers.get("authorization", "").encode()
        exchange.handler.wfile.write(b"HTTP/1.1 200 OK\r\nyou sent " + sent + b" " + PASSWORD.encode() + b"\r\n\r\n")

    registry.behaviour = basic_guard(echo_in_headers)
    with library(registry, credentials=True) as client, pytest.raises(TransportError) as caught:
        client.manifest_get(Reference.parse(f"{registry.netloc}/{REPO}:1.0"))
    message = str(caught.value)
    assert "illegal header line" in message  # httpx quotes the server's bytes...
    assert "you sent Basic <redacted> <redacted>" in message  # ...with our secrets cut out
    assert PASSWORD not in message
    assert BASIC not in message


# -- [SEC-8] hostile JSON and oversized bodies are one-line errors with flat memory -----------------------

HOSTILE_JSON = {
    "nested 1e4": b"[" * 10_000,
    "nested 1e5": b'{"errors": ' + b"[" * 100_000,
    "invalid UTF-8": b'{"errors": [{"code": "X\xff\xfe", "message": "\xc3("}], "token": "t\xff"}',
    "unpaired surrogate": b'{"errors": [{"code": "\\ud800", "message": "\\udfff"}], "token": "\\ud800"}',
}


@pytest.mark.parametrize("body", list(HOSTILE_JSON))
@pytest.mark.parametrize("where", ["token response", "error body"])
def test_hostile_json_from_a_server_is_a_one_line_error(
    servers: Callable[..., Server], tmp_path: Path, body: str, where: str
) -> None:
    registry = servers("registry")
    hostile = HOSTILE_JSON[body]
    answer: Behaviour = lambda ex: ex.reply(  # noqa: E731 - the behaviour under test
        200 if where == "token response" else 400, hostile, {"Content-Type": "application/json"}
    )
    if where == "token response":
        registry.behaviour = bearer_guard(f"{registry.url}/token", serve_image, token=answer)
    else:
        registry.behaviour = lambda ex: ex.reply(200) if ex.seen.path == "/v2/" else answer(ex)
    outcome = cli("inspect", registry, "--plain-http", credentials=False, tmp_path=tmp_path)
    assert_one_line_error(outcome, 4, "token service" if where == "token response" else "400")


@pytest.fixture(scope="module")
def quiet_peak(tmp_path_factory: pytest.TempPathFactory) -> float:
    """The peak RSS (MiB) of a run that fails on a tiny error body: the yardstick for big ones."""
    registry = Server("registry")
    try:
        registry.behaviour = lambda ex: ex.reply(200) if ex.seen.path == "/v2/" else ex.reply(400, b"no")
        outcome = cli("inspect", registry, "--plain-http", credentials=False, tmp_path=tmp_path_factory.mktemp("q"))
    finally:
        registry.close()
    assert outcome.code == 4, outcome.stderr
    return outcome.peak_mib


@pytest.mark.parametrize("size", [1 * MiB, 64 * MiB])
@pytest.mark.parametrize("where", ["token response", "error body"])
def test_oversized_bodies_are_read_capped(
    servers: Callable[..., Server], tmp_path: Path, quiet_peak: float, size: int, where: str
) -> None:
    registry = servers("registry")
    size += 64 * 1024  # past the 1 MiB token cap too
    flood: Behaviour = lambda ex: ex.flood(  # noqa: E731 - the behaviour under test
        200 if where == "token response" else 400, size, {"Content-Type": "application/json"}
    )
    if where == "token response":
        registry.behaviour = bearer_guard(f"{registry.url}/token", serve_image, token=flood)
    else:
        registry.behaviour = lambda ex: ex.reply(200) if ex.seen.path == "/v2/" else flood(ex)
    outcome = cli("inspect", registry, "--plain-http", credentials=False, tmp_path=tmp_path)
    assert_one_line_error(outcome, 4, "over 1 MiB" if where == "token response" else "400")
    assert outcome.peak_mib < quiet_peak + 24, (outcome.peak_mib, quiet_peak)


# -- short bodies, redirected uploads, tag lists -----------------------------------------------------------


@pytest.mark.parametrize("which", ["manifest", "config", "layer"])
def test_a_short_body_is_a_one_line_error(servers: Callable[..., Server], tmp_path: Path, which: str) -> None:
    registry = servers("registry")
    config = json.loads(IMAGE.manifest)["config"]["digest"]

    def behave(exchange: Exchange) -> None:
        path = exchange.seen.path
        if which == "manifest" and "/manifests/" in path:
            exchange.short(IMAGE.manifest, {"Content-Type": OCI_MANIFEST})
        elif "/blobs/" in path and (path.endswith(config) == (which == "config")):
            exchange.short(IMAGE.blobs[path.rsplit("/", 1)[1]])
        else:
            serve_image(exchange)

    registry.behaviour = behave
    outcome = cli("verify", registry, "--plain-http", credentials=False, tmp_path=tmp_path)
    assert outcome.code in (3, 4), outcome.stderr
    assert_one_line_error(outcome, outcome.code, registry.netloc.split(":")[0])


def test_a_307_on_a_blob_put_is_refused_and_the_body_goes_nowhere(servers: Callable[..., Server]) -> None:
    registry, storage = servers("registry"), servers("storage")

    def behave(exchange: Exchange) -> None:
        if exchange.seen.method == "POST":
            exchange.reply(202, headers={"Location": f"/v2/{REPO}/blobs/uploads/1"})
        elif exchange.seen.method == "PUT":
            exchange.reply(307, headers={"Location": f"{storage.url}/upload"})
        else:
            serve_image(exchange)

    registry.behaviour = behave
    data = b"layer bytes"
    blob = Blob.from_bytes(Descriptor("application/octet-stream", Digest.of(data), len(data)), data, "blob")
    with library(registry, credentials=True) as client, pytest.raises(RegistryError) as caught:
        client.upload(REPO, blob)
    assert caught.value.status == 307
    assert "PUT answered with a redirect (307)" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert storage.requests == []


@dataclass
class TagPages:
    """A tag list whose pages link on forever (``loop`` False) or back to the first page."""

    loop: bool
    pages: list[str] = field(default_factory=list)

    def __call__(self, exchange: Exchange) -> None:
        path = exchange.seen.path
        if path == "/v2/":
            exchange.reply(200)
            return
        self.pages.append(path)
        page = int(path.split("last=")[1]) if "last=" in path else 0
        following = (
            f"/v2/{REPO}/tags/list?n=1000" if self.loop and page == 1 else f"/v2/{REPO}/tags/list?last={page + 1}"
        )
        exchange.json(200, {"name": REPO, "tags": [f"t{page}"]}, {"Link": f'<{following}>; rel="next"'})


def test_a_tag_list_that_links_back_to_its_first_page_stops(servers: Callable[..., Server]) -> None:
    registry = servers("registry")
    registry.behaviour = pages = TagPages(loop=True)
    with library(registry) as client:
        assert client.tags(REPO) == ("t0", "t1")
    assert len(pages.pages) == 2  # the first page is not fetched again


def test_a_tag_list_that_never_ends_is_capped(servers: Callable[..., Server], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_api, "MAX_TAG_PAGES", 20)
    registry = servers("registry")
    registry.behaviour = pages = TagPages(loop=False)
    with library(registry) as client, pytest.raises(RegistryError, match="runs past 20 pages"):
        client.tags(REPO)
    assert len(pages.pages) == 20


@pytest.mark.parametrize("body", [b"<html>hello</html>", b"[" * 100_000, b'{"tags": ["\xff"]}'])
def test_a_tag_list_that_is_not_json_is_refused(servers: Callable[..., Server], body: bytes) -> None:
    registry = servers("registry")
    registry.behaviour = lambda ex: ex.reply(200) if ex.seen.path == "/v2/" else ex.reply(200, body)
    with library(registry) as client, pytest.raises(RegistryError, match="is not JSON"):
        client.tags(REPO)
