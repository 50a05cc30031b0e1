"""The mining job (`embedlab-mine`): hard negatives for a BEIR split, written with their diagnostics.

Under torchrun (`torchrun --nproc-per-node N -m embedlab.cli.mine ...`) every rank encodes its shards of the queries
and the corpus (`embedlab.eval.cache.cache_for_ranks`); rank 0 searches, selects and writes."""

from __future__ import annotations

import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from embedlab.config.build import build_encoder, search_settings
from embedlab.data import load_beir, resolve_data_path
from embedlab.eval.cache import EmbeddingCache, cache_for_ranks
from embedlab.eval.shards import process_group_from_env
from embedlab.manifest import build_manifest, write_run_record
from embedlab.mining.mine import mine, mining_vectors, selection_from_config
from embedlab.report.mining import write_mining_outputs
from embedlab.report.table import format_table


def run(cfg: DictConfig, out_dir: Path) -> dict:
    selection, top_k = selection_from_config(OmegaConf.to_container(cfg.mining, resolve=True))
    search = search_settings(cfg.get("search"))
    docs = build_encoder(cfg.model, frozen=True)
    queries = build_encoder(cfg.query_model, frozen=True) if cfg.query_model else docs
    data = load_beir(resolve_data_path(cfg.data.path, cfg.data.root), split=cfg.data.split)
    scratch = out_dir / "embeddings.tmp"  # with cache=false, where the ranks' shards meet
    with process_group_from_env() as ranks:
        cache = cache_for_ranks(EmbeddingCache() if cfg.cache else None, scratch)
        if ranks.rank != 0:  # its shards are published once it returns: rank 0 reads them from the files
            mining_vectors(data, queries, docs, cfg.batch_size, cache)
            return {}
        result = mine(
            data, queries, docs, selection, top_k=top_k, batch_size=cfg.batch_size, cache=cache, search=search
        )
    shutil.rmtree(scratch, ignore_errors=True)
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
