"""The negative-control catalogue (`controls.yml`), typed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from chaoshelius.exceptions import HeliusError

__all__ = ["NegativeControl", "load_controls", "profile_path"]

_HERE = Path(__file__).parent
CONTROLS_FILE = _HERE / "controls.yml"
PROFILES_DIR = _HERE / "profiles"


@dataclass(frozen=True)
class NegativeControl:
    experiment: str  # file stem in experiments/
    profile: str  # file stem in profiles/
    probe: str  # the hypothesis probe that must fail
    why: str

    @property
    def profile_file(self) -> Path:
        return profile_path(self.profile)


def profile_path(name: str) -> Path:
    """The stack profile file of a negative control."""
    path = PROFILES_DIR / f"{name}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yml"))
        raise HeliusError(f"unknown negative-control profile {name!r}; known: {known}")
    return path


def load_controls(path: Path = CONTROLS_FILE) -> dict[str, NegativeControl]:
    """Experiment name -> its negative control."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise HeliusError(f"cannot read negative controls {path}: {exc}") from exc
    controls = {}
    for experiment, entry in data.items():
        try:
            controls[experiment] = NegativeControl(
                experiment=experiment,
                profile=str(entry["profile"]),
                probe=str(entry["probe"]),
                why=str(entry.get("why", "")),
            )
        except (KeyError, TypeError) as exc:
            raise HeliusError(f"{path}: entry {experiment!r} needs profile and probe") from exc
    return controls
