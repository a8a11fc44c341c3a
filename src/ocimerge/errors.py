"""The one exception tree of ocimerge, split by whose fault a failure was.

Every error ocimerge raises on purpose derives from :class:`OcimergeError`; its ``str()`` is
one line that names the file, member, field or registry response at fault and says what to
do. The CLI maps the classes below to exit codes in one table (``ocimerge.cli.EXIT_CODES``);
library callers catch the class that matters to them.

    OcimergeError
    ├── UsageError                the command line or API call itself is wrong
    ├── InputError                a source is unreadable or not what it claims to be
    │   ├── NotAnImageError       no archive or layout at all
    │   ├── ArchiveError          hostile, truncated or malformed tar
    │   ├── DocumentError         invalid JSON, or JSON that is not the document it claims
    │   ├── UnsupportedMediaTypeError
    │   ├── BlobMissingError      a referenced blob is absent
    │   ├── DigestMismatchError   bytes do not match their descriptor
    │   └── SelectionError        SRC:TAG / SRC@DIGEST names nothing, or the choice is ambiguous
    ├── ModelError                the inputs are readable but cannot be merged as asked
    │   ├── PlatformMismatchError a platform given for a source disagrees with its config
    │   ├── PlatformConflictError two sources of one platform
    │   └── ConversionError       a Docker manifest list cannot hold what the inputs carry
    ├── OutputError               the destination cannot be written
    └── RemoteError               registry, auth and transport (issue 3)
        ├── RegistryError
        ├── AuthError
        └── TransportError
"""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "AuthError",
    "BlobMissingError",
    "ConversionError",
    "DigestMismatchError",
    "DocumentError",
    "InputError",
    "ModelError",
    "NotAnImageError",
    "OcimergeError",
    "OutputError",
    "PlatformConflictError",
    "PlatformMismatchError",
    "RegistryError",
    "RemoteError",
    "SelectionError",
    "TransportError",
    "UnsupportedMediaTypeError",
    "UsageError",
]


class OcimergeError(Exception):
    """Base of every deliberate ocimerge failure; ``str()`` is a one-line message."""


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


class RemoteError(OcimergeError):
    """A registry, its auth service or the network failed."""


class RegistryError(RemoteError):
    """The registry answered with an error."""


class AuthError(RemoteError):
    """Authentication or authorisation was refused."""


class TransportError(RemoteError):
    """The registry could not be reached or the connection failed."""
