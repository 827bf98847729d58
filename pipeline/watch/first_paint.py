"""The board as HTML in the page itself: a browser (or `chromium --dump-dom`, a screen reader, a
script fetching the page) sees the conversations before the page's script connects; the script
then replaces these rows with its live ones. Pure; every value is escaped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

ROWS_MARKER = '<div class="rows" role="rowgroup"></div>'
EMPTY_MARKER = '<p id="empty" class="empty">'
CONTEXT_CLASS = "e-context"  # a context-only turn (a speaker the worker does not label): grey, no emotion
NOT_LABELLED = "not labelled"


def render_page(template: str, rows: Iterable[dict[str, Any]], labels: Sequence[str]) -> str:
    """`template` (index.html) with its rows filled in from `board.summary` dicts."""
    known = set(labels)
    html = "".join(_row(r, known) for r in rows)
    page = template.replace(ROWS_MARKER, f'<div class="rows" role="rowgroup">{html}</div>', 1)
    return page.replace(EMPTY_MARKER, '<p id="empty" class="empty" hidden>', 1) if html else page


def _row(row: dict[str, Any], known: set[str]) -> str:
    def cls(label: str | None) -> str:
        return CONTEXT_CLASS if label is None else "e-" + label if label in known else "e-other"

    cells = "".join(f'<span class="cell {escape(cls(label))}" data-turn="{int(turn)}" '
                    f'title="turn {int(turn)}: {_turn_title(label, negative)}"></span>'
                    for turn, label, negative in row["turns"])
    badges = "".join(
        f'<span class="badge {"closed" if e["closed"] else "open"}" data-rule="{escape(e["rule"])}">'
        + (f'{escape(e["rule"])} closed' if e["closed"] else f'⚠ {escape(e["rule"])} · {e["score"]:.2f}')
        + "</span>" for e in row["alerts"])
    return (
        f'<div class="row first-paint" role="row" data-cid="{escape(row["id"])}">'
        f'<span class="cid" role="cell">{escape(row["id"])}</span>'
        f'<span class="speaker" role="cell">{escape(row["speaker"])}</span>'
        f'<span class="label" role="cell"><span class="swatch {escape(cls(row["label"]))}"></span>'
        f'<span>{escape(row["label"] or NOT_LABELLED)}</span>'
        f'<span class="conf">{"" if row["confidence"] is None else format(row["confidence"], ".2f")}</span></span>'
        f'<span class="turns" role="cell">{cells}</span><span class="spark" role="cell"></span>'
        f'<span class="alert" role="cell">{badges}</span></div>'
    )


def _turn_title(label: str | None, negative: float | None) -> str:
    if label is None:
        return f"{NOT_LABELLED} (context only)"
    return f"{escape(label)} (negative {negative:.2f})"
