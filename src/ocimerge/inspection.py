"""Describing and checking sources: ``inspect`` and ``verify``, one path for every kind.

Both open any source (a local layout or archive, or a registry image) the way ``create``
does and walk it with the shared walker, so what they report is what ``create`` and
``push`` would see. Both return typed reports with ``to_json()``; the CLI only renders them.
Given a lock, both hold a bundle to it ([LOCK-6]): ``verify`` reports every difference as a
problem, ``inspect`` lists what the lock expects but the bundle lacks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs

from ocimerge.content import Blob, Image, ImageSet, copy_verified
from ocimerge.errors import (
    BlobMissingError,
    DigestMismatchError,
    InputError,
    OcimergeError,
    PlatformMismatchError,
    RegistryError,
    SelectionError,
    UnsupportedMediaTypeError,
    UsageError,
)
from ocimerge.events import BlobAction, EventCallback, copy_reported, plan
from ocimerge.model import mediatype as mt
from ocimerge.model.annotations import REFERENCE_TYPE, attested_digest
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.lock import Lock, LockedImage
from ocimerge.model.platform import Platform
from ocimerge.model.reference import Reference
from ocimerge.registry.api import RegistryOptions, RegistryPool
from ocimerge.signatures import PublicKey
from ocimerge.signed import SignedImage, signed_images
from ocimerge.sources import Root, SourceSpec, Walk, as_spec, load, load_all, open_source
from ocimerge.sources.walk import EVERYTHING

__all__ = ["InspectReport", "Missing", "VerifyReport", "inspect", "verify"]


# -- reading ------------------------------------------------------------------------------


def _selected(spec: SourceSpec) -> bool:
    """Whether the spec names one entry (a tag, digest or platform), not the whole source."""
    return bool(spec.selector.tag or spec.selector.digest or spec.platform)


@contextlib.contextmanager
def _read(
    spec: SourceSpec, options: RegistryOptions | None, walk: Walk = EVERYTHING, roots: list[Root] | None = None
) -> Iterator[list[ImageSet | OcimergeError]]:
    """Every entry of the source (or the one selected), each walked; failures kept in place.

    The source stays open inside the block, so blobs can still be read. A wrong question (a
    selector that names nothing, a platform that is not there) is raised: it is the caller's
    mistake, not a property of the source. Registry, auth and network failures are raised
    too: they say nothing about the image.
    """
    entries: list[ImageSet | OcimergeError]
    with RegistryPool(options) as pool, open_source(spec, pool.get) as source:
        if not _selected(spec):
            entries = load_all(source, walk)
            if roots is not None:  # [LOCK-6] the names of every entry, images or not
                with contextlib.suppress(InputError):
                    roots.extend(source.roots())
            yield entries
            return
        try:
            entries = [load(spec, source, walk)]
        except (SelectionError, PlatformMismatchError):
            raise
        # any other input problem is a finding about the source: reported, not raised
        except InputError as exc:
            entries = [exc]
        yield entries


# -- a bundle against its lock ([LOCK-6]) ------------------------------------------------


@attrs.frozen
class Missing:
    """[LOCK-6] What a lock expects but a bundle lacks: an image (``platform`` None) or one
    platform image of it; ``digest`` is what the lock pins (``bundled``, or the platform's).

    >>> from ocimerge.model.digest import Digest
    >>> str(Missing("docker.io/library/redis:7", Digest.of(b"{}"), Platform.parse("linux/arm64")))
    'docker.io/library/redis:7: linux/arm64 sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'
    """

    reference: str
    digest: Digest
    platform: Platform | None = None

    def __str__(self) -> str:
        what = f"{self.platform} " if self.platform is not None else ""
        return f"{self.reference}: {what}{self.digest}"

    def to_json(self) -> dict[str, Any]:
        """As ``inspect --json`` lists it under ``missing``."""
        return {
            "reference": self.reference,
            "platform": str(self.platform) if self.platform is not None else None,
            "platformObject": self.platform.to_json() if self.platform is not None else None,
            "digest": str(self.digest),
        }


def _entry_references(loaded: ImageSet) -> set[str]:
    """[LOCK-6] The references an entry answers to (see :func:`_references`)."""
    return _references(loaded.names)


def _references(names: Sequence[str]) -> set[str]:
    """[LOCK-6] Names as written, and those that are references rather than bare tags (they
    hold a ``/`` or ``:``, which a tag cannot) normalised, as the lock writes them."""
    found = set(names)
    for name in names:
        if "/" in name or ":" in name:
            with contextlib.suppress(UsageError):
                found.add(str(Reference.parse(name)))
    return found


def _root_digest(loaded: ImageSet) -> Digest:
    """The digest of the entry as the bundle lists it."""
    return loaded.root.digest if loaded.root is not None else loaded.root_document.descriptor.digest


def _check_image(image: LockedImage, loaded: ImageSet) -> tuple[list[str], list[Missing]]:
    """[LOCK-6] One bundle entry against its lock entry: root digest, then platforms exactly."""
    key = str(image.reference)
    # the entry's label names it already when its name is the full reference: said once
    at = loaded.source if f"({key})" in loaded.source else f"{loaded.source}: {key}"
    problems: list[str] = []
    missing: list[Missing] = []
    root = _root_digest(loaded)
    if root != image.bundled:
        problems.append(f"{at}: the bundle holds {root} but the lock pins {image.bundled}")
    for locked in image.platforms:
        held = [i for i in loaded.images if i.platform == locked.platform]
        if any(i.digest == locked.digest for i in held):
            continue
        missing.append(Missing(key, locked.digest, locked.platform))
        if held:
            problems.append(
                f"{at}: {locked.platform}: the bundle holds {held[0].digest} but the lock pins {locked.digest}"
            )
        elif any(d.digest == locked.digest for d in loaded.absent):
            problems.append(f"{at}: {locked.platform}: {locked.digest} is listed but its manifest is not in the bundle")
        else:
            problems.append(f"{at}: {locked.platform}: missing from the bundle (the lock pins {locked.digest})")
    problems.extend(
        f"{at}: {i.platform} {i.digest} is in the bundle but not in the lock"
        for i in loaded.images
        if all(p.platform != i.platform for p in image.platforms)
    )
    return problems, missing


def _check_lock(
    lock: Lock, loaded: Sequence[ImageSet], source: str, roots: Sequence[Root] = ()
) -> tuple[list[str], list[Missing]]:
    """[LOCK-6] Every locked image found by its full reference and checked; every bundle
    entry the lock does not name is extra, an image or not (an artifact under a locked-looking
    name is no less extra). Problems in the lock's order, then the extras."""
    problems: list[str] = []
    missing: list[Missing] = []
    answers = [(entry, _entry_references(entry)) for entry in loaded]
    for image in lock.images:
        key = str(image.reference)
        found = [entry for entry, names in answers if key in names]
        if not found:
            problems.append(f"{source}: {key}: missing from the bundle (the lock pins {image.bundled})")
            missing.append(Missing(key, image.bundled))
        for entry in found:
            more, lacking = _check_image(image, entry)
            problems.extend(more)
            missing.extend(lacking)
    locked = {str(i.reference) for i in lock.images}
    for entry, names in answers:
        if not names & locked:
            called = ", ".join(dict.fromkeys(entry.names)) if entry.names else "an entry without a name"
            problems.append(
                f"{entry.source}: extra: {called} ({_root_digest(entry)}) is in the bundle but not in the lock"
            )
    images = {_root_digest(entry) for entry in loaded}
    for root in roots:
        names = _references(root.names)
        if root.descriptor.digest not in images and root.names and not names & locked:
            called = ", ".join(dict.fromkeys(root.names))
            problems.append(
                f"{source}: extra: {called} ({root.descriptor.digest}) is in the bundle but not in the lock "
                "(and is not an image)"
            )
    return problems, missing


def _whole(spec: SourceSpec, lock: Lock | None) -> None:
    """[LOCK-6] A lock describes a whole bundle: with a selector every other image would be missing."""
    if lock is not None and _selected(spec):
        raise UsageError(f"{spec.text}: a lock is checked against a whole bundle; drop the tag, digest or platform")


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
        "platformObject": image.platform.to_json(),
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
            {
                "platform": str(d.platform) if d.platform else None,
                "platformObject": d.platform.to_json() if d.platform else None,
                "digest": str(d.digest),
                "mediaType": d.media_type,
            }
            for d in entry.absent
        ],
        "referrers": [r.to_json() for r in entry.referrers],
        "notes": list(entry.notes),
    }


@attrs.frozen
class InspectReport:
    """What ``inspect`` found: each entry of the source, walked, or the reason it is not an image.

    ``entries`` hold an :class:`ImageSet` per image entry and the error for an entry that is
    not one (an artifact, a referrers index, a broken document). ``expected`` is what the
    lock (when one was given) expects but the source lacks ([LOCK-6]).
    """

    source: str
    entries: tuple[ImageSet | OcimergeError, ...]
    expected: tuple[Missing, ...] = ()

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
        """The report as ``inspect --json`` prints it; failed entries as ``{"error": …}``;
        ``missing``: what the lock expects but the source lacks (empty without a lock)."""
        return {
            "source": self.source,
            "entries": [_entry_json(e) for e in self.entries],
            "missing": [m.to_json() for m in self.expected],
        }


def inspect(
    source: str | SourceSpec,
    options: RegistryOptions | None = None,
    *,
    referrers: bool = True,
    lock: Lock | None = None,
) -> InspectReport:
    """Describe a source: its entries, their images, attestations and referrers, what is absent.

    ``referrers=False`` looks for no referrers ([REFERRERS-9]): fewer requests to a registry.
    With ``lock`` the report's ``expected`` lists what the lock expects but the bundle lacks:
    images, and platform images, not held under their locked digests ([LOCK-6]); a lock
    with a selector is a ``UsageError``.

    Without a selector every entry of the source is described; an entry that is not an image
    is listed with the reason. A registry image is read as a registry source is ([REMOTE-1]):
    only manifests and configs, each verified.

    Raises for a wrong question (a selector or platform that names nothing) and for
    registry failures; the report is complete when it returns, since no layer is read.
    """
    spec = as_spec(source)
    _whole(spec, lock)
    roots: list[Root] = []
    with _read(spec, options, Walk(referrers=referrers), roots if lock is not None else None) as entries:
        expected: list[Missing] = []
        if lock is not None:
            expected = _check_lock(lock, [e for e in entries if isinstance(e, ImageSet)], spec.text, roots)[1]
        return InspectReport(spec.text, tuple(entries), tuple(expected))


# -- verify -------------------------------------------------------------------------------


@attrs.frozen
class VerifyReport:
    """Every problem found (not only the first), and how much was checked.

    ``problems`` are one-line messages naming the blob or image; ``notes`` are entries left
    unchecked because they are not images. The counts include manifests and configs.
    ``locked`` is how many images a lock pinned when one was given ([LOCK-6]), else None.
    """

    source: str
    problems: tuple[str, ...]
    blobs_checked: int
    bytes_checked: int
    notes: tuple[str, ...] = ()
    signatures: tuple[SignedImage, ...] = ()
    locked: int | None = None

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
            "lock": None if self.locked is None else {"images": self.locked},
        }


@attrs.define
class _Tally:
    """Problems and counts accumulated over a verify run; each blob digest checked once."""

    problems: list[str] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    signatures: list[SignedImage] = attrs.Factory(list)
    seen: set[str] = attrs.Factory(set)
    failed: dict[str, str] = attrs.Factory(dict)  # bad blob digest -> the image that read it first
    blobs: int = 0
    bytes: int = 0
    on_event: EventCallback | None = None  # [PROGRESS-2] told of each blob re-hashed

    def image(self, image: Image) -> None:
        """Check one image: [VERIFY-3] first, then each blob not yet seen, read to the end.

        A bad blob's problem names the image it was read for; another image holding the same
        blob (read once) gets a line of its own pointing to it, so every image is named.
        """
        self.problems.extend(_layer_problems(image))
        for blob in _image_blobs(image):
            failed = self.failed.get(str(blob.digest))
            if failed is not None and failed != image.source:
                self.problems.append(f"{image.source}: {image.platform}: blob {blob.digest} is bad (see {failed})")
            problem = self._blob(blob)
            if problem is not None:
                self.failed[str(blob.digest)] = image.source
                self.problems.append(_about(image, problem))
        self.blobs += 2  # the manifest and config were verified as they were read
        self.bytes += image.manifest.descriptor.size + image.config.descriptor.size

    def referrers(self, loaded: ImageSet) -> None:
        """[REFERRERS-9] Re-hash each referrer's blobs (its manifest was verified when read)."""
        for referrer in loaded.referrers:
            self.blobs += 1
            self.bytes += referrer.document.descriptor.size
            for blob in referrer.blobs:
                problem = self._blob(blob)
                if problem is not None:
                    self.problems.append(problem)

    def plan(self, entries: Iterable[ImageSet | OcimergeError]) -> None:
        """[PROGRESS-2] Every blob :meth:`_blob` will read, each digest once, before the first is read."""
        if self.on_event is None:
            return
        wanted: dict[str, Blob] = {}
        for entry in entries:
            if isinstance(entry, ImageSet):
                blobs = [*(b for i in entry.images for b in _image_blobs(i))]
                blobs += [b for r in entry.referrers for b in r.blobs]
                wanted.update((str(b.digest), b) for b in blobs if _readable(b) and str(b.digest) not in wanted)
        plan(self.on_event, wanted.values())

    def _blob(self, blob: Blob) -> str | None:
        """Read one blob to the end, once per digest; a failure is returned, a problem of that blob."""
        if str(blob.digest) in self.seen:
            return None
        self.seen.add(str(blob.digest))
        # [MEDIA-4] a foreign layer lives at its URLs, not in the source: nothing to check
        if not _readable(blob):
            return None
        try:
            self.bytes += copy_reported(copy_verified, blob, _discard, self.on_event, BlobAction.VERIFY)
            self.blobs += 1
        # a registry failure on one blob is a problem of that blob; the rest still count
        except (DigestMismatchError, BlobMissingError, RegistryError) as exc:
            return str(exc)
        return None


def _image_blobs(image: Image) -> list[Blob]:
    """The blobs of ``image`` verify reads: its layers and its attestations' blobs."""
    return [*image.layers, *(b for a in image.attestations for b in a.blobs)]


def _readable(blob: Blob) -> bool:
    """[MEDIA-4] False for a foreign layer the source lacks: it lives at its URLs, nothing to check."""
    return blob.available or not mt.is_foreign_layer(blob.descriptor.media_type)


def _discard(_chunk: memoryview) -> None:
    """Where a re-hashed blob's bytes go: nowhere (the verified read is the point)."""


def _about(image: Image, problem: str) -> str:
    """[LOCK-6] A blob's problem, led by the image it was read for (``<source> (<name>): <platform>``).

    The blob's own message starts with the source's name; when the image's label is that name
    and a name in brackets, the label takes its place rather than repeating it.
    """
    head, sep, rest = problem.partition(": ")
    if sep and image.source.startswith(f"{head} ("):
        problem = rest
    return f"{image.source}: {image.platform}: {problem}"


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


def verify(  # noqa: PLR0913 - the source, its registry options, and four keyword-only checks
    source: str | SourceSpec,
    options: RegistryOptions | None = None,
    *,
    referrers: bool = True,
    key: PublicKey | None = None,
    key_name: str = "the key",
    lock: Lock | None = None,
    on_event: EventCallback | None = None,
) -> VerifyReport:
    """Re-read and re-hash every blob of every image in a source, and of their referrers;
    collect every problem.

    With ``key``, each image must also be signed by it in cosign's format ([SIGNED-1]):
    an image without a valid signature is a problem naming it and ``key_name``.

    With ``lock`` the source is a bundle held to it after the re-hash ([LOCK-6]): each locked
    image is found by its full reference; a missing image, a root digest other than
    ``bundled``, platform images other than the locked ones (missing, extra, or another
    digest) and every entry the lock does not name are problems naming the image. A lock
    with a selector is a ``UsageError``.

    A registry image (``docker://REF``) is downloaded blob by blob, streamed and hashed, never
    stored. An entry that is not an image is noted, not counted as a problem. ``on_event`` is
    told of every blob re-hashed ([PROGRESS-2]): all planned once the documents are read, then
    each as it is read (``VERIFY``; a bad one is done without an action).

    Raises when the source cannot be opened, for a wrong question, and for registry failures
    while documents are read; every problem with blob content is in the report, so one run
    lists them all.
    """
    spec = as_spec(source)
    _whole(spec, lock)
    tally = _Tally(on_event=on_event)
    roots: list[Root] = []
    with _read(spec, options, Walk(referrers=referrers), roots if lock is not None else None) as entries:
        tally.plan(entries)
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
        if lock is not None:
            tally.problems.extend(
                _check_lock(lock, [e for e in entries if isinstance(e, ImageSet)], spec.text, roots)[0]
            )
    return VerifyReport(
        spec.text,
        tuple(tally.problems),
        tally.blobs,
        tally.bytes,
        tuple(tally.notes),
        tuple(tally.signatures),
        None if lock is None else len(lock.images),
    )
