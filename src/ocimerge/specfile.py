"""Sources and targets from a template or a spec file ([SPEC-1], [SPEC-2]).

[SPEC-1] ``--template REF --platforms P1,P2`` makes one registry source per platform by
replacing the placeholders ``OS``, ``ARCH`` and ``VARIANT`` (as manifest-tool spells them; an
upper-case run is replaced only when it is made of placeholders, so ``ARCHVARIANT`` works and
``HOST`` stays), each source checked against its platform.
[SPEC-2] ``--spec FILE`` is JSON (YAML would cost a dependency):
``{"image": "REG/REPO:TAG", "tags": ["1.0"], "manifests": [{"image": "SRC", "platform":
{"os": "linux", "architecture": "arm64", "variant": "v8"}}], "annotations": {"k": "v"}}``,
manifest-tool's keys. ``image`` and ``tags`` are the targets; each manifest is a source.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from ocimerge.errors import DocumentError, UsageError
from ocimerge.model.codec import MAX_DOCUMENT_SIZE, decode_json
from ocimerge.model.platform import Platform
from ocimerge.model.reference import Reference

__all__ = ["Plan", "expand_template", "read_spec"]

# [SPEC-1] Placeholders are found as maximal upper-case runs, so "HOST" is one run (kept) and
# not "H" + "OS" + "T". Repository names are lowercase ([REF-4]), so any other upper-case run
# is text the template's author chose (a host, a tag) and is left as written.
_UPPER_RUN = re.compile(r"[A-Z]+")
_PLACEHOLDERS = ("VARIANT", "ARCH", "OS")


def _split_placeholders(run: str) -> list[str] | None:
    """``ARCHVARIANT`` -> [ARCH, VARIANT]; None when the run is not made of placeholders (HOST)."""
    parts: list[str] = []
    while run:
        word = next((p for p in _PLACEHOLDERS if run.startswith(p)), None)
        if word is None:
            return None
        parts.append(word)
        run = run[len(word) :]
    return parts


def _fill(template: str, values: dict[str, str]) -> str:
    """``template`` with every placeholder run replaced from ``values``; other runs kept."""

    def replace(match: re.Match[str]) -> str:
        parts = _split_placeholders(match.group(0))
        return match.group(0) if parts is None else "".join(values[p] for p in parts)

    return _UPPER_RUN.sub(replace, template)


@attrs.frozen
class Plan:
    """What a template or spec file asks for: sources (``SRC=PLATFORM``), targets, annotations.

    Plain strings in command-line form, so the CLI parses them exactly as if typed
    ([SOURCE-2], [INDEX-6]) and a plan adds no second parser with its own errors.

    >>> Plan(("a.tar=linux/amd64",)).targets
    ()
    """

    sources: tuple[str, ...]
    targets: tuple[str, ...] = ()
    annotations: tuple[str, ...] = ()


def expand_template(template: str, platforms: Sequence[Platform]) -> Plan:
    """[SPEC-1] One registry source per platform, ``template`` with its placeholders filled in.

    Each source is ``docker://REF=PLATFORM``: forced to a registry source (a filled-in name
    could look like a path) and checked against its platform ([PLATFORM-5]). A platform
    without a variant fills ``VARIANT`` with nothing. Raises :class:`UsageError` for no
    platforms or a template without any placeholder (it would name one image N times).
    """
    if not platforms:
        raise UsageError("--template needs --platforms, e.g. linux/amd64,linux/arm64")
    if not any(_split_placeholders(m.group(0)) for m in _UPPER_RUN.finditer(template)):
        raise UsageError(f"--template {template!r} has no OS, ARCH or VARIANT placeholder")
    sources = []
    for platform in platforms:
        values = {"OS": platform.os, "ARCH": platform.architecture, "VARIANT": platform.variant}
        reference = _fill(template, values)
        sources.append(f"docker://{reference.removeprefix('docker://')}={platform}")
    return Plan(tuple(sources))


def _platform(value: object, where: str) -> Platform:
    """A manifest's ``platform``: ``os/arch[/variant]`` text or a platform object ([PLATFORM-1])."""
    if isinstance(value, str):
        return Platform.parse(value)
    if isinstance(value, dict):
        return Platform.from_json(value, where=where)
    raise UsageError(f"{where}: 'platform' must be os/arch[/variant] or an object")


def read_spec(path: str) -> Plan:
    """[SPEC-2] Parse the spec file at ``path`` into a :class:`Plan`.

    Sources keep their ``image`` text as given (any source argument, [SOURCE-2]) with
    ``=PLATFORM`` appended when a platform is given; targets are ``image`` and then each of
    ``tags`` on that image's repository; annotations become ``KEY=VALUE`` for the index.
    Raises :class:`UsageError` naming the file (and the field) for a missing or unreadable
    file, invalid JSON, or a field of the wrong shape.
    """
    value = _load_spec(path)
    # Checked in file order (sources, targets, annotations) so the first error reported is
    # the first one a reader of the file meets.
    sources = _spec_sources(value, path)
    targets = _spec_targets(value, path)
    annotations = _spec_annotations(value, path)
    return Plan(sources, targets, annotations)


def _load_spec(path: str) -> dict[str, object]:
    """The spec file's top-level JSON object; UsageError, naming ``path``, otherwise."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_DOCUMENT_SIZE + 1)
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: no such spec file") from exc
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the spec file ({exc.strerror or exc})") from exc
    try:
        # [SEC-7] the project's one strict decoder: size cap, nesting, encodings, duplicate keys
        value = decode_json(raw, where=path)
    except DocumentError as exc:
        raise UsageError(f"not a JSON spec file: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return value


def _spec_sources(value: dict[str, object], path: str) -> tuple[str, ...]:
    """``manifests``: one ``SRC[=PLATFORM]`` source argument per entry, in file order."""
    manifests = value.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise UsageError(f"{path}: 'manifests' must be a non-empty list of {{image, platform}}")
    sources = []
    for i, item in enumerate(manifests):
        where = f"{path}: manifests[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("image"), str):
            raise UsageError(f"{where}: needs an 'image'")
        source = item["image"]
        # The platform becomes [PLATFORM-5]'s =PLATFORM: it selects from a multi-platform
        # source, or asserts what a single-platform one is, exactly as on the command line.
        if item.get("platform") is not None:
            source += f"={_platform(item['platform'], where)}"
        sources.append(source)
    return tuple(sources)


def _spec_targets(value: dict[str, object], path: str) -> tuple[str, ...]:
    """``image`` and ``tags``: the push targets, none when ``image`` is absent."""
    image = value.get("image")
    if image is None:
        return ()  # no targets from the file; the command line's -t may still give some
    if not isinstance(image, str):
        raise UsageError(f"{path}: 'image' must be a reference")
    tags = value.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise UsageError(f"{path}: 'tags' must be a list of tags")
    # manifest-tool's tags are extra tags of the image's repository: parse the image only for
    # its normalised name, so "app:1.0" with tags ["1"] targets docker.io/library/app:1.
    base = Reference.parse(image.removeprefix("docker://"))
    return (image, *(f"{base.name}:{t}" for t in tags))


def _spec_annotations(value: dict[str, object], path: str) -> tuple[str, ...]:
    """``annotations``: index annotations as ``KEY=VALUE`` arguments ([INDEX-6])."""
    annotations = value.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise UsageError(f"{path}: 'annotations' must map keys to strings")
    # Keys are passed through as written; Annotation.parse gives them their scope later.
    return tuple(f"{k}={v}" for k, v in annotations.items())
