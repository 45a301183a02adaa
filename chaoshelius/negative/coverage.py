"""Which probe functions of the catalogue a negative-control run showed failing.

A check that cannot fail is a defect: after `chaoshelius suite run --negative` this table
lists every probe *function* the experiments use, the control(s) meant to make it fail, and
whether they did (the control's own probe among the run's failing probes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from chaoshelius.report.model import RunSummary

__all__ = ["CoverageRow", "coverage", "render_coverage"]


@dataclass(frozen=True)
class CoverageRow:
    function: str  # e.g. "slo.probes.fallback_engaged_within"
    caught_by: tuple[str, ...]  # "experiment[profile]:probe" that deviated on it
    missed_by: tuple[str, ...]  # controls meant to fail it that did not

    @property
    def covered(self) -> bool:
        return bool(self.caught_by)


def _functions(experiments_dir: Path) -> dict[tuple[str, str], str]:
    """(experiment, probe name) -> "module.func" of every hypothesis probe."""
    found = {}
    for path in sorted(experiments_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for probe in data.get("steady-state-hypothesis", {}).get("probes", []):
            provider = probe.get("provider", {})
            module = str(provider.get("module", "")).removeprefix("chaoshelius.")
            found[(path.stem, str(probe.get("name")))] = f"{module}.{provider.get('func')}"
    return found


def coverage(summaries: list[RunSummary], experiments_dir: Path) -> list[CoverageRow]:
    """One row per probe function the catalogue uses, from the negative runs' summaries."""
    functions = _functions(experiments_dir)
    caught: dict[str, list[str]] = {f: [] for f in sorted(set(functions.values()))}
    missed: dict[str, list[str]] = {f: [] for f in caught}
    for s in summaries:
        failing = set(s.failing_probes) | ({s.failing_probe} if s.failing_probe else set())
        for probe in s.expected_failing_probes or ():
            function = functions.get((s.experiment_key, probe))
            if function is None:
                continue
            label = f"{s.experiment_key}[{s.variant or '-'}]:{probe}"
            (caught if probe in failing else missed)[function].append(label)
    return [CoverageRow(f, tuple(caught[f]), tuple(missed[f])) for f in sorted(caught)]


def render_coverage(rows: list[CoverageRow]) -> str:
    """The table printed at the end of a negative suite."""
    lines = ["probe function coverage by negative controls:"]
    for row in rows:
        mark = "ok  " if row.covered else "NONE"
        detail = ", ".join(row.caught_by) if row.caught_by else "no control deviated on it"
        if row.missed_by:
            detail += f" (did not deviate: {', '.join(row.missed_by)})"
        lines.append(f"  {mark} {row.function:<42} {detail}")
    return "\n".join(lines)
