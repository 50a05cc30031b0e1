"""The Encoder: the one object that turns text into vectors, for training, evaluation, mining and export alike.

backbone -> pooling -> optional projection (folder's Dense, new head, or both: `StackedProjection`) -> L2 norm.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from embedlab.data.batching import longest_first, width_keeping_batches
from embedlab.data.tokens import prompt_length
from embedlab.errors import ConfigError
from embedlab.hub import resolve_model
from embedlab.models import decoder, export, lora, runtime, st_format
from embedlab.models.fingerprint import hash_weights, tokenizer_digest
from embedlab.models.pooling import POOLING_MODES, drop_prompt, pool
from embedlab.models.projection import StackedProjection
from embedlab.models.prompts import DEFAULT_TASK, FewShot, query_prompts
from embedlab.models.truncate import truncate_layers
from embedlab.precision import ENCODER_PRECISIONS
from embedlab.precision import resolve as resolve_precision

PROGRESS_MIN_TEXTS = 512  # below this a progress bar is noise
# encode()'s token budget per batch (rows × padded width): long texts go a few rows at a time, so a batch's memory is
# bounded. The vectors do not depend on it. 4096: not slower than rows-only batches on SciFact abstracts with MiniLM
# (bench/encode_budget.py, bench/README.md: 1.10x, a smoke run on a loaded CPU), the larger of the two fastest budgets.
DEFAULT_BATCH_TOKENS = 4096
# apply_head's rows per matmul: a linear head rounds by its number of rows, so the vectors depend on these blocks
HEAD_BLOCK_ROWS = 4096


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
    precision: str = "auto"  # inference precision: auto (bf16 where the device runs it natively) | fp32 | bf16
    num_layers: int | None = None  # keep only the first N transformer layers (a truncated-teacher student)
    trust_remote_code: bool = False  # never on unless asked: it runs code from the model folder
    # Decoder backbones (see embedlab.models.decoder, prompts, lora):
    bidirectional: bool | None = None  # decoders: true = full attention (config.is_causal=False); None = the folder's
    append_eos: bool = False  # end every text with EOS (what last-token pooling should read)
    instructions: dict[str, str] | None = None  # task -> instruction for queries; key "default" = training/others
    include_prompt: bool | None = None  # False = prompt tokens are not pooled; None = the folder's, else True
    few_shot: dict | None = None  # in-context examples before the instruction (embedlab.models.prompts.FewShot)
    lora: dict | None = None  # {r, alpha, dropout, target_modules}: train LoRA adapters only (LoraSettings)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more time
    dtype: str = "fp32"  # weights dtype at load: fp32 | bf16 (bf16 halves memory; adapters stay fp32)
    backend: str = "auto"  # frozen encoders' backbone pass: auto | torch | onnx | onnx-int8 | openvino (runtime.py)
    max_batch_tokens: int | None = DEFAULT_BATCH_TOKENS  # encode(): at most this many padded tokens a batch; null: rows


class Encoder(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        tokenizer,
        *,
        pooling: str = "mean",
        normalize: bool = True,
        max_length: int = 512,
        projection: nn.Linear | StackedProjection | None = None,
        query_prompt: str = "",
        document_prompt: str = "",
        precision: str = "auto",
        name: str = "",
        include_prompt: bool = True,
        task_prompts: dict[str, str] | None = None,
        backend: str = "auto",
        max_batch_tokens: int | None = DEFAULT_BATCH_TOKENS,
    ) -> None:
        super().__init__()
        if pooling not in POOLING_MODES:
            raise ConfigError(f"unknown pooling '{pooling}'; choose one of {', '.join(POOLING_MODES)}")
        if precision not in ENCODER_PRECISIONS:
            raise ConfigError(f"unknown precision '{precision}'; choose one of {', '.join(ENCODER_PRECISIONS)}")
        self.backbone, self.tokenizer, self.projection = backbone, tokenizer, projection
        # BERT-style backbones carry a [CLS] pooler that embeddings never use: frozen, so DDP does not wait for its
        # gradient (it would never all-reduce the bucket holding it) and the optimizer does not track it.
        if isinstance(pooler := getattr(backbone, "pooler", None), nn.Module):
            pooler.requires_grad_(False)
        self.pooling, self.normalize, self.max_length = pooling, normalize, max_length
        self.query_prompt, self.document_prompt = query_prompt, document_prompt
        self.precision, self.name = precision, name
        self.include_prompt, self.task_prompts = include_prompt, dict(task_prompts or {})
        self.backend = runtime.check(backend)
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ConfigError(f"max_batch_tokens must be a positive number of tokens or null, got {max_batch_tokens}")
        self.max_batch_tokens = max_batch_tokens
        self.settings: EncoderConfig | None = None  # what built it (from_config); needed to save an adapter
        for prompt in {query_prompt, document_prompt, *self.task_prompts.values()}:
            if prompt_length(tokenizer, prompt) >= max_length:
                raise ConfigError(
                    f"a prompt takes {prompt_length(tokenizer, prompt)} tokens, max_length is "
                    f"{max_length}: nothing of the text would be left (prompt starts {prompt[:60]!r})"
                )

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def from_config(cls, cfg: EncoderConfig) -> Encoder:
        folder = resolve_model(cfg.path)
        adapter = Path(folder) if (Path(folder) / lora.ADAPTER_CONFIG).exists() else None
        if adapter is not None:  # an adapter folder: its base, built with the settings it was trained with
            return cls.from_adapter(adapter, cfg)
        layout = st_format.read_layout(Path(folder)) if Path(folder).is_dir() else None
        source = str(layout.transformer_dir) if layout else folder
        tokenizer, backbone = decoder.load_backbone(source, cfg)
        if cfg.num_layers is not None:
            truncate_layers(backbone, cfg.num_layers)
        decoder.prepare_tokenizer(tokenizer, cfg.append_eos)
        if cfg.padding_side:
            tokenizer.padding_side = cfg.padding_side
        if cfg.gradient_checkpointing:  # on the plain model, before peft wraps it
            decoder.enable_gradient_checkpointing(backbone)
        if cfg.lora is not None:
            backbone = lora.add_lora(backbone, lora.LoraSettings.from_node(dict(cfg.lora)))
        folder_prompts = dict(layout.prompts) if layout else {}
        shots = FewShot.from_node(cfg.few_shot) if cfg.few_shot else None
        prompts = {**folder_prompts, **query_prompts(cfg.instructions, shots)}
        default_query = prompts.pop(DEFAULT_TASK, prompts.get("query", ""))
        max_length = cfg.max_length or (layout.max_length if layout else None) or min(tokenizer.model_max_length, 512)
        hidden = backbone.config.hidden_size
        projection = None
        if layout and layout.dense is not None:
            weight = layout.dense["weight"]
            projection = nn.Linear(weight.shape[1], weight.shape[0], bias="bias" in layout.dense)
            projection.load_state_dict(layout.dense)
        if cfg.projection_dim is not None and (projection is None or projection.out_features != cfg.projection_dim):
            head = nn.Linear(projection.out_features if projection else hidden, cfg.projection_dim)
            projection = StackedProjection(projection, head) if projection is not None else head  # Dense, then head
        include_prompt = (
            cfg.include_prompt if cfg.include_prompt is not None else (layout.include_prompt if layout else True)
        )
        encoder = cls(
            backbone,
            tokenizer,
            pooling=cfg.pooling or (layout.pooling if layout else None) or "mean",
            normalize=cfg.normalize if cfg.normalize is not None else (layout.normalize if layout else True),
            max_length=max_length,
            projection=projection,
            query_prompt=cfg.query_prompt if cfg.query_prompt is not None else default_query,
            document_prompt=cfg.document_prompt if cfg.document_prompt is not None else prompts.get("document", ""),
            precision=cfg.precision,
            name=cfg.path,
            include_prompt=include_prompt,
            task_prompts={t: p for t, p in prompts.items() if t not in ("query", "document")},
            backend=cfg.backend,
            max_batch_tokens=cfg.max_batch_tokens,
        )
        encoder.settings = cfg
        return encoder

    @classmethod
    def from_pretrained(cls, path: str, **overrides) -> Encoder:
        return cls.from_config(EncoderConfig(path=path, **overrides))

    @classmethod
    def from_adapter(cls, folder: Path, cfg: EncoderConfig) -> Encoder:
        """The base encoder as the adapter was trained (settings saved beside it), then the adapter (trainable, so
        a later stage can go on training it)."""
        try:
            saved = json.loads((folder / export.ADAPTER_SETTINGS).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{folder} holds a peft adapter but no readable {export.ADAPTER_SETTINGS}: {e}") from None
        # How to run it, not what was trained:
        run_time = {"precision": cfg.precision, "backend": cfg.backend, "max_batch_tokens": cfg.max_batch_tokens}
        encoder = cls.from_config(EncoderConfig(**{**saved, "lora": None, **run_time}))
        encoder.backbone = lora.load_adapter(encoder.backbone, folder, trainable=True)
        if (folder / "projection.safetensors").exists():
            encoder.projection.load_state_dict(load_file(str(folder / "projection.safetensors")))
        encoder.settings, encoder.name = EncoderConfig(**{**saved, "path": str(folder)}), cfg.path
        return encoder

    @property
    def dim(self) -> int:
        return self.projection.out_features if self.projection is not None else self.backbone.config.hidden_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def resolved_precision(self) -> str:
        """fp32 | bf16 for inference on the device the weights sit on (`auto` asks the hardware)."""
        return resolve_precision(self.precision, self.device)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for inference where the resolved precision says so."""
        if self.resolved_precision() == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ----------------------------------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        head: bool = True,
        prompt_length: torch.Tensor | int | None = None,
        **extra,
    ) -> torch.Tensor:
        """Token ids -> embeddings [B, dim]; the differentiable path used by training.

        `head=False` stops after pooling (no projection, no normalisation): the features a projection is fitted on.
        `prompt_length` (per row or one int): leading prompt tokens, left out of pooling when `include_prompt` is off.
        """
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        return self.pool_head(hidden, attention_mask, head, prompt_length)

    def pool_head(self, hidden, attention_mask, head: bool = True, prompt_length=None) -> torch.Tensor:
        """last_hidden_state -> embeddings (`forward` after the backbone; also after a runtime's backbone)."""
        pool_mask = attention_mask
        if not self.include_prompt and prompt_length is not None:
            pool_mask = drop_prompt(attention_mask, prompt_length)
        emb = pool(hidden, pool_mask, self.pooling).float()  # bf16 weights: head and norm in fp32 (no-op for fp32)
        if not head:
            return emb
        if self.projection is not None:
            emb = self.projection(emb)
        return nn.functional.normalize(emb, dim=-1) if self.normalize else emb

    def tokenize(self, texts: list[str], prompt: str = "") -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            [prompt + t for t in texts],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {**batch, "prompt_length": prompt_length(self.tokenizer, prompt)}

    def query_prompt_for(self, task: str | None = None) -> str:
        """The query prompt of an evaluation task: its own instruction when configured, else the default."""
        return self.task_prompts.get(task, self.query_prompt) if task else self.query_prompt

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
        max_batch_tokens: int | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed texts without gradients; float32, input order. Texts go longest first (little padding), in batches
        of at most `batch_size` rows and `max_batch_tokens` padded tokens (None: the encoder's `max_batch_tokens`):
        a batch of long texts holds few rows. The vectors do not depend on the token budget (width_keeping_batches)."""
        texts = list(texts)
        width = self.dim if head else self.backbone.config.hidden_size
        if not texts:
            empty = torch.zeros(0, width)
            return empty.numpy() if convert_to == "numpy" else empty
        # A linear head's matmul rounds by its number of rows: it runs once over all pooled features (apply_head),
        # so the vectors do not depend on how the texts were batched.
        head_after = head and self.projection is not None
        head_now = head and not head_after
        was_training = self.training
        self.eval()
        ids = self._token_ids(texts, prompt)
        order = longest_first([len(x) for x in ids])
        budget = max_batch_tokens if max_batch_tokens is not None else self.max_batch_tokens
        batches = width_keeping_batches([len(ids[i]) for i in order], batch_size, budget)
        out = torch.empty(len(texts), self.dim if head_now else self.backbone.config.hidden_size, dtype=torch.float32)
        show = len(texts) >= PROGRESS_MIN_TEXTS if show_progress is None else show_progress
        device = self.device
        n_prompt = prompt_length(self.tokenizer, prompt)
        run = runtime.runner(self)  # None: the torch backbone (a trainable encoder always)
        with tqdm(total=len(texts), desc=desc, disable=not show, unit="text") as bar, self.autocast():
            for start, end, padded in batches:
                idx = order[start:end]
                rows = {"input_ids": [ids[i] for i in idx]}
                batch = self.tokenizer.pad(rows, padding="max_length", max_length=padded, return_tensors="pt")
                if run is not None:
                    hidden = runtime.last_hidden_state(run, batch["input_ids"], batch["attention_mask"])
                    emb = self.pool_head(hidden, batch["attention_mask"], head_now, n_prompt)
                else:
                    emb = self(batch["input_ids"].to(device), batch["attention_mask"].to(device), head_now, n_prompt)
                out[torch.as_tensor(idx)] = emb.float().cpu()
                bar.update(len(idx))
        self.train(was_training)
        if head_after:
            out = torch.from_numpy(self.apply_head(out.numpy()))
        return out.numpy() if convert_to == "numpy" else out

    def _token_ids(self, texts: list[str], prompt: str) -> list[list[int]]:
        return self.tokenizer(
            [prompt + t for t in texts],
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
        )["input_ids"]

    def token_lengths(self, texts: Sequence[str], prompt: str = "", chunk: int = 8192) -> np.ndarray:
        """Tokens per text as `encode` counts them (prompt included, truncated), a chunk at a time: what a sharded
        encoding orders a collection by without holding all its token ids."""
        out = np.zeros(len(texts), dtype=np.int64)
        for start in range(0, len(texts), chunk):
            out[start : start + chunk] = [len(x) for x in self._token_ids(list(texts[start : start + chunk]), prompt)]
        return out

    @torch.inference_mode()
    def apply_head(self, features: np.ndarray, batch_size: int = HEAD_BLOCK_ROWS) -> np.ndarray:
        """Pooled features (`encode(head=False)`) -> embeddings: projection, then normalisation, under the same
        autocast as `encode`, so frozen encoders that differ only in their head share one backbone pass."""
        device = self.device
        out = []
        with self.autocast():
            for start in range(0, len(features), batch_size):  # a memory-mapped array is read a block at a time
                emb = torch.from_numpy(np.array(features[start : start + batch_size], dtype=np.float32)).to(device)
                if self.projection is not None:
                    emb = self.projection(emb)
                out.append((nn.functional.normalize(emb, dim=-1) if self.normalize else emb).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), dtype=np.float32)

    def encode_queries(self, texts: list[str], task: str | None = None, **kwargs) -> np.ndarray | torch.Tensor:
        return self.encode(texts, prompt=self.query_prompt_for(task), desc=kwargs.pop("desc", "queries"), **kwargs)

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
            self.resolved_precision(),  # fp32 and bf16 vectors differ: never one cache entry
            type(self.tokenizer).__name__,
            self.tokenizer.padding_side,
            tokenizer_digest(self.tokenizer),
        )
        # Later settings enter only when not at their defaults, so existing fingerprints (caches) stay valid.
        extra = {
            "bidirectional": decoder.is_bidirectional(self.backbone),
            "include_prompt": self.include_prompt,
            "backend": runtime.backend_name(self),  # a runtime's vectors differ from torch's by ~1e-6
        }
        defaults = {"bidirectional": False, "include_prompt": True, "backend": "torch"}
        extra = {k: v for k, v in extra.items() if v != defaults[k]}
        h.update(repr(settings + ((extra,) if extra else ())).encode())
        return h.hexdigest()

    # ----------------------------------------------------------------------------------------- export
    def save(self, folder: str | Path, card: str | None = None) -> Path:
        """A sentence-transformers folder any loader opens (LoRA merged); `card`: its README.md (models/export.py)."""
        return export.save_folder(self, Path(folder), card)

    def save_adapter(self, folder: str | Path, card: str | None = None) -> Path:
        """The LoRA adapter alone, loadable by `Encoder.from_pretrained(folder)` (models/export.py)."""
        return export.save_adapter(self, Path(folder), card)

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
            "precision": self.resolved_precision(),
            "bidirectional": decoder.is_bidirectional(self.backbone),
            "include_prompt": self.include_prompt,
            "task_prompts": self.task_prompts,
            "lora": lora.has_lora(self.backbone),
            "backend": runtime.backend_name(self),
        }
