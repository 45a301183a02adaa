"""The registry download (issue 17, finding 2): bounded in size and in total time, and only
from the configured artifact store.

The registry is a real local HTTP server speaking the three MLflow REST calls the service
makes (alias lookup, artifact listing, artifact download through `--serve-artifacts`), whose
artifact answers the test chooses: a valid model, a large body, a slow drip. The MLflow
client, `MlflowRegistry` and the refresher are the real ones; a real `mlflow server` cannot
be made to drip or to serve a chosen body, hence this stand-in (the integration tests run the
real server for the normal path).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from helius_reco.core.config import Settings
from helius_reco.exceptions import ArtifactError, RegistryError
from helius_reco.lifecycle.registry import MlflowRegistry, ModelRef
from helius_reco.lifecycle.store import ModelSource
from helius_reco.main import build_refresher
from helius_reco.metrics import Metrics
from prometheus_client import CollectorRegistry

MiB = 1024 * 1024
SOURCE = "mlflow-artifacts:/1/run/artifacts/model"


@dataclass
class FakeMlflow:
    """What the server answers; what it saw and sent."""

    artifact: bytes = b""
    mode: str = "artifact"  # artifact | large | large-undeclared | drip
    large_bytes: int = 100 * MiB
    versions: dict[str, str] = field(default_factory=dict)  # version -> source
    alias: str = "1"
    sent: int = 0  # artifact body bytes written to the socket
    hits: list[str] = field(default_factory=list)
    client_gone: threading.Event = field(default_factory=threading.Event)

    def serve(self) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, payload: object, status: int = 200) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                fake.hits.append(url.path)
                if url.path.endswith("/registered-models/alias"):
                    query = parse_qs(url.query)
                    version = fake.alias
                    source = fake.versions.get(version, SOURCE)
                    self._json(
                        {
                            "model_version": {
                                "name": query.get("name", ["reco"])[0],
                                "version": version,
                                "source": source,
                                "status": "READY",
                                "aliases": [query.get("alias", ["champion"])[0]],
                            }
                        }
                    )
                elif url.path == "/api/2.0/mlflow-artifacts/artifacts":
                    self._json({})  # a listing of a file: nothing under it
                elif url.path.endswith("/reco.npz") and "/absent/" not in url.path:
                    self._artifact()
                else:
                    self._json({"error_code": "RESOURCE_DOES_NOT_EXIST"}, 404)

            def _artifact(self) -> None:
                try:
                    if fake.mode == "artifact":
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(fake.artifact)))
                        self.end_headers()
                        self.wfile.write(fake.artifact)
                        fake.sent += len(fake.artifact)
                        return
                    self.send_response(200)
                    if fake.mode == "large-undeclared":
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    else:
                        self.send_header("Content-Length", str(fake.large_bytes))
                    self.end_headers()
                    if fake.mode == "drip":
                        deadline = time.monotonic() + 60
                        while time.monotonic() < deadline:
                            self.wfile.write(b"P")
                            self.wfile.flush()
                            fake.sent += 1
                            time.sleep(0.05)
                        return
                    block = bytes(MiB)
                    while fake.sent < fake.large_bytes:
                        self.wfile.write(block)
                        fake.sent += len(block)
                except (BrokenPipeError, ConnectionResetError):
                    fake.client_gone.set()

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@pytest.fixture
def mlflow(artifact: bytes) -> Iterator[tuple[FakeMlflow, str]]:
    fake = FakeMlflow(artifact=artifact)
    server = fake.serve()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def other_server(artifact: bytes) -> Iterator[tuple[FakeMlflow, str]]:
    """A second host (what an SSRF would reach), serving a valid model."""
    fake = FakeMlflow(artifact=artifact)
    server = fake.serve()
    yield fake, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _registry(uri: str, max_bytes: int = 64 * MiB) -> MlflowRegistry:
    return MlflowRegistry(
        uri, "reco", "champion", client_env=Settings().mlflow_client_env(), max_bytes=max_bytes
    )


# -- the size cap ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["large", "large-undeclared"])
def test_a_large_artifact_stops_at_the_cap(mlflow: tuple[FakeMlflow, str], mode: str) -> None:
    fake, uri = mlflow
    fake.mode = mode
    registry = _registry(uri, max_bytes=MiB)
    started = time.monotonic()
    with pytest.raises(ArtifactError, match="limit"):
        registry.fetch(ModelRef("1", SOURCE))
    elapsed = time.monotonic() - started
    time.sleep(0.2)  # what the server still managed to push into the socket buffers
    print(f"{mode}: refused after {elapsed * 1000:.0f} ms, server sent {fake.sent / MiB:.0f} MiB")
    # the kernel's socket buffers take a few MiB more than the client read
    assert fake.sent <= 16 * MiB, f"{fake.sent / MiB:.0f} MiB transferred for a 1 MiB cap"
    assert elapsed < 2.0


def test_a_normal_artifact_still_downloads(mlflow: tuple[FakeMlflow, str], artifact: bytes) -> None:
    _, uri = mlflow
    assert _registry(uri).fetch(ModelRef("1", SOURCE)) == artifact
    host = uri.removeprefix("http://")
    with_host = f"mlflow-artifacts://{host}/1/run/artifacts/model"
    assert _registry(uri).fetch(ModelRef("1", with_host)) == artifact


# -- the total deadline ---------------------------------------------------------------------


def test_a_dripping_download_ends_at_the_deadline_and_frees_its_slot(
    mlflow: tuple[FakeMlflow, str], tmp_path: Path
) -> None:
    """One byte every 50 ms never trips the per-read timeout (2 s); only a total deadline
    ends it. With one refresh slot, an attempt that never ends makes every later one `busy`."""
    fake, uri = mlflow
    fake.mode = "drip"
    fake.large_bytes = 100_000  # declared: under the cap, so only time can end it
    settings = Settings(
        mlflow_tracking_uri=uri,
        cache_dir=tmp_path / "cache",
        refresh_deadline_seconds=1.0,
        max_hung_refreshes=1,
    )
    refresher = build_refresher(settings, Metrics(CollectorRegistry()))
    refresher.load_local()
    first = refresher.refresh_once()
    assert first.reason == "timeout"
    gone = fake.client_gone.wait(3.0)
    time.sleep(0.3)  # the abandoned attempt's thread ends and releases its slot
    second = refresher.refresh_once()
    print(f"first {first.reason}, client gone: {gone}, second {second.reason}")
    assert gone, "the download was still running 3 s after its 1 s deadline"
    assert second.reason == "timeout", f"second attempt: {second.reason} ({second.detail})"
    assert refresher.store.current is not None
    assert refresher.store.current.source == ModelSource.BASELINE


# -- only the configured artifact store -----------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "http://{other}/stolen/model",
        "mlflow-artifacts://{other}/1/run/artifacts/model",
        "file://{tmp}/model",
        "{tmp}/model",
    ],
)
def test_a_source_outside_the_artifact_store_is_refused(
    mlflow: tuple[FakeMlflow, str],
    other_server: tuple[FakeMlflow, str],
    tmp_path: Path,
    artifact: bytes,
    source: str,
) -> None:
    fake, uri = mlflow
    other, other_host = other_server
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "reco.npz").write_bytes(artifact)
    metrics = Metrics(CollectorRegistry())
    settings = Settings(mlflow_tracking_uri=uri, cache_dir=tmp_path / "cache")
    refresher = build_refresher(settings, metrics)
    refresher.load_local()
    assert refresher.refresh_once().ok  # version 1, from the tracking server's store
    fake.versions["2"] = source.format(other=other_host, tmp=tmp_path)
    fake.alias = "2"
    outcome = refresher.refresh_once()
    served = refresher.store.current
    assert served is not None
    print(f"{source}: {outcome.reason} ({outcome.detail}); other host hits {other.hits}")
    assert other.hits == [], "the service fetched from a host outside the artifact store"
    assert (outcome.ok, outcome.reason) == (False, "artifact_rejected")
    assert "artifact store" in outcome.detail
    assert (served.version, served.source) == ("1", ModelSource.REGISTRY)
    failures = metrics.registry.get_sample_value(
        "reco_engine_refresh_failures_total", {"reason": "artifact_rejected"}
    )
    assert failures == 1


def test_registry_errors_keep_their_reasons(mlflow: tuple[FakeMlflow, str]) -> None:
    _, uri = mlflow
    with pytest.raises(RegistryError) as missing:
        _registry(uri).fetch(ModelRef("1", "mlflow-artifacts:/1/run/artifacts/absent"))
    assert missing.value.reason in {"not_found", "unavailable"}
