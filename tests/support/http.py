"""The tests' small HTTP servers: one reply helper and one way to serve in the background."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def reply(
    handler: BaseHTTPRequestHandler, data: bytes, content_type: str, status: int = 200
) -> None:
    """An answer with `data` and its length (keep-alive clients need it)."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """`handler` on 127.0.0.1 (a free port) in a daemon thread; the server and its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
