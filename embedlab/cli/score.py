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

from embedlab.cli.common import run_hydra_job
from embedlab.config.build import CONF_DIR, build_scorer
from embedlab.config.check import check_teachers
from embedlab.data import read_corpus, resolve_data_path
from embedlab.eval.cache import EmbeddingCache
from embedlab.io import fingerprint, sha256_file, write_json_atomic, write_jsonl_atomic, write_text_atomic
from embedlab.manifest import build_manifest
from embedlab.scoring.lists import read_mined_lists, score_lists, scored_records

log = logging.getLogger("embedlab.score")


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
