"""Pooling: token states [B, T, H] + attention mask [B, T] -> one vector per text [B, H]."""

from __future__ import annotations

import torch

from embedlab.errors import ConfigError

POOLING_MODES = ("mean", "cls", "last_token", "weighted_mean")


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool token states into text embeddings.

    - ``mean``: average over real tokens (Sentence-BERT).
    - ``cls``: the first token.
    - ``last_token``: the last real token, found from the mask so it is right for left *and* right padding
      (decoder embedders such as E5-Mistral / LG-ANNA pool the EOS position).
    - ``weighted_mean``: position-weighted mean, weight i for the i-th real token (SGPT), so that in a causal
      model later tokens, which have seen more of the text, count more.
    """
    m = mask.to(hidden.dtype).unsqueeze(-1)
    if mode == "mean":
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "last_token":
        # Index of the last 1 in each row works for both paddings: right-padded rows end early,
        # left-padded rows end at T-1.
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = (positions * mask.long()).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if mode == "weighted_mean":
        weights = mask.long().cumsum(dim=1).to(hidden.dtype) * mask.to(hidden.dtype)
        w = weights.unsqueeze(-1)
        return (hidden * w).sum(1) / w.sum(1).clamp(min=1e-9)
    raise ConfigError(f"unknown pooling '{mode}'; choose one of {', '.join(POOLING_MODES)}")


def drop_prompt(mask: torch.Tensor, prompt_length: torch.Tensor | int) -> torch.Tensor:
    """The mask with each row's first `prompt_length` real tokens switched off (the instruction is read by the
    model but not pooled); counts real tokens, so it is right under left and right padding."""
    lengths = torch.as_tensor(prompt_length, device=mask.device).reshape(-1, 1)
    seen = mask.long().cumsum(dim=1)  # 1-based index of each real token within its row
    return mask * (seen > lengths).to(mask.dtype)
