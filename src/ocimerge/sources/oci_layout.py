"""OCI image layouts, as directories or tars: ``oci-layout``, ``index.json``, ``blobs/``.

[LAYOUT-1] .. [LAYOUT-5]. Also reads BuildKit's ``type=oci`` output (a manifest, or an index
holding images and their attestation manifests) and the OCI half of Docker 25+ ``docker save``.
"""

from __future__ import annotations

import attrs

from ocimerge.content import Attestation, Blob, Image, ImageSet
from ocimerge.errors import (
    BlobMissingError,
    DigestMismatchError,
    DocumentError,
    InputError,
    SelectionError,
    UnsupportedMediaTypeError,
)
from ocimerge.model import mediatype as mt
from ocimerge.model.codec import MAX_DOCUMENT_SIZE, decode_json
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import (
    Document,
    ImageIndex,
    ImageManifest,
    decode_config,
    decode_index,
    decode_manifest_or_index,
)
from ocimerge.sources._tarfs import FileSystem, read_small
from ocimerge.sources.selector import Selector, describe_choices, matches_name

__all__ = ["CONTAINERD_NAME", "REF_NAME", "OciLayout"]

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
_IMAGE_CONFIGS = frozenset({mt.OCI_CONFIG, mt.DOCKER_CONFIG})
_MAX_NESTING = 8


def blob_path(digest: Digest) -> str:
    """[LAYOUT-2] Where a layout keeps the blob of ``digest``."""
    return f"blobs/{digest.algorithm}/{digest.encoded}"


def entry_names(descriptor: Descriptor) -> tuple[str, ...]:
    """[LAYOUT-3] The names an ``index.json`` entry carries, in the order tools print them."""
    return tuple(v for v in (descriptor.annotation(CONTAINERD_NAME), descriptor.annotation(REF_NAME)) if v)


class OciLayout:
    """An OCI image layout on a :class:`FileSystem`."""

    def __init__(self, fs: FileSystem) -> None:
        self.fs = fs
        self.name = fs.name
        if not fs.exists("index.json"):
            raise InputError(f"{self.name}: OCI layout without index.json")
        if fs.exists("oci-layout"):
            header = decode_json(read_small(fs, "oci-layout", 64 * 1024), where=f"{self.name}: oci-layout")
            version = header.get("imageLayoutVersion") if isinstance(header, dict) else None
            if version != "1.0.0":
                raise DocumentError(f"{self.name}: oci-layout: imageLayoutVersion {version!r} is not 1.0.0")
        raw = read_small(fs, "index.json", MAX_DOCUMENT_SIZE)
        self.index = decode_index(raw, where=f"{self.name}: index.json")

    # -- content ---------------------------------------------------------------------------

    def blob(self, descriptor: Descriptor, where: str | None = None) -> Blob:
        """The blob a descriptor names; its opener checks the stored size first [LAYOUT-2]."""
        path = blob_path(descriptor.digest)
        label = f"{self.name}: {where or path}"
        if not self.fs.exists(path):
            return Blob(descriptor, None, label)
        fs = self.fs

        def opener() -> object:
            size = fs.size(path)
            if size != descriptor.size:
                raise DigestMismatchError(f"{label}: {path} is {size} bytes but its descriptor says {descriptor.size}")
            return fs.open(path)

        return Blob(descriptor, opener, label)  # type: ignore[arg-type]

    def read_document(self, descriptor: Descriptor, where: str) -> bytes:
        """A manifest, index or config: capped, read whole and verified [VERIFY-1]."""
        if descriptor.size > MAX_DOCUMENT_SIZE:
            raise DocumentError(
                f"{self.name}: {where} is {descriptor.size} bytes, over the "
                f"{MAX_DOCUMENT_SIZE}-byte limit for a manifest"
            )
        blob = self.blob(descriptor, where)
        if not blob.available:
            raise BlobMissingError(f"{self.name}: {where} names blob {descriptor.digest}, which is not in the layout")
        with blob.open() as reader:
            return reader.read()

    # -- selection -------------------------------------------------------------------------

    def roots(self) -> tuple[Descriptor, ...]:
        """The ``index.json`` entries, in file order."""
        return self.index.manifests

    def select(self, selector: Selector) -> Descriptor:
        """[LAYOUT-4] The one ``index.json`` entry ``selector`` names.

        With no selector the layout must hold exactly one image (several names for one digest
        count once); otherwise the error lists the choices.
        """
        entries = [e for e in self.roots() if e.media_type in mt.MANIFEST_TYPES | mt.INDEX_TYPES]
        if selector.digest is not None:
            found = [e for e in entries if e.digest == selector.digest]
            if found:
                return found[0]
            raise SelectionError(
                f"{self.name}: no entry with digest {selector.digest}; " + describe_choices(self.roots(), entry_names)
            )
        if selector.tag is not None:
            found = [e for e in entries if matches_name(selector.tag, entry_names(e))]
            if len({e.digest for e in found}) == 1:
                return found[0]
            if not found:
                raise SelectionError(
                    f"{self.name}: no image tagged {selector.tag!r}; " + describe_choices(self.roots(), entry_names)
                )
            raise SelectionError(
                f"{self.name}: {selector.tag!r} names several images; " + describe_choices(found, entry_names)
            )
        if not self.roots():
            raise SelectionError(f"{self.name}: the layout holds no image (index.json is empty)")
        if not entries:
            kinds = ", ".join(sorted({e.media_type for e in self.roots()}))
            raise UnsupportedMediaTypeError(f"{self.name}: index.json holds no image manifest or index (only {kinds})")
        if len({e.digest for e in entries}) > 1:
            raise SelectionError(
                f"{self.name}: the layout holds several images; choose one with "
                f"{self.name}:TAG or {self.name}@DIGEST; " + describe_choices(entries, entry_names)
            )
        return entries[0]

    def load(self, selector: Selector) -> ImageSet:
        """The images of the selected entry, an index flattened into its images."""
        return self.load_entry(self.select(selector))

    def load_entry(self, root: Descriptor) -> ImageSet:
        """Read the images under one ``index.json`` entry (manifest or index)."""
        names = entry_names(root)
        label = f"{self.name}" + (f" ({names[-1]})" if names else "")
        if root.media_type not in mt.MANIFEST_TYPES | mt.INDEX_TYPES:
            raise UnsupportedMediaTypeError(
                f"{label}: entry {root.digest.short} has unknown media type {root.media_type!r}"
            )
        raw = self.read_document(root, f"index.json entry {root.digest.short}")
        value = decode_manifest_or_index(
            raw, media_type=root.media_type, where=f"{self.name}: {blob_path(root.digest)}"
        )
        if isinstance(value, ImageManifest):
            image = self._image(root, raw, value, label)
            return ImageSet(label, (image,), root=root, names=names, document=image.manifest)
        collector = _Flattened()
        self._flatten(value, collector, depth=0)
        images = self._pair(collector, label)
        if not images:
            if collector.absent:
                absent = ", ".join(_describe(d) for d in collector.absent)
                raise InputError(f"{label}: none of the index's images is in the source (absent: {absent})")
            skipped = "; ".join(collector.notes) or "it is empty"
            raise UnsupportedMediaTypeError(f"{label}: the index holds no container image ({skipped})")
        return ImageSet(
            label,
            tuple(images),
            notes=tuple(collector.notes),
            root=root,
            names=names,
            absent=tuple(collector.absent),
            document=Document(raw, value, Descriptor(value.effective_media_type, root.digest, root.size)),
            indexes=tuple(collector.indexes),
        )

    # -- reading images --------------------------------------------------------------------

    def _image(self, descriptor: Descriptor, raw: bytes, manifest: ImageManifest, label: str) -> Image:
        where = f"{self.name}: manifest {descriptor.digest.short}"
        if manifest.config.media_type not in _IMAGE_CONFIGS:
            kind = manifest.artifact_type or manifest.config.media_type
            raise UnsupportedMediaTypeError(f"{where}: is an artifact ({kind}), not a container image")
        config_raw = self.read_document(manifest.config, f"config of manifest {descriptor.digest.short}")
        config = decode_config(config_raw, where=f"{self.name}: config {manifest.config.digest.short}")
        plain = Descriptor(manifest.media_type or descriptor.media_type, descriptor.digest, descriptor.size)
        layers = tuple(
            self.blob(layer, f"layer {i} ({layer.digest.short}) of manifest {descriptor.digest.short}")
            for i, layer in enumerate(manifest.layers)
        )
        return Image(
            source=label,
            manifest=Document(raw, manifest, plain),
            config=Document(config_raw, config, manifest.config),
            layers=layers,
            config_blob=Blob.from_bytes(manifest.config, config_raw, f"{label}: config"),
            platform_hint=descriptor.platform,
        )

    def _attestation(self, entry: Descriptor) -> Attestation | None:
        if not self.blob(entry).available:
            return None
        raw = self.read_document(entry, f"attestation manifest {entry.digest.short}")
        value = decode_manifest_or_index(
            raw, media_type=entry.media_type, where=f"{self.name}: {blob_path(entry.digest)}"
        )
        if not isinstance(value, ImageManifest):
            raise DocumentError(f"{self.name}: attestation {entry.digest.short} is not a manifest")
        plain = Descriptor(value.media_type or entry.media_type, entry.digest, entry.size)
        blobs = tuple(
            self.blob(d, f"blob {d.digest.short} of attestation {entry.digest.short}")
            for d in (value.config, *value.layers)
        )
        return Attestation(entry=entry, manifest=Document(raw, value, plain), blobs=blobs)

    def _flatten(self, index: ImageIndex, out: _Flattened, depth: int) -> None:
        """[LAYOUT-5] Images of an index; nested indexes followed, attestations collected."""
        if depth > _MAX_NESTING:
            raise DocumentError(f"{self.name}: indexes nested more than {_MAX_NESTING} deep")
        for entry in index.manifests:
            reference_type = entry.annotation(REFERENCE_TYPE)
            if entry.media_type in mt.INDEX_TYPES:
                if not self.blob(entry).available:
                    out.absent.append(entry)
                    continue
                child_raw = self.read_document(entry, f"nested index {entry.digest.short}")
                child = decode_index(child_raw, where=f"{self.name}: {blob_path(entry.digest)}")
                self._flatten(child, out, depth + 1)
                plain = Descriptor(child.effective_media_type, entry.digest, entry.size)
                out.indexes.append(Document(child_raw, child, plain))
            elif entry.media_type not in mt.MANIFEST_TYPES:
                out.notes.append(f"skipped entry {entry.digest.short} of unknown media type {entry.media_type}")
            elif reference_type == "attestation-manifest":
                attestation = self._attestation(entry)
                if attestation is None:
                    out.absent.append(entry)
                else:
                    out.attestations.append(attestation)
            elif reference_type is not None:
                out.notes.append(
                    f"skipped {reference_type} entry {entry.digest.short} (vnd.docker.reference.type={reference_type})"
                )
            elif not self.blob(entry).available:
                out.absent.append(entry)
            else:
                manifest_raw = self.read_document(entry, f"manifest {entry.digest.short}")
                manifest = decode_manifest_or_index(
                    manifest_raw,
                    media_type=entry.media_type,
                    where=f"{self.name}: {blob_path(entry.digest)}",
                )
                if not isinstance(manifest, ImageManifest):
                    raise DocumentError(f"{self.name}: entry {entry.digest.short} says manifest, holds an index")
                if manifest.config.media_type not in _IMAGE_CONFIGS:
                    out.notes.append(
                        f"skipped artifact {entry.digest.short} "
                        f"({manifest.artifact_type or manifest.config.media_type})"
                    )
                    continue
                out.manifests.append((entry, manifest_raw, manifest))

    def _pair(self, found: _Flattened, label: str) -> list[Image]:
        """[ATTEST-2] Images with the attestations that name them; orphans are noted."""
        images: list[Image] = []
        seen: set[str] = set()
        for entry, raw, manifest in found.manifests:
            if str(entry.digest) in seen:
                continue
            seen.add(str(entry.digest))
            mine = tuple(a for a in found.attestations if a.entry.annotation(REFERENCE_DIGEST) == str(entry.digest))
            image = self._image(entry, raw, manifest, label)
            images.append(attrs.evolve(image, attestations=mine))
        for entry in found.absent:
            if entry.annotation(REFERENCE_DIGEST) in seen:
                found.notes.append(
                    f"attestation {entry.digest.short} of image {entry.annotation(REFERENCE_DIGEST)} is not "
                    "in the source; the image goes without it"
                )
        for a in found.attestations:
            if a.entry.annotation(REFERENCE_DIGEST) not in seen:
                found.notes.append(
                    f"dropped attestation {a.entry.digest.short}: the image it describes "
                    f"({a.entry.annotation(REFERENCE_DIGEST)}) is not in the source"
                )
        return images


def _describe(descriptor: Descriptor) -> str:
    platform = f"{descriptor.platform} " if descriptor.platform else ""
    return f"{platform}{descriptor.digest.short}"


@attrs.define
class _Flattened:
    """What flattening an index found, before images and attestations are paired."""

    manifests: list[tuple[Descriptor, bytes, ImageManifest]] = attrs.Factory(list)
    attestations: list[Attestation] = attrs.Factory(list)
    absent: list[Descriptor] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    indexes: list[Document[ImageIndex]] = attrs.Factory(list)
