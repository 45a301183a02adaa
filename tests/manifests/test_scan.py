"""manifests/scan.py (nox -s security) fails when it should, and every skip carries a reason.

checkov itself runs in the nox session (its own venv); here, its verdict logic is fed
reports shaped like checkov's JSON, and the skip annotations are read from the overlays.
"""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType
from typing import Any

import pytest
from k8s_paths import MANIFESTS

Obj = dict[str, Any]
SKIP_ANNOTATION = re.compile(r"^CKV2?_K8S_\d+=[^=]+$")  # checkov splits on "=": exactly one


def _load_scan() -> ModuleType:
    spec = importlib.util.spec_from_file_location("helius_manifest_scan", MANIFESTS / "scan.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


scan = _load_scan()


def _report(
    passed: int = 3, failed: list[Obj] | None = None, skipped: list[Obj] | None = None
) -> Obj:
    return {
        "check_type": "kubernetes",
        "results": {
            "passed_checks": [{"check_id": "CKV_K8S_1"}] * passed,
            "failed_checks": failed or [],
            "skipped_checks": skipped or [],
        },
        "summary": {"resource_count": 2, "parsing_errors": 0},
    }


def _skip(reason: str) -> Obj:
    return {
        "check_id": "CKV_K8S_38",
        "resource": "Deployment.helius.prometheus",
        "check_result": {"result": "SKIPPED", "suppress_comment": reason},
    }


def test_a_clean_report_passes() -> None:
    assert scan.judge("kind", _report(skipped=[_skip("needs the API token")])) == []


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (
            _report(
                failed=[
                    {
                        "check_id": "CKV_K8S_16",
                        "resource": "Deployment.helius.helius-reco",
                        "check_name": "Container should not be privileged",
                    }
                ]
            ),
            "FAILED CKV_K8S_16 Deployment.helius.helius-reco",
        ),
        (_report(skipped=[_skip("No comment provided")]), "has no reason"),
        (_report(skipped=[_skip(" ")]), "has no reason"),
        (_report(passed=0), "scanned nothing"),
        ({"check_type": "kubernetes", "summary": {"passed": 0}}, "scanned nothing"),
        (_report() | {"summary": {"parsing_errors": 1}}, "could not parse"),
    ],
)
def test_a_bad_report_fails(report: Obj, expected: str) -> None:
    report.setdefault("results", {})
    problems = scan.judge("kind", report)
    assert any(expected in p for p in problems), problems


def test_every_skip_has_a_reason(rendered: dict[str, list[Obj]]) -> None:
    assert scan.SKIPPED and all(len(reason) > 20 for reason in scan.SKIPPED.values())
    found = []
    for target in ("kind", "aws"):
        for obj in rendered[target]:
            for key, value in (obj["metadata"].get("annotations") or {}).items():
                if key.startswith("checkov.io/skip"):
                    found.append(value)
                    assert SKIP_ANNOTATION.match(value), f"{obj['metadata']['name']}: {value!r}"
                    assert len(value.split("=", 1)[1].strip()) > 20, value
    assert found, "no checkov.io/skip annotation found: did the annotations move?"
