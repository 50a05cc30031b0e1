"""Which checkpoint `embedlab-train resume=...` continues from, chosen before any work starts.

resume=true            the run directory's own checkpoints (with hydra.run.dir=<run dir>: continue in place)
resume=<run dir>       that run's checkpoints; the run directory *is* <run dir> (see `run_dir`), so outputs,
                       logs and later checkpoints go on in the same place
resume=<file.ckpt>     that checkpoint, into a new run directory (a branch of the run)

With no checkpoint yet the run starts from step 0 (so a preemptible job can always pass resume=true); a finished run
(manifest.json) is left as it is, so relaunching a sweep with the same hydra.sweep.dir and resume=true continues
only its unfinished jobs.

The newest checkpoint that loads is used; an unreadable one is renamed `<name>.corrupt` with a warning and the
previous one is tried. A checkpoint records the run's resolved config; resuming with a different one (other than
`resume` and `checkpoint.*`) is refused, naming the keys, since it would not continue the same run.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from embedlab.errors import ConfigError
from embedlab.lit.checkpoint import KEY, PATTERN

log = logging.getLogger("embedlab.train")

NOT_COMPARED = ("resume", "checkpoint")  # keys that may change between a run and its resumption


def run_dir(resume, default: str) -> str:
    """Hydra resolver for `hydra.run.dir`: the run directory being resumed, else the usual timestamped one."""
    return str(resume) if isinstance(resume, str) and Path(resume).is_dir() else default


OmegaConf.register_new_resolver("embedlab_run_dir", run_dir, replace=True)  # conf/train.yaml: hydra.run.dir


def config_record(cfg: DictConfig) -> str:
    """The resolved config as YAML, without the keys that may change on resume."""
    values = OmegaConf.to_container(cfg, resolve=True)
    return yaml.safe_dump({k: v for k, v in values.items() if k not in NOT_COMPARED}, sort_keys=True)


def _flat(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        return {k: v for key, sub in node.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def config_differences(saved: str, current: str) -> list[str]:
    """`key: saved -> current` for every key whose value differs between two `config_record`s."""
    a, b = _flat(yaml.safe_load(saved)), _flat(yaml.safe_load(current))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def step_of(path: Path) -> int:
    match = re.fullmatch(r"step_(\d+)\.ckpt", path.name)
    return int(match.group(1)) if match else -1


def _load(path: Path) -> dict | None:
    """The checkpoint's embedlab record, or None if the file does not load (truncated, garbage, not ours)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        return checkpoint[KEY]
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
        first_line = (str(e).splitlines() or [""])[0][:120]
        log.warning("checkpoint %s is unreadable (%s: %s)", path, type(e).__name__, first_line)
        return None


def find_checkpoint(resume, out_dir: Path, config: str) -> Path | None:
    """The checkpoint to resume from (None: start from step 0), checked against this run's `config_record`."""
    if resume is None or resume is False:
        return None
    if resume is True or (isinstance(resume, str) and Path(resume).is_dir()):
        folder = (out_dir if resume is True else Path(resume)) / "checkpoints"
        for tmp in folder.glob(".*.tmp"):  # a save killed half-way; never a checkpoint
            tmp.unlink(missing_ok=True)
        candidates = sorted(folder.glob(PATTERN), key=step_of, reverse=True)
        if not candidates:
            log.warning("resume: no checkpoint in %s; training from step 0", folder)
            return None
    elif isinstance(resume, str) and Path(resume).is_file():
        candidates = [Path(resume)]
    else:
        raise ConfigError(f"resume must be true, false, a run directory or a .ckpt file; {resume!r} is none of these")
    for path in candidates:
        record = _load(path)
        if record is None:
            if len(candidates) > 1:
                path.rename(path.with_name(path.name + ".corrupt"))
            continue
        differences = config_differences(record["config"], config)
        if differences:
            raise ConfigError(
                f"resume: {path} was written by a run with another config; pass the same overrides "
                f"(differences: {'; '.join(differences[:8])})"
            )
        log.info("resuming from %s (step %d)", path, step_of(path))
        return path
    raise ConfigError(f"resume: no readable checkpoint among {[str(p) for p in candidates]}")
