"""SciFact evaluation: embedlab vs sentence-transformers' InformationRetrievalEvaluator, same model, data, CPU.

    python bench/eval_speed.py [--limit N] [--model all-MiniLM-L6-v2] [--batch-size 64] [--repeats 3]
                               [--budget 4096] [--skip-bf16]

Both sides encode the same corpus and queries (title + " " + text, as BEIR/MTEB) with the same weights, batch
size and max length (the model folder's, 256 for MiniLM), in length-sorted batches (ST sorts by characters,
embedlab by tokens), then rank and score. Contenders, each timed from the evaluation call to its metrics (model load
not timed), taking turns `--repeats` times with the order rotating (issue 17 item 6):
  - cold fp32: embedlab's torch backend, no cache, batches of `--batch-size` rows as ST's — the like-for-like row;
  - cold fp32 with embedlab's default token budget (`model.max_batch_tokens`, `--budget`; 0 skips it): the same
    rows cut into parts of at most that many padded tokens (vectors bit for bit the same);
  - warm: the embedding cache already holds this model's vectors (filled by one untimed pass first, which also
    warms the process up for every contender) — re-evaluating a frozen model or teacher;
  - cold bf16: bf16 autocast (AMX/AVX-512-BF16 CPUs), a different numeric path, so nDCG may move.
Printed: every run, then per contender the median seconds (min–max), nDCG@10, the difference from ST's, the speed
ratio over ST (medians) and over embedlab's cold fp32 row.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from functools import partial

from common import header, run_rotating, spread

from embedlab.data import load_task
from embedlab.eval.cache import EmbeddingCache
from embedlab.eval.retrieval import RetrievalSettings, evaluate_retrieval
from embedlab.hub import resolve_model
from embedlab.models import Encoder
from embedlab.models.encoder import DEFAULT_BATCH_TOKENS
from embedlab.report.table import format_table

ST = "sentence-transformers IR evaluator"
COLD = "embedlab cold fp32"
WARM = "embedlab warm (cache hit)"


def time_st(folder: str, data, batch_size: int, ndcg: dict[str, float]) -> float:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    model = SentenceTransformer(folder, device="cpu")
    relevant = {q: {d for d, rel in docs.items() if rel > 0} for q, docs in data.qrels.items()}
    evaluator = InformationRetrievalEvaluator(
        {q: data.queries[q] for q in relevant},
        data.corpus,
        relevant,
        batch_size=batch_size,
        ndcg_at_k=[10],
        mrr_at_k=[10],
        accuracy_at_k=[1],
        precision_recall_at_k=[10, 100],
        map_at_k=[100],
        write_csv=False,
        show_progress_bar=False,
    )
    start = time.perf_counter()
    scores = evaluator(model)
    seconds = time.perf_counter() - start
    ndcg[ST] = float(next(v for k, v in scores.items() if k.endswith("ndcg@10")))
    return seconds


def time_embedlab(name: str, folder: str, data, args, precision: str, budget: int | None, cache, ndcg) -> float:
    encoder = Encoder.from_pretrained(folder, precision=precision, backend="torch", max_batch_tokens=budget)
    start = time.perf_counter()
    result = evaluate_retrieval(data, encoder, settings=RetrievalSettings(batch_size=args.batch_size), cache=cache)
    seconds = time.perf_counter() - start
    ndcg[name] = result.rows[0]["ndcg_at_10"]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--limit", type=int, default=None, help="queries (the corpus is capped at 10x, judged kept)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender, order rotating; median counts")
    parser.add_argument("--budget", type=int, default=DEFAULT_BATCH_TOKENS, help="embedlab token budget row; 0: none")
    parser.add_argument("--skip-bf16", action="store_true")
    args = parser.parse_args()
    logging.getLogger("embedlab").setLevel(logging.WARNING)
    folder = resolve_model(args.model)
    data = load_task("scifact", limit=args.limit, max_docs=args.limit * 10 if args.limit else None)
    print(header("sentence-transformers", "transformers"))
    print(
        f"SciFact: {len(data.queries)} queries, {len(data.corpus)} documents; model {args.model}, batch "
        f"{args.batch_size}, {args.repeats} repeats"
    )
    ndcg: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        warm_cache = EmbeddingCache(tmp)
        time_embedlab(WARM, folder, data, args, "fp32", None, warm_cache, ndcg)  # fills the cache, untimed
        sides = {
            ST: partial(time_st, folder, data, args.batch_size, ndcg),
            COLD: partial(time_embedlab, COLD, folder, data, args, "fp32", None, None, ndcg),
            WARM: partial(time_embedlab, WARM, folder, data, args, "fp32", None, warm_cache, ndcg),
        }
        if args.budget:
            name = f"embedlab cold fp32, max_batch_tokens {args.budget}"
            sides[name] = partial(time_embedlab, name, folder, data, args, "fp32", args.budget, None, ndcg)
        if not args.skip_bf16:
            name = "embedlab cold bf16 autocast"
            sides[name] = partial(time_embedlab, name, folder, data, args, "bf16", None, None, ndcg)
        runs = run_rotating(sides, args.repeats)
    medians = {side: spread(seconds)["median"] for side, seconds in runs.items()}
    rows = [
        {
            "system": side,
            "seconds": medians[side],
            "min–max": "{min:.2f}–{max:.2f}".format(**spread(seconds)),
            "ndcg_at_10": ndcg[side],
            "diff": ndcg[side] - ndcg[ST],
            "vs ST": medians[ST] / medians[side],
            "vs embedlab cold fp32": medians[COLD] / medians[side],
        }
        for side, seconds in runs.items()
    ]
    print(format_table(rows, list(rows[0])))
    print(json.dumps({r["system"]: {k: v for k, v in r.items() if k != "system"} for r in rows}))


if __name__ == "__main__":
    main()
