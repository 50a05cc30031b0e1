"""Collect finished run directories and compare configurations over seeds.

A run directory is any folder holding `metrics.json` and `config.yaml` (what `embedlab-train` and `embedlab-eval`
write). A configuration is named by the Hydra overrides that differ between the runs compared (from
`.hydra/overrides.yaml`), seed excluded, so a sweep `-m loss.focal_infonce.gamma=0,1,2 seed=0,1,2` groups into three
rows of three seeds each.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from embedlab.errors import DataFormatError, EmbedlabError

SEED_KEYS = ("seed",)  # overrides that repeat a configuration rather than change it
RUN_KEYS = ("resume", "checkpoint")  # how a run was carried out (resumed, checkpointed), not what it computed


@dataclass(frozen=True)
class Run:
    path: Path
    overrides: tuple[str, ...]  # Hydra command-line overrides, as typed
    seed: int | None
    metrics: dict[str, dict[str, float]]  # task -> metric -> value
    choices: dict[str, str]  # config group -> the option used (Hydra's runtime choices), for default groups


def _read_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataFormatError(path, mark.line + 1 if mark else None, None, "not valid YAML") from None


def load_run(path: Path) -> Run:
    path = Path(path)
    try:
        metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(path / "metrics.json", e.lineno, None, f"not valid JSON ({e.msg})") from None
    config = _read_yaml(path / "config.yaml") or {}
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = tuple(map(_spelled, _read_yaml(overrides_file) or ())) if overrides_file.exists() else ()
    hydra_file = path / ".hydra" / "hydra.yaml"
    hydra_cfg = (_read_yaml(hydra_file) or {}) if hydra_file.exists() else {}
    choices = (hydra_cfg.get("hydra", {}).get("runtime", {}) or {}).get("choices") or {}
    return Run(path, overrides, config.get("seed"), metrics, {k: str(v) for k, v in choices.items()})


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run directory at or below `paths`, sorted by path. Folders of one run's other systems (`before/`,
    `teacher/`, ...) have no config.yaml and are not runs."""
    found: list[Run] = []
    for root in map(Path, paths):
        if not root.exists():
            raise EmbedlabError(f"{root}: no such run or sweep directory")
        found += [load_run(p.parent) for p in sorted(root.rglob("config.yaml")) if (p.parent / "metrics.json").exists()]
    if not found:
        raise EmbedlabError(f"no run directories (metrics.json + config.yaml) under {', '.join(map(str, paths))}")
    return sorted(found, key=lambda r: str(r.path))


def _spelled(override: str) -> str:
    """One spelling per value: a multirun records `export=False` where a single run records `export=false`."""
    key, sep, value = override.partition("=")
    return f"{key}{sep}{value.lower()}" if value in ("True", "False") else override


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _repeats(override: str) -> bool:
    """A seed, resume or checkpoint override: the same configuration run again or carried out differently."""
    return _key(override) in SEED_KEYS or _key(override).split(".")[0] in RUN_KEYS


def configuration_names(runs: Sequence[Run]) -> list[str]:
    """Per run: its overrides that are not shared by every run, seed, resume and checkpoint excluded ("(default)"
    when none). A config group that some runs override is named in the others too, by the option they used (e.g.
    `loss=infonce`)."""
    shared = set.intersection(*(set(r.overrides) for r in runs)) if runs else set()
    varied = [[o for o in r.overrides if o not in shared and not _repeats(o)] for r in runs]
    groups = list(dict.fromkeys(_key(o) for v in varied for o in v))
    names = []
    for run, own in zip(runs, varied, strict=True):
        present = {_key(o) for o in own}
        implied = [f"{g}={run.choices[g]}" for g in groups if g not in present and g in run.choices]
        names.append(" ".join(implied + own) or "(default)")
    return names


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Configuration name -> its runs (one per seed), configurations in first-seen order."""
    groups: dict[str, list[Run]] = {}
    for name, run in zip(configuration_names(runs), runs, strict=True):
        groups.setdefault(name, []).append(run)
    return groups


def varied_knobs(runs: Sequence[Run]) -> dict[str, list[str]]:
    """What a set of runs varies: override key -> its distinct values (seed included), first-seen order. Keys set
    identically in every run are not listed; a run that does not set a key shows the config group option it used
    (Hydra's choices), else "(default)"."""
    keys = list(dict.fromkeys(_key(o) for r in runs for o in r.overrides))
    out = {}
    for key in keys:
        values = [
            next((o.split("=", 1)[-1] for o in r.overrides if _key(o) == key), r.choices.get(key, "(default)"))
            for r in runs
        ]
        distinct = list(dict.fromkeys(values))
        if len(distinct) > 1:
            out[key] = distinct
    return out


def summarize(runs: Sequence[Run], task: str, metric: str) -> list[dict]:
    """One row per configuration (first-seen order): n, seeds, mean, sample std (None for one run), values."""
    rows = []
    for name, members in group_runs(runs).items():
        values = [m.metrics.get(task, {}).get(metric) for m in members]
        missing = [str(m.path) for m, v in zip(members, values, strict=True) if v is None]
        if missing:
            raise DataFormatError(Path(missing[0]) / "metrics.json", None, f"{task}.{metric}", "missing")
        rows.append(
            {
                "configuration": name,
                "n": len(values),
                "seeds": [m.seed for m in members],
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else None,
                "values": values,
            }
        )
    return rows
