"""Mining end to end: a hand-made task with known false negatives, and `embedlab-mine` on real SciFact text."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeEncoder, at
from omegaconf import OmegaConf

from embedlab.data import RetrievalData
from embedlab.mining.mine import mine
from embedlab.mining.select import SelectionConfig

REPO = Path(__file__).resolve().parents[1]

# Documents on the unit circle; q1 at 0° has two judged documents, d3 (listed first) and d2.
ANGLES = {"d1": 0, "d2": 5, "d3": 10, "d4": 20, "d5": 40, "d6": 90}


def task() -> tuple[RetrievalData, FakeEncoder]:
    corpus = {d: f"doc {d}" for d in ANGLES}
    vectors = {f"doc {d}": at(a) for d, a in ANGLES.items()} | {"claim one": at(0), "claim two": at(90)}
    qrels = {"q1": {"d3": 1, "d2": 1}, "q2": {"d6": 1}}
    data = RetrievalData("hand", corpus, {"q1": "claim one", "q2": "claim two"}, qrels, "fp")
    return data, FakeEncoder(vectors)


def run(**selection) -> object:
    data, enc = task()
    return mine(data, enc, enc, SelectionConfig(**selection), top_k=6)


def test_records_use_every_known_positive():
    result = run(num_negatives=2)
    q1, q2 = result.records
    assert q1["positive_ids"] == ["d3", "d2"] and q1["negative_ids"] == ["d1", "d4"]
    np.testing.assert_allclose(q1["positive_scores"], [math.cos(math.radians(10)), math.cos(math.radians(5))], 1e-5)
    np.testing.assert_allclose(q1["negative_scores"], [1.0, math.cos(math.radians(20))], 1e-5)
    assert q2["negative_ids"] == ["d5", "d4"]  # cos 50° > cos 70°
    assert result.counts["queries"] == 2 and result.counts["dropped_positive"] == 3


def test_false_negatives_window_only_vs_relative_margin():
    # hidden pass: only d3 known for q1; window-only takes d1 and the hidden positive d2 -> 1 false negative of 2
    fn = run(num_negatives=2).diagnostics
    assert fn["queries"] == 1 and fn["hidden_positives"] == 1 and fn["hidden_positives_retrieved"] == 1
    assert (fn["false_negatives"], fn["negatives_sampled"], fn["false_negative_rate"]) == (1, 2, 0.5)
    # relative 0.95: t = 0.95 cos 10° = 0.9356 drops d1 (1.0), d2 (0.996) and d4 (0.940): d5, d6 remain
    fn = run(num_negatives=2, margin="relative", relative=0.95).diagnostics
    assert (fn["false_negatives"], fn["false_negative_rate"]) == (0, 0.0)
    assert fn["hidden_dropped_by"] == {"positive": 0, "duplicate": 0, "window": 0, "margin": 1}


def test_nothing_to_mine_is_one_clear_error():
    import dataclasses

    from embedlab.errors import ConfigError

    data, enc = task()
    unjudged = dataclasses.replace(data, qrels={"q1": {"unknown-doc": 1}})
    with pytest.raises(ConfigError, match="no query has a judged-relevant document"):
        mine(unjudged, enc, enc, SelectionConfig(), top_k=6)
    with pytest.raises(ConfigError, match="no query has"):
        mine(dataclasses.replace(data, corpus={}), enc, enc, SelectionConfig(), top_k=6)


def test_histogram_scores_split_kept_and_dropped():
    result = run(num_negatives=2, margin="relative", relative=0.95)
    assert len(result.scores["positives"]) == 3
    np.testing.assert_allclose(
        sorted(result.scores["dropped by margin"]), sorted([1.0, math.cos(math.radians(20))]), 1e-5
    )


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def small_scifact(real_data: Path, tmp_path_factory) -> Path:
    """SciFact train: 30 queries with their judged abstracts plus 150 other abstracts (a real, small corpus)."""
    from embedlab.data import load_beir

    full = load_beir(real_data / "scifact", split="train")
    out = tmp_path_factory.mktemp("scifact_small")
    (out / "qrels").mkdir()
    queries = list(full.qrels)[:30]
    lines = [f"{q}\t{d}\t{rel}" for q in queries for d, rel in full.qrels[q].items()]
    (out / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(lines) + "\n")
    judged = {d for q in queries for d in full.qrels[q]}
    others = [d for d in full.corpus if d not in judged][:150]
    docs = [{"_id": d, "title": "", "text": full.corpus[d]} for d in [*judged, *others] if d in full.corpus]
    (out / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (out / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": full.queries[q]}) + "\n" for q in queries))
    return out


def mine_cli(out: Path, data: Path, *overrides: str, env) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "embedlab.cli.mine", f"hydra.run.dir={out}", f"data.path={data}", *overrides]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def mined(small_scifact: Path, tmp_path_factory, env) -> Path:
    out = tmp_path_factory.mktemp("mined") / "run"
    proc = mine_cli(out, small_scifact, "mining=adaptive", "mining.num_negatives=4", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_embedlab_mine_writes_a_training_file(small_scifact: Path, mined: Path) -> None:
    out = mined
    records = [json.loads(line) for line in (out / "negatives.jsonl").read_text().splitlines()]
    assert len(records) == 30
    for rec in records:
        assert set(rec["negative_ids"]).isdisjoint(rec["positive_ids"]) and len(rec["negative_ids"]) <= 4
        assert rec["negative_scores"] == sorted(rec["negative_scores"], reverse=True)
        assert max(rec["negative_scores"], default=-1) <= min(rec["positive_scores"])  # δ_min = 0
    report = json.loads((out / "mining_report.json").read_text())
    assert report["counts"]["queries"] == 30 and report["selection"]["margin"] == "adaptive"
    assert (out / "score_histogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"config.yaml", "manifest.json"} <= {p.name for p in out.iterdir()}
    # the file trains: embedlab's pair reader accepts it
    from embedlab.data.training import read_pairs

    pairs = read_pairs(small_scifact, "train", out / "negatives.jsonl", num_negatives=2)
    assert pairs and all(len(p.negatives) == 2 for p in pairs)


def test_embedlab_mine_blocked_search_writes_the_same_file(small_scifact: Path, mined: Path, env) -> None:
    """search.method=blocked (exact, corpus in blocks of 16 rows) mines the very file the flat index mined; the
    embeddings come from the module's cache, so only the search differs."""
    out = mined.parent / "blocked"
    overrides = ("mining=adaptive", "mining.num_negatives=4", "search.method=blocked", "search.block_rows=16")
    proc = mine_cli(out, small_scifact, *overrides, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "negatives.jsonl").read_bytes() == (mined / "negatives.jsonl").read_bytes()
    assert json.loads((out / "mining_report.json").read_text())["search"] == {"method": "blocked"}
    assert json.loads((mined / "mining_report.json").read_text())["search"] == {"method": "exact"}


def test_embedlab_mine_bad_config_fails_before_work(small_scifact: Path, tmp_path: Path, env) -> None:
    out = tmp_path / "bad"
    proc = mine_cli(out, small_scifact, "mining.max_rank=500", env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "beyond mining.top_k" in output and "Traceback" not in output
    assert not (out / "negatives.jsonl").exists()


def tiny_cross_encoder(folder: Path) -> Path:
    """A random tiny BERT cross-encoder with MiniLM's tokenizer, saved as a folder (none is packaged offline)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from embedlab.hub import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    config = AutoConfig.for_model(
        "bert", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        vocab_size=len(tok), num_labels=1,
    )  # fmt: skip
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def scored(small_scifact: Path, mined: Path, tmp_path_factory, env) -> tuple[Path, Path]:
    """embedlab-score over the mined lists with MiniLM as bi-encoder + a tiny reranker: (run dir, reranker)."""
    work = tmp_path_factory.mktemp("scored")
    reranker = tiny_cross_encoder(work / "tiny_reranker")
    out = work / "score"
    cmd = [
        sys.executable, "-m", "embedlab.cli.score", f"hydra.run.dir={out}", f"input={mined / 'negatives.jsonl'}",
        f"data.path={small_scifact}", "num_negatives=3", "teacher_scores=mpnet_reranker",
        "teacher_scores.teachers.0.model=minilm", f"teacher_scores.teachers.1.model={reranker}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return out, reranker


def test_embedlab_score_combines_a_bi_encoder_and_a_reranker(scored: tuple[Path, Path]) -> None:
    from embedlab.data.training import read_scored

    out, _ = scored
    records = [json.loads(line) for line in (out / "scored.jsonl").read_text().splitlines()]
    assert records and all(len(r["candidates"]) == 4 for r in records)
    for r in records:  # z-scored per teacher, then summed with weights 1 and 1
        parts = [np.asarray(v) for v in r["teacher_scores"].values()]
        z = sum((p - p.mean()) / p.std() for p in parts)
        np.testing.assert_allclose(r["scores"], z, atol=1e-4)
    assert len(read_scored(out / "scored.jsonl", num_candidates=4)) == len(records)  # a training file as is
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["models"]) == 2


def test_embedlab_train_reranker_on_scored_lists(scored: tuple[Path, Path], tmp_path: Path, env) -> None:
    lists, base = scored
    out = tmp_path / "reranker"
    cmd = [
        sys.executable, "-m", "embedlab.cli.reranker", f"hydra.run.dir={out}", f"input={lists / 'scored.jsonl'}",
        f"base={base}", "heldout=5", "trainer.max_steps=3", "max_length=64",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["heldout_lists"] == 5
    assert 0.0 <= metrics["after"]["top1_agreement"] <= 1.0 and -1.0 <= metrics["after"]["spearman"] <= 1.0
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out / "reranker")  # a plain transformers folder
    assert model.config.num_labels == 1 and (out / "reranker" / "model.safetensors").exists()


# ------------------------------------------------------------------------------------------ during training
def test_refresh_negatives_in_place():
    from embedlab.data.training import PairExample, TextExample
    from embedlab.lit.remining import refresh_negatives

    corpus = {"a": "A", "b": "B", "c": "C"}
    examples = [
        PairExample("q1", "Q1", "p", "P", ("a",), ("A",)),
        PairExample("q2", "Q2", "p", "P", ("a",), ("A",)),
        PairExample("q3", "Q3", "p", "P", ("b",), ("B",)),
        TextExample("t", "text"),
    ]
    records = [
        {"query_id": "q1", "negative_ids": ["c", "b"]},  # changes
        {"query_id": "q2", "negative_ids": []},  # mined short: keeps its old negative
        {"query_id": "q3", "negative_ids": ["b"]},  # same as before
    ]
    assert refresh_negatives(examples, records, corpus, num_negatives=1) == 1
    assert examples[0].negative_ids == ("c",) and examples[0].negatives == ("C",)
    assert examples[1].negative_ids == ("a",) and examples[2].negative_ids == ("b",)


def train_cli(out: Path, data: Path, *overrides: str, env) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "embedlab.cli.train",
        f"hydra.run.dir={out}",
        f"data.path={data}",
        "logger=csv",
        "data.batch_size=4",
        "data.max_length=32",
        "eval.limit=5",
        "eval.max_docs=50",
        "eval.before_training=false",
        "export=false",
        *overrides,
    ]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_train_mines_then_remines(small_scifact: Path, tmp_path: Path, env) -> None:
    out = tmp_path / "train"
    overrides = ["mining=relative", "data.num_negatives=2", "mining.refresh_every_n_steps=2", "trainer.max_steps=4"]
    proc = train_cli(out, small_scifact, *overrides, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    first = [json.loads(line) for line in (out / "mining" / "negatives.jsonl").read_text().splitlines()]
    assert len(first) == 30 and json.loads((out / "mining" / "mining_report.json").read_text())["counts"]
    for step in (2, 4):
        assert (out / "mining" / f"step_{step}" / "negatives.jsonl").exists()
    config = (out / "config.yaml").read_text()
    assert f"negatives_file: {out / 'mining' / 'negatives.jsonl'}" in config
    with open(next((out / "logs").glob("version_*/metrics.csv"))) as f:
        header = f.readline()
    assert "mining/pairs_changed" in header


def test_train_mines_scores_and_distils_in_one_command(small_scifact: Path, tmp_path: Path, env) -> None:
    out = tmp_path / "kl"
    overrides = [
        "mining=adaptive", "data.num_negatives=2", "teacher_scores=mpnet", "teacher_scores.teachers.0.model=minilm",
        "loss=[infonce,kl_distill]", "trainer.max_steps=2", "trainer.log_every_n_steps=1",
    ]  # fmt: skip
    proc = train_cli(out, small_scifact, *overrides, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    lists = [json.loads(line) for line in (out / "mining" / "scored.jsonl").read_text().splitlines()]
    assert lists and all(len(r["candidates"]) == 3 for r in lists)
    config = OmegaConf.load(out / "config.yaml")
    assert (config.data.kind, config.data.num_candidates) == ("scored", 3)
    with open(next((out / "logs").glob("version_*/metrics.csv"))) as f:
        header = f.readline()
    assert "train/kl_distill" in header and "train/infonce" in header


def test_train_mining_needs_negatives_before_work(small_scifact: Path, tmp_path: Path, env) -> None:
    out = tmp_path / "bad"
    proc = train_cli(out, small_scifact, "mining=adaptive", env=env)  # data.num_negatives defaults to 0
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "data.num_negatives" in output and "Traceback" not in output
    assert not (out / "mining").exists()
    for overrides, message in [
        (["teacher_scores=mpnet"], "choose a mining preset"),
        (["mining=relative", "data.num_negatives=1", "teacher_scores=reranker"], "teachers[0].model is required"),
    ]:
        proc = train_cli(tmp_path / "bad2", small_scifact, *overrides, env=env)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 2 and message in output and "Traceback" not in output, output[-2000:]
