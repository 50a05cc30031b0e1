"""The Encoder: the one object that turns text into vectors, for training, evaluation, mining and export alike.

backbone (HF AutoModel) -> pooling -> optional linear projection -> optional L2 normalisation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from embedlab.errors import ConfigError, ModelNotFoundError
from embedlab.hub import resolve_model
from embedlab.io import atomic_path
from embedlab.models import st_format
from embedlab.models.pooling import POOLING_MODES, pool

PROGRESS_MIN_TEXTS = 512  # below this a progress bar is noise


@dataclass
class EncoderConfig:
    """How to build an Encoder; `None` means "what the model folder says", then the stated fallback."""

    path: str  # local folder, packaged model name or hub id (see embedlab.hub)
    pooling: str | None = None  # mean | cls | last_token | weighted_mean; fallback mean
    normalize: bool | None = None  # L2-normalise outputs; fallback True
    max_length: int | None = None  # tokens; fallback min(tokenizer limit, 512)
    projection_dim: int | None = None  # add a new linear head to this size (LEAF: student -> teacher dim)
    query_prompt: str | None = None  # prepended to queries; fallback the folder's "query" prompt or ""
    document_prompt: str | None = None  # prepended to documents; fallback the folder's "document" prompt or ""
    padding_side: str | None = None  # right | left; None keeps the tokenizer's
    precision: str = "fp32"  # inference precision: fp32 | bf16 (autocast)
    num_layers: int | None = None  # keep only the first N transformer layers (a truncated-teacher student)
    trust_remote_code: bool = False  # never on unless asked: it runs code from the model folder


def hash_weights(module: torch.nn.Module, skip_prefix: str | None = None):
    """A sha256 object fed with every tensor of `module`'s state dict (names and bytes, sorted by name)."""
    h = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        if skip_prefix and key.startswith(skip_prefix):
            continue
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h


def tokenizer_digest(tokenizer) -> str:
    """sha256 of what decides a tokenizer's ids: vocabulary, merges, normaliser, pre-tokeniser, special and added
    tokens. Its size alone would let a lower-casing and a cased tokenizer of one vocabulary share cache entries."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        for transient in ("truncation", "padding"):  # per-call settings the tokenizer keeps from its last call
            spec.pop(transient, None)
    else:
        spec = {"vocab": sorted(tokenizer.get_vocab().items()), "init": repr(sorted(tokenizer.init_kwargs.items()))}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


class Encoder(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        tokenizer,
        *,
        pooling: str = "mean",
        normalize: bool = True,
        max_length: int = 512,
        projection: nn.Linear | None = None,
        query_prompt: str = "",
        document_prompt: str = "",
        precision: str = "fp32",
        name: str = "",
    ) -> None:
        super().__init__()
        if pooling not in POOLING_MODES:
            raise ConfigError(f"unknown pooling '{pooling}'; choose one of {', '.join(POOLING_MODES)}")
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"unknown precision '{precision}'; choose fp32 or bf16")
        self.backbone, self.tokenizer, self.projection = backbone, tokenizer, projection
        # BERT-style backbones carry a [CLS] pooler that embeddings never use: frozen, so DDP does not wait for its
        # gradient (it would never all-reduce the bucket holding it) and the optimizer does not track it.
        if isinstance(pooler := getattr(backbone, "pooler", None), nn.Module):
            pooler.requires_grad_(False)
        self.pooling, self.normalize, self.max_length = pooling, normalize, max_length
        self.query_prompt, self.document_prompt, self.precision, self.name = (
            query_prompt,
            document_prompt,
            precision,
            name,
        )

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def from_config(cls, cfg: EncoderConfig) -> Encoder:
        from transformers import AutoModel, AutoTokenizer

        folder = resolve_model(cfg.path)
        layout = st_format.read_layout(Path(folder)) if Path(folder).is_dir() else None
        source = str(layout.transformer_dir) if layout else folder
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=cfg.trust_remote_code)
            backbone = AutoModel.from_pretrained(source, trust_remote_code=cfg.trust_remote_code, dtype=torch.float32)
        except OSError as e:  # transformers' offline/404 errors are long; keep the first line and the cause
            raise ModelNotFoundError(
                f"cannot load model '{cfg.path}' (resolved to '{source}'): {str(e).splitlines()[0]}"
            ) from None
        if cfg.num_layers is not None:
            truncate_layers(backbone, cfg.num_layers)
        if tokenizer.pad_token is None:  # decoder tokenizers often lack one
            tokenizer.pad_token = tokenizer.eos_token
        if cfg.padding_side:
            tokenizer.padding_side = cfg.padding_side
        prompts = layout.prompts if layout else {}
        max_length = cfg.max_length or (layout.max_length if layout else None) or min(tokenizer.model_max_length, 512)
        hidden = backbone.config.hidden_size
        projection = None
        if layout and layout.dense is not None:
            weight = layout.dense["weight"]
            projection = nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in layout.dense)
            projection.load_state_dict(layout.dense)
        if cfg.projection_dim is not None and (projection is None or projection.out_features != cfg.projection_dim):
            projection = nn.Linear(projection.out_features if projection else hidden, cfg.projection_dim)
        return cls(
            backbone,
            tokenizer,
            pooling=cfg.pooling or (layout.pooling if layout else None) or "mean",
            normalize=cfg.normalize if cfg.normalize is not None else (layout.normalize if layout else True),
            max_length=max_length,
            projection=projection,
            query_prompt=cfg.query_prompt if cfg.query_prompt is not None else prompts.get("query", ""),
            document_prompt=cfg.document_prompt if cfg.document_prompt is not None else prompts.get("document", ""),
            precision=cfg.precision,
            name=cfg.path,
        )

    @classmethod
    def from_pretrained(cls, path: str, **overrides) -> Encoder:
        return cls.from_config(EncoderConfig(path=path, **overrides))

    @property
    def dim(self) -> int:
        return self.projection.out_features if self.projection is not None else self.backbone.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ----------------------------------------------------------------------------------------- forward
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, head: bool = True, **extra
    ) -> torch.Tensor:
        """Token ids -> embeddings [B, dim]; the differentiable path used by training.

        `head=False` stops after pooling (no projection, no normalisation): the features a projection is fitted on.
        """
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        emb = pool(hidden, attention_mask, self.pooling)
        if not head:
            return emb
        if self.projection is not None:
            emb = self.projection(emb)
        return nn.functional.normalize(emb, dim=-1) if self.normalize else emb

    def tokenize(self, texts: list[str], prompt: str = "") -> dict[str, torch.Tensor]:
        return self.tokenizer(
            [prompt + t for t in texts],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )

    # ----------------------------------------------------------------------------------------- inference
    @torch.inference_mode()
    def encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        prompt: str = "",
        convert_to: Literal["numpy", "torch"] = "numpy",
        show_progress: bool | None = None,
        desc: str = "encode",
        head: bool = True,
    ) -> np.ndarray | torch.Tensor:
        """Embed texts without gradients, batching by token length to cut padding; float32, input order."""
        texts = list(texts)
        width = self.dim if head else self.backbone.config.hidden_size
        if not texts:
            empty = torch.zeros(0, width)
            return empty.numpy() if convert_to == "numpy" else empty
        was_training = self.training
        self.eval()
        ids = self.tokenizer(
            [prompt + t for t in texts],
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
        )["input_ids"]
        order = np.argsort([-len(x) for x in ids], kind="stable")  # longest first: a memory error shows at once
        out = torch.empty(len(texts), width, dtype=torch.float32)
        show = len(texts) >= PROGRESS_MIN_TEXTS if show_progress is None else show_progress
        device = self.device
        autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16) if self.precision == "bf16" else contextlib.nullcontext()
        )
        with tqdm(total=len(texts), desc=desc, disable=not show, unit="text") as bar, autocast:
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                batch = self.tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
                emb = self(batch["input_ids"].to(device), batch["attention_mask"].to(device), head=head)
                out[torch.as_tensor(idx)] = emb.float().cpu()
                bar.update(len(idx))
        self.train(was_training)
        return out.numpy() if convert_to == "numpy" else out

    def encode_queries(self, texts: list[str], **kwargs) -> np.ndarray | torch.Tensor:
        return self.encode(texts, prompt=self.query_prompt, desc=kwargs.pop("desc", "queries"), **kwargs)

    def encode_documents(self, texts: list[str], **kwargs) -> np.ndarray | torch.Tensor:
        return self.encode(texts, prompt=self.document_prompt, desc=kwargs.pop("desc", "documents"), **kwargs)

    # ----------------------------------------------------------------------------------------- identity
    def fingerprint(self, head: bool = True) -> str:
        """sha256 over every weight and every setting that changes the vectors (for caches and manifests).

        `head=False` identifies the pooled features alone (`encode(head=False)`): projection and normalisation
        are left out, so refitting a projection keeps the features' cache entry.
        """
        h = hash_weights(self, skip_prefix=None if head else "projection.")
        settings = (
            self.pooling,
            self.normalize if head else "features",
            self.max_length,
            self.precision,
            type(self.tokenizer).__name__,
            self.tokenizer.padding_side,
            tokenizer_digest(self.tokenizer),
        )
        h.update(repr(settings).encode())
        return h.hexdigest()

    # ----------------------------------------------------------------------------------------- export
    def save(self, folder: str | Path) -> Path:
        """Write a sentence-transformers folder atomically (safetensors weights)."""
        folder = Path(folder)
        with atomic_path(folder) as tmp:
            tmp.mkdir(parents=True)
            self.backbone.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            st_format.write_layout(
                tmp,
                hidden_size=self.backbone.config.hidden_size,
                pooling=self.pooling,
                normalize=self.normalize,
                max_length=self.max_length,
                dense=self.projection,
                prompts={"query": self.query_prompt, "document": self.document_prompt},
            )
        return folder

    def describe(self) -> dict:
        return {
            "name": self.name,
            "dim": self.dim,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "projection": self.projection is not None,
            "query_prompt": self.query_prompt,
            "document_prompt": self.document_prompt,
            "precision": self.precision,
        }


def truncate_layers(backbone: nn.Module, keep: int) -> None:
    """Keep the first `keep` transformer blocks: the layer stack is the ModuleList as long as the config says."""
    total = backbone.config.num_hidden_layers
    if not 1 <= keep <= total:
        raise ConfigError(f"num_layers={keep} is outside 1..{total} (the model's layers)")
    stacks = [m for m in backbone.modules() if isinstance(m, nn.ModuleList) and len(m) == total]
    if not stacks:
        raise ConfigError(f"cannot find the layer stack of {type(backbone).__name__} to truncate")
    parent = next(p for p in backbone.modules() for c in p.children() if c is stacks[0])
    name = next(n for n, c in parent.named_children() if c is stacks[0])
    setattr(parent, name, nn.ModuleList(list(stacks[0])[:keep]))
    backbone.config.num_hidden_layers = keep
