"""The series the cluster's alert/recording rules and the harness's probes read, derived from the
rule files and chaoshelius.topology rather than listed by hand."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from chaoshelius import topology

RULES = Path(__file__).resolve().parents[2] / "manifests" / "monitoring" / "rules"
# series Prometheus makes itself for every target: not exported by anyone
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (recording rules, functions, labels left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match[0]
        following = text[match.end() :].lstrip()
        if following.startswith("(") or name.lower() in KEYWORDS or ":" in name:
            continue  # a function, a keyword, a recording rule
        names.add(name)
    return names - SYNTHETIC


def rule_metrics() -> set[str]:
    names: set[str] = set()
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                names |= metric_names(str(rule["expr"]))
    return names


def contract_metrics(rules: set[str]) -> set[str]:
    """chaoshelius.topology's metric-name constants (the probes' contract) in the families the
    rules use (same `<word>_<word>_` prefix)."""
    prefixes = {"_".join(n.split("_")[:2]) + "_" for n in rules}
    return {
        value
        for key, value in vars(topology).items()
        if key.isupper() and isinstance(value, str) and value.startswith(tuple(prefixes))
    }


def expected_series() -> set[str]:
    rules = rule_metrics()
    return rules | contract_metrics(rules)


def served(names: set[str], exposition: set[str]) -> bool:
    """Is a metric `names` asks for in an exposition (sample or family names)?"""
    return bool(names & exposition)


def variants(name: str) -> set[str]:
    """A rule's name may be a histogram's family (`x`) or a sample (`x_bucket`, `x_total`)."""
    return {name, name.removesuffix("_total"), name.removesuffix("_bucket")}
