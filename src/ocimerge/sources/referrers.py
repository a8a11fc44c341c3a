"""Finding the referrers of what a source holds, recursively ([REFERRERS-9], [REFERRERS-10]).

[REFERRERS-9] For every subject (the root, each image, attestation and nested index) the
source lists candidates (:meth:`~ocimerge.sources.core.Source.referrers_of`); each is read,
verified, and kept only when its own ``subject`` names that subject (a fallback index or a
registry can list anything), or, found under cosign's tag, when it names no other. A kept
referrer is a subject in turn (a signature on an SBOM), breadth first, each digest once,
at most :data:`MAX_DEPTH` deep and :data:`MAX_REFERRERS` in all. A referrer whose blobs the
source lacks, or of a kind that cannot travel (an index), is skipped with a note.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import attrs

from ocimerge.content import Referrer
from ocimerge.errors import DocumentError, InputError, SourceNotFoundError
from ocimerge.model import mediatype as mt
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageManifest, decode_manifest_or_index
from ocimerge.model.referrers import artifact_type_of, subject_of
from ocimerge.sources.core import Listed, Source

__all__ = ["MAX_DEPTH", "MAX_REFERRERS", "Discovered", "discover"]

#: [REFERRERS-9] How deep referrers of referrers are followed: a signature on an
#: attestation on an image is two; eight leaves room and stops a hostile chain.
MAX_DEPTH = 8
#: [REFERRERS-9][SEC-2] Referrers kept in one walk: far above a real image's handful.
MAX_REFERRERS = 1000


@attrs.frozen
class Discovered:
    """What :func:`discover` found: the referrers, each after its subject, and notes."""

    referrers: tuple[Referrer, ...] = ()
    notes: tuple[str, ...] = ()


def discover(source: Source, subjects: Iterable[Digest], types: tuple[str, ...] = ()) -> Discovered:
    """[REFERRERS-9] The referrers of ``subjects`` in ``source``, recursively, breadth first.

    ``types`` keeps only referrers of those artifact types ([REFERRERS-2]; all when empty);
    a referrer filtered out is not followed either. Raises :class:`DocumentError` past
    :data:`MAX_REFERRERS`, and what the source raises for a registry it cannot ask (a
    listed referrer that is gone is skipped with a note).
    """
    visited: set[Digest] = set()
    queue: deque[tuple[Digest, int]] = deque()
    for subject in subjects:
        if subject not in visited:
            visited.add(subject)
            queue.append((subject, 0))
    kept: list[Referrer] = []
    notes: list[str] = []
    held: dict[Digest, int] = {}
    while queue:
        subject, depth = queue.popleft()
        for listed in source.referrers_of(subject):
            place = held.get(listed.descriptor.digest)
            if place is not None:
                # found twice (the referrers API, then cosign's tag): one referrer, which keeps
                # the tag so that a sink writes it under that tag again
                if listed.tag is not None and kept[place].tag is None:
                    kept[place] = attrs.evolve(kept[place], tag=listed.tag)
                continue
            referrer = _read(source, subject, listed, notes)
            if referrer is None or (types and referrer.artifact_type not in types):
                continue
            held[referrer.digest] = len(kept)
            kept.append(referrer)
            if len(kept) > MAX_REFERRERS:
                raise DocumentError(f"{source.name}: more than {MAX_REFERRERS} referrers; refusing them")
            if depth + 1 < MAX_DEPTH and referrer.digest not in visited:
                visited.add(referrer.digest)
                queue.append((referrer.digest, depth + 1))
    return Discovered(tuple(kept), tuple(notes))


def _read(source: Source, subject: Digest, listed: Listed, notes: list[str]) -> Referrer | None:
    """One listed candidate read and checked; None (with a note) when it cannot travel."""
    what = f"referrer {listed.descriptor.digest.short} of {subject.short}"
    document, fetched = _fetch(source, listed.descriptor, what)
    problem = fetched if document is None else _mismatch(document.value, subject, listed)
    if document is None or problem is not None:
        notes.append(f"skipped {what}: {problem}")
        return None
    value: ImageManifest = document.value
    blobs = tuple(source.blob(d, f"blob {d.digest.short} of {what}") for d in (value.config, *value.layers))
    if missing := [b for b in blobs if not b.available and not mt.is_foreign_layer(b.descriptor.media_type)]:
        notes.append(
            f"skipped {what} ({artifact_type_of(value)}): its blob {missing[0].digest.short} is not in the source"
        )
        return None
    return Referrer(subject, document, blobs, listed.found, listed.tag)


def _fetch(source: Source, descriptor: Descriptor, what: str) -> tuple[Document[Any] | None, str]:
    """The candidate's document, verified; or None and why not."""
    if descriptor.media_type not in mt.MANIFEST_TYPES:
        kind = "an index" if descriptor.media_type in mt.INDEX_TYPES else descriptor.media_type
        return None, f"it is {kind}, which ocimerge does not carry as a referrer"
    if not source.has(descriptor):
        return None, "it is not in the source"
    try:
        raw = source.document(descriptor, what)
        value = decode_manifest_or_index(raw, media_type=descriptor.media_type, where=f"{source.name}: {what}")
        return Document.reached(raw, value, descriptor, where=f"{source.name}: {what}"), ""
    except SourceNotFoundError:
        return None, "listed, but the registry does not have it"
    except InputError as exc:
        return None, str(exc)


def _mismatch(value: object, subject: Digest, listed: Listed) -> str | None:
    """Why a read candidate is no referrer of ``subject`` ([REFERRERS-9]); None when it is."""
    if not isinstance(value, ImageManifest):
        return "it is an index, which ocimerge does not carry as a referrer"
    named = subject_of(value)
    if named is not None and named.digest != subject:
        return f"it names {named.digest.short} as its subject"
    if named is None and listed.tag is None:
        return "it has no subject"
    return None
