"""chaoshelius.promapi, the harness's one Prometheus client: what each failure is called.

An unreachable or non-Prometheus endpoint and a refused query are different errors, so the
report can say "Prometheus is unreachable" once and still draw the charts whose queries
worked. The "Prometheus" here is a stub HTTP server answering like the real API does for
each case (the real server's answers are exercised by the probe and report tests).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chaoshelius.promapi import PromAPIRejected, PromAPIUnreachable, PrometheusAPI
from chaoshelius.report.exceptions import PrometheusUnavailable, QueryFailed
from chaoshelius.report.prometheus import PrometheusClient


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802  http.server's spelling
        if self.path.startswith("/html"):
            status, body, kind = 200, b"<html>a login page</html>", "text/html"
        elif "bad%28" in self.path:  # the query "bad(": refused like Prometheus refuses it
            error = {"status": "error", "errorType": "bad_data", "error": "parse error"}
            status, body, kind = 400, json.dumps(error).encode(), "application/json"
        else:
            data = {"resultType": "matrix", "result": []}
            status, kind = 200, "application/json"
            body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_refused_query_is_rejected_not_unreachable(stub: str) -> None:
    api = PrometheusAPI(stub, 2.0)
    assert api.range_raw("up", 0, 10) == []
    with pytest.raises(PromAPIRejected, match="parse error"):
        api.range_raw("bad(", 0, 10)
    with PrometheusClient(stub, 2.0) as client:
        with pytest.raises(QueryFailed, match="parse error"):
            client.query_range("bad(", 0, 10, 1)


def test_no_prometheus_api_is_unreachable(stub: str) -> None:
    with pytest.raises(PromAPIUnreachable, match="no Prometheus API"):
        PrometheusAPI(f"{stub}/html", 2.0).instant("up")
    with pytest.raises(PromAPIUnreachable, match="unreachable"):
        PrometheusAPI("http://127.0.0.1:1", 2.0).instant("up")
    with (
        PrometheusClient("http://127.0.0.1:1", 2.0) as client,
        pytest.raises(PrometheusUnavailable, match="unreachable"),
    ):
        client.check()
