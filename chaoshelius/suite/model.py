"""The suite's vocabulary: a planned run, the suite's options and its result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chaoshelius.exceptions import HeliusError
from chaoshelius.report.model import RunSummary, Verdict
from chaoshelius.stack.ports import DEFAULT_BASE_PORT

__all__ = ["INTERRUPTED_EXIT", "PlannedRun", "SuiteError", "SuiteOptions", "SuiteResult"]

INTERRUPTED_EXIT = 130


class SuiteError(HeliusError):
    """The suite cannot start (no experiments, unknown name, `chaos` not installed...)."""


@dataclass(frozen=True)
class PlannedRun:
    experiment: Path
    profile: Path | None = None  # stack profile; None = the shipped default
    expected: Verdict = Verdict.PASSED
    expected_probes: tuple[str, ...] = ()  # negative controls: probes that must fail
    repeat: int = 0  # 1..N when the suite runs each experiment N times (0: once)
    # run while no other lane runs (chaoshelius.suite.lanes): a negative control whose verdict
    # rests on latency, which another lane's load on the same cores moves
    solo: bool = False

    @property
    def key(self) -> str:
        return self.experiment.stem

    @property
    def variant(self) -> str | None:
        return None if self.profile is None else f"negative:{self.profile.stem}"

    def run_id(self, suite_id: str) -> str:
        suffix = "" if self.profile is None else f"--{self.profile.stem}"
        again = f"-r{self.repeat:02d}" if self.repeat else ""
        return f"{suite_id}-{self.key}{suffix}{again}"


@dataclass(frozen=True)
class SuiteOptions:
    reports_dir: Path = Path("reports")
    state_dir: Path = Path(".helius") / "stack"
    base_port: int = DEFAULT_BASE_PORT
    keep_stack: bool = False
    echo: Callable[[str], None] = print
    chaos_args: tuple[str, ...] = ()  # passed to every `chaos run` (see chaos_run_args)
    progress: bool = False  # phase lines as runs go (a terminal); else one line per run
    safeguards: bool = True  # off for negative controls whatever this says
    # local | kubernetes; None: what the runs' configuration says (--var target=..., a var
    # file, HELIUS_TARGET), else local
    target: str | None = None
    # runs at once, each lane on its own local stack (chaoshelius.suite.lanes); 1: in turn
    lanes: int = 1


@dataclass
class SuiteResult:
    suite_id: str
    summaries: list[RunSummary] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    index_html: Path | None = None
    junit_xml: Path | None = None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return INTERRUPTED_EXIT
        return 0 if all(s.as_expected for s in self.summaries) else 1
