"""Models: pooling by hand, tiny random-init encoders/decoders, sentence-transformers round trips, real MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer

from embedlab.errors import ConfigError, DataFormatError
from embedlab.hub import resolve_model
from embedlab.models import Encoder, pool

MINILM = "all-MiniLM-L6-v2"
TEXTS = [
    "short",
    "a somewhat longer sentence about the weather in spring",
    "hi there",
    "the quick brown fox jumps over the lazy dog while the cat watches from the fence",
    "one two three",
    "embedding models map text to vectors",
    "x",
]


# ------------------------------------------------------------------------------------------------- pooling
def _tiny_batch(left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Row 0: three real tokens; row 1: two real tokens and one pad (value 100, must never leak)."""
    row0 = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    row1 = [[100.0, 100.0], [7.0, 8.0], [9.0, 10.0]] if left else [[7.0, 8.0], [9.0, 10.0], [100.0, 100.0]]
    mask = [[1, 1, 1], [0, 1, 1] if left else [1, 1, 0]]
    return torch.tensor([row0, row1]), torch.tensor(mask)


@pytest.mark.parametrize("left", [False, True])
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("mean", [[3.0, 4.0], [8.0, 9.0]]),
        ("weighted_mean", [[22 / 6, 28 / 6], [25 / 3, 28 / 3]]),  # weights 1,2,3 and 1,2 on the real tokens
        ("last_token", [[5.0, 6.0], [9.0, 10.0]]),
    ],
)
def test_pool_by_hand_both_paddings(mode: str, expected: list, left: bool) -> None:
    hidden, mask = _tiny_batch(left)
    torch.testing.assert_close(pool(hidden, mask, mode), torch.tensor(expected))


def test_pool_cls_is_first_position() -> None:
    hidden, mask = _tiny_batch(left=False)
    torch.testing.assert_close(pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0], [7.0, 8.0]]))


@pytest.mark.parametrize("mode", ["mean", "weighted_mean", "last_token"])
def test_pool_padded_batch_equals_unpadded_single(mode: str) -> None:
    torch.manual_seed(0)
    seq = torch.randn(1, 4, 8)
    alone = pool(seq, torch.ones(1, 4, dtype=torch.long), mode)
    garbage = torch.full((1, 3, 8), 1e3)
    for padded, mask in (
        (torch.cat([seq, garbage], 1), torch.tensor([[1, 1, 1, 1, 0, 0, 0]])),
        (torch.cat([garbage, seq], 1), torch.tensor([[0, 0, 0, 1, 1, 1, 1]])),
    ):
        torch.testing.assert_close(pool(padded, mask, mode), alone)


def test_pool_unknown_mode() -> None:
    with pytest.raises(ConfigError, match="max"):
        pool(torch.zeros(1, 2, 3), torch.ones(1, 2), "max")


# ------------------------------------------------------------------------------------------------- tiny models
@pytest.fixture(scope="module")
def minilm_path() -> str:
    return resolve_model(MINILM)


def _tokenizer(path: str, padding_side: str = "right"):
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:  # as Encoder.from_config does for decoder tokenizers
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def _tiny(arch: str, tok, pooling: str, seed: int = 0, **kwargs) -> Encoder:
    torch.manual_seed(seed)
    extra = {"num_key_value_heads": 2} if arch != "bert" else {}
    config = AutoConfig.for_model(
        arch,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=len(tok),
        **extra,
    )
    backbone = AutoModel.from_config(config).eval()
    return Encoder(backbone, tok, pooling=pooling, projection=nn.Linear(32, 48), max_length=64, **kwargs)


@pytest.fixture(scope="module")
def tiny_bert(minilm_path: str) -> Encoder:
    return _tiny("bert", _tokenizer(minilm_path), "mean", query_prompt="query: ", document_prompt="passage: ")


@pytest.fixture(scope="module", params=["bert-mean", "qwen2-last_token", "mistral-last_token"])
def tiny_any(request, minilm_path: str) -> Encoder:
    arch, pooling = request.param.split("-", 1)
    side = "right" if arch == "bert" else "left"
    return _tiny(arch, _tokenizer(minilm_path, side), pooling, normalize=False)


def test_encode_input_order_matches_one_by_one(tiny_any: Encoder) -> None:
    lengths = [len(tiny_any.tokenizer(t)["input_ids"]) for t in TEXTS]
    assert lengths != sorted(lengths, reverse=True)  # so the internal sort really permutes
    batched = tiny_any.encode(TEXTS, batch_size=3)
    assert isinstance(batched, np.ndarray) and batched.dtype == np.float32 and batched.shape == (len(TEXTS), 48)
    alone = np.concatenate([tiny_any.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert np.abs(batched[:, None] - batched[None]).sum(-1)[~np.eye(len(TEXTS), dtype=bool)].min() > 1e-3


def test_encode_torch_normalize_empty_and_no_grad(tiny_bert: Encoder, tiny_any: Encoder) -> None:
    out = tiny_bert.encode(TEXTS[:3], convert_to="torch")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (3, 48)
    assert not out.requires_grad
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))
    assert np.linalg.norm(tiny_any.encode(TEXTS[:3]), axis=1).std() > 1e-3  # normalize=False really is off
    assert tiny_bert.encode([]).shape == (0, 48) and tiny_bert.encode([], convert_to="torch").shape == (0, 48)


def test_forward_has_gradients(tiny_any: Encoder) -> None:
    batch = tiny_any.tokenize(TEXTS[:4])
    tiny_any.zero_grad()
    emb = tiny_any(batch["input_ids"], batch["attention_mask"])
    assert emb.shape == (4, 48) and emb.requires_grad
    emb.pow(2).sum().backward()
    assert tiny_any.projection.weight.grad is not None and tiny_any.projection.weight.grad.abs().sum() > 0
    grads = [p.grad for p in tiny_any.backbone.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0
    tiny_any.zero_grad()


# ------------------------------------------------------------------------------------------------- fingerprint
def test_fingerprint_stable_and_sensitive(tiny_bert: Encoder) -> None:
    base = tiny_bert.fingerprint()
    assert base == tiny_bert.fingerprint() and len(base) == 64
    weight = tiny_bert.backbone.encoder.layer[1].output.dense.weight
    with torch.no_grad():
        weight[0, 0] += 1e-4
    changed = tiny_bert.fingerprint()
    with torch.no_grad():
        weight[0, 0] -= 1e-4
    tiny_bert.max_length = 32
    shorter = tiny_bert.fingerprint()
    tiny_bert.max_length = 64
    tiny_bert.pooling = "cls"
    cls = tiny_bert.fingerprint()
    tiny_bert.pooling = "mean"
    assert len({base, changed, shorter, cls}) == 4
    assert tiny_bert.fingerprint() == base


# ------------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("pooling", ["mean", "cls", "weighted_mean", "last_token"])
def test_save_loads_in_sentence_transformers_and_back(tiny_bert: Encoder, pooling: str, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    tiny_bert.pooling = pooling
    try:
        expected = tiny_bert.encode(TEXTS)
        expected_q = tiny_bert.encode_queries(TEXTS)
        expected_d = tiny_bert.encode_documents(TEXTS)
        tiny_bert.save(tmp_path / "m")
    finally:
        tiny_bert.pooling = "mean"
    assert not np.allclose(expected_q, expected, atol=1e-3)  # the query prompt is really prepended
    st = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS), expected, atol=1e-5)
    np.testing.assert_allclose(st.encode(TEXTS, prompt_name="query"), expected_q, atol=1e-5)
    assert json.loads((tmp_path / "m" / "config_sentence_transformers.json").read_text())["prompts"] == {
        "query": "query: ",
        "document": "passage: ",
    }

    back = Encoder.from_pretrained(str(tmp_path / "m"))
    assert (back.pooling, back.normalize, back.max_length) == (pooling, True, 64)
    assert (back.query_prompt, back.document_prompt) == ("query: ", "passage: ")
    assert torch.equal(back.projection.weight, tiny_bert.projection.weight)
    assert torch.equal(back.projection.bias, tiny_bert.projection.bias)
    np.testing.assert_allclose(back.encode(TEXTS), expected, atol=1e-6)
    np.testing.assert_allclose(back.encode_queries(TEXTS), expected_q, atol=1e-6)
    np.testing.assert_allclose(back.encode_documents(TEXTS), expected_d, atol=1e-6)


def test_dense_with_tanh_is_refused(tiny_bert: Encoder, tmp_path: Path) -> None:
    folder = tiny_bert.save(tmp_path / "m")
    dense_config = folder / "2_Dense" / "config.json"
    config = json.loads(dense_config.read_text())
    config["activation_function"] = "torch.nn.modules.activation.Tanh"
    dense_config.write_text(json.dumps(config))
    with pytest.raises(DataFormatError, match="activation_function") as err:
        Encoder.from_pretrained(str(folder))
    assert err.value.path == dense_config and err.value.field == "activation_function"


def test_invalid_modules_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "modules.json").write_text('[{"idx": 0, "type": ')
    with pytest.raises(DataFormatError, match=r"modules\.json") as err:
        Encoder.from_pretrained(str(tmp_path))
    assert err.value.path == tmp_path / "modules.json"


# ------------------------------------------------------------------------------------------------- Dense + new head
def test_projection_dim_stacks_a_new_head_after_the_folders_dense(tiny_bert: Encoder, tmp_path: Path) -> None:
    """A folder whose Dense changes the size (32 → 48) with projection_dim=24: pooled (32) → Dense (48) → head (24)."""
    from sentence_transformers import SentenceTransformer

    from embedlab.lit.optim import OptimConfig, parameter_groups
    from embedlab.lit.teacher import TeacherTable
    from embedlab.training.prepare import init_projection

    folder = tiny_bert.save(tmp_path / "dense48")
    plain = Encoder.from_pretrained(str(folder))
    enc = Encoder.from_pretrained(str(folder), projection_dim=24)
    assert enc.dim == 24 and enc.encode(TEXTS).shape == (len(TEXTS), 24)
    features = torch.from_numpy(enc.encode(TEXTS, head=False))  # [N, 32] pooled, no prompt
    dense, head = enc.projection[0], enc.projection[1]
    assert torch.equal(dense.weight, tiny_bert.projection.weight)  # the folder's Dense is kept, not replaced
    with torch.no_grad():
        expected = nn.functional.normalize(head(dense(features)), dim=-1).numpy()
    np.testing.assert_allclose(enc.encode(TEXTS), expected, atol=1e-6)
    assert enc.fingerprint(head=False) == plain.fingerprint(head=False) != plain.fingerprint() != enc.fingerprint()
    # Every projection weight trains at projection_lr; the backbone at lr.
    groups = {g["name"]: g for g in parameter_groups(enc, OptimConfig(lr=1e-5, projection_lr=1e-3))}
    assert {id(p) for n in ("head", "head_no_decay") for p in groups[n]["params"]} == set(
        map(id, enc.projection.parameters())
    )
    # Ridge fits the new head on the Dense's outputs: targets linear in the pooled features are met.
    many = [f"text number {i} is about {w}" for i, w in enumerate(["cats", "rain", "genes", "chess", "bread"] * 12)]
    pooled = enc.encode(many, head=False).astype(np.float64)
    rng = np.random.default_rng(0)
    targets = (pooled @ rng.standard_normal((32, 24)) + rng.standard_normal(24)).astype(np.float32)
    init_projection(enc, many, list(range(len(many))), TeacherTable(targets, "linear"), 1e-8, None, 16)
    with torch.no_grad():
        fitted = enc.projection(torch.from_numpy(pooled).float()).numpy()
    np.testing.assert_allclose(fitted, targets, atol=1e-3 * np.abs(targets).max())
    # Export folds Dense and head into one Dense (32 → 24): sentence-transformers and embedlab read the same vectors.
    vectors = enc.encode(TEXTS)
    out = enc.save(tmp_path / "stacked")
    np.testing.assert_allclose(SentenceTransformer(str(out), device="cpu").encode(TEXTS), vectors, atol=1e-5)
    back = Encoder.from_pretrained(str(out))
    assert back.dim == 24
    np.testing.assert_allclose(back.encode(TEXTS), vectors, atol=1e-5)


# ------------------------------------------------------------------------------------------------- real MiniLM
@pytest.fixture(scope="module")
def minilm() -> Encoder:
    return Encoder.from_pretrained(MINILM)


@pytest.fixture(scope="module")
def st_minilm(minilm_path: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_path, device="cpu")


LONG = " ".join(f"sentence number {i} talks about proteins, cells and the immune response." for i in range(40))
PARITY_TEXTS = [
    *TEXTS,
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "Ünïcödé text with accents: café, naïve, façade.",
    "1234 5678 90",
    "?",
    "Transformers compute contextual token representations using self-attention over the whole sequence.",
    " ".join(["word"] * 120),
    "CRISPR-Cas9 enables targeted genome editing in mammalian cells.",
    "The Eiffel Tower is in Paris.",
    "mixed CASE and   extra   spaces\tand tabs",
    LONG,
    "",
    "last one",
]


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(minilm: Encoder, st_minilm) -> None:
    assert (minilm.pooling, minilm.normalize, minilm.max_length, minilm.projection) == ("mean", True, 256, None)
    assert len(minilm.tokenizer(LONG)["input_ids"]) > 256
    ours = minilm.encode(PARITY_TEXTS, batch_size=8)
    assert ours.shape == (len(PARITY_TEXTS), 384)
    np.testing.assert_allclose(ours, st_minilm.encode(PARITY_TEXTS), atol=1e-5)
    # Truncated at 256 tokens: what comes after does not change the vector.
    np.testing.assert_allclose(minilm.encode([LONG + " and then something else"])[0], ours[-3], atol=1e-5)
    cos = float(ours[7] @ ours[8])  # both unit norm
    assert cos == pytest.approx(0.755, abs=0.01)


@pytest.mark.slow
def test_minilm_save_round_trip(minilm: Encoder, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    folder = minilm.save(tmp_path / "minilm")
    expected = minilm.encode(PARITY_TEXTS)
    np.testing.assert_allclose(SentenceTransformer(str(folder), device="cpu").encode(PARITY_TEXTS), expected, atol=1e-5)
    back = Encoder.from_pretrained(str(folder))
    assert (back.pooling, back.normalize, back.max_length, back.projection) == ("mean", True, 256, None)
    assert back.fingerprint() == minilm.fingerprint()
