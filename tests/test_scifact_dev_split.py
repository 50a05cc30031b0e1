"""experiments/scifact_data.py: the dev split every experiment selects on is carved from SciFact train only, is
disjoint from the claims trained on, and is the same on every run (a fixed hash rule, no seed)."""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from pathlib import Path

import pytest

from embedlab.data.beir import load_beir

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "scifact_data.py"


def _module():
    spec = importlib.util.spec_from_file_location("scifact_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _qrels(path: Path) -> list[tuple[str, ...]]:
    return [tuple(line.split("\t")) for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]


def test_split_is_by_claim_and_independent_of_row_order() -> None:
    split_train = _module().split_train
    rows = [[f"q{q}", f"d{q}-{k}", "1"] for q in range(50) for k in range(1 + q % 3)]  # 1-3 pairs per claim
    fit, dev = split_train(rows, 10)
    fit_claims, dev_claims = {r[0] for r in fit}, {r[0] for r in dev}
    assert len(dev_claims) == 10 and not fit_claims & dev_claims
    assert sorted(map(tuple, fit + dev)) == sorted(map(tuple, rows))  # every pair in exactly one part
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert {r[0] for r in split_train(shuffled, 10)[1]} == dev_claims
    with pytest.raises(SystemExit, match="--dev"):
        split_train(rows, 50)


@pytest.fixture(scope="module")
def roots(real_data: Path, tmp_path_factory) -> list[Path]:
    """The script run twice on the real SciFact folder, into two fresh data roots."""
    out = []
    for name in ("a", "b"):
        root = tmp_path_factory.mktemp(name) / "data"
        cmd = [sys.executable, str(SCRIPT), str(root), "--dev", "200", "--source", str(real_data / "scifact")]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        out.append(root)
    return out


def test_dev_is_carved_from_train_disjoint_from_fit_and_test(roots: list[Path], real_data: Path) -> None:
    qrels = roots[0] / "scifact" / "qrels"
    fit, dev = _qrels(qrels / "fit.tsv"), _qrels(qrels / "dev.tsv")
    assert sorted(fit + dev) == sorted(_qrels(real_data / "scifact/qrels/train.tsv"))
    dev_claims = {r[0] for r in dev}
    assert (len(dev_claims), len(dev)) == (200, 233)  # the split experiments/README.md records (soup)
    # What a run reads through the data root: training on `fit` never sees a dev claim; dev is no test claim.
    fit_queries = set(load_beir(roots[0] / "scifact", split="fit").queries)
    test_queries = set(load_beir(roots[0] / "scifact", split="test").queries)
    assert fit_queries and not fit_queries & dev_claims and not test_queries & dev_claims
    assert set(load_beir(roots[0] / "scifact", split="dev").queries) == dev_claims


def test_same_split_on_every_run_and_a_complete_data_root(roots: list[Path]) -> None:
    for name in ("fit.tsv", "dev.tsv"):
        assert (roots[0] / "scifact/qrels" / name).read_bytes() == (roots[1] / "scifact/qrels" / name).read_bytes()
    # The other tasks' folders are linked, so one data.root serves training (arguana genq) and evaluation (stsb).
    assert (roots[0] / "arguana").is_symlink() and (roots[0] / "stsb" / "stsb.tsv").exists()
