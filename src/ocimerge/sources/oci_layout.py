"""OCI image layouts, as directories or tars: ``oci-layout``, ``index.json``, ``blobs/``.

[LAYOUT-1] .. [LAYOUT-4]: the :class:`~ocimerge.sources.core.Source` core over a layout; the
walk below its roots ([LAYOUT-5]) is :mod:`ocimerge.sources.walk`'s. Also reads BuildKit's
``type=oci`` output and the OCI half of Docker 25+ ``docker save``.

Nothing here trusts the layout: every document is size-capped before it is read and every
byte is verified against the descriptor that named it, so a layout copied from elsewhere
can be merged without first checking it with ``ocimerge verify``.
"""

from __future__ import annotations

import re

from ocimerge.content import FOUND_BY_COSIGN, FOUND_BY_TAG, FOUND_IN_LAYOUT, Blob, BlobOrigin
from ocimerge.errors import (
    BlobMissingError,
    DigestMismatchError,
    DocumentError,
    InputError,
    SelectionError,
    UnsupportedMediaTypeError,
)
from ocimerge.model import mediatype as mt
from ocimerge.model.annotations import entry_names
from ocimerge.model.codec import MAX_DOCUMENT_SIZE, decode_json
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import decode_index, decode_manifest_or_index
from ocimerge.model.referrers import ReferrersIndex
from ocimerge.sources._tarfs import FileSystem, read_small
from ocimerge.sources.core import Listed, Root, SourceKind
from ocimerge.sources.selector import Selector, describe_choices, matches_name

__all__ = ["OciLayout", "blob_path"]


# [REFERRERS-11] The names under which a layout keeps referrers: cosign's tags and the
# fallback tag, bare (regclient) or after a name and a colon (``_cosign:sha256-….sig``).
_COSIGN_NAME = re.compile(r"(?:.*:)?(sha256-[0-9a-f]{64}\.(?:sig|att|sbom))")
_FALLBACK_NAME = re.compile(r"(?:.*:)?(sha256)-([0-9a-f]{64})")
#: [REFERRERS-11][SEC-2] Top-level documents read to find the referrers among them: small
#: ones only, and not more bytes in all than this, so a hostile ``index.json`` cannot make
#: the search for referrers read gigabytes.
SNIFF_MAX_DOCUMENT = 256 * 1024
SNIFF_MAX_TOTAL = 64 * 1024 * 1024


def blob_path(digest: Digest) -> str:
    """[LAYOUT-2] Where a layout keeps the blob of ``digest``."""
    return f"blobs/{digest.algorithm}/{digest.encoded}"


class OciLayout:
    """An OCI image layout on a :class:`FileSystem`: the source core of [SOURCE-4]."""

    kind = SourceKind.OCI
    origin: BlobOrigin | None = None

    def __init__(self, fs: FileSystem) -> None:
        """[LAYOUT-1] Read ``index.json`` of ``fs`` (and check ``oci-layout`` when present).

        Raises ``InputError`` without ``index.json``, ``DocumentError`` for a wrong layout
        version or an invalid index. Blobs are not touched until asked for; the layout takes
        ownership of ``fs`` and :meth:`close` closes it.
        """
        self.fs = fs
        self.name = fs.name
        if not fs.exists("index.json"):
            raise InputError(f"{self.name}: OCI layout without index.json")
        # [LAYOUT-1] the header is optional (it carries only a version: see the clause); when present
        # it must say 1.0.0, as containerd's importer insists. 64 KiB: it is one tiny object.
        if fs.exists("oci-layout"):
            header = decode_json(read_small(fs, "oci-layout", 64 * 1024), where=f"{self.name}: oci-layout")
            version = header.get("imageLayoutVersion") if isinstance(header, dict) else None
            if version != "1.0.0":
                raise DocumentError(f"{self.name}: oci-layout: imageLayoutVersion {version!r} is not 1.0.0")
        raw = read_small(fs, "index.json", MAX_DOCUMENT_SIZE)
        self.index = decode_index(raw, where=f"{self.name}: index.json")
        self._referrers: dict[Digest, list[Listed]] | None = None
        self._referrer_entries: set[Digest] = set()
        # [SEC-2] what finding referrers may read: each document once, SNIFF_MAX_TOTAL in all
        self._budget = SNIFF_MAX_TOTAL
        self._read_once: set[Digest] = set()
        self._fallbacks: dict[Digest, ReferrersIndex | None] = {}

    # -- content ---------------------------------------------------------------------------

    def blob(self, descriptor: Descriptor, where: str | None = None) -> Blob:
        """The blob a descriptor names; its opener checks the stored size first [LAYOUT-2].

        A blob the layout lacks is returned unavailable rather than raised, since a partial
        export may legitimately omit it; the error comes only if someone opens it. The size
        check makes a wrong-length file fail before any byte is streamed to a sink.
        """
        path = blob_path(descriptor.digest)
        label = f"{self.name}: {where or path}"
        if not self.fs.exists(path):
            return Blob(descriptor, None, label)
        fs = self.fs

        def opener() -> object:
            size = fs.size(path)
            if size != descriptor.size:
                raise DigestMismatchError(f"{label}: {path} is {size} bytes but its descriptor says {descriptor.size}")
            return fs.open(path)

        return Blob(descriptor, opener, label)  # type: ignore[arg-type]

    def has(self, descriptor: Descriptor) -> bool:
        """Whether the layout stores the blob (a partial export may not)."""
        return self.fs.exists(blob_path(descriptor.digest))

    def document(self, descriptor: Descriptor, where: str) -> bytes:
        """A manifest, index or config: capped, read whole and verified [VERIFY-1].

        Raises ``DocumentError`` over [JSON-3]'s cap (checked on the descriptor, before any
        read), ``BlobMissingError`` when absent and ``DigestMismatchError`` when the bytes
        are not the ones the descriptor names. The bytes returned are exactly those stored.
        """
        if descriptor.size > MAX_DOCUMENT_SIZE:
            raise DocumentError(
                f"{self.name}: {where} is {descriptor.size} bytes, over the "
                f"{MAX_DOCUMENT_SIZE}-byte limit for a manifest"
            )
        blob = self.blob(descriptor, where)
        if not blob.available:
            raise BlobMissingError(f"{self.name}: {where} names blob {descriptor.digest}, which is not in the layout")
        with blob.open() as reader:
            return reader.read()

    # -- selection -------------------------------------------------------------------------

    def entries(self) -> tuple[Descriptor, ...]:
        """The ``index.json`` entries, in file order."""
        return self.index.manifests

    def roots(self) -> tuple[Root, ...]:
        """Every ``index.json`` entry as a root, labelled with its last name; the referrers
        among them are not roots but travel with their subjects ([REFERRERS-11])."""
        self._scan()
        return tuple(self._root(e) for e in self.entries() if e.digest not in self._referrer_entries)

    # -- referrers -------------------------------------------------------------------------

    def referrers_of(self, digest: Digest) -> tuple[Listed, ...]:
        """[REFERRERS-11] The top-level entries that refer to ``digest``: manifests whose
        ``subject`` names it, the fallback tag's index entries, cosign's tags."""
        return tuple(self._scan().get(digest, ()))

    def _scan(self) -> dict[Digest, list[Listed]]:
        """[REFERRERS-11] Sort the top-level entries that are referrers by subject, once."""
        if self._referrers is not None:
            return self._referrers
        found: dict[Digest, list[Listed]] = {}
        named: set[tuple[Digest, Digest]] = set()  # (entry, subject) pairs already listed
        for entry in self.entries():
            listed = self._named_referrers(entry)
            if listed is not None and (entry.digest, listed[0]) in named:
                continue  # [SEC-2] one document under many names lists its referrers once
            if listed is not None:
                named.add((entry.digest, listed[0]))
            sniff = entry.media_type in mt.MANIFEST_TYPES | mt.INDEX_TYPES and entry.size <= min(
                SNIFF_MAX_DOCUMENT, self._budget
            )
            if listed is None and sniff and entry.digest not in self._read_once and self.has(entry):
                self._read_once.add(entry.digest)
                self._budget -= entry.size
                listed = self._subject_referrer(entry)
            if listed is not None:
                subject, items = listed
                found.setdefault(subject, []).extend(items)
                # an orphan (its subject not in the layout) stays a root, so inspect shows it
                if self.fs.exists(blob_path(subject)):
                    self._referrer_entries.add(entry.digest)
        self._referrers = found
        return found

    def _named_referrers(self, entry: Descriptor) -> tuple[Digest, list[Listed]] | None:
        """An entry named with a cosign tag or a fallback tag: its subject, and what it lists."""
        plain = Descriptor(entry.media_type, entry.digest, entry.size, artifact_type=entry.artifact_type)
        for name in entry_names(entry):
            cosign = _COSIGN_NAME.fullmatch(name)
            if cosign and entry.media_type in mt.MANIFEST_TYPES:
                tag = cosign[1]
                subject = Digest.parse(tag.rpartition(".")[0].replace("-", ":", 1))
                return subject, [Listed(plain, FOUND_BY_COSIGN, tag)]
            fallback = _FALLBACK_NAME.fullmatch(name)
            if fallback and entry.media_type == mt.OCI_INDEX and self.has(entry):
                subject = Digest.parse(f"{fallback[1]}:{fallback[2]}")
                index = self._fallback_index(entry, subject, name)
                if index is None:
                    return None  # not an index of referrers (the image itself, say): an ordinary entry
                return subject, [Listed(d, FOUND_BY_TAG) for d in index.referrers]
        return None

    def _fallback_index(self, entry: Descriptor, subject: Digest, name: str) -> ReferrersIndex | None:
        """[REFERRERS-11][SEC-2] The referrers index under a fallback tag name: read and parsed
        once per digest, however many names (or subjects) list it, and charged to the sniff
        budget once; None when it is no index of referrers, or is the subject itself."""
        if entry.digest == subject:
            return None  # [REFERRERS-5] the image under its own fallback tag (GitLab): not a list
        if entry.digest not in self._fallbacks:
            index = None
            self._budget -= entry.size
            if self._budget >= 0:
                try:
                    raw = self.document(entry, f"fallback tag {name}")
                    index = ReferrersIndex.parse(raw, where=f"{self.name}: {name}")
                except InputError:
                    index = None
            self._fallbacks[entry.digest] = index
        return self._fallbacks[entry.digest]

    def _subject_referrer(self, entry: Descriptor) -> tuple[Digest, list[Listed]] | None:
        """An entry whose document has a ``subject``: a referrer of that subject."""
        try:
            raw = self.document(entry, f"entry {entry.digest.short}")
            value = decode_manifest_or_index(raw, media_type=entry.media_type, where=f"{self.name}: index.json")
        except InputError:
            return None  # a broken entry is reported when it is selected or walked, not here
        subject = getattr(value, "subject", None)
        if not isinstance(subject, Descriptor):
            return None
        plain = Descriptor(entry.media_type, entry.digest, entry.size, artifact_type=entry.artifact_type)
        return subject.digest, [Listed(plain, FOUND_IN_LAYOUT)]

    def _root(self, entry: Descriptor) -> Root:
        """A root for an ``index.json`` entry; stored, so its own digest is shown and kept."""
        names = entry_names(entry)
        return Root(entry, names, self.name + (f" ({names[-1]})" if names else ""))

    def select(self, selector: Selector) -> Root:
        """[LAYOUT-4] The root ``selector`` names (see :meth:`select_entry`)."""
        return self._root(self.select_entry(selector))

    def select_entry(self, selector: Selector) -> Descriptor:
        """[LAYOUT-4] The one ``index.json`` entry ``selector`` names.

        With no selector the layout must hold exactly one image (several names for one digest
        count once); otherwise the error lists the choices.
        """
        # only images are selectable: other entries (artifacts, unknown types) never count
        # towards "exactly one image", but are still listed as choices in the messages
        entries = [e for e in self.entries() if e.media_type in mt.MANIFEST_TYPES | mt.INDEX_TYPES]
        if selector.digest is None and selector.tag is None and len({e.digest for e in entries}) > 1:
            # [REFERRERS-11] signatures and SBOMs stored beside the image are not a second image
            self._scan()
            entries = [e for e in entries if e.digest not in self._referrer_entries] or entries
        if selector.digest is not None:
            found = [e for e in entries if e.digest == selector.digest]
            if found:
                return found[0]
            raise SelectionError(
                f"{self.name}: no entry with digest {selector.digest}; " + describe_choices(self.entries(), entry_names)
            )
        if selector.tag is not None:
            found = [e for e in entries if matches_name(selector.tag, entry_names(e))]
            # a tag listed under several names (ref.name and containerd's image name) is one image
            if len({e.digest for e in found}) == 1:
                return found[0]
            if not found:
                raise SelectionError(
                    f"{self.name}: no image tagged {selector.tag!r}; " + describe_choices(self.entries(), entry_names)
                )
            raise SelectionError(
                f"{self.name}: {selector.tag!r} names several images; " + describe_choices(found, entry_names)
            )
        if not self.entries():
            raise SelectionError(f"{self.name}: the layout holds no image (index.json is empty)")
        if not entries:
            kinds = ", ".join(sorted({e.media_type for e in self.entries()}))
            raise UnsupportedMediaTypeError(f"{self.name}: index.json holds no image manifest or index (only {kinds})")
        if len({e.digest for e in entries}) > 1:
            raise SelectionError(
                f"{self.name}: the layout holds several images; choose one with "
                f"{self.name}:TAG or {self.name}@DIGEST; " + describe_choices(entries, entry_names)
            )
        return entries[0]

    def close(self) -> None:
        """Close the file system; blobs opened earlier stay readable until they are closed."""
        self.fs.close()
