"""Rendering: the typed results of the library, as text tables, lines or JSON.

Nothing here decides anything: every function takes a result the library built (or its
``to_json()``) and writes it to the stream it is given. JSON output is exactly the results'
own ``to_json()``, so ``--json`` and the Python API never disagree.

[SEC-5] Names, platforms, media types, notes and problems come from archives and registries:
every one goes through :func:`~ocimerge.text.printable` before it is written, so no control
character reaches the terminal and every line stays one line. ``--json`` is escaped by the
encoder itself (``ensure_ascii``: every control and non-ASCII character as ``\\uNNNN``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ocimerge.bundle import BundleResult, LockResult
from ocimerge.doctor import DoctorReport
from ocimerge.inspection import InspectReport, VerifyReport
from ocimerge.operations import CreateResult
from ocimerge.sinks.registry import BlobAction, PushFailure, PushResult
from ocimerge.text import human, printable

__all__ = [
    "human",
    "print_create",
    "print_doctor",
    "print_dry_run",
    "print_failures",
    "print_inspect",
    "print_json",
    "print_notes",
    "print_pushes",
    "print_references",
    "print_verify",
    "references",
]


def _table(rows: Sequence[Sequence[str]], out: TextIO, indent: str = "  ") -> None:
    """Write ``rows`` (the first is the header) as left-aligned columns two spaces apart.

    Every cell is escaped ([SEC-5]) before the widths are measured, so columns stay aligned.
    """
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        # rstrip: the last column is padded too, and trailing blanks only upset diffs
        out.write(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")


#: Whether this process printed a JSON document yet: ``--json`` promises exactly one.
_JSON_STATE = {"printed": False}


def print_json(payload: Any, out: TextIO) -> None:
    """Write ``payload`` as indented JSON, one document ending in a newline.

    [SEC-5] ``ensure_ascii`` (the default, kept on purpose) escapes every control character,
    DEL and C1 included, so outside text inside the JSON cannot drive a terminal either.
    """
    out.write(json.dumps(payload, indent=2, ensure_ascii=True) + "\n")
    _JSON_STATE["printed"] = True


def print_json_error(error: BaseException, code: int, out: TextIO) -> None:
    """``--json`` when a command failed before it had a result to print: the error as the one
    document, with the field names a failed target has in ``errors`` (``error`` the class,
    ``message``, ``exitCode``). Nothing when a document was printed already ([MSG-4])."""
    if _JSON_STATE["printed"]:
        return
    print_json({"error": type(error).__name__, "message": str(error), "exitCode": code}, out)


def forget_json() -> None:
    """Start a command afresh (``main`` called twice in one process, as tests do)."""
    _JSON_STATE["printed"] = False


def print_notes(notes: Sequence[str], *, quiet: bool) -> None:
    """Write each note to stderr as ``ocimerge: note: …``, unless ``quiet``."""
    if not quiet:
        for note in notes:
            # [SEC-5] a newline in a note could forge a second `ocimerge: note:` line
            sys.stderr.write(f"ocimerge: note: {printable(note)}\n")


def references(result: PushResult) -> list[str]:
    """``REGISTRY/REPO:TAG@DIGEST`` for each tag ``result`` wrote (``REGISTRY/REPO@DIGEST``
    when it wrote none): references that pin what was pushed, for ``-q`` and ``Pushed`` lines."""
    where = f"{result.registry}/{result.repository}"
    return [f"{where}{tag}@{result.root.digest}" for tag in ([f":{t}" for t in result.tags] or [""])]


def print_references(results: Sequence[PushResult], out: TextIO) -> None:
    """``-q``: one reference per tag written, nothing else; a dry run wrote none, so prints none."""
    for result in results:
        if not result.dry_run:
            for reference in references(result):
                out.write(f"{printable(reference)}\n")


def _push_line(result: PushResult) -> str:
    """The one-line summary of a push to one repository (``Pushed …`` or ``Would push …``).

    The verb first (scripts grep for "Pushed"), then each tag as a reference one can copy
    (``REGISTRY/REPO:TAG@DIGEST``, space-separated), then the counts in parentheses.
    """
    dry = result.dry_run
    verb = "Would push" if dry else "Pushed"
    where = printable(" ".join(references(result)))
    sent = f"{human(result.bytes_uploaded)} {'to send' if dry else 'sent'}"
    counts = [
        f"{_count(result.count(BlobAction.UPLOAD), 'blob')} {'to upload' if dry else 'uploaded'}",
        f"{result.count(BlobAction.COPY)} {'to copy' if dry else 'copied'} from another registry ({sent})",
        f"{result.count(BlobAction.MOUNT)} {'to mount' if dry else 'mounted'}",
        f"{result.count(BlobAction.SKIP)} already there",
    ]
    manifests = (
        f"{_count(result.manifests_pushed, 'manifest')} {'to push' if dry else 'pushed'}, "
        f"{result.manifests_skipped} already there"
    )
    # [REFERRERS-10] said only when there were some: a plain image's line stays as it was
    referrers = f"; {result.referrers_pushed} referrers (signatures, SBOMs) attached" if result.referrers_pushed else ""
    return f"{verb} {where} ({', '.join(counts)}; {manifests}{referrers})\n"


def _count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless one.

    >>> _count(1, "blob"), _count(2, "blob")
    ('1 blob', '2 blobs')
    """
    return f"{n} {noun}{'' if n == 1 else 's'}"


def print_pushes(results: Sequence[PushResult], out: TextIO) -> None:
    """A summary line per repository pushed to; for a dry run, the plan blob by blob under it."""
    for result in results:
        out.write(_push_line(result))
        if result.dry_run:
            for plan in result.blobs:
                source = f" from {printable(plan.source)}" if plan.source else ""
                out.write(f"  {plan.action.value:<7} {plan.digest}  {human(plan.size)}{source}\n")


def print_failures(failures: Sequence[PushFailure], out: TextIO) -> None:
    """[MSG-4] A line per repository whose push failed: where, the tags not written, and why."""
    for failure in failures:
        # one line each, beside the "Pushed" lines, so the summary names every target
        where = printable(f"{failure.registry}/{failure.repository}")
        tags = printable(", ".join(failure.tags) or "(no tag)")
        out.write(f"Failed {where} [{tags}], nothing tagged: {printable(str(failure.error))}\n")


def print_dry_run(result: CreateResult, out: TextIO, err: TextIO | None) -> None:
    """``create --dry-run``: the index's exact bytes on ``out`` and nothing else; its digest,
    then any push plan, on ``err`` (None under ``-q``).

    No newline is added, as ``inspect --raw``: ``| sha256sum`` gives the digest, ``| jq``
    parses it. On a terminal, where nobody hashes it, a DEL or C1 character is escaped [SEC-5].
    """
    index = result.index
    text = index.raw.decode("utf-8")
    out.write(printable(text) if out.isatty() else text)
    out.flush()
    if err is not None:
        err.write(f"Digest: {index.descriptor.digest}\n")
        print_pushes(result.pushed, err)


def print_create(result: CreateResult, out: TextIO) -> None:
    """``create``: where it was written, the index, a row per image in index order, then the pushes."""
    index = result.index
    rows = [["PLATFORM", "DIGEST", "SOURCE"]]
    # images and manifests are parallel and in the index's order: sorted by platform [INDEX-2],
    # except that an append keeps the tag's entries first [INDEX-9]; the table shows the truth
    for image, manifest in zip(result.images, result.assembly.manifests, strict=True):
        rows.append([str(image.platform), str(manifest.descriptor.digest), image.source])
    if result.output:  # None when only pushed
        out.write(f"Wrote {printable(result.output)}\n")
    out.write(f"  {printable(index.descriptor.media_type)}  {index.descriptor.digest}\n")
    _table(rows, out)
    print_pushes(result.pushed, out)


def _image_rows(entry: dict[str, Any]) -> list[list[str]]:
    """The table of one inspected entry: a row per image, then a row per absent platform."""
    rows = [["PLATFORM", "DIGEST", "MEDIA TYPE", "SIZE", "LAYERS", "ATTESTATIONS"]]
    for image in entry["images"]:
        rows.append(
            [
                image["platform"],
                image["digest"],
                image["mediaType"],
                human(image["contentSize"]),
                str(len(image["layers"])),
                str(len(image["attestations"])),
            ]
        )
    for absent in entry["absent"]:
        # a partial export names these but holds nothing of them: no size, layers or attestations
        rows.append([absent["platform"] or "?", absent["digest"], absent["mediaType"], "absent", "-", "-"])
    return rows


def _referrer_rows(entry: dict[str, Any]) -> list[list[str]]:
    """[REFERRERS-9] A row per referrer: what it refers to, its kind, digest, size, how found."""
    rows = [["REFERS TO", "ARTIFACT TYPE", "DIGEST", "SIZE", "FOUND BY"]]
    for referrer in entry["referrers"]:
        # the tag is the subject's digest again: its suffix is what tells .sig from .att
        found = referrer["found"] + (f" (.{referrer['tag'].rpartition('.')[2]})" if referrer["tag"] else "")
        rows.append(
            [
                referrer["subject"][:19] + "…",
                referrer["artifactType"] or "-",
                referrer["digest"],
                human(referrer["contentSize"]),
                found,
            ]
        )
    return rows


def _print_entry(entry: dict[str, Any], out: TextIO) -> None:
    """One entry of ``inspect``'s report: its names and root, its images, its notes."""
    # an entry that is not an image (an artifact, a referrers index) is shown, not skipped
    if "error" in entry:
        out.write(f"  not an image: {printable(entry['error'])}\n\n")
        return
    names = printable(", ".join(entry["names"]) or "untagged")
    root = entry["root"]
    if root:
        out.write(f"  {names}  {printable(root['mediaType'])}  {printable(root['digest'])}  {human(root['size'])}\n")
    else:
        # a docker-save image has no stored manifest: the one shown is authored on read
        out.write(f"  {names}  (docker-save image; manifest authored on read)\n")
    _table(_image_rows(entry), out, indent="    ")
    if entry["referrers"]:
        _table(_referrer_rows(entry), out, indent="    ")
    for note in entry["notes"]:
        out.write(f"    note: {printable(note)}\n")
    out.write("\n")


def print_inspect(report: InspectReport, out: TextIO) -> None:
    """``inspect``: the source, then each entry, rendered from the report's ``to_json()``."""
    # from to_json(): the table shows exactly what --json prints, in the same words
    shown = report.to_json()
    out.write(f"{printable(shown['source'])}\n")
    for entry in shown["entries"]:
        _print_entry(entry, out)
    # [LOCK-6] what the lock pins but the bundle lacks
    for missing in shown["missing"]:
        platform = f" {missing['platform']}" if missing["platform"] else ""
        out.write(f"  missing: {printable(missing['reference'])}{printable(platform)} {missing['digest']}\n")


def print_verify(report: VerifyReport, out: TextIO) -> None:
    """``verify``: every problem and note on its own line, then a verdict with what was checked."""
    for problem in report.problems:
        out.write(f"problem: {printable(problem)}\n")
    for note in report.notes:
        out.write(f"note: {printable(note)}\n")
    for signed in report.signatures:
        if signed.ok:
            how = "signed" if signed.check.ok else f"signed through the index {signed.through}"
            out.write(f"signature: {printable(signed.label)} {signed.digest}: {how}\n")
    verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
    out.write(
        f"{printable(report.source)}: {verdict}; {report.blobs_checked} blobs, {human(report.bytes_checked)} checked\n"
    )


def print_lock(result: LockResult, out: TextIO) -> None:
    """``lock``: a line per image pinned, then what moved since the lock it replaced."""
    for image in result.lock.images:
        platforms = ", ".join(str(p.platform) for p in image.platforms)
        out.write(
            f"{printable(str(image.reference))}@{image.digest}  {printable(platforms)}  {human(image.content_size)}\n"
        )
    if result.previous:
        moved = result.changes
        out.write(
            f"{len(moved)} image(s) moved since the last lock\n" if moved else "nothing moved since the last lock\n"
        )
        for change in moved:
            out.write(f"  {printable(str(change))}\n")
    out.write(f"Wrote {printable(result.path)}\n")


def print_bundle(result: BundleResult, out: TextIO) -> None:
    """``bundle``: a line per image stored, then where the bundle went and how its blobs got there."""
    for image in result.images:
        platforms = ", ".join(str(p) for p in image.platforms)
        extra = f", {image.referrers} referrers" if image.referrers else ""
        out.write(f"{printable(image.reference)}  {image.digest}  {printable(platforms)}{extra}\n")
    kept = f", {result.blobs_kept} kept from an interrupted run" if result.blobs_kept else ""
    out.write(
        f"Wrote {printable(result.output)}: {len(result.images)} images, {result.blobs_written} blobs written "
        f"({human(result.bytes_written)}){kept}\n"
    )


def print_doctor(report: DoctorReport, out: TextIO) -> None:
    """``doctor``: the registry and its profile, a row per check, the differences, the notes."""
    mode = "read-only, " if report.read_only else ""
    out.write(
        f"{printable(report.registry)} ({mode}profile {printable(report.profile)}; "
        f"scratch {printable(', '.join(report.repositories))})\n"
    )
    rows = [["CHECK", "RESULT", "DETAIL"]]
    rows.extend([check.title, check.outcome.value, check.detail] for check in report.checks)
    _table(rows, out)
    if report.differences:
        out.write("Differences from the profile:\n")
        for difference in report.differences:
            out.write(f"  - {printable(difference)}\n")
    else:
        out.write(f"No differences from the profile {printable(report.profile)!r} found.\n")
    for note in report.notes:
        out.write(f"note: {printable(note)}\n")
