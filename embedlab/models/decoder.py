"""Decoder language models as encoders: attention direction, pad/EOS tokens, memory knobs.

Bidirectional attention uses transformers' own switch: a config with `is_causal=False` makes every decoder built on
its masking utilities (Llama, Mistral, Qwen2, Qwen3, ...) build a bidirectional mask, for sdpa and eager alike, and
`save_pretrained` writes the flag into config.json, so any loader of the saved folder (sentence-transformers
included) gets the same attention. No modeling code is copied or patched.
"""

from __future__ import annotations

import torch
from torch import nn

from embedlab.errors import ConfigError, ModelNotFoundError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def set_attention(config, bidirectional: bool | None) -> None:
    """`None` keeps what the config says (a decoder's default is causal)."""
    if bidirectional is not None:
        config.is_causal = not bidirectional


def is_bidirectional(backbone: nn.Module) -> bool:
    return not getattr(backbone.config, "is_causal", True)


def prepare_tokenizer(tokenizer, append_eos: bool) -> None:
    """Decoder tokenizers often lack a pad token (the EOS token is used). `append_eos` adds a post-processing step
    that ends every text with EOS after whatever the tokenizer already adds (BOS stays), so it is saved in
    tokenizer.json and sentence-transformers appends it too; truncation keeps room for it."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not append_eos or tokenizer("x")["input_ids"][-1] == tokenizer.eos_token_id:
        return
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if tokenizer.eos_token is None or backend is None:
        raise ConfigError(f"append_eos: {type(tokenizer).__name__} has no EOS token or is not a fast tokenizer")
    backend.post_processor = _with_eos(backend.post_processor, tokenizer.eos_token, tokenizer.eos_token_id)


def _with_eos(processor, eos: str, eos_id: int):
    """The tokenizer's template (e.g. Llama's `<s> $A`) with EOS after each sequence; a ByteLevel post-processor
    (Qwen) only trims offsets, which embedding ids do not use."""
    import json

    from tokenizers import processors

    spec = json.loads(processor.__getstate__()) if processor is not None else {"type": "ByteLevel"}
    if spec.get("type") == "ByteLevel":
        spec = {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}], "pair": None}
    if spec.get("type") != "TemplateProcessing":
        raise ConfigError(f"append_eos: cannot extend a {spec.get('type')} post-processor (templates only)")

    def template(pieces: list[dict]) -> str:
        out = []
        for piece in pieces:
            kind, value = next(iter(piece.items()))
            out.append(f"{'$' if kind == 'Sequence' else ''}{value['id']}:{value['type_id']}")
            if kind == "Sequence":
                out.append(f"{eos}:{value['type_id']}")
        return " ".join(out)

    specials = {name: token["ids"][0] for name, token in (spec.get("special_tokens") or {}).items()}
    pair = template(spec["pair"]) if spec.get("pair") else f"$A:0 {eos}:0 $B:1 {eos}:1"
    return processors.TemplateProcessing(
        single=template(spec["single"]), pair=pair, special_tokens=list({**specials, eos: eos_id}.items())
    )


def weights_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype '{name}'; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def enable_gradient_checkpointing(backbone: nn.Module) -> None:
    """Recompute activations in backward (memory for time). Non-reentrant, so frozen inputs (LoRA, where the
    embeddings do not require grad) still get gradients through the checkpointed blocks."""
    if not getattr(backbone, "supports_gradient_checkpointing", False):
        raise ConfigError(f"{type(backbone).__name__} does not support gradient checkpointing")
    kwargs = {"use_reentrant": False}
    if hasattr(backbone, "activation_checkpointing_enable"):  # transformers >= 5's name
        backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    backbone.config.use_cache = False


def load_backbone(source: str, cfg):
    """(tokenizer, backbone) of an `EncoderConfig`; the attention direction is set before the weights load."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
        config = AutoConfig.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
        set_attention(config, cfg.bidirectional)
        backbone = AutoModel.from_pretrained(
            source, config=config, trust_remote_code=cfg.trust_remote_code, dtype=weights_dtype(cfg.dtype)
        )
    except OSError as e:  # transformers' offline/404 errors are long; keep the first line and the cause
        raise ModelNotFoundError(
            f"cannot load model '{cfg.path}' (resolved to '{source}'): {str(e).splitlines()[0]}"
        ) from None
    return tokenizer, backbone
