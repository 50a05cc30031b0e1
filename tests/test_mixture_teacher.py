"""A mixture's cached teacher table (teacher.cache=true, or teacher.file) and closed-form projection
(projection.init=ridge), on tiny random models: the table holds each texts dataset's rows at that dataset's place
among the mixture's rows (a texts dataset after a larger texts dataset and a pairs dataset, so a missing or wrong
offset looks up other texts), read a shard at a time from the Arrow column into memory-mapped cache shards; it gives
the online teacher's targets; the ridge fit is the one made by hand on the texts datasets alone; and a short run
trains the same weights with the cached teacher as with the online one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embedlab.data.arrow import TextColumn
from embedlab.io import fingerprint
from embedlab.models.projection import fit_ridge
from tests.tiny import TEXTS, tiny_encoder

SIZES = {"a": 8, "p": 7, "b": 6}  # texts a, pairs p, texts b: b's rows start at 15, not at 8 (texts only) or 0


@pytest.fixture
def folders(tok, tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("EMBEDLAB_CACHE", str(tmp_path / "cache"))
    tiny_encoder(tok, projection=None, seed=0).save(tmp_path / "student")
    tiny_encoder(tok, projection=None, seed=1).save(tmp_path / "teacher")
    rows = {
        "a": [{"id": f"a{i}", "text": TEXTS[i]} for i in range(SIZES["a"])],
        "p": [{"query": f"about {TEXTS[i]}", "positive": TEXTS[i]} for i in range(SIZES["p"])],
        "b": [{"id": f"b{i}", "text": f"{TEXTS[-1 - i]} and more"} for i in range(SIZES["b"])],
    }
    for name, lines in rows.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return tmp_path


def texts_of(root: Path, name: str) -> list[str]:
    return [json.loads(line)["text"] for line in (root / f"{name}.jsonl").read_text().splitlines()]


def config(root: Path, *extra: str):
    from embedlab.config.build import compose

    entries = ", ".join(
        f"{{name: {n}, kind: {'pairs' if n == 'p' else 'texts'}, path: {root / n}.jsonl, weight: 1}}" for n in SIZES
    )
    return compose(
        "train",
        [
            "data=mixture_offline",
            f"data.mixture=[{entries}]",
            "data.batch_size=2",
            "data.max_length=32",
            "loss=[infonce,leaf]",
            f"model.path={root / 'student'}",
            "model.projection_dim=null",  # the tiny teacher has the student's size
            "teacher=mpnet",
            f"teacher.path={root / 'teacher'}",
            "teacher.precision=fp32",
            "teacher.max_length=32",
            "teacher.batch_size=2",
            "eval.tasks=[]",
            "eval.before_training=false",
            "eval.teacher=false",
            "checkpoint.every_n_steps=0",
            *extra,
        ],
    )


def test_text_column_reads_like_a_list(folders) -> None:
    from embedlab.data.arrow import open_source
    from embedlab.data.rows import RowSpec

    source = open_source(RowSpec("b", "texts", "jsonl"), str(folders / "b.jsonl"), cache=folders / "arrow")
    column, texts = source.texts(), [f"{TEXTS[-1 - i]} and more" for i in range(SIZES["b"])]
    assert isinstance(column, TextColumn) and len(column) == len(texts)
    assert list(column) == texts and column[1:4] == texts[1:4] and column[::2] == texts[::2]
    assert column[-1] == texts[-1] and column.take(np.array([5, 0, 5])) == [texts[5], texts[0], texts[5]]
    with pytest.raises(IndexError):
        column[len(texts)]
    assert fingerprint(column) == fingerprint(texts)  # the cache key of the column is the list's
    pairs = open_source(RowSpec("p", "pairs", "jsonl"), str(folders / "p.jsonl"), cache=folders / "arrow")
    assert pairs.texts()[2] == f"about {TEXTS[2]}"  # a pair's text is its query


def test_take_gathers_across_chunks_in_the_order_asked() -> None:
    """A file's column comes in chunks (1,000 rows each as written): rows from several chunks, unsorted, repeated."""
    import pyarrow as pa

    texts = [f"text {i}" for i in range(23)]
    column = TextColumn(pa.chunked_array([texts[a : a + 5] for a in range(0, 23, 5)]))  # chunks of 5, the last 3
    rows = np.array([22, 0, 7, 7, 13, 4, 21, 5])
    assert column.column.num_chunks == 5
    assert column.take(rows) == [texts[r] for r in rows] and column.take([]) == []
    assert list(column) == texts and column[3:12] == texts[3:12]


def test_mixture_table_gives_each_texts_dataset_its_own_rows_and_the_online_targets(folders, monkeypatch) -> None:
    from embedlab.eval.cache import EmbeddingCache
    from embedlab.eval.shards import RowStack
    from embedlab.training.prepare import build_encoder, load_teacher, mixture_data, mixture_teacher

    cfg = config(folders)
    student = build_encoder(cfg.model)
    data = mixture_data(cfg.data, student, cfg.seed)
    cache = EmbeddingCache(folders / "emb", shard_rows=2)  # several shards per dataset, stored longest first
    taken, take = [], TextColumn.take
    monkeypatch.setattr(TextColumn, "take", lambda column, rows: taken.append(len(rows)) or take(column, rows))
    teacher, table = mixture_teacher(cfg, data, student, cache)
    assert table is not None and len(table) == sum(SIZES.values()) and cache.misses == 2
    assert taken and max(taken) == 2  # the texts read a shard at a time from the Arrow column, never all at once
    for d in (0, 2):  # the texts datasets' entries: memory-mapped shards, not copies
        entry = table.embeddings.parts[d]
        assert isinstance(entry, RowStack) and all(isinstance(s, np.memmap) for s in entry.parts)
    online = load_teacher(cfg, student.dim)
    texts = {n: texts_of(folders, n) for n in ("a", "b")}
    for name, start in (("a", 0), ("b", SIZES["a"] + SIZES["p"])):
        rows = torch.arange(start, start + SIZES[name])
        np.testing.assert_allclose(table.lookup(rows).numpy(), online.encode(texts[name]), atol=1e-5, rtol=0)
    assert torch.isnan(table.lookup(torch.tensor([SIZES["a"]]))).all()  # a pairs row: no target
    # the entries are the teacher's as the classic path keys them (texts as a list): hits, no new encoding
    from embedlab.lit.teacher import teacher_targets

    np.testing.assert_array_equal(np.asarray(teacher_targets(teacher, texts["b"], 2, cache)), table.embeddings[15:])
    assert cache.misses == 2
    # every texts batch of an epoch: the table's targets are the online teacher's for that batch's texts
    seen = 0
    for batch in data.train_dataloader():
        if batch["kind"] != "text":
            continue
        got = table.lookup(batch["index"]).numpy()
        np.testing.assert_allclose(got, online.encode(batch["texts"]), atol=1e-5, rtol=0)
        seen += len(batch["texts"])
    assert seen == SIZES["a"] + SIZES["b"]


def test_mixture_ridge_fits_the_projection_on_the_texts_datasets(folders, monkeypatch) -> None:
    from embedlab.eval.cache import EmbeddingCache
    from embedlab.training import prepare
    from embedlab.training.prepare import build_encoder, load_teacher, mixture_data, mixture_teacher

    monkeypatch.setattr(prepare, "FIT_BLOCK_ROWS", 3)  # several blocks per dataset, the last one short
    cfg = config(folders, "model.projection_dim=32", "projection.init=ridge", "projection.ridge=1e-2")
    student = build_encoder(cfg.model)
    data = mixture_data(cfg.data, student, cfg.seed)
    mixture_teacher(cfg, data, student, EmbeddingCache(folders / "emb", shard_rows=2))  # sharded, stored reordered
    texts = texts_of(folders, "a") + texts_of(folders, "b")
    features = student.encode(texts, head=False)
    weight, bias = fit_ridge(features, load_teacher(cfg, student.dim).encode(texts), 1e-2)
    torch.testing.assert_close(student.projection.weight.detach(), torch.from_numpy(weight), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(student.projection.bias.detach(), torch.from_numpy(bias), atol=1e-5, rtol=1e-4)


def test_mixture_table_from_a_black_box_teachers_file(folders) -> None:
    """teacher.file: each texts dataset's rows are the file's vectors of its ids ("<entry name>:<id>"), whatever the
    file's order and whatever else it holds."""
    from embedlab.training.prepare import build_encoder, mixture_data, mixture_teacher

    ids = [f"{n}:{n}{i}" for n in ("a", "b") for i in range(SIZES[n])] + ["a:extra"]
    vectors = np.random.default_rng(0).standard_normal((len(ids), 32)).astype(np.float32)
    order = np.random.default_rng(1).permutation(len(ids))
    np.savez(folders / "teacher.npz", ids=np.array(ids)[order], embeddings=vectors[order])
    cfg = config(folders, "teacher=file", f"teacher.file={folders / 'teacher.npz'}")
    student = build_encoder(cfg.model)
    teacher, table = mixture_teacher(cfg, mixture_data(cfg.data, student, cfg.seed), student, None)
    assert teacher is None and table.source == f"file {folders / 'teacher.npz'}"
    np.testing.assert_array_equal(table.lookup(torch.arange(SIZES["a"])).numpy(), vectors[: SIZES["a"]])
    b = SIZES["a"] + SIZES["p"]
    np.testing.assert_array_equal(table.lookup(torch.arange(b, b + SIZES["b"])).numpy(), vectors[SIZES["a"] : -1])


def test_a_mixture_without_texts_datasets_has_no_table(folders) -> None:
    from embedlab.training.prepare import build_encoder, mixture_data, mixture_teacher

    cfg = config(folders, f"data.mixture=[{{name: p, kind: pairs, path: {folders / 'p'}.jsonl}}]", "loss=infonce")
    student = build_encoder(cfg.model)
    teacher, table = mixture_teacher(cfg, mixture_data(cfg.data, student, cfg.seed), student, None)
    assert teacher is not None and table is None


def test_check_mixture_allows_the_cached_teacher_ridge_and_file_and_names_what_it_refuses(folders) -> None:
    from embedlab.config.check import check_train_config
    from embedlab.errors import ConfigError

    np.savez(folders / "t.npz", ids=np.array(["a:a0"]), embeddings=np.zeros((1, 32), dtype=np.float32))
    for extra in (
        ["teacher.cache=true"],
        ["model.projection_dim=32", "projection.init=ridge"],
        ["teacher=file", f"teacher.file={folders / 't.npz'}"],
    ):
        check_train_config(config(folders, *extra))
    pairs_only = f"data.mixture=[{{name: p, kind: pairs, path: {folders / 'p'}.jsonl}}]"
    for extra, message in (
        (["data.heldout=2"], "data.heldout: not supported with data.kind=mixture"),
        ([pairs_only, "loss=infonce", "model.projection_dim=32", "projection.init=ridge"], "add a kind=texts entry"),
    ):
        with pytest.raises(ConfigError, match=message):
            check_train_config(config(folders, *extra))


def test_cached_and_online_teacher_train_the_same_mixture_run(folders) -> None:
    from embedlab.training import train

    runs = {}
    for cached in ("true", "false"):
        out = folders / f"run_{cached}"
        cfg = config(folders, f"teacher.cache={cached}", "trainer.max_steps=6", "optim.lr=1e-3", "logger=csv")
        runs[cached] = train(cfg, out)["summary"], load_file(out / "model" / "model.safetensors")
    (summary, cached), (summary_online, online) = runs["true"], runs["false"]
    assert summary["batches_per_dataset"] == summary_online["batches_per_dataset"]
    assert summary["batches_per_dataset"]["a"] + summary["batches_per_dataset"]["b"] >= 2  # LEAF steps ran
    before = load_file(folders / "student" / "model.safetensors")
    assert max(float((cached[k] - before[k]).abs().max()) for k in before) > 1e-4  # training moved the weights
    assert max(float((cached[k] - online[k]).abs().max()) for k in cached) < 1e-5  # …the same way in both runs
