"""Safe by default: no remote code unless config asks, no pickle anywhere, safetensors out, secrets never written.

The source checks parse embedlab's own code, so a new `torch.load` without `weights_only=True` (or a
`trust_remote_code=True`, a pickle import) fails here rather than in a review.
"""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from tiny import tiny_encoder

from embedlab.errors import DataFormatError
from embedlab.manifest import build_manifest
from embedlab.models import EncoderConfig
from embedlab.models.st_format import read_layout

PACKAGE = Path(__file__).resolve().parents[1] / "embedlab"
CONF = PACKAGE.parent / "conf"
SECRET = "local-0123456789abcdef0123456789abcdef01234567"  # the shape of a W&B key, not a real one


def calls(name: str) -> list[tuple[str, ast.Call]]:
    """Every call of `name` (as a function or a method) in embedlab, with its file:line."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called == name:
                    found.append((f"{path.relative_to(PACKAGE)}:{node.lineno}", node))
    return found


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_torch_load_only_with_weights_only_and_numpy_never_unpickles() -> None:
    loads = calls("load")
    torch_loads = [(where, c) for where, c in loads if ast.unparse(c.func) == "torch.load"]
    assert torch_loads, "the audit should see st_format's legacy Dense loader"
    for where, call in torch_loads:
        value = keyword(call, "weights_only")
        assert isinstance(value, ast.Constant) and value.value is True, f"{where}: torch.load without weights_only=True"
    for where, call in loads:
        if ast.unparse(call.func) in ("np.load", "numpy.load"):
            value = keyword(call, "allow_pickle")
            assert value is None or (isinstance(value, ast.Constant) and value.value is False), where


def test_nothing_is_pickled_or_unpickled() -> None:
    """Only pickle's exception may be named (to report a refused checkpoint); no pickle-based library at all."""
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                assert not {"dill", "joblib", "cloudpickle", "shelve", "marshal"} & set(modules), where
                assert not (isinstance(node, ast.ImportFrom) and node.module == "pickle"), where
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pickle":
                assert node.attr == "UnpicklingError", f"{where}: pickle.{node.attr}"


def test_remote_code_only_when_config_asks() -> None:
    assert EncoderConfig(path="x").trust_remote_code is False
    passed = [(w, keyword(c, "trust_remote_code")) for name in ("from_pretrained", "Scorer") for w, c in calls(name)]
    passed = [(w, v) for w, v in passed if v is not None]
    assert len(passed) >= 5  # the encoder, the reranker CLI, the cross-encoder scorer
    for where, value in passed:
        assert not isinstance(value, ast.Constant) or value.value is False, f"{where}: a hard-coded trust_remote_code"
    for path in CONF.rglob("*.yaml"):  # every shipped preset keeps it off
        text = path.read_text()
        if "trust_remote_code" in text:
            assert "trust_remote_code: true" not in text.lower(), path


def test_legacy_dense_checkpoints_load_tensors_only(tmp_path: Path, tok) -> None:
    folder = tmp_path / "st"
    tiny_encoder(tok, projection=8).save(folder)
    dense = folder / "2_Dense"
    state = {f"linear.{k}": v for k, v in torch.nn.Linear(32, 8).state_dict().items()}
    (dense / "model.safetensors").unlink()
    torch.save(state, dense / "pytorch_model.bin")  # an old sentence-transformers folder
    assert read_layout(folder).dense["weight"].shape == (8, 32)
    with open(dense / "pytorch_model.bin", "wb") as f:  # a checkpoint that would run code when unpickled
        pickle.dump({"linear.weight": Exploit(tmp_path / "exploited")}, f)
    with pytest.raises(DataFormatError, match=r"pytorch_model.bin: not a plain tensor checkpoint"):
        read_layout(folder)
    assert not (tmp_path / "exploited").exists()  # the payload never ran


class Exploit:
    """Unpickling this creates a file: what a hostile checkpoint could do with any other call."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_exports_are_safetensors(tmp_path: Path, tok) -> None:
    tiny_encoder(tok, projection=8).save(tmp_path / "model")
    files = [p.name for p in (tmp_path / "model").rglob("*") if p.is_file()]
    assert "model.safetensors" in files and not [f for f in files if f.endswith((".bin", ".pt", ".pkl", ".pth"))]


def test_a_manifest_never_holds_the_wandb_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    manifest = json.dumps(build_manifest(seed=0, data={"d": "fp"}, models={"m": "fp"}))
    assert SECRET not in manifest and "WANDB" not in manifest


@pytest.mark.slow
def test_wandb_offline_run_files_never_hold_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key lives in the environment; W&B's own run folder (config, logs, the .wandb file) never copies it."""
    import pytorch_lightning as pl

    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = yaml.safe_load((CONF / "logger" / "wandb.yaml").read_text())
    logger = pl.loggers.WandbLogger(project="t", save_dir=str(tmp_path), mode="offline", config=config)
    logger.log_metrics({"x": 1.0}, step=0)
    logger.experiment.finish()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and not [p for p in files if SECRET.encode() in p.read_bytes()]
