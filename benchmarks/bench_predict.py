"""`/predict` throughput and latency of one recommender process, against the framework's
ceiling and against `mlflow models serve` of the same model, in one run with one load client.

    python benchmarks/bench_predict.py [--duration 6] [--concurrency 16] [--rounds 5]
        [--warmup 3] [--model trained|baseline] [--port-base 31400] [--json OUT]
        [--service-src OTHER/service/src]

Targets, each one uvicorn process on 127.0.0.1 with the same settings (`--no-access-log`,
`--log-level warning`, uvloop + httptools from uvicorn[standard]):

  service  `uvicorn helius_reco.main:create_app --factory`, serving the model from its on-disk
           cache (as after a restart with MLflow down; no MLflow needed) -> POST /predict
  bare     (a) `benchmarks/bare_app.py`: FastAPI returning a constant list -> POST /predict
  mlflow   (b) `mlflow models serve --env-manager local` of an MLflow pyfunc wrapping the same
           artifact and the same `RecoModel.recommend` (`benchmarks/mlflow_pyfunc.py`) ->
           POST /invocations {"dataframe_records": [...]}; its uvicorn gets the same settings
           through UVICORN_* environment variables

Load client: wrk (Debian package `wrk`), one thread, a fixed number of keep-alive connections
(closed loop). It is a C event loop that needs a small share of a core, so on a 2-core machine
the server process, not the client, is what saturates; a Python client would take a core of
its own and cap every target near the same figure. Requests cycle over the data set's users
(one in ten unknown). Every target is warmed up, then measured in `--rounds` rounds, the
target order rotated each round; the table shows medians over rounds.

Every process started here runs in its own process group and is killed on exit, on an error,
on Ctrl-C and on SIGTERM. Ports come from 31000-31999.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench_procs import (
    CLEANUP_SIGNALS,
    BenchError,
    ProcessGroups,
    exited,
    free_ports,
    interrupt_on_signals,
)

HERE = Path(__file__).resolve().parent
LUA_SCRIPT = HERE / "predict.lua"
PYFUNC_CODE = HERE / "mlflow_pyfunc.py"
PORT_RANGE = range(31000, 32000)
UVICORN_FLAGS = ["--host", "127.0.0.1", "--no-access-log", "--log-level", "warning"]
K = 10
UNKNOWN_USERS = 200  # ids x00000.. the model has never seen
THROUGHPUT_TARGET_BARE = 0.7  # service / bare FastAPI
THROUGHPUT_TARGET_MLFLOW = 3.0  # service / mlflow models serve


@dataclass
class Target:
    name: str
    label: str
    path: str
    body_kind: str  # "predict" or "invocations" (see predict.lua)
    argv: list[str]
    env: dict[str, str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class RoundResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_detail: dict[str, int]
    cpu_us_per_request: float | None  # the target's CPU time (all its processes) / requests


@dataclass
class Summary:
    name: str
    label: str
    rounds: list[RoundResult] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return float(statistics.median(getattr(r, attribute) for r in self.rounds))


# -- the model, for the service (cache dir) and for MLflow (pyfunc dir) ------------------------
def prepare_model(kind: str, work: Path) -> tuple[Path, Path]:
    """Write the artifact as the service's cache and as an MLflow pyfunc model directory."""
    from helius_reco.lifecycle.cache import ModelCache
    from helius_reco.model.artifact import ARTIFACT_FILE, encode
    from helius_reco.model.data import generate
    from helius_reco.model.training import fit, fit_baseline

    data = generate()
    model = fit(data) if kind == "trained" else fit_baseline(data)
    artifact = encode(model)
    cache_dir = work / "service-cache"
    ModelCache(cache_dir).save(artifact, f"bench-{kind}")
    artifact_path = work / ARTIFACT_FILE
    artifact_path.write_bytes(artifact)

    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    # what a user would log: a signature (MLflow then checks the input's columns and types)
    signature = ModelSignature(inputs=Schema([ColSpec("string", "user_id"), ColSpec("long", "k")]))
    pyfunc_dir = work / "mlflow-model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no input example", "no type hints"
        mlflow.pyfunc.save_model(
            path=str(pyfunc_dir),
            python_model=str(PYFUNC_CODE),  # models from code: nothing is pickled
            artifacts={"reco": str(artifact_path)},
            signature=signature,
            pip_requirements=["mlflow-skinny", "helius-reco"],  # no dependency inference run
        )
    return cache_dir, pyfunc_dir


def build_targets(
    cache_dir: Path, pyfunc_dir: Path, ports: list[int], service_src: Path | None
) -> list[Target]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("HELIUS_", "UVICORN_"))}
    # `mlflow models serve` runs `exec uvicorn ...` through a shell: it must find our uvicorn
    base_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base_env.get('PATH', '')}"
    service_env = base_env | {
        "HELIUS_CACHE_DIR": str(cache_dir),  # no tracking URI: serve the cache, never call out
        "HELIUS_LOG_LEVEL": "WARNING",
    }
    if service_src is not None:  # another helius_reco ahead of the installed one
        service_env["PYTHONPATH"] = os.pathsep.join(
            [str(service_src.resolve()), *filter(None, [base_env.get("PYTHONPATH")])]
        )
    mlflow_env = base_env | {"UVICORN_ACCESS_LOG": "false", "UVICORN_LOG_LEVEL": "warning"}
    py = sys.executable
    return [
        Target(
            "service",
            "helius-reco service",
            "/predict",
            "predict",
            [py, "-m", "uvicorn", "helius_reco.main:create_app", "--factory", "--port"],
            service_env,
            ports[0],
        ),
        Target(
            "bare",
            "(a) bare FastAPI, constant list",
            "/predict",
            "predict",
            [py, "-m", "uvicorn", "bare_app:create_app", "--factory", "--app-dir", str(HERE)]
            + ["--port"],
            base_env,
            ports[1],
        ),
        Target(
            "mlflow",
            "(b) mlflow models serve (pyfunc)",
            "/invocations",
            "invocations",
            [py, "-m", "mlflow", "models", "serve", "-m", str(pyfunc_dir)]
            + ["--env-manager", "local", "-h", "127.0.0.1", "-p"],
            mlflow_env,
            ports[2],
        ),
    ]


def start_targets(targets: list[Target], groups: ProcessGroups, work: Path) -> None:
    for target in targets:
        argv = [*target.argv, str(target.port)]
        if target.name != "mlflow":
            argv += UVICORN_FLAGS
        target.log = work / f"{target.name}.log"
        target.process = groups.start(argv, env=target.env, log=target.log, cwd=work)


def _post(target: Target, user: str, timeout: float = 5.0) -> Any:
    record = {"user_id": user, "k": K}
    body = {"dataframe_records": [record]} if target.body_kind == "invocations" else record
    request = urllib.request.Request(  # noqa: S310  http URL of a server this benchmark started
        target.url + target.path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310  the same local http URL
        return json.load(response)


def wait_ready(targets: list[Target], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(targets)
    while pending:
        for target in list(pending):
            assert target.process is not None  # noqa: S101  narrows the type for mypy
            if exited(target.process):
                raise BenchError(f"{target.name} exited before serving:\n" + _tail(target.log))
            try:
                _post(target, "u0000", timeout=2.0)
            except (OSError, urllib.error.URLError, ValueError):
                continue
            pending.remove(target)
        if pending and time.monotonic() > deadline:
            names = ", ".join(t.name for t in pending)
            raise BenchError(
                f"not serving after {timeout:.0f} s: {names}\n" + _tail(pending[0].log)
            )
        if pending:
            time.sleep(0.25)


def check_answers(targets: dict[str, Target]) -> None:
    """Service and MLflow rank the same items for the same users; bare gives its K items."""
    users = [f"u{i:04d}" for i in range(0, 2000, 97)] + ["x00001", "x00002"]
    for user in users:
        service = _post(targets["service"], user)["items"]
        mlflow_ = _post(targets["mlflow"], user)["predictions"][0]["items"]
        if len(service) != K or not _same_ranking(service, mlflow_):
            raise BenchError(f"{user}: service {service} != mlflow {mlflow_}: not the same model")
    if len(_post(targets["bare"], "u0000")) != K:
        raise BenchError("bare endpoint does not return its constant list")


def _same_ranking(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Same scores, and the same items except among those tied at the cut-off, which an older
    service (`--service-src`) may pick differently."""
    scores_a = [round(item["score"], 9) for item in a]
    if scores_a != [round(item["score"], 9) for item in b]:
        return False
    cut = scores_a[-1] if scores_a else None
    above_a = [item["item_id"] for item, score in zip(a, scores_a, strict=True) if score != cut]
    above_b = [item["item_id"] for item, score in zip(b, scores_a, strict=True) if score != cut]
    return sorted(above_a) == sorted(above_b)


def _tail(log: Path | None, lines: int = 20) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# -- load ----------------------------------------------------------------------------------
def run_wrk(
    wrk: str, target: Target, *, seconds: float, concurrency: int, groups: ProcessGroups
) -> RoundResult:
    argv = [
        wrk,
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        target.url,
        "--",
        target.path,
        target.body_kind,
        str(K),
        "2000",
        str(UNKNOWN_USERS),
    ]
    assert target.process is not None  # noqa: S101  narrows the type for mypy
    cpu_before = _group_cpu_seconds(target.process.pid)
    process = groups.start(argv, env=dict(os.environ), log=None, cwd=HERE)
    try:
        out, err = process.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk against {target.name} did not finish") from exc
    finally:
        groups.kill(process)
    cpu_after = _group_cpu_seconds(target.process.pid)
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if process.returncode != 0 or line is None:
        raise BenchError(f"wrk failed against {target.name}: {text}{err.decode(errors='replace')}")
    data = json.loads(line.removeprefix("WRK_RESULT "))
    seconds_run = data["duration_us"] / 1e6
    latency = data["latency_us"]
    errors = data["errors"]
    return RoundResult(
        requests=data["requests"],
        seconds=seconds_run,
        rps=data["requests"] / seconds_run,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        errors=sum(errors.values()),
        error_detail=errors,
        cpu_us_per_request=(
            (cpu_after - cpu_before) / data["requests"] * 1e6
            if cpu_before is not None and cpu_after is not None and data["requests"]
            else None
        ),
    )


def _group_cpu_seconds(pgid: int) -> float | None:
    """CPU time (user + system) of the processes in group `pgid`, from /proc (Linux)."""
    total = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on
        if int(fields[2]) == pgid:  # field 5: process group
            total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def _wrk_version(wrk: str) -> str:
    run = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)  # noqa: S603  argv list, no shell: wrk found by shutil.which
    return (run.stdout or run.stderr).splitlines()[0].strip()


# -- report --------------------------------------------------------------------------------
def render(summaries: dict[str, Summary], info: dict[str, Any]) -> tuple[str, dict[str, float]]:
    lines = [
        f"/predict, {info['rounds']} rounds x {info['duration_s']:g} s per target (medians), "
        f"{info['concurrency']} connections, wrk 1 thread; model: {info['model']}; "
        f"service from {info['service_src']}; "
        f"{info['cpus']} CPUs, load average {info['loadavg_before']:.2f} before, "
        f"{info['loadavg_after']:.2f} after",
        "",
        "| target | req/s | p50 ms | p99 ms | server CPU us/req | req/s per round | errors |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for summary in summaries.values():
        per_round = " ".join(f"{r.rps:.0f}" for r in summary.rounds)
        errors = sum(r.errors for r in summary.rounds)
        cpu = _median_cpu(summary)
        lines.append(
            f"| {summary.label} | {summary.median('rps'):.0f} | {summary.median('p50_ms'):.2f} "
            f"| {summary.median('p99_ms'):.2f} | {'-' if cpu is None else f'{cpu:.0f}'} "
            f"| {per_round} | {errors} |"
        )
    service = summaries["service"]
    ratios: dict[str, float] = {}
    for other in ("bare", "mlflow"):
        ratios[f"service_over_{other}"] = service.median("rps") / summaries[other].median("rps")
        paired = [
            s.rps / o.rps for s, o in zip(service.rounds, summaries[other].rounds, strict=True)
        ]
        ratios[f"service_over_{other}_paired"] = statistics.median(paired)
        cpu_service, cpu_other = _median_cpu(service), _median_cpu(summaries[other])
        if cpu_service and cpu_other:
            ratios[f"service_over_{other}_cpu"] = cpu_other / cpu_service
    lines.append("")
    for other, name, target in (
        ("bare", "(a) bare FastAPI", THROUGHPUT_TARGET_BARE),
        ("mlflow", "(b) mlflow models serve", THROUGHPUT_TARGET_MLFLOW),
    ):
        ratio = ratios[f"service_over_{other}"]
        cpu_ratio = ratios.get(f"service_over_{other}_cpu")
        lines.append(
            f"service / {name} throughput: {ratio:.2f} (target >= {target:g}: "
            f"{'met' if ratio >= target else 'NOT met'}); median of per-round ratios "
            f"{ratios[f'service_over_{other}_paired']:.2f}"
            + ("" if cpu_ratio is None else f"; by server CPU per request {cpu_ratio:.2f}")
        )
    return "\n".join(lines), ratios


def _median_cpu(summary: Summary) -> float | None:
    values = [r.cpu_us_per_request for r in summary.rounds if r.cpu_us_per_request is not None]
    return statistics.median(values) if values else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per target per round")
    parser.add_argument("--concurrency", type=int, default=16, help="open connections")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds per target, discarded")
    parser.add_argument("--model", choices=["trained", "baseline"], default="trained")
    parser.add_argument("--port-base", type=int, default=31400, help="first port tried (31000+)")
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    parser.add_argument(
        "--service-src",
        type=Path,
        help="serve helius_reco from this src/ directory instead (e.g. an older commit's "
        "service/src, for before/after figures)",
    )
    args = parser.parse_args(argv)
    if args.port_base not in PORT_RANGE:
        parser.error(f"--port-base must be in {PORT_RANGE.start}..{PORT_RANGE.stop - 1}")
    if args.duration <= 0 or args.rounds < 1 or args.concurrency < 1 or args.warmup < 0:
        parser.error("--duration, --rounds and --concurrency must be positive")
    wrk = shutil.which("wrk")
    if wrk is None:
        print(
            "error: wrk not found; install it (Debian/Ubuntu: apt-get install wrk)", file=sys.stderr
        )
        return 2

    groups = ProcessGroups()
    with tempfile.TemporaryDirectory(prefix="helius-bench-") as tmp:
        try:
            with interrupt_on_signals():
                return _run(args, wrk, groups, Path(tmp))
        except KeyboardInterrupt:
            print("\ninterrupted; stopping the processes started", file=sys.stderr)
            return 130
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            # a second Ctrl-C or SIGTERM must not cut the cleanup short
            previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in CLEANUP_SIGNALS}
            groups.kill_all()
            for sig, old in previous.items():
                signal.signal(sig, old)


def _run(args: argparse.Namespace, wrk: str, groups: ProcessGroups, work: Path) -> int:
    started = time.monotonic()
    loadavg_before = os.getloadavg()[0]
    print(f"preparing the {args.model} model and its MLflow pyfunc copy ...", flush=True)
    cache_dir, pyfunc_dir = prepare_model(args.model, work)
    targets = build_targets(
        cache_dir, pyfunc_dir, free_ports(args.port_base, 3, PORT_RANGE.stop), args.service_src
    )
    start_targets(targets, groups, work)
    print("starting " + ", ".join(f"{t.name} :{t.port}" for t in targets), flush=True)
    wait_ready(targets)
    check_answers({t.name: t for t in targets})
    print(f"all three serving the same recommendations after {time.monotonic() - started:.0f} s")
    for target in targets:
        if args.warmup:
            run_wrk(wrk, target, seconds=args.warmup, concurrency=args.concurrency, groups=groups)
    summaries = {t.name: Summary(t.name, t.label) for t in targets}
    for index in range(args.rounds):
        order = targets[index % len(targets) :] + targets[: index % len(targets)]
        for target in order:
            result = run_wrk(
                wrk, target, seconds=args.duration, concurrency=args.concurrency, groups=groups
            )
            summaries[target.name].rounds.append(result)
            print(
                f"round {index + 1}/{args.rounds} {target.name:8s} {result.rps:8.0f} req/s "
                f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                f"errors {result.errors}",
                flush=True,
            )
    groups.kill_all()
    info = {
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "concurrency": args.concurrency,
        "model": args.model,
        "service_src": str(args.service_src) if args.service_src else "installed",
        "wrk": _wrk_version(wrk),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_before": loadavg_before,
        "loadavg_after": os.getloadavg()[0],
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    table, ratios = render(summaries, info)
    print()
    print(table)
    if args.json:
        payload = {
            "info": info,
            "ratios": ratios,
            "targets": {name: asdict(summary) for name, summary in summaries.items()},
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    if any(r.errors for s in summaries.values() for r in s.rounds):
        print("error: some requests failed (see the errors column)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
