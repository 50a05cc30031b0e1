"""Exactness at a size the in-RAM flat index cannot hold: faiss' brute-force `faiss.knn` over the memory-mapped store
(no index, no copy) against the ids `bench/scale.py` saved for blocked search; prints where they differ and the
float64 scores at the differing places.

    python bench/knn_check.py --workdir <scale.py's workdir> --size 8800000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np
from common import header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--size", type=int, default=8_800_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    print(f"{header('faiss-cpu')}; faiss on {args.threads} threads")
    docs = np.load(args.workdir / f"corpus_{args.size}x{args.dim}_seed0.npy", mmap_mode="r")
    queries = np.load(args.workdir / f"queries_{args.queries}x{args.dim}_seed0.npy")
    blocked = np.load(args.workdir / "ids_blocked.npy")  # scale.py's last exact size: run it with this size last
    started = time.perf_counter()
    _, ids = faiss.knn(queries, docs, args.k, metric=faiss.METRIC_INNER_PRODUCT)
    print(f"faiss.knn over the memory-mapped {args.size:,} store: {time.perf_counter() - started:.1f} s")
    same = [set(a) == set(b) for a, b in zip(ids.tolist(), blocked.tolist(), strict=True)]
    ordered = np.mean((ids == blocked).all(1))
    print(f"same top-{args.k} id sets as blocked: {np.mean(same):.1%}; same order: {ordered:.1%}")
    for q in np.flatnonzero(~np.asarray(same))[:5]:
        for row in sorted(set(ids[q].tolist()) ^ set(blocked[q].tolist())):
            exact = float(docs[row].astype(np.float64) @ queries[q].astype(np.float64))
            print(f"query {q}: row {row} float64 score {exact!r}, in blocked's top-{args.k}: {row in set(blocked[q])}")


if __name__ == "__main__":
    main()
