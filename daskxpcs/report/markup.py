"""Small HTML building blocks for the report (escaped text, number cells, tables)."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from daskxpcs.report.plotting import fmt


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def cell(v: Any) -> str:
    cls = ' class="t"' if isinstance(v, str) else ""
    return f"<td{cls}>{esc(fmt(v))}</td>"


def table_html(columns: list[str], rows: list[dict[str, Any]], *, table_id: str = "",
               bad: Callable[[dict], bool] | None = None) -> str:
    """An HTML table of ROWS with COLUMNS as header (numbers shortened, text escaped)."""
    head = "".join(f'<th class="t">{esc(c)}</th>' for c in columns)
    body = []
    for r in rows:
        cls = ' class="bad"' if bad is not None and bad(r) else ""
        body.append(f"<tr{cls}>" + "".join(cell(r.get(c, "")) for c in columns) + "</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f'<div class="scroll"><table{ident}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
