"""Instructions per task, few-shot examples, prompt tokens left out of pooling (as sentence-transformers does)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from embedlab.data.collate import Collator
from embedlab.data.training import PairExample
from embedlab.errors import ConfigError
from embedlab.eval.cache import EmbeddingCache, encode_cached
from embedlab.models import Encoder
from embedlab.models.pooling import drop_prompt, pool
from embedlab.models.prompts import FewShot, query_prompts
from tests.tiny import TEXTS
from tests.tiny_decoder import tiny_decoder_folder

INSTRUCTIONS = {"default": "find related text", "scifact": "check the claim"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tiny_decoder_folder(tmp_path_factory.mktemp("prompts") / "qwen2", "qwen2")


@pytest.fixture(scope="module")
def pool_folder(tmp_path_factory) -> Path:
    """A BEIR folder whose train split gives 6 (query, passage) pairs."""
    root = tmp_path_factory.mktemp("beir")
    (root / "qrels").mkdir()
    docs = [{"_id": f"d{i}", "title": "", "text": f"{t} and more words here"} for i, t in enumerate(TEXTS[:6])]
    queries = [{"_id": f"q{i}", "text": t} for i, t in enumerate(TEXTS[6:12])]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(6))
    )
    return root


def test_instruction_per_task() -> None:
    prompts = query_prompts(INSTRUCTIONS)
    assert prompts == {
        "default": "Instruct: find related text\nQuery: ",
        "scifact": "Instruct: check the claim\nQuery: ",
    }
    assert query_prompts(None) == {}
    with pytest.raises(ConfigError, match="scifact"):
        query_prompts({"scifact": "  "})


def test_few_shot_deterministic_and_before_the_instruction(pool_folder: Path) -> None:
    shots = FewShot(k=2, path=str(pool_folder), seed=3, passage_words=3)
    first = query_prompts(INSTRUCTIONS, shots)
    assert first == query_prompts(INSTRUCTIONS, shots)  # same seed, same examples in the same order
    others = {query_prompts(INSTRUCTIONS, FewShot(k=2, path=str(pool_folder), seed=s))["scifact"] for s in range(6)}
    assert len(others) > 1  # the seed really chooses
    prompt = first["scifact"]
    assert prompt.count("Example query: ") == 2 and prompt.endswith("Instruct: check the claim\nQuery: ")
    assert prompt.index("Example passage:") < prompt.index("Instruct:")
    passages = [line.removeprefix("Example passage: ") for line in prompt.splitlines() if "passage" in line]
    assert all(len(p.split()) == 3 for p in passages)  # cut to passage_words
    assert first["default"].removesuffix("Instruct: find related text\nQuery: ") == prompt.removesuffix(
        "Instruct: check the claim\nQuery: "
    )  # one set of examples for every task of the run


def test_few_shot_errors_are_named(pool_folder: Path) -> None:
    with pytest.raises(ConfigError, match="only 6"):
        query_prompts(INSTRUCTIONS, FewShot(k=7, path=str(pool_folder)))
    with pytest.raises(ConfigError, match=r"few_shot\.path"):
        query_prompts(INSTRUCTIONS, FewShot(k=1))
    with pytest.raises(ConfigError, match="instruction"):
        query_prompts(None, FewShot(k=1, path=str(pool_folder)))
    with pytest.raises(ConfigError, match="shots"):
        FewShot.from_node({"shots": 2})


@pytest.mark.parametrize("left", [False, True])
def test_drop_prompt_by_hand(left: bool) -> None:
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]] if left else [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    expected = [[0, 0, 0, 0, 1], [0, 0, 1, 1, 1]] if left else [[0, 0, 1, 0, 0], [0, 0, 1, 1, 1]]
    assert drop_prompt(mask, 2).tolist() == expected
    assert drop_prompt(mask, torch.tensor([2, 2])).tolist() == expected
    assert drop_prompt(mask, 0).tolist() == mask.tolist()


@pytest.mark.parametrize("side", ["left", "right"])
def test_prompt_left_out_of_mean_pooling_matches_sentence_transformers(folder, tmp_path, side: str) -> None:
    from sentence_transformers import SentenceTransformer

    enc = Encoder.from_pretrained(
        str(folder),
        bidirectional=True,
        instructions=INSTRUCTIONS,
        include_prompt=False,
        padding_side=side,
        normalize=False,
    )
    with_prompt = Encoder.from_pretrained(str(folder), bidirectional=True, instructions=INSTRUCTIONS)
    ours = enc.encode_queries(TEXTS, task="scifact")
    assert np.abs(ours - with_prompt.encode_queries(TEXTS, task="scifact")).max() > 1e-3
    # by hand: the prompted text's states, averaged over the text tokens only
    batch = enc.tokenize(TEXTS[:2], enc.query_prompt_for("scifact"))
    hidden = enc.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    n = len(enc.tokenizer(enc.query_prompt_for("scifact"))["input_ids"])
    by_hand = pool(hidden, drop_prompt(batch["attention_mask"], n), "mean")
    np.testing.assert_allclose(ours[:2], by_hand.detach().numpy(), atol=1e-5)
    st = SentenceTransformer(str(enc.save(tmp_path / "m")), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS, prompt_name="scifact"), ours, atol=1e-5)
    assert Encoder.from_pretrained(str(tmp_path / "m")).include_prompt is False


def test_training_batches_carry_prompt_lengths(folder: Path) -> None:
    enc = Encoder.from_pretrained(str(folder), instructions=INSTRUCTIONS, include_prompt=False)
    pairs = [PairExample(f"q{i}", t, f"d{i}", TEXTS[-1 - i]) for i, t in enumerate(TEXTS[:4])]
    batch = Collator.for_encoder(enc)(list(enumerate(pairs)))
    assert batch["query"]["prompt_length"].shape == (4,) and "prompt_length" not in batch["documents"]
    with torch.no_grad():
        trained_view = enc(**batch["query"]).numpy()
    np.testing.assert_allclose(trained_view, enc.encode_queries(TEXTS[:4]), atol=1e-5)  # train = eval vectors
    assert (
        "prompt_length"
        not in Collator.for_encoder(Encoder.from_pretrained(str(folder)))(list(enumerate(pairs)))["query"]
    )


def test_evaluation_uses_each_tasks_instruction(folder: Path, tmp_path: Path) -> None:
    enc = Encoder.from_pretrained(str(folder), instructions=INSTRUCTIONS)
    cache = EmbeddingCache(tmp_path / "cache")
    scifact = encode_cached(enc, TEXTS, kind="query", cache=cache, batch_size=8, task="scifact")
    other = encode_cached(enc, TEXTS, kind="query", cache=cache, batch_size=8, task="arguana")
    np.testing.assert_allclose(scifact, enc.encode(TEXTS, prompt="Instruct: check the claim\nQuery: "), atol=1e-6)
    np.testing.assert_allclose(other, enc.encode(TEXTS, prompt="Instruct: find related text\nQuery: "), atol=1e-6)


def test_prompt_longer_than_max_length_is_refused(folder: Path) -> None:
    with pytest.raises(ConfigError, match="max_length"):
        Encoder.from_pretrained(str(folder), instructions={"default": "word " * 40}, max_length=16)


def test_training_length_too_short_for_the_prompt_is_refused(folder: Path) -> None:
    enc = Encoder.from_pretrained(str(folder), instructions=INSTRUCTIONS)
    with pytest.raises(ConfigError, match=r"data\.max_length=8"):
        Collator.for_encoder(enc, max_length=8)
