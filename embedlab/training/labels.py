"""W&B labels of one job of a Hydra multirun: the runs of a sweep share a group (the sweep directory) and carry the
knobs the sweep varies (those given several values on the command line) as config and as tags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

MAX_TAG = 64  # W&B rejects longer tags


@dataclass(frozen=True)
class SweepLabels:
    group: str | None = None  # the sweep directory; None outside a multirun
    knobs: dict[str, str] = field(default_factory=dict)  # varied knob -> this job's value

    @property
    def tags(self) -> list[str]:
        return [f"{k}={v}"[:MAX_TAG] for k, v in self.knobs.items()]


def swept_knobs(sweep_overrides: list[str], job_overrides: list[str]) -> dict[str, str]:
    """Knobs the sweep varies (`a=1,2`, `range(3)`, `choice(...)`) -> their value in this job's overrides."""
    parser = OverridesParser.create()
    swept = [o.key_or_group for o in parser.parse_overrides(sweep_overrides) if o.is_sweep_override()]
    job = {o.key_or_group: o.input_line.split("=", 1)[1] for o in parser.parse_overrides(job_overrides)}
    return {key: job[key] for key in swept if key in job}


def job_labels(multirun: bool, sweep_dir: str | Path, job_overrides: list[str]) -> SweepLabels:
    """Labels from the sweep directory's multirun.yaml (written by Hydra's sweeper before the jobs start); without
    it (another sweeper) every override of the job but Hydra's own is taken as a knob."""
    if not multirun:
        return SweepLabels()
    manifest = Path(sweep_dir) / "multirun.yaml"
    if manifest.exists():
        saved = yaml.safe_load(manifest.read_text(encoding="utf-8")) or {}
        sweep_overrides = list(saved.get("hydra", {}).get("overrides", {}).get("task") or [])
        knobs = swept_knobs(sweep_overrides, job_overrides)
    else:
        knobs = {k: v for k, v in (o.split("=", 1) for o in job_overrides if "=" in o) if not k.startswith("hydra.")}
    return SweepLabels(str(sweep_dir), knobs)


def current_labels() -> SweepLabels:
    """Labels of the running Hydra job (empty when not run by Hydra, e.g. from a test or a notebook)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return SweepLabels()
    hc = HydraConfig.get()
    return job_labels(hc.mode == RunMode.MULTIRUN, hc.sweep.dir, list(hc.overrides.task))
