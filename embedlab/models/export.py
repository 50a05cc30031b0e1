"""Writing an Encoder to disk: a sentence-transformers folder (`save_folder`) or a LoRA adapter alone
(`save_adapter`), each atomically (temp folder, then rename) with safetensors weights."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import save_file

from embedlab.errors import ConfigError
from embedlab.io import atomic_path
from embedlab.models import decoder, lora, st_format
from embedlab.models.projection import single_linear

if TYPE_CHECKING:
    from embedlab.models.encoder import Encoder

ADAPTER_SETTINGS = "embedlab_encoder.json"  # beside peft's files: how to rebuild the encoder around the adapter


def save_folder(encoder: Encoder, folder: Path, card: str | None = None) -> Path:
    """A sentence-transformers folder. LoRA adapters are merged into a copy of the backbone first, so the folder is
    a plain model any loader opens; the attention direction is in its config.json (`is_causal`), per-task query
    prompts are named prompts. `card`: README.md text (embedlab.models.card.model_card)."""
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        lora.merged_copy(encoder.backbone).save_pretrained(tmp, safe_serialization=True)
        encoder.tokenizer.save_pretrained(tmp)
        st_format.write_layout(
            tmp,
            hidden_size=encoder.backbone.config.hidden_size,
            pooling=encoder.pooling,
            normalize=encoder.normalize,
            max_length=encoder.max_length,
            dense=single_linear(encoder.projection),
            prompts={**encoder.task_prompts, "query": encoder.query_prompt, "document": encoder.document_prompt},
            include_prompt=encoder.include_prompt,
        )
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
    return folder


def save_adapter(encoder: Encoder, folder: Path, card: str | None = None) -> Path:
    """The LoRA adapter alone (peft's files, a few MB) with the settings that rebuild the encoder around it
    (`ADAPTER_SETTINGS`, read by `Encoder.from_adapter`). `card`: README.md text, as for `save_folder`."""
    if not lora.has_lora(encoder.backbone) or encoder.settings is None:
        raise ConfigError("save_adapter needs an encoder built by from_config with model.lora set")
    projection = encoder.projection
    saved = {
        **asdict(encoder.settings),
        "lora": None,
        "pooling": encoder.pooling,
        "normalize": encoder.normalize,
        "max_length": encoder.max_length,
        "query_prompt": encoder.query_prompt,
        "document_prompt": encoder.document_prompt,
        "include_prompt": encoder.include_prompt,
        "bidirectional": decoder.is_bidirectional(encoder.backbone),
        "padding_side": encoder.tokenizer.padding_side,
        "projection_dim": projection.out_features if projection is not None else None,
        "gradient_checkpointing": False,
    }
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        encoder.backbone.save_pretrained(tmp)  # peft writes a README.md of its own: the card replaces it
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        (tmp / ADAPTER_SETTINGS).write_text(json.dumps(saved, indent=2))
        if projection is not None:
            weights = {k: v.detach().cpu().contiguous() for k, v in projection.state_dict().items()}
            save_file(weights, str(tmp / "projection.safetensors"))
    return folder
