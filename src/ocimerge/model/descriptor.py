"""Descriptors: typed, sized, digested pointers to content ([DESC-1] .. [DESC-3]).

Every reference between documents (index entry, config, layer, subject) is a descriptor, and
every byte ocimerge reads is checked against one ([VERIFY-1]), so this type is where the
content-addressing rules live: the fields and their field order ([DESC-1]), ``size`` as a
non-negative int64 ([DESC-2]), and annotations as string-to-string ([DESC-3]). Annotations are
held as sorted pairs so that descriptors are hashable and what we write is deterministic
([INDEX-2]).
"""

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

# [DESC-2] int64, because Go clients (docker, containerd) decode size into an int64: a larger
# value is a document they cannot read, so we refuse to read or write one.
_MAX_SIZE = 2**63 - 1


def to_annotations(value: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> Annotations:
    """[DESC-3] Annotations as a key-sorted tuple of pairs, from a mapping or pairs (None is empty).

    Also the attrs converter of every ``annotations`` field, so callers may pass a dict. Keys
    and values are coerced with ``str`` rather than checked: input from JSON is checked by
    :func:`annotations_from_json`, and everything else is our own. Never raises.

    >>> to_annotations({"b": "2", "a": "1"})
    (('a', '1'), ('b', '2'))
    """
    if value is None:
        return ()
    items = value.items() if isinstance(value, Mapping) else value
    return tuple(sorted((str(k), str(v)) for k, v in items))


def _check_size(_instance: Descriptor, _attribute: attrs.Attribute[int], value: int) -> None:
    """attrs validator: [DESC-2] size is a non-negative int64, on construction as on parsing."""
    # bool is an int subclass in Python, but JSON true is not a size.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_SIZE:
        raise DocumentError(f"descriptor size {value!r} is not a non-negative int64")


def annotations_from_json(value: object, where: str) -> Annotations:
    """[DESC-3] Parse an ``annotations`` object: string keys to string values.

    ``value`` is the decoded JSON member (None when absent or ``null``: no annotations);
    ``where`` prefixes the message. Raises :class:`DocumentError` for any other shape.
    """
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
        """[DESC-1] Parse a descriptor object; unknown fields are ignored.

        Ignoring (not rejecting) unknown fields is the image-spec's extensibility rule; they
        are not lost, because read documents are never re-encoded ([DOC-1]). ``where`` names
        the descriptor in messages (``index.json.manifests[0]``). Raises
        :class:`DocumentError` for a missing or mistyped ``mediaType``, ``digest``, ``size``,
        ``urls``, ``annotations`` or ``platform``, a bad digest, or a size outside [DESC-2].
        """
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
        # artifactType and data only ride along; a wrong type is dropped rather than refused,
        # since nothing ocimerge does depends on them.
        artifact_type = value.get("artifactType")
        data = value.get("data")
        try:
            parsed_digest = Digest.parse(digest)
        except DocumentError as exc:
            raise DocumentError(f"{where}: {exc}") from exc
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
        """[DESC-1] The descriptor object in image-spec field order, empty fields left out.

        The order matters only for the bytes (and so the digest) of documents we author: a
        fixed order keeps them reproducible ([INDEX-2], [JSON-2]).
        """
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
        """The value of annotation ``key``, or None when the descriptor does not have it."""
        # A linear scan: descriptors carry a handful of annotations, and a dict would cost
        # the hashability the tuple gives.
        for k, v in self.annotations:
            if k == key:
                return v
        return None

    def with_annotations(self, extra: Mapping[str, str]) -> Descriptor:
        """[DESC-3] A copy with ``extra`` annotations added; they win over existing keys.

        This is how per-entry ``--annotation`` values land on index entries ([INDEX-6]).
        """
        merged = dict(self.annotations)
        merged.update(extra)
        return attrs.evolve(self, annotations=to_annotations(merged))
