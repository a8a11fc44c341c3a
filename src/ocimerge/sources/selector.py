"""Choosing one image in a source that holds several: ``SRC:TAG`` and ``SRC@DIGEST``.

The name matching here is shared by layouts ([LAYOUT-4]) and docker-save archives
([DOCKER-2]), so ``app.tar:1.0`` means the same whichever kind of file ``app.tar`` is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from ocimerge.errors import UsageError
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.reference import Reference

__all__ = ["Selector", "describe_choices", "matches_name"]

# a layout can hold hundreds of tags: an error message lists a screenful, then counts the rest
_MAX_LISTED = 12


@attrs.frozen
class Selector:
    """A tag or a digest naming one entry of a source; both None when none was given."""

    tag: str | None = None
    digest: Digest | None = None

    def __str__(self) -> str:
        """The selector as the user wrote it after ``SRC``: ``@sha256:…``, ``:tag`` or ``""``."""
        if self.digest is not None:
            return f"@{self.digest}"
        return f":{self.tag}" if self.tag else ""


def matches_name(wanted: str, names: Iterable[str]) -> bool:
    """[LAYOUT-3] Whether ``wanted`` names an entry called ``names``.

    A name matches itself; a bare tag matches the tag part of a full name (``1.0`` matches
    ``docker.io/acme/app:1.0``); otherwise both are compared as normalised references, so
    ``app:1.0`` and ``docker.io/library/app:1.0`` name the same image, either way round.
    """
    target = _normalised(wanted) if ":" in wanted or "/" in wanted else None
    for name in names:
        if wanted == name:
            return True
        tail = name.rsplit("/", 1)[-1]
        if ":" not in wanted and "/" not in wanted and ":" in tail and tail.rsplit(":", 1)[1] == wanted:
            return True
        if target is not None and _normalised(name) == target:
            return True
    return False


def _normalised(name: str) -> Reference | None:
    """``name`` as a normalised reference ([REF-2]), or None when it is not a valid one."""
    try:
        return Reference.parse(name)
    except UsageError:
        return None


def describe_choices(entries: Iterable[Descriptor], names: Callable[[Descriptor], tuple[str, ...]]) -> str:
    """``choices: a (sha256:…), b (sha256:…)``, for ambiguity and not-found errors."""
    items: list[str] = []
    for entry in entries:
        label = ", ".join(names(entry)) or "untagged"
        items.append(f"{label} ({entry.digest.short})")
    if not items:
        return "it holds no images"
    more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return "choices: " + "; ".join(items[:_MAX_LISTED]) + more
