"""[PUSH-5] Ctrl-C and SIGTERM during a push: a notice at once, uploads stopped, no tag, 130/143.

A real Distribution behind a throttling TCP relay in this file (bytes towards the registry
copied at a bounded rate per connection), so uploads are still in flight when the signal comes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import ocimerge
from imagebuilder import Image, oci_layout
from ocimerge.registry.api import Registry
from registries import RegistryServer

#: Bytes a second each relayed connection may send towards the registry.
RATE = 8 * 1024 * 1024
#: One random layer per image: at RATE an upload takes about four seconds.
LAYER = 32 * 1024 * 1024
#: A generous liveness bound from the signal to the process's end (the goal is about two).
LIVENESS = 3.0
NOTICE = re.compile(r"ocimerge: stopping: ([1-3]) uploads? in flight; Ctrl-C again to abort now")


class Relay:
    """127.0.0.1:port to ``upstream``, client-to-server bytes throttled to :data:`RATE` and counted."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sent = 0
        #: set: nothing more is read from clients, so their sends block once the buffers are full
        self.frozen = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sent(self) -> int:
        with self._lock:
            return self._sent

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            threading.Thread(target=self._copy, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._copy, args=(server, client, False), daemon=True).start()

    def _copy(self, source: socket.socket, sink: socket.socket, throttled: bool) -> None:
        started, copied = time.monotonic(), 0
        try:
            while not (throttled and self._frozen()) and (data := source.recv(64 * 1024)):
                sink.sendall(data)
                if throttled:
                    copied += len(data)
                    with self._lock:
                        self._sent += len(data)
                    # sleep until this connection is back under RATE
                    ahead = copied / RATE - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def _frozen(self) -> bool:
        """Wait while frozen (a stalled link); False, so the copy goes on once thawed."""
        while self.frozen.is_set():
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self.frozen.clear()
        self._listener.close()


@pytest.fixture(scope="module")
def big_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three single-image layouts of one random :data:`LAYER`-byte layer each."""
    root = tmp_path_factory.mktemp("big")
    paths = []
    for arch in ("amd64", "arm64", "s390x"):
        image = Image(architecture=arch, layers=[os.urandom(LAYER)], gzip_layers=False)
        paths.append(oci_layout([image]).write_dir(str(root / arch)))
    return paths


@pytest.fixture
def relay(registry: RegistryServer) -> Iterator[Relay]:
    proxy = Relay(registry.host)
    yield proxy
    proxy.close()


def start_push(relay: Relay, inputs: list[str]) -> tuple[subprocess.Popen[str], str]:
    """``ocimerge create --jobs 3 -t RELAY/REPO:1 INPUTS`` started; returns it once bytes flow."""
    repository = f"team/stop-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(
        [sys.executable, "-m", "ocimerge", "create", "--jobs", "3", "-t", f"{relay.host}/{repository}:1", *inputs],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    # the layers are in flight once several MiB went through: the configs are tiny
    while relay.sent < 3 * 1024 * 1024:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no upload started"
        time.sleep(0.05)
    time.sleep(0.3)
    return process, repository


def ended(process: subprocess.Popen[str]) -> tuple[int, str, float]:
    """Wait for ``process``; its exit code, stderr, and seconds from now to its end."""
    signalled = time.monotonic()
    _, stderr = process.communicate(timeout=30)
    return process.returncode, stderr, time.monotonic() - signalled


def assert_untagged(server: RegistryServer, repository: str) -> None:
    with Registry(server.host) as client:
        assert client.manifest_head(ocimerge.Reference.parse(f"{client.host}/{repository}:1")) is None


@pytest.mark.parametrize(
    "case",
    [(signal.SIGINT, 130, "interrupted (SIGINT)"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
    ids=["INT", "TERM"],
)
def test_first_signal_stops_the_push(
    registry: RegistryServer, relay: Relay, big_inputs: list[str], case: tuple[int, int, str]
) -> None:
    """The notice at once, one error line, the signal's code within the bound, and no tag."""
    signum, code, line = case
    process, repository = start_push(relay, big_inputs)
    process.send_signal(signum)
    returncode, stderr, took = ended(process)
    assert returncode == code, stderr
    assert took < LIVENESS, f"{took:.1f}s after the signal\n{stderr}"
    assert NOTICE.search(stderr), stderr
    errors = [x for x in stderr.splitlines() if x.startswith("ocimerge: error:")]
    assert len(errors) == 1, stderr
    assert line in errors[0]
    assert "Traceback" not in stderr
    assert_untagged(registry, repository)


def test_a_stalled_link_still_ends_within_the_bound(
    registry: RegistryServer, relay: Relay, big_inputs: list[str]
) -> None:
    """Uploads blocked in a socket write never see the stop flag: the CLI exits without them."""
    process, repository = start_push(relay, big_inputs)
    relay.frozen.set()
    time.sleep(0.5)  # the senders fill the socket buffers and block
    process.send_signal(signal.SIGINT)
    returncode, stderr, took = ended(process)
    assert returncode == 130, stderr
    assert took < LIVENESS, f"{took:.1f}s after the signal\n{stderr}"
    assert NOTICE.search(stderr), stderr
    assert "Traceback" not in stderr
    relay.frozen.clear()
    assert_untagged(registry, repository)


def test_second_sigint_aborts_at_once(registry: RegistryServer, relay: Relay, big_inputs: list[str]) -> None:
    """While the first Ctrl-C waits for stalled uploads, a second one ends the process at once."""
    process, repository = start_push(relay, big_inputs)
    relay.frozen.set()
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)  # within the push's grace period: the first interrupt is still stopping
    process.send_signal(signal.SIGINT)
    returncode, stderr, took = ended(process)
    assert returncode == 130, stderr
    assert took < 1.0, f"{took:.1f}s after the second signal\n{stderr}"
    assert NOTICE.search(stderr), stderr
    assert stderr.rstrip().endswith("ocimerge: error: aborted"), stderr
    relay.frozen.clear()
    assert_untagged(registry, repository)


def test_library_callers_get_keyboard_interrupt(registry: RegistryServer, relay: Relay, big_inputs: list[str]) -> None:
    """[PUSH-5] In-process: the push stops its threads, then re-raises the interrupt; no tag."""
    repository = f"team/lib-{uuid.uuid4().hex[:8]}"
    main = threading.get_ident()

    def interrupt_once_bytes_flow() -> None:
        while relay.sent < 3 * 1024 * 1024:
            time.sleep(0.05)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=interrupt_once_bytes_flow, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        ocimerge.create([*big_inputs], tags=[f"{relay.host}/{repository}:1"], jobs=3)
    took = time.monotonic() - started
    alive = [t.name for t in threading.enumerate() if t.name.startswith("ocimerge-push")]
    assert not alive, alive
    assert took < 20
    assert_untagged(registry, repository)
    assert Path(big_inputs[0]).is_dir()
