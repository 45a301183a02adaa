"""Label selectors over pods, the subset of Kubernetes syntax the experiments use.

`app=mlflow,zone=zone-a` (AND of terms), `key!=value`, and `key in (a,b)`. Keys: app, pod,
zone (or its Kubernetes name topology.kubernetes.io/zone), namespace. An empty selector
matches everything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from chaoshelius.stack.errors import InvalidRequest
from chaoshelius.topology import ZONE_LABEL

_KEYS = {"app", "pod", "zone", "namespace"}
_ALIASES = {ZONE_LABEL: "zone", "name": "pod"}
_TERM = re.compile(r"^\s*([\w./-]+)\s*(!=|==|=|\s+in\s+|\s+notin\s+)\s*(.+?)\s*$")


class SelectorError(InvalidRequest):
    """A selector could not be parsed."""


@dataclass(frozen=True)
class Term:
    key: str
    values: frozenset[str]
    negate: bool

    def matches(self, labels: Mapping[str, str]) -> bool:
        return (labels.get(self.key) in self.values) != self.negate


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def parse(selector: str | None) -> tuple[Term, ...]:
    """Parse a selector string; raise `SelectorError` with the bad term."""
    terms = []
    for raw in _split_terms(selector or ""):
        match = _TERM.match(raw)
        if match is None:
            raise SelectorError(f"cannot parse selector term {raw.strip()!r}")
        key, op, value = match.group(1), match.group(2).strip(), match.group(3)
        key = _ALIASES.get(key, key)
        if key not in _KEYS:
            raise SelectorError(f"unknown selector key {key!r}; use one of {sorted(_KEYS)}")
        if op in ("in", "notin"):
            if not (value.startswith("(") and value.endswith(")")):
                raise SelectorError(f"selector term {raw.strip()!r}: expected `{op} (a,b)`")
            values = frozenset(v.strip() for v in value[1:-1].split(",") if v.strip())
        else:
            values = frozenset({value})
        terms.append(Term(key, values, negate=op in ("!=", "notin")))
    return tuple(terms)


def matches(selector: str | None, labels: Mapping[str, str]) -> bool:
    """True if `labels` satisfy every term of `selector`."""
    return all(term.matches(labels) for term in parse(selector))
