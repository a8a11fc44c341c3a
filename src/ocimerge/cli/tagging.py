"""``ocimerge tag SRC NEWTAG...`` and ``ocimerge untag REF... [--force]`` ([TAG-1] .. [TAG-5]).

The integrator registers :func:`add_parsers` in ``cli/parser.py`` and :data:`COMMANDS` in
``cli/commands.py``. The connection flags are the other commands' (``cli/connection.py``), read
into :class:`RegistryOptions` the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ocimerge.cli.connection import add_connection_flags, registry_options
from ocimerge.cli.exits import EXIT_OK
from ocimerge.errors import OcimergeError
from ocimerge.tagging import Removal, UntagResult, tag, untag
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
        "bare TAG in SRC's repository. For another registry use ocimerge push docker://SRC TARGET.",
        epilog="examples:\n  ocimerge tag registry.example/app:1.2.3 1.2 latest\n"
        "  ocimerge tag registry.example/app:1 registry.example/stable/app:1\n",
    )
    parser.add_argument("source", metavar="SRC")
    parser.add_argument("new_tags", metavar="NEWTAG", nargs="+")
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
        "manifests would break that index.",
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


def run_tag(args: argparse.Namespace) -> int:
    """``tag``: one line per new tag, ``REGISTRY/REPO:TAG@DIGEST`` (``-q``: only that)."""
    result = tag(args.source, args.new_tags, registry_options(args), dry_run=args.dry_run)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return EXIT_OK
    verb = "would tag" if result.dry_run else "tagged"
    for reference in result.tagged:
        if not args.quiet:
            print(f"{verb} {reference}")
        elif not result.dry_run:  # -q prints what was written: nothing for a dry run, as push -q
            print(reference)
    if result.mounted:
        _note(args, f"{result.mounted} blob(s) mounted from {result.source.name}")
    return EXIT_OK


def _line(result: UntagResult) -> str:
    if result.how is Removal.DRY_RUN:
        return f"would untag {result.reference} (it names {result.digest}; the manifest would stay)"
    return f"untagged {result.reference} ({result.how.value}); {result.digest} stays"


def run_untag(args: argparse.Namespace) -> int:
    """``untag``: each REF in turn, reported as it goes; the first error ends the run.

    Tags removed before that error are reported all the same: on stdout as they go, and with
    ``--json`` the document lists them with an ``errors`` entry before the error line.
    """
    options = registry_options(args)
    results: list[UntagResult] = []
    for reference in args.references:
        try:
            result = untag(reference, options, force=args.force, dry_run=args.dry_run)
        except OcimergeError as exc:
            if args.json:
                _print_untagged(args, results, [{"reference": reference, "error": printable(str(exc))}])
            raise
        results.append(result)
        if not args.quiet and not args.json:
            print(_line(result), flush=True)
        _notes(args, result)
    if args.json:
        _print_untagged(args, results, [])
    return EXIT_OK


def _notes(args: argparse.Namespace, result: UntagResult) -> None:
    if result.needed_by:
        listed = ", ".join(result.needed_by)
        _note(args, f"{result.reference} was the last tag of {result.digest}, which {listed} lists")
    if result.manifest_restored:
        _note(args, f"{result.reference.registry} deleted {result.digest} with the tag; it was put back by digest")


def _print_untagged(args: argparse.Namespace, results: list[UntagResult], errors: list[dict[str, str]]) -> None:
    document: dict[str, Any] = {"untagged": [r.to_json() for r in results], "dryRun": args.dry_run}
    if errors:
        document["errors"] = errors
    print(json.dumps(document, indent=2), flush=True)


#: The subcommands this module adds, for ``cli/commands.py``'s table.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"tag": run_tag, "untag": run_untag}
