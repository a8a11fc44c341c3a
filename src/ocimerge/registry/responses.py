"""Registry error responses turned into :mod:`ocimerge.errors` values ([ERR-1], [ERR-2]).

[ERR-1] A 4xx/5xx body is ``{"errors":[{"code","message","detail"}]}`` or anything else (an
HTML page from a proxy); bodies are read only up to a cap. [ERR-2] URLs in messages are
redacted: the query string (which may carry upload state) is dropped.
"""

from __future__ import annotations

import contextlib
import json

import httpx

from ocimerge.errors import AuthError, RegistryError
from ocimerge.registry.transport import RetryPolicy

__all__ = [
    "BlobUnknownError",
    "DeniedError",
    "ManifestUnknownError",
    "NameUnknownError",
    "UnauthorizedError",
    "raise_for_response",
    "read_capped",
    "redact_url",
]

MAX_ERROR_BODY = 64 * 1024


class RegistryCodeError(RegistryError):
    """A registry error with its distribution error code, HTTP status and redacted URL."""

    code = "UNKNOWN"

    def __init__(self, message: str, *, status: int, url: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        del retryable  # decided by errors.retryable_status


class BlobUnknownError(RegistryCodeError):
    code = "BLOB_UNKNOWN"


class ManifestUnknownError(RegistryCodeError):
    code = "MANIFEST_UNKNOWN"


class NameUnknownError(RegistryCodeError):
    code = "NAME_UNKNOWN"


class ManifestBlobUnknownError(RegistryCodeError):
    code = "MANIFEST_BLOB_UNKNOWN"


class DigestInvalidError(RegistryCodeError):
    code = "DIGEST_INVALID"


class BlobUploadUnknownError(RegistryCodeError):
    code = "BLOB_UPLOAD_UNKNOWN"


class UnauthorizedError(AuthError):
    """401 after authenticating: the credentials were refused."""


class DeniedError(AuthError):
    """403 / DENIED: authenticated, but not allowed to do this."""


_BY_CODE: dict[str, type[RegistryCodeError]] = {
    cls.code: cls
    for cls in (
        BlobUnknownError,
        ManifestUnknownError,
        NameUnknownError,
        ManifestBlobUnknownError,
        DigestInvalidError,
        BlobUploadUnknownError,
    )
}


def redact_url(url: httpx.URL | str) -> str:
    """[ERR-2] scheme://host/path, without query or credentials."""
    parsed = httpx.URL(str(url))
    return str(parsed.copy_with(query=None, fragment=None, username=None, password=None))


def read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """The whole body of a streamed response, or None when it runs past ``limit``; closes it."""
    body = bytearray()
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > limit:
                return None
    finally:
        response.close()
    return bytes(body)


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
    ``credentials`` names where the credentials came from (never the secret), for 401/403.
    """
    if response.is_success:
        return
    body = b""
    with contextlib.suppress(httpx.HTTPError):
        body = read_capped(response, MAX_ERROR_BODY) or b""
    code, message = describe(response, body)
    status = response.status_code
    url = redact_url(response.request.url)
    detail = f"{code}: {message}" if code else f"{status} {message}".strip()
    if status == 401:
        raise UnauthorizedError(
            f"{registry}: authentication failed for {what} ({detail}) with {credentials}; check the credentials"
        )
    if status == 403 or code == "DENIED":
        raise DeniedError(
            f"{registry}: access denied for {what} ({detail}) with {credentials}; the account may not have this right"
        )
    cls = _BY_CODE.get(code, RegistryCodeError)
    raise cls(
        f"{registry}: {what} failed: {detail} ({status} from {url})",
        status=status,
        url=url,
        retryable=status in RetryPolicy().statuses,
    )
