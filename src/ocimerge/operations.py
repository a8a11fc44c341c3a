"""The library facade: read sources, assemble, and hand the result to sinks.

Every function here is what a CLI command does, usable from Python. Each takes its settings
as one frozen value (:class:`CreateOptions`, :class:`PushOptions`); keyword arguments given
to :func:`create` or :func:`push` are folded into that value once, at the door. Errors are
:class:`ocimerge.errors.OcimergeError` subclasses with one-line messages.

One path for every source: ``open_source`` gives a local layout or archive and a registry
image alike, the walker turns it into images, and the same sinks take the publication.

[MSG-4] With several targets, every repository is pushed even when one fails; then the first
failure is raised, and :func:`partial_result` of that exception is the whole result (what
was pushed and what failed), so a caller, like ``--json``, can tell every target's outcome.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import attrs

from ocimerge.content import FOUND_AS_ATTESTATION, Image, ImageSet, Referrer
from ocimerge.errors import InputError, OcimergeError, SourceNotFoundError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.annotations import REFERENCE_TYPE, is_attestation
from ocimerge.model.assemble import (
    Annotation,
    Assembly,
    AttestationPolicy,
    Base,
    Child,
    IndexFormat,
    assemble,
    rebase,
)
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageIndex, ImageManifest
from ocimerge.model.platform import Platform
from ocimerge.model.reference import Reference
from ocimerge.recompress import gzip_image
from ocimerge.registry.api import RegistryOptions, RegistryPool
from ocimerge.signatures import PrivateKey, PublicKey, make_signature
from ocimerge.signed import require_signed, signature_walk
from ocimerge.sinks.core import Publication
from ocimerge.sinks.oci_layout import LayoutResult, parse_output
from ocimerge.sinks.registry import (
    PushEvent,
    PushFailure,
    PushOptions,
    PushOutcome,
    PushResult,
    RegistrySink,
    parse_target,
)
from ocimerge.sources import SourceKind, SourceSpec, Walk, as_spec, load, open_source
from ocimerge.tagging import UntagOutcome, untag_sources

__all__ = [
    "CreateOptions",
    "CreateResult",
    "PushOptions",
    "PushSourceResult",
    "create",
    "open_images",
    "partial_result",
    "push",
]

#: [MSG-4] The attribute of a raised push error that holds the run's whole result.
_PARTIAL = "ocimerge_partial_result"


# attrs converters: callers may pass any iterable (a list, a generator), and the options
# store a tuple so that the frozen value is hashable and cannot change under a running merge
def _annotations(values: Iterable[Annotation]) -> tuple[Annotation, ...]:
    return tuple(values)


def _platforms(values: Iterable[Platform]) -> tuple[Platform, ...]:
    return tuple(values)


@attrs.frozen
class CreateOptions:
    """Everything :func:`create` can be asked, as one value.

    ``platforms`` keeps only those platforms of multi-platform sources; ``ignore_missing``
    skips an absent source with a note; ``compress`` gzips uncompressed layers
    (``format=DOCKER`` implies it); ``tag_name`` names the root in a written ``index.json``;
    ``dry_run`` writes nothing anywhere (with tags it still asks the registries what they
    hold, to plan); ``force`` replaces an existing output.

    ``annotations_from_labels`` copies the ``org.opencontainers.image.*`` labels every image
    shares onto the index ([INDEX-7]); ``annotations`` given win over them.

    ``referrers`` says whether signatures, SBOMs and other referrers of the images travel
    with them ([REFERRERS-9]); ``referrer_types`` keeps only those artifact types.
    ``sign_key`` signs the merged index in cosign's format and attaches the signature as a
    referrer and under cosign's tag ([COSIGN-9]).

    ``append`` adds the images to the index the first tag names now ([INDEX-9]): its images
    first, in its order, with their entry annotations, attestations and its index annotations;
    a platform it already holds is refused unless ``replace``, which puts the new image in the
    old one's place. A tag that does not exist yet is created, with a note.
    ``untag_sources`` removes the tags of the registry sources once every merged tag is
    confirmed, each only while it names what was read ([TAG-6]); not in a dry run.
    ``drop_annotations`` (with ``format=DOCKER`` only) drops the annotations a Docker list and
    Docker manifests cannot carry instead of refusing them, with a note per child ([CONVERT-2]).

    ``registry_options``, ``jobs`` and ``on_event`` are the push settings, used only when
    ``create`` has tags; the value is frozen, so one instance can be reused across runs.
    """

    format: IndexFormat = IndexFormat.AUTO
    attestations: AttestationPolicy = AttestationPolicy.KEEP
    annotations: tuple[Annotation, ...] = attrs.field(default=(), converter=_annotations)
    annotations_from_labels: bool = False
    platforms: tuple[Platform, ...] = attrs.field(default=(), converter=_platforms)
    ignore_missing: bool = False
    compress: bool = False
    tag_name: str = "latest"
    dry_run: bool = False
    force: bool = False
    referrers: bool = True
    referrer_types: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    sign_key: PrivateKey | None = attrs.field(default=None, eq=False, repr=False)
    registry_options: RegistryOptions | None = None
    jobs: int = 4
    on_event: Callable[[PushEvent], None] | None = attrs.field(default=None, eq=False)
    append: bool = False
    replace: bool = False
    drop_annotations: bool = False
    untag_sources: bool = False

    @property
    def push_options(self) -> PushOptions:
        """The push half of these options."""
        return PushOptions(self.registry_options or RegistryOptions(), self.jobs, self.dry_run, self.on_event)

    @property
    def walk(self) -> Walk:
        """[REMOTE-2] What to read of each source: attestations only when they are kept or
        moved, so ``--attestations drop`` never fetches them from a registry."""
        return Walk(
            self.platforms,
            self.attestations is not AttestationPolicy.DROP,
            referrers=self.referrers,
            referrer_types=self.referrer_types,
        )


@attrs.frozen
class CreateResult:
    """What :func:`create` built: the index document, the assembly, and where it went.

    ``images`` are in the order of ``assembly.manifests`` (the pairing ``to_json`` relies
    on); ``output`` is None when nothing was written (no ``-o``, or a dry run). ``failed``
    holds the repositories whose push failed [MSG-4] (a result with failures is only ever
    seen through :func:`partial_result`).
    """

    index: Document[ImageIndex]
    assembly: Assembly
    images: tuple[Image, ...]
    output: str | None
    bytes_written: int
    notes: tuple[str, ...]
    pushed: tuple[PushResult, ...] = ()
    failed: tuple[PushFailure, ...] = ()
    referrers: tuple[Referrer, ...] = ()
    untagged: tuple[UntagOutcome, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The result as ``--json`` prints it (and ``--metadata-file`` embeds it)."""
        index = self.index
        return {
            "digest": str(index.descriptor.digest),
            "mediaType": index.descriptor.media_type,
            "size": index.descriptor.size,
            "output": self.output,
            # "platform" stays the os/arch[/variant] string scripts already read; "platformObject"
            # is the image-spec platform object, for tools that compare its fields
            "manifests": [
                {
                    "platform": str(i.platform),
                    "platformObject": i.platform.to_json(),
                    "digest": str(m.descriptor.digest),
                    "source": i.source,
                }
                for i, m in zip(self.images, self.assembly.manifests, strict=True)
            ],
            "referrers": [r.to_json() for r in self.referrers],
            "pushed": [p.to_json() for p in self.pushed],
            # what `-q` prints: REGISTRY/REPO:TAG@DIGEST per tag written (REGISTRY/REPO@DIGEST for
            # a push by digest alone; none for a dry run, which writes nothing)
            "references": [
                f"{p.registry}/{p.repository}{t}@{p.root.digest}"
                for p in self.pushed
                if not p.dry_run
                for t in ([f":{tag}" for tag in p.tags] or [""])
            ],
            "errors": [f.to_json() for f in self.failed],
            "untagged": [u.to_json() for u in self.untagged],
        }

    def metadata(self, tags: Sequence[str]) -> dict[str, Any]:
        """``--metadata-file``: buildx's keys (``containerimage.*``, ``image.name``), then ours.

        buildx's names, so CI steps written for ``docker buildx build --metadata-file``
        (reading ``containerimage.digest``) work unchanged on ocimerge's output.
        """
        descriptor = self.index.descriptor
        return {
            "containerimage.digest": str(descriptor.digest),
            "containerimage.descriptor": {
                "mediaType": descriptor.media_type,
                "digest": str(descriptor.digest),
                "size": descriptor.size,
            },
            "image.name": ",".join(tags),
            "ocimerge": self.to_json(),
        }


@attrs.frozen
class PushSourceResult:
    """What :func:`push` sent: the root document as stored, and one result per repository.

    ``failed`` holds the repositories whose push failed [MSG-4] (seen only through
    :func:`partial_result`).
    """

    root: Descriptor
    images: tuple[Image, ...]
    pushed: tuple[PushResult, ...]
    notes: tuple[str, ...]
    failed: tuple[PushFailure, ...] = ()
    referrers: tuple[Referrer, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The result as ``push --json`` prints it."""
        return {
            "digest": str(self.root.digest),
            "mediaType": self.root.media_type,
            "size": self.root.size,
            # the same fields as create's entries: the platform as a string and as the object
            "manifests": [
                {
                    "platform": str(i.platform),
                    "platformObject": i.platform.to_json(),
                    "digest": str(i.digest),
                    "source": i.source,
                }
                for i in self.images
            ],
            "referrers": [r.to_json() for r in self.referrers],
            "pushed": [p.to_json() for p in self.pushed],
            "references": [
                f"{p.registry}/{p.repository}{t}@{p.root.digest}"
                for p in self.pushed
                if not p.dry_run
                for t in ([f":{tag}" for tag in p.tags] or [""])
            ],
            "errors": [f.to_json() for f in self.failed],
        }


def partial_result(error: BaseException) -> CreateResult | PushSourceResult | None:
    """[MSG-4] The whole result a failed :func:`create` or :func:`push` had reached, if any.

    When some targets of a run fail, the first failure is raised after every target was
    tried; this returns the result carried on it (``pushed`` for the targets that succeeded,
    ``failed`` for every one that did not). None for any other error.
    """
    found = getattr(error, _PARTIAL, None)
    return found if isinstance(found, CreateResult | PushSourceResult) else None


def _split(outcomes: Sequence[PushOutcome]) -> tuple[tuple[PushResult, ...], tuple[PushFailure, ...]]:
    """[MSG-4] The successes and the failures of a push, each in target order."""
    pushed = tuple(o for o in outcomes if isinstance(o, PushResult))
    return pushed, tuple(o for o in outcomes if isinstance(o, PushFailure))


def _raise_failures(result: CreateResult | PushSourceResult) -> None:
    """[MSG-4] Raise the first failure of ``result``, carrying ``result``; return when there is none."""
    if result.failed:
        error: OcimergeError = result.failed[0].error
        setattr(error, _PARTIAL, result)  # read back by partial_result
        raise error


def _settle(cls: type[Any], options: Any, settings: dict[str, Any]) -> Any:
    """``options`` with keyword ``settings`` folded in; an unknown name is a usage error."""
    base = options if options is not None else cls()
    try:
        return attrs.evolve(base, **settings)
    except TypeError as exc:
        raise UsageError(f"unknown option for {cls.__name__}: {exc}") from exc


@contextlib.contextmanager
def open_images(source: str | SourceSpec, registry_options: RegistryOptions | None = None) -> Iterator[ImageSet]:
    """Read the images one source spec selects; their blobs stay readable inside the block.

    The spec is parsed as on the command line ([SOURCE-2]); raises what opening and
    walking raise (``InputError`` subclasses, ``RegistryError``). The source, and any
    registry client it needed, stays open inside the block and is closed when it ends, so
    a blob must be read inside the block.

    >>> import ocimerge
    >>> with ocimerge.open_images("missing.tar") as images:  # doctest: +SKIP
    ...     print([str(i.platform) for i in images.images])
    """
    spec = as_spec(source)
    with RegistryPool(registry_options) as pool, open_source(spec, pool.get) as opened:
        yield load(spec, opened)


def _scope_credentials(
    options: RegistryOptions | None, specs: Sequence[SourceSpec], targets: Sequence[Reference]
) -> RegistryOptions | None:
    """[CRED-4] Explicit credentials belong to the targets' registries, else to the sources'."""
    if options is None or options.explicit_hosts is not None:
        return options
    hosts = {t.registry for t in targets} or {s.reference.registry for s in specs if s.reference is not None}
    return attrs.evolve(options, explicit_hosts=frozenset(hosts))


def _read_sources(
    specs: Sequence[SourceSpec], stack: contextlib.ExitStack, pool: RegistryPool, options: CreateOptions
) -> tuple[list[ImageSet], list[str], list[tuple[Reference, Digest]]]:
    """Read every source (they stay open until ``stack`` ends); returns what was read, notes,
    and each registry source given by tag with the digest it named ([TAG-6])."""
    loaded: list[ImageSet] = []
    notes: list[str] = []
    tagged: list[tuple[Reference, Digest]] = []
    for spec in specs:
        try:
            source = stack.enter_context(open_source(spec, pool.get))
            found = load(spec, source, options.walk)
        except SourceNotFoundError as exc:
            # [REMOTE-3] only a missing source is skippable; a corrupt one always fails
            if not options.ignore_missing:
                raise
            notes.append(f"skipped missing source {spec.text} (--ignore-missing): {exc}")
            continue
        notes.extend(f"{found.source}: {n}" for n in found.notes)
        if not found.images:
            notes.append(f"{found.source}: no wanted platform; skipped")
            continue
        # absent attestations are the walker's to note: it knows which image they belong to
        if absent := [d for d in found.absent if d.annotation(REFERENCE_TYPE) is None]:
            skipped = ", ".join(str(d.platform or d.digest.short) for d in absent)
            notes.append(f"{found.source}: not in the source, skipped: {skipped}")
        loaded.append(found)
        if (pair := _source_tag(spec, found)) is not None and pair not in tagged:
            tagged.append(pair)
    return loaded, notes, tagged


def _push_notes(pushed: Sequence[PushResult]) -> tuple[str, ...]:
    """The notes each repository's push left (resumed uploads, refused mounts), naming it."""
    return tuple(f"{p.registry}/{p.repository}: {note}" for p in pushed for note in p.notes)


def _carried(
    loaded: Sequence[ImageSet], images: Sequence[Image], assembly: Assembly
) -> tuple[list[Referrer], list[str]]:
    """[REFERRERS-10] The referrers that still apply to what the merge wrote, and notes on the rest.

    A referrer travels when its subject is a manifest the output holds unchanged (an image,
    a kept attestation) or a referrer that travels. [REFERRERS-12] Referrers of a source
    *index* do not: the merge makes a new index, so a note names them and the digest to
    sign instead. Attestations moved out of the index ([ATTEST-4]) come first, as referrers
    of their images, with the blobs their manifests name.
    """
    new_digest = assembly.index.descriptor.digest
    # the merged index itself: a source index the merge gives back byte for byte (one source,
    # nothing changed) keeps its signatures, since they name the very digest written
    kept: set[Digest] = {m.descriptor.digest for m in (*assembly.manifests, *assembly.attestations)} | {new_digest}
    blobs = {b.digest: b for i in images for a in i.attestations for b in a.blobs}
    out: list[Referrer] = []
    for document in assembly.referrers:
        manifest = document.value
        assert manifest.subject is not None  # [ATTEST-4] assemble gives every one its subject
        subject = manifest.subject.digest
        parts = tuple(blobs[d.digest] for d in (manifest.config, *manifest.layers) if d.digest in blobs)
        out.append(Referrer(subject, document, parts, FOUND_AS_ATTESTATION))
        kept.add(document.descriptor.digest)
    notes: list[str] = []
    for found in loaded:
        indexes = {d.descriptor.digest for d in found.indexes}
        if found.document is not None and not isinstance(found.document.value, ImageManifest):
            indexes.add(found.document.descriptor.digest)
        on_index: list[Referrer] = []
        dropped: list[Referrer] = []
        for referrer in found.referrers:
            if referrer.subject in kept:
                out.append(referrer)
                kept.add(referrer.digest)
            elif referrer.subject in indexes:
                on_index.append(referrer)
            else:
                dropped.append(referrer)
        if on_index:
            named = ", ".join(f"{r.digest.short} ({r.artifact_type})" for r in on_index)
            notes.append(
                f"{found.source}: {len(on_index)} referrer(s) of the source index do not apply to the merged "
                f"index and are left behind: {named}; sign the new index {new_digest}"
            )
        if dropped:
            named = ", ".join(f"{r.digest.short} ({r.artifact_type})" for r in dropped)
            notes.append(
                f"{found.source}: left behind {len(dropped)} referrer(s) whose subject the output does not "
                f"hold unchanged (rewritten or left out): {named}"
            )
    return out, notes


def _sign(assembly: Assembly, targets: Sequence[Reference], options: CreateOptions) -> Referrer:
    """[COSIGN-9] The cosign signature of the merged index; its payload names the first target's
    repository (cosign's ``docker-reference``), or none when there is no target (a layout has
    no repository; cosign's verification does not compare the identity)."""
    assert options.sign_key is not None
    name = f"{targets[0].registry}/{targets[0].repository}" if targets else ""
    return make_signature(assembly.index.descriptor, name, options.sign_key)


def _children(images: Sequence[Image]) -> list[Child]:
    """Images reduced to what ``model.assemble`` needs, no I/O."""
    return [
        Child(
            source=i.source,
            manifest=i.manifest,
            platform=i.platform,
            attestations=tuple((a.entry, a.manifest) for a in i.attestations),
            entry_annotations=i.entry_annotations,
            labels=i.config.value.labels,
        )
        for i in images
    ]


def _assemble(images: Sequence[Image], options: CreateOptions, base: Base | None) -> Assembly:
    """The pure assembly step over ``images`` (``base`` leading ones from an appended tag)."""
    return assemble(
        _children(images),
        format=options.format,
        attestations=options.attestations,
        annotations=options.annotations,
        annotations_from_labels=options.annotations_from_labels,
        base=base,
        drop_annotations=options.drop_annotations,
    )


def _check_append(options: CreateOptions, targets: Sequence[Reference]) -> None:
    """[INDEX-9] [CONVERT-2] The flags that only make sense together."""
    if options.replace and not options.append:
        raise UsageError("--replace goes with --append: it replaces an entry of the index a tag already names")
    if options.append and not targets:
        raise UsageError("--append needs -t REGISTRY/REPO:TAG: it adds to the index that tag names now")
    if options.untag_sources and not targets:
        raise UsageError("--untag-sources needs -t REGISTRY/REPO:TAG: source tags go once the merged tag holds them")
    if options.drop_annotations and options.format is not IndexFormat.DOCKER:
        raise UsageError("--drop-annotations goes with --format docker: an OCI index carries every annotation")
    if options.drop_annotations and (options.annotations or options.annotations_from_labels):
        asked = f"--annotation {options.annotations[0].key}" if options.annotations else "--annotations-from-labels"
        raise UsageError(
            f"--drop-annotations and {asked} disagree: a Docker list cannot carry the annotation asked for; "
            "drop one of the two, or use --format oci"
        )


def _read_base(
    target: Reference, stack: contextlib.ExitStack, pool: RegistryPool, options: CreateOptions
) -> tuple[ImageSet | None, list[str]]:
    """[INDEX-9] What ``target`` names now, read as a ``docker://`` source is (every platform:
    ``--platform`` filters the new sources), or None with a note when it does not exist yet.

    Only a missing root means "not yet": a child the tag names but the registry lacks fails
    as it would for any source, since appending would silently drop it.
    """
    spec = SourceSpec(text=str(target), path=str(target), kind=SourceKind.REGISTRY, reference=target)
    try:
        source = stack.enter_context(open_source(spec, pool.get))
    except SourceNotFoundError:
        return None, [f"{target} does not exist yet; creating it (--append)"]
    found = load(spec, source, attrs.evolve(options.walk, platforms=()))
    if left := _uncarried(found, keep_attestations=options.walk.attestations):
        listed = ", ".join(f"{e.digest.short} ({e.media_type})" for e in left[:5])
        more = f" and {len(left) - 5} more" if len(left) > 5 else ""
        raise InputError(
            f"{target} holds entries --append cannot carry into the new index: {listed}{more} "
            "(nested indexes, artifacts, unknown types); merge without --append, listing its images "
            "as sources, or remove those entries first"
        )
    notes = [f"{found.source}: {n}" for n in found.notes]
    if not options.walk.attestations and any(_attestation_entries(found)):
        notes.append(f"{target}: its attestations are dropped (--attestations drop)")
    return found, notes


def _format_change(base: ImageSet | None, assembly: Assembly, targets: Sequence[Reference]) -> list[str]:
    """[INDEX-9] A note when an append turns the tag's Docker manifest list into an OCI index."""
    if base is None or base.document is None or base.document.descriptor.media_type != mt.DOCKER_MANIFEST_LIST:
        return []
    if assembly.index.descriptor.media_type == mt.DOCKER_MANIFEST_LIST:
        return []
    return [
        f"{targets[0]} was a Docker manifest list; the new index is an OCI index (an image added is OCI, "
        "or annotations ask for it); pass --format docker to keep a Docker list"
    ]


def _attestation_entries(found: ImageSet) -> list[Descriptor]:
    """The attestation entries of ``found``'s root index (none for a single manifest)."""
    root = found.document.value if found.document is not None else None
    return [e for e in root.manifests if is_attestation(e)] if isinstance(root, ImageIndex) else []


def _uncarried(found: ImageSet, *, keep_attestations: bool) -> list[Descriptor]:
    """[INDEX-9] Entries of the tag's index that an append would lose: neither an image read
    nor one of its attestations (attestations are let go when they are being dropped anyway).

    The walk flattens nested indexes and skips artifacts with only a note; an append must keep
    every entry the tag had, so those are refused rather than silently left out.
    """
    root = found.document.value if found.document is not None else None
    if not isinstance(root, ImageIndex):
        return []
    kept = {i.digest for i in found.images} | {a.entry.digest for i in found.images for a in i.attestations}
    return [e for e in root.manifests if e.digest not in kept and (keep_attestations or not is_attestation(e))]


def _appended(
    base: ImageSet | None, images: Sequence[Image], name: str, options: CreateOptions
) -> tuple[list[Image], Base | None, tuple[str, ...]]:
    """[INDEX-9] The images to assemble: the tag's first, then the new ones (see ``rebase``)."""
    if base is None:
        return list(images), None, ()
    every = [*base.images, *images]
    children = _children(every)
    root = base.document.value if base.document is not None else None
    plan = rebase(
        children[: len(base.images)],
        children[len(base.images) :],
        name=name,
        annotations=root.annotations if isinstance(root, ImageIndex) else (),
        replace=options.replace,
    )
    return [every[i] for i in plan.order], plan.base, plan.notes


def create(
    sources: Sequence[str | SourceSpec],
    output: str | None = None,
    *,
    tags: Sequence[str] = (),
    options: CreateOptions | None = None,
    **settings: Any,
) -> CreateResult:
    """Merge the images of ``sources`` into one index; write it (``output``), push it (``tags``), or both.

    Sources are local layouts and archives or registry references (``docker://REF``, or a
    reference whose first part is a registry host), mixed freely; an index source is
    flattened into its images. ``output`` ending in ``.tar`` (or prefixed ``oci-archive:``)
    is written as an archive, otherwise as a directory. ``tags`` (``REGISTRY/REPO:TAG``) are
    pushed to, blobs first and tags last. Settings come as ``options`` or as keywords named
    after its fields (``create(srcs, "out.tar", format=IndexFormat.OCI)``).
    With ``append`` the index the first tag names now comes first ([INDEX-9]).

    Raises ``UsageError`` for nothing to do or no image left, and the ``InputError``,
    ``OutputError`` and ``RegistryError`` subclasses of what fails. Every source stays
    open until the output is written and the push is done; the output appears atomically
    or not at all ([SINK-1]), and a tag is written only after everything it names ([PUSH-2]).
    [MSG-4] A target whose push fails does not stop the others: once every target was tried,
    the first failure is raised, and :func:`partial_result` of it is the whole result.
    """
    opts: CreateOptions = _settle(CreateOptions, options, settings)
    if not sources:
        raise UsageError("no sources given")
    if output is None and not tags and not opts.dry_run:
        raise UsageError("nothing to do: pass -o PATH, -t REGISTRY/REPO:TAG, or --dry-run")
    # parse every argument before opening anything: a typo fails before any download
    targets = tuple(parse_target(t) for t in tags)
    _check_append(opts, targets)
    specs = [as_spec(s) for s in sources]
    opts = attrs.evolve(opts, registry_options=_scope_credentials(opts.registry_options, specs, targets))
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(RegistryPool(opts.registry_options))
        base, notes = _read_base(targets[0], stack, pool, opts) if opts.append else (None, [])
        loaded, source_notes, tagged = _read_sources(specs, stack, pool, opts)
        notes.extend(source_notes)
        images = [i for found in loaded for i in found.images]
        if not images:
            raise UsageError("no images left to merge (every source was skipped)")
        images, rebased, append_notes = _appended(base, images, str(targets[0]) if targets else "", opts)
        notes.extend(append_notes)
        if base is not None:
            loaded.insert(0, base)  # [REFERRERS-10] the kept images' referrers travel as a source's do
        # [CONVERT-1] a Docker list cannot carry uncompressed layers, hence the implication;
        # [COMPRESS-2] the spool lives on the stack because the gzipped layers are read
        # again when the publication is written and pushed
        if opts.compress or opts.format is IndexFormat.DOCKER:
            spool = stack.enter_context(tempfile.TemporaryDirectory(prefix="ocimerge-gzip-"))
            images = [gzip_image(i, spool) for i in images]
        assembly = _assemble(images, opts, rebased)
        notes.extend(_format_change(base, assembly, targets))
        referrers, carry_notes = _carried(loaded, images, assembly)
        notes.extend(carry_notes)
        if opts.sign_key is not None:
            signature = _sign(assembly, targets, opts)
            referrers.append(signature)
            done = "would be attached" if opts.dry_run else "attached"
            notes.append(
                f"signed the merged index {assembly.index.descriptor.digest} in cosign's format: "
                f"signature {signature.digest.short}, {done} as a referrer and tagged {signature.tag}"
            )
        publication = Publication.of_assembly(assembly, images, referrers)
        # write locally first: it is atomic and private, while a push is visible once tagged
        written = None
        if output is not None and not opts.dry_run:
            sink = parse_output(output, tag_name=opts.tag_name, force=opts.force, on_event=opts.on_event)
            written = sink.publish(publication)
            if referrers:
                # [CARRY-6] index.json lists them beside the image: a reader that takes "the one
                # entry" (skopeo's oci:DIR) must now be given the image's name
                transport = "oci-archive" if sink.archive else "oci"
                notes.append(
                    f"{len(referrers)} referrer(s) stored beside the image in {output}; other tools name "
                    f"the image by its tag, e.g. skopeo's {transport}:{written.path}:{opts.tag_name}"
                )
        # [INDEX-9] an appended tag is written only while it names what was read
        guard = {targets[0]: base.root_document.descriptor.digest if base is not None else None} if opts.append else {}
        outcomes = RegistrySink(targets, pool, opts.push_options, guard).publish(publication) if targets else ()
        pushed, failed = _split(outcomes)
        result = CreateResult(
            index=assembly.index,
            assembly=assembly,
            images=tuple(images),
            output=written.path if isinstance(written, LayoutResult) else None,
            bytes_written=written.bytes_written if written is not None else 0,
            notes=(*notes, *assembly.notes, *_push_notes(pushed)),
            pushed=pushed,
            failed=failed,
            referrers=tuple(referrers),
        )
        _raise_failures(result)
        if opts.untag_sources:
            result = _untag_sources(pool, tagged, result, dry_run=opts.dry_run)
        return result


def _source_tag(spec: SourceSpec, found: ImageSet) -> tuple[Reference, Digest] | None:
    """[TAG-6] A registry source, with the digest read for it; None for a local source.

    A source given by tag is its tag and the digest it named when read; one pinned as
    ``TAG@DIGEST`` is its tag and that digest (removed only while the tag names it); one
    given by digest alone is kept as it is, for ``untag_sources`` to report as no tag.
    """
    ref = spec.reference
    if ref is None:
        return None
    digest = found.root_document.descriptor.digest
    return (attrs.evolve(ref, digest=None), digest) if ref.tag else (ref, digest)


def _untag_sources(
    pool: RegistryPool, sources: Sequence[tuple[Reference, Digest]], result: CreateResult, *, dry_run: bool
) -> CreateResult:
    """[TAG-6] ``--untag-sources`` after a push that reached every target: the outcomes as notes."""
    merged = [(Reference(p.registry, p.repository, tag=t), p.root.digest) for p in result.pushed for t in p.tags]
    if not sources:
        note = "--untag-sources: no source is a registry tag; nothing to remove"
        return attrs.evolve(result, notes=(*result.notes, note))
    if dry_run:
        targets = {str(ref) for ref, _ in merged}
        notes = tuple(
            f"would remove the source tag {ref} (--untag-sources)"
            for ref, _ in sources
            if ref.digest is None and str(ref) not in targets
        )
        return attrs.evolve(result, notes=(*result.notes, *notes))
    try:
        outcomes = untag_sources(pool, sources, merged)
    except OcimergeError as exc:
        # [MSG-4] the merged tags are published whatever happened to the source tags: the
        # result (references, --json, the metadata file) is still reported, then the error
        setattr(exc, _PARTIAL, result)
        raise
    return attrs.evolve(result, notes=(*result.notes, *(o.note for o in outcomes)), untagged=outcomes)


def push(  # noqa: PLR0913 - the options value, and the walk's and the signature check's settings by name
    source: str | SourceSpec,
    tags: Sequence[str],
    *,
    options: PushOptions | None = None,
    registry_options: RegistryOptions | None = None,
    referrers: bool = True,
    referrer_types: Sequence[str] = (),
    require_signature: PublicKey | None = None,
    key_name: str = "the key",
    **settings: Any,
) -> PushSourceResult:
    """Upload a layout, an archive or a registry image as it is, digests byte for byte.

    The air-gapped half of the job: an archive written earlier by :func:`create` (or by buildx,
    skopeo, docker save) goes into a registry unchanged. Children the source names but does not
    hold must already be in the target repository, or nothing is tagged. A registry source
    (``docker://REF``) is copied the same way: mounted within its registry, streamed across.
    Settings come as ``options`` or as keywords named after its fields (``jobs=8``);
    ``registry_options`` is the ``registry`` field under the name :func:`create` uses.
    ``referrers`` (default True) carries the source's signatures, SBOMs and other referrers
    after their subjects ([REFERRERS-10]); ``referrer_types`` keeps only those artifact types.
    ``require_signature`` is a public key: every image must carry a valid cosign signature
    by it ([SIGNED-2]), or :class:`SignatureError` is raised before anything is uploaded; with
    ``referrer_types``, cosign's signatures are looked for (and carried) as well.

    Raises ``UsageError`` without tags (or for a digest target, [PUSH-4]), and what reading
    the source or the registry raises. Every stored digest is preserved ([SINK-6]): nothing
    is re-encoded, so the pushed root has the digest the source's root has.
    [MSG-4] Every target is tried even when one fails; then the first failure is raised, and
    :func:`partial_result` of it is the whole result (``pushed`` and ``failed``).
    """
    if registry_options is not None:
        settings["registry"] = registry_options
    opts: PushOptions = _settle(PushOptions, options, settings)
    if not tags:
        raise UsageError("no target given: ocimerge push SRC REGISTRY/REPO:TAG")
    targets = tuple(parse_target(t) for t in tags)
    scoped = _scope_credentials(opts.registry, [], targets)
    opts = attrs.evolve(opts, registry=scoped or RegistryOptions())
    walk = signature_walk(referrers, referrer_types, signed=require_signature is not None)
    spec = as_spec(source)
    with RegistryPool(opts.registry) as pool, open_source(spec, pool.get) as opened:
        loaded = load(spec, opened, walk)
        if require_signature is not None:
            require_signed(loaded, require_signature, key_name)  # before any blob moves
        pushed, failed = _split(RegistrySink(targets, pool, opts).publish(Publication.of_image_set(loaded)))
        notes = (*loaded.notes, *_push_notes(pushed))
        result = PushSourceResult(
            loaded.root_document.descriptor, loaded.images, pushed, notes, failed, loaded.referrers
        )
        _raise_failures(result)
        return result
