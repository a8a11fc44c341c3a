"""Images that already sit in a registry, read as sources ([REMOTE-1] .. [REMOTE-5]).

[REMOTE-1] Only manifests and configs are read to assemble; every one is verified against its
digest. Layer blobs stay where they are: each becomes a :class:`Blob` whose opener streams it
from the source registry (verified in transit) and whose ``origin`` lets a push to the same
registry mount it instead.
[REMOTE-2] A source that is an index is flattened into its images, filtered by the wanted
platforms; its attestation manifests follow their images.
[REMOTE-3] A child the source index names but the registry does not have is an error naming
both; a missing source tag is an error naming it (or, with ``ignore_missing``, a note).
[REMOTE-4] Schema 1 manifests are refused with the way out.
[REMOTE-5] One client per registry host for the whole run, shared by sources and targets
(:class:`ocimerge.registry.api.RegistryPool`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import httpx

from ocimerge.content import Attestation, Blob, Image, ImageSet
from ocimerge.errors import BlobMissingError, RegistryError, TransportError, UnsupportedMediaTypeError
from ocimerge.model import mediatype as mt
from ocimerge.model.codec import MAX_DOCUMENT_SIZE
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import (
    Document,
    ImageConfig,
    ImageIndex,
    ImageManifest,
    decode_config,
    decode_manifest_or_index,
)
from ocimerge.model.platform import Platform
from ocimerge.model.reference import Reference
from ocimerge.registry.api import Registry, RegistryPool
from ocimerge.registry.responses import ManifestUnknownError, NameUnknownError

__all__ = ["MissingSourceError", "RegistryPool", "load_remote"]

_REFERENCE_TYPE = "vnd.docker.reference.type"
_REFERENCE_DIGEST = "vnd.docker.reference.digest"
_IMAGE_CONFIGS = frozenset({mt.OCI_CONFIG, mt.DOCKER_CONFIG})
_MAX_NESTING = 8


class MissingSourceError(BlobMissingError):
    """The source tag or digest is not in the registry."""


class _ResponseStream:
    """A blocking ``read``/``readinto`` stream over a streamed httpx response body."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks = response.iter_bytes(1024 * 1024)
        self._buffer = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
            except httpx.HTTPError as exc:
                raise TransportError(f"{self._response.request.url.host}: blob download failed: {exc}") from None
        if n < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        memoryview(buffer)[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> _ResponseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remote_blob(registry: Registry, repository: str, descriptor: Descriptor, where: str) -> Blob:
    def opener() -> Any:
        return _ResponseStream(registry.open_blob(repository, descriptor))

    return Blob(descriptor, opener, where, origin=(registry.host, repository))


@attrs.frozen
class _Remote:
    registry: Registry
    reference: Reference

    @property
    def label(self) -> str:
        return str(self.reference)

    def document(self, reference: str, media_type: str | None, what: str) -> tuple[bytes, ImageManifest | ImageIndex]:
        try:
            raw, served_type, _digest = self.registry.manifest_get(self.reference.repository, reference)
        except (ManifestUnknownError, NameUnknownError) as exc:
            raise MissingSourceError(f"{self.label}: {what} is not in the registry ({exc.code})") from None
        value = decode_manifest_or_index(
            raw, media_type=media_type or served_type or None, where=f"{self.label}: {what}"
        )
        return raw, value

    def config(self, manifest: ImageManifest, what: str) -> tuple[bytes, ImageConfig]:
        descriptor = manifest.config
        if descriptor.media_type not in _IMAGE_CONFIGS:
            raise UnsupportedMediaTypeError(
                f"{self.label}: {what} is an artifact ({manifest.artifact_type or descriptor.media_type}), not an image"
            )
        if descriptor.size > MAX_DOCUMENT_SIZE:
            raise RegistryError(f"{self.label}: config of {what} is {descriptor.size} bytes, over the limit")
        blob = _remote_blob(self.registry, self.reference.repository, descriptor, f"{self.label}: config")
        with blob.open() as reader:
            raw = reader.read()
        return raw, decode_config(raw, where=f"{self.label}: config of {what}")

    def image(self, entry: Descriptor, raw: bytes, manifest: ImageManifest) -> Image:
        what = f"manifest {entry.digest.short}"
        config_raw, config = self.config(manifest, what)
        repository = self.reference.repository
        layers = tuple(
            _remote_blob(self.registry, repository, layer, f"{self.label}: layer {i} of {what}")
            for i, layer in enumerate(manifest.layers)
        )
        plain = Descriptor(manifest.media_type or entry.media_type, entry.digest, entry.size)
        return Image(
            source=self.label,
            manifest=Document(raw, manifest, plain),
            config=Document(config_raw, config, manifest.config),
            layers=layers,
            config_blob=Blob.from_bytes(
                manifest.config, config_raw, f"{self.label}: config", (self.registry.host, repository)
            ),
            platform_hint=entry.platform,
        )

    def attestation(self, entry: Descriptor) -> Attestation:
        raw, value = self.document(str(entry.digest), entry.media_type, f"attestation {entry.digest.short}")
        if not isinstance(value, ImageManifest):
            raise UnsupportedMediaTypeError(f"{self.label}: attestation {entry.digest.short} is not a manifest")
        blobs = tuple(
            _remote_blob(self.registry, self.reference.repository, d, f"{self.label}: attestation blob")
            for d in (value.config, *value.layers)
        )
        plain = Descriptor(value.media_type or entry.media_type, entry.digest, entry.size)
        return Attestation(entry=entry, manifest=Document(raw, value, plain), blobs=blobs)


def _wanted(platform: Platform | None, platforms: Sequence[Platform]) -> bool:
    return not platforms or (platform is not None and platform in platforms)


@attrs.define
class _Found:
    images: list[Image] = attrs.Factory(list)
    attestations: list[Attestation] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    indexes: list[Document[Any]] = attrs.Factory(list)


def _flatten(
    remote: _Remote, index: ImageIndex, found: _Found, *, platforms: Sequence[Platform], keep: bool, depth: int
) -> None:
    if depth > _MAX_NESTING:
        raise RegistryError(f"{remote.label}: indexes nested more than {_MAX_NESTING} deep")
    for entry in index.manifests:
        kind = entry.annotation(_REFERENCE_TYPE)
        where = f"child {entry.digest.short}" + (f" ({entry.platform})" if entry.platform else "")
        if entry.media_type in mt.INDEX_TYPES:
            raw, child = _child(remote, entry, where)
            assert isinstance(child, ImageIndex)
            _flatten(remote, child, found, platforms=platforms, keep=keep, depth=depth + 1)
            found.indexes.append(Document(raw, child, Descriptor(child.effective_media_type, entry.digest, entry.size)))
        elif entry.media_type not in mt.MANIFEST_TYPES:
            found.notes.append(f"skipped entry {entry.digest.short} of unknown media type {entry.media_type}")
        elif kind == "attestation-manifest":
            if keep:
                found.attestations.append(remote.attestation(entry))
        elif kind is not None:
            found.notes.append(f"skipped {kind} entry {entry.digest.short}")
        elif not _wanted(entry.platform, platforms):
            continue
        else:
            raw, manifest = _child(remote, entry, where)
            if not isinstance(manifest, ImageManifest):
                raise RegistryError(f"{remote.label}: {where} says manifest but is an index")
            if manifest.config.media_type not in _IMAGE_CONFIGS:
                found.notes.append(f"skipped artifact {entry.digest.short}")
                continue
            found.images.append(remote.image(entry, raw, manifest))


def _child(remote: _Remote, entry: Descriptor, where: str) -> tuple[bytes, ImageManifest | ImageIndex]:
    try:
        return remote.document(str(entry.digest), entry.media_type, where)
    except MissingSourceError:
        raise MissingSourceError(
            f"{remote.label}: the source index names {where}, which the registry does not have; "
            "the source is incomplete"
        ) from None


def load_remote(
    reference: Reference,
    pool: RegistryPool,
    *,
    platforms: Sequence[Platform] = (),
    keep_attestations: bool = True,
) -> ImageSet:
    """[REMOTE-1][REMOTE-2] The images of ``reference``, an index flattened and filtered."""
    registry = pool.get(reference.registry)
    remote = _Remote(registry, reference)
    tag = str(reference.digest) if reference.digest else (reference.tag or "latest")
    raw, value = remote.document(tag, None, f"{reference.familiar}")
    digest = Digest.of(raw)
    root = Descriptor(value.effective_media_type, digest, len(raw))
    if isinstance(value, ImageManifest):
        image = remote.image(root, raw, value)
        if not _wanted(image.platform, platforms):
            wanted = ", ".join(str(p) for p in platforms)
            raise UnsupportedMediaTypeError(f"{remote.label} is {image.platform}, not {wanted}")
        return ImageSet(remote.label, (image,), root=root, names=(reference.familiar,), document=image.manifest)
    found = _Found()
    _flatten(remote, value, found, platforms=platforms, keep=keep_attestations, depth=0)
    images, attestations = found.images, found.attestations
    if not images:
        wanted = ", ".join(str(p) for p in platforms) or "any platform"
        raise UnsupportedMediaTypeError(f"{remote.label}: the index holds no image for {wanted}")
    paired = [
        attrs.evolve(
            i, attestations=tuple(a for a in attestations if a.entry.annotation(_REFERENCE_DIGEST) == str(i.digest))
        )
        for i in images
    ]
    return ImageSet(
        remote.label,
        tuple(paired),
        notes=tuple(found.notes),
        root=root,
        names=(reference.familiar,),
        document=Document(raw, value, root),
        indexes=tuple(found.indexes),
    )
