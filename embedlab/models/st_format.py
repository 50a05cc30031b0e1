"""Read and write the sentence-transformers folder format, so `SentenceTransformer(path)` opens embedlab models.

A folder is a transformers checkpoint at its root plus `modules.json` listing the pipeline: Transformer ->
Pooling (`1_Pooling/config.json`) -> optional Dense (`2_Dense/`, the projection) -> optional Normalize.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from embedlab.errors import DataFormatError

_ST = "sentence_transformers.models."
# embedlab pooling name <-> the legacy boolean keys that every sentence-transformers version reads.
_POOLING_KEYS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "weighted_mean": "pooling_mode_weightedmean_tokens",
    "last_token": "pooling_mode_lasttoken",
}
_NEW_POOLING_NAMES = {
    "cls": "cls",
    "mean": "mean",
    "weightedmean": "weighted_mean",
    "lasttoken": "last_token",
}


@dataclass
class StLayout:
    """What a sentence-transformers folder says about the pipeline around its transformer."""

    transformer_dir: Path
    pooling: str | None = None
    normalize: bool = False
    max_length: int | None = None
    dense: dict[str, torch.Tensor] | None = None  # {"weight": [out, in], "bias": [out]}
    prompts: dict[str, str] = field(default_factory=dict)
    include_prompt: bool = True  # Pooling's include_prompt: False = prompt tokens are not pooled


def _read_json(path: Path) -> dict | list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, None, f"invalid JSON ({e.msg})") from None


def _pooling_from_config(path: Path) -> str:
    config = _read_json(path)
    assert isinstance(config, dict)
    if "pooling_mode" in config:  # sentence-transformers >= 6 writes a single name
        mode = config["pooling_mode"]
        mode = mode[0] if isinstance(mode, list) and len(mode) == 1 else mode
        if mode in _NEW_POOLING_NAMES:
            return _NEW_POOLING_NAMES[mode]
        raise DataFormatError(path, None, "pooling_mode", f"unsupported pooling {mode!r}")
    active = [name for name, key in _POOLING_KEYS.items() if config.get(key)]
    unsupported = [
        k for k, v in config.items() if k.startswith("pooling_mode_") and v and k not in _POOLING_KEYS.values()
    ]
    if len(active) != 1 or unsupported:
        raise DataFormatError(
            path, None, "pooling_mode_*", "exactly one of cls/mean/weightedmean/lasttoken must be set"
        )
    return active[0]


def read_layout(folder: Path) -> StLayout:
    """Parse `modules.json` and friends; a plain transformers folder gives a layout with nothing set."""
    layout = StLayout(transformer_dir=folder)
    modules_file = folder / "modules.json"
    if not modules_file.exists():
        return layout
    modules = _read_json(modules_file)
    for i, module in enumerate(modules):  # type: ignore[union-attr]
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        sub = folder / module.get("path", "")
        if kind == "Transformer":
            layout.transformer_dir = sub
        elif kind == "Pooling":
            layout.pooling = _pooling_from_config(sub / "config.json")
            layout.include_prompt = bool(_read_json(sub / "config.json").get("include_prompt", True))  # type: ignore[union-attr]
        elif kind == "Normalize":
            layout.normalize = True
        elif kind == "Dense":
            config = _read_json(sub / "config.json")
            activation = str(config.get("activation_function", "torch.nn.modules.activation.Tanh"))  # type: ignore[union-attr]
            if not activation.endswith("Identity"):
                raise DataFormatError(
                    sub / "config.json",
                    None,
                    "activation_function",
                    f"only a linear (Identity) Dense is supported, got {activation}",
                )
            if (sub / "model.safetensors").exists():
                state = load_file(str(sub / "model.safetensors"))
            else:
                legacy = sub / "pytorch_model.bin"
                try:  # tensors only: a pickled object in a downloaded checkpoint could run any code
                    state = torch.load(legacy, map_location="cpu", weights_only=True)
                except pickle.UnpicklingError as e:
                    problem = f"not a plain tensor checkpoint ({str(e).splitlines()[0]})"
                    raise DataFormatError(legacy, None, None, problem) from None
            layout.dense = {k.removeprefix("linear."): v for k, v in state.items()}
        else:
            raise DataFormatError(modules_file, None, f"[{i}].type", f"unsupported module {module.get('type')!r}")
    st_config = layout.transformer_dir / "sentence_bert_config.json"
    if st_config.exists():
        layout.max_length = _read_json(st_config).get("max_seq_length")  # type: ignore[union-attr]
    prompts_file = folder / "config_sentence_transformers.json"
    if prompts_file.exists():
        prompts = dict(_read_json(prompts_file).get("prompts") or {})  # type: ignore[union-attr]
        aliases = mteb_aliases(prompts)
        layout.prompts = {k: v for k, v in prompts.items() if aliases.get(k) != v}  # written by write_layout
    return layout


def mteb_aliases(prompts: dict[str, str]) -> dict[str, str]:
    """`<MTEB name>-query` copies of the query prompts keyed by embedlab task names (scifact -> SciFact-query): mteb
    looks prompts up by its own task names, and would apply a bare task-name key to documents as well."""
    from embedlab.data.tasks import TASKS  # data layer; imported here to keep models importable alone

    return {
        f"{TASKS[k].mteb_name}-query": v for k, v in prompts.items() if k in TASKS and TASKS[k].mteb_name is not None
    }


def write_layout(
    folder: Path,
    *,
    hidden_size: int,
    pooling: str,
    normalize: bool,
    max_length: int,
    dense: torch.nn.Linear | None,
    prompts: dict[str, str],
    include_prompt: bool = True,
) -> None:
    """Write everything but the transformer checkpoint itself (the caller saves that at the folder root)."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": _ST + "Transformer"}]
    pooling_config = {"word_embedding_dimension": hidden_size, "include_prompt": include_prompt}
    pooling_config.update({key: name == pooling for name, key in _POOLING_KEYS.items()})
    _add(folder, modules, "Pooling", pooling_config)
    if dense is not None:
        dense_dir = _add(
            folder,
            modules,
            "Dense",
            {
                "in_features": dense.in_features,
                "out_features": dense.out_features,
                "bias": dense.bias is not None,
                "activation_function": "torch.nn.modules.linear.Identity",
            },
        )
        state = {f"linear.{k}": v.detach().cpu().contiguous() for k, v in dense.state_dict().items()}
        save_file(state, str(dense_dir / "model.safetensors"))
    if normalize:
        _add(folder, modules, "Normalize", None)
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": False})
    )
    prompts = {**prompts, **mteb_aliases(prompts)}
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2)
    )


def _add(folder: Path, modules: list[dict], kind: str, config: dict | None) -> Path:
    idx = len(modules)
    sub = folder / f"{idx}_{kind}"
    sub.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (sub / "config.json").write_text(json.dumps(config, indent=2))
    modules.append({"idx": idx, "name": str(idx), "path": sub.name, "type": _ST + kind})
    return sub
