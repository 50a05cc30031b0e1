"""The mining job (`embedlab-mine`): hard negatives for a BEIR split, written with their diagnostics."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embedlab.config.build import build_encoder, search_settings
from embedlab.data import load_beir, resolve_data_path
from embedlab.eval.cache import EmbeddingCache
from embedlab.manifest import build_manifest, write_run_record
from embedlab.mining.mine import mine, selection_from_config
from embedlab.report.mining import write_mining_outputs
from embedlab.report.table import format_table


def run(cfg: DictConfig, out_dir: Path) -> dict:
    selection, top_k = selection_from_config(OmegaConf.to_container(cfg.mining, resolve=True))
    search = search_settings(cfg.get("search"))
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
        search=search,
    )
    output = Path(cfg.output) if Path(cfg.output).is_absolute() else out_dir / cfg.output
    report = write_mining_outputs(
        result, output, out_dir, selection, f"{data.name} {cfg.data.split}", cfg.histogram_bins
    )
    manifest = build_manifest(
        seed=selection.seed,
        data={data.name: data.fingerprint},
        models={"documents": docs.fingerprint(), "queries": queries.fingerprint()},
    )
    write_run_record(out_dir, cfg, manifest)
    rows = [{"what": k, "count": v} for k, v in result.counts.items()]
    fn = result.diagnostics
    if fn.get("queries"):
        rows.append({"what": "false-negative rate (hidden positives)", "count": round(fn["false_negative_rate"], 4)})
    print(format_table(rows, ["what", "count"]))
    print(f"\nnegatives: {output}\nrun directory: {out_dir}")
    return report
