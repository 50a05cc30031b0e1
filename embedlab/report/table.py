"""Plain-text tables for the terminal and the logs (no dependency beyond the standard library)."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(
    rows: Sequence[dict], columns: Sequence[str], headers: Sequence[str] | None = None, precision: int = 4
) -> str:
    """Left-aligned text columns, right-aligned numbers; missing cells show as '-'."""
    headers = list(headers or columns)

    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.{precision}f}"
        return str(value)

    body = [[cell(row.get(c)) for c in columns] for row in rows]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows) for c in columns]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=True))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in body)])
