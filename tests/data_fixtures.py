"""Test helpers for the data pipelines: a local HTTP file server that honours Range requests,
plus generators of small archives in the real layouts (no network needed)."""

from __future__ import annotations

import contextlib
import io
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class FileServer:
    """State shared with the request handler.

    Attributes:
        files: URL path (e.g. ``"/data.zip"``) -> content.
        log: one ``(path, range_header or None, status)`` tuple per request.
        cut_after: path -> byte count; the *next* request for that path sends the right
            headers but closes the connection after that many body bytes (then the entry is
            removed), simulating a dropped connection.
        ignore_range: if True, answer every request with the full file (status 200).
        base_url: ``http://127.0.0.1:<port>``.
    """

    files: dict[str, bytes] = field(default_factory=dict)
    log: list[tuple[str, str | None, int]] = field(default_factory=list)
    cut_after: dict[str, int] = field(default_factory=dict)
    ignore_range: bool = False
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base_url + path


def _make_handler(state: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # keep pytest output clean

        def _send(self, status: int, headers: dict[str, str], body: bytes, path: str) -> None:
            range_header = self.headers.get("Range")
            with state.lock:
                state.log.append((path, range_header, status))
                cut = state.cut_after.pop(path, None)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            path = self.path.split("?", 1)[0]
            data = state.files.get(path)
            if data is None:
                self._send(404, {"Content-Length": "0"}, b"", path)
                return
            size = len(data)
            range_header = self.headers.get("Range")
            match = _RANGE_RE.match(range_header or "") if not state.ignore_range else None
            if match is None:
                self._send(200, {"Content-Length": str(size), "Accept-Ranges": "bytes"}, data, path)
                return
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else size - 1
            if start >= size or end < start:
                self._send(
                    416, {"Content-Range": f"bytes */{size}", "Content-Length": "0"}, b"", path
                )
                return
            end = min(end, size - 1)
            body = data[start : end + 1]
            headers = {
                "Content-Length": str(len(body)),
                "Content-Range": f"bytes {start}-{end}/{size}",
                "Accept-Ranges": "bytes",
            }
            self._send(206, headers, body, path)

        do_HEAD = do_GET  # noqa: N815

    return Handler


@contextlib.contextmanager
def serve_files(files: dict[str, bytes] | None = None) -> Iterator[FileServer]:
    """Run a threaded HTTP server on 127.0.0.1 (free port) serving ``files``."""
    state = FileServer(files=dict(files or {}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip archive (in memory) with the given ``name -> content`` members."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


def tar_gz_bytes(members: dict[str, bytes]) -> bytes:
    """A gzip-compressed tar archive (in memory) with regular-file members."""
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))
    return buf.getvalue()
