"""Content: blobs behind re-openable openers, verified as they stream, and the images they make.

[VERIFY-1] Every byte ocimerge reads from a source passes through :class:`VerifyingReader`,
which is limited to the descriptor's size and checks size and digest when the last byte has
been read. Nothing here reads a blob whole into memory.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import attrs

from ocimerge.errors import BlobMissingError, DigestMismatchError
from ocimerge.model.descriptor import Annotations, Descriptor
from ocimerge.model.digest import Digest, Hasher
from ocimerge.model.manifest import Document, ImageConfig, ImageManifest
from ocimerge.model.platform import Platform

__all__ = [
    "CHUNK_SIZE",
    "Attestation",
    "Blob",
    "BlobOrigin",
    "Image",
    "ImageSet",
    "Referrer",
    "VerifyingReader",
    "copy_verified",
]

#: Read size for streaming copies: large enough that per-call overhead vanishes, small
#: enough that memory stays flat.
CHUNK_SIZE = 1024 * 1024

Opener = Callable[[], BinaryIO]


class VerifyingReader:
    """A read-only stream over at most ``descriptor.size`` bytes that checks them at the end.

    When the last byte has been read the digest is compared; a short source or a wrong hash
    raises :class:`DigestMismatchError` naming ``where``. Reading past the size returns
    ``b""``: a source longer than its descriptor is caught by the opener (size check) or is a
    tar member bounded by its header.
    """

    def __init__(self, stream: BinaryIO, descriptor: Descriptor, where: str, hasher: Hasher | None = None) -> None:
        self._stream = stream
        self._descriptor = descriptor
        self._where = where
        self._remaining = descriptor.size
        self._hasher = hasher if hasher is not None else descriptor.digest.hasher()
        self._checked = False
        if descriptor.size == 0:
            self._finish()

    @property
    def descriptor(self) -> Descriptor:
        """The descriptor the stream is verified against."""
        return self._descriptor

    def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes; with ``size < 0``, everything the descriptor declares.

        Reading everything loops until the declared size is reached, so a source that ends
        early raises (truncated) and the digest is always checked before the bytes return.
        """
        if self._remaining <= 0:
            return b""
        if size >= 0:
            data = self._stream.read(min(size, self._remaining))
            self._account(data)
            return data
        parts = []
        while self._remaining > 0:
            data = self._stream.read(self._remaining)
            self._account(data)  # raises on a short source, checks the digest at the end
            parts.append(data)
        return b"".join(parts)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        """Fill ``buffer`` from the stream; returns the count, 0 at the end."""
        if self._remaining <= 0:
            return 0
        view = memoryview(buffer)
        if len(view) > self._remaining:
            view = view[: self._remaining]
        n = self._stream.readinto(view)  # type: ignore[attr-defined]
        if n is None:
            n = 0
        self._account(view[:n])
        return int(n)

    def _account(self, data: bytes | memoryview) -> None:
        if not data:
            raise DigestMismatchError(
                f"{self._where}: truncated: ended {self._remaining} bytes short of the "
                f"{self._descriptor.size} its descriptor declares"
            )
        self._hasher.update(data)
        self._remaining -= len(data)
        if self._remaining == 0:
            self._finish()

    def _finish(self) -> None:
        if self._checked:
            return
        self._checked = True
        if not self._descriptor.digest.matches(self._hasher):
            raise DigestMismatchError(
                f"{self._where}: content does not match its digest {self._descriptor.digest} "
                f"(sha256 of the bytes is {self._hasher.hexdigest()[:12]}…); the source is "
                "corrupt or was modified"
            )

    def close(self) -> None:
        """Close the underlying stream; a reader closed early has verified nothing."""
        self._stream.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@attrs.frozen
class BlobOrigin:
    """[PUSH-4] Where a blob lives in a registry: a push to that registry mounts it from there.

    >>> str(BlobOrigin("ghcr.io", "acme/app"))
    'ghcr.io/acme/app'
    """

    registry: str
    repository: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}"


@attrs.frozen
class Blob:
    """Content named by a descriptor, with an opener that returns a fresh raw stream.

    ``opener`` is None when the source does not hold the blob (an OCI layout may omit blobs).
    ``where`` names the blob in error messages (``file.tar: blobs/sha256/ab…``).
    ``origin`` is ``(registry, repository)`` for a blob that lives in a registry: a push to
    the same registry mounts it from there instead of copying it.
    """

    descriptor: Descriptor
    opener: Opener | None = attrs.field(eq=False, repr=False)
    where: str = attrs.field(eq=False)
    origin: BlobOrigin | None = attrs.field(default=None, eq=False)

    @classmethod
    def from_bytes(cls, descriptor: Descriptor, data: bytes, where: str, origin: BlobOrigin | None = None) -> Blob:
        """A blob whose (small, already read) bytes are in memory: documents and configs."""
        return cls(descriptor, lambda: io.BytesIO(data), where, origin)

    @property
    def digest(self) -> Digest:
        """The digest the blob is verified against (its descriptor's)."""
        return self.descriptor.digest

    @property
    def available(self) -> bool:
        """Whether the source holds the bytes; an unavailable blob raises when opened."""
        return self.opener is not None

    def open(self, hasher: Hasher | None = None) -> VerifyingReader:
        """A fresh verifying stream; raise :class:`BlobMissingError` when the blob is absent."""
        if self.opener is None:
            raise BlobMissingError(f"{self.where}: blob {self.descriptor.digest} is not in the source")
        stream = self.opener()
        if isinstance(stream, VerifyingReader) and stream.descriptor == self.descriptor and hasher is None:
            return stream  # already verifies exactly this (a registry blob): hash once, not twice
        return VerifyingReader(stream, self.descriptor, self.where, hasher)


def copy_verified(blob: Blob, write: Callable[[memoryview], object]) -> int:
    """Stream ``blob`` into ``write`` chunk by chunk, verified; return the bytes copied."""
    buffer = bytearray(min(CHUNK_SIZE, max(blob.descriptor.size, 1)))
    view = memoryview(buffer)
    total = 0
    with blob.open() as reader:
        while n := reader.readinto(view):
            write(view[:n])
            total += n
    return total


def drain(blob: Blob) -> int:
    """Read ``blob`` to the end, verifying it; return its size."""
    return copy_verified(blob, lambda _chunk: None)


@attrs.frozen
class Attestation:
    """[ATTEST-1] An attestation manifest that travels with the image it describes."""

    entry: Descriptor
    manifest: Document[ImageManifest]
    blobs: tuple[Blob, ...]


#: [REFERRERS-9] How a referrer was found, as ``inspect`` and ``--json`` report it.
FOUND_BY_API = "referrers API"
FOUND_BY_TAG = "fallback tag"
FOUND_BY_COSIGN = "cosign tag"
FOUND_IN_LAYOUT = "layout"
FOUND_AS_ATTESTATION = "attestation"


@attrs.frozen
class Referrer:
    """[REFERRERS-1] A manifest that refers to another: a signature, an SBOM, an attestation.

    ``subject`` is the digest of the manifest (or index) it refers to: its own ``subject``
    field, or, for an artifact under cosign's tag scheme ([REFERRERS-7]), the digest the tag
    names (then ``tag`` is that tag, and a sink gives the artifact the same tag). ``document``
    is the referrer's exact bytes, verified; ``blobs`` its config and layers; ``found`` how
    it was found (one of the ``FOUND_*`` values). A referrer of a referrer (a signature on
    an SBOM) is a referrer like any other, whose ``subject`` is the SBOM's digest.
    """

    subject: Digest
    document: Document[Any]
    blobs: tuple[Blob, ...] = ()
    found: str = FOUND_IN_LAYOUT
    tag: str | None = None

    @property
    def digest(self) -> Digest:
        """The referrer's own digest (of its exact bytes)."""
        return self.document.descriptor.digest

    @property
    def artifact_type(self) -> str | None:
        """[REFERRERS-2] Its ``artifactType``, else its config's media type (a manifest).

        An artifact under cosign's tag that names no type of its own has the type cosign
        gives the same artifact as a referrer ([REFERRERS-7]), so ``--referrers-type``
        selects cosign's signatures the same way however they were stored.
        """
        value = self.document.value
        artifact_type = getattr(value, "artifact_type", None)
        if artifact_type:
            return str(artifact_type)
        if self.tag is not None and "." in self.tag:
            return f"application/vnd.dev.cosign.artifact.{self.tag.rpartition('.')[2]}.v1+json"
        config = getattr(value, "config", None)
        return config.media_type if isinstance(config, Descriptor) else None

    def to_json(self) -> dict[str, Any]:
        """[REFERRERS-9] As ``--json`` lists it: its subject, kind, digest, size, how found."""
        descriptor = self.document.descriptor
        return {
            "subject": str(self.subject),
            "digest": str(descriptor.digest),
            "mediaType": descriptor.media_type,
            "artifactType": self.artifact_type,
            "size": descriptor.size,
            # what a copy of it moves: the manifest and its blobs (as an image's contentSize)
            "contentSize": descriptor.size + sum(b.descriptor.size for b in self.blobs),
            "found": self.found,
            "tag": self.tag,
        }


@attrs.frozen
class Image:
    """One single-platform image: its manifest and config documents, and its layer blobs.

    ``platform_hint`` is the platform of the descriptor that named the manifest (in an index
    or ``index.json``), used only to fill in a variant the config leaves out.
    ``entry_annotations`` are the annotations of the entry a source index listed the image
    under (none for an image that is itself a root), kept on its entry in a merged index
    ([INDEX-7]).
    """

    source: str
    manifest: Document[ImageManifest]
    config: Document[ImageConfig]
    layers: tuple[Blob, ...]
    config_blob: Blob
    platform_hint: Platform | None = None
    attestations: tuple[Attestation, ...] = ()
    annotations: Annotations = ()
    entry_annotations: Annotations = ()

    @property
    def platform(self) -> Platform:
        """[PLATFORM-4] The platform from the config, its variant filled from the descriptor."""
        platform = self.config.value.platform
        if self.platform_hint is not None:
            platform = platform.with_variant_from(self.platform_hint)
        return platform

    @property
    def digest(self) -> Digest:
        """The image manifest's digest: what an index entry and an attestation name."""
        return self.manifest.descriptor.digest

    def blobs(self) -> Iterator[Blob]:
        """The config and layer blobs of this image, config first."""
        yield self.config_blob
        yield from self.layers


@attrs.frozen
class ImageSet:
    """The images read from one source entry, and what was skipped and why.

    ``root`` is the descriptor of the entry as the source lists it (an index or a manifest;
    None for a docker-save image, which has no stored manifest), ``names`` its tags, and
    ``absent`` the index entries whose manifests the source does not hold (a partial export).
    ``document`` is the root document as stored (an index, or the single image's manifest) and
    ``indexes`` the nested indexes below it, children first: what a push "as is" re-sends.
    ``referrers`` are what refers to the root, its images, attestations and nested indexes,
    recursively, each after its subject ([REFERRERS-9]).
    """

    source: str
    images: tuple[Image, ...]
    notes: tuple[str, ...] = ()
    root: Descriptor | None = None
    names: tuple[str, ...] = ()
    absent: tuple[Descriptor, ...] = ()
    document: Document[Any] | None = None
    indexes: tuple[Document[Any], ...] = ()
    referrers: tuple[Referrer, ...] = ()

    @property
    def root_document(self) -> Document[Any]:
        """The document a tag should name: the stored root, or the one image's manifest."""
        if self.document is not None:
            return self.document
        if len(self.images) != 1:
            raise ValueError("an image set without a root document holds exactly one image")
        return self.images[0].manifest
