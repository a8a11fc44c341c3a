"""Descriptors: typed, sized, digested pointers to content ([DESC-1] .. [DESC-3])."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ocimerge.errors import DocumentError
from ocimerge.model.digest import Digest
from ocimerge.model.platform import Platform

__all__ = ["Annotations", "Descriptor", "annotations_from_json", "to_annotations"]

#: Annotations as an immutable, key-sorted tuple of pairs (hashable, deterministic).
Annotations = tuple[tuple[str, str], ...]

_MAX_SIZE = 2**63 - 1


def to_annotations(value: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> Annotations:
    """Annotations as a key-sorted tuple of pairs, from a mapping or pairs."""
    if value is None:
        return ()
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), str(v)) for k, v in items))


def _check_size(_instance: Descriptor, _attribute: attrs.Attribute[int], value: int) -> None:
    # [DESC-2] size is a non-negative int64.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_SIZE:
        raise DocumentError(f"descriptor size {value!r} is not a non-negative int64")


def annotations_from_json(value: object, where: str) -> Annotations:
    """[DESC-3] Parse an ``annotations`` object: string keys to string values."""
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise DocumentError(f"{where}: 'annotations' must map strings to strings")
    return to_annotations(value)


@attrs.frozen
class Descriptor:
    """[DESC-1] A pointer to content: media type, digest and size, plus optional metadata.

    >>> d = Descriptor("application/vnd.oci.empty.v1+json", Digest.of(b"{}"), 2)
    >>> d.to_json()["size"]
    2
    >>> Descriptor.from_json(d.to_json()) == d
    True
    """

    media_type: str
    digest: Digest
    size: int = attrs.field(validator=_check_size)
    annotations: Annotations = attrs.field(default=(), converter=to_annotations)
    platform: Platform | None = None
    urls: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    artifact_type: str | None = None
    data: str | None = None

    @classmethod
    def from_json(cls, value: object, *, where: str = "descriptor") -> Descriptor:
        """Parse a descriptor object; unknown fields are ignored [DESC-1]."""
        if not isinstance(value, dict):
            raise DocumentError(f"{where}: expected a descriptor object")
        media_type = value.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            raise DocumentError(f"{where}: 'mediaType' must be a non-empty string")
        digest = value.get("digest")
        if not isinstance(digest, str):
            raise DocumentError(f"{where}: 'digest' must be a string")
        size = value.get("size")
        if isinstance(size, bool) or not isinstance(size, int):
            raise DocumentError(f"{where}: 'size' must be an integer")
        platform = value.get("platform")
        urls = value.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise DocumentError(f"{where}: 'urls' must be a list of strings")
        artifact_type = value.get("artifactType")
        data = value.get("data")
        try:
            parsed_digest = Digest.parse(digest)
        except DocumentError as exc:
            raise DocumentError(f"{where}: {exc}") from None
        return cls(
            media_type=media_type,
            digest=parsed_digest,
            size=size,
            annotations=annotations_from_json(value.get("annotations"), where),
            platform=None if platform is None else Platform.from_json(platform, where=f"{where}.platform"),
            urls=tuple(urls),
            artifact_type=artifact_type if isinstance(artifact_type, str) else None,
            data=data if isinstance(data, str) else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The descriptor object in image-spec field order, empty fields left out."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.data is not None:
            out["data"] = self.data
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    def annotation(self, key: str) -> str | None:
        """The value of annotation ``key``, or None."""
        for k, v in self.annotations:
            if k == key:
                return v
        return None

    def with_annotations(self, extra: Mapping[str, str]) -> Descriptor:
        """A copy with ``extra`` annotations added (they win over existing keys)."""
        merged = dict(self.annotations)
        merged.update(extra)
        return attrs.evolve(self, annotations=to_annotations(merged))
