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

import json
import re
from collections.abc import Sequence

import attrs

from ocimerge.errors import UsageError
from ocimerge.model.platform import Platform
from ocimerge.model.reference import Reference

__all__ = ["Plan", "expand_template", "read_spec"]

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
    def replace(match: re.Match[str]) -> str:
        parts = _split_placeholders(match.group(0))
        return match.group(0) if parts is None else "".join(values[p] for p in parts)

    return _UPPER_RUN.sub(replace, template)


@attrs.frozen
class Plan:
    """What a template or spec file asks for: sources (``SRC=PLATFORM``), targets, annotations."""

    sources: tuple[str, ...]
    targets: tuple[str, ...] = ()
    annotations: tuple[str, ...] = ()


def expand_template(template: str, platforms: Sequence[Platform]) -> Plan:
    """[SPEC-1] One source per platform, ``TEMPLATE`` with its placeholders filled in."""
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
    if isinstance(value, str):
        return Platform.parse(value)
    if isinstance(value, dict):
        return Platform.from_json(value, where=where)
    raise UsageError(f"{where}: 'platform' must be os/arch[/variant] or an object")


def read_spec(path: str) -> Plan:
    """[SPEC-2] Parse a spec file; errors name the file and the field."""
    try:
        with open(path, "rb") as f:
            value = json.loads(f.read())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such spec file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a JSON spec file ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path}: expected a JSON object")
    manifests = value.get("manifests")
    if not isinstance(manifests, list) or not manifests:
        raise UsageError(f"{path}: 'manifests' must be a non-empty list of {{image, platform}}")
    sources = []
    for i, item in enumerate(manifests):
        where = f"{path}: manifests[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("image"), str):
            raise UsageError(f"{where}: needs an 'image'")
        source = item["image"]
        if item.get("platform") is not None:
            source += f"={_platform(item['platform'], where)}"
        sources.append(source)
    targets: list[str] = []
    image = value.get("image")
    if image is not None:
        if not isinstance(image, str):
            raise UsageError(f"{path}: 'image' must be a reference")
        targets.append(image)
        tags = value.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise UsageError(f"{path}: 'tags' must be a list of tags")
        base = Reference.parse(image.removeprefix("docker://"))
        targets.extend(f"{base.name}:{t}" for t in tags)
    annotations = value.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise UsageError(f"{path}: 'annotations' must map keys to strings")
    return Plan(tuple(sources), tuple(targets), tuple(f"{k}={v}" for k, v in annotations.items()))
