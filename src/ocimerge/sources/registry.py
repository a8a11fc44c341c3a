"""Images that already sit in a registry, as a source like any other ([REMOTE-1] .. [REMOTE-5]).

[REMOTE-1] Only manifests and configs are read to assemble, each verified against its digest.
Layer blobs stay where they are: each becomes a :class:`Blob` whose opener streams it from
the source registry (verified in transit) and whose ``origin`` lets a push to the same
registry mount it instead.
[REMOTE-3] A source tag, digest or repository the registry does not have is a
:class:`SourceNotFoundError` naming it.
[REMOTE-4] Schema 1 manifests are refused with the way out (by the manifest decoder).
[REFERRERS-9] Referrers are asked of the referrers API, and, where there is none, found
through the repository's tag list: the fallback tag and cosign's tags of a subject are read
only when the list holds them, so a registry without the API costs one probe and one tag
list per source, not a request per tag per image.
[REMOTE-5] The registry client is injected, one per host for the whole run, shared by
sources and targets; this module imports no HTTP library and no registry client.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Protocol

from ocimerge.content import FOUND_BY_API, FOUND_BY_COSIGN, FOUND_BY_TAG, Blob, BlobOrigin, VerifyingReader
from ocimerge.errors import (
    DocumentError,
    ManifestUnknownError,
    NameUnknownError,
    RegistryError,
    RemoteError,
    SourceNotFoundError,
    UsageError,
)
from ocimerge.model import mediatype as mt
from ocimerge.model.codec import MAX_DOCUMENT_SIZE
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document
from ocimerge.model.reference import Reference
from ocimerge.model.referrers import COSIGN_SUFFIXES, ReferrersIndex, cosign_tag, fallback_tag
from ocimerge.sources.core import Listed, Root, SourceKind
from ocimerge.sources.selector import Selector

__all__ = ["RegistryReader", "RegistrySource"]


class ReferrersListing(Protocol):
    """What a registry client answers for the referrers of a digest ([REFAPI-1])."""

    @property
    def descriptors(self) -> tuple[Descriptor, ...]:
        """The referrers listed."""
        ...

    @property
    def has_api(self) -> bool:
        """Whether the registry serves the referrers API."""
        ...


class RegistryReader(Protocol):
    """What a registry source needs of a registry client (``ocimerge.Registry`` has it)."""

    host: str

    def referrers(self, repository: str, digest: Digest) -> ReferrersListing:
        """[REFAPI-1] The referrers API's list, else the fallback tag's."""
        ...

    def tags(self, repository: str) -> tuple[str, ...]:
        """[API-8] Every tag of the repository."""
        ...

    def manifest_get(self, reference: Reference) -> Document[Any]:
        """The document ``reference`` names, verified against a digest reference [API-3]."""
        ...

    def open_blob(self, repository: str, descriptor: Descriptor, where: str | None = None) -> VerifyingReader:
        """A stream over the blob that verifies against ``descriptor`` as it is read."""
        ...


class RegistrySource:
    """[SOURCE-4] One registry image (a tag or a digest) as a source.

    Its one root is the document the reference names, read once when the source opens
    (so a missing tag fails at once); children are read by digest when the walk asks.
    """

    kind = SourceKind.REGISTRY

    def __init__(self, registry: RegistryReader, reference: Reference) -> None:
        self.registry = registry
        self.reference = reference
        self.name = str(reference)
        self.origin: BlobOrigin | None = BlobOrigin(registry.host, reference.repository)
        self._documents: dict[str, bytes] = {}
        root = self._get(reference, reference.familiar)
        self._documents[str(root.descriptor.digest)] = root.raw
        self._root = Root(root.descriptor, (reference.familiar,), self.name)
        self._has_api: bool | None = None  # unknown until the first subject is asked about
        self._tags: frozenset[str] | None = None
        self._unlisted = False  # the registry refused to list tags

    def _get(self, reference: Reference, what: str) -> Document[Any]:
        try:
            return self.registry.manifest_get(reference)
        except (ManifestUnknownError, NameUnknownError) as exc:
            raise SourceNotFoundError(f"{self.name}: {what} is not in the registry ({exc.code})") from exc

    def roots(self) -> tuple[Root, ...]:
        """The one root: the document the reference names."""
        return (self._root,)

    def select(self, selector: Selector) -> Root:
        """The root; a ``:TAG``/``@DIGEST`` selector after a reference is a ``UsageError``,
        since ``REF:TAG`` already means the tag and a second one would be ambiguous."""
        if selector.tag or selector.digest:
            raise UsageError(f"{self.name}: name the tag or digest in the reference itself")
        return self._root

    def has(self, descriptor: Descriptor) -> bool:  # noqa: ARG002 - the protocol's signature
        """Always True: absence surfaces as ``SourceNotFoundError`` from :meth:`document`."""
        return True  # asking would cost a request per entry: a miss surfaces in document()

    def document(self, descriptor: Descriptor, what: str) -> bytes:
        """A manifest or index by digest (the registry client verifies it), or a config blob."""
        key = str(descriptor.digest)
        if key in self._documents:
            return self._documents[key]
        if descriptor.size > MAX_DOCUMENT_SIZE:
            raise RegistryError(f"{self.name}: {what} is {descriptor.size} bytes, over the limit for a document")
        if descriptor.media_type in mt.MANIFEST_TYPES | mt.INDEX_TYPES:
            by_digest = Reference(self.reference.registry, self.reference.repository, digest=descriptor.digest)
            return bytes(self._get(by_digest, what).raw)
        with self.blob(descriptor, what).open() as reader:
            return reader.read()

    def blob(self, descriptor: Descriptor, what: str) -> Blob:
        """A blob streamed from the registry on each open, its origin set so a push to the
        same registry mounts it instead of downloading and re-uploading ([PUSH-4])."""
        registry, repository, where = self.registry, self.reference.repository, f"{self.name}: {what}"

        def opener() -> BinaryIO:
            # the client's stream verifies this very descriptor: Blob.open does not wrap it twice
            return registry.open_blob(repository, descriptor, where)  # type: ignore[return-value]

        return Blob(descriptor, opener, where, self.origin)

    def referrers_of(self, digest: Digest) -> tuple[Listed, ...]:
        """[REFERRERS-9] The referrers API's (else the fallback tag's) list, and cosign's tags.

        The API is asked for the first subject; once it is known to be missing, the fallback
        tag is read only when the tag list holds it. A 404 anywhere means "none".
        """
        repository = self.reference.repository
        listed: list[Listed] = []
        if self._has_api is None or self._has_api:
            listing = self.registry.referrers(repository, digest)
            self._has_api = listing.has_api
            how = FOUND_BY_API if listing.has_api else FOUND_BY_TAG
            listed += [Listed(d, how) for d in listing.descriptors]
        elif (tags := self._tag_list()) is None or fallback_tag(digest) in tags:
            listed += [Listed(d, FOUND_BY_TAG) for d in self._fallback(digest)]
        tags = self._tag_list()
        for suffix in COSIGN_SUFFIXES:
            tag = cosign_tag(digest, suffix)
            if tags is None or tag in tags:
                document = self._tagged(tag)
                if document is not None:
                    listed.append(Listed(document.descriptor, FOUND_BY_COSIGN, tag))
        return tuple(listed)

    def _tag_list(self) -> frozenset[str] | None:
        """The repository's tags, listed once per source; None when the registry will not list
        them (a 401/403, UNSUPPORTED, a 405): then each tag is asked for by name instead."""
        if self._tags is None and not self._unlisted:
            try:
                self._tags = frozenset(self.registry.tags(self.reference.repository))
            except (ManifestUnknownError, NameUnknownError):
                self._tags = frozenset()
            except RemoteError as exc:
                if exc.retryable:
                    raise  # the registry is failing, not refusing: say so, as any request would
                self._unlisted = True
        return self._tags

    def _tagged(self, tag: str) -> Document[Any] | None:
        """The document under ``tag`` (kept, so reading it again costs nothing); None if gone."""
        reference = Reference(self.reference.registry, self.reference.repository, tag=tag)
        try:
            document = self.registry.manifest_get(reference)
        except (ManifestUnknownError, NameUnknownError):
            return None
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        self._documents[str(document.descriptor.digest)] = document.raw
        return document

    def _fallback(self, digest: Digest) -> tuple[Descriptor, ...]:
        """[REFAPI-4] The entries of the fallback tag's index; none when it is no index of referrers."""
        document = self._tagged(fallback_tag(digest))
        if document is None:
            return ()
        try:
            return ReferrersIndex.parse(
                document.raw, subject=digest, where=f"{self.name}: {fallback_tag(digest)}"
            ).referrers
        except DocumentError:
            return ()

    def close(self) -> None:
        """Nothing to release: the registry client belongs to the run, not to the source."""
