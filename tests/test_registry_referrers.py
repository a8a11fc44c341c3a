"""The referrers endpoints ([REFAPI-1] .. [REFAPI-6]) against real registries.

The referrers API runs on :class:`ocimerge.testing.Registry` (which serves it, with the
``artifactType`` filter, and answers ``OCI-Subject``); the fallback tag on the suite's
Distribution 2.8, which has no referrers API, and on the in-process registry with
``Behaviour(referrers=False)``. Neither registry pages a referrers list, so pagination and
hostile pages go through ``httpx.MockTransport``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from imagebuilder import Image, descriptor, dumps
from ocimerge.content import Blob
from ocimerge.errors import RegistryError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageManifest, decode_manifest
from ocimerge.model.reference import Reference
from ocimerge.model.referrers import fallback_tag, referrer_descriptor
from ocimerge.registry.api import Registry
from ocimerge.registry.credentials import Credentials
from ocimerge.registry.referrers import MAX_REFERRERS_PAGE, put_manifest_with_subject, referrers, update_fallback_tag
from ocimerge.testing import Behaviour, TokenAuth
from ocimerge.testing import Registry as InProcessRegistry
from registries import RegistryServer

SBOM = "application/spdx+json"
SIGNATURE = "application/vnd.example.signature"
PROVENANCE = "application/vnd.in-toto+json"


@pytest.fixture(scope="module")
def with_api() -> Iterator[InProcessRegistry]:
    with InProcessRegistry() as registry:
        yield registry


@pytest.fixture(scope="module")
def without_api() -> Iterator[InProcessRegistry]:
    with InProcessRegistry(behaviour=Behaviour(referrers=False)) as registry:
        yield registry


def push_blob(client: Registry, repository: str, data: bytes, media_type: str = "application/octet-stream") -> None:
    blob = Blob.from_bytes(Descriptor(media_type, Digest.of(data), len(data)), data, "test blob")
    client.upload(repository, blob)


def document(raw: bytes) -> Document[ImageManifest]:
    return Document.reached(raw, decode_manifest(raw), Descriptor(mt.OCI_MANIFEST, Digest.of(raw), len(raw)), where="t")


def push_image(client: Registry, repository: str, image: Image) -> Descriptor:
    """The image's blobs and manifest, pushed; the manifest's descriptor."""
    for digest, data in image.blobs.items():
        if digest != image.digest:
            push_blob(client, repository, data)
    manifest = document(image.manifest)
    client.manifest_put(Reference.parse(f"{client.host}/{repository}:1"), manifest)
    return manifest.descriptor


def artifact(subject: Descriptor, artifact_type: str, payload: bytes, **annotations: str) -> bytes:
    """An artifact manifest whose ``subject`` is ``subject``: the empty config, one layer."""
    value: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(mt.OCI_EMPTY, b"{}"),
        "layers": [descriptor("application/octet-stream", payload)],
        "subject": subject.to_json(),
    }
    if annotations:
        value["annotations"] = annotations
    return dumps(value)


def push_artifact(
    client: Registry, repository: str, subject: Descriptor, artifact_type: str, payload: bytes, **annotations: str
) -> tuple[Document[ImageManifest], bool]:
    """The artifact pushed by digest: its document, and whether OCI-Subject was answered."""
    push_blob(client, repository, b"{}", mt.OCI_EMPTY)
    push_blob(client, repository, payload)
    doc = document(artifact(subject, artifact_type, payload, **annotations))
    reference = Reference.parse(f"{client.host}/{repository}@{doc.descriptor.digest}")
    return doc, put_manifest_with_subject(client, reference, doc)


# -- the referrers API, on the in-process registry ---------------------------------------------


def test_the_api_lists_referrers_filtered_by_type(with_api: InProcessRegistry) -> None:
    """[REFAPI-1][REFAPI-5] OCI-Subject answered; the list carries artifactType and annotations;
    one type is filtered by the registry, two here; an empty list is still the API."""
    with Registry(with_api.host) as client:
        image = push_image(client, "team/api", Image())
        sbom, sbom_subject = push_artifact(client, "team/api", image, SBOM, b"sbom", **{"org.example.kind": "sbom"})
        sig, sig_subject = push_artifact(client, "team/api", image, SIGNATURE, b"sig")
        assert (sbom_subject, sig_subject) == (True, True)
        found = referrers(client, "team/api", image.digest)
        assert (found.how, found.has_api, found.notes) == ("api", True, ())
        by_type = {d.artifact_type: d for d in found.descriptors}
        assert set(by_type) == {SBOM, SIGNATURE}
        assert by_type[SBOM].digest == sbom.descriptor.digest
        assert by_type[SBOM].annotation("org.example.kind") == "sbom"
        assert by_type[SIGNATURE].digest == sig.descriptor.digest
        before = len(with_api.requests())
        one = referrers(client, "team/api", image.digest, artifact_types=(SBOM,))
        asked = [path for method, path, _ in with_api.requests()[before:] if method == "GET"]
        assert asked == [f"/v2/team/api/referrers/{image.digest}?artifactType=application%2Fspdx%2Bjson"]
        assert [d.digest for d in one.descriptors] == [sbom.descriptor.digest]
        two = referrers(client, "team/api", image.digest, artifact_types=(SIGNATURE, PROVENANCE))
        assert [d.digest for d in two.descriptors] == [sig.descriptor.digest]
        nothing = referrers(client, "team/api", sig.descriptor.digest)
        assert (nothing.how, nothing.descriptors, nothing.has_api) == ("api", (), True)


def test_without_the_api_the_fallback_tag_is_read(without_api: InProcessRegistry) -> None:
    """[REFAPI-3][REFAPI-4][REFAPI-6] No OCI-Subject, no list ("none"); the tag made, then "tag"."""
    with Registry(without_api.host) as client:
        image = push_image(client, "team/noapi", Image(architecture="arm64"))
        doc, answered = push_artifact(client, "team/noapi", image, SBOM, b"sbom")
        assert answered is False
        assert referrers(client, "team/noapi", image.digest).how == "none"
        update_fallback_tag(client, "team/noapi", image.digest, referrer_descriptor(doc))
        found = referrers(client, "team/noapi", image.digest)
        assert (found.how, found.has_api) == ("tag", False)
        assert [d.digest for d in found.descriptors] == [doc.descriptor.digest]


def test_the_api_and_the_tag_behind_bearer_tokens() -> None:
    """[REFAPI-1][REFAPI-4] The referrers path takes the repository's pull token (the auth
    flow reads the repository from it); a pull-only user lists what a pusher attached."""
    auth = TokenAuth({"alice": "alice-pw", "bob": "bob-pw"}, {"alice": [("*", "pull,push")], "bob": [("*", "pull")]})
    for behaviour in (Behaviour(), Behaviour(referrers=False)):
        with InProcessRegistry(auth=auth, behaviour=behaviour) as served:
            with Registry(served.host, credentials=Credentials("test", "alice", "alice-pw")) as alice:
                image = push_image(alice, "team/tokens", Image(architecture="arm"))
                sbom, answered = push_artifact(alice, "team/tokens", image, SBOM, b"sbom")
                if not answered:
                    update_fallback_tag(alice, "team/tokens", image.digest, referrer_descriptor(sbom))
            with Registry(served.host, credentials=Credentials("test", "bob", "bob-pw")) as bob:
                found = referrers(bob, "team/tokens", image.digest)
            assert (found.how, [d.digest for d in found.descriptors]) == (
                "api" if behaviour.referrers else "tag",
                [sbom.descriptor.digest],
            )


def test_a_document_without_subject_is_refused(with_api: InProcessRegistry) -> None:
    """[REFAPI-5] put_manifest_with_subject wants a subject."""
    image = Image(architecture="s390x")
    with Registry(with_api.host) as client, pytest.raises(UsageError, match="no subject"):
        put_manifest_with_subject(client, Reference.parse(f"{client.host}/team/x:1"), document(image.manifest))


# -- the fallback tag, on Distribution 2.8 --------------------------------------------------------


def test_fallback_tag_on_distribution(registry: RegistryServer) -> None:
    """[REFAPI-3] Distribution 2.8 answers the referrers path 404 (plain text) and no OCI-Subject;
    [REFAPI-6] the tag's index is read, added to, written back, and keeps the first referrer."""
    if not registry.is_distribution:
        pytest.skip("this run's registry serves the referrers API; the fallback path needs Distribution 2.8")
    repository = "team/fallback"
    with Registry(registry.host) as client:
        image = push_image(client, repository, Image(architecture="riscv64"))
        assert referrers(client, repository, image.digest).how == "none"
        sbom, answered = push_artifact(client, repository, image, SBOM, b"sbom", **{"org.example.kind": "sbom"})
        assert answered is False
        first = update_fallback_tag(client, repository, image.digest, referrer_descriptor(sbom))
        assert first.descriptor.media_type == mt.OCI_INDEX
        sig, _ = push_artifact(client, repository, image, SIGNATURE, b"sig")
        second = update_fallback_tag(client, repository, image.digest, referrer_descriptor(sig))
        assert [d.digest for d in second.value.manifests] == [sbom.descriptor.digest, sig.descriptor.digest]
        before = len(registry.requests())
        again = update_fallback_tag(client, repository, image.digest, referrer_descriptor(sig))
        assert again.raw == second.raw
        assert not [r for r in registry.requests()[before:] if r[0] == "PUT"]  # listed already: nothing PUT
        stored = client.manifest_get(Reference.parse(f"{client.host}/{repository}:{fallback_tag(image.digest)}"))
        assert stored.raw == second.raw
        found = referrers(client, repository, image.digest)
        assert found.how == "tag"
        by_type = {d.artifact_type: d for d in found.descriptors}
        assert set(by_type) == {SBOM, SIGNATURE}
        assert by_type[SBOM].annotation("org.example.kind") == "sbom"
        only = referrers(client, repository, image.digest, artifact_types=(SIGNATURE,))
        assert [d.digest for d in only.descriptors] == [sig.descriptor.digest]
    # what it answered there: its router's plain-text 404 (its log has no line for it)
    answer = httpx.get(f"http://{registry.host}/v2/{repository}/referrers/{image.digest}")
    assert (answer.status_code, answer.text.strip()) == (404, "404 page not found")


def test_an_image_at_the_fallback_tag_is_no_list(registry: RegistryServer) -> None:
    """[REFAPI-4] A tag holding the image itself (as GitLab is said to answer), or another
    manifest, is noted and ignored; [REFAPI-6] updating it is refused and leaves it."""
    if not registry.is_distribution:
        pytest.skip("this run's registry serves the referrers API; the fallback path needs Distribution 2.8")
    repository = "team/gitlab"
    with Registry(registry.host) as client:
        image = push_image(client, repository, Image(architecture="ppc64le"))
        other = push_image(client, repository, Image(architecture="mips64le"))
        tag = Reference.parse(f"{client.host}/{repository}:{fallback_tag(image.digest)}")
        sbom, _ = push_artifact(client, repository, image, SBOM, b"sbom")
        for held, says in ((image, "itself"), (other, "not an OCI image index of referrers")):
            client.manifest_put(tag, client.manifest_get(Reference.parse(f"{client.host}/{repository}@{held.digest}")))
            found = referrers(client, repository, image.digest)
            assert (found.how, found.descriptors) == ("none", ())
            [note] = found.notes
            assert says in note
            assert fallback_tag(image.digest) in note
            with pytest.raises(RegistryError, match="left as it is"):
                update_fallback_tag(client, repository, image.digest, referrer_descriptor(sbom))
            assert client.manifest_get(tag).descriptor.digest == held.digest


# -- what no registry here produces: pages, and hostile pages -------------------------------------

SUBJECT = Digest.of(b"subject")


def entry(n: int, artifact_type: str = SBOM) -> dict[str, Any]:
    return {**descriptor(mt.OCI_MANIFEST, f"referrer {n}".encode()), "artifactType": artifact_type}


def index(*entries: dict[str, Any]) -> bytes:
    return dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": list(entries)})


def mock(answer: Callable[[httpx.Request], httpx.Response]) -> tuple[Registry, list[str]]:
    """A client whose registry is ``answer`` (after a 200 ping), and the referrers URLs it asked for."""
    asked: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        asked.append(str(request.url))
        return answer(request)

    return Registry("reg.example", transport=httpx.MockTransport(handle), credentials=None), asked


def test_pages_follow_link_and_stop_at_a_repeated_link() -> None:
    """[REFAPI-2] Link pages are followed, relative or absolute; a link back to a page seen ends it."""
    path = f"/v2/app/referrers/{SUBJECT}"

    def answer(request: httpx.Request) -> httpx.Response:
        page = request.url.params.get("page", "1")
        links = {"1": f'<{path}?page=2>; rel="next"', "2": f'<https://reg.example{path}?page=3>; rel="next"'}
        bodies = {"1": index(entry(1), entry(2)), "2": index(entry(3, SIGNATURE)), "3": index(entry(1))}
        headers = {"Content-Type": mt.OCI_INDEX}
        if page in links:
            headers["Link"] = links[page]
        if page == "3":
            headers["Link"] = f'<{path}?page=2>; rel="next"'  # back to page 2: seen already
        return httpx.Response(200, headers=headers, content=bodies[page])

    client, asked = mock(answer)
    with client:
        found = referrers(client, "app", SUBJECT)
    assert found.how == "api"
    assert [d.digest for d in found.descriptors] == [Digest.parse(entry(n)["digest"]) for n in (1, 2, 3)]
    assert len(asked) == 3


def test_a_link_that_never_ends_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    """[REFAPI-2][SEC-8] A registry paging forever (a new link every time) meets the page cap."""
    monkeypatch.setattr("ocimerge.registry.referrers.MAX_REFERRERS_PAGES", 5)

    def answer(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params.get("page", "0")) + 1
        link = f'</v2/app/referrers/{SUBJECT}?page={n}>; rel="next"'
        return httpx.Response(200, headers={"Link": link}, content=index(entry(n)))

    client, asked = mock(answer)
    with client, pytest.raises(RegistryError, match="run past 5 pages"):
        referrers(client, "app", SUBJECT)
    assert len(asked) == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b" " * (MAX_REFERRERS_PAGE + 1), "over 4 MiB"),
        (dumps({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": []}), "not an OCI image index"),
        (Image().manifest, "not an OCI image index"),
        (b'{"schemaVersion":2,"manifests":[],"manifests":[]}', "duplicate member"),
        (b"[" * 10_000 + b"]" * 10_000, "nested deeper"),
        (b"<html>not found</html>", "invalid JSON"),
    ],
    ids=["over-the-cap", "docker-list", "a-manifest", "duplicate-keys", "deep", "html"],
)
def test_a_hostile_page_is_refused(body: bytes, message: str) -> None:
    """[REFAPI-2] Each page: at most 4 MiB, strict JSON, an OCI image index."""
    client, _ = mock(lambda _request: httpx.Response(200, content=body))
    with client, pytest.raises(RegistryError, match=message):
        referrers(client, "app", SUBJECT)


@pytest.mark.parametrize("status", [400, 404, 405])
def test_no_api_statuses_fall_back_to_the_tag(status: int) -> None:
    """[REFAPI-3] 400, 404 (any body) and 405 on the referrers path mean no API: the tag is read."""
    tagged = index(entry(7))

    def answer(request: httpx.Request) -> httpx.Response:
        if "/referrers/" in request.url.path:
            return httpx.Response(status, json={"errors": [{"code": "NAME_UNKNOWN", "message": "x"}]})
        headers = {"Content-Type": mt.OCI_INDEX, "Docker-Content-Digest": str(Digest.of(tagged))}
        return httpx.Response(200, headers=headers, content=tagged)

    client, asked = mock(answer)
    with client:
        found = referrers(client, "app", SUBJECT)
    assert (found.how, [d.digest for d in found.descriptors]) == ("tag", [Digest.parse(entry(7)["digest"])])
    assert asked[-1] == f"https://reg.example/v2/app/manifests/{fallback_tag(SUBJECT)}"


def test_oci_subject_naming_another_digest_is_not_trusted() -> None:
    """[REFAPI-5] An OCI-Subject that names another digest than the subject's is no promise."""
    subject = Descriptor(mt.OCI_MANIFEST, SUBJECT, 7)
    doc = document(artifact(subject, SBOM, b"x"))
    answers = iter([str(SUBJECT), str(Digest.of(b"other"))])

    def answer(_request: httpx.Request) -> httpx.Response:
        headers = {"Docker-Content-Digest": str(doc.descriptor.digest), "OCI-Subject": next(answers)}
        return httpx.Response(201, headers=headers)

    client, _ = mock(answer)
    reference = Reference.parse(f"reg.example/app@{doc.descriptor.digest}")
    with client:
        assert put_manifest_with_subject(client, reference, doc) is True
        assert put_manifest_with_subject(client, reference, doc) is False
