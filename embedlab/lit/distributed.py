"""Distributed training on Lightning's own strategies: DDP (gloo on CPU, nccl on GPU) and FSDP for large decoders.

`build_strategy` turns the trainer config into what `pl.Trainer(strategy=...)` takes. FSDP needs Python classes
(the layers to shard and to checkpoint); the config names them and they are looked up in the model being trained,
so one list covers BERT, Qwen2/3, Mistral and Llama without importing any modeling file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from torch import nn

from embedlab.errors import ConfigError


def layer_classes(model: nn.Module, names: Iterable[str]) -> set[type[nn.Module]]:
    """The classes of `model`'s submodules whose class name is in `names` (e.g. MistralDecoderLayer)."""
    wanted = set(names)
    found = {type(m) for m in model.modules() if type(m).__name__ in wanted}
    if not found:
        blocks = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.endswith(("Layer", "Block"))})
        raise ConfigError(
            f"trainer.fsdp.wrap_layers: none of {sorted(wanted)} is in the model; its layer classes are {blocks}"
        )
    return found


def build_strategy(name: str, fsdp: dict[str, Any] | None, model: nn.Module, *, grad_cache: bool) -> Any:
    """A Lightning strategy name, or an `FSDPStrategy` that shards `model` by its transformer layers."""
    if name != "fsdp":
        return name
    if grad_cache:
        # FSDP reduce-scatters in its own gradient hooks; GradCache's summed-gradient pass would bypass them.
        raise ConfigError(
            "step.chunk_size/chunk_tokens (GradCache) cannot run under trainer.strategy=fsdp; use ddp, or set null"
        )
    from pytorch_lightning.strategies import FSDPStrategy

    settings = dict(fsdp or {})
    layers = layer_classes(model, settings.pop("wrap_layers", []))
    checkpointing = settings.pop("activation_checkpointing", True)
    return FSDPStrategy(
        auto_wrap_policy=layers,
        activation_checkpointing_policy=layers if checkpointing else None,
        **settings,  # sharding_strategy, state_dict_type, cpu_offload: FSDPStrategy's own keywords
    )


# Strategy names (Lightning's registry) whose forward passes gather parameters from every rank.
SHARDED_NAMES = ("fsdp", "deepspeed_stage_3")


def evaluation_ranks(strategy: Any) -> Literal["all", "rank0"]:
    """Which ranks run all of a trained model's forward passes (a `pl.Trainer` strategy, as a name or an object).
    Under a sharded strategy every forward all-gathers parameters from all ranks, so rank 0 alone would wait
    forever: all ranks run them all. Otherwise each rank holds the whole model: rank 0 alone runs a small pass (the
    held-out cosines), and an evaluation's encodings are split over the ranks (`EvaluationCallback`). Only rank 0
    writes files."""
    from pytorch_lightning.strategies import FSDPStrategy, ModelParallelStrategy

    if isinstance(strategy, str):
        sharded = strategy.startswith(SHARDED_NAMES)
    else:
        sharded = isinstance(strategy, FSDPStrategy | ModelParallelStrategy) or getattr(strategy, "zero_stage_3", False)
    return "all" if sharded else "rank0"


def evaluates_on_this_rank(strategy: Any, rank: int) -> bool:
    return rank == 0 or evaluation_ranks(strategy) == "all"
