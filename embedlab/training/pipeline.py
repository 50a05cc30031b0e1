"""Multi-stage training (KaLM-V2, LEAF from a fine-tuned teacher): a chain of embedlab-train / embedlab-soup runs,
each using the previous stage's output as its starting model or as its teacher.

A pipeline file (conf/pipeline/*.yaml) names an output folder and a list of stages:
  stages:
    - name: weak                    # the stage's run directory: <out>/<name> (<out>/<name>/<i> with variants)
      cli: train                    # train | soup
      overrides: [data.split=fit]   # Hydra overrides of that CLI's config
      variants: [[seed=0], [seed=1]]  # optional: several runs from the same start (e.g. the soup's ingredients)
      previous_as: model            # optional, train stages: model (default) | teacher
A train stage starts from the previous stage's one output (model.path; the first stage from `start`, or its own
config's model when `start` is null); with `previous_as: teacher` that output becomes its frozen teacher
(teacher.path) instead and the student is the stage's own config's model (LEAF from a teacher fine-tuned by the
stage before). A soup stage averages all of the previous stage's outputs (models=[...]).
A run is finished when its directory holds model/ and manifest.json (every job writes its run record,
config.yaml then manifest.json, last: a job stopped earlier is not finished); finished runs are skipped, so running
the pipeline again resumes it. Once a stage has run again, every later stage runs again too (its input changed).
<out>/pipeline.json records every run directory, its output and whether it ran or was skipped; each run's overrides,
with the input the pipeline set, go to <run>/.hydra/overrides.yaml as Hydra records a run's, so embedlab-report
names pipeline runs by what differs between them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from embedlab.config.build import CONF_DIR
from embedlab.config.build import compose as compose_job
from embedlab.errors import ConfigError
from embedlab.io import write_json_atomic, write_text_atomic
from embedlab.training.soup import run as soup_run
from embedlab.training.train import train

log = logging.getLogger(__name__)

JOBS = {"train": train, "soup": soup_run}  # what each stage's `cli` runs
CLIS = tuple(JOBS)
PREVIOUS_AS = {"model": "model.path", "teacher": "teacher.path"}  # a train stage's use of the previous output -> key
KEYS = ("cli", "name", "overrides", "previous_as", "variants")  # what a stage may set


def load_spec(name: str, overrides: list[str]) -> DictConfig:
    """A pipeline by name (conf/pipeline/<name>.yaml) or path, with `key=value` overrides on top."""
    path = Path(name)
    if not path.is_file():
        path = CONF_DIR / "pipeline" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONF_DIR / "pipeline").glob("*.yaml"))
        raise ConfigError(f"pipeline {name!r} is neither a file nor one of {known}")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"pipeline overrides must be key=value, got {bad}")
    return OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))


def compose(cli: str, overrides: list[str], where: str = "") -> DictConfig:
    """A CLI's config (conf/<cli>.yaml) with Hydra overrides, as `embedlab-<cli> overrides...` would see it."""
    from hydra.errors import HydraException

    try:
        return compose_job(cli, overrides)
    except HydraException as e:
        raise ConfigError(f"{where or cli}: {str(e).splitlines()[0]}") from None


def run_cli(cli: str, cfg: DictConfig, run_dir: Path) -> None:
    """Run one CLI's job in-process (the same function its console script calls)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    JOBS[cli](cfg, run_dir)


def finished(run_dir: Path) -> bool:
    return (run_dir / "model").is_dir() and (run_dir / "manifest.json").is_file()


@dataclass
class Stage:
    name: str
    cli: str
    overrides: list[str] = field(default_factory=list)
    variants: list[list[str]] = field(default_factory=list)  # empty: one run
    previous_as: str = "model"  # train: the previous output is this run's model | teacher (PREVIOUS_AS)

    def run_dirs(self, out: Path) -> list[Path]:
        if not self.variants:
            return [out / self.name]
        return [out / self.name / str(i) for i in range(len(self.variants))]


def _strings(value, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, ListConfig)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of override strings, got {value!r}")
    return list(value)


def parse(spec: DictConfig) -> tuple[Path, str | None, list[Stage], dict[str, list[str]]]:
    """(out, start, stages, per-CLI common overrides) of a pipeline config, every field checked."""
    if not spec.get("out"):
        raise ConfigError("pipeline: 'out' (the output folder) is missing")
    if not isinstance(spec.get("stages"), ListConfig) or not spec.stages:
        raise ConfigError("pipeline: 'stages' must be a non-empty list")
    common = {cli: _strings((spec.get("common") or {}).get(cli), f"pipeline common.{cli}") for cli in CLIS}
    stages, names = [], set()
    for i, node in enumerate(spec.stages):
        where = f"pipeline stages[{i}]"
        unknown = sorted(set(node) - set(KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {', '.join(KEYS)}")
        if node.get("cli") not in CLIS:
            raise ConfigError(f"{where}.cli must be one of {CLIS}, got {node.get('cli')!r}")
        previous_as = node.get("previous_as") or "model"
        allowed = tuple(PREVIOUS_AS) if node.cli == "train" else ("model",)  # a soup averages models
        if previous_as not in allowed:
            raise ConfigError(
                f"{where}.previous_as must be one of {allowed} for a {node.cli} stage, got {previous_as!r}"
            )
        name = node.get("name") or f"{i}_{node.cli}"
        if name in names:
            raise ConfigError(f"{where}.name {name!r} is used twice")
        names.add(name)
        variants = [_strings(v, f"{where}.variants[{j}]") for j, v in enumerate(node.get("variants") or [])]
        overrides = _strings(node.get("overrides"), f"{where}.overrides")
        stages.append(Stage(name, node.cli, overrides, variants, previous_as))
    for i, stage in enumerate(stages):
        if stage.cli == "soup" and (i == 0 or len(stages[i - 1].run_dirs(Path())) < 2):
            raise ConfigError(f"pipeline stage {stage.name!r}: a soup needs a previous stage with variants (2+ runs)")
        if stage.cli == "train" and i > 0 and len(stages[i - 1].run_dirs(Path())) > 1:
            raise ConfigError(
                f"pipeline stage {stage.name!r}: a train stage starts from one model, but stage "
                f"{stages[i - 1].name!r} has {len(stages[i - 1].variants)} variants (soup them first)"
            )
    return Path(spec.out), spec.get("start"), stages, common


def run_pipeline(
    spec: DictConfig, runner: Callable[[str, DictConfig, Path], None] = run_cli, dry_run: bool = False
) -> list[dict]:
    """Run (or, with dry_run, only plan) every unfinished run of the chain; returns the pipeline.json rows."""
    out, start, stages, common = parse(spec)
    inputs: list[Path] = [Path(start)] if start else []
    record: list[dict] = []
    rerun = False  # an earlier stage ran in this call: later ones start from a new input and cannot be skipped
    for stage in stages:
        outputs, ran = [], False
        for j, run_dir in enumerate(stage.run_dirs(out)):
            overrides = [*common[stage.cli], *stage.overrides, *(stage.variants[j] if stage.variants else [])]
            # every run's config is checked, finished or not
            cfg = compose(stage.cli, overrides, f"pipeline stage {stage.name!r} ({stage.cli} overrides)")
            given = []  # the input, as the override it amounts to
            if stage.cli == "soup":
                OmegaConf.update(cfg, "models", [str(p) for p in inputs])
                given = [f"models=[{','.join(map(str, inputs))}]"]
            elif inputs:
                OmegaConf.update(cfg, PREVIOUS_AS[stage.previous_as], str(inputs[0]))
                given = [f"{PREVIOUS_AS[stage.previous_as]}={inputs[0]}"]
            done = finished(run_dir) and not rerun
            status = "finished" if done else ("planned" if dry_run else "ran")
            log.info("stage %s: %s %s (%s)", stage.name, stage.cli, run_dir, "skipped, finished" if done else status)
            if not done and not dry_run:
                write_text_atomic(run_dir / ".hydra" / "overrides.yaml", yaml.safe_dump([*overrides, *given]))
                runner(stage.cli, cfg, run_dir)
                if not finished(run_dir):
                    raise ConfigError(f"stage {stage.name!r} ended without writing {run_dir}/model and manifest.json")
            ran = ran or not done
            record.append(
                {
                    "stage": stage.name,
                    "cli": stage.cli,
                    "run_dir": str(run_dir),
                    "input": [str(p) for p in inputs],
                    "input_as": "models" if stage.cli == "soup" else stage.previous_as,
                    "output": str(run_dir / "model"),
                    "overrides": overrides,
                    "status": status,
                }
            )
            if not dry_run:
                write_json_atomic(out / "pipeline.json", record)
            outputs.append(run_dir / "model")
        inputs, rerun = outputs, rerun or ran
    return record
