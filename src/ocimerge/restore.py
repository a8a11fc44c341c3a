"""Restoring a bundle: every image of one OCI layout pushed under a new registry and prefix.

A bundle is an OCI layout (a directory or a tar) whose ``index.json`` lists one entry per
image, named with the image's full reference (``org.opencontainers.image.ref.name``, also
``io.containerd.image.name``), and its signatures and other referrers beside them.
:func:`restore` pushes each image with the existing push ([PUSH-1] .. [PUSH-5], [CARRY-1]):

[RESTORE-1] target naming; [RESTORE-2] the map file; [RESTORE-3] blobs shared between
images are uploaded once and mounted into the other repositories; [RESTORE-4] the order,
image by image; [RESTORE-5] resuming; [RESTORE-6] failures; [RESTORE-7] dry runs;
[RESTORE-8] which entries are images. The clauses are in ``spec-notes/restore.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from ocimerge.content import BlobOrigin, ImageSet
from ocimerge.errors import InputError, OcimergeError, UsageError
from ocimerge.model.annotations import CONTAINERD_NAME, REF_NAME
from ocimerge.model.digest import Digest
from ocimerge.model.reference import Reference
from ocimerge.registry.api import RegistryPool
from ocimerge.signatures import PublicKey
from ocimerge.signed import require_signed, signature_walk
from ocimerge.sinks.core import Publication
from ocimerge.sinks.registry import BlobAction, PushFailure, PushOptions, PushOutcome, PushResult, RegistrySink
from ocimerge.sources import Walk, as_spec, open_source
from ocimerge.sources.core import Root, Source
from ocimerge.sources.walk import load_root

__all__ = [
    "MapRule",
    "RestoreMap",
    "RestoreResult",
    "RestoredImage",
    "partial_restore",
    "restore",
    "target_for",
]

#: [RESTORE-6] The attribute of a raised restore error that holds the whole result; the same
#: name :func:`ocimerge.operations.partial_result` reads, so one lookup serves every command.
_PARTIAL = "ocimerge_partial_result"
#: A stand-in repository appended to a prefix so that it parses as a reference ([RESTORE-1]):
#: two components, so Docker Hub's ``library/`` rule ([REF-2]) never applies to the prefix.
_PROBE = "/x/x"
#: [RESTORE-2] The largest map file read: a map is a few lines, and a file read at once is capped.
MAX_MAP_BYTES = 16 * 1024 * 1024


def _looks_like_host(first: str) -> bool:
    """[REF-1] Whether the first component of a name is a registry host."""
    return "." in first or ":" in first or first == "localhost" or first.startswith("[")


def _prefix(text: str, what: str) -> str:
    """[RESTORE-1] ``REGISTRY[/PATH]`` normalised (no ``docker://``, no trailing ``/``, Hub's
    aliases folded); a UsageError naming ``what`` when it does not start with a host."""
    cleaned = text.strip().removeprefix("docker://").rstrip("/")
    first = cleaned.split("/", 1)[0]
    if not cleaned or not _looks_like_host(first):
        raise UsageError(
            f"{what}: {text!r} does not start with a registry host (REGISTRY[/PREFIX], e.g. harbor.site/mirror)"
        )
    try:
        parsed = Reference.parse(cleaned + _PROBE, default_tag=None)
    except UsageError as exc:
        raise UsageError(
            f"{what}: {text!r} is not a valid REGISTRY[/PATH] prefix "
            "(path components are lowercase letters, digits and . _ -)"
        ) from exc
    if parsed.tag is not None or parsed.digest is not None:
        raise UsageError(f"{what}: {text!r} is a prefix, and takes no tag or digest")
    return parsed.name.removesuffix(_PROBE)


def _rules(values: Sequence[MapRule]) -> tuple[MapRule, ...]:
    return tuple(values)


@attrs.frozen
class MapRule:
    """[RESTORE-2] One line of a map file: names under ``source`` go under ``target``.

    ``where`` and ``line`` say where the rule was written, for the errors that name it.
    """

    source: str
    target: str
    line: int = 0
    where: str = "map file"

    @property
    def host(self) -> str:
        """The registry host the rule sends images to: the first component of ``target``."""
        return self.target.split("/", 1)[0]

    @property
    def place(self) -> str:
        """``FILE:LINE``, as the errors about the rule name it."""
        return f"{self.where}:{self.line}"


@attrs.frozen
class RestoreMap:
    """[RESTORE-2] Where images go, by name prefix; the longest matching source wins.

    >>> m = RestoreMap.parse("docker.io/library harbor.site/base  # official images")
    >>> m.lookup("docker.io/library/redis")
    'harbor.site/base/redis'
    >>> m.lookup("ghcr.io/acme/app") is None
    True
    """

    rules: tuple[MapRule, ...] = attrs.field(default=(), converter=_rules)

    @classmethod
    def parse(cls, text: str, *, where: str = "map file") -> RestoreMap:
        """Lines ``SOURCE TARGET``; ``#`` starts a comment; blank lines are ignored.

        Both are ``REGISTRY[/PATH]`` prefixes (a trailing ``/`` is ignored). Raises
        :class:`UsageError` naming ``where`` and the line for a line without exactly two
        fields, a prefix that does not start with a registry host, a source given twice, or
        a bare registry host as the target of a source with a path (``ghcr.io/acme/app
        harbor.site``: the image would be left without a repository, [RESTORE-2]).
        """
        rules: list[MapRule] = []
        seen: dict[str, int] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            fields = raw.split("#", 1)[0].split()
            if not fields:
                continue
            here = f"{where}:{number}"
            if len(fields) != 2:
                raise UsageError(f"{here}: expected 'SOURCE TARGET', got {raw.strip()!r}")
            source, target = _prefix(fields[0], here), _prefix(fields[1], here)
            if source in seen:
                raise UsageError(f"{here}: {source} is mapped already on line {seen[source]}")
            if "/" not in target and "/" in source:
                # the source's part is replaced by the target: `ghcr.io/acme/app harbor.site`
                # would leave `harbor.site:1`, which parses as docker.io/library/harbor.site
                raise UsageError(
                    f"{here}: the target {target} is a bare registry host, which takes a bare host as source "
                    f"(e.g. 'ghcr.io {target}'); for {source}, name the target repository or prefix "
                    f"(e.g. '{source} {target}/{source.split('/', 1)[1]}')"
                )
            seen[source] = number
            rules.append(MapRule(source, target, number, where))
        return cls(tuple(rules))

    @classmethod
    def read(cls, path: str | Path) -> RestoreMap:
        """:meth:`parse` of the file at ``path`` (UTF-8); a UsageError when it cannot be read
        or holds more than :data:`MAX_MAP_BYTES` (no unbounded read)."""
        try:
            with Path(path).open("rb") as stream:
                raw = stream.read(MAX_MAP_BYTES + 1)
            if len(raw) > MAX_MAP_BYTES:
                raise UsageError(f"{path}: the map file is larger than {MAX_MAP_BYTES} bytes; refusing to read it")
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot read the map file ({exc})") from exc
        return cls.parse(text, where=str(path))

    def rule_for(self, name: str) -> MapRule | None:
        """The rule for ``registry/repository``: its source is the name or a path prefix of
        it (whole components), the longest such source."""
        matching = [r for r in self.rules if name == r.source or name.startswith(r.source + "/")]
        return max(matching, key=lambda r: len(r.source), default=None)

    def lookup(self, name: str) -> str | None:
        """``registry/repository`` of the target for ``name``, or None when no rule matches."""
        rule = self.rule_for(name)
        return None if rule is None else rule.target + name[len(rule.source) :]


def target_for(reference: Reference, to: str, mapping: RestoreMap | None = None) -> Reference:
    """[RESTORE-1] Where the image named ``reference`` goes, under ``to`` (``REGISTRY[/PREFIX]``).

    The repository path is kept and the source registry host dropped
    (``docker.io/library/redis:7`` under ``harbor.site/mirror`` is
    ``harbor.site/mirror/library/redis:7``), unless a rule of ``mapping`` matches
    ([RESTORE-2]). The tag and digest are kept: a digest-only reference is pushed by digest.
    The target is always on the registry host the rule or ``to`` names: a result anywhere
    else (Docker Hub's ``library/`` rule applied to a name left without a repository) is a
    UsageError naming the map line, never a push to another registry.

    >>> str(target_for(Reference.parse("docker.io/library/redis:7"), "harbor.site/mirror"))
    'harbor.site/mirror/library/redis:7'
    """
    rule = mapping.rule_for(reference.name) if mapping is not None else None
    if rule is None:
        prefix = _prefix(to, "--to")
        name, host, named_by = f"{prefix}/{reference.repository}", prefix.split("/", 1)[0], f"--to {to}"
    else:
        name, host, named_by = rule.target + reference.name[len(rule.source) :], rule.host, f"{rule.place}"
    text = name + (f":{reference.tag}" if reference.tag else "") + (f"@{reference.digest}" if reference.digest else "")
    try:
        target = Reference.parse(text, default_tag=None)
    except UsageError as exc:
        raise UsageError(f"{reference}: its target {text!r} ({named_by}) is not a valid reference ({exc})") from exc
    if target.registry != host or "/" not in name:
        # [RESTORE-2] never another registry than the one named (Docker Hub least of all)
        raise UsageError(
            f"{reference}: {named_by} sends it to {text!r}, which has no repository on {host} "
            f"(it would go to {target.registry}/{target.repository}); name the target repository"
        )
    return target


# -- results -----------------------------------------------------------------------------------


@attrs.frozen
class RestoredImage:
    """[RESTORE-6] One image of the bundle in one target repository: pushed, or failed.

    ``sources`` are the bundle's names of the image that lead to this repository (a tag
    each), ``digest`` the root's digest, ``outcome`` the push's result or its failure.
    """

    sources: tuple[Reference, ...]
    digest: Digest
    outcome: PushOutcome

    @property
    def source(self) -> Reference:
        """The first of the bundle's names for the image."""
        return self.sources[0]

    @property
    def target(self) -> Reference:
        """The repository, with its first tag, or the digest when there is no tag."""
        tags = self.outcome.tags
        tag = tags[0] if tags else None
        return Reference(self.outcome.registry, self.outcome.repository, tag, None if tag else self.digest)

    @property
    def ok(self) -> bool:
        """Whether the push to this repository succeeded."""
        return isinstance(self.outcome, PushResult)

    def summary(self) -> str:
        """One line: source, target, digest, and what was done (or the error)."""
        head = f"{self.source} -> {self.target} ({self.digest.short})"
        outcome = self.outcome
        if isinstance(outcome, PushFailure):
            return f"{head}: failed: {outcome.error}"
        verbs = ("would upload", "would mount", "would skip") if outcome.dry_run else ("uploaded", "mounted", "skipped")
        counts = (outcome.count(BlobAction.UPLOAD) + outcome.count(BlobAction.COPY), outcome.count(BlobAction.MOUNT))
        manifests = outcome.manifests_pushed  # the root included, in a dry run too ([RESTORE-7])
        pushed = f"would push {manifests} manifest(s)" if outcome.dry_run else f"{manifests} manifest(s) pushed"
        line = (
            f"{head}: {verbs[0]} {counts[0]} blob(s) ({outcome.bytes_uploaded} bytes), "
            f"{verbs[1]} {counts[1]}, {verbs[2]} {outcome.count(BlobAction.SKIP)}; "
            f"{pushed}, {outcome.referrers_pushed} referrer(s)"
        )
        tags = ", ".join(outcome.tags)
        return line + (f"; tagged {tags}" if tags and not outcome.dry_run else "")

    def to_json(self) -> dict[str, Any]:
        """As ``--json`` lists it: ``push --json``'s ``pushed`` (or ``errors``) entry, plus the
        ``source`` and ``target`` names."""
        body = self.outcome.to_json()
        body.setdefault("digest", str(self.digest))
        return {
            "source": str(self.source),
            "sources": [str(s) for s in self.sources],
            "target": str(self.target),
            "status": "pushed" if self.ok else "failed",
            **body,
        }


@attrs.frozen
class RestoreResult:
    """What :func:`restore` did: one :class:`RestoredImage` per image and repository, notes.

    A result with failures is only ever seen through :func:`partial_restore` ([RESTORE-6]).
    """

    bundle: str
    to: str
    images: tuple[RestoredImage, ...]
    notes: tuple[str, ...] = ()
    dry_run: bool = False

    @property
    def pushed(self) -> tuple[PushResult, ...]:
        """The pushes that succeeded, in bundle order."""
        return tuple(i.outcome for i in self.images if isinstance(i.outcome, PushResult))

    @property
    def failed(self) -> tuple[PushFailure, ...]:
        """The pushes that failed, in bundle order."""
        return tuple(i.outcome for i in self.images if isinstance(i.outcome, PushFailure))

    def count(self, action: BlobAction) -> int:
        """Blobs handled by ``action``, over every repository (a blob counts once per repository)."""
        return sum(p.count(action) for p in self.pushed)

    @property
    def uploaded(self) -> int:
        """Blobs sent: uploads from the bundle (and copies, which a bundle never needs)."""
        return self.count(BlobAction.UPLOAD) + self.count(BlobAction.COPY)

    @property
    def mounted(self) -> int:
        """Blobs mounted from another repository of the same registry ([RESTORE-3])."""
        return self.count(BlobAction.MOUNT)

    @property
    def skipped(self) -> int:
        """Blobs the target repositories held already ([RESTORE-5])."""
        return self.count(BlobAction.SKIP)

    @property
    def bytes_uploaded(self) -> int:
        """Bytes sent, over every repository."""
        return sum(p.bytes_uploaded for p in self.pushed)

    @property
    def referrers(self) -> int:
        """Referrers put (in a dry run: that would be), over every repository."""
        return sum(p.referrers_pushed for p in self.pushed)

    def summary_lines(self) -> tuple[str, ...]:
        """One line per image and repository, then one of totals."""
        # the verbs of the per-image lines (RestoredImage.summary), so a plan never reads as done
        verbs = ("would upload", "would mount", "would skip") if self.dry_run else ("uploaded", "mounted", "skipped")
        total = (
            f"{len(self.pushed)} of {len(self.images)} image(s) {'planned' if self.dry_run else 'restored'}: "
            f"{verbs[0]} {self.uploaded} blob(s) ({self.bytes_uploaded} bytes), {verbs[1]} {self.mounted}, "
            f"{verbs[2]} {self.skipped}; {self.referrers} referrer(s)"
        )
        return (*(i.summary() for i in self.images), total)

    def to_json(self) -> dict[str, Any]:
        """The result as ``--json`` prints it; per image ``push --json``'s field names."""
        return {
            "bundle": self.bundle,
            "to": self.to,
            "dryRun": self.dry_run,
            "images": [i.to_json() for i in self.images],
            "blobs": {
                "uploaded": self.count(BlobAction.UPLOAD),
                "copied": self.count(BlobAction.COPY),
                "mounted": self.mounted,
                "skipped": self.skipped,
                "bytesUploaded": self.bytes_uploaded,
            },
            "referrers": self.referrers,
            "pushed": [p.to_json() for p in self.pushed],
            "errors": [f.to_json() for f in self.failed],
            "notes": list(self.notes),
        }


def partial_restore(error: BaseException) -> RestoreResult | None:
    """[RESTORE-6] The whole result a failed :func:`restore` had reached, if any; else None."""
    found = getattr(error, _PARTIAL, None)
    return found if isinstance(found, RestoreResult) else None


def _raise_failures(result: RestoreResult) -> None:
    """[RESTORE-6] Raise the first failure of ``result``, carrying ``result``."""
    if result.failed:
        error = result.failed[0].error
        setattr(error, _PARTIAL, result)  # read back by partial_restore
        raise error


# -- the restore -------------------------------------------------------------------------------


@attrs.frozen
class _Planned:
    """One image of the bundle: its root, its names, and where each name goes."""

    root: Root
    sources: tuple[Reference, ...]
    targets: tuple[Reference, ...]


def _names(root: Root) -> tuple[Reference, ...]:
    """[RESTORE-8] The image's full references among its names (containerd's, then ``ref.name``):
    those of the form ``HOST/PATH[:TAG][@DIGEST]`` that parse; a bare tag or a source's text
    (``oci-archive:app.tar``) is none."""
    descriptor = root.descriptor
    out: list[Reference] = []
    for text in (descriptor.annotation(CONTAINERD_NAME), descriptor.annotation(REF_NAME)):
        if not text or "/" not in text or not _looks_like_host(text.split("/", 1)[0]):
            continue
        try:
            reference = Reference.parse(text, default_tag=None)
        except UsageError:
            continue
        if reference not in out:
            out.append(reference)
    return tuple(out)


def _plan(roots: Sequence[Root], to: str, mapping: RestoreMap | None) -> tuple[list[_Planned], list[str]]:
    """[RESTORE-1][RESTORE-8] Every named root, entries of one digest merged, with its
    targets; notes for the entries skipped. Raises UsageError before anything is read."""
    by_digest: dict[Digest, _Planned] = {}
    notes: list[str] = []
    for root in roots:
        names = _names(root)
        digest = root.descriptor.digest
        if not names:
            shown = f" (named {root.names[-1]!r}, not a full reference)" if root.names else ""
            notes.append(f"{root.label}: entry {digest.short}{shown} has no image name; skipped")
            continue
        for name in names:
            if name.digest is not None and name.digest != digest:
                raise UsageError(f"{root.label}: the name {name} pins another digest than its entry's {digest}")
        targets = tuple(target_for(n, to, mapping) for n in names)
        planned = by_digest.get(digest)
        if planned is None:
            by_digest[digest] = _Planned(root, names, targets)
        else:  # one image under several names: one push, every tag
            by_digest[digest] = _Planned(planned.root, (*planned.sources, *names), (*planned.targets, *targets))
    _refuse_collisions(by_digest.values())
    return list(by_digest.values()), notes


def _refuse_collisions(plan: Iterable[_Planned]) -> None:
    """[RESTORE-1] Two different images may not land on one target tag: the second would move
    the first's tag. Dropping the source registry makes ``a.io/app:1`` and ``b.io/app:1`` one
    name under ``--to``; a map file has to tell them apart."""
    taken: dict[str, tuple[Reference, Digest]] = {}
    for planned in plan:
        digest = planned.root.descriptor.digest
        for source, target in zip(planned.sources, planned.targets, strict=True):
            key = str(target)
            other, held = taken.setdefault(key, (source, digest))
            if held != digest:  # the same image under two names may share a target: one push
                raise UsageError(
                    f"{other} and {source} would both be restored as {key}; send one elsewhere with --map FILE "
                    "(lines 'SOURCE TARGET')"
                )


def _with_origins(publication: Publication, host: str, known: dict[Digest, str], hint: str | None) -> Publication:
    """[RESTORE-3] The publication whose blobs name where ``host`` holds them: the repository an
    earlier image of this restore put them in, else ``hint`` (an earlier restore's repository)."""
    blobs = []
    for blob in publication.blobs:
        repository = known.get(blob.digest, hint)
        blobs.append(attrs.evolve(blob, origin=BlobOrigin(host, repository)) if repository else blob)
    return attrs.evolve(publication, blobs=tuple(blobs))


def _outcomes(
    planned: _Planned, loaded: ImageSet, pool: RegistryPool, options: PushOptions, state: _State
) -> list[RestoredImage]:
    """[RESTORE-3][RESTORE-4] Push one image to each of its repositories, host by host."""
    out: list[RestoredImage] = []
    digest = planned.root.descriptor.digest
    publication = Publication.of_image_set(loaded)
    hosts = list(dict.fromkeys(t.registry for t in planned.targets))
    for host in hosts:
        targets = tuple(t for t in planned.targets if t.registry == host)
        hint = _hint(state, planned.sources[0], targets[0])
        known = state.known.setdefault(host, {})
        outcomes = RegistrySink(targets, pool, options).publish(_with_origins(publication, host, known, hint))
        for outcome in outcomes:
            if isinstance(outcome, PushResult):  # only a push that succeeded is a mount source
                for plan in outcome.blobs:
                    if plan.action is not BlobAction.FOREIGN:
                        known.setdefault(plan.digest, outcome.repository)
            sources = tuple(
                s
                for s, t in zip(planned.sources, planned.targets, strict=True)
                if (t.registry, t.repository) == (outcome.registry, outcome.repository)
            )
            out.append(RestoredImage(sources, digest, outcome))
    return out


@attrs.define
class _State:
    """[RESTORE-3] What the restore knows across images: ``--to``'s prefix, per host which
    repository holds each blob, and the prefix of an earlier restore to mount from."""

    to: str
    hint: str | None
    known: dict[str, dict[Digest, str]] = attrs.field(factory=dict)


def _hint(state: _State, source: Reference, target: Reference) -> str | None:
    """[RESTORE-3] The repository under ``--mount-from`` where an earlier restore put the image
    now going to ``target``: the same path relative to the prefix, so a map rule that sends an
    image elsewhere under ``--to`` is followed too; for a target outside ``--to`` (mapped to
    another prefix) the source's repository path, where a restore without the map put it."""
    if state.hint is None:
        return None
    host, _, hint_path = state.hint.partition("/")
    if host != target.registry:
        return None
    under = state.to + "/"
    relative = target.name[len(under) :] if target.name.startswith(under) else source.repository
    return f"{hint_path}/{relative}" if hint_path else relative


def _failed(planned: _Planned, error: OcimergeError) -> list[RestoredImage]:
    """[RESTORE-6] An image that could not be read: a failure for each of its repositories."""
    digest = planned.root.descriptor.digest
    repositories: dict[tuple[str, str], list[Reference]] = {}
    tags: dict[tuple[str, str], list[str]] = {}
    for source, target in zip(planned.sources, planned.targets, strict=True):
        key = (target.registry, target.repository)
        repositories.setdefault(key, []).append(source)
        if target.tag:
            tags.setdefault(key, []).append(target.tag)
    return [
        RestoredImage(tuple(sources), digest, PushFailure(key[0], key[1], tuple(tags.get(key, ())), error))
        for key, sources in repositories.items()
    ]


def _load(source: Source, plan: Sequence[_Planned], walk: Walk) -> list[ImageSet | OcimergeError]:
    """Each image of ``plan`` read (documents only: layers are read as they are pushed)."""
    loaded: list[ImageSet | OcimergeError] = []
    for planned in plan:
        try:
            loaded.append(load_root(source, planned.root, walk))
        except InputError as exc:  # [RESTORE-6] a broken image fails alone
            loaded.append(exc)
    return loaded


def restore(  # noqa: PLR0913 - the options value, and the walk's, signature check's and mount's settings by name
    bundle: str,
    to: str,
    *,
    mapping: RestoreMap | None = None,
    options: PushOptions | None = None,
    referrers: bool = True,
    referrer_types: Sequence[str] = (),
    require_signature: PublicKey | None = None,
    key_name: str = "the key",
    mount_from: str | None = None,
) -> RestoreResult:
    """Push every image of ``bundle`` (an OCI layout directory or tar) under ``to``.

    ``to`` is ``REGISTRY[/PREFIX]``; each image goes to :func:`target_for` of its name
    ([RESTORE-1]), or where ``mapping`` says ([RESTORE-2]), with its tags and (``referrers``)
    its signatures and other referrers (``referrer_types``: only those artifact types),
    digests byte for byte. Blobs shared between images are uploaded once per registry and
    mounted into the other repositories ([RESTORE-3]);
    ``mount_from`` (``REGISTRY/PREFIX`` of an earlier restore of the same bundle) mounts from
    the repository of the same path under that prefix too (a mapped image's path relative
    to ``to`` when its map target lies under ``to``). Images go one after another, each tagged
    last ([RESTORE-4]); run again, a restore uploads only what is missing ([RESTORE-5]).
    ``options.dry_run`` plans without writing, mounts included ([RESTORE-7]).
    ``require_signature`` refuses (``SignatureError``) before anything is uploaded unless
    every image carries a valid cosign signature by that key ([SIGNED-2]); with
    ``referrer_types``, cosign's signatures are looked for (and carried) as well, as by
    :func:`ocimerge.operations.push`.

    Raises ``UsageError`` for a bad ``to``, map, name or bundle, before anything is read
    from the registry. [RESTORE-6] An image that fails does not stop the others: once every
    image was tried the first failure is raised, and :func:`partial_restore` of it is the
    whole result.
    """
    opts = options if options is not None else PushOptions()
    walk = signature_walk(referrers, referrer_types, signed=require_signature is not None)
    prefix = _prefix(to, "--to")
    hint = _prefix(mount_from, "--mount-from") if mount_from is not None else None
    spec = as_spec(bundle)
    if spec.reference is not None:
        raise UsageError(f"{bundle}: a bundle is a local OCI layout (a directory or a tar), not a registry image")
    with open_source(spec) as source:
        plan, notes = _plan(source.roots(), to, mapping)
        if not plan:
            raise UsageError(f"{bundle}: no image with a full reference name in the bundle; nothing to restore")
        hosts = frozenset(t.registry for p in plan for t in p.targets)
        if opts.registry.explicit_hosts is None:  # [CRED-4] explicit credentials are the targets'
            opts = attrs.evolve(opts, registry=attrs.evolve(opts.registry, explicit_hosts=hosts))
        loaded = _load(source, plan, walk)
        if require_signature is not None:
            for found in loaded:
                if isinstance(found, ImageSet):
                    require_signed(found, require_signature, key_name)  # before any blob moves
        images: list[RestoredImage] = []
        state = _State(prefix, hint)
        with RegistryPool(opts.registry) as pool:
            for planned, found in zip(plan, loaded, strict=True):
                if isinstance(found, OcimergeError):
                    images += _failed(planned, found)
                    continue
                notes.extend(f"{found.source}: {n}" for n in found.notes)
                images += _outcomes(planned, found, pool, opts, state)
    notes += [
        f"{p.registry}/{p.repository}: {n}" for i in images if isinstance(p := i.outcome, PushResult) for n in p.notes
    ]
    result = RestoreResult(bundle, to, tuple(images), tuple(notes), opts.dry_run)
    _raise_failures(result)
    return result
