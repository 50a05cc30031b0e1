"""The dev split every experiment selects on (so that no choice ever looks at SciFact test), and weakly supervised
title -> abstract pairs.

SciFact ships qrels for `train` (809 claims) and `test` (300 claims) only. This writes a data root whose `scifact/`
folder links the shared corpus, queries and test qrels, and splits the train qrels by query into
  qrels/fit.tsv   training claims  (train minus dev)
  qrels/dev.tsv   `--dev` claims: those with the smallest sha256(query id) -- a fixed rule, no seed, the same on
                  every machine and run; a claim is in exactly one of the two files, with all its pairs
The shared data root's other folders (arguana/, stsb/, ...) are linked beside it, so the result is a complete data
root. Train with `data.root=<root> data.split=fit` (or, for text sources, `data.sources.0.split=fit`); select on
`eval.split=dev` / `dev.split=dev`; report on `test` as usual. Used by soup.sh, kalm_v2.sh (LEGS=genq_dev) and
leaf_lr_dev.sh.
It also writes `scifact_titles/`: each abstract's title as a query, its body (title removed) as the one positive,
split `train` -- weak supervision in the spirit of KaLM-V2's first stage (title/body pairs), never a test claim.
Train on it with `data.root=<root> data.path=scifact_titles`.

  python experiments/scifact_data.py outputs/soup/data [--dev 200]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
from pathlib import Path

from embedlab.data.beir import QRELS_HEADER, find_data_file
from embedlab.data.tasks import data_root
from embedlab.io import write_jsonl_atomic, write_text_atomic

HEADER = "\t".join(QRELS_HEADER)


def split_train(rows: list[list[str]], dev: int) -> tuple[list[list[str]], list[list[str]]]:
    """(fit rows, dev rows) of qrels rows [qid, did, score]: the `dev` queries with the smallest sha256(qid)."""
    queries = sorted({r[0] for r in rows}, key=lambda q: hashlib.sha256(q.encode()).hexdigest())
    if not 0 < dev < len(queries):
        raise SystemExit(f"--dev must be between 1 and {len(queries) - 1}, got {dev}")
    held = set(queries[:dev])
    return [r for r in rows if r[0] not in held], [r for r in rows if r[0] in held]


def write_qrels(path: Path, rows: list[list[str]]) -> None:
    write_text_atomic(path, "\n".join([HEADER, *("\t".join(r) for r in rows)]) + "\n")


def write_titles(corpus: Path, target: Path) -> int:
    """title -> body pairs of every abstract that has both; returns the number of pairs."""
    with (gzip.open if corpus.suffix == ".gz" else open)(corpus, "rt", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f if line.strip()]
    docs = [d for d in docs if d.get("title", "").strip() and d.get("text", "").strip()]
    write_jsonl_atomic(target / "corpus.jsonl", ({"_id": d["_id"], "title": "", "text": d["text"]} for d in docs))
    write_jsonl_atomic(target / "queries.jsonl", ({"_id": f"title-{d['_id']}", "text": d["title"]} for d in docs))
    write_qrels(target / "qrels" / "train.tsv", [[f"title-{d['_id']}", d["_id"], "1"] for d in docs])
    return len(docs)


def link_data_root(source_root: Path, target_root: Path, own: set[str]) -> list[str]:
    """Link every entry of the shared data root except those this script writes (`own`); returns the names linked."""
    linked = []
    for entry in sorted(source_root.iterdir()):
        link = target_root / entry.name
        if entry.name not in own and not link.exists() and not link.is_symlink():
            os.symlink(entry, link)
            linked.append(entry.name)
    return linked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="data root to create (holds scifact/)")
    parser.add_argument("--dev", type=int, default=200, help="dev claims held out of SciFact train")
    parser.add_argument("--source", type=Path, default=None, help="SciFact folder (default: <data root>/scifact)")
    args = parser.parse_args()
    source = (args.source or data_root() / "scifact").resolve()
    target = args.root / "scifact"
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    for name in (find_data_file(source, "corpus.jsonl").name, "queries.jsonl", "qrels/test.tsv"):
        link = target / name
        if not link.exists():
            os.symlink(source / name, link)
    lines = (source / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines[1:] if line.strip()]
    fit, dev = split_train(rows, args.dev)
    for name, part in (("fit", fit), ("dev", dev)):
        write_qrels(target / "qrels" / f"{name}.tsv", part)
    titles = write_titles(find_data_file(source, "corpus.jsonl"), args.root / "scifact_titles")
    linked = link_data_root(source.parent, args.root, {target.name, "scifact_titles"})
    print(
        f"{target}: fit {len({r[0] for r in fit})} claims / {len(fit)} pairs, dev {len({r[0] for r in dev})} "
        f"claims / {len(dev)} pairs, test linked; scifact_titles: {titles} title -> abstract pairs; "
        f"linked from {source.parent}: {', '.join(linked) or 'nothing new'}"
    )


if __name__ == "__main__":
    main()
