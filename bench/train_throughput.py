"""Training throughput: embedlab vs sentence-transformers' trainer, same model, batch, sequence length and CPU.

    python bench/train_throughput.py [--steps 20] [--batch-size 32] [--max-length 128] [--precision fp32|bf16]
    python bench/train_throughput.py --losses gradcache --batch-size 128 --chunk-size 32

Equivalent objectives on all-MiniLM-L6-v2 and real SciFact text:
  - infonce (embedlab) ≡ MultipleNegativesRankingLoss (sentence-transformers): train claims + cited abstracts;
  - leaf (embedlab, projection 384→768) ≡ MSELoss(projection_dim=768): abstracts regressed onto fixed 768-d targets;
  - gradcache: infonce with `step.chunk_size` ≡ CachedMultipleNegativesRankingLoss(mini_batch_size), same chunk size.
Each side runs `--steps` optimizer steps after `--warmup` untimed ones; samples/s = steps × batch / seconds; with
`--repeats N` the sides alternate N times and each side's best run counts.
Printed: samples/s per side and the ratio embedlab / sentence-transformers.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings

import numpy as np
import pytorch_lightning as pl
import torch

from embedlab.data.collate import Collator
from embedlab.data.training import PairExample, TextExample, read_pairs
from embedlab.hub import resolve_model
from embedlab.lit.datamodule import EmbeddingDataModule
from embedlab.lit.module import EmbeddingModule
from embedlab.lit.optim import OptimConfig
from embedlab.lit.teacher import TeacherTable
from embedlab.losses import build_loss
from embedlab.models import Encoder
from embedlab.report.table import format_table


class StepTimer(pl.Callback):
    """Wall time from the start of step `warmup` to the end of the last step (Lightning side)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()  # the last one wins: teardown after the final step is not timed


def embedlab_run(kind: str, pairs: list[PairExample], targets: np.ndarray, args) -> float:
    encoder = Encoder.from_pretrained(
        resolve_model("all-MiniLM-L6-v2"), max_length=args.max_length, projection_dim=768 if kind == "leaf" else None
    )
    if kind in ("infonce", "gradcache"):
        examples, table, loss = pairs, None, build_loss({"infonce": {"temperature": 0.05}})
    else:
        examples = [TextExample(p.positive_id, p.positive) for p in pairs]
        table, loss = TeacherTable(targets, "fixed targets"), build_loss({"leaf": {}})
    dm = EmbeddingDataModule(
        examples, Collator(encoder.tokenizer, args.max_length), batch_size=args.batch_size, seed=0, drop_last=True
    )
    chunk_size = args.chunk_size if kind == "gradcache" else None
    module = EmbeddingModule(
        encoder, loss, OptimConfig(lr=2e-5, warmup_ratio=0.0), teacher_table=table, chunk_size=chunk_size
    )
    timer = StepTimer(args.warmup)
    trainer = pl.Trainer(
        max_steps=args.warmup + args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        precision="bf16-mixed" if args.precision == "bf16" else "32-true",
    )
    trainer.fit(module, datamodule=dm)
    return args.steps * args.batch_size / (timer.end - timer.start)


def st_run(kind: str, pairs: list[PairExample], targets: np.ndarray, args) -> float:
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
    if kind == "infonce":
        data = Dataset.from_dict({"anchor": [p.query for p in pairs], "positive": [p.positive for p in pairs]})
        loss = st_losses.MultipleNegativesRankingLoss(model, scale=20.0)  # scale 20 = temperature 0.05
    elif kind == "gradcache":
        data = Dataset.from_dict({"anchor": [p.query for p in pairs], "positive": [p.positive for p in pairs]})
        loss = st_losses.CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=args.chunk_size)
    else:
        data = Dataset.from_dict({"text": [p.positive for p in pairs], "label": targets.tolist()})
        loss = st_losses.MSELoss(model, projection_dim=768)

    class Timer(TrainerCallback):
        start = end = None

        def on_step_begin(self, a, state, control, **kw):
            if state.global_step == args.warmup:
                Timer.start = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            Timer.end = time.perf_counter()

    with tempfile.TemporaryDirectory() as out:
        training_args = SentenceTransformerTrainingArguments(
            output_dir=out,
            max_steps=args.warmup + args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=2e-5,
            warmup_steps=0,
            logging_steps=10_000,
            save_strategy="no",
            report_to=[],
            dataloader_drop_last=True,
            bf16=args.precision == "bf16",
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=training_args, train_dataset=data, loss=loss, callbacks=[Timer()]
        )
        trainer.train()
    return args.steps * args.batch_size / (Timer.end - Timer.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs per side; the best one counts")
    parser.add_argument("--chunk-size", type=int, default=32, help="GradCache chunk (ST: mini_batch_size)")
    parser.add_argument("--losses", nargs="+", default=["infonce", "leaf"], choices=["infonce", "leaf", "gradcache"])
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    pairs = read_pairs("scifact", "train")
    n = (args.warmup + args.steps) * args.batch_size
    pairs = (pairs * (n // len(pairs) + 1))[:n]  # both sides see the same examples
    targets = np.random.default_rng(0).standard_normal((len(pairs), 768)).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    print(
        f"all-MiniLM-L6-v2, batch {args.batch_size}, max {args.max_length} tokens, {args.precision}, "
        f"{args.steps} timed steps; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    rows = []
    for kind in args.losses:
        # Alternate the sides and keep each one's best: on a shared machine, load bursts hit either side at random.
        st = ours = 0.0
        for _ in range(args.repeats):
            st = max(st, st_run(kind, pairs, targets, args))
            ours = max(ours, embedlab_run(kind, pairs, targets, args))
        peer = {
            "infonce": "MultipleNegativesRankingLoss",
            "leaf": "MSELoss",
            "gradcache": f"CachedMultipleNegativesRankingLoss(mini_batch_size={args.chunk_size})",
        }[kind]
        name = f"infonce, step.chunk_size={args.chunk_size}" if kind == "gradcache" else kind
        rows.append(
            {"loss": name, "peer loss": peer, "sentence-transformers": st, "embedlab": ours, "ratio": ours / st}
        )
    print(
        format_table(
            rows,
            ["loss", "peer loss", "sentence-transformers", "embedlab", "ratio"],
            ["embedlab loss", "sentence-transformers loss", "ST samples/s", "embedlab samples/s", "ratio"],
            precision=2,
        )
    )


if __name__ == "__main__":
    main()
