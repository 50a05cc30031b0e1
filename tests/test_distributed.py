"""Data parallelism on CPU: two gloo processes through Lightning's DDP, with cross-device negatives (and GradCache,
and a mixture's clustering dataset with its same-label mask), give the loss and the gradients of one process on
the whole batch; the sharded batch sampler; FSDP on CPU.

Tolerance: gradients within 1e-6 absolute / 1e-5 relative (float32; DDP averages two partial sums)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from safetensors.torch import load_file, save_file
from tiny import QUIET, TEXTS, tiny_encoder

from embedlab.data.batching import LengthGroupedBatchSampler, ShardedBatchSampler
from embedlab.data.collate import Collator
from embedlab.data.training import PairExample
from embedlab.errors import ConfigError
from embedlab.lit.datamodule import EmbeddingDataModule
from embedlab.lit.distributed import build_strategy, evaluates_on_this_rank, evaluation_ranks, layer_classes
from embedlab.lit.module import EmbeddingModule
from embedlab.lit.optim import OptimConfig
from embedlab.losses import build_loss
from embedlab.models import Encoder


class DumpFirstStep(pl.Callback):
    """Writes rank r's loss and (all-reduced) parameter gradients of the first optimizer step to `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if batch_idx == 0:
            loss = float(outputs["loss"]) / trainer.world_size  # the step returns the global loss × devices
            (self.folder / f"loss{trainer.global_rank}.json").write_text(json.dumps(loss))

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        if trainer.global_step == 0:
            grads = {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}
            save_file(grads, self.folder / f"grads{trainer.global_rank}.safetensors")


def examples() -> list[PairExample]:
    """16 pairs with one hard negative; q0 and q5 share a positive that lands on different devices, and q3's mined
    negative is q10's positive: both must be masked across devices, as on one device."""
    out = []
    for i in range(16):
        pos = 0 if i == 5 else i
        neg = 10 if i == 3 else (i + 7) % 16
        out.append(PairExample(f"q{i}", TEXTS[i], f"d{pos}", TEXTS[pos], (f"d{neg}",), (TEXTS[neg],)))
    return out


def labelled_mixture(tok, folder: Path, batch_size: int):
    """A clustering dataset of the 16 texts in 4 clusters, read through an Arrow source: a text's positive is another
    text of its cluster, and rows of a cluster land on both devices, so the same-label mask must be rebuilt across
    them (without it the two processes' loss would differ from one process's)."""
    from embedlab.data.arrow import open_source
    from embedlab.data.rows import RowSpec
    from embedlab.lit.mixture import MixtureDataModule, MixturePart

    path = folder / "labelled.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": "abcd"[i % 4]}) + "\n" for i, t in enumerate(TEXTS)))
    source = open_source(RowSpec("clu", "clustering"), str(path), cache=folder / "cache")
    return MixtureDataModule([MixturePart("clu", source, Collator(tok, 32), None)], batch_size=batch_size, seed=3)


def run(tok, folder: Path, *, devices: int, batch_size: int, chunk_size: int | None, mixture: bool = False) -> None:
    folder.mkdir()
    module = EmbeddingModule(
        tiny_encoder(tok),
        build_loss({"infonce": {"temperature": 0.1, "symmetric": True}}),
        OptimConfig(),
        chunk_size=chunk_size,
    )
    if mixture:
        dm = labelled_mixture(tok, folder, batch_size)
    else:
        dm = EmbeddingDataModule(examples(), Collator(tok, 32), batch_size=batch_size, seed=3, drop_last=True)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        max_steps=1,
        logger=False,
        use_distributed_sampler=False,  # the data module shards its own length-grouped global batches
        callbacks=[DumpFirstStep(folder)],
        **QUIET,
    )
    trainer.fit(module, datamodule=dm)


@pytest.mark.slow
@pytest.mark.parametrize(("chunk_size", "mixture"), [(None, False), (3, False), (None, True)])
def test_two_process_ddp_with_gathered_negatives_equals_one_process(tok, tmp_path: Path, chunk_size, mixture) -> None:
    run(tok, tmp_path / "one", devices=1, batch_size=8, chunk_size=None, mixture=mixture)
    run(tok, tmp_path / "two", devices=2, batch_size=4, chunk_size=chunk_size, mixture=mixture)
    expected = load_file(tmp_path / "one" / "grads0.safetensors")
    ranks = [load_file(tmp_path / "two" / f"grads{r}.safetensors") for r in (0, 1)]
    assert len(expected) > 10 and ranks[0].keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(ranks[0][name], grad, atol=1e-6, rtol=1e-5, msg=name)
        assert torch.equal(ranks[0][name], ranks[1][name])  # DDP leaves identical gradients on every rank
    loss = json.loads((tmp_path / "one" / "loss0.json").read_text())
    for r in (0, 1):
        assert json.loads((tmp_path / "two" / f"loss{r}.json").read_text()) == pytest.approx(loss, rel=1e-6)


def test_sharded_sampler_splits_each_global_batch() -> None:
    base = LengthGroupedBatchSampler(list(range(20)), 8, seed=1, drop_last=True)
    shards = [ShardedBatchSampler(base, r, 2) for r in (0, 1)]
    assert [len(s) for s in shards] == [2, 2]
    for global_batch, a, b in zip(base, *shards, strict=True):
        assert a + b == global_batch and len(a) == 4
    shards[0].sampler.set_epoch(1)  # Lightning's hook reaches the global order
    assert base.epoch == 1
    with pytest.raises(ConfigError, match="drop_last"):
        ShardedBatchSampler(LengthGroupedBatchSampler(list(range(20)), 8), 0, 2)
    with pytest.raises(ConfigError, match="divisible"):
        ShardedBatchSampler(LengthGroupedBatchSampler(list(range(20)), 9, drop_last=True), 0, 2)


def tiny_decoder(arch: str, tok):
    from transformers import AutoConfig, AutoModel

    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    return AutoModel.from_config(AutoConfig.for_model(arch, num_key_value_heads=1, vocab_size=len(tok), **sizes))


@pytest.mark.parametrize(("arch", "layer"), [("mistral", "MistralDecoderLayer"), ("qwen2", "Qwen2DecoderLayer")])
def test_fsdp_strategy_wraps_the_decoder_layers(tok, arch: str, layer: str) -> None:
    from pytorch_lightning.strategies import FSDPStrategy

    model = tiny_decoder(arch, tok)
    fsdp = {"wrap_layers": ["MistralDecoderLayer", "Qwen2DecoderLayer"], "state_dict_type": "sharded"}
    strategy = build_strategy("fsdp", fsdp, model, grad_cache=False)
    assert isinstance(strategy, FSDPStrategy) and strategy._state_dict_type == "sharded"
    assert {c.__name__ for c in layer_classes(model, fsdp["wrap_layers"])} == {layer}
    assert build_strategy("ddp", None, model, grad_cache=True) == "ddp"
    with pytest.raises(ConfigError, match=r"none of \['BertLayer'\].*" + layer):
        build_strategy("fsdp", {"wrap_layers": ["BertLayer"]}, model, grad_cache=False)
    with pytest.raises(ConfigError, match="GradCache"):
        build_strategy("fsdp", fsdp, model, grad_cache=True)


def test_sharded_strategies_evaluate_on_every_rank(tok) -> None:
    """FSDP forwards all-gather parameters from every rank: rank 0 evaluating alone would wait forever."""
    from pytorch_lightning.strategies import DDPStrategy

    fsdp = build_strategy("fsdp", {"wrap_layers": ["LlamaDecoderLayer"]}, tiny_decoder("llama", tok), grad_cache=False)
    for strategy in (fsdp, "fsdp", "fsdp_cpu_offload", "deepspeed_stage_3"):
        assert evaluation_ranks(strategy) == "all"
        assert evaluates_on_this_rank(strategy, 0) and evaluates_on_this_rank(strategy, 3)
    for strategy in ("ddp", "auto", "deepspeed_stage_2", DDPStrategy()):
        assert evaluation_ranks(strategy) == "rank0"
        assert evaluates_on_this_rank(strategy, 0) and not evaluates_on_this_rank(strategy, 1)


def test_fsdp_on_cpu(tok) -> None:
    """FSDP is Lightning's, and Lightning 2.6 runs it on CUDA devices only; this skip says so (it runs where a
    future Lightning accepts CPU processes)."""
    model = tiny_decoder("llama", tok)
    strategy = build_strategy("fsdp", {"wrap_layers": ["LlamaDecoderLayer"]}, model, grad_cache=False)
    try:
        trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_steps=1, logger=False, **QUIET)
    except ValueError as e:
        assert "requires a GPU" in str(e)
        pytest.skip(f"FSDP on CPU: not supported by the installed Lightning ({e})")
    encoder = Encoder(model, tok, max_length=32)
    dm = EmbeddingDataModule(examples(), Collator(tok, 32), batch_size=4, seed=3, drop_last=True)
    trainer.fit(EmbeddingModule(encoder, build_loss({"infonce": {}})), datamodule=dm)
    assert trainer.global_step == 1


def test_slurm_launcher_config_composes() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from embedlab.config.build import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.tasks_per_node == launcher.gpus_per_node == 8
    assert cfg.trainer.strategy == "ddp" and cfg.step.gather
