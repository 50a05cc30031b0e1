"""GradCache as a step strategy: same loss and gradients as the plain step, for every kind of loss, with dropout
replayed and autocast restored. Tolerances: float32, gradients within 1e-5 absolute / 1e-4 relative (the chunked
pass sums the same terms in a different order)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from tiny import QUIET, TEXTS, tiny_encoder, unit_rows
from transformers import AutoConfig, AutoModel

from embedlab.data.collate import Collator
from embedlab.data.training import PairExample, ScoredExample, TextExample
from embedlab.errors import ConfigError
from embedlab.lit.datamodule import EmbeddingDataModule
from embedlab.lit.gradcache import GradCache, chunk_inputs, chunk_rows, row_ends
from embedlab.lit.module import EmbeddingModule
from embedlab.lit.optim import OptimConfig
from embedlab.lit.teacher import TeacherTable
from embedlab.losses import Embeddings, build_loss
from embedlab.models import Encoder

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # bare steps, no Trainer


def pairs(n: int = 7, k: int = 0) -> list[PairExample]:
    """n pairs with k hard negatives each; queries 0 and 1 share a positive (exercises the document mask)."""
    out = []
    for i in range(n):
        pos = 0 if i == 1 else i
        negs = tuple(TEXTS[(i + 8 + j) % 16] for j in range(k))
        out.append(
            PairExample(
                f"q{i}", TEXTS[i % 16], f"d{pos}", TEXTS[(pos + 4) % 16], tuple(f"n{i}{j}" for j in range(k)), negs
            )
        )
    return out


def batch_of(tok, examples) -> dict:
    return Collator(tok, 32)(list(enumerate(examples)))


def step(module: EmbeddingModule, batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    """One training step's loss and parameter gradients, through the module's own hooks (as Lightning calls them)."""
    module.zero_grad(set_to_none=True)
    loss = module.training_step(batch, 0)
    module.backward(loss)
    return float(loss.detach()), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def assert_same_step(a: tuple[float, dict], b: tuple[float, dict]) -> None:
    assert a[0] == pytest.approx(b[0], rel=1e-6, abs=1e-6)
    assert a[1].keys() == b[1].keys() and len(a[1]) > 10
    for name, grad in a[1].items():
        torch.testing.assert_close(grad, b[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_chunk_inputs_cut_trailing_padding() -> None:
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 0, 0]])
    inputs = {"input_ids": torch.arange(12).view(3, 4), "attention_mask": mask, "weights": torch.ones(3)}
    chunks = list(chunk_inputs(inputs, 2))
    assert [c["input_ids"].tolist() for c in chunks] == [[[0, 1, 2], [4, 5, 6]], [[8, 9]]]
    assert [c["weights"].tolist() for c in chunks] == [[1, 1], [1]]
    left = {"input_ids": torch.zeros(2, 3), "attention_mask": torch.tensor([[0, 1, 1], [0, 0, 1]])}
    assert [c["attention_mask"].shape[1] for c in chunk_inputs(left, 1)] == [3, 3]  # left padding keeps its width
    with pytest.raises(ConfigError, match="chunk_size"):
        GradCache(0)
    with pytest.raises(ConfigError, match="chunk_tokens"):
        GradCache(None, 0)
    with pytest.raises(ConfigError, match=r"chunk_size .* or step\.chunk_tokens"):
        GradCache(None, None)


def test_token_budget_chunks_by_hand() -> None:
    """Rows longest first; each chunk at most `max_tokens` padded tokens (rows × its longest row) and `chunk_size`
    rows; a row longer than the budget alone; every row exactly once."""
    ends = [3, 9, 2, 5, 5, 1, 4]
    mask = torch.zeros(len(ends), 10, dtype=torch.long)
    for i, n in enumerate(ends):
        mask[i, :n] = 1
    assert row_ends(mask).tolist() == ends
    chunks = [c.tolist() for c in chunk_rows(mask, None, 8)]
    # sorted: 9 (over budget, alone) | 5, 5 (10 > 8: split) | ... hand-checked greedy packing
    assert chunks == [[1], [3], [4], [6, 0], [2, 5]]  # 9 | 5 | 5 | 4,3 → 8 | 2,1 → 4
    assert [c.tolist() for c in chunk_rows(mask, 1, 100)] == [[1], [3], [4], [6], [0], [2], [5]]
    assert [c.tolist() for c in chunk_rows(mask, 3, 16)] == [[1], [3, 4, 6], [0, 2, 5]]  # 5·3 = 15, 3·3 = 9
    assert [c.tolist() for c in chunk_rows(mask, 3, None)] == [[0, 1, 2], [3, 4, 5], [6]]  # no budget: batch order
    inputs = {"input_ids": torch.arange(70).view(7, 10), "attention_mask": mask, "prompt_length": torch.arange(7)}
    cut = list(chunk_inputs(inputs, None, 8))
    assert [c["input_ids"].shape for c in cut] == [(1, 9), (1, 5), (1, 5), (2, 4), (2, 2)]
    assert cut[3]["input_ids"].tolist() == [list(range(60, 64)), list(range(0, 4))]
    assert cut[3]["prompt_length"].tolist() == [6, 0]  # per-row tensors follow their rows
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])  # left padding: every row ends at the full width
    assert row_ends(left).tolist() == [4, 4] and [c.tolist() for c in chunk_rows(left, None, 8)] == [[0, 1]]


LOSSES = {
    "infonce + 2 hard negatives": ({"infonce": {"temperature": 0.05}}, "pairs"),
    "focal infonce, matryoshka": ({"focal_infonce": {"gamma": 2.0, "matryoshka_dims": [4, 8]}}, "pairs"),
    "symmetric infonce + hard-negative mixing": (
        {"infonce": {"symmetric": True, "hn_mixing": {"enabled": True, "num": 3, "top_k": 4}}},
        "pairs",
    ),
    "leaf": ({"leaf": {}}, "texts"),
    "kl_distill + infonce on scored lists": ({"kl_distill": {}, "infonce": {}}, "scored"),
}


def data_for(kind: str):
    if kind == "pairs":
        return pairs(7, k=2)
    if kind == "texts":
        return [TextExample(f"t{i}", t) for i, t in enumerate(TEXTS[:7])]
    return [
        ScoredExample(f"q{i}", TEXTS[i], ("a", f"b{i}", f"c{i}"), tuple(TEXTS[i + 1 : i + 4]), (3, 1, i))
        for i in range(5)
    ]


# (chunk_size, chunk_tokens): rows only; a token budget alone (chunks of mixed row counts, rows reordered); both;
# a budget below the longest text, so that text is a chunk of its own, over the budget.
CHUNKINGS = [(1, None), (3, None), (64, None), (None, 40), (2, 40), (None, 6)]


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("chunking", CHUNKINGS, ids=lambda c: f"rows{c[0]}-tokens{c[1]}")
def test_gradcache_step_equals_the_plain_step(tok, name: str, chunking: tuple) -> None:
    config, kind = LOSSES[name]
    table = TeacherTable(unit_rows(16, 16, seed=1), "random") if kind == "texts" else None

    def module(chunks: tuple | None) -> EmbeddingModule:
        torch.manual_seed(0)  # hard-negative mixing draws random coefficients: same draws on both sides
        size, tokens = chunks or (None, None)
        return EmbeddingModule(
            tiny_encoder(tok), build_loss(config), teacher_table=table, chunk_size=size, chunk_tokens=tokens
        )

    batch = batch_of(tok, data_for(kind))
    plain = module(None)
    torch.manual_seed(1)
    expected = step(plain, batch)
    cached = module(chunking)
    torch.manual_seed(1)
    got = step(cached, batch)
    assert_same_step(got, expected)
    assert not cached.grad_cache.pending


def test_token_budget_chunks_hold_what_the_budget_says(tok) -> None:
    """The chunks the step really encodes: within the budget (but a lone over-budget text), every row once, and
    more rows per chunk for short texts than for long ones."""
    examples = [PairExample(f"q{i}", TEXTS[i], f"d{i}", " ".join(TEXTS[: 1 + i % 8]), (), ()) for i in range(12)]
    batch = batch_of(tok, examples)
    seen = []
    module = EmbeddingModule(tiny_encoder(tok), build_loss({"infonce": {}}), chunk_tokens=24)
    forward = module.student.forward
    module.student.forward = lambda **kw: seen.append(kw["attention_mask"].shape) or forward(**kw)
    module.training_step(batch, 0)
    assert sum(rows for rows, _ in seen) == 2 * len(examples)
    assert all(rows * width <= 24 or rows == 1 for rows, width in seen)
    assert any(rows == 1 and width > 24 for rows, width in seen)  # the longest documents exceed it, alone
    assert max(rows for rows, width in seen if width <= 12) > max(rows for rows, width in seen if width > 24)


def dropout_encoder(tok) -> Encoder:
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "bert", num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=len(tok)
    )  # BERT's default dropout 0.1
    return Encoder(AutoModel.from_config(config), tok, max_length=64).train()


def test_dropout_masks_are_replayed(tok) -> None:
    """With dropout on, the gradient equals that of a step that encodes the same chunks with autograd under the same
    random stream — which only holds if the re-encoding replays each chunk's masks."""
    batch = batch_of(tok, pairs(6))
    module = EmbeddingModule(dropout_encoder(tok), build_loss({"infonce": {}}), chunk_size=2)
    torch.manual_seed(7)
    got = step(module, batch)

    # The reference: the same chunked forward, with autograd, then the loss on the concatenation.
    module.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    vectors = {g: torch.cat([module.student(**c) for c in chunk_inputs(batch[g], 2)]) for g in ("query", "documents")}
    emb = Embeddings(query=vectors["query"], positive=vectors["documents"], document_mask=batch["document_mask"])
    loss = module.loss(emb).value
    loss.backward()
    expected = (float(loss), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None})
    assert_same_step(got, expected)

    torch.manual_seed(8)  # other masks, other gradient: the comparison above is not vacuous
    other = step(module, batch)
    weight = "student.backbone.encoder.layer.0.output.dense.weight"
    assert not torch.allclose(other[1][weight], got[1][weight])


def test_autocast_is_restored_for_the_replayed_pass(tok) -> None:
    """Lightning runs the step under autocast but the backward hook outside it: the re-encoding must run in the
    precision of the first pass."""
    module = EmbeddingModule(tiny_encoder(tok), build_loss({"infonce": {}}), chunk_size=2)
    seen = []
    forward = module.student.forward
    module.student.forward = lambda **kw: seen.append(torch.is_autocast_enabled("cpu")) or forward(**kw)
    batch = batch_of(tok, pairs(4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = module.training_step(batch, 0)
    module.backward(loss)
    assert seen == [True] * 7  # 2 query + 2 document chunks, then 3 replayed under autocast (the last one is kept)


def test_the_last_chunk_is_encoded_once_and_its_graph_freed_after_backward(tok) -> None:
    """N chunks cost 2N - 1 encodings: every chunk without autograd but the step's last, kept with its graph; the
    re-encoding pass starts from it, and once backward is done nothing holds it."""
    import weakref

    module = EmbeddingModule(tiny_encoder(tok), build_loss({"infonce": {}}), chunk_size=2)
    calls, kept = [], []
    forward = module.student.forward

    def counted(**kw):
        out = forward(**kw)
        calls.append(torch.is_grad_enabled())
        kept.append(weakref.ref(out))
        return out

    module.student.forward = counted
    batch = batch_of(tok, pairs(6))  # 3 query chunks + 3 document chunks
    loss = module.training_step(batch, 0)
    assert calls == [False] * 5 + [True]  # the sixth (last document chunk) with autograd
    assert kept[-1]() is not None  # alive while the step waits for backward
    module.backward(loss)
    assert calls[6:] == [True] * 5  # only the other five are encoded again
    assert kept[5]() is None  # the kept chunk's output (and so its graph) is gone


def test_gradcache_trains_like_the_plain_step_in_a_trainer(tok) -> None:
    """Three optimizer steps through Lightning (clipping, schedule, AdamW) land on the same weights."""
    examples = pairs(16)
    optim = OptimConfig(lr=1e-3, warmup_ratio=0.0)

    def train(chunk_size: int | None, chunk_tokens: int | None = None) -> dict[str, torch.Tensor]:
        loss = build_loss({"infonce": {}})
        module = EmbeddingModule(tiny_encoder(tok), loss, optim, chunk_size=chunk_size, chunk_tokens=chunk_tokens)
        dm = EmbeddingDataModule(examples, Collator(tok, 32), batch_size=8, seed=0)
        pl.seed_everything(0)
        pl.Trainer(max_steps=3, logger=False, gradient_clip_val=1.0, **QUIET).fit(module, datamodule=dm)
        return {k: v.clone() for k, v in module.student.state_dict().items()}

    plain, cached, budgeted = train(None), train(3), train(None, 30)  # 30 tokens: 2-4 short texts per chunk
    moved = any(not torch.equal(v, tiny_encoder(tok).state_dict()[k]) for k, v in plain.items())
    assert moved
    for key, value in plain.items():
        torch.testing.assert_close(cached[key], value, atol=1e-5, rtol=1e-4, msg=key)
        # Adam's first update is about lr·sign(g): where an entry of g is ~0, summation-order noise (the chunks differ)
        # moves it by a fraction of lr = 1e-3 (3e-5 seen here); a wrong gradient would move many entries by ~lr.
        torch.testing.assert_close(budgeted[key], value, atol=1e-4, rtol=1e-4, msg=key)
