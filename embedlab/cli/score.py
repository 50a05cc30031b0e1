"""`embedlab-score`: soft labels for mined candidate lists from a bi-encoder and/or a cross-encoder reranker.

embedlab-score input=outputs/mine/<run>/negatives.jsonl                          # mpnet bi-encoder scores
embedlab-score input=... teacher_scores=mpnet_reranker teacher_scores.teachers.1.model=/path/to/reranker

Run directory: scored.jsonl (train with `data=scored data.path=<it> 'loss=[infonce,kl_distill]'`), config.yaml,
manifest.json.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from embedlab.cli.common import CONF_DIR, build_encoder, encoder_config, run_hydra_job
from embedlab.data import read_corpus, resolve_data_path
from embedlab.errors import ConfigError
from embedlab.eval.cache import EmbeddingCache
from embedlab.hub import resolve_model
from embedlab.io import fingerprint, sha256_file, write_json_atomic, write_jsonl_atomic, write_text_atomic
from embedlab.manifest import build_manifest
from embedlab.scoring.combine import NORMALIZATIONS
from embedlab.scoring.lists import read_mined_lists, score_lists, scored_records
from embedlab.scoring.scorers import BiEncoderScorer, CrossEncoderScorer

log = logging.getLogger("embedlab.score")
KINDS = ("bi_encoder", "cross_encoder")


def check_teachers(cfg: DictConfig) -> list[dict]:
    teachers = OmegaConf.to_container(cfg.teacher_scores.teachers, resolve=True) or []
    if cfg.teacher_scores.normalize not in NORMALIZATIONS:
        raise ConfigError(f"teacher_scores.normalize must be one of {', '.join(NORMALIZATIONS)}")
    for i, t in enumerate(teachers):
        if t.get("kind") not in KINDS:
            kind = t.get("kind")
            raise ConfigError(f"teacher_scores.teachers.{i}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if t.get("model") in (None, "", "???"):
            raise ConfigError(f"teacher_scores.teachers.{i}.model is required (a folder or hub id)")
    return teachers


def build_scorer(t: dict, batch_size: int, cache: EmbeddingCache | None):
    """One teacher from its `teacher_scores.teachers` entry (a reranker runs remote code only if it says so)."""
    if t["kind"] == "bi_encoder":
        settings = {k: t[k] for k in ("max_length", "precision", "backend") if t.get(k) is not None}
        node = OmegaConf.merge(OmegaConf.structured(encoder_config(t["model"]).__dict__), settings)
        return BiEncoderScorer(build_encoder(node, frozen=True), batch_size=batch_size, cache=cache)
    return CrossEncoderScorer(
        resolve_model(encoder_config(t["model"]).path),
        max_length=t.get("max_length") or 512,
        batch_size=batch_size,
        trust_remote_code=bool(t.get("trust_remote_code", False)),
    )


def run(cfg: DictConfig, out_dir: Path) -> dict:
    teachers = check_teachers(cfg)
    corpus = read_corpus(resolve_data_path(cfg.data.path, cfg.data.root))
    lists = read_mined_lists(cfg.input, corpus, cfg.num_negatives)  # bad input fails before any model loads
    cache = EmbeddingCache() if cfg.cache else None
    scorers = [(build_scorer(t, cfg.batch_size, cache), float(t.get("weight", 1.0))) for t in teachers]
    combined, raw = score_lists(lists, corpus, scorers, cfg.teacher_scores.normalize)
    output = Path(cfg.output) if Path(cfg.output).is_absolute() else out_dir / cfg.output
    write_jsonl_atomic(output, scored_records(lists, corpus, combined, raw))
    write_text_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    write_json_atomic(
        out_dir / "manifest.json",
        build_manifest(
            data={"input": sha256_file(cfg.input), "corpus": fingerprint(list(corpus.items()))},
            models={scorer.name: scorer.fingerprint() for scorer, _ in scorers},
        ),
    )
    summary = {"lists": len(lists.query_ids), "candidates": len(lists.candidate_ids[0]), "skipped": lists.skipped}
    print(", ".join(f"{k}: {v}" for k, v in summary.items()))
    print(f"\nscored lists: {output}\nrun directory: {out_dir}")
    return summary


@hydra.main(config_path=str(CONF_DIR), config_name="score", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_hydra_job(run, cfg, log)


if __name__ == "__main__":
    main()
