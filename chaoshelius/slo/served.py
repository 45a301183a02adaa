"""The model users were served, judged from what the clients got.

Every good `/predict` answer carries the identity of the model object that produced it
(`model_version`, `model_source`, `model_digest`: the short sha256 of the artifact it was
loaded from) and the pod that answered (header `X-Helius-Pod`); the load counts them in
`helius_client_answers_total{model_version,model_source,model_digest,reco_pod}`. These probes read
that counter's raw samples, so a version label that moves while the served model does not, a
pod that drops to the packaged baseline, or a replacement that ignores its cache is seen as the
clients saw it, not as the service reports it about itself.

An answer is placed at the scrape that first counted it (the load generator is scraped every
second locally, every 5 s on a cluster), so times below are good to one scrape. No data fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chaoslib.types import Configuration, Secrets

from chaoshelius import windows
from chaoshelius.model.actions import PROMOTIONS
from chaoshelius.slo import queries as pq
from chaoshelius.slo.verdict import Judged, fmt_number, window_probe
from chaoshelius.topology import CLIENT_ANSWERS, App, FaultKind

__all__ = [
    "no_pod_downgraded",
    "promoted_model_served_within",
    "replacement_served_cache",
]

_GOOD_SOURCES = ("registry", "cache")
_BASELINE = "baseline"
_OVERFLOW = "other"
# how far before the window the answers are read: a pod's good model before the fault
_BEFORE_SECONDS = 60.0


@dataclass(frozen=True)
class Answers:
    """Answers of one pod from one model identity: when (scrape time) and how many."""

    pod: str
    version: str
    source: str
    digest: str
    counted: list[tuple[float, float]]  # (scrape time, answers since the previous scrape)

    def between(self, start: float, end: float) -> float:
        return sum(n for t, n in self.counted if start < t <= end)

    def first_after(self, t0: float) -> float | None:
        return next((t for t, _ in self.counted if t > t0), None)

    def last(self) -> float | None:
        return self.counted[-1][0] if self.counted else None


def _answers(judged: Judged, start: float, end: float) -> tuple[list[Answers], str]:
    """Every (pod, identity)'s answers counted in (start, end], from the counter's raw samples
    (a counter reset, a restarted load generator, counts from 0)."""
    q = pq.raw_range(CLIENT_ANSWERS, start, end)
    found = []
    for series in judged.prometheus.matrix(q):
        counted, previous = [], None
        for t, value in series.points:
            added = value if previous is None or value < previous else value - previous
            if previous is not None and added > 0:
                counted.append((t, added))
            elif previous is None and value > 0 and t > start + 5.0:  # born in the span
                counted.append((t, value))
            previous = value
        labels = series.labels
        found.append(
            Answers(
                labels.get("reco_pod", "?"),
                labels.get("model_version", "?"),
                labels.get("model_source", "?"),
                labels.get("model_digest", "?"),
                counted,
            )
        )
    return found, q


def _since(t: float) -> float:
    """`t`, or this run's load start when that is later: answers before it were counted for
    a previous run (its pods, its model, its faults) and are not this run's to judge."""
    started = windows.load_started_at()
    return t if started is None else max(t, started)


def _by_pod(answers: Iterable[Answers]) -> dict[str, list[Answers]]:
    pods: dict[str, list[Answers]] = {}
    for a in answers:
        if a.counted:
            pods.setdefault(a.pod, []).append(a)
    return pods


def _no_data(judged: Judged, q: str, span: str) -> dict[str, Any]:
    return judged.result(
        False,
        None,
        f"no {CLIENT_ANSWERS} counted {span}: is the load generator running, scraped, and "
        "does the service name its model in every answer?",
        q,
    )


def _promotion(judged: Judged) -> tuple[dict[str, Any] | None, str]:
    """The last promotion noted on the window, or why there is none to judge against."""
    noted = judged.window.details.get(PROMOTIONS) or []
    if not noted:
        return None, "no promotion was noted during the fault (promote_model never ran in it)"
    last = noted[-1]
    if not last.get("ok"):
        return None, f"the promotion failed: {last.get('error')}"
    return last, ""


@window_probe()
def promoted_model_served_within(
    judged: Judged,
    seconds: float,
    app: str = App.RECO.value,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Clients were served the promoted model (its version AND its artifact digest) by every pod
    that answered, within `seconds` of the alias moving as the pods could see it (the
    promotion, or the fault's end when the promotion happened during the fault): after that,
    no pod answered from any other model, and each pod's last answers (until the load
    stopped) came from the promoted one. The promotion is the one `promote_model` noted on
    this window; a failed or missing promotion, an unrestored fault, or an await for `app` that
    timed out, fails. Value: the slowest pod's last answer from another model, in seconds
    after that moment (0 when none)."""
    promotion, why = _promotion(judged)
    if promotion is None:
        return judged.result(False, None, why)
    if judged.window.ended_at is None:
        return judged.result(False, None, "the fault has not ended (no restore recorded)")
    timeouts = windows.await_timeouts(app)
    if timeouts:
        return judged.result(False, None, f"an await for {app} timed out: {timeouts[0]}")
    moved = max(float(promotion["promoted_at"]), judged.end)
    end = judged.recovery_end(None)
    wanted = (str(promotion["to_version"]), str(promotion["digest"]))
    found, q = _answers(judged, moved - 1.0, end)
    pods = _by_pod(a for a in found if a.between(moved, end) > 0)
    extra: dict[str, Any] = {"to_version": wanted[0], "digest": wanted[1], "moved_at": moved}
    if not pods:
        return _no_data(judged, q, "after the alias moved")
    problems, late = [], {}
    for pod, sets in sorted(pods.items()):
        stale = [a for a in sets if (a.version, a.digest) != wanted]
        last_stale = max((a.last() or moved for a in stale), default=moved)
        last_new = max(
            (a.last() or 0.0 for a in sets if (a.version, a.digest) == wanted), default=0
        )
        late[pod] = max(0.0, last_stale - moved)
        other = ", ".join(f"{a.version}/{a.source}/{a.digest}" for a in stale)
        if not last_new:
            problems.append(f"{pod} never served version {wanted[0]} digest {wanted[1]}")
        elif last_stale > last_new:  # the load stopped before this pod was seen converged
            problems.append(f"{pod} still answered from {other} when the load stopped")
        elif late[pod] > seconds:
            problems.append(f"{pod} still answered from {other} {late[pod]:.1f} s after")
    slowest = max(late.values())
    return judged.result(
        not problems,
        slowest,
        f"promoted version {wanted[0]} (digest {wanted[1]}); {len(pods)} pod(s) answered: "
        + (
            "; ".join(problems)
            if problems
            else f"every one served only it {fmt_number(slowest, 3)} s after the alias moved "
            f"(allowed {seconds:g} s)"
        ),
        q,
        time_to_serve_seconds=slowest,
        **extra,
    )


@window_probe()
def no_pod_downgraded(
    judged: Judged,
    max_baseline_answers: int = 0,
    recovery_seconds: float | None = None,
    window_id: str | None = None,
    kind: str | None = None,
    target: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """No pod answered from the packaged `baseline` after having answered from a registry or
    cache model during the run (from 60 s before the fault, or this run's load start if later,
    to the end of its recovery), judged per pod from the clients' counter: a pod that had a
    good model keeps it through a fault.
    Value: the most baseline answers one pod gave after a good one (allowed
    `max_baseline_answers`)."""
    start, end = _since(judged.start - _BEFORE_SECONDS), judged.recovery_end(recovery_seconds)
    found, q = _answers(judged, start, end)
    pods = _by_pod(found)
    if not pods:
        return _no_data(judged, q, "during the fault and its recovery")
    problems, worst = [], 0.0
    for pod, sets in sorted(pods.items()):
        good = [a.first_after(start) for a in sets if a.source in _GOOD_SOURCES]
        first_good = min((t for t in good if t is not None), default=None)
        if first_good is None:
            continue
        dropped = sum(a.between(first_good, end) for a in sets if a.source == _BASELINE)
        worst = max(worst, dropped)
        if dropped > max_baseline_answers:
            problems.append(
                f"{pod} answered {dropped:.0f} time(s) from the baseline after a good one"
            )
    if any(pod == _OVERFLOW for pod in pods):
        problems.append(f"answers over the exporter's label cap ('{_OVERFLOW}'): not judged")
    return judged.result(
        not problems,
        worst,
        f"{len(pods)} pod(s) answered; "
        + ("; ".join(problems) if problems else "none fell back to the baseline after a good one"),
        q,
    )


@window_probe(kind=FaultKind.POD_KILL.value, target_from="app")
def replacement_served_cache(
    judged: Judged,
    app: str = App.RECO.value,
    during_kind: str = FaultKind.SCALE.value,
    during_target: str = App.MLFLOW.value,
    min_answers: int = 1,
    window_id: str | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """A replacement for the killed `app` pod, started while the registry was gone (the
    `during_kind`/`during_target` window), served the last good model from its on-disk cache:
    every answer it gave before the registry came back was `model_source="cache"` with the
    digest the pods served from the registry before the kill (at least `min_answers`).

    The cache promise is the local stack's only: on a cluster the recommender's cache is an
    emptyDir that dies with its pod, so a replacement there starts from the packaged baseline
    (manifests/README.md, honest limits). On `target=kubernetes` the probe judges what is
    promised there instead: the replacement answered during the outage, from its local model
    (`cache` or `baseline`), never an error-free nothing. Value: the replacements' answers
    from the promised model."""
    kill = judged.start
    outage = windows.find_window(kind=during_kind, target=during_target)
    until = outage.ended_at if outage is not None and outage.ended_at is not None else None
    end = min(until or judged.recovery_end(None), judged.recovery_end(None))
    before = set(windows.pods_before(judged.window, app))
    since = _since(kill - _BEFORE_SECONDS)
    found, q = _answers(judged, since, end)
    good_before = [
        (a.last() or 0.0, a.digest)
        for a in found
        if a.source == "registry" and a.between(since, kill) > 0
    ]
    if not good_before:
        return _no_data(judged, q, "from the registry before the kill")
    last_good = max(good_before)[1]
    local = judged.config.target == "local"
    promised = "its cache, the last good model" if local else "cache or baseline (a cluster)"
    fresh = _by_pod(a for a in found if a.pod not in before and a.between(kill, end) > 0)
    if not fresh:
        return _no_data(judged, q, f"from a replacement {app} pod before {during_target} was back")
    problems, served = [], 0.0
    for pod, sets in sorted(fresh.items()):
        for a in sets:
            n = a.between(kill, end)
            if (a.source == "cache" and a.digest == last_good) or (
                not local and a.source in ("cache", _BASELINE)
            ):
                served += n
            else:
                problems.append(f"{pod} answered {n:.0f} from {a.source} {a.version}/{a.digest}")
    if served < min_answers:
        problems.append(f"only {served:.0f} answer(s) from {promised} (need {min_answers})")
    return judged.result(
        not problems,
        served,
        f"last good model digest {last_good}; replacement(s) {', '.join(sorted(fresh))}: "
        + ("; ".join(problems) if problems else f"{served:.0f} answers, all from {promised}"),
        q,
        last_good_digest=last_good,
    )
