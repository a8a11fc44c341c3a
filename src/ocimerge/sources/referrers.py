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
#: [REFERRERS-9][SEC-2] Candidates listed in one walk, kept or not: each may cost a read, so
#: a registry or layout that lists thousands of manifests naming other subjects is refused
#: before it costs thousands of requests.
MAX_CANDIDATES = 4 * MAX_REFERRERS
#: Notes of skipped candidates kept word for word; the rest are counted in one line.
MAX_SKIP_NOTES = 20


@attrs.frozen
class Discovered:
    """What :func:`discover` found: the referrers, each after its subject, and notes."""

    referrers: tuple[Referrer, ...] = ()
    notes: tuple[str, ...] = ()


def discover(source: Source, subjects: Iterable[Digest], types: tuple[str, ...] = ()) -> Discovered:
    """[REFERRERS-9] The referrers of ``subjects`` in ``source``, recursively, breadth first.

    ``types`` keeps only referrers of those artifact types ([REFERRERS-2]; all when empty);
    a referrer filtered out is not followed either. Raises :class:`DocumentError` past
    :data:`MAX_REFERRERS` kept or :data:`MAX_CANDIDATES` listed, and what the source raises
    for a registry it cannot ask (a listed referrer that is gone is skipped with a note).
    """
    walk = _Walk(source, types)
    for subject in subjects:
        walk.enqueue(subject, 0)
    while walk.queue:
        subject, depth = walk.queue.popleft()
        for listed in source.referrers_of(subject):
            walk.take(subject, listed, depth)
    notes = walk.notes
    if len(notes) > MAX_SKIP_NOTES:
        notes[MAX_SKIP_NOTES:] = [f"and {len(notes) - MAX_SKIP_NOTES} more referrers skipped"]
    return Discovered(tuple(walk.kept), tuple(notes))


class _Walk:
    """The state of one :func:`discover`: what is queued, kept, counted and noted."""

    def __init__(self, source: Source, types: tuple[str, ...]) -> None:
        self.source = source
        self.types = types
        self.queue: deque[tuple[Digest, int]] = deque()
        self.visited: set[Digest] = set()
        self.kept: list[Referrer] = []
        self.held: dict[Digest, int] = {}
        self.notes: list[str] = []
        self.candidates = 0

    def enqueue(self, subject: Digest, depth: int) -> None:
        """Look for the referrers of ``subject`` later, once, while not too deep."""
        if depth < MAX_DEPTH and subject not in self.visited:
            self.visited.add(subject)
            self.queue.append((subject, depth))

    def take(self, subject: Digest, listed: Listed, depth: int) -> None:
        """One candidate listed for ``subject``: counted, filtered, read, kept and followed."""
        self.candidates += 1
        if self.candidates > MAX_CANDIDATES:
            raise DocumentError(
                f"{self.source.name}: more than {MAX_CANDIDATES} referrers listed; refusing them "
                "(use --referrers none to copy the images without them)"
            )
        listed_type = listed.descriptor.artifact_type
        if self.types and listed_type and listed_type not in self.types:
            return  # [REFERRERS-8] the listing says its type: not read at all
        place = self.held.get(listed.descriptor.digest)
        if place is not None:
            # found twice (the referrers API, then cosign's tag): one referrer, which keeps
            # the tag so that a sink writes it under that tag again
            if listed.tag is not None and self.kept[place].tag is None:
                self.kept[place] = attrs.evolve(self.kept[place], tag=listed.tag)
            return
        referrer = _read(self.source, subject, listed, self.notes)
        if referrer is None or (self.types and referrer.artifact_type not in self.types):
            return
        self.held[referrer.digest] = len(self.kept)
        self.kept.append(referrer)
        if len(self.kept) > MAX_REFERRERS:
            raise DocumentError(f"{self.source.name}: more than {MAX_REFERRERS} referrers; refusing them")
        self.enqueue(referrer.digest, depth + 1)


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
