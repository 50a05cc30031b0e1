"""Negatives prepared before training: mined with the `mining` group, optionally scored into soft-labelled lists
with the `teacher_scores` group, so that `embedlab-train mining=adaptive teacher_scores=mpnet
'loss=[infonce,kl_distill]' data.num_negatives=4` runs mine → score → train in one command."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from embedlab.config.build import build_encoder, build_scorer, search_settings
from embedlab.config.check import check_teachers
from embedlab.data import load_beir, resolve_data_path
from embedlab.errors import ConfigError
from embedlab.io import write_jsonl_atomic
from embedlab.lit.remining import RemineCallback
from embedlab.mining.mine import mine, selection_from_config
from embedlab.mining.select import SelectionConfig
from embedlab.models import Encoder
from embedlab.report.mining import write_mining_outputs
from embedlab.scoring.lists import read_mined_lists, score_lists, scored_records

log = logging.getLogger("embedlab.train")


def check_mining(cfg: DictConfig) -> tuple[SelectionConfig, int] | None:
    """(selection, top_k) when `mining` is enabled; its knobs, the teachers and the data it needs are checked
    before any work."""
    knobs = OmegaConf.to_container(cfg.mining, resolve=True)
    if not knobs.get("enabled"):
        if check_teachers(cfg):
            raise ConfigError("teacher_scores scores mined lists: choose a mining preset too (mining=adaptive)")
        return None
    selection, top_k = selection_from_config(knobs)
    if check_teachers(cfg) and int(cfg.mining.get("refresh_every_n_steps") or 0) > 0:
        raise ConfigError("re-mining during training refreshes plain negatives; it cannot re-score soft labels")
    k = int(cfg.data.get("num_negatives") or 0)
    if cfg.data.kind != "pairs" or not 1 <= k <= selection.num_negatives:
        raise ConfigError(
            f"mining={selection.margin} needs pair data with 1 ≤ data.num_negatives ≤ mining.num_negatives "
            f"({selection.num_negatives}); got data.kind={cfg.data.kind}, data.num_negatives={k}"
        )
    return selection, top_k


def score_before_training(cfg: DictConfig, corpus: dict[str, str], negatives: Path, cache) -> None:
    """Soft labels for the mined lists (positive + data.num_negatives negatives); the run then trains on them as
    scored lists, which also feed contrastive losses (candidate 0 = the positive)."""
    k = int(cfg.data.num_negatives)
    if k == 1 and cfg.teacher_scores.normalize == "zscore":
        log.warning("z-scored two-candidate lists are ±1 whatever the teachers say: use data.num_negatives ≥ 3")
    lists = read_mined_lists(negatives, corpus, k)
    scorers = [(build_scorer(t, cfg.eval.batch_size, cache), float(t["weight"])) for t in check_teachers(cfg)]
    combined, raw = score_lists(lists, corpus, scorers, cfg.teacher_scores.normalize)
    scored = negatives.with_name("scored.jsonl")
    write_jsonl_atomic(scored, scored_records(lists, corpus, combined, raw))
    log.info("scored %d lists with %s (%d queries short of %d negatives left out)", len(lists.query_ids),
             ", ".join(s.name for s, _ in scorers), lists.skipped, k)  # fmt: skip
    with open_dict(cfg.data):  # the recorded config shows what was trained on
        cfg.data.kind, cfg.data.path, cfg.data.num_candidates = "scored", str(scored), k + 1


def mine_before_training(
    cfg: DictConfig, mining: tuple[SelectionConfig, int], student: Encoder, out_dir: Path, cache
) -> RemineCallback | None:
    """Mine the training queries' negatives into <run>/mining/ and point data.negatives_file at them; the
    re-mining callback when `mining.refresh_every_n_steps` asks for one."""
    selection, top_k = mining
    miner = build_encoder(cfg.mining_model, frozen=True) if cfg.mining_model else student
    corpus = load_beir(resolve_data_path(cfg.data.path, cfg.data.root), split=cfg.data.split)
    search = search_settings(cfg.eval.get("search"))  # the run's eval.search: one setting for every corpus search
    result = mine(
        corpus, miner, miner, selection, top_k=top_k, batch_size=cfg.eval.batch_size, cache=cache, search=search
    )
    negatives = out_dir / "mining" / "negatives.jsonl"
    write_mining_outputs(result, negatives, negatives.parent, selection, f"{corpus.name} {cfg.data.split}")
    cfg.data.negatives_file = str(negatives)  # the recorded config says where this run's negatives came from
    log.info("mined negatives for %d queries: %s", result.counts["queries"], result.counts)
    if check_teachers(cfg):
        score_before_training(cfg, corpus.corpus, negatives, cache)
    every = int(cfg.mining.get("refresh_every_n_steps") or 0)
    if every <= 0:
        return None
    return RemineCallback(
        corpus,
        selection,
        top_k=top_k,
        every_n_steps=every,
        num_negatives=int(cfg.data.num_negatives),
        out_dir=negatives.parent,
        batch_size=cfg.eval.batch_size,
    )
