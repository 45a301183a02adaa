"""Sessions for the Helius resilience harness (`nox -l` lists them).

Default sessions (`nox`): lint, typecheck, tests. The slow ones are opt-in: chaos (the whole
experiment catalogue on the embedded local stack -> reports/index.html), negative (each
experiment against its fragile variant: it must deviate), bench, security, report_browser.

The sessions set up what they need on a fresh machine, so the README's two commands are the
whole quick start:

- **Python**: chaostoolkit >= 1.20 needs Python >= 3.12. The sessions use the first working
  interpreter among `$HELIUS_PYTHON`, `python3.12`/`python3.13` on PATH, pyenv's installed
  versions (not activated: Debian 12's `python3` is 3.11) and uv's managed ones, without any
  download. None found: nox stops with one line saying what to install (never "skipped").
- **System tools** (Prometheus, promtool, HAProxy, PostgreSQL 15 server binaries, Chromium):
  found on PATH (or Debian's `/usr/lib/postgresql/*/bin`, `/usr/sbin`), else installed with
  `apt-get` when running as root, else the session fails with the exact command to run.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True  # a missing Python fails, never "skipped"

HARNESS = ["-e", "./service", "-e", ".[dev]"]
MIN_PYTHON = (3, 12)

# tool on PATH -> Debian package that provides it
DEBIAN_PACKAGES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "initdb": "postgresql-15",
    "pg_ctl": "postgresql-15",
    "postgres": "postgresql-15",
    "chromium": "chromium",
    "wrk": "wrk",
    "haproxy": "haproxy",
}
POSTGRES_TOOLS = ("initdb", "pg_ctl", "postgres")
STACK_TOOLS = ("prometheus", "promtool", "haproxy", *POSTGRES_TOOLS)


def _python_candidates() -> list[str]:
    found: list[str] = []
    if override := os.environ.get("HELIUS_PYTHON"):
        return [override]
    found += ["python3.12", "python3.13"]
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    for pattern in ("3.12*", "3.13*"):
        found += sorted(glob.glob(f"{pyenv_root}/versions/{pattern}/bin/python3"), reverse=True)
    found += ["/usr/local/bin/python3.12", "/usr/bin/python3.12"]
    if uv := shutil.which("uv"):  # `uv python find` only looks; it never downloads
        try:
            out = subprocess.run(  # noqa: S603  argv list, no shell: uv from shutil.which
                [uv, "python", "find", ">=3.12"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            found.append(out)
    return found


def _works(candidate: str) -> str | None:
    """The absolute path of `candidate` if it runs and is new enough (a pyenv shim for a
    version that is not activated is on PATH but fails when run)."""
    path = shutil.which(candidate)
    if path is None:
        return None
    check = f"import sys; sys.exit(0 if sys.version_info[:2] >= {MIN_PYTHON!r} else 1)"
    try:
        ok = subprocess.run([path, "-c", check], capture_output=True, timeout=20).returncode == 0  # noqa: S603  argv list, no shell: a candidate interpreter, fixed check
    except (OSError, subprocess.SubprocessError):
        return None
    return path if ok else None


def _find_python() -> str:
    for candidate in _python_candidates():
        if path := _works(candidate):
            return path
    print(
        "noxfile: no Python >= 3.12 found (looked at $HELIUS_PYTHON, python3.12/3.13 on PATH, "
        "pyenv's versions, uv's); install one (`pyenv install 3.12`, `uv python install 3.12` "
        "or your distribution's python3.12) or set HELIUS_PYTHON=/path/to/python3.12",
        file=sys.stderr,
    )
    return "3.12"  # nox then fails: error_on_missing_interpreters


PYTHON = _find_python()


def _postgres_bin_dirs() -> list[str]:
    """Debian's postgresql-NN packages put the server binaries off PATH."""
    return sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _which(tool: str, path: str) -> str | None:
    # Debian puts haproxy in /usr/sbin, off a non-root user's PATH (the stack looks there too)
    return shutil.which(tool, path=os.pathsep.join([path, "/usr/sbin", "/usr/local/sbin"]))


def _session_path(session: nox.Session) -> str:
    return str(session.env.get("PATH") or os.environ.get("PATH", ""))


def _put_postgres_on_path(session: nox.Session) -> None:
    path = _session_path(session)
    if all(_which(t, path) for t in POSTGRES_TOOLS):
        return
    for bin_dir in _postgres_bin_dirs():
        if all(Path(bin_dir, t).exists() for t in POSTGRES_TOOLS):
            session.env["PATH"] = os.pathsep.join([path, bin_dir])
            return


def ensure_system_tools(session: nox.Session, *tools: str) -> None:
    """Find `tools` on PATH; install the missing ones with apt-get when root; else fail with
    the one command that installs them."""
    if set(tools) & set(POSTGRES_TOOLS):
        _put_postgres_on_path(session)
    missing = [t for t in tools if not _which(t, _session_path(session))]
    if not missing:
        return
    packages = sorted({DEBIAN_PACKAGES[t] for t in missing})
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    can_install = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    if not can_install:
        session.error(
            f"missing {', '.join(missing)}: install with `sudo {' '.join(command[:3])} "
            f"{' '.join(packages)}` (Debian/Ubuntu), or put them on PATH"
        )
    session.log(f"installing {', '.join(packages)} with apt-get (missing: {', '.join(missing)})")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run(*command, external=True, env=env)
    if set(tools) & set(POSTGRES_TOOLS):
        _put_postgres_on_path(session)
    still = [t for t in tools if not _which(t, _session_path(session))]
    if still:
        session.error(
            f"apt-get installed {', '.join(packages)} but {', '.join(still)} is still not on PATH"
        )


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
    ensure_system_tools(session, *STACK_TOOLS)
    session.install(*HARNESS)
    # one pytest-xdist worker per core and one more: most tests wait on the servers they start
    # (units of work: tests/support/xdist_units.py). Measured on two cores (2026-12-07): 1058
    # tests in 506 s on three workers, 634 s on two. `nox -s tests -- -n 0` runs serially, any
    # -n wins
    own = any(a.startswith(("-n", "--numprocesses")) or a == "no:xdist" for a in session.posargs)
    workers = str((os.cpu_count() or 1) + 1)
    session.run("pytest", *([] if own else ["-n", workers]), *session.posargs)


@nox.session(python=PYTHON, default=False)
def chaos(session: nox.Session) -> None:
    """The chaos suite on the embedded local stack under load -> reports/index.html."""
    ensure_system_tools(session, *STACK_TOOLS)
    session.install(*HARNESS)
    session.run("chaoshelius", "suite", "run", *session.posargs)


@nox.session(python=PYTHON, default=False)
def negative(session: nox.Session) -> None:
    """Negative controls: every experiment must deviate against its known-fragile variant."""
    ensure_system_tools(session, *STACK_TOOLS)
    session.install(*HARNESS)
    # two lanes, each on its own stack: a deviation is still the defect's (a healthy suite in
    # two lanes passes: docs/experiments.md, "Lanes"); `-- --lanes 1` runs them in turn
    session.run("chaoshelius", "suite", "run", "--negative", "--lanes", "2", *session.posargs)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """/predict throughput and latency vs a bare FastAPI endpoint and `mlflow models serve`."""
    ensure_system_tools(session, "wrk")
    session.install(*HARNESS)
    session.run("python", "benchmarks/bench_predict.py", *session.posargs)


# the security session's tools, exact versions (one place; raise them here, deliberately)
SECURITY_TOOLS = ["checkov==3.3.30", "pip-audit==2.10.1", "ruff==0.17.6"]
# every Python tree the S rules cover (per-tree exceptions, with reasons: pyproject.toml)
SECURITY_PYTHON = [
    "chaoshelius", "service", "tests", "benchmarks", "loadtests", "tools", "noxfile.py",
    "experiments/build.py", *sorted(glob.glob("manifests/*.py")),
]  # fmt: skip


@nox.session(python=PYTHON, default=False)
def security(session: nox.Session) -> None:
    """checkov over the manifests, ruff's S (bandit) rules over all Python, pip-audit over deps.

    `nox -s security -- --offline` runs the parts without the network (checkov, the S rules;
    what CI runs) and says that pip-audit was skipped. Other arguments go to manifests/scan.py.
    """
    offline = "--offline" in session.posargs
    scan_args = [a for a in session.posargs if a != "--offline"]
    tools = SECURITY_TOOLS if not offline else [t for t in SECURITY_TOOLS if "pip-audit" not in t]
    session.install(*tools)
    session.run("python", "manifests/scan.py", *scan_args)
    # bandit's checks as ruff's S rules; each finding is fixed or justified on its line (a noqa
    # comment with the rule and a reason), whole-tree exceptions in pyproject.toml with reasons
    session.run("ruff", "check", "--select", "S", *SECURITY_PYTHON)
    if offline:
        session.log("pip-audit skipped: --offline (it needs PyPI's JSON API; run without it)")
        return
    _audit_dependencies(session)


def _audit_verdict() -> Any:
    """tools/audit_verdict.py, loaded by path (the noxfile runs without the project installed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "audit_verdict", Path(__file__).parent / "tools" / "audit_verdict.py"
    )
    assert spec is not None and spec.loader is not None  # noqa: S101  a file we ship
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit_verdict"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _audit_dependencies(session: nox.Session) -> None:
    """pip-audit over what `pip install -e ./service -e .[dev]` installs, in an environment of
    its own (checkov's and pip-audit's packages are not the project's). Fails closed: a
    dependency pip-audit could not look up, or whose answer carried no vulnerability data
    (tools/audit_verdict.py), fails the session: an audit without data is not a pass."""
    tmp = Path(session.create_tmp())
    env_dir = tmp / "audited-env"
    python = env_dir / "bin" / "python"
    if uv := shutil.which("uv"):
        session.run(uv, "venv", "--quiet", "--allow-existing", "--python", PYTHON, str(env_dir),
                    external=True)  # fmt: skip
        session.run(uv, "pip", "install", "--quiet", "--python", str(python), *HARNESS,
                    external=True)  # fmt: skip
    else:
        session.run(PYTHON, "-m", "venv", str(env_dir), external=True)
        session.run(str(python), "-m", "pip", "install", "--quiet", *HARNESS, external=True)
    site_packages = glob.glob(str(env_dir / "lib" / "python3*" / "site-packages"))
    report_path = tmp / "pip-audit.json"
    session.run(
        "pip-audit", "--path", *site_packages, "--skip-editable", "--progress-spinner", "off",
        "--format", "json", "--output", str(report_path), "--timeout", "15",
        success_codes=[0, 1],  # 1: vulnerabilities found, judged below
    )  # fmt: skip
    audit = _audit_verdict()
    try:
        report = json.loads(report_path.read_text())
        verdict = audit.judge(report, audit.probe_vulnerability_data(report))
    except ValueError as exc:
        session.error(f"pip-audit's report is unusable ({exc}): nothing was audited")
    session.log(verdict.summary())
    if verdict.vulnerable:
        session.error("known vulnerabilities:\n  " + "\n  ".join(verdict.vulnerable))
    if not verdict.ok:
        unaudited = list(verdict.unaudited.items())
        names = ", ".join(name for name, _ in unaudited[:8])
        more = f" and {len(unaudited) - 8} more" if len(unaudited) > 8 else ""
        first = unaudited[0][1] if unaudited else "the report lists no dependency"
        session.error(
            f"pip-audit could not audit {len(unaudited)} dependencies ({names}{more}): {first}. "
            "Its vulnerability service is PyPI's per-version JSON API "
            "(/pypi/<name>/<version>/json, key `vulnerabilities`); where that answers 404 or "
            "without the key (a PyPI mirror or proxy) or is unreachable, nothing is audited, "
            "whatever pip-audit prints. Run `nox -s security` where PyPI's JSON API is reachable."
        )


@nox.session(python=PYTHON, default=False)
def report_browser(session: nox.Session) -> None:
    """Render a report in headless Chromium, check it loads and draws, keep a screenshot."""
    ensure_system_tools(session, "chromium")
    session.install(*HARNESS)
    session.run("python", "-m", "chaoshelius.report.browser_check", *session.posargs)
