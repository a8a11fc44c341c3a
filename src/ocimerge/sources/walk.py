"""The one walker that turns a source's root into images, for every kind of source.

[LAYOUT-5] An index is flattened into its images; nested indexes are followed (at most
``MAX_NESTING`` deep) and re-sent as they are; BuildKit attestation manifests are collected
and [ATTEST-2] paired with the image they name; entries the source does not hold are
reported as absent; other artifacts and unknown media types are skipped with a note.
[REMOTE-2] Platforms, when asked for, filter by the entry's descriptor before anything of
it is read (over a registry that saves a request per unwanted image) and again by the
image's config once it is read.
[SEC-2] The walk is a graph walk, not a tree walk: each index and manifest digest is read
once, and the total number of entries visited is capped, so an index that lists another
index a thousand times costs a thousand entries, not a million; pairing attestations with
their images is linear too.
"""

from __future__ import annotations

import weakref

import attrs

from ocimerge.content import Attestation, Blob, Image, ImageSet
from ocimerge.errors import DocumentError, InputError, SourceNotFoundError, UnsupportedMediaTypeError
from ocimerge.model import mediatype as mt
from ocimerge.model.annotations import REFERENCE_TYPE, attested_digest, is_attestation
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.manifest import (
    Document,
    ImageIndex,
    ImageManifest,
    decode_config,
    decode_manifest_or_index,
)
from ocimerge.model.platform import Platform
from ocimerge.sources.core import Root, Source
from ocimerge.sources.referrers import discover

__all__ = ["EVERYTHING", "MAX_ENTRIES", "MAX_NESTING", "MAX_SOURCE_ENTRIES", "Walk", "load_root"]

#: [LAYOUT-5] Index depth followed: real images rarely nest more than one index deep;
#: the bound turns a cycle or a hostile chain of indexes into a clear error.
MAX_NESTING = 8
#: [SEC-2] Entries visited in one walk, over all indexes: far above any real image (Hub's
#: busybox index has 20), far below what a hostile fan-out would make us do.
MAX_ENTRIES = 10_000
#: [SEC-2] Entries visited over every walk of one source (``inspect`` and ``verify`` walk each
#: root of a layout): ten times one walk's cap, so an ``index.json`` that lists a wide graph
#: under a thousand roots is refused instead of walked a thousand times.
MAX_SOURCE_ENTRIES = 10 * MAX_ENTRIES
# a manifest with any other config media type is an artifact (a Helm chart, a signature)
_IMAGE_CONFIGS = frozenset({mt.OCI_CONFIG, mt.DOCKER_CONFIG})


@attrs.frozen
class Walk:
    """What to take from a root: platforms (empty: all), whether attestations are read, and
    whether referrers are looked for ([REFERRERS-9]), of which artifact types (empty: all)."""

    platforms: tuple[Platform, ...] = ()
    attestations: bool = True
    referrers: bool = True
    referrer_types: tuple[str, ...] = ()

    def wants(self, platform: Platform | None) -> bool:
        """Whether an image of ``platform`` is wanted (an unknown platform is, until read).

        [PLATFORM-7] Wanted platforms match, not equal: ``windows/amd64`` wants every
        ``os.version``."""
        return not self.platforms or platform is None or platform.matches_any(self.platforms)


#: The default walk: every platform, attestations included.
EVERYTHING = Walk()


@attrs.define
class _Found:
    """What flattening found, before images and attestations are paired.

    ``seen`` holds every digest already visited (the graph walk), ``visited`` counts entries
    against ``MAX_ENTRIES``, and ``filtered`` counts images dropped for their platform, so an
    empty result can say *why* it is empty.
    """

    manifests: list[tuple[Descriptor, Document[ImageManifest]]] = attrs.Factory(list)
    attestations: list[Attestation] = attrs.Factory(list)
    absent: list[Descriptor] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    indexes: list[Document[ImageIndex]] = attrs.Factory(list)
    seen: set[str] = attrs.Factory(set)
    visited: int = 0
    filtered: int = 0


@attrs.define
class _Shared:
    """[SEC-2] What every walk of one source shares: documents read, entries visited so far.

    A document reached from several roots is read, verified and decoded once, and the one
    value is shared by every image set that holds it, so memory follows the distinct
    documents of the source, not the number of paths to them.
    """

    documents: dict[tuple[str, str, int], Document[ImageManifest | ImageIndex] | InputError] = attrs.Factory(dict)
    visited: int = 0


_SHARED: weakref.WeakKeyDictionary[Source, _Shared] = weakref.WeakKeyDictionary()


def _shared(source: Source) -> _Shared:
    """The walk state of ``source``, kept as long as the source lives; fresh if it cannot be kept."""
    try:
        return _SHARED.setdefault(source, _Shared())
    except TypeError:  # a source that cannot be weakly referenced or hashed: walks share nothing
        return _Shared()


def load_root(source: Source, root: Root, walk: Walk = EVERYTHING) -> ImageSet:
    """[LAYOUT-5] The images under ``root``: a manifest is one image, an index is flattened.

    Raises :class:`InputError` subclasses when the root holds no image at all; an index whose
    images were all filtered out by ``walk.platforms`` gives an empty set with a note.
    ``DocumentError`` for an index graph too deep or too wide, and the source's own errors
    (``DigestMismatchError``, ``BlobMissingError``) for a document it cannot serve intact.
    Every manifest, index and config is verified as it is read; layers are not read here,
    only described by ``Blob`` values that verify when they are opened. The source must stay
    open for as long as the returned set's blobs are used.
    """
    descriptor = root.descriptor
    if descriptor.media_type not in mt.MANIFEST_TYPES | mt.INDEX_TYPES:
        raise UnsupportedMediaTypeError(
            f"{root.label}: entry {descriptor.digest.short} has unknown media type {descriptor.media_type!r}"
        )
    document = _read(source, descriptor, f"entry {descriptor.digest.short}")
    # an authored root (docker-save) has no digest of its own in the source to report
    shown = descriptor if root.stored else None
    if isinstance(document.value, ImageManifest):
        image = _image(source, descriptor, document, root.label)  # type: ignore[arg-type]
        if not walk.wants(image.platform):
            note = f"it is {image.platform}, not a wanted platform"
            return ImageSet(root.label, (), (note,), shown, root.names)
        return _with_referrers(
            source, ImageSet(root.label, (image,), root=shown, names=root.names, document=image.manifest), walk
        )
    found = _Found(seen={str(descriptor.digest)})
    _flatten(source, document.value, found, walk, depth=0)
    images = _pair(source, found, root.label)
    if walk.platforms:  # [REMOTE-2] the config is the truth, the descriptor only a hint
        kept = [i for i in images if walk.wants(i.platform)]
        found.filtered += len(images) - len(kept)
        images = kept
    if not images:
        _raise_empty(root, found)
    loaded = ImageSet(
        root.label,
        tuple(images),
        notes=tuple(found.notes),
        root=shown,
        names=root.names,
        absent=tuple(found.absent),
        document=document,
        indexes=tuple(found.indexes),
    )
    return _with_referrers(source, loaded, walk)


def _with_referrers(source: Source, loaded: ImageSet, walk: Walk) -> ImageSet:
    """[REFERRERS-9] ``loaded`` with the referrers of its root, images, attestations and
    nested indexes, when the walk asks for them."""
    if not walk.referrers or not loaded.images:
        return loaded
    subjects = [loaded.root_document.descriptor.digest]
    for image in loaded.images:
        subjects.append(image.digest)
        subjects.extend(a.manifest.descriptor.digest for a in image.attestations)
    subjects.extend(i.descriptor.digest for i in loaded.indexes)
    found = discover(source, subjects, walk.referrer_types)
    return attrs.evolve(loaded, referrers=found.referrers, notes=(*loaded.notes, *found.notes))


def _raise_empty(root: Root, found: _Found) -> None:
    """An index that yields no image: filtered (a note), all absent, or no image at all.

    Filtering wins: a source with no image of the wanted platform is skipped, not an error
    ([REMOTE-2]), because ``create --platforms`` is routinely run over mixed sources.
    """
    if found.filtered:
        found.notes.append("no image of a wanted platform")
        return
    if found.absent:
        absent = ", ".join(_describe(d) for d in found.absent)
        raise InputError(f"{root.label}: none of the index's images is in the source (absent: {absent})")
    skipped = "; ".join(found.notes) or "it is empty"
    raise UnsupportedMediaTypeError(f"{root.label}: the index holds no container image ({skipped})")


def _read(source: Source, descriptor: Descriptor, what: str) -> Document[ImageManifest | ImageIndex]:
    """A manifest or index of the source, verified and decoded.

    ``Document.reached`` re-checks the digest on the raw bytes, so even a source whose
    ``document`` does not verify cannot hand the walker bytes other than the ones named.
    A document is read once per source ([SEC-2]); later reads return the same value.
    """
    documents = _shared(source).documents
    key = (str(descriptor.digest), descriptor.media_type, descriptor.size)
    found = documents.get(key)
    if found is None:  # [SEC-2] read once per source: the outcome, even a failure, is kept
        try:
            raw = source.document(descriptor, what)
            value = decode_manifest_or_index(raw, media_type=descriptor.media_type, where=f"{source.name}: {what}")
            found = Document.reached(raw, value, descriptor, where=f"{source.name}: {what}")
        except InputError as exc:
            found = exc
        documents[key] = found
    if isinstance(found, InputError):
        raise found.with_traceback(None)
    return found


def _child(source: Source, entry: Descriptor, what: str) -> Document[ImageManifest | ImageIndex]:
    """[REMOTE-3] A child an index names; one its registry lacks makes the source incomplete."""
    try:
        return _read(source, entry, what)
    except SourceNotFoundError as exc:
        platform = f" ({entry.platform})" if entry.platform else ""
        raise SourceNotFoundError(
            f"{source.name}: the source index names {what}{platform}, which the registry does not have; "
            "the source is incomplete"
        ) from exc


def _flatten(source: Source, index: ImageIndex, found: _Found, walk: Walk, depth: int) -> None:
    """[LAYOUT-5] Visit each entry of ``index`` once; nested indexes recursively."""
    if depth > MAX_NESTING:
        raise DocumentError(f"{source.name}: indexes nested more than {MAX_NESTING} deep")
    for entry in index.manifests:
        # [SEC-2] counted before the seen-check: duplicates are where a hostile fan-out hides
        found.visited += 1
        if found.visited > MAX_ENTRIES:
            raise DocumentError(f"{source.name}: the index graph has more than {MAX_ENTRIES} entries; refusing it")
        _count_for_source(source)
        key = str(entry.digest)
        if key in found.seen:
            continue  # [LAYOUT-5][SEC-2] a digest listed twice is one document, read once
        found.seen.add(key)
        _visit(source, entry, found, walk, depth)


def _count_for_source(source: Source) -> None:
    """[SEC-2] One more entry visited in ``source``; ``DocumentError`` past :data:`MAX_SOURCE_ENTRIES`."""
    shared = _shared(source)
    shared.visited += 1
    if shared.visited > MAX_SOURCE_ENTRIES:
        raise DocumentError(
            f"{source.name}: its index graphs have more than {MAX_SOURCE_ENTRIES} entries in all; refusing it"
        )


def _visit(source: Source, entry: Descriptor, found: _Found, walk: Walk, depth: int) -> None:
    """Sort one index entry into images, attestations, nested indexes, absent or skipped."""
    # The order of the tests matters: attestations are recognised before the platform filter,
    # because their platform is unknown/unknown ([ATTEST-1]) and they are paired later, and
    # the filter runs before ``has``/reads so that an unwanted image costs no request.
    reference_type = entry.annotation(REFERENCE_TYPE)
    if entry.media_type in mt.INDEX_TYPES:
        _nested(source, entry, found, walk, depth)
    elif entry.media_type not in mt.MANIFEST_TYPES:
        found.notes.append(f"skipped entry {entry.digest.short} of unknown media type {entry.media_type}")
    elif is_attestation(entry):
        if walk.attestations:
            _attestation(source, entry, found)
    elif reference_type is not None:
        found.notes.append(
            f"skipped {reference_type} entry {entry.digest.short} (vnd.docker.reference.type={reference_type})"
        )
    elif not walk.wants(entry.platform):
        found.filtered += 1
    elif not source.has(entry):
        found.absent.append(entry)
    else:
        _manifest(source, entry, found)


def _nested(source: Source, entry: Descriptor, found: _Found, walk: Walk, depth: int) -> None:
    """A nested index: flattened one level deeper, then kept so it can be re-sent as is."""
    if not source.has(entry):
        found.absent.append(entry)
        return
    document = _child(source, entry, f"nested index {entry.digest.short}")
    if not isinstance(document.value, ImageIndex):
        raise DocumentError(f"{source.name}: entry {entry.digest.short} says index, holds a manifest")
    _flatten(source, document.value, found, walk, depth + 1)
    found.indexes.append(document)  # type: ignore[arg-type]  # children before parents


def _manifest(source: Source, entry: Descriptor, found: _Found) -> None:
    """An image manifest entry: kept for pairing, or skipped with a note if an artifact."""
    document = _child(source, entry, f"manifest {entry.digest.short}")
    manifest = document.value
    if not isinstance(manifest, ImageManifest):
        raise DocumentError(f"{source.name}: entry {entry.digest.short} says manifest, holds an index")
    if manifest.config.media_type not in _IMAGE_CONFIGS:
        kind = manifest.artifact_type or manifest.config.media_type
        found.notes.append(f"skipped artifact {entry.digest.short} ({kind})")
        return
    found.manifests.append((entry, document))  # type: ignore[arg-type]


def _attestation(source: Source, entry: Descriptor, found: _Found) -> None:
    """[ATTEST-1] An attestation manifest and its blobs, or absent when the source lacks it."""
    if not source.has(entry):
        found.absent.append(entry)
        return
    what = f"attestation manifest {entry.digest.short}"
    document = _child(source, entry, what)
    value = document.value
    if not isinstance(value, ImageManifest):
        raise DocumentError(f"{source.name}: attestation {entry.digest.short} is not a manifest")
    blobs = tuple(
        source.blob(d, f"blob {d.digest.short} of attestation {entry.digest.short}")
        for d in (value.config, *value.layers)
    )
    found.attestations.append(Attestation(entry=entry, manifest=document, blobs=blobs))  # type: ignore[arg-type]


def _image(source: Source, entry: Descriptor, document: Document[ImageManifest], label: str) -> Image:
    """One image: its manifest, its config (read and verified), and its layer blobs."""
    manifest = document.value
    short = entry.digest.short
    if manifest.config.media_type not in _IMAGE_CONFIGS:
        kind = manifest.artifact_type or manifest.config.media_type
        raise UnsupportedMediaTypeError(
            f"{source.name}: manifest {short} is an artifact ({kind}), not a container image"
        )
    config_raw = source.document(manifest.config, f"config of manifest {short}")
    config = decode_config(config_raw, where=f"{source.name}: config {manifest.config.digest.short}")
    layers = tuple(
        source.blob(layer, f"layer {i} ({layer.digest.short}) of manifest {short}")
        for i, layer in enumerate(manifest.layers)
    )
    # the config's bytes are in hand: the blob serves them, it does not read them again
    return Image(
        source=label,
        manifest=document,
        config=Document.reached(
            config_raw, config, manifest.config, where=f"{source.name}: config of manifest {short}"
        ),
        layers=layers,
        config_blob=Blob.from_bytes(manifest.config, config_raw, f"{label}: config", source.origin),
        platform_hint=entry.platform,
    )


def _pair(source: Source, found: _Found, label: str) -> list[Image]:
    """[ATTEST-2] Images with the attestations that name them; orphans are noted."""
    images: list[Image] = []
    held: set[str] = set()
    # [SEC-2] grouped once: matching each image against every attestation would make
    # MAX_ENTRIES entries cost MAX_ENTRIES squared
    by_image: dict[str | None, list[Attestation]] = {}
    for attestation in found.attestations:
        by_image.setdefault(attested_digest(attestation.entry), []).append(attestation)
    for entry, document in found.manifests:
        held.add(str(entry.digest))
        image = _image(source, entry, document, label)
        # [INDEX-7] what the source index said about this entry travels with it; a root's own
        # descriptor (index.json's ref.name, a tag) says nothing about an entry, so only here
        images.append(
            attrs.evolve(
                image, attestations=tuple(by_image.get(str(entry.digest), ())), entry_annotations=entry.annotations
            )
        )
    for entry in found.absent:
        if attested_digest(entry) in held:
            found.notes.append(
                f"attestation {entry.digest.short} of image {attested_digest(entry)} is not "
                "in the source; the image goes without it"
            )
    for attestation in found.attestations:
        if attested_digest(attestation.entry) not in held:
            found.notes.append(
                f"dropped attestation {attestation.entry.digest.short}: the image it describes "
                f"({attested_digest(attestation.entry)}) is not in the source"
            )
    return images


def _describe(descriptor: Descriptor) -> str:
    """``linux/arm64 sha256:ab12…`` for messages about absent entries."""
    platform = f"{descriptor.platform} " if descriptor.platform else ""
    return f"{platform}{descriptor.digest.short}"
