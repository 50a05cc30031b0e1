"""The evaluation callback: schedule, logged metric names, asymmetric document encoder."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers.logger import Logger
from tiny import QUIET, leaf_module, text_examples, tiny_encoder

from embedlab.data.collate import Collator
from embedlab.eval.cache import EmbeddingCache
from embedlab.eval.runner import TaskResult
from embedlab.lit.callbacks import EvaluationCallback
from embedlab.lit.datamodule import EmbeddingDataModule
from embedlab.lit.module import EmbeddingModule
from embedlab.losses import build_loss


# ------------------------------------------------------------------------------------------------- EvaluationCallback
class RecordingLogger(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, dict]] = []

    name, version = "recording", 0

    def log_metrics(self, metrics, step=None) -> None:
        self.records.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


@pytest.mark.parametrize(("max_steps", "eval_steps"), [(4, [2, 4]), (5, [2, 4, 5])])
def test_evaluation_callback_schedule_and_logs(tok, monkeypatch, max_steps: int, eval_steps: list) -> None:
    calls = []

    def fake_evaluate(tasks, docs, query, **kwargs):
        calls.append((list(tasks), docs, query))
        return [TaskResult("scifact", {"ndcg_at_10": 0.1 * len(calls), "recall_at_100": 0.9}, [], "fp")]

    monkeypatch.setattr("embedlab.lit.callbacks.evaluate_tasks", fake_evaluate)
    module = leaf_module(tok)
    callback = EvaluationCallback(["scifact"], every_n_steps=2)
    logger = RecordingLogger()
    trainer = pl.Trainer(max_steps=max_steps, logger=logger, callbacks=[callback], log_every_n_steps=1, **QUIET)
    trainer.fit(module, datamodule=EmbeddingDataModule(text_examples(), Collator(tok, 32), batch_size=4))
    assert len(calls) == len(eval_steps)
    assert all(c == (["scifact"], module.student, None) for c in calls)
    logged = [(step, m) for step, m in logger.records if any(k.startswith("eval/") for k in m)]
    assert [step for step, _ in logged] == eval_steps
    last = pytest.approx(0.1 * len(eval_steps))
    assert logged[-1][1] == {"eval/scifact/ndcg_at_10": last, "eval/scifact/recall_at_100": 0.9}
    assert callback.last[0].metrics["ndcg_at_10"] == last
    assert module.student.training  # evaluation leaves the student in train mode


def test_asymmetric_callback_passes_teacher_documents(tok, monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(
        "embedlab.lit.callbacks.evaluate_tasks",
        lambda tasks, docs, query, **kw: seen.append((docs, query)) or [TaskResult("scifact", {"x": 1.0}, [], "")],
    )
    teacher, student = tiny_encoder(tok, seed=4), tiny_encoder(tok)
    module = EmbeddingModule(student, build_loss({"infonce": {}}))
    logger = RecordingLogger()
    fields = {"loggers": [logger], "global_step": 7, "global_rank": 0, "is_global_zero": True, "strategy": "auto"}
    trainer = type("T", (), fields)()
    callback = EvaluationCallback(["scifact"], document_encoder=teacher, prefix="eval_asymmetric")
    callback.evaluate(trainer, module)
    assert seen == [(teacher, student)] and logger.records == [(7, {"eval_asymmetric/scifact/x": 1.0})]
    callback.on_train_end(trainer, module)  # already evaluated at this step
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("strategy", "rank", "scratch", "evaluates", "writes"),
    [
        ("fsdp", 0, False, True, True),
        ("fsdp", 1, False, True, False),
        ("ddp", 0, False, True, True),
        ("ddp", 1, False, False, False),
        ("ddp", 1, True, True, False),  # with a scratch folder the ranks share it (tests/test_ddp_training.py)
    ],
)
def test_which_ranks_evaluate_and_rank_zero_writes(
    tok, monkeypatch, tmp_path, strategy: str, rank: int, scratch: bool, evaluates: bool, writes: bool
) -> None:
    from pytorch_lightning.strategies import DDPStrategy, FSDPStrategy

    seen = []

    def fake_evaluate(tasks, docs, query, **kwargs):
        seen.append(kwargs)
        return [TaskResult("scifact", {"x": 1.0}, [], "")]

    monkeypatch.setattr("embedlab.lit.callbacks.evaluate_tasks", fake_evaluate)
    module = EmbeddingModule(tiny_encoder(tok), build_loss({"infonce": {}}))
    logger = RecordingLogger()
    trainer = type(
        "T",
        (),
        {
            "loggers": [logger],
            "global_step": 2,
            "global_rank": rank,
            "is_global_zero": rank == 0,
            "strategy": FSDPStrategy() if strategy == "fsdp" else DDPStrategy(),
        },
    )()
    cache = EmbeddingCache(tmp_path / "cache")
    shared = tmp_path / "scratch" if scratch else None
    callback = EvaluationCallback(["scifact"], every_n_steps=2, out_dir=tmp_path, cache=cache, scratch=shared)
    callback.on_train_batch_end(trainer, module, None, None, 0)
    assert len(seen) == int(evaluates)
    if evaluates:
        assert seen[0]["out_dir"] == (tmp_path if writes else None)  # only rank 0 writes files
        # sharded: no cache, whose per-rank hits and misses would send the ranks' forward passes out of step
        passed = seen[0]["cache"]
        assert passed is None if strategy == "fsdp" else passed.root == cache.root
    assert logger.records == ([(2, {"eval/scifact/x": 1.0})] if writes else [])
    callback.on_train_end(trainer, module)  # already evaluated at this step
    assert len(seen) == int(evaluates)


def test_evaluating_a_student_in_training_bypasses_the_embedding_cache(tok, real_data, tmp_path) -> None:
    """Each evaluation of a trained student would hash all its weights and write arrays no one reads again: the
    callback leaves the student out of the cache; a frozen teacher's documents still go through it."""
    import json

    from embedlab.eval.runner import EvalSettings

    teacher, student = tiny_encoder(tok, seed=4), tiny_encoder(tok)
    module = EmbeddingModule(student, build_loss({"infonce": {}}))
    trainer = type(
        "T", (), {"loggers": [], "global_step": 3, "is_global_zero": True, "global_rank": 0, "strategy": "auto"}
    )()
    cache = EmbeddingCache(tmp_path / "cache")
    settings = EvalSettings(limit=4, max_docs=30, batch_size=16)
    common = {"settings": settings, "data_root": str(real_data), "cache": cache}
    teacher_fingerprints = {teacher.fingerprint(), teacher.fingerprint(head=False)}
    student.fingerprint = lambda *a, **k: pytest.fail("the student's weights were hashed for the cache")
    EvaluationCallback(["scifact", "stsb"], **common).on_train_end(trainer, module)  # the final evaluation
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npy"))
    EvaluationCallback(["scifact"], document_encoder=teacher, **common).evaluate(trainer, module)
    described = [json.loads(p.read_text()) for p in (tmp_path / "cache").rglob("*.json")]
    assert {d["kind"] for d in described} == {"document", "document features"}  # the head over shared features
    assert {d["model_fingerprint"] for d in described} == teacher_fingerprints
