"""The tar reader: members by offset, hostile names and links refused, truncation caught."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocimerge.errors import ArchiveError, NotAnImageError
from ocimerge.sources._tarfs import TarFS, clean_member_name, open_filesystem, read_small


def write_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def link(name: str, target: str, *, hard: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info


def test_members_are_read_in_place(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "a.tar", [("./dir/one", b"1" * 1000), ("two", b"22")])
    fs = open_filesystem(str(path))
    assert isinstance(fs, TarFS)
    assert fs.names() == ["dir/one", "two"]
    assert read_small(fs, "dir/one", 2000) == b"1" * 1000
    with fs.open("two") as stream:
        assert stream.read() == b"22"
        assert stream.read() == b""


def test_links_inside_the_archive_resolve(tmp_path: Path) -> None:
    path = write_tar(
        tmp_path / "a.tar",
        [
            ("a/layer.tar", b"data"),
            link("b/layer.tar", "../a/layer.tar"),
            link("c/layer.tar", "a/layer.tar", hard=True),
        ],
    )
    fs = open_filesystem(str(path))
    assert read_small(fs, "b/layer.tar", 10) == b"data"
    assert read_small(fs, "c/layer.tar", 10) == b"data"


@pytest.mark.parametrize(
    ("member", "fragment"),
    [
        (("../evil", b"x"), r"'\.\.'"),
        (("a/../../evil", b"x"), r"'\.\.'"),
        (("/etc/passwd", b"x"), "absolute"),
        (link("l", "/etc/passwd"), "outside"),
        (link("a/l", "../../etc/passwd"), "outside"),
        (link("l", "../x", hard=True), "outside"),
    ],
)
def test_hostile_members_are_refused(
    tmp_path: Path, member: tarfile.TarInfo | tuple[str, bytes], fragment: str
) -> None:
    path = write_tar(tmp_path / "evil.tar", [("index.json", b"{}"), member])
    with pytest.raises(ArchiveError, match=fragment) as info:
        open_filesystem(str(path))
    assert "evil.tar" in str(info.value)


def test_link_loop_is_an_error(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "loop.tar", [link("a", "b"), link("b", "a")])
    fs = open_filesystem(str(path))
    with pytest.raises(ArchiveError, match="links"):
        fs.exists("a")


def test_truncated_archive_is_an_error(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "t.tar", [("small", b"x"), ("big", b"y" * 100_000)])
    data = path.read_bytes()
    path.write_bytes(data[: 512 * 4 + 50_000])
    with pytest.raises(ArchiveError, match="truncated"):
        open_filesystem(str(path))


def test_not_a_tar(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, this is not an archive at all\n" * 50)
    with pytest.raises(NotAnImageError, match=r"notes\.txt"):
        open_filesystem(str(path))


def test_compressed_archives_are_sniffed_by_content(tmp_path: Path) -> None:
    import gzip

    import zstandard

    raw = write_tar(tmp_path / "x.tar", [("index.json", b"{}")]).read_bytes()
    for name, data in [("noext", gzip.compress(raw)), ("weird.zip", zstandard.ZstdCompressor().compress(raw))]:
        path = tmp_path / name
        path.write_bytes(data)
        fs = open_filesystem(str(path))
        assert read_small(fs, "index.json", 10) == b"{}"
        fs.close()


def test_clean_member_name() -> None:
    assert clean_member_name("./a//b/./c", "x") == "a/b/c"
    assert clean_member_name("./", "x") == ""


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(
        st.from_regex(r"[a-z]{1,6}(/[a-z]{1,6}){0,2}", fullmatch=True), st.binary(max_size=3000), min_size=1, max_size=6
    )
)
def test_generated_archives_round_trip(tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes]) -> None:
    # a name may not be both a file and a directory
    names = sorted(files)
    if any(other.startswith(n + "/") for n in names for other in names):
        return
    path = write_tar(tmp_path_factory.mktemp("gen") / "g.tar", list(files.items()))
    fs = open_filesystem(str(path))
    for name, data in files.items():
        assert fs.size(name) == len(data)
        assert read_small(fs, name, 10_000) == data


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=0, max_size=4096), st.integers(min_value=0, max_value=4096))
def test_random_and_cut_archives_fail_cleanly(tmp_path_factory: pytest.TempPathFactory, noise: bytes, cut: int) -> None:
    directory = tmp_path_factory.mktemp("fuzz")
    good = write_tar(directory / "good.tar", [("index.json", b"{}" * 300), ("blob", b"z" * 2000)]).read_bytes()
    for data in (noise, good[:cut], good[:cut] + noise):
        path = directory / "x.tar"
        path.write_bytes(data)
        try:
            fs = open_filesystem(str(path))
        except (ArchiveError, NotAnImageError):
            continue
        # whatever it accepted must be readable within bounds
        for name in fs.names() if isinstance(fs, TarFS) else []:
            if fs.exists(name):
                with fs.open(name) as stream:
                    assert len(stream.read()) == fs.size(name)
