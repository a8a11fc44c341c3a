"""One request and its answer, as the routes see them, apart from the HTTP server ([TESTREG-1]).

:class:`Request` carries the method, path, query, headers and a :class:`Body` read in pieces
of at most 64 KiB; :class:`Answer` a status, headers and a body given whole (small JSON) or as
a stream with its length (blobs). :class:`Refusal` is raised by a route to answer an error in
the distribution-spec shape, ``{"errors": [{"code", "message", "detail"}]}`` ([TESTREG-9]).

>>> refusal = Refusal(404, "BLOB_UNKNOWN", "blob unknown to registry", {"digest": "sha256:..."})
>>> refusal.body(json_errors=True)
b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":{"digest":"sha256:..."}}]}\\n'
>>> refusal.body(json_errors=False)
b'404 BLOB_UNKNOWN: blob unknown to registry\\n'
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO

import attrs

__all__ = ["PIECE", "Answer", "Body", "Refusal", "Request"]


def _compact(value: Any) -> bytes:
    """JSON as Distribution (Go's encoder) writes it: no spaces, a newline at the end."""
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


#: the size of the pieces bodies are read and written in: no blob is ever held whole
PIECE = 64 * 1024


class Body:
    """A request body, read in pieces: ``Content-Length`` bytes, or HTTP/1.1 chunked coding.

    ``read`` is the server's reader of the connection (it may raise to drop the connection
    part-way, [TESTREG-8]). ``length`` is None for a chunked body. Reading is stateful, so a
    body refused part-way can still be drained.
    """

    def __init__(self, read: Callable[[int], bytes], readline: Callable[[], bytes], length: int | None) -> None:
        self._read = read
        self._readline = readline
        self.length = length
        self.received = 0  # bytes handed out by pieces()
        self._taken = 0  # bytes taken off the connection (a refused piece included)
        self._chunk_left = 0
        self._chunks = 0
        self.finished = length == 0
        #: a body longer than this is refused with 413 as it streams ([TESTREG-7] ``max_chunk``, ``max_request``)
        self.limit: int | None = None

    def refuse_over(self, limit: int | None) -> None:
        """Refuse (413) a body over ``limit``: at once when its length says so, else when it gets there."""
        if limit is None:
            return
        self.limit = limit if self.limit is None else min(self.limit, limit)
        if self.length is not None and self.length > self.limit:
            raise Refusal(413, "SIZE_INVALID", f"the body of {self.length} bytes is over the limit of {self.limit}")

    def pieces(self) -> Iterator[bytes]:
        """The body's bytes in pieces of at most :data:`PIECE`; a short body raises ``ConnectionError``."""
        while piece := self._next():
            if self.limit is not None and self.received + len(piece) > self.limit:
                raise Refusal(413, "SIZE_INVALID", f"the body is over the limit of {self.limit} bytes")
            self.received += len(piece)
            yield piece

    def _next(self) -> bytes:
        """The next piece off the connection; ``b""`` at the end of the body."""
        if self.finished:
            return b""
        if self.length is not None:
            want = min(PIECE, self.length - self._taken)
        else:
            if self._chunk_left == 0 and not self._next_chunk():
                self.finished = True
                return b""
            want = min(PIECE, self._chunk_left)
        piece = self._read(want)
        if not piece:
            raise ConnectionError(f"the body ended after {self._taken} bytes")
        self._taken += len(piece)
        self._chunk_left = max(0, self._chunk_left - len(piece))
        if self.length is not None and self._taken >= self.length:
            self.finished = True
        return piece

    def _next_chunk(self) -> bool:
        """Read a chunk's size line (after the previous chunk's CRLF); False at the last chunk."""
        if self._chunks:
            self._readline()
        self._chunks += 1
        line = self._readline().split(b";")[0].strip()
        if not line:
            raise ConnectionError("a chunked body ended without its last chunk")
        self._chunk_left = int(line, 16)
        if self._chunk_left == 0:
            while self._readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return False
        return True

    def read_all(self, limit: int) -> bytes | None:
        """The whole body when it is at most ``limit`` bytes, else None (the rest is drained)."""
        out = bytearray()
        for piece in self.pieces():
            if len(out) + len(piece) > limit:
                self.drain()
                return None
            out += piece
        return bytes(out)

    def drain(self) -> None:
        """Read and drop what is left, so the connection can carry the next request."""
        while self._next():
            pass


@attrs.frozen
class Request:
    """A request as the routes see it: ``target`` is the path with its query, as sent."""

    method: str
    target: str
    path: str
    query: Mapping[str, tuple[str, ...]]
    headers: Mapping[str, str]  # lower-case names
    body: Body
    base: str  # scheme://host[:port] the client addressed, for absolute Location headers

    def param(self, name: str) -> str | None:
        """The first value of query parameter ``name``, or None."""
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@attrs.define
class Answer:
    """A status, headers and a body: ``content`` whole, or ``stream`` of ``length`` bytes."""

    status: int
    headers: list[tuple[str, str]] = attrs.field(factory=list)
    content: bytes = b""
    stream: BinaryIO | None = None
    length: int | None = None

    @classmethod
    def of_json(cls, status: int, value: Any, headers: list[tuple[str, str]] | None = None) -> Answer:
        """A JSON answer (``Content-Type: application/json``)."""
        content = _compact(value)
        return cls(status, [("Content-Type", "application/json"), *(headers or [])], content)

    @property
    def size(self) -> int:
        """The ``Content-Length``: ``length`` when given (a stream, or a HEAD's), else the content's."""
        return len(self.content) if self.length is None else self.length


class Refusal(Exception):  # noqa: N818 - an answer, not an error of ours
    """An error answer: ``status``, one error's ``code``, ``message`` and ``detail``, extra headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        detail: Any = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.headers = headers or []
        self.errors: list[dict[str, Any]] = [{"code": code, "message": message, "detail": detail}]

    @classmethod
    def several(cls, status: int, errors: list[tuple[str, str, Any]]) -> Refusal:
        """One answer carrying several errors (a manifest with several missing blobs)."""
        code, message, detail = errors[0]
        refusal = cls(status, code, message, detail)
        refusal.errors = [{"code": c, "message": m, "detail": d} for c, m, d in errors]
        return refusal

    def body(self, *, json_errors: bool) -> bytes:
        """The distribution-spec error body, or one line of plain text ([TESTREG-7] ``json_errors``)."""
        if json_errors:
            return _compact({"errors": self.errors})
        return f"{self.status} {self.code}: {self.message}\n".encode()

    def answer(self, *, json_errors: bool) -> Answer:
        kind = "application/json" if json_errors else "text/plain; charset=utf-8"
        return Answer(self.status, [("Content-Type", kind), *self.headers], self.body(json_errors=json_errors))
