"""Search at corpus scale: peak memory and time of exact top-k search, and approximate indexes' recall.

    python bench/scale.py --workdir /data/scale [--sizes 2000000 8800000] [--dim 384] [--queries 1000] [--k 100]
                          [--repeats 3] [--threads N] [--ann-size 2000000] [--ann ivf_flat ivf_pq hnsw]

(a) For each size N, a generated corpus of N unit vectors (a seeded mixture of 1,024 clusters, no encoder) is
written once as a float32 .npy under --workdir and 1,000 queries from the same mixture. Every contender runs in a
fresh process, --repeats times in alternating order, and is watched from outside (/proc/<pid>/status every 5 ms):
peak RssAnon (private memory: what must fit in RAM) and peak RssFile (pages mapped from the store: reclaimable).
  blocked   embedlab.eval.search.search_blocked over the memory-mapped store (eval.search.method=blocked)
  flat      the corpus loaded into RAM and searched by one faiss IndexFlatIP (embedlab's exact search; also what
            mine_hard_negatives(use_faiss=True) does on a CPU)
  st-sem    sentence_transformers.util.semantic_search(queries, corpus, top_k=k) on the corpus as a torch tensor
  st-mine   the search inside sentence_transformers.util.mine_hard_negatives (its default use_faiss=False path,
            util/hard_negatives.py in 6.3.0): torch.as_tensor(corpus), then per chunk of faiss_batch_size=16384
            queries model.similarity(chunk, corpus) — util.cos_sim for a cosine model — and torch.topk(k).
            The function itself needs a model and texts, so these lines are called as it calls them.
A contender whose estimated RAM exceeds --mem-limit-gb is skipped (the table says so). Ids are compared with
blocked's: the share of queries whose top-k ids are the same set, and in the same order.
(b) Sharded encoding over ranks (W gloo processes vs one) is bench/encode_ranks.py.
(c) At --ann-size: IVF-Flat, IVF-PQ and HNSW (embedlab.eval.ann with SearchSettings' defaults unless given)
built from the memory-mapped store; build and search times, recall@k against blocked's exact top-k (a bare
`--ann` skips this part).
Prints Markdown tables with the commit, CPU model and thread count. The store files stay under --workdir.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EXACT = ("blocked", "flat", "st-sem", "st-mine")
ANN = ("ivf_flat", "ivf_pq", "hnsw")
CLUSTERS = 1024
ROWS_PER_WRITE = 262_144


# ------------------------------------------------------------------------------------------------ data
def generate(path: Path, n: int, dim: int, seed: int, draw: int = 0) -> None:
    """N unit vectors from the mixture of clusters `seed` fixes (`draw` 0: the corpus, 1: the queries), written
    block by block (never all in RAM), atomically."""
    if path.exists() and np.load(path, mmap_mode="r").shape == (n, dim):
        return
    centres = _unit(np.random.default_rng(seed).standard_normal((CLUSTERS, dim)))
    tmp = path.with_suffix(".partial.npy")
    store = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
    for block, start in enumerate(range(0, n, ROWS_PER_WRITE)):
        rng = np.random.default_rng([seed, draw, n, block])  # each block on its own stream: any size is reproducible
        rows = min(ROWS_PER_WRITE, n - start)
        noise = rng.standard_normal((rows, dim), dtype=np.float32) * 0.05
        store[start : start + rows] = _unit(centres[rng.integers(0, CLUSTERS, rows)] + noise)
    store.flush()
    del store
    os.replace(tmp, path)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ one contender
def run_contender(name: str, store: str, queries: str, k: int, out: str, knobs: dict) -> dict:
    """Inside the fresh process: run one contender, save its top-k ids to `out`, return its timings."""
    threads = knobs["threads"]
    import faiss
    import torch

    faiss.omp_set_num_threads(threads)
    torch.set_num_threads(threads)
    from embedlab.eval.ann import SearchSettings, build_index
    from embedlab.eval.search import search_blocked, search_inner_product

    if name in ("st-sem", "st-mine"):
        from sentence_transformers import util  # imported before the clock starts, as the others' libraries are
    q = np.load(queries)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if name == "idle":  # the interpreter, its libraries and the queries: what every peak includes
        ids = np.zeros((len(q), 0), np.int64)
    elif name == "blocked":
        _, ids = search_blocked(q, np.load(store, mmap_mode="r"), k, knobs["block_rows"])
    elif name == "flat":
        docs = np.load(store)
        seconds["load"] = time.perf_counter() - started
        _, ids = search_inner_product(q, docs, k, use_gpu=False)
    elif name in ("st-sem", "st-mine"):
        corpus = torch.as_tensor(np.load(store))
        seconds["load"] = time.perf_counter() - started
        qt = torch.as_tensor(q)
        if name == "st-sem":
            hits = util.semantic_search(qt, corpus, top_k=k)
            ids = np.array([[h["corpus_id"] for h in row] for row in hits])
        else:
            chunks = []
            for i in range(0, len(qt), 16384):  # mine_hard_negatives' faiss_batch_size default
                chunk_scores = util.cos_sim(qt[i : i + 16384], corpus)
                chunks.append(torch.topk(chunk_scores, k=min(k, len(corpus)), dim=1).indices)
            ids = torch.cat(chunks).numpy()
    elif name in ANN:
        settings = SearchSettings(method=name, **knobs["ann"])
        docs = np.load(store, mmap_mode="r")
        index = build_index(docs, settings, k)
        seconds["build"] = time.perf_counter() - started
        started = time.perf_counter()
        _, ids = index.search(q, k)
    else:
        raise SystemExit(f"unknown contender {name}")
    seconds["search"] = time.perf_counter() - started - seconds.get("load", 0.0)
    np.save(out, np.asarray(ids, dtype=np.int64))
    return seconds


def measure(name: str, store: Path, queries: Path, k: int, ids_out: Path, knobs: dict) -> dict:
    """Run one contender in a fresh process, watching its RssAnon / RssFile from outside; its result and peaks."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_run", name, str(store), str(queries), str(k),
           str(ids_out), json.dumps(knobs)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.update(OMP_NUM_THREADS=str(knobs["threads"]), MKL_NUM_THREADS=str(knobs["threads"]))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = {"RssAnon": 0, "RssFile": 0}
    while proc.poll() is None:
        for field, kib in _status(proc.pid).items():
            peak[field] = max(peak[field], kib)
        time.sleep(0.005)
    out, err = proc.communicate()
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {err.strip().splitlines()[-1] if err.strip() else 'killed'}"}
    return {**json.loads(out.strip().splitlines()[-1]), "anon_gb": peak["RssAnon"] / 2**20,
            "file_gb": peak["RssFile"] / 2**20}  # fmt: skip


def _status(pid: int) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:  # the process just ended
        return {}
    return {f: int(line.split()[1]) for line in lines for f in ("RssAnon", "RssFile") if line.startswith(f + ":")}


# ------------------------------------------------------------------------------------------------ tables
def estimated_gb(name: str, n: int, dim: int, n_queries: int, block_rows: int) -> float:
    """RAM a contender needs beyond the interpreter, from its algorithm (to skip what cannot fit)."""
    corpus = n * dim * 4 / 2**30
    return {
        "blocked": block_rows * dim * 4 / 2**30,
        "flat": 2 * corpus,  # the loaded array and the index's copy
        "st-sem": corpus + 100 * min(n, 500_000) * 4 / 2**30,
        "st-mine": corpus + n_queries * n * 4 / 2**30,  # the full query × corpus score matrix
    }.get(name, corpus)


def same_ids(ids: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Share of queries with the same top-k id set, and with the same ids in the same order."""
    sets = np.mean([set(a) == set(b) for a, b in zip(ids.tolist(), reference.tolist(), strict=True)])
    return float(sets), float(np.mean((ids == reference).all(1)))


def recall(ids: np.ndarray, reference: np.ndarray) -> float:
    from embedlab.eval.ann import recall_at_k

    return recall_at_k(ids, reference)


def machine(threads: int) -> str:
    from common import header  # here, not at the top: a contender's process (this file) stays as lean as before

    return f"{header('faiss-cpu', 'sentence-transformers')}; each contender on {threads} threads"


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" if c in ("contender", "size") else "---:"
             for c in columns) + "|"]  # fmt: skip
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def exact_part(args, knobs: dict, size: int, store: Path, queries: Path) -> tuple[list[dict], np.ndarray | None]:
    limit = args.mem_limit_gb
    runnable = [c for c in args.contenders if estimated_gb(c, size, args.dim, args.queries, args.block_rows) < limit]
    results: dict[str, list[dict]] = {c: [] for c in runnable}
    for repeat in range(args.repeats):
        order = runnable if repeat % 2 == 0 else runnable[::-1]  # alternate: no contender always runs first
        for name in order:
            results[name].append(measure(name, store, queries, args.k, args.workdir / f"ids_{name}.npy", knobs))
    reference = np.load(args.workdir / "ids_blocked.npy") if "blocked" in runnable else None
    rows = []
    for name in args.contenders:
        row = {"size": f"{size:,}", "contender": name}
        if name not in runnable:
            need = estimated_gb(name, size, args.dim, args.queries, args.block_rows)
            rows.append({**row, "search s": f"skipped: needs ~{need:.0f} GB > {limit:g} GB"})
            continue
        runs = results[name]
        if any("error" in r for r in runs):
            rows.append({**row, "search s": next(r["error"] for r in runs if "error" in r)})
            continue
        row["search s"] = f"{statistics.median(r['search'] for r in runs):.2f}"
        row["load s"] = f"{statistics.median(r.get('load', 0.0) for r in runs):.2f}"
        row["peak RssAnon GB"] = f"{max(r['anon_gb'] for r in runs):.2f}"
        row["peak RssFile GB"] = f"{max(r['file_gb'] for r in runs):.2f}"
        if reference is not None:
            sets, ordered = same_ids(np.load(args.workdir / f"ids_{name}.npy"), reference)
            row["same top-k ids"] = f"{sets:.1%}"
            row["same order"] = f"{ordered:.1%}"
        rows.append(row)
    return rows, reference


def ann_part(args, knobs: dict, store: Path, queries: Path, reference: np.ndarray) -> list[dict]:
    rows = []
    for name in args.ann:
        r = measure(name, store, queries, args.k, args.workdir / f"ids_{name}.npy", knobs)  # one build each
        if "error" in r:
            rows.append({"contender": name, "build s": r["error"]})
            continue
        ids = np.load(args.workdir / f"ids_{name}.npy")
        rows.append({"contender": name, "build s": f"{r['build']:.1f}", "search s": f"{r['search']:.2f}",
                     f"recall@{args.k}": f"{recall(ids, reference):.4f}",
                     "peak RssAnon GB": f"{r['anon_gb']:.2f}"})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="where the generated stores are kept")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000_000, 8_800_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--block-rows", type=int, default=262_144)
    parser.add_argument("--contenders", nargs="+", default=list(EXACT), choices=EXACT)
    parser.add_argument("--mem-limit-gb", type=float, default=_mem_total_gb() * 0.8, help="skip contenders above")
    parser.add_argument("--ann", nargs="*", default=list(ANN), choices=ANN, help="approximate indexes for (c)")
    parser.add_argument("--ann-size", type=int, default=2_000_000, help="corpus size of (c); one of --sizes")
    parser.add_argument("--nlist", type=int, default=0)
    parser.add_argument("--nprobe", type=int, default=None)
    parser.add_argument("--pq-m", type=int, default=None)
    parser.add_argument("--hnsw-m", type=int, default=None)
    parser.add_argument("--ef-search", type=int, default=None)
    parser.add_argument("--ef-construction", type=int, default=None, help="hnsw build effort (SearchSettings: 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    ann_knobs = {"nlist": args.nlist, "nprobe": args.nprobe, "pq_m": args.pq_m, "hnsw_m": args.hnsw_m,
                 "ef_search": args.ef_search, "ef_construction": args.ef_construction,
                 "block_rows": args.block_rows}  # fmt: skip
    knobs = {"threads": args.threads, "block_rows": args.block_rows,
             "ann": {k: v for k, v in ann_knobs.items() if v is not None}}  # fmt: skip
    print(f"{machine(args.threads)}; dim {args.dim}, {args.queries} queries, top-{args.k}, "
          f"{args.repeats} repeats (median time, max peak), block_rows {args.block_rows}\n")  # fmt: skip
    exact_rows, ann_rows = [], []
    for size in args.sizes:
        store = args.workdir / f"corpus_{size}x{args.dim}_seed{args.seed}.npy"
        queries = args.workdir / f"queries_{args.queries}x{args.dim}_seed{args.seed}.npy"
        generate(store, size, args.dim, args.seed)
        if not queries.exists():
            generate(queries, args.queries, args.dim, args.seed, draw=1)  # the corpus' clusters, other draws
        if size == args.sizes[0]:
            idle = measure("idle", store, queries, args.k, args.workdir / "ids_idle.npy", knobs)
            print(f"the same process without a search (interpreter, numpy, faiss, torch, the queries): peak RssAnon "
                  f"{idle['anon_gb']:.2f} GB, RssFile {idle['file_gb']:.2f} GB\n")  # fmt: skip
        rows, reference = exact_part(args, knobs, size, store, queries)
        exact_rows += rows
        if size == args.ann_size and args.ann and reference is not None:
            ann_rows += [{"size": f"{size:,}", **r} for r in ann_part(args, knobs, store, queries, reference)]
    columns = ["size", "contender", "search s", "load s", "peak RssAnon GB", "peak RssFile GB", "same top-k ids",
               "same order"]  # fmt: skip
    print(table(exact_rows, columns))
    if ann_rows:
        print()
        print(table(ann_rows, ["size", "contender", "build s", "search s", f"recall@{args.k}", "peak RssAnon GB"]))


def _mem_total_gb() -> float:
    line = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal:"))
    return int(line.split()[1]) / 2**20


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_run":
        name, store, queries, k, out, knobs = sys.argv[2:8]
        print(json.dumps(run_contender(name, store, queries, int(k), out, json.loads(knobs))))
    else:
        main()
