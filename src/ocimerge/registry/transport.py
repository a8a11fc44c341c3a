"""HTTP transport to one registry: TLS, timeouts, the retry policy as data, and the request loop.

[TLS-1] TLS verification is on by default. Extra trust comes from ``--ca-file`` and from
docker's ``/etc/docker/certs.d/<host>/`` (``*.crt`` CAs, ``client.cert``/``client.key`` for
mutual TLS). ``--insecure`` skips verification; ``--plain-http`` speaks HTTP. A loopback
registry (127.0.0.0/8, ::1, localhost) may be plain HTTP without asking, as docker allows:
HTTPS is tried first and HTTP used when the server does not speak TLS.
[RETRY-1] Requests are retried on the statuses :func:`ocimerge.errors.retryable_status` names
(408, 429, 500, 502, 503, 504) and on transport errors, with exponential backoff, full jitter
and a cap, honouring ``Retry-After``. Every request ocimerge sends is safe to repeat (see
:class:`Sender`) and its body is re-created from the source for each attempt.
[TOKEN-4] Redirects are followed here, by the loop, never by httpx inside the auth flow: the
flow only ever sees the answer to the very request it yielded, so a storage host reached by a
redirect cannot plant a Bearer challenge and collect our credentials.
[SEC-1] A 401 from any other origin (a storage host a redirect led to, an upload
``Location`` elsewhere) is never authenticated against: it is an :class:`UnauthorizedError` naming
that host, sent nothing of ours. Only answers from the registry's own API origin
(:func:`is_origin`) reach the auth flow's challenge parser.
[API-9][SEC-8] Every request has an overall :class:`~ocimerge.registry.responses.Deadline`
(:class:`Deadlines`: 15 min plus a second per MiB for a blob body, 2 min for anything else), carried in its
extensions across redirects and checked in every read loop, body included; the per-read
timeouts are capped at it. Answers that are not streamed are read capped.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import random
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
import httpx

from ocimerge._version import __version__
from ocimerge.errors import (
    RETRYABLE_STATUSES,
    RegistryError,
    TLSVerificationError,
    TransportError,
    UnauthorizedError,
    UsageError,
)
from ocimerge.registry.credentials import searched
from ocimerge.registry.responses import (
    DEADLINE_KEY,
    REDACTOR_KEY,
    Deadline,
    Redactor,
    current_deadline,
    deadline_of,
    raise_for_response,
    read_capped,
    redact_server_text,
    redact_url,
    retry_after,
    within,
)
from ocimerge.text import printable

__all__ = [
    "DEBUG_HEADERS",
    "DEFAULT_TIMEOUT",
    "USER_AGENT",
    "Deadlines",
    "Outgoing",
    "Peer",
    "ResponseStream",
    "RetryPolicy",
    "Sender",
    "TLSOptions",
    "build_client",
    "debug_line",
    "is_loopback",
    "is_origin",
    "log_exchanges",
    "new_request",
    "transport_error",
]

USER_AGENT = f"ocimerge/{__version__} (+https://github.com/ocimerge)"
DEFAULT_TIMEOUT = httpx.Timeout(connect=15.0, read=120.0, write=120.0, pool=60.0)
#: Redirect statuses the loop follows for GET and HEAD.
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
#: What :class:`Peer` says of a client with no credentials (``Registry`` passes the same words).
ANONYMOUS = "anonymous access"
#: [SEC-8] Answers that are not streamed (pings, uploads, tag pages) are read up to this.
MAX_ANSWER_BODY = 4 * 1024 * 1024
#: [SEC-8] The default overall deadlines (seconds): a blob body, and any other request.
BLOB_DEADLINE = 15 * 60.0
DEFAULT_DEADLINE = 120.0
#: [SEC-8] The slowest honest link a blob deadline allows for, in bytes a second (1 MiB/s).
MIN_BLOB_RATE = 1024 * 1024.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``name[:port]``) names this machine."""
    name = host
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_origin(url: httpx.URL, origin: str) -> bool:
    """[SEC-1] Whether ``url`` is on ``origin`` (``host[:port]``; a default port may be left out)."""
    origin = origin.lower()
    netloc = url.netloc.decode().lower()
    default = {"https": 443, "http": 80}.get(url.scheme)
    return netloc == origin or (url.port in (None, default) and url.host == origin)


@attrs.frozen
class Deadlines:
    """[SEC-8] How long one request may take in all, its answer's body included (seconds).

    A request that carries a blob body either way (a blob GET, an upload PUT or PATCH) gets
    ``blob`` plus one second per ``min_rate`` bytes of the blob, so a large layer on a slow
    but honest link still fits; everything else (pings, HEADs, manifests, tokens, tags) gets
    ``other``. httpx's own timeouts bound each read; these bound the whole, so a server
    dripping one byte every few seconds cannot hold a run.

    >>> Deadlines().seconds(None), Deadlines().seconds(0), Deadlines().seconds(10 * 1024**3)
    (120.0, 900.0, 11140.0)
    """

    blob: float = BLOB_DEADLINE
    other: float = DEFAULT_DEADLINE
    min_rate: float = MIN_BLOB_RATE

    def seconds(self, blob_size: int | None) -> float:
        """The deadline of a request with a blob body of ``blob_size`` bytes (None: no blob)."""
        if blob_size is None:
            return self.other
        return self.blob + (blob_size / self.min_rate if self.min_rate > 0 else 0.0)


def _check_ca_file(_instance: object, _attribute: object, path: str | None) -> None:
    """[MSG-3] ``--ca-file`` must be a readable PEM bundle: a :class:`UsageError` naming it otherwise.

    Checked when the options are built, so a wrong path is a usage error (exit 2) before any
    connection, not an ``ssl`` failure deep inside the HTTP client's set-up.
    """
    if path is None:
        return
    if not os.path.exists(path):
        raise UsageError(f"--ca-file {path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"--ca-file {path}: is a directory; name the CA bundle file (PEM) inside it")
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except ssl.SSLError as exc:  # before OSError, of which it is a subclass
        raise UsageError(f"--ca-file {path}: not a PEM CA certificate bundle") from exc
    except OSError as exc:
        raise UsageError(f"--ca-file {path}: cannot read it ({exc.strerror or exc.__class__.__name__})") from exc


@attrs.frozen
class TLSOptions:
    """How to reach a registry: TLS trust, client certificates, or plain HTTP.

    ``ca_file`` is checked on construction: a missing file, a directory or a file holding no
    PEM certificate is a :class:`~ocimerge.errors.UsageError` naming it [MSG-3].
    """

    ca_file: str | None = attrs.field(default=None, validator=_check_ca_file)
    insecure: bool = False
    plain_http: bool = False
    certs_dir: str = "/etc/docker/certs.d"

    def ssl_context(self, host: str) -> ssl.SSLContext | bool:
        """[TLS-1] The verification to use for ``host``: a context, or False with --insecure."""
        if self.insecure:
            return False
        context = ssl.create_default_context()
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        directory = os.path.join(self.certs_dir, host)
        for ca in sorted(glob.glob(os.path.join(directory, "*.crt"))):
            context.load_verify_locations(cafile=ca)
        cert, key = os.path.join(directory, "client.cert"), os.path.join(directory, "client.key")
        if os.path.exists(cert) and os.path.exists(key):
            context.load_cert_chain(cert, key)
        return context


@attrs.frozen
class RetryPolicy:
    """[RETRY-1] When and how long to wait before trying a request again.

    ``statuses`` defaults to :data:`ocimerge.errors.RETRYABLE_STATUSES`, the set behind
    :attr:`ocimerge.errors.OcimergeError.retryable`, so the loop and the errors agree.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    statuses: frozenset[int] = RETRYABLE_STATUSES
    random: Callable[[], float] = attrs.field(default=random.random, eq=False, repr=False)

    def should_retry_status(self, status: int) -> bool:
        """Whether an answer with this status is sent again (attempts permitting)."""
        return status in self.statuses

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if response is not None:
            after = retry_after(response)
            if after is not None:
                return min(after, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return float(ceiling * self.random())  # full jitter


def build_client(
    host: str,
    tls: TLSOptions,
    *,
    auth: httpx.Auth | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """One ``httpx.Client`` for one registry host, with its TLS policy and our user agent.

    httpx follows no redirects: :class:`Sender` does, for GET and HEAD only [TOKEN-4].
    ``transport`` replaces the network (unit tests of edge cases only). [SEC-8] Its sockets
    are bounded by the deadline of the request they serve (:func:`_bound_sockets`).
    """
    client = httpx.Client(
        verify=tls.ssl_context(host) if not tls.plain_http else False,
        timeout=DEFAULT_TIMEOUT,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        auth=auth,
        transport=transport,
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
    )
    _bound_sockets(client)
    return client


#: [CRED-6] The headers ``--debug`` shows, in this order; every other header (``Authorization``,
#: ``Cookie``, ``Set-Cookie``, ``Proxy-Authorization``…) is left out whatever it holds.
DEBUG_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Range",
    "Content-Range",
    "Location",
    "Docker-Content-Digest",
    "OCI-Subject",
    "OCI-Filters-Applied",
    "WWW-Authenticate",
    "Retry-After",
)


def _debug_headers(headers: httpx.Headers, redactor: Redactor) -> str:
    """[CRED-6] The chosen headers, as `` (Name: value, …)``; URLs in them redacted, secrets cut."""
    shown = []
    for name in DEBUG_HEADERS:
        for value in headers.get_list(name):
            text = redact_url(value) if name == "Location" else value
            shown.append(f"{name}: {printable(redactor.redact(text))}")
    return f" ({', '.join(shown)})" if shown else ""


def debug_line(message: httpx.Request | httpx.Response, redactor: Redactor) -> str:
    """[CRED-6] One ``--debug`` line for a request (``> GET url``) or an answer (``< 200 GET url``).

    The URL loses its query and user info (:func:`redact_url`: upload ``_state`` tokens, a
    token request's parameters), every known secret is cut out (``redactor``), control
    characters are escaped [SEC-5], and only :data:`DEBUG_HEADERS` are shown. No body, ever.
    """
    if isinstance(message, httpx.Response):
        request = message.request
        head = f"< {message.status_code} {request.method}"
    else:
        request = message
        head = f"> {request.method}"
    url = printable(redactor.redact(redact_url(request.url)))
    return f"{head} {url}{_debug_headers(message.headers, redactor)}"


def log_exchanges(client: httpx.Client, debug: Callable[[str], None], redactor: Redactor) -> None:
    """[CRED-6] Make ``client`` pass a :func:`debug_line` to ``debug`` for each request and answer.

    httpx's event hooks see every request the client sends: auth-flow retries, token
    requests, each redirect hop, each retry. The answer's line is written when its headers
    arrive (the body is not read for it). Installing twice on one client logs once.
    """
    if getattr(client, "_ocimerge_debug", False):
        return
    setattr(client, "_ocimerge_debug", True)  # noqa: B010 - a mark on a third-party object
    client.event_hooks["request"].append(lambda request: debug(debug_line(request, redactor)))
    client.event_hooks["response"].append(lambda response: debug(debug_line(response, redactor)))


def _bound_sockets(client: httpx.Client) -> None:
    """[API-9][SEC-8] Make every socket read and write of ``client`` end by the current deadline.

    httpx's timeouts are per read, and nothing in its public API bounds the status line and
    headers in all: a server dripping its headers would hold the read loops' checks off for
    ever. httpx's own transports (direct and through proxies) keep an httpcore connection
    pool whose network backend opens the sockets; it is wrapped so that each read and write
    gets at most the time left to the request (:func:`~ocimerge.registry.responses.within`),
    and times out in httpx's usual way. Transports without that pool (test transports) are
    left alone: the read loops' own checks still hold there.
    """
    for transport in [client._transport, *client._mounts.values()]:  # httpx internals, on purpose: see above
        pool: Any = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend)


#: The timeout a socket operation gets once the deadline has passed: it times out at once
#: (as httpx's ``ReadTimeout``/``WriteTimeout``) unless bytes are already waiting.
_PAST = 1e-6


def _bounded(timeout: float | None) -> float | None:
    """``timeout`` cut to the time the current request has left, if it has a deadline."""
    deadline = current_deadline()
    if deadline is None:
        return timeout
    left = max(deadline.left(), _PAST)
    return left if timeout is None else min(timeout, left)


class _DeadlineBackend:
    """An httpcore network backend whose streams are bounded by the current deadline."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, *args: Any, **kwargs: Any) -> Any:
        return _DeadlineStream(self._inner.connect_tcp(host, port, _bounded(timeout), *args, **kwargs))

    def connect_unix_socket(self, path: str, timeout: float | None = None, *args: Any, **kwargs: Any) -> Any:
        return _DeadlineStream(self._inner.connect_unix_socket(path, _bounded(timeout), *args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineStream:
    """An httpcore network stream whose reads and writes end by the current deadline."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return bytes(self._inner.read(max_bytes, _bounded(timeout)))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> Any:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def new_request(  # noqa: PLR0913 - keyword-only request parts, each optional
    method: str,
    url: httpx.URL,
    *,
    params: tuple[tuple[str, str], ...] | None = None,
    data: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    deadline: float = DEFAULT_DEADLINE,
) -> httpx.Request:
    """A request built outside a client (the auth flow's token requests), with our defaults.

    A request a flow yields is sent as is: it gets our user agent, timeouts and [SEC-8]
    overall ``deadline`` (seconds) only if it carries them itself.
    """
    timeouts = {k: v if v is None else min(v, deadline) for k, v in DEFAULT_TIMEOUT.as_dict().items()}
    return httpx.Request(
        method,
        url,
        params=params,
        data=data,
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        extensions={"timeout": timeouts, DEADLINE_KEY: Deadline.after(deadline)},
    )


#: [MSG-2] What the OS and the resolver say for a name that does not resolve (glibc, musl, macOS).
_UNRESOLVED = (
    "Name or service not known",
    "Temporary failure in name resolution",
    "nodename nor servname provided",
    "No address associated with hostname",
    "[Errno -2]",
    "[Errno -3]",
    "[Errno -5]",
    "[Errno 8]",
)
#: [MSG-2] What OpenSSL says when the server answered TLS's hello with something that is not TLS.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure", "packet length too long")


def transport_error(exc: httpx.HTTPError, host: str, what: str) -> TransportError:
    """The :class:`TransportError` an httpx failure means; raise it ``from exc``.

    An untrusted certificate is a :class:`TLSVerificationError` with the fix in its message;
    the URL named is the request that failed (a token service's, when that one failed).
    [MSG-2] A refused connection, a name that does not resolve, and a server that does not
    speak the scheme we spoke (TLS to a plain-HTTP server, plain HTTP to a TLS one) each say
    so with the fix. [SEC-8] httpx's text may quote what the server sent (a malformed header
    line that echoes ours): the sending client's secrets are cut out of it.
    """
    try:
        request: httpx.Request | None = exc.request
    except RuntimeError:  # an exception raised before any request was attached
        request = None
    text = redact_server_text(request, str(exc) or exc.__class__.__name__)
    where = f" ({redact_url(request.url)})" if request is not None else ""
    if "CERTIFICATE_VERIFY_FAILED" in text:
        reason = text.split("certificate verify failed:")[-1].strip(" ()")
        return TLSVerificationError(
            f"{host}: {what} failed: TLS certificate not trusted ({reason}); pass --ca-file, put the CA in "
            f"/etc/docker/certs.d/HOST/ca.crt, or use --insecure{where}"
        )
    plain = _plain_message(exc, text, request)
    if plain is not None:
        return TransportError(f"{host}: {what} failed: {plain}{where}")
    return TransportError(f"{host}: {what} failed: {exc.__class__.__name__}: {text}{where}")


def _plain_message(exc: httpx.HTTPError, text: str, request: httpx.Request | None) -> str | None:
    """[MSG-2] The plain words and the fix for the connection failures people meet; None for others."""
    if request is None:
        return None
    url = request.url
    name = url.host
    port = url.port or {"https": 443, "http": 80}.get(url.scheme, 0)
    if isinstance(exc, httpx.ConnectError):
        if "Connection refused" in text or "[Errno 111]" in text or "[Errno 61]" in text:
            return f"nothing listens on {name}:{port} (connection refused); is the registry running?"
        if any(marker in text for marker in _UNRESOLVED):
            return f"cannot resolve {name}; check the registry's name (and this machine's DNS)"
        if url.scheme == "https" and any(marker in text for marker in _NOT_TLS):
            return f"{name}:{port} speaks plain HTTP, not TLS; pass --plain-http if that is intended"
    if url.scheme == "http" and isinstance(exc, httpx.RemoteProtocolError) and _not_http(text):
        # some TLS servers answer a plain request with a TLS record (an alert) where the
        # status line should be; a malformed header line keeps httpx's own words
        return f"{name}:{port} did not answer in HTTP ({text}); if it speaks HTTPS, drop --plain-http"
    return None


def _not_http(text: str) -> bool:
    """[MSG-2] Whether h11 failed on the first line of the answer (no HTTP status line at all)."""
    return "illegal request line" in text or "illegal status line" in text


def _speaks_https(response: httpx.Response) -> bool:
    """[MSG-2] Whether a 400 to a plain-HTTP request is a TLS server saying it wants TLS.

    Go's TLS servers (Distribution, Harbor, zot) answer plain HTTP with this 400 and body;
    others (nginx) with "The plain HTTP request was sent to HTTPS port".
    """
    if response.status_code != 400 or response.request.url.scheme != "http":
        return False
    body = read_capped(response, 4096) or b""
    return b"HTTP request to an HTTPS server" in body or b"plain HTTP request was sent to HTTPS port" in body


@attrs.frozen
class Outgoing:
    """One API request as the loop sends it.

    ``build`` makes a fresh request, body included, for every attempt [API-5]; ``kind`` is the
    counter key (``"PUT blob"``); 2xx and the statuses in ``ok`` are answers, anything else
    raises; ``stream`` leaves the body unread for the caller; ``retry`` False sends once;
    ``blob_size`` is set when a blob body of that many bytes goes either way (the blob
    deadline, [API-9]).
    """

    build: Callable[[], httpx.Request]
    kind: str
    what: str
    ok: tuple[int, ...] = ()
    stream: bool = False
    retry: bool = True
    blob_size: int | None = None


@attrs.frozen
class Peer:
    """Who a :class:`Sender` talks to and on whose behalf.

    ``host`` names the registry in messages, ``origin`` is its API ``host[:port]`` (the only
    origin whose 401 may be authenticated against, [SEC-1]), ``credentials`` says where the
    credentials came from (never a secret), ``redactor`` holds the secrets to cut out of
    server text [SEC-8], and ``deadlines`` bound each request.
    """

    host: str
    origin: str
    credentials: str = ANONYMOUS
    redactor: Redactor = attrs.field(factory=Redactor, eq=False, repr=False)
    deadlines: Deadlines = attrs.field(factory=Deadlines)


class Sender:
    """[RETRY-1] The request loop of one registry client: retries, redirects, errors, counts.

    :meth:`send` returns the answer to an :class:`Outgoing` request or raises the error it
    means (:func:`ocimerge.registry.responses.raise_for_response` for error answers,
    :func:`transport_error` for failed connections, chained). Every request ocimerge sends
    may be repeated: HEAD, GET and PUT are idempotent, a repeated POST opens a fresh upload
    session, and a PATCH re-sends its chunk from a re-opened blob (a registry that kept part
    of it answers 416, which is final). ``requests`` counts attempts by ``Outgoing.kind``.
    [SEC-8] Each attempt gets its own :class:`~ocimerge.registry.responses.Deadline`.
    [CRED-6] ``debug`` (``RegistryOptions.debug``) gets a line per request and answer.
    """

    def __init__(
        self,
        client: httpx.Client,
        policy: RetryPolicy,
        *,
        peer: Peer,
        sleep: Callable[[float], None],
        debug: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        if debug is not None:
            log_exchanges(client, debug, peer.redactor)  # [CRED-6] --debug
        self.policy = policy
        self.peer = peer
        self.host = peer.host
        self._sleep = sleep
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()

    def send(self, out: Outgoing) -> httpx.Response:
        """Send ``out`` until it is answered, retries permitting; see the class docstring."""
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            request = out.build()  # a fresh request and body for every attempt [API-5]
            self._stamp(request, out)
            self._count(out.kind)
            try:
                response = self._exchange(request, out.what)
            except httpx.HTTPError as exc:
                deadline = deadline_of_request(request)
                if deadline is not None:
                    deadline.check(self.host, request.url)  # [SEC-8] a deadline missed is final, chained
                error = transport_error(exc, self.host, out.what)
                if not self._again(out, attempt, retryable=error.retryable):
                    raise error from exc
                self._sleep(self.policy.delay(attempt))
                continue
            status = response.status_code
            if status == 401 and not is_origin(response.request.url, self.peer.origin):
                raise self._foreign_challenge(response, out)
            if status == 401 and not isinstance(request.stream, httpx.ByteStream) and not reauthenticated:
                # a streamed body cannot be replayed inside the auth flow: its token is now
                # cached, so the request is built and sent once more (not counted as a retry)
                response.close()
                reauthenticated = True
                attempt -= 1
                continue
            if self._again(out, attempt, retryable=self.policy.should_retry_status(status)):
                delay = self.policy.delay(attempt, response)
                response.close()
                self._sleep(delay)
                continue
            return self._settle(response, out)

    def _stamp(self, request: httpx.Request, out: Outgoing) -> None:
        """[API-9][SEC-8] Give ``request`` its overall deadline, and per-read timeouts no longer than it."""
        seconds = self.peer.deadlines.seconds(out.blob_size)
        request.extensions[DEADLINE_KEY] = Deadline.after(seconds)
        request.extensions[REDACTOR_KEY] = self.peer.redactor  # [SEC-8] for messages quoting the server
        timeouts = dict(request.extensions.get("timeout") or DEFAULT_TIMEOUT.as_dict())
        request.extensions["timeout"] = {k: v if v is None else min(v, seconds) for k, v in timeouts.items()}

    def _foreign_challenge(self, response: httpx.Response, out: Outgoing) -> UnauthorizedError:
        """[SEC-1] The error for a 401 from another origin: nothing of ours was or will be sent."""
        response.close()
        where = response.request.url.netloc.decode()  # the port too: two hosts may share an address
        return UnauthorizedError(
            f"{self.host}: {out.what}: {where} (where the registry sent us) asks for credentials (401); "
            "ocimerge sends credentials only to the registry and the token service its own challenge names",
            status=401,
        )

    def _no_credentials(self, exc: UnauthorizedError, out: Outgoing) -> UnauthorizedError:
        """[MSG-1] A 401 to a client that holds no credentials says where it looked for them.

        Any other 401 (credentials were sent and refused) is returned as it is.
        """
        if self.peer.credentials != ANONYMOUS:
            return exc
        return UnauthorizedError(
            f"{self.host}: {out.what} was refused to anonymous access (401) and no credentials were found; looked at "
            f"{searched(self.host)}; pass --username with --password-stdin, or run docker login {self.host}",
            status=exc.status,
        )

    def _again(self, out: Outgoing, attempt: int, *, retryable: bool) -> bool:
        return retryable and out.retry and attempt < self.policy.attempts

    def _count(self, kind: str) -> None:
        with self._lock:
            self.requests[kind] += 1

    def _exchange(self, request: httpx.Request, what: str) -> httpx.Response:
        """Send ``request``, following up to ``MAX_REDIRECTS`` redirects of a GET or HEAD."""
        deadline = deadline_of_request(request)
        for _hop in range(MAX_REDIRECTS + 1):
            if deadline is not None:
                deadline.check(self.host, request.url)  # [SEC-8] the hops share one deadline
            with within(deadline):  # [SEC-8] status line and headers too, not only the body
                response = self.client.send(request, stream=True)
            if response.status_code not in REDIRECTS or "location" not in response.headers:
                return response
            response.close()
            request = _redirected(request, response, self.host, what)
        raise RegistryError(f"{self.host}: {what}: more than {MAX_REDIRECTS} redirects", url=redact_url(request.url))

    def _settle(self, response: httpx.Response, out: Outgoing) -> httpx.Response:
        """The answer, read unless streamed; an error answer raised as its error class."""
        if response.status_code not in out.ok:  # returns for 2xx only
            if _speaks_https(response):
                url = response.request.url
                raise TransportError(
                    f"{self.host}: {out.what} failed: {url.host}:{url.port or 80} speaks HTTPS; drop --plain-http "
                    f"({redact_url(url)})"
                )
            try:
                raise_for_response(response, out.what, self.host, self.peer.credentials, self.peer.redactor)
            except UnauthorizedError as exc:
                raise self._no_credentials(exc, out) from exc
        if not out.stream and read_capped(response, MAX_ANSWER_BODY, registry=self.host) is None:
            raise RegistryError(
                f"{self.host}: {out.what}: the answer is over {MAX_ANSWER_BODY // (1024 * 1024)} MiB",
                url=redact_url(response.request.url),
            )
        return response


def deadline_of_request(request: httpx.Request) -> Deadline | None:
    """The :class:`~ocimerge.registry.responses.Deadline` ``request`` was stamped with, if any."""
    found = request.extensions.get(DEADLINE_KEY)
    return found if isinstance(found, Deadline) else None


def _redirected(request: httpx.Request, response: httpx.Response, host: str, what: str) -> httpx.Request:
    """The request a redirect asks for: same method and headers, none of our credentials.

    Only GET and HEAD are redirected: a body (a blob, a manifest) is never re-sent to
    wherever a redirect points. A relative ``Location`` is resolved against the request URL.
    The auth flow sees the new request afresh and adds credentials only on our own origin.
    """
    url = redact_url(request.url)
    if request.method not in ("GET", "HEAD"):
        raise RegistryError(
            f"{host}: {what}: {request.method} answered with a redirect ({response.status_code}), "
            "which is followed only for GET and HEAD",
            status=response.status_code,
            url=url,
        )
    target = request.url.join(response.headers["location"])
    headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "authorization")}
    return httpx.Request(request.method, target, headers=headers, extensions=request.extensions)


class ResponseStream:
    """A blocking ``read``/``readinto`` stream over a streamed response body.

    What a :class:`ocimerge.content.VerifyingReader` reads a registry blob through: httpx
    failures mid-body (a body shorter than its ``Content-Length`` included) become
    :class:`TransportError` (chained); closing closes the response. [SEC-8] The request's
    deadline is checked before every network chunk is taken: chunks come as they arrive
    (never accumulated by httpx), so a dripping server meets the check.
    """

    def __init__(self, response: httpx.Response, host: str, what: str) -> None:
        self._response = response
        self._host = host
        self._what = what
        self._deadline = deadline_of(response)
        self._chunks = response.iter_bytes()
        # what is left of the last network chunk: served by slicing, never copied into a
        # growing buffer, so each byte is copied once, into the caller's buffer
        self._pending = memoryview(b"")
        self._done = False

    def _refill(self) -> bool:
        """Take the next network chunk into ``_pending``; False at the end of the body."""
        while not self._pending and not self._done:
            if self._deadline is not None:
                self._deadline.check(self._host, self._response.request.url)
            try:
                with within(self._deadline):
                    self._pending = memoryview(next(self._chunks))
            except StopIteration:
                self._done = True
            except httpx.HTTPError as exc:
                if self._deadline is not None:
                    self._deadline.check(self._host, self._response.request.url)
                raise transport_error(exc, self._host, self._what) from exc
        return bool(self._pending)

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left with ``n < 0``); ``b""`` at the end."""
        parts: list[memoryview] = []
        wanted = n
        while (n < 0 or wanted > 0) and self._refill():
            take = len(self._pending) if n < 0 else min(wanted, len(self._pending))
            parts.append(self._pending[:take])
            self._pending = self._pending[take:]
            wanted -= take
        return b"".join(parts)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` as far as the body allows; the count, 0 at the end."""
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view) and self._refill():
            take = min(len(view) - filled, len(self._pending))
            view[filled : filled + take] = self._pending[:take]
            self._pending = self._pending[take:]
            filled += take
        return filled

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> ResponseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
