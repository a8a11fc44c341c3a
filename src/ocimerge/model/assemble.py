"""Assembly: N single-platform images in, one OCI image index or Docker manifest list out.

A pure, total function ([INDEX-1] .. [INDEX-8], [ATTEST-1] .. [ATTEST-4], [CONVERT-1] ..
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
from collections.abc import Iterable, Mapping, Sequence

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
    "Child",
    "IndexFormat",
    "assemble",
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


def to_docker_manifest(doc: Document[ImageManifest], source: str) -> Document[ImageManifest]:
    """[CONVERT-1] The Docker schema 2 form of an OCI manifest, when nothing would be lost.

    Docker manifests are returned unchanged (same bytes). An OCI manifest converts only when
    its config is an image config and every layer is gzip; annotations, ``subject`` and
    ``artifactType`` have no Docker form, so their presence is a :class:`ConversionError`.
    ``source`` names the image in messages. The result is a new document (new digest), so
    attestations naming the old one no longer apply ([ATTEST-2]).
    """
    manifest = doc.value
    if manifest.is_docker:
        return doc  # [CONVERT-3] same bytes, same digest: nothing to re-author
    where = f"{source}: manifest {doc.descriptor.digest.short}"
    if manifest.annotations or manifest.subject or manifest.artifact_type:
        raise ConversionError(
            f"{where}: has annotations, a subject or an artifactType that a Docker manifest "
            "cannot carry; use --format oci"
        )
    if manifest.config.media_type not in (mt.OCI_CONFIG, mt.DOCKER_CONFIG):
        raise ConversionError(f"{where}: config type {manifest.config.media_type} has no Docker form")
    layers = []
    for i, layer in enumerate(manifest.layers):
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
        # eStargz and similar tools keep their index in layer annotations; converting would
        # silently turn such an image into a plain one.
        if layer.annotations:
            raise ConversionError(
                f"{where}: layer {i} has annotations (e.g. eStargz) that a Docker manifest would drop; use --format oci"
            )
        layers.append(attrs.evolve(layer, media_type=_TO_DOCKER_LAYER[layer.media_type]))
    config = attrs.evolve(manifest.config, media_type=mt.DOCKER_CONFIG)
    if config.annotations:
        raise ConversionError(f"{where}: the config descriptor has annotations; use --format oci")
    # Digests and sizes are unchanged: the blobs are the same bytes under another type name.
    converted = ImageManifest(config=config, layers=tuple(layers), media_type=mt.DOCKER_MANIFEST)
    return Document.author(converted)


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
            if not _is_compression_variant(child, other):
                raise PlatformConflictError(
                    f"two sources are {child.platform.normalized()}: {other.source} "
                    f"({other.manifest.descriptor.digest.short}) and {child.source} "
                    f"({child.manifest.descriptor.digest.short}); give one image per platform "
                    "(or one image in gzip and in zstd: the same config, the layers compressed two ways)"
                )
        group.append(i)
    return frozenset(i for group in seen.values() if len(group) > 1 for i in group)


def _wants_docker(
    format: IndexFormat,
    children: Sequence[Child],
    keep_attestations: bool,
    annotated: str,
) -> bool:
    """[INDEX-4] AUTO picks a Docker list only when every child is Docker and nothing is lost.

    ``annotated`` names what asks for annotations ("" for nothing). A forced DOCKER refuses
    (:class:`ConversionError`) what a manifest list cannot carry rather than dropping it;
    OCI children are then converted by :func:`to_docker_manifest`.
    """
    has_attestations = keep_attestations and any(c.attestations for c in children)
    if format is IndexFormat.OCI:
        return False
    if format is IndexFormat.DOCKER:
        if annotated:
            raise ConversionError(
                f"a Docker manifest list cannot carry annotations; drop {annotated} or use --format oci"
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
    children: Sequence[Child],
    format: IndexFormat,
    annotations: Sequence[Annotation],
    index_annotations: Mapping[str, str],
) -> str:
    """What asks the index for annotations, named so a forced Docker list can say what to drop.

    [INDEX-7] Kept entry annotations keep AUTO an OCI index (nothing is lost), but nobody asked
    for them: a forced Docker list drops them with a note instead of refusing.
    """
    if annotations:
        return "--annotation"
    if index_annotations:
        return "--annotations-from-labels"
    if format is not IndexFormat.DOCKER and any(c.entry_annotations for c in children):
        return "the source indexes' entry annotations"
    return ""


#: [INDEX-7] The labels ``annotations_from_labels`` copies: the image-spec's pre-defined keys,
#: which registries (GHCR, Docker Hub, Quay) show for a multi-platform image only on its index.
LABEL_PREFIX = "org.opencontainers.image."


def _index_annotations(
    children: Sequence[Child], annotations: Iterable[Annotation], from_labels: bool
) -> dict[str, str]:
    """[INDEX-7] The index's annotations: the ``org.opencontainers.image.*`` labels every child
    has with one value (when ``from_labels``), then those given, which win."""
    out: dict[str, str] = {}
    if from_labels:
        shared = set(children[0].labels)
        for child in children[1:]:
            shared &= set(child.labels)
        out.update(sorted((k, v) for k, v in shared if k.startswith(LABEL_PREFIX)))
    out.update((a.key, a.value) for a in annotations if a.on_index)
    return out


def assemble(
    children: Sequence[Child],
    *,
    format: IndexFormat = IndexFormat.AUTO,
    attestations: AttestationPolicy = AttestationPolicy.KEEP,
    annotations: Sequence[Annotation] = (),
    annotations_from_labels: bool = False,
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
    shares onto the index; given annotations win over both ([INDEX-7]).

    Raises :class:`UsageError` for no children, :class:`PlatformConflictError` or
    :class:`ModelError` for platforms that cannot share an index ([INDEX-3], [INDEX-8]), and
    :class:`ConversionError` when the format asked for cannot carry the inputs.
    """
    if not children:
        raise UsageError("no images to assemble")
    variants = _check_platforms(children)
    keep = attestations is AttestationPolicy.KEEP
    # [ATTEST-4] referrers are not entries: they neither force an OCI index nor stop a Docker list
    index_annotations = _index_annotations(children, annotations, annotations_from_labels)
    docker = _wants_docker(format, children, keep, _annotated(children, format, annotations, index_annotations))
    notes: list[str] = []
    if docker and any(c.entry_annotations for c in children):
        notes.append("dropped the source indexes' entry annotations: a Docker manifest list cannot carry them")
    manifests = tuple(to_docker_manifest(c.manifest, c.source) if docker else c.manifest for c in children)
    # [INDEX-2] the digest breaks ties so the order never depends on the order of the inputs
    # (equal keys are refused by _check_platforms but for compression variants, which the
    # rank orders gzip first [INDEX-8]; the digest keeps the sort total anyway).
    order = sorted(
        range(len(children)),
        key=lambda i: (
            children[i].platform.key,
            compression_rank(children[i].manifest.value),
            str(manifests[i].descriptor.digest),
        ),
    )
    entries: list[Descriptor] = []
    attestation_entries: list[Descriptor] = []
    attestation_docs: list[Document[ImageManifest]] = []
    referrers: list[Document[ImageManifest]] = []
    for i in order:
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
            continue
        if not keep:
            continue
        for entry, doc in sorted(child.attestations, key=lambda a: str(a[0].digest)):
            # [ATTEST-2] an attestation is valid only while it names the manifest we list.
            if entry.annotation(REFERENCE_DIGEST) != str(manifest.descriptor.digest):
                notes.append(
                    f"dropped attestation {entry.digest.short} of {child.source}: its image manifest was rewritten"
                )
                continue
            attestation_entries.append(
                Descriptor(
                    media_type=doc.descriptor.media_type,
                    digest=doc.descriptor.digest,
                    size=doc.descriptor.size,
                    annotations=entry.annotations,
                    # BuildKit's marker platform, so clients that pick by platform skip it [ATTEST-1]
                    platform=entry.platform or Platform("unknown", "unknown"),
                )
            )
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
