"""Registry tag chores around a merge: ``tag``, ``untag`` and ``untag_sources`` ([TAG-1] .. [TAG-6]).

[TAG-5] :func:`tag` adds tags to an image already in a registry without moving a blob: in
the same repository it reads the root once (verified) and puts its exact bytes under each new
tag; in another repository of the same registry it pushes the image as ``push docker://SRC``
does, so every blob is mounted (or found there), never downloaded and uploaded again.

[TAG-1] :func:`untag` removes a tag with the spec's ``DELETE`` of the tag: the manifest stays.
[TAG-2] Where the registry refuses that (CNCF Distribution 2.8 answers 400 ``DIGEST_INVALID``),
the manifest is never deleted by digest (that removes every tag of it and the children an
index needs): a throwaway manifest, pushed by digest and deleted, shows whether the registry
deletes manifests at all; if it does, the tag is moved onto a second throwaway which is then
deleted by digest (regclient's method), else the refusal is one line saying what to enable.
[TAG-3] A tag that is the last one of a manifest which an index tagged in the same repository
lists is kept unless forced: clean-up jobs that delete untagged manifests would break that
index. [TAG-4] A tag is removed only while it names the digest it was read at.
[TAG-6] :func:`untag_sources` (``create --untag-sources``) removes the per-arch source tags
once every merged tag is confirmed, skipping a tag that moved and never removing a merged tag.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import uuid
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import attrs

from ocimerge.content import Blob
from ocimerge.errors import (
    BlobMissingError,
    DeleteUnsupportedError,
    OcimergeError,
    RegistryError,
    RemoteError,
    SourceNotFoundError,
    TagMovedError,
    TagNeededError,
    UsageError,
)
from ocimerge.model import mediatype as mt
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageIndex, ImageManifest
from ocimerge.model.reference import Reference
from ocimerge.registry.api import Registry, RegistryOptions, RegistryPool
from ocimerge.registry.challenge import Scope
from ocimerge.sinks.core import Publication
from ocimerge.sinks.registry import BlobAction, PushFailure, PushOptions, PushResult, RegistrySink
from ocimerge.sources import as_spec, load, open_source
from ocimerge.sources.walk import EVERYTHING
from ocimerge.text import printable

__all__ = [
    "MAX_CHECKED_TAGS",
    "PLACEHOLDER_TYPE",
    "Removal",
    "TagResult",
    "UntagOutcome",
    "UntagResult",
    "tag",
    "untag",
    "untag_sources",
]

#: [TAG-3] More tags than this in a repository and the last-tag check gives up (``--force``).
MAX_CHECKED_TAGS = 1000
#: [TAG-3] At most this many index documents are read for one check (nested ones included).
MAX_CHECKED_INDEXES = 1000
#: [TAG-2] The artifact type of the throwaway manifests the fallback pushes and deletes.
PLACEHOLDER_TYPE = "application/vnd.ocimerge.placeholder.v1"
_INDEXES = frozenset({mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST})
_EMPTY = b"{}"
_EMPTY_DESCRIPTOR = Descriptor(mt.OCI_EMPTY, Digest.of(_EMPTY), len(_EMPTY))
#: [TAG-3] The advice of a TagNeededError; untag_sources words it for ``create``'s user [TAG-6].
_PASS_FORCE = "pass --force to remove the tag anyway (the manifest stays)"
#: [TAG-7] The same advice for ``tag``, which would move the tag off the manifest.
_PASS_FORCE_TAG = "pass --force to move the tag anyway (the manifest stays)"


# -- results --------------------------------------------------------------------------------


@attrs.frozen
class TagResult:
    """What :func:`tag` did: the source's root, and each new reference (tag and digest).

    ``mounted`` counts the blobs mounted into other repositories (none for the same one);
    ``dry_run``: nothing was written, ``tagged`` is what would have been.
    """

    source: Reference
    root: Descriptor
    tagged: tuple[Reference, ...]
    mounted: int = 0
    dry_run: bool = False
    previous: tuple[Digest | None, ...] = ()

    def moved(self) -> tuple[tuple[Reference, Digest], ...]:
        """[TAG-7] Each new tag that named another digest before (moved off it), with that digest."""
        return tuple((r, p) for r, p in zip(self.tagged, self.previous, strict=False) if p is not None)

    def to_json(self) -> dict[str, Any]:
        """The result as ``tag --json`` prints it; ``previous`` maps each tag to the digest it named before."""
        before = self.previous or (None,) * len(self.tagged)
        return {
            "source": str(self.source),
            "digest": str(self.root.digest),
            "mediaType": self.root.media_type,
            "references": [str(r) for r in self.tagged],
            "previous": {
                str(attrs.evolve(r, digest=None)): str(p) if p is not None else None
                for r, p in zip(self.tagged, before, strict=True)
            },
            "blobsMounted": self.mounted,
            "dryRun": self.dry_run,
        }


class Removal(enum.Enum):
    """How :func:`untag` removed a tag."""

    DELETED = "deleted"  # [TAG-1] the spec's DELETE of the tag
    PLACEHOLDER = "via placeholder"  # [TAG-2] moved onto a throwaway, which was deleted by digest
    # (the CLI's line says that in words: "via placeholder" stays the JSON value)
    DRY_RUN = "dry run"  # nothing removed: it would have been


@attrs.frozen
class UntagResult:
    """What :func:`untag` did: the tag, the digest it named (the manifest stays), and how.

    ``needed_by`` lists the ``REPO:TAG`` of indexes that list the digest, when it was the
    last tag and ``force`` (or an allowed index) let it go anyway. ``manifest_restored``: the
    registry deleted the manifest along with the tag (old zot did) and it was put back by
    digest, its exact bytes [TAG-1].
    """

    reference: Reference
    digest: Digest
    how: Removal
    needed_by: tuple[str, ...] = ()
    manifest_restored: bool = False

    def to_json(self) -> dict[str, Any]:
        """The result as ``untag --json`` prints it (one entry of its list)."""
        return {
            "reference": str(self.reference),
            "digest": str(self.digest),
            "how": self.how.value,
            "neededBy": list(self.needed_by),
            "manifestRestored": self.manifest_restored,
        }


class UntagStatus(enum.Enum):
    """What :func:`untag_sources` did with one source tag."""

    REMOVED = "removed"
    MOVED = "moved"  # [TAG-4] it names another digest now: kept
    NEEDED = "needed"  # [TAG-3] another index needs it: kept
    TARGET = "target"  # it is one of the merged tags: never removed
    GONE = "gone"  # no such tag any more
    NOT_A_TAG = "not a tag"  # a source given by digest has no tag to remove


@attrs.frozen
class UntagOutcome:
    """One source tag's fate in :func:`untag_sources`; ``note`` is one line for stderr."""

    reference: Reference
    digest: Digest
    status: UntagStatus
    note: str
    result: UntagResult | None = None

    def to_json(self) -> dict[str, Any]:
        """As ``create --json`` lists it under ``untagged``."""
        return {
            "reference": str(self.reference),
            "digest": str(self.digest),
            "status": self.status.value,
            "how": self.result.how.value if self.result is not None else None,
            "note": self.note,
        }


# -- tag ------------------------------------------------------------------------------------


def _new_tag(text: str, source: Reference) -> Reference:
    """A NEWTAG: a tag on the source's registry (a bare ``:TAG`` or ``TAG`` is in its repository)."""
    bare = text.removeprefix(":")
    if "/" not in text and ":" not in bare and "@" not in text:
        text = f"{source.name}:{bare}"
    reference = Reference.parse(text.removeprefix("docker://"), default_tag=None)
    if reference.digest is not None or reference.tag is None:
        raise UsageError(f"{text}: a new tag must be REGISTRY/REPO:TAG, not a digest (the digest is the content's)")
    if reference.registry != source.registry:
        if not _names_a_registry(text):
            # [TAG-5] "stable/app:1" is Docker Hub's; the user most likely meant SRC's registry
            raise UsageError(
                f"{text} names {reference}; write {source.registry}/{text} for this registry, "
                f"or a bare TAG for {source.name}'s repository"
            )
        raise UsageError(
            f"{text} is on another registry than {source.registry}: use ocimerge push docker://{source} {text}"
        )
    return reference


def _names_a_registry(text: str) -> bool:
    """Whether ``text`` starts with a registry host ([REF-2]: a first component with ``.``, ``:``
    or ``localhost``), rather than meaning Docker Hub by naming none."""
    first, slash, _ = text.removeprefix("docker://").partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def _cross_repository(
    source: Reference, targets: Sequence[Reference], pool: RegistryPool, dry_run: bool
) -> tuple[Descriptor, int]:
    """[TAG-5] Push ``source`` into other repositories of its registry: blobs are mounted."""
    spec = as_spec(f"docker://{source}")
    options = PushOptions(registry=pool.options, dry_run=dry_run)
    with open_source(spec, pool.get) as opened:
        loaded = load(spec, opened, EVERYTHING)
        outcomes = RegistrySink(tuple(targets), pool, options).publish(Publication.of_image_set(loaded))
    failed = [o for o in outcomes if isinstance(o, PushFailure)]
    if failed:
        raise failed[0].error
    pushed = [o for o in outcomes if isinstance(o, PushResult)]
    mounted = sum(p.count(BlobAction.MOUNT) for p in pushed)
    return loaded.root_document.descriptor, mounted


def tag(
    source: str | Reference,
    new_tags: Sequence[str],
    options: RegistryOptions | None = None,
    *,
    dry_run: bool = False,
    force: bool = False,
) -> TagResult:
    """[TAG-5] Give the image at ``source`` (a registry tag or digest) each of ``new_tags``.

    Every new tag must be on the source's registry (else :class:`UsageError` pointing at
    ``ocimerge push``), and a tag, not a digest. In the source's repository the root is read
    once and its exact bytes put under each tag: no blob request at all. In another
    repository the image is pushed with its blobs mounted from the source's. Raises what
    reading or writing the registry raises (:class:`SourceNotFoundError` for a missing
    source). ``dry_run`` reads but writes nothing.

    [TAG-7] A new tag that exists and names another digest is moved: before anything is
    written, the digest it names now gets untag's last-tag check ([TAG-3]), a
    :class:`TagNeededError` unless ``force``; the result's ``previous`` says what each tag
    named before (None: it did not exist, or named the same image).
    """
    src = source if isinstance(source, Reference) else Reference.parse(source.removeprefix("docker://"))
    if not new_tags:
        raise UsageError(f"no new tag given: ocimerge tag {src} NEWTAG...")
    targets = [_new_tag(t, src) for t in new_tags]
    same = [t for t in targets if t.repository == src.repository]
    other = [t for t in targets if t.repository != src.repository]
    with RegistryPool(options) as pool:
        registry = pool.get(src.registry)
        document = _read_source(registry, src)
        previous = tuple(_previous(registry, t, document.descriptor.digest, force) for t in targets)
        root, mounted = document.descriptor, 0
        if same:
            _same_repository(registry, src, document, same, dry_run)
        if other:
            # the digest read above, so every new tag names the same image even if SRC moves meanwhile
            pinned = attrs.evolve(src, tag=None, digest=root.digest)
            root, mounted = _cross_repository(pinned, other, pool, dry_run)
    tagged = tuple(attrs.evolve(t, digest=root.digest) for t in targets)
    return TagResult(src, root, tagged, mounted, dry_run, previous)


def _previous(registry: Registry, target: Reference, digest: Digest, force: bool) -> Digest | None:
    """[TAG-7] The other digest ``target`` names now (None if none), after untag's [TAG-3] check on it."""
    head = registry.manifest_head(target)
    if head is None or head.digest == digest:
        return None
    now = head.digest
    check = _Untag(target, force=force, allowed=frozenset({digest}))
    if force:
        _forced_needers(registry, target, now, check)
        return now
    try:
        _needers(registry, target, now, check)
    except TagNeededError as exc:
        raise TagNeededError(
            f"moving {target.tag} from {now} to {digest}: " + str(exc).replace(_PASS_FORCE, _PASS_FORCE_TAG)
        ) from exc
    return now


def _read_source(registry: Registry, source: Reference) -> Document[Any]:
    """[TAG-5] The source's root document, read once and verified."""
    try:
        return registry.manifest_get(source)
    except RegistryError as exc:
        if exc.status != 404:
            raise
        raise SourceNotFoundError(f"{source}: no such tag or digest in {registry.host}/{source.repository}") from exc


def _same_repository(
    registry: Registry, source: Reference, document: Document[Any], targets: Sequence[Reference], dry_run: bool
) -> None:
    """[TAG-5] PUT the root's exact bytes (read once, verified) under each tag; no blob moves.

    An index's children are HEADed first: a tag never names an index whose children are
    missing (:class:`BlobMissingError`, as ``push`` refuses it).
    """
    if isinstance(document.value, ImageIndex):
        for child in document.value.manifests:
            if registry.manifest_head(attrs.evolve(source, tag=None, digest=child.digest)) is None:
                raise BlobMissingError(
                    f"{registry.host}/{source.repository}: the index {document.descriptor.digest} names "
                    f"{child.digest}, which is not in the repository; refusing to tag an index whose children "
                    "are missing"
                )
    for target in targets:
        if not dry_run:
            registry.manifest_put(target, document)


# -- untag ----------------------------------------------------------------------------------


@attrs.frozen
class _Untag:
    """One untag request: the tag, the digest it must name, what may need it, how far to go."""

    reference: Reference
    expected: Digest | None = None
    force: bool = False
    allowed: frozenset[Digest] = frozenset()
    dry_run: bool = False


def _as_tag(reference: str | Reference) -> Reference:
    """[TAG-1] An untag REF: an explicit tag (a destructive command invents no ``:latest``)."""
    if isinstance(reference, str) and not reference.strip():
        raise UsageError("untag needs REGISTRY/REPO:TAG; got an empty reference")
    ref = (
        reference
        if isinstance(reference, Reference)
        else Reference.parse(reference.removeprefix("docker://"), default_tag=None)
    )
    if ref.tag is None and ref.digest is None:
        raise UsageError(f"untag needs REGISTRY/REPO:TAG; {reference} names no tag (write {ref}:latest for latest)")
    if ref.digest is not None or not ref.tag:
        raise UsageError(
            f"{reference}: untag takes REGISTRY/REPO:TAG; a digest is no tag "
            "(deleting a manifest by digest removes every tag of it)"
        )
    return ref


def untag(  # noqa: PLR0913 - the request's settings, keyword-only
    reference: str | Reference,
    options: RegistryOptions | None = None,
    *,
    expected: Digest | None = None,
    force: bool = False,
    allowed: Collection[Digest] = (),
    dry_run: bool = False,
) -> UntagResult:
    """[TAG-1] Remove the tag ``reference`` (the manifest it names stays in the registry).

    Raises :class:`SourceNotFoundError` when there is no such tag; :class:`TagMovedError`
    when ``expected`` is given and the tag names another digest [TAG-4];
    :class:`TagNeededError` when it is the last tag of a manifest that an index tagged in the
    repository lists (an index whose digest is in ``allowed`` does not count), or the
    repository has more than :data:`MAX_CHECKED_TAGS` tags, unless ``force`` (with which no
    failure of that check refuses) [TAG-3]; :class:`DeleteUnsupportedError` when the registry
    deletes neither tags nor manifests [TAG-2]; :class:`RegistryError` when the placeholder
    path fails after moving the tag (the tag is put back, else the message says how) or a
    manifest the registry deleted with its tag cannot be put back. ``dry_run`` makes every
    check and removes nothing.
    """
    request = _Untag(_as_tag(reference), expected, force, frozenset(allowed), dry_run)
    with RegistryPool(options) as pool:
        return _untag(pool.get(request.reference.registry), request)


def _untag(registry: Registry, request: _Untag) -> UntagResult:
    ref = request.reference
    digest = _current(registry, ref, request.expected)
    needed_by = (
        _forced_needers(registry, ref, digest, request) if request.force else _needers(registry, ref, digest, request)
    )
    if request.dry_run:
        return UntagResult(ref, digest, Removal.DRY_RUN, needed_by)
    # [TAG-1] Distribution's token auth wants the delete action for a DELETE (pull, push for
    # the fallback's PUTs): asked for only now, so checks and dry runs never ask for it
    registry.want(Scope.repository(ref.repository, "pull", "push", "delete"))
    # the exact bytes the tag names, verified: what the placeholder path puts back when it
    # fails half way, and what a registry that deletes the manifest with its tag gets again
    original = registry.manifest_get(attrs.evolve(ref, tag=None, digest=digest))
    _current(registry, ref, digest)  # [TAG-4] read again right before the DELETE
    try:
        registry.manifest_delete(ref)  # [TAG-1] the spec's tag delete
    except DeleteUnsupportedError as refused:
        _via_placeholder(registry, ref, original, refused)
        return UntagResult(ref, digest, Removal.PLACEHOLDER, needed_by)
    except RegistryError as exc:
        if exc.status != 404:
            raise
        # someone removed the tag between the HEAD and the DELETE
        raise SourceNotFoundError(f"{ref}: the tag went meanwhile (the DELETE answered 404)") from exc
    restored = _keep_manifest(registry, ref, original)
    return UntagResult(ref, digest, Removal.DELETED, needed_by, restored)


def _keep_manifest(registry: Registry, ref: Reference, original: Document[Any]) -> bool:
    """[TAG-1] After a tag DELETE, the manifest must still be there; put it back if not (old zot)."""
    by_digest = attrs.evolve(ref, tag=None, digest=original.descriptor.digest)
    if registry.manifest_head(by_digest) is not None:
        return False
    try:
        registry.manifest_put(by_digest, original)
    except OcimergeError as exc:
        raise RegistryError(
            f"{registry.host} deleted the manifest {by_digest.digest} along with the tag {ref.tag} and putting it "
            f"back failed ({exc}): push the image {by_digest.digest} to {ref.name} again"
        ) from exc
    return True


def _current(registry: Registry, ref: Reference, expected: Digest | None) -> Digest:
    """The digest the tag names now; [TAG-4] it must be ``expected`` when that is given."""
    found = registry.manifest_head(ref)
    if found is None:
        raise SourceNotFoundError(f"{ref}: no such tag in {registry.host}/{ref.repository}")
    if expected is not None and found.digest != expected:
        raise TagMovedError(
            f"{ref} names {found.digest} now, not {expected} as when it was read: "
            "someone pushed since; nothing was removed"
        )
    return found.digest


def _forced_needers(registry: Registry, ref: Reference, digest: Digest, request: _Untag) -> tuple[str, ...]:
    """[TAG-3] With ``force`` the check only informs: any failure of it (a cap, a registry
    refusing the tag list) means "no needers known", never a refusal."""
    try:
        return _needers(registry, ref, digest, request)
    except (TagNeededError, RemoteError):
        return ()


def _needers(registry: Registry, ref: Reference, digest: Digest, request: _Untag) -> tuple[str, ...]:
    """[TAG-3] The tags of indexes needing ``digest`` when ``ref`` is its last tag (raising unless forced)."""
    repo = ref.repository
    tags = registry.tags(repo, limit=MAX_CHECKED_TAGS)
    if len(tags) > MAX_CHECKED_TAGS:
        raise TagNeededError(
            f"{ref.name} has more than {MAX_CHECKED_TAGS} tags: cannot check whether an index needs "
            f"{ref}; {_PASS_FORCE}"
        )
    # manifest_head learns a media type the HEAD did not send from the bytes: an index is an index
    heads = {t: registry.manifest_head(attrs.evolve(ref, tag=t)) for t in tags if t != ref.tag}
    if any(h is not None and h.digest == digest for h in heads.values()):
        return ()  # another tag keeps the manifest tagged
    reader = _IndexReader(registry, ref)
    needers = tuple(
        f"{repo}:{t}"
        for t, h in heads.items()
        if h is not None and h.media_type in _INDEXES and h.digest not in request.allowed
        if reader.lists(h.digest, digest)
    )
    if needers and not request.force:
        raise TagNeededError(
            f"{ref} is the last tag of {digest} {_which_list(needers)}; clean-up jobs "
            f"that delete untagged manifests would break {_first_three(needers)}; {_PASS_FORCE}"
        )
    return needers


def _first_three(needers: Sequence[str]) -> str:
    """[TAG-3] Up to three index tags, and how many more."""
    more = f" and {len(needers) - 3} more" if len(needers) > 3 else ""
    return ", ".join(needers[:3]) + more


def _which_list(needers: Sequence[str]) -> str:
    """[TAG-3] "which the index at A lists" or "which the indexes at A, B list" (up to three named)."""
    if len(needers) == 1:
        return f"which the index at {needers[0]} lists"
    return f"which the indexes at {_first_three(needers)} list"


class _IndexReader:
    """[TAG-3] Whether an index lists a digest, nested indexes included; each index read once."""

    def __init__(self, registry: Registry, ref: Reference) -> None:
        self.registry = registry
        self.ref = ref
        self.children: dict[Digest, tuple[Descriptor, ...]] = {}

    def _read(self, index: Digest) -> tuple[Descriptor, ...]:
        if index not in self.children:
            if len(self.children) >= MAX_CHECKED_INDEXES:
                raise TagNeededError(
                    f"{self.ref.name}: more than {MAX_CHECKED_INDEXES} indexes to read to check {self.ref.tag}; "
                    + _PASS_FORCE
                )
            self.children[index] = ()  # a cycle ends here
            value = self.registry.manifest_get(attrs.evolve(self.ref, tag=None, digest=index)).value
            self.children[index] = tuple(value.manifests) if isinstance(value, ImageIndex) else ()
        return self.children[index]

    def lists(self, index: Digest, digest: Digest, depth: int = 0) -> bool:
        entries = self._read(index)
        if any(e.digest == digest for e in entries):
            return True
        nested = (e for e in entries if e.media_type in _INDEXES and e.digest not in self.children)
        return depth < 8 and any(self.lists(e.digest, digest, depth + 1) for e in nested)


# -- [TAG-2] the placeholder fallback -------------------------------------------------------


def _placeholder(purpose: str) -> Document[Any]:
    """A unique throwaway manifest: an empty OCI artifact, a random annotation making it unique."""
    created = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = ImageManifest(
        config=_EMPTY_DESCRIPTOR,
        layers=(_EMPTY_DESCRIPTOR,),
        artifact_type=PLACEHOLDER_TYPE,
        annotations={
            "org.opencontainers.image.created": created,
            "io.github.ocimerge.placeholder": f"{purpose} {uuid.uuid4()}",
        },
    )
    return Document.author(manifest)  # [DOC-1] the one canonical encoder for what we author


def _refusal(
    registry: Registry, ref: Reference, tag_answer: DeleteUnsupportedError, exc: DeleteUnsupportedError
) -> str:
    """[TAG-2] One line: what the registry answered to both deletes, and what to do."""
    return (
        f"{registry.host} deletes neither the tag {ref.tag} of {ref.repository} ({tag_answer.status} "
        f"{tag_answer.answered}) nor manifests by digest ({exc.status} {exc.answered}); enable deletion "
        "(CNCF Distribution: storage.delete.enabled: true) or remove the tag in the registry's UI or API; "
        "the tag is unchanged"
    )


def _deletes_nothing(registry: Registry, ref: Reference, refused: DeleteUnsupportedError) -> None:
    """[TAG-2] The probe that writes nothing: ``DELETE`` of a digest no manifest has.

    A registry with deletion off refuses it (Distribution checks that before looking: 405
    ``UNSUPPORTED``), which ends the untag with nothing written; 404 (or a 2xx) says deletes
    are served, which the throwaway probe then confirms.
    """
    nothing = attrs.evolve(ref, tag=None, digest=Digest.of(f"ocimerge probe {uuid.uuid4()}".encode()))
    try:
        registry.manifest_delete(nothing)
    except DeleteUnsupportedError as exc:
        raise DeleteUnsupportedError(
            _refusal(registry, ref, refused, exc), status=exc.status, url=exc.url, answered=exc.answered
        ) from exc
    except RegistryError as exc:
        if exc.status != 404:  # any 404, with or without MANIFEST_UNKNOWN in a body
            raise


def _via_placeholder(
    registry: Registry, ref: Reference, original: Document[Any], refused: DeleteUnsupportedError
) -> None:
    """[TAG-2] Remove ``ref`` without touching ``original`` (what it names): probes, then regclient's method.

    A DELETE of a digest nobody has shows, writing nothing, a registry that refuses every
    delete; then a throwaway pushed by digest and deleted shows that the registry really
    deletes manifests; only then is a second throwaway put to the tag (which then names it
    alone) and deleted by digest, which takes the tag with it. [TAG-4] The tag is read again
    just before it is moved, so a push in between is not undone. Anything failing once the
    tag was moved puts ``original``'s bytes back under it and raises, saying so.
    """
    _deletes_nothing(registry, ref, refused)
    repo = ref.repository
    if registry.blob_exists(repo, _EMPTY_DESCRIPTOR.digest) is None:
        registry.upload(repo, Blob.from_bytes(_EMPTY_DESCRIPTOR, _EMPTY, "the empty descriptor"))
    probe = _placeholder("probe")
    probe_ref = attrs.evolve(ref, tag=None, digest=probe.descriptor.digest)
    registry.manifest_put(probe_ref, probe)
    try:
        registry.manifest_delete(probe_ref)
    except DeleteUnsupportedError as exc:
        message = _refusal(registry, ref, refused, exc) + f" (the untagged probe manifest {probe_ref.digest} stays)"
        raise DeleteUnsupportedError(message, status=exc.status, url=exc.url, answered=exc.answered) from exc
    _current(registry, ref, original.descriptor.digest)
    stand_in = _placeholder(f"stand-in for {ref.tag}")
    registry.manifest_put(ref, stand_in)
    try:
        registry.manifest_delete(attrs.evolve(ref, tag=None, digest=stand_in.descriptor.digest))
    except OcimergeError as exc:
        if _still_tagged(registry, ref):  # else the DELETE went through and its answer was lost
            _restore(registry, ref, original, stand_in.descriptor.digest, exc)
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM in the one moment the tag names the stand-in: put it back, then stop
        with contextlib.suppress(OcimergeError):
            if _still_tagged(registry, ref):
                registry.manifest_put(ref, original)
        raise


def _still_tagged(registry: Registry, ref: Reference) -> bool:
    """Whether the tag still exists (True too when that cannot be read: then it is restored)."""
    try:
        return registry.manifest_head(ref) is not None
    except OcimergeError:
        return True


def _restore(registry: Registry, ref: Reference, original: Document[Any], stand_in: Digest, why: OcimergeError) -> None:
    """[TAG-2] The stand-in's DELETE failed: put the original bytes back under the tag, then raise."""
    digest = original.descriptor.digest
    try:
        registry.manifest_put(ref, original)
    except OcimergeError as exc:
        raise RegistryError(
            f"{ref}: deleting the placeholder {stand_in} failed ({printable(str(why))}) and so did putting "
            f"{digest} back ({printable(str(exc))}); {ref} now names placeholder {stand_in}; restore it with "
            f"`ocimerge tag {ref.name}@{digest} {ref.tag}`"
        ) from exc
    raise RegistryError(
        f"{ref}: deleting the placeholder {stand_in} failed ({printable(str(why))}); the tag was restored "
        f"to {digest} (nothing removed; the untagged placeholder may stay)"
    ) from why


# -- [TAG-6] untag_sources ------------------------------------------------------------------


def _confirm(pool: RegistryPool, merged: Iterable[tuple[Reference, Digest]]) -> None:
    """Every merged tag names the digest pushed, or nothing is removed."""
    for ref, digest in merged:
        found = pool.get(ref.registry).manifest_head(ref)
        if found is None or found.digest != digest:
            now = found.digest if found is not None else "nothing"
            raise TagMovedError(f"{ref} names {now}, not the {digest} just pushed: no source tag was removed")


def _one_source(
    registry: Registry, ref: Reference, digest: Digest, targets: set[str], allowed: frozenset[Digest]
) -> UntagOutcome:
    if ref.digest is not None or not ref.tag:
        return UntagOutcome(ref, digest, UntagStatus.NOT_A_TAG, f"{ref}: given by digest, no tag to remove")
    if str(attrs.evolve(ref, digest=None)) in targets:
        return UntagOutcome(ref, digest, UntagStatus.TARGET, f"{ref} is a merged tag: kept")
    try:
        result = _untag(registry, _Untag(ref, digest, allowed=allowed))
    except TagMovedError as exc:
        return UntagOutcome(ref, digest, UntagStatus.MOVED, f"kept {ref}: {exc}")
    except TagNeededError as exc:
        # [TAG-6] create --force means overwrite -o: the way past the check is untag's own
        note = str(exc).replace(_PASS_FORCE, f"run `ocimerge untag --force {ref}` to remove it anyway")
        return UntagOutcome(ref, digest, UntagStatus.NEEDED, f"kept {ref}: {note}")
    except SourceNotFoundError:
        return UntagOutcome(ref, digest, UntagStatus.GONE, f"{ref} is gone already")
    return UntagOutcome(ref, digest, UntagStatus.REMOVED, f"removed the tag {ref} ({result.how.value})", result)


def untag_sources(
    pool_or_options: RegistryPool | RegistryOptions | None,
    sources: Sequence[tuple[Reference, Digest]],
    merged: Sequence[tuple[Reference, Digest]],
) -> tuple[UntagOutcome, ...]:
    """[TAG-6] ``create --untag-sources``: remove the source tags once the merged tags are confirmed.

    ``sources`` are the registry sources with the root digest read at the start; ``merged``
    the tags pushed with the index digest. Each merged tag is read first and must name its
    digest, else :class:`TagMovedError` and nothing is removed. Then each source tag is
    untagged only while it names its digest ([TAG-4]: a moved tag is kept, an outcome says
    so); the merged indexes do not count as needing their children ([TAG-3]); a source that is
    a merged tag is never removed. Errors other than those outcomes are raised.
    """
    own = not isinstance(pool_or_options, RegistryPool)
    pool = RegistryPool(pool_or_options) if not isinstance(pool_or_options, RegistryPool) else pool_or_options
    try:
        _confirm(pool, merged)
        targets = {str(attrs.evolve(r, digest=None)) for r, _ in merged}
        allowed = frozenset(d for _, d in merged)
        return tuple(_one_source(pool.get(r.registry), r, d, targets, allowed) for r, d in sources)
    finally:
        if own:
            pool.close()
