"""How close healthy runs came to each threshold: the evidence a false-alarm campaign gives.

`chaoshelius report margins reports/` reads every normal run's journal (negative controls are
left out: they are meant to fail) and, for each (experiment, probe) whose judgement has a
numeric allowance, the share of that allowance the run used: 1.0 is at the threshold, above
1.0 is a deviation. Sorted with the closest call first, with the load each experiment ran at,
it says which threshold a noisier machine would trip first and by how much.

Runs that prove nothing are counted too, so a campaign cannot look better by losing runs: a
planned run that never started (a `summary.json` and no journal: the suite was interrupted, or
`chaos` wrote no journal) and a run that was not judged (the steady gate refused it, a dry run)
are listed as "not run/not judged" with their reason, beside the deviated ones.

Share of the allowance, per probe function:
- latency_p99_ratio: the largest of p99 / allowed p99 and p50 / allowed p50, and of p99 and p50
  over the service's absolute SLO where it was judged (`slo_p99_ms`, `slo_p50_ms`);
- client_success_ratio: the larger of the lost share over the allowed loss, for the whole
  span and for the worst short window;
- fallback_engaged_within, fallback_cleared_within, replicas_recovered_within,
  models_converged_within, alert_fired: the measured seconds over the allowed seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaoshelius.report.model import UNJUDGED, Verdict

__all__ = ["Margin", "Margins", "allowance_used", "collect", "render"]

_TIMED = {
    "fallback_engaged_within": "seconds",
    "fallback_cleared_within": "seconds",
    "replicas_recovered_within": "seconds",
    "models_converged_within": "seconds",
    "alert_fired": "within_seconds",
}


def allowance_used(func: str, output: dict[str, Any]) -> float | None:
    """The share of its allowance a probe's measurement used, or None if it has none."""
    t = output.get("threshold") or {}
    try:
        if func == "latency_p99_ratio":
            p99 = output["p99_during_seconds"] / output["allowed_seconds"]
            allowed_p50 = t["p50_max_ratio"] * output["p50_before_seconds"] + t.get(
                "p50_noise_seconds", 0.0
            )
            shares = [p99, output["p50_during_seconds"] / allowed_p50]
            for quantile in ("p99", "p50"):  # the service's absolute SLO, where judged
                ceiling = output.get(f"slo_{quantile}_seconds")
                if ceiling:
                    shares.append(output[f"{quantile}_during_seconds"] / ceiling)
            return float(max(shares))
        if func == "client_success_ratio":
            whole = (1 - output["value"]) / (1 - t["min_ratio"])
            worst = (1 - output["worst_window_ratio"]) / (1 - t["min_worst_ratio"])
            return float(max(whole, worst))
        if func in _TIMED:
            return float(output["value"]) / float(t[_TIMED[func]])
    except (KeyError, TypeError, ZeroDivisionError):
        return None
    return None


@dataclass
class Margin:
    experiment: str
    probe: str
    used: list[float] = field(default_factory=list)
    failed: int = 0
    closest: str = ""  # the description of the run that came closest

    @property
    def worst(self) -> float:
        return max(self.used)


@dataclass
class Margins:
    runs: int = 0
    deviated: list[str] = field(default_factory=list)  # run ids
    # (run id, "not run" | "not judged", why): runs that never started or were not judged
    unjudged: list[tuple[str, str, str]] = field(default_factory=list)
    loads: dict[str, list[float]] = field(default_factory=dict)  # experiment -> req/s per run
    rows: list[Margin] = field(default_factory=list)  # closest first


def collect(reports_dirs: Iterable[Path]) -> Margins:
    """Every normal run under `<dir>/runs/*/` of each reports dir, those that never started
    (a summary.json without a journal) included."""
    found = Margins()
    by_key: dict[tuple[str, str], Margin] = {}
    for reports in reports_dirs:
        for run_dir in sorted(p for p in Path(reports).glob("runs/*") if p.is_dir()):
            meta = _read(run_dir / "meta.json") or {}
            summary = _read(run_dir / "summary.json") or {}
            if meta.get("variant") or summary.get("variant"):
                continue  # a negative control: meant to fail
            journal = _read(run_dir / "journal.json")
            verdict = str(summary.get("verdict") or "")
            if journal is None and not verdict:
                continue  # not a run: no journal, no summary
            found.runs += 1
            if verdict in UNJUDGED or journal is None:
                kind = verdict or str(Verdict.NOT_RUN)  # no journal: it proves nothing
                found.unjudged.append((run_dir.name, kind, str(summary.get("reason") or "")))
            elif journal.get("deviated") or journal.get("status") != "completed":
                found.deviated.append(run_dir.name)
            experiment = str(meta.get("experiment") or summary.get("experiment_key") or "")
            experiment = experiment or run_dir.name
            after = ((journal or {}).get("steady_states") or {}).get("after") or {}
            for probe in after.get("probes") or []:
                _add(found, by_key, experiment, probe)
    found.rows = sorted(by_key.values(), key=lambda m: (-m.failed, -m.worst))  # failures first
    return found


def _add(
    found: Margins, by_key: dict[tuple[str, str], Margin], experiment: str, probe: dict[str, Any]
) -> None:
    output = probe.get("output")
    func = str((probe.get("activity") or {}).get("provider", {}).get("func", ""))
    if not isinstance(output, dict):
        return
    if func == "client_success_ratio" and "requests_per_second" in output:
        found.loads.setdefault(experiment, []).append(float(output["requests_per_second"]))
    used = allowance_used(func, output)
    if used is None:
        return
    name = str(probe["activity"].get("name", func))
    margin = by_key.setdefault((experiment, name), Margin(experiment, name))
    if not margin.used or used > margin.worst:
        margin.closest = str(output.get("description", ""))
    margin.used.append(used)
    margin.failed += probe.get("tolerance_met") is False


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def render(found: Margins, limit: int = 25) -> str:
    lines = [
        f"{found.runs} normal run(s), {len(found.deviated)} deviated, "
        f"{len(found.unjudged)} not run/not judged"
    ]
    lines += [f"  deviated: {run}" for run in found.deviated]
    lines += [f"  {kind}: {run} ({why})" for run, kind, why in found.unjudged]
    for experiment, rates in sorted(found.loads.items()):
        lines.append(
            f"load {experiment}: {len(rates)} run(s) at {min(rates):.0f}-{max(rates):.0f} req/s"
        )
    lines.append("allowance used (1.00 = at the threshold), failures then closest first:")
    for m in found.rows[:limit]:
        lines.append(
            f"{m.worst:5.2f}  {m.experiment:<34} {m.probe:<36} n={len(m.used)} "
            f"failed={m.failed}  {m.closest[:160]}"
        )
    return "\n".join(lines)
