"""Soft labels: per-query normalisation and combination by hand, the two scorers against direct computation,
mined-list reading errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import FakeEncoder, at
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from embedlab.errors import ConfigError, DataFormatError
from embedlab.hub import resolve_model
from embedlab.scoring.combine import combine_scores, normalize_per_query
from embedlab.scoring.lists import read_mined_lists, score_lists, scored_records
from embedlab.scoring.scorers import BiEncoderScorer, CrossEncoderScorer


def test_normalisations_by_hand():
    s = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    z = normalize_per_query(s, "zscore")
    np.testing.assert_allclose(z[0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])  # std of (1, 2, 3) is sqrt(2/3)
    assert z[1].tolist() == [0.0, 0.0, 0.0]  # a flat list carries no preference
    np.testing.assert_allclose(normalize_per_query(s, "minmax"), [[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]])
    assert normalize_per_query(s, "none").tolist() == s.tolist()
    with pytest.raises(ConfigError, match="normalisation"):
        normalize_per_query(s, "softmax")


def test_combination_is_a_weighted_sum_of_normalised_lists():
    cos = np.array([[0.9, 0.8, 0.1]])
    logits = np.array([[12.0, 3.0, 6.0]])  # another scale entirely
    out = combine_scores([cos, logits], [1.0, 0.5], "minmax")
    np.testing.assert_allclose(out, [[1.0 + 0.5, 0.875 + 0.0, 0.0 + 0.5 * 3 / 9]])
    with pytest.raises(ConfigError, match="one weight per teacher"):
        combine_scores([cos], [1.0, 2.0])
    with pytest.raises(ConfigError, match="different lists"):
        combine_scores([cos, np.zeros((1, 2))], [1.0, 1.0])


def test_bi_encoder_scores_are_cosines():
    enc = FakeEncoder({"q": at(0), "a": at(60), "b": at(90), "c": at(0)})
    scores = BiEncoderScorer(enc).score(["q", "q"], [["a", "b"], ["c", "a"]])
    np.testing.assert_allclose(scores, [[0.5, 0.0], [1.0, 0.5]], atol=1e-6)
    assert enc.calls["document"] == 1 and sorted(enc.encoded[2:]) == ["a", "b", "c"]  # each document once
    with pytest.raises(ConfigError, match="same, non-zero number of candidates"):
        BiEncoderScorer(enc).score(["q", "q"], [["a"], ["a", "b"]])


def build_tiny_reranker():
    """A random 2-layer BERT cross-encoder, seeded, without dropout: at width 32 dropout's noise swamps what 20 steps
    learn (with it the list KL fell by 10-20% over seeds 0-3, without it by 81-88%)."""
    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=len(tok), num_labels=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return AutoModelForSequenceClassification.from_config(config), tok


@pytest.fixture(scope="module")
def tiny_reranker():
    return build_tiny_reranker()


def test_cross_encoder_batched_scores_match_one_pair_at_a_time(tiny_reranker):
    model, tok = tiny_reranker
    queries = ["what do whales eat", "is coffee bad for sleep"]
    candidates = [["krill and small fish", "a long text " * 20, "volcanoes"], ["caffeine delays sleep", "b", "c d"]]
    scorer = CrossEncoderScorer("tiny", model=model, tokenizer=tok, batch_size=2, max_length=64)
    scores = scorer.score(queries, candidates)
    model.eval()
    with torch.no_grad():
        for i, q in enumerate(queries):
            for j, d in enumerate(candidates[i]):
                one = tok(q, d, truncation="longest_first", max_length=64, return_tensors="pt")
                assert scores[i, j] == pytest.approx(float(model(**one).logits[0, 0]), abs=1e-5)
    assert len(scorer.fingerprint()) == 64


def write_mined(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_mined_lists_are_rectangular_and_errors_are_located(tmp_path: Path):
    corpus = {"p": "P", "a": "A", "b": "B"}
    ok = {"query_id": "q1", "query": "Q1", "positive_ids": ["p"], "negative_ids": ["a", "b"]}
    short = {"query_id": "q2", "query": "Q2", "positive_ids": ["p"], "negative_ids": ["a"]}
    lists = read_mined_lists(write_mined(tmp_path / "m.jsonl", [ok, short]), corpus, num_negatives=2)
    assert lists.candidate_ids == [["p", "a", "b"]] and lists.skipped == 1
    combined, raw = score_lists(lists, corpus, [(BiEncoderScorer(FakeEncoder()), 1.0)], "none")
    rec = scored_records(lists, corpus, combined, raw)[0]
    assert rec["candidates"] == ["P", "A", "B"] and list(rec["teacher_scores"]) == ["bi-encoder fake"]
    bad = write_mined(tmp_path / "bad.jsonl", [ok, {**ok, "query_id": "q3", "negative_ids": ["zz"]}])
    with pytest.raises(DataFormatError, match=r"bad.jsonl, line 2: field 'negative_ids'.*zz"):
        read_mined_lists(bad, corpus, 1)
    with pytest.raises(DataFormatError, match="line 1: field 'positive_ids'"):
        read_mined_lists(write_mined(tmp_path / "np.jsonl", [{**ok, "positive_ids": []}]), corpus, 1)
    with pytest.raises(DataFormatError, match="no query has 5 negatives"):
        read_mined_lists(tmp_path / "m.jsonl", corpus, 5)
    with pytest.raises(ConfigError, match="no teacher"):
        score_lists(lists, corpus, [], "zscore")


def test_reranker_steps_reduce_the_list_kl():
    import pytorch_lightning as pl

    from embedlab.data.training import ScoredExample
    from embedlab.lit.optim import OptimConfig
    from embedlab.lit.reranker import PairCollator, RerankerModule

    model, tok = build_tiny_reranker()  # its own: the module's shared one is whatever earlier tests left
    docs = ["krill", "coffee", "volcano", "violin"]
    scores = [(4.0, 0.0, -2.0, float(i)) for i in range(4)]  # a different target list per query
    lists = [ScoredExample(f"q{i}", f"question {i}", tuple("abcd"), tuple(docs), scores[i]) for i in range(4)]
    collate = PairCollator(tok, 32)
    batch = collate(lists)
    assert batch["pairs"]["input_ids"].shape[0] == 16 and batch["teacher_scores"].shape == (4, 4)
    optim = OptimConfig(lr=1e-3, projection_lr=1e-2, warmup_ratio=0.0, schedule="constant")
    module = RerankerModule(model, optim)

    before = _kl(module, batch)
    loader = torch.utils.data.DataLoader(lists, batch_size=4, collate_fn=collate)
    quiet = {"enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
    trainer = pl.Trainer(max_steps=20, logger=False, **quiet)
    trainer.fit(module, train_dataloaders=loader)
    assert _kl(module, batch) < 0.5 * before


def _kl(module, batch) -> float:
    from embedlab.losses.kl_distill import list_kl

    was_training = module.model.training
    module.model.eval()
    with torch.no_grad():
        value = float(list_kl(module.list_logits(batch), batch["teacher_scores"], 1.0).value)
    module.model.train(was_training)
    return value


def test_two_candidate_lists_z_score_to_plus_minus_one_whatever_the_teacher_says():
    """Why K = 1 soft labels carried nothing (experiments/README.md, "Does mining help fine-tuning?")."""
    z = normalize_per_query(np.array([[0.9, 0.1], [0.51, 0.5], [0.2, 0.3]]), "zscore")
    np.testing.assert_allclose(z, [[1, -1], [1, -1], [-1, 1]])


def test_training_soft_labels_span_the_whole_mined_list(tmp_path: Path, monkeypatch):
    """embedlab-train's mine → score → train path with K = 3 negatives of 5 mined: the target is softmax over the
    z-scored teacher cosines of all 4 candidates, by hand. A list cut to 2 candidates would read ±1 instead."""
    from omegaconf import OmegaConf

    from embedlab.data.training import read_scored
    from embedlab.losses.kl_distill import list_kl
    from embedlab.training import negatives as prep

    cosines = {"P": 0.8, "A": 0.6, "B": 0.4, "C": 0.2, "D": 0.1, "E": 0.0}
    vectors = {"claim": at(0), **{t: at(np.degrees(np.arccos(c))) for t, c in cosines.items()}}
    monkeypatch.setattr(prep, "build_scorer", lambda t, batch_size, cache: BiEncoderScorer(FakeEncoder(vectors)))
    corpus = {t.lower(): t for t in cosines}
    mined = {"query_id": "q1", "query": "claim", "positive_ids": ["p"], "negative_ids": ["a", "b", "c", "d", "e"]}
    negatives = write_mined(tmp_path / "negatives.jsonl", [mined])
    cfg = OmegaConf.create({
        "data": {"kind": "pairs", "path": "scifact", "num_negatives": 3}, "eval": {"batch_size": 8},
        "teacher_scores": {"normalize": "zscore", "teachers": [{"kind": "bi_encoder", "model": "fake", "weight": 1.0}]},
    })  # fmt: skip
    prep.score_before_training(cfg, corpus, negatives, cache=None)
    assert (cfg.data.kind, cfg.data.num_candidates) == ("scored", 4)
    [example] = read_scored(cfg.data.path, cfg.data.num_candidates)
    assert example.candidate_ids == ("p", "a", "b", "c")
    # mean 0.5, std sqrt(0.05): z = ±0.3/0.2236 = ±1.3416, ±0.1/0.2236 = ±0.4472
    np.testing.assert_allclose(example.scores, [1.3416408, 0.4472136, -0.4472136, -1.3416408], atol=1e-5)
    target = torch.softmax(torch.tensor(example.scores), dim=0)  # kl_distill's P^t at τ_t = 1
    np.testing.assert_allclose(target, [0.60812, 0.24865, 0.10166, 0.04157], atol=1e-4)  # e^z / 6.28969
    exact = target.log().unsqueeze(0)  # a student matching the target has zero KL: the loss reads the same list
    assert float(list_kl(exact, torch.tensor([example.scores]), 1.0).value) == pytest.approx(0.0, abs=1e-6)
