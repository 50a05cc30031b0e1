"""What every embedlab CLI does the same way: logging, building encoders from config, the run record."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embedlab.errors import ConfigError, EmbedlabError
from embedlab.models import Encoder, EncoderConfig

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def encoder_config(node: DictConfig | dict | str) -> EncoderConfig:
    """A model config node, or a string: the name of a `conf/model/*.yaml` entry, a folder or a hub id."""
    if isinstance(node, str):
        preset = CONF_DIR / "model" / f"{node}.yaml"
        node = OmegaConf.load(preset) if preset.exists() else {"path": node}
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    known = set(EncoderConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown model setting(s) {unknown}; known: {sorted(known)}")
    if not values.get("path"):
        raise ConfigError("model.path is empty: name a model (model=minilm) or a folder (model.path=/path/to/model)")
    return EncoderConfig(**values)


def build_encoder(node: DictConfig | dict | str, device: str = "cpu", frozen: bool = False) -> Encoder:
    """`frozen`: no parameter trains (teachers, evaluated and mining models), so `backend` may run the backbone."""
    encoder = Encoder.from_config(encoder_config(node)).to(device)
    return encoder.requires_grad_(False) if frozen else encoder


def setup_logging() -> None:
    logging.getLogger("embedlab").setLevel(logging.INFO)
    # transformers' per-tensor "Loading weights" bars drown the useful log lines
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def run_hydra_job(run: Callable[[DictConfig, Path], object], cfg: DictConfig, log: logging.Logger) -> None:
    """Run a CLI body in the Hydra run directory; user-facing problems print one line and exit 2, no traceback."""
    from hydra.core.hydra_config import HydraConfig

    setup_logging()
    try:
        run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except EmbedlabError as e:
        log.error("%s", e)
        sys.exit(2)
