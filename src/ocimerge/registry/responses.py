"""Registry answers turned into :mod:`ocimerge.errors` values, read with caps ([ERR-1], [ERR-2]).

[ERR-1] A 4xx/5xx body is ``{"errors":[{"code","message","detail"}]}`` or anything else (an
HTML page from a proxy); bodies are read only up to a cap. Each answer becomes the
:mod:`ocimerge.errors` class for its code (or its status, for 413); 401 and 403 are auth
failures. [ERR-2] URLs in messages are redacted: the query string (which may carry upload
state) is dropped. No exception class is defined here: the tree lives in ``errors``.
[SEC-8] Every answer has an overall :class:`Deadline` (httpx's timeouts are per read, so a
server dripping a byte every few seconds would otherwise hold a run forever): it is checked
in every read loop here and in the transport. Secrets we hold are cut out of any server text
by one :class:`Redactor` before it enters a message, and server JSON (error bodies, token
answers, tag lists) goes through :func:`decode_server_json`, whose failures (deep nesting,
invalid UTF-8) are one-line errors, never crashes.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import datetime
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any

import attrs
import httpx

from ocimerge.errors import DeniedError, DocumentError, TransportError, UnauthorizedError, registry_error_class
from ocimerge.model.codec import decode_json

__all__ = [
    "DEADLINE_KEY",
    "MAX_ERROR_BODY",
    "REDACTOR_KEY",
    "Deadline",
    "Redactor",
    "decode_server_json",
    "describe",
    "raise_for_response",
    "read_capped",
    "redact_server_text",
    "redact_url",
]

MAX_ERROR_BODY = 64 * 1024
#: Where a request carries its :class:`Deadline` (``request.extensions``); redirects keep it.
DEADLINE_KEY = "ocimerge.deadline"
#: Where a request carries the :class:`Redactor` of the client that sent it.
REDACTOR_KEY = "ocimerge.redactor"
REDACTED = "<redacted>"


@attrs.frozen
class Deadline:
    """[API-9][SEC-8] When the answer to one request must be complete (``time.monotonic`` seconds).

    ``seconds`` is the allowance it was made with, for the message.

    >>> Deadline.after(60.0).left() > 59
    True
    """

    at: float
    seconds: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """The deadline ``seconds`` from now."""
        return cls(time.monotonic() + seconds, seconds)

    def left(self) -> float:
        """Seconds until the deadline (negative once past it)."""
        return self.at - time.monotonic()

    def check(self, registry: str, url: httpx.URL | str) -> None:
        """Raise :class:`TransportError` naming ``registry``, the URL and the deadline once it is past."""
        if self.left() <= 0:
            raise TransportError(
                f"{registry}: no complete answer from {redact_url(url)} within the {_seconds(self.seconds)} s "
                "deadline for one request; the server is too slow or is stalling"
            )


def _seconds(value: float) -> str:
    """``value`` to a tenth of a second, without trailing zeros: ``1.5``, ``120``, ``11140``."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


#: The deadline of the request whose bytes this thread is moving now (see :func:`within`).
_CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("ocimerge_deadline", default=None)


@contextlib.contextmanager
def within(deadline: Deadline | None) -> Iterator[None]:
    """[SEC-8] Socket reads and writes in this block are bounded by ``deadline`` (nests).

    The transport's sockets ask :func:`current_deadline` before each read and write, so a
    server dripping its status line or headers meets the deadline too, not only one
    dripping a body.
    """
    token = _CURRENT.set(deadline)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_deadline() -> Deadline | None:
    """The deadline set by the innermost :func:`within` of this thread, if any."""
    return _CURRENT.get()


def deadline_of(response: httpx.Response) -> Deadline | None:
    """The deadline the request of ``response`` was sent with, if any."""
    try:
        found = response.request.extensions.get(DEADLINE_KEY)
    except RuntimeError:  # a response built without a request (unit tests)
        return None
    return found if isinstance(found, Deadline) else None


class Redactor:
    """[SEC-8] The secrets one registry client holds, cut out of server text before we show it.

    Registry error bodies may echo the request's ``Authorization`` header: the password, a
    token, or the base64 of ``user:password``. Secrets are added as they are learnt (bearer
    tokens); thread-safe.

    >>> Redactor.basic("alice", "s3cr3t").redact("you sent Basic YWxpY2U6czNjcjN0 (alice, s3cr3t)")
    'you sent Basic <redacted> (alice, <redacted>)'
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self.add(*secrets)

    @classmethod
    def basic(cls, username: str | None, *secrets: str | None) -> Redactor:
        """A redactor for these secrets, and for the base64 of ``username:secret`` (Basic auth)."""
        found = [s for s in secrets if s]
        encoded = [base64.b64encode(f"{username}:{s}".encode()).decode() for s in found if username]
        return cls([*found, *encoded, *(e.rstrip("=") for e in encoded)])

    def add(self, *secrets: str) -> None:
        """Also redact these (empty strings are ignored)."""
        with self._lock:
            self._secrets.update(s for s in secrets if s)

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``<redacted>``, longest first."""
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return text


def redact_server_text(request: httpx.Request | None, text: str) -> str:
    """[SEC-8] ``text`` (from a server, or an httpx error quoting one) with the secrets of the
    client that sent ``request`` cut out, and unpaired surrogates escaped."""
    found = request.extensions.get(REDACTOR_KEY) if request is not None else None
    return encodable(found.redact(text) if isinstance(found, Redactor) else text)


def encodable(text: str) -> str:
    """Server text made safe to encode (not to print: that is ``ocimerge.text.printable``, [SEC-5]):
    unpaired surrogates become ``\\udXXX`` escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def decode_server_json(body: bytes, *, where: str) -> Any:
    """[SEC-8] A server's JSON through the project's strict decoder; raises ``ValueError`` only.

    Deep nesting (``RecursionError`` in ``json``), invalid UTF-8, duplicate keys and the like
    all come out as a ``ValueError`` with a one-line reason, for the caller to name.
    """
    try:
        return decode_json(body, where=where)
    except DocumentError as exc:
        raise ValueError(str(exc)) from exc
    except RecursionError as exc:
        raise ValueError(f"{where}: JSON nested too deeply") from exc


def redact_url(url: httpx.URL | str) -> str:
    """[ERR-2] scheme://host/path, without query or credentials.

    >>> redact_url("https://u:p@r.example/v2/a/blobs/uploads/1?_state=secret")
    'https://r.example/v2/a/blobs/uploads/1'
    """
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(query=None, fragment=None, username=None, password=None))


class _Capped(httpx.SyncByteStream):
    """A response body cut off after ``limit`` bytes; ``over`` says whether it was cut.

    [SEC-8] ``check`` runs before every chunk is taken (the deadline).
    """

    def __init__(self, inner: httpx.SyncByteStream, limit: int, check: Callable[[], None]) -> None:
        self._inner = inner
        self._limit = limit
        self._check = check
        self.over = False

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        self._check()
        for chunk in self._inner:
            self._check()
            seen += len(chunk)
            if seen > self._limit:
                self.over = True
                return  # the rest is never read; closing the response drops the connection's
            yield chunk

    def close(self) -> None:
        self._inner.close()


def read_capped(response: httpx.Response, limit: int, *, registry: str = "") -> bytes | None:
    """The whole body of a streamed response, or None when it runs past ``limit``; closes it.

    The body is read through httpx itself (``Response.read``) with the stream capped, so the
    response is left read as well as closed: httpx reads the answers an auth flow was handed
    once more, and that must neither fail nor fetch an unbounded body. [SEC-8] The request's
    :class:`Deadline` is checked between chunks; a body that breaks off (shorter than its
    ``Content-Length``, a dropped connection) or misses the deadline is a
    :class:`TransportError` naming ``registry`` (the URL's host when not given).
    """
    if response.is_stream_consumed or response.is_closed or not isinstance(response.stream, httpx.SyncByteStream):
        try:
            content = response.content  # read already (or never streamed): nothing more to fetch
        except httpx.ResponseNotRead:
            return b""
        return content if len(content) <= limit else None
    registry = registry or response.request.url.host
    deadline = deadline_of(response)
    url = response.request.url
    capped = _Capped(response.stream, limit, (lambda: deadline.check(registry, url)) if deadline else lambda: None)
    response.stream = capped
    try:
        with within(deadline):
            body = response.read()  # reads through the cap and closes the response
    except TransportError:  # the deadline passed
        response.close()
        raise
    except httpx.HTTPError as exc:
        response.close()
        if deadline is not None:
            deadline.check(registry, url)  # a socket timed out because the deadline passed
        reason = redact_server_text(response.request, str(exc))  # h11 may quote the server's bytes
        raise TransportError(
            f"{registry}: the answer from {redact_url(url)} broke off: {exc.__class__.__name__}: {reason}"
        ) from exc
    return None if capped.over else body


def _redactor_of(response: httpx.Response) -> Redactor | None:
    found = response.request.extensions.get(REDACTOR_KEY)
    return found if isinstance(found, Redactor) else None


def _errors(body: bytes) -> list[dict[str, object]]:
    try:
        value = decode_server_json(body, where="error body")
    except ValueError:  # [SEC-8] not JSON, nested too deep, bad UTF-8: the status speaks instead
        return []
    errors = value.get("errors") if isinstance(value, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def describe(response: httpx.Response, body: bytes, redactor: Redactor | None = None) -> tuple[str, str]:
    """The first error code and a short human message from a registry error response.

    [SEC-8] Both are server text: secrets ``redactor`` holds are cut out, unpaired
    surrogates escaped.
    """
    clean = (redactor or Redactor()).redact
    errors = _errors(body)
    if errors:
        first = errors[0]
        code = encodable(clean(str(first.get("code") or "UNKNOWN")))
        message = encodable(clean(str(first.get("message") or "").strip()))
        return code, message
    return "", encodable(clean(response.reason_phrase or ""))


def retry_after(response: httpx.Response) -> float | None:
    """[RETRY-1] Seconds ``Retry-After`` asks to wait (delay-seconds or an HTTP-date); None without one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.datetime.now(when.tzinfo)).total_seconds())
    except (TypeError, ValueError):
        return None


def raise_for_response(
    response: httpx.Response,
    what: str,
    registry: str,
    credentials: str = "anonymous access",
    redactor: Redactor | None = None,
) -> None:
    """Raise the error a failed response means; return when it succeeded (2xx).

    [ERR-1] At most ``MAX_ERROR_BODY`` bytes of the body are read; the response is closed.
    401 is :class:`UnauthorizedError`, 403 or ``DENIED`` :class:`DeniedError` (both with the
    status); anything else the class :func:`ocimerge.errors.registry_error_class` names.
    ``credentials`` names where the credentials came from (never the secret), for 401/403.
    [SEC-8] Server text in the message has ``redactor``'s secrets cut out.
    """
    if response.is_success:
        return
    body = b""
    with contextlib.suppress(TransportError):  # a body that fails to arrive still leaves the status
        body = read_capped(response, MAX_ERROR_BODY, registry=registry) or b""
    response.close()
    code, message = describe(response, body, redactor or _redactor_of(response))
    status = response.status_code
    url = redact_url(response.request.url)
    detail = f"{code}: {message}" if code else f"{status} {message}".strip()
    if status == 401:
        raise UnauthorizedError(
            f"{registry}: authentication failed for {what} ({detail}) with {credentials}; check the credentials",
            status=status,
        )
    if status == 403 or code == "DENIED":
        raise DeniedError(
            f"{registry}: access denied for {what} ({detail}) with {credentials}; the account may not have this right",
            status=status,
        )
    cls = registry_error_class(code, status)
    message = f"{registry}: {what} failed: {detail} ({status} from {url})"
    raise cls(message, status=status, url=url, retry_after=retry_after(response))
