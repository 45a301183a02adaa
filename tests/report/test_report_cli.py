"""`chaoshelius report build|index` through click."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from chaoshelius.cli import main


def test_build_and_index_commands(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("deviated")
    runner = CliRunner()
    built = runner.invoke(main, ["report", "build", str(run_dir), "--offline"])
    assert built.exit_code == 0, built.output
    assert "deviated" in built.output and (run_dir / "report.html").is_file()
    reports = run_dir.parents[1]
    index = runner.invoke(main, ["report", "index", str(reports)])
    assert index.exit_code == 0, index.output
    assert "1 not as expected" in index.output
    strict = runner.invoke(main, ["report", "index", str(reports), "--fail-on-unexpected"])
    assert strict.exit_code == 1
    assert (reports / "index.html").is_file() and (reports / "junit.xml").is_file()


def test_build_warns_when_prometheus_is_unreachable(run_copy: Callable[..., Path]) -> None:
    run_dir = run_copy("interrupted")
    (run_dir / "series.json").unlink()
    result = CliRunner().invoke(
        main,
        [
            "report",
            "build",
            str(run_dir),
            "--prometheus-url",
            "http://127.0.0.1:9",
            "--timeout",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "interrupted" in result.output and "unreachable" in result.output
