"""How the test registry behaves: knobs fixed at start ([TESTREG-7]) and faults set at run time ([TESTREG-8]).

:class:`Behaviour` is a frozen value chosen when a :class:`~ocimerge.testing.Registry` is made,
to make it act like a specific registry (no referrers API, a chunk or request limit, no
mounts, relative ``Location`` headers, plain-text error bodies, deletion disabled).
:class:`Faults` is the registry's mutable hook object: a test arms it between requests.

>>> Behaviour(max_chunk=4 * 1024 * 1024).mounts
True
>>> faults = Faults()
>>> faults.fail("PUT", "/manifests/", 503, retry_after=2)
>>> faults.take("PUT", "/v2/app/manifests/latest")
Failure(status=503, retry_after=2)
>>> faults.take("PUT", "/v2/app/manifests/latest") is None
True
"""

from __future__ import annotations

import threading

import attrs

__all__ = ["Behaviour", "Drop", "Failure", "Faults"]


def _positive(_instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value}")


@attrs.frozen
class Behaviour:
    """[TESTREG-7] The knobs that make the registry act like a specific one.

    ``referrers``: serve the referrers API and answer ``OCI-Subject`` (False: 404, as
    Distribution 2.8). ``mounts``: honour ``?mount=&from=`` (False: always a session, 202).
    ``max_chunk``: a PATCH body over it is refused with 413. ``max_request``: any request
    body over it is refused with 413. ``chunk_min_length``: announced as
    ``OCI-Chunk-Min-Length`` on upload sessions. ``relative_locations``: upload ``Location``
    headers without scheme and host (Distribution's ``http.relativeurls``). ``json_errors``:
    False gives plain-text error bodies (Docker Hub's 429 page). ``deletion``: False answers
    every DELETE with 405 ``UNSUPPORTED`` (Distribution without ``storage.delete``).
    """

    referrers: bool = True
    mounts: bool = True
    max_chunk: int | None = attrs.field(default=None, validator=_positive)
    max_request: int | None = attrs.field(default=None, validator=_positive)
    chunk_min_length: int | None = attrs.field(default=None, validator=_positive)
    relative_locations: bool = False
    json_errors: bool = True
    deletion: bool = True


@attrs.frozen
class Failure:
    """A request to refuse with ``status`` (and ``Retry-After`` when set)."""

    status: int
    retry_after: int | None = None


@attrs.frozen
class Drop:
    """A request whose connection is closed after ``nbytes`` of its body, unanswered."""

    nbytes: int


@attrs.define
class _Rule:
    method: str
    path_contains: str
    action: Failure | Drop
    times: int

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and self.method.upper() == method and self.path_contains in path


class Faults:
    """[TESTREG-8] Faults a test arms on a running registry; each fires ``times`` times, then is spent.

    Rules are checked in the order they were armed, before authentication and routing, so a
    fault hits the request whatever it would otherwise have got. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._nth: list[tuple[int, Failure]] = []
        self._seen = 0

    def fail(
        self, method: str, path_contains: str, status: int, times: int = 1, retry_after: int | None = None
    ) -> None:
        """Answer the next ``times`` requests ``method`` whose path (with query) contains
        ``path_contains`` with ``status`` and an error body (``Retry-After`` when given)."""
        with self._lock:
            self._rules.append(_Rule(method, path_contains, Failure(status, retry_after), times))

    def drop_after(self, method: str, path_contains: str, nbytes: int, times: int = 1) -> None:
        """For the next ``times`` matching requests, read ``nbytes`` of the body (fewer when
        it is shorter), then close the connection without an answer."""
        with self._lock:
            self._rules.append(_Rule(method, path_contains, Drop(nbytes), times))

    def fail_nth(self, n: int, status: int) -> None:
        """Answer the ``n``-th request from now (1 is the next one), whatever it is, with ``status``."""
        if n < 1:
            raise ValueError(f"n counts from 1, not {n}")
        with self._lock:
            self._nth.append((self._seen + n, Failure(status)))

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._rules.clear()
            self._nth.clear()

    def take(self, method: str, path: str) -> Failure | Drop | None:
        """The fault this request meets, if any, spending one of its times (the server calls it once per request)."""
        with self._lock:
            self._seen += 1
            for i, (when, failure) in enumerate(self._nth):
                if when == self._seen:
                    del self._nth[i]
                    return failure
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.times -= 1
                    return rule.action
            return None
