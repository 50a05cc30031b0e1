"""MTEB's own tasks inside `embedlab-eval`: `tasks=[scifact,mteb:SciFact,mteb:STSBenchmark]`.

mteb loads the task (its metadata, splits, metrics), the model is embedlab's (`MtebEncoder`, asymmetric pairs
included) and the main scores land in metrics.json beside embedlab's own tasks, under the name as given
(`mteb:SciFact`), with mteb's metric names and cut-offs (eval.top_k and eval.k_values are for embedlab's evaluator).
Data: a task embedlab also has (SciFact, ArguAna, STSBenchmark, SICK-R) is built from the same local files embedlab
reads (`mteb_source: auto | local`), so it runs offline, honours `eval.limit` / `eval.max_docs`, and compares with
embedlab's evaluator on identical texts; any other task is downloaded by mteb from the hub (`auto | hub`), which
needs the network.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from embedlab.data import RetrievalData, StsPairs, load_task
from embedlab.data.tasks import data_root, get_task, spec_for_mteb
from embedlab.errors import ConfigError, EmbedlabError
from embedlab.eval.cache import EmbeddingCache
from embedlab.eval.mteb_adapter import MtebEncoder
from embedlab.eval.quantize import grid_dims
from embedlab.eval.retrieval import check_same_dim
from embedlab.io import fingerprint

log = logging.getLogger(__name__)

PREFIX = "mteb:"
SOURCES = ("auto", "local", "hub")  # where an mteb task's data comes from (see the module docstring)


def check_source(source: str) -> None:
    if source not in SOURCES:
        raise ConfigError(f"unknown eval.mteb_source {source!r}; choose one of {', '.join(SOURCES)}")


def is_mteb_task(name: str) -> bool:
    return str(name).lower().startswith(PREFIX)


def get_mteb_task(name: str):
    """mteb's task object for `mteb:<Name>`; an unknown name is a ConfigError (checked before any model loads)."""
    try:
        import mteb
    except ImportError:
        raise ConfigError(f"task {name!r} needs mteb: pip install 'mteb>=2' (or embedlab[dev])") from None
    bare = str(name)[len(PREFIX) :]
    try:
        return mteb.get_task(bare)
    except KeyError:
        raise ConfigError(f"unknown mteb task {bare!r} (in {name!r}); names as in mteb.get_tasks()") from None


def _has_local(spec, root: str | Path | None) -> bool:
    return spec is not None and (data_root(root) / spec.path).exists()


def load_mteb_task(
    name: str,
    *,
    source: str = "auto",
    root: str | Path | None = None,
    limit: int | None = None,
    max_docs: int | None = None,
):
    """The mteb task with its data in place (`task.data_loaded`), and a fingerprint of that data."""
    check_source(source)
    task = get_mteb_task(name)
    spec = spec_for_mteb(task.metadata.name)
    local = source == "local" or (source == "auto" and _has_local(spec, root))
    if local:
        if spec is None:
            raise ConfigError(f"{name}: embedlab has no local copy of this task; use eval.mteb_source=hub")
        if max_docs is not None and spec.kind != "retrieval":
            max_docs = None  # the shared eval.max_docs caps retrieval corpora only
        data = load_task(spec.name, root, limit=limit, max_docs=max_docs)
        fill_local(task, data)
        return task, data.fingerprint
    if limit is not None or max_docs is not None:
        raise ConfigError(f"{name}: eval.limit / eval.max_docs apply to mteb tasks with local data only")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise EmbedlabError(
            f"{name}: no local data for it under {data_root(root)} and the hub is offline (HF_HUB_OFFLINE=1)"
        )
    task.load_data()
    revision = task.metadata.dataset.get("revision")
    return task, fingerprint(["mteb", task.metadata.name, revision])


def fill_local(task, data: RetrievalData | StsPairs) -> None:
    """Put embedlab's loaded data into the mteb task in mteb 2's layout, under MTEB's evaluation split."""
    from datasets import Dataset

    split = task.eval_splits[0]
    if isinstance(data, RetrievalData):
        qids = [q for q in data.qrels if q in data.queries]  # embedlab's order, so the embedding cache is shared
        split_data = {
            # corpus texts are already title + " " + body, the string mteb would join from the two columns
            "corpus": Dataset.from_dict({"id": list(data.corpus), "text": list(data.corpus.values())}),
            "queries": Dataset.from_dict({"id": qids, "text": [data.queries[q] for q in qids]}),
            "relevant_docs": {q: dict(data.qrels[q]) for q in qids},
            "top_ranked": None,
        }
    else:
        a, b = task.column_names
        split_data = Dataset.from_dict({a: data.sentences1, b: data.sentences2, "score": data.scores})
    task.dataset = {"default": {split: split_data}}
    task.data_loaded = True


def main_scores(task_result) -> dict[str, float]:
    """The scalar scores of the task's one split and subset under mteb's names (ndcg_at_10, cosine_spearman,
    main_score, ...), less mteb's nAUC confidence diagnostics."""
    (split_scores,) = task_result.scores.values()
    (scores,) = split_scores
    return {
        k: float(v)
        for k, v in scores.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.startswith("nauc_")  # diagnostics
    }


def evaluate_mteb_task(
    name: str,
    doc_encoder,
    query_encoder=None,
    *,
    settings,
    data_root: str | Path | None = None,
    cache: EmbeddingCache | None = None,
    source: str = "auto",
):
    """Run mteb over every (dim, precision) cell of the settings' grid; the rows and main cell of a TaskResult."""
    from embedlab.eval.runner import TaskResult, _main_cell

    if settings.split is not None:
        raise ConfigError(f"{name}: eval.split does not apply to mteb tasks (they run on MTEB's split)")
    task, data_fp = load_mteb_task(
        name, source=source, root=data_root, limit=settings.limit, max_docs=settings.max_docs
    )
    retrieval = task.metadata.type == "Retrieval"
    if retrieval:
        check_same_dim(query_encoder, doc_encoder)
    adapter = MtebEncoder(doc_encoder, query_encoder, batch_size=settings.batch_size, cache=cache)
    grid = []
    with _quiet_datasets():
        for dim in grid_dims(list(settings.dims), adapter.size):
            for precision in settings.precisions if retrieval else ["float32"]:
                adapter.dim, adapter.precision = dim, precision
                grid.append({"task": name, "dim": dim or adapter.size, "precision": precision, **_run(adapter, task)})
                log.info("%s dim=%s %s: main score %.4f", name, grid[-1]["dim"], precision, grid[-1]["main_score"])
    return TaskResult(name, _main_cell(grid), grid, data_fp)


def _run(adapter: MtebEncoder, task) -> dict[str, float]:
    import mteb

    result = mteb.evaluate(
        adapter,
        task,
        cache=None,  # results go to metrics.json, not ~/.cache/mteb
        co2_tracker=False,
        overwrite_strategy="always",
        encode_kwargs={"batch_size": adapter.batch_size, "show_progress_bar": False},
        show_progress_bar=False,
    )
    if result.exceptions:
        raise EmbedlabError(f"{task.metadata.name}: mteb failed: {result.exceptions[0]}")
    (task_result,) = result.task_results
    return main_scores(task_result)


@contextlib.contextmanager
def _quiet_datasets():
    """No `datasets` progress bar per mteb run (one per grid cell); the caller's setting is restored."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


def main_score(row: dict) -> float:
    """A metrics row's main score: mteb's `main_score` for an mteb task, else the embedlab task's main metric."""
    return row["main_score"] if is_mteb_task(row["task"]) else row[get_task(row["task"]).main_metric]


def check_task_names(names: list[str]) -> None:
    """Every name resolves (embedlab's registry or mteb's) before any model is loaded."""
    for name in names:
        if is_mteb_task(name):
            get_mteb_task(name)
        else:
            get_task(name)
