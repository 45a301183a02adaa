"""The question "no recommender in fallback now?", asked one way (chaoshelius.slo.steady).

The probe block experiments can declare is judged by chaoslib's own tolerance code on the
shape Prometheus really answers (a value is a string); tests/slo/test_slo_probes.py runs
the block through chaoslib against a real Prometheus.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from chaoslib.experiment import ensure_experiment_is_valid
from chaoslib.hypothesis import ensure_hypothesis_tolerance_is_valid, within_tolerance

from chaoshelius.slo import probes
from chaoshelius.slo.steady import (
    IN_FALLBACK_QUERY,
    NO_FALLBACK_NOW_PROBE,
    NO_FALLBACK_NOW_QUERY,
    NO_FALLBACK_NOW_TOLERANCE,
    OUT_OF_FALLBACK_QUERY,
    fallback_reason,
    out_of_fallback_query,
)
from chaoshelius.topology import FALLBACK_GAUGE


def _answer(*values: str) -> dict[str, Any]:
    """An instant query's answer as Prometheus's HTTP API gives it (chaosprometheus returns it
    as-is): one sample per value, the value a string."""
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {}, "value": [1733563200.123, v]} for v in values],
        },
    }


def test_the_block_names_the_gauge_and_the_deadline_wrapped_query() -> None:
    assert NO_FALLBACK_NOW_QUERY == f"max({FALLBACK_GAUGE})" == "max(reco_engine_in_fallback_mode)"
    provider = NO_FALLBACK_NOW_PROBE["provider"]
    assert (provider["module"], provider["func"]) == ("chaoshelius.slo.probes", "query")
    assert getattr(probes, provider["func"]) is probes.query
    assert NO_FALLBACK_NOW_PROBE["tolerance"] == NO_FALLBACK_NOW_TOLERANCE


def test_the_tolerance_is_valid_for_chaoslib() -> None:
    ensure_hypothesis_tolerance_is_valid(copy.deepcopy(NO_FALLBACK_NOW_TOLERANCE))
    experiment = {
        "version": "1.0.0",
        "title": "t",
        "description": "d",
        "steady-state-hypothesis": {
            "title": "steady",
            "probes": [copy.deepcopy(NO_FALLBACK_NOW_PROBE)],
        },
        "method": [copy.deepcopy(NO_FALLBACK_NOW_PROBE)],
    }
    ensure_experiment_is_valid(experiment)  # binds the arguments to probes.query's signature


@pytest.mark.parametrize(
    ("answer", "steady"),
    [
        (_answer("0"), True),  # every recommender out of fallback
        (_answer("1"), False),  # at least one in fallback
        (_answer(), False),  # no series: nothing scraped proves nothing
    ],
    ids=["0", "1", "no-data"],
)
def test_chaoslibs_within_tolerance_on_prometheus_answers(
    answer: dict[str, Any], steady: bool
) -> None:
    tolerance = copy.deepcopy(NO_FALLBACK_NOW_TOLERANCE)
    assert within_tolerance(tolerance, answer) is steady


def test_a_number_in_expect_never_matches_prometheus_strings() -> None:
    """Why the tolerance expects "0": Prometheus answers values as strings."""
    as_number = {**NO_FALLBACK_NOW_TOLERANCE, "expect": 0}
    assert within_tolerance(as_number, _answer("0")) is False


class _Prom:
    """A PrometheusAPI stand-in answering the two fallback counts."""

    def __init__(self, in_fallback: float | None, out_of_fallback: float | None) -> None:
        self.values = {IN_FALLBACK_QUERY: in_fallback, OUT_OF_FALLBACK_QUERY: out_of_fallback}
        self.asked: list[str] = []

    def instant_value(self, query: str, at: float | None = None) -> float | None:
        self.asked.append(query)
        return self.values[query]


def test_fallback_reason_without_a_count_is_any_pod_reporting_fallback() -> None:
    assert fallback_reason(_Prom(None, None)) is None  # type: ignore[arg-type]
    assert fallback_reason(_Prom(0, 3)) is None  # type: ignore[arg-type]
    why = fallback_reason(_Prom(2, 1))  # type: ignore[arg-type]
    assert why == "2 recommender(s) reporting fallback"


def test_only_the_pods_running_now_confirm_the_recommenders_out_of_fallback() -> None:
    """Right after the recommenders were replaced, the gone pods' last samples still count 3
    out of fallback while the new pods are not scraped yet: named pods count only their own
    series (the CI run of 2026-12-07 started a run in that gap, and its first query found no
    recommender at all)."""
    query = out_of_fallback_query(["helius-reco-b9a95", "helius-reco-01eaa"])
    assert query == (
        'count(reco_engine_in_fallback_mode{pod=~"helius-reco-01eaa|helius-reco-b9a95"} == 0)'
    )
    prom = _Prom(0, 3)
    prom.values[query] = 0  # the old pods' series answer the plain count, not this one
    assert fallback_reason(prom, 2, ["helius-reco-b9a95", "helius-reco-01eaa"]) == (  # type: ignore[arg-type]
        "0 of 2 recommenders seen out of fallback by Prometheus"
    )
    assert out_of_fallback_query(['x"} or vector(3) #']) == OUT_OF_FALLBACK_QUERY  # not a name
    assert out_of_fallback_query([]) == OUT_OF_FALLBACK_QUERY


def test_fallback_reason_with_a_count_needs_each_pod_confirmed_out() -> None:
    prom = _Prom(0, 3)
    assert fallback_reason(prom, 3) is None  # type: ignore[arg-type]
    assert prom.asked == [OUT_OF_FALLBACK_QUERY]
    why = fallback_reason(_Prom(0, None), 3)  # type: ignore[arg-type]
    assert why == "0 of 3 recommenders seen out of fallback by Prometheus"
    assert fallback_reason(_Prom(0, 2), 3) == (  # type: ignore[arg-type]
        "2 of 3 recommenders seen out of fallback by Prometheus"
    )
