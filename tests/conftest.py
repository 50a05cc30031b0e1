"""Shared test helpers: where the real shared data lives, and a fixture that skips when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# `precision: auto` is bf16 on CPUs with native bf16 and fp32 elsewhere: pinned here (and in every CLI subprocess,
# which inherits the environment) so the suite's numbers do not depend on the CPU kind it lands on.
# tests/test_precision.py fakes both kinds of CPU.
os.environ["EMBEDLAB_AUTO_PRECISION"] = "fp32"
# `backend: auto` runs frozen encoders on ONNX Runtime/OpenVINO when installed: pinned to torch here too (no export
# per test module, numbers independent of the installed runtimes); tests/test_runtime.py unpins it where it tests auto.
os.environ["EMBEDLAB_AUTO_BACKEND"] = "torch"
# Same lookup as tests/test_data.py: $EMBEDLAB_DATA, else ../shared/data beside the repository.
REAL_DATA = Path(os.environ.get("EMBEDLAB_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real shared data root; skips the test when the evaluation tasks are not there."""
    missing = [p for p in ("scifact", "stsb/stsb.tsv") if not (REAL_DATA / p).exists()]
    if missing:
        pytest.skip(f"shared data not found at {REAL_DATA} (missing {', '.join(missing)}; set EMBEDLAB_DATA)")
    return REAL_DATA


@pytest.fixture(scope="session")
def tok():
    """all-MiniLM-L6-v2's tokenizer: real vocabulary for tiny random-init models."""
    from transformers import AutoTokenizer

    from embedlab.hub import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))


@pytest.fixture(scope="module")
def env(real_data: Path, tmp_path_factory) -> dict[str, str]:
    """Environment for CLI subprocesses: offline, the real data, a private embedding/model cache per test module,
    one OpenMP thread (two test workers share two cores; spinning threads made MiniLM steps ~20x slower)."""
    cache = tmp_path_factory.mktemp("embedlab_cache")
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "EMBEDLAB_DATA": str(real_data),
        "EMBEDLAB_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",
    }
