"""The kubernetes driver, checked by what it sends to a (fake) Kubernetes API server.

A Kubernetes API server cannot run on the machines this harness is developed on (no cluster, no
container engine), so tests/support/k8s_fake_api.py stands in for one: a small HTTP server on
127.0.0.1, port 0, that records every request and answers with the API server's shapes. Nothing
is mocked in between: the real `kubernetes` client and the real chaosk8s functions read a real
kubeconfig (written to tmp_path, `KUBECONFIG` pointed at it) and talk HTTP to the fake.

What this proves: which context the driver uses and that it refuses the others before any
request; which objects each fault and each undo names (method, path, selector, body); that
every undo is safe to run twice; that API errors reach the experiment as a TargetError a person
can act on. What it does not prove: that a real API server accepts these bodies (admission,
RBAC, validation), that the controllers and the CNI then do what we expect (a replacement pod,
a NetworkPolicy actually dropping MLflow -> RDS), or anything about timing on a cluster.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed
from chaoslib.provider.python import run_python_activity
from kubernetes.client.exceptions import ApiException
from kubernetes.config import kube_config
from support.k8s_fake_api import FakeKubeAPI, Request, isolate_client, serve, write_kubeconfig

from chaoshelius import windows
from chaoshelius.config import HarnessConfig
from chaoshelius.drivers import get_driver
from chaoshelius.drivers.kubernetes import (
    ANNOT_CORDONED,
    ANNOT_EXPIRES,
    ANNOT_ORIGINAL,
    FAULT_LABEL,
    HARNESS_LABEL,
    KubernetesDriver,
    network_chaos_for,
)
from chaoshelius.exceptions import NotAllowedError, TargetError
from chaoshelius.pods import actions as pods
from chaoshelius.zones import actions as zones
from chaoshelius.zones import probes as zone_probes

NS = "helius"
ALLOWED = "kind-helius"
ZONE = "topology.kubernetes.io/zone"


# ---------------------------------------------------------------- fixtures
@pytest.fixture
def api() -> FakeKubeAPI:
    """Four nodes over three zones; MLflow and the recommender spread over them."""
    fake = FakeKubeAPI()
    for node, zone in (
        ("node-a1", "zone-a"),
        ("node-a2", "zone-a"),
        ("node-b1", "zone-b"),
        ("node-c1", "zone-c"),
    ):
        fake.add_node(node, zone)
    for name, node in (
        ("mlflow-a", "node-a1"),
        ("mlflow-b", "node-b1"),
        ("mlflow-c", "node-c1"),
        ("helius-reco-a1", "node-a1"),
        ("helius-reco-a2", "node-a2"),
        ("helius-reco-b", "node-b1"),
        ("helius-reco-c", "node-c1"),
    ):
        fake.add_pod(NS, name, node, {"app": name.rsplit("-", 1)[0]})
    # another namespace on a zone-a node, and a DaemonSet pod (kubectl drain leaves those)
    fake.add_pod("kube-system", "coredns-a", "node-a2", {"k8s-app": "kube-dns"})
    fake.add_pod("kube-system", "kube-proxy-a1", "node-a1", {"k8s-app": "kube-proxy"}, "DaemonSet")
    fake.add_deployment(NS, "mlflow", 3)
    fake.add_deployment(NS, "helius-reco", 3)
    return fake


# the API server `ALLOWED` is pinned to in `harness()`: the fake's URL, set by `server_url`
PINS: dict[str, str] = {}


@pytest.fixture
def server_url(api: FakeKubeAPI) -> Iterator[str]:
    server, url = serve(api)
    PINS[ALLOWED] = url
    yield url
    PINS.clear()
    server.shutdown()
    server.server_close()


@pytest.fixture
def kubeconfig(server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Contexts `kind-helius` and `prod`, both on the fake (prod is the current one).

    Both reach the same fake on purpose: a request made with `prod` would be recorded (with the
    token `prod-token`), so "nothing was sent" and "kind-helius was used" are observable.
    """
    path = write_kubeconfig(
        tmp_path / "kubeconfig", {ALLOWED: server_url, "prod": server_url}, current="prod"
    )
    isolate_client(monkeypatch, path)
    return path


def harness(**overrides: Any) -> HarnessConfig:
    values: dict[str, Any] = {
        "target": "kubernetes",
        "kube_context": ALLOWED,
        "kube_allowed_contexts": [ALLOWED],
        "kube_allowed_namespaces": [NS],
        "kube_allowed_servers": dict(PINS),
    }
    return HarnessConfig.from_chaos(values | overrides)


@pytest.fixture
def driver(kubeconfig: Path) -> KubernetesDriver:
    built = get_driver(harness())
    assert isinstance(built, KubernetesDriver)
    return built


def tokens(api: FakeKubeAPI) -> set[str | None]:
    return {r.token for r in api.sent()}


def deleted_pods(api: FakeKubeAPI) -> list[str]:
    return [r.path for r in api.sent("DELETE", "/pods/")]


# ---------------------------------------------------------------- the allow-list
@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        pytest.param({"kube_context": "prod"}, "'prod'", id="context-not-listed"),
        pytest.param({"kube_context": None}, "'prod'", id="current-context-not-listed"),
        pytest.param({"kube_allowed_contexts": []}, "kube_allowed_contexts", id="empty-list"),
        pytest.param(
            {"kube_namespace": "default"}, "kube_allowed_namespaces", id="namespace-not-listed"
        ),
        pytest.param(
            {"kube_namespace": "default", "kube_allowed_namespaces": []},
            "'default'",
            id="empty-namespace-list",
        ),
    ],
)
def test_refused_before_any_request(
    api: FakeKubeAPI, kubeconfig: Path, overrides: dict[str, Any], named: str
) -> None:
    with pytest.raises(NotAllowedError, match=named):
        get_driver(harness(**overrides))
    assert api.requests == []


def test_refusal_reaches_the_activity_before_any_request(
    api: FakeKubeAPI, kubeconfig: Path
) -> None:
    configuration = harness(kube_context="prod").model_dump(mode="json")
    with pytest.raises(NotAllowedError, match="not in kube_allowed_contexts"):
        pods.kill_pods("mlflow", count=None, configuration=configuration)
    assert api.requests == []
    assert api.pods.keys() >= {(NS, "mlflow-a"), (NS, "mlflow-b"), (NS, "mlflow-c")}


def test_the_allowed_context_is_the_one_used(api: FakeKubeAPI, driver: KubernetesDriver) -> None:
    """kubeconfig's current context is `prod`; every request still goes out as kind-helius."""
    driver.kill_pods("mlflow", count=1)
    driver.scale("mlflow", 0, ttl_seconds=60)
    driver.restore_scale("mlflow")
    driver.cut_path("mlflow-rds", "blackhole", None, ttl_seconds=60)
    driver.restore_path("mlflow-rds")
    driver.drain_zone("zone-c", ttl_seconds=30)
    driver.uncordon_zone("zone-c")
    assert api.requests and tokens(api) == {f"{ALLOWED}-token"}


def test_current_context_is_used_when_allowed(
    api: FakeKubeAPI, server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_kubeconfig(
        tmp_path / "kubeconfig", {ALLOWED: server_url, "prod": server_url}, current=ALLOWED
    )
    isolate_client(monkeypatch, path)
    get_driver(harness(kube_context=None)).kill_pods("mlflow", count=1)
    assert tokens(api) == {f"{ALLOWED}-token"}


def test_an_allowed_name_missing_from_the_kubeconfig_is_refused(
    api: FakeKubeAPI, kubeconfig: Path
) -> None:
    """An allow-listed name the kubeconfig does not define cannot be checked, so it is refused."""
    config = harness(kube_context="kind-other", kube_allowed_contexts=["kind-other"])
    with pytest.raises(TargetError, match="kind-other"):
        get_driver(config)
    assert api.requests == []


def test_no_kubeconfig_means_no_context_to_trust(
    api: FakeKubeAPI, server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a kubeconfig file chaosk8s ignores the context and calls KUBERNETES_HOST.

    The allow-list would then vouch for a cluster it never saw: the driver must refuse.
    """
    isolate_client(monkeypatch, tmp_path / "absent")
    monkeypatch.setenv("KUBERNETES_HOST", server_url)
    with pytest.raises(TargetError, match="kubeconfig"):
        get_driver(harness()).kill_pods("mlflow", count=None)
    assert api.requests == []


def test_kubeconfig_changed_after_import_is_refused(
    api: FakeKubeAPI, kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """chaosk8s checks `KUBECONFIG` now but the client loads the path it saw at import."""
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "other"))
    with pytest.raises(TargetError, match="KUBECONFIG changed"):
        get_driver(harness())
    assert api.requests == []


def test_a_context_the_client_cannot_load_is_a_target_error(
    api: FakeKubeAPI, server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The context exists, but its client certificate (read only for https) does not."""
    https = server_url.replace("http://", "https://")
    path = write_kubeconfig(tmp_path / "kubeconfig", {ALLOWED: https}, current=ALLOWED)
    path.write_text(
        path.read_text().replace(
            f"token: {ALLOWED}-token",
            f"client-certificate: {tmp_path}/gone.crt\n    client-key: {tmp_path}/gone.key",
        )
    )
    isolate_client(monkeypatch, path)
    with pytest.raises(TargetError, match=f"cannot load kube context '{ALLOWED}'.*gone"):
        get_driver(harness(kube_allowed_servers={ALLOWED: https})).list_pods("mlflow")
    assert api.requests == []


# ---------------------------------------------------------------- the API server pin
# a throwaway self-signed CA (no key kept): its DER sha256 was computed with
# `openssl x509 -outform der | sha256sum`, independently of the driver's code
TEST_CA = """-----BEGIN CERTIFICATE-----
MIIBiDCCAS+gAwIBAgIUaeNVykSX/HiArcJDa0OJWZdSEJcwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOaGVsaXVzLXRlc3QtY2EwIBcNMjYxMTMwMDEwMTEzWhgPMjEy
NjExMDYwMTAxMTNaMBkxFzAVBgNVBAMMDmhlbGl1cy10ZXN0LWNhMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEuqm2cWl2tsr0y+Fn4zCL2aXmC+RVK+EAdQXcqyx7
Ig7rzuxtHONvZFqBxTExHvHbW9wfyz4FMhxOy3i3BoLKMqNTMFEwHQYDVR0OBBYE
FF4vYb84/St+FJvPpFhSlp5wQQb8MB8GA1UdIwQYMBaAFF4vYb84/St+FJvPpFhS
lp5wQQb8MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgRWJmZ2h1
rC9j+7JgD1yncyqBnqEMB/QzvAQBvEDskioCICKPipFutXSyuqwBANLdxp8HTCEP
d8lkLZX4VaAJHM8V
-----END CERTIFICATE-----
"""
TEST_CA_SHA256 = "0a880bd01c8ceb4c17ac1e03030aaa3d22b80267e608468bdf29e7737b881e9d"


def test_an_allowed_context_name_on_another_server_is_refused(
    api: FakeKubeAPI, kubeconfig: Path
) -> None:
    """The kubeconfig's `kind-helius` points at the fake; the pin names another server."""
    config = harness(kube_allowed_servers={ALLOWED: "https://10.0.0.1:6443"})
    with pytest.raises(NotAllowedError, match="not at the pinned 'https://10.0.0.1:6443'"):
        get_driver(config)
    assert api.requests == []


def test_an_allowed_context_without_a_pin_is_refused(api: FakeKubeAPI, kubeconfig: Path) -> None:
    with pytest.raises(NotAllowedError, match="kube_allowed_servers"):
        get_driver(harness(kube_allowed_servers={}))
    assert api.requests == []


def test_the_pin_can_be_given_as_an_environment_string(
    api: FakeKubeAPI, server_url: str, driver: KubernetesDriver
) -> None:
    config = harness(kube_allowed_servers=f"other=https://x, {ALLOWED}={server_url}")
    assert config.kube_allowed_servers == {"other": "https://x", ALLOWED: server_url}
    get_driver(config).list_pods("mlflow")
    assert tokens(api) == {f"{ALLOWED}-token"}


def _https_kubeconfig(tmp_path: Path, server_url: str, extra: str) -> Path:
    https = server_url.replace("http://", "https://")
    path = write_kubeconfig(tmp_path / "kubeconfig", {ALLOWED: https}, current=ALLOWED)
    path.write_text(path.read_text().replace(f"server: {https}", f"server: {https}\n{extra}"))
    return path


@pytest.mark.parametrize(
    ("pin", "extra", "refused"),
    [
        pytest.param(f"sha256:{TEST_CA_SHA256}", "data", None, id="ca-data-matches"),
        pytest.param(f"SHA256:{TEST_CA_SHA256.upper()}", "file", None, id="ca-file-matches"),
        pytest.param("sha256:" + "0" * 64, "data", "trusts the CA sha256:0a88", id="other-ca"),
        pytest.param(f"sha256:{TEST_CA_SHA256}", "skip", "skips TLS", id="tls-skipped"),
    ],
)
def test_the_pin_can_be_the_ca_fingerprint(
    api: FakeKubeAPI,
    server_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pin: str,
    extra: str,
    refused: str | None,
) -> None:
    """A CA pin survives a changed server address (load balancer, port-forward) but not
    another cluster's CA; with TLS verification off it would prove nothing, so it is refused."""
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(TEST_CA)
    data = base64.b64encode(TEST_CA.encode()).decode()
    lines = {
        "data": f"    certificate-authority-data: {data}",
        "file": f"    certificate-authority: {ca_file}",
        "skip": f"    certificate-authority-data: {data}\n    insecure-skip-tls-verify: true",
    }
    isolate_client(monkeypatch, _https_kubeconfig(tmp_path, server_url, lines[extra]))
    config = harness(kube_allowed_servers={ALLOWED: pin})
    if refused is None:
        assert isinstance(get_driver(config), KubernetesDriver)
    else:
        with pytest.raises(NotAllowedError, match=refused):
            get_driver(config)
    assert api.requests == []


# ---------------------------------------------------------------- pods
def test_kill_all_pods_of_an_app(api: FakeKubeAPI, driver: KubernetesDriver) -> None:
    killed = driver.kill_pods("mlflow", count=None)
    assert sorted(killed) == ["mlflow-a", "mlflow-b", "mlflow-c"]
    [listed] = api.sent("GET", "/pods$")
    assert listed.path == f"/api/v1/namespaces/{NS}/pods"
    assert listed.query["labelSelector"] == "app=mlflow"
    assert sorted(deleted_pods(api)) == [f"/api/v1/namespaces/{NS}/pods/{n}" for n in killed]
    assert (NS, "helius-reco-a1") in api.pods  # the other app is untouched


def test_kill_count_pods_of_an_app(api: FakeKubeAPI, driver: KubernetesDriver) -> None:
    [killed] = driver.kill_pods("helius-reco", count=1)
    assert deleted_pods(api) == [f"/api/v1/namespaces/{NS}/pods/{killed}"]
    assert killed.startswith("helius-reco-")


@pytest.mark.parametrize(("count", "expected"), [(None, 2), (1, 1)])
def test_kill_pods_in_one_zone(
    api: FakeKubeAPI, driver: KubernetesDriver, count: int | None, expected: int
) -> None:
    """Zone = the zone label of the pod's node; only pods on zone-a nodes are deleted."""
    killed = driver.kill_pods("helius-reco", count=count, zone="zone-a")
    assert len(killed) == expected
    assert set(killed) <= {"helius-reco-a1", "helius-reco-a2"}
    assert sorted(deleted_pods(api)) == sorted(f"/api/v1/namespaces/{NS}/pods/{n}" for n in killed)
    assert all(
        r.query.get("labelSelector") == "app=helius-reco" for r in api.sent("GET", r"/pods$")
    )


def _grace_of(request: Request) -> object:
    """The DELETE's gracePeriodSeconds (absent: the pod's own grace period)."""
    return (request.body or {}).get("gracePeriodSeconds", "the pod's own")


@pytest.mark.parametrize("zone", [None, "zone-a"])
def test_kill_pods_kills_with_grace_period_zero_by_default(
    api: FakeKubeAPI, driver: KubernetesDriver, zone: str | None
) -> None:
    """A kill is a crash, not a shutdown (the docs say SIGKILL): gracePeriodSeconds 0 on every
    DELETE. (Before: no body, i.e. a graceful delete with terminationGracePeriodSeconds.)"""
    killed = driver.kill_pods("helius-reco", count=None, zone=zone)
    deletes = api.sent("DELETE", "/pods/")
    assert len(deletes) == len(killed) >= 2
    assert {_grace_of(r) for r in deletes} == {0}


@pytest.mark.parametrize(("grace", "sent"), [(None, "the pod's own"), (7, 7), (0, 0)])
def test_kill_pods_activity_deletes_gracefully_when_asked(
    api: FakeKubeAPI, kubeconfig: Path, tmp_path: Path, grace: int | None, sent: object
) -> None:
    configuration = harness().model_dump(mode="json") | {"helius_run_dir": str(tmp_path / "run")}
    out = pods.kill_pods("mlflow", count=1, grace_period_seconds=grace, configuration=configuration)
    [delete] = api.sent("DELETE", "/pods/")
    assert delete.path.endswith(f"/pods/{out['killed'][0]}")
    assert _grace_of(delete) == sent


@pytest.mark.parametrize("grace", [-1, 2.5, True, "30"])
def test_kill_pods_refuses_a_bad_grace_period_before_any_request(
    api: FakeKubeAPI, kubeconfig: Path, tmp_path: Path, grace: object
) -> None:
    configuration = harness().model_dump(mode="json") | {"helius_run_dir": str(tmp_path / "run")}
    with pytest.raises(ActivityFailed, match="grace_period_seconds must be 0") as caught:
        pods.kill_pods("mlflow", grace_period_seconds=grace, configuration=configuration)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    assert api.requests == []


def test_list_pods_reads_zone_from_the_node_and_readiness(
    api: FakeKubeAPI, driver: KubernetesDriver
) -> None:
    api.add_pod(NS, "mlflow-d", "node-b1", {"app": "mlflow"}, ready=False)
    listed = {p.name: (p.zone, p.ready) for p in driver.list_pods("mlflow")}
    assert listed == {
        "mlflow-a": ("zone-a", True),
        "mlflow-b": ("zone-b", True),
        "mlflow-c": ("zone-c", True),
        "mlflow-d": ("zone-b", False),
    }
    assert [p.name for p in driver.list_pods("mlflow", zone="zone-c")] == ["mlflow-c"]


# ---------------------------------------------------------------- scale
def _annotations(api: FakeKubeAPI, name: str) -> dict[str, str]:
    annotations: dict[str, str] = api.deployments[(NS, name)]["metadata"].get("annotations", {})
    return annotations


def test_scale_to_zero_keeps_the_original_count_and_restore_brings_it_back(
    api: FakeKubeAPI, driver: KubernetesDriver
) -> None:
    fault = driver.scale("mlflow", 0, ttl_seconds=60)
    assert fault.details == {"replicas": 0, "original_replicas": 3}
    assert api.deployments[(NS, "mlflow")]["spec"]["replicas"] == 0
    assert _annotations(api, "mlflow")[ANNOT_ORIGINAL] == "3"
    assert fault.expires_at is not None
    assert _annotations(api, "mlflow")[ANNOT_EXPIRES] == f"{fault.expires_at:.0f}"
    patches = api.sent("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/mlflow$")
    assert [p.body for p in patches][-1] == {"spec": {"replicas": 0}}
    assert {p.content_type for p in patches} == {"application/strategic-merge-patch+json"}

    # a second fault before the undo must not take 0 for the original
    driver.scale("mlflow", 1, ttl_seconds=60)
    assert _annotations(api, "mlflow")[ANNOT_ORIGINAL] == "3"

    assert driver.restore_scale("mlflow") == ["scale-mlflow"]
    assert api.deployments[(NS, "mlflow")]["spec"]["replicas"] == 3
    assert ANNOT_ORIGINAL not in _annotations(api, "mlflow")
    assert ANNOT_EXPIRES not in _annotations(api, "mlflow")


def test_restore_scale_twice_changes_nothing_the_second_time(
    api: FakeKubeAPI, driver: KubernetesDriver
) -> None:
    driver.scale("helius-reco", 0, ttl_seconds=60)
    driver.restore_scale("helius-reco")
    before = len(api.requests)
    assert driver.restore_scale("helius-reco") == []
    assert [r.method for r in api.requests[before:]] == ["GET"]
    assert api.deployments[(NS, "helius-reco")]["spec"]["replicas"] == 3


def test_a_malformed_original_replicas_is_a_target_error_not_a_crash(
    api: FakeKubeAPI, driver: KubernetesDriver
) -> None:
    """Before: `int("three")` escaped the driver as a bare ValueError."""
    api.deployments[(NS, "mlflow")]["metadata"]["annotations"] = {ANNOT_ORIGINAL: "three"}
    with pytest.raises(TargetError, match="malformed helius.chaos/original-replicas='three'"):
        driver.restore_scale("mlflow")
    with pytest.raises(TargetError, match="malformed helius.chaos/original-replicas='three'"):
        driver.scale("mlflow", 0, 60)
    assert [r.method for r in api.requests] == ["GET", "GET"]


def test_scale_needs_a_known_deployment(api: FakeKubeAPI, driver: KubernetesDriver) -> None:
    with pytest.raises(TargetError, match="kube_deployments"):
        driver.scale("grafana", 0, ttl_seconds=60)
    assert api.requests == []


# ---------------------------------------------------------------- network paths
POLICY = "helius-chaos-mlflow-rds"
POLICIES = f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"


def _created_policy(api: FakeKubeAPI) -> dict[str, Any]:
    [created] = api.sent("POST", f"{POLICIES}$")
    body: dict[str, Any] = created.body
    return body


def test_cut_path_creates_a_policy_that_excludes_postgres(
    api: FakeKubeAPI, driver: KubernetesDriver
) -> None:
    fault = driver.cut_path("mlflow-rds", "blackhole", None, ttl_seconds=60)
    assert fault.id == POLICY and fault.kind == "path"
    policy = _created_policy(api)
    assert policy["metadata"]["name"] == POLICY
    assert policy["metadata"]["namespace"] == NS
    assert policy["metadata"]["labels"][FAULT_LABEL] == "true"
    assert policy["metadata"]["annotations"][ANNOT_EXPIRES] == f"{fault.expires_at:.0f}"
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app": "mlflow"}}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    [rule] = policy["spec"]["egress"]
    assert rule["to"] == [
        {
            "namespaceSelector": {},
            "podSelector": {
                "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["postgres"]}]
            },
        }
    ]
    assert (NS, POLICY) in api.policies
    assert [f.id for f in driver.active_faults()] == [POLICY]


def test_cut_path_with_an_rds_cidr_excludes_that_block(api: FakeKubeAPI, kubeconfig: Path) -> None:
    get_driver(harness(kube_rds_cidr="10.20.0.0/16")).cut_path(
        "mlflow-rds", "reset", None, ttl_seconds=60
    )
    [rule] = _created_policy(api)["spec"]["egress"]
    assert {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.20.0.0/16"]}} in rule["to"]


def test_cut_path_excepts_every_rds_cidr(api: FakeKubeAPI, kubeconfig: Path) -> None:
    """An RDS subnet group spans two zones or more: every subnet is cut, the rest stays open
    (IPv6 ones in their own ::/0 block). Before: one CIDR only, a list was refused."""
    cidrs = ["10.0.64.0/20", "10.0.80.0/20", "2600:1f18:abc::/56"]
    get_driver(harness(kube_rds_cidr=cidrs)).cut_path("mlflow-rds", "blackhole", None, 60)
    [rule] = _created_policy(api)["spec"]["egress"]
    blocks = [peer["ipBlock"] for peer in rule["to"] if "ipBlock" in peer]
    assert blocks == [
        {"cidr": "0.0.0.0/0", "except": ["10.0.64.0/20", "10.0.80.0/20"]},
        {"cidr": "::/0", "except": ["2600:1f18:abc::/56"]},
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.64.0/20", ["10.0.64.0/20"]),  # the old single string still works
        ("10.0.64.0/20, 10.0.80.0/20", ["10.0.64.0/20", "10.0.80.0/20"]),  # an env var
        (["10.0.64.0/20", "10.0.80.0/20"], ["10.0.64.0/20", "10.0.80.0/20"]),
        ("", []),
        (None, []),
    ],
)
def test_kube_rds_cidr_takes_a_list_a_string_or_a_comma_separated_string(
    value: object, expected: list[str]
) -> None:
    assert HarnessConfig.from_chaos({"kube_rds_cidr": value}).kube_rds_cidr == expected


@pytest.mark.parametrize("bad", ["10.0.64.1/20", "rds.example.com", "10.0.64.0/20,nope"])
def test_kube_rds_cidr_refuses_what_is_not_a_cidr(bad: str) -> None:
    with pytest.raises(ActivityFailed, match="kube_rds_cidr.*not a CIDR") as caught:
        HarnessConfig.from_chaos({"kube_rds_cidr": bad})
    assert "\n" not in str(caught.value)


def test_cut_path_twice_keeps_one_policy(api: FakeKubeAPI, driver: KubernetesDriver) -> None:
    driver.cut_path("mlflow-rds", "blackhole", None, ttl_seconds=60)
    driver.cut_path("mlflow-rds", "blackhole", None, ttl_seconds=60)  # 409: already in place
    assert list(api.policies) == [(NS, POLICY)]


def test_restore_path_deletes_the_policy_and_is_safe_twice(
    api: FakeKubeAPI, driver: KubernetesDriver
) -> None:
    driver.cut_path("mlflow-rds", "blackhole", None, ttl_seconds=60)
    assert driver.restore_path("mlflow-rds") == [POLICY]
    assert api.sent("DELETE", f"{POLICIES}/{POLICY}$")
    assert api.policies == {}
    assert driver.restore_path("mlflow-rds") == []  # 404s: nothing left to undo
    assert driver.active_faults() == []


def test_latency_uses_chaos_mesh_and_restore_removes_it(
    api: FakeKubeAPI, driver: KubernetesDriver
) -> None:
    api.chaos_mesh = True
    fault = driver.cut_path("reco-mlflow", "latency", 250, ttl_seconds=60)
    assert fault.id == "helius-chaos-reco-mlflow-latency"
    [created] = api.sent("POST", f"/apis/chaos-mesh.org/v1alpha1/namespaces/{NS}/networkchaos$")
    spec = created.body["spec"]
    assert created.body["metadata"]["name"] == fault.id
    assert spec["delay"] == {"latency": "250ms"}
    # the delay sits on MLflow's egress to the recommenders (see network_chaos_for)
    assert spec["selector"]["labelSelectors"] == {"app": "mlflow"}
    assert spec["direction"] == "to"
    assert spec["target"]["selector"]["labelSelectors"] == {"app": "helius-reco"}
    assert driver.restore_path("reco-mlflow") == [fault.id]
    assert api.chaos == {}
    assert driver.restore_path("reco-mlflow") == []


# Chaos Mesh's NetworkChaos, as its controller applies it (chaos-mesh controllers/networkchaos:
# `to` puts a netem qdisc on the selector pods' egress filtered by the target pods' IPs and the
# externalTargets, no filter when there are neither; `from` on the target pods' egress filtered
# by the selector pods' IPs). A packet is (sender pod, destination IP as it leaves the sender's
# network namespace): a Service's ClusterIP is rewritten by kube-proxy only after that.
CLUSTER_PODS = {  # name -> (app, pod IP)
    "helius-reco-a": ("helius-reco", "10.244.1.5"),
    "helius-reco-b": ("helius-reco", "10.244.2.5"),
    "mlflow-a": ("mlflow", "10.244.1.7"),
    "postgres-0": ("postgres", "10.244.3.9"),
    "prometheus-0": ("prometheus", "10.244.3.4"),
}
MLFLOW_CLUSTER_IP, POSTGRES_CLUSTER_IP, KUBELET = "10.96.0.50", "10.96.0.60", "172.18.0.3"


def _chaos_pods(selector: dict[str, Any]) -> set[str]:
    labels = selector["selector"]["labelSelectors"] if "selector" in selector else {}
    return {n for n, (app, _) in CLUSTER_PODS.items() if labels.get("app") == app}


def _delayed(chaos: dict[str, Any], sender: str, destination: str) -> bool:
    spec = chaos["spec"]
    sources = _chaos_pods({"selector": spec["selector"]})
    targets = _chaos_pods(spec["target"]) if spec.get("target") else set()
    target_ips = {CLUSTER_PODS[p][1] for p in targets}
    external = [ipaddress.ip_network(c) for c in spec.get("externalTargets") or []]
    if spec["direction"] == "to":
        if sender not in sources:
            return False
        if not target_ips and not external:
            return True
        address = ipaddress.ip_address(destination)
        return destination in target_ips or any(address in net for net in external)
    assert spec["direction"] == "from", spec["direction"]
    return sender in targets and destination in {CLUSTER_PODS[p][1] for p in sources}


def test_latency_delays_the_service_traffic_of_its_edge_and_nothing_else() -> None:
    """reco-mlflow: the recommender calls the Service `mlflow` (ClusterIP); MLflow answers the
    recommender's pod IP. One of the two legs must be delayed, else the fault injects nothing
    (chaos-mesh/chaos-mesh#1227: the old object, selector recommenders + direction `to` +
    target MLflow pods, filtered on MLflow pod IPs that the request never carries in the
    recommender's namespace); and what MLflow sends elsewhere must not be."""
    chaos = network_chaos_for("reco-mlflow", NS, 800, 60)
    reco_ip = CLUSTER_PODS["helius-reco-a"][1]
    request = _delayed(chaos, "helius-reco-a", MLFLOW_CLUSTER_IP)
    response = _delayed(chaos, "mlflow-a", reco_ip)
    assert request or response, "the recommender's calls to MLflow are not delayed"
    assert _delayed(chaos, "mlflow-a", CLUSTER_PODS["helius-reco-b"][1])  # every replica
    assert not _delayed(chaos, "mlflow-a", POSTGRES_CLUSTER_IP)  # its database
    assert not _delayed(chaos, "mlflow-a", CLUSTER_PODS["prometheus-0"][1])  # scrapes
    assert not _delayed(chaos, "mlflow-a", KUBELET)  # probes
    assert not _delayed(chaos, "helius-reco-a", CLUSTER_PODS["prometheus-0"][1])
    assert chaos["spec"]["duration"] == "60s" and chaos["spec"]["delay"]["latency"] == "800ms"


def test_latency_on_mlflow_rds_delays_the_database_side() -> None:
    """In the cluster (PostgreSQL pods behind a Service): PostgreSQL's answers to MLflow. On
    RDS (kube_rds_cidr): MLflow's packets to the RDS subnets, where no Service rewrites."""
    in_cluster = network_chaos_for("mlflow-rds", NS, 300, 60)
    assert _delayed(in_cluster, "postgres-0", CLUSTER_PODS["mlflow-a"][1])
    assert not _delayed(in_cluster, "postgres-0", CLUSTER_PODS["prometheus-0"][1])
    on_rds = network_chaos_for("mlflow-rds", NS, 300, 60, ["10.0.64.0/20", "10.0.80.0/20"])
    assert on_rds["spec"]["externalTargets"] == ["10.0.64.0/20", "10.0.80.0/20"]
    assert "target" not in on_rds["spec"]
    assert _delayed(on_rds, "mlflow-a", "10.0.80.17")
    assert not _delayed(on_rds, "mlflow-a", CLUSTER_PODS["helius-reco-a"][1])
    assert not _delayed(on_rds, "mlflow-a", "52.216.0.1")  # S3 stays fast


def test_latency_without_chaos_mesh_says_so(api: FakeKubeAPI, driver: KubernetesDriver) -> None:
    with pytest.raises(TargetError, match="Chaos Mesh"):
        driver.cut_path("mlflow-rds", "latency", 250, ttl_seconds=60)


# ---------------------------------------------------------------- zones
def _unschedulable(api: FakeKubeAPI) -> dict[str, bool]:
    return {name: bool(n["spec"].get("unschedulable")) for name, n in api.nodes.items()}


def _evicted(api: FakeKubeAPI) -> list[str]:
    """`namespace/name` of every pod an eviction was posted for."""
    return sorted(r.path.split("/")[4] + "/" + r.path.split("/")[6] for r in _evictions(api))


def _evictions(api: FakeKubeAPI) -> list[Request]:
    return api.sent("POST", "/eviction$")


def test_drain_zone_cordons_and_evicts_the_namespace_only(
    api: FakeKubeAPI, driver: KubernetesDriver
) -> None:
    """Eviction API (never a DELETE), pods of `helius` only: kube-system's coredns on node-a2
    and the DaemonSet pod stay; the cordon is recorded on each node it made unschedulable."""
    fault = driver.drain_zone("zone-a", ttl_seconds=30)
    assert fault.details["nodes"] == fault.details["cordoned"] == ["node-a1", "node-a2"]
    assert fault.details["already_cordoned"] == []
    assert _unschedulable(api) == {
        "node-a1": True,
        "node-a2": True,
        "node-b1": False,
        "node-c1": False,
    }
    for node in ("node-a1", "node-a2"):
        annotations = api.nodes[node]["metadata"]["annotations"]
        assert annotations[ANNOT_CORDONED] == "drain-zone-a"
        assert annotations[ANNOT_EXPIRES] == f"{fault.expires_at:.0f}"
    assert (
        _evicted(api)
        == fault.details["evicted"]
        == [
            "helius/helius-reco-a1",
            "helius/helius-reco-a2",
            "helius/mlflow-a",
        ]
    )
    assert deleted_pods(api) == []
    # pods were chosen per node in the namespace, never across namespaces
    listed = api.sent("GET", "/pods$")
    assert {r.path for r in listed} == {f"/api/v1/namespaces/{NS}/pods"}
    assert {r.query["fieldSelector"] for r in listed} >= {
        "spec.nodeName=node-a1",
        "spec.nodeName=node-a2",
    }
    assert ("kube-system", "coredns-a") in api.pods and ("kube-system", "kube-proxy-a1") in api.pods
    assert (NS, "mlflow-b") in api.pods


def test_drain_with_all_namespaces_evicts_other_namespaces_but_no_daemonset_pod(
    api: FakeKubeAPI, kubeconfig: Path
) -> None:
    get_driver(harness(kube_drain_all_namespaces=True)).drain_zone("zone-a", ttl_seconds=30)
    assert "kube-system/coredns-a" in _evicted(api)
    assert "kube-system/kube-proxy-a1" not in _evicted(api)


def test_drain_never_evicts_the_harness_itself(api: FakeKubeAPI, driver: KubernetesDriver) -> None:
    """The load generator and the reaper (label helius.chaos/harness=true) measure and guard
    the experiment: draining them would be the harness hurting itself."""
    api.add_pod(NS, "loadgen-worker-a", "node-a1", {"app": "loadgen", HARNESS_LABEL: "true"})
    driver.drain_zone("zone-a", ttl_seconds=30)
    assert f"{NS}/loadgen-worker-a" not in _evicted(api)
    assert (NS, "loadgen-worker-a") in api.pods


def test_uncordon_undoes_only_the_cordons_the_drain_made(
    api: FakeKubeAPI, driver: KubernetesDriver
) -> None:
    """node-a2 was cordoned by an operator before the run: it stays cordoned afterwards."""
    api.nodes["node-a2"]["spec"]["unschedulable"] = True
    fault = driver.drain_zone("zone-a", ttl_seconds=30)
    assert fault.details["cordoned"] == ["node-a1"]
    assert fault.details["already_cordoned"] == ["node-a2"]
    assert "helius/helius-reco-a2" in fault.details["evicted"]  # its pods still go
    drained = len(api.requests)
    assert driver.uncordon_zone("zone-a") == ["drain-zone-a"]
    assert _unschedulable(api) == {
        "node-a1": False,
        "node-a2": True,
        "node-b1": False,
        "node-c1": False,
    }
    assert ANNOT_CORDONED not in api.nodes["node-a1"]["metadata"].get("annotations", {})
    patches = [r.path for r in api.requests[drained:] if r.method == "PATCH"]
    # node-a1 uncordoned, then both Deployments restarted: no pod of theirs is left in zone-a
    # (this fixture has no controller: see test_kubernetes_cluster.py for the rollout itself)
    assert patches == [
        "/api/v1/nodes/node-a1",
        f"/apis/apps/v1/namespaces/{NS}/deployments/helius-reco",
        f"/apis/apps/v1/namespaces/{NS}/deployments/mlflow",
    ]
    assert driver.uncordon_zone("zone-a") == []  # safe twice: nothing of ours is left
    assert _unschedulable(api)["node-a2"] is True
    assert {r.method for r in api.requests[drained:]} == {"GET", "PATCH"}


def test_drain_of_a_zone_without_nodes_says_which_label(
    api: FakeKubeAPI, driver: KubernetesDriver
) -> None:
    with pytest.raises(TargetError, match=f"{ZONE}=zone-x") as caught:
        driver.drain_zone("zone-x", ttl_seconds=30)
    message = str(caught.value)
    assert "['zone-a', 'zone-b', 'zone-c']" in message and "helius_zone" in message
    assert "\n" not in message
    assert driver.zones() == ["zone-a", "zone-b", "zone-c"]


def test_the_drain_activity_takes_a_clusters_own_zone_names(
    api: FakeKubeAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    """EKS labels its nodes eu-west-1a ...: the activity drains such a zone (it refused every
    zone but zone-a|b|c before), and its undo uncordons it."""
    api.add_node("node-eu1", "eu-west-1a")
    api.add_pod(NS, "helius-reco-eu", "node-eu1", {"app": "helius-reco"})
    configuration = harness().model_dump(mode="json") | {"helius_run_dir": str(tmp_path / "run")}
    out = zones.drain_zone("eu-west-1a", ttl_seconds=30, configuration=configuration)
    assert out["fault"] == "drain-eu-west-1a"
    assert _unschedulable(api) == {
        "node-a1": False, "node-a2": False, "node-b1": False, "node-c1": False, "node-eu1": True,
    }  # fmt: skip
    assert [r.path for r in api.sent("POST", "/eviction$")] == [
        f"/api/v1/namespaces/{NS}/pods/helius-reco-eu/eviction"
    ]
    assert zones.uncordon_zone("eu-west-1a", configuration=configuration)["undone"] == [
        "drain-eu-west-1a"
    ]
    assert not any(_unschedulable(api).values())


def test_every_zone_has_ready_pods_counts_the_clusters_zones(
    api: FakeKubeAPI, kubeconfig: Path
) -> None:
    """The zones are the nodes' labels, not zone-a|b|c: a fourth zone without a recommender
    is reported (before: only zone-a|b|c were counted, so it passed)."""
    api.add_node("node-eu1", "eu-west-1a")
    configuration = harness().model_dump(mode="json")
    with pytest.raises(ActivityFailed, match=r"helius-reco: no ready pod in \['eu-west-1a'\]"):
        zone_probes.every_zone_has_ready_pods("helius-reco", configuration=configuration)
    api.add_pod(NS, "helius-reco-eu", "node-eu1", {"app": "helius-reco"})
    out = zone_probes.every_zone_has_ready_pods("helius-reco", configuration=configuration)
    assert out["ok"] and out["threshold"]["zones"] == ["eu-west-1a", "zone-a", "zone-b", "zone-c"]


@pytest.mark.parametrize("zone", ["", "zone a", "-zone-a", "x" * 64, "eu-west-1a/"])
def test_a_zone_that_cannot_be_a_label_value_is_refused_before_any_request(
    api: FakeKubeAPI, kubeconfig: Path, tmp_path: Path, zone: str
) -> None:
    configuration = harness().model_dump(mode="json") | {"helius_run_dir": str(tmp_path / "run")}
    with pytest.raises(ActivityFailed, match="label value") as caught:
        zones.drain_zone(zone, ttl_seconds=30, configuration=configuration)
    assert "\n" not in str(caught.value) and "helius_zone" in str(caught.value)
    assert api.requests == []


def test_the_old_drain_zone_variable_is_refused_saying_what_to_write(
    api: FakeKubeAPI, kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """az-drain's HELIUS_DRAIN_ZONE became HELIUS_ZONE (one key for every zone-pinned
    experiment): set to another zone than the one given, it fails saying what to set."""
    monkeypatch.setenv("HELIUS_DRAIN_ZONE", "zone-b")
    configuration = harness().model_dump(mode="json") | {"helius_run_dir": str(tmp_path / "run")}
    with pytest.raises(ActivityFailed, match="set HELIUS_ZONE=zone-b instead"):
        zones.drain_zone("zone-a", ttl_seconds=30, configuration=configuration)
    assert api.requests == []
    zones.drain_zone("zone-b", ttl_seconds=30, configuration=configuration)  # they agree: fine


def test_the_local_stack_names_an_unknown_zone_in_one_line(
    fake_stack: tuple[Any, str], configuration: dict[str, Any]
) -> None:
    """The local stack keeps its zone-a|b|c: another zone is its control API's 404, one line."""
    with pytest.raises(TargetError, match="HTTP 404 unknown zone eu-west-1a") as caught:
        zones.drain_zone("eu-west-1a", ttl_seconds=30, configuration=configuration)
    assert "\n" not in str(caught.value)


def test_the_local_stack_refuses_a_graceful_delete_before_any_request(
    fake_stack: tuple[Any, str], configuration: dict[str, Any]
) -> None:
    with pytest.raises(TargetError, match="only kills pods") as caught:
        pods.kill_pods("mlflow", grace_period_seconds=None, configuration=configuration)
    assert "\n" not in str(caught.value)
    assert [r for r in fake_stack[0].requests if r[0] != "GET"] == []  # no kill was sent


# ---------------------------------------------------------------- API errors
@pytest.mark.parametrize(
    ("method", "path", "code", "reason", "call", "hint"),
    [
        pytest.param(
            "DELETE", "/pods/", 403, "Forbidden",
            lambda d: d.kill_pods("mlflow", count=1), "RBAC", id="kill-403",
        ),
        pytest.param(
            "GET", "/pods$", 500, "InternalError",
            lambda d: d.list_pods("mlflow"), "API server", id="list-500",
        ),
        pytest.param(
            "PATCH", "/deployments/", 403, "Forbidden",
            lambda d: d.scale("mlflow", 0, 60), "RBAC", id="scale-403",
        ),
        pytest.param(
            "POST", "/networkpolicies$", 403, "Forbidden",
            lambda d: d.cut_path("mlflow-rds", "blackhole", None, 60), "RBAC", id="cut-403",
        ),
        pytest.param(
            "DELETE", "/networkpolicies/", 500, "InternalError",
            lambda d: d.restore_path("mlflow-rds"), "API server", id="restore-path-500",
        ),
        pytest.param(
            "PATCH", "/nodes/", 403, "Forbidden",
            lambda d: d.drain_zone("zone-a", 30), "RBAC", id="drain-403",
        ),
        pytest.param(
            "GET", "/nodes$", 500, "InternalError",
            lambda d: d.uncordon_zone("zone-a"), "API server", id="uncordon-500",
        ),
        pytest.param(
            "POST", "/eviction$", 403, "Forbidden",
            lambda d: d.drain_zone("zone-a", 30), "RBAC", id="evict-403",
        ),
    ],
)  # fmt: skip
def test_api_errors_become_target_errors_a_person_can_act_on(
    api: FakeKubeAPI,
    driver: KubernetesDriver,
    method: str,
    path: str,
    code: int,
    reason: str,
    call: Callable[[KubernetesDriver], object],
    hint: str,
) -> None:
    api.fail(method, path, code, reason, f"simulated {reason.lower()} from the fake")
    with pytest.raises(TargetError) as caught:
        call(driver)
    message = str(caught.value)
    assert isinstance(caught.value.__cause__, ApiException)
    assert str(code) in message and ALLOWED in message and hint in message
    assert f"simulated {reason.lower()} from the fake" in message  # the API's own words
    assert "HTTP response headers" not in message and "\n" not in message


def test_an_unreachable_api_server_is_a_target_error(
    api: FakeKubeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    path = write_kubeconfig(tmp_path / "kubeconfig", {ALLOWED: closed}, current=ALLOWED)
    isolate_client(monkeypatch, path)
    with pytest.raises(TargetError, match="cannot reach the Kubernetes API"):
        get_driver(harness(kube_allowed_servers={ALLOWED: closed})).list_pods("mlflow")


# ---------------------------------------------------------------- through Chaos Toolkit
def test_kill_pods_activity_dispatches_to_the_kubernetes_driver(
    api: FakeKubeAPI, kubeconfig: Path, tmp_path: Path
) -> None:
    """An experiment's action, run by chaoslib with a configuration block, ends at the fake."""
    configuration = harness().model_dump(mode="json") | {"helius_run_dir": str(tmp_path / "run")}
    activity = {
        "type": "action",
        "name": "kill-one-mlflow-pod-in-zone-b",
        "provider": {
            "type": "python",
            "module": "chaoshelius.pods.actions",
            "func": "kill_pods",
            "arguments": {"app": "mlflow", "count": 1, "zone": "zone-b"},
        },
    }
    out = run_python_activity(activity, configuration, {})
    assert out["killed"] == ["mlflow-b"]
    assert deleted_pods(api) == [f"/api/v1/namespaces/{NS}/pods/mlflow-b"]
    assert tokens(api) == {f"{ALLOWED}-token"}
    [window] = windows.windows()
    assert window.kind == "pod-kill" and window.details["ready_before"]["mlflow"] == 3
    assert (tmp_path / "run" / "windows.json").is_file()

    refused = configuration | {"kube_context": "prod"}
    before = len(api.requests)
    with pytest.raises(ActivityFailed, match="not in kube_allowed_contexts"):
        run_python_activity(activity, refused, {})
    assert len(api.requests) == before
