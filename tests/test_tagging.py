"""``tag``, ``untag`` and ``untag_sources`` against real registries ([TAG-1] .. [TAG-6]).

Each registry test runs on CNCF Distribution 2.8 (which refuses a tag DELETE: the placeholder
path of [TAG-2]) and on :class:`ocimerge.testing.Registry` (the spec's tag DELETE, [TAG-1]).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import httpx
import pytest

import ocimerge
from imagebuilder import Image, oci_layout
from ocimerge import tagging
from ocimerge.cli import main
from ocimerge.cli.exits import code_for
from ocimerge.errors import (
    AuthError,
    BlobMissingError,
    DeleteUnsupportedError,
    RegistryError,
    SourceNotFoundError,
    TagMovedError,
    TagNeededError,
    UsageError,
)
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, decode_manifest_or_index
from ocimerge.model.mediatype import OCI_INDEX
from ocimerge.model.reference import Reference
from ocimerge.registry.api import Registry, RegistryOptions
from ocimerge.registry.challenge import Scope
from ocimerge.registry.credentials import Credentials
from ocimerge.registry.transport import RetryPolicy
from ocimerge.tagging import Removal, UntagStatus, tag, untag, untag_sources
from ocimerge.testing import Behaviour
from ocimerge.testing import Registry as InProcessRegistry
from registries import USERS, RegistryServer, distribution_without_delete

pytestmark = pytest.mark.registry_backends("distribution", "inprocess")


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@attrs.frozen
class Merged:
    """A repository holding ``1-amd64``, ``1-arm64`` and their merge ``1``."""

    host: str
    repo: str
    amd64: Digest
    arm64: Digest
    index: Digest

    def ref(self, tag: str) -> Reference:
        return Reference.parse(f"{self.host}/{self.repo}:{tag}")

    def at(self, digest: Digest) -> Reference:
        return Reference(self.host, self.repo, digest=digest)


def push_image(host: str, reference: str, image: Image, tmp_path: Path) -> Digest:
    archive = oci_layout([image]).write_tar(str(tmp_path / f"{uuid.uuid4().hex}.tar"))
    return ocimerge.push(archive, [f"{host}/{reference}"]).root.digest


@pytest.fixture
def merged(registry: RegistryServer, tmp_path: Path) -> Merged:
    repo = unique("team/app")
    amd64 = push_image(registry.host, f"{repo}:1-amd64", Image(architecture="amd64"), tmp_path)
    arm64 = push_image(registry.host, f"{repo}:1-arm64", Image(architecture="arm64", variant="v8"), tmp_path)
    sources = [f"docker://{registry.host}/{repo}:1-amd64", f"docker://{registry.host}/{repo}:1-arm64"]
    result = ocimerge.create(sources, tags=[f"{registry.host}/{repo}:1"])
    return Merged(registry.host, repo, amd64, arm64, result.index.descriptor.digest)


def head(reference: Reference) -> Digest | None:
    with Registry(reference.registry) as client:
        found = client.manifest_head(reference)
    return found.digest if found is not None else None


def skopeo(*args: str) -> str:
    binary = shutil.which("skopeo")
    assert binary is not None, "skopeo is not installed: apt-get install skopeo"
    done = subprocess.run([binary, *args], capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def skopeo_raw(reference: str) -> bytes:
    return skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{reference}").encode()


def pulls_everything(reference: str, dest: Path) -> None:
    """skopeo copies the image with every child (the index and its manifests all readable)."""
    skopeo("--insecure-policy", "copy", "--all", "--src-tls-verify=false", f"docker://{reference}", f"oci:{dest}:x")


def writes(server: RegistryServer, before: int) -> list[tuple[str, str, int]]:
    return [r for r in server.requests()[before:] if r[0] not in ("GET", "HEAD")]


def removal_words(server: RegistryServer) -> str:
    """How untag's line says the tag went (the placeholder path in words, not jargon)."""
    if server.is_distribution:
        return "registry refused tag deletes; moved onto a throwaway manifest and deleted that"
    return "deleted"


def expected_removal(server: RegistryServer) -> Removal:
    # Distribution 2.8 answers a tag DELETE 400 DIGEST_INVALID; the in-process registry removes it
    return Removal.PLACEHOLDER if server.is_distribution else Removal.DELETED


# -- tag ------------------------------------------------------------------------------------------


def test_tag_in_the_same_repository_sends_no_blob_request(registry: RegistryServer, merged: Merged) -> None:
    before = len(registry.requests())
    result = tag(str(merged.ref("1")), ["stable", f"{merged.host}/{merged.repo}:1.0"])
    served = registry.requests()[before:]
    assert [r for r in served if "/blobs/" in r[1]] == []
    assert [r[0] for r in served if r[0] not in ("GET", "HEAD")] == ["PUT", "PUT"]
    assert [str(r) for r in result.tagged] == [
        f"{merged.host}/{merged.repo}:{t}@{merged.index}" for t in ("stable", "1.0")
    ]
    raw = skopeo_raw(f"{merged.host}/{merged.repo}:stable")
    assert Digest.of(raw) == merged.index


def test_tag_across_repositories_mounts(registry: RegistryServer, merged: Merged, tmp_path: Path) -> None:
    other = unique("stable/app")
    before = len(registry.requests())
    result = tag(str(merged.ref("1")), [f"{merged.host}/{other}:1"])
    assert result.mounted > 0
    uploads = [r for r in writes(registry, before) if "/blobs/uploads/" in r[1]]
    assert uploads, "nothing mounted"
    assert all(m == "POST" and "mount=" in p for m, p, _ in uploads), uploads
    assert Digest.of(skopeo_raw(f"{merged.host}/{other}:1")) == merged.index
    pulls_everything(f"{merged.host}/{other}:1", tmp_path / "copy")


def test_tag_cli_q_prints_pinned_references(
    registry: RegistryServer, merged: Merged, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tag", "-q", str(merged.ref("1-amd64")), "amd"]) == 0
    assert capsys.readouterr().out == f"{merged.host}/{merged.repo}:amd@{merged.amd64}\n"
    assert main(["tag", "--json", str(merged.ref("1-amd64")), "amd2"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["references"] == [f"{merged.host}/{merged.repo}:amd2@{merged.amd64}"]


def test_tag_dry_run_writes_nothing(
    registry: RegistryServer, merged: Merged, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(registry.requests())
    assert main(["tag", "--dry-run", str(merged.ref("1")), "never"]) == 0
    assert capsys.readouterr().out.startswith("would tag ")
    assert main(["tag", "-q", "--dry-run", str(merged.ref("1")), "never", f"{merged.host}/elsewhere/app:1"]) == 0
    assert capsys.readouterr().out == ""  # -q prints what was written
    assert writes(registry, before) == []
    assert head(merged.ref("never")) is None
    assert head(Reference.parse(f"{merged.host}/elsewhere/app:1")) is None


# -- untag ----------------------------------------------------------------------------------------


def test_untag_removes_only_the_tag(registry: RegistryServer, merged: Merged, tmp_path: Path) -> None:
    tag(str(merged.ref("1-amd64")), ["extra"])
    result = untag(str(merged.ref("extra")))
    assert (result.digest, result.how) == (merged.amd64, expected_removal(registry))
    assert head(merged.ref("extra")) is None
    assert head(merged.ref("1-amd64")) == merged.amd64  # the other tag of the same manifest
    assert Digest.of(skopeo_raw(f"{merged.host}/{merged.repo}@{merged.amd64}")) == merged.amd64
    pulls_everything(f"{merged.host}/{merged.repo}:1", tmp_path / "copy")
    with Registry(merged.host) as client:
        left = set(client.tags(merged.repo))
    assert left == {"1", "1-amd64", "1-arm64"}  # no placeholder left tagged


def test_untag_refuses_the_last_tag_of_a_child_of_a_tagged_index(
    registry: RegistryServer, merged: Merged, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(TagNeededError, match=f"the index at {merged.repo}:1 lists"):
        untag(str(merged.ref("1-amd64")))
    assert main(["untag", str(merged.ref("1-amd64"))]) == code_for(TagNeededError) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pass --force" in err
    assert head(merged.ref("1-amd64")) == merged.amd64
    assert main(["untag", "--force", str(merged.ref("1-amd64"))]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"untagged {merged.ref('1-amd64')} ({removal_words(registry)})")
    assert f"{merged.repo}:1 lists" in captured.err
    assert head(merged.ref("1-amd64")) is None
    assert head(merged.at(merged.amd64)) == merged.amd64
    pulls_everything(f"{merged.host}/{merged.repo}:1", tmp_path / "copy")


def test_a_nested_index_counts_as_needing(registry: RegistryServer, tmp_path: Path) -> None:
    repo = unique("team/nested")
    amd64 = push_image(registry.host, f"{repo}:amd64", Image(architecture="amd64"), tmp_path)
    inner = ocimerge.create([f"docker://{registry.host}/{repo}:amd64"], tags=[f"{registry.host}/{repo}:inner"])
    listed = inner.index.descriptor
    # an index whose one entry is the inner index (create would flatten it: put by hand)
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [listed.to_json()]}).encode()
    value = decode_manifest_or_index(raw, media_type=OCI_INDEX, where="outer")
    outer = Document.reached(raw, value, Descriptor(OCI_INDEX, Digest.of(raw), len(raw)), where="outer")
    with Registry(registry.host) as client:
        client.manifest_put(Reference.parse(f"{registry.host}/{repo}:outer"), outer)
    untag(f"{registry.host}/{repo}:inner", force=True)  # only the outer index is tagged now
    with pytest.raises(TagNeededError, match=f"the index at {repo}:outer lists"):
        untag(f"{registry.host}/{repo}:amd64")
    assert head(Reference.parse(f"{registry.host}/{repo}:amd64")) == amd64


def test_a_repository_with_too_many_tags_to_check_needs_force(
    registry: RegistryServer, merged: Merged, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[TAG-3] Past the bound the check cannot be made: refused, naming --force; forced, removed."""
    tag(str(merged.ref("1")), ["spare"])
    monkeypatch.setattr(tagging, "MAX_CHECKED_TAGS", 2)  # the repository holds 4 tags
    with pytest.raises(TagNeededError, match="has more than 2 tags: cannot check"):
        untag(str(merged.ref("spare")))
    assert untag(str(merged.ref("spare")), force=True).how is expected_removal(registry)
    assert head(merged.ref("spare")) is None


def test_untag_with_a_moved_tag_refuses(registry: RegistryServer, merged: Merged) -> None:
    with pytest.raises(TagMovedError, match="someone pushed since"):
        untag(str(merged.ref("1-amd64")), expected=merged.arm64)
    assert head(merged.ref("1-amd64")) == merged.amd64


def test_untag_dry_run_changes_nothing(
    registry: RegistryServer, merged: Merged, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(registry.requests())
    assert main(["untag", "--dry-run", "--force", str(merged.ref("1-arm64"))]) == 0
    assert capsys.readouterr().out.startswith(f"would untag {merged.ref('1-arm64')}")
    assert writes(registry, before) == []
    assert head(merged.ref("1-arm64")) == merged.arm64


def test_untag_q_prints_nothing_and_json_says_how(
    registry: RegistryServer, merged: Merged, capsys: pytest.CaptureFixture[str]
) -> None:
    tag(str(merged.ref("1")), ["a", "b"])
    assert main(["untag", "-q", str(merged.ref("a"))]) == 0
    assert capsys.readouterr().out == ""
    assert main(["untag", "--json", str(merged.ref("b"))]) == 0
    [entry] = json.loads(capsys.readouterr().out)["untagged"]
    assert entry == {
        "reference": str(merged.ref("b")),
        "digest": str(merged.index),
        "how": expected_removal(registry).value,
        "neededBy": [],
        "manifestRestored": False,
    }


def test_untag_errors_are_one_line_with_their_exit_codes(
    registry: RegistryServer, merged: Merged, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["untag", str(merged.ref("nosuch"))], code_for(SourceNotFoundError), "no such tag"),
        (["untag", str(merged.at(merged.amd64))], code_for(UsageError), "a digest is no tag"),
        (["tag", str(merged.ref("1")), "elsewhere.example/app:1"], code_for(UsageError), "ocimerge push docker://"),
        (["tag", str(merged.ref("1")), f"{merged.host}/{merged.repo}@{merged.amd64}"], code_for(UsageError), "digest"),
        (["tag", str(merged.ref("nosuch")), "x"], code_for(SourceNotFoundError), "no such tag or digest"),
    ]
    for argv, code, words in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("ocimerge: error: "), err
        assert err.count("\n") == 1, err
        assert words in err, err


# -- untag_sources --------------------------------------------------------------------------------


def test_untag_sources_skips_a_moved_tag_and_never_removes_a_merged_tag(
    registry: RegistryServer, merged: Merged, tmp_path: Path
) -> None:
    moved = push_image(
        registry.host, f"{merged.repo}:1-arm64", Image(architecture="arm64", labels={"moved": "yes"}), tmp_path
    )
    assert moved != merged.arm64
    sources = [
        (merged.ref("1-amd64"), merged.amd64),
        (merged.ref("1-arm64"), merged.arm64),  # read at the start; moved since
        (merged.ref("1"), merged.index),  # a source that is also the merged target
        (merged.at(merged.amd64), merged.amd64),  # a source given by digest: no tag to remove
        (merged.ref("gone"), merged.amd64),  # removed by someone else already
    ]
    outcomes = untag_sources(None, sources, [(merged.ref("1"), merged.index)])
    assert [o.status for o in outcomes] == [
        UntagStatus.REMOVED,
        UntagStatus.MOVED,
        UntagStatus.TARGET,
        UntagStatus.NOT_A_TAG,
        UntagStatus.GONE,
    ]
    assert outcomes[0].result is not None
    assert outcomes[0].result.how is expected_removal(registry)
    assert "someone pushed since" in outcomes[1].note
    assert head(merged.ref("1-amd64")) is None
    assert head(merged.ref("1-arm64")) == moved
    assert head(merged.ref("1")) == merged.index
    assert head(merged.at(merged.amd64)) == merged.amd64
    pulls_everything(f"{merged.host}/{merged.repo}:1", tmp_path / "copy")


def test_untag_sources_removes_nothing_unless_the_merged_tag_is_confirmed(
    registry: RegistryServer, merged: Merged
) -> None:
    sources = [(merged.ref("1-amd64"), merged.amd64), (merged.ref("1-arm64"), merged.arm64)]
    with pytest.raises(TagMovedError, match="no source tag was removed"):
        untag_sources(None, sources, [(merged.ref("1"), merged.amd64)])
    assert head(merged.ref("1-amd64")) == merged.amd64
    assert head(merged.ref("1-arm64")) == merged.arm64


def test_untag_sources_keeps_a_tag_another_index_needs(registry: RegistryServer, merged: Merged) -> None:
    other = ocimerge.create([f"docker://{merged.host}/{merged.repo}:1-amd64"], tags=[str(merged.ref("amd-only"))])
    outcomes = untag_sources(None, [(merged.ref("1-amd64"), merged.amd64)], [(merged.ref("1"), merged.index)])
    assert [o.status for o in outcomes] == [UntagStatus.NEEDED]
    assert f"{merged.repo}:amd-only" in outcomes[0].note
    assert head(merged.ref("amd-only")) == other.index.descriptor.digest
    assert head(merged.ref("1-amd64")) == merged.amd64


# -- create --untag-sources ---------------------------------------------------------------------


def test_create_untag_sources_removes_the_per_arch_tags_once_merged(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = unique("team/app")
    amd64 = push_image(registry.host, f"{repo}:1-amd64", Image(architecture="amd64"), tmp_path)
    arm64 = push_image(registry.host, f"{repo}:1-arm64", Image(architecture="arm64", variant="v8"), tmp_path)
    sources = [f"docker://{registry.host}/{repo}:1-amd64", f"docker://{registry.host}/{repo}:1-arm64"]
    target = f"{registry.host}/{repo}:1"

    # a dry run says what it would remove and removes nothing
    assert main(["create", "--dry-run", "--untag-sources", "-t", target, *sources]) == 0
    assert "would remove the source tag" in capsys.readouterr().err
    assert head(Reference.parse(f"{registry.host}/{repo}:1-amd64")) == amd64

    assert main(["create", "--json", "--untag-sources", "-t", target, *sources]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(u["reference"], u["status"]) for u in report["untagged"]] == [
        (f"{registry.host}/{repo}:1-amd64", "removed"),
        (f"{registry.host}/{repo}:1-arm64", "removed"),
    ]
    assert {u["how"] for u in report["untagged"]} == {expected_removal(registry).value}
    with Registry(registry.host) as client:
        assert client.tags(repo) == ("1",)
    # the children stay: by digest, and through the merged index, which every client pulls whole
    assert head(Reference(registry.host, repo, digest=amd64)) == amd64
    assert head(Reference(registry.host, repo, digest=arm64)) == arm64
    pulls_everything(target, tmp_path / "copy")


def test_untag_sources_is_refused_without_a_tag_and_ignores_local_sources(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = oci_layout([Image(architecture="amd64")]).write_tar(str(tmp_path / "amd64.tar"))
    assert main(["create", "--untag-sources", "-o", str(tmp_path / "out.tar"), archive]) == code_for(UsageError)
    assert "--untag-sources needs -t" in capsys.readouterr().err
    repo = unique("team/app")
    assert main(["create", "--json", "--untag-sources", "-t", f"{registry.host}/{repo}:1", archive]) == 0
    assert json.loads(capsys.readouterr().out)["untagged"] == []


# -- a registry that deletes nothing --------------------------------------------------------------


@pytest.fixture(scope="module")
def no_delete_distribution() -> Iterator[RegistryServer]:
    """Distribution as the suite starts it, restarted with ``storage.delete.enabled: false``."""
    with distribution_without_delete() as server:
        yield server


def _refused_everywhere(
    host: str, log: Callable[[], list[tuple[str, str, int]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    digest = push_image(host, "team/keep:1", Image(architecture="amd64"), tmp_path)
    before = len(log())
    with pytest.raises(DeleteUnsupportedError, match=r"storage\.delete\.enabled: true"):
        untag(f"{host}/team/keep:1")
    assert main(["untag", f"{host}/team/keep:1"]) == code_for(DeleteUnsupportedError) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert head(Reference.parse(f"{host}/team/keep:1")) == digest
    # nothing written: the refusal is learnt from a DELETE of a digest no manifest has
    assert {m for m, _, _ in log()[before:]} <= {"GET", "HEAD", "DELETE"}
    return err


@pytest.mark.registry_backends("distribution", reason="restarts the Distribution binary with deletion off")
def test_deletion_disabled_on_distribution_is_one_line(
    no_delete_distribution: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _refused_everywhere(no_delete_distribution.host, no_delete_distribution.requests, tmp_path, capsys)
    assert "(405 UNSUPPORTED) nor manifests by digest (405 UNSUPPORTED)" in err


def test_deletion_disabled_in_process_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with InProcessRegistry(behaviour=Behaviour(deletion=False)) as reg:
        err = _refused_everywhere(reg.host, reg.requests, tmp_path, capsys)
    assert "405 UNSUPPORTED" in err


def test_a_token_without_the_delete_action_is_one_auth_line(
    token_registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """[TAG-1] The token service grants alice pull and push, never delete: the DELETE is refused, saying so."""
    options = RegistryOptions(username="alice", password=USERS["alice"])
    archive = oci_layout([Image(architecture="amd64")]).write_tar(str(tmp_path / "a.tar"))
    repo = unique("team/tok")
    ocimerge.push(archive, [f"{token_registry.host}/{repo}:1"], registry_options=options)
    with pytest.raises(AuthError) as raised:
        untag(f"{token_registry.host}/{repo}:1", options)
    assert "delete" in str(raised.value)
    assert "\n" not in str(raised.value)
    with Registry(token_registry.host, options) as client:
        assert client.manifest_head(Reference.parse(f"{token_registry.host}/{repo}:1")) is not None


# -- Registry.manifest_delete's translation, for answers the two backends never give -----------


@pytest.mark.parametrize(
    ("reference", "status", "body", "refused"),
    [
        ("reg.example/a:1", 405, b"", True),  # no body at all
        ("reg.example/a:1", 400, b'{"errors":[{"code":"DIGEST_INVALID","message":"x"}]}', True),
        (f"reg.example/a@{Digest.of(b'x')}", 400, b'{"errors":[{"code":"UNSUPPORTED","message":"x"}]}', True),
        (f"reg.example/a@{Digest.of(b'x')}", 400, b'{"errors":[{"code":"DIGEST_INVALID","message":"x"}]}', False),
        ("reg.example/a:1", 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"x"}]}', False),
    ],
)
def test_manifest_delete_refusals(reference: str, status: int, body: bytes, refused: bool) -> None:
    """[TAG-2] 405, 400 UNSUPPORTED, and any 400 to a tag are refusals; other errors keep their class."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(status, content=body, headers={"Content-Type": "application/json"})

    client = Registry("reg.example", transport=httpx.MockTransport(handle), credentials=Credentials("t"))
    with client, pytest.raises(RegistryError) as raised:
        client.manifest_delete(Reference.parse(reference))
    assert isinstance(raised.value, DeleteUnsupportedError) is refused
    assert raised.value.status == status


# -- review fixes: failures half way, races, --force, odd answers ---------------------------------

#: one attempt per request: the faults below fail a request once and for all, and fast
ONCE = RegistryOptions(retry=RetryPolicy(attempts=1))


def _refuse_tag_delete(reg: InProcessRegistry, tag_name: str) -> None:
    """The in-process registry answers this tag's DELETE 405, as a registry without tag deletes."""
    reg.faults.fail("DELETE", f"/manifests/{tag_name}", 405)


def _fail_after_the_stand_in(
    monkeypatch: pytest.MonkeyPatch, reg: InProcessRegistry, tag_name: str, failure: str
) -> list[Digest]:
    """Arm faults when the stand-in is put to the tag: its DELETE fails (and then the restore PUT)."""
    stand_ins: list[Digest] = []
    original_put = Registry.manifest_put

    def put(self: Registry, reference: Reference, document: Document[object]) -> Descriptor:
        answer = original_put(self, reference, document)
        if reference.tag == tag_name and tagging.PLACEHOLDER_TYPE.encode() in document.raw:
            stand_ins.append(document.descriptor.digest)
            if failure == "answer lost":  # the DELETE is carried out, its answer never arrives
                reg.faults.drop_after("DELETE", str(document.descriptor.digest), 0)
            else:
                reg.faults.fail("DELETE", str(document.descriptor.digest), 500)
            if failure == "restore fails too":
                reg.faults.fail("PUT", f"/manifests/{tag_name}", 500)
        return answer

    monkeypatch.setattr(Registry, "manifest_put", put)
    return stand_ins


@pytest.mark.parametrize("failure", ["500", "restore fails too", "answer lost"])
def test_a_placeholder_delete_failing_puts_the_tag_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """[TAG-2] The stand-in's DELETE fails: the tag names the original again, or the error says how to get there."""
    with InProcessRegistry() as reg:
        digest = push_image(reg.host, "team/ph:doomed", Image(architecture="amd64"), tmp_path)
        _refuse_tag_delete(reg, "doomed")
        stand_ins = _fail_after_the_stand_in(monkeypatch, reg, "doomed", failure)
        if failure == "answer lost":  # the tag went with the stand-in: that is success
            assert untag(f"{reg.host}/team/ph:doomed", ONCE).how is Removal.PLACEHOLDER
            assert head(Reference.parse(f"{reg.host}/team/ph:doomed")) is None
            assert head(Reference(reg.host, "team/ph", digest=digest)) == digest
            return
        with pytest.raises(RegistryError) as raised:
            untag(f"{reg.host}/team/ph:doomed", ONCE)
        message = str(raised.value)
        assert "\n" not in message
        now = head(Reference.parse(f"{reg.host}/team/ph:doomed"))
        if failure == "500":
            assert "the tag was restored" in message
            assert now == digest
            return
        [stand_in] = stand_ins
        assert now == stand_in
        assert f"now names placeholder {stand_in}" in message
        advice = f"`ocimerge tag {reg.host}/team/ph@{digest} doomed`"
        assert advice in message
        monkeypatch.undo()
        assert main(advice.strip("`").split()[1:]) == 0  # the advice works
        assert head(Reference.parse(f"{reg.host}/team/ph:doomed")) == digest


def test_ctrl_c_while_the_tag_names_the_stand_in_puts_it_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """[TAG-2] An interrupt in the one moment the tag names the stand-in: the tag names the original again."""
    with InProcessRegistry() as reg:
        digest = push_image(reg.host, "team/ph:interrupted", Image(architecture="amd64"), tmp_path)
        _refuse_tag_delete(reg, "interrupted")
        original_delete = Registry.manifest_delete

        def delete(self: Registry, reference: Reference) -> None:
            if (
                reference.digest is not None
                and head(Reference.parse(f"{reg.host}/team/ph:interrupted")) == reference.digest
            ):
                raise KeyboardInterrupt  # the stand-in's own DELETE: Ctrl-C arrives now
            original_delete(self, reference)

        monkeypatch.setattr(Registry, "manifest_delete", delete)
        with pytest.raises(KeyboardInterrupt):
            untag(f"{reg.host}/team/ph:interrupted", ONCE)
        assert head(Reference.parse(f"{reg.host}/team/ph:interrupted")) == digest


def test_a_push_between_the_check_and_the_delete_is_kept(
    registry: RegistryServer, merged: Merged, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[TAG-4] The tag is read again right before the DELETE: a push landing after the first HEAD stays."""
    tag(str(merged.ref("1")), ["racy"])
    original_get = Registry.manifest_get
    pushed: list[bool] = []

    def get(self: Registry, reference: Reference) -> Document[object]:
        document = original_get(self, reference)
        if reference.digest == merged.index and not pushed:
            pushed.append(True)  # someone pushes amd64 to racy while untag reads the index
            tag(str(merged.ref("1-amd64")), ["racy"])
        return document  # type: ignore[return-value]

    monkeypatch.setattr(Registry, "manifest_get", get)
    with pytest.raises(TagMovedError, match="someone pushed since"):
        untag(str(merged.ref("racy")))
    assert pushed
    assert head(merged.ref("racy")) == merged.amd64


def test_force_gets_past_the_index_cap_and_a_refused_tag_list(
    registry: RegistryServer, merged: Merged, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[TAG-3] With --force no failure of the check refuses: the tag goes."""
    monkeypatch.setattr(tagging, "MAX_CHECKED_INDEXES", 0)
    with pytest.raises(TagNeededError, match="more than 0 indexes to read"):
        untag(str(merged.ref("1-amd64")))
    result = untag(str(merged.ref("1-amd64")), force=True)
    assert (result.how, result.needed_by) == (expected_removal(registry), ())
    assert head(merged.ref("1-amd64")) is None
    assert head(merged.at(merged.amd64)) == merged.amd64


def test_force_gets_past_a_registry_refusing_the_tag_list(tmp_path: Path) -> None:
    with InProcessRegistry() as reg:
        digest = push_image(reg.host, "team/f:1", Image(architecture="amd64"), tmp_path)
        reg.faults.fail("GET", "/tags/list", 403, times=2)
        with pytest.raises(AuthError):
            untag(f"{reg.host}/team/f:1", ONCE)
        assert untag(f"{reg.host}/team/f:1", ONCE, force=True).how is Removal.DELETED
        assert head(Reference.parse(f"{reg.host}/team/f:1")) is None
        assert head(Reference(reg.host, "team/f", digest=digest)) == digest


def test_a_bodyless_404_to_the_probe_means_deletes_are_served(tmp_path: Path) -> None:
    """[TAG-2] Any 404 to the DELETE of a digest nobody has is "served", not only MANIFEST_UNKNOWN."""
    with InProcessRegistry(behaviour=Behaviour(json_errors=False)) as reg:
        digest = push_image(reg.host, "team/p:old", Image(architecture="amd64"), tmp_path)
        _refuse_tag_delete(reg, "old")
        reg.faults.fail("DELETE", "/manifests/sha256:", 404)  # the probe of nothing: plain text, no code
        assert untag(f"{reg.host}/team/p:old", ONCE).how is Removal.PLACEHOLDER
        assert head(Reference.parse(f"{reg.host}/team/p:old")) is None
        assert head(Reference(reg.host, "team/p", digest=digest)) == digest
        with Registry(reg.host) as client:
            assert client.tags("team/p") == ()


def test_a_tag_delete_answered_404_is_gone_for_untag_sources(tmp_path: Path) -> None:
    """[TAG-6] The tag went between the HEAD and the DELETE (404 NAME_UNKNOWN): gone, not an abort."""
    with InProcessRegistry() as reg:
        digest = push_image(reg.host, "team/g:1-amd64", Image(architecture="amd64"), tmp_path)
        reg.faults.fail("DELETE", "/manifests/1-amd64", 404)
        ref = Reference.parse(f"{reg.host}/team/g:1-amd64")
        [outcome] = untag_sources(ONCE, [(ref, digest)], [])
        assert outcome.status is UntagStatus.GONE
        reg.faults.fail("DELETE", "/manifests/1-amd64", 404)
        with pytest.raises(SourceNotFoundError, match="the DELETE answered 404"):
            untag(ref, ONCE)


def test_untag_sources_advice_names_untag_not_create_force(registry: RegistryServer, merged: Merged) -> None:
    """[TAG-6] create --force overwrites -o: the note points at ocimerge untag --force."""
    ocimerge.create([f"docker://{merged.host}/{merged.repo}:1-amd64"], tags=[str(merged.ref("amd-only"))])
    [outcome] = untag_sources(None, [(merged.ref("1-amd64"), merged.amd64)], [(merged.ref("1"), merged.index)])
    assert outcome.status is UntagStatus.NEEDED
    assert f"run `ocimerge untag --force {merged.ref('1-amd64')}` to remove it anyway" in outcome.note
    assert "pass --force" not in outcome.note


def test_untag_checks_every_ref_before_removing_any(
    registry: RegistryServer, merged: Merged, capsys: pytest.CaptureFixture[str]
) -> None:
    """[TAG-8] One REF refused and none is removed; --json has one errors entry per problem."""
    tag(str(merged.ref("1")), ["a", "b"])
    argv = ["untag", "--json", str(merged.ref("a")), str(merged.ref("nosuch"))]
    assert main(argv) == code_for(SourceNotFoundError)
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["untagged"] == []
    assert report["errors"] == [
        {
            "reference": str(merged.ref("nosuch")),
            "error": "SourceNotFoundError",
            "message": f"{merged.ref('nosuch')}: no such tag in {merged.host}/{merged.repo}",
            "exitCode": 3,
        }
    ]
    assert captured.err == f"ocimerge: error: {merged.ref('nosuch')}: no such tag in {merged.host}/{merged.repo}\n"
    assert head(merged.ref("a")) == merged.index
    # a needed tag after a removable one: nothing removed, then --force removes both
    assert main(["untag", str(merged.ref("b")), str(merged.ref("1-amd64"))]) == code_for(TagNeededError)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"ocimerge: error: {merged.ref('1-amd64')} is the last tag of {merged.amd64}")
    assert "nothing was removed" in captured.err
    assert (head(merged.ref("b")), head(merged.ref("1-amd64"))) == (merged.index, merged.amd64)
    assert main(["untag", "--force", str(merged.ref("b")), str(merged.ref("1-amd64"))]) == 0
    assert (head(merged.ref("b")), head(merged.ref("1-amd64"))) == (None, None)


def test_untag_dry_run_lists_every_problem_and_dedupes(
    registry: RegistryServer, merged: Merged, capsys: pytest.CaptureFixture[str]
) -> None:
    """[TAG-8] A dry run prints each problem (exit: the first one's); the same REF twice is one."""
    tag(str(merged.ref("1")), ["a"])
    refs = [str(merged.ref(t)) for t in ("nosuch", "a", "1-amd64", "a")]
    assert main(["untag", "--dry-run", *refs]) == code_for(SourceNotFoundError)
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"would untag {merged.ref('a')} (it names {merged.index}; the manifest would stay)"
    ]
    errors = captured.err.splitlines()
    assert len(errors) == 2, errors
    assert errors[0].startswith(f"ocimerge: error: {merged.ref('nosuch')}: no such tag in ")
    assert errors[1].startswith(f"ocimerge: error: {merged.ref('1-amd64')} is the last tag")
    assert main(["untag", str(merged.ref("a")), str(merged.ref("a"))]) == 0
    assert capsys.readouterr().out.count("untagged ") == 1
    assert head(merged.ref("a")) is None
    assert head(merged.ref("1-amd64")) == merged.amd64


def test_untag_wants_an_explicit_tag(
    registry: RegistryServer, merged: Merged, capsys: pytest.CaptureFixture[str]
) -> None:
    """A destructive command invents no :latest; an empty REF says so."""
    tag(str(merged.ref("1")), ["latest"])
    bare = f"{merged.host}/{merged.repo}"
    assert main(["untag", bare]) == code_for(UsageError)
    assert capsys.readouterr().err == (
        f"ocimerge: error: untag needs REGISTRY/REPO:TAG; {bare} names no tag (write {bare}:latest for latest)\n"
    )
    assert head(merged.ref("latest")) == merged.index
    with pytest.raises(UsageError, match="untag needs REGISTRY/REPO:TAG; got an empty reference"):
        untag("")
    assert main(["untag", str(merged.ref("latest"))]) == 0


def test_refusals_name_up_to_three_indexes_and_a_dry_run_says_is(
    registry: RegistryServer, merged: Merged, capsys: pytest.CaptureFixture[str]
) -> None:
    """[TAG-3] Every index needing the digest is named (up to three); a dry run's note is present tense."""
    tag(str(merged.ref("1")), ["1b", "1c", "1d"])
    with pytest.raises(TagNeededError) as caught:
        untag(str(merged.ref("1-amd64")))
    message = str(caught.value)
    assert "which the indexes at " in message
    named = message.split("which the indexes at ", 1)[1].split(" list;", 1)[0]
    assert named.endswith(" and 1 more"), named  # four indexes: three named
    names = named.removesuffix(" and 1 more").split(", ")
    assert len(names) == 3
    assert set(names) < {f"{merged.repo}:{t}" for t in ("1", "1b", "1c", "1d")}
    assert main(["untag", "--dry-run", "--force", str(merged.ref("1-amd64"))]) == 0
    err = capsys.readouterr().err
    assert f"{merged.ref('1-amd64')} is the last tag of {merged.amd64}, which " in err
    assert head(merged.ref("1-amd64")) == merged.amd64


def _proxy(reg: InProcessRegistry, change: Callable[[httpx.Request, httpx.Client], httpx.Response]) -> Registry:
    """A client whose requests go to ``reg`` through ``change``: a registry answering differently."""
    upstream = httpx.Client(base_url=reg.url)

    def handle(request: httpx.Request) -> httpx.Response:
        return change(request, upstream)

    return Registry(reg.host, ONCE, transport=httpx.MockTransport(handle))


def _forward(request: httpx.Request, upstream: httpx.Client) -> httpx.Response:
    url = request.url.copy_with(scheme=upstream.base_url.scheme)
    answer = upstream.send(httpx.Request(request.method, url, headers=request.headers, content=request.read()))
    return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def test_a_head_without_content_type_is_read_to_know_if_it_is_an_index(tmp_path: Path) -> None:
    """[TAG-3] HEAD answers without Content-Type: manifest_head reads the tag, so an index is seen as one."""
    with InProcessRegistry() as reg:  # behind a proxy dropping the header
        repo = "team/ct"
        push_image(reg.host, f"{repo}:1-amd64", Image(architecture="amd64"), tmp_path)
        ocimerge.create([f"docker://{reg.host}/{repo}:1-amd64"], tags=[f"{reg.host}/{repo}:1"])

        def no_type(request: httpx.Request, upstream: httpx.Client) -> httpx.Response:
            answer = _forward(request, upstream)
            if request.method == "HEAD":
                del answer.headers["content-type"]
            return answer

        with _proxy(reg, no_type) as client:
            request = tagging._Untag(Reference.parse(f"{reg.host}/{repo}:1-amd64"))
            with pytest.raises(TagNeededError, match=f"the index at {repo}:1 lists"):
                tagging._untag(client, request)


@pytest.mark.parametrize("put_back_fails", [False, True])
def test_a_registry_deleting_the_manifest_with_its_tag_gets_it_back(put_back_fails: bool, tmp_path: Path) -> None:
    """[TAG-1] Old zot deleted the manifest on a tag DELETE: it is put back by digest, or the error names it."""
    with InProcessRegistry() as reg:
        repo = "team/zot"
        digest = push_image(reg.host, f"{repo}:old", Image(architecture="amd64"), tmp_path)
        push_image(reg.host, f"{repo}:other", Image(architecture="arm64"), tmp_path)  # the repository stays

        def like_old_zot(request: httpx.Request, upstream: httpx.Client) -> httpx.Response:
            answer = _forward(request, upstream)
            if request.method == "DELETE" and request.url.path.endswith("/manifests/old") and answer.is_success:
                upstream.delete(f"/v2/{repo}/manifests/{digest}")
                if put_back_fails:
                    reg.faults.fail("PUT", f"/manifests/{digest}", 500)
            return answer

        with _proxy(reg, like_old_zot) as client:
            request = tagging._Untag(Reference.parse(f"{reg.host}/{repo}:old"))
            if put_back_fails:
                with pytest.raises(RegistryError, match=f"deleted the manifest {digest} along with the tag old"):
                    tagging._untag(client, request)
                return
            result = tagging._untag(client, request)
        assert (result.how, result.manifest_restored) == (Removal.DELETED, True)
        assert result.to_json()["manifestRestored"] is True
        assert head(Reference(reg.host, repo, digest=digest)) == digest
        assert head(Reference.parse(f"{reg.host}/{repo}:old")) is None


def test_tag_refuses_an_index_whose_child_is_missing(registry: RegistryServer, merged: Merged) -> None:
    """[TAG-5] A tag never names an index whose children are missing."""
    with Registry(registry.host) as client:
        client.want(Scope.repository(merged.repo, "pull", "push", "delete"))
        client.manifest_delete(merged.at(merged.arm64))  # by digest: the child (and its tag) go
    with pytest.raises(BlobMissingError, match=f"names {merged.arm64}, which is not in the repository"):
        tag(str(merged.ref("1")), ["broken"])
    assert head(merged.ref("broken")) is None


def test_a_tag_list_repeating_itself_under_fresh_links_is_bounded() -> None:
    """[SEC-8] With limit=, at most limit // 1000 + 10 pages are asked for."""
    pages = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        pages.append(request.url)
        link = f'</v2/a/tags/list?n=1000&last=x{len(pages)}>; rel="next"'
        return httpx.Response(200, json={"name": "a", "tags": ["x"]}, headers={"Link": link})

    client = Registry("reg.example", transport=httpx.MockTransport(handle), credentials=Credentials("t"))
    with client, pytest.raises(RegistryError, match="runs past 10 pages with 1 tags known"):
        client.tags("a", limit=5)
    assert len(pages) == 10


# -- tag onto an existing tag ([TAG-7]) -----------------------------------------------------------


def test_tag_moving_the_last_tag_of_a_needed_manifest_is_refused_unless_forced(
    registry: RegistryServer, merged: Merged, capsys: pytest.CaptureFixture[str]
) -> None:
    """[TAG-7] tag onto 1-amd64 would untag the amd64 manifest app:1 lists: the untag check applies."""
    with pytest.raises(TagNeededError, match="pass --force to move the tag anyway"):
        tag(str(merged.ref("1-arm64")), ["1-amd64"])
    before = len(registry.requests())
    assert main(["tag", str(merged.ref("1-arm64")), "1-amd64"]) == code_for(TagNeededError) == 5
    err = capsys.readouterr().err
    assert err.startswith(f"ocimerge: error: moving 1-amd64 from {merged.amd64} to {merged.arm64}: ")
    assert f"the index at {merged.repo}:1 lists" in err
    assert writes(registry, before) == []
    assert head(merged.ref("1-amd64")) == merged.amd64
    assert main(["tag", "--force", str(merged.ref("1-arm64")), "1-amd64"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"tagged {merged.host}/{merged.repo}:1-amd64@{merged.arm64}\n"
    assert f"ocimerge: note: moved 1-amd64 from {merged.amd64} to {merged.arm64}\n" in captured.err
    assert head(merged.ref("1-amd64")) == merged.arm64


def test_tag_moving_a_tag_says_from_which_digest(
    registry: RegistryServer, merged: Merged, capsys: pytest.CaptureFixture[str]
) -> None:
    """[TAG-7] A moved tag that is not needed moves; the note and --json's previous say from what."""
    tag(str(merged.ref("1-amd64")), ["spare", "again"])  # 1-amd64 keeps the manifest tagged
    assert main(["tag", "--dry-run", str(merged.ref("1-arm64")), "spare"]) == 0
    assert f"note: would move spare from {merged.amd64} to {merged.arm64}" in capsys.readouterr().err
    assert main(["tag", "--json", str(merged.ref("1-arm64")), "spare", "again", "new"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["previous"] == {
        str(merged.ref("spare")): str(merged.amd64),
        str(merged.ref("again")): str(merged.amd64),
        str(merged.ref("new")): None,
    }
    assert head(merged.ref("spare")) == merged.arm64
    assert main(["tag", str(merged.ref("1-arm64")), "spare"]) == 0  # already names it: nothing moved
    assert "moved" not in capsys.readouterr().err


def test_tag_json_errors_have_create_s_shape(
    registry: RegistryServer, merged: Merged, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tag", "--json", str(merged.ref("nosuch")), "x"]) == code_for(SourceNotFoundError)
    captured = capsys.readouterr()
    [entry] = json.loads(captured.out)["errors"]
    assert entry == {
        "reference": str(merged.ref("nosuch")),
        "error": "SourceNotFoundError",
        "message": f"{merged.ref('nosuch')}: no such tag or digest in {merged.host}/{merged.repo}",
        "exitCode": 3,
    }
    assert captured.err.count("\n") == 1


def test_a_new_tag_without_a_host_is_docker_hub_s_and_the_refusal_says_so() -> None:
    """[TAG-5] "stable/app:1" names docker.io: the message shows how to write it for SRC's registry."""
    with pytest.raises(UsageError) as caught:
        tag("127.0.0.1:5055/app:1", ["stable/app:1"])
    assert str(caught.value) == (
        "stable/app:1 names docker.io/stable/app:1; write 127.0.0.1:5055/stable/app:1 for this registry, "
        "or a bare TAG for 127.0.0.1:5055/app's repository"
    )
    with pytest.raises(UsageError, match=r"is on another registry than 127\.0\.0\.1:5055: use ocimerge push"):
        tag("127.0.0.1:5055/app:1", ["docker.io/stable/app:1"])
