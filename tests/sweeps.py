"""Run directories in the exact file formats embedlab-train writes (metrics.json, config.yaml, .hydra/, per_query/,
grid.jsonl), for report and notebook tests that must not spend minutes training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from embedlab.io import write_jsonl_atomic

DIMS, PRECISIONS = (384, 128, 32), ("float32", "int8", "binary")


def resolved_config(overrides: list[str], seed: int, choices: dict) -> dict:
    """What config.yaml holds for these overrides: `group=option` selects an option (a mapping under the group),
    `a.b=v` sets a value; a group nobody overrides is its option from `choices`."""
    config: dict = {"seed": seed}
    for override in [f"{g}={o}" for g, o in choices.items()] + overrides:
        key, _, value = override.lstrip("+~").partition("=")
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        if not parents and "." not in key and key not in ("seed",) and not _scalar(value):
            node[key] = {value: {}}  # a config group option
        else:
            node[leaf] = yaml.safe_load(value)
    return config


def _scalar(value: str) -> bool:
    return not isinstance(yaml.safe_load(value), str)


def make_run(
    root: Path,
    name: str,
    overrides: list[str],
    seed: int,
    ndcg: float,
    choices: dict | None = None,
    per_query: dict[str, float] | None = None,
    grid: bool = False,
    config: dict | None = None,
) -> Path:
    """One run: `ndcg` is the main cell; `per_query` (query id -> nDCG@10) adds per_query/scifact.jsonl; `grid`
    adds grid.jsonl over DIMS x PRECISIONS, a little lower for fewer dims and bits; `config`: config.yaml's content
    (default: what the overrides resolve to)."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    if choices is not None:
        (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    (run / "metrics.json").write_text(json.dumps({"scifact": {"ndcg_at_10": ndcg, "recall_at_10": ndcg + 0.1}}))
    config = config if config is not None else resolved_config(overrides, seed, choices or {})
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if per_query is not None:
        rows = ({"query_id": q, "ndcg_at_10": v, "recall_at_10": min(1.0, v + 0.1)} for q, v in per_query.items())
        write_jsonl_atomic(run / "per_query" / "scifact.jsonl", rows)
    if grid:
        cells = [
            {"task": "scifact", "dim": d, "precision": p, "ndcg_at_10": ndcg - 0.0002 * (384 - d) - 0.02 * i}
            for i, p in enumerate(PRECISIONS)
            for d in DIMS
        ]
        write_jsonl_atomic(run / "grid.jsonl", cells)
    # another system of the same run: same files but no config.yaml -> not a run of its own
    (run / "before").mkdir()
    (run / "before" / "metrics.json").write_text(json.dumps({"scifact": {"ndcg_at_10": 0.0}}))
    return run


def make_sweep(root: Path, queries: int = 60, effect: float = 0.08) -> Path:
    """A two-method, three-seed sweep over `queries` queries: focal_infonce is `effect` better per query on average;
    infonce is the default loss (no override, named through Hydra's choices)."""
    rng = np.random.default_rng(0)
    difficulty = rng.random(queries)
    common = ["logger=csv", "export=false"]
    for num, (loss, shift) in enumerate([("infonce", 0.0), ("focal_infonce", effect)]):
        for seed in range(3):
            values = np.clip(difficulty + shift + 0.05 * rng.standard_normal(queries), 0, 1)
            overrides = ([f"loss={loss}"] if loss != "infonce" else []) + [f"seed={seed}", *common]
            make_run(
                root,
                f"{num * 3 + seed}",
                overrides,
                seed,
                float(values.mean()),
                {"loss": loss},
                {f"q{i}": float(v) for i, v in enumerate(values)},
                grid=True,
            )
    return root
