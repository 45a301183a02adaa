"""Which threshold settings of the catalogue a negative-control run showed failing.

A check that cannot fail is a defect, and so is an allowance nothing was shown to exceed: a
probe function is used with several settings (the tail gets 3x + 50 ms in one experiment and
3x + 150 ms where a process restarts), and a control that fails the tight one says nothing of the
loose one. After `chaoshelius suite run --negative` this table lists every (probe function,
setting) pair the experiments use, the control(s) meant to make it fail, and whether they did
(the control's own probe among the run's failing probes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaoshelius.report.model import RunSummary

__all__ = ["CoverageRow", "coverage", "render_coverage", "setting_of", "settings_used"]

# a probe's arguments that say what or when it judges, not how much it allows
_NOT_A_SETTING = frozenset(
    {"window_id", "kind", "target", "app", "zone", "configuration", "secrets"}
)


@dataclass(frozen=True)
class CoverageRow:
    function: str  # e.g. "slo.probes.fallback_engaged_within"
    setting: str  # its threshold arguments as the catalogue writes them, e.g. "seconds=${...}"
    caught_by: tuple[str, ...]  # "experiment[profile]:probe" that deviated on it
    missed_by: tuple[str, ...]  # controls meant to fail it that did not

    @property
    def covered(self) -> bool:
        return bool(self.caught_by)


def setting_of(probe: dict[str, Any]) -> tuple[str, str]:
    """("module.func", "arg=value ...") of a hypothesis probe: the threshold arguments it is
    written with (a `${key}` as written, so one configuration key is one setting)."""
    provider = probe.get("provider", {})
    module = str(provider.get("module", "")).removeprefix("chaoshelius.")
    args = provider.get("arguments") or {}
    setting = " ".join(
        f"{name}={json.dumps(value)}"
        for name, value in sorted(args.items())
        if name not in _NOT_A_SETTING
    )
    return f"{module}.{provider.get('func')}", setting


def settings_used(experiments_dir: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(experiment, probe name) -> (function, setting) of every hypothesis probe."""
    found = {}
    for path in sorted(experiments_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for probe in data.get("steady-state-hypothesis", {}).get("probes", []):
            found[(path.stem, str(probe.get("name")))] = setting_of(probe)
    return found


def coverage(summaries: list[RunSummary], experiments_dir: Path) -> list[CoverageRow]:
    """One row per (probe function, setting) the catalogue uses, from the negative runs'
    summaries."""
    used = settings_used(experiments_dir)
    caught: dict[tuple[str, str], list[str]] = {pair: [] for pair in sorted(set(used.values()))}
    missed: dict[tuple[str, str], list[str]] = {pair: [] for pair in caught}
    for s in summaries:
        failing = set(s.failing_probes) | ({s.failing_probe} if s.failing_probe else set())
        for probe in s.expected_failing_probes or ():
            pair = used.get((s.experiment_key, probe))
            if pair is None:
                continue
            label = f"{s.experiment_key}[{s.variant or '-'}]:{probe}"
            (caught if probe in failing else missed)[pair].append(label)
    return [
        CoverageRow(function, setting, tuple(caught[pair]), tuple(missed[pair]))
        for pair in sorted(caught)
        for function, setting in (pair,)
    ]


def render_coverage(rows: list[CoverageRow]) -> str:
    """The table printed at the end of a negative suite."""
    covered = sum(row.covered for row in rows)
    lines = [
        f"threshold setting coverage by negative controls: {covered} of {len(rows)} "
        "(probe function, setting) pairs shown failing:"
    ]
    for row in rows:
        mark = "ok  " if row.covered else "NONE"
        detail = ", ".join(row.caught_by) if row.caught_by else "no control deviated on it"
        if row.missed_by:
            detail += f" (did not deviate: {', '.join(row.missed_by)})"
        lines.append(f"  {mark} {row.function} [{row.setting or 'defaults'}]")
        lines.append(f"         {detail}")
    return "\n".join(lines)
