"""Sessions for the Helius resilience harness (`nox -l` lists them).

Default sessions (`nox`): lint, typecheck, tests. The slow ones are opt-in: chaos (the whole
experiment catalogue on the embedded local stack -> reports/index.html), negative (each
experiment against its fragile variant: it must deviate), bench, security, report_browser.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.12"
HARNESS = ["-e", "./service", "-e", ".[dev]"]


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff lint and format check over the whole repository."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the harness package and the service package."""
    session.install(*HARNESS)
    session.run("mypy", "chaoshelius")
    session.run("mypy", "--config-file", "service/pyproject.toml", "service/src/helius_reco")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """All tests: unit, real-server integration (PostgreSQL, MLflow, Prometheus), manifests."""
    session.install(*HARNESS)
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON, default=False)
def chaos(session: nox.Session) -> None:
    """The chaos suite on the embedded local stack under load -> reports/index.html."""
    session.install(*HARNESS)
    session.run("chaoshelius", "suite", "run", *session.posargs)


@nox.session(python=PYTHON, default=False)
def negative(session: nox.Session) -> None:
    """Negative controls: every experiment must deviate against its known-fragile variant."""
    session.install(*HARNESS)
    session.run("chaoshelius", "suite", "run", "--negative", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """/predict throughput and latency vs a bare FastAPI endpoint and `mlflow models serve`."""
    session.install(*HARNESS)
    session.run("python", "benchmarks/bench_predict.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def security(session: nox.Session) -> None:
    """checkov's Kubernetes checks over the rendered manifests (skips justified inline)."""
    session.install("checkov")
    session.run("python", "manifests/scan.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def report_browser(session: nox.Session) -> None:
    """Render a report in headless Chromium, check it loads and draws, keep a screenshot."""
    session.install(*HARNESS)
    session.run("python", "-m", "chaoshelius.report.browser_check", *session.posargs)
