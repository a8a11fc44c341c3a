"""Describing images: ``inspect`` (local sources and registry references) and ``verify``."""

from __future__ import annotations

from typing import Any

import attrs

from ocimerge.content import Image, ImageSet, drain
from ocimerge.errors import (
    BlobMissingError,
    DigestMismatchError,
    DocumentError,
    OcimergeError,
    PlatformMismatchError,
    RegistryError,
    SelectionError,
    UnsupportedMediaTypeError,
)
from ocimerge.model import mediatype as mt
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.reference import Reference
from ocimerge.registry.api import RegistryOptions, RegistryPool
from ocimerge.remote import load_remote
from ocimerge.sources import SourceSpec, as_spec, check_platform, open_source
from ocimerge.sources import load as load_spec

__all__ = ["VerifyReport", "inspect", "inspect_remote", "verify"]


# -- inspect ------------------------------------------------------------------------------


def _image_json(image: Image) -> dict[str, Any]:
    layers = image.manifest.value.layers
    return {
        "platform": str(image.platform),
        "digest": str(image.digest),
        "mediaType": image.manifest.descriptor.media_type,
        "size": image.manifest.descriptor.size,
        "configDigest": str(image.config.descriptor.digest),
        "layers": [{"mediaType": d.media_type, "digest": str(d.digest), "size": d.size} for d in layers],
        "contentSize": image.config.descriptor.size + sum(d.size for d in layers),
        "attestations": [
            {
                "digest": str(a.entry.digest),
                "size": a.entry.size,
                "type": a.entry.annotation("vnd.docker.reference.type"),
                "references": a.entry.annotation("vnd.docker.reference.digest"),
            }
            for a in image.attestations
        ],
    }


def _entry_json(result: ImageSet) -> dict[str, Any]:
    """One entry of an ``inspect`` report: the same shape for local and registry sources."""
    return {
        "source": result.source,
        "names": list(result.names),
        "root": _root_json(result.root),
        "images": [_image_json(i) for i in result.images],
        "absent": [
            {"platform": str(d.platform) if d.platform else None, "digest": str(d.digest), "mediaType": d.media_type}
            for d in result.absent
        ],
        "notes": list(result.notes),
    }


def _root_json(root: Descriptor | None) -> dict[str, Any] | None:
    if root is None:
        return None
    return {"mediaType": root.media_type, "digest": str(root.digest), "size": root.size}


def inspect(source: str | SourceSpec) -> dict[str, Any]:
    """A JSON-ready description of a source: its entries, their images, what is absent.

    Without a selector every entry of the source is described; an entry that is not an image
    (an artifact, a referrers index) is listed with the reason in ``error``.
    """
    spec = as_spec(source)
    opened = open_source(spec)
    try:
        if spec.selector.tag or spec.selector.digest or spec.platform:
            results: list[ImageSet | OcimergeError] = [load_spec(spec, opened)]
        else:
            results = opened.load_all()
        entries: list[dict[str, Any]] = []
        for result in results:
            if isinstance(result, OcimergeError):
                entries.append({"error": str(result)})
                continue
            entries.append(_entry_json(result))
        return {"source": spec.text, "entries": entries}
    finally:
        opened.close()


# -- verify -------------------------------------------------------------------------------


@attrs.frozen
class VerifyReport:
    """Every problem found (not only the first), and how much was checked."""

    source: str
    problems: tuple[str, ...]
    blobs_checked: int
    bytes_checked: int
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_image(image: Image, seen: set[str], problems: list[str]) -> tuple[int, int]:
    count = size = 0
    config = image.config.value
    layers = image.manifest.value.layers
    if len(config.diff_ids) != len(layers):
        problems.append(
            f"{image.source}: {image.platform}: manifest has {len(layers)} layers but the "
            f"config lists {len(config.diff_ids)} rootfs.diff_ids"
        )
    for i, (layer, diff_id) in enumerate(zip(layers, config.diff_ids, strict=False)):
        if mt.layer_compression(layer.media_type) is mt.Compression.NONE and layer.digest != diff_id:
            problems.append(
                f"{image.source}: {image.platform}: uncompressed layer {i} is {layer.digest} "
                f"but rootfs.diff_ids[{i}] is {diff_id}"
            )
    blobs = [*image.layers, *(b for a in image.attestations for b in a.blobs)]
    for blob in blobs:
        key = str(blob.digest)
        if key in seen:
            continue
        seen.add(key)
        if not blob.available and mt.is_foreign_layer(blob.descriptor.media_type):
            continue
        try:
            size += drain(blob)
            count += 1
        except (DigestMismatchError, BlobMissingError, RegistryError) as exc:
            problems.append(str(exc))
    return count, size


def _tally(results: list[ImageSet | OcimergeError], text: str) -> VerifyReport:
    problems: list[str] = []
    notes: list[str] = []
    seen: set[str] = set()
    count = size = 0
    for result in results:
        if isinstance(result, UnsupportedMediaTypeError):
            notes.append(f"not an image, not checked: {result}")
            continue
        if isinstance(result, OcimergeError):
            problems.append(str(result))
            continue
        for image in result.images:
            c, s = _check_image(image, seen, problems)
            count += c + 2  # the manifest and config were verified as they were read
            size += s + image.manifest.descriptor.size + image.config.descriptor.size
    return VerifyReport(text, tuple(problems), count, size, tuple(notes))


def verify(source: str | SourceSpec, options: RegistryOptions | None = None) -> VerifyReport:
    """Re-read and re-hash every blob of every image in a source; collect every problem.

    A registry image (``docker://REF``) is downloaded blob by blob, streamed and hashed, never
    stored.
    """
    spec = as_spec(source)
    results: list[ImageSet | OcimergeError]
    if spec.kind == "registry":
        with RegistryPool(options) as pool:
            try:
                results = [check_platform(spec, load_remote(Reference.parse(spec.path), pool))]
            except (SelectionError, PlatformMismatchError):
                raise
            except (DigestMismatchError, DocumentError, UnsupportedMediaTypeError) as exc:
                results = [exc]
            return _tally(results, spec.text)
    opened = open_source(spec)
    try:
        if spec.selector.tag or spec.selector.digest or spec.platform:
            try:
                results = [load_spec(spec, opened)]
            except (SelectionError, PlatformMismatchError):
                raise  # the question was wrong, not the source
            except OcimergeError as exc:
                results = [exc]
        else:
            results = opened.load_all()
        return _tally(results, spec.text)
    finally:
        opened.close()


# -- remote -------------------------------------------------------------------------------


def inspect_remote(text: str, options: RegistryOptions | None = None, *, raw: bool = False) -> dict[str, Any]:
    """Describe ``REGISTRY/REPO:TAG`` like ``imagetools inspect``; ``raw`` adds the stored bytes.

    The image is read as a registry source is ([REMOTE-1]): an index is listed image by image
    (platform, digests, media types, sizes, layers) with its attestation manifests and the
    image each one describes; every manifest and config read is verified.
    """
    reference = Reference.parse(text.removeprefix("docker://"))
    with RegistryPool(options) as pool:
        loaded = load_remote(reference, pool)
    report: dict[str, Any] = {"source": str(reference), "entries": [_entry_json(loaded)]}
    if raw:
        report["raw"] = loaded.root_document.raw.decode("utf-8")
    return report
