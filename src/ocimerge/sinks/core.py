"""What every sink takes: a publication (blobs, documents children first, the root), [SINK-6].

[SINK-6] The OCI layout directory, the OCI archive and the registry push implement one
protocol, :class:`Sink`: ``publish(publication)``. A publication is built by one of two
named constructors — :meth:`Publication.of_assembly` for a merge (``create``), and
:meth:`Publication.of_image_set` for content sent as it is (``push``) — so every sink sees
the same shape whichever command built it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar

import attrs

from ocimerge.content import Blob, Image, ImageSet, Referrer
from ocimerge.errors import BlobMissingError
from ocimerge.model import mediatype as mt
from ocimerge.model.assemble import Assembly
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document

__all__ = ["Publication", "Sink", "required_blobs", "unique_blobs"]

R_co = TypeVar("R_co", covariant=True)


@attrs.frozen
class Publication:
    """Everything a sink writes: blobs, documents (children before parents), and the root.

    ``required`` lists documents the root names that the source does not hold (a partial
    export); a registry sink insists they are already in the target repository, a layout
    sink writes the index as it is. ``referrers`` travel with their subjects, each after
    its subject ([REFERRERS-10]); their blobs are among ``blobs``.
    """

    blobs: tuple[Blob, ...]
    documents: tuple[Document[Any], ...]
    root: Document[Any]
    required: tuple[Descriptor, ...] = ()
    referrers: tuple[Referrer, ...] = ()

    @classmethod
    def of_assembly(
        cls, assembly: Assembly, images: Iterable[Image], referrers: Iterable[Referrer] = ()
    ) -> Publication:
        """A merge: every image's blobs and those of the attestations the index kept.

        [SINK-2] A foreign (non-distributable) layer the source lacks is left out; any other
        missing blob is an error naming the image, since the output could not hold it.
        ``referrers`` are the ones the caller found to still apply ([REFERRERS-10]).
        """
        images = tuple(images)
        referrers = tuple(referrers)
        kept = {d.descriptor.digest for d in assembly.attestations}
        blobs = [b for i in images for b in required_blobs(i)]
        blobs += [
            b
            for i in images
            for a in i.attestations
            if a.manifest.descriptor.digest in kept
            for b in a.blobs
            if b.available
        ]
        blobs += [b for r in referrers for b in r.blobs if b.available]
        documents = (*assembly.manifests, *assembly.attestations)
        return cls(tuple(unique_blobs(blobs)), documents, assembly.index, referrers=referrers)

    @classmethod
    def of_image_set(cls, loaded: ImageSet) -> Publication:
        """Content sent as it is: the stored root, its nested indexes, images and attestations.

        Every digest is preserved byte for byte; entries the source names but lacks (a
        partial export) become ``required``.
        """
        root = loaded.root_document
        images = loaded.images
        blobs = [b for i in images for b in i.blobs()]
        blobs += [b for i in images for a in i.attestations for b in a.blobs]
        blobs += [b for r in loaded.referrers for b in r.blobs if b.available]
        documents: list[Document[Any]] = [i.manifest for i in images]
        documents += [a.manifest for i in images for a in i.attestations]
        documents += list(loaded.indexes)
        documents = [d for d in documents if d.descriptor.digest != root.descriptor.digest]
        return cls(tuple(unique_blobs(blobs)), tuple(documents), root, tuple(loaded.absent), referrers=loaded.referrers)


class Sink(Protocol[R_co]):
    """[SINK-6] Where a publication goes: a layout directory, an archive, registry targets."""

    def publish(self, publication: Publication) -> R_co:
        """Deliver everything, blobs verified on the way ([SINK-2]), the root named last."""
        ...


def required_blobs(image: Image) -> Iterator[Blob]:
    """[SINK-2] The blobs an image needs in an output; a foreign layer the source lacks is left out."""
    for blob in image.blobs():
        if not blob.available and mt.is_foreign_layer(blob.descriptor.media_type):
            continue
        if not blob.available:
            raise BlobMissingError(
                f"{blob.where}: blob {blob.digest} of {image.source} ({image.platform}) is not "
                "in the source; the image cannot be written without it"
            )
        yield blob


def unique_blobs(blobs: Iterable[Blob]) -> Iterator[Blob]:
    """[PUSH-1] Each digest once: the first blob that holds it, or an available one later."""
    seen: dict[Digest, Blob] = {}
    for blob in blobs:
        key = blob.digest
        if key not in seen or (not seen[key].available and blob.available):
            seen[key] = blob
    yield from seen.values()
