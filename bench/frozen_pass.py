"""A frozen encoder's pass over the SciFact corpus: embedlab's backends vs sentence-transformers, same CPU, same run.

    python bench/frozen_pass.py [--limit 1000] [--models mpnet,minilm] [--batch-size 32] [--repeats 3]

The teacher tables, the teacher's and the shipped models' evaluations are this pass. Every contender embeds the same
texts (SciFact abstracts, title + " " + text: the judged documents of the test queries used, then others up to
--limit; --limit N uses N/4 queries) at the same max length (256) and batch size, sorted by length (the same batches
for all), in float32, normalised. Contenders take turns batch by batch, the order rotating, so that other load on a
shared CPU falls on all alike; each total is one pass's time; the median of --repeats passes is reported, with the
ratio over sentence-transformers' default (torch) backend and over embedlab's torch path. One untimed warm-up call
each first (embedlab's runtimes export/compile once: those one-off seconds are printed). Also printed: max |Δ| of
each contender's vectors from embedlab torch, nDCG@10 of the SciFact test queries over this corpus, and how far
from the CPU's fp32 peak the pass runs (useful FLOPs / time over cores × clock × FLOP per cycle; --flop-per-cycle,
default 32 = two 256-bit FMA pipes × 8 lanes × 2, as on Zen 2-4 and Haswell-class AVX2 cores; the clock is
/proc/cpuinfo's or --clock-ghz).

sentence-transformers' own ONNX/OpenVINO backends need optimum-onnx / optimum-intel; they are run when importable.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from common import encoder_flops, fp32_peak, header
from transformers import AutoConfig, AutoTokenizer

from embedlab.data import load_task
from embedlab.eval.metrics import retrieval_metrics
from embedlab.eval.search import search_inner_product
from embedlab.hub import resolve_model
from embedlab.models import Encoder, runtime
from embedlab.report.table import format_table

MODELS = {"mpnet": "sentence-transformers/all-mpnet-base-v2", "minilm": "sentence-transformers/all-MiniLM-L6-v2"}
ST_RUNTIMES = {"onnx": "optimum.onnxruntime", "openvino": "optimum.intel"}  # what ST's backend= needs


def st_contender(folder: str, max_length: int, batch_size: int, backend: str = "torch") -> Callable:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(folder, device="cpu", backend=backend)
    model.max_seq_length = max_length

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)

    return encode


def embedlab_contender(folder: str, max_length: int, batch_size: int, backend: str) -> Callable:
    encoder = Encoder.from_pretrained(folder, max_length=max_length, precision="fp32", backend=backend)
    encoder.requires_grad_(False)  # frozen, as a teacher is: what lets a runtime run it
    started = time.perf_counter()
    if runtime.backend_name(encoder) != backend:
        raise RuntimeError(f"embedlab backend {backend} fell back to {runtime.backend_name(encoder)}")
    print(f"  embedlab {backend}: ready in {time.perf_counter() - started:.1f} s (export/compile on first use)")

    def encode(texts: list[str]) -> np.ndarray:
        return encoder.encode(texts, batch_size=batch_size, show_progress=False)

    return encode


def ndcg10(encode: Callable, data, doc_vectors: np.ndarray, dids: list[str]) -> float:
    qids = [q for q in data.qrels if q in data.queries]
    queries = encode([data.queries[q] for q in qids])
    scores, idx = search_inner_product(np.ascontiguousarray(queries), np.ascontiguousarray(doc_vectors), 10)
    run = {q: {dids[j]: float(s) for s, j in zip(scores[i], idx[i], strict=True) if j >= 0} for i, q in enumerate(qids)}
    return retrieval_metrics(data.qrels, run, (10,))[0]["ndcg_at_10"]


def time_rotating(
    contenders: dict, texts: list[str], batches: list[np.ndarray], repeats: int
) -> tuple[dict[object, list[float]], dict[object, np.ndarray]]:
    """Each contender (key -> encode(list of texts)) over the same batches, taking turns batch by batch with the order
    rotating, so other load on a shared CPU falls on all of them alike. Returns each one's seconds per repeat and its
    vectors in input order. One untimed warm-up batch each first (first-call allocations, lazy compilation)."""
    for encode in contenders.values():
        encode([texts[i] for i in batches[0]])
    keys = list(contenders)
    times: dict[object, list[float]] = {k: [] for k in keys}
    vectors = {k: np.zeros((len(texts), 0), dtype=np.float32) for k in keys}
    for r in range(repeats):
        total = dict.fromkeys(keys, 0.0)
        for b, idx in enumerate(batches):
            turn = (b + r) % len(keys)
            for key in keys[turn:] + keys[:turn]:
                started = time.perf_counter()
                out = np.asarray(contenders[key]([texts[i] for i in idx]), dtype=np.float32)
                total[key] += time.perf_counter() - started
                if vectors[key].shape[1] != out.shape[1]:
                    vectors[key] = np.zeros((len(texts), out.shape[1]), dtype=np.float32)
                vectors[key][idx] = out
        for key in keys:
            times[key].append(total[key])
        print(f"  repeat {r + 1}: " + ", ".join(f"{k} {total[k]:.1f} s" for k in keys), flush=True)
    return times, vectors


def bench_model(name: str, args, data, texts: list[str], dids: list[str], peak: float | None) -> list[dict]:
    folder = resolve_model(MODELS[name])
    print(f"\n{name} ({MODELS[name]}), {len(texts)} documents, max {args.max_length} tokens, batch {args.batch_size}")
    contenders: dict[str, Callable] = {"sentence-transformers (torch)": st_contender(folder, **args.shape)}
    for backend, module in ST_RUNTIMES.items():
        if importlib.util.find_spec(module.split(".")[0]) is None:
            print(f"  sentence-transformers backend={backend}: cannot run ({module} not importable; see bench/README)")
            continue
        contenders[f"sentence-transformers ({backend})"] = st_contender(folder, **args.shape, backend=backend)
    for backend in ["torch", *args.backends]:
        if backend != "torch" and not runtime.installed(backend):
            print(f"  embedlab {backend}: not installed, skipped")
            continue
        contenders[f"embedlab {backend}"] = embedlab_contender(folder, **args.shape, backend=backend)
    lengths = [len(x) for x in AutoTokenizer.from_pretrained(folder)(texts, truncation=True, **args.cut)["input_ids"]]
    flops = encoder_flops(AutoConfig.from_pretrained(folder), lengths)
    # Longest first, the same batches for everyone; contenders take turns batch by batch (the order rotating), so
    # other load on a shared CPU falls on all of them alike.
    order = np.argsort([-n for n in lengths], kind="stable")
    batches = [order[s : s + args.batch_size] for s in range(0, len(texts), args.batch_size)]
    times, vectors = time_rotating(contenders, texts, batches, args.repeats)
    st_key, ref_key = "sentence-transformers (torch)", "embedlab torch"
    rows = []
    for key, encode in contenders.items():
        seconds = statistics.median(times[key])
        rate = flops / seconds / 1e9
        rows.append(
            {
                "model": name,
                "system": key,
                "seconds (median)": seconds,
                "runs": " ".join(f"{t:.1f}" for t in times[key]),
                "vs ST torch": statistics.median(times[st_key]) / seconds,
                "vs embedlab torch": statistics.median(times[ref_key]) / seconds,
                "max |Δ| vs embedlab torch": f"{np.abs(vectors[key] - vectors[ref_key]).max():.1e}",
                "nDCG@10": ndcg10(encode, data, vectors[key], dids) if args.ndcg else float("nan"),
                "GFLOP/s": rate,
                "% of fp32 peak": 100 * rate / peak if peak else float("nan"),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="documents; default the whole corpus")
    parser.add_argument("--queries", type=int, default=None, help="test queries; default all, or limit/4 with --limit")
    parser.add_argument("--models", default="mpnet,minilm")
    parser.add_argument("--backends", default="onnx,openvino,onnx-int8", help="embedlab runtimes beside torch")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ndcg", dest="ndcg", action="store_false", help="skip the query pass and nDCG@10")
    parser.add_argument("--clock-ghz", type=float, default=None, help="for the peak estimate; default /proc/cpuinfo")
    parser.add_argument("--flop-per-cycle", type=int, default=32, help="fp32 FLOP per cycle per core")
    args = parser.parse_args()
    args.backends = [b for b in args.backends.split(",") if b]
    args.shape = {"max_length": args.max_length, "batch_size": args.batch_size}
    args.cut = {"max_length": args.max_length}
    logging.getLogger("embedlab").setLevel(logging.WARNING)
    queries = args.queries or (min(300, max(1, args.limit // 4)) if args.limit else None)
    data = load_task("scifact", limit=queries, max_docs=args.limit)  # the queries' judged documents are always kept
    dids = list(data.corpus)
    texts = [data.corpus[d] for d in dids]
    peak, assumed = fp32_peak(torch.get_num_threads(), args.clock_ghz, args.flop_per_cycle)
    print(header("transformers", "sentence-transformers", "onnxruntime", "openvino"))
    print(assumed)
    print(f"SciFact: {len(texts)} documents, {len(data.qrels)} test queries for nDCG@10 over them")
    rows = [row for name in args.models.split(",") for row in bench_model(name, args, data, texts, dids, peak)]
    columns = list(rows[0])
    print("\n" + format_table(rows, columns))


if __name__ == "__main__":
    main()
