"""Write an OCI image layout, as a directory or as a tar, atomically ([SINK-1] .. [SINK-4]).

[SINK-1] Everything is written under a temporary name beside the destination and renamed
into place only when complete, so a failed run leaves nothing behind.
[SINK-2] Blobs are deduplicated by digest and streamed through their verifying readers: a
blob that does not match its descriptor aborts the write.
[SINK-3] Order: ``oci-layout``, blobs (layers and configs, then manifests, then the index),
``index.json`` last, naming the index with ``org.opencontainers.image.ref.name``.
[SINK-4] Tar members are deterministic: mode 0444, mtime 0, uid/gid 0, no user names.
[SINK-5] A destination ending in ``.gz`` or ``.tgz`` is gzipped as a whole, deterministically.
[CARRY-6] The publication's referrers are written too (documents and blobs, exact bytes) and
listed in ``index.json`` after the root: under their cosign tag, else unnamed with their
``artifactType``.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import secrets
import shutil
import signal
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import attrs

from ocimerge.content import Blob, Referrer
from ocimerge.errors import OutputError
from ocimerge.events import BlobAction, EventCallback, copy_reported, plan
from ocimerge.model import mediatype as mt
from ocimerge.model.annotations import REF_NAME
from ocimerge.model.codec import encode_json
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document
from ocimerge.model.referrers import referrer_descriptor
from ocimerge.sinks._copy import copy_verified
from ocimerge.sinks.core import Publication

__all__ = [
    "LAYOUT_HEADER",
    "LayoutResult",
    "LayoutSink",
    "claim_destination",
    "index_json",
    "move_into_place",
    "parse_output",
    "referrer_entries",
    "write_archive",
    "write_layout",
]

#: [LAYOUT-1] The ``oci-layout`` file we write: always, though we accept layouts without
#: it, because image-layout.md requires it and stricter readers than ours may check it.
LAYOUT_HEADER = encode_json({"imageLayoutVersion": "1.0.0"})


@attrs.frozen
class LayoutResult:
    """What a layout sink wrote: where, and how many bytes of blob content."""

    path: str
    bytes_written: int


@attrs.frozen
class LayoutSink:
    """[SINK-6] An OCI layout directory or archive (``archive``) at ``path``.

    ``tag_name`` is the ``org.opencontainers.image.ref.name`` the root gets in
    ``index.json``; ``force`` allows replacing what is at ``path``.
    """

    path: str
    archive: bool
    tag_name: str | None = "latest"
    force: bool = False
    #: [PROGRESS-2] told of each blob written (``WRITE``); None reports nothing
    on_event: EventCallback | None = attrs.field(default=None, eq=False)

    def publish(self, publication: Publication) -> LayoutResult:
        """[SINK-1] Write the whole publication under a temporary name, then rename it.

        The root document goes last of all documents, so ``index.json`` never names
        anything not yet written ([SINK-3]); every blob is verified on the way out
        ([SINK-2]), so a corrupt source aborts the publication and leaves no output.
        Raises ``OutputError`` (existing path, unwritable place) and whatever reading a
        blob raises (``DigestMismatchError``, ``BlobMissingError``).

        [CARRY-6] The referrers follow the root: their blobs and documents are written with
        the rest, and ``index.json`` lists each after the root entry (:func:`referrer_entries`).
        """
        referrers = publication.referrers
        written = write_layout(
            self.path,
            # their blobs are among the publication's; listed again so a hand-made publication
            # cannot write an entry whose content is missing (each digest is written once)
            blobs=[*publication.blobs, *(b for r in referrers for b in r.blobs if b.available)],
            documents=[*publication.documents, publication.root, *(r.document for r in referrers)],
            roots=[(publication.root.descriptor, self.tag_name), *referrer_entries(referrers)],
            archive=self.archive,
            force=self.force,
            on_event=self.on_event,
        )
        return LayoutResult(self.path, written)


def parse_output(
    text: str, *, tag_name: str | None = "latest", force: bool = False, on_event: EventCallback | None = None
) -> LayoutSink:
    """``-o OUT``: ``OUT.tar`` (``.tar.gz``, ``.tgz``, or ``oci-archive:OUT``) is an archive,
    ``oci:OUT`` or any other name a layout directory.

    The prefixes follow skopeo's transport names, so a user can copy the same target
    string between the two tools; nothing is checked on disk here. ``on_event`` is told of
    each blob the sink writes ([PROGRESS-2]).
    """
    if text.startswith("oci:"):
        return LayoutSink(text.removeprefix("oci:"), False, tag_name, force, on_event)
    if text.startswith("oci-archive:"):
        return LayoutSink(text.removeprefix("oci-archive:"), True, tag_name, force, on_event)
    return LayoutSink(text, text.endswith((".tar", ".tar.gz", ".tgz")), tag_name, force, on_event)


def referrer_entries(referrers: Iterable[Referrer]) -> list[tuple[Descriptor, str | None]]:
    """[CARRY-6] The ``index.json`` entries of ``referrers``, in order, each once.

    A referrer under cosign's tag is named by that tag; one with a ``subject`` carries the
    ``artifactType`` the referrers API would list ([REFERRERS-3]) and no name, as oras-go's
    OCI store lists the manifests it was given untagged.
    """
    entries: list[tuple[Descriptor, str | None]] = []
    seen: set[tuple[Digest, str | None]] = set()
    for referrer in referrers:
        key = (referrer.digest, referrer.tag)
        if key in seen:
            continue
        seen.add(key)
        document = referrer.document
        descriptor = document.descriptor
        if getattr(document.value, "subject", None) is not None:
            descriptor = referrer_descriptor(document)
        entries.append((descriptor, referrer.tag))
    return entries


def index_json(roots: Iterable[tuple[Descriptor, str | None]]) -> bytes:
    """The ``index.json`` naming each root descriptor with its tag (or none).

    The bytes are the canonical encoding ([JSON-2]), so the same roots always give the
    same file. Of each descriptor only the media type, digest, size and ``artifactType``
    are kept ([CARRY-6]: a referrer's entry says what kind of artifact it is).
    """
    manifests = []
    for descriptor, tag in roots:
        # drop the source's annotations and platform: a stale ref.name from the input
        # layout must not survive next to the one this output chose ([LAYOUT-3])
        plain = Descriptor(
            descriptor.media_type, descriptor.digest, descriptor.size, artifact_type=descriptor.artifact_type
        )
        if tag:
            plain = plain.with_annotations({REF_NAME: tag})
        manifests.append(plain.to_json())
    return encode_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests})


def _unique(blobs: Iterable[Blob]) -> Iterator[Blob]:
    """[SINK-2] Each digest once, first occurrence wins, order otherwise kept ([SINK-3])."""
    seen: set[str] = set()
    for blob in blobs:
        key = str(blob.digest)
        if key not in seen:
            seen.add(key)
            yield blob


def _document_blobs(documents: Iterable[Document[Any]]) -> Iterator[Blob]:
    """Documents as blobs over their raw bytes: written exactly as read ([DOC-1])."""
    for doc in documents:
        yield Blob.from_bytes(doc.descriptor, doc.raw, f"document {doc.descriptor.digest.short}")


def write_layout(  # noqa: PLR0913 - the layout's content by name; LayoutSink is the narrow door
    destination: str,
    *,
    blobs: Iterable[Blob],
    documents: Iterable[Document[Any]],
    roots: Iterable[tuple[Descriptor, str | None]],
    archive: bool,
    force: bool = False,
    on_event: EventCallback | None = None,
) -> int:
    """Write a layout holding ``blobs`` and ``documents``, ``roots`` listed in ``index.json``.

    ``documents`` are written after ``blobs`` in the order given (children before the index).
    Returns the number of bytes of blob content written. Raises :class:`OutputError` when
    ``destination`` exists and ``force`` is false, or cannot be written. ``on_event`` is told
    of every blob, planned before the first is written, then each as it is ([PROGRESS-2]).
    """
    destination = os.path.abspath(destination)
    _check_destination(destination, force=force)
    parent = os.path.dirname(destination)
    if not os.path.isdir(parent):
        raise OutputError(f"{destination}: the directory {parent} does not exist")
    # the checks above come before any blob is read: a bad path fails in milliseconds,
    # not after gigabytes have been copied
    content = list(_unique([*blobs, *_document_blobs(documents)]))
    index = index_json(roots)
    plan(on_event, content)
    try:
        if archive:
            return _write_tar(destination, content, index, on_event)
        return _write_dir(destination, content, index, on_event)
    except OSError as exc:
        raise OutputError(f"{destination}: cannot write ({exc.strerror or exc})") from None


def claim_destination(destination: str, *, force: bool) -> None:
    """[SINK-1][SINK-7] Raise :class:`OutputError` unless a write may take ``destination``.

    The checks :func:`write_layout` makes before reading anything, for writers that stage
    their layout elsewhere first (the bundle's resumable staging directory, [BUNDLE-5]).
    """
    destination = os.path.abspath(destination)
    _check_destination(destination, force=force)
    parent = os.path.dirname(destination)
    if not os.path.isdir(parent):
        raise OutputError(f"{destination}: the directory {parent} does not exist")


def move_into_place(directory: str, destination: str) -> None:
    """[SINK-1] Rename a finished layout ``directory`` to ``destination`` (same file system),
    replacing what :func:`claim_destination` allowed, with signals held for the swap."""
    try:
        _replace(directory, os.path.abspath(destination))
    except OSError as exc:
        raise OutputError(f"{destination}: cannot write ({exc.strerror or exc})") from None


def write_archive(
    destination: str, blobs: Iterable[Blob], index: bytes, *, force: bool = False, on_event: EventCallback | None = None
) -> int:
    """[SINK-1][SINK-4] An OCI archive of ``blobs`` (each digest once, in order) and the given
    ``index.json`` bytes, atomically; for writers that author their own ``index.json``.

    Returns the bytes of blob content written; raises :class:`OutputError` as
    :func:`write_layout` does. ``on_event`` is told of each blob written ([PROGRESS-2]).
    """
    destination = os.path.abspath(destination)
    claim_destination(destination, force=force)
    content = list(_unique(blobs))
    plan(on_event, content)
    try:
        return _write_tar(destination, content, index, on_event)
    except OSError as exc:
        raise OutputError(f"{destination}: cannot write ({exc.strerror or exc})") from None


#: [SINK-7] What a layout directory may hold besides ``oci-layout`` and ``index.json`` for
#: ``--force`` to replace it: the blobs, and the files Docker 25+ and skopeo put beside them.
_LAYOUT_EXTRAS = frozenset({"blobs", "manifest.json", "repositories"})


def _check_destination(destination: str, *, force: bool) -> None:
    """[SINK-1] [SINK-7] [SEC-6] Refuse a destination this write may not take over.

    Never the working directory or one of its ancestors (``-o .``), ``/`` or the home
    directory. An empty directory is taken without ``force`` (what ``mkdir out`` leaves);
    with ``force``, only a regular file or an OCI layout directory is replaced, anything
    else (another directory, a FIFO, a device, a symlink) is an ``OutputError`` naming it.
    """
    real = os.path.realpath(destination)
    here = os.path.realpath(os.getcwd())
    protected = {os.path.realpath(os.path.expanduser("~")), os.path.realpath(os.sep)}
    if real in protected or os.path.commonpath([real, here]) == real:
        raise OutputError(f"{destination}: refusing to write over the working, home or root directory")
    if not os.path.lexists(destination) or _is_empty_dir(destination):
        return
    if not force:
        raise OutputError(f"{destination}: already exists; remove it, choose another path, or pass --force")
    if not _replaceable(destination):
        raise OutputError(
            f"{destination}: exists and is not a regular file or an OCI layout directory; "
            "--force replaces only those, remove it yourself"
        )


def _replaceable(path: str) -> bool:
    """[SINK-7] Whether ``--force`` may replace ``path``: a regular file, or a layout directory.

    A layout is a real directory holding regular files ``oci-layout`` and ``index.json``,
    and nothing else but :data:`_LAYOUT_EXTRAS`; symlinks are followed by nothing here.
    """
    mode = os.lstat(path).st_mode
    if stat.S_ISREG(mode):
        return True
    if not stat.S_ISDIR(mode):
        return False
    names = set(os.listdir(path))
    marks = ("oci-layout", "index.json")
    if not all(stat.S_ISREG(os.lstat(os.path.join(path, name)).st_mode) for name in marks if name in names):
        return False
    return names.issuperset(marks) and names.issubset({*marks, *_LAYOUT_EXTRAS})


def _is_empty_dir(path: str) -> bool:
    """A real (not symlinked) directory with no entries."""
    return os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path)


def _blob_name(blob: Blob) -> str:
    return f"blobs/{blob.digest.algorithm}/{blob.digest.encoded}"


def _write_dir(destination: str, content: list[Blob], index: bytes, on_event: EventCallback | None) -> int:
    """[SINK-1] The layout as a directory; the temporary is beside ``destination`` so the
    final rename stays on one file system and is atomic."""
    temp = _temporary_name(destination)
    try:
        os.mkdir(temp, 0o700)  # inside the try: a signal right after it still removes it [SEC-6]
        total = 0
        with open(os.path.join(temp, "oci-layout"), "wb") as f:
            f.write(LAYOUT_HEADER)
        for blob in content:
            path = os.path.join(temp, _blob_name(blob))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                total += copy_reported(copy_verified, blob, f.write, on_event, BlobAction.WRITE)
        # [SINK-3] index.json last: a reader that sees it sees every blob it names
        with open(os.path.join(temp, "index.json"), "wb") as f:
            f.write(index)
        # [SEC-6] created 0700; give the layout the mode `mkdir` would (its subdirectories
        # and files were created with the umask's modes already)
        os.chmod(temp, 0o777 & ~_umask())
        _replace(temp, destination)
    except BaseException as exc:
        if not _not_ours(exc, temp):
            shutil.rmtree(temp, ignore_errors=True)
        raise
    return total


def _temporary_name(destination: str) -> str:
    """A fresh hidden name beside ``destination`` (same file system, so the rename is atomic).

    The caller creates it exclusively inside its ``try``: with ``tempfile.mkstemp`` the file
    exists a moment before its name is known to the clean-up, and a SIGTERM in that moment
    (a CI timeout) left it behind ([SEC-6]).
    """
    return os.path.join(os.path.dirname(destination), f".{os.path.basename(destination)}.{secrets.token_hex(6)}")


def _not_ours(exc: BaseException, temp: str) -> bool:
    """Whether ``exc`` says ``temp`` already existed: someone else's, never to be removed."""
    return isinstance(exc, FileExistsError) and exc.filename == temp


def _replace(temp: str, destination: str) -> None:
    """Move a finished ``temp`` into place; an existing destination is removed only after.

    The destination is checked again ([SINK-7]): it may have changed during a long write.
    """
    if os.path.lexists(destination) and not _is_empty_dir(destination) and not _replaceable(destination):
        raise OutputError(f"{destination}: changed during the write and is no longer replaceable")
    with _signals_held():
        old = _swap(temp, destination)
    if old is not None:
        # after the swap, not inside it: removing a large old layout must not hold Ctrl-C back
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """[SEC-6] Hold SIGINT and SIGTERM back for the renames that swap the output in.

    An interrupt between moving the old output aside and moving the new one in would leave
    neither; held, it arrives a moment later, when the new output is whole.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _swap(temp: str, destination: str) -> str | None:
    """The renames of :func:`_replace`: ``temp`` becomes ``destination``.

    Returns the name an old directory was moved aside to, for the caller to remove.
    """
    if os.path.isdir(destination) and not os.path.islink(destination):
        # a directory cannot be replaced by rename in one step: move the old one aside first,
        # so that for an instant there is no output, but never a half-written one
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(destination)}.old.", dir=os.path.dirname(destination))
        os.rmdir(old)  # mkdtemp only reserved a unique name; rename needs it free
        os.rename(destination, old)
        os.replace(temp, destination)
        return old
    if os.path.lexists(destination) and os.path.isdir(temp):
        os.unlink(destination)  # a file cannot be renamed over by a directory
    # a file over a file (or over nothing) is one atomic rename
    os.replace(temp, destination)
    return None


def _tar_header(name: str, size: int, *, directory: bool = False) -> bytes:
    """[SINK-4] A deterministic header: fixed modes, mtime 0, root owner, no user names.

    PAX rather than ustar: PAX headers have no size or name-length limits, and
    layers over 8 GiB are real.
    """
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o444
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _write_member(out: BinaryIO, name: str, blob: Blob, on_event: EventCallback | None = None) -> int:
    """One member, streamed and verified; the header's size is the descriptor's, which the
    verified copy guarantees is the number of bytes that follow."""
    out.write(_tar_header(name, blob.descriptor.size))
    written = copy_reported(copy_verified, blob, out.write, on_event, BlobAction.WRITE)
    padding = -written % tarfile.BLOCKSIZE
    if padding:
        out.write(b"\0" * padding)
    return written


def _write_tar(destination: str, content: list[Blob], index: bytes, on_event: EventCallback | None = None) -> int:
    """[SINK-1] [SINK-3] The layout as a tar (gzipped as a whole by [SINK-5]).

    Written by hand rather than through ``tarfile.addfile`` so that each member goes
    through :func:`copy_verified` (threaded hashing, [VERIFY-2]) and every header is
    exactly [SINK-4]'s.
    """
    temp = _temporary_name(destination)
    try:
        # inside the try: a signal the moment the file exists still removes it [SEC-6]
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        total = 0
        with contextlib.ExitStack() as files:
            out: BinaryIO = files.enter_context(os.fdopen(fd, "wb"))
            if destination.endswith((".gz", ".tgz")):
                # [SINK-5] compressed as a whole, deterministically (no name, mtime 0)
                out = files.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0))  # type: ignore[assignment]
            _write_member(out, "oci-layout", _bytes_blob(LAYOUT_HEADER))
            # explicit directory entries (0755): else an extracting tar invents them itself
            for directory in sorted({"blobs/", *(os.path.dirname(_blob_name(b)) + "/" for b in content)}):
                out.write(_tar_header(directory, 0, directory=True))
            for blob in content:
                total += _write_member(out, _blob_name(blob), blob, on_event)
            _write_member(out, "index.json", _bytes_blob(index))
            out.write(b"\0" * (tarfile.BLOCKSIZE * 2))  # end-of-archive marker
        # created 0600; give the archive the mode any other new file would get
        os.chmod(temp, 0o644 & ~_umask())
        _replace(temp, destination)
    except BaseException as exc:
        if not _not_ours(exc, temp):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        raise
    return total


def _bytes_blob(data: bytes) -> Blob:
    """A small layout file (``oci-layout``, ``index.json``) as a blob for :func:`_write_member`."""
    return Blob.from_bytes(Descriptor(mt.OCI_EMPTY, Digest.of(data), len(data)), data, "layout file")


def _umask() -> int:
    """The process umask; reading it means setting it, so it is restored at once."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
