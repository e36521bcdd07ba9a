"""Downloader (resume, checksum, atomic rename) and safe archive extraction, offline."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile

import numpy as np
import pytest

from rhel_lib.data.download import ChecksumError, DownloadError, download, safe_extract

try:
    from data_fixtures import serve_files, tar_gz_bytes, zip_bytes
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import serve_files, tar_gz_bytes, zip_bytes

PAYLOAD = np.random.default_rng(0).integers(0, 256, size=300_000, dtype=np.uint8).tobytes()
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    with serve_files({"/blob.bin": PAYLOAD}) as srv:
        yield srv


def test_download_complete_writes_file_and_digest(server, tmp_path):
    dest = tmp_path / "sub" / "blob.bin"
    out = download(
        server.url("/blob.bin"), dest, sha256=DIGEST, expected_size=len(PAYLOAD), progress=True
    )
    assert out == dest
    assert dest.read_bytes() == PAYLOAD
    assert (tmp_path / "sub" / "blob.bin.sha256").read_text().strip() == DIGEST
    assert not (tmp_path / "sub" / "blob.bin.part").exists()
    assert server.log == [("/blob.bin", None, 200)]


def test_interrupted_download_resumes_with_range(server, tmp_path):
    dest = tmp_path / "blob.bin"
    server.cut_after["/blob.bin"] = 123_457
    with pytest.raises(DownloadError, match="123457 bytes kept"):
        download(server.url("/blob.bin"), dest, sha256=DIGEST, progress=False, retries=0)
    part = tmp_path / "blob.bin.part"
    assert not dest.exists()
    assert part.stat().st_size == 123_457
    assert part.read_bytes() == PAYLOAD[:123_457]

    download(server.url("/blob.bin"), dest, sha256=DIGEST, progress=False, retries=0)
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists()
    assert server.log[-1] == ("/blob.bin", "bytes=123457-", 206)


def test_broken_connection_is_retried_and_resumed(server, tmp_path):
    dest = tmp_path / "blob.bin"
    server.cut_after["/blob.bin"] = 5_000
    download(server.url("/blob.bin"), dest, sha256=DIGEST, progress=False, backoff_s=0.0)
    assert dest.read_bytes() == PAYLOAD
    assert [(r, s) for _, r, s in server.log] == [(None, 200), ("bytes=5000-", 206)]


def test_server_without_range_support_restarts(server, tmp_path):
    dest = tmp_path / "blob.bin"
    (tmp_path / "blob.bin.part").write_bytes(b"garbage-prefix")
    server.ignore_range = True
    download(server.url("/blob.bin"), dest, sha256=DIGEST, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.log == [("/blob.bin", "bytes=14-", 200)]


def test_complete_part_file_answered_416_is_accepted(server, tmp_path):
    dest = tmp_path / "blob.bin"
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD)
    download(server.url("/blob.bin"), dest, sha256=DIGEST, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.log == [("/blob.bin", f"bytes={len(PAYLOAD)}-", 416)]


def test_bad_checksum_raises_and_removes_file(server, tmp_path):
    dest = tmp_path / "blob.bin"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        download(server.url("/blob.bin"), dest, sha256=wrong, progress=False)
    assert wrong in str(info.value) and DIGEST in str(info.value)
    assert isinstance(info.value, ValueError)
    assert not dest.exists()
    assert not (tmp_path / "blob.bin.part").exists()


def test_wrong_expected_size_raises(server, tmp_path):
    with pytest.raises(ChecksumError, match="300000 bytes, expected 299999"):
        download(server.url("/blob.bin"), tmp_path / "b", expected_size=299_999, progress=False)


def test_existing_valid_file_is_not_fetched_again(server, tmp_path):
    dest = tmp_path / "blob.bin"
    dest.write_bytes(PAYLOAD)
    download(server.url("/blob.bin"), dest, sha256=DIGEST, progress=False)
    assert server.log == []
    dest.write_bytes(b"stale")  # wrong content -> fetched afresh
    download(server.url("/blob.bin"), dest, sha256=DIGEST, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert len(server.log) == 1


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/missing.zip"), tmp_path / "m.zip", progress=False)
    with pytest.raises(ValueError, match="retries"):
        download(server.url("/blob.bin"), tmp_path / "b", retries=-1)


# ---------------------------------------------------------------------------- extraction


def _tar_with(members: list[tarfile.TarInfo], contents: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info in members:
            data = (contents or {}).get(info.name)
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_safe_extract_zip_and_tar(tmp_path):
    members = {"top/a.txt": b"alpha", "top/sub/b.bin": bytes(range(256)), "c.txt": b"gamma"}
    (tmp_path / "x.zip").write_bytes(zip_bytes(members))
    (tmp_path / "x.tar.gz").write_bytes(tar_gz_bytes(members))
    for archive in ("x.zip", "x.tar.gz"):
        out = tmp_path / archive.replace(".", "_")
        written = safe_extract(tmp_path / archive, out)
        assert sorted(p.relative_to(out).as_posix() for p in written) == sorted(members)
        for name, data in members.items():
            assert (out / name).read_bytes() == data
    only = safe_extract(tmp_path / "x.zip", tmp_path / "only", include=lambda n: n.endswith(".bin"))
    assert [p.name for p in only] == ["b.bin"]
    assert not (tmp_path / "only" / "c.txt").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/tmp/evil_abs.txt"])
def test_safe_extract_refuses_escaping_zip_members(tmp_path, name):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(zip_bytes({"ok.txt": b"fine", name: b"pwned"}))
    with pytest.raises(ValueError, match="refused|outside"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not os.path.exists("/tmp/evil_abs.txt")


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil_abs.txt", "x/../../evil.txt"])
def test_safe_extract_refuses_escaping_tar_members(tmp_path, name):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(_tar_with([tarfile.TarInfo(name)], {name: b"pwned"}))
    with pytest.raises(ValueError):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize(
    "members",
    [
        [_link("link", "../../etc")],  # relative symlink out
        [_link("abs", "/etc/passwd")],  # absolute symlink
        [_link("hard", "../outside.txt", tarfile.LNKTYPE)],  # hard link out
        [_link("p", "."), _link("p/t", "../x")],  # chain: looks inside lexically, is not
    ],
)
def test_safe_extract_refuses_links_pointing_outside(tmp_path, members):
    archive = tmp_path / "links.tar.gz"
    archive.write_bytes(_tar_with(members))
    with pytest.raises(ValueError, match="link|outside|absolute"):
        safe_extract(archive, tmp_path / "out")


def test_safe_extract_refuses_device_and_zip_symlink(tmp_path):
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    (tmp_path / "dev.tar.gz").write_bytes(_tar_with([dev]))
    with pytest.raises(ValueError, match="device"):
        safe_extract(tmp_path / "dev.tar.gz", tmp_path / "out1")

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("evil_link")
        info.external_attr = 0o120777 << 16  # symlink
        zf.writestr(info, "../../outside")
    (tmp_path / "link.zip").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="points outside"):
        safe_extract(tmp_path / "link.zip", tmp_path / "out2")

    (tmp_path / "junk.zip").write_bytes(b"not an archive at all")
    with pytest.raises(ValueError, match="not a zip or tar"):
        safe_extract(tmp_path / "junk.zip", tmp_path / "out3")


def test_safe_extract_allows_links_inside(tmp_path):
    archive = tmp_path / "ok.tar.gz"
    members = [tarfile.TarInfo("d/real.txt"), _link("d/alias.txt", "real.txt")]
    archive.write_bytes(_tar_with(members, {"d/real.txt": b"content"}))
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "alias.txt").read_bytes() == b"content"
