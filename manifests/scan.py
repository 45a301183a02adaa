"""Security scan: checkov's Kubernetes checks over every rendered overlay.

    nox -s security                      # installs checkov, runs this
    python manifests/scan.py [kind aws] [--keep DIR]

Each overlay is rendered with `kubectl kustomize` into a temporary directory (or --keep DIR)
and scanned with `checkov -f <overlay>.yaml --framework kubernetes`. The exit code is non-zero
when a check fails, when checkov cannot parse a file or scans no resource (no data is a
failure, not a pass), or when a skip has no reason.

Skips, each with its reason:
- SKIPPED below: checks skipped for every resource (passed to checkov as --skip-check);
- `checkov.io/skipN: CKV_K8S_xx=<reason>` annotations on the one resource a skip concerns
  (in manifests/base, manifests/components and manifests/overlays; no `=` inside the reason).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OVERLAYS = ("kind", "aws")

SKIPPED: dict[str, str] = {
    "CKV_K8S_43": (
        "images are pinned to exact version tags, not digests: the project's own images are "
        "built and loaded locally (kind) and have no registry digest yet; pin digests in your "
        "own overlay with `kustomize edit set image NAME=IMAGE@sha256:...` once pushed"
    ),
    "CKV_K8S_15": (
        "imagePullPolicy IfNotPresent: images side-loaded with `kind load docker-image` exist "
        "only on the nodes and `Always` would fail to pull them; every tag is a fixed version"
    ),
}
NO_REASON = {"", "No comment provided"}


def checkov_command() -> list[str]:
    """checkov next to this interpreter (the nox session's venv), else on PATH."""
    beside = Path(sys.executable).parent / "checkov"
    found = str(beside) if beside.exists() else shutil.which("checkov")
    if found is None:
        sys.exit("checkov not found: run `nox -s security`, or `pip install checkov`")
    return [found]


def render(overlay: str, out_dir: Path) -> Path:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        sys.exit("kubectl not found on PATH (it renders the overlays with kustomize)")
    done = subprocess.run(  # noqa: S603  argv list, no shell: kubectl from shutil.which
        [kubectl, "kustomize", str(HERE / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"kubectl kustomize overlays/{overlay} failed:\n{done.stderr}")
    path = out_dir / f"{overlay}.yaml"
    path.write_text(done.stdout)
    return path


def scan(path: Path) -> dict[str, Any]:
    """checkov's JSON report for one rendered file."""
    done = subprocess.run(  # noqa: S603  argv list, no shell: checkov beside this interpreter
        [
            *checkov_command(),
            "--file",
            str(path),
            "--framework",
            "kubernetes",
            "--skip-check",
            ",".join(sorted(SKIPPED)),
            "--skip-download",  # no network: guidelines and severities are not needed
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        sys.exit(
            f"checkov gave no JSON report for {path} (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    if isinstance(report, list):  # one entry per framework
        (report,) = [r for r in report if r.get("check_type") == "kubernetes"]
    if "results" not in report:  # nothing scanned: checkov prints only a summary
        report["results"] = {}
    return report


def judge(overlay: str, report: dict[str, Any]) -> list[str]:
    """Print the overlay's result; return the problems that fail the scan."""
    results, summary = report["results"], report.get("summary", {})
    passed = results.get("passed_checks", [])
    failed = results.get("failed_checks", [])
    skipped = results.get("skipped_checks", [])
    print(
        f"overlays/{overlay}: {summary.get('resource_count', 0)} resources, "
        f"{len(passed)} passed, {len(failed)} failed, {len(skipped)} skipped by annotation "
        f"(+ {len(SKIPPED)} check ids skipped everywhere)"
    )
    problems = [
        f"{overlay}: FAILED {r['check_id']} {r['resource']}: {r['check_name']}" for r in failed
    ]
    for r in skipped:
        reason = (r.get("check_result") or {}).get("suppress_comment", "")
        print(f"  skipped {r['check_id']} {r['resource']}: {reason}")
        if reason.strip() in NO_REASON:
            problems.append(f"{overlay}: skip of {r['check_id']} on {r['resource']} has no reason")
    if summary.get("parsing_errors"):
        problems.append(f"{overlay}: checkov could not parse {summary['parsing_errors']} file(s)")
    if not passed:
        problems.append(f"{overlay}: checkov scanned nothing (no passed check)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overlays", nargs="*", help=f"default: {' '.join(OVERLAYS)}")
    parser.add_argument("--keep", type=Path, help="render into this directory and keep it")
    args = parser.parse_args(argv)
    args.overlays = args.overlays or list(OVERLAYS)
    if unknown := set(args.overlays) - set(OVERLAYS):
        parser.error(f"unknown overlays {sorted(unknown)}; known: {', '.join(OVERLAYS)}")
    for check_id, reason in SKIPPED.items():
        print(f"skipped everywhere {check_id}: {reason}")
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="helius-scan-") as tmp:
        out_dir = args.keep or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for overlay in args.overlays:
            problems += judge(overlay, scan(render(overlay, out_dir)))
    for problem in problems:
        print(problem, file=sys.stderr)
    print("security scan:", "FAILED" if problems else "passed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
