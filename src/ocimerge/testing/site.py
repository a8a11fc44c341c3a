"""What every route works with: the storage, the behaviour, the gate, and how to write URLs ([TESTREG-1]).

>>> from ocimerge.testing.auth import Gate
>>> from ocimerge.testing.storage import Storage
>>> site = Site(Storage.memory(), Behaviour(relative_locations=True), Gate(None, lambda: ""))
>>> site.location("http://127.0.0.1:5000", "/v2/app/blobs/uploads/u1?_state=s")
'/v2/app/blobs/uploads/u1?_state=s'
"""

from __future__ import annotations

import re

import attrs

from ocimerge.errors import DocumentError
from ocimerge.model.digest import Digest
from ocimerge.testing.auth import Gate
from ocimerge.testing.behaviour import Behaviour
from ocimerge.testing.exchange import Refusal
from ocimerge.testing.storage import Storage

__all__ = ["Site", "parse_digest"]

#: distribution-spec's repository name grammar
NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)


@attrs.frozen
class Site:
    """The registry's parts that routes share."""

    storage: Storage
    behaviour: Behaviour
    gate: Gate

    def location(self, base: str, path: str) -> str:
        """An upload ``Location``: absolute, or relative with ``relative_locations`` [TESTREG-7]."""
        return path if self.behaviour.relative_locations else base + path


def parse_digest(text: str, code: str = "DIGEST_INVALID") -> Digest:
    """``text`` as a digest, or a 400 refusal with ``code``."""
    try:
        return Digest.parse(text)
    except DocumentError as exc:
        raise Refusal(400, code, "invalid digest", {"digest": text, "reason": str(exc)}) from None
