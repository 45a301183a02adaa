"""Convention checks over the monitoring files: each returns the problems it finds.

Pure functions over plain dicts and paths, so the tests run them on the real files (no
problem allowed) and on deliberately broken copies (the problem must be reported):

- recording rule names (`level:metric:operations`),
- alert annotations and their runbook pages (docs/runbooks/<AlertName>.md),
- the Grafana dashboard's conventions,
- the `kubernetes_sd_configs` blocks of prometheus.yml, which Debian's promtool cannot check
  (its build leaves Kubernetes SD out), and a copy of the file that it can check.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

Rules = dict[str, Any]

# ------------------------------------------------------------------------------ rule files


def alerts(rules: Rules) -> dict[str, dict[str, Any]]:
    """Alert name -> its rule."""
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}


def records(rules: Rules) -> dict[str, str]:
    """Recording rule name -> its expression."""
    return {r["record"]: r["expr"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def alert_threshold(rules: Rules, alert: str) -> float:
    """The number an alert's expression ends comparing with (`... > 0.25` -> 0.25)."""
    match = re.search(r">\s*([0-9.]+)\s*$", alerts(rules)[alert]["expr"])
    if match is None:
        raise ValueError(f"{alert}: its expression does not end in `> <number>`")
    return float(match.group(1))


def squash(expr: str) -> str:
    """An expression without whitespace, to compare a quoted copy with the rule."""
    return re.sub(r"\s+", "", expr)


# ------------------------------------------------------------------------------ record names
RECORD_NAME = re.compile(
    r"(?P<level>[a-z][a-z0-9_]*):(?P<metric>[a-z][a-z0-9_]*):(?P<ops>[a-z0-9_]+)"
)
# A `level:metric:operations` name of a recorded helius or recommender series, wherever used.
RECORD_USE = re.compile(r"\b[a-z][a-z0-9_]*:(?:reco|helius)_[a-z0-9_]*:[a-z0-9_]+\b")


def record_name_problems(name: str, expr: str) -> list[str]:
    """Where `name` breaks the `level:metric:operations` convention for `expr`.

    level: the labels the result keeps, i.e. the first (outermost) `by (...)` clause, less `le`
    when histogram_quantile consumes it, joined by `_`; operations: every range window of the
    expression (`[30s]` -> `...30s`), its function (`rate`, ...) and a quantile (`p99_...`);
    metric: without `_total`/`_bucket` once rate() has been applied.
    """
    match = RECORD_NAME.fullmatch(name)
    if match is None:
        return [f"{name}: not level:metric:operations"]
    problems = []
    by = re.search(r"\bby\s*\(([^)]*)\)", expr)
    kept = [label.strip() for label in by.group(1).split(",")] if by else []
    quantile = re.match(r"\s*histogram_quantile\(\s*0?\.(\d+)", expr)
    if quantile and "le" in kept:
        kept.remove("le")
    if match["level"] != "_".join(kept):
        problems.append(f"{name}: level should be {'_'.join(kept)!r} (its by clause)")
    ops = match["ops"]
    for window in re.findall(r"\[(\w+)\]", expr):
        if not re.search(rf"(?<![0-9]){window}(?:_|$)", ops):
            problems.append(f"{name}: operations should name the [{window}] window")
    for function in re.findall(r"\b(rate|irate|increase|avg_over_time)\(", expr):
        if function not in ops:
            problems.append(f"{name}: operations should name {function}()")
    if quantile and not ops.startswith(f"p{quantile.group(1)}"):
        problems.append(f"{name}: operations should start with p{quantile.group(1)}")
    if match["metric"].endswith(("_total", "_bucket")):
        problems.append(f"{name}: drop _total/_bucket from the metric after rate()")
    return problems


# ------------------------------------------------------------------------------ runbooks
RUNBOOK_DIR = "docs/runbooks"
RUNBOOK_SECTIONS = (
    "## What it means",
    "## Confirm",
    "## What to do",
    "## How the chaos experiments trigger it",
)
_PROMQL_BLOCK = re.compile(r"^```promql\n(.*?)^```", re.M | re.S)


def runbook_url(alert: str) -> str:
    """The `runbook_url` of an alert: its page, relative to the repository root."""
    return f"{RUNBOOK_DIR}/{alert}.md"


def promql_blocks(markdown: str) -> list[str]:
    """The ```promql blocks of a page, one expression each."""
    return [block.strip() for block in _PROMQL_BLOCK.findall(markdown)]


def runbook_problems(rules: Rules, repo: Path) -> list[str]:
    """Every alert: summary, description, runbook_url naming an existing page under `repo`
    that has the four sections and quotes the alert's current expression; every page is an
    alert's and listed in the index (README.md)."""
    problems = []
    found = alerts(rules)
    pages = repo / RUNBOOK_DIR
    index = (pages / "README.md").read_text() if (pages / "README.md").is_file() else ""
    for name, rule in found.items():
        annotations = rule.get("annotations") or {}
        for key in ("summary", "description"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{name}: no {key} annotation")
        url = annotations.get("runbook_url")
        if url != runbook_url(name):
            problems.append(f"{name}: runbook_url is {url!r}, expected {runbook_url(name)!r}")
            continue
        page = repo / url
        if not page.is_file():
            problems.append(f"{name}: {url} does not exist")
            continue
        text = page.read_text()
        if not text.startswith(f"# {name}\n"):
            problems.append(f"{url}: does not start with '# {name}'")
        lines = text.splitlines()
        problems += [f"{url}: no '{s}' section" for s in RUNBOOK_SECTIONS if s not in lines]
        if squash(rule["expr"]) not in {squash(b) for b in promql_blocks(text)}:
            problems.append(f"{url}: does not quote the alert's current expression")
        if f"({name}.md)" not in index:
            problems.append(f"{RUNBOOK_DIR}/README.md: no link to {name}.md")
    orphans = {p.stem for p in pages.glob("*.md")} - set(found) - {"README"}
    problems += [f"{RUNBOOK_DIR}/{o}.md: no alert of that name" for o in sorted(orphans)]
    return problems


# ------------------------------------------------------------------------------ dashboard
Dashboard = dict[str, Any]
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
QUANTILES = ("0.5", "0.95", "0.99")
CLIENT_LATENCY_BUCKET = "helius_client_request_latency_seconds_bucket"
FAULT_METRIC = "helius_stack_fault_active"
_FIXED_WINDOW = re.compile(r"\[\s*\d+[smhdwy]\s*\]")
_DRAWN = {"line", "dashed", "line+area", "dashed+area"}


def dashboard_exprs(dashboard: Dashboard) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets, annotations, variables."""
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard.get("annotations", {}).get("list", []) if "expr" in a]
    exprs += [
        v["query"]["query"]
        for v in dashboard["templating"]["list"]
        if v["type"] == "query" and isinstance(v.get("query"), dict)
    ]
    return exprs


def _datasource_refs(node: Any, where: str = "") -> list[tuple[str, Any]]:
    """Every `datasource` value anywhere in the JSON, with where it is."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append((where, value))
            found += _datasource_refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _datasource_refs(value, f"{where}/{i}")
    return found


def _drawn_threshold(panel: Dashboard) -> set[float]:
    """Threshold values the panel draws on its graph (none when the style is off)."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    style = defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode", "off")
    if style not in _DRAWN:
        return set()
    steps = defaults.get("thresholds", {}).get("steps", [])
    return {float(s["value"]) for s in steps if s.get("value") is not None}


def _panel_exprs(panel: Dashboard) -> str:
    return "\n".join(t["expr"] for t in panel.get("targets", []))


def dashboard_problems(
    dashboard: Dashboard, datasource_uid: str, success_slo: float, latency_slo: float
) -> list[str]:
    """The dashboard conventions: a datasource variable defaulting to the provisioned one and
    used by every query (no hard-coded uid); `$__rate_interval`, never a fixed range; a client
    latency panel (p50/p95/p99); the SLOs drawn on the success-ratio and latency panels; fault
    annotations from the harness and from ALERTS."""
    problems = []
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds_var = variables.get("datasource", {})
    if ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
        problems.append("no `datasource` variable of type datasource / prometheus")
    elif ds_var.get("current", {}).get("value") != datasource_uid:
        problems.append(f"the datasource variable does not default to {datasource_uid!r}")
    refs = _datasource_refs(dashboard)
    problems += [
        f"{at}: datasource {ref} is not $datasource" for at, ref in refs if ref != DATASOURCE_REF
    ]
    if not refs:
        problems.append("no datasource reference at all")

    exprs = dashboard_exprs(dashboard)
    problems += [f"fixed range window in {e!r}" for e in exprs if _FIXED_WINDOW.search(e)]
    if not any("[$__rate_interval]" in e for e in exprs):
        problems.append("no query uses $__rate_interval")

    panels = dashboard["panels"]
    client = [p for p in panels if CLIENT_LATENCY_BUCKET in _panel_exprs(p)]
    if not any(
        all(f"histogram_quantile({q}," in _panel_exprs(p) for q in QUANTILES) for p in client
    ):
        problems.append(f"no panel with p50/p95/p99 of {CLIENT_LATENCY_BUCKET}")
    latency = [
        p for p in panels if re.search(r"histogram_quantile\(.*_latency_seconds", _panel_exprs(p))
    ]
    ratios = [
        p
        for p in panels
        if p.get("fieldConfig", {}).get("defaults", {}).get("unit") == "percentunit"
        and re.search(r"helius_client_requests|reco_engine_request", _panel_exprs(p))
    ]
    if len(latency) < 2:
        problems.append("fewer than two latency panels (server and clients)")
    if not ratios:
        problems.append("no success-ratio panel")
    for panel in latency:
        if latency_slo not in _drawn_threshold(panel):
            problems.append(f"{panel['title']}: latency SLO {latency_slo} s not drawn")
    for panel in ratios:
        if success_slo not in _drawn_threshold(panel):
            problems.append(f"{panel['title']}: success SLO {success_slo} not drawn")

    annotations = [a for a in dashboard.get("annotations", {}).get("list", []) if a.get("enable")]
    for source in (FAULT_METRIC, "ALERTS"):
        if not any(source in a.get("expr", "") for a in annotations):
            problems.append(f"no enabled annotation from {source}")
    return problems


# ------------------------------------------------------------------------------ prometheus.yml
# <kubernetes_sd_config> as documented for Prometheus 3.x (configuration.md): its own keys and
# the common <http_config> keys.
KUBERNETES_SD_KEYS = {
    "api_server",
    "role",
    "kubeconfig_file",
    "namespaces",
    "selectors",
    "attach_metadata",
}
HTTP_CONFIG_KEYS = {
    "basic_auth",
    "authorization",
    "oauth2",
    "bearer_token",
    "bearer_token_file",
    "tls_config",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "follow_redirects",
    "enable_http2",
    "http_headers",
}
KUBERNETES_ROLES = {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}
ATTACH_NODE_ROLES = {"pod", "endpoints", "endpointslice"}
_POD_META = {
    "__meta_kubernetes_namespace",
    *(
        f"__meta_kubernetes_pod_{name}"
        for name in (
            "name",
            "ip",
            "container_init",
            "container_name",
            "container_id",
            "container_image",
            "container_port_name",
            "container_port_number",
            "container_port_protocol",
            "ready",
            "phase",
            "node_name",
            "host_ip",
            "uid",
            "controller_kind",
            "controller_name",
        )
    ),
}
_POD_META_PREFIXES = tuple(
    f"__meta_kubernetes_pod_{kind}_" for kind in ("label", "labelpresent", "annotation")
) + ("__meta_kubernetes_pod_annotationpresent_",)
_NODE_META = {"__meta_kubernetes_node_name"}
_NODE_META_PREFIXES = tuple(
    f"__meta_kubernetes_node_{kind}_"
    for kind in ("label", "labelpresent", "annotation", "annotationpresent")
)
_NAMESPACE_META_PREFIXES = tuple(
    f"__meta_kubernetes_namespace_{kind}_"
    for kind in ("label", "labelpresent", "annotation", "annotationpresent")
)
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _meta_label_known(label: str, node: bool, namespace: bool) -> bool:
    """Whether role `pod` (with the attached metadata) gives this meta label."""
    prefixes = _POD_META_PREFIXES
    prefixes += _NODE_META_PREFIXES if node else ()
    prefixes += _NAMESPACE_META_PREFIXES if namespace else ()
    if label in _POD_META or (node and label in _NODE_META):
        return True
    return any(label.startswith(p) and _LABEL_NAME.fullmatch(label[len(p) :]) for p in prefixes)


def _kubernetes_sd_problems(job: str, sd: Any) -> list[str]:
    if not isinstance(sd, dict):
        return [f"{job}: a kubernetes_sd_config is not a mapping"]
    where = f"{job}/kubernetes_sd_configs"
    problems = [
        f"{where}: unknown key {k!r}"
        for k in sorted(set(sd) - KUBERNETES_SD_KEYS - HTTP_CONFIG_KEYS)
    ]
    role = sd.get("role")
    if role not in KUBERNETES_ROLES:
        problems.append(f"{where}: role {role!r} is not one of {sorted(KUBERNETES_ROLES)}")
    if "api_server" in sd and "kubeconfig_file" in sd:
        problems.append(f"{where}: api_server and kubeconfig_file are mutually exclusive")
    namespaces = sd.get("namespaces", {})
    if not isinstance(namespaces, dict) or set(namespaces) - {"own_namespace", "names"}:
        problems.append(f"{where}: namespaces takes only own_namespace and names")
    elif not all(isinstance(n, str) and n for n in namespaces.get("names", [])):
        problems.append(f"{where}: namespaces.names must be non-empty strings")
    for selector in sd.get("selectors", []):
        if not isinstance(selector, dict) or "role" not in selector:
            problems.append(f"{where}: a selector needs a role")
        elif set(selector) - {"role", "label", "field"}:
            problems.append(f"{where}: a selector takes only role, label and field")
    attach = sd.get("attach_metadata", {})
    if not isinstance(attach, dict) or set(attach) - {"node", "namespace"}:
        problems.append(f"{where}: attach_metadata takes only node and namespace")
    elif not all(isinstance(v, bool) for v in attach.values()):
        problems.append(f"{where}: attach_metadata values are booleans")
    elif attach.get("node") and role not in ATTACH_NODE_ROLES:
        problems.append(f"{where}: attach_metadata.node is valid for {sorted(ATTACH_NODE_ROLES)}")
    return problems


def kubernetes_sd_problems(config: dict[str, Any]) -> list[str]:
    """The kubernetes_sd_configs blocks against the documented schema, and every `__meta_*`
    label the relabelling reads against the labels the configured role and metadata give
    (a typo there silently relabels to an empty value: no target, or no `zone`)."""
    problems = []
    for job in config.get("scrape_configs", []):
        name = job.get("job_name", "?")
        sds = job.get("kubernetes_sd_configs", [])
        for sd in sds:
            problems += _kubernetes_sd_problems(name, sd)
        if not sds or not all(isinstance(sd, dict) for sd in sds):
            continue
        roles = {sd.get("role") for sd in sds}
        node = all(sd.get("attach_metadata", {}).get("node") is True for sd in sds)
        namespace = all(sd.get("attach_metadata", {}).get("namespace") is True for sd in sds)
        meta = [
            label
            for relabel in job.get("relabel_configs", [])
            for label in relabel.get("source_labels", [])
            if label.startswith("__meta_")
        ]
        if meta and roles != {"pod"}:
            problems.append(f"{name}: meta labels are checked for role pod only")
            continue
        problems += [
            f"{name}: role pod gives no {label}"
            for label in meta
            if not _meta_label_known(label, node, namespace)
        ]
    if not any(job.get("kubernetes_sd_configs") for job in config.get("scrape_configs", [])):
        problems.append("no scrape job uses kubernetes_sd_configs")
    return problems


KUBERNETES_SD_UNKNOWN = "field kubernetes_sd_configs not found"


def without_kubernetes_sd(config: dict[str, Any], targets_file: Path) -> dict[str, Any]:
    """The config with each kubernetes_sd_configs replaced by a file_sd_configs (same job,
    same relabelling), for a promtool built without Kubernetes SD to check all the rest."""
    copy = dict(config)
    copy["scrape_configs"] = []
    for job in config.get("scrape_configs", []):
        job = dict(job)
        if job.pop("kubernetes_sd_configs", None) is not None:
            job.setdefault("file_sd_configs", []).append({"files": [str(targets_file)]})
        copy["scrape_configs"].append(job)
    return copy
