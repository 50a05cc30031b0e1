"""Hard-negative mining speed: embedlab vs sentence-transformers' `mine_hard_negatives`, same model, corpus, settings.

    python bench/mine_speed.py [--max-docs N] [--max-queries N] [--num-negatives 8] [--top-k 100] [--relative 0.95]

all-MiniLM-L6-v2 mines SciFact train queries (one (query, positive) pair per judgement) against the SciFact corpus.
Both sides encode the corpus and queries cold (no cache), retrieve with faiss and keep the top `--num-negatives`
non-positive candidates of the first `--top-k` (with `--relative`: only those scoring at most relative × the
positive's score; sentence-transformers' relative_margin = 1 − relative). Printed: seconds per side, the ratio, a
warm rerun of embedlab (embedding cache), and how often both sides chose the same negatives (queries with one
positive, where the settings coincide exactly).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings

import torch

from embedlab.data import data_root, load_beir
from embedlab.eval.cache import EmbeddingCache
from embedlab.hub import resolve_model
from embedlab.mining.mine import mine
from embedlab.mining.select import SelectionConfig
from embedlab.models import Encoder
from embedlab.report.table import format_table


def st_mine(data, args) -> tuple[float, dict[str, list[str]]]:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    model = SentenceTransformer(str(resolve_model("all-MiniLM-L6-v2")), device="cpu")
    pairs = [(q, d) for q, judged in data.qrels.items() for d, rel in judged.items() if rel > 0 and d in data.corpus]
    dataset = Dataset.from_dict(
        {"anchor": [data.queries[q] for q, _ in pairs], "positive": [data.corpus[d] for _, d in pairs]}
    )
    extra = {"relative_margin": 1 - args.relative} if args.relative else {}
    start = time.perf_counter()
    mined = mine_hard_negatives(
        dataset,
        model,
        corpus=list(data.corpus.values()),
        range_min=0,
        range_max=args.top_k,
        num_negatives=args.num_negatives,
        sampling_strategy="top",
        batch_size=args.batch_size,
        use_faiss=True,
        output_format="n-tuple",
        verbose=False,
        **extra,
    )
    seconds = time.perf_counter() - start
    negatives = {}
    for row in mined:
        negatives.setdefault(row["anchor"], [row[f"negative_{i + 1}"] for i in range(args.num_negatives)])
    return seconds, negatives


def embedlab_mine(data, args, cache: EmbeddingCache | None) -> tuple[float, object]:
    encoder = Encoder.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    selection = SelectionConfig(
        num_negatives=args.num_negatives,
        max_rank=args.top_k,
        margin="relative" if args.relative else "none",
        relative=args.relative or 0.95,
    )
    start = time.perf_counter()
    result = mine(data, encoder, encoder, selection, top_k=args.top_k, batch_size=args.batch_size, cache=cache)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-docs", type=int, default=None, help="judged documents + the first others (all)")
    parser.add_argument("--max-queries", type=int, default=None, help="the first train queries (all)")
    parser.add_argument("--num-negatives", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--relative", type=float, default=None, help="relative margin, e.g. 0.95 (none)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    data = load_beir(data_root() / "scifact", split="train", max_docs=args.max_docs, max_queries=args.max_queries)
    print(
        f"all-MiniLM-L6-v2, SciFact train: {len(data.qrels)} queries, {len(data.corpus)} documents, top-{args.top_k}, "
        f"{args.num_negatives} negatives, relative={args.relative}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    st_seconds, st_negatives = st_mine(data, args)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["EMBEDLAB_CACHE"] = tmp  # a private, empty cache: the cold run really encodes
        cold, result = embedlab_mine(data, args, EmbeddingCache())
        warm, _ = embedlab_mine(data, args, EmbeddingCache())
    single = [r for r in result.records if len(r["positive_ids"]) == 1]
    same = sum(
        [data.corpus[d] for d in r["negative_ids"]] == st_negatives.get(r["query"], [])[: len(r["negative_ids"])]
        for r in single
    )
    rows = [
        {"side": "sentence-transformers mine_hard_negatives", "seconds": st_seconds, "ratio": 1.0},
        {"side": "embedlab mine, cold", "seconds": cold, "ratio": st_seconds / cold},
        {"side": "embedlab mine, warm cache", "seconds": warm, "ratio": st_seconds / warm},
    ]
    print(format_table(rows, ["side", "seconds", "ratio"], precision=2))
    print(f"same negatives, in the same order: {same}/{len(single)} single-positive queries")


if __name__ == "__main__":
    main()
