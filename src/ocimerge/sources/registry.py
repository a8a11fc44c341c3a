"""Images that already sit in a registry, as a source like any other ([REMOTE-1] .. [REMOTE-5]).

[REMOTE-1] Only manifests and configs are read to assemble, each verified against its digest.
Layer blobs stay where they are: each becomes a :class:`Blob` whose opener streams it from
the source registry (verified in transit) and whose ``origin`` lets a push to the same
registry mount it instead.
[REMOTE-3] A source tag, digest or repository the registry does not have is a
:class:`SourceNotFoundError` naming it.
[REMOTE-4] Schema 1 manifests are refused with the way out (by the manifest decoder).
[REMOTE-5] The registry client is injected, one per host for the whole run, shared by
sources and targets; this module imports no HTTP library and no registry client.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Protocol

from ocimerge.content import Blob, BlobOrigin, VerifyingReader
from ocimerge.errors import ManifestUnknownError, NameUnknownError, RegistryError, SourceNotFoundError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.codec import MAX_DOCUMENT_SIZE
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.manifest import Document
from ocimerge.model.reference import Reference
from ocimerge.sources.core import Root, SourceKind
from ocimerge.sources.selector import Selector

__all__ = ["RegistryReader", "RegistrySource"]


class RegistryReader(Protocol):
    """What a registry source needs of a registry client (``ocimerge.Registry`` has it)."""

    host: str

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

    def close(self) -> None:
        """Nothing to release: the registry client belongs to the run, not to the source."""
