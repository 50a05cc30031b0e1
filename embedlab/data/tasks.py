"""The evaluation tasks embedlab knows, where their data lives, and one call to load any of them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from embedlab.data.beir import RetrievalData, load_beir
from embedlab.data.download import download_beir
from embedlab.data.sts import StsPairs, load_sts
from embedlab.errors import ConfigError, EmbedlabError

ENV_VAR = "EMBEDLAB_DATA"
# embedlab/data/tasks.py -> the repository root is three levels up; the shared data sits beside it.
_REPO_SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
_CACHE = Path("~/.cache/embedlab/data")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: Literal["retrieval", "sts"]
    path: str  # relative to the data root: a BEIR folder or an STS .tsv file
    split: str
    main_metric: str
    # BEIR/MTEB drop a retrieved doc whose id equals the query id; ArguAna needs it (queries are docs).
    ignore_identical_ids: bool = False
    mteb_name: str | None = None  # the same task in MTEB (`tasks=[mteb:<name>]` runs it on these files offline)


TASKS: dict[str, TaskSpec] = {
    "scifact": TaskSpec("scifact", "retrieval", "scifact", "test", "ndcg_at_10", mteb_name="SciFact"),
    "arguana": TaskSpec(
        "arguana", "retrieval", "arguana", "test", "ndcg_at_10", ignore_identical_ids=True, mteb_name="ArguAna"
    ),
    "stsb": TaskSpec("stsb", "sts", "stsb/stsb.tsv", "test", "cosine_spearman", mteb_name="STSBenchmark"),
    # MTEB's SICK-R score (e.g. 0.7758) is over all 9,927 pairs, not the SemEval test split.
    "sick": TaskSpec("sick", "sts", "sick/sick.tsv", "all", "cosine_spearman", mteb_name="SICK-R"),
}
# MTEB spellings, so names copied from a leaderboard resolve.
_ALIASES = {"sickr": "sick", "sick-r": "sick", "stsbenchmark": "stsb", "sts-b": "stsb"}


def data_root(configured: str | Path | None = None) -> Path:
    """Pick the data folder: the configured value, then $EMBEDLAB_DATA, then ../shared/data beside the
    repository if it exists, then ~/.cache/embedlab/data. Existence of a task is checked by ``load_task``."""
    if configured:
        return Path(configured).expanduser()
    if env := os.environ.get(ENV_VAR):
        return Path(env).expanduser()
    if _REPO_SHARED.is_dir():
        return _REPO_SHARED
    return _CACHE.expanduser()


def resolve_data_path(path: str | Path, root: str | Path | None = None) -> Path:
    """A data path as given when it is absolute or exists, else relative to the data root (`scifact` ->
    <root>/scifact)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or p.exists() else data_root(root) / p


def get_task(name: str) -> TaskSpec:
    key = name.strip().lower()
    spec = TASKS.get(_ALIASES.get(key, key))
    if spec is None:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return spec


def spec_for_mteb(mteb_name: str) -> TaskSpec | None:
    """embedlab's task for an MTEB task name (SciFact -> scifact), or None when embedlab has no copy of it."""
    return next((s for s in TASKS.values() if s.mteb_name and s.mteb_name.lower() == mteb_name.lower()), None)


def load_task(
    name: str,
    root: str | Path | None = None,
    split: str | None = None,
    limit: int | None = None,
    *,
    max_docs: int | None = None,
    allow_download: bool = False,
) -> RetrievalData | StsPairs:
    """Load a registered task from the data root.

    ``limit`` caps the queries (retrieval) or pairs (STS) for CI-sized runs; ``max_docs`` caps a
    retrieval corpus (judged docs are always kept, see ``load_beir``). A missing BEIR folder is
    downloaded only when ``allow_download`` is true, so evaluation never reaches the network by surprise.
    """
    spec = get_task(name)
    base = data_root(root)
    path = base / spec.path
    split = split or spec.split
    if spec.kind == "retrieval":
        if not path.is_dir():
            if not allow_download:
                raise EmbedlabError(
                    f"task {spec.name!r}: {path} does not exist (data root {base}, {_root_origin(root)}). "
                    f"Pass allow_download=True to fetch it from BEIR, or set {ENV_VAR} to a folder "
                    f"that has {spec.path}/"
                )
            download_beir(spec.path, base)
        return load_beir(path, split=split, name=spec.name, max_docs=max_docs, max_queries=limit)
    if max_docs is not None:
        raise ConfigError(f"max_docs applies to retrieval tasks only; {spec.name!r} is an STS task")
    if not path.is_file():
        raise EmbedlabError(
            f"task {spec.name!r}: {path} does not exist (data root {base}, {_root_origin(root)}); "
            f"set {ENV_VAR} to a folder that has {spec.path}"
        )
    return load_sts(path, split=split, name=spec.name, max_pairs=limit)


def _root_origin(configured: str | Path | None) -> str:
    """Say where the root came from, so a wrong root is easy to fix."""
    if configured:
        return "from the configuration"
    if os.environ.get(ENV_VAR):
        return f"from ${ENV_VAR}"
    return "the repository's ../shared/data" if _REPO_SHARED.is_dir() else "the default cache"
