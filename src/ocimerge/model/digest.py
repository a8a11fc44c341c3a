"""Content digests: ``algorithm ":" encoded`` ([DIGEST-1] .. [DIGEST-3])."""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

import attrs

from ocimerge.errors import DocumentError

__all__ = ["SUPPORTED_ALGORITHMS", "Digest", "Hasher"]

# [DIGEST-2] the encoded length and alphabet of every algorithm we can verify.
_ENCODED = {
    "sha256": re.compile(r"[a-f0-9]{64}"),
    "sha512": re.compile(r"[a-f0-9]{128}"),
}
SUPPORTED_ALGORITHMS = tuple(_ENCODED)
# [DIGEST-1] the grammar of image-spec descriptor.md#digests.
_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


class Hasher(Protocol):
    """The part of a :mod:`hashlib` object that streaming verification needs."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


def _check_encoded(instance: Digest, _attribute: attrs.Attribute[str], value: str) -> None:
    pattern = _ENCODED.get(instance.algorithm)
    if pattern is None:
        supported = ", ".join(SUPPORTED_ALGORITHMS)
        raise DocumentError(f"unsupported digest algorithm {instance.algorithm!r}: ocimerge verifies {supported} only")
    if not pattern.fullmatch(value):
        raise DocumentError(
            f"invalid {instance.algorithm} digest {instance.algorithm}:{value}: "
            f"expected lowercase hex of the right length"
        )


@attrs.frozen(order=True)
class Digest:
    """A verified-form content digest.

    Only algorithms ocimerge can verify are accepted (sha256, sha512), with the exact
    lowercase-hex length each requires; anything else is rejected at parse time so that no
    digest we cannot check ever enters the model.

    >>> d = Digest.of(b"{}")
    >>> str(d)
    'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'
    >>> Digest.parse(str(d)) == d
    True
    >>> d.encoded[:12]
    '44136fa355b3'
    """

    algorithm: str
    encoded: str = attrs.field(validator=_check_encoded)

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:encoded``; raise :class:`DocumentError` when it is not valid."""
        if not isinstance(text, str) or not _GRAMMAR.fullmatch(text):
            raise DocumentError(f"invalid digest {text!r}: expected algorithm:hex")
        algorithm, _, encoded = text.partition(":")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data`` (sha256 unless told otherwise)."""
        hasher = cls.new_hasher(algorithm)
        hasher.update(data)
        return cls(algorithm, hasher.hexdigest())

    @staticmethod
    def new_hasher(algorithm: str = "sha256") -> Hasher:
        """A fresh hash object for ``algorithm``, for hashing while streaming."""
        if algorithm not in _ENCODED:
            raise DocumentError(f"unsupported digest algorithm {algorithm!r}")
        return hashlib.new(algorithm)

    def hasher(self) -> Hasher:
        """A fresh hash object of this digest's algorithm."""
        return self.new_hasher(self.algorithm)

    def matches(self, hasher: Hasher) -> bool:
        """Whether the finished ``hasher`` produced this digest."""
        return hasher.hexdigest() == self.encoded

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    @property
    def short(self) -> str:
        """The first 12 hex characters, as tools print them."""
        return self.encoded[:12]
