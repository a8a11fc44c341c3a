"""Which images of a source are signed by a key ([SIGNED-1], [SIGNED-2]).

[SIGNED-1] An image is signed when one of its referrers is a cosign signature that verifies
with the key over a payload naming the image's digest ([COSIGN-8]), or when the index that
lists it is signed so. The second half is ocimerge's policy, not cosign's: ``cosign sign
IMAGE:TAG`` signs the index a tag names and ``cosign verify IMAGE:TAG`` checks that index,
but ``cosign verify IMAGE@<child digest>`` looks for the child's own signature (``cosign
sign --recursive`` makes those). The index itself is reported too.
Nothing here touches a network: the signatures were found, and their bytes verified, when
the source was read ([REFERRERS-9]).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from ocimerge.content import ImageSet
from ocimerge.errors import SignatureError, UsageError
from ocimerge.model.cosign import SIGNATURE_ARTIFACT_TYPE
from ocimerge.model.digest import Digest
from ocimerge.model.manifest import ImageIndex
from ocimerge.signatures import PublicKey, SignatureCheck, check_signatures
from ocimerge.sources.walk import Walk

__all__ = ["SignedImage", "require_signed", "signature_walk", "signed_images"]


@attrs.frozen
class SignedImage:
    """[SIGNED-1] One image (or the index) of a source, and whether the key signed it.

    ``label`` is the platform, or ``index``; ``check`` is its own signatures' outcome;
    ``through`` is the index whose valid signature covers it, when its own does not.
    """

    source: str
    label: str
    digest: Digest
    check: SignatureCheck
    through: Digest | None = None

    @property
    def ok(self) -> bool:
        """Signed: by a signature of its own, or through its index's."""
        return self.check.ok or self.through is not None

    def problem(self, key_name: str) -> str:
        """[SIGNED-2] The one-line finding for an unsigned image, naming the key and what was found."""
        found = f"; {'; '.join(self.check.problems)}" if self.check.problems else ""
        return f"{self.source}: {self.label} {self.digest} has no valid signature by {key_name}{found}"

    def to_json(self) -> dict[str, Any]:
        """As ``verify --json`` lists it."""
        return {
            "label": self.label,
            "digest": str(self.digest),
            "signed": self.ok,
            "signatures": [str(v.referrer) for v in self.check.valid],
            "through": str(self.through) if self.through else None,
            "problems": list(self.check.problems),
        }


def signed_images(loaded: ImageSet, key: PublicKey) -> tuple[SignedImage, ...]:
    """[SIGNED-1] The index (when the root is one) and every image of ``loaded``, checked with ``key``."""
    out: list[SignedImage] = []
    through: Digest | None = None
    root = loaded.root_document
    if isinstance(root.value, ImageIndex):
        check = check_signatures(root.descriptor.digest, loaded.referrers, key)
        out.append(SignedImage(loaded.source, "index", root.descriptor.digest, check))
        through = root.descriptor.digest if check.ok else None
    for image in loaded.images:
        check = check_signatures(image.digest, loaded.referrers, key)
        out.append(SignedImage(loaded.source, str(image.platform), image.digest, check, through))
    return tuple(out)


def require_signed(loaded: ImageSet, key: PublicKey, key_name: str) -> tuple[SignedImage, ...]:
    """[SIGNED-2] :func:`signed_images`, raising :class:`SignatureError` for the first image unsigned.

    The message names the image and platform, the key, and the signatures found that failed.
    """
    checked = signed_images(loaded, key)
    unsigned: Sequence[SignedImage] = [c for c in checked if not c.ok and c.label != "index"]
    if unsigned:
        more = f" (and {len(unsigned) - 1} more)" if len(unsigned) > 1 else ""
        raise SignatureError(f"{unsigned[0].problem(key_name)}{more}; refusing to push unsigned images")
    return checked


def signature_walk(referrers: bool, referrer_types: Sequence[str], *, signed: bool) -> Walk:
    """[SIGNED-2] What to read of each image: its referrers (of ``referrer_types``), and, when a
    signature is ``signed`` (required), cosign's signatures too, since they must be found to be
    checked (and so travel as well). A required signature with no referrers looked for is a
    :class:`UsageError`."""
    types = tuple(referrer_types)
    if signed:
        if not referrers:
            raise UsageError(
                "a required signature is read with the referrers, which --referrers none does not look for"
            )
        if types:
            types = (*types, SIGNATURE_ARTIFACT_TYPE)
    return Walk(referrers=referrers, referrer_types=types)
