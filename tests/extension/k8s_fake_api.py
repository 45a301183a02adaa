"""A fake Kubernetes API server on 127.0.0.1 port 0, for tests/extension/test_kubernetes_driver.py.

No Kubernetes API server (nor kind, nor a container engine) can run where this harness is
developed, so this stands in for one. The real `kubernetes` client and the real chaosk8s
functions talk to it over HTTP through a kubeconfig, exactly as they would to a cluster.

What it does: it records every request (method, path, query, content type, bearer token, JSON
body) and keeps just enough state to answer the calls the kubernetes driver makes, with the
shapes the API server uses: pods (list by label or field selector, read, delete, evict), nodes
(list by label, patch), Deployments (read, patch as a JSON merge patch), NetworkPolicies
(create with 409 on a duplicate, delete with 404 when absent, list) and Chaos Mesh NetworkChaos
objects (404 for the whole resource type unless `chaos_mesh` is on). Any route it does not know
answers 404 and stays in the record, so an unexpected call is visible. `fail()` makes chosen
requests answer an error Status (403, 500, ...).

What it does not do: admission, RBAC, validation of specs, strategic-merge semantics beyond a
JSON merge patch, controllers (a deleted pod is not replaced, a scaled Deployment starts no pod),
or any enforcement of a NetworkPolicy. Tests against it prove what the driver sends and how it
reads the answers, not what a cluster does with them.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ZONE = "topology.kubernetes.io/zone"


@dataclass(frozen=True)
class Request:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    content_type: str | None
    token: str | None


@dataclass
class _Failure:
    method: str
    path: re.Pattern[str]
    status: int
    reason: str
    message: str


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A `Status` object, as the API server answers an error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """RFC 7386 JSON merge patch (null deletes a key)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _selected(labels: dict[str, str], selector: str | None) -> bool:
    """Equality-based label selector (`k=v`, `k==v`, `k!=v`, comma-separated)."""
    for term in (selector or "").split(","):
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        else:
            key, value = re.split("==?", term, maxsplit=1)
            if labels.get(key) != value:
                return False
    return True


def _field(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _fields_selected(obj: dict[str, Any], selector: str | None) -> bool:
    for term in (selector or "").split(","):
        if term:
            key, value = term.split("=", 1)
            if _field(obj, key) != value:
                return False
    return True


@dataclass
class FakeKubeAPI:
    """State and record of the fake API server. Build objects with the `add_*` helpers."""

    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    policies: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    chaos: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    chaos_mesh: bool = False
    requests: list[Request] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _uid: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ building the world
    def _next_uid(self) -> str:
        self._uid += 1
        return f"00000000-0000-0000-0000-{self._uid:012d}"

    def add_node(self, name: str, zone: str) -> None:
        self.nodes[name] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "uid": self._next_uid(), "labels": {ZONE: zone}},
            "spec": {},
        }

    def add_pod(
        self,
        namespace: str,
        name: str,
        node: str,
        labels: dict[str, str],
        owner_kind: str = "ReplicaSet",
        ready: bool = True,
    ) -> None:
        self.pods[(namespace, name)] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": self._next_uid(),
                "labels": dict(labels),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": owner_kind,
                        "name": f"{labels.get('app', name)}-owner",
                        "uid": self._next_uid(),
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "nodeName": node,
                "containers": [{"name": "main", "image": "example/main:1"}],
                "volumes": [{"name": "token", "projected": {"sources": []}}],
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }

    def add_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.deployments[(namespace, name)] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "uid": self._next_uid()},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "main", "image": "example/main:1"}]},
                },
            },
        }

    def fail(self, method: str, path_regex: str, code: int, reason: str, message: str) -> None:
        """From now on, answer `method` requests whose path matches with an error Status."""
        self._failures.append(_Failure(method, re.compile(path_regex), code, reason, message))

    def sent(self, method: str | None = None, path_regex: str = "") -> list[Request]:
        """The recorded requests, optionally only those of `method` whose path matches."""
        with self.lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and re.search(path_regex, r.path)
            ]

    # ------------------------------------------------------------ answering
    def handle(self, request: Request) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append(request)
            for failure in self._failures:
                if failure.method == request.method and failure.path.search(request.path):
                    return failure.status, status(failure.status, failure.reason, failure.message)
            for method, pattern, route in self._routes():
                if method == request.method and (m := re.fullmatch(pattern, request.path)):
                    return route(request, *m.groups())
            return 404, status(404, "NotFound", "the server could not find the requested resource")

    def _routes(self) -> list[tuple[str, str, Callable[..., tuple[int, dict[str, Any]]]]]:
        ns = "(?P<ns>[^/]+)"
        name = "(?P<name>[^/]+)"
        return [
            ("GET", f"/api/v1/namespaces/{ns}/pods", self._list_pods),
            ("GET", "/api/v1/pods", lambda r: self._list_pods(r, None)),
            ("GET", f"/api/v1/namespaces/{ns}/pods/{name}", self._read_pod),
            ("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", self._delete_pod),
            ("POST", f"/api/v1/namespaces/{ns}/pods/{name}/eviction", self._evict),
            ("GET", "/api/v1/nodes", self._list_nodes),
            ("PATCH", f"/api/v1/nodes/{name}", self._patch_node),
            ("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}", self._read_deploy),
            ("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}", self._patch_deploy),
            (
                "POST",
                f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
                self._create_policy,
            ),
            (
                "DELETE",
                f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}",
                self._delete_policy,
            ),
            (
                "GET",
                f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
                self._list_policies,
            ),
            ("POST", f"/apis/chaos-mesh.org/v1alpha1/namespaces/{ns}/networkchaos", self._chaos),
            (
                "DELETE",
                f"/apis/chaos-mesh.org/v1alpha1/namespaces/{ns}/networkchaos/{name}",
                self._chaos,
            ),
        ]

    @staticmethod
    def _list(kind: str, items: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
        api_version = "networking.k8s.io/v1" if kind == "NetworkPolicyList" else "v1"
        return 200, {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"resourceVersion": "1"},
            "items": copy.deepcopy(items),
        }

    @staticmethod
    def _missing(kind: str, name: str) -> tuple[int, dict[str, Any]]:
        return 404, status(404, "NotFound", f'{kind} "{name}" not found')

    def _list_pods(self, r: Request, ns: str | None) -> tuple[int, dict[str, Any]]:
        items = [
            p
            for (pod_ns, _), p in sorted(self.pods.items())
            if (ns is None or pod_ns == ns)
            and _selected(p["metadata"]["labels"], r.query.get("labelSelector"))
            and _fields_selected(p, r.query.get("fieldSelector"))
        ]
        return self._list("PodList", items)

    def _read_pod(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        pod = self.pods.get((ns, name))
        return (200, copy.deepcopy(pod)) if pod else self._missing("pods", name)

    def _delete_pod(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        pod = self.pods.pop((ns, name), None)
        return (200, pod) if pod else self._missing("pods", name)

    def _evict(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        if self.pods.pop((ns, name), None) is None:
            return self._missing("pods", name)
        return 201, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}

    def _list_nodes(self, r: Request) -> tuple[int, dict[str, Any]]:
        items = [
            n
            for _, n in sorted(self.nodes.items())
            if _selected(n["metadata"]["labels"], r.query.get("labelSelector"))
            and _fields_selected(n, r.query.get("fieldSelector"))
        ]
        return self._list("NodeList", items)

    def _patch_node(self, r: Request, name: str) -> tuple[int, dict[str, Any]]:
        node = self.nodes.get(name)
        if node is None:
            return self._missing("nodes", name)
        _merge(node, r.body)
        return 200, copy.deepcopy(node)

    def _read_deploy(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        deployment = self.deployments.get((ns, name))
        return (
            (200, copy.deepcopy(deployment))
            if deployment
            else self._missing("deployments.apps", name)
        )

    def _patch_deploy(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        deployment = self.deployments.get((ns, name))
        if deployment is None:
            return self._missing("deployments.apps", name)
        _merge(deployment, r.body)
        return 200, copy.deepcopy(deployment)

    def _create_policy(self, r: Request, ns: str) -> tuple[int, dict[str, Any]]:
        name = r.body["metadata"]["name"]
        if (ns, name) in self.policies:
            message = f'networkpolicies.networking.k8s.io "{name}" already exists'
            return 409, status(409, "AlreadyExists", message)
        self.policies[(ns, name)] = copy.deepcopy(r.body)
        return 201, copy.deepcopy(r.body)

    def _delete_policy(self, r: Request, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        if self.policies.pop((ns, name), None) is None:
            return self._missing("networkpolicies.networking.k8s.io", name)
        return 200, status(200, "", "") | {"status": "Success"}

    def _list_policies(self, r: Request, ns: str) -> tuple[int, dict[str, Any]]:
        items = [
            p
            for (policy_ns, _), p in sorted(self.policies.items())
            if policy_ns == ns
            and _selected(p["metadata"].get("labels", {}), r.query.get("labelSelector"))
        ]
        return self._list("NetworkPolicyList", items)

    def _chaos(self, r: Request, ns: str, name: str | None = None) -> tuple[int, dict[str, Any]]:
        if not self.chaos_mesh:  # the CRD is not installed: the whole resource type is unknown
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        if r.method == "POST":
            name = r.body["metadata"]["name"]
            if (ns, name) in self.chaos:
                return 409, status(409, "AlreadyExists", f'networkchaos "{name}" already exists')
            self.chaos[(ns, str(name))] = copy.deepcopy(r.body)
            return 201, copy.deepcopy(r.body)
        if self.chaos.pop((ns, str(name)), None) is None:
            return self._missing("networkchaos.chaos-mesh.org", str(name))
        return 200, status(200, "", "") | {"status": "Success"}


class _Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        api: FakeKubeAPI = self.server.api  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        auth = self.headers.get("Authorization") or ""
        request = Request(
            method=self.command,
            path=path,
            query={k: v[-1] for k, v in parse_qs(query).items()},
            body=json.loads(raw) if raw else None,
            content_type=self.headers.get("Content-Type"),
            token=auth.removeprefix("Bearer ") if auth else None,
        )
        code, payload = api.handle(request)
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


def serve(api: FakeKubeAPI) -> tuple[ThreadingHTTPServer, str]:
    """Serve `api` on 127.0.0.1, a free port; return the server and its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.api = api  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def write_kubeconfig(path: Path, contexts: dict[str, str], current: str) -> Path:
    """A kubeconfig whose contexts (name -> server URL) each use the bearer token `<name>-token`.

    The token lets a test tell from the record which context a request was made with.
    """
    lines = ["apiVersion: v1", "kind: Config", f"current-context: {current}", "clusters:"]
    lines += [f"- name: {n}\n  cluster:\n    server: {url}" for n, url in contexts.items()]
    lines.append("users:")
    lines += [f"- name: {n}\n  user:\n    token: {n}-token" for n in contexts]
    lines.append("contexts:")
    lines += [f"- name: {n}\n  context:\n    cluster: {n}\n    user: {n}" for n in contexts]
    path.write_text("\n".join(lines) + "\n")
    return path
