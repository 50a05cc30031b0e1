"""Resume machinery piece by piece: the batch sampler's position, the resumable loader, random states, atomic
checkpoint writes, re-mined negatives, and the choice of checkpoint (fallback past an unreadable one, config check)."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException
from tiny import TEXTS, leaf_module, text_examples
from tiny_decoder import tiny_decoder_folder

from embedlab.data.batching import LengthGroupedBatchSampler
from embedlab.data.collate import Collator
from embedlab.data.training import PairExample
from embedlab.errors import ConfigError
from embedlab.lit.checkpoint import KEY, AtomicCheckpointIO, ResumeCheckpoint, rng_state, set_rng_state
from embedlab.lit.datamodule import EmbeddingDataModule, ResumableDataLoader
from embedlab.lit.module import EmbeddingModule
from embedlab.lit.optim import OptimConfig
from embedlab.lit.remining import RemineCallback, refresh_negatives
from embedlab.losses import build_loss
from embedlab.models import Encoder
from embedlab.training.resume import config_differences, find_checkpoint, run_dir

CONFIG = "model:\n  path: tiny\nseed: 0\ntrainer:\n  max_steps: 20\n"


def sampler(**kwargs) -> LengthGroupedBatchSampler:
    lengths = np.random.default_rng(0).integers(5, 200, size=37)
    return LengthGroupedBatchSampler(lengths, 4, sources=[i % 2 for i in range(37)], seed=3, **kwargs)


# ------------------------------------------------------------------------------------------------- sampler / loader
@pytest.mark.parametrize("epoch", [0, 2])
@pytest.mark.parametrize("done", [0, 1, 5, 9])
def test_sampler_resumes_mid_epoch_where_it_stopped(epoch: int, done: int) -> None:
    reference, first = sampler(), sampler()
    reference.set_epoch(epoch)
    full = list(reference)
    first.set_epoch(epoch)
    it = iter(first)
    taken = [next(it) for _ in range(done)]
    assert taken == full[:done] and first.state_dict() == {"epoch": epoch, "batches": done}

    resumed = sampler()  # a fresh process: a new sampler, told where the old one was
    resumed.load_state_dict(first.state_dict())
    resumed.set_epoch(epoch)  # Lightning sets the epoch again before iterating
    assert list(resumed) == full[done:]
    assert resumed.state_dict() == {"epoch": epoch, "batches": len(full)}
    resumed.set_epoch(epoch + 1)  # the skip applies once: the next epoch is whole
    nxt = sampler()
    nxt.set_epoch(epoch + 1)
    assert list(resumed) == list(nxt)


def test_checkpoint_at_an_epochs_end_resumes_with_the_next_whole_epoch() -> None:
    first = sampler(drop_last=True)
    list(first)
    resumed = sampler(drop_last=True)
    resumed.load_state_dict(first.state_dict())
    resumed.set_epoch(1)  # Lightning moves on to the next epoch
    expected = sampler(drop_last=True)
    expected.set_epoch(1)
    assert list(resumed) == list(expected) and len(list(expected)) == len(expected)


def test_loader_is_resumable_and_refuses_workers(tok) -> None:
    dm = EmbeddingDataModule(text_examples(), Collator(tok, 16), batch_size=3, seed=1)
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableDataLoader)
    rng = torch.get_rng_state()
    batches = [b["index"].tolist() for b in loader]
    assert torch.equal(rng, torch.get_rng_state())  # iterating never draws from the global generator
    again = EmbeddingDataModule(text_examples(), Collator(tok, 16), batch_size=3, seed=1).train_dataloader()
    again.load_state_dict({"epoch": 0, "batches": 2})
    assert [b["index"].tolist() for b in again] == batches[2:]
    with_workers = EmbeddingDataModule(text_examples(), Collator(tok, 16), num_workers=1).train_dataloader()
    with pytest.raises(ConfigError, match="num_workers=0"):
        with_workers.load_state_dict({"epoch": 0, "batches": 2})


# ------------------------------------------------------------------------------------------------- states and files
def test_rng_state_round_trip_through_a_weights_only_file(tmp_path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save(rng_state(), tmp_path / "rng.pt")

    def draws() -> tuple:
        return random.random(), float(np.random.standard_normal()), torch.rand(3).tolist()

    expected = draws()
    draws()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert draws() == expected


class Exploding:
    def __reduce__(self):
        raise RuntimeError("disk full")


def test_atomic_checkpoint_io_keeps_the_old_file_when_a_save_fails(tmp_path) -> None:
    io, target = AtomicCheckpointIO(), tmp_path / "step_5.ckpt"
    io.save_checkpoint({"a": torch.ones(2)}, target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint({"a": torch.zeros(1000), "b": Exploding()}, target)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["step_5.ckpt"]
    assert torch.equal(io.load_checkpoint(target, weights_only=True)["a"], torch.ones(2))


def test_remine_state_restores_the_negatives_pairs_hold() -> None:
    corpus = {f"d{i}": f"doc {i}" for i in range(6)}

    def pairs() -> list[PairExample]:
        return [PairExample(f"q{i}", f"query {i}", f"d{i}", f"doc {i}", ("d5",), ("doc 5",)) for i in range(3)]

    examples = pairs()
    callback = RemineCallback(None, None, top_k=5, every_n_steps=2, num_negatives=1, out_dir=".")
    callback._examples, callback._last_step = examples, 4
    refresh_negatives(examples, [{"query_id": "q0", "negative_ids": ["d3"]}, {"query_id": "q2", "negative_ids": []}],
                      corpus, 1)  # fmt: skip
    state = callback.state_dict()

    resumed, fresh = RemineCallback(None, None, top_k=5, every_n_steps=2, num_negatives=1, out_dir="."), pairs()
    resumed.data = type("Data", (), {"corpus": corpus})()
    resumed.load_state_dict(state)
    trainer = type("Trainer", (), {"datamodule": type("DM", (), {"all_examples": fresh})()})()
    resumed.on_train_start(trainer, None)
    assert fresh == examples and fresh[0].negatives == ("doc 3",) and resumed._last_step == 4


# ------------------------------------------------------------------------------------------------- which checkpoint
def write_checkpoint(path, config: str = CONFIG) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(64)}, KEY: {"config": config}}, path)


def test_newest_readable_checkpoint_wins_and_a_corrupt_one_is_set_aside(tmp_path, caplog) -> None:
    folder = tmp_path / "checkpoints"
    for step in (5, 10, 15):
        write_checkpoint(folder / f"step_{step}.ckpt")
    assert find_checkpoint(True, tmp_path, CONFIG) == folder / "step_15.ckpt"
    data = (folder / "step_15.ckpt").read_bytes()
    (folder / "step_15.ckpt").write_bytes(data[: len(data) // 2])  # truncated
    (folder / "step_10.ckpt").write_bytes(b"\x00garbage" * 50)
    (folder / ".step_20.ckpt.abc.tmp").write_bytes(data[:100])  # a save killed half-way
    with caplog.at_level(logging.WARNING):
        assert find_checkpoint(True, tmp_path, CONFIG) == folder / "step_5.ckpt"
    assert sum("unreadable" in r.message for r in caplog.records) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["step_10.ckpt.corrupt", "step_15.ckpt.corrupt", "step_5.ckpt"]
    assert find_checkpoint(str(tmp_path), tmp_path / "elsewhere", CONFIG) == folder / "step_5.ckpt"  # resume=<dir>
    (folder / "step_5.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match="no readable checkpoint"):
        find_checkpoint(True, tmp_path, CONFIG)


def test_a_changed_config_is_refused_naming_the_keys(tmp_path) -> None:
    write_checkpoint(tmp_path / "checkpoints" / "step_5.ckpt")
    changed = CONFIG.replace("max_steps: 20", "max_steps: 40")
    with pytest.raises(ConfigError, match=r"trainer.max_steps: 20 -> 40"):
        find_checkpoint(True, tmp_path, changed)
    assert config_differences(CONFIG, CONFIG + "extra: 1\n") == ["extra: None -> 1"]


def test_explicit_file_and_missing_checkpoints(tmp_path, caplog) -> None:
    assert find_checkpoint(False, tmp_path, CONFIG) is None
    with caplog.at_level(logging.WARNING):
        assert find_checkpoint(True, tmp_path, CONFIG) is None  # nothing yet: a fresh start, said out loud
    assert "training from step 0" in caplog.text
    ckpt = tmp_path / "kept" / "step_7.ckpt"
    write_checkpoint(ckpt)
    assert find_checkpoint(str(ckpt), tmp_path, CONFIG) == ckpt
    with pytest.raises(ConfigError, match="is none of these"):
        find_checkpoint(str(tmp_path / "nope.ckpt"), tmp_path, CONFIG)


def test_resuming_a_finished_run_does_nothing(tmp_path, caplog) -> None:
    """A relaunched sweep with resume=true skips the jobs that finished: no data read, no file written."""
    from hydra import compose, initialize_config_dir

    from embedlab.config.build import CONF_DIR
    from embedlab.training import train as run

    (tmp_path / "manifest.json").write_text("{}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["resume=true", "logger=csv", "data.path=/nonexistent"])
    with caplog.at_level(logging.WARNING):
        assert run(cfg, tmp_path) == {}
    assert "finished run" in caplog.text and [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_run_dir_resolver(tmp_path) -> None:
    assert run_dir(str(tmp_path), "outputs/x") == str(tmp_path)  # resume=<run dir>: continue in it
    assert run_dir(True, "outputs/x") == run_dir(False, "outputs/x") == "outputs/x"
    assert run_dir(str(tmp_path / "step_5.ckpt"), "outputs/x") == "outputs/x"  # a file: a new run directory


# ------------------------------------------------------------------------------------------------- SIGTERM in process
class FlagSigterm(pl.Callback):
    """Raises Lightning's SIGTERM flag during batch `at` (as its signal handler would)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.at:
            trainer._signal_connector.received_sigterm = True


@pytest.mark.parametrize(("at", "saved"), [(3, ["step_2.ckpt"]), (2, [])])
def test_sigterm_saves_only_whole_optimizer_steps(at: int, saved: list[str], tok, tmp_path, caplog) -> None:
    """With 2 batches per optimizer step, SIGTERM after batch 3 saves step 2; after batch 2 (half a step, whose
    gradients a checkpoint cannot hold) it saves nothing and says so."""
    module = leaf_module(tok)
    dm = EmbeddingDataModule(text_examples(), Collator(tok, 16), batch_size=2, seed=0)
    trainer = pl.Trainer(
        max_steps=6,
        accumulate_grad_batches=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[FlagSigterm(at), ResumeCheckpoint(tmp_path, every_n_steps=0)],
        plugins=[AtomicCheckpointIO()],
    )
    with caplog.at_level(logging.WARNING), pytest.raises(SIGTERMException):
        trainer.fit(module, datamodule=dm)
    assert sorted(p.name for p in tmp_path.iterdir()) == saved
    assert ("gradient-accumulation window" in caplog.text) == (not saved)


# ------------------------------------------------------------------------------------------------- LoRA decoder resume
class LastLoss(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.loss = float(outputs["loss"])


def lora_run(folder, ckpt_dir, *, stop_at: int | None = None, resume: str | None = None):
    """A LoRA-adapted tiny random Llama (adapter dropout 0.1: the random states matter) trained with GradCache
    (chunks of 2) and Matryoshka InfoNCE (dims 8 and 32) for 6 steps of 4 pairs (two epochs of 3 steps); `stop_at`
    raises Lightning's SIGTERM flag during that batch of the first epoch, `resume` continues from a checkpoint.
    Built the way embedlab-train builds a run: seed, encoder, loss, module, data, trainer."""
    pl.seed_everything(0)
    lora = {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj"]}
    student = Encoder.from_pretrained(str(folder), bidirectional=True, pooling="mean", lora=lora)
    loss = build_loss({"infonce": {"temperature": 0.1, "matryoshka_dims": [8, 32]}})
    module = EmbeddingModule(student, loss, OptimConfig(lr=1e-2), chunk_size=2)
    pairs = [PairExample(f"q{i}", TEXTS[i], f"d{i}", TEXTS[(i + 1) % 16], (f"n{i}",), (TEXTS[(i + 8) % 16],))
             for i in range(12)]  # fmt: skip
    dm = EmbeddingDataModule(pairs, Collator.for_encoder(student, 32), batch_size=4, seed=1, drop_last=True)
    last = LastLoss()
    callbacks = [last, ResumeCheckpoint(ckpt_dir, every_n_steps=0)] + ([FlagSigterm(stop_at)] if stop_at else [])
    # max_epochs, not max_steps: the LR schedule's length then builds the loader before the checkpoint loads, so the
    # loader's position is restored by ResumeCheckpoint (the path embedlab-train's epoch-based recipes take)
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False, deterministic=True,
        callbacks=callbacks, plugins=[AtomicCheckpointIO()],
    )  # fmt: skip
    if stop_at is None:
        trainer.fit(module, datamodule=dm, ckpt_path=resume, weights_only=True)
    else:
        with pytest.raises(SIGTERMException):
            trainer.fit(module, datamodule=dm)
    adapters = {n: p.detach().clone() for n, p in student.named_parameters() if p.requires_grad}
    return trainer.global_step, last.loss, adapters


def test_lora_decoder_with_gradcache_and_matryoshka_resumes_identically(tmp_path) -> None:
    """sentence-transformers #3701: resuming a LoRA run with CachedMNRL inside MatryoshkaLoss fails there. Here the
    interrupted run (SIGTERM at step 2, mid-epoch) resumed in a fresh module ends bit-identical to the uninterrupted
    one: every adapter tensor and the last step's loss."""
    folder = tiny_decoder_folder(tmp_path / "llama", "llama")
    steps, loss, reference = lora_run(folder, tmp_path / "reference")
    assert steps == 6 and reference and all("lora_" in n for n in reference)
    steps, _, at_stop = lora_run(folder, tmp_path / "run", stop_at=1)
    assert steps == 2 and sorted(p.name for p in (tmp_path / "run").iterdir()) == ["step_2.ckpt"]
    assert any(not torch.equal(at_stop[n], reference[n]) for n in reference)  # four steps were left to do
    steps, resumed_loss, resumed = lora_run(folder, tmp_path / "run", resume=str(tmp_path / "run" / "step_2.ckpt"))
    assert steps == 6 and resumed_loss == loss
    for name, tensor in reference.items():
        assert torch.equal(resumed[name], tensor), name
