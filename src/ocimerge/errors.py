"""The one exception tree of ocimerge, split by whose fault a failure was.

Every error ocimerge raises on purpose derives from :class:`OcimergeError`; its ``str()`` is
one line that names the file, member, field or registry response at fault and says what to
do. The CLI maps the classes below to exit codes in one table (``ocimerge.cli.EXIT_CODES``);
library callers catch the class that matters to them. Every class is exported from
``ocimerge``. Third-party exceptions are translated where they are caught, with the original
chained as ``__cause__`` (``OCIMERGE_DEBUG=1`` prints it).

    OcimergeError
    ├── UsageError                  the command line or API call itself is wrong
    ├── InputError                  a source is unreadable or not what it claims to be
    │   ├── NotAnImageError         no archive or layout at all
    │   ├── ArchiveError            hostile, truncated or malformed tar
    │   ├── DocumentError           invalid JSON, or JSON that is not the document it claims
    │   ├── UnsupportedMediaTypeError
    │   ├── BlobMissingError        a referenced blob is absent
    │   ├── DigestMismatchError     bytes do not match their descriptor
    │   ├── SelectionError          SRC:TAG / SRC@DIGEST names nothing, or the choice is ambiguous
    │   └── SourceNotFoundError     no such path, or the tag, digest or repository is not in its registry
    ├── ModelError                  the inputs are readable but cannot be merged as asked
    │   ├── PlatformMismatchError   a platform given for a source disagrees with its config
    │   ├── PlatformConflictError   two sources of one platform
    │   └── ConversionError         a Docker manifest list cannot hold what the inputs carry
    ├── OutputError                 the destination cannot be written
    │   ├── TagMovedError           a tag no longer names the digest it was read at [TAG-4]
    │   └── TagNeededError          a tag is the last of a manifest a tagged index lists [TAG-3]
    └── RemoteError                 registry, auth and transport
        ├── RegistryError           the registry answered with an error (``code``, ``status``, ``url``)
        │   ├── BlobUnknownError, BlobUploadInvalidError, BlobUploadUnknownError,
        │   │   DigestInvalidError, ManifestBlobUnknownError, ManifestInvalidError,
        │   │   ManifestUnknownError, NameInvalidError, NameUnknownError, SizeInvalidError,
        │   │   TooManyRequestsError, UnsupportedError
        │   │                       one class per distribution-spec error code [ERR-1]
        │   ├── RequestTooLargeError  413: the registry or a proxy refused the request size
        │   └── DeleteUnsupportedError  the registry refuses this DELETE (405, or 400 for a tag) [TAG-2]
        ├── AuthError               authentication or authorisation failed
        │   ├── UnauthorizedError   401 after authenticating: the credentials were refused
        │   └── DeniedError         403 / DENIED: authenticated, but not allowed
        └── TransportError          the registry could not be reached or the connection failed
            └── TLSVerificationError  the server's certificate is not trusted

[RETRY-1] Whether a failure is worth repeating is decided here, once: :func:`retryable_status`
names the HTTP statuses, and :attr:`OcimergeError.retryable` applies it to an error. The
transport's retry loop and ``RetryPolicy`` read the same function, so the flag an error
carries always agrees with what the retry loop did.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "RETRYABLE_STATUSES",
    "ArchiveError",
    "AuthError",
    "BlobMissingError",
    "BlobUnknownError",
    "BlobUploadInvalidError",
    "BlobUploadUnknownError",
    "ConversionError",
    "DeleteUnsupportedError",
    "DeniedError",
    "DigestInvalidError",
    "DigestMismatchError",
    "DocumentError",
    "InputError",
    "ManifestBlobUnknownError",
    "ManifestInvalidError",
    "ManifestUnknownError",
    "ModelError",
    "NameInvalidError",
    "NameUnknownError",
    "NotAnImageError",
    "OcimergeError",
    "OutputError",
    "PlatformConflictError",
    "PlatformMismatchError",
    "RegistryError",
    "RemoteError",
    "RequestTooLargeError",
    "SelectionError",
    "SignatureError",
    "SizeInvalidError",
    "SourceNotFoundError",
    "TLSVerificationError",
    "TagMovedError",
    "TagNeededError",
    "TooManyRequestsError",
    "TransportError",
    "UnauthorizedError",
    "UnsupportedError",
    "UnsupportedMediaTypeError",
    "UsageError",
    "registry_error_class",
    "retryable_status",
]

#: [RETRY-1] The HTTP statuses a request is repeated on: request timeout, too many requests,
#: and the server errors a proxy or an overloaded registry answers with.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def retryable_status(status: int) -> bool:
    """[RETRY-1] Whether a response with this HTTP status is worth sending again.

    >>> retryable_status(503), retryable_status(404)
    (True, False)
    """
    return status in RETRYABLE_STATUSES


class OcimergeError(Exception):
    """Base of every deliberate ocimerge failure; ``str()`` is a one-line message."""

    @property
    def retryable(self) -> bool:
        """Whether the same request might succeed if sent again (only remote failures can)."""
        return False


class UsageError(OcimergeError):
    """The caller asked for something malformed (bad flag value, bad platform string)."""


class InputError(OcimergeError):
    """A source could not be read as the image it claims to be."""


class NotAnImageError(InputError):
    """The path is neither an OCI layout, an OCI archive nor a docker-save archive."""


class ArchiveError(InputError):
    """The tar is truncated, malformed or hostile (``..``, absolute paths, escaping links)."""


class DocumentError(InputError):
    """A JSON document is invalid, too large, or not the kind of document it claims to be."""


class UnsupportedMediaTypeError(InputError):
    """A manifest or index carries a media type ocimerge cannot interpret."""


class BlobMissingError(InputError):
    """A descriptor names a blob that is not in the source."""


class DigestMismatchError(InputError):
    """Bytes read do not match the size or digest of their descriptor."""


class SelectionError(InputError):
    """``SRC:TAG`` or ``SRC@DIGEST`` selects nothing, or a source holds several images."""


class SignatureError(InputError):
    """[SIGNED-1] An image lacks a valid signature by the key that was asked for."""


class SourceNotFoundError(InputError):
    """[REMOTE-3] A source is not there: no such local path, or a registry source's tag,
    digest or repository is not in its registry.

    Raised where a path does not exist, or a registry answered ``MANIFEST_UNKNOWN`` or
    ``NAME_UNKNOWN`` for a source: the input is at fault, not the registry.
    ``--ignore-missing`` skips such a source.
    """


class ModelError(OcimergeError):
    """The inputs are readable but cannot be assembled as asked."""


class PlatformMismatchError(ModelError):
    """The platform given for a source disagrees with the platform in its config."""


class PlatformConflictError(ModelError):
    """Two sources resolve to the same normalised platform."""


class ConversionError(ModelError):
    """The requested output format cannot represent the inputs without losing something."""


class OutputError(OcimergeError):
    """The destination exists, or cannot be written."""


class TagMovedError(OutputError):
    """[TAG-4] A tag names another digest than the one it was read at: someone pushed since.

    Nothing was removed; read the tag again and decide.
    """


class TagNeededError(OutputError):
    """[TAG-3] The tag is the last one of a manifest that an index tagged in the same
    repository lists (or the repository has too many tags to check); ``--force`` removes it."""


class RemoteError(OcimergeError):
    """A registry, its auth service or the network failed."""


class RegistryError(RemoteError):
    """The registry answered with an error.

    ``code`` is the distribution-spec error code of the first error in the body (``UNKNOWN``
    when the body had none), ``status`` the HTTP status and ``url`` the request URL without
    its query (which may carry upload state) [ERR-2]. Both are None for a failure found in an
    answer that was itself a success (a missing ``Location``, a digest the registry disputes).
    ``retry_after`` is the wait its ``Retry-After`` asked for, in seconds [RETRY-1].
    """

    code: ClassVar[str] = "UNKNOWN"

    def __init__(
        self, message: str, *, status: int | None = None, url: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status is not None and retryable_status(self.status)


class BlobUnknownError(RegistryError):
    """``BLOB_UNKNOWN``: the registry does not hold this blob."""

    code = "BLOB_UNKNOWN"


class BlobUploadInvalidError(RegistryError):
    """``BLOB_UPLOAD_INVALID``: the upload session is in a state the request does not fit."""

    code = "BLOB_UPLOAD_INVALID"


class BlobUploadUnknownError(RegistryError):
    """``BLOB_UPLOAD_UNKNOWN``: the upload session is gone (expired, or never existed)."""

    code = "BLOB_UPLOAD_UNKNOWN"


class DigestInvalidError(RegistryError):
    """``DIGEST_INVALID``: the uploaded content does not match the digest given."""

    code = "DIGEST_INVALID"


class ManifestBlobUnknownError(RegistryError):
    """``MANIFEST_BLOB_UNKNOWN``: a manifest names a blob the repository does not hold."""

    code = "MANIFEST_BLOB_UNKNOWN"


class ManifestInvalidError(RegistryError):
    """``MANIFEST_INVALID``: the registry refused the manifest's content."""

    code = "MANIFEST_INVALID"


class ManifestUnknownError(RegistryError):
    """``MANIFEST_UNKNOWN``: no manifest under this tag or digest."""

    code = "MANIFEST_UNKNOWN"


class NameInvalidError(RegistryError):
    """``NAME_INVALID``: the repository name is not valid for this registry."""

    code = "NAME_INVALID"


class NameUnknownError(RegistryError):
    """``NAME_UNKNOWN``: the repository is not known to the registry."""

    code = "NAME_UNKNOWN"


class SizeInvalidError(RegistryError):
    """``SIZE_INVALID``: the content length does not match what was declared."""

    code = "SIZE_INVALID"


class TooManyRequestsError(RegistryError):
    """``TOOMANYREQUESTS``: rate limited; retried while the policy allows."""

    code = "TOOMANYREQUESTS"


class UnsupportedError(RegistryError):
    """``UNSUPPORTED``: the registry does not implement this operation."""

    code = "UNSUPPORTED"


class RequestTooLargeError(RegistryError):
    """413: the registry or a proxy in front of it refused a request this large."""

    code = "REQUEST_TOO_LARGE"


class DeleteUnsupportedError(RegistryError):
    """[TAG-2] The registry refuses this ``DELETE`` of a manifest: 405 (deletion disabled, or
    not offered), or 400 for a tag (CNCF Distribution 2.8 answers a tag ``DELETE`` with
    ``DIGEST_INVALID``). ``answered`` is the error code the registry gave."""

    code = "UNSUPPORTED"

    def __init__(
        self, message: str, *, status: int | None = None, url: str | None = None, answered: str = "UNKNOWN"
    ) -> None:
        super().__init__(message, status=status, url=url)
        self.answered = answered


_BY_CODE: dict[str, type[RegistryError]] = {
    cls.code: cls
    for cls in (
        BlobUnknownError,
        BlobUploadInvalidError,
        BlobUploadUnknownError,
        DigestInvalidError,
        ManifestBlobUnknownError,
        ManifestInvalidError,
        ManifestUnknownError,
        NameInvalidError,
        NameUnknownError,
        SizeInvalidError,
        TooManyRequestsError,
        UnsupportedError,
    )
}


def registry_error_class(code: str, status: int) -> type[RegistryError]:
    """[ERR-1] The class for a registry error answer: by its spec code, else by its status.

    >>> registry_error_class("MANIFEST_UNKNOWN", 404).__name__
    'ManifestUnknownError'
    >>> registry_error_class("", 413).__name__
    'RequestTooLargeError'
    """
    if status == 413:
        return RequestTooLargeError
    return _BY_CODE.get(code, RegistryError)


class AuthError(RemoteError):
    """Authentication or authorisation was refused, or the token service failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status is not None and retryable_status(self.status)


class UnauthorizedError(AuthError):
    """401 after authenticating: the credentials were refused."""


class DeniedError(AuthError):
    """403 / ``DENIED``: authenticated, but not allowed to do this."""


class TransportError(RemoteError):
    """The registry could not be reached or the connection failed."""

    @property
    def retryable(self) -> bool:
        return True


class TLSVerificationError(TransportError):
    """The server's TLS certificate is not trusted: a configuration problem, never retried."""

    @property
    def retryable(self) -> bool:
        return False
