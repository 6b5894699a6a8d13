"""Text and HTML tables: the one place that lays out rows of cells (trace, summary, compare, CLI)."""

from __future__ import annotations

import html
from collections.abc import Sequence

# C0 and C1 control characters except tab and newline: a label or tensor name read from a file
# may hold ANSI escape sequences, which a terminal would obey; and the bidirectional controls and
# line separators, which reorder or break what is shown (U+202E turns "gpj.exe" around).
_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029)
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160)) if c not in (9, 10)}
_CONTROLS.update({c: f"\\u{c:04x}" for c in _BIDI})
_NAME_CONTROLS = {**_CONTROLS, 9: "\\t", 10: "\\n"}


def printable(text: str, *, lines: bool = True) -> str:
    r"""`text` with its control characters written as escapes, safe to print on a terminal.
    lines=False also escapes newlines and tabs: a name (a label, a tensor name) stays on its line,
    so it cannot forge another line of output.

    >>> printable("cat\x1b[31m")
    'cat\\x1b[31m'
    >>> printable("cat\n0.99  1  forged", lines=False)
    'cat\\n0.99  1  forged'
    """
    return str(text).translate(_CONTROLS if lines else _NAME_CONTROLS)


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of strings (the first is the header) as left-aligned columns, two spaces apart.

    >>> print(format_table([["name", "MACs"], ["stem", "10.8M"]]))
    name  MACs
    stem  10.8M
    """
    rows = [[printable(c, lines=False) for c in row] for row in rows]
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
