"""The HTTP side: a threading standard-library server on 127.0.0.1 that speaks HTTP/1.1 ([TESTREG-1]).

Each request is read into a :class:`~ocimerge.testing.exchange.Request` (its body streamed,
``Content-Length`` or chunked), met by any armed fault ([TESTREG-8]) and the ``max_request``
limit ([TESTREG-7]), answered by :class:`~ocimerge.testing.routes.Routes`, and logged as
``(method, path with query, status)``. A body the route did not read is drained before the
answer goes, so the connection stays usable (one over 256 MiB closes it instead). Every
answer carries ``Docker-Distribution-API-Version: registry/2.0``, as Distribution's do.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ocimerge.testing.behaviour import Drop, Failure, Faults
from ocimerge.testing.exchange import PIECE, Answer, Body, Refusal, Request
from ocimerge.testing.routes import Routes

__all__ = ["HTTPServer"]

DRAIN_LIMIT = 256 * 1024 * 1024
#: what Go's net/http answers a plain HTTP request on a TLS port (ocimerge's message recognises it)
PLAIN_HTTP_TO_TLS = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
_FAULT_CODES = {401: "UNAUTHORIZED", 403: "DENIED", 404: "NAME_UNKNOWN", 413: "SIZE_INVALID", 429: "TOOMANYREQUESTS"}


class _Dropped(Exception):  # noqa: N818 - a fault doing its job
    """A :class:`Drop` fault read its bytes: close the connection, answer nothing."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, routes: Routes, faults: Faults, tls: ssl.SSLContext | None) -> None:
        self.routes = routes
        self.faults = faults
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.log: list[tuple[str, str, int]] = []
        self.token_log: list[tuple[str, str, int]] = []
        self.log_lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        super().__init__(("127.0.0.1", 0), _Handler, bind_and_activate=False)

    def server_bind(self) -> None:
        # not HTTPServer's: its socket.getfqdn() would ask DNS about 127.0.0.1
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's own thread: the TLS handshake (a slow client never blocks
        accept()), or Go's plain-text 400 to a plain HTTP request on the TLS port."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            first = request.recv(1, socket.MSG_PEEK)
            if first.isalpha():  # "GET /v2/ HTTP/1.1": not a TLS record
                request.sendall(PLAIN_HTTP_TO_TLS)
                return
            secured = self.tls.wrap_socket(request, server_side=True)
        except OSError:
            return  # ssl.SSLError included: a client that does not finish the handshake
        try:
            super().finish_request(secured, client_address)
        finally:
            with contextlib.suppress(OSError):
                secured.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that goes away (or stop() closing its connection) is no error of ours

    def record(self, method: str, target: str, status: int) -> None:
        with self.log_lock:
            # the token endpoint's requests apart: Distribution's log never has its token service's
            kept = self.token_log if urlsplit(target).path == "/token" else self.log
            kept.append((method, target, status))

    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server_address[1]}"


def _budget(read: Callable[[int], bytes], nbytes: int) -> tuple[Callable[[int], bytes], Callable[[], int]]:
    """A reader that gives ``nbytes`` in all, then raises :class:`_Dropped`; and what is left of it."""
    left = [nbytes]

    def limited(size: int) -> bytes:
        if left[0] <= 0:
            raise _Dropped
        data = read(min(size, left[0]))
        left[0] -= len(data)
        return data

    return limited, lambda: left[0]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are logged as (method, path, status) instead

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the client went away, or a fault closed the connection
            super().finish()

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _length(self) -> int | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return None
        length = self.headers.get("Content-Length") or "0"
        return int(length) if length.isdigit() else 0

    def _handle(self) -> None:
        fault = self.server.faults.take(self.command, self.path)
        read: Callable[[int], bytes] = self.rfile.read
        left: Callable[[], int] = lambda: 0  # noqa: E731 - a default for the Drop case's counter
        if isinstance(fault, Drop):
            read, left = _budget(self.rfile.read, fault.nbytes)
        body = Body(read, self.rfile.readline, self._length())
        split = urlsplit(self.path)
        query = {k: tuple(v) for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        headers: dict[str, str] = {}
        for key, value in self.headers.items():  # a repeated header (Go sends Accept so) joins with ", "
            name = key.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        request = Request(self.command, self.path, split.path, query, headers, body, self._base(headers))
        try:
            answer = self._answer(request, fault)
            if isinstance(fault, Drop):
                while left() > 0 and body.length != 0 and not body.finished:
                    body.drain()  # read up to the fault's bytes, then drop
                raise _Dropped
            self._finish_body(body)
        except (_Dropped, ConnectionError, OSError):
            self._drop()
            return
        # logged before it is written: a client that has its answer finds the request logged
        self.server.record(self.command, self.path, answer.status)
        self._write(answer)

    def _base(self, headers: dict[str, str]) -> str:
        """``scheme://host`` as the client addressed us, as Distribution builds its URLs: the
        ``X-Forwarded-Proto``/``X-Forwarded-Host`` of a proxy, else ``Host``, else our address
        (so a proxy in front, the suite's FaultProxy, stays in the path of the upload)."""
        host = (headers.get("x-forwarded-host") or headers.get("host") or "").split(",")[0].strip()
        scheme = (headers.get("x-forwarded-proto") or self.server.scheme).split(",")[0].strip()
        return f"{scheme}://{host}" if host else self.server.base()

    def _answer(self, request: Request, fault: Failure | Drop | None) -> Answer:
        json_errors = self.server.routes.site.behaviour.json_errors
        if isinstance(fault, Failure):
            headers = [("Retry-After", str(fault.retry_after))] if fault.retry_after is not None else []
            code = _FAULT_CODES.get(fault.status, "UNKNOWN")
            return Refusal(fault.status, code, "a fault armed by the test", headers=headers).answer(
                json_errors=json_errors
            )
        try:
            request.body.refuse_over(self.server.routes.site.behaviour.max_request)
            return self.server.routes.answer(request)  # a chunked body is refused when it goes over
        except Refusal as refusal:
            return refusal.answer(json_errors=json_errors)
        except (_Dropped, OSError):
            raise  # the connection's end: dropped, not answered
        except Exception as exc:  # a bug of ours: say so in a 500 rather than cut the connection
            return Refusal(500, "UNKNOWN", f"ocimerge.testing failed: {exc!r}").answer(json_errors=json_errors)

    def _finish_body(self, body: Body) -> None:
        if body.finished:
            return
        if body.length is not None and body.length - body.received > DRAIN_LIMIT:
            self.close_connection = True
            return
        body.drain()

    def _drop(self) -> None:
        self.server.record(self.command, self.path, 0)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _write(self, answer: Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(answer.size))
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            if self.command != "HEAD" and answer.status not in (204, 304):
                self._write_body(answer)
        finally:
            if answer.stream is not None:
                answer.stream.close()

    def _write_body(self, answer: Answer) -> None:
        if answer.stream is None:
            self.wfile.write(answer.content)
            return
        left = answer.size
        while left > 0:
            piece = answer.stream.read(min(PIECE, left))
            if not piece:
                raise ConnectionError("the stored blob is shorter than its size")
            self.wfile.write(piece)
            left -= len(piece)


class HTTPServer:
    """The listening socket and its thread: :meth:`start` binds 127.0.0.1 (``port`` 0 picks one)."""

    def __init__(self, routes: Routes, faults: Faults, tls: tuple[str | Path, str | Path] | None = None) -> None:
        context = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
        self._server = _Server(routes, faults, context)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def scheme(self) -> str:
        return self._server.scheme

    def requests(self) -> list[tuple[str, str, int]]:
        with self._server.log_lock:
            return list(self._server.log)

    def token_requests(self) -> list[tuple[str, str, int]]:
        with self._server.log_lock:
            return list(self._server.token_log)

    def start(self, port: int = 0) -> None:
        server = self._server
        server.server_address = ("127.0.0.1", port)
        server.server_bind()
        server.server_activate()
        self._thread = threading.Thread(target=server.serve_forever, name="ocimerge-testing-registry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close open connections, and wait for the serving thread."""
        self._server.shutdown()
        for connection in list(self._server.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
