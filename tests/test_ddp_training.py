"""The frozen passes and the evaluations of a run shared by the ranks of a process group: 2 gloo ranks evaluate
exactly as one process, each encoding only its shards (rank 0 searching and writing alone); and a 2-process DDP
training run through the CLI (Lightning's subprocess launcher) builds the same teacher table, projection, results
and model as one process with the same global batch, every rank encoding its own shards of each collection; and
`embedlab-mine` under torchrun mines the file one process mines, its encodings split over the two ranks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from leaf_run import tiny_leaf_overrides
from safetensors.torch import load_file
from tiny import tiny_encoder

from embedlab.eval.cache import EmbeddingCache, cache_for_ranks
from embedlab.eval.runner import EvalSettings, evaluate_tasks
from embedlab.eval.shards import load_published

pytestmark = pytest.mark.slow  # real SciFact and STSb (a few queries and pairs)
REPO = Path(__file__).resolve().parents[1]
SETTINGS = EvalSettings(limit=10, max_docs=100, batch_size=4, dims=[None, 16], precisions=["float32", "int8"])
SHARD_ROWS = 8  # two batches of 4: 13 shards of the 100 documents, so both ranks have some
SHARD_LINE = re.compile(r"embedding shard (\w+) rows \[(\d+), (\d+)\) of (\d+) written by rank (\d) of (\d)")


def shard_writers(log: str) -> dict[str, list[tuple[int, int]]]:
    """(first row, rank) of every shard written, by entry key (its first 12 characters), from a run's log."""
    written = defaultdict(list)
    for key, start, _end, _n, rank, _world in SHARD_LINE.findall(log):
        written[key].append((int(start), int(rank)))
    return dict(written)


def counting(encoder) -> list[str]:
    """The texts of every backbone pass of `encoder`."""
    texts: list[str] = []
    encode = encoder.encode

    def wrapped(batch, **kwargs):
        texts.extend(batch)
        return encode(batch, **kwargs)

    encoder.encode = wrapped
    return texts


def evaluate_as_rank(rank: int, world: int, folder: Path, tok, data_root: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        student = tiny_encoder(tok, projection=16)
        texts = counting(student)
        plain = EmbeddingCache(folder / "cache", shard_rows=SHARD_ROWS).bypassing(student)  # as being trained
        cache = cache_for_ranks(plain, folder / "scratch")
        out = folder / f"out{rank}"
        results = evaluate_tasks(["scifact", "stsb"], student, settings=SETTINGS, data_root=data_root, cache=cache)
        evaluate_tasks(["scifact"], student, settings=SETTINGS, data_root=data_root, cache=cache, out_dir=out)
        record = {"metrics": {r.task: r.metrics for r in results}, "grid": [r.grid for r in results], "texts": texts}
        (folder / f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


def test_two_ranks_evaluate_as_one_process_each_encoding_its_shards(tok, tmp_path, real_data) -> None:
    """A student being trained (bypassed by the cache) meets the other rank in the scratch folder; metrics and the
    whole dims x precisions grid equal one process's without any cache, bit for bit."""
    mp.spawn(evaluate_as_rank, args=(2, tmp_path, tok, real_data), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    student = tiny_encoder(tok, projection=16)
    texts = counting(student)
    alone = evaluate_tasks(["scifact", "stsb"], student, settings=SETTINGS, data_root=real_data)
    for rank in ranks:
        assert rank["metrics"] == {r.task: r.metrics for r in alone}
        assert rank["grid"] == [r.grid for r in alone]
    assert ranks[0]["texts"] and ranks[1]["texts"]  # both encoded, neither what the other did
    assert not set(ranks[0]["texts"]) & set(ranks[1]["texts"])
    assert sorted(ranks[0]["texts"] + ranks[1]["texts"]) == sorted(texts)
    assert (tmp_path / "out0" / "metrics.json").exists() and not (tmp_path / "out1").exists()
    assert not list((tmp_path / "cache").rglob("*.npy"))  # the bypassed student left the real cache alone


# ------------------------------------------------------------------------------------------------- training
def overrides(root: Path, data_root: Path, tok) -> list[str]:
    """A tiny LEAF run: ridge projection, cached teacher table, frozen systems and the trained student evaluated."""
    return [
        *tiny_leaf_overrides(root, tok, data_root),
        "teacher.batch_size=4",
        "data.drop_last=true",
        "trainer.accelerator=cpu",
        "checkpoint.every_n_steps=0",
        "eval.batch_size=4",
        f"eval.shard_rows={SHARD_ROWS}",
    ]


def cached_entries(root: Path) -> dict[str, np.ndarray]:
    """Every entry of an embedding cache folder by key: the teacher table, student features, evaluation corpora."""
    entries = {p.stem: np.load(p) for p in root.rglob("*.npy") if p.parent.parent == root}
    for manifest in root.rglob("manifest.json"):
        n_rows = json.loads(manifest.read_text())["n_rows"]
        entries[manifest.parent.name] = np.asarray(load_published(manifest.parent, n_rows))
    return entries


def test_two_process_ddp_run_shares_the_frozen_passes_and_equals_one_process(
    tok, tmp_path, real_data, monkeypatch
) -> None:
    from embedlab.config.build import compose
    from embedlab.training import train

    common = overrides(tmp_path, real_data, tok)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}

    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "embedlab.cli.train", *common, "trainer=ddp", "trainer.devices=2"]
    cmd += ["data.batch_size=4", f"hydra.run.dir={two}"]  # 4 per device: a global batch of 8
    env2 = {**env, "EMBEDLAB_CACHE": str(tmp_path / "cache2")}
    proc = subprocess.run(cmd, cwd=REPO, env=env2, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    (tmp_path / "cli.log").write_text(log)  # for a reader of a failure
    assert proc.returncode == 0, log[-5000:]

    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "cache1"))  # a cache of its own: nothing shared
    one = tmp_path / "one"
    train(compose("train", [*common, "data.batch_size=8"]), one)

    # every shard of every sharded encoding written once (per folder), rank r writing shards r, r+2, … of it
    assert {world for *_, world in SHARD_LINE.findall(log)} == {"2"}
    written = shard_writers(log)
    assert {r for shards in written.values() for _, r in shards} == {0, 1}
    for key, shards in written.items():  # (the student's queries twice: the symmetric and asymmetric evaluations)
        starts = sorted({s for s, _ in shards})
        assert sorted(s for s, _ in shards) == sorted(starts * (len(shards) // len(starts))), key
        assert all(rank == starts.index(start) % 2 for start, rank in shards), key
    cache2 = tmp_path / "cache2" / "embeddings"
    entries1, entries2 = cached_entries(tmp_path / "cache1" / "embeddings"), cached_entries(cache2)
    assert entries1.keys() == entries2.keys() and len(entries1) >= 5
    for key, vectors in entries1.items():  # teacher table, the student's features (ridge), evaluation corpora
        np.testing.assert_array_equal(entries2[key], vectors, err_msg=key)
    kinds = {p.parent.name[:12]: json.loads(p.read_text())["describe"]["kind"] for p in cache2.rglob("manifest.json")}
    assert sorted(kinds.values()).count("text") == 1  # the teacher table (48 training texts), split by both ranks
    assert all({r for _, r in written[k]} == {0, 1} for k in kinds)  # …as the ridge's features and the corpora
    scratch = set(written) - set(kinds)  # the trained student's shards: the final evaluation was shared too
    assert scratch and all({r for _, r in written[k]} == {0, 1} for k in scratch)
    assert not (two / "embeddings.tmp").exists()

    results1, results2 = (json.loads((d / "results.json").read_text()) for d in (one, two))
    assert results1.keys() == results2.keys() >= {"teacher", "student (before)", "student (as shipped)", "student"}
    for system in results1.keys() - {"student", "asymmetric"}:  # frozen encoders: exactly the same
        assert results2[system] == results1[system], system
    for system in ("student", "asymmetric"):  # trained: DDP averages two partial gradient sums
        for task, metrics in results1[system].items():
            assert results2[system][task] == pytest.approx(metrics, rel=1e-5, abs=1e-6), (system, task)
    weights1, weights2 = (load_file(d / "model" / "model.safetensors") for d in (one, two))
    assert weights1.keys() == weights2.keys()
    for name, tensor in weights1.items():
        torch.testing.assert_close(weights2[name], tensor, atol=1e-6, rtol=1e-5, msg=name)
    heads = [sorted((d / "model").glob("2_Dense/*.safetensors")) for d in (one, two)]
    for a, b in zip(*heads, strict=True):
        for name, tensor in load_file(a).items():
            torch.testing.assert_close(load_file(b)[name], tensor, atol=1e-6, rtol=1e-5, msg=name)


# ------------------------------------------------------------------------------------------------- mining
def test_embedlab_mine_under_torchrun_splits_the_encodings(tok, tmp_path, real_data) -> None:
    """Two torchrun ranks each encode their shards of SciFact's corpus (5,183 abstracts: 8 shards) and train queries
    (2 shards); rank 0 mines the very file one process mines, and writes alone."""
    model = tmp_path / "tiny"
    tiny_encoder(tok, projection=None).save(model)
    args = ["-m", "embedlab.cli.mine", f"model.path={model}", f"data.root={real_data}", "mining.num_negatives=4"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launchers = {"one": [sys.executable], "two": [sys.executable, "-m", "torch.distributed.run", "--standalone"]}
    launchers["two"] += ["--nproc-per-node=2"]
    logs = {}
    for name, launcher in launchers.items():
        cmd = [*launcher, *args, f"hydra.run.dir={tmp_path / name}"]
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            env={**env, "EMBEDLAB_CACHE": str(tmp_path / f"cache_{name}")},
            capture_output=True,
            text=True,
        )
        logs[name] = proc.stdout + proc.stderr
        assert proc.returncode == 0, logs[name][-5000:]
    negatives = (tmp_path / "one" / "negatives.jsonl").read_bytes()
    assert negatives.count(b"\n") > 500 and (tmp_path / "two" / "negatives.jsonl").read_bytes() == negatives
    alone, shared = shard_writers(logs["one"]), shard_writers(logs["two"])
    assert alone.keys() == shared.keys() and len(shared) == 2  # the queries and the corpus, both sharded
    for key, shards in shared.items():
        starts = sorted(s for s, _ in shards)
        assert starts == sorted(s for s, _ in alone[key]) and len(set(starts)) == len(starts)
        assert all(rank == starts.index(start) % 2 for start, rank in shards), key
