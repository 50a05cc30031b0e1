"""The model-soup job (`embedlab-soup`): average fine-tuned checkpoints into one model (uniform or greedy soup).

embedlab-soup "models=[runs/a/model,runs/b/model,runs/c/model]"                  # uniform soup
embedlab-soup method=greedy "models=[...]" data.root=outputs/soup/data dev.split=dev eval.tasks=[scifact]

The run directory gets model/ (the soup, a sentence-transformers or adapter folder like its ingredients),
soup.json (ingredients, dev scores, which were kept), metrics.json (eval.tasks; {} when none), config.yaml and
manifest.json.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from embedlab import soup
from embedlab.config.build import build_encoder
from embedlab.data import get_task
from embedlab.errors import ConfigError
from embedlab.eval.cache import EmbeddingCache
from embedlab.eval.runner import EvalSettings, evaluate_task, evaluate_tasks
from embedlab.io import fingerprint, sha256_file, write_json_atomic
from embedlab.manifest import build_manifest, write_run_record
from embedlab.models import Encoder
from embedlab.report.table import format_table

log = logging.getLogger("embedlab.soup")


def open_model(cfg: DictConfig, folder: Path) -> Encoder:
    return build_encoder({"path": str(folder), **OmegaConf.to_container(cfg.model, resolve=True)}, frozen=True)


def dev_metric(cfg: DictConfig, cache: EmbeddingCache | None) -> tuple[Callable[[Path], float], str]:
    """(folder -> dev score, a label such as 'scifact/dev ndcg_at_10'), checked before any work."""
    spec = get_task(cfg.dev.task)
    split = cfg.dev.split or spec.split
    reported = {(get_task(t).name, get_task(t).split) for t in cfg.eval.tasks}
    if (spec.name, split) in reported:
        raise ConfigError(
            f"dev selection on {spec.name}/{split} is the split eval.tasks reports: set dev.split to a held-out split "
            "(e.g. dev.split=dev with experiments/scifact_data.py) or report another task"
        )
    name = cfg.dev.metric or spec.main_metric
    settings = EvalSettings(split=split, limit=cfg.dev.limit, max_docs=cfg.dev.max_docs, batch_size=cfg.eval.batch_size)

    def score(folder: Path) -> float:
        result = evaluate_task(
            spec.name, open_model(cfg, folder), settings=settings, data_root=cfg.data.root, cache=cache
        )
        if name not in result.metrics:
            raise ConfigError(f"dev.metric {name!r} is not a {spec.name} metric; known: {sorted(result.metrics)}")
        return float(result.metrics[name])

    return score, f"{spec.name}/{split} {name}"


def run(cfg: DictConfig, out_dir: Path) -> soup.SoupRecord:
    models = cfg.models
    if not isinstance(models, (list, ListConfig)) or len(models) < 2:
        raise ConfigError(f"models must list at least two ingredient folders, got {models!r}")
    if cfg.method not in ("uniform", "greedy"):
        raise ConfigError(f"method must be uniform or greedy, got {cfg.method!r}")
    for name in cfg.eval.tasks:
        get_task(name)
    folders = [Path(m) for m in models]
    soup.check_compatible(folders)  # a mismatch fails before any evaluation
    cache = EmbeddingCache() if cfg.eval.cache else None
    use_dev = cfg.dev.enabled if cfg.dev.enabled is not None else cfg.method == "greedy"
    if cfg.method == "greedy" and not use_dev:
        raise ConfigError("method=greedy needs the dev metric: leave dev.enabled unset or true")
    metric, label = dev_metric(cfg, cache) if use_dev else (None, None)
    output = out_dir / "model"
    if cfg.method == "greedy":
        assert metric is not None
        record = soup.greedy(folders, metric, output, workdir=out_dir)
    else:
        record = soup.uniform(folders, output, metric)
    write_json_atomic(
        out_dir / "soup.json",
        {"method": record.method, "dev_metric": label, "dev": record.dev, "ingredients": record.ingredients},
    )
    results = []
    if cfg.eval.tasks:
        settings = EvalSettings(batch_size=cfg.eval.batch_size)
        results = evaluate_tasks(
            list(cfg.eval.tasks),
            open_model(cfg, output),
            settings=settings,
            data_root=cfg.data.root,
            cache=cache,
            out_dir=out_dir,
        )
    else:
        write_json_atomic(out_dir / "metrics.json", {})  # every run has metrics.json, empty without evaluation
    manifest = build_manifest(
        seed=cfg.seed,
        data={r.task: r.fingerprint for r in results},
        models={"soup": fingerprint(sha256_file(output / f) for f in soup.weight_files(output))},
        extra={"kept": record.kept},
    )
    write_run_record(out_dir, cfg, manifest)
    rows = [
        {"ingredient": i["path"], "dev": i["dev"], "soup dev": i["soup_dev"], "kept": i["kept"]}
        for i in record.ingredients
    ]
    print(format_table(rows, ["ingredient", "dev", "soup dev", "kept"]))
    for r in results:
        print(f"soup {r.task} {get_task(r.task).main_metric}: {r.metrics[get_task(r.task).main_metric]:.4f}")
    print(f"\nsoup: {output}")
    return record
