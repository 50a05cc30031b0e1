"""mteb 2 runs its own SciFact and STSBenchmark tasks on embedlab encoders (embedlab.eval.mteb_adapter / mteb_tasks),
offline, on the same local files: its scores must equal embedlab's evaluator cell for cell (full and Matryoshka
dims, float32 / int8 / binary storage), for one model and for an asymmetric query/document pair.

The full-data parity against MTEB's published all-MiniLM-L6-v2 figures is experiments/mteb_parity.py (minutes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embedlab.errors import ConfigError
from embedlab.eval.cache import EmbeddingCache
from embedlab.eval.runner import EvalSettings, evaluate_tasks

mteb = pytest.importorskip("mteb", reason="mteb is not installed (pip install -e '.[dev]')")

AGREE = 1e-4  # mteb rounds retrieval scores to 5 decimals
RETRIEVAL = ("ndcg_at_10", "map_at_100", "recall_at_100", "mrr_at_10", "precision_at_1")
STS = ("cosine_spearman", "cosine_pearson")
SUBSET = {"limit": 20, "max_docs": 100}  # 20 SciFact test claims against 100 abstracts; 20 STSb test pairs


def _cells(results, task: str) -> dict[tuple, dict]:
    (result,) = [r for r in results if r.task == task]
    return {(row["dim"], row["precision"]): row for row in result.grid}


@pytest.mark.slow
def test_mteb_tasks_score_as_embedlab_over_the_grid(real_data, minilm, tmp_path) -> None:
    settings = EvalSettings(dims=[None, 128], precisions=["float32", "int8", "binary"], **SUBSET)
    tasks = ["scifact", "mteb:SciFact", "stsb", "mteb:STSBenchmark"]
    results = evaluate_tasks(tasks, minilm, settings=settings, data_root=real_data, out_dir=tmp_path)  # no cache
    ours, theirs = _cells(results, "scifact"), _cells(results, "mteb:SciFact")
    assert set(ours) == set(theirs) and len(ours) == 6
    for cell, row in ours.items():
        for metric in RETRIEVAL:
            assert theirs[cell][metric] == pytest.approx(row[metric], abs=AGREE), (cell, metric)
    # the cells differ, so a dim or a precision the adapter ignored would show
    at_128 = ours[(128, "float32")]["ndcg_at_10"]
    assert abs(ours[(384, "float32")]["ndcg_at_10"] - at_128) > 1e-3
    assert abs(ours[(128, "int8")]["ndcg_at_10"] - at_128) > 1e-3
    assert abs(ours[(128, "binary")]["ndcg_at_10"] - at_128) > 1e-3
    ours, theirs = _cells(results, "stsb"), _cells(results, "mteb:STSBenchmark")
    assert set(ours) == set(theirs) == {(384, "float32"), (128, "float32")}
    for cell, row in ours.items():
        for metric in STS:
            assert theirs[cell][metric] == pytest.approx(row[metric], abs=AGREE), (cell, metric)
    assert ours[(384, "float32")]["cosine_spearman"] != pytest.approx(ours[(128, "float32")]["cosine_spearman"])

    metrics = json.loads((tmp_path / "metrics.json").read_text())  # one schema: task -> main cell's metrics
    assert list(metrics) == tasks
    assert metrics["mteb:SciFact"]["main_score"] == metrics["mteb:SciFact"]["ndcg_at_10"]
    assert metrics["mteb:STSBenchmark"]["main_score"] == metrics["mteb:STSBenchmark"]["cosine_spearman"]
    assert not any(k.startswith("nauc_") for k in metrics["mteb:SciFact"])
    rows = [json.loads(line) for line in (tmp_path / "grid.jsonl").read_text().splitlines()]
    assert sum(r["task"] == "mteb:SciFact" for r in rows) == 6


@pytest.fixture(scope="module")
def minilm():
    from embedlab.models import Encoder

    return Encoder.from_pretrained("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def query_model():
    """A different query encoder: MiniLM's first 4 layers, with a query prompt and a SciFact instruction."""
    from embedlab.models import Encoder

    return Encoder.from_pretrained(
        "all-MiniLM-L6-v2", num_layers=4, query_prompt="query: ", instructions={"scifact": "find the evidence"}
    )


@pytest.mark.slow
def test_asymmetric_pair_and_prompts_score_as_embedlab(real_data, minilm, query_model, tmp_path) -> None:
    # One embedding cache: each side's vectors are computed once (the grid test above encodes independently); a
    # side or prompt mteb got wrong would be other texts or another prompt, so other vectors and other scores.
    run = {"settings": EvalSettings(**SUBSET), "data_root": real_data, "cache": EmbeddingCache(tmp_path)}
    asym = evaluate_tasks(["scifact", "mteb:SciFact"], minilm, query_model, **run)
    ours, theirs = asym[0].metrics, asym[1].metrics
    for metric in RETRIEVAL:
        assert theirs[metric] == pytest.approx(ours[metric], abs=AGREE), metric
    # routing matters: either model alone scores otherwise (documents to the query model, or queries to the other)
    for alone in (minilm, query_model):
        (single,) = evaluate_tasks(["scifact"], alone, **run)
        assert abs(single.metrics["ndcg_at_10"] - ours["ndcg_at_10"]) > 1e-3


def test_adapter_routes_sides_prompts_and_cells(query_model) -> None:
    from mteb.types import PromptType

    from embedlab.eval.mteb_adapter import MtebEncoder
    from embedlab.eval.quantize import stored, truncate
    from embedlab.models import Encoder

    docs = Encoder.from_pretrained("all-MiniLM-L6-v2", document_prompt="passage: ")
    texts = ["Aspirin lowers the risk of heart attack.", "Whales sing long songs.", "Rain is expected tomorrow."]
    loader = [{"text": texts[:2]}, {"text": texts[2:]}]  # what mteb's data loaders yield
    scifact, sts = mteb.get_task("SciFact").metadata, mteb.get_task("STSBenchmark").metadata
    adapter = MtebEncoder(docs, query_model, batch_size=2)
    kw = {"hf_split": "test", "hf_subset": "default"}
    got_docs = adapter.encode(loader, task_metadata=scifact, prompt_type=PromptType.document, **kw)
    np.testing.assert_allclose(got_docs, docs.encode(texts, prompt="passage: "), atol=1e-6)
    got_queries = adapter.encode(loader, task_metadata=scifact, prompt_type=PromptType.query, **kw)
    instructed = query_model.encode(texts, prompt=query_model.query_prompt_for("scifact"))
    np.testing.assert_allclose(got_queries, instructed, atol=1e-6)
    assert query_model.query_prompt_for("scifact") != "query: "
    got_sts = adapter.encode(loader, task_metadata=sts, **kw)  # no prompt type: the query side, its default prompt
    np.testing.assert_allclose(got_sts, query_model.encode(texts, prompt="query: "), atol=1e-6)

    adapter.dim, adapter.precision = 64, "int8"
    cut = adapter.encode(loader, task_metadata=scifact, prompt_type=PromptType.document, **kw)
    np.testing.assert_allclose(cut, stored(truncate(got_docs, 64), "int8"), atol=1e-6)
    assert cut.shape == (3, 64) and len(np.unique(cut[:, 0])) <= 3
    queries_64 = adapter.encode(loader, task_metadata=scifact, prompt_type=PromptType.query, **kw)
    np.testing.assert_allclose(np.linalg.norm(queries_64, axis=1), 1.0, atol=1e-5)  # truncated, renormalised
    np.testing.assert_allclose(adapter.similarity(queries_64, cut).numpy(), queries_64 @ cut.T, atol=1e-5)


def test_unknown_mteb_task_and_settings_fail_before_any_model(tmp_path) -> None:
    from embedlab.eval.mteb_tasks import check_task_names, load_mteb_task

    with pytest.raises(ConfigError, match="unknown mteb task 'NoSuchTask'"):
        check_task_names(["scifact", "mteb:NoSuchTask"])
    with pytest.raises(ConfigError, match=r"eval\.mteb_source"):
        load_mteb_task("mteb:SciFact", source="web")
    with pytest.raises(ConfigError, match="no local copy"):
        load_mteb_task("mteb:NFCorpus", source="local", root=tmp_path)
    with pytest.raises(ConfigError, match="local data only"):  # a hub task cannot honour eval.limit
        load_mteb_task("mteb:NFCorpus", root=tmp_path, limit=5)


def test_hub_task_offline_is_one_clear_error(tmp_path, monkeypatch) -> None:
    from embedlab.errors import EmbedlabError
    from embedlab.eval.mteb_tasks import load_mteb_task

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbedlabError, match="hub is offline"):
        load_mteb_task("mteb:NFCorpus", root=tmp_path)
