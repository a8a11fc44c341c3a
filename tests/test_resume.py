"""[RESUME-1..3] Resume across runs: the upload journal, and pushes that continue where they stopped.

The journal's rules are checked on files alone. The resumes run against the real Distribution:
in-process (a push that fails part-way, then runs again) and through the CLI behind the
throttling relay of ``test_interrupts`` (a push killed, or stopped with Ctrl-C, part-way
through a large blob, then run again), counting what the second run sends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import ocimerge
from imagebuilder import Image, oci_layout
from ocimerge.content import Blob
from ocimerge.errors import RegistryError
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.registry.api import Registry, RegistryOptions
from ocimerge.registry.transport import RetryPolicy
from ocimerge.registry.upload import Checkpoint, Chunking, Uploader, UploadHooks, UploadSession, _Pace
from ocimerge.sinks.journal import STALE_AFTER, JournalEntry, UploadJournal, default_journal
from ocimerge.sinks.registry import PushEvent, PushEventKind
from registries import Fault, FaultProxy, RegistryServer
from test_interrupts import Relay

MiB = 1024 * 1024
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)
DIGEST = Digest.of(b"layer")
ORIGIN = "http://127.0.0.1:5000"


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def entry(**changes: object) -> JournalEntry:
    fields: dict[str, object] = {
        "registry": "127.0.0.1:5000",
        "repository": "team/app",
        "digest": DIGEST,
        "size": 100,
        "location": f"{ORIGIN}/v2/team/app/blobs/uploads/1?_state=x",
        "stored": 40,
    }
    fields.update(changes)
    return JournalEntry(**fields)  # type: ignore[arg-type]


@pytest.fixture
def journal(tmp_path: Path) -> UploadJournal:
    return UploadJournal(tmp_path / "state" / "ocimerge" / "uploads")


def find(journal: UploadJournal, size: int = 100, origin: str = ORIGIN) -> ocimerge.sinks.journal.Lookup:
    return journal.find("127.0.0.1:5000", "team/app", DIGEST, size, origin)


# -- [RESUME-1][RESUME-2] the journal's files -------------------------------------------------------


def test_an_entry_is_kept_privately_and_found_again(journal: UploadJournal) -> None:
    journal.record(entry())
    (path,) = journal.directory.iterdir()
    assert path.stat().st_mode & 0o777 == 0o600
    assert journal.directory.stat().st_mode & 0o777 == 0o700
    found = find(journal)
    assert found.note is None
    assert found.entry is not None
    assert (found.entry.location, found.entry.stored) == (entry().location, 40)
    assert set(json.loads(path.read_text())) == {
        "version",
        "registry",
        "repository",
        "digest",
        "size",
        "location",
        "stored",
        "minChunk",
        "updated",
    }  # nothing else: no credential, no token, no header
    journal.forget("127.0.0.1:5000", "team/app", DIGEST)
    assert list(journal.directory.iterdir()) == []


def test_a_location_with_credentials_in_it_is_never_written(journal: UploadJournal) -> None:
    journal.record(entry(location="http://bob:secret@127.0.0.1:5000/v2/team/app/blobs/uploads/1"))
    assert not journal.directory.exists() or list(journal.directory.iterdir()) == []


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (lambda p: p.write_text("{not json"), "cannot be trusted"),
        (lambda p: p.write_text(json.dumps({**entry().to_json(), "version": 2})), "cannot be trusted"),
        (lambda p: p.write_text(json.dumps({**entry().to_json(), "stored": 101})), "cannot be trusted"),
        (lambda p: p.write_text(json.dumps({**entry().to_json(), "size": True})), "cannot be trusted"),
        (lambda p: p.write_text(json.dumps({**entry().to_json(), "stored": float("nan")})), "cannot be trusted"),
        (lambda p: p.write_text("x" * 20_000), "cannot be trusted"),
        (lambda p: p.chmod(0o644), "cannot be trusted"),
        (lambda p: p.write_text(json.dumps({**entry().to_json(), "repository": "other/app"})), "another upload"),
        (lambda p: p.write_text(json.dumps({**entry().to_json(), "updated": 0})), "stale"),
    ],
    ids=["not-json", "version", "stored-past-size", "bool-size", "nan", "huge", "world-readable", "other", "stale"],
)
def test_an_entry_that_cannot_be_trusted_is_ignored_with_a_note_and_removed(
    journal: UploadJournal, spoil: object, why: str
) -> None:
    journal.record(entry())
    (path,) = journal.directory.iterdir()
    spoil(path)  # type: ignore[operator]
    found = find(journal)
    assert found.entry is None
    assert found.note is not None
    assert why in found.note
    assert DIGEST.short in found.note
    assert not path.exists()


def test_a_symlink_in_the_journal_is_not_followed(journal: UploadJournal, tmp_path: Path) -> None:
    journal.record(entry())
    (path,) = journal.directory.iterdir()
    target = tmp_path / "elsewhere.json"
    target.write_text(path.read_text())
    target.chmod(0o600)
    path.unlink()
    path.symlink_to(target)
    found = find(journal)
    assert found.entry is None
    assert found.note is not None
    assert target.exists()  # only the link went


def test_an_entry_on_another_origin_or_of_another_size_is_not_used(journal: UploadJournal) -> None:
    journal.record(entry())
    found = find(journal, origin="https://127.0.0.1:5000")
    assert found.entry is None
    assert found.note is not None
    assert "not on https://127.0.0.1:5000" in found.note
    journal.record(entry())
    assert find(journal, size=99).entry is None


def test_an_entry_a_week_old_is_stale(tmp_path: Path) -> None:
    now = [1_000_000.0]
    journal = UploadJournal(tmp_path, clock=lambda: now[0])
    journal.record(entry())
    now[0] += STALE_AFTER - 60
    assert find(journal).entry is not None
    now[0] += 120
    found = find(journal)
    assert found.entry is None
    assert found.note is not None
    assert "stale" in found.note


def test_the_journal_lives_in_the_xdg_state_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_journal().directory == tmp_path / "xdg" / "ocimerge" / "uploads"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")  # the XDG rule: not absolute, so ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_journal().directory == tmp_path / "home" / ".local" / "state" / "ocimerge" / "uploads"


# -- [RESUME-3] pushes that continue -----------------------------------------------------------


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private XDG_STATE_HOME for this test (and the CLI processes it starts); the journal's directory."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "ocimerge" / "uploads"


@pytest.fixture
def proxy(registry: RegistryServer) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(registry.host)
    yield fault_proxy
    fault_proxy.stop()


def archive(tmp_path: Path, size: int) -> tuple[str, Image]:
    image = Image(gzip_layers=False, layers=[os.urandom(size)])
    return oci_layout([image]).write_tar(str(tmp_path / f"{uuid.uuid4().hex[:6]}.tar")), image


def patched(proxy: FaultProxy, since: int = 0) -> int:
    """Layer bytes sent in PATCH bodies through the proxy, from request number ``since`` on.

    Bodies of 1 KiB or less are the image's config (every blob goes in chunks here), not the layer.
    """
    return sum(length for method, length in proxy.bodies[since:] if method == "PATCH" and length > 1024)


def tagged(server: RegistryServer, repository: str, image: Image) -> bool:
    with Registry(server.host) as client:
        found = client.manifest_head(ocimerge.Reference.parse(f"{server.host}/{repository}:1"))
    return found is not None and str(found.digest) == image.digest


def test_a_failed_push_run_again_continues_the_blob(
    registry: RegistryServer, proxy: FaultProxy, state: Path, tmp_path: Path
) -> None:
    """Six 512 KiB chunks in, a non-retryable answer fails the push; the re-run sends only the rest."""
    path, image = archive(tmp_path, 6 * MiB)
    repository = unique("team/resume")
    opts = RegistryOptions(retry=FAST, chunk_size=512 * 1024)
    # the config's one chunk and six of the layer's go through; the seventh is refused (and not kept)
    proxy.faults.append(Fault("PATCH", "/blobs/uploads/", status=400, after=7))
    with pytest.raises(RegistryError):
        ocimerge.push(path, [f"{proxy.host}/{repository}:1"], registry_options=opts, jobs=1)
    assert patched(proxy) == 7 * 512 * 1024
    assert len(list(state.iterdir())) == 1  # the layer's session, kept for the re-run
    first = len(proxy.bodies)
    result = ocimerge.push(path, [f"{proxy.host}/{repository}:1"], registry_options=opts, jobs=1)
    assert patched(proxy, first) == 3 * MiB  # the half the registry did not hold, and nothing more
    assert any("continuing an interrupted upload at byte 3145728 (50%)" in note for note in result.notes)
    assert any(m == "GET" and "/blobs/uploads/" in p for m, p, _ in proxy.log)  # asked where it stood
    assert tagged(registry, repository, image)
    assert list(state.iterdir()) == []  # the push completed: the journal holds nothing for it


def test_a_session_the_registry_no_longer_holds_restarts_with_a_note(
    registry: RegistryServer, state: Path, tmp_path: Path
) -> None:
    path, image = archive(tmp_path, 2 * MiB)
    repository = unique("team/gone")
    layer = json.loads(image.manifest)["layers"][0]
    journal = default_journal()
    journal.record(
        JournalEntry(
            registry.host,
            repository,
            Digest.parse(layer["digest"]),
            layer["size"],
            f"http://{registry.host}/v2/{repository}/blobs/uploads/{uuid.uuid4()}?_state=forged",
            MiB,
        )
    )
    opts = RegistryOptions(retry=FAST, chunk_size=512 * 1024)
    result = ocimerge.push(path, [f"{registry.host}/{repository}:1"], registry_options=opts)
    (note,) = [n for n in result.notes if "restarts from byte 0" in n]
    assert "no longer holds the interrupted upload" in note
    assert tagged(registry, repository, image)
    assert list(state.iterdir()) == []


def test_progress_never_passes_the_blob_size_after_a_recovery(
    registry: RegistryServer, proxy: FaultProxy, state: Path, tmp_path: Path
) -> None:
    """A chunk dropped part-way is sent again, but its bytes are not counted twice."""
    path, image = archive(tmp_path, 3 * MiB)
    proxy.faults.append(Fault("PATCH", "/blobs/uploads/", status=None, after_bytes=300_000, after=2))
    events: list[PushEvent] = []
    opts = RegistryOptions(retry=FAST, chunk_size=512 * 1024)
    repository = unique("team/progress")
    ocimerge.push(path, [f"{proxy.host}/{repository}:1"], registry_options=opts, jobs=1, on_event=events.append)
    layer = json.loads(image.manifest)["layers"][0]
    done = [e.done for e in events if e.kind is PushEventKind.PROGRESS and str(e.digest) == layer["digest"]]
    assert patched(proxy) > layer["size"]  # a chunk was sent again
    assert max(done) == layer["size"]
    assert done == sorted(done)
    assert tagged(registry, repository, image)


@pytest.mark.parametrize(
    ("profile", "why"),
    [
        (Chunking(chunk_size=512 * 1024, trusts_range=False, registry="Amazon ECR"), "status cannot be trusted"),
        (Chunking(supported=False, registry="Google Artifact Registry"), "takes no chunked uploads"),
    ],
    ids=["untrusted-range", "no-chunks"],
)
def test_where_the_registry_cannot_resume_the_blob_restarts_with_a_note(
    registry: RegistryServer, profile: Chunking, why: str
) -> None:
    """A recorded session of a registry family that cannot continue one: a note, and the whole blob."""
    data = os.urandom(3 * MiB)
    blob = Blob.from_bytes(Descriptor("application/octet-stream", Digest.of(data), len(data)), data, "blob")
    repository = unique("team/profile")
    notes: list[str] = []
    with Registry(registry.host, RegistryOptions(retry=FAST, chunk_size=512 * 1024)) as client:
        session = client.start_upload(repository)  # a session of an earlier run
        assert isinstance(session, UploadSession)
        recorded: list[tuple[UploadSession, int]] = []
        checkpoint = Checkpoint(lambda at, n: recorded.append((at, n)), notes.append, session)
        client._uploader = Uploader(client._sender, profile, sleep=lambda _: None)
        client.upload(repository, blob, hooks=UploadHooks(checkpoint=checkpoint))
        assert client.blob_exists(repository, blob.digest) == len(data)
    (note,) = notes
    assert f"blob {blob.digest.short} restarts from byte 0" in note
    assert why in note


# -- a push killed or interrupted part-way, run again through the CLI ---------------------------------

LAYER = 32 * MiB  # at the relay's 8 MiB/s: about four seconds


@pytest.fixture(scope="module")
def big_layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Image]:
    image = Image(layers=[os.urandom(LAYER)], gzip_layers=False)
    return oci_layout([image]).write_dir(str(tmp_path_factory.mktemp("resume") / "big")), image


@pytest.fixture
def relay(registry: RegistryServer) -> Iterator[Relay]:
    link = Relay(registry.host)
    yield link
    link.close()


def push_cli(relay: Relay, layout: str, repository: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ocimerge", "push", "--chunk-size", "1M", layout, f"{relay.host}/{repository}:1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_half_way(relay: Relay, layout: str, repository: str, sent: int) -> tuple[int, str]:
    """Start the push, send it ``sent`` once more than half of the layer went through; its code and stderr."""
    first = push_cli(relay, layout, repository)
    deadline = time.monotonic() + 30
    while relay.sent < LAYER * 0.55:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the upload did not get half-way"
        time.sleep(0.02)
    first.send_signal(sent)
    _, stderr = first.communicate(timeout=30)
    return first.returncode, stderr


@pytest.mark.parametrize("stop", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["killed-TERM", "ctrl-c"])
def test_a_push_stopped_half_way_is_continued_by_the_same_command(
    registry: RegistryServer, relay: Relay, big_layout: tuple[str, Image], state: Path, stop: tuple[int, int]
) -> None:
    """[RESUME-3][RESUME-4] Stopped past half of a 32 MiB blob, the same command sends less than half of it again.

    The chunk in flight at the signal is let finish (it is paced to take well under the grace),
    so Distribution keeps the session; the re-run asks where it stands and sends the rest.
    """
    layout, image = big_layout
    repository = unique("team/killed")
    sent, code = stop
    returncode, stderr = stop_half_way(relay, layout, repository, sent)
    assert returncode == code, stderr
    assert len(list(state.iterdir())) == 1  # what the re-run needs was kept
    before = relay.sent
    second = push_cli(relay, layout, repository)
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr
    again = relay.sent - before
    assert again < LAYER / 2, f"the re-run sent {again} bytes of a {LAYER}-byte blob: {stderr}"
    assert "continuing an interrupted upload at byte" in stderr
    assert tagged(registry, repository, image)
    assert list(state.iterdir()) == []


def test_a_push_killed_outright_is_still_completed_by_the_same_command(
    registry: RegistryServer, relay: Relay, big_layout: tuple[str, Image], state: Path
) -> None:
    """[RESUME-4] SIGKILL gives no grace: it almost always cuts a chunk short, and Distribution then
    cancels the session (its stored size no longer matches the offset in the session's state), so the
    re-run says the blob restarts and sends it again; a kill that happens to land between two chunks
    leaves the session whole, and the re-run continues it. Either way the second run completes."""
    layout, image = big_layout
    repository = unique("team/sigkill")
    returncode, _ = stop_half_way(relay, layout, repository, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    before = relay.sent
    second = push_cli(relay, layout, repository)
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr
    again = relay.sent - before
    if "restarts from byte 0: the registry no longer holds the interrupted upload" in stderr:
        assert again >= LAYER
    else:
        assert "continuing an interrupted upload at byte" in stderr
        assert again < LAYER / 2
    assert tagged(registry, repository, image)
    assert list(state.iterdir()) == []


def test_chunks_are_paced_to_the_link_when_their_size_is_ours() -> None:
    """[RESUME-4] 1 MiB first, then what the last chunk's rate sends in half a second, within bounds."""
    now = [0.0]
    ceiling = [16 * MiB]
    pace = _Pace(lambda: ceiling[0], None, paced=True, clock=lambda: now[0])
    assert pace.size == MiB
    now[0] = 1.0  # 1 MiB in 1 s: half a second's worth
    pace.took(MiB, 0.0, None)
    assert pace.size == MiB // 2
    now[0] = 1.01  # 512 KiB in 10 ms: 50 MiB/s, capped at the ceiling
    pace.took(MiB // 2, 1.0, None)
    assert pace.size == 16 * MiB
    ceiling[0] = 3 * MiB  # a 413 elsewhere in the run lowered the limit: the next chunk obeys it
    assert pace.size == 3 * MiB
    now[0] = 101.01  # very slow: never below the floor
    pace.took(3 * MiB, 1.01, None)
    assert pace.size == 256 * 1024
    pace.took(256 * 1024, 101.0, 5 * MiB)  # the registry's OCI-Chunk-Min-Length wins, even over the ceiling
    assert pace.size == 5 * MiB
    fixed = _Pace(lambda: 512 * 1024, None, paced=False, clock=lambda: now[0])  # --chunk-size: as given
    fixed.took(512 * 1024, 0.0, None)
    assert fixed.size == 512 * 1024


def test_a_journal_that_is_not_private_is_not_used(tmp_path: Path) -> None:
    """[RESUME-2] A journal directory others may write to is neither read nor written."""
    journal = UploadJournal(tmp_path / "uploads")
    journal.record(entry())
    journal.directory.chmod(0o777)
    found = find(journal)
    assert found.entry is None
    assert found.note is not None
    assert "not a private directory" in found.note
    journal.record(entry(digest=Digest.of(b"other")))
    assert not journal.path("127.0.0.1:5000", "team/app", Digest.of(b"other")).exists()  # nothing written into it


def test_a_fifo_or_deep_nesting_in_the_journal_neither_hangs_nor_crashes(journal: UploadJournal) -> None:
    journal.record(entry())
    (path,) = journal.directory.iterdir()
    path.unlink()
    os.mkfifo(path, 0o600)  # a read would block forever without O_NONBLOCK
    found = find(journal)
    assert found.entry is None
    assert found.note is not None
    assert "cannot be trusted" in found.note
    journal.record(entry())
    (path,) = journal.directory.iterdir()
    path.write_text("[" * 15_000)  # deeper than the JSON decoder's recursion
    found = find(journal)
    assert found.note is not None
    assert "not JSON" in found.note


def test_a_link_that_cuts_every_session_at_the_same_place_ends_the_upload(
    registry: RegistryServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    """[API-10] Sessions lost again and again at the same byte use up the policy's attempts, and the push fails."""
    proxy.faults.append(
        Fault("PATCH", "/blobs/uploads/", times=10**6, status=None, after_bytes=MiB, forward=True, min_body=2 * MiB)
    )
    data = os.urandom(12 * MiB)
    blob = Blob.from_bytes(Descriptor("application/octet-stream", Digest.of(data), len(data)), data, "blob")
    opts = RegistryOptions(retry=RetryPolicy(base_delay=0.01, max_delay=0.02, attempts=3), chunk_size=4 * MiB)
    with Registry(proxy.host, opts) as client, pytest.raises(ocimerge.OcimergeError):
        client.upload(unique("team/loop"), blob)
    sessions = sum(1 for method, _, _ in proxy.log if method == "POST")
    assert sessions <= 3


def test_a_413_in_the_middle_of_a_blob_goes_on_in_the_same_session(
    registry: RegistryServer, proxy: FaultProxy, state: Path
) -> None:
    """[API-11][RESUME-4] Paced chunks grow past a proxy's limit: the refused chunk is halved, not the blob restarted."""
    proxy.max_body = 3 * MiB
    data = os.urandom(24 * MiB)
    blob = Blob.from_bytes(Descriptor("application/octet-stream", Digest.of(data), len(data)), data, "blob")
    repository = unique("team/late413")
    with Registry(proxy.host, RegistryOptions(retry=FAST, chunked_threshold=MiB)) as client:
        client.upload(repository, blob)
    with Registry(registry.host) as direct:
        assert direct.blob_exists(repository, blob.digest) == len(data)
    assert sum(1 for method, _, _ in proxy.log if method == "POST") == 1  # one session throughout
    sent = [length for method, length in proxy.bodies if method == "PATCH"]
    refused = [s for s in sent if s > 3 * MiB]
    assert sum(sent) - sum(refused) == len(data)  # every byte that got through, once


def test_a_resumed_session_holding_other_bytes_restarts_once(
    registry: RegistryServer, state: Path, tmp_path: Path
) -> None:
    """[RESUME-3] An earlier run sent bytes of a source since mended: the closing PUT's DIGEST_INVALID
    makes the blob start over, once, with a note."""
    path, image = archive(tmp_path, 2 * MiB)
    layer = json.loads(image.manifest)["layers"][0]
    repository = unique("team/mended")
    with Registry(registry.host) as client:
        session = client.start_upload(repository)
        assert isinstance(session, UploadSession)
        wrong = os.urandom(MiB)
        answer = client.request(
            "PATCH",
            session.location,
            kind="PATCH chunk",
            what="a chunk of other bytes",
            headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{MiB - 1}"},
            content=wrong,
        )
        location = str(answer.request.url.join(answer.headers["location"]))
    default_journal().record(
        JournalEntry(registry.host, repository, Digest.parse(layer["digest"]), layer["size"], location, MiB)
    )
    opts = RegistryOptions(retry=FAST, chunk_size=512 * 1024)
    result = ocimerge.push(path, [f"{registry.host}/{repository}:1"], registry_options=opts)
    assert any("does not match the blob" in n for n in result.notes), result.notes
    assert tagged(registry, repository, image)
    assert list(state.iterdir()) == []
