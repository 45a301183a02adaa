"""`stack up --cpus` (chaoshelius.stack.cpus): the CPU-list syntax, and the pinning inherited
by what a pinned process starts (real child processes)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chaoshelius.stack import cpus
from chaoshelius.stack.errors import StackError


def test_a_cpu_list_reads_like_taskset_and_bad_ones_say_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cpus, "available", lambda: (0, 1, 2, 3))
    assert cpus.parse("0-2") == frozenset({0, 1, 2})
    assert cpus.parse("3, 0") == frozenset({0, 3})
    assert cpus.describe({0, 1, 2, 3}) == "0-3"
    assert cpus.describe({3, 0, 1}) == "0-1,3"
    assert cpus.parse(cpus.describe({0, 2, 3})) == frozenset({0, 2, 3})
    for bad, says in [
        ("x", "expected CPU numbers"),
        ("2-1", "not a CPU range"),
        ("", "no CPU named"),
        ("7", r"CPU\(s\) \[7\] not available"),
        ("0," * 200, "at most"),
    ]:
        with pytest.raises(StackError, match=says):
            cpus.parse(bad)


@pytest.mark.skipif(not cpus.can_pin(), reason="sched_setaffinity is Linux-only")
def test_a_pinned_process_and_what_it_starts_later_run_on_its_cpus() -> None:
    """A process pinned right after it starts, and the child it starts later, run there."""
    mine = frozenset({cpus.available()[-1]})
    script = (
        "import os, subprocess, sys, time; time.sleep(0.5); "
        "print(sorted(os.sched_getaffinity(0))); sys.stdout.flush(); "
        "subprocess.run([sys.executable, '-c', "
        "'import os; print(sorted(os.sched_getaffinity(0)))'])"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    cpus.pin(process.pid, mine)
    out, _ = process.communicate(timeout=30)
    assert out.splitlines() == [str(sorted(mine))] * 2  # it, and the child it started
    cpus.pin(process.pid, mine)  # gone by now: left alone, no error
    assert cpus.affinity_of(process.pid) is None


def test_the_daemon_refuses_a_bad_cpu_list_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "chaoshelius.stack.daemon", "--state-dir", "/nonexistent",
         "--base-port", "20000", "--cpus", "9999"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--cpus '9999': CPU(s) [9999] not available" in result.stderr
