"""Record an experiment's results in the repository: the small files of its run directories, which the reports and
notebooks/experiments.ipynb read, without models, rankings or caches.

A run directory holds a few MB of results beside GBs of weights. This copies, keeping the layout under SOURCE:
  metrics.json, results.json, manifest.json (commit, command, hardware), config.yaml, .hydra/*.yaml,
  heldout_cosine.jsonl, logs/**/metrics.csv (the training curves), *.md / *.json reports, dev_choices.txt, and
  per_query/<task>.jsonl cut to the query id and the --metric columns (ndcg_at_10 and recall_at_100 by default;
  a file without them, e.g. STS pair scores, is left out: its task's figure stays in metrics.json)
and leaves out everything else (model/, *.trec rankings, checkpoints, arrays, logs of progress bars, data/).
RECORD.json says what was recorded from where, when and by which commit. The record is built beside the target and
swapped in, so a re-record replaces the old one whole; runs still going (no metrics.json yet) are left out.

  python experiments/record.py /work/exp19/leaf_teacher experiments/records/leaf_teacher
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from embedlab.errors import DataFormatError
from embedlab.io import write_json_atomic, write_text_atomic
from embedlab.manifest import git_state

KEEP_NAMES = {"metrics.json", "results.json", "manifest.json", "config.yaml", "heldout_cosine.jsonl", "metrics.csv",
              "dev_choices.txt"}  # fmt: skip  # dev_choices.txt: what a sweep script chose on dev
KEEP_SUFFIXES = {".md"}  # reports written next to the runs (e.g. leaf_teacher.md)
SKIP_DIRS = {"model", "data", "checkpoints", "cache", ".git"}


def kept(path: Path, root: Path) -> bool:
    """Whether `path` (a file under `root`) belongs in a record."""
    parts = path.relative_to(root).parts
    if any(p in SKIP_DIRS for p in parts[:-1]):
        return False
    if parts[-2:-1] == (".hydra",) and path.suffix == ".yaml":
        return True
    if len(parts) >= 2 and parts[-2] == "per_query" and path.suffix == ".jsonl":
        return True
    if len(parts) == 1 and path.suffix == ".json":  # a report's machine-readable table at the top
        return True
    return path.name in KEEP_NAMES or path.suffix in KEEP_SUFFIXES


def cut_per_query(path: Path, text: str, metrics: list[str]) -> str | None:
    """Each row of `path` reduced to its query id and the chosen metrics; None when no row has any of them."""
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, line_no, None, f"not valid JSON ({e.msg})") from None
        chosen = {k: row[k] for k in metrics if k in row}
        if chosen:
            if "query_id" not in row:
                raise DataFormatError(path, line_no, "query_id", "missing")
            rows.append(json.dumps({"query_id": row["query_id"], **chosen}))
    return "\n".join(rows) + "\n" if rows else None


def walk(source: Path) -> Iterator[Path]:
    """Every file below `source`, through symlinked folders too (a record of linked runs), never into SKIP_DIRS nor
    into an unfinished run (a Hydra run folder without metrics.json: a sweep recorded while it still runs)."""
    for folder, dirs, files in os.walk(source, followlinks=True):
        if ".hydra" in dirs and "metrics.json" not in files:
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        yield from (Path(folder) / f for f in files)


def record(source: Path, target: Path, metrics: list[str]) -> list[Path]:
    """Copy the kept files of `source` into `target`, replacing an earlier record there as a whole (built beside it,
    then swapped in); returns the files written (relative to `target`)."""
    if not source.is_dir():
        raise SystemExit(f"{source}: not a folder")
    partial, old = target.with_name(f".{target.name}.partial"), target.with_name(f".{target.name}.old")
    for leftover in (partial, old):
        shutil.rmtree(leftover, ignore_errors=True)
    written = []
    for path in sorted(p for p in walk(source) if kept(p, source)):
        rel = path.relative_to(source)
        text = path.read_text(encoding="utf-8")
        if rel.parent.name == "per_query":
            text = cut_per_query(path, text, metrics)
            if text is None:
                continue
        write_text_atomic(partial / rel, text)
        written.append(rel)
    write_json_atomic(
        partial / "RECORD.json",
        {
            "source": str(source),
            "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "recorded_by": git_state(),  # the commit of record.py's checkout, and whether it was dirty
            "per_query_metrics": metrics,
            "files": len(written),
        },
    )
    if target.exists():
        target.rename(old)
    partial.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="an experiment's output folder (run directories below it)")
    parser.add_argument("target", type=Path, help="where the record goes, e.g. experiments/records/<name>")
    parser.add_argument("--metric", action="append", help="per-query columns kept (default ndcg_at_10, recall_at_100)")
    args = parser.parse_args()
    try:
        written = record(args.source, args.target, args.metric or ["ndcg_at_10", "recall_at_100"])
    except DataFormatError as e:
        raise SystemExit(f"error: {e}") from None
    size = sum((args.target / p).stat().st_size for p in written)
    print(f"recorded {len(written)} files ({size / 1e6:.2f} MB) from {args.source} in {args.target}")


if __name__ == "__main__":
    main()
