"""Run manifests: what is needed to reproduce a result (versions, commit, seed, data and model fingerprints)."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = (
    "embedlab",
    "torch",
    "transformers",
    "pytorch-lightning",
    "hydra-core",
    "faiss-cpu",
    "faiss-gpu-cu12",
    "numpy",
    "peft",
    "sentence-transformers",
    "wandb",
)


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@functools.cache
def git_state(repo: Path | None = None) -> dict[str, str | bool | None]:
    """Commit of the embedlab checkout and whether it had uncommitted changes (None outside git). Read once per
    process: jobs call it when they start, so a commit made while a long run works is not recorded as its code."""
    repo = repo or Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(dirty) if commit else None}


def cpu_model() -> str:
    """The CPU's marketing name (/proc/cpuinfo on Linux; platform's answer elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    """What a timing or a bf16 result depends on: CPU model and kind, cores, torch threads, GPUs."""
    import torch

    from embedlab.precision import cpu_features

    return {
        "cpu": cpu_model(),
        **cpu_features(),  # ATen capability (AVX2, AVX512, ...), oneDNN bf16, AVX512-BF16, AMX
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),  # set when a smaller CPU is emulated
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }


def build_manifest(
    *,
    seed: int | None = None,
    data: dict[str, str] | None = None,
    models: dict[str, str] | None = None,
    extra: dict | None = None,
) -> dict:
    """data/models: name -> fingerprint."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        "seed": seed,
        "git": git_state(),
        "versions": package_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(), "node": platform.node()},
        "hardware": hardware(),
        "data": data or {},
        "models": models or {},
        **(extra or {}),
    }


def write_run_record(out_dir: Path, config, manifest: dict) -> None:
    """What every job leaves beside its results: the resolved config (config.yaml) and its manifest (manifest.json),
    each written atomically. `config`: an OmegaConf node."""
    from omegaconf import OmegaConf

    from embedlab.io import write_json_atomic, write_text_atomic

    write_text_atomic(Path(out_dir) / "config.yaml", OmegaConf.to_yaml(config, resolve=True))
    write_json_atomic(Path(out_dir) / "manifest.json", manifest)
