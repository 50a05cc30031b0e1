"""The model card (README.md) of an exported model, in sentence-transformers' layout: what the model is, how to load
it (with the prompts it was trained with), how it was trained (base model, losses with weights and temperatures,
data and sizes, hyperparameters), the run's evaluation table, the asymmetric pairing of a LEAF student, and the
citations of the method. Pure text from the run's resolved config and results: `Encoder.save(folder, card=...)`
writes it into the folder atomically, with the weights.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from embedlab.io import write_text_atomic

CARD_FILE = "README.md"
TEMPERATURE_KEYS = ("temperature", "student_temperature", "teacher_temperature")
CITATIONS = {
    "Sentence-BERT": (
        "reimers2019sentencebert",
        "Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks",
        "Nils Reimers and Iryna Gurevych",
        "1908.10084",
        2019,
    ),
    "LEAF": (
        "vujanic2025leaf",
        "LEAF: Knowledge Distillation of Text Embedding Models with Teacher-Aligned Representations",
        "Robin Vujanic and Thomas Rueckstiess",
        "2509.12539",
        2025,
    ),
    "KaLM-Embedding-V2": (
        "zhao2025kalmv2",
        "KaLM-Embedding-V2: Superior Training Techniques and Data Inspire A Versatile Embedding Model",
        "Xinping Zhao and Xinshuo Hu and Zifei Shan and others",
        "2506.20923",
        2025,
    ),
    "LG-ANNA-Embedding": (
        "choi2025lganna",
        "LG-ANNA-Embedding technical report",  # v2 of the preprint is titled "LGAI-Embedding-Preview Technical Report"
        "Jooyoung Choi and Hyun Kim and Hansol Jang and Changwook Jun and Kyunghoon Bae and Hyewon Choi and "
        "Stanley Jungkyu Choi and Honglak Lee and Chulmin Yun",
        "2506.07438",
        2025,
    ),
}


def methods_of(config: Mapping) -> list[str]:
    """The papers whose recipe the config follows, read off its knobs: the LEAF loss; KaLM-V2's focal weighting or
    hard-negative mixing; LG-ANNA's adaptive-margin mining or listwise soft labels."""
    losses = dict(config.get("loss") or {})
    found = []
    if "leaf" in losses:
        found.append("LEAF")
    if any((s or {}).get("gamma") or ((s or {}).get("hn_mixing") or {}).get("enabled") for s in losses.values()):
        found.append("KaLM-Embedding-V2")
    mining = config.get("mining") or {}
    if (mining.get("enabled") and mining.get("margin") == "adaptive") or "kl_distill" in losses:
        found.append("LG-ANNA-Embedding")
    return found


def _hub_link(name: str) -> str:
    """A hub id as a link to its page; a local folder or config name as plain text."""
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not Path(name).exists():
        return f"[{name}](https://huggingface.co/{name})"
    return f"`{name}`"


def _value(v) -> str:
    return json.dumps(v) if isinstance(v, (list, dict, bool)) or v is None else str(v)


def _table(header: list[str], rows: list[list]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(":--" if i == 0 else "--:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _main_metric(task: str, metrics: Mapping) -> tuple[str, float | None]:
    if "main_score" in metrics:  # an mteb task
        return "main score", metrics["main_score"]
    from embedlab.data import get_task  # data layer; imported here to keep models importable alone

    name = get_task(task).main_metric
    return name, metrics.get(name)


def evaluation_section(results: Mapping[str, Mapping[str, Mapping]]) -> str:
    """One row per evaluated system (teacher, student before/after, asymmetric pair), each task's main metric."""
    tasks = list(dict.fromkeys(t for per_task in results.values() for t in per_task))
    if not tasks:
        return "No evaluation was run."
    header = ["system"] + [f"{t} ({_main_metric(t, next(r[t] for r in results.values() if t in r))[0]})" for t in tasks]
    rows = []
    for system, per_task in results.items():
        cells = [_main_metric(t, per_task[t])[1] if t in per_task else None for t in tasks]
        rows.append([system] + ["—" if v is None else f"{v:.4f}" for v in cells])
    return _table(header, rows)


def _losses(config: Mapping) -> str:
    rows = []
    for name, settings in dict(config.get("loss") or {}).items():
        settings = dict(settings or {})
        temps = ", ".join(f"{k}={settings[k]}" for k in TEMPERATURE_KEYS if k in settings) or "—"
        rest = {k: v for k, v in settings.items() if k not in (*TEMPERATURE_KEYS, "weight") and v not in (None, False)}
        other = "; ".join(f"{k}={_value(v)}" for k, v in rest.items()) or "—"
        rows.append([f"`{name}`", settings.get("weight", 1.0), temps, other])
    return _table(["loss", "weight", "temperature", "other settings"], rows) if rows else "None recorded."


def _data(config: Mapping, data_sizes: Mapping[str, int] | None) -> str:
    data = dict(config.get("data") or {})
    lines = [f"- **Kind:** {data.get('kind', '?')}"]
    for key in ("path", "split", "negatives_file", "num_negatives", "num_candidates", "max_length", "heldout"):
        if data.get(key) not in (None, 0, ""):
            lines.append(f"- **{key}:** {_value(data[key])}")
    for source in data.get("sources") or []:
        lines.append(
            f"- **Source `{source.get('name')}`:** " + ", ".join(f"{k}={v}" for k, v in source.items() if k != "name")
        )
    if data_sizes:
        lines.append("")
        lines.append(_table(["training source", "examples"], [[f"`{k}`", f"{v:,}"] for k, v in data_sizes.items()]))
    return "\n".join(lines)


def _hyperparameters(config: Mapping, summary: Mapping | None) -> str:
    trainer, optim, data = (dict(config.get(k) or {}) for k in ("trainer", "optim", "data"))
    values = {
        **{f"optim.{k}": v for k, v in optim.items()},
        "data.batch_size": data.get("batch_size"),
        **{
            f"trainer.{k}": trainer.get(k)
            for k in ("max_epochs", "max_steps", "precision", "accumulate_grad_batches", "gradient_clip_val", "devices")
            if k in trainer
        },
        **{f"projection.{k}": v for k, v in dict(config.get("projection") or {}).items()},
        "seed": config.get("seed"),
    }
    mining = dict(config.get("mining") or {})
    if mining.get("enabled"):
        values.update({f"mining.{k}": v for k, v in mining.items() if k != "enabled"})
    for key in ("steps", "train_seconds", "heldout_cosine_before", "heldout_cosine"):
        if summary and summary.get(key) is not None:
            values[f"run.{key}"] = summary[key]
    return "\n".join(f"- `{k}`: {_value(v)}" for k, v in values.items() if v is not None)


def _citations(methods: list[str]) -> str:
    blocks = []
    for method in ["Sentence-BERT", *methods]:
        key, title, authors, arxiv, year = CITATIONS[method]
        blocks.append(
            f"#### {method}\n\n```bibtex\n@article{{{key},\n  title = {{{title}}},\n  author = {{{authors}}},\n"
            f"  journal = {{arXiv preprint arXiv:{arxiv}}},\n  year = {{{year}}},\n  url = {{https://arxiv.org/abs/{arxiv}}}\n}}\n```"
        )
    return "\n\n".join(blocks)


def _usage(prompts: Mapping[str, str], teacher: str | None) -> str:
    task_keys = [k for k in prompts if k not in ("query", "document")]
    lines = [
        "```python",
        "from sentence_transformers import SentenceTransformer",
        "",
        'model = SentenceTransformer("path/to/this/folder")',
        'queries = model.encode_query(["What causes ...?"])  # the "query" prompt, as embedlab encodes queries',
    ]
    if task_keys:
        lines.append(f'queries = model.encode_query(["..."], prompt_name="{task_keys[0]}")  # a task\'s instruction')
    if teacher:
        lines += [
            "# LEAF asymmetric mode: documents by the teacher, queries by this model (one vector space)",
            f'documents = SentenceTransformer("{teacher}").encode_document(["A passage ..."])',
        ]
    else:
        lines.append('documents = model.encode_document(["A passage ..."])  # the "document" prompt')
    lines += ["scores = model.similarity(queries, documents)", "```"]
    return "\n".join(lines)


def model_card(
    config: Mapping,
    results: Mapping[str, Mapping[str, Mapping]],
    *,
    model: Mapping | None = None,
    summary: Mapping | None = None,
    data_sizes: Mapping[str, int] | None = None,
    methods: list[str] | None = None,
    title: str | None = None,
    teacher: str | None = None,
) -> str:
    """README.md text. `config`: the run's resolved config (model, teacher, loss, data, optim, trainer, ...);
    `results`: system -> task -> metrics (results.json); `model`: `Encoder.describe()` of the exported model;
    `summary`: steps, seconds, held-out cosines; `data_sizes`: training examples per source; `methods`: papers to
    cite (default: read off the config, `methods_of`); `teacher`: the teacher's model id (default: the config's
    `teacher.path`, which may be a preset name such as mpnet: the training job passes the id it resolved)."""
    model_cfg, teacher_cfg = dict(config.get("model") or {}), dict(config.get("teacher") or {})
    described = dict(model or {})
    base = str(described.get("name") or model_cfg.get("path") or "unknown")
    teacher = teacher or teacher_cfg.get("path") or teacher_cfg.get("file")
    methods = methods_of(config) if methods is None else methods
    prompts = {**dict(described.get("task_prompts") or {})}
    prompts.update({"query": described.get("query_prompt", ""), "document": described.get("document_prompt", "")})
    dim = described.get("dim") or model_cfg.get("projection_dim") or "?"
    front = ["---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity", "tags:"]
    front += [
        f"- {t}" for t in ("sentence-transformers", "sentence-similarity", "feature-extraction", "embedlab", *methods)
    ]
    front += [f"base_model: {base}", "---"]
    details = [
        "- **Model Type:** Sentence Transformer (exported by embedlab)",
        f"- **Base model:** {_hub_link(base)}"
        + (f" with LoRA adapters {_value(model_cfg['lora'])}" if model_cfg.get("lora") else ""),
        f"- **Maximum Sequence Length:** {described.get('max_length', model_cfg.get('max_length') or '?')} tokens",
        f"- **Output Dimensionality:** {dim} dimensions",
        "- **Similarity Function:** cosine" if described.get("normalize", True) else "- **Similarity Function:** dot",
        f"- **Pooling:** {described.get('pooling', model_cfg.get('pooling') or '?')}"
        + ("" if described.get("include_prompt", True) else " (prompt tokens excluded)"),
        f"- **Projection head:** {'yes' if described.get('projection') or model_cfg.get('projection_dim') else 'no'}",
    ]
    if teacher:
        details.append(f"- **Teacher:** {teacher}")
    prompt_rows = [[f"`{k}`", json.dumps(v).replace("|", "\\|")] for k, v in prompts.items()]
    sections = [
        "\n".join(front),
        f"# {title or f'embedlab model trained from {base}'}",
        f"A text-embedding model trained with embedlab from {_hub_link(base)}"
        + (f" ({', '.join(methods)} recipe)" if methods else "")
        + f". It maps text to a {dim}-dimensional dense vector space for retrieval and semantic similarity.",
        "## Model Details\n\n" + "\n".join(details),
        "### Prompts\n\nStored in `config_sentence_transformers.json`, so sentence-transformers and mteb prepend the "
        "same strings embedlab does:\n\n" + _table(["name", "prompt"], prompt_rows),
        "## Usage\n\n```bash\npip install -U sentence-transformers\n```\n\n" + _usage(prompts, teacher),
    ]
    if teacher and ("asymmetric" in results or "LEAF" in methods):
        asym = {k: v for k, v in results.items() if k.startswith("asymmetric")}
        sections.append(
            "## Asymmetric use (LEAF)\n\nThis student is aligned to its teacher's vector space: index documents with "
            f"the teacher **{teacher}** and embed queries with this model (LEAF's deployment mode). "
            "`embedlab-eval model=<teacher> query_model=<this folder>` evaluates the pair; so does mteb through "
            "embedlab's adapter (`tasks=[mteb:SciFact]`)." + ("\n\n" + evaluation_section(asym) if asym else "")
        )
    sections += [
        "## Evaluation\n\n" + evaluation_section(results),
        "## Training Details\n\n### Training Data\n\n" + _data(config, data_sizes),
        "### Losses\n\nThe training loss is the weighted sum of:\n\n" + _losses(config),
        "### Training Hyperparameters\n\n" + _hyperparameters(config, summary),
        "## Citation\n\n" + _citations(methods),
    ]
    return "\n\n".join(sections) + "\n"


def write_card(folder: str | Path, text: str) -> Path:
    """Write (or replace) the card of an exported folder atomically."""
    path = Path(folder) / CARD_FILE
    write_text_atomic(path, text)
    return path
