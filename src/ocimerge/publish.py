"""Pushing content to registries, in an order that is a guarantee ([PUSH-1] .. [PUSH-4]).

[PUSH-1] Blobs first (HEAD: skip what exists; else mount from a known repository of the same
registry; else upload), with bounded parallelism; each digest is handled once.
[PUSH-2] Then child manifests by digest, children before parents, each confirmed present
(HEAD, or a PUT the registry accepted); then the root (index) by digest; then each tag. A tag
is never written before every document it names is confirmed, so an interrupted push leaves
no tag pointing at a broken index, and running it again uploads only what is missing.
[PUSH-3] Progress is reported as events; the CLI draws them, the library may ignore them.
[PUSH-4] Targets are grouped by registry: one client per host. Within a registry, a
repository pushed after another mounts the blobs the first one received instead of
uploading them again, and blobs that came from that registry are mounted from their source.

(The module is ``publish``, not ``push``, because ``ocimerge.push`` is the public function.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs

from ocimerge.content import Blob
from ocimerge.errors import BlobMissingError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document
from ocimerge.model.reference import Reference
from ocimerge.registry.api import Mounted, Registry, RegistryPool
from ocimerge.registry.challenge import Scope

__all__ = ["BlobPlan", "Publication", "PushEvent", "PushResult", "parse_target", "publish", "push_content"]


@attrs.frozen
class PushEvent:
    """What happened: ``kind`` is start, progress, done (with ``action``) for a blob."""

    kind: str
    digest: Digest
    size: int
    done: int = 0
    action: str = ""


@attrs.frozen
class BlobPlan:
    """What a push did (or, in a dry run, would do) with one blob.

    ``action`` is ``upload`` (from a local source), ``copy`` (streamed from another registry,
    ``source`` naming it), ``mount`` (from ``source``, a repository of the same registry),
    ``skip`` (already there) or ``foreign`` (a non-distributable layer, never pushed).
    """

    digest: Digest
    size: int
    action: str
    source: str | None = None


@attrs.frozen
class PushResult:
    """The outcome of :func:`push_content` for one repository."""

    registry: str
    repository: str
    root: Descriptor
    blobs: tuple[BlobPlan, ...]
    manifests_pushed: int
    manifests_skipped: int
    tags: tuple[str, ...]
    dry_run: bool = False

    @property
    def bytes_uploaded(self) -> int:
        """Bytes sent to the registry: uploads from local sources and copies from other registries."""
        return sum(b.size for b in self.blobs if b.action in ("upload", "copy"))

    def count(self, action: str) -> int:
        return sum(1 for b in self.blobs if b.action == action)

    def to_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "repository": self.repository,
            "digest": str(self.root.digest),
            "mediaType": self.root.media_type,
            "tags": list(self.tags),
            "dryRun": self.dry_run,
            "blobs": {
                "uploaded": self.count("upload"),
                "copied": self.count("copy"),
                "mounted": self.count("mount"),
                "skipped": self.count("skip"),
                "bytesUploaded": self.bytes_uploaded,
            },
            "manifests": {"pushed": self.manifests_pushed, "skipped": self.manifests_skipped},
        }


def _unique(blobs: Sequence[Blob]) -> list[Blob]:
    seen: dict[str, Blob] = {}
    for blob in blobs:
        key = str(blob.digest)
        if key not in seen or (not seen[key].available and blob.available):
            seen[key] = blob
    return list(seen.values())


def push_content(
    registry: Registry,
    repository: str,
    *,
    blobs: Sequence[Blob],
    documents: Sequence[Document[Any]],
    root: Document[Any],
    tags: Sequence[str],
    mount_from: Mapping[str, str] | None = None,
    required: Sequence[Descriptor] = (),
    jobs: int = 4,
    on_event: Callable[[PushEvent], None] | None = None,
    dry_run: bool = False,
) -> PushResult:
    """Push ``blobs``, then ``documents`` (children first), then ``root``, then ``tags``.

    ``mount_from`` maps a blob digest to another repository of the same registry that holds
    it. ``required`` names documents the source does not hold (a partial export): each must
    already be in the repository, or nothing is tagged. With ``dry_run`` only HEAD requests
    are sent and the plan is returned.
    """
    emit = on_event or (lambda _event: None)
    registry.ping()
    registry.want(Scope.repository(repository, "pull", "push"))
    mount_from = mount_from or {}
    sources = {s for s in mount_from.values() if s != repository}
    if sources:
        registry.want(*(Scope.repository(s, "pull") for s in sources))
    lock = threading.Lock()
    held = {str(d.descriptor.digest) for d in documents}
    for descriptor in required:
        if str(descriptor.digest) not in held and registry.manifest_head(repository, str(descriptor.digest)) is None:
            platform = f" ({descriptor.platform})" if descriptor.platform else ""
            raise BlobMissingError(
                f"{registry.host}/{repository}: the index names {descriptor.digest}{platform}, which is neither in "
                "the source nor in the repository; refusing to tag an index whose children are missing"
            )

    def one(blob: Blob) -> BlobPlan:
        digest, size = blob.digest, blob.descriptor.size
        if registry.blob_exists(repository, digest) is not None:
            emit(PushEvent("done", digest, size, size, "skip"))
            return BlobPlan(digest, size, "skip")
        if not blob.available:
            if mt.is_foreign_layer(blob.descriptor.media_type):
                return BlobPlan(digest, size, "foreign")
            raise BlobMissingError(
                f"{blob.where}: blob {digest} is neither in the source nor in {registry.host}/{repository}"
            )
        source = mount_from.get(str(digest))
        # a blob from another registry is streamed across: a "copy", planned and counted apart
        transfer = "copy" if blob.origin is not None and blob.origin[0] != registry.host else "upload"
        if dry_run:
            return BlobPlan(digest, size, "mount" if source and source != repository else transfer, source)
        location = None
        if source and source != repository:
            started = registry.start_upload(repository, mount=digest, source=source)
            if isinstance(started, Mounted):
                emit(PushEvent("done", digest, size, size, "mount"))
                return BlobPlan(digest, size, "mount", source)
            location = started  # [API-6] refused: upload into the session it opened
        emit(PushEvent("start", digest, size))
        sent = [0]

        def progress(n: int) -> None:
            with lock:
                sent[0] += n
            emit(PushEvent("progress", digest, size, sent[0]))

        registry.upload(repository, blob, location, progress=progress)
        emit(PushEvent("done", digest, size, size, "upload"))
        origin = f"{blob.origin[0]}/{blob.origin[1]}" if blob.origin is not None and transfer == "copy" else None
        return BlobPlan(digest, size, transfer, origin)

    unique = _unique(blobs)
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="ocimerge-push") as pool:
        futures = [pool.submit(one, b) for b in unique]
        plans: list[BlobPlan] = []
        try:
            for future in futures:
                plans.append(future.result())
        except BaseException:
            for other in futures:  # stop what has not started; the first error is reported
                other.cancel()
            raise

    pushed = skipped = 0
    seen: set[str] = set()
    for doc in documents:
        key = str(doc.descriptor.digest)
        if key in seen:
            continue
        seen.add(key)
        if registry.manifest_head(repository, key) is not None:
            skipped += 1
            continue
        if not dry_run:
            registry.manifest_put(repository, key, doc.raw, doc.descriptor.media_type)
        pushed += 1
    written: list[str] = []
    if not dry_run:
        root_key = str(root.descriptor.digest)
        if registry.manifest_head(repository, root_key) is None:
            registry.manifest_put(repository, root_key, root.raw, root.descriptor.media_type)
            pushed += 1
        else:
            skipped += 1
        for tag in tags:
            current = registry.manifest_head(repository, tag)
            if current is None or current.digest != root.descriptor.digest:
                registry.manifest_put(repository, tag, root.raw, root.descriptor.media_type)
            written.append(tag)
    return PushResult(
        registry=registry.host,
        repository=repository,
        root=root.descriptor,
        blobs=tuple(plans),
        manifests_pushed=pushed,
        manifests_skipped=skipped,
        tags=tuple(written) if not dry_run else tuple(tags),
        dry_run=dry_run,
    )


@attrs.frozen
class Publication:
    """Everything a push sends: blobs, documents (children first), and the root to tag.

    ``required`` lists documents the root names that the source does not hold; they must
    already be in the target repository.
    """

    blobs: tuple[Blob, ...]
    documents: tuple[Document[Any], ...]
    root: Document[Any]
    required: tuple[Descriptor, ...] = ()


def parse_target(text: str) -> Reference:
    """A push target: ``[docker://]REGISTRY/REPO[:TAG][@DIGEST]`` (the tag defaults to latest)."""
    reference = Reference.parse(text.removeprefix("docker://"))
    if reference.digest is not None:
        raise UsageError(f"{text}: push to a tag, not a digest (the digest is the content's own)")
    return reference


def _mount_sources(publication: Publication, host: str, repository: str, first: str | None) -> dict[str, str]:
    """[PUSH-4] Where in ``host`` each blob can be mounted from, for a push to ``repository``."""
    sources: dict[str, str] = {}
    for blob in publication.blobs:
        if blob.origin is not None and blob.origin[0] == host and blob.origin[1] != repository:
            sources[str(blob.digest)] = blob.origin[1]  # it came from this registry
        elif first is not None and first != repository:
            sources[str(blob.digest)] = first  # an earlier target of this run received it
    return sources


def publish(
    publication: Publication,
    targets: Sequence[Reference],
    pool: RegistryPool,
    *,
    jobs: int = 4,
    on_event: Callable[[PushEvent], None] | None = None,
    dry_run: bool = False,
) -> tuple[PushResult, ...]:
    """[PUSH-4] Push ``publication`` to every target; one result per repository."""
    by_repository: dict[tuple[str, str], list[str]] = {}
    for target in targets:
        tags = by_repository.setdefault((target.registry, target.repository), [])
        if target.tag and target.tag not in tags:
            tags.append(target.tag)
    results: list[PushResult] = []
    first_repository: dict[str, str] = {}
    for (host, repository), tags in by_repository.items():
        registry = pool.get(host)
        first = first_repository.get(host)
        first_repository.setdefault(host, repository)
        results.append(
            push_content(
                registry,
                repository,
                blobs=publication.blobs,
                documents=publication.documents,
                root=publication.root,
                tags=tags,
                mount_from=_mount_sources(publication, host, repository, first),
                required=publication.required,
                jobs=jobs,
                on_event=on_event,
                dry_run=dry_run,
            )
        )
    return tuple(results)
