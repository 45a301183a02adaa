"""What the Helius load looks like and how a response is judged -- no Locust in here.

`locustfile.py` drives these; keeping them apart lets the harness's tests check the traffic
model and the content checks without importing Locust (which gevent-patches the process).

- `UserPicker`: user ids from a Zipf-like skewed distribution over the training set's users
  (`u0000`..`u1999`, see helius_reco.model.data), plus a small share of unknown users that
  take the service's cold-start path.
- `check_prediction`: the content checks a `/predict` answer must pass.
- `ClientFailure` + `classify`: one low-cardinality `reason` per failed request, used both as
  Locust's failure message and as the `reason` label of `helius_client_requests_total`.
- `answer_identity` + `AnswerCounts`: which model (version, source, digest) and which pod
  served each good `/predict` answer, counted under a cap on distinct label sets
  (`helius_client_answers_total`).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Mapping, Sequence
from typing import Any, Final

# The service's synthetic training data set (helius_reco.model.data.DatasetSpec defaults).
KNOWN_USERS: Final = 2000
KNOWN_ITEMS: Final = 500
ZIPF_EXPONENT: Final = 1.1
UNKNOWN_USER_SHARE: Final = 0.05
K_CHOICES: Final = (5, 10, 10, 20)

# Every `reason` label value the exporter may emit (pre-created at zero so PromQL sees series).
REASON_OK: Final = "ok"
REASONS: Final = (
    REASON_OK,
    "http_5xx",
    "http_4xx",
    "http_other",
    "connection",
    "timeout",
    "bad_content",
    "other",
)

# The identity of the model an answer came from, as labels of helius_client_answers_total.
# `reco_pod`, not `pod`: Prometheus's target labels (`pod` of the load generator) would
# otherwise rename it to `exported_pod`
ANSWER_LABELS: Final = ("model_version", "model_source", "model_digest", "reco_pod")
POD_HEADER: Final = "X-Helius-Pod"  # the service names the answering pod here
# At most this many distinct label sets per exporter, the overflow counted in one "other" set.
# A run sees 3 recommender pods (up to 6 with replacements on a cluster) x at most 4 models
# (baseline, cache, champion, promoted): about 24 sets; 64 leaves more than 2x headroom while
# bounding what a misbehaving service (a new digest per answer) can cost Prometheus: 64 series
# per exporter (each distributed worker exports its own).
MAX_ANSWER_SERIES: Final = 64
OVERFLOW: Final = "other"
_OVERFLOW_KEY: Final = (OVERFLOW,) * len(ANSWER_LABELS)
_MAX_LABEL_CHARS: Final = 64


def user_id(index: int) -> str:
    """Same spelling as helius_reco.model.data.user_id."""
    return f"u{index:04d}"


def item_id(index: int) -> str:
    """Same spelling as helius_reco.model.data.item_id."""
    return f"i{index:04d}"


class UserPicker:
    """Draws user ids: rank r of `known_users` has weight 1/r**exponent; ranks are mapped to
    ids through a seeded permutation (so the hot users are not simply u0000, u0001, ...), and
    `unknown_share` of the draws are ids the model has never seen (`x` + 8 digits)."""

    def __init__(
        self,
        known_users: int = KNOWN_USERS,
        exponent: float = ZIPF_EXPONENT,
        unknown_share: float = UNKNOWN_USER_SHARE,
        rng: random.Random | None = None,
    ) -> None:
        if known_users < 1:
            raise ValueError("known_users must be >= 1")
        if not 0.0 <= unknown_share <= 1.0:
            raise ValueError("unknown_share must be within [0, 1]")
        self._rng = rng or random.Random()
        self._unknown_share = unknown_share
        order = list(range(known_users))
        random.Random(known_users).shuffle(order)
        self._ids = [user_id(i) for i in order]
        weights = (1.0 / rank**exponent for rank in range(1, known_users + 1))
        self._cum = list(itertools.accumulate(weights))

    def known(self) -> str:
        """A known user id, Zipf-skewed."""
        x = self._rng.random() * self._cum[-1]
        return self._ids[min(bisect.bisect_right(self._cum, x), len(self._ids) - 1)]

    def unknown(self) -> str:
        """A user id outside the training set (cold-start path)."""
        return f"x{self._rng.randrange(10**8):08d}"

    def pick(self) -> str:
        if self._rng.random() < self._unknown_share:
            return self.unknown()
        return self.known()

    def pick_k(self) -> int:
        return self._rng.choice(K_CHOICES)


class ClientFailure(Exception):
    """A failed request with a `reason` label; `str()` is a short, grouping-friendly message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __repr__(self) -> str:  # Locust's failure tables show repr(): keep it the message
        return str(self)


def check_status(status: int) -> ClientFailure | None:
    if status == 0 or 200 <= status < 300:
        return None
    if status >= 500:
        return ClientFailure("http_5xx", f"HTTP {status}")
    if status >= 400:
        return ClientFailure("http_4xx", f"HTTP {status}")
    return ClientFailure("http_other", f"HTTP {status}")


def check_prediction(body: Any, exclude: Sequence[str] = ()) -> ClientFailure | None:
    """None when a `/predict` JSON body is good, else the first thing wrong with it.

    Good means: a non-empty `items` list of `{item_id, score}` objects, scores descending,
    no item from `exclude`, no item twice, and a non-empty `model_version`."""

    def bad(what: str) -> ClientFailure:
        return ClientFailure("bad_content", f"bad content: {what}")

    if not isinstance(body, Mapping):
        return bad("body is not a JSON object")
    items = body.get("items")
    if not isinstance(items, list) or not items:
        return bad("no items")
    ids: list[str] = []
    scores: list[float] = []
    for item in items:
        if not isinstance(item, Mapping):
            return bad("item is not an object")
        item_id_, score = item.get("item_id"), item.get("score")
        if not isinstance(item_id_, str) or not item_id_:
            return bad("item without item_id")
        if isinstance(score, bool) or not isinstance(score, int | float):
            return bad("item without numeric score")
        ids.append(item_id_)
        scores.append(float(score))
    if any(a < b for a, b in itertools.pairwise(scores)):
        return bad("scores not sorted descending")
    if len(set(ids)) != len(ids):
        return bad("duplicate item")
    if set(exclude) & set(ids):
        return bad("excluded item returned")
    version = body.get("model_version")
    if version is None or version == "":
        return bad("no model_version")
    return None


def answer_identity(body: Any, pod: str | None) -> tuple[str, str, str, str]:
    """(model_version, model_source, model_digest, pod) of a good `/predict` answer, each cut
    to 64 characters; "none" for what the answer does not say."""

    def label(value: Any) -> str:
        return str(value)[:_MAX_LABEL_CHARS] if value not in (None, "") else "none"

    fields = body if isinstance(body, Mapping) else {}
    return (
        label(fields.get("model_version")),
        label(fields.get("model_source")),
        label(fields.get("model_digest")),
        label(pod),
    )


class AnswerCounts:
    """Answers per model identity, at most `cap` label sets (the last one is "other")."""

    def __init__(self, cap: int = MAX_ANSWER_SERIES) -> None:
        self.cap = cap
        self.counts: dict[tuple[str, ...], int] = {}

    def add(self, identity: tuple[str, ...], count: int = 1) -> tuple[str, ...]:
        """Count `identity` (or "other" once the cap is reached); returns the key counted."""
        key = tuple(identity)
        if key not in self.counts and len(self.counts) >= self.cap - 1:
            key = _OVERFLOW_KEY
        self.counts[key] = self.counts.get(key, 0) + count
        return key


def check_health(body: Any) -> ClientFailure | None:
    """None when a `/health` JSON body carries the keys the service promises."""
    keys = ("status", "service", "version", "mlflow_connected", "model_version")
    if not isinstance(body, Mapping) or any(k not in body for k in keys):
        return ClientFailure("bad_content", "bad content: /health keys missing")
    return None


def _chain(exc: BaseException | None) -> list[BaseException]:
    """The exception and what caused it: __cause__, __context__, and the wrapped exceptions
    urllib3/requests keep in `.reason` or `args[0]`."""
    todo: list[BaseException] = [exc] if exc is not None else []
    seen: list[BaseException] = []
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        reason = getattr(current, "reason", None)
        first = current.args[0] if current.args else None
        for nxt in (current.__cause__, current.__context__, reason, first):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return seen


_TIMEOUT_NAMES: Final = {
    "Timeout",
    "ReadTimeout",
    "ConnectTimeout",
    "ReadTimeoutError",
    "ConnectTimeoutError",
}
_CONNECTION_NAMES: Final = {
    "ConnectionError",
    "NewConnectionError",
    "ProtocolError",
    "RemoteDisconnected",
    "ChunkedEncodingError",
}


def classify(exception: BaseException | None, status: int | None) -> str:
    """The `reason` label of one request, from Locust's `request` event arguments.

    Order matters: a refused/reset connection is "connection" even though urllib3 2 makes
    NewConnectionError a subclass of ConnectTimeoutError; a connect or read that ran out of
    time (a blackholed or hung server) is "timeout"."""
    if exception is None:
        return REASON_OK
    if isinstance(exception, ClientFailure):
        return exception.reason
    if status:
        failure = check_status(status)
        if failure is not None:
            return failure.reason
    chain = _chain(exception)
    if any(isinstance(e, ConnectionError) for e in chain):  # refused, reset, aborted, pipe
        return "connection"
    names = {type(e).__name__ for e in chain}
    if names & _TIMEOUT_NAMES or any(isinstance(e, TimeoutError) for e in chain):
        return "timeout"
    if names & _CONNECTION_NAMES or any(isinstance(e, OSError) for e in chain):
        return "connection"
    return "other"


def predict_body(user: str, k: int, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The `/predict` request body (helius_reco.api.schemas.PredictRequest; extra keys are
    rejected with 422, so only these three)."""
    return {"user_id": user, "k": k, "exclude": list(exclude)}
