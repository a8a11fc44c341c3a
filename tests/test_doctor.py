"""``ocimerge doctor`` against the real Distribution 2.8 ([DOCTOR-1] .. [DOCTOR-7]).

Every probe reaches ``/usr/bin/docker-registry`` (anonymous, TLS with Basic auth, or Bearer
tokens from the suite's token server); the request-size probe goes through the suite's
:class:`registries.FaultProxy` with a body limit. What the registry logged is read back to
check that ``--read-only`` wrote nothing and that the clean-up left nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from ocimerge.cli import main
from ocimerge.cli.exits import code_for
from ocimerge.doctor import CHECKS, MIB, DoctorReport, Outcome, diagnose, parse_target
from ocimerge.errors import TransportError, UsageError
from ocimerge.model.digest import Digest
from ocimerge.registry.api import Registry, RegistryOptions
from ocimerge.registry.transport import RetryPolicy, TLSOptions
from registries import (
    USERS,
    Fault,
    FaultProxy,
    RegistryServer,
    distribution_without_delete,
    free_port,
)

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)
#: the request-size probe's cap in most tests (the default, 64 MiB, is run once through the CLI)
SMALL_CAP = 4 * MIB


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def alice(server: RegistryServer) -> RegistryOptions:
    return RegistryOptions(
        tls=TLSOptions(ca_file=server.ca_file), retry=FAST, username="alice", password=USERS["alice"]
    )


def outcomes(report: DoctorReport) -> dict[str, str]:
    return {check.name: check.outcome.value for check in report.checks}


def run_doctor(host: str, options: RegistryOptions, repository: str | None = None, **extra: object) -> DoctorReport:
    with Registry(host, options) as registry:
        return diagnose(registry, repository, max_probe_body=SMALL_CAP, **extra)  # type: ignore[arg-type]


def written_since(server: RegistryServer, start: int) -> list[tuple[str, str, int]]:
    """The requests Distribution logged after the first ``start`` that were not GET or HEAD."""
    return [r for r in server.requests()[start:] if r[0] not in ("GET", "HEAD")]


# -- the findings --------------------------------------------------------------------------------


def test_anonymous_distribution_findings(registry: RegistryServer) -> None:
    report = run_doctor(registry.host, RegistryOptions(retry=FAST))
    assert [c.name for c in report.checks] == list(CHECKS)
    assert outcomes(report) == {
        "apiVersion": "yes",
        "authentication": "no",
        "tokenGet": "skipped",
        "tokenPost": "skipped",
        "anonymousPull": "yes",
        "monolithicUpload": "yes",
        "chunkedUpload": "yes",
        "crossRepositoryMount": "yes",
        "requestLimit": "no",  # no 413 up to the cap
        "ociIndex": "yes",
        "dockerList": "yes",
        "referrers": "no",  # [DOCTOR-4] Distribution 2.8 predates the referrers API: 404
        "tagDeletion": "no",  # 2.8 reads the tag as a digest: 400 DIGEST_INVALID
        "manifestDeletion": "yes",  # the fixture sets storage.delete.enabled
    }
    assert report.check("apiVersion").value == "registry/2.0"
    assert report.check("authentication").value == "none"
    assert report.check("requestLimit").value == SMALL_CAP
    assert "DIGEST_INVALID" in report.check("tagDeletion").detail
    assert report.profile == "registry"
    assert report.differences == ()
    assert report.notes == ()  # everything written was removed


def test_clean_up_leaves_nothing_in_the_scratch_repositories(registry: RegistryServer) -> None:
    start = len(registry.requests())
    report = run_doctor(registry.host, RegistryOptions(retry=FAST))
    scratch, mount = report.repositories
    assert re.fullmatch(r"ocimerge-doctor/[0-9a-f]{8}", scratch)
    assert mount == f"{scratch}-mount"
    writes = written_since(registry, start)
    assert {path.split("/blobs/")[0].split("/manifests/")[0] for _m, path, _s in writes} == {
        f"/v2/{scratch}",
        f"/v2/{mount}",
    }
    # [DOCTOR-2] every manifest PUT by digest was deleted, and every blob uploaded or mounted
    manifests = {p.rsplit("/", 1)[1] for m, p, s in writes if m == "PUT" and "/manifests/sha256:" in p and s == 201}
    deleted = {p.rsplit("/", 1)[1] for m, p, s in writes if m == "DELETE" and "/manifests/sha256:" in p and s == 202}
    assert len(manifests) == 4
    assert manifests == deleted
    blobs = {(scratch, d) for d in re.findall(r"digest=(sha256%3A[0-9a-f]{64})", " ".join(p for _m, p, _s in writes))}
    blobs |= {(mount, d) for m, p, _s in writes if m == "POST" for d in re.findall(r"mount=(sha256%3A[0-9a-f]{64})", p)}
    with Registry(registry.host, RegistryOptions(retry=FAST)) as client:
        for repository, digest in blobs:
            assert client.blob_exists(repository, Digest.parse(digest.replace("%3A", ":"))) is None
        for repository in report.repositories:
            response = client.request("GET", f"/v2/{repository}/tags/list", kind="GET tags", what="tags", ok=(404,))
            assert response.status_code == 404 or json.loads(response.content).get("tags") in (None, [])


def test_read_only_sends_no_write(registry: RegistryServer) -> None:
    start = len(registry.requests())
    report = run_doctor(registry.host, RegistryOptions(retry=FAST), unique("team/existing"), read_only=True)
    assert written_since(registry, start) == []
    assert len(registry.requests()) > start  # it did ask
    assert report.read_only
    assert len(report.repositories) == 1
    skipped = {name for name, outcome in outcomes(report).items() if outcome == "skipped"}
    assert skipped == {
        "tokenGet",
        "tokenPost",
        "monolithicUpload",
        "chunkedUpload",
        "crossRepositoryMount",
        "requestLimit",
        "ociIndex",
        "dockerList",
        "tagDeletion",
        "manifestDeletion",
    }
    assert outcomes(report)["referrers"] == "no"
    assert outcomes(report)["anonymousPull"] == "yes"


def test_token_registry_auth_forms_and_a_refused_delete(token_registry: RegistryServer) -> None:
    assert token_registry.token_server is not None
    seen = len(token_registry.token_server.requests)
    # public/*: the suite's token service lets anonymous clients pull there
    report = run_doctor(token_registry.host, alice(token_registry), unique("public/doctor"))
    found = outcomes(report)
    assert report.check("authentication").value == "bearer"
    assert token_registry.token_server.realm in report.check("authentication").detail
    assert found["tokenGet"] == "yes"
    assert "--username/--password-stdin" in report.check("tokenGet").detail
    assert found["tokenPost"] == "yes"  # TokenServer serves the OAuth2 password grant
    posts = [r for r in token_registry.token_server.requests[seen:] if r["method"] == "POST"]
    assert [r["grant"] for r in posts] == ["password"]
    assert found["anonymousPull"] == "yes"
    for name in ("monolithicUpload", "chunkedUpload", "crossRepositoryMount", "ociIndex", "dockerList"):
        assert found[name] == "yes", report.check(name)
    # the token service grants alice pull and push, never delete: nothing said about deletion
    assert found["tagDeletion"] == found["manifestDeletion"] == "unknown"
    assert "not delete" in report.check("manifestDeletion").detail
    assert any("left in" in note for note in report.notes)
    # [DOCTOR-3] the password goes to the realm only, never into the report
    assert USERS["alice"] not in json.dumps(report.to_json())


def test_token_registry_without_credentials(token_registry: RegistryServer) -> None:
    report = run_doctor(token_registry.host, RegistryOptions(retry=FAST))
    found = outcomes(report)
    assert found["tokenGet"] == "yes"
    assert "anonymously" in report.check("tokenGet").detail
    assert found["tokenPost"] == "skipped"  # the password grant needs a password
    assert found["anonymousPull"] == "no"  # ocimerge-doctor/* is not public there
    # no push right: the write probes could not try, which says nothing about the registry
    assert found["monolithicUpload"] == "unknown"
    assert found["chunkedUpload"] == "unknown"
    assert found["crossRepositoryMount"] == found["ociIndex"] == "skipped"


def test_basic_auth_over_tls(tls_registry: RegistryServer) -> None:
    report = run_doctor(tls_registry.host, alice(tls_registry))
    found = outcomes(report)
    assert report.check("authentication").value == "basic"
    assert found["tokenGet"] == found["tokenPost"] == "skipped"
    assert found["anonymousPull"] == "no"
    assert found["manifestDeletion"] == "yes"
    assert found["ociIndex"] == "yes"
    assert report.notes == ()


def test_request_limit_is_the_largest_power_of_two_step_under_a_proxy_limit(registry: RegistryServer) -> None:
    proxy = FaultProxy(registry.host)
    proxy.max_body = 5_000_000  # a corporate proxy's limit: 4 MiB passes, 8 MiB does not
    try:
        with Registry(proxy.host, RegistryOptions(retry=FAST)) as client:
            report = diagnose(client, max_probe_body=16 * MIB)
    finally:
        proxy.stop()
    limit = report.check("requestLimit")
    assert limit.outcome is Outcome.YES
    assert limit.value == 4 * MIB
    assert [size for method, size in proxy.bodies if method == "PATCH" and size >= MIB] == [
        MIB,
        2 * MIB,
        4 * MIB,
        8 * MIB,
    ]
    # [DOCTOR-6] the generic profile knows no limit: the difference names the flag to pass
    assert any("--max-request-size 4M" in d for d in report.differences)


def test_a_limit_below_the_first_probe_body_says_so(registry: RegistryServer) -> None:
    """[DOCTOR-6] 1 MiB refused already: the limit is somewhere below it, never "--max-request-size 0"."""
    proxy = FaultProxy(registry.host)
    proxy.max_body = 500_000
    try:
        with Registry(proxy.host, RegistryOptions(retry=FAST)) as client:
            report = diagnose(client, max_probe_body=4 * MIB)
    finally:
        proxy.stop()
    limit = report.check("requestLimit")
    assert limit.outcome is Outcome.YES
    assert not limit.value
    assert any("was refused (413)" in d and "--max-request-size below it" in d for d in report.differences)
    assert not any("--max-request-size 0" in d for d in report.differences)


def test_read_only_referrers_on_a_repository_the_registry_lacks_is_unknown() -> None:
    """[DOCTOR-1] A registry may answer the referrers API's 404 NAME_UNKNOWN for a repository it does
    not hold (the read-only scratch name): that says nothing of the API. Neither registry here answers
    so (Distribution 2.8 has no API and answers plain text; ocimerge.testing answers an empty index),
    hence the MockTransport."""
    import httpx

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200, headers={"Docker-Distribution-API-Version": "registry/2.0"})
        code = "NAME_UNKNOWN" if "/referrers/" in request.url.path else "MANIFEST_UNKNOWN"
        return httpx.Response(404, json={"errors": [{"code": code, "message": "unknown"}]})

    with Registry("reg.example", RegistryOptions(retry=FAST), transport=httpx.MockTransport(handle)) as client:
        report = diagnose(client, read_only=True, anonymous=client)
    found = report.check("referrers")
    assert found.outcome is Outcome.UNKNOWN
    assert "404 NAME_UNKNOWN" in found.detail
    assert "may not exist" in found.detail


def test_a_failed_upload_probe_cancels_its_session(registry: RegistryServer) -> None:
    """[DOCTOR-2] The monolithic probe's PUT refused: its check says so, and its session is DELETEd."""
    proxy = FaultProxy(registry.host)
    proxy.faults.append(Fault("PUT", "digest=", status=400))
    try:
        with Registry(proxy.host, RegistryOptions(retry=FAST)) as client:
            report = diagnose(client, max_probe_body=SMALL_CAP)
    finally:
        proxy.stop()
    assert report.check("monolithicUpload").outcome is not Outcome.YES
    (refused,) = [path for method, path, status in proxy.log if method == "PUT" and status == 400]
    session = refused.split("?")[0]  # /v2/<scratch>/blobs/uploads/<uuid>
    assert any(method == "DELETE" and path.split("?")[0] == session for method, path, _ in proxy.log)


# -- the command line --------------------------------------------------------------------------


def test_cli_json_is_one_document(registry: RegistryServer, capsys: pytest.CaptureFixture[str]) -> None:
    repository = unique("team/doctor")
    assert main(["doctor", "--json", f"{registry.host}/{repository}"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sorted(shown) == ["checks", "differences", "notes", "profile", "readOnly", "registry", "repositories"]
    assert shown["repositories"] == [repository, f"{repository}-mount"]
    assert {c["name"]: c["outcome"] for c in shown["checks"]}["ociIndex"] == "yes"
    # the default cap: 64 MiB accepted, no 413
    assert {c["name"]: c["value"] for c in shown["checks"]}["requestLimit"] == 64 * MIB


def test_cli_table(registry: RegistryServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--read-only", registry.host]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{registry.host} (read-only, profile registry; scratch ocimerge-doctor/")
    rows = {line.split("  ")[1]: line for line in out.splitlines() if line.startswith("  ") and "  " in line[2:]}
    assert "CHECK" in rows
    assert "API version" in rows
    assert "referrers API" in rows
    assert re.search(r"API version\s+yes\s+/v2/ says registry/2.0", out)
    assert "No differences from the profile" in out


def test_unreachable_registry_is_one_line_and_the_remote_exit_code() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ocimerge", "doctor", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == code_for(TransportError) == 4
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("ocimerge: error: ")
    assert "connection refused" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000", ("127.0.0.1:5000", None)),
        ("registry.example/team/app", ("registry.example", "team/app")),
        ("myhost/scratch", ("myhost", "scratch")),  # a host without a dot is still the registry
        ("docker://ghcr.io/acme/x", ("ghcr.io", "acme/x")),
    ],
)
def test_parse_target(text: str, expected: tuple[str, str | None]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["", "/team/app", "registry.example/Team", "registry.example/app:1", "a b/c"])
def test_parse_target_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        parse_target(text)


def test_cli_refuses_a_bad_target_with_the_usage_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "registry.example/app:1"]) == code_for(UsageError)
    assert capsys.readouterr().err.startswith("ocimerge: error: invalid repository")


# -- a registry with deletion disabled ------------------------------------------------------------


@pytest.fixture(scope="module")
def no_delete_registry() -> Iterator[RegistryServer]:
    """Distribution as the suite starts it, restarted with ``storage.delete.enabled: false``."""
    with distribution_without_delete() as server:
        yield server


def test_deletion_disabled_is_no_and_what_is_left_is_named(no_delete_registry: RegistryServer) -> None:
    report = run_doctor(no_delete_registry.host, RegistryOptions(retry=FAST))
    deletion = report.check("manifestDeletion")
    assert deletion.outcome is Outcome.NO  # [DOCTOR-4] 405 UNSUPPORTED is an answer, not an error
    assert "405 UNSUPPORTED" in deletion.detail
    assert report.check("tagDeletion").outcome is Outcome.NO
    assert report.check("ociIndex").outcome is Outcome.YES
    [note] = report.notes
    assert note.startswith(f"left in {report.repositories[0]}: manifest ")
    assert "405 UNSUPPORTED" in note


def test_doctor_help_lists_the_connection_flags_and_examples() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ocimerge", "doctor", "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0
    for flag in ("--read-only", "--json", "--username", "--password-stdin", "--ca-file", "--insecure", "--plain-http"):
        assert flag in result.stdout, flag
    assert "--jobs" not in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].strip().startswith("ocimerge doctor ")
