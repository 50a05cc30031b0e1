"""Sharded encoding over ranks (part (b) of the scale benchmark, bench/scale.py): W gloo processes vs one.

    python bench/encode_ranks.py [--world 2] [--limit 0] [--batch-size 64] [--shard-rows 16384] [--threads 1]
                                 [--repeats 3] [--workdir DIR]

The SciFact corpus (title + " " + text; --limit N keeps the first N) embedded by all-MiniLM-L6-v2 (fp32, torch
backend, max length 256) through embedlab's embedding cache (`encode_cached`, kind=document) into a fresh cache
folder: by one process, and by W processes of one torch.distributed gloo group sharing the shards (a cache
`sharing_ranks`: rank r encodes shards r, r+W, …). Every run is W' processes started by torch.multiprocessing spawn
with --threads torch threads each (the one-process run is a group of one: the same code path); the time is rank 0's
from a barrier after the model is loaded to the published entry (start-up and model load left out), the median of
--repeats, the order rotating (1, W then W, 1). Printed: both times, every run and their ratio, the shards each
rank encoded, whether every run's vectors are identical to the first one-process run's (bitwise), and the load
average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from common import header, turns

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def corpus(limit: int) -> list[str]:
    from embedlab.data import load_task

    data = load_task("scifact")
    texts = list(data.corpus.values())
    return texts[:limit] if limit else texts


def rank_main(rank: int, world: int, args: argparse.Namespace, run: Path, texts: list[str]) -> None:
    from embedlab.eval.cache import EmbeddingCache, encode_cached
    from embedlab.hub import resolve_model
    from embedlab.models import Encoder

    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"file://{run}/rendezvous", rank=rank, world_size=world)
    try:
        encoder = Encoder.from_pretrained(resolve_model(MODEL), max_length=256, precision="fp32", backend="torch")
        shards: list[int] = []
        encode = encoder.encode
        encoder.encode = lambda t, **kw: shards.append(len(t)) or encode(t, **kw)
        cache = EmbeddingCache(run / "cache", shard_rows=args.shard_rows).sharing_ranks()
        dist.barrier()
        started = time.perf_counter()
        vectors = encode_cached(encoder, texts, kind="document", cache=cache, batch_size=args.batch_size)
        seconds = time.perf_counter() - started
        (run / f"rank{rank}.json").write_text(json.dumps({"seconds": seconds, "shards": shards}))
        if rank == 0:
            np.save(run / "vectors.npy", np.asarray(vectors))
    finally:
        dist.destroy_process_group()


def one_run(world: int, args: argparse.Namespace, texts: list[str], workdir: Path) -> dict:
    run = Path(tempfile.mkdtemp(prefix=f"w{world}-", dir=workdir))
    mp.spawn(rank_main, args=(world, args, run, texts), nprocs=world)
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in range(world)]
    return {"seconds": ranks[0]["seconds"], "shards": [r["shards"] for r in ranks], "vectors": run / "vectors.npy"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="first N documents (0: all 5,183)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-rows", type=int, default=16_384)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--repeats", type=int, default=3, help="runs per group size, order rotating; median counts")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = corpus(args.limit)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="encode_ranks-"))
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    runs: dict[int, list[dict]] = {1: [], args.world: []}
    for r in range(args.repeats):
        for world in turns([1, args.world], r):
            runs[world].append(one_run(world, args, texts, workdir))
    load_after = os.getloadavg()
    reference = np.load(runs[1][0]["vectors"])
    identical = all(np.array_equal(np.load(r["vectors"]), reference) for rs in runs.values() for r in rs)
    one, many = (statistics.median(r["seconds"] for r in runs[w]) for w in (1, args.world))
    print(f"SciFact corpus, {len(texts)} documents, {MODEL}, batch {args.batch_size}, {args.threads} thread(s)/process")
    print(f"{header()}; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print("| processes | seconds (median) | runs | rows encoded per rank (per shard) |")
    print("|---|---|---|---|")
    for world, seconds in ((1, one), (args.world, many)):
        each = " ".join(f"{r['seconds']:.1f}" for r in runs[world])
        print(f"| {world} | {seconds:.1f} | {each} | {runs[world][0]['shards']} |")
    print(f"ratio one/{args.world}: {one / many:.2f}x; vectors identical to one process (bitwise): {identical}")


if __name__ == "__main__":
    main()
