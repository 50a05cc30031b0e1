"""Non-finite losses and gradients: stop the run with the step and what is at fault, or skip the step, by config.

The loss is checked after the forward pass, the gradients before the optimizer step: a finite loss can still have a
NaN or infinite gradient, and one such step would turn every weight it touches into NaN.

Mixed precision needs nothing more here. Losses run in float32 outside autocast, so what a bf16 or fp16 forward pass
adds is non-finite embeddings (fp16 overflows above 65504), which this guard reports as the cause. Gradient overflow
under fp16 (`16-mixed`, GPU) is Lightning's GradScaler's job: it skips the optimizer step and halves the scale, so
the gradient check stands aside while a scaler is active. bf16 has float32's range and no scaler; its gradients are
checked like float32's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import torch

from embedlab.errors import ConfigError, EmbedlabError
from embedlab.losses import Embeddings, LossOutput

log = logging.getLogger(__name__)
POLICIES = ("stop", "skip")


class NonFiniteLossError(EmbedlabError):
    """The training loss or its gradient became NaN or infinite and the run was configured to stop."""


class NonFiniteGuard:
    """Checks each step's loss and gradients; `skipped` counts the steps dropped under the `skip` policy.

    A step skipped for its loss runs no backward pass, one skipped for its gradients has them dropped (set to None,
    which the optimizer passes over): either way no weight moves. Lightning still counts it in `global_step` and steps
    the learning-rate schedule, as it does for any training step that returns None."""

    def __init__(self, policy: str = "stop") -> None:
        if policy not in POLICIES:
            raise ConfigError(f"nonfinite must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.policy, self.skipped = policy, 0

    def check(self, out: LossOutput, emb: Embeddings, step: int, batch: int) -> bool:
        """True when the loss is finite. Otherwise raise (stop) or log, count and return False (skip).

        `step`: optimizer steps taken so far (the trainer's global step); `batch`: the batch's index in its epoch."""
        if torch.isfinite(out.value).all():
            return True
        message = f"step {step} (batch {batch} of the epoch): the loss is {out.value.item()}; {diagnose(out, emb)}"
        if self.policy == "stop":
            raise NonFiniteLossError(message + " (nonfinite=skip would drop such steps instead)")
        self._skip(message)
        return False

    def check_gradients(self, named: Iterable[tuple[str, torch.Tensor]], step: int) -> bool:
        """True when every gradient is finite. Otherwise raise (stop) or drop all the gradients, log, count and return
        False (skip). `named`: (name, parameter) pairs, as `Module.named_parameters()` gives them."""
        params = [(name, p) for name, p in named if p.grad is not None]
        if not params:
            return True
        finite = torch.stack([torch.isfinite(p.grad).all() for _, p in params]).tolist()  # one device sync
        if all(finite):
            return True
        bad = [name for (name, _), ok in zip(params, finite, strict=True) if not ok]
        listed = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        message = f"step {step}: the loss is finite but the gradient of {listed} is not"
        if self.policy == "stop":
            raise NonFiniteLossError(message + " (nonfinite=skip would drop such steps instead)")
        for _, p in params:
            p.grad = None
        self._skip(message)
        return False

    def _skip(self, message: str) -> None:
        self.skipped += 1
        log.warning("%s; step skipped (%d so far)", message, self.skipped)


def diagnose(out: LossOutput, emb: Embeddings) -> str:
    """Which loss components went non-finite, and whether the embeddings already were."""
    components = [name for name, value in out.logs.items() if not math.isfinite(value)]
    parts = [f"non-finite components: {', '.join(components)}" if components else "every component is finite"]
    bad = [
        name
        for name in sorted(emb.present())
        if isinstance(value := getattr(emb, name), torch.Tensor) and value.is_floating_point()
        if not torch.isfinite(value).all()
    ]
    if bad:
        parts.append(f"the inputs were already non-finite: {', '.join(bad)}")
    else:
        parts.append("its inputs (embeddings, teacher targets) were finite")
    return "; ".join(parts)
