"""Registry answers turned into :mod:`ocimerge.errors` values, read with caps ([ERR-1], [ERR-2]).

[ERR-1] A 4xx/5xx body is ``{"errors":[{"code","message","detail"}]}`` or anything else (an
HTML page from a proxy); bodies are read only up to a cap. Each answer becomes the
:mod:`ocimerge.errors` class for its code (or its status, for 413); 401 and 403 are auth
failures. [ERR-2] URLs in messages are redacted: the query string (which may carry upload
state) is dropped. No exception class is defined here: the tree lives in ``errors``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import httpx

from ocimerge.errors import DeniedError, UnauthorizedError, registry_error_class

__all__ = ["MAX_ERROR_BODY", "describe", "raise_for_response", "read_capped", "redact_url"]

MAX_ERROR_BODY = 64 * 1024


def redact_url(url: httpx.URL | str) -> str:
    """[ERR-2] scheme://host/path, without query or credentials.

    >>> redact_url("https://u:p@r.example/v2/a/blobs/uploads/1?_state=secret")
    'https://r.example/v2/a/blobs/uploads/1'
    """
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(query=None, fragment=None, username=None, password=None))


class _Capped(httpx.SyncByteStream):
    """A response body cut off after ``limit`` bytes; ``over`` says whether it was cut."""

    def __init__(self, inner: httpx.SyncByteStream, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self.over = False

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                self.over = True
                return  # the rest is never read; closing the response drops the connection's
            yield chunk

    def close(self) -> None:
        self._inner.close()


def read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """The whole body of a streamed response, or None when it runs past ``limit``; closes it.

    The body is read through httpx itself (``Response.read``) with the stream capped, so the
    response is left read as well as closed: httpx reads the answers an auth flow was handed
    once more, and that must neither fail nor fetch an unbounded body.
    """
    if response.is_stream_consumed or response.is_closed or not isinstance(response.stream, httpx.SyncByteStream):
        try:
            content = response.content  # read already (or never streamed): nothing more to fetch
        except httpx.ResponseNotRead:
            return b""
        return content if len(content) <= limit else None
    capped = _Capped(response.stream, limit)
    response.stream = capped
    body = response.read()  # reads through the cap and closes the response
    return None if capped.over else body


def _errors(body: bytes) -> list[dict[str, object]]:
    try:
        value = json.loads(body)
    except ValueError:
        return []
    errors = value.get("errors") if isinstance(value, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def describe(response: httpx.Response, body: bytes) -> tuple[str, str]:
    """The first error code and a short human message from a registry error response."""
    errors = _errors(body)
    if errors:
        first = errors[0]
        code = str(first.get("code") or "UNKNOWN")
        message = str(first.get("message") or "").strip()
        return code, message
    return "", response.reason_phrase or ""


def raise_for_response(
    response: httpx.Response, what: str, registry: str, credentials: str = "anonymous access"
) -> None:
    """Raise the error a failed response means; return when it succeeded (2xx).

    [ERR-1] At most ``MAX_ERROR_BODY`` bytes of the body are read; the response is closed.
    401 is :class:`UnauthorizedError`, 403 or ``DENIED`` :class:`DeniedError` (both with the
    status); anything else the class :func:`ocimerge.errors.registry_error_class` names.
    ``credentials`` names where the credentials came from (never the secret), for 401/403.
    """
    if response.is_success:
        return
    body = b""
    with contextlib.suppress(httpx.HTTPError):  # a body that fails to arrive still leaves the status
        body = read_capped(response, MAX_ERROR_BODY) or b""
    response.close()
    code, message = describe(response, body)
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
    raise cls(f"{registry}: {what} failed: {detail} ({status} from {url})", status=status, url=url)
