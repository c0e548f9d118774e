"""The leaderboard's renderers: the rows of competition.report.leaderboard as terminal tables fitted to the
console's width (compact, wide, per class), Markdown, CSV or JSON. What the table shows and how it gives way when
the terminal is narrow: competition.report.leaderboard's docstring."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.cells import cell_len

from competition.errors import OptionError
from competition.report.leaderboard import (MARKER, below_member_notes, ci_text, contest_groups, damaged_note,
                                            damaged_rows, flat, leaderboard, optimistic_note, relation_note)

FORMATS = ("table", "md", "csv", "json")
GAP = 2  # cells between two columns of the terminal tables (_plain's collapsed padding and its blank divider)


def render(rows: list[dict[str, Any]], fmt: str, console: Any, *, per_class: bool = False,
           wide: bool = False) -> str | None:
    """Table goes to the console (fitted to console.width; `per_class` adds the per-class F1 table, `wide` shows
    every column); md/csv/json are returned as text. A damaged run is a note naming its bad file: after the
    tables, or on stderr for md/csv/json (so that their text stays one table)."""
    if fmt not in FORMATS:
        raise OptionError("fmt", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    rows, damaged = damaged_rows(rows)

    def notes_of(runs: list[dict[str, Any]]) -> list[str]:
        return [n for n in (relation_note(runs), optimistic_note(runs), *below_member_notes(runs)) if n]

    notes = notes_of(rows)
    if fmt != "table":
        if len(contest_groups(rows)) > 1:
            print(f"warning: runs of {len(contest_groups(rows))} contests; the `contest` column tells them apart: "
                  "rank within one", file=sys.stderr)
        for row in damaged:
            print(f"warning: {damaged_note(row)}", file=sys.stderr)
        for note in notes:
            print(f"warning: {note}", file=sys.stderr)
    if fmt == "json":
        return json.dumps(rows, indent=2)
    frame = flat(rows)
    if fmt == "csv":
        return frame.to_csv(index=False, float_format="%.4f")
    if fmt == "md":
        return _markdown(frame)
    groups = contest_groups(rows)
    for contest, group in groups.items():
        if len(groups) > 1:
            console.print(f"contest {contest}: {len(group)} run{'s' * (len(group) != 1)}"
                          f"{', ranked among themselves' if len(group) > 1 else ''}",
                          style="bold", markup=False, highlight=False)
        tables, hidden = (_wide_tables(group, console.width), []) if wide else _compact_table(group, console.width)
        for table in tables if wide else [tables]:
            console.print(table)
        if hidden:
            console.print(f"not shown at {console.width} columns: {', '.join(hidden)} (--wide shows every column)",
                          style="dim", markup=False, highlight=False)
        if per_class and not wide:
            console.print(_per_class_table(group))
        for note in notes_of(group):  # each contest's notes under its table, wrapped at words to the width
            console.print(note, style="bold yellow" if note.startswith(MARKER) else None, markup=False,
                          highlight=False)
    for row in damaged:  # one line whatever the width, so that its file name can be found and copied whole
        console.print(damaged_note(row), markup=False, highlight=False, soft_wrap=True)
    return None


def show_leaderboard(runs_dir: str | Path, fmt: str, console: Any, *, per_class: bool = False,
                     wide: bool = False) -> str | None:
    """`competition leaderboard`: `leaderboard(runs_dir)` rendered (`render`): None after printing the table
    format to `console`, the text of md, csv and json."""
    return render(leaderboard(runs_dir), fmt, console, per_class=per_class, wide=wide)


def _markdown(frame: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, bool | np.bool_):
            return "yes" if value else "no"
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in record) + " |" for record in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the terminal tables


@dataclass
class _Column:
    """A compact-table column: its cells, and how it gives way when the terminal is narrow (priority 0: never
    left out; higher numbers go first; `shrink` the width it may be cut to, with an ellipsis, before that)."""

    header: str
    cells: list[str]
    justify: str = "right"
    priority: int = 0
    shrink: int | None = None

    @property
    def whole(self) -> int:
        """The width that shows every cell whole (a header of several words may wrap onto more lines)."""
        return max([*map(cell_len, self.header.split()), *map(cell_len, self.cells)])

    @property
    def narrowest(self) -> int:
        return self.whole if self.shrink is None else min(self.whole, self.shrink)

    @property
    def natural(self) -> int:
        """The width that shows every cell whole and the header on one line."""
        return max(self.whole, cell_len(self.header))


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    total = int(round(value))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


def _leak_cell(row: dict[str, Any], precise: bool) -> str:
    leak, test = row.get("leak_share"), row.get("test_twin_share")
    if leak is None:
        return ""
    marker = f" {MARKER}" if row.get("optimistic") else ""
    if precise:
        return f"{leak:.1%} / {'?' if test is None else f'{test:.1%}'}{marker}"
    return f"{leak:.0%}/{'?' if test is None else f'{test:.0%}'}{marker}"


def _run_cell(row: dict[str, Any]) -> str:
    return row["run"] + (f" {MARKER}" if row.get("optimistic") else "")




def _metric_title(rows: list[dict[str, Any]], key: str = "metric_title") -> str:
    """The rows' contest metric (one per table, contest_groups), 'score' if mixed: its title, or with key
    "metric_header" its column header."""
    titles = {r.get(key, "macro F1") for r in rows}
    return titles.pop() if len(titles) == 1 else "score"


def _also_macro_f1(rows: list[dict[str, Any]]) -> bool:
    return any(r.get("metric", "macro_f1") != "macro_f1" for r in rows)


def compact_columns(rows: list[dict[str, Any]]) -> list[_Column]:
    """The compact table's columns, in display order; a column empty in every row is left out."""
    columns = [
        _Column("#", [str(rank) for rank in range(1, len(rows) + 1)]),
        _Column("run", [_run_cell(r) for r in rows], justify="left"),
        _Column(_metric_title(rows, "metric_header"), [f"{r['score']:.4f}" for r in rows]),
        _Column("95% CI", [ci_text(r) for r in rows]),
        _Column("macro F1", [f"{r['macro_f1']:.4f}" if _also_macro_f1(rows) else "" for r in rows], priority=8),
        _Column("fold ±", [f"{r['fold_std']:.3f}" if "fold_std" in r else "" for r in rows], priority=3),
        _Column("scheme", [r.get("scheme_short") or "" for r in rows], justify="left", priority=4),
        _Column("backbone", [r.get("backbone") or "" for r in rows], justify="left", priority=5, shrink=9),
        _Column("size", [r.get("image_size") or "" for r in rows], priority=6),
        _Column("time", [_seconds(r.get("train_seconds")) for r in rows], priority=7),
        _Column("leak val/test", [_leak_cell(r, precise=False) for r in rows], priority=2),
    ]
    return [c for c in columns if c.priority == 0 or any(c.cells)]


def fit_columns(columns: list[_Column], width: int, gap: int = GAP) -> tuple[list[tuple[_Column, int]], list[str]]:
    """(the columns kept with their widths, the headers left out) so that the table fits `width` cells: whole
    columns go, lowest priority first, until the rest fits at their narrowest (headers wrapped at spaces,
    shrinkable columns at their `shrink` width); the room left then goes to the most important columns first,
    to show cut cells whole, then to put wrapped headers on one line. Priority-0 columns are never left out
    nor cut (past them the terminal wraps)."""
    kept = list(columns)
    widths = {id(c): c.narrowest for c in columns}

    def room() -> int:
        return width - sum(widths[id(c)] for c in kept) - gap * (len(kept) - 1)

    hidden = []
    for column in sorted((c for c in columns if c.priority > 0), key=lambda c: -c.priority):
        if room() >= 0:
            break
        kept.remove(column)
        hidden.append(column.header)
    for column in sorted(kept, key=lambda c: c.priority):  # cut cells first: partly is better than not
        widths[id(column)] += max(0, min(room(), column.whole - widths[id(column)]))
    for column in sorted(kept, key=lambda c: c.priority):  # then headers: one line or no change
        if 0 < column.natural - widths[id(column)] <= room():
            widths[id(column)] = column.natural
    return [(c, widths[id(c)]) for c in kept], hidden


def _plain() -> dict[str, Any]:
    """Table options of the terminal tables: a rule under the header, columns GAP cells apart, no edges."""
    from rich import box

    return {"box": box.SIMPLE_HEAD, "show_edge": False, "padding": (0, 1), "collapse_padding": True,
            "pad_edge": False}


def _compact_table(rows: list[dict[str, Any]], width: int) -> tuple[Any, list[str]]:
    from rich.table import Table

    fitted, hidden = fit_columns(compact_columns(rows), width)
    table = Table(title=f"Leaderboard: out-of-fold {_metric_title(rows)}, best first", **_plain())
    for column, column_width in fitted:
        cut = column_width < max(map(cell_len, column.cells))  # a shrunk column: cells end in an ellipsis
        table.add_column(column.header, justify=column.justify, width=column_width, no_wrap=cut,
                         overflow="ellipsis" if cut else "fold", style="bold" if column.header == "macro F1" else None)
    for i in range(len(rows)):
        table.add_row(*(column.cells[i] for column, _ in fitted))
    return table, hidden


def wide_columns(rows: list[dict[str, Any]]) -> list[_Column]:
    """Every figure of the wide table, one column each, in display order: rank, run and macro F1 first (the
    columns every part of the table repeats: WIDE_KEYS)."""
    classes = list(dict.fromkeys(c for row in rows for c in row["per_class"]))

    def delta(row: dict[str, Any]) -> str:
        value = row.get("vs_best_member")
        return f"{value:+.4f} ({row['best_member']})" if value is not None else ""

    def folds(row: dict[str, Any]) -> str:
        requested = row.get("cv", {}).get("requested")
        return f"{row['scheme']} (cv.scheme {requested})" if requested else row["scheme"]

    return [
        _Column("#", [str(rank) for rank in range(1, len(rows) + 1)]),
        _Column("run", [_run_cell(r) for r in rows], justify="left"),
        _Column(_metric_title(rows, "metric_header"), [f"{r['score']:.4f}" for r in rows]),
        _Column("95% CI", [ci_text(r) for r in rows]),
        *([_Column("macro F1", [f"{r['macro_f1']:.4f}" for r in rows])] if _also_macro_f1(rows) else []),
        _Column("accuracy", [f"{r['accuracy']:.4f}" for r in rows]),
        _Column("weighted F1", [f"{r['weighted_f1']:.4f}" for r in rows]),
        *(_Column(f"F1 {name}", [f"{r['per_class'][name]['f1']:.3f}" if name in r["per_class"] else "" for r in rows])
          for name in classes),
        _Column("fold ±", [f"{r['fold_std']:.3f}" if "fold_std" in r else "" for r in rows]),
        _Column("vs best member", [delta(r) for r in rows]),
        _Column("folds", [folds(r) for r in rows], justify="left"),
        _Column("backbone", [r.get("backbone") or "" for r in rows], justify="left"),
        _Column("size", [r.get("image_size") or "" for r in rows]),
        _Column("time", [_seconds(r.get("train_seconds")) for r in rows]),
        _Column("leak val/test", [_leak_cell(r, precise=True) for r in rows]),
    ]


WIDE_KEYS = 3  # rank, run and the contest metric: in every part of the wide table


def wide_parts(columns: list[_Column], width: int, gap: int = GAP) -> list[list[tuple[_Column, int]]]:
    """The wide table's columns cut into parts that each fit `width` cells: every part starts with the key
    columns (WIDE_KEYS) at their full width, then as many of the other columns, in order, as fit: at their full
    width, or narrower down to the longest word of their header and cells (which then wrap at spaces onto more
    lines). Keys wider than the terminal are still shown whole (the terminal wraps them), with one other column
    a part."""
    keys, rest = columns[:WIDE_KEYS], columns[WIDE_KEYS:]
    room = width - sum(c.natural + gap for c in keys)
    parts: list[list[tuple[_Column, int]]] = [[]]
    used = 0
    for column in rest:
        words = [cell_len(word) for text in [column.header, *column.cells] for word in text.split()]
        least = max(*words, 1)  # header and cells wrapped at spaces
        left = room - used - (gap if parts[-1] else 0)
        if parts[-1] and least > left:
            parts.append([])
            used, left = 0, room
        fitted = max(min(column.natural, left), least)
        used += (gap if len(parts[-1]) else 0) + fitted
        parts[-1].append((column, fitted))
    return [[(c, c.natural) for c in keys] + part for part in parts]


def _wide_tables(rows: list[dict[str, Any]], width: int) -> list[Any]:
    from rich.table import Table

    parts = wide_parts(wide_columns(rows), width)
    tables = []
    for k, part in enumerate(parts, 1):
        title = ("Leaderboard (out-of-fold), every figure" + (f", in {len(parts)} parts" if len(parts) > 1 else "")
                 if k == 1 else f"part {k} of {len(parts)}")
        table = Table(title=title, **_plain())
        for column, column_width in part:  # narrower than its natural width: header and cells wrap at spaces
            table.add_column(column.header, justify=column.justify, width=column_width,
                             no_wrap=column_width >= column.natural, overflow="fold",
                             style="bold" if column.header == _metric_title(rows, "metric_header") else None)
        for i in range(len(rows)):
            table.add_row(*(column.cells[i] for column, _ in part))
        tables.append(table)
    return tables


def _per_class_table(rows: list[dict[str, Any]]) -> Any:
    """Per-class OOF F1, one row per run (the runs' rank and name), one column per class (headers may wrap)."""
    from rich.table import Table

    classes = list(dict.fromkeys(c for row in rows for c in row["per_class"]))
    table = Table(title="Per-class F1 (out-of-fold)", **_plain())
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("run", no_wrap=True, min_width=max(cell_len(_run_cell(r)) for r in rows))
    for name in classes:  # a narrow terminal folds the class names, not the run names or scores
        table.add_column(name, justify="right", overflow="fold", min_width=5)
    for rank, row in enumerate(rows, 1):
        table.add_row(str(rank), _run_cell(row),
                      *(f"{row['per_class'][c]['f1']:.3f}" if c in row["per_class"] else "" for c in classes))
    return table
