"""Reader for sentence-pair similarity files (the shared stsb.tsv and sick.tsv layout)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from embedlab.data.lines import decode
from embedlab.errors import ConfigError, DataFormatError, EmbedlabError
from embedlab.io import fingerprint, sha256_file

REQUIRED = ("sentence1", "sentence2", "score")


@dataclass(frozen=True)
class StsPairs:
    name: str
    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]  # gold similarity, in the file's own scale (0-5 for STSb, 1-5 for SICK)
    fingerprint: str  # over the file's bytes, the split and the subset limit

    def __len__(self) -> int:
        return len(self.scores)


def load_sts(path: str | Path, split: str = "test", name: str | None = None, max_pairs: int | None = None) -> StsPairs:
    """Load the pairs of one split (``"all"``: every row, as MTEB scores SICK-R), in file order.

    ``max_pairs`` keeps the split's first pairs, for CI-sized runs.
    """
    path = Path(path)
    if max_pairs is not None and max_pairs < 1:
        raise ConfigError(f"max_pairs must be a positive integer, got {max_pairs}")
    if not path.is_file():
        raise EmbedlabError(
            f"{path} not found. The STS files ship with the shared data folder (stsb/stsb.tsv, "
            "sick/sick.tsv); set EMBEDLAB_DATA to the folder that holds them"
        )
    required = (*REQUIRED, "split") if split != "all" else REQUIRED
    s1: list[str] = []
    s2: list[str] = []
    scores: list[float] = []
    splits_seen: dict[str, int] = {}
    # Decoded whole, so a bad byte is reported on its exact line; an editor's byte-order mark is dropped.
    text = decode(path, 1, path.read_bytes())
    # Lines end at "\n" only (csv itself parses "\r\n" endings and quoted fields, which occur in STSb), so the
    # reported line is the one an editor shows, not one more for each "\r" inside a quoted sentence.
    with io.StringIO(text, newline="\n") as f:
        reader = csv.DictReader(f, delimiter="\t", strict=True)
        try:
            header = reader.fieldnames or []
            for column in required:
                if column not in header:
                    raise DataFormatError(path, 1, column, f"missing column; the header has {header}")
            for row in reader:
                line = reader.line_num  # the row's last physical line (a quoted field may span lines)
                if None in row:  # DictReader files surplus fields under the key None
                    n = len(header) + len(row[None])
                    raise DataFormatError(path, line, "columns", f"{n} fields, header has {len(header)}")
                for column in required:
                    if row[column] is None:
                        raise DataFormatError(path, line, column, "missing value (row too short)")
                # Every row is checked, not only the split's: a broken file should fail whatever is asked.
                score = _score(path, line, row["score"])
                a = _sentence(path, line, "sentence1", row["sentence1"])
                b = _sentence(path, line, "sentence2", row["sentence2"])
                row_split = row.get("split") or ""
                splits_seen[row_split] = splits_seen.get(row_split, 0) + 1
                wanted = split == "all" or row_split == split
                if wanted and (max_pairs is None or len(scores) < max_pairs):
                    scores.append(score)
                    s1.append(a)
                    s2.append(b)
        except csv.Error as e:
            # DictReader.line_num lags on a failed row; the inner reader's count is the failing line.
            raise DataFormatError(path, reader.reader.line_num, None, f"malformed CSV ({e})") from e
    if not scores:
        present = ", ".join(f"{k!r} ({v})" for k, v in sorted(splits_seen.items())) or "none (no rows)"
        raise ConfigError(f"{path}: no pairs for split {split!r}; splits present: {present}, or 'all'")
    return StsPairs(
        name=name or path.stem,
        sentences1=s1,
        sentences2=s2,
        scores=scores,
        fingerprint=fingerprint([path.name, sha256_file(path), split, max_pairs]),
    )


def _score(path: Path, line: int, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise DataFormatError(path, line, "score", f"not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise DataFormatError(path, line, "score", f"not a finite number: {raw!r}")
    return value


def _sentence(path: Path, line: int, field: str, text: str) -> str:
    if not text.strip():
        raise DataFormatError(path, line, field, "empty sentence")
    return text
