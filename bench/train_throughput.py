"""Training throughput: embedlab vs sentence-transformers' trainer, same model, batches, clipping and CPU.

    python bench/train_throughput.py [--steps 20] [--warmup 3] [--batch-size 32] [--max-length 128]
                                     [--precision fp32,bf16] [--grouping random,length] [--repeats 3]
    python bench/train_throughput.py --losses gradcache --batch-size 64 --chunk-size 16

Equivalent objectives on all-MiniLM-L6-v2 and real SciFact text:
  - infonce (embedlab) ≡ MultipleNegativesRankingLoss (sentence-transformers): train claims + cited abstracts;
  - leaf (embedlab, projection 384→768) ≡ MSELoss(projection_dim=768): abstracts regressed onto fixed 768-d targets;
  - gradcache: infonce with `step.chunk_size` ≡ CachedMultipleNegativesRankingLoss(mini_batch_size), same chunk size.
Like for like (issue 17 item 6): **one list of batches fed to both trainers**, drawn by embedlab's sampler with
`--grouping random` (random batches, as ST samples by default) and/or `length` (length-grouped, embedlab's default;
ST has no length-grouped sampler, so it receives the list as its `batch_sampler`, and the script fails if either side
did not consume it); the same optimizer (torch's AdamW, lr 2e-5 without warm-up, linear decay, weight decay 0.01
off biases and norms, on the kernel `--adamw` names: fused by default, which is embedlab's `optim.implementation=auto`
on a CPU and ST's own default on torch >= 2.8; `--adamw foreach`: torch's unfused default on both); the gradient norm
clipped to 1.0 on both sides (Lightning `gradient_clip_val=1.0`, embedlab's config default; ST `max_grad_norm=1.0`,
its default). Each side runs `--steps` optimizer steps after `--warmup` untimed ones, a fresh model and trainer
per run; samples/s = steps × batch / seconds. The sides take turns `--repeats` times, the order rotating; every run
is printed, the table gives each side's median (min–max) and the ratio of medians embedlab / sentence-transformers.
With both precisions, each side's bf16 / fp32 ratio of medians is printed too; and where embedlab's step time goes
(forward + loss, backward, clipping + AdamW: Lightning's hooks around them, median shares over its runs).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import pytorch_lightning as pl
from common import header, run_rotating, spread

from embedlab.data.batching import LengthGroupedBatchSampler
from embedlab.data.collate import Collator
from embedlab.data.training import Example, TextExample, read_pairs
from embedlab.hub import resolve_model
from embedlab.lit.datamodule import EmbeddingDataModule, example_length
from embedlab.lit.module import EmbeddingModule
from embedlab.lit.optim import OptimConfig
from embedlab.lit.teacher import TeacherTable
from embedlab.losses import build_loss
from embedlab.models import Encoder
from embedlab.report.table import format_table

PEERS = {"infonce": "MultipleNegativesRankingLoss", "leaf": "MSELoss", "gradcache": "CachedMNRL"}
PHASES = ("forward + loss", "backward", "clip + AdamW")
# embedlab's optimizer (embedlab.lit.optim): torch's AdamW, weight decay 0.01 off biases and norms; HF's trainer gets
# the same decay (its default is 0) and the same kernel: `--adamw` -> (optim.implementation, HF's optim name)
ST_WEIGHT_DECAY = 0.01
ADAMW = {"fused": ("fused", "adamw_torch_fused"), "foreach": ("foreach", "adamw_torch")}


class StepTimer(pl.Callback):
    """Wall time from the start of step `warmup` to the end of the last step (Lightning side), and the time of each
    timed step split at Lightning's backward hooks (`phases`, seconds summed over the timed steps). `clock`:
    `time.process_time` counts the process's CPU seconds instead, which other processes on a shared core leave alone."""

    def __init__(self, warmup: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self.warmup, self.clock, self.start, self.end = warmup, clock, None, None
        self.phases, self._marks = dict.fromkeys(PHASES, 0.0), []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = self.clock()
        self._marks = [self.clock()]

    def on_before_backward(self, trainer, module, loss) -> None:
        self._marks.append(self.clock())

    def on_after_backward(self, trainer, module) -> None:
        self._marks.append(self.clock())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.end = self.clock()  # the last one wins: teardown after the final step is not timed
        if batch_idx >= self.warmup and len(self._marks) == 3:
            marks = [*self._marks, self.end]
            for i, phase in enumerate(PHASES):
                self.phases[phase] += marks[i + 1] - marks[i]


class FixedBatches:
    """The same precomputed batches for both trainers (a batch sampler: lists of dataset positions)."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches, self.yielded = batches, 0

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            self.yielded += 1
            yield batch

    def check(self, side: str) -> None:
        if self.yielded < len(self.batches):  # the trainer drew its batches elsewhere: not like for like
            raise RuntimeError(f"{side} took {self.yielded} of the {len(self.batches)} shared batches")

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:  # one pass over the list is the whole run
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def draw_batches(examples: list[Example], args, grouping: str) -> list[list[int]]:
    """warmup + steps batches from embedlab's sampler (epochs chained), as the data module would draw them."""
    lengths = [example_length(e) for e in examples]
    sampler = LengthGroupedBatchSampler(lengths, args.batch_size, group_by_length=grouping == "length", drop_last=True)
    batches, epoch = [], 0
    while len(batches) < args.warmup + args.steps:
        sampler.set_epoch(epoch)
        batches += sampler.batches()
        epoch += 1
    return batches[: args.warmup + args.steps]


def embedlab_run(kind: str, examples: list[Example], targets: np.ndarray, batches, args, precision: str) -> float:
    encoder = Encoder.from_pretrained(
        resolve_model("all-MiniLM-L6-v2"), max_length=args.max_length, projection_dim=768 if kind == "leaf" else None
    )
    if kind == "leaf":
        table, loss = TeacherTable(targets, "fixed targets"), build_loss({"leaf": {}})
    else:
        table, loss = None, build_loss({"infonce": {"temperature": 0.05}})
    dm = EmbeddingDataModule(examples, Collator(encoder.tokenizer, args.max_length), batch_size=args.batch_size, seed=0)
    dm.batch_sampler = sampler = FixedBatches(batches)
    chunk_size = args.chunk_size if kind == "gradcache" else None
    kernel = ADAMW[args.adamw][0]
    optim = OptimConfig(lr=2e-5, projection_lr=None, warmup_ratio=0.0, implementation=kernel)  # one lr, as ST's
    module = EmbeddingModule(encoder, loss, optim, teacher_table=table, chunk_size=chunk_size)
    timer = StepTimer(args.warmup)
    pl.Trainer(
        max_steps=len(batches),
        gradient_clip_val=1.0,  # embedlab's default (train.gradient_clip_val); ST's max_grad_norm is 1.0 too
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        precision="bf16-mixed" if precision == "bf16" else "32-true",
    ).fit(module, datamodule=dm)
    sampler.check("embedlab")
    seconds = timer.end - timer.start
    args.phases.append({phase: t / seconds for phase, t in timer.phases.items()})
    return args.steps * args.batch_size / seconds


def st_run(kind: str, examples: list[Example], targets: np.ndarray, batches, args, precision: str) -> float:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers import losses as st_losses
    from transformers import TrainerCallback

    model = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
    model.max_seq_length = args.max_length
    if kind == "leaf":
        data = Dataset.from_dict({"text": [e.text for e in examples], "label": targets.tolist()})
        loss = st_losses.MSELoss(model, projection_dim=768)
    else:
        data = Dataset.from_dict({"anchor": [e.query for e in examples], "positive": [e.positive for e in examples]})
        loss = (
            st_losses.CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=args.chunk_size)
            if kind == "gradcache"
            else st_losses.MultipleNegativesRankingLoss(model, scale=20.0)  # scale 20 = temperature 0.05
        )
    span: dict[str, float] = {}
    sampler = FixedBatches(batches)

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            if state.global_step == args.warmup:
                span["start"] = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            span["end"] = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        training_args = SentenceTransformerTrainingArguments(
            output_dir=out,
            max_steps=len(batches),
            per_device_train_batch_size=args.batch_size,
            learning_rate=2e-5,
            warmup_steps=0,
            max_grad_norm=1.0,  # ST's default, stated: the Lightning side clips at 1.0 too
            batch_sampler=lambda dataset, **kw: sampler,
            weight_decay=ST_WEIGHT_DECAY,
            optim=ADAMW[args.adamw][1],
            logging_steps=10_000,
            save_strategy="no",
            report_to=[],
            bf16=precision == "bf16",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        SentenceTransformerTrainer(model, training_args, train_dataset=data, loss=loss, callbacks=[Timer()]).train()
    sampler.check("sentence-transformers")
    return args.steps * args.batch_size / (span["end"] - span["start"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--precision", default="fp32", help="fp32 and/or bf16, comma-separated")
    parser.add_argument("--grouping", default="random,length", help="batches: random and/or length-grouped")
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, order rotating; the median counts")
    parser.add_argument("--chunk-size", type=int, default=32, help="GradCache chunk (ST: mini_batch_size)")
    parser.add_argument("--adamw", choices=list(ADAMW), default="fused", help="AdamW's kernel, on both sides")
    parser.add_argument("--losses", nargs="+", default=["infonce", "leaf"], choices=["infonce", "leaf", "gradcache"])
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    pairs = read_pairs("scifact", "train")
    texts = [TextExample(p.positive_id, p.positive) for p in pairs]
    targets = np.random.default_rng(0).standard_normal((len(pairs), 768)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    print(header("sentence-transformers", "transformers", "pytorch-lightning"))
    print(
        f"all-MiniLM-L6-v2, batch {args.batch_size}, max {args.max_length} tokens, {args.steps} timed steps after "
        f"{args.warmup}, {args.repeats} repeats, gradient norm clipped to 1.0 on both sides, the same batches, "
        f"AdamW {args.adamw} on both sides"
    )
    rows, rates, shares = [], {}, []
    for precision in args.precision.split(","):
        for kind in args.losses:
            examples = texts if kind == "leaf" else pairs
            for grouping in args.grouping.split(","):
                batches = draw_batches(examples, args, grouping)
                args.phases = []
                setting = (kind, examples, targets, batches, args, precision)
                runs = run_rotating(
                    {
                        "sentence-transformers": partial(st_run, *setting),
                        "embedlab": partial(embedlab_run, *setting),
                    },
                    args.repeats,
                    f"{kind}, {precision}, {grouping} batches, ",
                )
                st, ours = spread(runs["sentence-transformers"]), spread(runs["embedlab"])
                rates[kind, grouping, precision] = st["median"], ours["median"]
                name = f"infonce, step.chunk_size={args.chunk_size}" if kind == "gradcache" else kind
                peer = PEERS[kind] + (f"(mini_batch_size={args.chunk_size})" if kind == "gradcache" else "")
                rows.append(
                    {
                        "loss": name,
                        "peer loss": peer,
                        "precision": precision,
                        "batches": grouping,
                        "ST": st["median"],
                        "ST min–max": f"{st['min']:.2f}–{st['max']:.2f}",
                        "embedlab": ours["median"],
                        "embedlab min–max": f"{ours['min']:.2f}–{ours['max']:.2f}",
                        "ratio": ours["median"] / st["median"],
                    }
                )
                median_shares = {p: 100 * statistics.median(s[p] for s in args.phases) for p in PHASES}
                shares.append({"loss": name, "precision": precision, "batches": grouping, **median_shares})
    print("\nsamples/s, median (min–max) of the runs; ratio = embedlab / sentence-transformers medians")
    print(format_table(rows, list(rows[0]), precision=2))
    ratios = [
        {"loss": k, "batches": g, "ST bf16/fp32": bf16[0] / fp32[0], "embedlab bf16/fp32": bf16[1] / fp32[1]}
        for (k, g, p), fp32 in rates.items()
        if p == "fp32" and (bf16 := rates.get((k, g, "bf16")))
    ]
    if ratios:
        print("\nbf16 / fp32 samples/s (ratio of medians, same run)")
        print(format_table(ratios, list(ratios[0]), precision=2))
    print("\nembedlab's step time by phase, % (median over its runs; Lightning's backward hooks split it)")
    print(format_table(shares, list(shares[0]), precision=1))


if __name__ == "__main__":
    main()
