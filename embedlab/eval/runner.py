"""Evaluate encoders on named tasks and write the results as files a researcher can analyse.

Output folder layout (every file written atomically):
  metrics.json              {"<task>": {"ndcg_at_10": ..., ...}}  main cell (full dim, first precision)
  grid.jsonl                one row per (task, dim, precision) when the grid has more than one cell
  per_query/<task>.jsonl    per-query metrics (retrieval) or per-pair cosine and gold score (STS)
  runs/<task>.trec          the ranking in TREC run format (top `run_depth`), for significance tests

A task named `mteb:<Name>` runs MTEB's implementation of it (embedlab.eval.mteb_tasks); its scores land in
metrics.json and grid.jsonl the same way, under that name.

In a torch.distributed process group, on a cache `sharing_ranks` (`embedlab.eval.cache.cache_for_ranks`), every rank
calls the runner: each encodes its shards of every collection, rank 0 alone searches and writes, and every rank
returns rank 0's results (an `mteb:` task runs whole on every rank, its encodings split all the same).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from embedlab.data import RetrievalData, StsPairs, get_task, load_task
from embedlab.errors import ConfigError
from embedlab.eval.ann import SearchSettings
from embedlab.eval.cache import DEFAULT_SHARD_ROWS, EmbeddingCache
from embedlab.eval.metrics import DEFAULT_K, check_k_values
from embedlab.eval.mteb_tasks import check_source, check_task_names, evaluate_mteb_task, is_mteb_task
from embedlab.eval.quantize import check_dims, check_precisions, grid_dims
from embedlab.eval.retrieval import RetrievalSettings, check_same_dim, encode_task, evaluate_retrieval
from embedlab.eval.shards import Ranks
from embedlab.eval.sts import evaluate_sts
from embedlab.io import atomic_path, write_json_atomic, write_jsonl_atomic

log = logging.getLogger(__name__)


@dataclass
class EvalSettings:
    top_k: int = 1000  # documents retrieved per query
    k_values: tuple[int, ...] = DEFAULT_K  # cut-offs of the @k metrics
    dims: list[int | None] = field(default_factory=lambda: [None])  # Matryoshka prefix sizes; None = full
    precisions: list[str] = field(default_factory=lambda: ["float32"])  # storage: float32 | int8 | binary
    binary_rescore: int = 4  # binary: rescore top k×this by float query · ±1 doc; 0 = Hamming order only
    batch_size: int = 64  # encoding batch size
    split: str | None = None  # None: each task's standard split
    limit: int | None = None  # queries (retrieval) / pairs (STS) per task, for quick runs
    max_docs: int | None = None  # corpus cap (judged docs always kept)
    run_depth: int = 100  # documents per query written to runs/<task>.trec
    mteb_source: str = "auto"  # data of mteb:<Name> tasks: auto (local copy if any, else hub) | local | hub
    search: SearchSettings = field(default_factory=SearchSettings)  # how retrieval searches the corpus (eval/ann.py)
    shard_rows: int = DEFAULT_SHARD_ROWS  # embedding-cache shard size at most (rows): what ranks split an encoding by


def check_settings(s: EvalSettings, dim: int | None = None) -> None:
    """Reject settings that cannot work, before any data is loaded or any text encoded.

    `dim`, the model's embedding size, bounds the Matryoshka dims when known.
    """
    check_precisions(list(s.precisions))
    if not s.precisions:
        raise ConfigError("eval precisions is empty; choose from float32, int8, binary")
    check_k_values(s.k_values)
    check_dims(list(s.dims), dim)
    check_source(s.mteb_source)
    s.search.check()
    if dim is not None:
        for d in grid_dims(list(s.dims), dim):
            s.search.check_dim(d or dim)
    for name, minimum in (("top_k", 1), ("batch_size", 1), ("binary_rescore", 0), ("run_depth", 0), ("shard_rows", 1)):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"eval {name} must be an integer >= {minimum}, got {value!r}")
    for name in ("limit", "max_docs"):
        value = getattr(s, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"eval {name} must be a positive integer or null, got {value!r}")


@dataclass
class TaskResult:
    task: str
    metrics: dict[str, float]
    grid: list[dict]
    fingerprint: str


def evaluate_task(
    name: str,
    doc_encoder,
    query_encoder=None,
    *,
    settings: EvalSettings | None = None,
    data_root: str | Path | None = None,
    cache: EmbeddingCache | None = None,
    out_dir: Path | None = None,
    searches: bool = True,
) -> TaskResult | None:
    """One task's result; with `searches=False` (a rank helping rank 0) only its retrieval encodings, and None."""
    s = settings or EvalSettings()
    spec = get_task(name)
    data = load_task(
        spec.name,
        data_root,
        split=s.split,
        limit=s.limit,
        max_docs=s.max_docs if spec.kind == "retrieval" else None,
    )
    if isinstance(data, RetrievalData) and not searches:
        encode_task(data, doc_encoder, query_encoder or doc_encoder, s.batch_size, cache)
        return None
    if isinstance(data, RetrievalData):
        result = evaluate_retrieval(
            data,
            doc_encoder,
            query_encoder,
            RetrievalSettings(
                top_k=s.top_k,
                k_values=tuple(s.k_values),
                dims=list(s.dims),
                precisions=list(s.precisions),
                binary_rescore=s.binary_rescore,
                batch_size=s.batch_size,
                ignore_identical_ids=spec.ignore_identical_ids,
                search=s.search,
            ),
            cache=cache,
        )
        grid = [{"task": spec.name, **row} for row in result.rows]
        if out_dir is not None:
            write_jsonl_atomic(
                out_dir / "per_query" / f"{spec.name}.jsonl",
                ({"query_id": q, **m} for q, m in result.per_query.items()),
            )
            _write_run(out_dir / "runs" / f"{spec.name}.trec", result.run, s.run_depth)
        return TaskResult(spec.name, _main_cell(grid), grid, data.fingerprint)
    assert isinstance(data, StsPairs)
    grid = []
    for dim in grid_dims(s.dims, (query_encoder or doc_encoder).dim):
        metrics, cos = evaluate_sts(data, query_encoder or doc_encoder, batch_size=s.batch_size, dim=dim, cache=cache)
        grid.append(
            {
                "task": spec.name,
                "dim": dim or (query_encoder or doc_encoder).dim,
                "precision": "float32",
                **metrics,
            }
        )
        if out_dir is not None and len(grid) == 1:
            write_jsonl_atomic(
                out_dir / "per_query" / f"{spec.name}.jsonl",
                (
                    {"pair": i, "cosine": float(c), "gold": g}
                    for i, (c, g) in enumerate(zip(cos, data.scores, strict=True))
                ),
            )
    return TaskResult(spec.name, _main_cell(grid), grid, data.fingerprint)


def _main_cell(grid: list[dict]) -> dict[str, float]:
    return {k: v for k, v in grid[0].items() if k not in ("task", "dim", "precision")}


def evaluate_tasks(
    tasks: list[str],
    doc_encoder,
    query_encoder=None,
    *,
    settings: EvalSettings | None = None,
    data_root: str | Path | None = None,
    cache: EmbeddingCache | None = None,
    out_dir: Path | None = None,
) -> list[TaskResult]:
    """Evaluate every task; write metrics.json (and grid.jsonl) into `out_dir` when given."""
    # Fail on a typo or an impossible setting before encoding anything (not after the first task).
    check_task_names(tasks)
    specs = [get_task(name) for name in tasks if not is_mteb_task(name)]
    if any(spec.kind == "retrieval" for spec in specs):
        check_same_dim(query_encoder, doc_encoder)
    check_settings(settings or EvalSettings(), min(doc_encoder.dim, (query_encoder or doc_encoder).dim))
    ranks = cache.ranks() if cache is not None else Ranks()
    if ranks.rank != 0:
        out_dir = None  # rank 0 writes
    results = []
    for name in tasks:
        log.info("evaluating %s", name)
        if is_mteb_task(name):
            results.append(
                evaluate_mteb_task(
                    name,
                    doc_encoder,
                    query_encoder,
                    settings=settings or EvalSettings(),
                    data_root=data_root,
                    cache=cache,
                    source=(settings or EvalSettings()).mteb_source,
                )
            )
            continue
        results.append(
            evaluate_task(
                name,
                doc_encoder,
                query_encoder,
                settings=settings,
                data_root=data_root,
                cache=cache,
                out_dir=out_dir,
                searches=ranks.rank == 0,
            )
        )
    results = ranks.from_rank0(results)  # the other ranks' STS and MTEB results are the same, their retrieval None
    if out_dir is not None:
        write_json_atomic(out_dir / "metrics.json", {r.task: r.metrics for r in results})
        rows = [row for r in results for row in r.grid]
        if len(rows) > len(results):
            write_jsonl_atomic(out_dir / "grid.jsonl", rows)
    return results


def _write_run(path: Path, run: dict[str, dict[str, float]], depth: int) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda kv: -kv[1])[:depth]
            for rank, (did, score) in enumerate(ranked, start=1):
                f.write(f"{qid} Q0 {did} {rank} {score:.6f} embedlab\n")
