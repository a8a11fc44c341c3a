"""The referrers of a manifest on a registry: the API, its fallback tag, and ``OCI-Subject``
([REFAPI-1] .. [REFAPI-6]).

One function per endpoint, over :class:`~ocimerge.registry.api.Registry`'s public methods:
:func:`referrers` lists what refers to a digest (the referrers API, else the fallback tag),
:func:`put_manifest_with_subject` pushes a manifest with a ``subject`` and says whether the
registry keeps its referrers itself, and :func:`update_fallback_tag` maintains the fallback
tag's index for a registry that does not.
"""

from __future__ import annotations

from typing import Any

import attrs
import httpx

from ocimerge.errors import DocumentError, InputError, RegistryError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageIndex, decode_index, sniff_document_type
from ocimerge.model.reference import Reference
from ocimerge.model.referrers import ReferrersIndex, fallback_tag, filter_by_artifact_type, unique_by_digest
from ocimerge.registry.api import Registry
from ocimerge.registry.responses import decode_server_json, read_capped
from ocimerge.registry.upload import check_digest

__all__ = [
    "MAX_REFERRERS_LISTED",
    "MAX_REFERRERS_PAGE",
    "MAX_REFERRERS_PAGES",
    "Referrers",
    "put_manifest_with_subject",
    "referrers",
    "update_fallback_tag",
]

#: [REFAPI-2] The largest page of a referrers list read (4 MiB, as a manifest).
MAX_REFERRERS_PAGE = 4 * 1024 * 1024
#: [REFAPI-2] [SEC-8] More pages than this is a registry paging us forever.
MAX_REFERRERS_PAGES = 1000
#: [REFAPI-2] [SEC-8] More entries than this, over all pages, is no real image's referrers.
MAX_REFERRERS_LISTED = 10_000
#: [REFAPI-3] What a registry without the referrers API answers on its path.
NO_API = (400, 404, 405)

API = "api"
TAG = "tag"
NONE = "none"


@attrs.frozen
class Referrers:
    """[REFAPI-1] What refers to a manifest, and how the registry told us.

    ``how`` is ``"api"`` when the registry has the referrers API (then an empty
    ``descriptors`` means the API lists nothing), ``"tag"`` when there is no API and the
    fallback tag held an index of referrers, ``"none"`` when there is no API and no usable
    fallback tag. ``notes`` say what was odd on the way (a fallback tag that is no index).

    >>> Referrers((), "api").has_api, Referrers((), "none").has_api
    (True, False)
    """

    descriptors: tuple[Descriptor, ...]
    how: str = attrs.field(validator=attrs.validators.in_((API, TAG, NONE)))
    notes: tuple[str, ...] = ()

    @property
    def has_api(self) -> bool:
        """Whether the registry serves the referrers API (it lists, maybe nothing)."""
        return self.how == API


def _keep(found: tuple[Descriptor, ...], artifact_types: tuple[str, ...]) -> tuple[Descriptor, ...]:
    """[REFAPI-1] The descriptors of ``found`` with one of ``artifact_types`` (all when none), each digest once."""
    return filter_by_artifact_type(unique_by_digest(found), artifact_types)


def referrers(
    registry: Registry, repository: str, digest: Digest, *, artifact_types: tuple[str, ...] = ()
) -> Referrers:
    """[REFAPI-1] The manifests in ``repository`` whose ``subject`` is ``digest``.

    ``GET /v2/<name>/referrers/<digest>``, with ``?artifactType=`` when exactly one type is
    asked; the list is filtered here as well, whatever ``OCI-Filters-Applied`` says, so only
    ``artifact_types`` come back (all when empty). Pages follow ``Link`` [REFAPI-2]. A
    registry answering 400, 404 or 405 has no API: the fallback tag is read instead
    [REFAPI-3] [REFAPI-4]. Raises :class:`RegistryError` for a page that is too large, not an
    OCI image index, or a list running past :data:`MAX_REFERRERS_PAGES`.
    """
    types = tuple(artifact_types)
    listed = _listed(registry, repository, digest, types)
    if listed is None:
        return _from_tag(registry, repository, digest, types)
    return Referrers(_keep(listed, types), API)


def _listed(
    registry: Registry, repository: str, digest: Digest, types: tuple[str, ...]
) -> tuple[Descriptor, ...] | None:
    """[REFAPI-2] Every entry the referrers API lists, page by page; None when there is no API.

    [SEC-8] A link already followed ends the list (a registry repeating itself), and more
    than :data:`MAX_REFERRERS_PAGES` pages is an error, as for tag lists [API-8].
    """
    what = f"list referrers of {digest.short} in {repository}"
    params = {"artifactType": types[0]} if len(types) == 1 else None
    path = f"/v2/{repository}/referrers/{digest}"
    headers = {"Accept": mt.OCI_INDEX}
    response = registry.request(
        "GET", path, kind="GET referrers", what=what, ok=NO_API, stream=True, params=params, headers=headers
    )
    if response.status_code in NO_API:
        response.close()  # [REFAPI-3] no referrers API: the caller reads the fallback tag
        return None
    found: list[Descriptor] = []
    seen: set[str] = set()
    for page in range(1, MAX_REFERRERS_PAGES + 1):
        found.extend(_page(registry, response, f"{what}, page {page}"))
        if len(found) > MAX_REFERRERS_LISTED:
            raise RegistryError(
                f"{registry.host}: the referrers of {digest} in {repository} list more than "
                f"{MAX_REFERRERS_LISTED} manifests; refusing them"
            )
        seen.add(str(response.request.url))
        following = _next(response)
        if following is None or following in seen:
            return tuple(found)
        if page == MAX_REFERRERS_PAGES:
            break  # a page more is never asked for
        response = registry.request("GET", following, kind="GET referrers", what=what, stream=True, headers=headers)
    raise RegistryError(
        f"{registry.host}: the referrers of {digest} in {repository} run past {MAX_REFERRERS_PAGES} pages"
    )


def _next(response: httpx.Response) -> str | None:
    """The absolute URL of the page ``Link: <…>; rel="next"`` names, if any."""
    link = response.links.get("next", {}).get("url")
    return str(response.request.url.join(link)) if link else None


def _page(registry: Registry, response: httpx.Response, what: str) -> tuple[Descriptor, ...]:
    """[REFAPI-2] The entries of one page: at most 4 MiB, strictly decoded, an OCI image index."""
    raw = read_capped(response, MAX_REFERRERS_PAGE, registry=registry.host)  # [SEC-8] capped, within the deadline
    if raw is None:
        raise RegistryError(f"{registry.host}: {what}: the answer is over {MAX_REFERRERS_PAGE // (1024 * 1024)} MiB")
    index = _oci_index(raw, where=f"{registry.host}: {what}")
    if index is None:
        raise RegistryError(f"{registry.host}: {what}: the answer is not an OCI image index")
    return index.manifests


def _oci_index(raw: bytes, *, where: str) -> ImageIndex | None:
    """The OCI image index ``raw`` holds; None when it is another document (a Docker list, a
    manifest). JSON that is not valid, or an index that is not, is a :class:`RegistryError`."""
    try:
        value = decode_server_json(raw, where=where)  # [SEC-8] strict: deep nesting, bad UTF-8, duplicates
    except ValueError as exc:
        raise RegistryError(str(exc)) from exc
    if not isinstance(value, dict) or sniff_document_type(value) != mt.OCI_INDEX:
        return None
    try:
        return decode_index(raw, where=where)
    except InputError as exc:
        raise RegistryError(str(exc)) from exc


def _tag_reference(registry: Registry, repository: str, digest: Digest) -> Reference:
    return Reference(registry.host, repository, tag=fallback_tag(digest))


def _read_tag(registry: Registry, repository: str, digest: Digest) -> Document[Any] | None:
    """[REFAPI-4] What the fallback tag of ``digest`` holds (verified), None when it is absent (404)."""
    try:
        return registry.manifest_get(_tag_reference(registry, repository, digest))
    except RegistryError as exc:
        if exc.status == 404:
            return None
        raise


def _from_tag(registry: Registry, repository: str, digest: Digest, types: tuple[str, ...]) -> Referrers:
    """[REFAPI-4] The referrers the fallback tag lists: ``how="tag"`` for an OCI image index,
    ``"none"`` when the tag is absent, or holds anything else (with a note)."""
    document = _read_tag(registry, repository, digest)
    if document is None:
        return Referrers((), NONE)
    tag = f"{registry.host}/{repository}:{fallback_tag(digest)}"
    try:
        # [REFERRERS-5] strictly an OCI image index, and not the subject itself (GitLab)
        index = ReferrersIndex.parse(document.raw, subject=digest, where=tag)
    except DocumentError as exc:
        return Referrers((), NONE, (f"{exc}; ignored",))
    return Referrers(_keep(index.referrers, types), TAG)


def put_manifest_with_subject(registry: Registry, reference: Reference, document: Document[Any]) -> bool:
    """[REFAPI-5] PUT ``document`` (exact bytes, its media type) and say whether the registry
    answered ``OCI-Subject`` naming the document's subject.

    True: the registry keeps the referrers API up to date itself. False (no header, or one
    naming another digest): the caller must update the fallback tag ([REFAPI-6]). The
    ``Docker-Content-Digest`` answered is checked against the bytes' digest. Raises
    :class:`UsageError` for a document without ``subject`` or a reference on another registry
    or naming neither tag nor digest.
    """
    subject = getattr(document.value, "subject", None)
    if not isinstance(subject, Descriptor):
        raise UsageError(f"manifest {document.descriptor.digest} has no subject")
    if reference.registry not in (registry.host, registry.api_host):
        raise UsageError(f"{reference} is not on {registry.host}")
    name = str(reference.digest) if reference.digest else reference.tag
    if not name:
        raise UsageError(f"{reference} names neither a tag nor a digest")
    response = registry.request(
        "PUT",
        f"/v2/{reference.repository}/manifests/{name}",
        kind="PUT manifest",
        what=f"PUT manifest {name} to {reference.repository}",
        headers={"Content-Type": document.descriptor.media_type},
        content=document.raw,
    )
    response.close()
    check_digest(response, Digest.of(document.raw), registry.host, f"manifest {name}")
    answered: str = response.headers.get("oci-subject") or ""
    return answered.strip() == str(subject.digest)


def update_fallback_tag(
    registry: Registry, repository: str, subject_digest: Digest, referrer: Descriptor
) -> Document[ImageIndex]:
    """[REFAPI-6] Add ``referrer`` to the fallback tag's index of ``subject_digest``.

    Read-modify-write: the tag's OCI image index (an empty one when the tag is absent) keeps
    every entry it has, ``referrer`` is appended unless an entry has its digest, and the new
    index, authored with the canonical encoder, is PUT under the tag; nothing is PUT when the
    referrer is there already. Returns the index the tag holds now. Raises
    :class:`RegistryError` when the tag holds something other than an OCI image index, which
    is left as it is.
    """
    reference = _tag_reference(registry, repository, subject_digest)
    existing = _read_tag(registry, repository, subject_digest)
    where = f"{registry.host}/{repository}:{reference.tag}"
    try:
        index = (
            ReferrersIndex()
            if existing is None
            else ReferrersIndex.parse(existing.raw, subject=subject_digest, where=where)
        )
    except DocumentError as exc:
        raise RegistryError(f"{exc}; left as it is") from exc
    if existing is not None and isinstance(existing.value, ImageIndex) and index.contains(referrer.digest):
        kept: Document[ImageIndex] = existing  # listed already: the tag stays as it is, nothing PUT
        return kept
    updated = index.with_referrer(referrer).author()
    registry.manifest_put(reference, updated)
    return updated
