"""Paired significance tests over queries: is configuration B better than baseline A on the same queries?

Both tests take one value per query and system, matched by query id, and test the mean of the per-query
differences d = b - a against zero (two-sided):

- randomization (sign flip): under H0 the two systems are exchangeable on each query, so each d_i is as likely to
  have the opposite sign; p = share of the 2^n sign patterns whose |mean| reaches the observed one (all patterns when
  2^n <= resamples, else a random sample of them, counted the unbiased way (hits + 1) / (resamples + 1)).
- bootstrap: resample queries with replacement; p = share of resampled means, shifted to mean 0 (the null), whose
  |mean| reaches the observed |mean(d)|.

Seeds. A configuration trained with several seeds is one system whose per-query value is the mean of that query's
metric over its seeds (every seed must have scored the same queries). The test then asks whether the difference
generalises over queries for these trained models; it does not treat the seed as a random effect, so with few
seeds a small p says "these seed-averaged models differ", not "any new seed would". Read it beside the std over
seeds in the same table.

Several tests in one table: `holm` adjusts their p-values together (family-wise error rate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedlab.data.lines import read_jsonl
from embedlab.errors import DataFormatError, EmbedlabError

METHODS = ("randomization", "bootstrap")
_CHUNK = 2048  # resamples per vectorised block: bounds memory at _CHUNK x queries floats


@dataclass(frozen=True)
class PairedTest:
    method: str
    n: int  # queries
    mean_diff: float  # mean over queries of b - a
    p_value: float
    resamples: int  # sign patterns or bootstrap samples drawn (2^n when exact)
    exact: bool  # every sign pattern enumerated


def read_per_query(run: str | Path, task: str) -> dict[str, dict[str, float]]:
    """query id -> metric -> value, from `<run>/per_query/<task>.jsonl` (what embedlab-eval/-train write)."""
    path = Path(run) / "per_query" / f"{task}.jsonl"
    if not path.exists():
        raise EmbedlabError(f"{path}: no per-query scores (needed for the paired test)")
    out: dict[str, dict[str, float]] = {}
    for line_no, row in read_jsonl(path):
        if "query_id" not in row:
            raise DataFormatError(path, line_no, "query_id", "missing (STS per-pair scores have no query metric)")
        qid = str(row.pop("query_id"))
        if qid in out:
            raise DataFormatError(path, line_no, "query_id", f"duplicate query {qid!r}")
        out[qid] = row
    return out


def metric_by_query(runs: Sequence[str | Path], task: str, metric: str) -> dict[str, float]:
    """One system's per-query values: each query's `metric` averaged over the runs (seeds) of a configuration."""
    tables = [read_per_query(r, task) for r in runs]
    first = set(tables[0])
    for run, table in zip(runs[1:], tables[1:], strict=True):
        if set(table) != first:
            raise EmbedlabError(_mismatch(runs[0], run, first, set(table), task))
    values = {}
    for qid in tables[0]:
        cells = []
        for run, table in zip(runs, tables, strict=True):
            if metric not in table[qid]:
                path = Path(run) / "per_query" / f"{task}.jsonl"
                raise DataFormatError(path, None, metric, f"missing for query {qid!r}")
            cells.append(float(table[qid][metric]))
        values[qid] = float(np.mean(cells))
    return values


def _mismatch(a, b, qa: set[str], qb: set[str], task: str) -> str:
    only_a, only_b = sorted(qa - qb), sorted(qb - qa)
    return (
        f"{task}: {a} and {b} scored different queries ({len(only_a)} only in the first, e.g. {only_a[:3]}; "
        f"{len(only_b)} only in the second, e.g. {only_b[:3]}); a paired test needs the same queries"
    )


def paired_arrays(
    a: Mapping[str, float], b: Mapping[str, float], names: tuple[str, str] = ("a", "b"), task: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """The two systems' values on the same queries, in `a`'s order; the query sets must be equal."""
    if set(a) != set(b):
        raise EmbedlabError(_mismatch(names[0], names[1], set(a), set(b), task or "paired test"))
    if not a:
        raise EmbedlabError(f"{task or 'paired test'}: no queries to compare")
    ids = list(a)
    return np.array([a[q] for q in ids], dtype=np.float64), np.array([b[q] for q in ids], dtype=np.float64)


def _at_least(stats: np.ndarray, observed: float) -> int:
    # Relative slack so that the pattern reproducing the observed mean counts despite summation-order rounding.
    return int(np.count_nonzero(stats >= observed - 1e-12 * max(1.0, observed)))


def randomization_test(
    a: np.ndarray, b: np.ndarray, resamples: int = 10_000, seed: int = 0, exact: bool | None = None
) -> PairedTest:
    """Two-sided paired sign-flip test of mean(b - a) = 0. `exact=None`: enumerate when 2^n <= resamples."""
    d = _differences(a, b, resamples)
    n = len(d)
    observed = abs(d.mean())
    if exact is None:
        exact = n < 63 and 2**n <= resamples
    if exact:
        if n > 24:
            raise EmbedlabError(f"exact sign-flip enumeration over {n} queries (2^{n} patterns) is too large")
        hits = 0
        for start in range(0, 2**n, _CHUNK):
            codes = np.arange(start, min(start + _CHUNK, 2**n), dtype=np.int64)
            signs = 1.0 - 2.0 * ((codes[:, None] >> np.arange(n)) & 1)
            hits += _at_least(np.abs(signs @ d) / n, observed)
        return PairedTest("randomization", n, float(d.mean()), hits / 2**n, 2**n, True)
    rng = np.random.default_rng(seed)
    hits = 0
    for size in _blocks(resamples):
        signs = rng.integers(0, 2, size=(size, n)) * 2.0 - 1.0
        hits += _at_least(np.abs(signs @ d) / n, observed)
    return PairedTest("randomization", n, float(d.mean()), (hits + 1) / (resamples + 1), resamples, False)


def bootstrap_test(a: np.ndarray, b: np.ndarray, resamples: int = 10_000, seed: int = 0) -> PairedTest:
    """Two-sided paired bootstrap of mean(b - a) = 0: resampled means, centred on the observed one."""
    d = _differences(a, b, resamples)
    n, mean = len(d), float(d.mean())
    rng = np.random.default_rng(seed)
    hits = 0
    for size in _blocks(resamples):
        idx = rng.integers(0, n, size=(size, n))
        hits += _at_least(np.abs(d[idx].mean(axis=1) - mean), abs(mean))
    return PairedTest("bootstrap", n, mean, (hits + 1) / (resamples + 1), resamples, False)


def paired_test(a: np.ndarray, b: np.ndarray, method: str = "randomization", **kwargs) -> PairedTest:
    if method == "randomization":
        return randomization_test(a, b, **kwargs)
    if method == "bootstrap":
        return bootstrap_test(a, b, **kwargs)
    raise EmbedlabError(f"unknown paired test {method!r}; choose from {', '.join(METHODS)}")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (Holm 1979) of m p-values, in their order: with p_(1) ≤ … ≤ p_(m) sorted, the
    i-th smallest becomes max over j ≤ i of min(1, (m − j + 1) p_(j)). Rejecting where it is < α keeps the chance
    of any false rejection ≤ α, like Bonferroni (m p) but never less powerful."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _differences(a: np.ndarray, b: np.ndarray, resamples: int) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise EmbedlabError(f"a paired test needs two equal-length, non-empty value lists, got {a.shape} and {b.shape}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise EmbedlabError(f"resamples must be a positive integer, got {resamples!r}")
    return b - a


def _blocks(total: int):
    for start in range(0, total, _CHUNK):
        yield min(_CHUNK, total - start)
