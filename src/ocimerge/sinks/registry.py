"""Pushing a publication to registries, as named steps in an order that is a guarantee.

[PUSH-1] Blobs first: each is *planned* (skip what the repository holds; mount what another
repository of the same registry holds; upload from a local source; copy from another
registry; leave a foreign layer alone), then *sent*, ``jobs`` at a time; each digest once.
[PUSH-2] Then child documents by digest, children before parents, each confirmed present;
then the root by digest; then each tag. A tag is never written before every document it
names is confirmed, so an interrupted push leaves no tag pointing at a broken index, and
running it again uploads only what is missing.
[PUSH-3] Progress is reported as events; the CLI draws them, the library may ignore them.
[PUSH-4] Targets are grouped by registry: one client per host. Within a registry, a
repository pushed after another mounts the blobs the first one received instead of
uploading them again, and blobs that came from that registry are mounted from their source.
[MSG-4] A repository whose push fails does not stop the others: each is tried, and its
failure is kept as a :class:`PushFailure` beside the others' results (never tagged).
[PUSH-5] Ctrl-C (any ``KeyboardInterrupt`` in the thread running the push) stops it at
once: nothing new starts, the uploads in flight abandon their bodies, their threads end, and
the interrupt is raised again; no document or tag is written after it.
[RESUME-1] Each upload's session is kept in the upload journal after every chunk, so the
same push run again continues it where the registry holds it; the entry goes once the blob
is in.
[CARRY-1] The publication's referrers (signatures, SBOMs, attestations) are put after the
root and before any tag, each after its subject, exactly as they were read; [CARRY-2]
[CARRY-3] keep the referrers API or its fallback tag, and cosign's tags, up to date.

The steps follow go-containerregistry's ``remote/write.go`` (check existing, initiate,
stream, commit): :func:`plan_blob` is pure, ``_BlobPush.send`` does one blob,
:func:`put_documents` and :func:`put_tags` the rest, and :func:`push_repository` composes
them in the order above.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import attrs

from ocimerge.content import Blob, Referrer
from ocimerge.errors import (
    BlobMissingError,
    DigestMismatchError,
    DocumentError,
    InputError,
    OcimergeError,
    RegistryError,
    TagMovedError,
    UsageError,
)
from ocimerge.events import BlobAction, EventCallback, PushEvent, PushEventKind
from ocimerge.events import plan as plan_events
from ocimerge.model import mediatype as mt
from ocimerge.model.codec import decode_json, encode_json
from ocimerge.model.descriptor import Annotations, Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageManifest
from ocimerge.model.reference import Reference
from ocimerge.model.referrers import referrer_descriptor
from ocimerge.registry.api import Mounted, Registry, RegistryOptions, RegistryPool
from ocimerge.registry.challenge import Scope
from ocimerge.registry.referrers import put_manifest_with_subject, update_fallback_tag
from ocimerge.registry.upload import Checkpoint, StopFlag, UploadHooks, UploadSession, UploadStopped
from ocimerge.sinks.core import Publication, unique_blobs
from ocimerge.sinks.journal import JournalEntry, UploadJournal, default_journal

__all__ = [
    "BlobAction",
    "BlobPlan",
    "Destination",
    "PushEvent",
    "PushEventKind",
    "PushFailure",
    "PushOptions",
    "PushOutcome",
    "PushResult",
    "RegistrySink",
    "merge_cosign_manifest",
    "parse_target",
    "plan_blob",
    "push_repository",
    "put_referrers",
    "uploads_in_flight",
]

#: [PUSH-5] Seconds an interrupted push waits for its uploads to abandon their bodies; a worker
#: stuck in a network read past this is left behind (the CLI then exits without joining it).
STOP_GRACE = 2.0


class _InFlight:
    """[PUSH-5] How many blob bodies are being sent in this process, for the Ctrl-C notice.

    Process-wide on purpose: a signal interrupts the process, not one push, so the notice
    counts every push's uploads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def add(self, n: int) -> None:
        with self._lock:
            self._count += n

    @property
    def count(self) -> int:
        with self._lock:
            return self._count


_IN_FLIGHT = _InFlight()


def uploads_in_flight() -> int:
    """[PUSH-5] Blobs whose bodies are being sent right now, in every push of this process."""
    return _IN_FLIGHT.count


@attrs.frozen
class BlobPlan:
    """What a push did (or, in a dry run, would do) with one blob.

    ``source`` names where a mount or copy takes it from (``host/repository`` for a copy,
    the repository for a mount).
    """

    digest: Digest
    size: int
    action: BlobAction
    source: str | None = None


@attrs.frozen
class PushOptions:
    """How to push: registry settings, blobs at once, progress, or only a plan (``dry_run``).

    ``journal`` keeps where interrupted uploads stand, so that the same push run again
    continues them [RESUME-1]; by default the user's state directory, None for none.
    """

    registry: RegistryOptions = attrs.field(factory=RegistryOptions)
    jobs: int = 4
    dry_run: bool = False
    on_event: EventCallback | None = attrs.field(default=None, eq=False)
    #: [RESUME-1] where interrupted uploads are kept for the next run; None keeps nothing
    journal: UploadJournal | None = attrs.field(factory=default_journal, eq=False)

    def __attrs_post_init__(self) -> None:
        """Check ``jobs`` here, not in the CLI, so library callers get the same ``UsageError``."""
        if self.jobs < 1:
            raise UsageError("--jobs must be at least 1")

    def emit(self, event: PushEvent) -> None:
        """[PUSH-3] Hand ``event`` to ``on_event``; called from the push worker threads, so
        the callback must be thread-safe (the CLI's progress display locks)."""
        if self.on_event is not None:
            self.on_event(event)


@attrs.frozen
class PushResult:
    """The outcome of a push to one repository; ``notes`` (resumed uploads, refused mounts) for stderr.

    ``referrers_pushed`` counts the referrers put by digest ([CARRY-1]; in a dry run, those
    that would be), not the fallback indexes or cosign tags written for them.
    """

    registry: str
    repository: str
    root: Descriptor
    blobs: tuple[BlobPlan, ...]
    manifests_pushed: int
    manifests_skipped: int
    tags: tuple[str, ...]
    dry_run: bool = False
    notes: tuple[str, ...] = ()
    referrers_pushed: int = 0

    @property
    def bytes_uploaded(self) -> int:
        """Bytes sent to the registry: uploads from local sources and copies from other registries."""
        return sum(b.size for b in self.blobs if b.action in (BlobAction.UPLOAD, BlobAction.COPY))

    def count(self, action: BlobAction) -> int:
        """How many distinct blobs were handled by ``action``."""
        return sum(1 for b in self.blobs if b.action is action)

    def to_json(self) -> dict[str, Any]:
        """The result as ``--json`` prints it under ``pushed``: counts, not per-blob plans."""
        return {
            "registry": self.registry,
            "repository": self.repository,
            "digest": str(self.root.digest),
            "mediaType": self.root.media_type,
            "tags": list(self.tags),
            "dryRun": self.dry_run,
            "blobs": {
                "uploaded": self.count(BlobAction.UPLOAD),
                "copied": self.count(BlobAction.COPY),
                "mounted": self.count(BlobAction.MOUNT),
                "skipped": self.count(BlobAction.SKIP),
                "bytesUploaded": self.bytes_uploaded,
            },
            "manifests": {"pushed": self.manifests_pushed, "skipped": self.manifests_skipped},
            "referrers": self.referrers_pushed,
        }


@attrs.frozen
class PushFailure:
    """[MSG-4] A push to one repository that failed: where, the tags left unwritten, and why.

    ``error`` is what the push raised (an :class:`~ocimerge.errors.OcimergeError`, its
    message one line); nothing was tagged in that repository.
    """

    registry: str
    repository: str
    tags: tuple[str, ...]
    error: OcimergeError = attrs.field(eq=False)

    def to_json(self) -> dict[str, Any]:
        """The failure as ``--json`` prints it under ``errors`` (the CLI adds ``exitCode``)."""
        return {
            "registry": self.registry,
            "repository": self.repository,
            "tags": list(self.tags),
            "error": type(self.error).__name__,
            "message": str(self.error),
        }


#: [MSG-4] What a push to one repository came to: its result, or its failure.
PushOutcome = PushResult | PushFailure


def parse_target(text: str) -> Reference:
    """``-t``: ``[docker://]REGISTRY/REPO[:TAG]`` (the tag defaults to latest), never a digest."""
    reference = Reference.parse(text.removeprefix("docker://"))
    if reference.digest is not None:
        raise UsageError(f"{text}: push to a tag, not a digest (the digest is the content's own)")
    return reference


# -- blobs ----------------------------------------------------------------------------------


def plan_blob(blob: Blob, *, held: bool, host: str, repository: str, mount_from: str | None) -> BlobPlan:
    """[PUSH-1] What to do with ``blob`` for ``host/repository``; pure.

    ``held`` is whether the repository already has it, ``mount_from`` another repository
    of the same registry that has it (or None).
    """
    digest, size = blob.digest, blob.descriptor.size
    if held:
        return BlobPlan(digest, size, BlobAction.SKIP)
    if not blob.available:
        if mt.is_foreign_layer(blob.descriptor.media_type):
            return BlobPlan(digest, size, BlobAction.FOREIGN)
        raise BlobMissingError(f"{blob.where}: blob {digest} is neither in the source nor in {host}/{repository}")
    if mount_from is not None and mount_from != repository:
        return BlobPlan(digest, size, BlobAction.MOUNT, mount_from)
    origin = blob.origin
    if origin is not None and origin.registry != host:
        return BlobPlan(digest, size, BlobAction.COPY, str(origin))  # streamed across registries
    return BlobPlan(digest, size, BlobAction.UPLOAD)


def _progress(digest: Digest, size: int, options: PushOptions) -> Callable[[int], None]:
    """A callback that turns bytes sent (from several upload threads) into progress events."""
    lock = threading.Lock()
    sent = [0]

    def progress(n: int) -> None:
        with lock:
            sent[0] += n
            done = sent[0]
        options.emit(PushEvent(PushEventKind.PROGRESS, digest, size, done))

    return progress


@attrs.frozen
class Destination:
    """One repository a push goes to: its registry client, the tags to write, mount sources.

    ``mount_from`` maps a blob digest to another repository of the same registry that holds
    it [PUSH-4]. ``expected`` maps a tag to the digest it must still name when it is written
    (None: it must not exist), for a read-modify-write such as ``--append`` ([INDEX-9]).
    """

    registry: Registry = attrs.field(eq=False)
    target: Reference
    tags: tuple[str, ...] = ()
    mount_from: Mapping[Digest, str] = attrs.field(factory=dict, eq=False)
    expected: Mapping[str, Digest | None] = attrs.field(factory=dict, eq=False)

    @property
    def repository(self) -> str:
        """The repository path within the registry (``team/app``)."""
        return self.target.repository


class _BlobPush:
    """The blobs of one repository's push, sent from worker threads: what they share.

    The stop flag [PUSH-5] (owned by this push, so a re-used :class:`PushOptions` is never
    left stopped), the upload journal [RESUME-1], and the notes the uploads leave (resumes,
    refused mounts), collected under a lock.
    """

    def __init__(self, destination: Destination, options: PushOptions) -> None:
        self.destination = destination
        self.options = options
        self.stop = StopFlag()
        self._lock = threading.Lock()
        self._notes: list[str] = []
        self._refused: dict[tuple[str, int], int] = {}

    def note(self, text: str) -> None:
        """Keep one line for the push's result."""
        with self._lock:
            self._notes.append(text)

    def notes(self) -> tuple[str, ...]:
        """The notes, refused mounts summed up per source repository and status."""
        with self._lock:
            refused = [
                f"{n} cross-repository mount{'s' if n > 1 else ''} from {source} refused ({status}); uploaded instead"
                for (source, status), n in self._refused.items()
            ]
            return (*self._notes, *refused)

    def one(self, blob: Blob) -> BlobPlan:
        """Plan one blob against the registry (one HEAD), then send it unless this is a dry run.

        [PUSH-5] Raises :class:`~ocimerge.registry.upload.UploadStopped` instead of starting
        once the stop flag is set.
        """
        destination, options = self.destination, self.options
        registry, repository = destination.registry, destination.repository
        if self.stop.is_set():  # a worker that picked the blob up just before the stop
            raise UploadStopped("push stopped")
        held = registry.blob_exists(repository, blob.digest) is not None
        mount_from = destination.mount_from.get(blob.digest)
        plan = plan_blob(blob, held=held, host=registry.host, repository=repository, mount_from=mount_from)
        if plan.action is BlobAction.SKIP:
            if not options.dry_run:
                self._forget(blob.digest)  # in, by whatever route
            options.emit(PushEvent(PushEventKind.DONE, plan.digest, plan.size, plan.size, BlobAction.SKIP))
        if options.dry_run:
            return plan
        return self.send(blob, plan)

    def send(self, blob: Blob, plan: BlobPlan) -> BlobPlan:
        """[PUSH-1] Carry out ``plan``: mount, or upload (into the session a refused mount opened).

        Returns what was done: a mount the registry refuses becomes an upload [API-6].
        The upload verifies the blob as it streams ([API-5]), so a corrupt source raises
        ``DigestMismatchError`` before the registry commits the blob. [PUSH-5] Once the stop
        flag is set the body raises :class:`~ocimerge.registry.upload.UploadStopped` before its
        next chunk. [RESUME-3] The journal keeps where the upload stands, and an upload an
        earlier run left is continued (rather than a mount asked for again: an earlier run
        uploaded this blob, so its mount was refused then).
        """
        registry, repository = self.destination.registry, self.destination.repository
        digest, size = plan.digest, plan.size
        if plan.action not in (BlobAction.MOUNT, BlobAction.UPLOAD, BlobAction.COPY):
            if plan.action is BlobAction.FOREIGN:  # [PROGRESS-2] planned like any blob, so done like any
                self.options.emit(PushEvent(PushEventKind.DONE, digest, size, size, plan.action))
            return plan
        checkpoint = self._checkpoint(blob)
        resuming = checkpoint is not None and checkpoint.resume is not None
        session = None
        if plan.action is BlobAction.MOUNT and plan.source is not None and not resuming:
            started = registry.start_upload(repository, mount=digest, source=plan.source)
            if isinstance(started, Mounted):
                self._forget(digest)
                self.options.emit(PushEvent(PushEventKind.DONE, digest, size, size, BlobAction.MOUNT))
                return plan
            session = started  # [API-6] refused: upload into the session it opened
            self._refusal(plan.source, started.refused or 202)
        self.options.emit(PushEvent(PushEventKind.START, digest, size))
        progress = _progress(digest, size, self.options)
        _IN_FLIGHT.add(1)
        try:
            registry.upload(repository, blob, session, UploadHooks(progress, checkpoint, self.stop))
        except DigestMismatchError:
            self._forget(digest)  # the source is corrupt: what was sent of it is worth nothing
            raise
        finally:
            _IN_FLIGHT.add(-1)
        self._forget(digest)  # [RESUME-1] done: nothing to resume
        action = BlobAction.COPY if plan.action is BlobAction.COPY else BlobAction.UPLOAD
        self.options.emit(PushEvent(PushEventKind.DONE, digest, size, size, action))
        # report what really happened: a refused mount was paid for as an upload
        return plan if plan.action is not BlobAction.MOUNT else BlobPlan(digest, size, BlobAction.UPLOAD)

    def _refusal(self, source: str, status: int) -> None:
        """Count a refused mount, for one note per source repository and status."""
        with self._lock:
            self._refused[(source, status)] = self._refused.get((source, status), 0) + 1

    def _forget(self, digest: Digest) -> None:
        """[RESUME-1] The blob is in the repository (or worthless): drop its journal entry."""
        if self.options.journal is not None:
            self.options.journal.forget(self.destination.registry.host, self.destination.repository, digest)

    def _checkpoint(self, blob: Blob) -> Checkpoint | None:
        """[RESUME-1][RESUME-3] The journal's view of this upload: where an earlier run left it, and a recorder."""
        journal = self.options.journal
        if journal is None:
            return None
        registry, repository = self.destination.registry, self.destination.repository
        host, digest, size, origin = registry.host, blob.digest, blob.descriptor.size, registry.origin
        found = journal.find(host, repository, digest, size, origin)
        if found.note is not None:
            self.note(found.note)

        def record(session: UploadSession, stored: int) -> None:
            entry = JournalEntry(host, repository, digest, size, session.location, stored, session.min_chunk)
            if entry.origin == origin:  # [RESUME-2] a session elsewhere is never resumed, so never kept
                journal.record(entry)

        entry = found.entry
        resume = UploadSession(entry.location, entry.min_chunk) if entry is not None else None
        return Checkpoint(record, self.note, resume)


def push_blobs(
    destination: Destination, blobs: Sequence[Blob], options: PushOptions
) -> tuple[tuple[BlobPlan, ...], tuple[str, ...]]:
    """[PUSH-1] Every blob, ``options.jobs`` at a time; the first failure stops what has not started.

    Returns what was done with each blob, and the notes the uploads left (resumed uploads,
    refused mounts). [PUSH-5] A ``KeyboardInterrupt`` (or ``SystemExit``) while waiting also
    stops the uploads in flight: their bodies raise at the next chunk, their threads are
    waited for up to :data:`STOP_GRACE` seconds, and the interrupt is raised again.
    """
    push = _BlobPush(destination, options)
    if not options.dry_run:  # [PROGRESS-2] the totals, before the first HEAD
        plan_events(options.on_event, blobs)
    pool = ThreadPoolExecutor(max_workers=options.jobs, thread_name_prefix="ocimerge-push")
    futures: list[Future[BlobPlan]] = []
    try:
        futures.extend(pool.submit(push.one, b) for b in blobs)
        plans = tuple(f.result() for f in futures)
    except Exception:
        # an error stops only queued blobs; running ones finish, and since no document or
        # tag has been written yet, a re-run skips what got through
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    except BaseException:
        _stop(pool, futures, push.stop)
        raise
    pool.shutdown(wait=True)
    return plans, push.notes()


def _stop(pool: ThreadPoolExecutor, futures: Sequence[Future[BlobPlan]], stop: StopFlag) -> None:
    """[PUSH-5] Cancel what is queued, make running uploads abandon their bodies, wait briefly.

    [RESUME-4] A chunk in flight gets ``CHUNK_GRACE`` to finish first, so the session the
    journal keeps stays resumable; uploads stopped part-way leave their sessions open in the
    registry, for the next run to continue (or for the registry to expire).
    """
    stop.set()
    pool.shutdown(wait=False, cancel_futures=True)
    running = [f for f in futures if not f.done()]
    wait(running, timeout=STOP_GRACE)
    for future in running:
        if future.done() and not future.cancelled():
            future.exception()  # UploadStopped, expected: retrieved so it is never logged


# -- documents and tags ------------------------------------------------------------------------


def check_required(registry: Registry, target: Reference, publication: Publication) -> None:
    """[PUSH-2] Entries the source lacks must already be in the repository, or nothing is tagged."""
    # run before any blob is sent: a push that cannot end in a tag should cost nothing
    held = {d.descriptor.digest for d in publication.documents}
    for descriptor in publication.required:
        if descriptor.digest in held or registry.manifest_head(_by_digest(target, descriptor.digest)) is not None:
            continue
        platform = f" ({descriptor.platform})" if descriptor.platform else ""
        raise BlobMissingError(
            f"{registry.host}/{target.repository}: the index names {descriptor.digest}{platform}, which is neither "
            "in the source nor in the repository; refusing to tag an index whose children are missing"
        )


def put_documents(
    registry: Registry, target: Reference, documents: Sequence[Document[Any]], *, dry_run: bool
) -> tuple[int, int]:
    """[PUSH-2] Documents by digest, in order, each once; returns (pushed, already there)."""
    pushed = skipped = 0
    seen: set[Digest] = set()
    for document in documents:
        digest = document.descriptor.digest
        if digest in seen:
            continue
        seen.add(digest)
        by_digest = _by_digest(target, digest)
        # HEAD first: a re-run after an interruption sends only what is missing ([PUSH-2])
        if registry.manifest_head(by_digest) is not None:
            skipped += 1
            continue
        if not dry_run:
            registry.manifest_put(by_digest, document)
        pushed += 1
    return pushed, skipped


def put_tags(
    registry: Registry,
    target: Reference,
    root: Document[Any],
    tags: Sequence[str],
    expected: Mapping[str, Digest | None] | None = None,
) -> tuple[str, ...]:
    """[PUSH-2] Point each tag at the root, last of all; a tag already there is left alone.

    [INDEX-9] A tag in ``expected`` must still name that digest (None: must not exist), read
    just before the first tag is written: otherwise :class:`TagMovedError` and no tag is
    written, so an append never overwrites an entry someone pushed since it read the tag.
    """
    current = {tag: registry.manifest_head(attrs.evolve(target, tag=tag, digest=None)) for tag in tags}
    for tag, wanted in (expected or {}).items():
        found = current.get(tag)
        now = found.digest if found is not None else None
        if tag in current and now not in (wanted, root.descriptor.digest):
            raise TagMovedError(
                f"{target.registry}/{target.repository}:{tag} names {now or 'nothing'} now, not "
                f"{wanted or 'nothing'} as when --append read it: someone pushed since; no tag was "
                f"written (the new index {root.descriptor.digest} is stored untagged); run again to "
                "append to what it names now"
            )
    for tag in tags:
        found = current[tag]
        # an identical PUT would still count as a push (registry notifications, audit logs)
        if found is None or found.digest != root.descriptor.digest:
            registry.manifest_put(attrs.evolve(target, tag=tag, digest=None), root)
    return tuple(tags)


def _by_digest(target: Reference, digest: Digest) -> Reference:
    """``target``'s repository addressed by ``digest``: how every non-tag document is put."""
    return Reference(target.registry, target.repository, digest=digest)


def push_repository(destination: Destination, publication: Publication, options: PushOptions) -> PushResult:
    """[PUSH-1][PUSH-2][CARRY-1] One repository: check, blobs, child documents, root, referrers, then tags."""
    registry, target, repository = destination.registry, destination.target, destination.repository
    registry.ping()  # [API-1] fail on a non-registry before asking for any token
    # [AUTH-3] declare every scope up front: one token then covers the blobs and the mounts
    registry.want(Scope.repository(repository, "pull", "push"))
    if sources := {s for s in destination.mount_from.values() if s != repository}:
        registry.want(*(Scope.repository(s, "pull") for s in sorted(sources)))
    check_required(registry, target, publication)
    plans, notes = push_blobs(destination, tuple(unique_blobs(publication.blobs)), options)  # each digest once
    pushed, skipped = put_documents(registry, target, publication.documents, dry_run=options.dry_run)
    written = destination.tags
    # the root after its children (a dry run asks for it too, so its plan counts what the real
    # run writes); then referrers and tags, which a dry run only plans
    root_pushed, root_skipped = put_documents(registry, target, [publication.root], dry_run=options.dry_run)
    pushed, skipped = pushed + root_pushed, skipped + root_skipped
    # [CARRY-1] the referrers before the tags: a policy engine that checks signatures never
    # sees a tag whose signature is not there yet
    carried, carry_notes = put_referrers(registry, target, publication.referrers, dry_run=options.dry_run)
    if not options.dry_run:
        written = put_tags(registry, target, publication.root, destination.tags, destination.expected)
    return PushResult(
        registry=registry.host,
        repository=repository,
        root=publication.root.descriptor,
        blobs=plans,
        manifests_pushed=pushed,
        manifests_skipped=skipped,
        tags=written,
        dry_run=options.dry_run,
        notes=(*notes, *carry_notes),
        referrers_pushed=carried,
    )


# -- referrers ---------------------------------------------------------------------------------

#: [CARRY-4] What cosign calls the layers under each tag suffix, for the merge's note.
_COSIGN_NOUNS = {"sig": "signature", "att": "attestation", "sbom": "SBOM"}
#: [CARRY-4] The history entry go-containerregistry's ``mutate.Append`` adds for a layer
#: appended without one (a zero ``v1.History``), as cosign's signature configs hold.
_ZERO_HISTORY = {"created": "0001-01-01T00:00:00Z"}
#: [CARRY-4] [SEC-8] The largest config read for a merge (a signature image's is ~300 bytes).
_MAX_CONFIG = 4 * 1024 * 1024


def put_referrers(
    registry: Registry, target: Reference, referrers: Sequence[Referrer], *, dry_run: bool
) -> tuple[int, tuple[str, ...]]:
    """[CARRY-1] Each referrer by digest, in order (each after its subject), each digest once.

    A referrer the repository holds already (``HEAD`` by digest) is not put again, but its
    fallback-tag entry and cosign tag are still checked, so a re-run completes what an
    interrupted one left [CARRY-5]. Returns the referrers put (in a dry run: that would be,
    nothing written) and notes: a fallback tag or cosign tag that holds something else is
    left as it is and noted, never a failed push, since the referrer itself is stored by
    digest.
    """
    pushed = 0
    notes: list[str] = []
    seen: set[Digest] = set()
    # [CARRY-5] whether the repository has the referrers API, learnt from the first referrer
    # a re-run finds stored: the others then cost no probe of their own
    has_api: list[bool] = []
    for referrer in referrers:
        if referrer.digest in seen:
            continue
        seen.add(referrer.digest)
        by_digest = _by_digest(target, referrer.digest)
        held = registry.manifest_head(by_digest) is not None
        if dry_run:
            pushed += not held
            continue
        if held:
            notes += _ensure_listed(registry, target.repository, referrer, has_api)
        else:
            notes += _put_referrer(registry, by_digest, referrer)
            pushed += 1
        if referrer.tag is not None:
            notes += _put_cosign_tag(registry, attrs.evolve(target, tag=referrer.tag, digest=None), referrer)
    return pushed, tuple(notes)


def _subject(document: Document[Any]) -> Descriptor | None:
    """The ``subject`` the document names, if any (Docker documents and cosign's have none)."""
    subject = getattr(document.value, "subject", None)
    return subject if isinstance(subject, Descriptor) else None


def _put_referrer(registry: Registry, by_digest: Reference, referrer: Referrer) -> list[str]:
    """[CARRY-2] PUT one referrer by digest; without ``OCI-Subject``, add it to the fallback tag."""
    document = referrer.document
    subject = _subject(document)
    if subject is None:
        registry.manifest_put(by_digest, document)
        return []
    # [CARRY-2] each answer is checked, never one registry's remembered: the spec asks it of
    # every PUT, and a registry may answer one repository differently from another
    if put_manifest_with_subject(registry, by_digest, document):
        return []
    return _add_to_fallback_tag(registry, by_digest.repository, subject.digest, document)


def _ensure_listed(registry: Registry, repository: str, referrer: Referrer, has_api: list[bool]) -> list[str]:
    """[CARRY-5] A referrer already stored: make sure it is listed, cheaply.

    The first one asks the referrers list: a registry with the API lists it itself (whatever
    the list says, nothing is ours to write there); without the API, the fallback tag read
    says whether it is listed, and only a missing entry is added. ``has_api`` holds the
    answer for the rest of the push, so later referrers go straight to the fallback tag
    (one GET, and a PUT only when the entry is missing), or cost nothing on a registry with
    the API.
    """
    subject = _subject(referrer.document)
    if subject is None or has_api == [True]:
        return []
    if has_api == [False]:
        return _add_to_fallback_tag(registry, repository, subject.digest, referrer.document)
    found = registry.referrers(repository, subject.digest)
    has_api.append(found.has_api)
    if found.has_api or any(d.digest == referrer.digest for d in found.descriptors):
        return []
    return _add_to_fallback_tag(registry, repository, subject.digest, referrer.document)


def _add_to_fallback_tag(registry: Registry, repository: str, subject: Digest, document: Document[Any]) -> list[str]:
    """[CARRY-2] [REFAPI-6] Add the referrer to the fallback tag of ``subject``, keeping its entries.

    A tag that holds something other than an OCI image index is left as it is with a note:
    the referrer is stored by digest all the same.
    """
    try:
        update_fallback_tag(registry, repository, subject, referrer_descriptor(document))
    except RegistryError as exc:
        # only "the tag holds no referrers index" (raised from a DocumentError) is a note; a
        # registry that fails the request fails the push as any other request would
        if not isinstance(exc.__cause__, DocumentError):
            raise
        return [f"{exc}; referrer {document.descriptor.digest} is stored by digest but not listed there"]
    return []


def _put_cosign_tag(registry: Registry, tagged: Reference, referrer: Referrer) -> list[str]:
    """[CARRY-3] Point cosign's tag at the referrer: PUT when absent, nothing when it is there.

    A different manifest under the tag (signatures made earlier, elsewhere) is merged with
    ours [CARRY-4]; once merged, a re-run finds every layer of ours listed and writes nothing.
    """
    current = registry.manifest_head(tagged)
    if current is None:
        registry.manifest_put(tagged, referrer.document)
        return []
    if current.digest == referrer.digest:
        return []
    there = registry.manifest_get(tagged)
    ours = referrer.document.value
    if not isinstance(there.value, ImageManifest) or not isinstance(ours, ImageManifest):
        kind = there.descriptor.media_type if not isinstance(there.value, ImageManifest) else "our referrer"
        return [f"{tagged}: holds {kind}, not an image manifest to merge into; left as it is"]
    listed = {_signature_key(d) for d in there.value.layers}
    added = [d for d in ours.layers if _signature_key(d) not in listed]
    if not added:
        return []  # merged already (a re-run): nothing to write
    try:
        target_config = _read_config(registry, tagged.repository, there.value.config)
        our_config = _our_config(referrer, ours.config)
        manifest, config = merge_cosign_manifest(there.value, target_config, ours, our_config)
    except InputError as exc:
        return [f"{tagged}: cannot merge into what the tag holds ({exc}); left as it is"]
    config_blob = Blob.from_bytes(manifest.config, config, f"merged config for {tagged}")
    if registry.blob_exists(tagged.repository, config_blob.digest) is None:
        registry.upload(tagged.repository, config_blob)
    merged: Document[ImageManifest] = Document.author(manifest)
    registry.manifest_put(tagged, merged)
    noun = _COSIGN_NOUNS.get((referrer.tag or "").rpartition(".")[2], "layer")
    plural = "" if len(added) == 1 else "s"
    return [f"merged {len(added)} {noun}{plural} into the {len(listed)} already under {tagged.tag}"]


def _read_config(registry: Registry, repository: str, descriptor: Descriptor) -> bytes:
    """[CARRY-4] The config blob of what the tag holds, verified and capped."""
    if descriptor.size > _MAX_CONFIG:
        raise DocumentError(f"its config is {descriptor.size} bytes, over {_MAX_CONFIG // (1024 * 1024)} MiB")
    with registry.open_blob(repository, descriptor) as reader:
        return reader.read()


def _our_config(referrer: Referrer, descriptor: Descriptor) -> bytes | None:
    """[CARRY-4] The referrer's own config, when the publication holds it (a small blob)."""
    for blob in referrer.blobs:
        if blob.digest == descriptor.digest and blob.available and descriptor.size <= _MAX_CONFIG:
            with blob.open() as reader:
                return reader.read()
    return None


def _signature_key(layer: Descriptor) -> tuple[Digest, Annotations]:
    """[CARRY-4] What makes a layer under cosign's tag the same signature: its payload *and*
    its annotations. Every signer of one digest signs the same payload bytes; the signature
    (and certificate, bundle) is in the annotations, so a digest alone would take a second
    key's signature for one already there."""
    return layer.digest, layer.annotations


def merge_cosign_manifest(
    target: ImageManifest, target_config: bytes, ours: ImageManifest, our_config: bytes | None = None
) -> tuple[ImageManifest, bytes]:
    """[CARRY-4] What cosign's tag holds once our signatures are appended to ``target``'s.

    As cosign's ``AppendSignatures`` (go-containerregistry's ``mutate.Append``): the layers
    are ``target``'s followed by those of ``ours`` not already listed (the same payload digest
    and annotations, so another key's signature of the same payload is appended), each
    descriptor as ours has it (its annotations carry the signature); the config is
    ``target``'s with ``rootfs.diff_ids`` and ``history`` extended by one entry per layer
    appended, taken from ``our_config`` at that layer's position when it has them, else the
    layer's digest (signature layers are not compressed) and a zero ``created``. Returns the
    manifest to author and the config's canonical bytes; its ``created`` is kept, not set to
    now. Raises :class:`DocumentError` when ``target_config`` is not a JSON object whose
    ``rootfs.diff_ids`` is a list.
    """
    config = decode_json(target_config, where="the config under cosign's tag")
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise DocumentError("the config under cosign's tag has no rootfs.diff_ids list")
    history = config.get("history")
    history = list(history) if isinstance(history, list) else []
    diff_ids, our_history = _our_diff_ids(our_config)
    listed = {_signature_key(d) for d in target.layers}
    added = []
    for position, layer in enumerate(ours.layers):
        if _signature_key(layer) in listed:
            continue
        listed.add(_signature_key(layer))
        added.append(layer)
        diff_id = diff_ids[position] if position < len(diff_ids) else str(layer.digest)
        rootfs["diff_ids"].append(diff_id)
        history.append(our_history[position] if position < len(our_history) else dict(_ZERO_HISTORY))
    config["history"] = history
    raw = encode_json(config)
    config_descriptor = Descriptor(target.config.media_type, Digest.of(raw), len(raw))
    return attrs.evolve(target, config=config_descriptor, layers=(*target.layers, *added)), raw


def _our_diff_ids(raw: bytes | None) -> tuple[list[Any], list[Any]]:
    """The ``rootfs.diff_ids`` and ``history`` of our signature's config; empty when unreadable."""
    if raw is None:
        return [], []
    try:
        value = decode_json(raw, where="our signature's config")
    except InputError:
        return [], []
    if not isinstance(value, dict):
        return [], []
    rootfs = value.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    history = value.get("history")
    return (
        list(diff_ids) if isinstance(diff_ids, list) else [],
        list(history) if isinstance(history, list) else [],
    )


# -- many targets ------------------------------------------------------------------------------


def _mount_sources(publication: Publication, host: str, repository: str, first: str | None) -> dict[Digest, str]:
    """[PUSH-4] Where in ``host`` each blob can be mounted from, for a push to ``repository``."""
    sources: dict[Digest, str] = {}
    for blob in publication.blobs:
        origin = blob.origin
        if origin is not None and origin.registry == host and origin.repository != repository:
            sources[blob.digest] = origin.repository  # it came from this registry
        elif first is not None and first != repository:
            sources[blob.digest] = first  # an earlier target of this run received it
    return sources


@attrs.frozen
class RegistrySink:
    """[SINK-6][PUSH-4] Registry targets as a sink: every repository of ``targets``, tagged."""

    targets: tuple[Reference, ...]
    pool: RegistryPool = attrs.field(eq=False)
    options: PushOptions = attrs.field(factory=PushOptions)
    #: [INDEX-9] target -> the digest its tag must still name when written (None: absent)
    expected: Mapping[Reference, Digest | None] = attrs.field(factory=dict, eq=False)

    def publish(self, publication: Publication) -> tuple[PushOutcome, ...]:
        """Push to each repository in turn, the tags of each written last; one outcome each.

        [MSG-4] Every repository is tried even when an earlier one failed: its outcome is then a
        :class:`PushFailure` (an :class:`~ocimerge.errors.OcimergeError` caught, nothing tagged
        there), in the order of the targets. Anything else (a bug, Ctrl-C) ends the run at once.
        """
        by_repository: dict[tuple[str, str], list[str]] = {}
        for target in self.targets:
            tags = by_repository.setdefault((target.registry, target.repository), [])
            # [PUSH-4] one push per repository; a tag named twice is written once, in order
            if target.tag and target.tag not in tags:
                tags.append(target.tag)
        outcomes: list[PushOutcome] = []
        first_repository: dict[str, str] = {}
        for (host, repository), tags in by_repository.items():
            # repositories are pushed one after another, so by the time the second starts the
            # first holds every blob it was sent and can be the mount source for them; only a
            # push that succeeded is a mount source [MSG-4]
            first = first_repository.get(host)
            mount_from = _mount_sources(publication, host, repository, first if first != repository else None)
            try:
                expected = {
                    t.tag: d
                    for t, d in self.expected.items()
                    if t.registry == host and t.repository == repository and t.tag
                }
                destination = Destination(
                    self.pool.get(host), Reference(host, repository), tuple(tags), mount_from, expected
                )
                outcomes.append(push_repository(destination, publication, self.options))
            except OcimergeError as exc:
                outcomes.append(PushFailure(host, repository, tuple(tags), exc))
                continue
            first_repository.setdefault(host, repository)
        return tuple(outcomes)
