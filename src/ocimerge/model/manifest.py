"""Image manifests, image indexes, image configs and the raw-bytes documents that carry them.

Decoding is strict where assembly depends on a field and lenient where the wild differs from
the spec (a missing ``mediaType``, ``"manifests": null``): image manifests ([MANIFEST-1]),
telling a manifest from an index ([MANIFEST-2]), refusing a document that is both
([MANIFEST-3]), indexes ([INDEX-1]), and the two things
assembly reads from a config ([CONFIG-1]).

[DOC-1] A document is its raw bytes, the value parsed from them and the descriptor of those
bytes. Documents we read are never re-encoded; documents we author are encoded once by
:func:`ocimerge.model.codec.encode_json` and those exact bytes are written or sent. Re-encoding
a read document would change its digest and break every index and attestation naming it.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs

from ocimerge.errors import DigestMismatchError, DocumentError, UnsupportedMediaTypeError
from ocimerge.model import mediatype as mt
from ocimerge.model.codec import decode_json, encode_json
from ocimerge.model.descriptor import (
    Annotations,
    Descriptor,
    annotations_from_json,
    to_annotations,
)
from ocimerge.model.digest import Digest
from ocimerge.model.platform import Platform

__all__ = [
    "Document",
    "ImageConfig",
    "ImageIndex",
    "ImageManifest",
    "decode_config",
    "decode_index",
    "decode_manifest",
    "decode_manifest_or_index",
    "sniff_document_type",
]

#: The parsed value a :class:`Document` carries (manifest, index, or a source's own type).
T = TypeVar("T")


@attrs.frozen
class ImageManifest:
    """[MANIFEST-1] An OCI image manifest or a Docker schema 2 manifest.

    ``media_type`` is None when the document omits it (allowed by OCI; seen in the wild).
    Built by :func:`decode_manifest` from bytes, or directly when we author one (conversion,
    recompression); only the latter is ever encoded, by :meth:`Document.author`.

    >>> from ocimerge.model.digest import Digest
    >>> m = ImageManifest(config=Descriptor(mt.OCI_CONFIG, Digest.of(b"{}"), 2), layers=())
    >>> list(m.to_json()), m.is_docker
    (['schemaVersion', 'mediaType', 'config', 'layers'], False)
    """

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str | None = mt.OCI_MANIFEST
    schema_version: int = 2
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: Annotations = attrs.field(default=(), converter=to_annotations)

    @property
    def effective_media_type(self) -> str:
        """The media type to address this manifest by: its own, else OCI's."""
        return self.media_type or mt.OCI_MANIFEST

    @property
    def is_docker(self) -> bool:
        """Whether this is a Docker schema 2 manifest; [INDEX-4] needs every child to be one."""
        return self.media_type == mt.DOCKER_MANIFEST

    def to_json(self) -> dict[str, Any]:
        """[MANIFEST-1] The JSON object in spec field order, empty optional fields left out."""
        out: dict[str, Any] = {"schemaVersion": self.schema_version}
        if self.media_type:
            out["mediaType"] = self.media_type
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["config"] = self.config.to_json()
        out["layers"] = [layer.to_json() for layer in self.layers]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@attrs.frozen
class ImageIndex:
    """[INDEX-1] An OCI image index or a Docker manifest list.

    Read from sources (to be flattened into images, [LAYOUT-5], [REMOTE-2]) and authored by
    :func:`ocimerge.model.assemble.assemble`; ``media_type`` None means the document had none.
    """

    manifests: tuple[Descriptor, ...]
    media_type: str | None = mt.OCI_INDEX
    schema_version: int = 2
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: Annotations = attrs.field(default=(), converter=to_annotations)

    @property
    def effective_media_type(self) -> str:
        """The media type to address this index by: its own, else OCI's ([MANIFEST-2])."""
        return self.media_type or mt.OCI_INDEX

    @property
    def is_docker(self) -> bool:
        """Whether this is a Docker manifest list (which has no annotations, [INDEX-4])."""
        return self.media_type == mt.DOCKER_MANIFEST_LIST

    def to_json(self) -> dict[str, Any]:
        """[INDEX-1] The JSON object in spec field order, empty optional fields left out."""
        out: dict[str, Any] = {"schemaVersion": self.schema_version}
        if self.media_type:
            out["mediaType"] = self.media_type
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        out["manifests"] = [m.to_json() for m in self.manifests]
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@attrs.frozen
class ImageConfig:
    """[CONFIG-1] The fields of an image config that assembly needs: platform, diff IDs, labels.

    Everything else in a config is ignored; the config's bytes travel unchanged as a blob, so
    nothing is lost by not modelling it. ``labels`` are ``config.Labels``, key-sorted pairs,
    read for ``--annotations-from-labels`` ([INDEX-7]).
    """

    platform: Platform
    diff_ids: tuple[Digest, ...]
    labels: Annotations = attrs.field(default=(), converter=to_annotations)


@attrs.frozen
class Document(Generic[T]):
    """[DOC-1] Raw bytes, the value parsed from them, and the descriptor of those bytes.

    >>> doc = Document.author(ImageIndex(manifests=()))
    >>> doc.raw
    b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
    >>> doc.descriptor.size == len(doc.raw)
    True
    """

    raw: bytes
    value: T
    descriptor: Descriptor

    @classmethod
    def reached(cls, raw: bytes, value: T, by: Descriptor, *, where: str) -> Document[T]:
        """[DOC-1] A document read from a source, checked against the descriptor it was reached by.

        The descriptor of the result is ``by`` stripped to media type, digest and size; the
        media type is the document's own when it names one [MANIFEST-2]. Bytes whose digest or
        size differ from ``by`` raise :class:`DigestMismatchError` naming ``where``.

        >>> raw = b'{"schemaVersion":2,"manifests":[]}'
        >>> by = Descriptor("application/vnd.oci.image.index.v1+json", Digest.of(raw), len(raw))
        >>> Document.reached(raw, None, by, where="x").descriptor == by
        True
        """
        # Hash with the descriptor's own algorithm, so a sha512-addressed document verifies.
        actual = Digest.of(raw, by.digest.algorithm)
        if actual != by.digest or len(raw) != by.size:
            raise DigestMismatchError(
                f"{where}: {len(raw)} bytes hashing to {actual} do not match the descriptor "
                f"({by.size} bytes, {by.digest})"
            )
        # [MANIFEST-2] the verified bytes are the truth; the descriptor's type only fills a gap.
        # Annotations and platform are dropped: they describe the entry, not the document.
        media_type = getattr(value, "media_type", None) or by.media_type
        return cls(raw, value, Descriptor(media_type, by.digest, by.size))

    @classmethod
    def author(cls, value: ImageManifest | ImageIndex) -> Document[Any]:
        """[DOC-1] Encode a manifest or index we author, once, with the canonical encoder.

        The returned document's descriptor is the digest and size of exactly ``raw``, with the
        value's effective media type; callers write or push ``raw`` and never re-encode the
        value. Never raises for a value built through this module's types.
        """
        raw = encode_json(value.to_json())
        descriptor = Descriptor(value.effective_media_type, Digest.of(raw), len(raw))
        return Document(raw, value, descriptor)


def _require_object(raw: bytes, where: str) -> dict[str, Any]:
    """Strict JSON ([JSON-1]) that must be an object; DocumentError otherwise."""
    value = decode_json(raw, where=where)
    if not isinstance(value, dict):
        raise DocumentError(f"{where}: expected a JSON object")
    return value


def _check_schema(value: dict[str, Any], where: str) -> None:
    """[MANIFEST-1] ``schemaVersion`` must be 2; schema 1 is refused by name, with the remedy."""
    # Schema 1 is checked first and apart: it is the one old format users still meet, and
    # "schemaVersion must be 2" would not tell them what to do about it ([REMOTE-4]).
    version = value.get("schemaVersion")
    if version == 1 or value.get("mediaType") in (mt.DOCKER_SCHEMA1_MANIFEST, mt.DOCKER_SCHEMA1_SIGNED):
        raise UnsupportedMediaTypeError(f"{where}: schema 1 is not supported; re-push the image with a current client")
    if version != 2:
        raise DocumentError(f"{where}: 'schemaVersion' must be 2, found {version!r}")


def _refuse_polyglot(value: dict[str, Any], where: str) -> None:
    """[MANIFEST-3] [SEC-7] A document that is both an index and a manifest is refused.

    ``manifests`` alongside ``config`` or ``layers`` (any of them present and not null) is
    the CVE-2021-41190 class: one digest that one reader takes for an index and another for
    an image. containerd refuses such documents, and so do we, whatever the media type says.
    """
    present = {key for key in ("manifests", "config", "layers") if value.get(key) is not None}
    if "manifests" in present and present & {"config", "layers"}:
        both = " and ".join(f"'{key}'" for key in sorted(present))
        raise DocumentError(f"{where}: ambiguous document: it has {both}, so it is both an index and a manifest")


def _optional_descriptor(value: dict[str, Any], key: str, where: str) -> Descriptor | None:
    """An optional descriptor member such as ``subject``; absent or ``null`` is None."""
    item = value.get(key)
    return None if item is None else Descriptor.from_json(item, where=f"{where}.{key}")


def sniff_document_type(value: dict[str, Any]) -> str | None:
    """[MANIFEST-2] The document's own ``mediaType``, else what its members say it is.

    ``value`` is a decoded JSON object. A ``manifests`` member makes it an OCI index, a
    ``config`` or ``layers`` member an OCI manifest; None when it says nothing, leaving the
    caller to fall back to the descriptor. Never raises.

    >>> sniff_document_type({"schemaVersion": 2, "manifests": []})
    'application/vnd.oci.image.index.v1+json'
    """
    media_type = value.get("mediaType")
    if isinstance(media_type, str):
        return media_type
    if "manifests" in value:
        return mt.OCI_INDEX
    if "config" in value or "layers" in value:
        return mt.OCI_MANIFEST
    return None


def decode_manifest(raw: bytes, *, where: str = "manifest") -> ImageManifest:
    """[MANIFEST-1] Parse an OCI or Docker schema 2 image manifest from its raw bytes.

    ``where`` names the document in messages. Raises :class:`UnsupportedMediaTypeError` for
    schema 1 or another document type, :class:`DocumentError` for malformed JSON or fields.
    """
    value = _require_object(raw, where)
    return _manifest_from(value, where)


def _manifest_from(value: dict[str, Any], where: str) -> ImageManifest:
    """[MANIFEST-1] The manifest in a decoded object (shared by the two decoders)."""
    _check_schema(value, where)
    _refuse_polyglot(value, where)
    media_type = value.get("mediaType")
    if media_type is not None and media_type not in mt.MANIFEST_TYPES:
        raise UnsupportedMediaTypeError(f"{where}: {media_type!r} is not an image manifest")
    if "config" not in value:
        raise DocumentError(f"{where}: an image manifest needs 'config'")
    # Absent or null layers mean none: artifact manifests may have no layers at all.
    layers = value.get("layers") or []
    if not isinstance(layers, list):
        raise DocumentError(f"{where}: 'layers' must be a list")
    artifact_type = value.get("artifactType")
    return ImageManifest(
        config=Descriptor.from_json(value["config"], where=f"{where}.config"),
        layers=tuple(Descriptor.from_json(layer, where=f"{where}.layers[{i}]") for i, layer in enumerate(layers)),
        media_type=media_type,
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        subject=_optional_descriptor(value, "subject", where),
        annotations=annotations_from_json(value.get("annotations"), where),
    )


def decode_index(raw: bytes, *, where: str = "index") -> ImageIndex:
    """[INDEX-1] Parse an OCI image index or a Docker manifest list from its raw bytes.

    ``"manifests": null`` is an empty index. Raises :class:`UnsupportedMediaTypeError` for
    schema 1 or a non-index ``mediaType``, :class:`DocumentError` for malformed content.
    """
    value = _require_object(raw, where)
    return _index_from(value, where)


def _index_from(value: dict[str, Any], where: str) -> ImageIndex:
    """[INDEX-1] The index in a decoded object (shared by the two decoders)."""
    _check_schema(value, where)
    _refuse_polyglot(value, where)
    media_type = value.get("mediaType")
    if media_type is not None and media_type not in mt.INDEX_TYPES:
        raise UnsupportedMediaTypeError(f"{where}: {media_type!r} is not an image index")
    manifests = value.get("manifests")
    if manifests is None:
        manifests = []  # docker 25 writes "manifests": null for an empty layout
    if not isinstance(manifests, list):
        raise DocumentError(f"{where}: 'manifests' must be a list")
    artifact_type = value.get("artifactType")
    return ImageIndex(
        manifests=tuple(Descriptor.from_json(m, where=f"{where}.manifests[{i}]") for i, m in enumerate(manifests)),
        media_type=media_type,
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        subject=_optional_descriptor(value, "subject", where),
        annotations=annotations_from_json(value.get("annotations"), where),
    )


def decode_manifest_or_index(
    raw: bytes, *, media_type: str | None = None, where: str = "document"
) -> ImageManifest | ImageIndex:
    """Parse a manifest or an index; the document's own ``mediaType`` wins over the hint.

    [MANIFEST-2] A document without ``mediaType`` is told apart by its fields, else by the
    media type of the descriptor that named it (``media_type``). Raises
    :class:`UnsupportedMediaTypeError` when it is neither, or schema 1, and
    :class:`DocumentError` for malformed content.
    """
    value = _require_object(raw, where)
    _check_schema(value, where)
    _refuse_polyglot(value, where)
    # The bytes verified against the digest, so their own mediaType is the truth; a
    # descriptor that says otherwise is trusted only where the document is silent.
    kind = sniff_document_type(value)
    kind = kind or media_type
    if kind in mt.INDEX_TYPES:
        return _index_from(value, where)
    if kind in mt.MANIFEST_TYPES:
        return _manifest_from(value, where)
    raise UnsupportedMediaTypeError(f"{where}: unknown media type {kind!r}; expected an image manifest or index")


def decode_config(raw: bytes, *, where: str = "config") -> ImageConfig:
    """[CONFIG-1] Parse the platform fields and ``rootfs.diff_ids`` of an image config.

    Raises :class:`UnsupportedMediaTypeError` when ``os`` / ``architecture`` are missing or
    empty (the blob is not a runnable image's config), :class:`DocumentError` for malformed
    JSON, platform fields or diff IDs.
    """
    value = _require_object(raw, where)
    if not isinstance(value.get("os"), str) or not isinstance(value.get("architecture"), str):
        raise UnsupportedMediaTypeError(f"{where}: not an image config (no 'os' and 'architecture')")
    if not value["os"] or not value["architecture"]:
        # cosign signatures and regctl builder entries carry such configs: not runnable images
        raise UnsupportedMediaTypeError(f"{where}: not an image config (empty 'os' or 'architecture')")
    platform = Platform.from_json(value, where=where)
    rootfs = value.get("rootfs") or {}
    if not isinstance(rootfs, dict):
        raise DocumentError(f"{where}: 'rootfs' must be an object")
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise DocumentError(f"{where}: 'rootfs.diff_ids' must be a list of digests")
    try:
        parsed = tuple(Digest.parse(d) for d in diff_ids)
    except DocumentError as exc:
        raise DocumentError(f"{where}: rootfs.diff_ids: {exc}") from None
    return ImageConfig(platform=platform, diff_ids=parsed, labels=_labels(value))


def _labels(config: dict[str, Any]) -> Annotations:
    """[INDEX-7] ``config.Labels`` as pairs; a malformed member is no labels, not an error.

    Labels are only ever copied as annotations, on request: refusing an image over them would
    make an odd but runnable image unmergeable, so a non-object or a non-string value is left out.
    """
    inner = config.get("config")
    labels = inner.get("Labels") if isinstance(inner, dict) else None
    if not isinstance(labels, dict):
        return ()
    return to_annotations((k, v) for k, v in labels.items() if isinstance(k, str) and isinstance(v, str))
