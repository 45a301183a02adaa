"""Chaos Toolkit controls of the harness, declared in an experiment's `controls` block (or
given with `chaos run --control-file`):

- `chaoshelius.controls.journal`: copies the journal into the run directory
  (`helius_run_dir`) when the experiment ends, so `chaoshelius report build <run_dir>` finds
  it after a plain `chaos run experiments/x.json`;
- `chaoshelius.controls.safeguards`: stop conditions: aborts the method (the rollbacks still
  play) when what the clients see passes a limit, and says so in `safeguard.json`.
"""
