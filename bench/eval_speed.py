"""SciFact evaluation: embedlab vs sentence-transformers' InformationRetrievalEvaluator, same model, data, CPU.

    python bench/eval_speed.py [--limit N] [--model all-MiniLM-L6-v2] [--batch-size 64]

Both sides encode the same corpus and queries (title + " " + text, as BEIR/MTEB) with the same weights, batch
size and max length, then rank and score. Printed per embedlab mode: wall seconds, nDCG@10, the difference from
sentence-transformers' nDCG@10 and the speed ratio (sentence-transformers time / embedlab time):
  - cold fp32: no cache, float32 — the like-for-like comparison;
  - cold bf16: bf16 autocast (AMX/AVX-512-BF16 CPUs), a different numeric path, so nDCG may move;
  - warm: the embedding cache already holds this model's vectors (re-evaluating a frozen model or teacher).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time

import torch

from embedlab.data import load_task
from embedlab.eval.cache import EmbeddingCache
from embedlab.eval.retrieval import RetrievalSettings, evaluate_retrieval
from embedlab.hub import resolve_model
from embedlab.models import Encoder
from embedlab.report.table import format_table


def time_st(folder: str, data, batch_size: int) -> tuple[float, float]:
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
    ndcg = next(v for k, v in scores.items() if k.endswith("ndcg@10"))
    return seconds, float(ndcg)


def time_embedlab(folder: str, data, batch_size: int, precision: str, cache: EmbeddingCache | None):
    encoder = Encoder.from_pretrained(folder, precision=precision)
    start = time.perf_counter()
    result = evaluate_retrieval(data, encoder, settings=RetrievalSettings(batch_size=batch_size), cache=cache)
    return time.perf_counter() - start, result.rows[0]["ndcg_at_10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--limit", type=int, default=None, help="queries (the corpus is capped at 10x, judged kept)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--skip-bf16", action="store_true")
    args = parser.parse_args()
    logging.getLogger("embedlab").setLevel(logging.WARNING)
    folder = resolve_model(args.model)
    data = load_task("scifact", limit=args.limit, max_docs=args.limit * 10 if args.limit else None)
    print(
        f"SciFact: {len(data.queries)} queries, {len(data.corpus)} documents; model {args.model}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    st_seconds, st_ndcg = time_st(folder, data, args.batch_size)
    rows = [
        {
            "system": "sentence-transformers IR evaluator",
            "seconds": st_seconds,
            "ndcg_at_10": st_ndcg,
            "diff": 0.0,
            "speedup": 1.0,
        }
    ]

    def add(name: str, seconds: float, ndcg: float) -> None:
        rows.append(
            {
                "system": name,
                "seconds": seconds,
                "ndcg_at_10": ndcg,
                "diff": ndcg - st_ndcg,
                "speedup": st_seconds / seconds,
            }
        )

    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(tmp)
        add("embedlab cold fp32 (fills cache)", *time_embedlab(folder, data, args.batch_size, "fp32", cache))
        add("embedlab warm (cache hit)", *time_embedlab(folder, data, args.batch_size, "fp32", cache))
    if not args.skip_bf16:
        add("embedlab cold bf16 autocast", *time_embedlab(folder, data, args.batch_size, "bf16", None))
    print(format_table(rows, ["system", "seconds", "ndcg_at_10", "diff", "speedup"]))
    print(json.dumps({r["system"]: {k: round(v, 5) for k, v in r.items() if k != "system"} for r in rows}))


if __name__ == "__main__":
    main()
