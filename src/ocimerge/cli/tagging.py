"""``ocimerge tag SRC NEWTAG...`` and ``ocimerge untag REF... [--force]`` ([TAG-1] .. [TAG-5]).

The integrator registers :func:`add_parsers` in ``cli/parser.py`` and :data:`COMMANDS` in
``cli/commands.py``. The connection flags are the other commands' (``cli/connection.py``), read
into :class:`RegistryOptions` the same way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ocimerge.cli import render
from ocimerge.cli.connection import add_connection_flags, registry_options
from ocimerge.cli.exits import EXIT_OK, exit_code
from ocimerge.errors import OcimergeError
from ocimerge.registry.api import RegistryOptions
from ocimerge.tagging import Removal, TagResult, UntagResult, tag, untag
from ocimerge.text import printable

__all__ = ["COMMANDS", "add_parsers"]

_FORMAT = argparse.RawDescriptionHelpFormatter


def _outputs(parser: argparse.ArgumentParser, quiet: str) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help=f"print {quiet}; no notes")
    parser.add_argument("--dry-run", action="store_true", help="read and check, say what would be done, change nothing")


def add_parsers(subparsers: Any) -> None:
    """Add ``tag`` and ``untag`` to the command line's subparsers."""
    parser = subparsers.add_parser(
        "tag",
        help="add tags to an image in a registry, moving no blob",
        formatter_class=_FORMAT,
        description="Give the image at SRC (REGISTRY/REPO:TAG or @DIGEST) each NEWTAG. In SRC's repository\n"
        "the manifest's exact bytes are put under the new tag: no blob is read or sent. In another\n"
        "repository of the same registry, blobs are mounted. NEWTAG may be REGISTRY/REPO:TAG, or a\n"
        "bare TAG in SRC's repository. For another registry use ocimerge push docker://SRC TARGET.\n"
        "A NEWTAG that exists is moved (a note says from which digest); when it is the last tag of a\n"
        "manifest that an index in the repository lists, it is kept unless --force.",
        epilog="examples:\n  ocimerge tag registry.example/app:1.2.3 1.2 latest\n"
        "  ocimerge tag registry.example/app:1 registry.example/stable/app:1\n",
    )
    parser.add_argument("source", metavar="SRC")
    parser.add_argument("new_tags", metavar="NEWTAG", nargs="+")
    parser.add_argument(
        "--force",
        action="store_true",
        help="move an existing NEWTAG even when it is the last tag of a manifest an index needs (which stays)",
    )
    _outputs(parser, "only REGISTRY/REPO:TAG@DIGEST per new tag")
    add_connection_flags(parser)
    parser = subparsers.add_parser(
        "untag",
        help="remove tags from a registry; the manifests stay",
        formatter_class=_FORMAT,
        description="Remove each tag REF (REGISTRY/REPO:TAG) with the spec's DELETE of the tag; the manifest\n"
        "stays, pullable by digest and through any index. Where the registry refuses a tag DELETE\n"
        "(CNCF Distribution 2.8 does), the tag is moved onto a throwaway manifest which is deleted by\n"
        "digest, if the registry deletes manifests at all. The last tag of a manifest that an index\n"
        "tagged in the repository lists is kept unless --force: clean-up jobs that delete untagged\n"
        "manifests would break that index. Every REF is checked before any is removed: one refused\n"
        "and none is removed.",
        epilog="examples:\n  ocimerge untag registry.example/app:1-amd64 registry.example/app:1-arm64\n"
        "  ocimerge untag --force --dry-run registry.example/app:old\n",
    )
    parser.add_argument("references", metavar="REF", nargs="+")
    parser.add_argument(
        "--force", action="store_true", help="remove a tag even when an index needs its manifest (which stays)"
    )
    _outputs(parser, "nothing on success")
    add_connection_flags(parser)


def _note(args: argparse.Namespace, text: str) -> None:
    if not args.quiet and not args.json:
        sys.stderr.write(f"ocimerge: note: {printable(text)}\n")


def _error_entry(reference: str, exc: OcimergeError) -> dict[str, object]:
    """[MSG-4] One ``errors`` entry of ``tag``/``untag --json``, shaped as ``create``'s and ``push``'s."""
    return {
        "reference": reference,
        "error": type(exc).__name__,
        "message": printable(str(exc)),
        "exitCode": exit_code(exc),
    }


def run_tag(args: argparse.Namespace) -> int:
    """``tag``: one line per new tag, ``REGISTRY/REPO:TAG@DIGEST`` (``-q``: only that).

    [TAG-7] A tag moved off another digest gets a note on stderr ("moved T from A to B").
    """
    try:
        result = tag(args.source, args.new_tags, registry_options(args), dry_run=args.dry_run, force=args.force)
    except OcimergeError as exc:
        if args.json:
            document = {"source": args.source, "references": [], "errors": [_error_entry(args.source, exc)]}
            render.print_json(document, sys.stdout)
        raise
    if args.json:
        render.print_json(result.to_json(), sys.stdout)
        return EXIT_OK
    verb = "would tag" if result.dry_run else "tagged"
    for reference in result.tagged:
        if not args.quiet:
            print(f"{verb} {reference}")
        elif not result.dry_run:  # -q prints what was written: nothing for a dry run, as push -q
            print(reference)
    if result.mounted:
        _note(args, f"{result.mounted} blob(s) mounted from {result.source.name}")
    _moved_notes(args, result)
    return EXIT_OK


def _moved_notes(args: argparse.Namespace, result: TagResult) -> None:
    verb = "would move" if result.dry_run else "moved"
    for reference, before in result.moved():
        _note(args, f"{verb} {reference.tag} from {before} to {result.root.digest}")


#: [TAG-2] The CLI's words for the placeholder path (the JSON value stays "via placeholder").
_PLACEHOLDER_WORDS = "registry refused tag deletes; moved onto a throwaway manifest and deleted that"


def _line(result: UntagResult) -> str:
    if result.how is Removal.DRY_RUN:
        return f"would untag {result.reference} (it names {result.digest}; the manifest would stay)"
    how = _PLACEHOLDER_WORDS if result.how is Removal.PLACEHOLDER else result.how.value
    return f"untagged {result.reference} ({how}); {result.digest} stays"


def run_untag(args: argparse.Namespace) -> int:
    """``untag``: [TAG-8] every REF is checked first; one refused and none is removed.

    The REFs are deduplicated (in order), then each is checked as a dry run does (it exists,
    [TAG-3]). Any problem: each is one ``ocimerge: error:`` line on stderr (with ``--json``,
    one ``errors`` entry each), nothing is removed, and the exit code is the first problem's.
    Else each is removed in turn, only while it names the digest checked ([TAG-4]); an error
    then (a race, the registry failing) ends the run, the tags removed before it reported.
    """
    options = registry_options(args)
    references = list(dict.fromkeys(args.references))
    checked, problems = _check_all(references, options, args.force)
    if problems or args.dry_run:
        return _report(args, checked, problems)
    results: list[UntagResult] = []
    for found in checked:
        try:
            result = untag(found.reference, options, expected=found.digest, force=args.force)
        except OcimergeError as exc:
            if args.json:
                _print_untagged(args, results, [_error_entry(str(found.reference), exc)])
            raise
        results.append(result)
        _show(args, result)
    if args.json:
        _print_untagged(args, results, [])
    return EXIT_OK


def _check_all(
    references: list[str], options: RegistryOptions, force: bool
) -> tuple[list[UntagResult], list[tuple[str, OcimergeError]]]:
    """[TAG-8] Every REF checked (a dry run of it), nothing removed: the results and the problems."""
    checked: list[UntagResult] = []
    problems: list[tuple[str, OcimergeError]] = []
    for reference in references:
        try:
            checked.append(untag(reference, options, force=force, dry_run=True))
        except OcimergeError as exc:
            problems.append((reference, exc))
    return checked, problems


def _report(args: argparse.Namespace, checked: list[UntagResult], problems: list[tuple[str, OcimergeError]]) -> int:
    """A dry run's lines, or the problems that stopped the run (nothing removed): each one line."""
    if args.json:
        shown = checked if args.dry_run else []
        _print_untagged(args, shown, [_error_entry(r, e) for r, e in problems])
    elif args.dry_run:
        for result in checked:
            _show(args, result)
    for _, exc in problems:
        sys.stderr.write(f"ocimerge: error: {printable(str(exc))}\n")
    if problems and not args.dry_run and not args.json and len(args.references) > 1:
        _note(args, "nothing was removed: every REF is checked before any is")
    return exit_code(problems[0][1]) if problems else EXIT_OK


def _show(args: argparse.Namespace, result: UntagResult) -> None:
    if not args.quiet and not args.json:
        print(_line(result), flush=True)
    _notes(args, result)


def _notes(args: argparse.Namespace, result: UntagResult) -> None:
    if result.needed_by:
        listed = ", ".join(result.needed_by)
        tense = "is" if result.how is Removal.DRY_RUN else "was"
        _note(args, f"{result.reference} {tense} the last tag of {result.digest}, which {listed} lists")
    if result.manifest_restored:
        _note(args, f"{result.reference.registry} deleted {result.digest} with the tag; it was put back by digest")


def _print_untagged(args: argparse.Namespace, results: list[UntagResult], errors: list[dict[str, object]]) -> None:
    document: dict[str, Any] = {"untagged": [r.to_json() for r in results], "dryRun": args.dry_run}
    if errors:
        document["errors"] = errors
    render.print_json(document, sys.stdout)


#: The subcommands this module adds, for ``cli/commands.py``'s table.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"tag": run_tag, "untag": run_untag}
