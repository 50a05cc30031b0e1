"""Lint-style checks that names in the configs and docs point at something that exists: every `defaults` entry of
conf/**, every preset a comment offers (`group: a | b`, `group=name`, `teacher: name`, `X.yaml`), and no citation
of a notes file that is not in the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
CONFIGS = sorted(CONF.rglob("*.yaml"))
# Config groups: every folder under conf/ ("hydra/launcher" included).
GROUPS = sorted(str(d.relative_to(CONF)) for d in CONF.rglob("*") if d.is_dir())
NAME = r"[A-Za-z0-9_]+"
# Hydra's own packaged configs, named in defaults but shipped with Hydra or its plugins.
HYDRA_PROVIDED = {("hydra/launcher", "submitit_slurm")}


def exists(group: str, name: str) -> bool:
    return (CONF / group / f"{name}.yaml").exists() or (group, name) in HYDRA_PROVIDED or stored(group, name)


def stored(group: str, name: str) -> bool:
    """A schema in Hydra's ConfigStore (embedlab/config/schema.py)."""
    from hydra.core.config_store import ConfigStore

    import embedlab.config.schema  # noqa: F401  (registers them)

    try:
        return f"{name}.yaml" in ConfigStore.instance().list(group)
    except OSError:
        return False


def defaults_entries(path: Path) -> list[tuple[str, str]]:
    """(group, name) for each entry of the file's defaults list, resolved as Hydra does: `/group` from conf/, a
    bare name from the file's own group."""
    node = yaml.safe_load(path.read_text()) or {}
    own = str(path.parent.relative_to(CONF)) if path.parent != CONF else ""
    out = []
    for entry in node.get("defaults", []) if isinstance(node, dict) else []:
        if entry == "_self_":
            continue
        if isinstance(entry, str):
            out.append((own, entry.split("@")[0]))  # `name@package`: the package is not part of the name
            continue
        ((key, value),) = entry.items()
        key = key.removeprefix("override ").removeprefix("optional ").split("@")[0]
        group = key[1:] if key.startswith("/") else (f"{own}/{key}" if own else key)
        for name in value if isinstance(value, list) else [value]:
            if name is not None:
                out.append((group, name))
    return out


def comments(text: str) -> list[tuple[int, str, str]]:
    """(line number, the YAML before the comment, the comment) for every comment of a YAML text."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        code, sep, comment = line.partition("#")
        if sep and not comment.startswith(" @package"):
            out.append((i, code, comment))
    return out


def comment_references(text: str) -> list[tuple[int, str, str]]:
    """(line, group, name) for each preset a comment of a YAML text names."""
    out = []
    groups = "|".join(re.escape(g) for g in sorted(GROUPS, key=len, reverse=True))
    for i, code, comment in comments(text):
        # `group=name` / `group=[a,b]` overrides; not `query_model=` or `loss.infonce.gamma=`
        for group, names in re.findall(rf"(?<![\w./])({groups})=\[?({NAME}(?:,\s*{NAME})*)", comment):
            out += [(i, group, n.strip()) for n in names.split(",")]
        # `teacher: name` as a setting (not prose such as "with a teacher: also evaluate it")
        out += [(i, "teacher", n) for n in re.findall(rf"\bteacher: ({NAME})(?=\s*(?:$|[|,;)]))", comment)]
        # a defaults entry's list of alternatives: `- group: x  # what it is: a | b | c (note)`
        entry = re.match(rf"\s*-\s*(?:override\s+)?/?({groups}):", code)
        if entry and "|" in comment:
            first, *rest = comment.split("|")
            options = [first.rsplit(":", 1)[-1], *rest]
            out += [(i, entry.group(1), re.match(rf"\s*({NAME})", o).group(1)) for o in options]
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONF)))
def test_defaults_and_comments_name_existing_configs(path: Path) -> None:
    missing = [f"defaults: {g}/{n}.yaml" for g, n in defaults_entries(path) if not exists(g, n)]
    text = path.read_text()
    missing += [f"line {i}: {g}/{n}.yaml" for i, g, n in comment_references(text) if not exists(g, n)]
    for i, _, comment in comments(text):
        for ref in re.findall(r"[\w/.-]+\.yaml", comment):
            if not any((base / ref).exists() for base in (path.parent, CONF, REPO)):
                missing.append(f"line {i}: {ref}")
    assert not missing, f"{path.relative_to(REPO)} names configs that do not exist: {missing}"


def test_the_reference_finder_sees_what_it_checks() -> None:
    """The checks above are only as good as the parsing: it must find the references train.yaml and a recipe make."""
    train = {(g, n) for _, g, n in comment_references((CONF / "train.yaml").read_text())}
    assert train >= {("teacher", "mpnet"), ("mining", "adaptive"), ("loss", "kl_distill"), ("experiment", "leaf_demo")}
    text = "a: 1  # as with teacher: minilm\nb: 2  # with a teacher: also evaluate it; see query_model=x, loss.a.b=c\n"
    assert comment_references(text) == [(1, "teacher", "minilm")]
    assert ("loss", "kl_distill") in defaults_entries(CONF / "experiment" / "lg_anna.yaml")
    assert ("mining", "window") in defaults_entries(CONF / "mining" / "relative.yaml")
    assert not exists("teacher", "nonesuch")


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:  # not a git checkout (an unpacked source tree): every file but caches
        return [p for p in REPO.rglob("*") if p.is_file() and not {".git", ".venv", "__pycache__"} & set(p.parts)]
    return [REPO / name for name in listed.stdout.split("\0") if name]


def test_no_file_cites_notes_outside_the_repository() -> None:
    """The measured figures the recipes lean on are in experiments/README.md; the notes they were copied from are
    not in the repository, so nothing may send a reader there."""
    notes = "FIND" + "INGS"  # spelt apart so that this file does not cite it either
    citing = []
    for path in tracked_text_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        citing += [f"{path.relative_to(REPO)}:{i}" for i, line in enumerate(text.splitlines(), 1) if notes in line]
    assert not citing, f"cites {notes}.md, which is not in the repository: {citing}"
