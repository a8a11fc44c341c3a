"""Assembly: N single-platform images in, one OCI image index or Docker manifest list out.

A pure, total function ([INDEX-1] .. [INDEX-9], [ATTEST-1] .. [ATTEST-4], [CONVERT-1] ..
[CONVERT-3]): no I/O, the same inputs in any order give the same bytes and digest.

It is the heart of ``create``: sources have already been read and verified into
:class:`Child` values, and sinks will write what :class:`Assembly` returns. Keeping it free
of I/O is what lets the spec-notes examples pin exact index bytes and digests ([INDEX-2]),
and makes every refusal ([INDEX-3], [INDEX-4], [CONVERT-1]) happen before anything is written
or pushed.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence

import attrs

from ocimerge.errors import ConversionError, ModelError, PlatformConflictError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.annotations import ATTESTATION_ARTIFACT_TYPE, REFERENCE_DIGEST
from ocimerge.model.descriptor import Annotations, Descriptor, to_annotations
from ocimerge.model.manifest import Document, ImageIndex, ImageManifest
from ocimerge.model.platform import Platform
from ocimerge.model.referrers import with_subject

__all__ = [
    "Annotation",
    "Assembly",
    "AttestationPolicy",
    "Base",
    "Child",
    "IndexFormat",
    "Rebased",
    "assemble",
    "docker_losses",
    "rebase",
    "to_docker_manifest",
]


class IndexFormat(enum.Enum):
    """[INDEX-4] The output document: decided from the inputs (AUTO), or forced.

    AUTO keeps Docker inputs Docker, as buildx does, so tooling that expects a manifest list
    for Docker images gets one; anything a list cannot carry makes it an OCI index.
    """

    AUTO = "auto"
    OCI = "oci"
    DOCKER = "docker"


class AttestationPolicy(enum.Enum):
    """[ATTEST-3] Where attestation manifests go: listed in the index (KEEP), nowhere (DROP),
    or out of the index, attached to their images as OCI referrers (REFERRERS, [ATTEST-4]).

    DROP and REFERRERS exist because listed attestations force an OCI index ([INDEX-4]), and
    some registry UIs list the ``unknown/unknown`` entries as if they were images.
    """

    KEEP = "keep"
    DROP = "drop"
    REFERRERS = "referrers"


# [INDEX-6] buildx's spelling: KEY=VALUE, split at the first "=", then the key at its first ":"
# into a scope (optionally with a [PLATFORM]) and the key. A bracketed platform may itself
# hold ":" (windows/amd64:10.0.17763, [PLATFORM-7]), so the scope is matched before the split.
_SCOPED = re.compile(r"(?P<scope>[a-z-]+)(?:\[(?P<platform>[^\]]*)\])?:(?P<key>.*)", re.S)
#: [INDEX-6] The scopes ``create`` applies, as buildx's ``imagetools create`` does.
_SCOPES = ("index", "manifest-descriptor")
#: [INDEX-6] Scopes buildx knows that have no meaning for ``create``, and why.
_INAPPLICABLE = {
    "manifest": "it annotates the image manifests, which create lists as they are (rewriting them "
    "would change their digests); use manifest-descriptor: to annotate their index entries",
    "index-descriptor": "it annotates the descriptor of an index inside another index, and create "
    "writes a top-level index",
}
_VALID = "index:, manifest-descriptor:, manifest-descriptor[PLATFORM]: (or none, for the index)"


@attrs.frozen
class Annotation:
    """An annotation to add: on the index, or on its entries (all, or one platform's).

    Spelled as buildx spells them: ``KEY=VALUE`` and ``index:KEY=VALUE`` for the index,
    ``manifest-descriptor[:|[PLATFORM]:]KEY=VALUE`` for entries.

    >>> Annotation.parse("manifest-descriptor[linux/arm64]:org.example=1").platform
    Platform(os='linux', architecture='arm64', variant='', os_version='', os_features=(), features=())
    """

    key: str
    value: str
    on_index: bool = True
    platform: Platform | None = None

    @classmethod
    def parse(cls, text: str) -> Annotation:
        """[INDEX-6] Parse one ``--annotation`` argument.

        An unscoped ``KEY=VALUE`` is for the index (buildx's default). Raises
        :class:`UsageError` for a missing ``=``, an empty key, a scope other than ``index`` or
        ``manifest-descriptor`` (buildx's ``manifest`` and ``index-descriptor`` are named as
        not applying to create; anything else before a ``:`` in the key is an unknown scope),
        a platform on an ``index:`` annotation (the index has one set of annotations), or a
        bad platform.
        """
        key, eq, value = text.partition("=")
        if not eq:
            raise UsageError(f"invalid annotation {text!r}: expected [SCOPE:]KEY=VALUE; scopes: {_VALID}")
        scope, platform_text = "index", None
        scoped = _SCOPED.fullmatch(key)
        if scoped is not None:
            scope, platform_text, key = scoped["scope"], scoped["platform"], scoped["key"]
        elif ":" in key:
            # [INDEX-6] buildx reads whatever precedes the first ":" as a scope; taking it as a
            # key instead would silently move a mistyped scope onto the index.
            if "," in key.partition(":")[0]:
                raise UsageError(f"invalid annotation {text!r}: give one scope per --annotation (repeat the flag)")
            raise UsageError(
                f"invalid annotation {text!r}: {key.partition(':')[0]!r} is not an annotation scope; "
                f"valid scopes: {_VALID}"
            )
        if scope in _INAPPLICABLE:
            raise UsageError(f"invalid annotation {text!r}: {scope}: does not apply to create: {_INAPPLICABLE[scope]}")
        if scope not in _SCOPES:
            raise UsageError(f"invalid annotation {text!r}: unknown scope {scope + ':'!r}; valid scopes: {_VALID}")
        if not key.strip():
            raise UsageError(f"invalid annotation {text!r}: the key is empty")
        platform = Platform.parse(platform_text) if platform_text is not None else None
        if scope == "index" and platform is not None:
            raise UsageError(f"invalid annotation {text!r}: a platform applies to entries only")
        return cls(key, value, scope == "index", platform)


@attrs.frozen
class Child:
    """One image as assembly sees it: its manifest document, platform and attestations.

    ``source`` is the argument the image came from, used only to name it in messages;
    ``platform`` is the config's ([PLATFORM-4]), not the manifest's; each attestation is the
    entry it was read from (its annotations and platform are kept, [ATTEST-3]) and its
    manifest document. ``entry_annotations`` are those of the entry a source index listed
    the image under, kept on its entry, and ``labels`` the config's labels, copied onto the
    index when asked ([INDEX-7]). Sources build these after verifying every byte ([VERIFY-1]).
    """

    source: str
    manifest: Document[ImageManifest]
    platform: Platform
    attestations: tuple[tuple[Descriptor, Document[ImageManifest]], ...] = ()
    entry_annotations: Annotations = attrs.field(default=(), converter=to_annotations)
    labels: Annotations = attrs.field(default=(), converter=to_annotations)


@attrs.frozen
class Assembly:
    """The result: the index document, and each child's manifest as the index names it.

    ``manifests[i]`` is the (possibly converted) manifest of ``children[i]`` of the call;
    ``attestations`` are the attestation manifests the index lists; ``referrers`` are the
    attestation manifests the index does not list, each one's ``subject`` naming its image
    manifest as the index lists it ([ATTEST-4]), in the index's image order, then by the
    attestation's digest; ``notes`` say what was dropped or rewritten and why ([ATTEST-2],
    [ATTEST-4]), for the command line to print. A sink must write every document here: the
    index names the manifests and attestations, and each referrer names its subject.
    """

    index: Document[ImageIndex]
    manifests: tuple[Document[ImageManifest], ...]
    attestations: tuple[Document[ImageManifest], ...]
    notes: tuple[str, ...] = ()
    referrers: tuple[Document[ImageManifest], ...] = ()


# [CONVERT-1] The layer types with a Docker form: gzip (plain and foreign) only. Docker schema 2
# defines no zstd type, and uncompressed layers are refused earlier with the --compress remedy.
_TO_DOCKER_LAYER = {
    mt.OCI_LAYER_GZIP: mt.DOCKER_LAYER_GZIP,
    mt.DOCKER_LAYER_GZIP: mt.DOCKER_LAYER_GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": mt.DOCKER_FOREIGN_LAYER_GZIP,
    mt.DOCKER_FOREIGN_LAYER_GZIP: mt.DOCKER_FOREIGN_LAYER_GZIP,
}
#: [CONVERT-2] How many annotation keys a refusal names before "and N more".
_CAP = 5


def _named(keys: Sequence[str], cap: int = _CAP) -> str:
    """``keys`` as a message lists them: the first ``cap``, then how many more."""
    shown = ", ".join(keys[:cap])
    return shown if len(keys) <= cap else f"{shown} and {len(keys) - cap} more"


def docker_losses(manifest: ImageManifest) -> tuple[str, ...]:
    """[CONVERT-2] The annotations a Docker schema 2 form of ``manifest`` would lose, as named
    in messages: the manifest's keys, then ``config:KEY``, then ``layer N:KEY``, each sorted."""
    lost = [k for k, _ in manifest.annotations]
    lost += sorted(f"config:{k}" for k, _ in manifest.config.annotations)
    for i, layer in enumerate(manifest.layers):
        lost += sorted(f"layer {i}:{k}" for k, _ in layer.annotations)
    return tuple(lost)


def _unconvertible(manifest: ImageManifest) -> str:
    """[CONVERT-2] What makes ``manifest`` something other than an image a Docker manifest
    can describe ("" for nothing): a ``subject`` (a referrer), an ``artifactType`` (an artifact)."""
    what = [
        name
        for name, present in (("a subject", manifest.subject), ("an artifactType", manifest.artifact_type))
        if present
    ]
    return " and ".join(what)


def to_docker_manifest(
    doc: Document[ImageManifest], source: str, *, drop_annotations: bool = False
) -> Document[ImageManifest]:
    """[CONVERT-1] The Docker schema 2 form of an OCI manifest, when nothing would be lost.

    Docker manifests are returned unchanged (same bytes). An OCI manifest converts only when
    its config is an image config and every layer is gzip. ``subject`` and ``artifactType``
    have no Docker form: their presence is a :class:`ConversionError` naming them. Manifest,
    config and layer annotations have none either: a :class:`ConversionError` naming their
    keys ([CONVERT-2]), unless ``drop_annotations``, when they are left out (see
    :func:`docker_losses` for what was dropped). ``source`` names the image in messages. The
    result is a new document (new digest), so attestations naming the old one no longer apply
    ([ATTEST-2]).
    """
    manifest = doc.value
    if manifest.is_docker:
        return doc  # [CONVERT-3] same bytes, same digest: nothing to re-author
    where = f"{source}: manifest {doc.descriptor.digest.short}"
    if unconvertible := _unconvertible(manifest):
        # [CONVERT-2] not droppable: without them the manifest would be another thing
        raise ConversionError(
            f"{where}: has {unconvertible}, which a Docker manifest cannot carry (they make it a referrer "
            "or an artifact, not an image); use --format oci"
        )
    if (lost := docker_losses(manifest)) and not drop_annotations:
        raise ConversionError(
            f"{where}: has annotations a Docker manifest cannot carry: {_named(lost)}; pass --drop-annotations "
            "to drop them (the manifest's digest changes) or use --format oci"
        )
    if manifest.config.media_type not in (mt.OCI_CONFIG, mt.DOCKER_CONFIG):
        raise ConversionError(f"{where}: config type {manifest.config.media_type} has no Docker form")
    layers = tuple(_docker_layer(layer, i, where) for i, layer in enumerate(manifest.layers))
    # [CONVERT-2] eStargz and similar tools keep their index in layer annotations: only an
    # explicit --drop-annotations turns such an image into a plain gzip one
    config = attrs.evolve(manifest.config, media_type=mt.DOCKER_CONFIG, annotations=())
    # Digests and sizes are unchanged: the blobs are the same bytes under another type name.
    converted = ImageManifest(config=config, layers=layers, media_type=mt.DOCKER_MANIFEST)
    return Document.author(converted)


def _docker_layer(layer: Descriptor, i: int, where: str) -> Descriptor:
    """[CONVERT-1] ``layer`` under its Docker type, without annotations (checked by the caller)."""
    compression = mt.layer_compression(layer.media_type)
    if compression is mt.Compression.NONE:
        raise ConversionError(
            f"{where}: layer {i} is uncompressed, which a Docker manifest list cannot "
            "carry; add --compress gzip or use --format oci"
        )
    if compression is mt.Compression.ZSTD:
        raise ConversionError(
            f"{where}: layer {i} is zstd-compressed, which Docker schema 2 does not define; use --format oci"
        )
    if layer.media_type not in _TO_DOCKER_LAYER:
        raise ConversionError(f"{where}: layer {i} type {layer.media_type} has no Docker form")
    return attrs.evolve(layer, media_type=_TO_DOCKER_LAYER[layer.media_type], annotations=())


#: [INDEX-8] containers/image's entry annotation for an instance whose layers are zstd: its
#: clients prefer such an instance where they can read it, and others skip to the gzip one.
ZSTD_ANNOTATION = "io.github.containers.compression.zstd"


def compression_rank(manifest: ImageManifest) -> int:
    """[INDEX-8] 0 for an image every client can pull (gzip or uncompressed layers), 1 for zstd.

    Entries of one platform are ordered by it, most compatible first, because docker and
    containerd take the first entry that matches their platform.
    """
    return int(any(mt.layer_compression(layer.media_type) is mt.Compression.ZSTD for layer in manifest.layers))


def _is_compression_variant(child: Child, other: Child) -> bool:
    """[INDEX-8] Same config (so the same diff IDs: the same files), as many layers, and one
    zstd while the other is not: one image stored twice, not two images of one platform."""
    a, b = child.manifest.value, other.manifest.value
    return (
        a.config.digest == b.config.digest
        and len(a.layers) == len(b.layers)
        and compression_rank(a) != compression_rank(b)
    )


def _check_platforms(children: Sequence[Child]) -> frozenset[int]:
    """[INDEX-3] Every child has a real platform, and no two share a normalised one, unless
    they are compression variants of one image ([INDEX-8]).

    Returns the positions of the children that have a compression variant beside them.
    """
    seen: dict[Platform, list[int]] = {}
    for i, child in enumerate(children):
        if child.platform.is_unknown or not child.platform.os or not child.platform.architecture:
            raise ModelError(
                f"{child.source}: image {child.manifest.descriptor.digest.short} has no platform "
                f"({child.platform}); it cannot be an entry of a multi-platform index"
            )
        # Keyed on the normalised platform ([PLATFORM-3]): linux/arm64 and linux/arm64/v8 are
        # a conflict, never two entries of which clients would silently pick the first.
        group = seen.setdefault(child.platform, [])
        for j in group:
            other = children[j]
            if other.manifest.descriptor.digest == child.manifest.descriptor.digest:
                raise PlatformConflictError(
                    f"the same image {child.manifest.descriptor.digest.short} ({child.platform.normalized()}) "
                    f"comes from {other.source} and from {child.source}; give it once"
                )
            if not _is_compression_variant(child, other):
                raise PlatformConflictError(
                    f"two sources are {child.platform.normalized()}: {other.source} "
                    f"({other.manifest.descriptor.digest.short}) and {child.source} "
                    f"({child.manifest.descriptor.digest.short}); give one image per platform "
                    "(or one image in gzip and in zstd: the same config, the layers compressed two ways)"
                )
        group.append(i)
    return frozenset(i for group in seen.values() if len(group) > 1 for i in group)


def _wants_docker(format: IndexFormat, children: Sequence[Child], keep_attestations: bool, annotated: str) -> bool:
    """[INDEX-4] AUTO picks a Docker list only when every child is Docker and nothing is lost.

    ``annotated`` names what asks for annotations ("" for nothing, and for annotations that
    ``--drop-annotations`` drops, [CONVERT-2]). A forced DOCKER refuses
    (:class:`ConversionError`) what a manifest list cannot carry rather than dropping it;
    OCI children are then converted by :func:`to_docker_manifest`.
    """
    has_attestations = keep_attestations and any(c.attestations for c in children)
    if format is IndexFormat.OCI:
        return False
    if format is IndexFormat.DOCKER:
        if annotated:
            raise ConversionError(
                f"a Docker manifest list cannot carry annotations; drop {annotated}, pass --drop-annotations "
                "to drop them, or use --format oci"
            )
        if has_attestations:
            raise ConversionError(
                "a Docker manifest list cannot carry attestations; use --attestations referrers, "
                "--attestations drop or --format oci"
            )
        return True
    return not annotated and not has_attestations and all(c.manifest.value.is_docker for c in children)


def _as_referrer(
    entry: Descriptor, doc: Document[ImageManifest], image: Document[ImageManifest], source: str, notes: list[str]
) -> Document[ImageManifest] | None:
    """[ATTEST-4] The attestation ``doc`` as a referrer of ``image``, or None (with a note).

    Kept only while it names ``image`` as the index lists it: by its entry's
    ``vnd.docker.reference.digest`` ([ATTEST-2]) and, when it has one, by its own ``subject``
    (a subject naming another manifest is an attestation of something else, whatever its
    annotation says). One without a subject is re-authored with one, and a note gives the old
    and new digests, since tools that look for the old digest will not find it.
    """
    digest = image.descriptor.digest
    what = f"attestation {entry.digest.short} of {source}"
    if entry.annotation(REFERENCE_DIGEST) != str(digest):
        notes.append(f"dropped {what}: its image manifest was rewritten")
        return None
    subject = doc.value.subject
    if subject is not None and subject.digest != digest:
        notes.append(f"dropped {what}: its subject {subject.digest.short} is not its image {digest.short}")
        return None
    if doc.value.is_docker:
        notes.append(f"dropped {what}: a Docker schema 2 manifest cannot carry a subject")
        return None
    referrer = with_subject(doc, image.descriptor, ATTESTATION_ARTIFACT_TYPE)
    if referrer is not doc:
        notes.append(
            f"rewrote {what} as referrer {referrer.descriptor.digest.short} of {digest.short}: it had no subject"
        )
    return referrer


def _entry_annotations(
    child: Child, annotations: Iterable[Annotation], *, kept: bool = True, variant: bool = False
) -> dict[str, str]:
    """[INDEX-6] [INDEX-7] [INDEX-8] The entry annotations for ``child``: containers/image's
    zstd marker when it is the zstd ``variant`` of an image, its source entry's (when ``kept``),
    then the unscoped ones given, then its platform's, each later one winning.

    The platform is matched ([PLATFORM-7]): ``manifest-descriptor[windows/amd64]:`` annotates
    the Windows entries whatever their ``os.version``."""
    out = {ZSTD_ANNOTATION: "true"} if variant and compression_rank(child.manifest.value) else {}
    if kept:
        out.update(child.entry_annotations)
    out.update(
        (a.key, a.value)
        for a in annotations
        if not a.on_index and (a.platform is None or a.platform.matches(child.platform))
    )
    return out


def _annotated(
    children: Sequence[Child], format: IndexFormat, annotations: Sequence[Annotation], copied: bool, base: Base | None
) -> str:
    """What asks the index for annotations, named so a forced Docker list can say what to drop.

    [INDEX-7] Kept entry annotations keep AUTO an OCI index (nothing is lost), but nobody asked
    for them: a forced Docker list drops them with a note instead of refusing. [INDEX-9] The
    annotations of the index appended to were asked for when it was made: they are refused.
    """
    if annotations:
        return "--annotation"
    if copied:
        return "--annotations-from-labels"
    if base is not None and base.annotations:
        return f"the index annotations of {base.name}"
    if format is not IndexFormat.DOCKER and any(c.entry_annotations for c in children):
        return "the source indexes' entry annotations"
    return ""


#: [INDEX-7] The labels ``annotations_from_labels`` copies: the image-spec's pre-defined keys,
#: which registries (GHCR, Docker Hub, Quay) show for a multi-platform image only on its index.
LABEL_PREFIX = "org.opencontainers.image."


def _from_labels(children: Sequence[Child], from_labels: bool) -> dict[str, str]:
    """[INDEX-7] The ``org.opencontainers.image.*`` labels every child has with one value
    (when ``from_labels``), to copy onto the index."""
    if not from_labels:
        return {}
    shared = set(children[0].labels)
    for child in children[1:]:
        shared &= set(child.labels)
    return dict(sorted((k, v) for k, v in shared if k.startswith(LABEL_PREFIX)))


@attrs.frozen
class Base:
    """[INDEX-9] The index an append starts from, as :func:`assemble` takes it.

    ``name`` is the tag it was read from (for messages), ``count`` how many leading children
    are its images (they keep their order, first), ``annotations`` its index annotations,
    carried onto the new index (given ``index:`` annotations win).
    """

    name: str
    count: int
    annotations: Annotations = attrs.field(default=(), converter=to_annotations)


@attrs.frozen
class Rebased:
    """[INDEX-9] What :func:`rebase` decided: the children to assemble, as positions into
    ``[*existing, *added]`` in order, the :class:`Base` to pass to :func:`assemble`, and notes
    (what was replaced, what was already there)."""

    order: tuple[int, ...]
    base: Base
    notes: tuple[str, ...] = ()


def _same_entry(old: Child, new: Child) -> bool:
    """[INDEX-3] Whether ``new`` would be a second image of ``old``'s platform (not its
    compression variant, [INDEX-8])."""
    return old.platform == new.platform and not _is_compression_variant(old, new)


def rebase(
    existing: Sequence[Child],
    added: Sequence[Child],
    *,
    name: str,
    annotations: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    replace: bool = False,
) -> Rebased:
    """[INDEX-9] The children of an append: ``existing`` (the images of the index ``name``,
    whose index annotations are ``annotations``) first, in their order, then ``added``.

    An added image of a platform ``existing`` already holds (normalised, [PLATFORM-3]; not a
    compression variant, [INDEX-8]) is a :class:`PlatformConflictError` naming ``name`` and
    ``--replace``; with ``replace`` it takes the old entry's place (the old one's attestations
    go with it) and a note names the platform and both digests. An added image whose digest is
    the very entry ``existing`` holds is not added twice (a re-run of the same append), with a
    note. Pure: positions in, positions out.
    """
    order = list(range(len(existing)))
    notes: list[str] = []
    replaced: set[int] = set()
    tail: list[int] = []
    for j, new in enumerate(added):
        hits = [i for i, old in enumerate(existing) if _same_entry(old, new) and i not in replaced]
        digest = new.manifest.descriptor.digest
        if any(existing[i].manifest.descriptor.digest == digest for i in hits):
            notes.append(f"{new.source}: {new.platform} {digest.short} is already in {name}; kept as it is")
            continue
        if not hits:
            tail.append(len(existing) + j)
            continue
        old = existing[hits[0]]
        if not replace:
            raise PlatformConflictError(
                f"{new.platform} of {new.source} ({digest.short}) is already in {name}; pass --replace to "
                f"replace it (the entry there is {old.manifest.descriptor.digest.short})"
            )
        for i in hits:
            notes.append(
                f"replaced {existing[i].platform} in {name}: {existing[i].manifest.descriptor.digest} → {digest} "
                f"({new.source})"
            )
            order[i] = len(existing) + j if i == hits[0] else -1
        replaced.update(hits)
    kept = [i for i in order if i >= 0]
    return Rebased((*kept, *tail), Base(name, len(kept), annotations), tuple(notes))


def _order(children: Sequence[Child], manifests: Sequence[Document[ImageManifest]], base: int) -> list[int]:
    """[INDEX-2] [INDEX-9] The order of the entries: the first ``base`` children as given, then
    the rest by platform, gzip before zstd ([INDEX-8]), then digest.

    The digest breaks ties so the order never depends on the order of the inputs (equal keys
    are refused by _check_platforms but for compression variants, which the rank orders gzip
    first; the digest keeps the sort total anyway).
    """
    rest = sorted(
        range(base, len(children)),
        key=lambda i: (
            children[i].platform.key,
            compression_rank(children[i].manifest.value),
            str(manifests[i].descriptor.digest),
        ),
    )
    return [*range(base), *rest]


def _converted(
    children: Sequence[Child], docker: bool, drop_annotations: bool, notes: list[str]
) -> tuple[Document[ImageManifest], ...]:
    """[CONVERT-1] [CONVERT-3] Each child's manifest as the index lists it: converted for a
    Docker list, with a note for each one whose annotations were dropped ([CONVERT-2])."""
    if not docker:
        return tuple(c.manifest for c in children)
    out = []
    for c in children:
        converted = to_docker_manifest(c.manifest, c.source, drop_annotations=drop_annotations)
        if converted is not c.manifest and (lost := docker_losses(c.manifest.value)):
            notes.append(
                f"{c.source}: dropped annotations a Docker manifest cannot carry (--drop-annotations): "
                f"{', '.join(lost)}; its manifest {c.manifest.descriptor.digest} is now {converted.descriptor.digest}"
            )
        out.append(converted)
    return tuple(out)


def _dropped_for_docker(
    children: Sequence[Child], annotations: Sequence[Annotation], index: Mapping[str, str], notes: list[str]
) -> None:
    """[INDEX-7] [CONVERT-2] The notes of what a Docker list leaves out: kept entry annotations
    (nobody asked for them), and with --drop-annotations the index and entry annotations."""
    if any(c.entry_annotations for c in children):
        notes.append("dropped the source indexes' entry annotations: a Docker manifest list cannot carry them")
    if index:
        notes.append(
            f"dropped the index annotations (--drop-annotations): {', '.join(sorted(index))}; "
            "a Docker manifest list cannot carry them"
        )
    if entry := sorted({a.key for a in annotations if not a.on_index}):
        notes.append(
            f"dropped the entry annotations (--drop-annotations): {', '.join(entry)}; "
            "a Docker manifest list cannot carry them"
        )


def _attestation_entries(
    child: Child, manifest: Document[ImageManifest], notes: list[str]
) -> Iterator[tuple[Descriptor, Document[ImageManifest]]]:
    """[ATTEST-2] [ATTEST-3] The index entries (and documents) of ``child``'s valid attestations."""
    for entry, doc in sorted(child.attestations, key=lambda a: str(a[0].digest)):
        # [ATTEST-2] an attestation is valid only while it names the manifest we list.
        if entry.annotation(REFERENCE_DIGEST) != str(manifest.descriptor.digest):
            notes.append(
                f"dropped attestation {entry.digest.short} of {child.source}: its image manifest was rewritten"
            )
            continue
        listed = Descriptor(
            media_type=doc.descriptor.media_type,
            digest=doc.descriptor.digest,
            size=doc.descriptor.size,
            annotations=entry.annotations,
            # BuildKit's marker platform, so clients that pick by platform skip it [ATTEST-1]
            platform=entry.platform or Platform("unknown", "unknown"),
        )
        yield listed, doc


def assemble(  # noqa: PLR0913 - create's settings by name, as a pure function takes them
    children: Sequence[Child],
    *,
    format: IndexFormat = IndexFormat.AUTO,
    attestations: AttestationPolicy = AttestationPolicy.KEEP,
    annotations: Sequence[Annotation] = (),
    annotations_from_labels: bool = False,
    base: Base | None = None,
    drop_annotations: bool = False,
) -> Assembly:
    """Build the index over ``children``.

    [INDEX-2] Entries are ordered by normalised platform (os, architecture, variant,
    os.version, os.features), a platform's gzip image before its zstd variant ([INDEX-8]),
    then attestation entries in the order of their images; so the same images in any order
    give identical bytes. ``format`` chooses the document
    ([INDEX-4]), ``attestations`` whether attestations are listed, left out or returned as
    referrers of their images ([ATTEST-3], [ATTEST-4]) and ``annotations`` go on the index or
    its entries ([INDEX-6]). Entries keep the annotations their source index gave them, and
    ``annotations_from_labels`` copies the ``org.opencontainers.image.*`` labels every child
    shares onto the index; given annotations win over both ([INDEX-7]). ``base`` is the index
    an append starts from ([INDEX-9], see :func:`rebase`): its ``count`` leading children come
    first in the order given, and its annotations are carried onto the index (under copied
    labels and given annotations). ``drop_annotations`` (``format=DOCKER`` only) drops the
    annotations a Docker list and Docker manifests cannot carry, with a note for each
    ([CONVERT-2]).

    Raises :class:`UsageError` for no children or ``drop_annotations`` without
    ``format=DOCKER``, :class:`PlatformConflictError` or :class:`ModelError` for platforms
    that cannot share an index ([INDEX-3], [INDEX-8]), and :class:`ConversionError` when the
    format asked for cannot carry the inputs.
    """
    if not children:
        raise UsageError("no images to assemble")
    if drop_annotations and format is not IndexFormat.DOCKER:
        raise UsageError("--drop-annotations goes with --format docker: an OCI index carries every annotation")
    variants = _check_platforms(children)
    keep = attestations is AttestationPolicy.KEEP
    # [ATTEST-4] referrers are not entries: they neither force an OCI index nor stop a Docker list
    copied = _from_labels(children, annotations_from_labels)
    index_annotations = {**dict(base.annotations if base else ()), **copied}
    index_annotations.update((a.key, a.value) for a in annotations if a.on_index)
    asked = "" if drop_annotations else _annotated(children, format, annotations, bool(copied), base)
    docker = _wants_docker(format, children, keep, asked)
    notes: list[str] = []
    if docker:
        _dropped_for_docker(children, annotations, index_annotations, notes)
        index_annotations, annotations = {}, ()
    manifests = _converted(children, docker, drop_annotations, notes)
    entries: list[Descriptor] = []
    attestation_entries: list[Descriptor] = []
    attestation_docs: list[Document[ImageManifest]] = []
    referrers: list[Document[ImageManifest]] = []
    for i in _order(children, manifests, base.count if base else 0):
        child, manifest = children[i], manifests[i]
        entries.append(
            Descriptor(
                media_type=manifest.descriptor.media_type,
                digest=manifest.descriptor.digest,
                size=manifest.descriptor.size,
                annotations=_entry_annotations(child, annotations, kept=not docker, variant=i in variants),
                platform=child.platform,  # as the config spells it, not normalised [INDEX-1]
            )
        )
        if attestations is AttestationPolicy.REFERRERS:
            for entry, doc in sorted(child.attestations, key=lambda a: str(a[0].digest)):
                referrer = _as_referrer(entry, doc, manifest, child.source, notes)
                if referrer is not None:
                    referrers.append(referrer)
        elif keep:
            for listed, doc in _attestation_entries(child, manifest, notes):
                attestation_entries.append(listed)
                attestation_docs.append(doc)
    index = ImageIndex(
        manifests=(*entries, *attestation_entries),
        media_type=mt.DOCKER_MANIFEST_LIST if docker else mt.OCI_INDEX,
        annotations=index_annotations,
    )
    return Assembly(
        index=Document.author(index),
        manifests=manifests,
        attestations=tuple(attestation_docs),
        notes=tuple(notes),
        referrers=tuple(referrers),
    )
