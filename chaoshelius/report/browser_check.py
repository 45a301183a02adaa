"""Open a report in headless Chromium, check it loads without JS errors and draws its charts,
and keep a screenshot: `python -m chaoshelius.report.browser_check [REPORT_HTML]`.

Without an argument it checks the newest `reports/runs/*/report.html`; when there is none it
builds one offline from the recorded fixture run `tests/report/fixtures/runs/passed` into
`reports/browser-check/`. The screenshot goes to `reports/screenshot.png` (or `--screenshot`).

How: Debian's `/usr/bin/chromium` run twice, `--dump-dom` then `--screenshot`. The report's own
inline script marks each `svg.chart` with `data-drawn` (from the SVG's real geometry, `getBBox`)
and counts window errors in `data-js-errors`; the dumped DOM shows what the browser did.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from chaoshelius.report.exceptions import ReportError

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_S = 90.0
WIDTH = 1280
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
FIXTURE_RUN = Path("tests/report/fixtures/runs/passed")


class BrowserCheckFailed(ReportError):
    """The page did not load cleanly or its charts were not drawn."""


@dataclass(frozen=True)
class PageCheck:
    charts: int
    drawn: int
    empty: int
    undrawn: tuple[str, ...]
    js_errors: int
    console_errors: tuple[str, ...]
    height: int
    page: str = "run"  # the index draws sparklines, not charts

    @property
    def problems(self) -> list[str]:
        found: list[str] = []
        if self.page != "index" and self.charts == 0:
            found.append("no chart in the page")
        if self.page != "index" and self.drawn == 0:
            found.append("no chart was drawn")
        if self.undrawn:
            found.append(f"charts with neither a drawing nor a no-data message: {self.undrawn}")
        if self.js_errors:
            found.append(f"{self.js_errors} JavaScript error(s) in the page")
        found.extend(f"console: {line}" for line in self.console_errors)
        return found


def chromium_binary() -> str:
    found = (
        os.environ.get("HELIUS_CHROMIUM")
        or shutil.which("chromium")
        or (CHROMIUM if Path(CHROMIUM).exists() else None)
        or shutil.which("google-chrome")  # GitHub's Ubuntu runners ship Chrome, not Chromium
    )
    if found is None:
        raise BrowserCheckFailed(
            "Chromium not found: install Debian's `chromium` package (or set HELIUS_CHROMIUM)"
        )
    return found


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    cmd = [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", *args]
    proc = subprocess.Popen(  # noqa: S603  argv list, no shell: Chromium, fixed flags
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        os.killpg(proc.pid, signal.SIGKILL)  # our own session: chromium and its helpers
        proc.communicate()
        raise BrowserCheckFailed(f"Chromium did not finish within {TIMEOUT_S} s") from exc
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def inspect_dom(dom: str, stderr: str = "") -> PageCheck:
    """Read what the page's script recorded in the dumped DOM (and console errors in stderr)."""
    html_tag = re.search(r"<html[^>]*>", dom)
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', html_tag.group(0))) if html_tag else {}
    if attrs.get("data-ready") != "yes":
        raise BrowserCheckFailed("the page's script did not run to the end (no data-ready)")
    svgs = re.findall(r"<svg[^>]*class=\"chart[^\"]*\"[^>]*>", dom)
    states = [dict(re.findall(r'([\w-]+)="([^"]*)"', tag)) for tag in svgs]
    undrawn = tuple(s.get("data-chart", "?") for s in states if s.get("data-drawn") == "no")
    console = tuple(
        line.strip()
        for line in stderr.splitlines()
        if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)
    )
    return PageCheck(
        charts=len(states),
        drawn=sum(1 for s in states if s.get("data-drawn") == "yes"),
        empty=sum(1 for s in states if s.get("data-drawn") == "empty"),
        undrawn=undrawn,
        js_errors=int(attrs.get("data-js-errors") or 0),
        console_errors=console,
        height=int(attrs.get("data-height") or 2400),
        page=attrs.get("data-page") or "run",
    )


def check_report(report: Path, screenshot: Path) -> PageCheck:
    """Load `report` in headless Chromium; raise BrowserCheckFailed with every problem found."""
    url = report.resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="helius-chromium-") as tmp:
        dumped = _run([f"--window-size={WIDTH},900", "--dump-dom", url], Path(tmp) / "dom")
        if dumped.returncode != 0 or "<html" not in dumped.stdout:
            raise BrowserCheckFailed(
                f"Chromium could not load {report} (exit {dumped.returncode}): "
                f"{dumped.stderr.strip()[-800:]}"
            )
        check = inspect_dom(dumped.stdout, dumped.stderr)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        height = min(max(check.height, 800), 16000)
        shot = _run(
            [f"--screenshot={screenshot.resolve()}", f"--window-size={WIDTH},{height}", url],
            Path(tmp) / "shot",
        )
        if shot.returncode != 0 or not screenshot.is_file():
            raise BrowserCheckFailed(f"Chromium made no screenshot: {shot.stderr.strip()[-800:]}")
    if check.problems:
        raise BrowserCheckFailed("; ".join(check.problems))
    return check


def default_report(reports_dir: Path) -> Path:
    runs = sorted(reports_dir.glob("runs/*/report.html"), key=lambda p: p.stat().st_mtime)
    if runs:
        return runs[-1]
    if not FIXTURE_RUN.is_dir():
        raise BrowserCheckFailed(
            f"no report under {reports_dir}/runs and no fixture run at {FIXTURE_RUN}"
        )
    from chaoshelius.report.build import build_run_report

    target = reports_dir / "browser-check" / FIXTURE_RUN.name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(FIXTURE_RUN, target)
    build_run_report(target, None, offline=True)
    return target / "report.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("report", nargs="?", type=Path, help="report.html (default: newest)")
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"))
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        report = args.report or default_report(args.reports_dir)
        screenshot = args.screenshot or args.reports_dir / "screenshot.png"
        check = check_report(report, screenshot)
    except BrowserCheckFailed as exc:
        print(f"browser check FAILED: {exc}", file=sys.stderr)
        return 1
    print(
        f"browser check OK: {report}: {check.drawn} chart(s) drawn, {check.empty} without data,"
        f" no JS error; screenshot {screenshot}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
