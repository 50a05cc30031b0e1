"""Frozen encoding under a token budget (`model.max_batch_tokens`): a pass over SciFact abstracts for each budget,
against the rows-only batches (no budget), same encoder, same run. How the default budget was chosen.

    python bench/encode_budget.py [--limit 1000] [--model minilm] [--batch-size 64] [--budgets 16384,8192,4096,2048]
                                  [--repeats 3] [--backend torch]

`Encoder.encode` sorts texts longest first and cuts batches of `--batch-size` rows; a budget splits each batch into
parts of at most that many padded tokens (rows × the batch's width), so the vectors stay bit for bit the same
(checked here: max |Δ| must print 0) and only speed and memory change. The rows-only batches are taken in turn: each
contender (budget) encodes the batch's texts under its budget, the order rotating batch by batch, so other load on a
shared CPU falls on all alike; a contender's pass is the sum over batches, the median of --repeats passes is reported
with its ratio over no budget (> 1: faster). Also printed: the padded tokens of each pass and the largest batch in
tokens (what bounds activation memory). fp32, one untimed warm-up batch per contender first.
"""

from __future__ import annotations

import argparse
import logging
import statistics

import numpy as np
from common import header
from frozen_pass import MODELS, time_rotating

from embedlab.data import load_task
from embedlab.data.batching import width_keeping_batches
from embedlab.hub import resolve_model
from embedlab.models import Encoder, runtime
from embedlab.report.table import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="documents; default the whole corpus (5,183)")
    parser.add_argument("--model", choices=sorted(MODELS), default="minilm")
    parser.add_argument("--backend", default="torch", help="torch | onnx | openvino (embedlab's frozen-pass backends)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64, help="rows per batch (eval.batch_size's default)")
    parser.add_argument("--budgets", default="16384,8192,4096,2048", help="max_batch_tokens values beside none")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("embedlab").setLevel(logging.WARNING)
    budgets: list[int | None] = [None, *(int(b) for b in args.budgets.split(",") if b)]
    data = load_task("scifact", max_docs=args.limit)
    texts = list(data.corpus.values())[: args.limit]
    encoder = Encoder.from_pretrained(
        resolve_model(MODELS[args.model]), max_length=args.max_length, precision="fp32", backend=args.backend
    )
    encoder.requires_grad_(False)  # frozen, as a teacher is (what lets a runtime run it)
    backend = runtime.backend_name(encoder)
    if backend != args.backend:
        raise SystemExit(f"backend {args.backend} fell back to {backend}")
    print(header("transformers"))
    print(
        f"{args.model}, backend {backend}, fp32, {len(texts)} SciFact abstracts, max {args.max_length} tokens, "
        f"batch {args.batch_size} rows, {args.repeats} repeats"
    )

    lengths = [len(x) for x in encoder.tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]]
    order = np.argsort([-n for n in lengths], kind="stable")
    batches = [order[s : s + args.batch_size] for s in range(0, len(texts), args.batch_size)]
    sorted_lengths = [lengths[i] for i in order]

    def contender(budget: int | None):
        return lambda batch: encoder.encode(batch, args.batch_size, show_progress=False, max_batch_tokens=budget)

    times, vectors = time_rotating({b: contender(b) for b in budgets}, texts, batches, args.repeats)

    rows = []
    for budget in budgets:
        cut = width_keeping_batches(sorted_lengths, args.batch_size, budget)
        rows.append(
            {
                "max_batch_tokens": budget or "none (rows only)",
                "seconds (median)": statistics.median(times[budget]),
                "runs": " ".join(f"{t:.1f}" for t in times[budget]),
                "vs none": statistics.median(times[None]) / statistics.median(times[budget]),
                "batches": len(cut),
                "padded tokens": sum((end - start) * width for start, end, width in cut),
                "largest batch (tokens)": max((end - start) * width for start, end, width in cut),
                "max |Δ| vs none": f"{np.abs(vectors[budget] - vectors[None]).max():.1e}",
            }
        )
    print("\n" + format_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
