"""Decoder backbones as encoders: bidirectional attention through transformers' switch, padding invariance,
EOS appended for last-token pooling, sentence-transformers parity of saved bidirectional folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from embedlab.errors import ConfigError
from embedlab.models import Encoder
from embedlab.models.decoder import prepare_tokenizer, set_attention
from tests.tiny import TEXTS
from tests.tiny_decoder import ARCHS, tiny_decoder, tiny_decoder_folder, tiny_tokenizer


def _position0(model, ids: torch.Tensor, padded: bool) -> torch.Tensor:
    """Hidden state of position 0; `padded` passes an explicit mask with a left-padded second row."""
    if not padded:
        return model(input_ids=ids).last_hidden_state[0, 0]
    batch = torch.cat([ids, ids]).clone()
    mask = torch.ones_like(batch)
    mask[1, :2] = 0  # a padded row beside it forces a materialised mask instead of sdpa's is_causal shortcut
    return model(input_ids=batch, attention_mask=mask).last_hidden_state[0, 0]


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ARCHS)
def test_position0_sees_later_tokens_only_when_bidirectional(arch: str, attn: str, padded: bool) -> None:
    model = tiny_decoder(arch, vocab_size=64, attn=attn)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    changed = ids.clone()
    changed[0, -1] = 11  # only the last token differs
    for bidirectional in (False, True):
        set_attention(model.config, bidirectional)
        with torch.no_grad():
            a, b = _position0(model, ids, padded), _position0(model, changed, padded)
        moved = (a - b).abs().max().item()
        assert (moved > 1e-4) if bidirectional else (moved == 0.0), (bidirectional, moved)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("decoders")
    return {arch: tiny_decoder_folder(root / arch, arch) for arch in ARCHS}


def test_flag_reaches_config_and_folder_default_is_kept(folders: dict[str, Path]) -> None:
    assert Encoder.from_pretrained(str(folders["qwen2"]), bidirectional=True).backbone.config.is_causal is False
    assert Encoder.from_pretrained(str(folders["qwen2"]), bidirectional=False).backbone.config.is_causal is True
    assert getattr(Encoder.from_pretrained(str(folders["qwen2"])).backbone.config, "is_causal", True) is True


@pytest.mark.parametrize("pooling", ["mean", "last_token", "weighted_mean"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_padding_does_not_change_a_row(folders, arch: str, bidirectional: bool, side: str, pooling: str) -> None:
    enc = Encoder.from_pretrained(
        str(folders[arch]), bidirectional=bidirectional, padding_side=side, pooling=pooling, append_eos=True
    )
    texts = TEXTS[:6]
    lengths = {len(enc.tokenizer(t)["input_ids"]) for t in texts}
    assert len(lengths) > 2  # the batch really pads
    together = enc.encode(texts, batch_size=len(texts))
    alone = np.concatenate([enc.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=2e-5)


def test_bidirectional_changes_the_embedding(folders) -> None:
    causal = Encoder.from_pretrained(str(folders["mistral"]), bidirectional=False).encode(TEXTS[:4])
    full = Encoder.from_pretrained(str(folders["mistral"]), bidirectional=True).encode(TEXTS[:4])
    assert np.abs(causal - full).max() > 1e-3


def test_eos_appended_and_kept_under_truncation() -> None:
    tok = tiny_tokenizer()
    plain = tok("the cat sat")["input_ids"]
    assert tok.pad_token is None and plain[0] == tok.bos_token_id and plain[-1] != tok.eos_token_id
    prepare_tokenizer(tok, append_eos=True)
    assert tok.pad_token == tok.eos_token
    assert tok("the cat sat")["input_ids"] == [*plain, tok.eos_token_id]  # BOS kept, EOS added, nothing else
    cut = tok(TEXTS[3], truncation=True, max_length=4)["input_ids"]
    assert len(cut) == 4 and cut[0] == tok.bos_token_id and cut[-1] == tok.eos_token_id
    prepare_tokenizer(tok, append_eos=True)  # idempotent: one EOS, not two
    assert tok("the cat sat")["input_ids"] == [*plain, tok.eos_token_id]


def test_append_eos_refused_without_eos() -> None:
    tok = tiny_tokenizer()
    tok.eos_token = None
    tok.pad_token = "<unk>"
    with pytest.raises(ConfigError, match="append_eos"):
        prepare_tokenizer(tok, append_eos=True)


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_token_reads_the_eos_state(folders, side: str) -> None:
    enc = Encoder.from_pretrained(
        str(folders["llama"]), pooling="last_token", append_eos=True, padding_side=side, normalize=False
    )
    batch = enc.tokenize(TEXTS[:3])
    hidden = enc.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    rows = [
        hidden[i, (batch["attention_mask"][i].nonzero().max())] for i in range(3)
    ]  # the last real position of each row holds EOS
    for i in range(3):
        assert batch["input_ids"][i, batch["attention_mask"][i].nonzero().max()] == enc.tokenizer.eos_token_id
    torch.testing.assert_close(enc(batch["input_ids"], batch["attention_mask"]), torch.stack(rows))


@pytest.mark.parametrize(("arch", "pooling"), [("llama", "mean"), ("mistral", "last_token")])
def test_saved_bidirectional_folder_matches_sentence_transformers(folders, tmp_path: Path, arch, pooling) -> None:
    """ST's Transformer module builds the model from the saved config.json, which carries `is_causal: false`."""
    from sentence_transformers import SentenceTransformer

    enc = Encoder.from_pretrained(str(folders[arch]), bidirectional=True, pooling=pooling, append_eos=True)
    folder = enc.save(tmp_path / "m")
    assert json.loads((folder / "config.json").read_text())["is_causal"] is False
    st = SentenceTransformer(str(folder), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS), enc.encode(TEXTS), atol=1e-5)
    back = Encoder.from_pretrained(str(folder))
    assert back.backbone.config.is_causal is False and back.fingerprint() == enc.fingerprint()
