"""The scoring job (`embedlab-score`): soft labels for mined candidate lists from bi-encoders and/or rerankers."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from embedlab.config.build import build_scorer
from embedlab.config.check import check_teachers
from embedlab.data import read_corpus, resolve_data_path
from embedlab.eval.cache import EmbeddingCache
from embedlab.io import fingerprint, sha256_file, write_jsonl_atomic
from embedlab.manifest import build_manifest, write_run_record
from embedlab.scoring.lists import read_mined_lists, score_lists, scored_records


def run(cfg: DictConfig, out_dir: Path) -> dict:
    teachers = check_teachers(cfg)
    corpus = read_corpus(resolve_data_path(cfg.data.path, cfg.data.root))
    lists = read_mined_lists(cfg.input, corpus, cfg.num_negatives)  # bad input fails before any model loads
    cache = EmbeddingCache() if cfg.cache else None
    scorers = [(build_scorer(t, cfg.batch_size, cache), float(t["weight"])) for t in teachers]
    combined, raw = score_lists(lists, corpus, scorers, cfg.teacher_scores.normalize)
    output = Path(cfg.output) if Path(cfg.output).is_absolute() else out_dir / cfg.output
    write_jsonl_atomic(output, scored_records(lists, corpus, combined, raw))
    manifest = build_manifest(
        data={"input": sha256_file(cfg.input), "corpus": fingerprint(list(corpus.items()))},
        models={scorer.name: scorer.fingerprint() for scorer, _ in scorers},
    )
    write_run_record(out_dir, cfg, manifest)
    summary = {"lists": len(lists.query_ids), "candidates": len(lists.candidate_ids[0]), "skipped": lists.skipped}
    print(", ".join(f"{k}: {v}" for k, v in summary.items()))
    print(f"\nscored lists: {output}\nrun directory: {out_dir}")
    return summary
