"""`embedlab-train` with a LoRA decoder config on the real SciFact data (a tiny random Llama stands in for SmolLM2):
the run exports a merged plain folder and the adapter alone, and both give the same vectors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.tiny import TEXTS
from tests.tiny_decoder import tiny_decoder_folder

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_lora_run_exports_merged_model_and_adapter(tmp_path: Path, env: dict[str, str]) -> None:
    from sentence_transformers import SentenceTransformer

    from embedlab.models import Encoder

    base = tiny_decoder_folder(tmp_path / "base", "llama")
    out = tmp_path / "run"
    overrides = [
        "model=smollm2_bidir",
        f"model.path={base}",
        "model.lora.r=4",
        "optim.lr=1e-2",
        "trainer.max_steps=2",
        "eval.limit=5",
        "eval.max_docs=40",
        "eval.before_training=false",
        "logger=csv",
        "data.batch_size=4",
        "data.max_length=96",  # the toy tokenizer spends ~60 tokens on the instruction
        "model.max_length=128",
    ]
    cmd = [sys.executable, "-m", "embedlab.cli.train", *overrides, f"hydra.run.dir={out}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert not (out / "adapter" / "model.safetensors").exists()
    assert json.loads((out / "model" / "config.json").read_text())["is_causal"] is False
    adapter = Encoder.from_pretrained(str(out / "adapter"))
    trained = [n for n, p in adapter.backbone.named_parameters() if "lora_B" in n and p.abs().sum() > 0]
    assert trained  # the adapters moved from their zero start
    st = SentenceTransformer(str(out / "model"), device="cpu")
    np.testing.assert_allclose(st.encode(TEXTS), adapter.encode(TEXTS), atol=1e-5)
    prompt = adapter.query_prompt_for("scifact")
    queries = adapter.encode_queries(TEXTS, task="scifact")
    np.testing.assert_allclose(st.encode(TEXTS, prompt=prompt), queries, atol=1e-5)
