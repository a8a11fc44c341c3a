"""JSON in and out: a strict I-JSON decoder and the one canonical encoder ([JSON-1] .. [JSON-3])."""

from __future__ import annotations

import json
from typing import Any

from ocimerge.errors import DocumentError

__all__ = ["MAX_DOCUMENT_SIZE", "decode_json", "encode_json"]

#: [JSON-3] Manifests, indexes and configs larger than this are refused (4 MiB, as
#: Distribution and containerd cap manifests).
MAX_DOCUMENT_SIZE = 4 * 1024 * 1024


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member name {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(raw: bytes, *, where: str) -> Any:
    """[JSON-1] Decode UTF-8 I-JSON (RFC 7493): no duplicate names, no NaN or Infinity.

    ``where`` names the file or blob for the one-line error.
    """
    if len(raw) > MAX_DOCUMENT_SIZE:
        raise DocumentError(f"{where}: document is {len(raw)} bytes, over the {MAX_DOCUMENT_SIZE}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except ValueError as exc:
        raise DocumentError(f"{where}: invalid JSON ({exc})") from None


def encode_json(value: Any) -> bytes:
    """[JSON-2] The canonical encoding of documents ocimerge authors.

    Compact separators, keys in the order the caller built them (image-spec struct order),
    UTF-8 without ASCII escaping, no NaN. The same value always gives the same bytes, so an
    index built twice from the same inputs has the same digest.

    >>> encode_json({"schemaVersion": 2, "manifests": []})
    b'{"schemaVersion":2,"manifests":[]}'
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
