"""Resumable, checksummed HTTP downloads and path-safe archive extraction.

Only the standard library (``urllib``) is used for HTTP; ``tqdm`` draws the progress bar.

Download protocol
-----------------
* Bytes are written to ``<dest>.part``. If that file already exists (an interrupted earlier
  attempt), the request carries ``Range: bytes=<size>-``; a ``206 Partial Content`` answer is
  appended, a ``200 OK`` answer (server without range support) restarts from zero.
* A broken connection is retried ``retries`` times, each retry resuming from the bytes on disk.
* When the transfer is complete, the size (``expected_size``) and SHA-256 (``sha256``) are
  checked; only then is ``.part`` renamed atomically (``os.replace``) to ``dest``. A file that
  fails the checksum is deleted and :class:`ChecksumError` is raised.
* The SHA-256 of every finished download is written next to it as ``<dest>.sha256``.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "ChecksumError",
    "DownloadError",
    "download",
    "safe_extract",
    "sha256_file",
]

_CHUNK = 1 << 16
_USER_AGENT = "rhel-lib-data/0.1 (+urllib)"


class DownloadError(OSError):
    """The server could not deliver the file (HTTP error, broken connection after retries)."""


class ChecksumError(ValueError):
    """A downloaded file does not have the expected SHA-256 digest or size."""


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 digest of the file at ``path`` (read in ``chunk``-byte blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_complete(path: Path, url: str, sha256: str | None, expected_size: int | None) -> str:
    """Verify size and digest of ``path``; return its SHA-256. Raise :class:`ChecksumError`."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise ChecksumError(
            f"download of {url} has {size} bytes, expected {expected_size} bytes ({path})"
        )
    actual = sha256_file(path)
    if sha256 is not None and actual.lower() != sha256.lower():
        raise ChecksumError(
            f"SHA-256 mismatch for {url}: expected {sha256.lower()}, got {actual} ({path}). "
            "The file was deleted; run the command again to download it afresh."
        )
    return actual


def _parse_content_range(value: str | None) -> tuple[int | None, int | None] | None:
    """Parse ``bytes START-END/TOTAL`` (or ``bytes */TOTAL``) into ``(START, TOTAL)``.

    Unknown parts are None; an unparseable header gives None.
    """
    if not value or not value.startswith("bytes "):
        return None
    span, _, total = value[len("bytes ") :].partition("/")
    start_text = span.partition("-")[0].strip()
    if start_text != "*" and not start_text.isdigit():
        return None
    start = None if start_text == "*" else int(start_text)
    total_int = int(total) if total.strip().isdigit() else None
    return start, total_int


def _fetch_into(
    url: str, part: Path, *, progress: bool, timeout: float, desc: str
) -> tuple[bool, int | None]:
    """One HTTP attempt that appends to ``part`` (resuming if it is non-empty).

    Returns ``(complete, total_size)``: ``complete`` is False only when the server answered
    416 for a range although nothing says the file is finished (caller restarts).
    Raises ``OSError``/``http.client.HTTPException`` on a broken transfer.
    """
    from tqdm.auto import tqdm

    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if have > 0:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have > 0:
            parsed = _parse_content_range(err.headers.get("Content-Range"))
            total = None if parsed is None else parsed[1]
            if total is not None and total == have:
                return True, total  # the partial file is already the whole file
            return False, total
        raise DownloadError(f"HTTP {err.code} {err.reason} while downloading {url}") from err
    except urllib.error.URLError as err:
        raise DownloadError(f"cannot reach {url}: {err.reason}") from err

    with response:
        status = getattr(response, "status", 200)
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if status == 206:
            parsed = _parse_content_range(response.headers.get("Content-Range"))
            if parsed is None or parsed[0] != have:
                raise DownloadError(
                    f"server sent an unexpected Content-Range for {url}: "
                    f"{response.headers.get('Content-Range')!r} (asked from byte {have})"
                )
            total = (
                parsed[1] if parsed[1] is not None else (None if length is None else have + length)
            )
            mode = "ab"
        else:  # 200: full body, start again from byte 0
            have = 0
            total = length
            mode = "wb"
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                disable=not progress,
                leave=True,
            ) as bar,
        ):
            received = 0
            while True:
                block = response.read(_CHUNK)
                if not block:
                    break
                out.write(block)
                received += len(block)
                bar.update(len(block))
        if length is not None and received < length:
            raise http.client.IncompleteRead(b"", length - received)
    return True, total


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    expected_size: int | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60.0,
    backoff_s: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest`` with resume, progress bar, checksum and atomic rename.

    Args:
        url: ``http(s)://`` address of the file.
        dest: final file path; its parent folders are created.
        sha256: expected hex SHA-256 of the whole file, or None to skip the check (the
            computed digest is still written to ``<dest>.sha256``).
        expected_size: expected size in bytes, or None.
        progress: draw a tqdm progress bar (on stderr).
        retries: how many times a broken transfer is resumed before giving up.
        timeout: socket timeout in seconds for each request.
        backoff_s: sleep before retry ``k`` is ``backoff_s * k`` seconds.

    Returns:
        ``Path(dest)``. If ``dest`` already exists and matches ``sha256``/``expected_size``
        (when given) nothing is fetched.

    Raises:
        DownloadError: HTTP error or a transfer still broken after ``retries`` resumptions
            (the ``.part`` file is kept so a later call resumes).
        ChecksumError: the finished file has the wrong size or SHA-256 (it is deleted).
    """
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest_file = dest.with_name(dest.name + ".sha256")

    if dest.exists():
        try:
            actual = _check_complete(dest, url, sha256, expected_size)
        except ChecksumError:
            dest.unlink()  # stale or corrupt: fetch again below
        else:
            digest_file.write_text(actual + "\n")
            return dest

    attempt = 0
    restarted = False
    while True:
        try:
            complete, _ = _fetch_into(url, part, progress=progress, timeout=timeout, desc=dest.name)
        except DownloadError:
            raise
        except (OSError, http.client.HTTPException) as err:
            attempt += 1
            if attempt > retries:
                have = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"download of {url} failed after {retries} resumptions "
                    f"({have} bytes kept in {part}; run again to resume): {err!r}"
                ) from err
            time.sleep(backoff_s * attempt)
            continue
        if not complete:
            if restarted:
                raise DownloadError(f"server refuses byte ranges for {url}")
            part.unlink(missing_ok=True)
            restarted = True
            continue
        break

    try:
        actual = _check_complete(part, url, sha256, expected_size)
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    digest_file.write_text(actual + "\n")
    return dest


# --------------------------------------------------------------------------------------
# Safe extraction
# --------------------------------------------------------------------------------------


def _inside(root: str, path: str) -> bool:
    """True if the (already resolved) ``path`` is ``root`` or lies below it."""
    return os.path.commonpath([root, path]) == root


def _check_member_name(root: str, name: str, archive: Path) -> str:
    """Resolve member ``name`` under ``root``; raise ValueError if it escapes."""
    if not name:
        raise ValueError(f"{archive}: archive member with an empty name")
    if name.startswith(("/", "\\")) or posixpath.isabs(name) or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"{archive}: absolute member path {name!r} refused")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise ValueError(f"{archive}: member path {name!r} contains '..' and is refused")
    resolved = os.path.realpath(os.path.join(root, *[p for p in parts if p]))
    if not _inside(root, resolved):
        raise ValueError(f"{archive}: member {name!r} would be written outside {root}")
    return resolved


def _check_link(root: str, name: str, target: str, archive: Path, *, hard: bool) -> None:
    """Raise ValueError unless the link ``name -> target`` resolves inside ``root``."""
    if not target or os.path.isabs(target) or target.startswith(("/", "\\")):
        raise ValueError(f"{archive}: link {name!r} -> {target!r} has an absolute target")
    if hard:
        base = root
    else:
        parent = os.path.dirname(name.replace("\\", "/").rstrip("/"))
        base = os.path.realpath(os.path.join(root, parent))
    resolved = os.path.realpath(os.path.join(base, target))
    if not _inside(root, resolved):
        raise ValueError(f"{archive}: link {name!r} -> {target!r} points outside {root}")


def _extract_zip(archive: Path, root: str, include: Callable[[str], bool] | None) -> list[Path]:
    written: list[Path] = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if include is not None and not info.is_dir() and not include(info.filename):
                continue
            dest = _check_member_name(root, info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                target = zf.read(info).decode("utf-8")
                _check_link(root, info.filename, target, archive, hard=False)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                if os.path.lexists(dest):
                    os.unlink(dest)
                os.symlink(target, dest)
                written.append(Path(dest))
                continue
            if info.is_dir():
                os.makedirs(dest, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            tmp = dest + ".extracting"
            with zf.open(info) as src, open(tmp, "wb") as out:
                for block in iter(lambda: src.read(_CHUNK), b""):  # noqa: B023
                    out.write(block)
            os.replace(tmp, dest)
            written.append(Path(dest))
    return written


def _extract_tar(archive: Path, root: str, include: Callable[[str], bool] | None) -> list[Path]:
    written: list[Path] = []
    with tarfile.open(archive, mode="r:*") as tf:
        for member in tf:
            if include is not None and not member.isdir() and not include(member.name):
                continue
            dest = _check_member_name(root, member.name, archive)
            if member.issym() or member.islnk():
                _check_link(root, member.name, member.linkname, archive, hard=member.islnk())
            elif not (member.isfile() or member.isdir()):
                raise ValueError(
                    f"{archive}: member {member.name!r} is a device, FIFO or other special "
                    "file and is refused"
                )
            if hasattr(tarfile, "data_filter"):
                try:
                    tf.extract(member, root, filter="data")
                except tarfile.FilterError as err:
                    raise ValueError(f"{archive}: member {member.name!r} refused: {err}") from err
            else:  # pragma: no cover - Python without extraction filters
                tf.extract(member, root)
            if not member.isdir():
                written.append(Path(dest))
    return written


def safe_extract(
    archive: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    include: Callable[[str], bool] | None = None,
) -> list[Path]:
    """Extract a ``.zip`` or ``.tar``/``.tar.gz``/``.tgz`` archive into ``target``.

    Every member is checked *before* it is written, against the files already extracted (so
    a symlink planted by an earlier member cannot be used to escape):

    * absolute paths, drive letters and ``..`` components are refused;
    * the resolved destination must lie inside ``target``;
    * symbolic/hard links must resolve inside ``target``;
    * device files and FIFOs are refused.

    Args:
        archive: path of the archive; the format is detected from the content.
        target: folder to extract into (created if needed).
        include: optional predicate on the member name; members for which it is False are
            skipped (folders are always created).

    Returns:
        The paths of the extracted files (not folders).

    Raises:
        ValueError: a member would escape ``target``, or the archive format is unknown.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    Path(target).mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(target)
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, root, include)
    if tarfile.is_tarfile(archive):
        return _extract_tar(archive, root, include)
    raise ValueError(f"{archive}: not a zip or tar archive")
