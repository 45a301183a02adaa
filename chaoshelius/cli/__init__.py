"""`chaoshelius` command line: one group, a sub-group per area.

Each area owns its module (`stack.py`, `suite.py`, `report.py`) and exposes a click group named
`group`; they are attached here and imported lazily so `chaoshelius --help` stays fast.
"""

from __future__ import annotations

import importlib

import click

_SUBCOMMANDS = {
    "stack": ("chaoshelius.cli.stack", "the embedded local stack: up, down, status"),
    "suite": ("chaoshelius.cli.suite", "run the experiment catalogue against a target"),
    "report": ("chaoshelius.cli.report", "build HTML reports, the index and JUnit XML"),
    "load": ("chaoshelius.cli.load", "the client load: measure the stack's capacity"),
    "images": ("chaoshelius.cli.images", "build the images the manifests run (docker/podman)"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _SUBCOMMANDS:
            return None
        module = importlib.import_module(_SUBCOMMANDS[cmd_name][0])
        command: click.Command = module.group
        return command


@click.group(cls=_LazyGroup)
@click.version_option(package_name="chaoshelius")
def main() -> None:
    """Helius resilience harness."""
