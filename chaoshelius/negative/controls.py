"""The negative-control catalogue (`controls.yml`), typed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from chaoshelius.exceptions import HeliusError
from chaoshelius.stack.config import PROFILES_DIR

__all__ = ["LATENCY_FUNCTIONS", "NegativeControl", "load_controls", "profile_path"]

# probe functions whose verdict rests on latency: a control expected to fail one of them runs
# alone (`suite run --lanes`), since another lane's load on the same cores moves latency too
LATENCY_FUNCTIONS = frozenset({"slo.probes.latency_p99_ratio", "slo.probes.pods_prediction_slo"})

_HERE = Path(__file__).parent
CONTROLS_FILE = _HERE / "controls.yml"


@dataclass(frozen=True)
class NegativeControl:
    experiment: str  # file stem in experiments/
    profile: str  # file stem in profiles/
    probes: tuple[str, ...]  # hypothesis probes that must be among the failing ones
    why: str

    @property
    def profile_file(self) -> Path:
        return profile_path(self.profile)

    @property
    def probe(self) -> str:
        """The probe the control is named after (the first of `probes`)."""
        return self.probes[0]


def profile_path(name: str) -> Path:
    """The stack profile file of a negative control."""
    path = PROFILES_DIR / f"{name}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yml"))
        raise HeliusError(f"unknown negative-control profile {name!r}; known: {known}")
    return path


def load_controls(path: Path = CONTROLS_FILE) -> list[NegativeControl]:
    """Every negative control, in file order (an experiment may have several)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError) as exc:
        raise HeliusError(f"cannot read negative controls {path}: {exc}") from exc
    if not isinstance(data, list):
        raise HeliusError(f"{path}: expected a list of controls")
    controls = []
    for number, entry in enumerate(data, 1):
        try:
            probes = entry["probes"]
            if isinstance(probes, str) or not probes:
                raise TypeError("probes must be a non-empty list")
            controls.append(
                NegativeControl(
                    experiment=str(entry["experiment"]),
                    profile=str(entry["profile"]),
                    probes=tuple(str(p) for p in probes),
                    why=str(entry.get("why", "")),
                )
            )
        except (KeyError, TypeError) as exc:
            raise HeliusError(
                f"{path}: control #{number} needs experiment, profile and probes ({exc})"
            ) from exc
    return controls
