"""``create --append`` / ``--replace`` against a real registry, twice (issue 13 item 7) [INDEX-9].

Each test pushes a tag with ``create -t``, then appends to it in-process (``cli.main``), and
reads back what the registry stores: the entries' digests and annotations, the index's
annotations, and skopeo's view of the bytes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

import ocimerge
from imagebuilder import Image, oci_layout, tar_bytes
from ocimerge.cli import main
from ocimerge.cli.exits import code_for
from ocimerge.errors import PlatformConflictError, UsageError
from ocimerge.model.annotations import REFERENCE_DIGEST
from ocimerge.model.manifest import decode_manifest_or_index
from ocimerge.registry.api import Registry, RegistryOptions
from ocimerge.sinks.registry import BlobAction
from registries import USERS, RegistryServer
from signing import write_keys

pytestmark = pytest.mark.registry_backends("distribution", "inprocess")

SKOPEO = "/usr/bin/skopeo"
AMD64 = Image(architecture="amd64")
ARM64 = Image(architecture="arm64", variant="v8")
ARM = Image(architecture="arm", variant="v7")
#: amd64 again, other content: another image of the same platform
AMD64_REBUILT = Image(architecture="amd64", layers=[tar_bytes({"hello.txt": b"rebuilt\n"})])


def tag(registry: RegistryServer, name: str = "append/app") -> str:
    return f"{registry.host}/{name}-{uuid.uuid4().hex[:8]}:1"


def archive(tmp_path: Path, *images: Image, attestations: bool = False) -> str:
    name = "-".join(i.platform.replace("/", "_") for i in images) + ("-att" if attestations else "")
    return oci_layout(list(images), attestations=attestations).write_tar(str(tmp_path / f"{name}.tar"))


def stored(reference: str) -> tuple[str, dict[str, Any]]:
    """The digest and the decoded document ``reference`` names in its registry now."""
    parsed = ocimerge.Reference.parse(reference)
    with Registry(parsed.registry) as client:
        document = client.manifest_get(parsed)
    return str(document.descriptor.digest), json.loads(document.raw)


def images_of(index: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(platform, digest, annotations) of each image entry, in the index's order."""
    return [
        (
            "/".join(filter(None, (e["platform"]["os"], e["platform"]["architecture"], e["platform"].get("variant")))),
            e["digest"],
            e.get("annotations", {}),
        )
        for e in index["manifests"]
        if e["platform"]["os"] != "unknown"
    ]


def skopeo_digest(reference: str) -> str:
    """The digest of the bytes skopeo reads at ``reference`` (plain HTTP)."""
    run = subprocess.run(
        [SKOPEO, "inspect", "--tls-verify=false", "--raw", f"docker://{reference}"],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode()
    return f"sha256:{hashlib.sha256(run.stdout).hexdigest()}"


def publish(reference: str, *sources: str, extra: tuple[str, ...] = ()) -> str:
    """``create -t reference`` with version 1 on the index and built-by on the entries; its digest."""
    annotations = (
        *("--annotation", "index:org.opencontainers.image.version=1"),
        *("--annotation", "manifest-descriptor:org.example.built-by=ci"),
    )
    assert main(["create", "-q", *annotations, *extra, "-t", reference, *sources]) == 0
    return stored(reference)[0]


def test_append_adds_a_platform_and_keeps_what_the_tag_had(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tag(registry)
    publish(reference, archive(tmp_path, AMD64))
    capsys.readouterr()
    # the version given now wins over the tag's; its other annotations stay
    code = main(
        [
            "create",
            "-q",
            "--append",
            "--annotation",
            "index:org.opencontainers.image.version=2",
            "-t",
            reference,
            archive(tmp_path, ARM64),
        ]
    )
    assert code == 0, capsys.readouterr().err
    digest, index = stored(reference)
    assert images_of(index) == [
        ("linux/amd64", AMD64.digest, {"org.example.built-by": "ci"}),  # its entry, unchanged and first
        ("linux/arm64/v8", ARM64.digest, {}),
    ]
    assert index["annotations"] == {"org.opencontainers.image.version": "2"}
    assert capsys.readouterr().out.strip() == f"{reference}@{digest}"
    assert skopeo_digest(reference) == digest


def test_append_refuses_a_platform_the_tag_holds_and_leaves_the_tag(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tag(registry)
    before = publish(reference, archive(tmp_path, AMD64), archive(tmp_path, ARM64))
    capsys.readouterr()
    code = main(["create", "--append", "-t", reference, archive(tmp_path, AMD64_REBUILT)])
    assert code == code_for(PlatformConflictError)
    err = capsys.readouterr().err
    assert f"is already in {reference}; pass --replace to replace it" in err
    assert "linux/amd64" in err
    assert stored(reference)[0] == before


def test_replace_puts_the_new_image_in_the_old_entrys_place(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tag(registry)
    publish(reference, archive(tmp_path, AMD64), archive(tmp_path, ARM64))
    capsys.readouterr()
    assert main(["create", "--append", "--replace", "-t", reference, archive(tmp_path, AMD64_REBUILT)]) == 0
    err = capsys.readouterr().err
    assert f"replaced linux/amd64 in {reference}: {AMD64.digest} → {AMD64_REBUILT.digest}" in err
    digest, index = stored(reference)
    assert images_of(index) == [
        ("linux/amd64", AMD64_REBUILT.digest, {}),
        ("linux/arm64/v8", ARM64.digest, {"org.example.built-by": "ci"}),
    ]
    assert index["annotations"] == {"org.opencontainers.image.version": "1"}
    assert skopeo_digest(reference) == digest


def test_appending_what_the_tag_holds_again_changes_nothing(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tag(registry)
    before = publish(reference, archive(tmp_path, AMD64), archive(tmp_path, ARM64))
    capsys.readouterr()
    assert main(["create", "--append", "-t", reference, archive(tmp_path, ARM64)]) == 0
    assert f"is already in {reference}; kept as it is" in capsys.readouterr().err
    assert stored(reference)[0] == before  # the same entries, order and annotations: the same bytes


def test_append_to_a_missing_tag_creates_it(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tag(registry, "append/new")
    output = tmp_path / "out.tar"
    assert main(["create", "--append", "-o", str(output), "-t", reference, archive(tmp_path, ARM64)]) == 0
    assert f"{reference} does not exist yet; creating it (--append)" in capsys.readouterr().err
    digest, index = stored(reference)
    assert images_of(index) == [("linux/arm64/v8", ARM64.digest, {})]
    # -o writes the same merged index
    with ocimerge.open_images(str(output)) as written:
        assert str(written.root_document.descriptor.digest) == digest


def test_append_to_a_single_image_tag(registry: RegistryServer, tmp_path: Path) -> None:
    reference = tag(registry)
    ocimerge.push(archive(tmp_path, ARM), [reference])
    assert stored(reference)[0] == ARM.digest  # the tag names the image manifest itself
    assert main(["create", "--append", "-t", reference, archive(tmp_path, AMD64)]) == 0
    assert [(p, d) for p, d, _ in images_of(stored(reference)[1])] == [
        ("linux/arm/v7", ARM.digest),
        ("linux/amd64", AMD64.digest),
    ]


def attestations_of(index: dict[str, Any]) -> list[str]:
    """The image digest each attestation entry names, in the index's order."""
    return [e["annotations"][REFERENCE_DIGEST] for e in index["manifests"] if e["platform"]["os"] == "unknown"]


def test_append_keeps_attestations_paired_and_replace_takes_them_away(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tag(registry)
    # a BuildKit-style index: two images, each with its provenance attestation after them
    assert main(["create", "-q", "-t", reference, archive(tmp_path, AMD64, ARM64, attestations=True)]) == 0
    assert main(["create", "-q", "--append", "-t", reference, archive(tmp_path, ARM, attestations=True)]) == 0
    index = stored(reference)[1]
    assert [d for _, d, _ in images_of(index)] == [AMD64.digest, ARM64.digest, ARM.digest]
    assert attestations_of(index) == [AMD64.digest, ARM64.digest, ARM.digest]
    capsys.readouterr()
    assert main(["create", "--append", "--replace", "-t", reference, archive(tmp_path, AMD64_REBUILT)]) == 0
    digest, index = stored(reference)
    assert [d for _, d, _ in images_of(index)] == [AMD64_REBUILT.digest, ARM64.digest, ARM.digest]
    assert attestations_of(index) == [ARM64.digest, ARM.digest]  # amd64's went with its image
    assert skopeo_digest(reference) == digest


def test_append_through_the_library(registry: RegistryServer, tmp_path: Path) -> None:
    reference = tag(registry)
    publish(reference, archive(tmp_path, AMD64))
    options = ocimerge.CreateOptions(append=True, replace=True)
    result = ocimerge.create(
        [archive(tmp_path, AMD64_REBUILT), archive(tmp_path, ARM)], tags=[reference], options=options
    )
    assert [str(i.platform) for i in result.images] == ["linux/amd64", "linux/arm/v7"]
    assert [str(m.descriptor.digest) for m in result.assembly.manifests] == [AMD64_REBUILT.digest, ARM.digest]
    assert any(n.startswith(f"replaced linux/amd64 in {reference}") for n in result.notes)
    assert stored(reference)[0] == str(result.index.descriptor.digest)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--replace", "-o", "OUT"], "--replace goes with --append"),
        (["--append", "-o", "OUT"], "--append needs -t REGISTRY/REPO:TAG"),
        (["--drop-annotations", "-o", "OUT"], "--drop-annotations goes with --format docker"),
    ],
)
def test_flags_that_go_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], fragment: str
) -> None:
    flags = [str(tmp_path / "out.tar") if f == "OUT" else f for f in flags]
    assert main(["create", *flags, archive(tmp_path, AMD64)]) == code_for(UsageError)
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "out.tar").exists()


def test_the_tags_index_signature_stays_behind_with_a_note(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tag(registry)
    private, _ = write_keys(tmp_path, "ecdsa")
    assert main(["create", "-q", "--sign-key", str(private), "-t", reference, archive(tmp_path, AMD64)]) == 0
    signed = stored(reference)[0]
    capsys.readouterr()
    assert main(["create", "--append", "-t", reference, archive(tmp_path, ARM64)]) == 0
    err = capsys.readouterr().err
    digest = stored(reference)[0]
    assert digest != signed
    # [REFERRERS-12] the signature names the old index's digest: it cannot travel to the new one
    assert f"{reference}: 1 referrer(s) of the source index do not apply to the merged index" in err
    assert f"sign the new index {digest}" in err


def test_append_with_token_auth_uploads_only_the_new_image(token_registry: RegistryServer, tmp_path: Path) -> None:
    options = RegistryOptions(username="alice", password=USERS["alice"])
    reference = tag(token_registry)
    ocimerge.create([archive(tmp_path, AMD64)], tags=[reference], registry_options=options)
    result = ocimerge.create([archive(tmp_path, ARM64)], tags=[reference], registry_options=options, append=True)
    [pushed] = result.pushed
    # the tag's image is already there: its blobs are skipped, only arm64's config and layer go up
    uploaded = {p.digest for p in pushed.blobs if p.action is BlobAction.UPLOAD}
    assert uploaded == {ocimerge.Digest.parse(d) for d in ARM64.blobs if d != ARM64.digest}
    assert [str(m.descriptor.digest) for m in result.assembly.manifests] == [AMD64.digest, ARM64.digest]


# -- review fixes: what an append cannot carry, and a tag that moves while it runs ---------------


def _put(client: Registry, repository: str, raw: bytes, media_type: str, ref: str) -> str:
    """PUT the document ``raw`` under ``ref`` (a tag or its digest); its digest."""
    digest = ocimerge.Digest.of(raw)
    value = decode_manifest_or_index(raw, media_type=media_type, where="test document")
    document = ocimerge.Document.reached(
        raw, value, ocimerge.Descriptor(media_type, digest, len(raw)), where="test document"
    )
    if ref == "@":
        target = ocimerge.Reference(client.host, repository, digest=digest)
    else:
        target = ocimerge.Reference(client.host, repository, tag=ref)
    client.manifest_put(target, document)
    return str(digest)


def test_append_refuses_an_index_with_entries_it_cannot_carry(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tag holding an image and a Helm chart: an append would drop the chart, so it refuses."""
    reference = tag(registry)
    publish(reference, archive(tmp_path, AMD64))
    parsed = ocimerge.Reference.parse(reference)
    helm_config = b"{}"
    chart = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.cncf.helm.config.v1+json",
                "digest": str(ocimerge.Digest.of(helm_config)),
                "size": len(helm_config),
            },
            "layers": [],
        }
    ).encode()
    _, index = stored(reference)
    with Registry(parsed.registry) as client:
        client.upload(
            parsed.repository,
            ocimerge.Blob.from_bytes(
                ocimerge.Descriptor("application/vnd.cncf.helm.config.v1+json", ocimerge.Digest.of(helm_config), 2),
                helm_config,
                "helm config",
            ),
        )
        chart_digest = _put(client, parsed.repository, chart, "application/vnd.oci.image.manifest.v1+json", "@")
        index["manifests"].append(
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": chart_digest, "size": len(chart)}
        )
        _put(client, parsed.repository, json.dumps(index).encode(), index["mediaType"], parsed.tag or "1")
    before, _ = stored(reference)

    assert main(["create", "--append", "-t", reference, archive(tmp_path, ARM64)]) == code_for(ocimerge.InputError)
    err = capsys.readouterr().err
    assert "--append cannot carry" in err
    assert chart_digest.split(":")[1][:12] in err
    assert err.count("\n") == 1
    assert stored(reference)[0] == before  # the tag, chart and all, is as it was


def test_append_does_not_overwrite_a_tag_pushed_while_it_ran(registry: RegistryServer, tmp_path: Path) -> None:
    """[INDEX-9] Someone pushes to the tag after the append read it: the append tags nothing."""
    reference = tag(registry)
    publish(reference, archive(tmp_path, AMD64))
    meanwhile = archive(tmp_path, ARM)
    pushed_meanwhile: list[str] = []

    def someone_pushes(_event: ocimerge.PushEvent) -> None:
        if not pushed_meanwhile:  # once, when our push starts moving blobs
            pushed_meanwhile.append(str(ocimerge.push(meanwhile, [reference]).root.digest))

    with pytest.raises(ocimerge.TagMovedError, match="someone pushed since; no tag was written") as raised:
        ocimerge.create([archive(tmp_path, ARM64)], tags=[reference], append=True, on_event=someone_pushes)
    assert pushed_meanwhile
    assert stored(reference)[0] == pushed_meanwhile[0]  # their push stands
    partial = ocimerge.partial_result(raised.value)
    assert partial is not None
    assert [f.repository for f in partial.failed] == [ocimerge.Reference.parse(reference).repository]


def test_the_summary_table_lists_images_in_the_index_order(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table after an append is the index as written: the tag's entries first, not re-sorted."""
    reference = tag(registry)
    publish(reference, archive(tmp_path, ARM64))
    capsys.readouterr()
    assert main(["create", "--append", "-t", reference, archive(tmp_path, AMD64)]) == 0
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.splitlines() if line.strip().startswith("linux/")]
    _, index = stored(reference)
    assert rows == [p for p, _, _ in images_of(index)] == ["linux/arm64/v8", "linux/amd64"]


def test_appending_an_oci_image_to_a_docker_list_says_the_format_changes(
    registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tag(registry)
    assert main(["create", "-q", "--format", "docker", "-t", reference, archive(tmp_path, AMD64)]) == 0
    capsys.readouterr()
    assert main(["create", "--append", "-t", reference, archive(tmp_path, ARM64)]) == 0
    assert "was a Docker manifest list; the new index is an OCI index" in capsys.readouterr().err
    assert stored(reference)[1]["mediaType"] == "application/vnd.oci.image.index.v1+json"
