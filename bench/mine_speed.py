"""Hard-negative mining speed: embedlab vs sentence-transformers' `mine_hard_negatives`, same model, corpus, settings.

    python bench/mine_speed.py [--max-docs N] [--max-queries N] [--num-negatives 8] [--top-k 100] [--relative 0.95]
                               [--repeats 3]

all-MiniLM-L6-v2 mines SciFact train queries (one (query, positive) pair per judgement) against the SciFact corpus.
Both sides encode the corpus and queries cold (no cache), retrieve with faiss and keep the top `--num-negatives`
non-positive candidates of the first `--top-k` (with `--relative`: only those scoring at most relative × the
positive's score; sentence-transformers' relative_margin = 1 − relative), fp32, torch, batches of `--batch-size`
rows sorted by length on both sides (embedlab without its token budget, as ST). Contenders — ST, embedlab cold (a
fresh, empty embedding cache each run) and embedlab warm (a cache filled by one untimed run first, which also warms
the process up for all) — take turns `--repeats` times with the order rotating (issue 17 item 6), each timed from
the mining call to its result (model load not timed). Printed: every run, each side's median seconds (min–max),
the ratio of medians over ST, and how often both sides chose the same negatives (queries with one positive, where
the settings coincide exactly; from each side's last run).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from functools import partial

from common import header, run_rotating, spread

from embedlab.data import data_root, load_beir
from embedlab.eval.cache import EmbeddingCache
from embedlab.hub import resolve_model
from embedlab.mining.mine import mine
from embedlab.mining.select import SelectionConfig
from embedlab.models import Encoder
from embedlab.report.table import format_table

ST = "sentence-transformers mine_hard_negatives"
COLD = "embedlab mine, cold"


def st_mine(data, args, out: dict) -> float:
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
    out[ST] = negatives
    return seconds


def embedlab_mine(data, args, cache_dir: str | None, out: dict) -> float:
    """One mining run; with no `cache_dir`, a fresh empty cache (cold: every text is encoded)."""
    with tempfile.TemporaryDirectory() as fresh:
        cache = EmbeddingCache(cache_dir or fresh)
        encoder = Encoder.from_pretrained(
            resolve_model("all-MiniLM-L6-v2"), precision="fp32", backend="torch", max_batch_tokens=None
        )
        selection = SelectionConfig(
            num_negatives=args.num_negatives,
            max_rank=args.top_k,
            margin="relative" if args.relative else "none",
            relative=args.relative or 0.95,
        )
        start = time.perf_counter()
        out[COLD] = mine(data, encoder, encoder, selection, top_k=args.top_k, batch_size=args.batch_size, cache=cache)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-docs", type=int, default=None, help="judged documents + the first others (all)")
    parser.add_argument("--max-queries", type=int, default=None, help="the first train queries (all)")
    parser.add_argument("--num-negatives", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--relative", type=float, default=None, help="relative margin, e.g. 0.95 (none)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side, order rotating; the median counts")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    data = load_beir(data_root() / "scifact", split="train", max_docs=args.max_docs, max_queries=args.max_queries)
    print(header("sentence-transformers", "transformers", "faiss-cpu"))
    print(
        f"all-MiniLM-L6-v2, SciFact train: {len(data.qrels)} queries, {len(data.corpus)} documents, top-{args.top_k}, "
        f"{args.num_negatives} negatives, relative={args.relative}, batch {args.batch_size}, {args.repeats} repeats"
    )
    out: dict = {}
    with tempfile.TemporaryDirectory() as warm_dir:
        embedlab_mine(data, args, warm_dir, out)  # fills the warm cache, untimed
        sides = {
            ST: partial(st_mine, data, args, out),
            COLD: partial(embedlab_mine, data, args, None, out),
            "embedlab mine, warm cache": partial(embedlab_mine, data, args, warm_dir, {}),
        }
        runs = run_rotating(sides, args.repeats)
    single = [r for r in out[COLD].records if len(r["positive_ids"]) == 1]
    same = sum(
        [data.corpus[d] for d in r["negative_ids"]] == out[ST].get(r["query"], [])[: len(r["negative_ids"])]
        for r in single
    )
    stats = {side: spread(seconds) for side, seconds in runs.items()}
    rows = [
        {
            "side": side,
            "seconds": s["median"],
            "min–max": f"{s['min']:.2f}–{s['max']:.2f}",
            "ratio": stats[ST]["median"] / s["median"],
        }
        for side, s in stats.items()
    ]
    print(format_table(rows, list(rows[0]), precision=2))
    print(f"same negatives, in the same order: {same}/{len(single)} single-positive queries")


if __name__ == "__main__":
    main()
