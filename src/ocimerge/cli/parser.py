"""The argument parser: one function per subcommand, small helpers for shared flag groups.

Each subcommand lists only the flags it uses: every command reaches registries, so all five
take the *connection* flags; only ``create`` and ``push`` upload, so only they take the
*upload* flags. Each ``--help`` ends with examples, written as they would be typed.
Values are checked only as far as argparse can (a size, a choice); everything else is
checked once, by the library, and reported as a :class:`~ocimerge.errors.UsageError`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from ocimerge._version import __version__
from ocimerge.cli import login as login_cli
from ocimerge.cli import tagging as tagging_cli
from ocimerge.cli.connection import add_connection_flags
from ocimerge.cli.exits import code_for
from ocimerge.errors import UsageError
from ocimerge.model.assemble import AttestationPolicy, IndexFormat

__all__ = ["build_parser", "parse_size"]

if TYPE_CHECKING:
    from typing import TypeAlias

    # argparse's subparsers action is generic only in typeshed, so the alias exists for mypy alone
    _Subparsers: TypeAlias = argparse._SubParsersAction["_Parser"]

# Raw: the examples in each epilog keep their line breaks and indentation.
_FORMAT = argparse.RawDescriptionHelpFormatter


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors follow ours: ``ocimerge: error: …``, the usage exit code.

    ``tail`` names a ``nargs="*"`` positional that also takes the positionals given after an
    option: argparse fills a ``*`` positional in one go, with nothing when an option follows
    the one before it (``push SRC --dry-run TARGET`` left ``TARGET`` unrecognised).
    """

    tail: str | None = None

    def parse_known_args(  # type: ignore[override]  # typeshed overloads; one signature serves
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """argparse's, then the leftover positionals folded into :attr:`tail`, in order."""
        parsed, extras = super().parse_known_args(args, namespace)
        if self.tail is None or not extras:
            return parsed, extras
        # an option's value never lands here: argparse took it with its option; what is left
        # and starts with "-" is an unknown option, still reported as unrecognised
        folded = [e for e in extras if not e.startswith("-")]
        setattr(parsed, self.tail, [*getattr(parsed, self.tail), *folded])
        return parsed, [e for e in extras if e.startswith("-")]

    def error(self, message: str) -> NoReturn:
        """Print the usage and the one-line error to stderr, and exit with the usage code."""
        self.print_usage(sys.stderr)
        self.exit(code_for(UsageError), f"ocimerge: error: {message}\n")


def _examples(*lines: str) -> str:
    """An epilog of example command lines, indented as argparse indents its own sections."""
    return "examples:\n" + "".join(f"  {line}\n" for line in lines)


def parse_size(text: str) -> int:
    """``--chunk-size``: a positive byte count, optionally with a K, M or G (binary) suffix.

    >>> parse_size("8M"), parse_size("1GiB"), parse_size("4096")
    (8388608, 1073741824, 4096)
    """
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    # "8MiB", "8MB" and "8M" all mean 8 MiB: strip the B and i, then read the unit letter
    number, unit = text.rstrip("BbIi"), ""
    if number and number[-1].upper() in units:
        number, unit = number[:-1], number[-1].upper()
    try:
        value = int(number) * units[unit]
    except ValueError:
        # from None: argparse prints only this message, and the int() error adds nothing
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: e.g. 8388608, 8M, 1G") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the chunk size must be positive")
    return value


def _upload_flags(parser: argparse.ArgumentParser) -> None:
    """How to upload blobs: only for the commands that push (``create -t``, ``push``)."""
    group = parser.add_argument_group("upload")
    # no range check here: PushOptions refuses --jobs < 1 itself, for library callers too
    group.add_argument("--jobs", type=int, default=4, metavar="N", help="blobs uploaded at once (default 4)")
    group.add_argument("--chunk-size", type=parse_size, metavar="SIZE", help="upload in chunks of this size (e.g. 8M)")
    # [PROFILE-8] what a proxy or registry refuses, known in advance; both override the profile
    group.add_argument(
        "--max-request-size",
        type=parse_size,
        metavar="SIZE",
        help="never send a request body larger than this (a proxy's limit); larger blobs go in chunks",
    )
    group.add_argument("--no-mount", action="store_true", help="never ask for cross-repository mounts; upload instead")


def _result_flags(parser: argparse.ArgumentParser, quiet: str = "the path written") -> None:
    """``--json`` and ``-q`` for the commands that write, and so have notes and progress to silence.

    ``quiet`` says what ``-q`` leaves on stdout: the one result a script captures with ``$(…)``.
    """
    parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON document on stdout, and nothing else there"
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help=f"print only {quiet}; no notes or progress (errors still on stderr)"
    )


def _progress_flag(parser: argparse.ArgumentParser) -> None:
    """[PROGRESS-1] ``--progress``, as buildx spells it: how progress is shown on stderr."""
    parser.add_argument(
        "--progress",
        choices=["auto", "tty", "plain", "quiet"],
        default=None,
        help="progress on stderr: bars redrawn in place (tty), a line per blob and a summary every "
        "few seconds (plain), or none (quiet); auto (the default, or $OCIMERGE_PROGRESS) is tty on a "
        "terminal, else plain",
    )


def _referrer_flags(parser: argparse.ArgumentParser, *, types: bool = True) -> None:
    """[REFERRERS-9] Whether signatures, SBOMs and attestations attached to images are looked for."""
    group = parser.add_argument_group("referrers (signatures, SBOMs, attestations)")
    group.add_argument(
        "--referrers",
        choices=["all", "none"],
        default="all",
        help="find the images' referrers and carry them along (default all)",
    )
    if types:
        group.add_argument(
            "--referrers-type",
            action="append",
            default=[],
            metavar="TYPE",
            help="keep only referrers of this artifact type (repeatable)",
        )


def _key_flag(group: argparse._ArgumentGroup, what: str) -> None:
    """``--key PUB.pem``: the public key cosign signatures are checked with ([SIGNED-1])."""
    group.add_argument("--key", metavar="PUB.pem", help=f"cosign public key (PEM: ECDSA, RSA, Ed25519) {what}")


def _create_sources(parser: argparse.ArgumentParser) -> None:
    """``create``'s ways to name sources: arguments, a per-platform template, a spec file."""
    # nargs="*": sources may come from --template or --spec alone; "none at all" is checked
    # after those are expanded, with a message naming all three ways
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SRC[=PLATFORM]",
        help="local layout or archive, or registry image (docker://REF or HOST/REPO:TAG)",
    )
    # repeatable and comma-separated both, as buildx and docker accept either spelling
    parser.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="OS/ARCH[/VARIANT]",
        help="take only these platforms from multi-platform sources (repeatable, or comma-separated)",
    )
    parser.add_argument(
        "--template", metavar="REF", help="registry source per platform: OS, ARCH, VARIANT are replaced"
    )
    # --platforms (plural) only expands --template; --platform (singular) filters. The run
    # refuses --platforms without --template rather than guess which one was meant.
    parser.add_argument("--platforms", metavar="P1,P2", help="the platforms --template expands to")
    parser.add_argument(
        "--spec", metavar="FILE", help="JSON spec: image, tags, manifests [{image, platform}], annotations"
    )
    parser.add_argument("--ignore-missing", action="store_true", help="skip a source that is absent, with a note")


def _create_index(parser: argparse.ArgumentParser) -> None:
    """``create``'s choices about the index itself: its type, attestations, annotations, layers."""
    # choices come from the library's enums, so a new value shows up here without an edit
    parser.add_argument(
        "--format",
        choices=[f.value for f in IndexFormat],
        default="auto",
        help="index type: auto (Docker list only when nothing is lost), oci, docker",
    )
    parser.add_argument(
        "--attestations",
        choices=[p.value for p in AttestationPolicy],
        default="keep",
        help="keep BuildKit attestation manifests in the index, drop them, or attach them to "
        "their images as referrers (default keep)",
    )
    # parsed later by Annotation.parse, so bad syntax is the library's UsageError, one line
    parser.add_argument(
        "--annotation",
        action="append",
        default=[],
        metavar="[SCOPE:]KEY=VALUE",
        help="annotation on the index (no scope, or index:), or on its entries with "
        "manifest-descriptor: or manifest-descriptor[PLATFORM]:",
    )
    parser.add_argument(
        "--annotations-from-labels",
        action="store_true",
        help="copy the org.opencontainers.image.* labels all images share onto the index "
        "(what GHCR shows as description, source, licence); --annotation wins",
    )
    # [CONVERT-2] an explicit opt-in: dropping annotations changes every child's digest
    parser.add_argument(
        "--drop-annotations",
        action="store_true",
        help="with --format docker: drop the annotations a Docker manifest list and Docker manifests "
        "cannot carry (each one named in a note; the children's digests change) instead of refusing",
    )
    # only uncompressed (docker-save) layers are gzipped; compressed layers keep their bytes
    parser.add_argument(
        "--compress",
        choices=["none", "gzip"],
        default="none",
        help="gzip uncompressed (docker-save) layers, deterministically",
    )


def _create_destinations(parser: argparse.ArgumentParser) -> None:
    """``create``'s destinations: a file or directory (-o), registry tags (-t), a metadata file."""
    parser.add_argument("-o", "--output", metavar="OUT", help="OUT.tar writes an OCI archive, OUT/ a layout directory")
    # -t as buildx spells it; repeatable, and the tags may name several registries
    parser.add_argument(
        "-t",
        "--tag",
        action="append",
        default=[],
        metavar="REGISTRY/REPO:TAG",
        help="push the result here (repeatable: several tags, repositories, registries)",
    )
    # buildx's --append; [INDEX-9]
    parser.add_argument(
        "--append",
        action="store_true",
        help="add the images to the index the first -t names now (its entries and annotations kept; "
        "a missing tag is created)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="with --append: a new image of a platform the tag holds replaces that entry (default: refuse)",
    )
    # [TAG-6] the chore after merging per-arch tags, done only once the merged tag is confirmed
    parser.add_argument(
        "--untag-sources",
        action="store_true",
        help="after the push, remove the registry sources' tags (each only if it still names what was read)",
    )
    parser.add_argument(
        "--tag-name", default="latest", metavar="TAG", help="the tag written in index.json (default latest)"
    )
    # buildx's flag and keys, so CI steps written for buildx read our file unchanged
    parser.add_argument("--metadata-file", metavar="FILE", help="write the result as JSON here, as buildx does")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the index's exact bytes on stdout (no newline added) and its digest on stderr; write nothing",
    )
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")


def _add_create(subparsers: _Subparsers) -> None:
    """Add ``create``: merge sources into one index, then write it, push it, or both."""
    # one summary for the command list and the help page, so the two never drift apart
    summary = "merge images into one multi-platform image; write it (-o) or push it (-t)"
    parser = subparsers.add_parser(
        "create",
        help=summary,
        formatter_class=_FORMAT,
        description=f"{summary[0].upper()}{summary[1:]}.\n\n"
        "Sources are OCI layouts, OCI archives, docker-save archives or registry images:\n"
        "  [oci:|oci-archive:|docker-archive:]PATH[:TAG|@DIGEST][=PLATFORM]\n"
        "  docker://REF or HOST/REPO:TAG",
        epilog=_examples(
            "ocimerge create -o app.tar amd64.tar arm64.tar=linux/arm64",
            "ocimerge create -t registry.example/app:1.4 registry.example/app:1.4-amd64 registry.example/app:1.4-arm64",
        ),
    )
    # groups in the order a reader decides: what goes in, what it becomes, where it goes
    _create_sources(parser)
    _create_index(parser)
    _create_destinations(parser)
    _referrer_flags(parser)
    signing = parser.add_argument_group("signing")
    # COSIGN_PASSWORD, as cosign reads it: a password never goes on the command line
    signing.add_argument(
        "--sign-key",
        metavar="KEY.pem",
        help="sign the merged index in cosign's format with this PEM private key "
        "(password from $COSIGN_PASSWORD when it is encrypted)",
    )
    _result_flags(parser, "REGISTRY/REPO:TAG@DIGEST for each tag pushed (with -o alone: the index digest)")
    _progress_flag(parser)
    add_connection_flags(parser)
    _upload_flags(parser)


def _add_push(subparsers: _Subparsers) -> None:
    """Add ``push``: upload one layout, archive or registry image as it is, to one or more tags."""
    parser = subparsers.add_parser(
        "push",
        help="upload a layout or archive to a registry as it is",
        formatter_class=_FORMAT,
        description="Upload an OCI layout, OCI archive or docker-save archive (single- or\n"
        "multi-platform) to one or more registry references, digests preserved byte for\n"
        "byte. A registry source (docker://REF) is copied the same way.",
        epilog=_examples(
            "ocimerge push app.tar registry.example/team/app:1.4 registry.example/team/app:latest",
            "ocimerge push --dry-run docker://ghcr.io/acme/app:1.4 registry.example/acme/app:1.4",
            "ocimerge push release.tar --to harbor.site/mirror   # a bundle: every image, under its own name",
        ),
    )
    parser.add_argument("source", metavar="SRC")
    # one source, many targets: one read of the source serves every repository pushed to;
    # none with --to, where each image of a bundle names its own
    parser.add_argument("targets", nargs="*", metavar="REGISTRY/REPO:TAG")
    parser.tail = "targets"  # options may come before, between and after the targets
    bundles = parser.add_argument_group("bundles (many images, each named by its reference)")
    bundles.add_argument(
        "--to",
        metavar="REGISTRY[/PREFIX]",
        help="restore every image of a bundle here, its repository path kept under PREFIX",
    )
    bundles.add_argument("--map", metavar="FILE", help="lines 'SOURCE TARGET' of name prefixes that go elsewhere")
    bundles.add_argument(
        "--mount-from",
        metavar="REGISTRY/PREFIX",
        help="an earlier restore of the same bundle on this registry: mount from it instead of uploading",
    )
    # a dry run still talks to the registry: the plan is what it holds, not a guess
    parser.add_argument("--dry-run", action="store_true", help="ask the registry what it holds; upload nothing")
    _referrer_flags(parser)
    signing = parser.add_argument_group("signatures")
    signing.add_argument(
        "--require-signature",
        action="store_true",
        help="refuse to upload unless every image has a valid cosign signature by --key",
    )
    _key_flag(signing, "that every image must be signed with")
    parser.add_argument(
        "--metadata-file",
        metavar="FILE",
        help="write the result as JSON here, as buildx does (not with --to)",
    )
    _result_flags(
        parser, "REGISTRY/REPO:TAG@DIGEST for each tag pushed (or restored, with --to); nothing for --dry-run"
    )
    _progress_flag(parser)
    add_connection_flags(parser)
    _upload_flags(parser)


def _add_inspect(subparsers: _Subparsers) -> None:
    """Add ``inspect``: describe every entry of a source or a registry image."""
    parser = subparsers.add_parser(
        "inspect",
        help="show the platforms, digests and sizes of a source or a registry image",
        formatter_class=_FORMAT,
        description="Show every entry of a source: platforms, manifest digests, media types, sizes,\n"
        "layer and attestation counts, and the platforms it names but does not hold.",
        epilog=_examples("ocimerge inspect app.tar", "ocimerge inspect --raw docker://registry.example/team/app:1.4"),
    )
    parser.add_argument("source", metavar="SRC|REGISTRY/REPO:TAG")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    # --raw wins over --json: the stored bytes are already JSON, and re-encoding would alter them
    parser.add_argument("--raw", action="store_true", help="print the exact stored bytes of a registry image")
    parser.add_argument("--lock", metavar="LOCK", help="also list what this lock pins but the bundle lacks")
    _referrer_flags(parser, types=False)
    add_connection_flags(parser)


def _add_verify(subparsers: _Subparsers) -> None:
    """Add ``verify``: re-hash every blob of a source and report every problem found."""
    parser = subparsers.add_parser(
        "verify",
        help="re-hash every blob of a source and report every problem",
        formatter_class=_FORMAT,
        description="Re-read and re-hash every blob of every image of a source, and report every\n"
        "problem found, not only the first. A registry image is streamed, never stored.",
        epilog=_examples(
            "ocimerge verify app.tar",
            "ocimerge verify --key cosign.pub release.tar",
            "ocimerge verify --lock images.lock --key cosign.pub release.tar",
            "ocimerge verify docker://registry.example/team/app:1.4",
        ),
    )
    # docker:// spelled out: a registry image is downloaded blob by blob, which is worth saying
    parser.add_argument("source", metavar="SRC|docker://REF")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--lock", metavar="LOCK", help="check every image against this lock: same digests, nothing missing or extra"
    )
    _referrer_flags(parser, types=False)
    _key_flag(parser.add_argument_group("signatures"), "to check every image's signatures with, offline")
    _progress_flag(parser)
    add_connection_flags(parser)


def _add_lock(subparsers: _Subparsers) -> None:
    """Add ``lock``: pin every image of a list to the digests its registry holds now."""
    parser = subparsers.add_parser(
        "lock",
        help="pin a list of images (and platforms) to their digests, for a reproducible release",
        formatter_class=_FORMAT,
        description="Resolve every image of IMAGES.txt through its registry and write a lock file:\n"
        "the digest each tag names, the digest of each platform kept, and their sizes.\n"
        "IMAGES.txt holds one 'REF [PLATFORM[,PLATFORM...]]' per line; '#' starts a comment.\n"
        "Run again, it says what moved since the lock it replaces.",
        epilog=_examples(
            "ocimerge lock images.txt -o images.lock",
            "ocimerge bundle --lock images.lock -o release.tar",
        ),
    )
    parser.add_argument("images", metavar="IMAGES.txt")
    parser.add_argument("-o", "--output", required=True, metavar="LOCK", help="the lock file to write (replaced)")
    _result_flags(parser)
    add_connection_flags(parser)


def _add_bundle(subparsers: _Subparsers) -> None:
    """Add ``bundle``: many images, with their referrers, in one OCI layout or archive."""
    parser = subparsers.add_parser(
        "bundle",
        help="write many images (and their signatures) into one OCI layout or archive",
        formatter_class=_FORMAT,
        description="Write every image of a lock (or every SRC given) into one OCI layout: an\n"
        "archive (OUT.tar) or a directory. Each image is named in index.json by its full\n"
        "reference; blobs shared between images are stored once; signatures, SBOMs and\n"
        "attestations come along. An interrupted run, started again, keeps what it has.",
        epilog=_examples(
            "ocimerge bundle --lock images.lock -o release.tar",
            "ocimerge bundle -o release docker://ghcr.io/acme/app:1.4 docker://docker.io/library/redis:7",
            "ocimerge push release.tar --to registry.site/mirror",
        ),
    )
    parser.add_argument("sources", nargs="*", metavar="SRC", help="images to bundle, when there is no --lock")
    parser.add_argument("--lock", metavar="LOCK", help="bundle exactly what this lock file pins")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="OUT.tar for an archive, else a directory")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    _referrer_flags(parser, types=False)
    _result_flags(parser)
    _progress_flag(parser)
    add_connection_flags(parser)


def _add_doctor(subparsers: _Subparsers) -> None:
    """Add ``doctor``: probe a registry and report what it does, and where its profile differs."""
    parser = subparsers.add_parser(
        "doctor",
        help="probe a registry: auth, uploads, limits, index kinds, referrers, deletion",
        formatter_class=_FORMAT,
        description="Probe a registry and print what it does: API version, auth scheme and token\n"
        "endpoint forms, anonymous pull, monolithic and chunked uploads, cross-repository\n"
        "mounts, the largest request body it accepts, OCI index and Docker list acceptance,\n"
        "the referrers API, tag and manifest deletion; and which built-in profile applies\n"
        "and where the registry differs from it. Writes go only to a scratch repository\n"
        "(REPOSITORY, else ocimerge-doctor/<random>) and are deleted afterwards.",
        epilog=_examples(
            "ocimerge doctor registry.example",
            "ocimerge doctor --read-only --json ghcr.io/acme/scratch",
        ),
    )
    parser.add_argument("target", metavar="REGISTRY[/REPOSITORY]")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    # GET and HEAD only: for a registry where even a scratch repository is not welcome
    parser.add_argument("--read-only", action="store_true", help="send no writes; the write probes are skipped")
    add_connection_flags(parser)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``ocimerge`` parser; ``args.command`` names the subcommand chosen."""
    parser = _Parser(
        prog="ocimerge",
        formatter_class=_FORMAT,
        description="Merge per-architecture container images into one multi-platform image.",
        epilog=_examples("ocimerge create -o app.tar amd64.tar arm64.tar", "ocimerge COMMAND --help"),
    )
    parser.add_argument("--version", action="version", version=f"ocimerge {__version__}")
    # parser_class: subcommand errors are ours too (one line, the usage exit code)
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_create, _add_push, _add_inspect, _add_verify, _add_lock, _add_bundle, _add_doctor):
        add(subparsers)
    login_cli.add_parsers(subparsers)
    tagging_cli.add_parsers(subparsers)
    return parser
