"""A tiny in-process fake of the S3 object API (PUT/GET/DELETE object, path-style) for tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NO_SUCH_KEY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"
)


class FakeS3:
    """Objects by (bucket, key), with the headers they were written with."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, dict[str, str]]] = {}


@contextmanager
def fake_s3() -> Iterator[tuple[str, FakeS3]]:
    """Run the fake on a free local port; yields (endpoint URL, store)."""
    store = FakeS3()

    class Handler(BaseHTTPRequestHandler):
        def _split(self) -> tuple[str, str]:
            bucket, _, key = self.path.split("?")[0].lstrip("/").partition("/")
            return bucket, key

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            if self.headers.get("Content-Encoding") == "aws-chunked" or "STREAMING" in self.headers.get(
                "x-amz-content-sha256", ""
            ):
                body = _dechunk(body)
            store.objects[self._split()] = (body, {k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("ETag", '"fake"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            found = store.objects.get(self._split())
            if found is None:
                self.send_response(404)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(NO_SUCH_KEY)))
                self.end_headers()
                self.wfile.write(NO_SUCH_KEY)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(found[0])))
            self.end_headers()
            self.wfile.write(found[0])

        def do_DELETE(self) -> None:
            store.objects.pop(self._split(), None)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", store
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        header, _, rest = rest.partition(b"\r\n")
        size = int(header.split(b";")[0], 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out
