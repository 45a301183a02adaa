"""The load's answer counter (loadtests/helius_traffic.py): identity labels, bounded cardinality."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _traffic() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "loadtests" / "helius_traffic.py"
    spec = importlib.util.spec_from_file_location("helius_traffic", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("helius_traffic", module)
    spec.loader.exec_module(module)
    return module


traffic = _traffic()


def test_an_answer_is_named_by_its_model_and_pod() -> None:
    body = {"model_version": "3", "model_source": "cache", "model_digest": "abc"}
    assert traffic.answer_identity(body, "helius-reco-1") == ("3", "cache", "abc", "helius-reco-1")
    assert traffic.answer_identity({"model_version": "x" * 99}, None) == (
        "x" * 64,
        "none",
        "none",
        "none",
    )


def test_label_sets_are_capped_with_one_overflow_set() -> None:
    counts = traffic.AnswerCounts(cap=4)
    for n in range(10):
        counts.add(("1", "registry", f"d{n}", "pod"))
    counts.add(("1", "registry", "d0", "pod"))  # a known set keeps counting as itself
    assert len(counts.counts) == 4
    assert counts.counts[("1", "registry", "d0", "pod")] == 2
    assert counts.counts[("other",) * 4] == 7
    assert "reco_pod" in traffic.ANSWER_LABELS and "pod" not in traffic.ANSWER_LABELS
