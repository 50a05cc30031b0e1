"""The errors embedlab raises on purpose: each one says what is wrong and where, in one line."""

from __future__ import annotations

from pathlib import Path


class EmbedlabError(Exception):
    """Base class: a problem with user input or the environment, reported without a deep stack trace."""


class DataFormatError(EmbedlabError, ValueError):
    """A malformed record in a data file, located by file, line (1-based) and field."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, problem: str) -> None:
        self.path, self.line, self.field, self.problem = Path(path), line, field, problem
        where = str(path) + (f", line {line}" if line is not None else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{problem}")


class ModelNotFoundError(EmbedlabError, FileNotFoundError):
    """A model name that resolves to nothing usable offline."""


class ConfigError(EmbedlabError, ValueError):
    """A configuration value that cannot work, caught before any work starts."""
