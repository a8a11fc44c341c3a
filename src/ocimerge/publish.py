"""Publishing one root document and its content to registry references ([PUSH-3], [PUSH-4]).

[PUSH-4] Targets are grouped by registry: one client per host. Within a registry, a
repository pushed after another mounts the blobs the first one received instead of
uploading them again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from ocimerge.content import Blob
from ocimerge.errors import UsageError
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.manifest import Document
from ocimerge.model.reference import Reference
from ocimerge.push import PushEvent, PushResult, push_content
from ocimerge.remote import RegistryPool

__all__ = ["Publication", "parse_target", "publish"]


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
