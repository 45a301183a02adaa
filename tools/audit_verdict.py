"""Judging pip-audit's JSON report (`pip-audit --format json`): fail closed.

Standard library only: `noxfile.py` loads this file by path, without the project installed.

pip-audit's PyPI service reads each dependency's vulnerabilities from PyPI's per-version JSON
API (`/pypi/<name>/<version>/json`, key `vulnerabilities`) and, when that key is missing,
reports the dependency with `"vulns": []`, the same as audited and clean. An intercepting proxy
or mirror answering 200 without that key makes every dependency "clean" with no data. So a
dependency counts as audited only when its report entry has a `vulns` list AND the service's
answer for it carried a `vulnerabilities` key (`has_vulnerability_data`, checked separately by
the caller); everything else is "not audited", which fails the audit like a vulnerability does.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

EDITABLE = "distribution marked as editable"
PYPI_JSON = "https://pypi.org/pypi/{name}/{version}/json"


@dataclass
class Verdict:
    audited: list[str] = field(default_factory=list)
    vulnerable: list[str] = field(default_factory=list)  # "name version: ID (fixed in ...)"
    unaudited: dict[str, str] = field(default_factory=dict)  # "name version" -> why

    @property
    def ok(self) -> bool:
        return bool(self.audited) and not self.vulnerable and not self.unaudited

    def summary(self) -> str:
        total = len(self.audited) + len(self.unaudited)
        return (
            f"pip-audit: {total} dependencies, {len(self.audited)} audited, "
            f"{len(self.unaudited)} not audited, {len(self.vulnerable)} known vulnerabilities"
        )


def dependencies(report: Any) -> list[dict[str, Any]]:
    """The report's dependency entries, editable (the project's own) ones left out."""
    if not isinstance(report, dict) or not isinstance(report.get("dependencies"), list):
        raise ValueError("pip-audit's report has no `dependencies` list: nothing was audited")
    return [
        d
        for d in report["dependencies"]
        if isinstance(d, dict) and d.get("skip_reason") != EDITABLE
    ]


def _key(dep: dict[str, Any]) -> str:
    """ "name version" (a skipped entry has no version in pip-audit's report: "name")."""
    return " ".join(str(dep[k]) for k in ("name", "version") if dep.get(k) is not None) or "?"


def judge(report: Any, has_vulnerability_data: dict[str, bool] | None = None) -> Verdict:
    """The verdict over pip-audit's JSON report. `has_vulnerability_data` maps "name version"
    to whether the vulnerability service's answer carried vulnerability data (a missing entry,
    or None for the whole map, counts as no data: fail closed)."""
    verdict = Verdict()
    for dep in dependencies(report):
        key = _key(dep)
        vulns = dep.get("vulns")
        if "skip_reason" in dep:
            verdict.unaudited[key] = str(dep["skip_reason"])
        elif not isinstance(vulns, list):
            verdict.unaudited[key] = "the report has no `vulns` list for it"
        elif not (has_vulnerability_data or {}).get(key, False):
            verdict.unaudited[key] = (
                "the vulnerability service answered without vulnerability data "
                "(no `vulnerabilities` key: a proxy or mirror, not PyPI)"
            )
        else:
            verdict.audited.append(key)
            for v in vulns:
                fixed = ", ".join(v.get("fix_versions", [])) if isinstance(v, dict) else ""
                name = v.get("id", "?") if isinstance(v, dict) else repr(v)
                verdict.vulnerable.append(f"{key}: {name} (fixed in {fixed or '-'})")
    return verdict


def answer_has_vulnerability_data(body: bytes) -> bool:
    """Whether one per-version JSON API answer carries vulnerability data (a list, even empty)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return False
    return isinstance(answer, dict) and isinstance(answer.get("vulnerabilities"), list)


def probe_vulnerability_data(
    report: Any, url: str = PYPI_JSON, timeout: float = 15.0
) -> dict[str, bool]:
    """For each dependency pip-audit reported on, whether the PyPI JSON API (the service it
    asked) answers with a `vulnerabilities` key: the check pip-audit itself does not make."""

    def one(dep: dict[str, Any]) -> tuple[str, bool]:
        key = _key(dep)
        target = url.format(
            name=urllib.parse.quote(str(dep.get("name")), safe=""),
            version=urllib.parse.quote(str(dep.get("version")), safe=""),
        )
        if not target.startswith(("https://", "http://")):
            return key, False
        try:
            with urllib.request.urlopen(target, timeout=timeout) as answer:  # noqa: S310  http(s) checked above
                return key, answer_has_vulnerability_data(answer.read())
        except OSError:
            return key, False

    asked = [d for d in dependencies(report) if "skip_reason" not in d]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(one, asked))
