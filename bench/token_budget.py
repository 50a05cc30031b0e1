"""Training under a token budget: embedlab's GradCache with `step.chunk_tokens` vs sentence-transformers'
`CachedMultipleNegativesRankingLoss(mini_batch_num_tokens=...)`, samples/s on SciFact pairs, same run.

    python bench/token_budget.py [--steps 8] [--warmup 2] [--batch-size 64] [--max-length 256] [--chunk-tokens 2048]
                                 [--repeats 3] [--grouping random,length] [--chunk-size 16] [--clock wall]
                                 [--stats-only]

Like for like: all-MiniLM-L6-v2 on both sides, fp32, the same (claim, cited abstract) pairs in **the same batches in
the same order** (one list of batches, drawn by embedlab's `LengthGroupedBatchSampler` with `--grouping random`:
random batches, or `length`: batches of similar claim length; sentence-transformers gets it as its batch sampler),
InfoNCE at temperature 0.05 ≡ MNRL scale 20, the same AdamW (lr 2e-5 without warm-up, decay 0.01, the kernel
`--adamw` names: fused by default), gradient norm clipped to 1.0 on both sides (Lightning `gradient_clip_val`, ST
`max_grad_norm`), the same token budget. What differs is each side's own
chunking: sentence-transformers packs consecutive rows while their *unpadded* tokens fit the budget (no row cap);
embedlab takes the rows longest first and packs while rows × the chunk's longest row, i.e. the *padded* tokens that
reach the model, fit it — so its budget bounds a chunk's memory and ST's does not, and the same number gives embedlab
smaller chunks. A third contender therefore runs embedlab at the padded size of ST's largest chunk: the same memory
bound. Chunks per step, padded tokens per step and the largest chunk (padded tokens) of each side are printed,
computed with each side's own chunking code on the real batches, and the unpadded tokens per step (what a padding-free
path would encode) with the useful GFLOP per step they take (GradCache: 4 × the forward pass, `common.encoder_flops`),
from which each side's share of the CPU's fp32 peak is printed; `--stats-only` prints just these, in seconds.
`--chunk-size N` adds rows-only chunks (ST `mini_batch_size=N`, embedlab `step.chunk_size=N`) as a reference.

Each configuration runs `--repeats` times per side, the order rotating (each side goes first in turn); every run is
printed; the table gives each side's median samples/s, min–max, (steps × batch / seconds over the `--steps` steps after
`--warmup` untimed ones) and its ratio over sentence-transformers. Each run is a fresh model and trainer.
`--clock cpu` times the process's CPU seconds (`time.process_time`, all threads) instead of wall seconds: on a core
shared with other processes the wall clock measures their load as much as the step (issue 17: at batch 64 one
wall-clock run put embedlab at 0.70x sentence-transformers while the two whole runs' CPU seconds, loading included,
differed by 1%). With one thread, CPU seconds are the step's work; with more, they are not its latency.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings
from functools import partial

import pytorch_lightning as pl
import torch
from common import encoder_flops, fp32_peak, header, run_rotating, spread
from train_throughput import ADAMW, ST_WEIGHT_DECAY, FixedBatches, StepTimer, draw_batches
from transformers import AutoConfig, AutoTokenizer

from embedlab.data.collate import Collator
from embedlab.data.training import PairExample, read_pairs
from embedlab.hub import resolve_model
from embedlab.lit.datamodule import EmbeddingDataModule
from embedlab.lit.gradcache import chunk_rows, row_ends
from embedlab.lit.module import EmbeddingModule
from embedlab.lit.optim import OptimConfig
from embedlab.losses import build_loss
from embedlab.models import Encoder
from embedlab.report.table import format_table

MODEL = "all-MiniLM-L6-v2"
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # --clock


def chunk_stats(tensors: list[dict], side: str, chunking: tuple) -> dict[str, float]:
    """Chunks per step, padded tokens per step and the largest chunk (padded tokens: what bounds activation memory)
    of one side's chunking over the real tokenized batches, with that side's own code."""
    from sentence_transformers.base.losses.gradcache import _minibatch_ranges

    size, tokens = chunking
    costs = []
    for batch in tensors:
        for group in ("query", "documents"):
            mask = batch[group]["attention_mask"]
            if side == "st":  # consecutive rows; each mini-batch is cut after its last non-padding column
                chunks = [
                    torch.arange(b, e)
                    for b, e in _minibatch_ranges({"attention_mask": mask}, size or len(mask), tokens)
                ]
            else:
                chunks = chunk_rows(mask, size, tokens)
            ends = row_ends(mask)
            costs += [len(rows) * int(ends[rows].max()) for rows in chunks]
    return {
        "chunks/step": len(costs) / len(tensors),
        "padded tok/step": sum(costs) / len(tensors),
        "largest": max(costs),
    }


def embedlab_run(pairs: list[PairExample], batches: list[list[int]], args, chunking: tuple) -> float:
    size, tokens = chunking
    encoder = Encoder.from_pretrained(resolve_model(MODEL), max_length=args.max_length, precision="fp32")
    dm = EmbeddingDataModule(pairs, Collator(encoder.tokenizer, args.max_length), batch_size=args.batch_size, seed=0)
    dm.batch_sampler = sampler = FixedBatches(batches)
    loss = build_loss({"infonce": {"temperature": 0.05}})
    optim = OptimConfig(lr=2e-5, warmup_ratio=0.0, implementation=ADAMW[args.adamw][0])
    module = EmbeddingModule(encoder, loss, optim, chunk_size=size, chunk_tokens=tokens)
    timer = StepTimer(args.warmup, CLOCKS[args.clock])
    pl.Trainer(
        max_steps=len(batches),
        gradient_clip_val=1.0,
        precision="32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    ).fit(module, datamodule=dm)
    sampler.check("embedlab")
    return args.steps * args.batch_size / (timer.end - timer.start)


def st_run(pairs: list[PairExample], batches: list[list[int]], args, chunking: tuple) -> float:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments as Arguments
    from sentence_transformers import losses as st_losses
    from transformers import TrainerCallback

    size, tokens = chunking
    model = SentenceTransformer(resolve_model(MODEL), device="cpu")
    model.max_seq_length = args.max_length
    data = Dataset.from_dict({"anchor": [p.query for p in pairs], "positive": [p.positive for p in pairs]})
    loss = st_losses.CachedMultipleNegativesRankingLoss(
        model, scale=20.0, mini_batch_size=size or args.batch_size, mini_batch_num_tokens=tokens
    )
    span: dict[str, float] = {}
    clock = CLOCKS[args.clock]
    sampler = FixedBatches(batches)

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            if state.global_step == args.warmup:
                span["start"] = clock()

        def on_step_end(self, a, state, control, **kw):
            span["end"] = clock()

    with tempfile.TemporaryDirectory() as out:
        settings = Arguments(
            output_dir=out,
            max_steps=len(batches),
            per_device_train_batch_size=args.batch_size,
            learning_rate=2e-5,
            warmup_steps=0,
            max_grad_norm=1.0,  # ST's default, stated: the Lightning side clips at 1.0 too
            batch_sampler=lambda dataset, **kw: sampler,
            weight_decay=ST_WEIGHT_DECAY,  # embedlab's AdamW decay (ST's default is 0)
            optim=ADAMW[args.adamw][1],  # the same kernel on both sides
            logging_steps=10_000,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        trainer = SentenceTransformerTrainer(model, settings, train_dataset=data, loss=loss, callbacks=[Timer()])
        trainer.train()
    sampler.check("sentence-transformers")
    return args.steps * args.batch_size / (span["end"] - span["start"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--chunk-tokens", type=int, default=2048, help="embedlab step.chunk_tokens = ST tokens")
    parser.add_argument("--chunk-size", type=int, default=None, help="also rows-only chunks of this many texts")
    parser.add_argument("--grouping", default="random,length", help="batches: random and/or length-grouped")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--adamw", choices=list(ADAMW), default="fused", help="AdamW's kernel, on both sides")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall", help="cpu: samples per CPU second")
    parser.add_argument("--stats-only", action="store_true", help="print the chunking of the batches, train nothing")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    pairs = read_pairs("scifact", "train")
    folder = resolve_model(MODEL)
    collate = Collator(AutoTokenizer.from_pretrained(folder), args.max_length)
    config = AutoConfig.from_pretrained(folder)
    print(header("sentence-transformers", "transformers"))
    # --clock cpu counts CPU seconds of all threads: its share is of one core's peak
    peak, assumed = fp32_peak(1 if args.clock == "cpu" else torch.get_num_threads())
    print(assumed)
    print(
        f"{MODEL}, fp32, {len(pairs)} SciFact train pairs, batch {args.batch_size}, max {args.max_length} tokens, "
        f"{args.steps} timed steps after {args.warmup}, {args.repeats} repeats, gradient norm clipped to 1.0, "
        f"{args.clock} clock"
    )
    rows = []
    for grouping in args.grouping.split(","):
        batches = draw_batches(pairs, args, grouping)
        tensors = [collate([(i, pairs[i]) for i in batch]) for batch in batches]
        lengths = [n for b in tensors for g in ("query", "documents") for n in b[g]["attention_mask"].sum(1).tolist()]
        # GradCache's useful work: a gradient-free pass, then forward + backward (2x) again, chunk by chunk
        gflop = 4 * encoder_flops(config, lengths) / len(tensors) / 1e9
        print(
            f"{grouping} batches: {sum(lengths) / len(tensors):,.1f} unpadded tokens per step (no padding at all), "
            f"{gflop:,.1f} useful GFLOP per step (4 x the forward pass on the unpadded tokens)"
        )
        configs = [(None, args.chunk_tokens)] + ([(args.chunk_size, None)] if args.chunk_size else [])
        for chunking in configs:
            name = f"tokens {chunking[1]}" if chunking[1] else f"rows {chunking[0]}"
            st_stats = chunk_stats(tensors, "st", chunking)
            # The same number means less memory on embedlab's side (padded, not unpadded, tokens): also run embedlab
            # at the padded size of ST's largest chunk, i.e. the same memory bound.
            sides = {"sentence-transformers": (st_run, chunking), f"embedlab, {name}": (embedlab_run, chunking)}
            matched = (None, st_stats["largest"])
            if chunking[1] and matched[1] != chunking[1]:  # else it is the run above again
                sides[f"embedlab, tokens {matched[1]} (ST's largest chunk)"] = (embedlab_run, matched)
            stats = {
                side: st_stats if side == "sentence-transformers" else chunk_stats(tensors, "embedlab", setting)
                for side, (_, setting) in sides.items()
            }
            if args.stats_only:
                rows += [{"batches": grouping, "side": side, **stats[side]} for side in sides]
                continue
            runs = run_rotating(
                {side: partial(run, pairs, batches, args, setting) for side, (run, setting) in sides.items()},
                args.repeats,
                f"{grouping} batches, {name}, ",
            )
            peer = spread(runs["sentence-transformers"])["median"]
            for side in sides:
                rate = spread(runs[side])
                rows.append(
                    {
                        "batches": grouping,
                        "side": side,
                        "samples/s" if args.clock == "wall" else "samples/CPU s": rate["median"],
                        "min–max": f"{rate['min']:.2f}–{rate['max']:.2f}",
                        "vs ST": rate["median"] / peer,
                        "% of fp32 peak": 100 * gflop * rate["median"] / args.batch_size / peak if peak else None,
                        **stats[side],
                    }
                )
    print("\n" + format_table(rows, list(rows[0]), precision=2))


if __name__ == "__main__":
    main()
