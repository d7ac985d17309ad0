"""Tables a person reads: a pandas frame as a rich table that fits the terminal without cutting a value.

rich shrinks a table that is too wide by cutting cells to "32…" and, as a last resort, dropping
columns. `FittedTable` chooses the column widths itself, when rich renders it (so at the width
of whatever console prints it), in this order:

1. every cell on one line, if the table fits;
2. else the widest columns are narrowed one character at a time, their cells and headers wrapped
   only between words, after "," "/" "_" (not before a digit), keeping "[...]" and "(...)"
   groups whole where they fit; a number is never split;
3. else, when even the narrowest widths do not fit, the columns are stacked: several tables one
   under the other, each repeating the row labels.

The title is printed above the table (not inside it) and wraps at the console's width.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.table import Table
from rich.text import Text

GAP = 2  # spaces between two columns (rich's padding of 1 plus the box's blank divider)

# A break opportunity: after a run of spaces (the spaces vanish at a line break), or after , / _
# when the next character is neither a space nor a digit ("5/5" and "-0.94]" stay whole).
_PIECE = re.compile(r"[^ ,/_]*(?: +|[,/_](?=[^ \d])|[,/_]|$)")
_GROUP = re.compile(r"\[[^\]]*\]|\([^)]*\)")
_NUMBERLIKE = re.compile(r"[-+]?\.?\d|best$|-$")  # "0.312", "-3.44 [...]", "5/5 done", "best", "-" (NaN)


def cell_text(v, decimals: Optional[int] = None) -> str:
    """A cell as printed: floats with `decimals` decimals (as the saved Markdown shows them, NaN as
    "-") when given, else 3 significant digits."""
    if decimals is not None:
        from .metrics import format_cell

        return format_cell(v, decimals)
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _pieces(text: str, groups: bool) -> list[str]:
    """`text` cut at its break opportunities; with `groups`, a bracketed group is one piece."""
    if groups:
        out, pos = [], 0
        for m in _GROUP.finditer(text):
            out += _pieces(text[pos:m.start()], False)
            if out and not out[-1].endswith(" "):
                out[-1] += m.group()  # "x[1]": the group belongs to the word before it
            else:
                out.append(m.group())
            pos = m.end()
        rest = _pieces(text[pos:], False)
        if out and rest and not out[-1].endswith(" ") and not out[-1].endswith((",", "/", "_")):
            out[-1] += rest.pop(0)
        return out + rest
    return [p for p in _PIECE.findall(text) if p]


def min_width(text: str) -> int:
    """The narrowest column that shows `text` without cutting a word or a number."""
    return max((len(p.rstrip()) for line in text.split("\n") for p in _pieces(line, False)), default=0)


def wrap(text: str, width: int) -> list[str]:
    """`text` as lines of at most `width` characters, broken only at its break opportunities.

    A bracketed group ("[-6.10, -0.94]") stays on one line when it fits. A piece wider than `width`
    stays whole (the caller never makes a column narrower than `min_width`).
    """
    lines: list[str] = []
    for para in text.split("\n"):
        pieces = [q for p in _pieces(para, True) for q in (_pieces(p, False) if len(p.rstrip()) > width else [p])]
        line = ""
        for p in pieces:
            if line and len(line + p.rstrip()) > width:
                lines.append(line.rstrip())
                line = ""
            line += p
        lines.append(line.rstrip())
    return lines


def column_widths(texts: Sequence[Sequence[str]], room: int) -> Optional[list[int]]:
    """Widths of columns holding `texts` (per column: its header, then its cells) that fit `room`
    characters (gaps excluded), or None when even their narrowest widths do not.

    From every column at its natural width, one character at a time comes off the column where it
    adds the fewest printed lines (the table's height: per row, its tallest cell), the widest
    column first among equals; never below a column's narrowest width (`min_width`).
    """
    if not texts:
        return []
    natural = [max(len(line) for t in col for line in t.split("\n")) for col in texts]
    minimum = [max(min_width(t) for t in col) for col in texts]
    if sum(minimum) > room:
        return None
    widths = [max(n, m) for n, m in zip(natural, minimum)]
    # lines[c][w]: line count of each cell of column c at width w
    lines = [{w: np.array([len(wrap(t, w)) for t in col]) for w in range(m, n + 1)}
             for col, m, n in zip(texts, minimum, widths)]
    height = np.stack([lines[c][w] for c, w in enumerate(widths)])  # [columns, rows + 1]
    while sum(widths) > room:
        best = None
        for c, w in enumerate(widths):
            if w > minimum[c]:
                trial = height.copy()
                trial[c] = lines[c][w - 1]
                key = (int(trial.max(0).sum()), -w)
                if best is None or key < best[0]:
                    best = key, c
        c = best[1]
        widths[c] -= 1
        height[c] = lines[c][widths[c]]
    return widths


@dataclass
class FittedTable:
    """`df` (index shown when it is named or not a plain range) as a rich renderable that fits the
    console it is printed on; see the module docstring."""

    df: pd.DataFrame
    title: Optional[str] = None
    decimals: Optional[int] = None

    def _columns(self) -> tuple[list[str], list[list[str]], list[bool]]:
        """Headers, the cells of every column (as text), and which columns hold text (left-aligned)."""
        df = self.df
        headers, cells, labels = [], [], []
        if df.index.name is not None or not isinstance(df.index, pd.RangeIndex):
            headers.append(str(df.index.name or ""))
            cells.append([str(i) for i in df.index])
            labels.append(True)
        for j, c in enumerate(df.columns):
            headers.append(str(c))
            cells.append([cell_text(v, self.decimals) for v in df.iloc[:, j].tolist()])
            # text (labels, reasons) left-aligned, numbers right-aligned: a column of numbers written as text counts
            labels.append(not pd.api.types.is_numeric_dtype(df.dtypes.iloc[j])
                          and not all(_NUMBERLIKE.match(t) for t in cells[-1] if t))
        return headers, cells, labels

    def tables(self, width: int) -> list[Table]:
        """The rich tables (one, or several stacked) for a console `width` characters wide."""
        headers, cells, labels = self._columns()
        texts = [[h, *col] for h, col in zip(headers, cells)]
        minimum = [max(min_width(t) for t in col) for col in texts]
        keep = 1 if labels and labels[0] else 0  # row labels repeat in every stacked part
        parts: list[list[int]] = [list(range(len(headers)))]
        if column_widths(texts, width - GAP * (len(headers) - 1)) is None:
            parts, part = [], list(range(keep))  # stacked: as many columns per part as their narrowest widths allow
            for j in range(keep, len(headers)):
                used = sum(minimum[k] for k in part) + GAP * len(part)
                if len(part) > keep and used + minimum[j] > width:
                    parts.append(part)
                    part = list(range(keep))
                part.append(j)
            parts.append(part)
        out = []
        for n, part in enumerate(parts):
            w = column_widths([texts[j] for j in part], width - GAP * (len(part) - 1))
            w = w or [minimum[j] for j in part]  # a single word wider than the console: nothing to wrap
            t = Table(title=f"columns {n + 1}/{len(parts)}" if len(parts) > 1 else None, box=box.SIMPLE_HEAVY,
                      show_edge=False, pad_edge=False, collapse_padding=True)
            for j, cw in zip(part, w):  # Text, not markup: a clip id or path "[draft]" is shown as it is
                t.add_column(Text("\n".join(wrap(headers[j], cw))), justify="left" if labels[j] else "right",
                             width=cw, no_wrap=True, style="bold" if j == 0 and keep else None)
            for i in range(len(self.df)):
                t.add_row(*[Text("\n".join(wrap(cells[j][i], cw))) for j, cw in zip(part, w)])
            out.append(t)
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        title = [Text(self.title, style="table.title")] if self.title else []  # wraps at the console's width
        yield Group(*title, *self.tables(options.max_width))
