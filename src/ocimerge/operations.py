"""The library facade: read sources, assemble, write, inspect and verify.

Every function here is what a CLI command does, usable from Python. Errors are
:class:`ocimerge.errors.OcimergeError` subclasses with one-line messages.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from ocimerge.content import Attestation, Blob, Image, ImageSet
from ocimerge.errors import (
    BlobMissingError,
    NotAnImageError,
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
from ocimerge.model.platform import Platform
from ocimerge.model.reference import Reference
from ocimerge.publish import Publication, PushEvent, PushResult, parse_target, publish
from ocimerge.recompress import gzip_image
from ocimerge.registry.api import RegistryOptions, RegistryPool
from ocimerge.remote import MissingSourceError, load_remote
from ocimerge.sinks.oci_layout import write_layout
from ocimerge.sources import SourceSpec, as_spec, check_platform, open_source
from ocimerge.sources import load as load_spec

__all__ = [
    "CreateResult",
    "PushSourceResult",
    "create",
    "open_images",
    "push",
]


@contextlib.contextmanager
def open_images(source: str | SourceSpec) -> Iterator[ImageSet]:
    """Read the images one source spec selects; their blobs stay readable inside the block.

    >>> import ocimerge
    >>> with ocimerge.open_images("missing.tar") as images:  # doctest: +SKIP
    ...     print([str(i.platform) for i in images.images])
    """
    spec = as_spec(source)
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
    pushed: tuple[PushResult, ...] = ()


def _is_output_archive(output: str) -> bool:
    """``-o x.tar`` (``.tar.gz``, ``.tgz``, or ``oci-archive:x``) writes an archive; else a directory."""
    if output.startswith("oci:"):
        return False
    return output.startswith("oci-archive:") or output.endswith((".tar", ".tar.gz", ".tgz"))


def _strip_output_prefix(output: str) -> str:
    for prefix in ("oci-archive:", "oci:"):
        if output.startswith(prefix):
            return output[len(prefix) :]
    return output


def _required_blobs(image: Image) -> Iterator[Blob]:
    """[SINK-2] The blobs an image needs in the output; a foreign layer the source lacks is left out."""
    for blob in image.blobs():
        if not blob.available and mt.is_foreign_layer(blob.descriptor.media_type):
            continue
        if not blob.available:
            raise BlobMissingError(
                f"{blob.where}: blob {blob.digest} of {image.source} ({image.platform}) is not "
                "in the source; the image cannot be written without it"
            )
        yield blob


def _absent_images(loaded: ImageSet) -> list[Descriptor]:
    return [d for d in loaded.absent if d.annotation("vnd.docker.reference.type") is None]


def _load_each(
    specs: Sequence[SourceSpec],
    stack: contextlib.ExitStack,
    pool: RegistryPool,
    *,
    platforms: Sequence[Platform],
    keep_attestations: bool,
    ignore_missing: bool,
    notes: list[str],
) -> list[ImageSet]:
    """Read every source; local ones stay open (their blobs are read later) until ``stack`` ends."""
    loaded: list[ImageSet] = []
    for spec in specs:
        try:
            if spec.kind == "registry":
                reference = Reference.parse(spec.path)
                found = load_remote(reference, pool, platforms=platforms, keep_attestations=keep_attestations)
                found = check_platform(spec, found)
            else:
                opened = open_source(spec)
                stack.callback(opened.close)
                found = load_spec(spec, opened)
                if platforms:
                    kept = tuple(i for i in found.images if i.platform in platforms)
                    if not kept:
                        have = ", ".join(str(i.platform) for i in found.images)
                        notes.append(f"{found.source}: no wanted platform (it has {have}); skipped")
                        continue
                    found = attrs.evolve(found, images=kept)
        except (MissingSourceError, NotAnImageError) as exc:
            if not ignore_missing or (isinstance(exc, NotAnImageError) and "no such file" not in str(exc)):
                raise
            notes.append(f"skipped missing source {spec.text} (--ignore-missing): {exc}")
            continue
        loaded.append(found)
    return loaded


def _scope_credentials(
    options: RegistryOptions | None, specs: Sequence[SourceSpec], targets: Sequence[Reference]
) -> RegistryOptions | None:
    """[CRED-4] Explicit credentials belong to the targets' registries, else to the sources'."""
    if options is None or options.explicit_hosts is not None:
        return options
    hosts = {t.registry for t in targets} or {Reference.parse(s.path).registry for s in specs if s.kind == "registry"}
    return attrs.evolve(options, explicit_hosts=frozenset(hosts))


def create(
    sources: Sequence[str | SourceSpec],
    output: str | None = None,
    *,
    tags: Sequence[str] = (),
    format: IndexFormat = IndexFormat.AUTO,
    attestations: AttestationPolicy = AttestationPolicy.KEEP,
    annotations: Sequence[Annotation] = (),
    platforms: Sequence[Platform] = (),
    ignore_missing: bool = False,
    compress: bool = False,
    tag_name: str = "latest",
    dry_run: bool = False,
    force: bool = False,
    registry_options: RegistryOptions | None = None,
    jobs: int = 4,
    on_event: Callable[[PushEvent], None] | None = None,
) -> CreateResult:
    """Merge the images of ``sources`` into one index; write it, push it, or both.

    Sources are local layouts and archives or registry references (``docker://REF``, or a
    reference whose first part is a registry host), mixed freely. An index source is
    flattened into its images, filtered by ``platforms``. ``output`` ending in ``.tar`` (or
    prefixed ``oci-archive:``) is written as an archive, otherwise as a directory. ``tags``
    (``REGISTRY/REPO:TAG``) are pushed to, blobs first and tags last; blobs already in a
    target's registry are mounted, others streamed across. ``dry_run`` writes nothing
    anywhere (with ``tags`` it still asks the registries what they hold, to plan).
    ``ignore_missing`` skips a source that is absent, with a note. ``compress`` gzips
    uncompressed layers; ``format=DOCKER`` implies it.
    """
    if not sources:
        raise UsageError("no sources given")
    if output is None and not tags and not dry_run:
        raise UsageError("nothing to do: pass -o PATH, -t REGISTRY/REPO:TAG, or --dry-run")
    targets = [parse_target(t) for t in tags]
    specs = [as_spec(s) for s in sources]
    registry_options = _scope_credentials(registry_options, specs, targets)
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(RegistryPool(registry_options))
        notes: list[str] = []
        loaded = _load_each(
            specs,
            stack,
            pool,
            platforms=platforms,
            keep_attestations=attestations is AttestationPolicy.KEEP,
            ignore_missing=ignore_missing,
            notes=notes,
        )
        images: list[Image] = []
        for found in loaded:
            images.extend(found.images)
            notes.extend(f"{found.source}: {n}" for n in found.notes)
            if absent := _absent_images(found):
                skipped = ", ".join(str(d.platform or d.digest.short) for d in absent)
                notes.append(f"{found.source}: not in the source, skipped: {skipped}")
        if not images:
            raise UsageError("no images left to merge (every source was skipped)")
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
        by_digest = {str(a.manifest.descriptor.digest): a for i in images for a in i.attestations}
        kept: list[Attestation] = [by_digest[str(d.descriptor.digest)] for d in assembly.attestations]
        blobs = [b for i in images for b in _required_blobs(i)]
        blobs += [b for a in kept for b in a.blobs if b.available]
        children_docs: list[Document[Any]] = [*assembly.manifests, *assembly.attestations]
        written = 0
        destination = None
        if output is not None and not dry_run:
            destination = _strip_output_prefix(output)
            written = write_layout(
                destination,
                blobs=blobs,
                documents=[*children_docs, assembly.index],
                roots=[(assembly.index.descriptor, tag_name)],
                archive=_is_output_archive(output),
                force=force,
            )
        pushed: tuple[PushResult, ...] = ()
        if targets:
            publication = Publication(tuple(blobs), tuple(children_docs), assembly.index)
            pushed = publish(publication, targets, pool, jobs=jobs, on_event=on_event, dry_run=dry_run)
        return CreateResult(
            index=assembly.index,
            assembly=assembly,
            images=tuple(images),
            output=destination,
            bytes_written=written,
            notes=tuple(notes),
            pushed=pushed,
        )


@attrs.frozen
class PushSourceResult:
    """What :func:`push` sent: the root document as stored, and one result per repository."""

    root: Descriptor
    images: tuple[Image, ...]
    pushed: tuple[PushResult, ...]
    notes: tuple[str, ...]


def push(
    source: str | SourceSpec,
    tags: Sequence[str],
    *,
    registry_options: RegistryOptions | None = None,
    jobs: int = 4,
    on_event: Callable[[PushEvent], None] | None = None,
    dry_run: bool = False,
) -> PushSourceResult:
    """Upload a layout or archive as it is (multi-platform or not), digests byte for byte.

    The air-gapped half of the job: an archive written earlier by :func:`create` (or by buildx,
    skopeo, docker save) goes into a registry unchanged. Children the source names but does not
    hold must already be in the target repository, or nothing is tagged. A registry source
    (``docker://REF``) is copied the same way: mounted within its registry, streamed across.
    """
    if not tags:
        raise UsageError("no target given: ocimerge push SRC REGISTRY/REPO:TAG")
    targets = [parse_target(t) for t in tags]
    registry_options = _scope_credentials(registry_options, [], targets)
    spec = as_spec(source)
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(RegistryPool(registry_options))
        if spec.kind == "registry":  # a copy between registries, byte for byte
            loaded = check_platform(spec, load_remote(Reference.parse(spec.path), pool))
        else:
            opened = open_source(spec)
            stack.callback(opened.close)
            loaded = load_spec(spec, opened)
        root = loaded.root_document
        images = loaded.images
        blobs = [b for i in images for b in i.blobs()]
        blobs += [b for i in images for a in i.attestations for b in a.blobs]
        documents: list[Document[Any]] = [i.manifest for i in images]
        documents += [a.manifest for i in images for a in i.attestations]
        documents += list(loaded.indexes)
        documents = [d for d in documents if d.descriptor.digest != root.descriptor.digest]
        publication = Publication(tuple(blobs), tuple(documents), root, tuple(loaded.absent))
        pushed = publish(publication, targets, pool, jobs=jobs, on_event=on_event, dry_run=dry_run)
        return PushSourceResult(root.descriptor, images, pushed, loaded.notes)
