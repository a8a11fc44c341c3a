"""The annotation keys ocimerge reads and writes, spelled once ([LAYOUT-3], [ATTEST-1]).

Image names in ``index.json`` come from the OCI image-layout spec and containerd; the
``vnd.docker.reference.*`` pair is how BuildKit links an attestation manifest to the image
it describes inside one index.
"""

from __future__ import annotations

from ocimerge.model.descriptor import Descriptor

__all__ = [
    "ATTESTATION_ARTIFACT_TYPE",
    "ATTESTATION_MANIFEST",
    "CONTAINERD_NAME",
    "REFERENCE_DIGEST",
    "REFERENCE_TYPE",
    "REF_NAME",
    "attested_digest",
    "entry_names",
    "is_attestation",
]

#: [LAYOUT-3] The OCI image-layout name of an ``index.json`` entry (a tag, or a full name).
REF_NAME = "org.opencontainers.image.ref.name"
#: [LAYOUT-3] containerd's full image name, written by ``ctr export`` and Docker 25+.
CONTAINERD_NAME = "io.containerd.image.name"
#: [ATTEST-1] BuildKit's marker of a non-image entry, and the image digest it refers to.
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
#: [ATTEST-1] The ``vnd.docker.reference.type`` of a provenance/SBOM attestation manifest.
ATTESTATION_MANIFEST = "attestation-manifest"
#: [ATTEST-4] The ``artifactType`` BuildKit's ``oci-artifact`` exporter gives an attestation
#: manifest that has a ``subject`` (moby/buildkit#5573), and ocimerge one it gives a subject.
ATTESTATION_ARTIFACT_TYPE = "application/vnd.docker.attestation.manifest.v1+json"


def entry_names(descriptor: Descriptor) -> tuple[str, ...]:
    """[LAYOUT-3] The names an ``index.json`` entry carries, in the order tools print them."""
    # a bundle writes the same full reference under both keys: it is one name, shown once
    return tuple(
        dict.fromkeys(v for v in (descriptor.annotation(CONTAINERD_NAME), descriptor.annotation(REF_NAME)) if v)
    )


def is_attestation(descriptor: Descriptor) -> bool:
    """[ATTEST-1] Whether an index entry is a BuildKit attestation manifest."""
    return descriptor.annotation(REFERENCE_TYPE) == ATTESTATION_MANIFEST


def attested_digest(descriptor: Descriptor) -> str | None:
    """[ATTEST-1] The digest (as text) of the image an attestation entry describes."""
    return descriptor.annotation(REFERENCE_DIGEST)
