"""A deterministic builder of every input shape ocimerge reads, for tests and the demo.

Same arguments, same bytes: tar members have mtime 0 and fixed modes, gzip has mtime 0, JSON
is compact with a fixed key order. Shapes:

- OCI layout directory or tar (``index.json`` -> manifest, or -> index of manifests, or
  BuildKit's ``index.json`` -> index -> {manifests, attestation manifests}),
- docker save, classic (``manifest.json`` + ``<id>/layer.tar``, optionally a symlinked layer)
  and Docker 25+ (OCI layout plus ``manifest.json``),
- any of them compressed as a whole (gzip, zstd).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import os
import tarfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IN_TOTO = "application/vnd.in-toto+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def tar_bytes(files: Mapping[str, bytes]) -> bytes:
    """A deterministic uncompressed tar of ``files`` (a layer)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    return out.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)
    return out.getvalue()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


@dataclass
class Image:
    """One single-platform image, built in memory (test images are small)."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None
    layers: Sequence[bytes] = ()
    gzip_layers: bool = True
    docker_types: bool = False
    manifest_annotations: Mapping[str, str] = field(default_factory=dict)
    #: ``config.Labels`` of the image config (none when empty)
    labels: Mapping[str, str] = field(default_factory=dict)
    #: ``os.version`` of the config and of the entry's platform (a Windows release), "" for none
    os_version: str = ""
    #: annotations of this image's entry when an index lists it (``oci_layout(shape="index")``)
    entry_annotations: Mapping[str, str] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict, init=False)
    manifest: bytes = field(default=b"", init=False)
    config: bytes = field(default=b"", init=False)
    uncompressed: list[bytes] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        layers = list(self.layers) or [tar_bytes({f"hello-{self.architecture}.txt": f"hi {self.platform}\n".encode()})]
        self.uncompressed = layers
        config: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            config["variant"] = self.variant
        if self.os_version:
            config["os.version"] = self.os_version
        config["config"] = {"Cmd": ["/hello"]}
        if self.labels:
            config["config"]["Labels"] = dict(self.labels)
        config["rootfs"] = {"type": "layers", "diff_ids": [sha256(x) for x in layers]}
        self.config = dumps(config)
        stored = [gzip_bytes(x) if self.gzip_layers else x for x in layers]
        if self.docker_types:
            layer_type = DOCKER_LAYER_GZIP
            config_type, manifest_type = DOCKER_CONFIG, DOCKER_MANIFEST
        else:
            layer_type = OCI_LAYER_GZIP if self.gzip_layers else OCI_LAYER_TAR
            config_type, manifest_type = OCI_CONFIG, OCI_MANIFEST
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": descriptor(config_type, self.config),
            "layers": [descriptor(layer_type, x) for x in stored],
        }
        if self.manifest_annotations:
            manifest["annotations"] = dict(self.manifest_annotations)
        self.manifest = dumps(manifest)
        for data in (self.config, *stored, self.manifest):
            self.blobs[sha256(data)] = data

    @property
    def platform(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    @property
    def platform_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.variant:
            out["variant"] = self.variant
        return out

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def media_type(self) -> str:
        return DOCKER_MANIFEST if self.docker_types else OCI_MANIFEST

    def entry(self, **extra: Any) -> dict[str, Any]:
        return descriptor(self.media_type, self.manifest, platform=self.platform_json, **extra)


def attestation_for(image: Image) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A BuildKit-style provenance attestation manifest for ``image``: (entry, blobs)."""
    statement = dumps(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "subject": [{"name": "_", "digest": {"sha256": image.digest.split(":")[1]}}],
            "predicate": {"builder": {"id": "imagebuilder"}},
        }
    )
    config = dumps(
        {
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256(statement)]},
        }
    )
    manifest = dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, config),
            "layers": [
                descriptor(
                    IN_TOTO, statement, annotations={"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}
                )
            ],
        }
    )
    entry = descriptor(
        OCI_MANIFEST,
        manifest,
        annotations={
            "vnd.docker.reference.digest": image.digest,
            "vnd.docker.reference.type": "attestation-manifest",
        },
        platform={"architecture": "unknown", "os": "unknown"},
    )
    return entry, {sha256(d): d for d in (statement, config, manifest)}


@dataclass
class Layout:
    """The files of an OCI layout (or a docker-save archive), before they are written."""

    files: dict[str, bytes] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)

    def add_blob(self, data: bytes) -> str:
        digest = sha256(data)
        self.files[f"blobs/sha256/{digest.split(':')[1]}"] = data
        return digest

    def add_blobs(self, blobs: Mapping[str, bytes]) -> None:
        for data in blobs.values():
            self.add_blob(data)

    def write_dir(self, path: str) -> str:
        for name, data in self.files.items():
            full = os.path.join(path, name)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)
        for name, target in self.symlinks.items():
            full = os.path.join(path, name)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            os.symlink(target, full)
        return path

    def tar(self, *, prefix: str = "") -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(self.files):
                info = tarfile.TarInfo(prefix + name)
                info.size = len(self.files[name])
                info.mtime = 0
                info.mode = 0o444
                tar.addfile(info, io.BytesIO(self.files[name]))
            for name in sorted(self.symlinks):
                info = tarfile.TarInfo(prefix + name)
                info.type = tarfile.SYMTYPE
                info.linkname = self.symlinks[name]
                info.mtime = 0
                tar.addfile(info)
        return out.getvalue()

    def write_tar(self, path: str, *, compression: str | None = None, prefix: str = "") -> str:
        data = self.tar(prefix=prefix)
        if compression == "gzip":
            data = gzip_bytes(data)
        elif compression == "zstd":
            import zstandard

            data = zstandard.ZstdCompressor().compress(data)
        with open(path, "wb") as f:
            f.write(data)
        return path


def _index_json(entries: Iterable[dict[str, Any]]) -> bytes:
    return dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(entries)})


def oci_layout(
    images: Sequence[Image],
    *,
    shape: str = "auto",
    attestations: bool = False,
    names: Mapping[int, str] | None = None,
    docker_list: bool = False,
) -> Layout:
    """An OCI layout of ``images``.

    ``shape``: ``manifest`` (index.json -> one manifest per image, named by ``names``),
    ``index`` (index.json -> one index of all images, BuildKit style), ``auto`` (manifest for
    one image without attestations, index otherwise).
    """
    layout = Layout({"oci-layout": dumps({"imageLayoutVersion": "1.0.0"})})
    for image in images:
        layout.add_blobs(image.blobs)
    if shape == "auto":
        shape = "manifest" if len(images) == 1 and not attestations else "index"
    names = names or {}
    if shape == "manifest":
        entries = []
        for i, image in enumerate(images):
            extra: dict[str, Any] = {}
            if i in names:
                extra["annotations"] = {"org.opencontainers.image.ref.name": names[i]}
            entries.append(image.entry(**extra))
        layout.files["index.json"] = _index_json(entries)
        return layout
    children = [
        image.entry(**({"annotations": dict(image.entry_annotations)} if image.entry_annotations else {}))
        for image in images
    ]
    if attestations:
        for image in images:
            entry, blobs = attestation_for(image)
            layout.add_blobs(blobs)
            children.append(entry)
    media_type = DOCKER_LIST if docker_list else OCI_INDEX
    index = dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": children})
    layout.add_blob(index)
    extra = {}
    if 0 in names:
        extra["annotations"] = {"org.opencontainers.image.ref.name": names[0]}
    layout.files["index.json"] = _index_json([descriptor(media_type, index, **extra)])
    return layout


def docker_save(
    images: Sequence[Image],
    *,
    repo_tags: Sequence[Sequence[str]] | None = None,
    modern: bool = False,
    symlink_shared: bool = False,
) -> Layout:
    """A ``docker save`` archive: classic (Docker <= 24) or ``modern`` (Docker 25+)."""
    layout = Layout()
    entries = []
    repo_tags = repo_tags or [[] for _ in images]
    seen_layers: dict[str, str] = {}
    oci_entries = []
    for image, tags in zip(images, repo_tags, strict=True):
        config_hex = sha256(image.config).split(":")[1]
        layer_paths = []
        if modern:
            config_path = f"blobs/sha256/{config_hex}"
            layout.files[config_path] = image.config
            layer_descriptors = []
            for layer in image.uncompressed:
                path = f"blobs/sha256/{sha256(layer).split(':')[1]}"
                layout.files[path] = layer
                layer_paths.append(path)
                layer_descriptors.append(descriptor(OCI_LAYER_TAR, layer))
            manifest = dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": descriptor(OCI_CONFIG, image.config),
                    "layers": layer_descriptors,
                }
            )
            layout.add_blob(manifest)
            annotations = {}
            if tags:
                annotations = {
                    "io.containerd.image.name": f"docker.io/library/{tags[0]}",
                    "org.opencontainers.image.ref.name": tags[0].rsplit(":", 1)[1],
                }
            oci_entries.append(
                descriptor(OCI_MANIFEST, manifest, **({"annotations": annotations} if annotations else {}))
            )
        else:
            config_path = f"{config_hex}.json"
            layout.files[config_path] = image.config
            for n, layer in enumerate(image.uncompressed):
                layer_id = hashlib.sha256(f"{config_hex}/{n}".encode()).hexdigest()
                path = f"{layer_id}/layer.tar"
                digest = sha256(layer)
                if symlink_shared and digest in seen_layers:
                    layout.symlinks[path] = f"../{seen_layers[digest]}"
                else:
                    layout.files[path] = layer
                    seen_layers[digest] = path
                layout.files[f"{layer_id}/VERSION"] = b"1.0"
                layer_paths.append(path)
        entries.append({"Config": config_path, "RepoTags": list(tags) or None, "Layers": layer_paths})
    layout.files["manifest.json"] = json.dumps(entries).encode()
    if modern:
        layout.files["oci-layout"] = dumps({"imageLayoutVersion": "1.0.0"})
        layout.files["index.json"] = _index_json(oci_entries)
    return layout


def sample_images() -> list[Image]:
    """The three small images the demo and many tests use."""
    return [
        Image(architecture="amd64"),
        Image(architecture="arm64", variant="v8"),
        Image(architecture="arm", variant="v7"),
    ]


# -- hostile shapes (tests/test_hostile_archives.py) -------------------------------------------

#: The zero run one bomb member or frame inflates to; bombs are copies of it, concatenated.
BOMB_UNIT = 64 * 1024 * 1024


_MIB_OF_ZEROS = bytes(1024 * 1024)


def gzip_bomb(size: int) -> bytes:
    """A gzip stream of ``size`` zero bytes (a multiple of :data:`BOMB_UNIT`), ~1000:1.

    Built as concatenated gzip members of one compressed unit, which every gzip reader
    accepts as one stream, so a 2 GiB bomb costs one 64 MiB compression to build; fed a
    MiB at a time, so building it never raises this process's peak memory.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    unit = b"".join(compressor.compress(_MIB_OF_ZEROS) for _ in range(BOMB_UNIT // len(_MIB_OF_ZEROS)))
    return (unit + compressor.flush()) * (size // BOMB_UNIT)


def zstd_bomb(size: int) -> bytes:
    """A zstd stream of ``size`` zero bytes (a multiple of :data:`BOMB_UNIT`): frames concatenated."""
    import zstandard

    compressor = zstandard.ZstdCompressor(level=19).compressobj(size=BOMB_UNIT)
    unit = b"".join(compressor.compress(_MIB_OF_ZEROS) for _ in range(BOMB_UNIT // len(_MIB_OF_ZEROS)))
    return (unit + compressor.flush()) * (size // BOMB_UNIT)


def zeros_digest(size: int) -> str:
    """The sha256 digest of ``size`` zero bytes, hashed a MiB at a time (never held whole)."""
    hasher = hashlib.sha256()
    left = size
    while left:
        step = min(left, len(_MIB_OF_ZEROS))
        hasher.update(_MIB_OF_ZEROS[:step])
        left -= step
    return "sha256:" + hasher.hexdigest()


def docker_save_layers(layers: Sequence[tuple[str, bytes, str]], *, images: int = 1) -> Layout:
    """A classic docker save of ``images`` distinct images, each listing every ``(path, stored, diff_id)``.

    A path listed twice is one file (the last data wins), so one layer file can be named many
    times by one image and by several, as a hostile ``manifest.json`` may. The images differ
    only in their config's ``author`` and are tagged ``acme/app:N`` when there are several.
    """
    layout = Layout({path: data for path, data, _ in layers})
    entries = []
    for n in range(images):
        config = dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "author": f"image-{n}",
                "rootfs": {"type": "layers", "diff_ids": [d for _, _, d in layers]},
            }
        )
        config_path = f"{sha256(config).split(':')[1]}.json"
        layout.files[config_path] = config
        tags = [f"acme/app:{n}"] if images > 1 else None
        entries.append({"Config": config_path, "RepoTags": tags, "Layers": [path for path, _, _ in layers]})
    layout.files["manifest.json"] = json.dumps(entries).encode()
    return layout


def extended_header(size: int, *, kind: str = "pax") -> tuple[bytes, Iterable[bytes]]:
    """An extended tar header of ``size`` bytes: its 512-byte block and its data, in 1 MiB pieces.

    ``kind`` ``pax`` is a PAX ``x`` header holding one valid ``comment`` record, ``gnu`` a
    GNU ``L`` long name: the two shapes tarfile reads whole into memory. The data is padded
    to a whole block and yielded piecewise, so a 512 MiB header is never built in memory.
    """
    info = tarfile.TarInfo("././@PaxHeader" if kind == "pax" else "././@LongLink")
    info.type = tarfile.XHDTYPE if kind == "pax" else tarfile.GNUTYPE_LONGNAME
    info.size = size
    info.mtime = 0
    block = info.tobuf(format=tarfile.USTAR_FORMAT if kind == "pax" else tarfile.GNU_FORMAT)
    head = f"{size} comment=".encode() if kind == "pax" else b""
    tail = b"\n" if kind == "pax" else b"\0"
    padding = bytes(-size % 512)

    def pieces() -> Iterable[bytes]:
        yield head
        left = size - len(head) - len(tail)
        while left > 0:
            step = min(left, len(_MIB_OF_ZEROS))
            yield b"x" * step
            left -= step
        yield tail + padding

    return block, pieces()


def write_with_extended_header(
    path: str, layout: Layout, size: int, *, kind: str = "pax", gzipped: bool = False
) -> str:
    """Write ``layout`` as a tar (gzipped as a whole or not) led by an extended header of ``size`` bytes.

    The header precedes the first member, as tarfile would write one for a long name or
    attributes; written piecewise, so memory stays small however large ``size`` is.
    """
    block, pieces = extended_header(size, kind=kind)
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if gzipped else None
    with open(path, "wb") as out:
        for piece in itertools.chain([block], pieces, [layout.tar()]):  # lazily: never all at once
            out.write(compressor.compress(piece) if compressor else piece)
        if compressor:
            out.write(compressor.flush())
    return path


def fanout_layout(image: Image, *, width: int, roots: int = 1) -> Layout:
    """An OCI layout: ``index.json`` -> index A listing index B ``width`` times, B listing ``image`` ``width`` times.

    Walked as a tree it is ``width`` squared entries; as a graph, two documents of ``width``.
    ``roots`` lists A that many times in ``index.json`` (``inspect`` walks every root).
    """
    layout = oci_layout([image], shape="manifest")
    inner = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [image.entry()] * width})
    layout.add_blob(inner)
    outer = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(OCI_INDEX, inner)] * width})
    layout.add_blob(outer)
    layout.files["index.json"] = _index_json([descriptor(OCI_INDEX, outer)] * roots)
    return layout
