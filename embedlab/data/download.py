"""Fetch a public BEIR dataset zip, verify it, and unpack it atomically into ``<root>/<name>``."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from embedlab.data.beir import BEIR_URL
from embedlab.errors import ConfigError, EmbedlabError
from embedlab.io import atomic_path

# MD5s of the zips as published in the dataset table of the BEIR README (github.com/beir-cellar/beir).
# Other datasets have no checksum here: their sha256 is recorded in <root>/<name>/download.json on the
# first download, so a later copy can be compared against it.
KNOWN_MD5: dict[str, str] = {
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
}
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


def _is_beir_folder(folder: Path) -> bool:
    has_corpus = any((folder / f).is_file() for f in ("corpus.jsonl", "corpus.jsonl.gz"))
    return has_corpus and (folder / "queries.jsonl").is_file() and (folder / "qrels").is_dir()


def download_beir(name: str, root: str | Path, *, url: str | None = None, timeout: float = 60.0) -> Path:
    """Return ``<root>/<name>``, downloading and unpacking the BEIR zip first if it is not there.

    ``url`` overrides the BEIR address (a mirror, or a ``file://`` zip); known checksums still apply.
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(f"not a BEIR dataset name: {name!r}")
    root = Path(root)
    target = root / name
    if _is_beir_folder(target):
        return target
    url = url or BEIR_URL.format(name=name)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}.download.", dir=root) as tmpdir:
        archive = Path(tmpdir) / f"{name}.zip"
        md5, sha256, size = _fetch(url, archive, timeout, name, root)
        expected = KNOWN_MD5.get(name)
        if expected is not None and md5 != expected:
            raise EmbedlabError(
                f"checksum mismatch for {url}: md5 {md5}, expected {expected} (corrupt or changed "
                f"download); nothing was written to {target}"
            )
        with atomic_path(target) as tmp:
            tmp.mkdir()
            _extract(archive, tmp, name, url)
            if not _is_beir_folder(tmp):
                raise EmbedlabError(f"{url} does not unpack to a BEIR folder (corpus, queries.jsonl, qrels/)")
            record = {"url": url, "bytes": size, "md5": md5, "sha256": sha256, "md5_verified": bool(expected)}
            (tmp / "download.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return target


def _fetch(url: str, dest: Path, timeout: float, name: str, root: Path) -> tuple[str, str, int]:
    """Stream ``url`` to ``dest``, hashing on the way; any network failure becomes one EmbedlabError."""
    md5, sha256, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            while block := response.read(1 << 20):
                md5.update(block)
                sha256.update(block)
                out.write(block)
                size += len(block)
    except (OSError, http.client.HTTPException) as e:  # URLError, HTTPError and timeouts are OSErrors
        raise EmbedlabError(
            f"could not download {url} ({e}; offline?); place the BEIR folder at {root / name} "
            "or set EMBEDLAB_DATA to a folder that holds it"
        ) from e
    return md5.hexdigest(), sha256.hexdigest(), size


def _extract(archive: Path, dest: Path, name: str, url: str) -> None:
    """Unpack members under ``dest``, dropping the zip's top ``<name>/`` folder; refuse escaping paths."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.filename.startswith("__MACOSX/")]
            strip = all(m.filename.startswith(f"{name}/") for m in members)
            for member in members:
                rel = PurePosixPath(member.filename)
                if rel.is_absolute() or ".." in rel.parts:
                    raise EmbedlabError(f"{url}: refusing zip member outside the folder: {member.filename}")
                if strip:
                    rel = PurePosixPath(*rel.parts[1:]) if len(rel.parts) > 1 else PurePosixPath(".")
                out = dest.joinpath(*rel.parts)
                if member.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as e:
        raise EmbedlabError(f"{url} is not a valid zip archive ({e})") from e
