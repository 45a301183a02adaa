"""Which cluster the kubernetes driver may touch: the kube context allow-list and its pin.

The driver refuses to be built unless the kube context it would use (the configured
`kube_context`, else the kubeconfig's current context) is in `kube_allowed_contexts`, is defined
in the kubeconfig file chaosk8s reads, its API server is the one pinned for it in
`kube_allowed_servers` (the server URL, or the sha256 of the CA certificate the context trusts:
a context *name* can point anywhere), and `kube_namespace` is in `kube_allowed_namespaces`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
from typing import Any

import yaml
from chaosk8s import get_config_path
from kubernetes import config as kubeconfig
from kubernetes.config import kube_config
from kubernetes.config.config_exception import ConfigException

from chaoshelius.config import HarnessConfig
from chaoshelius.exceptions import NotAllowedError, TargetError

__all__ = ["ca_fingerprint", "resolve_context"]


def _kubeconfig_contexts() -> tuple[str, set[str], str | None]:
    """The kubeconfig file chaosk8s will load: its path, context names and current context."""
    path = get_config_path()
    loaded = os.path.expanduser(kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
    if not os.path.isfile(path):
        raise TargetError(
            f"no kubeconfig file at {path} (KUBECONFIG must name one file); without it chaosk8s "
            "ignores the kube context, so the allow-list cannot be enforced"
        )
    if os.path.abspath(path) != os.path.abspath(loaded):
        raise TargetError(
            f"chaosk8s would check the kubeconfig {path} but load {loaded} (KUBECONFIG changed "
            "after the kubernetes client was imported); set KUBECONFIG before starting `chaos`"
        )
    try:
        contexts, active = kubeconfig.list_kube_config_contexts(path)  # type: ignore[no-untyped-call]
    except (ConfigException, OSError) as exc:
        raise TargetError(f"cannot read the kubeconfig {path}: {exc}") from exc
    names = {str(c["name"]) for c in contexts or []}
    return path, names, str(active["name"]) if active else None


def _cluster_of(path: str, context: str) -> dict[str, Any]:
    """The `cluster` entry (server, CA ...) the kubeconfig gives `context`."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle) or {}
        [ctx] = [c for c in document.get("contexts") or [] if c.get("name") == context]
        cluster_name = (ctx.get("context") or {}).get("cluster")
        [cluster] = [c for c in document.get("clusters") or [] if c.get("name") == cluster_name]
    except (OSError, yaml.YAMLError, ValueError, AttributeError) as exc:
        raise TargetError(
            f"cannot read the cluster of context {context!r} in the kubeconfig {path} ({exc}); "
            "each context must name exactly one cluster"
        ) from exc
    found: dict[str, Any] = cluster.get("cluster") or {}
    return found


def ca_fingerprint(cluster: dict[str, Any]) -> str | None:
    """sha256 (hex) of the DER CA certificate a kubeconfig cluster entry trusts, if any."""
    pem: str | None = None
    if data := cluster.get("certificate-authority-data"):
        pem = base64.b64decode(data).decode("ascii", "replace")
    elif file := cluster.get("certificate-authority"):
        with open(os.path.expanduser(str(file)), encoding="ascii", errors="replace") as handle:
            pem = handle.read()
    if pem is None:
        return None
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def _check_pin(path: str, context: str, pin: str | None) -> None:
    """The context's API server must be the pinned one (URL, or CA certificate fingerprint)."""
    if pin is None:
        raise NotAllowedError(
            f"kube context {context!r} is allowed by name but its API server is not pinned; add "
            f"{context}=<server URL> (or {context}=sha256:<CA fingerprint>) to "
            "kube_allowed_servers (HELIUS_KUBE_ALLOWED_SERVERS): a context name alone can point "
            "at any cluster"
        )
    cluster = _cluster_of(path, context)
    if pin.lower().startswith("sha256:"):
        if cluster.get("insecure-skip-tls-verify"):
            raise NotAllowedError(
                f"kube context {context!r} skips TLS verification, so the pinned CA proves "
                "nothing about the server; remove insecure-skip-tls-verify from its cluster"
            )
        try:
            actual = ca_fingerprint(cluster)
        except (OSError, ValueError) as exc:
            raise TargetError(f"cannot read the CA of kube context {context!r}: {exc}") from exc
        wanted = pin.split(":", 1)[1].replace(":", "").lower()
        if actual != wanted:
            raise NotAllowedError(
                f"kube context {context!r} trusts the CA sha256:{actual}, not the pinned "
                f"sha256:{wanted}: this is another cluster (or the pin is stale); refusing"
            )
        return
    server = str(cluster.get("server", ""))
    if server.rstrip("/") != pin.rstrip("/"):
        raise NotAllowedError(
            f"kube context {context!r} points at {server!r}, not at the pinned {pin!r}: this "
            "is another cluster (or the pin is stale); refusing"
        )


def resolve_context(config: HarnessConfig) -> str:
    """The kube context the driver would use, or NotAllowedError/TargetError."""
    path, defined, active = _kubeconfig_contexts()
    context = config.kube_context or active
    if context is None:
        raise TargetError(f"the kubeconfig {path} has no current context; set kube_context")
    if context not in config.kube_allowed_contexts:
        raise NotAllowedError(
            f"kube context {context!r} is not in kube_allowed_contexts "
            f"{config.kube_allowed_contexts}; add it to the experiment's configuration "
            "(or HELIUS_KUBE_ALLOWED_CONTEXTS) to allow faults there"
        )
    if config.kube_namespace not in config.kube_allowed_namespaces:
        raise NotAllowedError(
            f"namespace {config.kube_namespace!r} is not in kube_allowed_namespaces "
            f"{config.kube_allowed_namespaces}; refusing to inject faults there"
        )
    if context not in defined:
        raise TargetError(
            f"kube context {context!r} is allowed but not defined in the kubeconfig {path} "
            f"(it defines {sorted(defined)}); fix kube_context or KUBECONFIG"
        )
    _check_pin(path, context, config.kube_allowed_servers.get(context))
    return context
