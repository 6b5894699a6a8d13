"""Text and HTML tables: the one place that lays out rows of cells (trace, summary, compare, CLI)."""

from __future__ import annotations

import html
from collections.abc import Sequence


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of strings (the first is the header) as left-aligned columns, two spaces apart.

    >>> print(format_table([["name", "MACs"], ["stem", "10.8M"]]))
    name  MACs
    stem  10.8M
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def html_table(rows: Sequence[Sequence[str]], *, foot: str = "") -> str:
    """The same rows as an HTML table (escaped) for Jupyter, scrolling sideways when wide."""
    head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in rows[1:]
    )
    note = f"<p>{html.escape(foot)}</p>" if foot else ""
    return (
        f"<div style='overflow-x:auto'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{note}"
    )
