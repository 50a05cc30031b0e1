"""How many tokens a prompt occupies at the start of a prompted text (the one rule for the collator, the encoder
and exported folders)."""

from __future__ import annotations


def prompt_length(tokenizer, prompt: str) -> int:
    """Tokens the prompt occupies at the start of a prompted text: the prompt tokenized alone, minus a trailing
    special token (an appended EOS) — sentence-transformers' rule, so `include_prompt=False` matches it."""
    if not prompt:
        return 0
    ids = tokenizer(prompt)["input_ids"]
    return len(ids) - 1 if ids and ids[-1] in set(tokenizer.all_special_ids) else len(ids)
