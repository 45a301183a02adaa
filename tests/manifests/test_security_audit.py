"""`nox -s security`'s pip-audit judging fails closed (issue 17, item 6), and its offline part
covers all Python.

pip-audit's PyPI service reports a dependency whose answer has no `vulnerabilities` key as
clean (`"vulns": []`): an intercepting proxy answering 200 with no data made the old session
pass. Here a real local HTTP server plays that proxy (and PyPI's real answer shape); pip-audit
itself is not run (it needs the network).
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "audit_verdict", ROOT / "tools" / "audit_verdict.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit_verdict"] = module
    spec.loader.exec_module(module)
    return module


audit = _load()

REPORT = {
    "dependencies": [
        {"name": "helius-reco", "version": "0.1.0", "skip_reason": audit.EDITABLE},
        {"name": "requests", "version": "2.32.3", "vulns": []},
        {"name": "jinja2", "version": "3.1.4", "vulns": []},
    ],
    "fixes": [],
}


class _Service(http.server.BaseHTTPRequestHandler):
    with_data: ClassVar[bool] = True

    def do_GET(self) -> None:  # noqa: N802  (http.server's spelling)
        body: dict[str, Any] = {"info": {"name": self.path.split("/")[2]}, "urls": []}
        if self.with_data:
            body["vulnerabilities"] = []
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def service() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pypi/{{name}}/{{version}}/json"
    server.shutdown()
    server.server_close()


def test_a_proxy_answering_200_without_vulnerability_data_is_not_audited(service: str) -> None:
    _Service.with_data = False
    verdict = audit.judge(REPORT, audit.probe_vulnerability_data(REPORT, url=service))
    assert not verdict.ok
    assert verdict.audited == []
    assert set(verdict.unaudited) == {"requests 2.32.3", "jinja2 3.1.4"}
    assert "vulnerabilities" in verdict.unaudited["requests 2.32.3"]


def test_answers_with_vulnerability_data_are_audited_clean(service: str) -> None:
    _Service.with_data = True
    verdict = audit.judge(REPORT, audit.probe_vulnerability_data(REPORT, url=service))
    assert verdict.ok, verdict
    assert verdict.summary() == (
        "pip-audit: 2 dependencies, 2 audited, 0 not audited, 0 known vulnerabilities"
    )


def test_unreachable_service_and_missing_answers_count_as_not_audited() -> None:
    dead = "http://127.0.0.1:9/pypi/{name}/{version}/json"
    assert (
        audit.judge(REPORT, audit.probe_vulnerability_data(REPORT, url=dead, timeout=2)).audited
        == []
    )
    assert not audit.judge(REPORT).ok  # no probe at all: nothing counts as audited
    assert not audit.judge(REPORT, {"requests 2.32.3": True}).ok  # jinja2 has no answer


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "x", "version": "1"},  # neither vulns nor skip_reason
        {"name": "x", "version": "1", "vulns": None},
        {"name": "x", "version": "1", "skip_reason": "Dependency not found on PyPI"},
    ],
)
def test_an_entry_without_a_vulns_list_is_not_audited(entry: dict[str, Any]) -> None:
    verdict = audit.judge({"dependencies": [entry]}, {"x 1": True})
    assert verdict.unaudited and not verdict.ok


def test_vulnerabilities_are_reported_and_fail() -> None:
    report = {
        "dependencies": [
            {"name": "x", "version": "1", "vulns": [{"id": "PYSEC-1", "fix_versions": ["2"]}]}
        ]
    }
    verdict = audit.judge(report, {"x 1": True})
    assert verdict.vulnerable == ["x 1: PYSEC-1 (fixed in 2)"] and not verdict.ok


@pytest.mark.parametrize("report", [{}, [], {"dependencies": None}, "<html>proxy</html>"])
def test_a_report_without_dependencies_is_an_error(report: Any) -> None:
    with pytest.raises(ValueError, match="nothing was audited"):
        audit.judge(report)


def test_an_empty_report_is_not_a_pass() -> None:
    assert not audit.judge({"dependencies": []}, {}).ok


def test_the_security_session_pins_its_tools_and_covers_all_python() -> None:
    noxfile = (ROOT / "noxfile.py").read_text()
    tools = re.search(r"SECURITY_TOOLS = \[(.*?)\]", noxfile, re.S)
    assert tools is not None
    pins = re.findall(r'"([^"]+)"', tools.group(1))
    assert {p.split("==")[0] for p in pins} == {"checkov", "pip-audit", "ruff"}
    assert all(re.fullmatch(r"[a-z-]+==\d+(\.\d+)+", p) for p in pins), pins
    covered = re.search(r"SECURITY_PYTHON = \[(.*?)\]", noxfile, re.S)
    assert covered is not None
    for tree in ("chaoshelius", "service", "tests", "benchmarks", "loadtests", "noxfile.py",
                 "experiments/build.py", "manifests/*.py"):  # fmt: skip
        assert f'"{tree}"' in covered.group(1), tree  # manifests/*.py: globbed
    assert "--offline" in (ROOT / ".ci" / "run").read_text()
    assert "nox -s security -- --offline" in (ROOT / ".github" / "workflows" / "ci.yml").read_text()
