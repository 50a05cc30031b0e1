"""Training machinery on tiny random BERTs: optimiser groups and schedules, ridge projection, layer truncation,
teacher tables, the Lightning module (embed, config checks, a few real steps, checkpoints), the eval callback."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from tiny import QUIET, TEXTS, leaf_module, text_examples, tiny_bert, tiny_encoder, unit_rows

from embedlab.data.collate import Collator
from embedlab.data.training import PairExample, ScoredExample
from embedlab.errors import ConfigError, DataFormatError
from embedlab.eval.cache import EmbeddingCache
from embedlab.lit.datamodule import EmbeddingDataModule
from embedlab.lit.module import EmbeddingModule
from embedlab.lit.optim import OptimConfig, lr_lambda, parameter_groups
from embedlab.lit.teacher import TeacherTable
from embedlab.losses import build_loss
from embedlab.models import Encoder
from embedlab.models.projection import fit_ridge
from embedlab.models.truncate import truncate_layers


# ------------------------------------------------------------------------------------------------- optim
def test_parameter_groups(tok) -> None:
    enc = tiny_encoder(tok)
    enc.backbone.embeddings.requires_grad_(False)
    cfg = OptimConfig(lr=1e-4, projection_lr=1e-2, weight_decay=0.05)
    groups = {g["name"]: g for g in parameter_groups(enc, cfg)}
    assert set(groups) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    names = {id(p): n for n, p in enc.named_parameters()}
    in_group = {k: {names[id(p)] for p in g["params"]} for k, g in groups.items()}
    assert in_group["head"] == {"projection.weight"} and in_group["head_no_decay"] == {"projection.bias"}
    assert "backbone.encoder.layer.0.attention.output.LayerNorm.weight" in in_group["backbone_no_decay"]
    assert all(n.endswith(("bias", "LayerNorm.weight")) for n in in_group["backbone_no_decay"])
    assert all(n.endswith("weight") and "LayerNorm" not in n for n in in_group["backbone"])
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert set().union(*in_group.values()) == trainable and not any(n.startswith("backbone.emb") for n in trainable)
    decay = {k: g["weight_decay"] for k, g in groups.items()}
    assert decay == {"backbone": 0.05, "backbone_no_decay": 0.0, "head": 0.05, "head_no_decay": 0.0}
    assert groups["head"]["lr"] == groups["head_no_decay"]["lr"] == 1e-2 and groups["backbone"]["lr"] == 1e-4
    same = parameter_groups(enc, OptimConfig(lr=1e-4, projection_lr=None))
    assert {g["lr"] for g in same} == {1e-4}


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [  # 10 steps, warmup 2: steps 0, 1 ramp; then decay over 8 steps
        ("linear", {0: 0.5, 1: 1.0, 2: 1.0, 6: 0.5, 8: 0.25, 10: 0.0}),
        ("cosine", {0: 0.5, 1: 1.0, 2: 1.0, 4: 0.5 * (1 + math.cos(math.pi / 4)), 6: 0.5, 10: 0.0}),
        ("constant", {0: 0.5, 1: 1.0, 5: 1.0, 9: 1.0}),
    ],
)
def test_lr_lambda_hand_values(schedule: str, expected: dict) -> None:
    factor = lr_lambda(10, OptimConfig(warmup_ratio=0.2, schedule=schedule))
    assert {s: factor(s) for s in expected} == pytest.approx(expected)
    assert lr_lambda(10, OptimConfig(warmup_ratio=0.0, schedule=schedule))(0) == 1.0


@pytest.mark.parametrize(
    "kwargs", [{"schedule": "step"}, {"lr": 0.0}, {"lr": -1e-5}, {"projection_lr": 0.0}, {"warmup_ratio": 1.0}]
)
def test_bad_optim_config(kwargs: dict) -> None:
    """Checked once, where it is built: no OptimConfig that the schedule or the module could receive is invalid."""
    with pytest.raises(ConfigError):
        OptimConfig(**kwargs)


# ------------------------------------------------------------------------------------------------- projection
def test_fit_ridge_recovers_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8))
    w, b = rng.standard_normal((5, 8)), rng.standard_normal(5)
    y = x @ w.T + b + 1e-6 * rng.standard_normal((300, 5))
    weight, bias = fit_ridge(x, y, ridge=0.0)
    assert weight.shape == (5, 8) and bias.shape == (5,) and weight.dtype == np.float32
    np.testing.assert_allclose(weight, w, atol=1e-4)
    np.testing.assert_allclose(bias, b, atol=1e-4)
    shrunk, _ = fit_ridge(x, y, ridge=1.0)
    assert np.linalg.norm(shrunk) < 0.7 * np.linalg.norm(weight)
    with pytest.raises(ConfigError, match="300 feature rows but 299"):
        fit_ridge(x, y[:-1])
    with pytest.raises(ConfigError, match="ridge"):
        fit_ridge(x, y, ridge=-1.0)


def test_fit_ridge_in_blocks_is_the_fit_on_all_rows() -> None:
    """A mixture's ridge fit walks its texts a block at a time: the same projection as the fit on all rows at once,
    for a plain head and for a head stacked on a folder's Dense."""
    from embedlab.models.projection import StackedProjection, fit_projection, fit_projection_blocks, fit_ridge_blocks

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((90, 8)) + 2.0).astype(np.float32)  # off-centre: the means matter
    y = rng.standard_normal((90, 5)).astype(np.float32)

    def blocks():
        return ((x[a : a + 25], y[a : a + 25]) for a in range(0, 90, 25))

    for got, want in zip(fit_ridge_blocks(blocks, 1e-2), fit_ridge(x, y, 1e-2), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    whole, pieces = (StackedProjection(torch.nn.Linear(8, 6), torch.nn.Linear(6, 5)) for _ in range(2))
    pieces.load_state_dict(whole.state_dict())
    before = whole[1].weight.detach().clone()
    fit_projection(whole, x, y, 1e-2)
    fit_projection_blocks(pieces, blocks, 1e-2)
    torch.testing.assert_close(pieces[1].weight, whole[1].weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pieces[0].weight, whole[0].weight, rtol=0, atol=0)  # the Dense is kept
    assert not torch.allclose(whole[1].weight, before)  # the head was fitted
    with pytest.raises(ConfigError, match="no rows"):
        fit_ridge_blocks(lambda: iter([]), 1e-2)


def test_features_and_fingerprint_without_head(tok) -> None:
    enc = tiny_encoder(tok)
    feats = enc.encode(TEXTS[:5], head=False)
    assert feats.shape == (5, 32) and enc.encode([], head=False).shape == (0, 32)
    full = torch.nn.functional.normalize(enc.projection(torch.from_numpy(feats)), dim=-1).detach().numpy()
    np.testing.assert_allclose(enc.encode(TEXTS[:5]), full, atol=1e-5)
    with_head, features = enc.fingerprint(), enc.fingerprint(head=False)
    assert with_head != features
    with torch.no_grad():
        enc.projection.weight.mul_(2.0)
    assert enc.fingerprint(head=False) == features and enc.fingerprint() != with_head
    with torch.no_grad():
        enc.backbone.encoder.layer[0].output.dense.bias.add_(1e-3)
    assert enc.fingerprint(head=False) != features


def test_ridge_init_uses_training_rows_only(tok) -> None:
    """The closed-form baseline must not see held-out texts: changing their targets leaves the fit unchanged,
    while shifting the training targets by a constant shifts exactly the bias (centred least squares)."""
    from embedlab.training.prepare import init_projection

    texts = TEXTS[:12]
    targets = unit_rows(len(texts), 16, seed=1)
    train_rows, heldout = list(range(8)), list(range(8, 12))

    def fit(table_rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        enc = tiny_encoder(tok)
        init_projection(enc, texts, train_rows, TeacherTable(table_rows, "test"), ridge=1e-3, cache=None, batch_size=4)
        return enc.projection.weight.detach().clone(), enc.projection.bias.detach().clone()

    weight, bias = fit(targets)
    moved = targets.copy()
    moved[heldout] += 5.0
    moved_weight, moved_bias = fit(moved)
    torch.testing.assert_close(moved_weight, weight)
    torch.testing.assert_close(moved_bias, bias)
    shifted_weight, shifted_bias = fit(targets + 5.0)
    torch.testing.assert_close(shifted_weight, weight, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(shifted_bias, bias + 5.0, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------------------------- truncate_layers
def test_truncate_layers_equals_the_first_layers(tok, tmp_path) -> None:
    full = tiny_bert(tok, layers=4)
    short = copy.deepcopy(full)
    truncate_layers(short, 2)
    assert len(short.encoder.layer) == 2 and short.config.num_hidden_layers == 2
    assert full.config.num_hidden_layers == 4 and len(full.encoder.layer) == 4
    batch = tok(TEXTS[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = full(**batch, output_hidden_states=True).hidden_states
        out = short(**batch).last_hidden_state
        fresh = tiny_bert(tok, layers=2, seed=1)
        fresh.load_state_dict(short.state_dict())
        expected = fresh(**batch).last_hidden_state
    torch.testing.assert_close(out, hidden[2])
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, hidden[4], atol=1e-3)
    for keep in (0, 5):
        with pytest.raises(ConfigError, match=f"num_layers={keep} is outside 1..4"):
            truncate_layers(copy.deepcopy(full), keep)

    # Through EncoderConfig.num_layers: a saved 4-layer model loaded with 2 layers.
    folder = Encoder(full, tok, max_length=64).save(tmp_path / "m4")
    loaded = Encoder.from_pretrained(str(folder), num_layers=2)
    assert len(loaded.backbone.encoder.layer) == 2
    np.testing.assert_allclose(loaded.encode(TEXTS), Encoder(short, tok, max_length=64).encode(TEXTS), atol=1e-5)
    with pytest.raises(ConfigError, match="num_layers=9"):
        Encoder.from_pretrained(str(folder), num_layers=9)


# ------------------------------------------------------------------------------------------------- TeacherTable
def test_teacher_table_from_encoder_groups_and_cache(tok, tmp_path) -> None:
    teacher = tiny_encoder(tok, projection=None, seed=3, document_prompt="passage: ")
    groups = [TEXTS[:5], TEXTS[5:8]]
    cache = EmbeddingCache(tmp_path)
    table = TeacherTable.from_encoder(teacher, groups, cache, batch_size=4)
    assert (len(table), table.dim, table.source) == (8, 32, "teacher tiny3")
    expected = np.concatenate([teacher.encode(g) for g in groups])  # the raw texts: no document prompt
    assert not np.allclose(expected, np.concatenate([teacher.encode_documents(g) for g in groups]), atol=1e-3)
    np.testing.assert_allclose(table.embeddings, expected, atol=1e-6)
    assert (cache.hits, cache.misses) == (0, 2)
    again = TeacherTable.from_encoder(teacher, groups, cache, batch_size=4)
    assert (cache.hits, cache.misses) == (2, 2)
    np.testing.assert_array_equal(again.embeddings, table.embeddings)
    rows = table.lookup(torch.tensor([6, 0]))
    assert rows.dtype == torch.float32 and torch.equal(rows, torch.from_numpy(expected[[6, 0]]))


def test_cached_and_online_teacher_targets_are_equal(tok) -> None:
    """teacher.cache=true (a TeacherTable) and false (the teacher inside the module) train on the same targets, for a
    teacher with a document prompt too: both embed the raw training text, as the student does."""
    teacher = tiny_encoder(tok, projection=16, seed=3, document_prompt="passage: ")
    table = TeacherTable.from_encoder(teacher, [TEXTS], None, batch_size=4)
    online = EmbeddingModule(tiny_encoder(tok), build_loss({"leaf": {}}), teacher=teacher)
    batch = Collator.for_encoder(online.student)([(i, e) for i, e in enumerate(text_examples()) if i in (2, 9, 13)])
    torch.testing.assert_close(online.embed(batch).teacher, table.lookup(batch["index"]), atol=1e-6, rtol=0)


def test_teacher_table_from_files(tmp_path) -> None:
    emb = np.arange(12, dtype=np.float32).reshape(3, 4)
    npz = tmp_path / "t.npz"
    np.savez(npz, ids=np.array(["a", "b", "c"]), embeddings=emb)
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"id": i, "embedding": e.tolist()}) + "\n" for i, e in zip("abc", emb, strict=True)) + "\n"
    )
    for path in (npz, jsonl):
        table = TeacherTable.from_file(path, ["c", "a", "c"])
        np.testing.assert_array_equal(table.embeddings, emb[[2, 0, 2]])
        assert table.dim == 4 and str(path) in table.source
        with pytest.raises(ConfigError, match="no teacher embedding for 2 of 3"):
            TeacherTable.from_file(path, ["a", "x", "y"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "embedding": [1, 2]}\n{"id": "b", "embedding": [1, \n')
    with pytest.raises(DataFormatError, match="line 2") as err:
        TeacherTable.from_file(bad, ["a"])
    assert err.value.line == 2
    nan = tmp_path / "nan.npz"
    np.savez(nan, ids=np.array(["a", "b"]), embeddings=np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(DataFormatError, match=r"nan.npz: field .embeddings.: NaN or inf in 1 vectors"):
        TeacherTable.from_file(nan, ["a", "b"])
    TeacherTable.from_file(nan, ["b"])  # only the rows asked for are checked
    with pytest.raises(ConfigError, match="not found"):
        TeacherTable.from_file(tmp_path / "none.npz", ["a"])


# ------------------------------------------------------------------------------------------------- EmbeddingModule
def test_embed_texts_pairs_and_scored(tok) -> None:
    student = tiny_encoder(tok)
    collate = Collator(tok, 32)
    leaf = leaf_module(tok, student=student)
    batch = collate([(i, e) for i, e in enumerate(text_examples()) if i in (3, 7, 11)])
    emb = leaf.embed(batch)
    assert emb.present() == {"query", "teacher"} and emb.query.shape == (3, 16) and emb.query.requires_grad
    torch.testing.assert_close(emb.teacher, torch.from_numpy(leaf.teacher_table.embeddings[[3, 7, 11]]))
    np.testing.assert_allclose(emb.query.detach().numpy(), student.encode([TEXTS[i] for i in (3, 7, 11)]), atol=1e-5)

    pairs = [PairExample(f"q{i}", TEXTS[i], f"d{i}", TEXTS[i + 4], (f"n{i}",), (TEXTS[i + 8],)) for i in range(3)]
    emb = EmbeddingModule(student, build_loss({"infonce": {}})).embed(collate(list(enumerate(pairs))))
    assert emb.present() == {"query", "positive", "negatives", "document_mask"}
    assert emb.positive.shape == (3, 16) and emb.negatives.shape == (3, 1, 16) and emb.document_mask.shape == (3, 6)
    np.testing.assert_allclose(emb.positive.detach().numpy(), student.encode(TEXTS[4:7]), atol=1e-5)
    np.testing.assert_allclose(emb.negatives[:, 0].detach().numpy(), student.encode(TEXTS[8:11]), atol=1e-5)

    scored = [ScoredExample(f"q{i}", TEXTS[i], tuple("abc"), tuple(TEXTS[i + 1 : i + 4]), (3, 2, i)) for i in (0, 5)]
    emb = EmbeddingModule(student, build_loss({"kl_distill": {}})).embed(collate(list(enumerate(scored))))
    assert emb.present() == {"query", "candidates", "teacher_scores"} and emb.candidates.shape == (2, 3, 16)
    both = EmbeddingModule(student, build_loss({"infonce": {}, "kl_distill": {}})).embed(
        collate(list(enumerate(scored)))
    )
    assert both.present() == {"query", "candidates", "teacher_scores", "positive", "negatives", "document_mask"}
    torch.testing.assert_close(both.positive, both.candidates[:, 0])
    torch.testing.assert_close(both.documents(), both.candidates.reshape(6, 16)[[0, 3, 1, 2, 4, 5]])
    # query 0's pool: its positive "a" is also candidate 0 of query 1 (same id) -> masked off, the target stays
    assert both.document_mask.tolist() == [[True, False, True, True, True, True], [False, True, True, True, True, True]]
    torch.testing.assert_close(emb.teacher_scores, torch.tensor([[3.0, 2.0, 0.0], [3.0, 2.0, 5.0]]))
    np.testing.assert_allclose(emb.candidates[1].detach().numpy(), student.encode(TEXTS[6:9]), atol=1e-5)


def test_module_config_errors(tok) -> None:
    student = tiny_encoder(tok)
    with pytest.raises(ConfigError, match="teacher"):
        EmbeddingModule(student, build_loss({"leaf": {}}))
    with pytest.raises(ConfigError, match="projection_dim=24"):
        EmbeddingModule(student, build_loss({"leaf": {}}), teacher_table=TeacherTable(unit_rows(4, 24), "x"))
    with pytest.raises(ConfigError, match=r"matryoshka dims \[64\]"):  # before the teacher is even looked at
        EmbeddingModule(student, build_loss({"leaf": {"matryoshka_dims": [8, 64]}}))
    with pytest.raises(ConfigError, match=r"matryoshka dims \[32\]"):
        EmbeddingModule(student, build_loss({"infonce": {"matryoshka_dims": [32]}}))


def leaf_loss_on(module: EmbeddingModule, batch: dict) -> float:
    with torch.no_grad():
        return float(module.loss(module.embed(batch)).value)


def test_a_few_steps_reduce_the_leaf_loss(tok) -> None:
    examples = text_examples()[:8]  # one full batch per step: 8 fixed random unit targets to align to
    optim = OptimConfig(lr=1e-2, projection_lr=1e-1, warmup_ratio=0.0, schedule="constant")
    student = tiny_encoder(tok)
    student.backbone.eval()  # as `from_pretrained` leaves a HF backbone: training must still run with dropout on
    module = leaf_module(tok, optim, student)
    collate = Collator(tok, 32)
    everything = collate(list(enumerate(examples)))
    before = leaf_loss_on(module, everything)
    dm = EmbeddingDataModule(examples, collate, batch_size=8, seed=0)
    modes = []
    spy = pl.callbacks.LambdaCallback(on_train_batch_start=lambda tr, m, *a: modes.append(m.student.backbone.training))
    trainer = pl.Trainer(max_steps=5, logger=False, callbacks=[spy], **QUIET)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 5 and modes == [True] * 5
    after = leaf_loss_on(module, everything)
    assert before > 1.0 and after < 0.5 * before, (before, after)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # a bare step, no Trainer attached
def test_losses_run_in_float32_under_bf16_autocast(tok) -> None:
    """A bf16-mixed step hands bf16 vectors over; the loss must see them in float32, outside autocast."""
    module = EmbeddingModule(tiny_encoder(tok), build_loss({"infonce": {"temperature": 0.05}}))
    pairs = [PairExample(f"q{i}", TEXTS[i], f"d{i}", TEXTS[i + 8]) for i in range(4)]
    batch = Collator(tok, 32)(list(enumerate(pairs)))
    seen = []
    inner = module.loss.forward
    module.loss.forward = lambda emb: seen.append((emb.query.dtype, torch.is_autocast_enabled("cpu"))) or inner(emb)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert module.embed(batch).query.dtype == torch.bfloat16  # what the loss would get without the cast
        value = module.training_step(batch, 0)
    assert seen == [(torch.float32, False)] and value.dtype == torch.float32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        emb = module.embed(batch)
    reference = module.loss(emb.float32()).value  # bf16 vectors, float32 loss: what the step computed
    torch.testing.assert_close(value.detach(), reference)


def test_checkpoint_state_leaves_the_teacher_out(tok) -> None:
    teacher = tiny_encoder(tok, seed=5)
    module = EmbeddingModule(tiny_encoder(tok, seed=1), build_loss({"leaf": {}}), teacher=teacher)
    assert not any(p.requires_grad for p in teacher.parameters())
    emb = module.embed(Collator(tok, 32)(list(enumerate(text_examples()[:3]))))
    np.testing.assert_allclose(emb.teacher.numpy(), teacher.encode(TEXTS[:3]), atol=1e-5)
    state = module.state_dict()
    assert state and not any(k.startswith("teacher.") for k in state)
    assert any(k.startswith("student.projection.") for k in state)

    other = EmbeddingModule(tiny_encoder(tok, seed=2), build_loss({"leaf": {}}), teacher=tiny_encoder(tok, seed=6))
    other.load_state_dict(state)
    for key, value in other.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not torch.equal(other.teacher.projection.weight, teacher.projection.weight)  # teacher untouched
    with pytest.raises(RuntimeError, match=r"student\.projection\.bias"):
        other.load_state_dict({k: v for k, v in state.items() if k != "student.projection.bias"})


def test_one_description_of_what_a_batch_provides(tok) -> None:
    """data/batch.KINDS drives the collator (the groups it tokenizes) and the module (the fields it fills): for each
    kind, the collated batch holds exactly the kind's text groups and `embed` fills exactly its `provides`."""
    from dataclasses import fields

    from embedlab.data.batch import KINDS

    student = tiny_encoder(tok)
    collate = Collator(tok, 32)
    examples = {
        "text": text_examples()[:4],
        "pairs": [PairExample(f"q{i}", TEXTS[i], f"d{i}", TEXTS[i + 4], [f"n{i}"], [TEXTS[i + 8]]) for i in range(4)],
        "scored": [
            ScoredExample(f"q{i}", TEXTS[i], [f"c{i}", f"c{i + 4}"], [TEXTS[i + 4], TEXTS[i + 8]], [1.0, 0.0])
            for i in range(4)
        ],
    }
    losses = {"text": {"leaf": {}}, "pairs": {"infonce": {}}, "scored": {"infonce": {}, "kl_distill": {}}}
    for name, kind in KINDS.items():
        batch = collate(list(enumerate(examples[name])))
        assert batch["kind"] == name
        assert {g for g in ("query", "documents", "candidates") if g in batch} == set(kind.groups)
        table = TeacherTable(unit_rows(4, 16), "t") if name == "text" else None
        emb = EmbeddingModule(student, build_loss(losses[name]), teacher_table=table).embed(batch)
        filled = {f.name for f in fields(emb) if getattr(emb, f.name) is not None} - {"teacher"}
        assert filled == set(kind.provides), name
