"""Tiny random-init decoders (the real Llama / Mistral / Qwen2 / Qwen3 code at toy sizes) and a byte-level BPE
tokenizer trained in milliseconds, saved as model folders that `Encoder.from_pretrained` and sentence-transformers
both open."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

from tests.tiny import TEXTS

ARCHS = ("llama", "mistral", "qwen2", "qwen3")
# Toy sizes of the real architectures: 2 layers, hidden 32, 2 query heads sharing 1 key/value head (GQA as in
# Mistral and Qwen), no dropout.
TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 64,
    "max_position_embeddings": 256,
}
SPECIALS = ["<unk>", "<s>", "</s>"]


def tiny_tokenizer(eos_appended: bool = False) -> PreTrainedTokenizerFast:
    """Byte-level BPE (GPT-2 / SmolLM2 / Qwen style) that prepends BOS like Llama; no pad token, as decoders ship."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([*TEXTS, "Instruct: Query: Example passage:"], trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    out = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    out.model_max_length = 256
    return out


def tiny_decoder(arch: str, vocab_size: int, seed: int = 0, attn: str = "sdpa", **config) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = AutoConfig.for_model(arch, vocab_size=vocab_size, **TINY, **config)
    return AutoModel.from_config(cfg, attn_implementation=attn).eval()


def tiny_decoder_folder(folder: Path, arch: str = "llama", seed: int = 0) -> Path:
    """A saved tiny decoder + tokenizer: what a hub id or a converted GGUF resolves to. The pad token is saved
    (EOS): without one, transformers' Qwen2 tokenizer class adds its own pad token outside this toy vocabulary."""
    tok = tiny_tokenizer()
    tok.pad_token = tok.eos_token
    tiny_decoder(arch, len(tok), seed=seed).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
