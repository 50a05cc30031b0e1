"""`embedlab-mine`: hard negatives for a BEIR split, with diagnostics.

embedlab-mine                                             # MiniLM, SciFact train, rank window 1-100, 8 negatives
embedlab-mine mining=adaptive mining.min_rank=10          # adaptive per-query margin
embedlab-mine model=mpnet mining=relative mining.relative=0.9 data.path=/data/my_beir_folder

Run directory: negatives.jsonl (the training file: query, positives, negatives, their scores), mining_report.json
(what each filter dropped; false negatives under hidden positives), score_histogram.png, config.yaml, manifest.json.
Train on it with `embedlab-train data.negatives_file=<run dir>/negatives.jsonl data.num_negatives=N`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from embedlab.cli.common import run_hydra_job
from embedlab.config.build import CONF_DIR, build_encoder
from embedlab.data import load_beir, resolve_data_path
from embedlab.eval.cache import EmbeddingCache
from embedlab.io import write_json_atomic, write_text_atomic
from embedlab.manifest import build_manifest
from embedlab.mining.mine import mine, selection_from_config
from embedlab.report.mining import write_mining_outputs
from embedlab.report.table import format_table

log = logging.getLogger("embedlab.mine")


def run(cfg: DictConfig, out_dir: Path) -> dict:
    selection, top_k = selection_from_config(OmegaConf.to_container(cfg.mining, resolve=True))
    docs = build_encoder(cfg.model, frozen=True)
    queries = build_encoder(cfg.query_model, frozen=True) if cfg.query_model else docs
    data = load_beir(resolve_data_path(cfg.data.path, cfg.data.root), split=cfg.data.split)
    result = mine(
        data,
        queries,
        docs,
        selection,
        top_k=top_k,
        batch_size=cfg.batch_size,
        cache=EmbeddingCache() if cfg.cache else None,
    )
    output = Path(cfg.output) if Path(cfg.output).is_absolute() else out_dir / cfg.output
    report = write_mining_outputs(
        result, output, out_dir, selection, f"{data.name} {cfg.data.split}", cfg.histogram_bins
    )
    write_text_atomic(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    write_json_atomic(
        out_dir / "manifest.json",
        build_manifest(
            seed=selection.seed,
            data={data.name: data.fingerprint},
            models={"documents": docs.fingerprint(), "queries": queries.fingerprint()},
        ),
    )
    rows = [{"what": k, "count": v} for k, v in result.counts.items()]
    fn = result.diagnostics
    if fn.get("queries"):
        rows.append({"what": "false-negative rate (hidden positives)", "count": round(fn["false_negative_rate"], 4)})
    print(format_table(rows, ["what", "count"]))
    print(f"\nnegatives: {output}\nrun directory: {out_dir}")
    return report


@hydra.main(config_path=str(CONF_DIR), config_name="mine", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_hydra_job(run, cfg, log)


if __name__ == "__main__":
    main()
