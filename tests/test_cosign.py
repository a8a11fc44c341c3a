"""cosign key-based signatures: the payload, the signature manifest, keys, signing, verifying.

[COSIGN-1] .. [COSIGN-9]. The artifacts checked are built by ``signing.py`` with
``cryptography`` and ``json`` alone, and the real cosign signature in the corpus is read in
place, so the format is held to cosign's own output, not to ocimerge's.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ocimerge.content import FOUND_BY_COSIGN, Blob, Referrer
from ocimerge.errors import DocumentError, ModelError, UsageError
from ocimerge.model import mediatype as mt
from ocimerge.model.cosign import (
    MAX_PAYLOAD_SIZE,
    SIGNATURE_ANNOTATION,
    SIGNATURE_ARTIFACT_TYPE,
    SIMPLE_SIGNING_MEDIA_TYPE,
    Payload,
    is_signature,
    parse_payload,
    signature_config,
    signature_entries,
    signature_manifest,
    simple_signing_payload,
)
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import Document, ImageManifest, decode_manifest
from ocimerge.model.referrers import cosign_tag
from ocimerge.signatures import (
    FOUND_SIGNED,
    PublicKey,
    check_signatures,
    load_private_key,
    load_public_key,
    make_signature,
    sign_payload,
    verify_payload,
)
from signing import (
    KINDS,
    Artifact,
    intoto_attestation_for,
    make_key,
    sign,
    signature_for,
    write_keys,
)
from signing import simple_signing_payload as independent_payload

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "singularity" / "hello-world-cosign-manifest"
CORPUS_SUBJECT = Digest.parse("sha256:432f982638b3aefab73cc58ab28f5c16e96fdb504e8c134fc58dff4bae8bf338")
IMAGE = Digest.parse("sha256:8e078fd79740ab0f1babb5aacef28b6bb8b87e22004f9e2b18c3d84114287796")
SUBJECT = Descriptor(mt.OCI_MANIFEST, IMAGE, 401)
ED25519_PEM = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n-----END PRIVATE KEY-----\n"
REF_NAME = "org.opencontainers.image.ref.name"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is not on this machine")


def corpus_blob(digest: str) -> bytes:
    return (CORPUS / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def corpus_tagged(suffix: str) -> bytes:
    """The manifest the corpus layout tags ``_cosign:<subject tag>.<suffix>``."""
    index = json.loads((CORPUS / "index.json").read_text())
    wanted = "_cosign:" + cosign_tag(CORPUS_SUBJECT, suffix)
    (entry,) = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) == wanted]
    return corpus_blob(entry["digest"])


def referrer_of(
    artifact: Artifact,
    subject: Digest = IMAGE,
    *,
    found: str = FOUND_BY_COSIGN,
    swap: dict[str, bytes] | None = None,
) -> Referrer:
    """The referrer a source would make of ``artifact``; ``swap`` replaces blob bytes by digest."""
    raw = artifact["manifest"]
    manifest = decode_manifest(raw)
    document = Document(raw, manifest, Descriptor(mt.OCI_MANIFEST, Digest.of(raw), len(raw)))
    blobs = []
    for descriptor in (manifest.config, *manifest.layers):
        data = (swap or {}).get(str(descriptor.digest), artifact["blobs"].get(str(descriptor.digest)))
        opener = None if data is None else Blob.from_bytes(descriptor, data, "test").opener
        blobs.append(Blob(descriptor, opener, f"test blob {descriptor.digest.short}"))
    return Referrer(subject=subject, document=document, blobs=tuple(blobs), found=found, tag=cosign_tag(subject, "sig"))


def public_key(kind: str) -> PublicKey:
    key = serialization.load_pem_public_key(make_key(kind)[1])
    assert not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name in ("secp256r1", "secp384r1")
    return key  # type: ignore[return-value]


# --- [COSIGN-1] the payload ------------------------------------------------------------------


@needs_corpus
def test_payload_bytes_are_cosigns() -> None:
    """[COSIGN-1] The corpus payload, written by cosign, is reproduced byte for byte."""
    manifest = decode_manifest(corpus_tagged("sig"))
    ((layer, _),) = signature_entries(manifest)
    raw = corpus_blob(str(layer.digest))
    payload = parse_payload(raw, "corpus payload")
    assert simple_signing_payload(payload.docker_reference, payload.digest) == raw


def test_payload_matches_independent_encoding() -> None:
    assert simple_signing_payload("example.com/app", IMAGE) == independent_payload(str(IMAGE), "example.com/app")


@pytest.mark.parametrize(
    ("optional", "expected"),
    [
        (None, b'"optional":null}'),
        ({}, b'"optional":{}}'),
        ({"b": "2", "a": "1"}, b'"optional":{"a":"1","b":"2"}}'),
        ({"x": "<&>"}, b'"optional":{"x":"\\u003c\\u0026\\u003e"}}'),
        ({"x": "a\u2028b\u2029"}, b'"optional":{"x":"a\\u2028b\\u2029"}}'),
        ({"x": 'q"\\\n\x01'}, b'"optional":{"x":"q\\"\\\\\\n\\u0001"}}'),
        ({"x": "caf\u00e9"}, '"optional":{"x":"caf\u00e9"}}'.encode()),
    ],
)
def test_payload_optional_is_a_go_map(optional: dict[str, str] | None, expected: bytes) -> None:
    """[COSIGN-1] Sorted keys, null for None, and Go's escapes (HTML characters, U+2028/9)."""
    raw = simple_signing_payload("r", IMAGE, optional)
    assert raw.endswith(expected)
    assert json.loads(raw)["optional"] == optional


def test_payload_refuses_lone_surrogates() -> None:
    with pytest.raises(UsageError, match="lone surrogate"):
        simple_signing_payload("r\ud800", IMAGE)


# --- [COSIGN-2] parsing ----------------------------------------------------------------------

GOOD = simple_signing_payload("example.com/app", IMAGE, {"by": "ci"})


def _edit(**changes: Any) -> bytes:
    value = json.loads(GOOD)
    for path, new in changes.items():
        *parents, last = path.split("__")
        target = value
        for part in parents:
            target = target[part]
        if new is KeyError:
            del target[last.replace("_", "-")]
        else:
            target[last.replace("_", "-")] = new
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_edit(critical__type="atomic container signature"), "critical.type is 'atomic container signature'"),
        (_edit(critical__type=KeyError), "critical.type is None"),
        (_edit(critical__image__docker_manifest_digest="sha256:abc"), "docker-manifest-digest: invalid sha256"),
        (_edit(critical__image__docker_manifest_digest="latest"), "docker-manifest-digest: invalid digest"),
        (_edit(critical__image__docker_manifest_digest=KeyError), "docker-manifest-digest must be a digest"),
        (_edit(critical__image=[]), "'image' must be an object"),
        (_edit(critical=None), "'critical' must be an object"),
        (_edit(critical__identity__docker_reference=7), "docker-reference must be a string"),
        (_edit(critical__identity="example.com/app"), "docker-reference must be a string"),
        (_edit(optional=["a"]), "'optional' must be an object or null"),
        (b"not json", "invalid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"critical":{},"critical":{}}', "duplicate member name"),
        (b"\xff", "not UTF-8"),
        (GOOD.replace(b"docker-manifest-digest", b"Docker-manifest-digest"), "docker-manifest-digest must be a digest"),
        (b" " * (MAX_PAYLOAD_SIZE + 1), f"over the {MAX_PAYLOAD_SIZE}-byte limit"),
    ],
)
def test_parse_payload_refuses(raw: bytes, message: str) -> None:
    """[COSIGN-2] One-line DocumentError naming the payload, for each way it can be wrong."""
    with pytest.raises(DocumentError, match="^payload X: .*" + message.replace("(", r"\(")) as caught:
        parse_payload(raw, "payload X")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (GOOD, Payload("example.com/app", IMAGE, {"by": "ci"})),
        (_edit(critical__identity=KeyError), Payload("", IMAGE, {"by": "ci"})),
        (_edit(optional=None), Payload("example.com/app", IMAGE)),
        (_edit(optional={"n": 1, "s": "x"}), Payload("example.com/app", IMAGE, {"s": "x"})),
        (GOOD + b" " * (MAX_PAYLOAD_SIZE - len(GOOD)), Payload("example.com/app", IMAGE, {"by": "ci"})),
    ],
)
def test_parse_payload_reads(raw: bytes, expected: Payload) -> None:
    assert parse_payload(raw, "payload") == expected


# --- [COSIGN-3] [COSIGN-4] the manifest ------------------------------------------------------


@needs_corpus
def test_corpus_signature_is_found() -> None:
    """[COSIGN-3] The real cosign signature: its annotation found, its payload naming the image.

    Its public key is not in the corpus, so the signature itself cannot be verified here (and
    is not pretended to be): only its format is checked.
    """
    manifest = decode_manifest(corpus_tagged("sig"))
    assert is_signature(manifest)
    ((layer, signature),) = signature_entries(manifest)
    assert layer.media_type == SIMPLE_SIGNING_MEDIA_TYPE
    assert signature == manifest.layers[0].annotation(SIGNATURE_ANNOTATION)
    assert base64.b64decode(signature, validate=True)[0] == 0x30  # an ECDSA DER SEQUENCE
    payload = parse_payload(corpus_blob(str(layer.digest)), "corpus payload")
    assert payload.digest == CORPUS_SUBJECT
    assert str(payload.digest) == "sha256:432f982638b3aefab73cc58ab28f5c16e96fdb504e8c134fc58dff4bae8bf338"


@needs_corpus
def test_corpus_config_is_what_we_write() -> None:
    """[COSIGN-4] The config cosign wrote for the corpus signature is signature_config's bytes."""
    manifest = decode_manifest(corpus_tagged("sig"))
    assert signature_config(manifest.layers) == corpus_blob(str(manifest.config.digest))
    document, config = signature_manifest(signature_entries(manifest), subject=None)
    assert document.value.config == manifest.config
    assert document.value.layers == manifest.layers
    assert config == corpus_blob(str(manifest.config.digest))


@needs_corpus
def test_corpus_attestation_is_not_a_signature() -> None:
    """[COSIGN-3] A DSSE attestation layer carries an empty signature annotation: not a signature."""
    assert not is_signature(decode_manifest(corpus_tagged("att")))


def test_signature_manifest_layout() -> None:
    """[COSIGN-4] Layers annotated, one diff_id and history entry per layer, subject optional."""
    payloads = [simple_signing_payload("r", IMAGE), simple_signing_payload("r", IMAGE, {"n": "2"})]
    layers = [Descriptor(SIMPLE_SIGNING_MEDIA_TYPE, Digest.of(p), len(p)) for p in payloads]
    document, config = signature_manifest([(layers[0], "c2ln"), (layers[1], "b3RoZXI=")], subject=SUBJECT)
    manifest = document.value
    assert [text for _, text in signature_entries(manifest)] == ["c2ln", "b3RoZXI="]
    assert manifest.artifact_type == SIGNATURE_ARTIFACT_TYPE
    assert manifest.subject == SUBJECT
    assert manifest.config == Descriptor(mt.OCI_CONFIG, Digest.of(config), len(config))
    value = json.loads(config)
    assert value["rootfs"]["diff_ids"] == [str(layer.digest) for layer in layers]
    assert len(value["history"]) == 2
    assert document.descriptor.digest == Digest.of(document.raw)
    assert decode_manifest(document.raw) == manifest
    plain, _ = signature_manifest([(layers[0], "c2ln")], subject=None)
    assert plain.value.subject is None
    assert plain.value.artifact_type is None


def test_signature_manifest_subject_is_reduced() -> None:
    rich = Descriptor(mt.OCI_MANIFEST, IMAGE, 401, annotations={"a": "b"}, artifact_type="x/y")
    document, _ = signature_manifest([(Descriptor(SIMPLE_SIGNING_MEDIA_TYPE, IMAGE, 1), "c2ln")], subject=rich)
    assert document.value.subject == SUBJECT


@pytest.mark.parametrize("signatures", [[], [(Descriptor(SIMPLE_SIGNING_MEDIA_TYPE, IMAGE, 1), "")]])
def test_signature_manifest_refuses_nothing_to_sign(signatures: list[tuple[Descriptor, str]]) -> None:
    with pytest.raises(UsageError):
        signature_manifest(signatures, subject=None)


def test_entries_need_the_media_type_and_a_signature() -> None:
    config = Descriptor(mt.OCI_CONFIG, IMAGE, 2)
    unsigned = Descriptor(SIMPLE_SIGNING_MEDIA_TYPE, IMAGE, 1)
    other = Descriptor(mt.OCI_LAYER_GZIP, IMAGE, 1, annotations={SIGNATURE_ANNOTATION: "c2ln"})
    manifest = ImageManifest(config=config, layers=(unsigned, other))
    assert signature_entries(manifest) == ()
    assert not is_signature(manifest)


# --- [COSIGN-6] keys -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_keys_load(tmp_path: Path, kind: str) -> None:
    private_path, public_path = write_keys(tmp_path, kind)
    private = load_private_key(str(private_path), None)
    public = load_public_key(str(public_path))
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    assert private.public_key().public_bytes(serialization.Encoding.PEM, raw) == public.public_bytes(
        serialization.Encoding.PEM, raw
    )


def test_traditional_and_encrypted_private_keys(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    traditional = tmp_path / "ec.pem"
    traditional.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    assert isinstance(load_private_key(str(traditional), None), ec.EllipticCurvePrivateKey)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter2-secret"),
        )
    )
    assert isinstance(load_private_key(str(encrypted), b"hunter2-secret"), ec.EllipticCurvePrivateKey)
    for password, message in ((b"wrong-secret", "password is wrong"), (None, "a password is needed")):
        with pytest.raises(UsageError, match=message) as caught:
            load_private_key(str(encrypted), password)
        assert "secret" not in str(caught.value)
        assert "\n" not in str(caught.value)
    # a password for a plain key is ignored: CI sets COSIGN_PASSWORD for every job
    loaded = load_private_key(str(traditional), b"hunter2-secret")
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert loaded.private_numbers() == key.private_numbers()


def test_cosign_encrypted_key_is_recognised(tmp_path: Path) -> None:
    """[COSIGN-6] cosign's scrypt + secretbox PEM: refused, with the way to a PKCS#8 PEM."""
    for kind in ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"):
        path = tmp_path / "cosign.key"
        body = base64.b64encode(b'{"kdf":{"name":"scrypt"},"cipher":{"name":"nacl/secretbox"}}').decode()
        path.write_text(f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n")
        with pytest.raises(UsageError, match=r"cosign-encrypted private key.*PKCS#8") as caught:
            load_private_key(str(path), b"hunter2-secret")
        message = str(caught.value)
        assert str(path) in message
        assert "hunter2" not in message
        assert body[:16] not in message
        assert "\n" not in message


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _pem_public(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def test_public_key_refusals(tmp_path: Path) -> None:
    """[COSIGN-6] Every refusal is a one-line UsageError naming the file."""
    cases = {
        str(tmp_path / "absent.pub"): "no such file",
        str(tmp_path): "is a directory",
        _write(tmp_path, "text.pub", b"hello"): "not a PEM public key",
        _write(tmp_path, "private.pub", make_key("ecdsa")[0]): "not a PEM public key",
        _write(tmp_path, "bad.pub", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"): "not a valid",
        _write(tmp_path, "huge.pub", b"-" * 70000): "over 65536 bytes",
        _write(tmp_path, "p521.pub", _pem_public(ec.generate_private_key(ec.SECP521R1()).public_key())): "secp521r1",
        _write(
            tmp_path, "rsa1024.pub", _pem_public(rsa.generate_private_key(65537, 1024).public_key())
        ): "1024 bits; at least 2048",
    }
    for path, message in cases.items():
        with pytest.raises(UsageError, match=message) as caught:
            load_public_key(path)
        assert str(caught.value).startswith(f"key file {path}: ")
        assert "\n" not in str(caught.value)


def test_private_key_refusals(tmp_path: Path) -> None:
    public = _write(tmp_path, "cosign.pub", make_key("ecdsa")[1])
    with pytest.raises(UsageError, match="not a PEM private key"):
        load_private_key(public, None)
    garbage = _write(tmp_path, "bad.key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(UsageError, match=r"not a valid PEM private key$"):
        load_private_key(garbage, None)
    with pytest.raises(UsageError, match="no such file"):
        load_private_key(str(tmp_path / "absent.key"), None)


# --- [COSIGN-7] signing and verifying --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_sign_verify_round_trip(tmp_path: Path, kind: str) -> None:
    private_path, public_path = write_keys(tmp_path, kind)
    private, public = load_private_key(str(private_path), None), load_public_key(str(public_path))
    signature = sign_payload(private, GOOD)
    assert verify_payload(public, GOOD, signature)
    # [COSIGN-7] tampered payload, another key, mangled or non-base64 text: False, never raised
    assert not verify_payload(public, GOOD.replace(b"example.com", b"example.org"), signature)
    other = next(k for k in KINDS if k != kind)
    assert not verify_payload(public, GOOD, base64.b64encode(sign(make_key(other)[0], GOOD)).decode())
    for bad in ("", "not base64!", "é", signature[:-4], base64.b64encode(b"\x30\x00").decode()):
        assert not verify_payload(public, GOOD, bad)


@pytest.mark.parametrize("kind", KINDS)
def test_signatures_agree_with_the_independent_signer(tmp_path: Path, kind: str) -> None:
    """[COSIGN-7] What signing.py signs (cosign's scheme, stated independently) verifies here."""
    public = load_public_key(str(write_keys(tmp_path, kind)[1]))
    assert verify_payload(public, GOOD, base64.b64encode(sign(make_key(kind)[0], GOOD)).decode())


def test_ecdsa_uses_the_curves_hash() -> None:
    """[COSIGN-7] P-384 signs over SHA-384; SHA-256 (cosign verify's default) also verifies."""
    private = serialization.load_pem_private_key(make_key("ecdsa-p384")[0], None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    public = private.public_key()
    signature = base64.b64decode(sign_payload(private, GOOD))
    public.verify(signature, GOOD, ec.ECDSA(hashes.SHA384()))
    by_sha256 = base64.b64encode(private.sign(GOOD, ec.ECDSA(hashes.SHA256()))).decode()
    assert verify_payload(public, GOOD, by_sha256)
    by_sha512 = base64.b64encode(private.sign(GOOD, ec.ECDSA(hashes.SHA512()))).decode()
    assert not verify_payload(public, GOOD, by_sha512)


def test_ed25519_is_deterministic(tmp_path: Path) -> None:
    key = load_private_key(_write(tmp_path, "ed.key", ED25519_PEM), None)
    assert sign_payload(key, simple_signing_payload("example.com/app", IMAGE)) == (
        "zI6j3bL5emJOUKtbZjiT4SuioaOnssMSeR7ful4AvyvZARvL8/7bCXsSfkYiDRC2dbdQjDon/8mdkBAm28P2CA=="
    )


# --- [COSIGN-8] check_signatures -------------------------------------------------------------


def _artifact(kind: str = "ecdsa", digest: Digest = IMAGE, **kwargs: Any) -> Artifact:
    return signature_for(str(digest), 401, mt.OCI_MANIFEST, make_key(kind)[0], **kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_check_accepts_a_good_signature(kind: str) -> None:
    referrer = referrer_of(_artifact(kind))
    check = check_signatures(IMAGE, [referrer], public_key(kind))
    assert check.ok
    assert check.problems == ()
    assert [(v.referrer, v.found) for v in check.valid] == [(referrer.digest, FOUND_BY_COSIGN)]


def test_check_outcomes() -> None:
    """[COSIGN-8] Each kind of bad signature is one problem line; a good one makes it ok."""
    key = public_key("ecdsa")
    good = referrer_of(_artifact())
    other_key = referrer_of(_artifact("rsa"))
    other_digest = referrer_of(
        _artifact(payload=independent_payload(str(Digest.of(b"another")), "example.com/app")), found="referrers API"
    )
    artifact = _artifact()
    payload_digest = next(d for d in artifact["blobs"] if d != str(decode_manifest(artifact["manifest"]).config.digest))
    corrupt = referrer_of(artifact, swap={payload_digest: b"x" * 231})
    for_another_subject = referrer_of(_artifact(digest=Digest.of(b"another")), subject=Digest.of(b"another"))
    sbom = referrer_of(intoto_attestation_for(str(IMAGE), 401, mt.OCI_MANIFEST, make_key("ecdsa")[0]))

    check = check_signatures(IMAGE, [other_key, other_digest, corrupt, for_another_subject, sbom, good], key)
    assert check.ok
    assert [v.referrer for v in check.valid] == [good.digest]
    assert len(check.problems) == 3
    bad_key, wrong_digest, unreadable = check.problems
    assert bad_key.endswith("the signature does not verify with this key")
    assert wrong_digest.endswith(f"the payload signs {Digest.of(b'another')}, not {IMAGE}")
    assert "(referrers API)" in wrong_digest
    assert "unreadable payload" in unreadable
    assert "does not match its digest" in unreadable
    assert all("\n" not in line for line in check.problems)

    failing = check_signatures(IMAGE, [other_key, other_digest], key)
    assert not failing.ok
    assert len(failing.problems) == 2
    nothing = check_signatures(IMAGE, [], key)
    assert not nothing.ok
    assert nothing.problems == ()
    assert nothing.subject == IMAGE


def test_check_reports_missing_and_oversized_payloads() -> None:
    artifact = _artifact()
    missing = referrer_of(artifact)
    missing = Referrer(missing.subject, missing.document, missing.blobs[:1], missing.found, missing.tag)
    check = check_signatures(IMAGE, [missing], public_key("ecdsa"))
    assert not check.ok
    assert "is not among the referrer's blobs" in check.problems[0]

    big = b" " * (MAX_PAYLOAD_SIZE + 1)
    layer = Descriptor(SIMPLE_SIGNING_MEDIA_TYPE, Digest.of(big), len(big))
    document, config = signature_manifest([(layer, "c2ln")], subject=SUBJECT)
    blobs = (Blob.from_bytes(layer, big, "big"), Blob.from_bytes(document.value.config, config, "config"))
    check = check_signatures(IMAGE, [Referrer(IMAGE, document, blobs)], public_key("ecdsa"))
    assert not check.ok
    assert f"over {MAX_PAYLOAD_SIZE}" in check.problems[0]


def test_check_reports_a_failing_opener() -> None:
    """[COSIGN-8] A payload whose source fails to open is a problem line, not an exception."""

    def broken() -> Any:
        raise OSError(5, "Input/output error")

    referrer = referrer_of(_artifact())
    blobs = tuple(Blob(b.descriptor, broken, b.where) for b in referrer.blobs)
    check = check_signatures(IMAGE, [Referrer(IMAGE, referrer.document, blobs)], public_key("ecdsa"))
    assert not check.ok
    assert check.problems[0].endswith("Input/output error")


def test_check_counts_a_referrer_once() -> None:
    referrer = referrer_of(_artifact())
    check = check_signatures(IMAGE, [referrer, referrer], public_key("ecdsa"))
    assert len(check.valid) == 1


@needs_corpus
def test_check_corpus_signature_with_another_key_is_a_problem() -> None:
    """[COSIGN-8] The corpus signature, checked with a key that did not make it: one problem."""
    raw = corpus_tagged("sig")
    manifest = decode_manifest(raw)
    document = Document(raw, manifest, Descriptor(mt.OCI_MANIFEST, Digest.of(raw), len(raw)))
    blobs = tuple(
        Blob.from_bytes(d, corpus_blob(str(d.digest)), f"corpus {d.digest.short}")
        for d in (manifest.config, *manifest.layers)
    )
    check = check_signatures(CORPUS_SUBJECT, [Referrer(CORPUS_SUBJECT, document, blobs)], public_key("ecdsa"))
    assert not check.ok
    assert check.problems[0].endswith("the signature does not verify with this key")


# --- [COSIGN-9] make_signature ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_make_signature(tmp_path: Path, kind: str) -> None:
    private_path, public_path = write_keys(tmp_path, kind)
    signed = make_signature(SUBJECT, "example.com/app", load_private_key(str(private_path), None))
    assert signed.found == FOUND_SIGNED == "signed here"
    assert signed.tag == cosign_tag(IMAGE, "sig")
    assert signed.subject == IMAGE
    assert signed.artifact_type == SIGNATURE_ARTIFACT_TYPE
    manifest = decode_manifest(signed.document.raw)
    assert manifest.subject == SUBJECT
    payload_blob, config_blob = signed.blobs
    payload = payload_blob.open().read()
    assert payload == independent_payload(str(IMAGE), "example.com/app")
    assert config_blob.descriptor == manifest.config
    assert config_blob.open().read() == signature_config(manifest.layers)
    assert check_signatures(IMAGE, [signed], load_public_key(str(public_path))).ok
    # cross-check with cryptography directly, outside ocimerge's verifier
    ((_, text),) = signature_entries(manifest)
    raw_public = serialization.load_pem_public_key(make_key(kind)[1])
    if isinstance(raw_public, ec.EllipticCurvePublicKey):
        algorithm: hashes.HashAlgorithm = hashes.SHA384() if kind == "ecdsa-p384" else hashes.SHA256()
        raw_public.verify(base64.b64decode(text), payload, ec.ECDSA(algorithm))


def test_make_signature_refuses_sha512_subjects(tmp_path: Path) -> None:
    key = load_private_key(_write(tmp_path, "ed.key", ED25519_PEM), None)
    with pytest.raises(ModelError):
        make_signature(Descriptor(mt.OCI_MANIFEST, Digest.of(b"{}", "sha512"), 2), "r", key)


def test_intoto_helper_shape() -> None:
    """signing.intoto_attestation_for: the DSSE layer and statement cosign attest writes."""
    artifact = intoto_attestation_for(str(IMAGE), 401, mt.OCI_MANIFEST, make_key("ed25519")[0])
    manifest = decode_manifest(artifact["manifest"])
    (layer,) = manifest.layers
    assert layer.media_type == "application/vnd.dsse.envelope.v1+json"
    assert layer.annotation("predicateType") == "https://cosign.sigstore.dev/attestation/v1"
    assert manifest.artifact_type == "application/vnd.in-toto+json"
    assert manifest.subject == SUBJECT
    envelope = json.loads(artifact["blobs"][str(layer.digest)])
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["subject"][0]["digest"] == {"sha256": IMAGE.encoded}
    assert not is_signature(manifest)
