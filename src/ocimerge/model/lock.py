"""Image lists and lock files: what an air-gap release pins ([LOCK-1] .. [LOCK-5]).

Pure values and codecs: an image list (``IMAGES.txt``) names references and the platforms
each should keep ([LOCK-1]); a lock pins each to digests and sizes ([LOCK-2]); the lock is
JSON with a version, strictly parsed ([LOCK-3]); two locks compare into what moved
([LOCK-4]); an index keeps only its locked platforms by :func:`filter_index` ([LOCK-5]).
Resolving references through a registry is not done here (that is :mod:`ocimerge.bundle`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from ocimerge.errors import DocumentError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.annotations import attested_digest, is_attestation
from ocimerge.model.codec import decode_json, encode_json
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageIndex
from ocimerge.model.platform import Platform
from ocimerge.model.reference import Reference

__all__ = [
    "LOCK_VERSION",
    "ImageLine",
    "Lock",
    "LockChange",
    "LockedImage",
    "LockedPlatform",
    "compare_locks",
    "filter_index",
    "parse_image_list",
]

#: [LOCK-3] The lock format's version; a reader refuses any other.
LOCK_VERSION = 1
#: [LOCK-1] An image list longer than this is not a release, it is a mistake or an attack.
MAX_IMAGES = 10_000


@attrs.frozen
class ImageLine:
    """[LOCK-1] One line of an image list: a reference and the platforms to keep (none: all).

    >>> line = parse_image_list("ghcr.io/acme/app:1.4 linux/amd64,linux/arm64\\n")[0]
    >>> str(line.reference), [str(p) for p in line.platforms]
    ('ghcr.io/acme/app:1.4', ['linux/amd64', 'linux/arm64'])
    """

    reference: Reference
    platforms: tuple[Platform, ...] = ()
    line: int = 0


def parse_image_list(text: str, *, where: str = "image list") -> tuple[ImageLine, ...]:
    """[LOCK-1] Parse ``REF [PLATFORM[,PLATFORM...]]`` lines; ``#`` starts a comment.

    Blank lines and comments are skipped. A reference without tag or digest means ``latest``,
    as docker reads it. Raises :class:`UsageError` naming ``where`` and the line for a bad
    reference or platform, a platform listed twice on a line (after normalisation), a line
    with more than two fields, a reference listed twice, or no reference at all.
    """
    out: list[ImageLine] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        content = raw.split("#", 1)[0].strip()
        if not content:
            continue
        fields = content.split()
        at = f"{where}:{number}"
        if len(fields) > 2:
            raise UsageError(f"{at}: expected 'REF [PLATFORM[,PLATFORM...]]', found {len(fields)} fields")
        try:
            reference = Reference.parse(fields[0])
            platforms = tuple(Platform.parse(p) for p in fields[1].split(",") if p) if len(fields) == 2 else ()
        except UsageError as exc:
            raise UsageError(f"{at}: {exc}") from None
        twice = [p for i, p in enumerate(platforms) if p in platforms[:i]]
        if twice:
            raise UsageError(f"{at}: platform {twice[0]} is listed twice")
        key = str(reference)
        if key in seen:
            raise UsageError(f"{at}: {key} is listed already, on line {seen[key]}")
        seen[key] = number
        out.append(ImageLine(reference, platforms, number))
        if len(out) > MAX_IMAGES:
            raise UsageError(f"{where}: more than {MAX_IMAGES} images")
    if not out:
        raise UsageError(f"{where}: no image references in it")
    return tuple(out)


@attrs.frozen
class LockedPlatform:
    """[LOCK-2] One platform image a lock keeps: its manifest and the bytes it pulls.

    ``content_size`` is the config plus layers as stored (what a pull transfers besides the
    manifest).
    """

    platform: Platform
    digest: Digest
    media_type: str
    size: int
    content_size: int

    def to_json(self) -> dict[str, Any]:
        """[LOCK-3] As the lock file spells it."""
        return {
            "platform": self.platform.to_json(),
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "size": self.size,
            "contentSize": self.content_size,
        }


@attrs.frozen
class LockedImage:
    """[LOCK-2] One image of a release, pinned.

    ``reference`` is the image as listed (normalised, with its tag); ``digest``, ``media_type``
    and ``size`` are what the tag named when locked; ``platforms`` are the platform images kept
    (all of an index when the list named none). ``bundled`` is the digest of the document a
    bundle holds for it: ``digest`` itself when every platform is kept, else the index
    filtered to the kept platforms ([LOCK-5]).
    """

    reference: Reference
    digest: Digest
    media_type: str
    size: int
    platforms: tuple[LockedPlatform, ...]
    bundled: Digest

    @property
    def content_size(self) -> int:
        """The bytes of every kept platform image (shared layers counted in each)."""
        return sum(p.content_size for p in self.platforms)

    def to_json(self) -> dict[str, Any]:
        """[LOCK-3] As the lock file spells it."""
        return {
            "reference": str(self.reference),
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "size": self.size,
            "bundled": str(self.bundled),
            "platforms": [p.to_json() for p in self.platforms],
        }


@attrs.frozen
class Lock:
    """[LOCK-2][LOCK-3] A release pinned: every image, in the order the list gave them.

    >>> lock = Lock(())
    >>> Lock.parse(lock.encode()) == lock
    True
    """

    images: tuple[LockedImage, ...]

    def image(self, reference: Reference | str) -> LockedImage | None:
        """The locked image of ``reference`` (as listed, normalised), if any."""
        wanted = str(reference if isinstance(reference, Reference) else Reference.parse(reference))
        return next((i for i in self.images if str(i.reference) == wanted), None)

    def to_json(self) -> dict[str, Any]:
        """[LOCK-3] The lock document."""
        return {"version": LOCK_VERSION, "images": [i.to_json() for i in self.images]}

    def encode(self) -> bytes:
        """[LOCK-3] The lock file's bytes: the canonical encoding, then a newline."""
        return encode_json(self.to_json()) + b"\n"

    @classmethod
    def parse(cls, raw: bytes, *, where: str = "lock file") -> Lock:
        """[LOCK-3] Parse a lock file strictly; :class:`DocumentError` naming the field otherwise."""
        value = decode_json(raw, where=where)
        found = value.get("version") if isinstance(value, dict) else None
        # type(...) is int: JSON's true and 1.0 compare equal to 1 in Python, and are not versions
        if not isinstance(value, dict) or type(found) is not int or found != LOCK_VERSION:
            raise DocumentError(f"{where}: not an ocimerge lock of version {LOCK_VERSION} (version {found!r})")
        images = value.get("images")
        if not isinstance(images, list):
            raise DocumentError(f"{where}: 'images' must be a list")
        parsed = tuple(_image(v, f"{where}: images[{i}]") for i, v in enumerate(images))
        seen: set[str] = set()
        for i, image in enumerate(parsed):
            if str(image.reference) in seen:
                raise DocumentError(f"{where}: images[{i}]: 'reference': {image.reference} is locked twice")
            seen.add(str(image.reference))
        return cls(parsed)


_KINDS: dict[type, str] = {str: "string", int: "non-negative integer", list: "list"}


def _field(value: dict[str, Any], key: str, kind: type, where: str) -> Any:
    found = value.get(key)
    # bool is an int in Python, and a size is never negative ([LOCK-3])
    if not isinstance(found, kind) or isinstance(found, bool) or (isinstance(found, int) and found < 0):
        raise DocumentError(f"{where}: '{key}' must be a {_KINDS.get(kind, kind.__name__)}")
    return found


def _digest(value: dict[str, Any], key: str, where: str) -> Digest:
    text = _field(value, key, str, where)
    try:
        return Digest.parse(text)
    except DocumentError as exc:
        raise DocumentError(f"{where}: '{key}': {exc}") from None


def _image(value: object, where: str) -> LockedImage:
    if not isinstance(value, dict):
        raise DocumentError(f"{where}: must be an object")
    try:
        reference = Reference.parse(_field(value, "reference", str, where))
    except UsageError as exc:
        raise DocumentError(f"{where}: 'reference': {exc}") from None
    platforms = tuple(
        _platform(p, f"{where}: platforms[{i}]") for i, p in enumerate(_field(value, "platforms", list, where))
    )
    for i, kept in enumerate(platforms):
        if any(p.platform == kept.platform for p in platforms[:i]):
            raise DocumentError(f"{where}: platforms[{i}]: 'platform': {kept.platform} is locked twice")
    return LockedImage(
        reference=reference,
        digest=_digest(value, "digest", where),
        media_type=_field(value, "mediaType", str, where),
        size=_field(value, "size", int, where),
        platforms=platforms,
        bundled=_digest(value, "bundled", where),
    )


def _platform(value: object, where: str) -> LockedPlatform:
    if not isinstance(value, dict):
        raise DocumentError(f"{where}: must be an object")
    return LockedPlatform(
        platform=Platform.from_json(value.get("platform"), where=f"{where}: platform"),
        digest=_digest(value, "digest", where),
        media_type=_field(value, "mediaType", str, where),
        size=_field(value, "size", int, where),
        content_size=_field(value, "contentSize", int, where),
    )


@attrs.frozen
class LockChange:
    """[LOCK-4] How one image moved between two locks: added, removed, or re-pinned.

    ``kind`` is ``added``, ``removed`` or ``moved``; ``detail`` says what changed (the old and
    new digests, platforms gained or lost).
    """

    reference: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reference}: {self.kind}: {self.detail}" if self.detail else f"{self.reference}: {self.kind}"


def compare_locks(old: Lock, new: Lock) -> tuple[LockChange, ...]:
    """[LOCK-4] What moved from ``old`` to ``new``: one change per image that differs.

    An image whose tag now names another digest is ``moved`` (with the platforms whose
    digests changed, or that appeared or went); images only in one lock are ``added`` or
    ``removed``. Order: ``new``'s images first, then the removed ones in ``old``'s order.
    """
    before = {str(i.reference): i for i in old.images}
    changes: list[LockChange] = []
    for image in new.images:
        key = str(image.reference)
        was = before.pop(key, None)
        if was is None:
            changes.append(LockChange(key, "added", f"{image.digest.short}, {len(image.platforms)} platform(s)"))
        elif was.digest != image.digest or was.bundled != image.bundled:
            changes.append(LockChange(key, "moved", _moved(was, image)))
    changes.extend(LockChange(key, "removed", f"was {was.digest.short}") for key, was in before.items())
    return tuple(changes)


def _moved(was: LockedImage, now: LockedImage) -> str:
    """``sha256:ab… -> sha256:cd…; linux/arm64 changed; linux/s390x added``."""
    parts = [f"{was.digest.short} -> {now.digest.short}"]
    old = {p.platform: p for p in was.platforms}
    new = {p.platform: p for p in now.platforms}
    parts += [f"{p} changed" for p in new if p in old and new[p].digest != old[p].digest]
    parts += [f"{p} added" for p in new if p not in old]
    parts += [f"{p} removed" for p in old if p not in new]
    return "; ".join(parts)


def filter_index(document: Document[ImageIndex], platforms: Sequence[Platform]) -> Document[ImageIndex]:
    """[LOCK-5] The index keeping only ``platforms`` (matched as --platform is, [PLATFORM-7]), and their attestations.

    Entries keep their descriptors as they are (annotations, platform), in their order; the
    index keeps its media type and annotations. No ``platforms``, or every entry kept: the
    document itself, same bytes. Otherwise a new document authored by the canonical encoder
    (a new digest). Raises :class:`UsageError` when a platform asked for is not in the index.
    """
    if not platforms:
        return document
    index = document.value
    images = [e for e in index.manifests if not is_attestation(e) and e.platform is not None]
    # [PLATFORM-7] a line's platform is a request: windows/amd64 keeps every os.version of it
    missing = [p for p in platforms if not any(e.platform is not None and p.matches(e.platform) for e in images)]
    if missing:
        found = ", ".join(sorted({str(e.platform) for e in images})) or "none"
        raise UsageError(
            f"index {document.descriptor.digest.short} has no {', '.join(map(str, missing))} (it has {found})"
        )
    kept_images = {str(e.digest) for e in images if e.platform is not None and e.platform.matches_any(platforms)}
    kept = tuple(e for e in index.manifests if _keeps(e, kept_images))
    if len(kept) == len(index.manifests):
        return document
    authored: Document[ImageIndex] = Document.author(attrs.evolve(index, manifests=kept))
    return authored


def _keeps(entry: Descriptor, images: set[str]) -> bool:
    """An entry of a filtered index: a kept image, or an attestation of one."""
    if is_attestation(entry):
        return attested_digest(entry) in images
    return str(entry.digest) in images and entry.media_type in mt.MANIFEST_TYPES | mt.INDEX_TYPES
