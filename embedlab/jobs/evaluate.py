"""The evaluation job (`embedlab-eval`): a model, or a query model beside a document model, on retrieval and STS tasks
(embedlab's and mteb's), writing metrics.json, config.yaml and manifest.json."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from embedlab.config.build import as_list, build_encoder, eval_settings
from embedlab.errors import ConfigError
from embedlab.eval.cache import EmbeddingCache
from embedlab.eval.mteb_tasks import check_task_names, main_score
from embedlab.eval.runner import TaskResult, evaluate_tasks
from embedlab.manifest import build_manifest, write_run_record
from embedlab.report.table import format_table

SUMMARY = {  # what the console table shows; metrics.json has everything
    "retrieval": ("ndcg_at_10", "mrr_at_10", "map_at_100", "recall_at_100", "recall_at_1000"),
    "sts": ("cosine_spearman", "cosine_pearson"),
}


def summary_table(results: list[TaskResult]) -> str:
    columns = [c for kind in SUMMARY.values() for c in kind]
    rows = [{"task": r.task, **{c: r.metrics.get(c) for c in columns}} for r in results]
    present = [c for c in columns if any(row[c] is not None for row in rows)]
    text = format_table(rows, ["task", *present])
    grid = [row for r in results for row in r.grid]
    if len(grid) > len(results):
        main = [{**row, "score": main_score(row)} for row in grid]
        text += "\n\n" + format_table(
            main, ["task", "dim", "precision", "score"], ["task", "dim", "precision", "nDCG@10 / Spearman"]
        )
    return text


def run(cfg: DictConfig, out_dir: Path) -> list[TaskResult]:
    settings = eval_settings(cfg.eval)
    tasks = as_list(cfg.tasks)
    if not tasks:
        raise ConfigError("no tasks given; e.g. tasks=[scifact,stsb]")
    check_task_names(tasks)  # a typo fails in a second, not after the model has loaded (mteb:<Name> too)
    started = time.perf_counter()
    doc_encoder = build_encoder(cfg.model, cfg.device, frozen=True)
    query_encoder = build_encoder(cfg.query_model, cfg.device, frozen=True) if cfg.query_model else None
    cache = EmbeddingCache(cfg.eval.cache_dir, shard_rows=settings.shard_rows) if cfg.eval.cache else None
    results = evaluate_tasks(
        tasks,
        doc_encoder,
        query_encoder,
        settings=settings,
        data_root=cfg.data.root,
        cache=cache,
        out_dir=out_dir,
    )
    models = {"document_model": doc_encoder.fingerprint()}
    if query_encoder is not None:
        models["query_model"] = query_encoder.fingerprint()
    manifest = build_manifest(
        seed=cfg.seed,
        data={r.task: r.fingerprint for r in results},
        models=models,
        extra={
            "wall_seconds": round(time.perf_counter() - started, 2),
            "cache": {"hits": cache.hits, "misses": cache.misses} if cache else None,
        },
    )
    write_run_record(out_dir, cfg, manifest)
    print(summary_table(results))
    print(f"\nresults: {out_dir / 'metrics.json'}")
    return results
