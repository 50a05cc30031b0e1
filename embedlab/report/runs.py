"""Collect finished run directories and compare configurations over seeds.

A run directory is any folder holding `metrics.json` and `config.yaml` (what `embedlab-train` and `embedlab-eval`
write). Runs are one configuration when their resolved configs (config.yaml) are equal but for the seed and the
keys of how a run was carried out (resume, checkpoint, logger) and paths inside the run's own directory, so a
recipe (`experiment=kalm_v2`) and the same settings spelled out group together, and a sweep
`-m loss.focal_infonce.gamma=0,1,2 seed=0,1,2` into three rows of three seeds each. A configuration is *named* by the
Hydra overrides that differ between the runs compared (from `.hydra/overrides.yaml`), as typed.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from embedlab.errors import DataFormatError, EmbedlabError

SEED_KEYS = ("seed",)  # overrides that repeat a configuration rather than change it
RUN_KEYS = ("resume", "checkpoint", "logger")  # how a run was carried out (resumed, checkpointed, logged)
UNSET = "(unset)"
OWN_DIR = "<run dir>"  # what a path inside the run's own directory reads as when configs are compared
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    path: Path
    overrides: tuple[str, ...]  # Hydra command-line overrides, as typed
    seed: int | None
    metrics: dict[str, dict[str, float]]  # task -> metric -> value
    choices: dict[str, str]  # config group -> the option used (Hydra's runtime choices), for default groups
    settings: tuple[tuple[str, str], ...] = ()  # resolved config, flattened, seed and run-only keys left out


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
    runtime = hydra_cfg.get("hydra", {}).get("runtime", {}) or {}
    choices = runtime.get("choices") or {}
    own = [str(path.resolve()), str(runtime.get("output_dir") or ""), str(path)]
    return Run(
        path, overrides, config.get("seed"), metrics, {k: str(v) for k, v in choices.items()}, settings(config, own)
    )


def settings(config: dict, own_dirs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The flattened config that decides what a run computes: seed and run-only keys dropped, the run's own
    directory (e.g. its mined negatives) replaced by OWN_DIR."""
    own = sorted({d.rstrip("/") for d in own_dirs if d and d != "."}, key=len, reverse=True)

    def value(v) -> str:
        text = json.dumps(v, sort_keys=True)
        for d in own:
            text = text.replace(d, OWN_DIR)
        return text

    flat = _flatten(config)
    return tuple(sorted((k, value(v)) for k, v in flat.items() if not _repeats(k)))


def _flatten(node, prefix: str = "") -> dict:
    """Dotted keys -> leaf values (an empty mapping is a leaf: a config group option with no knobs)."""
    if isinstance(node, dict) and node:
        return {k: v for key, sub in node.items() for k, v in _flatten(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every run directory at or below `paths`, sorted by path. Folders of one run's other systems (`before/`,
    `teacher/`, ...) have no config.yaml and are not runs."""
    found: list[Run] = []
    for root in map(Path, paths):
        if not root.exists():
            raise EmbedlabError(f"{root}: no such run or sweep directory")
        found += [load_run(p.parent) for p in sorted(root.rglob("config.yaml")) if (p.parent / "metrics.json").exists()]
        for job in sorted(h.parent for h in root.rglob(".hydra")):  # a Hydra job stopped between its metrics and
            if (job / "metrics.json").exists() and not (job / "config.yaml").exists():  # its run record: say so
                log.warning("%s: skipped, metrics.json but no config.yaml (stopped before its run record)", job)
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
    """Configuration name -> its runs (one per seed), configurations in first-seen order. Runs group by their
    resolved settings; a group is named by its first run's overrides, with other spellings after "≡"; two groups
    that would read alike are told apart by the keys their settings differ in."""
    by_settings: dict[tuple, list[tuple[str, Run]]] = {}
    for name, run in zip(configuration_names(runs), runs, strict=True):
        by_settings.setdefault(run.settings, []).append((name, run))
    named = {key: " ≡ ".join(dict.fromkeys(n for n, _ in members)) for key, members in by_settings.items()}
    plain = dict(named)
    for key, name in plain.items():
        clashes = [other for other, n in plain.items() if n == name and other != key]
        if clashes:
            mine, theirs = dict(key), dict(clashes[0])
            differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            named[key] = f"{name} [{', '.join(f'{k}={mine.get(k, UNSET)}' for k in differing[:3])}]"
    return {named[key]: [run for _, run in members] for key, members in by_settings.items()}


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
