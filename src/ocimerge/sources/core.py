"""The one protocol every image source implements, and the values it speaks in ([SOURCE-4]).

[SOURCE-4] A source (OCI layout directory, OCI archive, docker-save archive, registry image)
supplies a small core: the roots it holds with their names, the one root a selector
chooses, whether it holds the content a descriptor names, that content as verified bytes
(documents) or as a verified stream (blobs). Everything else — flattening indexes, pairing
attestations, filtering platforms, reporting what is absent — is derived once, by
:mod:`ocimerge.sources.walk`, for every kind alike (go-containerregistry's ``partial`` idea).
"""

from __future__ import annotations

import enum
from typing import Protocol

import attrs

from ocimerge.content import Blob, BlobOrigin
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.sources.selector import Selector

__all__ = ["Listed", "Root", "Source", "SourceKind"]


class SourceKind(enum.Enum):
    """What a source argument names; the value is its prefix (``oci-archive:PATH``)."""

    AUTO = "auto"  # a local path, its kind detected from its content [SOURCE-1]
    OCI = "oci"
    OCI_ARCHIVE = "oci-archive"
    DOCKER_ARCHIVE = "docker-archive"
    REGISTRY = "docker"  # docker://REF, or a bare reference whose first part is a host


@attrs.frozen
class Root:
    """One entry a source lists at its top: an ``index.json`` entry, a docker-save image, a tag.

    ``label`` names it in messages and reports; ``stored`` is False when the root document
    was authored on read (docker-save archives store no manifest), so reports can say so.
    """

    descriptor: Descriptor
    names: tuple[str, ...]
    label: str
    stored: bool = True


@attrs.frozen
class Listed:
    """[REFERRERS-9] A referrer a source lists for a subject, before it is read.

    ``descriptor`` names the referrer's manifest; ``found`` says how it was found (a
    ``content.FOUND_*`` value); ``tag`` is cosign's tag when it was found under one.
    """

    descriptor: Descriptor
    found: str
    tag: str | None = None


class Source(Protocol):
    """[SOURCE-4] An opened source; close it (or leave its ``with`` block) when done.

    ``document`` returns the whole bytes of a manifest, index or config, verified against
    the descriptor and capped in size; ``blob`` returns a :class:`Blob` whose opener streams
    and verifies, with no opener when the source lacks the content (a partial export).
    ``has`` answers without reading; a registry source answers True and lets ``document``
    raise :class:`ocimerge.errors.SourceNotFoundError` instead (asking first would cost a
    request per entry). ``origin`` is where the blobs live when they live in a registry.
    """

    name: str
    kind: SourceKind
    origin: BlobOrigin | None

    def roots(self) -> tuple[Root, ...]:
        """Every entry at the source's top, in the source's own order (what ``inspect`` lists)."""
        ...

    def select(self, selector: Selector) -> Root:
        """The one root ``selector`` names; ``SelectionError`` (listing choices) otherwise."""
        ...

    def has(self, descriptor: Descriptor) -> bool:
        """Whether the content is present, without reading it; False marks it absent."""
        ...

    def document(self, descriptor: Descriptor, what: str) -> bytes:
        """The exact, verified bytes of a manifest, index or config; ``what`` names it in errors."""
        ...

    def blob(self, descriptor: Descriptor, what: str) -> Blob:
        """A re-openable, verifying blob; unavailable (never raising here) when absent."""
        ...

    def referrers_of(self, digest: Digest) -> tuple[Listed, ...]:
        """[REFERRERS-9] The referrers the source holds for the manifest ``digest``, unread.

        Only candidates: the walker reads each and keeps those whose ``subject`` names
        ``digest`` (or, under a cosign tag, whose tag does). A source without referrers
        returns ``()``.
        """
        ...

    def close(self) -> None:
        """Release files and temporary copies; blobs must not be opened after this."""
        ...
