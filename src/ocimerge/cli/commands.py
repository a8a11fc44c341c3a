"""The subcommands: parsed arguments in, one library call, its result rendered, an exit code out.

Each ``run_*`` turns ``argparse`` values into the library's option values, calls the
library once, and hands the typed result to :mod:`ocimerge.cli.render`. Checks live in
the library (:class:`~ocimerge.sinks.registry.PushOptions` refuses ``--jobs 0``, for
instance), so the command line and Python callers are refused alike; the few checks here
are about the command line itself (where a password comes from, which flags go together).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from ocimerge.bundle import bundle, lock, read_lock, staged_by
from ocimerge.cli import render
from ocimerge.cli.connection import debug_options, password_from_stdin, tls_options
from ocimerge.cli.exits import EXIT_OK, code_for, exit_code
from ocimerge.cli.login import COMMANDS as LOGIN_COMMANDS
from ocimerge.cli.tagging import COMMANDS as TAGGING_COMMANDS
from ocimerge.doctor import diagnose, parse_target
from ocimerge.errors import InputError, OcimergeError, UsageError
from ocimerge.inspection import inspect, verify
from ocimerge.model.assemble import Annotation, AttestationPolicy, IndexFormat
from ocimerge.model.platform import Platform
from ocimerge.operations import CreateOptions, CreateResult, PushSourceResult, create, partial_result, push
from ocimerge.progress import DELAY, FRAME_INTERVAL, SUMMARY_INTERVAL, PlainView, ProgressView, TerminalView
from ocimerge.registry.api import Registry, RegistryOptions
from ocimerge.restore import RestoreMap, partial_restore, restore
from ocimerge.signatures import PrivateKey, PublicKey, load_private_key, load_public_key
from ocimerge.sinks.registry import PushEvent, PushOptions
from ocimerge.sinks.replace import replace_file
from ocimerge.specfile import expand_template, read_spec
from ocimerge.text import printable

__all__ = ["COMMANDS", "write_metadata"]


def _public_key(args: argparse.Namespace) -> PublicKey | None:
    """``--key PUB.pem`` loaded (a bad file is a UsageError naming it), or None."""
    return load_public_key(args.key) if args.key else None


def _sign_key(args: argparse.Namespace) -> PrivateKey | None:
    """``--sign-key KEY.pem`` loaded, its password from ``$COSIGN_PASSWORD`` as cosign reads it."""
    if not args.sign_key:
        return None
    password = os.environ.get("COSIGN_PASSWORD")
    return load_private_key(args.sign_key, password.encode() if password else None)


def _registry_options(args: argparse.Namespace) -> RegistryOptions:
    """The connection flags (and the upload flags, where the command has them) as registry options."""
    # TLS settings apply to every registry of the run; credentials are scoped by the library
    tls = tls_options(args)
    # inspect and verify upload nothing, so they have no upload flags at all
    given = vars(args)
    return debug_options(
        args,
        RegistryOptions(
            tls=tls,
            username=args.username,
            password=password_from_stdin(args),
            chunk_size=given.get("chunk_size"),
            max_request_size=given.get("max_request_size"),
            mounts=not given.get("no_mount", False),
        ),
    )


_Result = TypeVar("_Result", CreateResult, PushSourceResult)


def _settled(call: Callable[[], _Result], kind: type[_Result]) -> tuple[_Result, OcimergeError | None]:
    """[MSG-4] ``call()``'s result, or, when some targets failed, the partial result and the error.

    Any other failure (one with no partial result behind it) is raised as it is.
    """
    try:
        return call(), None
    except OcimergeError as exc:
        partial = partial_result(exc)
        if not isinstance(partial, kind):
            raise
        return partial, exc


#: [PROGRESS-1] ``--progress``'s values, and ``$OCIMERGE_PROGRESS``'s.
_MODES = ("auto", "tty", "plain", "quiet")


def progress_mode(args: argparse.Namespace) -> str:
    """[PROGRESS-1] ``tty``, ``plain`` or ``quiet``: ``--progress``, else ``$OCIMERGE_PROGRESS``, else auto.

    ``-q`` is quiet, and another ``--progress`` with it a UsageError. Auto is tty when stderr
    is a terminal and ``$TERM`` is not ``dumb``, else plain; ``--json`` keeps that choice, since
    progress goes to stderr only and the JSON on stdout is the same either way. A dry run
    without ``--progress`` is quiet.
    """
    given = getattr(args, "progress", None)
    if getattr(args, "quiet", False):
        if given not in (None, "quiet", "auto"):
            raise UsageError(f"-q and --progress {given} disagree: -q means --progress quiet; give one of the two")
        return "quiet"
    if given is None and getattr(args, "dry_run", False):
        return "quiet"  # a dry run moves no blob: its plan on stderr is the whole story
    mode = given or os.environ.get("OCIMERGE_PROGRESS") or "auto"
    if mode not in _MODES:
        raise UsageError(f"OCIMERGE_PROGRESS={printable(mode)}: expected one of {', '.join(_MODES)}")
    if mode == "auto":
        return "tty" if sys.stderr.isatty() and os.environ.get("TERM") != "dumb" else "plain"
    return mode


def _seconds(name: str, default: float) -> float:
    """[PROGRESS-5] A test and debugging knob: ``$OCIMERGE_PROGRESS_DELAY`` (seconds before a view
    shows anything periodic, default 1) or ``$OCIMERGE_PROGRESS_INTERVAL`` (seconds between
    frames or summaries); ``0`` draws at every event."""
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses NaN
        raise UsageError(f"{name}={printable(text)}: expected seconds, e.g. 0 or 1.5")
    return value


def _progress(args: argparse.Namespace) -> ProgressView | None:
    """[PROGRESS-1] The view ``--progress`` asks for, on stderr (never stdout), or None for quiet."""
    mode = progress_mode(args)
    if mode == "quiet":
        return None
    delay = _seconds("OCIMERGE_PROGRESS_DELAY", DELAY)
    if mode == "tty":
        return TerminalView(sys.stderr, delay=delay, interval=_seconds("OCIMERGE_PROGRESS_INTERVAL", FRAME_INTERVAL))
    return PlainView(sys.stderr, delay=delay, interval=_seconds("OCIMERGE_PROGRESS_INTERVAL", SUMMARY_INTERVAL))


@contextlib.contextmanager
def _progress_while(args: argparse.Namespace) -> Iterator[ProgressView | None]:
    """A progress view (or None) for the block; its final state is drawn however the block ends."""
    view = _progress(args)
    try:
        yield view
    except BaseException:
        if view is not None:  # an error or Ctrl-C: the last line says stopped, not done
            view.finish(stopped=True)
        raise
    if view is not None:
        view.finish()


def _push_options(args: argparse.Namespace, view: ProgressView | None) -> PushOptions:
    """The upload and connection flags as push options (``PushOptions`` checks ``--jobs``)."""
    return PushOptions(
        registry=_registry_options(args),
        jobs=args.jobs,
        dry_run=args.dry_run,
        on_event=_on_event(view),
    )


def _on_event(view: ProgressView | None) -> Callable[[PushEvent], None] | None:
    """The callback a library function reports its blobs to: ``view``'s, or None for none."""
    return view.on_event if view is not None else None


def _platforms(values: Sequence[str]) -> list[Platform]:
    """Repeated and comma-separated ``--platform`` values, each parsed (bad syntax is a UsageError)."""
    return [Platform.parse(p) for value in values for p in value.split(",") if p.strip()]


def _create_inputs(args: argparse.Namespace) -> tuple[list[str], list[str], list[str]]:
    """``create``'s sources, tags and annotations from arguments, ``--template`` and ``--spec``."""
    sources, tags, annotations = list(args.sources), list(args.tag), list(args.annotation)
    if args.template:
        sources += expand_template(args.template, _platforms([args.platforms or ""])).sources
    elif args.platforms:
        raise UsageError("--platforms goes with --template; to filter sources use --platform")
    if args.spec:
        plan = read_spec(args.spec)
        sources += plan.sources
        # a tag given both with -t and in the spec is pushed once, in the order first seen
        tags += [t for t in plan.targets if t not in tags]
        annotations += plan.annotations
    if not sources:
        raise UsageError("no sources: give SRC arguments, --template with --platforms, or --spec")
    return sources, tags, annotations


def _create_options(args: argparse.Namespace, annotations: Sequence[str], upload: PushOptions) -> CreateOptions:
    """Every other ``create`` flag as :class:`CreateOptions`, the push half taken from ``upload``."""
    return CreateOptions(
        platforms=_platforms(args.platform),
        ignore_missing=args.ignore_missing,
        registry_options=upload.registry,
        jobs=upload.jobs,
        on_event=upload.on_event,
        format=IndexFormat(args.format),
        attestations=AttestationPolicy(args.attestations),
        annotations=[Annotation.parse(a) for a in annotations],
        annotations_from_labels=args.annotations_from_labels,
        compress=args.compress == "gzip",
        tag_name=args.tag_name,
        dry_run=args.dry_run,
        force=args.force,
        referrers=args.referrers == "all",
        referrer_types=args.referrers_type,
        sign_key=_sign_key(args),
        append=args.append,
        replace=args.replace,
        drop_annotations=args.drop_annotations,
        untag_sources=args.untag_sources,
    )


def _create_json(result: CreateResult, *, dry_run: bool) -> dict[str, object]:
    """``create --json``: the result's own JSON; a dry run adds the index document it would write."""
    payload = result.to_json()
    if dry_run:
        # the decoded index, so a script reads the document without a second parse of a string
        payload["index"] = json.loads(result.index.raw)
    return payload


def run_create(args: argparse.Namespace) -> int:
    """``create``: merge, then write (-o), push (-t), or only show (--dry-run); returns the exit code.

    [MSG-4] When some targets failed, every target's outcome is still printed (``--json`` or
    the summary) before the first failure is raised for ``main`` to report with its code.
    """
    sources, tags, annotations = _create_inputs(args)
    # [PROGRESS-1] writing -o is reported as a push is: a gigabyte takes a while
    with _progress_while(args) as view:
        # PushOptions is built even without -t, so a bad --jobs is refused before any work
        options = _create_options(args, annotations, _push_options(args, view))
        result, failure = _settled(lambda: create(sources, args.output, tags=tags, options=options), CreateResult)
    # notes after the progress view is finished, so they never land inside its redrawn lines
    render.print_notes(result.notes, quiet=args.quiet)
    # every target pushed (a failure after that, removing source tags, leaves the result true)
    if args.metadata_file and not args.dry_run and (failure is None or not result.failed):
        write_metadata(args.metadata_file, result, tags)
    # stdout carries exactly one thing: the JSON, the document (--dry-run), the result (-q), or
    # the summary; the rest goes to stderr, so `X=$(ocimerge create …)` captures only that
    if args.json:
        render.print_json(_with_exit_codes(_create_json(result, dry_run=args.dry_run), result), sys.stdout)
    elif args.dry_run:
        render.print_dry_run(result, sys.stdout, None if args.quiet else sys.stderr)
        render.print_failures(result.failed, sys.stderr)
    elif args.quiet:
        if tags:
            render.print_references(result.pushed, sys.stdout)
        else:  # -o alone: the index digest, what a script pins the file by
            sys.stdout.write(f"{result.index.descriptor.digest}\n")
        render.print_failures(result.failed, sys.stderr)
    else:
        render.print_create(result, sys.stdout)
        render.print_failures(result.failed, sys.stdout)
    if failure is not None:
        raise failure
    return EXIT_OK


def _with_exit_codes(payload: dict[str, object], result: CreateResult | PushSourceResult) -> dict[str, object]:
    """[MSG-4] ``payload`` with each ``errors`` entry given the exit code its error means."""
    entries = payload.get("errors")
    if isinstance(entries, list):
        for entry, failed in zip(entries, result.failed, strict=True):
            entry["exitCode"] = exit_code(failed.error)
    return payload


def _metadata(result: CreateResult | PushSourceResult, tags: Sequence[str]) -> dict[str, object]:
    """``--metadata-file``'s content: buildx's keys, then ours under ``ocimerge``."""
    if isinstance(result, CreateResult):
        return result.metadata(tags)
    # push: the root as stored, under the same keys create writes (buildx's names)
    root = result.root
    return {
        "containerimage.digest": str(root.digest),
        "containerimage.descriptor": {"mediaType": root.media_type, "digest": str(root.digest), "size": root.size},
        "image.name": ",".join(tags),
        "ocimerge": result.to_json(),
    }


def write_metadata(path: str, result: CreateResult | PushSourceResult, tags: Sequence[str]) -> None:
    """``--metadata-file``: buildx's keys (``containerimage.digest``, ``containerimage.descriptor``,
    ``image.name``) and the result's JSON under ``ocimerge``, at ``path``, atomically.

    Written to a temporary file in the same directory and renamed over ``path``, so a reader
    (a CI step waiting for the file) sees the old content or the whole new one, never half.
    Any OS failure is an :class:`OutputError` naming ``path``, with the OS error as its cause.
    """
    text = json.dumps(_metadata(result, tags), indent=2) + "\n"
    replace_file(path, text.encode("utf-8"), what="the metadata file")


def run_push(args: argparse.Namespace) -> int:
    """``push``: upload a source as it is to every target; returns the exit code.

    [MSG-4] When some targets failed, every target's outcome is still printed before the
    first failure is raised for ``main`` to report with its code.
    """
    if args.to is not None:  # `--to ""` is a bad --to (restore says so), not a push without targets
        return _run_restore(args)
    if args.map or args.mount_from:
        raise UsageError("--map and --mount-from go with --to REGISTRY[/PREFIX]")
    if not args.targets:
        raise UsageError(
            "no target given: ocimerge push SRC REGISTRY/REPO:TAG..., or push BUNDLE --to REGISTRY[/PREFIX]"
        )
    if args.require_signature and not args.key:
        raise UsageError("--require-signature needs --key PUB.pem, the key the images must be signed with")
    if args.key and not args.require_signature:
        raise UsageError("push --key goes with --require-signature (to check signatures only, use verify --key)")
    key = _public_key(args)
    with _progress_while(args) as view:
        options = _push_options(args, view)
        result, failure = _settled(
            lambda: push(
                args.source,
                args.targets,
                options=options,
                referrers=args.referrers == "all",
                referrer_types=args.referrers_type,
                require_signature=key,
                key_name=args.key or "the key",
            ),
            PushSourceResult,
        )
    render.print_notes(result.notes, quiet=args.quiet)
    if args.metadata_file and not args.dry_run and failure is None:
        write_metadata(args.metadata_file, result, args.targets)
    if args.json:
        render.print_json(_with_exit_codes(result.to_json(), result), sys.stdout)
    elif args.quiet:
        render.print_references(result.pushed, sys.stdout)
        render.print_failures(result.failed, sys.stderr)
    else:
        render.print_pushes(result.pushed, sys.stdout)
        render.print_failures(result.failed, sys.stdout)
    if failure is not None:
        raise failure
    return EXIT_OK


def _check_restore_flags(args: argparse.Namespace) -> None:
    """The flags ``push --to`` refuses, each a UsageError saying what goes with what."""
    if args.targets:
        raise UsageError("push --to restores a bundle under the names it holds: give no REGISTRY/REPO:TAG as well")
    if args.metadata_file:  # buildx's keys describe one image; a bundle restores many
        raise UsageError("--metadata-file describes one image: it goes with push SRC REGISTRY/REPO:TAG..., not --to")
    if args.require_signature and not args.key:
        raise UsageError("--require-signature needs --key PUB.pem, the key the images must be signed with")
    if args.key and not args.require_signature:  # as plain push: a key never checked would read as checked
        raise UsageError("push --key goes with --require-signature (to check signatures only, use verify --key)")


def _run_restore(args: argparse.Namespace) -> int:
    """``push BUNDLE --to REGISTRY[/PREFIX]``: every image of a bundle under its own name.

    [RESTORE-6] When some images failed, every image's outcome is still printed before the
    first failure is raised for ``main`` to report with its code.
    """
    _check_restore_flags(args)
    key = _public_key(args)
    mapping = RestoreMap.read(args.map) if args.map else None
    with _progress_while(args) as view:
        options = _push_options(args, view)
        try:
            result, failure = (
                restore(
                    args.source,
                    args.to,
                    mapping=mapping,
                    options=options,
                    referrers=args.referrers == "all",
                    referrer_types=args.referrers_type,
                    require_signature=key,
                    key_name=args.key or "the key",
                    mount_from=args.mount_from,
                ),
                None,
            )
        except OcimergeError as exc:
            partial = partial_restore(exc)
            if partial is None:
                raise
            result, failure = partial, exc
    render.print_notes(result.notes, quiet=args.quiet)
    if args.json:
        render.print_json(result.to_json(), sys.stdout)
    elif args.quiet:  # a reference per tag restored, as plain push -q
        render.print_references(result.pushed, sys.stdout)
    else:
        for line in result.summary_lines():
            sys.stdout.write(f"{printable(line)}\n")
    if failure is not None:
        raise failure
    return EXIT_OK


def run_inspect(args: argparse.Namespace) -> int:
    """``inspect``: a table of the source's entries, its ``--json``, or the ``--raw`` stored bytes."""
    report = inspect(
        args.source,
        _registry_options(args),
        referrers=args.referrers == "all",
        lock=read_lock(args.lock) if args.lock else None,
    )
    if args.raw:
        # no newline added: the bytes are exactly those stored, for piping into sha256sum; on a
        # terminal, where nobody hashes them, a DEL or C1 character in them is escaped [SEC-5]
        text = report.raw().decode("utf-8")
        sys.stdout.write(printable(text) if sys.stdout.isatty() else text)
    elif args.json:
        render.print_json(report.to_json(), sys.stdout)
    else:
        render.print_inspect(report, sys.stdout)
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    """``verify``: every problem found; the exit code is bad input's (3) when there is any."""
    if args.key and args.referrers == "none":
        raise UsageError("verify --key reads the signatures, which --referrers none does not look for")
    options, key, locked = _registry_options(args), _public_key(args), read_lock(args.lock) if args.lock else None
    with _progress_while(args) as view:
        report = verify(
            args.source,
            options,
            referrers=args.referrers == "all",
            key=key,
            key_name=args.key or "the key",
            lock=locked,
            on_event=_on_event(view),
        )
    if args.json:
        render.print_json(report.to_json(), sys.stdout)
    else:
        render.print_verify(report, sys.stdout)
    # problems were reported, not raised: the code still says "bad input", from the one table
    return EXIT_OK if report.ok else code_for(InputError)


def run_lock(args: argparse.Namespace) -> int:
    """``lock``: resolve the image list, write the lock, say what moved since the last one."""
    result = lock(args.images, args.output, _registry_options(args))
    if args.json:
        render.print_json(result.to_json(), sys.stdout)
    elif args.quiet:  # the lock written, as bundle -q prints the bundle written
        sys.stdout.write(f"{result.path}\n")
    else:
        render.print_lock(result, sys.stdout)
    return EXIT_OK


def run_bundle(args: argparse.Namespace) -> int:
    """``bundle``: every image of the lock, or of the sources, into one layout or archive."""
    if bool(args.lock) == bool(args.sources):
        raise UsageError("bundle takes --lock LOCK or SRC arguments (one of the two)")
    sources = read_lock(args.lock) if args.lock else list(args.sources)
    options = _registry_options(args)
    try:
        # the view is finished before any note, so a note never lands inside its redrawn lines
        with _progress_while(args) as view:
            result = bundle(
                sources,
                args.output,
                registry_options=options,
                referrers=args.referrers == "all",
                force=args.force,
                on_event=_on_event(view),
            )
    except (OcimergeError, KeyboardInterrupt) as exc:
        staged = staged_by(exc)
        if staged is not None:  # [BUNDLE-5] this run staged blobs: they are kept for the next
            render.print_notes(
                [f"the blobs fetched so far are kept in {staged}; run the same command again to continue"],
                quiet=args.quiet,
            )
        raise
    render.print_notes(result.notes, quiet=args.quiet)
    if args.json:
        render.print_json(result.to_json(), sys.stdout)
    elif not args.quiet:
        render.print_bundle(result, sys.stdout)
    else:
        sys.stdout.write(f"{result.output}\n")
    return EXIT_OK


def run_doctor(args: argparse.Namespace) -> int:
    """``doctor``: probe one registry; 0 whatever it found, the usual error when it cannot be reached."""
    host, repository = parse_target(args.target)
    with Registry(host, _registry_options(args)) as registry:
        report = diagnose(registry, repository, read_only=args.read_only)
    if args.json:
        render.print_json(report.to_json(), sys.stdout)
    else:
        render.print_doctor(report, sys.stdout)
    return EXIT_OK


#: Each subcommand's name and the function that runs it.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "create": run_create,
    "push": run_push,
    "inspect": run_inspect,
    "verify": run_verify,
    "lock": run_lock,
    "bundle": run_bundle,
    "doctor": run_doctor,
    **LOGIN_COMMANDS,
    **TAGGING_COMMANDS,
}
