"""The ``ocimerge`` command line: ``create``, ``inspect``, ``verify``.

Results go to stdout, notes and errors to stderr. Every deliberate failure is one line,
``ocimerge: error: …``, and an exit code from :data:`EXIT_CODES`; no traceback unless
``OCIMERGE_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from ocimerge._version import __version__
from ocimerge.errors import (
    InputError,
    ModelError,
    OcimergeError,
    OutputError,
    RemoteError,
    UsageError,
)
from ocimerge.inspection import inspect, verify
from ocimerge.model.assemble import Annotation, AttestationPolicy, IndexFormat
from ocimerge.model.platform import Platform
from ocimerge.operations import CreateOptions, CreateResult, create, push
from ocimerge.progress import ProgressView
from ocimerge.sinks.registry import BlobAction, PushResult
from ocimerge.registry.api import RegistryOptions
from ocimerge.registry.transport import TLSOptions
from ocimerge.specfile import expand_template, read_spec

__all__ = ["EXIT_CODES", "main"]

#: The one table from error class to exit code (the first matching class wins).
EXIT_CODES: tuple[tuple[type[OcimergeError], int], ...] = (
    (UsageError, 2),
    (InputError, 3),
    (ModelError, 3),
    (RemoteError, 4),
    (OutputError, 5),
)
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def exit_code(error: OcimergeError) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(error, cls):
            return code
    return EXIT_INTERNAL


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"ocimerge: error: {message}\n")


def _registry_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry")
    group.add_argument("--username", help="registry user (with --password-stdin)")
    group.add_argument("--password-stdin", action="store_true", help="read the password or token from stdin")
    group.add_argument("--ca-file", help="trust this CA bundle for registry TLS")
    group.add_argument("--insecure", action="store_true", help="do not verify registry TLS certificates")
    group.add_argument("--plain-http", action="store_true", help="talk plain HTTP to the registry")
    group.add_argument("--jobs", type=int, default=4, help="blobs uploaded at once (default 4)")
    group.add_argument("--chunk-size", type=_size, help="upload in chunks of this size (e.g. 8M)")


def _size(text: str) -> int:
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    number, unit = text.rstrip("BbIi"), ""
    if number and number[-1].upper() in units:
        number, unit = number[:-1], number[-1].upper()
    try:
        value = int(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: e.g. 8388608, 8M, 1G") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the chunk size must be positive")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ocimerge",
        description="Merge per-architecture container images into one multi-platform image.",
    )
    parser.add_argument("--version", action="version", version=f"ocimerge {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = commands.add_parser(
        "create",
        help="merge images into one multi-platform OCI layout or archive",
        description="Merge single-platform images (OCI layouts, OCI archives, docker-save "
        "archives) into one image index. SRC is [oci:|oci-archive:|docker-archive:]PATH"
        "[:TAG|@DIGEST][=PLATFORM].",
    )
    c.add_argument(
        "sources",
        nargs="*",
        metavar="SRC[=PLATFORM]",
        help="local layout or archive, or registry image (docker://REF or HOST/REPO:TAG)",
    )
    c.add_argument("-o", "--output", help="OUT.tar writes an OCI archive, OUT/ a layout directory")
    c.add_argument(
        "-t",
        "--tag",
        action="append",
        default=[],
        metavar="REGISTRY/REPO:TAG",
        help="push the result here (repeatable: several tags, repositories, registries)",
    )
    c.add_argument(
        "--format",
        choices=[f.value for f in IndexFormat],
        default="auto",
        help="index type: auto (Docker list only when nothing is lost), oci, docker",
    )
    c.add_argument(
        "--attestations",
        choices=[p.value for p in AttestationPolicy],
        default="keep",
        help="keep or drop BuildKit attestation manifests (default keep)",
    )
    c.add_argument(
        "--annotation",
        action="append",
        default=[],
        metavar="[manifest-descriptor:]KEY=VALUE",
        help="annotation on the index, or on its entries with manifest-descriptor:",
    )
    c.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="OS/ARCH[/VARIANT]",
        help="take only these platforms from multi-platform sources (repeatable, or comma-separated)",
    )
    c.add_argument("--template", metavar="REF", help="registry source per platform: OS, ARCH, VARIANT are replaced")
    c.add_argument("--platforms", metavar="P1,P2", help="the platforms --template expands to")
    c.add_argument("--spec", metavar="FILE", help="JSON spec: image, tags, manifests [{image, platform}], annotations")
    c.add_argument("--ignore-missing", action="store_true", help="skip a source that is absent, with a note")
    c.add_argument("--metadata-file", metavar="FILE", help="write the result as JSON here, as buildx does")
    c.add_argument(
        "--compress",
        choices=["none", "gzip"],
        default="none",
        help="gzip uncompressed (docker-save) layers, deterministically",
    )
    c.add_argument("--tag-name", default="latest", help="the tag written in index.json (default latest)")
    c.add_argument("--dry-run", action="store_true", help="print the index and its digest, write nothing")
    c.add_argument("--force", action="store_true", help="replace OUT if it exists")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.add_argument("-q", "--quiet", action="store_true", help="no notes or progress on stderr")
    _registry_flags(c)

    p = commands.add_parser(
        "push",
        help="upload a layout or archive to a registry as it is",
        description="Upload an OCI layout, OCI archive or docker-save archive (single- or multi-platform) "
        "to one or more registry references, digests preserved byte for byte.",
    )
    p.add_argument("source", metavar="SRC")
    p.add_argument("targets", nargs="+", metavar="REGISTRY/REPO:TAG")
    p.add_argument("--dry-run", action="store_true", help="ask the registry what it holds; upload nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no notes or progress on stderr")
    _registry_flags(p)

    i = commands.add_parser("inspect", help="show the platforms, digests and sizes of a source or a registry image")
    i.add_argument("source", metavar="SRC|REGISTRY/REPO:TAG")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.add_argument("--raw", action="store_true", help="print the exact stored bytes of a registry image")
    _registry_flags(i)

    v = commands.add_parser("verify", help="re-hash every blob of a source and report every problem")
    v.add_argument("source", metavar="SRC|docker://REF")
    v.add_argument("--json", action="store_true", help="print JSON instead of text")
    _registry_flags(v)
    return parser


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def _table(rows: Sequence[Sequence[str]], out: TextIO, indent: str = "  ") -> None:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        out.write(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _print_inspect(report: dict[str, Any], out: TextIO) -> None:
    out.write(f"{report['source']}\n")
    for entry in report["entries"]:
        if "error" in entry:
            out.write(f"  not an image: {entry['error']}\n\n")
            continue
        names = ", ".join(entry["names"]) or "untagged"
        root = entry["root"]
        if root:
            out.write(f"  {names}  {root['mediaType']}  {root['digest']}  {_human(root['size'])}\n")
        else:
            out.write(f"  {names}  (docker-save image; manifest authored on read)\n")
        rows = [["PLATFORM", "DIGEST", "MEDIA TYPE", "SIZE", "LAYERS", "ATTESTATIONS"]]
        for image in entry["images"]:
            rows.append(
                [
                    image["platform"],
                    image["digest"],
                    image["mediaType"],
                    _human(image["contentSize"]),
                    str(len(image["layers"])),
                    str(len(image["attestations"])),
                ]
            )
        for absent in entry["absent"]:
            rows.append([absent["platform"] or "?", absent["digest"], absent["mediaType"], "absent", "-", "-"])
        _table(rows, out, indent="    ")
        for note in entry["notes"]:
            out.write(f"    note: {note}\n")
        out.write("\n")


def _notes(notes: Sequence[str], quiet: bool) -> None:
    if not quiet:
        for note in notes:
            sys.stderr.write(f"ocimerge: note: {note}\n")


def _options(args: argparse.Namespace) -> RegistryOptions:
    password = None
    if args.password_stdin:
        if not args.username:
            raise UsageError("--password-stdin needs --username")
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: nothing on stdin")
    elif args.username:
        raise UsageError("--username needs --password-stdin (passwords never go on the command line)")
    tls = TLSOptions(ca_file=args.ca_file, insecure=args.insecure, plain_http=args.plain_http)
    return RegistryOptions(tls=tls, username=args.username, password=password, chunk_size=args.chunk_size)


def _progress(args: argparse.Namespace) -> ProgressView | None:
    if args.quiet or args.json or not sys.stderr.isatty():
        return None
    return ProgressView(sys.stderr)


def _push_rows(results: Sequence[PushResult], out: TextIO) -> None:
    for result in results:
        verb = "Would push" if result.dry_run else "Pushed"
        tags = ", ".join(result.tags) or "(no tag)"
        out.write(
            f"{verb} {result.registry}/{result.repository} [{tags}] {result.root.digest}: "
            f"{result.count(BlobAction.UPLOAD)} blobs uploaded, {result.count(BlobAction.COPY)} copied from "
            f"another registry ({_human(result.bytes_uploaded)}), {result.count(BlobAction.MOUNT)} mounted, "
            f"{result.count(BlobAction.SKIP)} already there; "
            f"{result.manifests_pushed} manifests pushed, {result.manifests_skipped} already there\n"
        )
        if result.dry_run:  # the plan, blob by blob
            for plan in result.blobs:
                source = f" from {plan.source}" if plan.source else ""
                out.write(f"  {plan.action.value:<7} {plan.digest}  {_human(plan.size)}{source}\n")


def _platforms(values: Sequence[str]) -> list[Platform]:
    return [Platform.parse(p) for value in values for p in value.split(",") if p.strip()]


def _run_create(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    sources, tags, annotations = list(args.sources), list(args.tag), list(args.annotation)
    if args.template:
        sources += expand_template(args.template, _platforms([args.platforms or ""])).sources
    elif args.platforms:
        raise UsageError("--platforms goes with --template; to filter sources use --platform")
    if args.spec:
        plan = read_spec(args.spec)
        sources += plan.sources
        tags += [t for t in plan.targets if t not in tags]
        annotations += plan.annotations
    if not sources:
        raise UsageError("no sources: give SRC arguments, --template with --platforms, or --spec")
    view = _progress(args) if tags else None
    try:
        result = create(
            sources,
            args.output,
            tags=tags,
            options=CreateOptions(
            platforms=_platforms(args.platform),
            ignore_missing=args.ignore_missing,
            registry_options=_options(args),
            jobs=args.jobs,
            on_event=view.on_event if view else None,
            format=IndexFormat(args.format),
            attestations=AttestationPolicy(args.attestations),
            annotations=[Annotation.parse(a) for a in annotations],
            compress=args.compress == "gzip",
            tag_name=args.tag_name,
            dry_run=args.dry_run,
            force=args.force,
        ))
    finally:
        if view is not None:
            view.finish()
    _notes(result.notes, args.quiet)
    index = result.index
    if args.metadata_file and not args.dry_run:
        _write_metadata(args.metadata_file, result, tags)
    if args.json:
        payload = _result_json(result)
        if args.dry_run:
            payload["index"] = json.loads(index.raw)
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return EXIT_OK
    if args.dry_run:
        sys.stdout.write(index.raw.decode("utf-8") + "\n")
        sys.stdout.write(f"Digest: {index.descriptor.digest}\n")
        _push_rows(result.pushed, sys.stdout)
        return EXIT_OK
    rows = [["PLATFORM", "DIGEST", "SOURCE"]]
    pairs = sorted(zip(result.images, result.assembly.manifests, strict=True), key=lambda p: p[0].platform.key)
    for image, manifest in pairs:
        rows.append([str(image.platform), str(manifest.descriptor.digest), image.source])
    if result.output:
        sys.stdout.write(f"Wrote {result.output}\n")
    sys.stdout.write(f"  {index.descriptor.media_type}  {index.descriptor.digest}\n")
    _table(rows, sys.stdout)
    _push_rows(result.pushed, sys.stdout)
    return EXIT_OK


def _result_json(result: CreateResult) -> dict[str, Any]:
    index = result.index
    return {
        "digest": str(index.descriptor.digest),
        "mediaType": index.descriptor.media_type,
        "size": index.descriptor.size,
        "output": result.output,
        "manifests": [
            {"platform": str(i.platform), "digest": str(m.descriptor.digest), "source": i.source}
            for i, m in zip(result.images, result.assembly.manifests, strict=True)
        ],
        "pushed": [p.to_json() for p in result.pushed],
    }


def _write_metadata(path: str, result: CreateResult, tags: Sequence[str]) -> None:
    """``--metadata-file``: buildx's keys, then ours."""
    descriptor = result.index.descriptor
    metadata = {
        "containerimage.digest": str(descriptor.digest),
        "containerimage.descriptor": {
            "mediaType": descriptor.media_type,
            "digest": str(descriptor.digest),
            "size": descriptor.size,
        },
        "image.name": ",".join(tags),
        "ocimerge": _result_json(result),
    }
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(metadata, indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the metadata file ({exc.strerror})") from None


def _run_push(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    view = _progress(args)
    try:
        result = push(
            args.source,
            args.targets,
            registry_options=_options(args),
            jobs=args.jobs,
            on_event=view.on_event if view else None,
            dry_run=args.dry_run,
        )
    finally:
        if view is not None:
            view.finish()
    _notes(result.notes, args.quiet)
    if args.json:
        payload = {
            "digest": str(result.root.digest),
            "mediaType": result.root.media_type,
            "manifests": [{"platform": str(i.platform), "digest": str(i.digest)} for i in result.images],
            "pushed": [p.to_json() for p in result.pushed],
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        _push_rows(result.pushed, sys.stdout)
    return EXIT_OK


def _run_inspect(args: argparse.Namespace) -> int:
    report = inspect(args.source, _options(args))
    if args.raw:
        sys.stdout.write(report.raw().decode("utf-8"))
    elif args.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        _print_inspect(report.to_json(), sys.stdout)
    return EXIT_OK


def _run_verify(args: argparse.Namespace) -> int:
    report = verify(args.source, _options(args))
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        for problem in report.problems:
            sys.stdout.write(f"problem: {problem}\n")
        for note in report.notes:
            sys.stdout.write(f"note: {note}\n")
        verdict = "OK" if report.ok else f"{len(report.problems)} problem(s)"
        sys.stdout.write(
            f"{report.source}: {verdict}; {report.blobs_checked} blobs, {_human(report.bytes_checked)} checked\n"
        )
    return EXIT_OK if report.ok else 3


_COMMANDS = {"create": _run_create, "push": _run_push, "inspect": _run_inspect, "verify": _run_verify}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except OcimergeError as exc:
        sys.stderr.write(f"ocimerge: error: {exc}\n")
        return exit_code(exc)
    except KeyboardInterrupt:
        sys.stderr.write("ocimerge: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("OCIMERGE_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(
            f"ocimerge: internal error: {type(exc).__name__}: {exc} "
            "(set OCIMERGE_DEBUG=1 for a traceback, and please report it)\n"
        )
        return EXIT_INTERNAL
