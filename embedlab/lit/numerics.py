"""Non-finite losses: stop the run with the step and the loss component at fault, or skip the step, by config.

Mixed precision needs nothing more here. Losses run in float32 outside autocast, so what a bf16 or fp16 forward pass
adds is non-finite embeddings (fp16 overflows above 65504), which this guard reports as the cause. Gradient overflow
under fp16 (`16-mixed`, GPU) is Lightning's GradScaler's job: it skips the optimizer step and halves the scale.
bf16 has float32's range and no scaler; a finite loss with an overflowing gradient is then clipped by norm
(`trainer.gradient_clip_val`) like any other.
"""

from __future__ import annotations

import logging
import math

import torch

from embedlab.errors import ConfigError, EmbedlabError
from embedlab.losses import Embeddings, LossOutput

log = logging.getLogger(__name__)
POLICIES = ("stop", "skip")


class NonFiniteLossError(EmbedlabError):
    """The training loss became NaN or infinite and the run was configured to stop."""


class NonFiniteGuard:
    """Checks each step's loss; `skipped` counts the steps dropped under the `skip` policy.

    A skipped step runs no backward pass, so no weight moves; Lightning still counts it in `global_step` and steps
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
        self.skipped += 1
        log.warning("%s; step skipped (%d so far)", message, self.skipped)
        return False


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
