"""cosign key-based signatures, offline: keys, signing, verifying ([COSIGN-6] .. [COSIGN-9]).

The format is :mod:`ocimerge.model.cosign`'s; this module adds the keys (PEM files read with
``cryptography``, [COSIGN-6]), the signature schemes cosign uses for them ([COSIGN-7]), the
check of a subject's signature referrers against a public key ([COSIGN-8]) and the making of
a new signature referrer ([COSIGN-9]). No network: Rekor, Fulcio and keyless certificates
are not handled.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

import attrs
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from ocimerge.content import Blob, Referrer
from ocimerge.errors import BlobMissingError, DocumentError, OcimergeError, UsageError
from ocimerge.model.cosign import (
    MAX_PAYLOAD_SIZE,
    SIMPLE_SIGNING_MEDIA_TYPE,
    parse_payload,
    signature_entries,
    signature_manifest,
    simple_signing_payload,
)
from ocimerge.model.descriptor import Descriptor
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import ImageManifest
from ocimerge.model.referrers import cosign_tag

__all__ = [
    "FOUND_SIGNED",
    "MIN_RSA_BITS",
    "PrivateKey",
    "PublicKey",
    "SignatureCheck",
    "ValidSignature",
    "check_signatures",
    "load_private_key",
    "load_public_key",
    "make_signature",
    "sign_payload",
    "verify_payload",
]

#: [COSIGN-9] How a signature made by :func:`make_signature` was "found" (``Referrer.found``).
FOUND_SIGNED = "signed here"
#: [COSIGN-6] Smaller RSA keys are refused, as sigstore's key validation refuses them.
MIN_RSA_BITS = 2048

#: [COSIGN-6] The public keys a cosign signature can be verified with.
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
#: [COSIGN-6] The private keys a cosign signature can be made with.
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

# A key file is a few hundred bytes (RSA 4096: about 3 KiB); anything far larger is not one.
_MAX_KEY_FILE = 64 * 1024
# [COSIGN-6] cosign's own private key format: scrypt + NaCl secretbox, which no standard
# library opens.
_COSIGN_PEM_TYPES = (b"ENCRYPTED SIGSTORE PRIVATE KEY", b"ENCRYPTED COSIGN PRIVATE KEY")
# [COSIGN-7] The hash ECDSA signs with, per curve: sigstore's default signer for the curve.
_ECDSA_HASH: dict[str, type[hashes.HashAlgorithm]] = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384}


def _read_key_file(path: str) -> bytes:
    """The bytes of the key file at ``path``; :class:`UsageError` naming it when unreadable."""
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise UsageError(f"key file {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"key file {path}: is a directory, not a PEM key file") from None
    except OSError as exc:
        raise UsageError(f"key file {path}: cannot read it ({exc.strerror or exc.__class__.__name__})") from None
    if len(data) > _MAX_KEY_FILE:
        raise UsageError(f"key file {path}: over {_MAX_KEY_FILE} bytes, not a PEM key file")
    return data


def _check_key(key: object, path: str) -> None:
    """[COSIGN-6] Refuse key types and sizes cosign does not sign with."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if key.curve.name not in _ECDSA_HASH:
            raise UsageError(f"key file {path}: ECDSA curve {key.curve.name} is not supported (use P-256 or P-384)")
    elif isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise UsageError(f"key file {path}: RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} are needed")
    elif not isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        raise UsageError(
            f"key file {path}: {type(key).__name__.removeprefix('_')} keys are not supported "
            "(use ECDSA P-256/P-384, RSA or Ed25519)"
        )


def load_public_key(path: str) -> PublicKey:
    """[COSIGN-6] The public key in the PEM ``PUBLIC KEY`` file at ``path`` (``cosign.pub``).

    ECDSA P-256 or P-384, RSA of at least :data:`MIN_RSA_BITS` bits, or Ed25519. A missing,
    unreadable or oversized file, one that is not such a PEM, and any other key type or size
    raise :class:`UsageError` naming the file (the key is the caller's choice, like
    ``--ca-file``).
    """
    data = _read_key_file(path)
    if b"-----BEGIN PUBLIC KEY-----" not in data:
        raise UsageError(f"key file {path}: not a PEM public key (expected '-----BEGIN PUBLIC KEY-----')")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(f"key file {path}: not a valid PEM public key") from None
    _check_key(key, path)
    return key  # type: ignore[return-value]  # narrowed by _check_key


def load_private_key(path: str, password: bytes | None) -> PrivateKey:
    """[COSIGN-6] The private key in the PEM file at ``path``: PKCS#8 or traditional, maybe encrypted.

    ``password`` decrypts an encrypted PEM, and is ignored for a plain one (CI often sets
    ``COSIGN_PASSWORD`` for every job, whatever key it uses). cosign's own
    ``ENCRYPTED SIGSTORE PRIVATE KEY`` / ``ENCRYPTED COSIGN PRIVATE KEY`` files are recognised
    and refused with the way to get a PKCS#8 PEM. Every failure is a one-line
    :class:`UsageError` naming the file; no message holds the password or key bytes.
    """
    data = _read_key_file(path)
    if any(b"-----BEGIN " + kind + b"-----" in data for kind in _COSIGN_PEM_TYPES):
        raise UsageError(
            f"key file {path}: a cosign-encrypted private key (scrypt + secretbox), which ocimerge cannot open; "
            "export a PKCS#8 PEM instead, e.g. generate one with 'openssl genpkey -algorithm EC "
            "-pkeyopt ec_paramgen_curve:P-256 -out key.pem' and import it with 'cosign import-key-pair --key key.pem'"
        )
    if b"PRIVATE KEY-----" not in data:
        raise UsageError(f"key file {path}: not a PEM private key (expected '-----BEGIN PRIVATE KEY-----')")
    try:
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except TypeError:
            # cryptography says TypeError for a password given to a plain key or missing for an
            # encrypted one; its text is about the password's presence, never its value.
            if password is None:
                raise UsageError(f"key file {path}: the private key is encrypted; a password is needed") from None
            key = serialization.load_pem_private_key(data, password=None)  # a plain key: no password needed
    except (ValueError, UnsupportedAlgorithm):
        hint = " or the password is wrong" if password is not None else ""
        raise UsageError(f"key file {path}: not a valid PEM private key{hint}") from None
    _check_key(key, path)
    return key  # type: ignore[return-value]  # narrowed by _check_key


def sign_payload(key: PrivateKey, payload: bytes) -> str:
    """[COSIGN-7] The base64 signature of ``payload`` with ``key``, as cosign makes it.

    ECDSA: DER-encoded, over SHA-256 for P-256 and SHA-384 for P-384, with RFC 6979
    deterministic nonces; RSA: PKCS#1 v1.5 over SHA-256; Ed25519: pure Ed25519 over the
    payload itself. All three are deterministic: the same key and payload give the same
    signature, so signing the same index again makes the same signature manifest, which a
    re-run finds stored instead of adding a second one. Raises :class:`UsageError` for a key
    of another kind.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithm = _ECDSA_HASH.get(key.curve.name)
        if algorithm is None:
            raise UsageError(f"ECDSA curve {key.curve.name} is not supported (use P-256 or P-384)")
        signature = key.sign(payload, ec.ECDSA(algorithm(), deterministic_signing=True))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(payload)
    else:
        raise UsageError(f"{type(key).__name__} keys cannot make cosign signatures")
    return base64.b64encode(signature).decode("ascii")


def _verifies(key: PublicKey, payload: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (raw bytes) is ``key``'s over ``payload`` ([COSIGN-7])."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            # [COSIGN-7] the curve's hash (cosign's signer), and SHA-256 (what 'cosign verify
            # --key' checks by default, '--signature-digest-algorithm sha256')
            own = _ECDSA_HASH.get(key.curve.name, hashes.SHA256)
            candidates: list[type[hashes.HashAlgorithm]] = [own] if own is hashes.SHA256 else [own, hashes.SHA256]
            for algorithm in candidates:
                try:
                    key.verify(signature, payload, ec.ECDSA(algorithm()))
                    return True
                except InvalidSignature:
                    continue
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, payload)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_payload(key: PublicKey, payload: bytes, signature_b64: str) -> bool:
    """[COSIGN-7] Whether ``signature_b64`` is ``key``'s signature over ``payload``.

    False, never an exception, for a wrong, malformed or non-base64 signature.
    """
    try:
        signature = base64.b64decode(signature_b64.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False
    return bool(signature) and _verifies(key, payload, signature)


@attrs.frozen
class ValidSignature:
    """[COSIGN-8] A signature that verified: the referrer holding it and how it was found."""

    referrer: Digest
    found: str


@attrs.frozen
class SignatureCheck:
    """[COSIGN-8] The outcome of checking a subject's cosign signatures against one key.

    ``valid`` lists each signature referrer with a verified signature over a payload naming
    the subject; ``problems`` has one line per signature that failed, saying why; ``ok`` is
    whether at least one is valid (problems alongside a valid one do not make it fail, as
    cosign accepts an image when any signature verifies).
    """

    subject: Digest
    valid: tuple[ValidSignature, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether at least one signature verified."""
        return bool(self.valid)


def _read_payload(blobs: Iterable[Blob], layer: Descriptor) -> bytes:
    """The verified bytes of the payload ``layer`` names, from the referrer's blobs.

    Raises :class:`BlobMissingError` when it is absent, :class:`DocumentError` when it is
    oversized, :class:`DigestMismatchError` when its bytes are not the ones named.
    """
    blob = next((b for b in blobs if b.digest == layer.digest), None)
    if blob is None:
        raise BlobMissingError(f"payload {layer.digest.short} is not among the referrer's blobs")
    if layer.size > MAX_PAYLOAD_SIZE:
        raise DocumentError(f"payload {layer.digest.short} is {layer.size} bytes, over {MAX_PAYLOAD_SIZE}")
    with blob.open() as reader:  # the reader stops at the descriptor's size and checks the digest
        return reader.read()


def _check_layer(referrer: Referrer, layer: Descriptor, signature: str, key: PublicKey, subject: Digest) -> str | None:
    """[COSIGN-8] None when this signature layer is valid for ``subject``, else the problem."""
    name = f"signature {referrer.digest.short} ({referrer.found})"
    try:
        raw = _read_payload(referrer.blobs, layer)
        payload = parse_payload(raw, f"payload {layer.digest.short}")
    except OcimergeError as exc:
        return f"{name}: unreadable payload: {exc}"
    except OSError as exc:  # the source's file or stream failed under the opener
        return f"{name}: unreadable payload: {layer.digest.short}: {exc.strerror or exc.__class__.__name__}"
    if not verify_payload(key, raw, signature):
        return f"{name}: the signature does not verify with this key"
    if payload.digest != subject:
        return f"{name}: the payload signs {payload.digest}, not {subject}"
    return None


def check_signatures(subject: Digest, referrers: Iterable[Referrer], key: PublicKey) -> SignatureCheck:
    """[COSIGN-8] Check the cosign signatures among ``referrers`` of ``subject`` with ``key``.

    Only referrers whose ``subject`` is ``subject`` and whose document is a manifest with
    signature layers ([COSIGN-3]) are looked at. For each layer the payload blob is read
    through its verifying stream (capped at the payload size limit), parsed strictly
    ([COSIGN-2]), its signature verified with ``key`` ([COSIGN-7]), and its
    ``docker-manifest-digest`` compared with ``subject``. A referrer counts as valid when one
    of its layers passes; every failing layer adds a problem line. Never raises for bad
    content.
    """
    valid: list[ValidSignature] = []
    problems: list[str] = []
    for referrer in referrers:
        document = referrer.document.value
        if referrer.subject != subject or not isinstance(document, ImageManifest):
            continue
        passed = False
        for layer, signature in signature_entries(document):
            problem = _check_layer(referrer, layer, signature, key, subject)
            if problem is None:
                passed = True
            else:
                problems.append(problem)
        if passed and all(v.referrer != referrer.digest for v in valid):
            valid.append(ValidSignature(referrer.digest, referrer.found))
    return SignatureCheck(subject=subject, valid=tuple(valid), problems=tuple(problems))


def make_signature(subject: Descriptor, docker_reference: str, key: PrivateKey) -> Referrer:
    """[COSIGN-9] A new cosign signature of ``subject``, as a referrer ready to write or push.

    The payload ([COSIGN-1]) names ``subject.digest`` and ``docker_reference``; it is signed
    with ``key`` ([COSIGN-7]) into a signature manifest ([COSIGN-4]) that has ``subject`` and
    the signature artifact type. Its blobs are the payload and the config, in that order;
    ``found`` is :data:`FOUND_SIGNED` and ``tag`` cosign's ``.sig`` tag ([COSIGN-5], [REFERRERS-7]).
    Raises :class:`UsageError` for an unusable key, :class:`ModelError` when the digest
    has no cosign tag (sha512).
    """
    payload = simple_signing_payload(docker_reference, subject.digest)
    layer = Descriptor(SIMPLE_SIGNING_MEDIA_TYPE, Digest.of(payload), len(payload))
    tag = cosign_tag(subject.digest, "sig")
    document, config = signature_manifest([(layer, sign_payload(key, payload))], subject=subject)
    config_descriptor = document.value.config
    blobs = (
        Blob.from_bytes(layer, payload, f"signature payload {layer.digest.short}"),
        Blob.from_bytes(config_descriptor, config, f"signature config {config_descriptor.digest.short}"),
    )
    return Referrer(subject=subject.digest, document=document, blobs=blobs, found=FOUND_SIGNED, tag=tag)
