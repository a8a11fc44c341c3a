"""JSON in and out: a strict I-JSON decoder and the one canonical encoder ([JSON-1] .. [JSON-3])."""

from __future__ import annotations

import json
import re
from typing import Any

from ocimerge.errors import DocumentError

__all__ = ["MAX_DEPTH", "MAX_DOCUMENT_SIZE", "decode_json", "encode_json"]

#: [JSON-3] Manifests, indexes and configs larger than this are refused (4 MiB, as
#: Distribution and containerd cap manifests).
MAX_DOCUMENT_SIZE = 4 * 1024 * 1024

#: [SEC-7] [JSON-4] Deepest nesting of arrays and objects decoded. Real documents nest four
#: or five levels; Python's decoder raises RecursionError near 1000 and can overflow the C
#: stack on deeper input, so nesting is measured before the decoder ever sees it.
MAX_DEPTH = 64

# A backslash escape: removed first, so every quote left delimits a string ([JSON-4]).
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
# Every byte that is not a bracket: deleted, so only the nesting structure is left to walk.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# Objects as arrays: only the nesting matters here, and one kind keeps each round exact.
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
# A \u escape of a surrogate: only these can decode to an unpaired one ([SEC-7]).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member name {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether arrays and objects in ``raw`` nest deeper than ``limit`` (strings skipped).

    Linear passes in C: escapes are cut out, then strings (every other piece between
    quotes, since brackets inside strings are text), then every byte but a bracket. Each
    round then removes every innermost pair (objects read as arrays), which lowers the depth by
    exactly one, so the brackets are gone after ``limit`` rounds unless they nest deeper.
    A round that removes nothing means unbalanced brackets: invalid JSON, which the decoder
    reports (its own recursion limit bounds it).
    """
    outside = b"".join(_ESCAPE.sub(b"", raw).split(b'"')[::2])
    # one bracket kind: bytes.replace then removes exactly the innermost level per round
    brackets = outside.translate(_ONE_KIND, _NOT_BRACKETS)
    for _ in range(limit):
        fewer = brackets.replace(b"[]", b"")
        if not fewer or len(fewer) == len(brackets):
            return False
        brackets = fewer
    return True


def _has_surrogate(value: Any) -> bool:
    """Whether any string (member name or value) in decoded ``value`` holds a surrogate code point.

    The decoder joins escaped pairs into one character, so any surrogate left is unpaired.
    Recursion is bounded: the document was checked against :data:`MAX_DEPTH` first.
    """
    if isinstance(value, str):
        return bool(_SURROGATE.search(value))
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def decode_json(raw: bytes, *, where: str) -> Any:
    """[JSON-1] Decode UTF-8 I-JSON (RFC 7493): no duplicate names, no NaN or Infinity.

    [JSON-4] [SEC-7] Also refused: nesting deeper than :data:`MAX_DEPTH` and unpaired
    surrogates (``"\\ud800"``). This is the one decoder for every document read from
    outside; whatever is wrong, it raises a :class:`DocumentError` whose one-line message
    starts with ``where`` (the file or blob), never another exception.
    """
    if len(raw) > MAX_DOCUMENT_SIZE:
        raise DocumentError(f"{where}: document is {len(raw)} bytes, over the {MAX_DOCUMENT_SIZE}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if _depth_exceeds(raw, MAX_DEPTH):
        raise DocumentError(f"{where}: invalid JSON (nested deeper than {MAX_DEPTH} levels)")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        # RecursionError only if unbalanced brackets hid the depth from _depth_exceeds
        raise DocumentError(f"{where}: invalid JSON ({exc})") from None
    if _SURROGATE_ESCAPE.search(text) and _has_surrogate(value):
        raise DocumentError(f"{where}: invalid JSON (unpaired UTF-16 surrogate escape)")
    return value


def encode_json(value: Any) -> bytes:
    """[JSON-2] The canonical encoding of documents ocimerge authors.

    Compact separators, keys in the order the caller built them (image-spec struct order),
    UTF-8 without ASCII escaping, no NaN. The same value always gives the same bytes, so an
    index built twice from the same inputs has the same digest.

    >>> encode_json({"schemaVersion": 2, "manifests": []})
    b'{"schemaVersion":2,"manifests":[]}'
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
