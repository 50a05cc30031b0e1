"""LEAF's asymmetric mode through mteb: teacher documents × student queries, scored by embedlab and by MTEB's SciFact.

    python experiments/mteb_asymmetric.py [--limit 30] [--max-docs 300] [--out outputs/mteb_asymmetric]
    python experiments/mteb_asymmetric.py --student outputs/train/<run>/model --limit 0 --max-docs 0 --cache

By default the student is the closed-form LEAF baseline: all-MiniLM-L6-v2 + a 384->768 projection fitted by ridge
regression on the frozen student's features of SciFact train claims and abstract sentences against all-mpnet-base-v2's
embeddings of them (what `projection.init=ridge` does before training), exported with its model card to
<out>/student. With `--student` it is a LEAF run's exported student instead (e.g. `make demo`'s `model/` folder),
loaded as exported. The pair (mpnet documents, student queries) is evaluated on SciFact test by embedlab's evaluator
and by mteb through embedlab's adapter (`mteb:SciFact`); `--limit 0 --max-docs 0` takes the whole test set, as a
run's own asymmetric row does. Each side encodes on its own unless `--cache` lets them read vectors already cached
(same model, same texts in the same order). Exits 1 if the two differ by more than 1e-4.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from embedlab.cli.common import setup_logging
from embedlab.data.training import read_texts
from embedlab.eval.cache import EmbeddingCache
from embedlab.eval.runner import EvalSettings, evaluate_tasks
from embedlab.models import Encoder
from embedlab.models.card import model_card
from embedlab.models.projection import fit_projection
from embedlab.report.table import format_table

AGREEMENT = 1e-4
METRICS = ("ndcg_at_10", "map_at_100", "recall_at_100", "mrr_at_10")
TASKS = ["scifact", "mteb:SciFact"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=30, help="SciFact test claims (0: all)")
    parser.add_argument("--max-docs", type=int, default=300, help="abstracts, every judged one kept (0: all)")
    parser.add_argument("--fit-sentences", type=int, default=2000, help="abstract sentences in the ridge fit")
    parser.add_argument("--out", type=Path, default=Path("outputs/mteb_asymmetric"))
    parser.add_argument("--student", type=Path, help="an exported LEAF student folder (default: fit the closed form)")
    parser.add_argument("--cache", action="store_true", help="read/write the embedding cache (default: encode anew)")
    args = parser.parse_args()
    setup_logging()
    started = time.perf_counter()
    # Frozen, as a training run's teacher is: the same backend (`auto`) and fingerprint, so `--cache` finds its vectors.
    teacher = Encoder.from_pretrained("sentence-transformers/all-mpnet-base-v2", max_length=256, precision="fp32")
    teacher.requires_grad_(False)
    if args.student is not None:
        student = Encoder.from_pretrained(str(args.student), precision="fp32").requires_grad_(False)
        label = f"student {args.student}"
    else:
        student, label, examples = *fit_closed_form(teacher, args.fit_sentences), "closed-form student"
    settings = EvalSettings(limit=args.limit or None, max_docs=args.max_docs or None)
    cache = EmbeddingCache() if args.cache else None
    results = evaluate_tasks(TASKS, teacher, student, settings=settings, cache=cache, out_dir=args.out)
    ours, theirs = results[0].metrics, results[1].metrics
    if args.student is None:
        systems = {"asymmetric (closed form)": {"scifact": ours, "mteb:SciFact": theirs}}
        export_closed_form(student, examples, systems, args)

    rows = [{"metric": m, "embedlab": ours[m], "mteb": theirs[m], "diff": theirs[m] - ours[m]} for m in METRICS]
    print(format_table(rows, ["metric", "embedlab", "mteb", "diff"], precision=5))
    scope = f"{args.limit or 'all'} claims, {args.max_docs or 'all'} docs"
    print(f"pair: mpnet documents × {label} queries; SciFact test, {scope}")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0 if all(abs(r["diff"]) <= AGREEMENT for r in rows) else 1


def sources(fit_sentences: int) -> list[dict]:
    return [
        {"name": "scifact_train", "type": "beir_queries", "path": "scifact", "split": "train"},
        {"name": "scifact_sentences", "type": "beir_sentences", "path": "scifact", "limit": fit_sentences},
    ]


def fit_closed_form(teacher: Encoder, fit_sentences: int) -> tuple[Encoder, dict]:
    """MiniLM + a 384->768 projection fitted by ridge regression onto the teacher (`projection.init=ridge`)."""
    student = Encoder.from_pretrained("all-MiniLM-L6-v2", projection_dim=768, precision="fp32")
    examples = {s["name"]: read_texts(s) for s in sources(fit_sentences)}
    texts = [e.text for source in examples.values() for e in source]
    targets = teacher.encode(texts, batch_size=32, desc="teacher")
    features = student.encode(texts, batch_size=64, head=False, desc="student features")
    fit_projection(student.projection, np.asarray(features), np.asarray(targets), ridge=1e-3)
    return student, examples


def export_closed_form(student: Encoder, examples: dict, systems: dict, args: argparse.Namespace) -> None:
    config = {
        "model": {"path": "sentence-transformers/all-MiniLM-L6-v2", "projection_dim": 768},
        "teacher": {"path": "sentence-transformers/all-mpnet-base-v2", "max_length": 256},
        "loss": {"leaf": {"weight": 1.0, "normalize": False}},
        "data": {"kind": "text", "sources": sources(args.fit_sentences)},
        "projection": {"init": "ridge", "ridge": 1e-3},
        "trainer": {"max_steps": 0},
    }
    card = model_card(
        config,
        systems,
        model=student.describe(),
        summary={"steps": 0},
        data_sizes={k: len(v) for k, v in examples.items()},
        title="LEAF closed-form student of all-mpnet-base-v2 (all-MiniLM-L6-v2 + projection)",
    )
    student.save(args.out / "student", card=card)
    print(f"closed-form student and its card in {args.out / 'student'}")


if __name__ == "__main__":
    sys.exit(main())
