"""Layer truncation: a backbone cut to its first blocks (a smaller student made from a larger model, as LEAF's
truncated-teacher students)."""

from __future__ import annotations

from torch import nn

from embedlab.errors import ConfigError


def truncate_layers(backbone: nn.Module, keep: int) -> None:
    """Keep the first `keep` transformer blocks: the layer stack is the ModuleList as long as the config says."""
    total = backbone.config.num_hidden_layers
    if not 1 <= keep <= total:
        raise ConfigError(f"num_layers={keep} is outside 1..{total} (the model's layers)")
    stacks = [m for m in backbone.modules() if isinstance(m, nn.ModuleList) and len(m) == total]
    if not stacks:
        raise ConfigError(f"cannot find the layer stack of {type(backbone).__name__} to truncate")
    parent = next(p for p in backbone.modules() for c in p.children() if c is stacks[0])
    name = next(n for n, c in parent.named_children() if c is stacks[0])
    setattr(parent, name, nn.ModuleList(list(stacks[0])[:keep]))
    backbone.config.num_hidden_layers = keep
