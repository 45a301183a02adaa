"""Units of work for `pytest -n N` (pytest-xdist; `nox -s tests` passes one per core, plus one).

A unit is a whole test module, so its module fixtures are set up once and its tests run in
file order as they do serially, or, for the modules that use one of `SHARED_SERVERS` (session
fixtures booting real servers), all of those modules together: one worker boots the server
once (two workers would boot two local stacks on the same fixed ports). Units with a `slow`
test are dealt out first, so the longest ones start at once and the short ones fill in.

Only the workers know which fixtures a test uses; the controller, which deals the units out,
does not collect. So each worker writes the module -> unit table to a file the controller
names (in `workerinput`) before it reports its collection, and the controller's scheduler
(a LoadScopeScheduling, as `--dist loadfile` is) reads it when every worker has reported.
xdist's own `--dist loadgroup` does this through the node ids, which pytest >= 9.2 no longer
lets it change (pytest-dev/pytest-xdist#1386): grouping would silently not happen.

`-n N` with any `--dist` but `each` gets these units; `-n 0` or no `-n` runs serially.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

SHARED_SERVERS = {"session_stack": "local-stack", "mlflow_handle": "reco-postgres-mlflow"}
INPUT_KEY = "helius_units_file"
OWN_DISTS = ("load", "loadscope", "loadfile", "loadgroup")


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def units_of(items: list[pytest.Item]) -> dict[str, Any]:
    """{"unit": {module: unit name}, "slow": [unit names with a `slow` test]}."""
    unit: dict[str, str] = {}
    for item in items:
        module = _module(item.nodeid)
        unit.setdefault(module, module)
        for fixture, name in SHARED_SERVERS.items():
            if fixture in getattr(item, "fixturenames", ()):
                unit[module] = name
    slow = sorted({unit[_module(i.nodeid)] for i in items if i.get_closest_marker("slow")})
    return {"unit": unit, "slow": slow}


class UnitScheduling(LoadScopeScheduling):
    """Deals out the workers' units (see the module docstring), in collection order."""

    def __init__(self, config: pytest.Config, log: Any, units_file: Path) -> None:
        super().__init__(config, log)
        self.units_file = units_file
        self.units: dict[str, str] | None = None
        # the workers put the slow units first; keep that order (not xdist's by test count)
        config.option.loadscopereorder = False

    def _split_scope(self, nodeid: str) -> str:
        if self.units is None:  # first asked in schedule(): every worker has collected
            self.units = json.loads(self.units_file.read_text())["unit"]
        module = _module(nodeid)
        return self.units.get(module, module)


class XdistUnits:
    """Registered by tests/conftest.py when pytest-xdist is loaded (controller and workers)."""

    def __init__(self) -> None:
        self.tmp: Path | None = None

    # -- controller ---------------------------------------------------------------------------
    def _units_file(self) -> Path:
        if self.tmp is None:
            self.tmp = Path(tempfile.mkdtemp(prefix="helius-xdist-units-"))
        return self.tmp / "units.json"

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[INPUT_KEY] = str(self._units_file())

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") not in OWN_DISTS:
            return None  # `--dist each` / `worksteal`: xdist's own scheduler
        return UnitScheduling(config, log, self._units_file())

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- worker --------------------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)  # the order every other hook left
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        workerinput = getattr(config, "workerinput", None)
        if workerinput is None or INPUT_KEY not in workerinput:
            return
        units = units_of(items)
        slow = set(units["slow"])
        # the controller deals the units out in the order of the collection it receives
        items.sort(key=lambda i: units["unit"][_module(i.nodeid)] not in slow)
        target = Path(workerinput[INPUT_KEY])
        partial = target.with_name(f"{target.name}.{os.getpid()}")
        partial.write_text(json.dumps(units))
        partial.replace(target)  # the workers write the same table; each write is whole
