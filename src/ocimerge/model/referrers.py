"""Referrers: subjects, artifact types, fallback tags and cosign's tags ([REFERRERS-1] .. [REFERRERS-8]).

A *referrer* is a manifest (or index) whose ``subject`` names another manifest: a signature,
an SBOM, an attestation. Registries with the OCI 1.1 referrers API list them; on the others
a client keeps the list itself in an OCI image index under the fallback tag
``<alg>-<encoded>`` ([REFERRERS-4], [REFERRERS-5]) by read-modify-write ([REFERRERS-6]), and
cosign finds its artifacts under its own tags ``<alg>-<hex>.sig|.att|.sbom`` ([REFERRERS-7]).

Everything here is pure: values in, values out. The fallback index is parsed strictly, so a
registry that answers something else for the tag (GitLab is reported to answer the image
itself) is told apart from an index of referrers, and the index we write back goes through
the one canonical encoder ([DOC-1], [JSON-2]).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import attrs

from ocimerge.errors import DocumentError, InputError, ModelError
from ocimerge.model import mediatype as mt
from ocimerge.model.codec import decode_json
from ocimerge.model.descriptor import Annotations, Descriptor, to_annotations
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageIndex, ImageManifest, decode_index, sniff_document_type

__all__ = [
    "COSIGN_SUFFIXES",
    "ReferrersIndex",
    "artifact_type_of",
    "cosign_tag",
    "cosign_tags",
    "fallback_tag",
    "filter_by_artifact_type",
    "referrer_descriptor",
    "refers_to",
    "subject_of",
    "unique_by_digest",
    "with_referrer",
    "with_subject",
]

#: [REFERRERS-7] cosign's tag suffixes: signatures, attestations, SBOMs (in that order).
COSIGN_SUFFIXES = ("sig", "att", "sbom")

# [REFERRERS-4] the referrers tag schema cuts the algorithm to 32 characters and the encoded
# part to 64, and turns every character a tag may not hold into "-".
_FALLBACK_ALGORITHM_MAX = 32
_FALLBACK_ENCODED_MAX = 64
_NOT_TAG_CHARACTER = re.compile(r"[^a-zA-Z0-9._-]")
# distribution-api.md §1: a tag is at most 128 characters.
_TAG_MAX = 128
# [DIGEST-1] the digest grammar, without the supported-algorithm check: a tag name is defined
# for any grammatical digest, even one whose content ocimerge could not verify.
_DIGEST_GRAMMAR = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")

#: What the functions of this module read: a manifest or an index, bare or as a document.
Referable = ImageManifest | ImageIndex | Document[Any]


def _parsed(document: Referable) -> ImageManifest | ImageIndex:
    """The manifest or index itself, unwrapped from its document when given one."""
    value = document.value if isinstance(document, Document) else document
    if not isinstance(value, ImageManifest | ImageIndex):
        raise ModelError(f"expected an image manifest or index, not {type(value).__name__}")
    return value


def subject_of(document: Referable) -> Descriptor | None:
    """[REFERRERS-1] The descriptor the manifest or index names as its ``subject``, or None.

    A document with a subject is a referrer of the manifest that subject names. Docker
    schema 2 documents have no ``subject`` ([MANIFEST-1]), so theirs is always None. Raises
    :class:`ModelError` for anything that is not a manifest or index.

    >>> from ocimerge.model.manifest import decode_manifest
    >>> raw = (b'{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.empty.v1+json",'
    ...        b'"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},'
    ...        b'"layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json",'
    ...        b'"digest":"sha256:' + b"a" * 64 + b'","size":401}}')
    >>> subject_of(decode_manifest(raw)).size
    401
    """
    return _parsed(document).subject


def refers_to(document: Referable, subject: Digest) -> bool:
    """[REFERRERS-1] Whether ``document`` is a referrer of the manifest ``subject``.

    True when its ``subject`` names exactly that digest. This is the check a fallback index's
    entries pass once fetched: the index lists referrers, but only each referrer's own bytes
    say what it refers to. Raises :class:`ModelError` as :func:`subject_of` does.

    >>> config = Descriptor(mt.OCI_EMPTY, Digest.of(b"{}"), 2)
    >>> image = Descriptor(mt.OCI_MANIFEST, Digest.of(b"image"), 5)
    >>> sig = ImageManifest(config=config, layers=(), subject=image)
    >>> refers_to(sig, image.digest), refers_to(sig, config.digest)
    (True, False)
    """
    named = subject_of(document)
    return named is not None and named.digest == subject


def artifact_type_of(document: Referable) -> str | None:
    """[REFERRERS-2] The artifact type of a referrer, as the referrers API reports it.

    A manifest's own ``artifactType``, else its config's ``mediaType``; an index's own
    ``artifactType``, else None (an index has no config to fall back on). Raises
    :class:`ModelError` for anything that is not a manifest or index.

    >>> config = Descriptor("application/vnd.dev.cosign.simplesigning.v1+json", Digest.of(b"{}"), 2)
    >>> artifact_type_of(ImageManifest(config=config, layers=()))
    'application/vnd.dev.cosign.simplesigning.v1+json'
    >>> artifact_type_of(ImageManifest(config=config, layers=(), artifact_type="application/spdx+json"))
    'application/spdx+json'
    """
    value = _parsed(document)
    if value.artifact_type:
        return value.artifact_type
    if isinstance(value, ImageManifest):
        return value.config.media_type
    return None


def referrer_descriptor(document: Document[Any]) -> Descriptor:
    """[REFERRERS-3] The descriptor the referrers API lists for a referrer ``document``.

    Its media type, digest and size are the document's (of its raw bytes, [DOC-1]); its
    ``artifactType`` follows [REFERRERS-2] and its annotations are the document's own
    top-level annotations. No platform, urls or data: the API lists none. Raises
    :class:`ModelError` when ``document`` holds neither a manifest nor an index.

    >>> config = Descriptor("application/vnd.oci.empty.v1+json", Digest.of(b"{}"), 2)
    >>> doc = Document.author(ImageManifest(config=config, layers=(), artifact_type="application/example",
    ...                                     annotations={"org.example": "yes"}))
    >>> d = referrer_descriptor(doc)
    >>> (d.digest == doc.descriptor.digest, d.artifact_type, d.annotations)
    (True, 'application/example', (('org.example', 'yes'),))
    """
    value = _parsed(document)
    return Descriptor(
        media_type=document.descriptor.media_type,
        digest=document.descriptor.digest,
        size=document.descriptor.size,
        annotations=value.annotations,
        artifact_type=artifact_type_of(value),
    )


def _digest_parts(digest: Digest | str) -> tuple[str, str]:
    """The algorithm and encoded part of ``digest``; a string must follow [DIGEST-1]."""
    if isinstance(digest, Digest):
        return digest.algorithm, digest.encoded
    match = _DIGEST_GRAMMAR.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise DocumentError(f"invalid digest {digest!r}: expected algorithm:encoded")
    return match[1], match[2]


def fallback_tag(digest: Digest | str) -> str:
    """[REFERRERS-4] The referrers fallback tag of the manifest ``digest``: ``<alg>-<encoded>``.

    The algorithm is cut to 32 characters and the encoded part to 64, and any character a
    tag may not hold becomes ``-``, so a sha512 digest keeps only its first 64 hex digits.
    ``digest`` may be a string of any algorithm that follows the digest grammar; other
    strings raise :class:`DocumentError`.

    >>> fallback_tag(Digest.of(b"{}"))
    'sha256-44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'
    >>> fallback_tag("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564")
    'sha256-b64u-LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564'
    """
    algorithm, encoded = _digest_parts(digest)
    tag = f"{algorithm[:_FALLBACK_ALGORITHM_MAX]}-{encoded[:_FALLBACK_ENCODED_MAX]}"
    return _NOT_TAG_CHARACTER.sub("-", tag)


def cosign_tag(digest: Digest | str, suffix: str) -> str:
    """[REFERRERS-7] cosign's tag for ``suffix`` (``sig``, ``att``, ``sbom``) of ``digest``.

    ``<alg>-<encoded>.<suffix>``: the digest with ``:`` turned into ``-``, nothing cut, as
    cosign builds it. A tag over 128 characters (a sha512 digest: 139) is one cosign cannot
    make either, so it raises :class:`ModelError`, as does a suffix outside
    :data:`COSIGN_SUFFIXES`; a malformed digest string raises :class:`DocumentError`.

    >>> cosign_tag(Digest.of(b"{}"), "sig")
    'sha256-44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a.sig'
    """
    if suffix not in COSIGN_SUFFIXES:
        raise ModelError(f"unknown cosign tag suffix {suffix!r}: expected one of {', '.join(COSIGN_SUFFIXES)}")
    algorithm, encoded = _digest_parts(digest)
    tag = f"{algorithm}-{encoded}.{suffix}"
    if len(tag) > _TAG_MAX or _NOT_TAG_CHARACTER.search(tag):
        raise ModelError(f"cosign's {suffix} tag for {algorithm}:{encoded} would not be a valid tag: {tag}")
    return tag


def cosign_tags(digest: Digest | str) -> tuple[str, str, str]:
    """[REFERRERS-7] cosign's signature, attestation and SBOM tags of ``digest``, in that order.

    Raises as :func:`cosign_tag` does.

    >>> [t.rpartition(".")[2] for t in cosign_tags(Digest.of(b"{}"))]
    ['sig', 'att', 'sbom']
    """
    sig, att, sbom = (cosign_tag(digest, suffix) for suffix in COSIGN_SUFFIXES)
    return sig, att, sbom


def filter_by_artifact_type(descriptors: Iterable[Descriptor], types: Iterable[str]) -> tuple[Descriptor, ...]:
    """[REFERRERS-8] The descriptors whose ``artifactType`` is one of ``types``, order kept.

    No ``types`` at all means no filter: every descriptor is kept, as the referrers API
    answers a request without ``artifactType``. A descriptor without an ``artifactType``
    matches no type. Never raises.

    >>> d = Descriptor(mt.OCI_MANIFEST, Digest.of(b"{}"), 2, artifact_type="application/spdx+json")
    >>> filter_by_artifact_type([d], ["application/spdx+json"]) == (d,), filter_by_artifact_type([d], ["x"])
    (True, ())
    """
    wanted = frozenset(types)
    kept = tuple(descriptors)
    if not wanted:
        return kept
    return tuple(d for d in kept if d.artifact_type in wanted)


def unique_by_digest(descriptors: Iterable[Descriptor]) -> tuple[Descriptor, ...]:
    """[REFERRERS-6] The descriptors with each digest once: the first occurrence, order kept."""
    seen: set[Digest] = set()
    out: list[Descriptor] = []
    for descriptor in descriptors:
        if descriptor.digest not in seen:
            seen.add(descriptor.digest)
            out.append(descriptor)
    return tuple(out)


@attrs.frozen
class ReferrersIndex:
    """[REFERRERS-5] The referrers of one subject, as its fallback tag holds them.

    ``referrers`` are the index's entries, each digest once, in the order they were added;
    ``annotations`` are the index's own, kept across a read-modify-write ([REFERRERS-6]).
    Read with :meth:`parse`, extended with :meth:`with_referrer`, written with
    :meth:`author`.

    >>> d = Descriptor(mt.OCI_MANIFEST, Digest.of(b"{}"), 2, artifact_type="application/example")
    >>> index = ReferrersIndex().with_referrer(d).with_referrer(d)
    >>> len(index.referrers), index.contains(d.digest)
    (1, True)
    >>> ReferrersIndex.parse(index.author().raw) == index
    True
    """

    referrers: tuple[Descriptor, ...] = attrs.field(default=(), converter=unique_by_digest)
    annotations: Annotations = attrs.field(default=(), converter=to_annotations)

    @classmethod
    def parse(cls, raw: bytes, *, subject: Digest | None = None, where: str = "fallback tag") -> ReferrersIndex:
        """[REFERRERS-5] The referrers index in ``raw``, the answer to a fallback tag GET.

        Strict: the document must be an OCI image index (its ``mediaType`` that, or absent
        with a ``manifests`` list and no ``config``/``layers``). A Docker manifest list, an
        image manifest, or any other JSON raises :class:`DocumentError`, as do bytes that
        hash to ``subject`` itself: a registry that answers the image for its own fallback
        tag (reported of GitLab) must not have it taken for the image's referrers, even when
        the image is an index. Entries' media types are not checked; a digest listed twice
        is kept once.
        """
        if subject is not None and Digest.of(raw, subject.algorithm) == subject:
            raise DocumentError(
                f"{where}: the registry answered the subject {subject} itself, not an index of its referrers"
            )
        value = decode_json(raw, where=where)
        if not isinstance(value, dict) or sniff_document_type(value) != mt.OCI_INDEX:
            kind = sniff_document_type(value) if isinstance(value, dict) else type(value).__name__
            raise DocumentError(f"{where}: not an OCI image index of referrers (found {kind or 'no media type'})")
        try:
            index = decode_index(raw, where=where)
        except InputError as exc:
            # schema 1 and the like: still "not a referrers index" to the caller
            raise DocumentError(str(exc)) from None
        return cls(referrers=index.manifests, annotations=index.annotations)

    def contains(self, digest: Digest) -> bool:
        """Whether ``digest`` is one of the referrers listed."""
        return any(d.digest == digest for d in self.referrers)

    def with_referrer(self, descriptor: Descriptor) -> ReferrersIndex:
        """[REFERRERS-6] This index with ``descriptor`` appended, unless its digest is listed.

        An entry already there is kept as it is (not replaced), so adding the same referrer
        twice changes nothing. Never raises.
        """
        if self.contains(descriptor.digest):
            return self
        return attrs.evolve(self, referrers=(*self.referrers, descriptor))

    def to_index(self) -> ImageIndex:
        """[REFERRERS-5] The OCI image index that lists these referrers."""
        return ImageIndex(manifests=self.referrers, media_type=mt.OCI_INDEX, annotations=self.annotations)

    def author(self) -> Document[ImageIndex]:
        """[REFERRERS-6] The index encoded once by the canonical encoder ([DOC-1], [JSON-2])."""
        document: Document[ImageIndex] = Document.author(self.to_index())
        return document


def with_referrer(
    existing_raw: bytes | None, descriptor: Descriptor, *, subject: Digest | None = None, where: str = "fallback tag"
) -> Document[ImageIndex]:
    """[REFERRERS-6] The fallback index to PUT after adding ``descriptor`` to ``existing_raw``.

    ``existing_raw`` is what the fallback tag held (None when it answered 404: start from an
    empty index). Every entry already there is kept, in its order, each digest once, and
    ``descriptor`` is appended unless its digest is listed; the result is authored by the
    canonical encoder, so the same inputs give the same bytes. When ``descriptor`` was
    already listed and ``existing_raw`` is our own encoding, the result's ``raw`` equals it
    and the PUT may be skipped. Raises :class:`DocumentError` when ``existing_raw`` is not a
    referrers index ([REFERRERS-5]; ``subject`` and ``where`` as in
    :meth:`ReferrersIndex.parse`).

    >>> d = Descriptor(mt.OCI_MANIFEST, Digest.of(b"{}"), 2)
    >>> first = with_referrer(None, d)
    >>> with_referrer(first.raw, d).raw == first.raw
    True
    """
    existing = (
        ReferrersIndex() if existing_raw is None else ReferrersIndex.parse(existing_raw, subject=subject, where=where)
    )
    return existing.with_referrer(descriptor).author()


def with_subject(
    document: Document[ImageManifest], subject: Descriptor, artifact_type: str | None = None
) -> Document[ImageManifest]:
    """[ATTEST-4] ``document`` as a referrer of the manifest ``subject`` describes.

    A re-authored manifest without an ``artifactType`` of its own takes ``artifact_type``
    (so the referrers API can tell what it is), when one is given.

    When the document's ``subject`` already names ``subject``'s digest it is returned itself
    (same bytes, same digest: BuildKit 0.32+ writes attestations that way). A document with
    no subject becomes a new manifest, authored by the canonical encoder ([DOC-1]), whose
    ``subject`` is ``subject`` stripped to media type, digest and size (what BuildKit writes:
    no platform, no annotations); every other modelled field is kept. Raises
    :class:`ModelError` for a Docker schema 2 manifest, which cannot carry a subject
    ([REFERRERS-1]), and for a document whose subject names another manifest: re-pointing a
    referrer would make it claim something about an image it was not made for.

    >>> config = Descriptor(mt.OCI_CONFIG, Digest.of(b"{}"), 2)
    >>> image = Descriptor(mt.OCI_MANIFEST, Digest.of(b"image"), 5, annotations={"org.example": "x"})
    >>> attestation = Document.author(ImageManifest(config=config, layers=()))
    >>> attached = with_subject(attestation, image)
    >>> attached.value.subject == Descriptor(mt.OCI_MANIFEST, image.digest, 5), attached.raw == attestation.raw
    (True, False)
    >>> with_subject(attached, image) is attached
    True
    >>> with_subject(attached, config)
    Traceback (most recent call last):
      ...
    ocimerge.errors.ModelError: manifest ...: already a referrer of ..., not of 44136fa355b3
    >>> with_subject(Document.author(ImageManifest(config=config, layers=(), media_type=mt.DOCKER_MANIFEST)), image)
    Traceback (most recent call last):
      ...
    ocimerge.errors.ModelError: manifest ...: a Docker schema 2 manifest cannot carry a subject; it cannot be a referrer
    """
    value = document.value
    where = f"manifest {document.descriptor.digest.short}"
    if value.is_docker:
        raise ModelError(f"{where}: a Docker schema 2 manifest cannot carry a subject; it cannot be a referrer")
    if value.subject is not None:
        if value.subject.digest == subject.digest:
            return document
        raise ModelError(f"{where}: already a referrer of {value.subject.digest.short}, not of {subject.digest.short}")
    stripped = Descriptor(subject.media_type, subject.digest, subject.size)
    kind = value.artifact_type or artifact_type
    authored: Document[ImageManifest] = Document.author(attrs.evolve(value, subject=stripped, artifact_type=kind))
    return authored
