"""Describing and checking sources: ``inspect`` and ``verify``, one path for every kind.

Both open any source (a local layout or archive, or a registry image) the way ``create``
does and walk it with the shared walker, so what they report is what ``create`` and
``push`` would see. Both return typed reports with ``to_json()``; the CLI only renders them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import attrs

from ocimerge.content import Blob, Image, ImageSet, drain
from ocimerge.errors import (
    BlobMissingError,
    DigestMismatchError,
    InputError,
    OcimergeError,
    PlatformMismatchError,
    RegistryError,
    SelectionError,
    UnsupportedMediaTypeError,
)
from ocimerge.model import mediatype as mt
from ocimerge.model.annotations import REFERENCE_TYPE, attested_digest
from ocimerge.model.descriptor import Descriptor
from ocimerge.registry.api import RegistryOptions, RegistryPool
from ocimerge.signatures import PublicKey
from ocimerge.signed import SignedImage, signed_images
from ocimerge.sources import SourceSpec, Walk, as_spec, load, load_all, open_source
from ocimerge.sources.walk import EVERYTHING

__all__ = ["InspectReport", "VerifyReport", "inspect", "verify"]


# -- reading ------------------------------------------------------------------------------


def _selected(spec: SourceSpec) -> bool:
    """Whether the spec names one entry (a tag, digest or platform), not the whole source."""
    return bool(spec.selector.tag or spec.selector.digest or spec.platform)


@contextlib.contextmanager
def _read(
    spec: SourceSpec, options: RegistryOptions | None, walk: Walk = EVERYTHING
) -> Iterator[list[ImageSet | OcimergeError]]:
    """Every entry of the source (or the one selected), each walked; failures kept in place.

    The source stays open inside the block, so blobs can still be read. A wrong question (a
    selector that names nothing, a platform that is not there) is raised: it is the caller's
    mistake, not a property of the source. Registry, auth and network failures are raised
    too: they say nothing about the image.
    """
    with RegistryPool(options) as pool, open_source(spec, pool.get) as source:
        if not _selected(spec):
            yield load_all(source, walk)
            return
        try:
            entries: list[ImageSet | OcimergeError] = [load(spec, source, walk)]
        except (SelectionError, PlatformMismatchError):
            raise
        # any other input problem is a finding about the source: reported, not raised
        except InputError as exc:
            entries = [exc]
        yield entries


# -- inspect ------------------------------------------------------------------------------


def _descriptor_json(descriptor: Descriptor | None) -> dict[str, Any] | None:
    """A descriptor as its three identifying fields, spelled as in the specs' JSON."""
    if descriptor is None:
        return None
    return {"mediaType": descriptor.media_type, "digest": str(descriptor.digest), "size": descriptor.size}


def _image_json(image: Image) -> dict[str, Any]:
    """One image of an ``inspect`` report; ``platform`` is the config's ([PLATFORM-4]).

    ``contentSize`` is what a pull transfers beyond the manifest: config plus layers as
    stored (compressed), not the unpacked size.
    """
    layers = image.manifest.value.layers
    return {
        "platform": str(image.platform),
        "digest": str(image.digest),
        "mediaType": image.manifest.descriptor.media_type,
        "size": image.manifest.descriptor.size,
        "configDigest": str(image.config.descriptor.digest),
        "layers": [_descriptor_json(d) for d in layers],
        "contentSize": image.config.descriptor.size + sum(d.size for d in layers),
        "attestations": [
            {
                "digest": str(a.entry.digest),
                "size": a.entry.size,
                "type": a.entry.annotation(REFERENCE_TYPE),
                "references": attested_digest(a.entry),
            }
            for a in image.attestations
        ],
    }


def _entry_json(entry: ImageSet | OcimergeError) -> dict[str, Any]:
    """One entry of an ``inspect`` report: the same shape for every kind of source."""
    if isinstance(entry, OcimergeError):
        return {"error": str(entry)}
    return {
        "source": entry.source,
        "names": list(entry.names),
        "root": _descriptor_json(entry.root),
        "images": [_image_json(i) for i in entry.images],
        "absent": [
            {"platform": str(d.platform) if d.platform else None, "digest": str(d.digest), "mediaType": d.media_type}
            for d in entry.absent
        ],
        "referrers": [r.to_json() for r in entry.referrers],
        "notes": list(entry.notes),
    }


@attrs.frozen
class InspectReport:
    """What ``inspect`` found: each entry of the source, walked, or the reason it is not an image.

    ``entries`` hold an :class:`ImageSet` per image entry and the error for an entry that is
    not one (an artifact, a referrers index, a broken document).
    """

    source: str
    entries: tuple[ImageSet | OcimergeError, ...]

    @property
    def images(self) -> tuple[ImageSet, ...]:
        """The entries that are images."""
        return tuple(e for e in self.entries if isinstance(e, ImageSet))

    def raw(self) -> bytes:
        """The exact stored bytes of the one root document (``inspect --raw``).

        Unchanged bytes ([DOC-1]), so ``sha256sum`` of the output is the root's digest.
        ``SelectionError`` when the source has several entries or its one entry failed.
        """
        images = self.images
        if len(self.entries) != 1 or len(images) != 1:
            raise SelectionError(f"{self.source}: --raw needs a source with exactly one entry; choose one")
        return images[0].root_document.raw

    def to_json(self) -> dict[str, Any]:
        """The report as ``inspect --json`` prints it; failed entries as ``{"error": …}``."""
        return {"source": self.source, "entries": [_entry_json(e) for e in self.entries]}


def inspect(
    source: str | SourceSpec, options: RegistryOptions | None = None, *, referrers: bool = True
) -> InspectReport:
    """Describe a source: its entries, their images, attestations and referrers, what is absent.

    ``referrers=False`` looks for no referrers ([REFERRERS-9]): fewer requests to a registry.

    Without a selector every entry of the source is described; an entry that is not an image
    is listed with the reason. A registry image is read as a registry source is ([REMOTE-1]):
    only manifests and configs, each verified.

    Raises for a wrong question (a selector or platform that names nothing) and for
    registry failures; the report is complete when it returns, since no layer is read.
    """
    spec = as_spec(source)
    with _read(spec, options, Walk(referrers=referrers)) as entries:
        return InspectReport(spec.text, tuple(entries))


# -- verify -------------------------------------------------------------------------------


@attrs.frozen
class VerifyReport:
    """Every problem found (not only the first), and how much was checked.

    ``problems`` are one-line messages naming the blob or image; ``notes`` are entries left
    unchecked because they are not images. The counts include manifests and configs.
    """

    source: str
    problems: tuple[str, ...]
    blobs_checked: int
    bytes_checked: int
    notes: tuple[str, ...] = ()
    signatures: tuple[SignedImage, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing was wrong; what ``ocimerge verify`` turns into its exit code."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The report as ``verify --json`` prints it."""
        return {
            "source": self.source,
            "ok": self.ok,
            "problems": list(self.problems),
            "blobsChecked": self.blobs_checked,
            "bytesChecked": self.bytes_checked,
            "notes": list(self.notes),
            "signatures": [s.to_json() for s in self.signatures],
        }


@attrs.define
class _Tally:
    """Problems and counts accumulated over a verify run; each blob digest checked once."""

    problems: list[str] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    signatures: list[SignedImage] = attrs.Factory(list)
    seen: set[str] = attrs.Factory(set)
    blobs: int = 0
    bytes: int = 0

    def image(self, image: Image) -> None:
        """Check one image: [VERIFY-3] first, then each blob not yet seen, read to the end."""
        self.problems.extend(_layer_problems(image))
        for blob in [*image.layers, *(b for a in image.attestations for b in a.blobs)]:
            self._blob(blob)
        self.blobs += 2  # the manifest and config were verified as they were read
        self.bytes += image.manifest.descriptor.size + image.config.descriptor.size

    def referrers(self, loaded: ImageSet) -> None:
        """[REFERRERS-9] Re-hash each referrer's blobs (its manifest was verified when read)."""
        for referrer in loaded.referrers:
            self.blobs += 1
            self.bytes += referrer.document.descriptor.size
            for blob in referrer.blobs:
                self._blob(blob)

    def _blob(self, blob: Blob) -> None:
        """Read one blob to the end, once per digest; a failure is a problem of that blob."""
        if str(blob.digest) in self.seen:
            return
        self.seen.add(str(blob.digest))
        # [MEDIA-4] a foreign layer lives at its URLs, not in the source: nothing to check
        if not blob.available and mt.is_foreign_layer(blob.descriptor.media_type):
            return
        try:
            self.bytes += drain(blob)
            self.blobs += 1
        # a registry failure on one blob is a problem of that blob; the rest still count
        except (DigestMismatchError, BlobMissingError, RegistryError) as exc:
            self.problems.append(str(exc))


def _layer_problems(image: Image) -> Iterable[str]:
    """[VERIFY-3] A manifest's layers and its config's ``rootfs.diff_ids`` must agree."""
    config = image.config.value
    layers = image.manifest.value.layers
    if len(config.diff_ids) != len(layers):
        yield (
            f"{image.source}: {image.platform}: manifest has {len(layers)} layers but the "
            f"config lists {len(config.diff_ids)} rootfs.diff_ids"
        )
    # strict=False: a count mismatch is reported above; pair what can be paired anyway
    for i, (layer, diff_id) in enumerate(zip(layers, config.diff_ids, strict=False)):
        if mt.layer_compression(layer.media_type) is mt.Compression.NONE and layer.digest != diff_id:
            yield (
                f"{image.source}: {image.platform}: uncompressed layer {i} is {layer.digest} "
                f"but rootfs.diff_ids[{i}] is {diff_id}"
            )


def verify(
    source: str | SourceSpec,
    options: RegistryOptions | None = None,
    *,
    referrers: bool = True,
    key: PublicKey | None = None,
    key_name: str = "the key",
) -> VerifyReport:
    """Re-read and re-hash every blob of every image in a source, and of their referrers;
    collect every problem.

    With ``key``, each image must also be signed by it in cosign's format ([SIGNED-1]):
    an image without a valid signature is a problem naming it and ``key_name``.

    A registry image (``docker://REF``) is downloaded blob by blob, streamed and hashed, never
    stored. An entry that is not an image is noted, not counted as a problem.

    Raises when the source cannot be opened, for a wrong question, and for registry failures
    while documents are read; every problem with blob content is in the report, so one run
    lists them all.
    """
    spec = as_spec(source)
    tally = _Tally()
    with _read(spec, options, Walk(referrers=referrers)) as entries:
        for result in entries:
            if isinstance(result, UnsupportedMediaTypeError):
                tally.notes.append(f"not an image, not checked: {result}")
            elif isinstance(result, OcimergeError):
                tally.problems.append(str(result))
            else:
                for image in result.images:
                    tally.image(image)
                tally.referrers(result)
                if key is not None:
                    checked = signed_images(result, key)
                    tally.signatures.extend(checked)
                    tally.problems.extend(c.problem(key_name) for c in checked if not c.ok and c.label != "index")
    return VerifyReport(
        spec.text, tuple(tally.problems), tally.blobs, tally.bytes, tuple(tally.notes), tuple(tally.signatures)
    )
