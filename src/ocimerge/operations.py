"""The library facade: read sources, assemble, write, inspect and verify.

Every function here is what a CLI command does, usable from Python. Errors are
:class:`ocimerge.errors.OcimergeError` subclasses with one-line messages.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from ocimerge.content import Attestation, Blob, Image, ImageSet, drain
from ocimerge.errors import (
    BlobMissingError,
    DigestMismatchError,
    OcimergeError,
    PlatformMismatchError,
    SelectionError,
    UnsupportedMediaTypeError,
    UsageError,
)
from ocimerge.model import mediatype as mt
from ocimerge.model.assemble import (
    Annotation,
    Assembly,
    AttestationPolicy,
    Child,
    IndexFormat,
    assemble,
)
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.manifest import Document, ImageIndex
from ocimerge.recompress import gzip_image
from ocimerge.sinks.oci_layout import write_layout
from ocimerge.sources import SourceSpec, open_source, parse_source
from ocimerge.sources import load as load_spec

__all__ = [
    "CreateResult",
    "VerifyReport",
    "create",
    "inspect",
    "open_images",
    "verify",
]


def _spec(source: str | SourceSpec) -> SourceSpec:
    return source if isinstance(source, SourceSpec) else parse_source(source)


@contextlib.contextmanager
def open_images(source: str | SourceSpec) -> Iterator[ImageSet]:
    """Read the images one source spec selects; their blobs stay readable inside the block.

    >>> import ocimerge
    >>> with ocimerge.open_images("missing.tar") as images:  # doctest: +SKIP
    ...     print([str(i.platform) for i in images.images])
    """
    spec = _spec(source)
    opened = open_source(spec)
    try:
        yield load_spec(spec, opened)
    finally:
        opened.close()


@attrs.frozen
class CreateResult:
    """What :func:`create` built: the index document, the assembly, and where it went."""

    index: Document[ImageIndex]
    assembly: Assembly
    images: tuple[Image, ...]
    output: str | None
    bytes_written: int
    notes: tuple[str, ...]


def _is_output_archive(output: str) -> bool:
    """``-o x.tar`` (or ``oci-archive:x``) writes an archive; anything else a directory."""
    return output.startswith("oci-archive:") or (output.endswith((".tar", ".tar.gz")) and not output.startswith("oci:"))


def _strip_output_prefix(output: str) -> str:
    for prefix in ("oci-archive:", "oci:"):
        if output.startswith(prefix):
            return output[len(prefix) :]
    return output


def _required_blobs(image: Image) -> Iterator[Blob]:
    """[SINK-2] The blobs an image needs in the output; foreign layers are never copied."""
    for blob in image.blobs():
        if not blob.available and mt.is_foreign_layer(blob.descriptor.media_type):
            continue
        if not blob.available:
            raise BlobMissingError(
                f"{blob.where}: blob {blob.digest} of {image.source} ({image.platform}) is not "
                "in the source; the image cannot be written without it"
            )
        yield blob


def create(
    sources: Sequence[str | SourceSpec],
    output: str | None,
    *,
    format: IndexFormat = IndexFormat.AUTO,
    attestations: AttestationPolicy = AttestationPolicy.KEEP,
    annotations: Sequence[Annotation] = (),
    compress: bool = False,
    tag_name: str = "latest",
    dry_run: bool = False,
    force: bool = False,
) -> CreateResult:
    """Merge the images of ``sources`` into one index and write it as an OCI layout or archive.

    ``output`` ending in ``.tar`` (or prefixed ``oci-archive:``) is written as an archive,
    otherwise as a directory; None or ``dry_run`` writes nothing. ``compress`` gzips
    uncompressed layers; a Docker manifest list always needs them gzipped, so
    ``format=DOCKER`` implies it.
    """
    if not sources:
        raise UsageError("no sources given")
    if output is None and not dry_run:
        raise UsageError("no output given: pass -o PATH, or --dry-run")
    with contextlib.ExitStack() as stack:
        images: list[Image] = []
        notes: list[str] = []
        for source in sources:
            spec = _spec(source)
            opened = open_source(spec)
            stack.callback(opened.close)
            loaded = load_spec(spec, opened)
            images.extend(loaded.images)
            notes.extend(f"{loaded.source}: {n}" for n in loaded.notes)
            images_absent = [d for d in loaded.absent if d.annotation("vnd.docker.reference.type") is None]
            if images_absent:
                skipped = ", ".join(str(d.platform or d.digest.short) for d in images_absent)
                notes.append(f"{loaded.source}: not in the source, skipped: {skipped}")
        if compress or format is IndexFormat.DOCKER:
            spool = stack.enter_context(tempfile.TemporaryDirectory(prefix="ocimerge-gzip-"))
            images = [gzip_image(i, spool) for i in images]
        children = [
            Child(
                source=i.source,
                manifest=i.manifest,
                platform=i.platform,
                attestations=tuple((a.entry, a.manifest) for a in i.attestations),
            )
            for i in images
        ]
        assembly = assemble(children, format=format, attestations=attestations, annotations=annotations)
        notes.extend(assembly.notes)
        written = 0
        destination = None
        if output is not None and not dry_run:
            destination = _strip_output_prefix(output)
            by_digest = {str(a.manifest.descriptor.digest): a for i in images for a in i.attestations}
            kept: list[Attestation] = [by_digest[str(d.descriptor.digest)] for d in assembly.attestations]
            blobs = [b for i in images for b in _required_blobs(i)]
            blobs += [b for a in kept for b in a.blobs if b.available]
            documents: list[Document[Any]] = [*assembly.manifests, *assembly.attestations, assembly.index]
            written = write_layout(
                destination,
                blobs=blobs,
                documents=documents,
                roots=[(assembly.index.descriptor, tag_name)],
                archive=_is_output_archive(output),
                force=force,
            )
        return CreateResult(
            index=assembly.index,
            assembly=assembly,
            images=tuple(images),
            output=destination,
            bytes_written=written,
            notes=tuple(notes),
        )


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


def _root_json(root: Descriptor | None) -> dict[str, Any] | None:
    if root is None:
        return None
    return {"mediaType": root.media_type, "digest": str(root.digest), "size": root.size}


def inspect(source: str | SourceSpec) -> dict[str, Any]:
    """A JSON-ready description of a source: its entries, their images, what is absent.

    Without a selector every entry of the source is described; an entry that is not an image
    (an artifact, a referrers index) is listed with the reason in ``error``.
    """
    spec = _spec(source)
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
            entries.append(
                {
                    "source": result.source,
                    "names": list(result.names),
                    "root": _root_json(result.root),
                    "images": [_image_json(i) for i in result.images],
                    "absent": [
                        {
                            "platform": str(d.platform) if d.platform else None,
                            "digest": str(d.digest),
                            "mediaType": d.media_type,
                        }
                        for d in result.absent
                    ],
                    "notes": list(result.notes),
                }
            )
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
        except (DigestMismatchError, BlobMissingError) as exc:
            problems.append(str(exc))
    return count, size


def verify(source: str | SourceSpec) -> VerifyReport:
    """Re-read and re-hash every blob of every image in a source; collect every problem."""
    spec = _spec(source)
    opened = open_source(spec)
    problems: list[str] = []
    notes: list[str] = []
    seen: set[str] = set()
    count = size = 0
    try:
        results: list[ImageSet | OcimergeError]
        if spec.selector.tag or spec.selector.digest or spec.platform:
            try:
                results = [load_spec(spec, opened)]
            except (SelectionError, PlatformMismatchError):
                raise  # the question was wrong, not the source
            except OcimergeError as exc:
                results = [exc]
        else:
            results = opened.load_all()
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
        return VerifyReport(spec.text, tuple(problems), count, size, tuple(notes))
    finally:
        opened.close()
