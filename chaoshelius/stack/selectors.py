"""Label selectors over pods, the subset of Kubernetes syntax the experiments use.

`app=mlflow,zone=zone-a` (AND of terms), `key!=value`, `key in (a,b)`, `key notin (a,b)`.
Keys: app, pod (or name), zone (or its Kubernetes name topology.kubernetes.io/zone),
namespace. An empty selector matches everything.

The parser is one left-to-right pass over at most `MAX_SELECTOR_CHARS` characters (no
backtracking regular expression, no string rebuilt per character): a hostile selector costs
microseconds, not the event loop that runs the proxies and the fault reaper. Parse once per
request with `parse()`, then match every pod against the parsed `Selector`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from chaoshelius.stack.api_models import MAX_SELECTOR_CHARS
from chaoshelius.stack.errors import InvalidRequest
from chaoshelius.topology import ZONE_LABEL

_KEYS = {"app", "pod", "zone", "namespace"}
_ALIASES = {ZONE_LABEL: "zone", "name": "pod"}
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")


class SelectorError(InvalidRequest):
    """A selector could not be parsed."""


@dataclass(frozen=True)
class Term:
    key: str
    values: frozenset[str]
    negate: bool

    def matches(self, labels: Mapping[str, str]) -> bool:
        return (labels.get(self.key) in self.values) != self.negate


Selector = tuple[Term, ...]


def _split_terms(selector: str) -> list[str]:
    """Split on the commas outside parentheses (one pass, slices only)."""
    terms, depth, start = [], 0, 0
    for index, char in enumerate(selector):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            terms.append(selector[start:index])
            start = index + 1
    terms.append(selector[start:])
    return [term.strip() for term in terms if term.strip()]


def _parse_term(raw: str) -> Term:
    end = 0
    while end < len(raw) and raw[end] in _KEY_CHARS:
        end += 1
    key, rest = raw[:end], raw[end:]
    if not key:
        raise SelectorError(f"cannot parse selector term {raw!r}")
    stripped = rest.lstrip()
    for op, negate in (("!=", True), ("==", False), ("=", False)):
        if stripped.startswith(op):
            value = stripped[len(op) :].strip()
            if not value:
                raise SelectorError(f"cannot parse selector term {raw!r}")
            return _term(key, frozenset({value}), negate)
    word, _, values = stripped.partition(" ")
    if rest[:1].isspace() and word in ("in", "notin"):
        values = values.strip()
        if not (values.startswith("(") and values.endswith(")")):
            raise SelectorError(f"selector term {raw!r}: expected `{word} (a,b)`")
        items = frozenset(v.strip() for v in values[1:-1].split(",") if v.strip())
        return _term(key, items, word == "notin")
    raise SelectorError(f"cannot parse selector term {raw!r}")


def _term(key: str, values: frozenset[str], negate: bool) -> Term:
    key = _ALIASES.get(key, key)
    if key not in _KEYS:
        raise SelectorError(f"unknown selector key {key!r}; use one of {sorted(_KEYS)}")
    return Term(key, values, negate)


def parse(selector: str | Selector | None) -> Selector:
    """Parse a selector string (an already parsed one is returned as is); raise
    `SelectorError` naming the bad term, or the length cap."""
    if isinstance(selector, tuple):
        return selector
    text = selector or ""
    if len(text) > MAX_SELECTOR_CHARS:
        raise SelectorError(
            f"selector is {len(text)} characters long; at most {MAX_SELECTOR_CHARS} are accepted"
        )
    return tuple(_parse_term(raw) for raw in _split_terms(text))


def matches(selector: str | Selector | None, labels: Mapping[str, str]) -> bool:
    """True if `labels` satisfy every term of `selector` (parse once, then match many)."""
    return all(term.matches(labels) for term in parse(selector))


def render(selector: Selector) -> str:
    """A parsed selector written back, for messages and events."""
    return ",".join(
        f"{t.key}{'!=' if t.negate else '='}{next(iter(t.values))}"
        if len(t.values) == 1
        else f"{t.key} {'notin' if t.negate else 'in'} ({','.join(sorted(t.values))})"
        for t in selector
    )
