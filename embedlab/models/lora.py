"""LoRA adapters on an encoder's backbone (peft): add, save on their own, load, merge for export.

Only the adapter weights require grad, so the training module's optimizer groups (which skip frozen parameters)
train exactly the adapters with no LoRA-specific code there.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn

from embedlab.errors import ConfigError

ADAPTER_CONFIG = "adapter_config.json"  # peft's file name: marks a folder as an adapter


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16  # rank of the update matrices
    alpha: float = 32.0  # scale numerator: the update is multiplied by alpha / r
    dropout: float = 0.05  # dropout on the adapter's input
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    @classmethod
    def from_node(cls, node: dict) -> LoraSettings:
        unknown = sorted(set(node) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown model.lora setting(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        settings = cls(**{k: (list(v) if k == "target_modules" else v) for k, v in node.items()})
        if settings.r < 1 or settings.alpha <= 0 or not 0 <= settings.dropout < 1 or not settings.target_modules:
            raise ConfigError(f"model.lora needs r >= 1, alpha > 0, 0 <= dropout < 1 and target modules: {settings}")
        return settings


def add_lora(backbone: nn.Module, settings: LoraSettings) -> nn.Module:
    """Freeze the backbone and wrap it with fresh adapters (B = 0, so the output is unchanged at first)."""
    from peft import LoraConfig, get_peft_model

    check_lora_targets(backbone, settings.target_modules)
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
    )
    return get_peft_model(backbone, config)


def has_lora(backbone: nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(backbone, PeftModel)


def load_adapter(backbone: nn.Module, folder: Path, trainable: bool) -> nn.Module:
    """Put the adapter saved in `folder` on the plain `backbone`."""
    from peft import PeftModel

    return PeftModel.from_pretrained(backbone, str(folder), is_trainable=trainable)


def adapter_base(folder: Path) -> str:
    """The base model an adapter folder was trained on (peft records it)."""
    try:
        base = json.loads((folder / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {folder / ADAPTER_CONFIG}: {e}") from None
    if not base:
        raise ConfigError(f"{folder / ADAPTER_CONFIG} does not name its base model (base_model_name_or_path)")
    return str(base)


def merged_copy(backbone: nn.Module) -> nn.Module:
    """A plain transformers model with the adapters folded into the weights; the trained model is left as it is
    (a copy, not an in-place merge, so training or evaluation can go on with the adapters)."""
    if not has_lora(backbone):
        return backbone
    return copy.deepcopy(backbone).merge_and_unload()


def describe(settings: LoraSettings | None) -> dict | None:
    return asdict(settings) if settings else None


def check_lora_targets(model: nn.Module, targets: Iterable[str], key: str = "model.lora.target_modules") -> None:
    """Every LoRA target must name modules of `model` (as peft matches them: the last part of a module's dotted
    name, or the whole name); a misspelt target would otherwise fail inside peft or train nothing."""
    names = [name for name, _ in model.named_modules() if name]
    suffixes = {name.rsplit(".", 1)[-1] for name in names}
    absent = [t for t in targets if t not in suffixes and t not in names]
    if absent:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ConfigError(f"{key}: {absent} match no module of {type(model).__name__}; its linear layers: {linear}")
