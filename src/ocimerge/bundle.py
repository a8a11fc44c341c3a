"""Air-gap bundles: lock a list of images, then bundle them into one OCI layout (issue 12).

[BUNDLE-1] :func:`lock_images` resolves each line of an image list through its registry:
the document the tag names now (its digest, media type and size), each platform image kept
(its platform from the config, manifest digest, media type, size, and config plus layers
sizes), and the digest of what a bundle will hold, the index filtered to the kept platforms
([LOCK-5]). :func:`lock` writes it atomically and says what moved since the last lock.
[BUNDLE-2] :func:`bundle` writes one OCI layout, directory or archive, naming each image in
``index.json`` by its full reference ([BUNDLE-2]); blobs are stored once however many
images hold them ([BUNDLE-3]); referrers travel with their subjects ([BUNDLE-4]); the run
stages into ``<output>.partial`` and continues there after an interruption ([BUNDLE-5]);
the output appears whole or not at all ([BUNDLE-6]).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from ocimerge.content import Blob, Image, ImageSet, Referrer
from ocimerge.errors import DocumentError, InputError, OutputError, UsageError
from ocimerge.events import BlobAction, EventCallback, PushEvent, PushEventKind, plan
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.lock import (
    ImageLine,
    Lock,
    LockChange,
    LockedImage,
    LockedPlatform,
    compare_locks,
    filter_index,
    parse_image_list,
)
from ocimerge.model.manifest import Document, ImageIndex
from ocimerge.model.platform import Platform
from ocimerge.model.reference import Reference
from ocimerge.registry.api import RegistryOptions, RegistryPool
from ocimerge.sinks.bundle import KEPT, BundleEntry, StagingLayout, staging_path
from ocimerge.sinks.core import required_blobs
from ocimerge.sinks.oci_layout import claim_destination, parse_output, referrer_entries
from ocimerge.sinks.replace import replace_file
from ocimerge.sources import SourceSpec, Walk, as_spec, load, open_source, parse_source

__all__ = [
    "BundleResult",
    "BundledImage",
    "LockResult",
    "bundle",
    "lock",
    "lock_images",
    "read_lock",
    "staged_by",
    "staging_path",
]


# -- lock ---------------------------------------------------------------------------------------


def _scoped(options: RegistryOptions | None, hosts: set[str]) -> RegistryOptions | None:
    """[CRED-4] Explicit credentials go to the registries of the images read, no other."""
    if options is None or options.explicit_hosts is not None:
        return options
    return attrs.evolve(options, explicit_hosts=frozenset(hosts))


def _registry_spec(reference: Reference) -> SourceSpec:
    return parse_source(f"docker://{reference}")


def _locked_platform(image: Image) -> LockedPlatform:
    manifest = image.manifest.descriptor
    content = image.config_blob.descriptor.size + sum(b.descriptor.size for b in image.layers)
    return LockedPlatform(image.platform, manifest.digest, manifest.media_type, manifest.size, content)


def _kept_document(loaded: ImageSet, platforms: Sequence[Platform], name: str) -> Document[Any]:
    """[BUNDLE-1][LOCK-5] The document a bundle holds for ``loaded``: the index filtered to
    ``platforms`` (all when none), or the single manifest; ``UsageError`` naming the image
    when a platform asked for is not there."""
    if loaded.document is None and not loaded.images:  # a single manifest the walk filtered out
        wanted = ", ".join(map(str, platforms))
        why = "; ".join(loaded.notes) or "of another platform"
        raise UsageError(f"{name}: a single image manifest, not {wanted} ({why}); list no platform for it")
    root = loaded.root_document
    if isinstance(root.value, ImageIndex):
        try:
            return filter_index(root, platforms)
        except UsageError as exc:
            nested = " (a platform list picks from the top index only, not from nested ones)" if loaded.indexes else ""
            raise UsageError(f"{name}: {exc}{nested}") from None
    return root


def _below(loaded: ImageSet, root: Document[Any]) -> tuple[list[Image], list[Document[Any]]]:
    """[BUNDLE-2] The images ``root`` reaches, however deep (through the nested indexes the
    walk read), and those nested indexes, children first; each in the walk's order."""
    if not isinstance(root.value, ImageIndex):
        return list(loaded.images), []
    nested = {i.descriptor.digest: i for i in loaded.indexes}
    reached: set[Digest] = set()
    pending = [root]
    while pending:
        for entry in pending.pop().value.manifests:
            if entry.digest in reached:
                continue
            reached.add(entry.digest)
            if entry.digest in nested:
                pending.append(nested[entry.digest])
    images = [i for i in loaded.images if i.digest in reached]
    return images, [i for i in loaded.indexes if i.descriptor.digest in reached]


def _unheld(root: Document[Any], indexes: Sequence[Document[Any]], held: set[Digest]) -> list[Descriptor]:
    """[BUNDLE-2] Entries of the stored indexes the bundle would not hold: an index is never
    written without its children."""
    documents = [root, *indexes] if isinstance(root.value, ImageIndex) else []
    return [e for d in documents for e in d.value.manifests if e.digest not in held]


def _check_platforms(name: str, images: Sequence[Image]) -> None:
    """[LOCK-3] A lock pins one image per platform: two of one platform cannot be locked."""
    for i, image in enumerate(images):
        twin = next((o for o in images[:i] if o.platform == image.platform), None)
        if twin is not None:
            raise UsageError(
                f"{name}: holds two images of {image.platform} ({twin.digest.short} and {image.digest.short}); "
                "a lock pins one per platform: list the other platforms only, or lock one image by its digest"
            )


def _lock_one(pool: RegistryPool, line: ImageLine) -> LockedImage:
    spec = _registry_spec(line.reference)
    name = str(line.reference)
    with open_source(spec, pool.get) as source:
        loaded = load(spec, source, Walk(platforms=line.platforms, attestations=True, referrers=False))
        kept = _kept_document(loaded, line.platforms, name)
    images, _ = _below(loaded, kept)
    if line.platforms:
        missing = [p for p in line.platforms if not any(p.matches(i.platform) for i in images)]
        if missing:  # the index's descriptor said so, the config says otherwise
            raise UsageError(f"{name}: no image of {', '.join(map(str, missing))} (by its config)")
    _check_platforms(name, images)
    root = loaded.root_document.descriptor
    return LockedImage(
        reference=line.reference,
        digest=root.digest,
        media_type=root.media_type,
        size=root.size,
        platforms=tuple(_locked_platform(i) for i in images),
        bundled=kept.descriptor.digest,
    )


def lock_images(lines: Sequence[ImageLine], registry_options: RegistryOptions | None = None) -> Lock:
    """[BUNDLE-1] Pin every line of an image list to what its registry holds now.

    Each reference is read through its registry (manifests and configs, no layer), keeping
    the platforms its line names (all when none). Raises ``SourceNotFoundError`` naming a
    tag or repository the registry does not have, ``UsageError`` naming the image for a
    platform it does not hold, and what reading a registry raises.
    """
    with RegistryPool(_scoped(registry_options, {line.reference.registry for line in lines})) as pool:
        return Lock(tuple(_lock_one(pool, line) for line in lines))


@attrs.frozen
class LockResult:
    """What :func:`lock` wrote: the lock, where, and what moved since the lock it replaced
    (``previous`` is False, and ``changes`` empty, when there was none)."""

    lock: Lock
    path: str
    changes: tuple[LockChange, ...] = ()
    previous: bool = False

    def to_json(self) -> dict[str, Any]:
        """The result as ``lock --json`` would print it."""
        return {
            "path": self.path,
            "images": [
                {"reference": str(i.reference), "digest": str(i.digest), "bundled": str(i.bundled)}
                for i in self.lock.images
            ],
            "previous": self.previous,
            "changes": [{"reference": c.reference, "kind": c.kind, "detail": c.detail} for c in self.changes],
        }


#: The largest lock file and image list read; a larger one is refused, never cut short.
MAX_LOCK_BYTES = 64 * 1024 * 1024
MAX_LIST_BYTES = 16 * 1024 * 1024


def _read_bytes(path: str, what: str, limit: int) -> bytes:
    """``path``'s bytes; ``UsageError`` when it cannot be read or holds more than ``limit``
    (read ``limit + 1``: a file is refused whole, never parsed cut short)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise UsageError(f"{path}: the {what} is larger than {limit // (1024 * 1024)} MiB; refusing it")
    return raw


def read_lock(path: str) -> Lock:
    """[LOCK-3] The lock file at ``path``; ``UsageError`` when it cannot be read or is larger
    than 64 MiB, and ``DocumentError`` naming it when it is no lock of this version."""
    return Lock.parse(_read_bytes(path, "lock file", MAX_LOCK_BYTES), where=path)


def _read_text(path: str, what: str) -> str:
    raw = _read_bytes(path, what, MAX_LIST_BYTES)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: cannot read the {what} ({exc})") from None


def lock(image_list_path: str, output_path: str, registry_options: RegistryOptions | None = None) -> LockResult:
    """[BUNDLE-1] ``ocimerge lock IMAGES.txt -o images.lock``: resolve, compare, write.

    The previous lock at ``output_path``, if any, is read first (a corrupt one is a
    ``DocumentError`` naming it, and nothing is resolved); the new lock replaces it
    atomically, and the result lists what moved ([LOCK-4]).
    """
    lines = parse_image_list(_read_text(image_list_path, "image list"), where=image_list_path)
    previous = read_lock(output_path) if os.path.exists(output_path) else None
    new = lock_images(lines, registry_options)
    encoded = new.encode()
    # [LOCK-3] never write a lock that this version (bundle --lock, the next lock -o) cannot read
    try:
        readable = Lock.parse(encoded, where=output_path) == new
    except DocumentError as exc:
        raise OutputError(f"{output_path}: not written: the new lock would not read back ({exc})") from None
    if not readable:
        raise OutputError(f"{output_path}: not written: the new lock reads back as another lock")
    replace_file(output_path, encoded, what="the lock file")
    changes = compare_locks(previous, new) if previous is not None else ()
    return LockResult(new, output_path, changes, previous is not None)


# -- bundle -------------------------------------------------------------------------------------

#: [BUNDLE-5] The attribute of an error raised by :func:`bundle` naming the staging directory
#: it opened (created or adopted) in that run and left behind.
_STAGING = "ocimerge_staging"


def staged_by(error: BaseException) -> str | None:
    """[BUNDLE-5] The staging directory the :func:`bundle` run that raised ``error`` opened
    and left (its blobs are kept for the same command run again); None when that run never
    opened one (it failed before: a usage error, an output that exists, a staging directory
    refused or held by another run) or for any other error."""
    found = getattr(error, _STAGING, None)
    return found if isinstance(found, str) else None


@attrs.frozen
class BundledImage:
    """[BUNDLE-2] One image of a bundle: its name in ``index.json``, the document stored for
    it, its platforms, and the source it was read from."""

    reference: str
    digest: Digest
    media_type: str
    size: int
    platforms: tuple[Platform, ...]
    source: str
    referrers: int = 0

    def to_json(self) -> dict[str, Any]:
        """As ``bundle --json`` lists it."""
        return {
            "reference": self.reference,
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "size": self.size,
            "platforms": [str(p) for p in self.platforms],
            "platformObjects": [p.to_json() for p in self.platforms],
            "source": self.source,
            "referrers": self.referrers,
        }


@attrs.frozen
class BundleResult:
    """What :func:`bundle` wrote: the output, its images, and how its blobs got there.

    ``blobs_written`` were fetched (or copied) in this run, ``blobs_kept`` were found verified
    in the staging directory an earlier run left ([BUNDLE-5]); ``bytes_written`` counts the
    written ones. Blobs count every stored file under ``blobs/`` (layers, configs, documents).
    """

    output: str
    archive: bool
    images: tuple[BundledImage, ...]
    blobs_written: int
    blobs_kept: int
    bytes_written: int
    referrers: int
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The result as ``bundle --json`` prints it."""
        return {
            "output": self.output,
            "archive": self.archive,
            "images": [i.to_json() for i in self.images],
            "blobs": {"written": self.blobs_written, "kept": self.blobs_kept, "bytesWritten": self.bytes_written},
            "referrers": self.referrers,
            "notes": list(self.notes),
        }


@attrs.frozen
class _Item:
    """One image to bundle: its name, the spec to read, and its lock entry if any."""

    name: str
    spec: SourceSpec
    locked: LockedImage | None = None


def _items(sources: Lock | Sequence[str]) -> list[_Item]:
    """[BUNDLE-2] What to read: a locked image by its locked digest; a reference or a local
    source as it is. Names must be unique: two images under one name would be one image, so
    the names known before reading (locked and registry references, normalised) are checked
    before anything is fetched; a local source's name is known once it is read."""
    if isinstance(sources, Lock):
        items = []
        for image in sources.images:
            ref = image.reference
            pinned = Reference(ref.registry, ref.repository, digest=image.digest)
            items.append(_Item(str(ref), _registry_spec(pinned), image))
    else:
        items = []
        for text in sources:
            spec = as_spec(text)
            items.append(_Item(str(spec.reference) if spec.reference is not None else "", spec))
    if not items:
        raise UsageError("nothing to bundle: the lock or the list of sources is empty")
    names: dict[str, str] = {}
    for item in items:
        if item.name in names:
            raise _twice(item.name, names[item.name], item.spec.text)
        if item.name:
            names[item.name] = item.spec.text
    return items


def _twice(name: str, first: str, second: str) -> UsageError:
    return UsageError(f"{name}: two images under one name ({first} and {second})")


def _local_name(spec: SourceSpec, loaded: ImageSet) -> str:
    """[BUNDLE-2] A local source's name: the name its root carries when that is a reference
    (``docker.io/library/redis:7`` as containerd and Docker 25+ name entries, or docker's
    ``RepoTags`` ``redis:7``: it holds a ``/`` or ``:``, which a bare tag cannot), normalised;
    else the source text as given."""
    for name in loaded.names:
        if "/" in name or ":" in name:
            with contextlib.suppress(UsageError):
                return str(Reference.parse(name))
    return spec.text


def _held(loaded: ImageSet, root: Document[Any]) -> tuple[list[Image], list[Document[Any]], set[Digest]]:
    """The images the stored root reaches (nested indexes followed), the nested indexes it
    reaches, and every document digest the bundle holds for them."""
    images, indexes = _below(loaded, root)
    held = {root.descriptor.digest}
    for image in images:
        held.add(image.digest)
        held.update(a.manifest.descriptor.digest for a in image.attestations)
    held.update(i.descriptor.digest for i in indexes)
    return images, indexes, held


def _carried(loaded: ImageSet, held: set[Digest]) -> tuple[list[Referrer], list[Referrer]]:
    """[BUNDLE-4] Referrers whose subject the bundle holds (recursively), and the others."""
    kept: list[Referrer] = []
    left: list[Referrer] = []
    for referrer in loaded.referrers:  # each comes after its subject
        if referrer.subject in held:
            kept.append(referrer)
            held.add(referrer.digest)
        else:
            left.append(referrer)
    return kept, left


def _documents(
    images: Sequence[Image], indexes: Sequence[Document[Any]], root: Document[Any]
) -> Iterator[Document[Any]]:
    """Children before parents ([SINK-3]): manifests, attestations, nested indexes, the root."""
    for image in images:
        yield image.manifest
        yield from (a.manifest for a in image.attestations)
    yield from indexes
    yield root


def _blobs(
    images: Sequence[Image], indexes: Sequence[Document[Any]], root: Document[Any], referrers: Sequence[Referrer]
) -> Iterator[Blob]:
    """[SINK-3] What the bundle stores for one image, in order: layers and configs (a foreign
    layer the source lacks left out), attestation and referrer blobs, then the documents,
    children before parents, then the referrers' documents, each after its subject."""
    for image in images:
        yield from required_blobs(image)
        yield from (b for a in image.attestations for b in a.blobs)
    yield from (b for r in referrers for b in r.blobs if b.available)
    yield from (_as_blob(d) for d in _documents(images, indexes, root))
    yield from (_as_blob(r.document) for r in referrers)


def _as_blob(document: Document[Any]) -> Blob:
    return Blob.from_bytes(document.descriptor, document.raw, f"document {document.descriptor.digest.short}")


@attrs.define
class _Run:
    """The counters and the staging of one bundle run."""

    staging: StagingLayout
    written: int = 0
    kept: int = 0
    bytes: int = 0
    seen: set[Digest] = attrs.Factory(set)
    on_event: EventCallback | None = None  # [PROGRESS-2] told of each blob fetched or kept

    def expect(self, blobs: Sequence[Blob]) -> None:
        """[PROGRESS-2] Plan the blobs of ``blobs`` that :meth:`add` will stage (each digest once)."""
        fresh: dict[Digest, Blob] = {}
        for blob in blobs:
            if blob.digest not in self.seen:
                fresh.setdefault(blob.digest, blob)
        plan(self.on_event, fresh.values())

    def add(self, blob: Blob) -> None:
        if blob.digest in self.seen:  # [BUNDLE-3] stored once, however many images hold it
            return
        self.seen.add(blob.digest)
        if self.staging.add(blob, self.on_event) == KEPT:
            self.kept += 1
            if self.on_event is not None:  # [BUNDLE-5] staged by an earlier run: already there
                size = blob.descriptor.size
                self.on_event(PushEvent(PushEventKind.DONE, blob.digest, size, size, BlobAction.SKIP))
        else:
            self.written += 1
            self.bytes += blob.descriptor.size


def _stored_root(item: _Item, loaded: ImageSet) -> Document[Any]:
    """[BUNDLE-2] The document bundled for ``item``: for a locked image, the locked index
    filtered to its locked platforms, whose digest must be the lock's ``bundled``."""
    locked = item.locked
    if locked is None:
        return loaded.root_document
    platforms = tuple(p.platform for p in locked.platforms) if locked.bundled != locked.digest else ()
    stored = _kept_document(loaded, platforms, item.name)
    if stored.descriptor.digest != locked.bundled:
        raise InputError(
            f"{item.name}: the lock and the registry disagree: the locked {locked.digest.short} filtered to "
            f"its {len(locked.platforms)} platform(s) is {stored.descriptor.digest.short}, the lock says "
            f"{locked.bundled.short}; lock again"
        )
    return stored


def _bundle_one(item: _Item, loaded: ImageSet, run: _Run, notes: list[str]) -> tuple[BundledImage, list[Referrer]]:
    root = _stored_root(item, loaded)
    images, indexes, held = _held(loaded, root)
    if item.locked is not None:
        digests = {p.digest for p in item.locked.platforms}
        if {i.digest for i in images} != digests:
            raise InputError(f"{item.name}: the lock and the registry disagree on its platform images; lock again")
    unheld = _unheld(root, indexes, held)
    if unheld:  # never an index without its children (a skipped artifact, an absent entry)
        named = ", ".join(f"{e.digest.short} ({e.media_type})" for e in unheld[:3])
        raise InputError(
            f"{item.name or item.spec.text}: the bundle cannot hold {len(unheld)} entr(ies) its index names: "
            f"{named}; bundle the images it holds by their digests instead"
        )
    referrers, left = _carried(loaded, held)
    notes.extend(f"{item.spec.text}: {n}" for n in loaded.notes)
    if left:
        named = ", ".join(f"{r.digest.short} ({r.artifact_type})" for r in left)
        notes.append(
            f"{item.name}: left behind {len(left)} referrer(s) of a document the bundle does not hold "
            f"(the index, filtered to the locked platforms, is a new digest): {named}"
        )
    blobs = list(_blobs(images, indexes, root, referrers))
    run.expect(blobs)
    for blob in blobs:
        run.add(blob)
    name = item.name or _local_name(item.spec, loaded)
    platforms = tuple(i.platform for i in images)
    d = root.descriptor
    bundled = BundledImage(name, d.digest, d.media_type, d.size, platforms, item.spec.text, len(referrers))
    return bundled, referrers


def _stage_all(
    items: Sequence[_Item],
    run: _Run,
    notes: list[str],
    registry_options: RegistryOptions | None,
    referrers: bool,
) -> tuple[list[BundledImage], list[Referrer]]:
    """Read each item (its source open only while its blobs are staged) and stage it."""
    images: list[BundledImage] = []
    referrer_list: list[Referrer] = []
    names: dict[str, str] = {}
    hosts = {i.spec.reference.registry for i in items if i.spec.reference is not None}
    with RegistryPool(_scoped(registry_options, hosts)) as pool:
        for item in items:
            locked = item.locked
            filtered = locked is not None and locked.bundled != locked.digest
            platforms = tuple(p.platform for p in locked.platforms) if locked is not None and filtered else ()
            walk = Walk(platforms=platforms, attestations=True, referrers=referrers)
            with open_source(item.spec, pool.get) as source:
                loaded = load(item.spec, source, walk)
                bundled, carried = _bundle_one(item, loaded, run, notes)
            if bundled.reference in names:
                raise _twice(bundled.reference, names[bundled.reference], item.spec.text)
            names[bundled.reference] = item.spec.text
            images.append(bundled)
            referrer_list.extend(carried)
    return images, referrer_list


def bundle(  # noqa: PLR0913 - the sources, the output, and four keyword-only settings
    sources: Lock | Sequence[str],
    output: str,
    *,
    registry_options: RegistryOptions | None = None,
    referrers: bool = True,
    force: bool = False,
    on_event: EventCallback | None = None,
) -> BundleResult:
    """[BUNDLE-2] ``ocimerge bundle``: every image of ``sources`` in one OCI layout at ``output``.

    ``sources`` is a :class:`Lock` (each image read by its locked digest, stored as locked:
    the index filtered to the locked platforms) or source specs as ``create`` takes them
    (``docker://REF``, ``oci-archive:x.tar``, a layout directory), each stored as it is.
    ``output`` follows ``-o``'s rules (``.tar``, ``.tar.gz``, ``oci-archive:`` give an archive,
    anything else a directory). ``referrers`` carries signatures, SBOMs and other referrers.

    [BUNDLE-5] The run stages into :func:`staging_path` (``<output>.partial``); an interrupted
    or failed run leaves it there, and the next run with the same output keeps every blob it
    finds verified there. [BUNDLE-6] An existing output needs ``force``. Raises
    ``UsageError`` (nothing to bundle, a name twice), ``OutputError``, ``InputError``
    (the lock and the registry disagree) and what reading a source raises. ``on_event`` is
    told of every blob, per image planned once its documents are read, then each fetched
    (``FETCH``) or found staged already (``SKIP``); an archive's blobs again as it is written
    from the staging (``WRITE``) [PROGRESS-2].
    """
    sink = parse_output(output, tag_name=None, force=force)
    items = _items(sources)
    claim_destination(sink.path, force=force)  # before anything is fetched
    with StagingLayout(staging_path(sink.path)) as staging:
        try:
            run = _Run(staging, on_event=on_event)
            notes: list[str] = []
            if staging.resumed:
                notes.append(f"continued the bundle staged in {staging.path}")
            images, referrer_list = _stage_all(items, run, notes, registry_options, referrers)
            entries = [BundleEntry(Descriptor(i.media_type, i.digest, i.size), i.reference) for i in images]
            # [CARRY-6] referrers after every image, as the layout sink lists them, each once
            entries.extend(BundleEntry(d, tag, image=False) for d, tag in referrer_entries(referrer_list))
            staging.finish(entries, sink.path, archive=sink.archive, force=force, on_event=on_event)
        except BaseException as exc:
            if os.path.isdir(staging.path):  # [BUNDLE-5] read back by staged_by
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(exc, _STAGING, staging.path)
            raise
    return BundleResult(
        output=sink.path,
        archive=sink.archive,
        images=tuple(images),
        blobs_written=run.written,
        blobs_kept=run.kept,
        bytes_written=run.bytes,
        referrers=len({r.digest for r in referrer_list}),
        notes=tuple(notes),
    )
