"""A run's visual report: training curves, OOF confusion matrix, per-class scores and the most confidently
wrong images, as PNGs plus one self-contained ``index.html`` that links them (relative paths).

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``, rendered by Agg); no pyplot
global state, no display. Every file is written atomically.
"""

from __future__ import annotations

import html
import io
import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from PIL import Image

from competition.ensemble import ensemble_summary
from competition.errors import CompetitionError
from competition.files import OWNED_MARKER, atomic_write, check_output, mark_owned, write_text
from competition.metrics import confusion_counts, fold_scores, label_decisions, score
from competition.report.explain import WRONG_PNG, wrong_gradcam_section
from competition.report.sections import Section, most_confident_wrong, wrong_captions, wrong_label
from competition.runs import Run
from competition.runs.fold_files import read_histories
from competition.runs.folder import read_recipe_text
from competition.runs.run import contest_root, missing_contest

REPORT_DIR = "report"
PNG_DPI = 100
FOLD_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf")
THUMB_PX = 160  # longest side of a wrong-image thumbnail before plotting (keeps memory small)


# ---------------------------------------------------------------- small helpers


def save_figure(fig: Figure, path: Path) -> None:
    """Every report figure goes to disk through here: PNG at PNG_DPI, written atomically (a reader never sees
    half a file). Tests watch what is drawn by replacing it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())


def _short(text: str, width: int = 18) -> str:
    """Class names on axes and titles: wrapped onto at most two lines, then cut."""
    lines = textwrap.wrap(str(text), width=width, break_long_words=True) or [""]
    if len(lines) > 2:
        lines = [lines[0], lines[1][: width - 1] + "…"]
    return "\n".join(lines)


def _colour(i: int) -> str:
    return FOLD_COLOURS[i % len(FOLD_COLOURS)]


# ---------------------------------------------------------------- training curves


def best_epoch(frame: pd.DataFrame, metric: Any = None) -> tuple[int, float] | None:
    """(epoch, validation score) of the first epoch with the best validation score by the contest `metric`
    (competition.metrics.Metric; None: macro F1), as training keeps it."""
    column = metric.monitor if metric is not None else "val_macro_f1"
    if column not in frame or frame[column].isna().all():
        return None
    values = frame[column]
    row = frame.loc[values.idxmax() if metric is None or metric.greater_is_better else values.idxmin()]
    return int(row["epoch"]), float(row[column])


def _titled(run_name: str, title: str) -> str:
    """A figure title that names its run (PNGs are shared on their own, away from the page)."""
    return f"{run_name}: {title}" if run_name else title


def plot_curves(histories: dict[int, pd.DataFrame], path: Path, run_name: str = "", metric: Any = None) -> None:
    """Loss (train dashed, val solid) and the validation score by the contest `metric` (None: macro F1) per
    epoch, one colour per fold, the best epoch starred."""
    column = metric.monitor if metric is not None else "val_macro_f1"
    title = metric.title if metric is not None else "macro F1"
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    loss_ax, f1_ax = fig.subplots(1, 2)
    phased = False
    for i, (fold, frame) in enumerate(histories.items()):
        colour, epochs = _colour(i), frame["epoch"].to_numpy()
        if "loss" in frame:
            loss_ax.plot(epochs, frame["loss"], color=colour, linestyle="--", linewidth=1.3, alpha=0.85)
        if "val_loss" in frame:
            loss_ax.plot(epochs, frame["val_loss"], color=colour, linestyle="-", linewidth=1.6)
        if column in frame:
            f1_ax.plot(epochs, frame[column], color=colour, linewidth=1.6, label=f"fold {fold}")
        best = best_epoch(frame, metric)
        if best is not None:
            f1_ax.plot([best[0]], [best[1]], marker="*", markersize=14, color=colour,
                       markeredgecolor="black", markeredgewidth=0.6, linestyle="none")
            loss_ax.axvline(best[0], color=colour, linestyle=":", linewidth=0.9, alpha=0.7)
        if "phase" in frame and frame["phase"].nunique() > 1:
            starts = epochs[np.flatnonzero(np.diff(frame["phase"].to_numpy())) + 1]
            phased = phased or len(starts) > 0
            for start in starts:
                f1_ax.axvline(start - 0.5, color=colour, linestyle="-.", linewidth=0.8, alpha=0.5)
    loss_ax.set_title("Loss per epoch (train dashed, validation solid; dotted = best epoch)", fontsize=10)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    f1_ax.set_title(f"Validation {title} per epoch (★ = best epoch)", fontsize=10)
    f1_ax.set_xlabel("epoch")
    f1_ax.set_ylabel(title)
    for ax in (loss_ax, f1_ax):
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    # One legend: fold colours plus the line-style key.
    handles, labels = f1_ax.get_legend_handles_labels()
    train_key = loss_ax.plot([], [], color="grey", linestyle="--", label="train")[0]
    val_key = loss_ax.plot([], [], color="grey", linestyle="-", label="validation")[0]
    handles, labels = handles + [train_key, val_key], labels + ["train loss", "validation"]
    if phased:
        handles.append(f1_ax.plot([], [], color="grey", linestyle="-.", linewidth=0.8)[0])
        labels.append("phase start")
    fig.legend(handles, labels, loc="outside right center", fontsize=9, frameon=False)
    fig.suptitle(_titled(run_name, "training curves per fold"), fontsize=11)
    save_figure(fig, path)


# ---------------------------------------------------------------- confusion and per-class scores


def plot_confusion(counts: np.ndarray, classes: list[str], path: Path, run_name: str = "") -> None:
    """Counts with row-normalised share (recall per true class) annotated; colour = share."""
    k = len(classes)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    side = max(5.0, 0.9 * k + 3.0)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of true class (row)")
    font = 10 if k <= 6 else 8 if k <= 12 else 6
    for i in range(k):
        for j in range(k):
            colour = "white" if share[i, j] > 0.55 else "black"
            ax.text(j, i, f"{counts[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", color=colour,
                    fontsize=font, fontweight="bold" if i == j else "normal")
    names = [_short(c) for c in classes]
    ax.set_xticks(range(k), names, rotation=35 if k > 2 else 0, ha="right" if k > 2 else "center",
                  rotation_mode="anchor", fontsize=9)
    ax.set_yticks(range(k), names, fontsize=9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(_titled(run_name, f"OOF confusion matrix ({int(counts.sum())} images)"), fontsize=11)
    save_figure(fig, path)


def plot_label_confusion(y: np.ndarray, pred: np.ndarray, classes: list[str], path: Path, run_name: str = "") -> None:
    """A multi-label run's confusion: one 2x2 matrix per label (rows = truth absent/present, columns = decision
    at the threshold), counts with the row-normalised share; y and pred uint8 (n, k) (scikit-learn's
    multilabel_confusion_matrix)."""
    from sklearn.metrics import multilabel_confusion_matrix

    matrices = multilabel_confusion_matrix(y, pred, labels=list(range(len(classes))))
    cols = min(len(classes), 4)
    rows = math.ceil(len(classes) / cols)
    fig = Figure(figsize=(3.0 * cols + 0.6, 3.0 * rows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[len(classes):]:
        ax.axis("off")
    for ax, name, counts in zip(axes, classes, matrices):
        totals = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
        ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{counts[i, j]}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=9,
                        color="white" if share[i, j] > 0.55 else "black", fontweight="bold" if i == j else "normal")
        ax.set_xticks([0, 1], ["absent", "present"], fontsize=8)
        ax.set_yticks([0, 1], ["absent", "present"], fontsize=8)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        ax.set_title(_short(name, 24), fontsize=10)
    fig.suptitle(_titled(run_name, f"OOF confusion per label ({len(y)} images, decision at the 0.5 threshold)"),
                 fontsize=11)
    save_figure(fig, path)


def plot_per_class(per_class: dict[str, dict[str, float]], macro_f1: float, path: Path, run_name: str = "") -> None:
    """Grouped precision/recall/F1 bars per class, support under each name, macro F1 as a line."""
    names = list(per_class)
    k = len(names)
    x = np.arange(k)
    width = 0.26
    rotate = k > 6
    fig = Figure(figsize=(min(max(6.5, 1.4 * k + 2.5), 14.0), 5.4 if rotate else 4.8), layout="constrained")
    ax = fig.subplots()
    for offset, metric, colour in ((-width, "precision", "#4c72b0"), (0.0, "recall", "#dd8452"),
                                   (width, "f1", "#55a868")):
        values = [per_class[n][metric] for n in names]
        bars = ax.bar(x + offset, values, width, label=metric if metric != "f1" else "F1", color=colour)
        if k <= 8:
            ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7, padding=1)
    ax.axhline(macro_f1, color="black", linestyle="--", linewidth=1, label=f"macro F1 {macro_f1:.4f}")
    ax.set_xticks(x, [f"{_short(n)}\n(n={per_class[n]['support']})" for n in names], fontsize=9,
                  rotation=35 if rotate else 0, ha="right" if rotate else "center", rotation_mode="anchor")
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score")
    ax.set_title(_titled(run_name, "per-class OOF precision, recall and F1"), fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=4, fontsize=9, frameon=False)
    save_figure(fig, path)


# ---------------------------------------------------------------- an ensemble and its members


def plot_members(summary: dict[str, Any], path: Path, run_name: str = "") -> None:
    """An ensemble beside its members (competition.ensemble.ensemble_summary): one bar per member's OOF macro F1,
    its weight in the label, and the ensemble's nested-CV (solid) and in-sample (dashed) macro F1 as lines."""
    members = [m for m in summary["members"] if m["score"] is not None]
    fig = Figure(figsize=(9.0, 1.6 + 0.45 * max(len(members), 1)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(members))
    scores = [m["score"] for m in members]
    best = summary["best_member"]
    bars = ax.barh(y, scores, color=["#55a868" if m["name"] == best else "#4c72b0" for m in members])
    ax.bar_label(bars, labels=[f"{v:.4f}" for v in scores], fontsize=8, padding=2)
    ax.set_yticks(y, [_short(m["name"], 28) + ("" if m["weight"] is None else f"\n(weight {m['weight']:.2f})")
                      for m in members], fontsize=9)
    ax.invert_yaxis()
    nested, in_sample = summary["nested"], summary["in_sample"]
    ax.axvline(nested, color="black", linewidth=1.6, label=f"ensemble, nested CV {nested:.4f}")
    if in_sample is not None and abs(in_sample - nested) > 1e-12:
        ax.axvline(in_sample, color="black", linestyle="--", linewidth=1.2,
                   label=f"ensemble, in-sample {in_sample:.4f}")
    values = [*scores, nested] + ([in_sample] if in_sample is not None else [])
    ax.set_xlim(max(0.0, min(values) - 0.1), min(1.0, max(values) + 0.08))
    ax.set_xlabel(f"OOF {summary['metric'].title}")
    gap = summary["vs_best_member"]
    ax.set_title(_titled(run_name, f"{summary['method']} ensemble and its members"
                         + (f" ({gap:+.4f} against the best member, nested CV)" if gap is not None else "")),
                 fontsize=11)
    ax.grid(True, axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize=9, frameon=False)
    save_figure(fig, path)


def ensemble_tables(summary: dict[str, Any]) -> str:
    """The ensemble's figures and its members' (weights, OOF macro F1, gap to the ensemble) as HTML tables."""
    def figure(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    nested, gap = summary["nested"], summary["vs_best_member"]
    title = summary["metric"].title
    honest = "nested CV: each fold predicted by an ensembler fitted on the other folds"
    if summary["oof_is"] == "unfitted":
        honest = "nothing fitted, so in-sample and honest alike"
    headline = [
        ["method", summary["method"]],
        [f"{title}, nested CV (the honest figure, on the leaderboard)", f"{figure(nested)} ({honest})"],
        [f"{title}, in-sample (fitted and scored on the same OOF rows: optimistic)", figure(summary["in_sample"])],
        ["best member", f"{summary['best_member'] or '-'} ({figure(summary['best_member_score'])})"],
        ["gap to the best member (nested CV)",
         "-" if gap is None else f"{gap:+.4f}" + ("" if gap > 0 else ": the ensemble does not beat its best member, "
                                                   "so submit picks the member")],
    ]
    metric = summary["metric"]
    members = [[m["name"], "-" if m["weight"] is None else f"{m['weight']:.3f}", figure(m["score"]),
                "-" if m["score"] is None else f"{metric.oriented(nested) - metric.oriented(m['score']):+.4f}"]
               for m in summary["members"]]
    return (_table(["figure", "value"], headline)
            + _table(["member", "weight", f"OOF {title}", "ensemble (nested CV) against member"], members))


# ---------------------------------------------------------------- confidently wrong images


def _thumbnail(path: str) -> np.ndarray:
    """An image as a small uint8 array (grey 2-D or RGB 3-D), whatever its bit depth."""
    with Image.open(path) as image:
        image.thumbnail((THUMB_PX * 2, THUMB_PX * 2))
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            array = np.asarray(image, dtype=np.float32)
            low, high = float(array.min()), float(array.max())
            array = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
            image = Image.fromarray(array.astype(np.uint8))
        elif image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        image.thumbnail((THUMB_PX, THUMB_PX))
        return np.asarray(image)


def plot_wrong(run: Run, rows: np.ndarray, path: Path) -> None:
    """Grid of images, each titled true / predicted (probability) / id; in a multi-label run, true labels / the
    most confidently wrong label (its probability; a false or a missed finding) / id."""
    rows = np.asarray(rows, dtype=np.int64)
    chosen, captions = wrong_label(run, rows), wrong_captions(run, rows)
    cols = min(len(rows), 4 if len(rows) <= 16 else 6)
    nrows = math.ceil(len(rows) / cols)
    fig = Figure(figsize=(2.7 * cols, 3.1 * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, row, k, guess in zip(axes, rows, chosen, captions):
        image = _thumbnail(str(run.paths[row]))
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
        true = run.label_texts(run.y[[row]])[0] or "(no label)"
        ax.set_title(f"true: {_short(true, 22)}\npred: {_short(guess, 22)} ({run.oof[row, k]:.2f})\n"
                     f"{_short(run.ids[row], 26)}", fontsize=8, linespacing=1.15)
    fig.suptitle(_titled(run.name, "most confidently wrong OOF predictions"), fontsize=11)
    save_figure(fig, path)


def wrong_section(run: Run, out_dir: Path, n_wrong: int) -> Section:
    """Plot the most confidently wrong images that exist on disk into ``wrong.png``, or say why not."""
    wrong = Section("Most confidently wrong OOF images")
    ranked = most_confident_wrong(run, len(run.y))  # every wrong row, most confident first
    n_errors = len(ranked)
    if run.paths is None:
        wrong.notes.append("The run does not record image paths (no path column in folds.csv): "
                           "wrong-image grid skipped.")
    elif n_errors == 0:
        wrong.notes.append("No wrong OOF predictions.")
    elif n_wrong <= 0:
        wrong.notes.append("Wrong-image grid not requested (n_wrong = 0).")
    else:
        present = [r for r in ranked if isinstance(run.paths[r], str) and Path(run.paths[r]).is_file()]
        absent = len(ranked) - len(present)
        if not present:
            moved = missing_contest(run.meta) if run.data_root == contest_root(run.meta) else None
            wrong.notes.append(f"None of the {len(ranked)} wrongly predicted images exist on disk "
                               f"(e.g. {run.paths[ranked[0]]}): wrong-image grid skipped"
                               + (f"; {moved}: pass --data DIR (where the contest is now)." if moved else "."))
        else:
            if absent:
                wrong.notes.append(f"{absent} wrongly predicted image(s) are missing on disk and were left out.")
            shown = np.asarray(present[:n_wrong])
            try:
                plot_wrong(run, shown, out_dir / "wrong.png")
                wrong.image = "wrong.png"
                wrong.notes.append(f"Showing {len(shown)} of {n_errors} wrong predictions, most confident first.")
            except OSError as exc:
                wrong.notes.append(f"Could not read an image ({exc}): wrong-image grid skipped.")
    if wrong.image is None:  # a stale grid from an earlier report must not linger beside the new page
        (out_dir / "wrong.png").unlink(missing_ok=True)
    return wrong


# ---------------------------------------------------------------- the page


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.95em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.note { color: #8a5a00; background: #fff8e6; border-left: 3px solid #e0a800; padding: 0.3em 0.7em; }
.muted { color: #666; }
"""


def render_html(run: Run, scores: dict[str, Any], per_fold: list[float], histories: dict[int, pd.DataFrame],
                sections: list[Section], recipe_text: str | None) -> str:
    """The report's index.html as text: headline figures, per-fold scores, each section's plot and notes,
    and the recipe (all values escaped)."""
    e = html.escape
    metric = run.metric
    headline = [
        *([[f"OOF {metric.title} (the contest metric)", f"{run.score():.4f}"]] if metric.name != "macro_f1" else []),
        ["OOF macro F1", f"{scores['macro_f1']:.4f}"],
        ["OOF accuracy (whole label set right)" if run.multilabel else "OOF accuracy", f"{scores['accuracy']:.4f}"],
        ["OOF weighted F1", f"{scores['weighted_f1']:.4f}"],
        ["macro F1 per fold", ", ".join(f"{s:.4f}" for s in per_fold)],
        ["fold scheme", run.scheme or "(not recorded)"],
        ["kind", run.kind],
        ["training images", f"{len(run.y)} in {len(np.unique(run.folds))} folds"],
        ["test images", str(len(run.test_ids))],
    ]
    if run.recipe_hash:
        headline.append(["recipe hash", run.recipe_hash])
    if run.kind == "ensemble" and run.record.members:
        headline.append(["members", ", ".join(run.record.members)])
    summary = ensemble_summary(run)
    per_class = [[name, f"{v['precision']:.4f}", f"{v['recall']:.4f}", f"{v['f1']:.4f}", v["support"]]
                 for name, v in scores["per_class"].items()]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Run report: {e(run.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Run report: {e(run.name)}</h1>",
        f'<p class="muted">{e(str(run.path))}</p>',
        "<h2>Headline (out-of-fold)</h2>",
        _table(["metric", "value"], headline),
        "<h2>Per label (decision at the 0.5 threshold)</h2>" if run.multilabel else "<h2>Per class</h2>",
        _table(["label" if run.multilabel else "class", "precision", "recall", "F1", "support"], per_class),
    ]
    if summary is not None:
        parts += [f"<h2>Ensemble and its members (OOF {summary['metric'].title})</h2>", ensemble_tables(summary)]
    if histories:
        rows = []
        for fold, frame in histories.items():
            best = best_epoch(frame, run.metric)
            seconds = float(frame["seconds"].sum()) if "seconds" in frame else float("nan")
            rows.append([fold, len(frame), best[0] if best else "-", f"{best[1]:.4f}" if best else "-",
                         f"{seconds:.0f}"])
        parts += ["<h2>Folds</h2>", _table(["fold", "epochs run", "best epoch", f"best val {run.metric.title}", "seconds"],
                                           rows)]
    for section in sections:
        parts.append(f"<h2>{e(section.title)}</h2>")
        parts += [f'<p class="note">{e(note)}</p>' for note in section.notes]
        if section.image:
            parts.append(f'<img src="{e(section.image)}" alt="{e(section.title)}">')
    parts.append("<h2>Recipe</h2>")
    if recipe_text is None:
        parts.append('<p class="note">No recipe.yaml in the run folder.</p>')
    else:
        parts.append(f"<pre>{e(recipe_text)}</pre>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


REPORT_FILES = {"index.html", "curves.png", "confusion.png", "per_class.png", "members.png", "wrong.png", WRONG_PNG}


def _is_report(folder: Path) -> bool:
    """A report written before reports were marked as the tool's: its index.html is a run report's page, or it
    holds nothing but the files a report writes."""
    if {p.name for p in folder.iterdir()} <= REPORT_FILES | {OWNED_MARKER}:
        return True
    try:
        with open(folder / "index.html", encoding="utf-8") as handle:
            head = handle.read(400)
    except (OSError, UnicodeDecodeError):
        return False
    return head.startswith("<!DOCTYPE html>") and "<title>Run report: " in head


def _curves_section(run: Run, run_dir: Path, histories: dict[int, Any], out_dir: Path) -> Section:
    """The report's training curves (curves.png), or a note saying why there are none (an ensemble; no fold
    history found) with any stale curves.png of an earlier report removed."""
    curves = Section("Training curves")
    if run.kind == "ensemble" or not histories:
        curves.notes.append("Ensemble run: no per-fold training, so no training curves." if run.kind == "ensemble"
                            else f"No fold histories found in {run_dir}: training curves skipped.")
        (out_dir / "curves.png").unlink(missing_ok=True)
        return curves
    plot_curves(histories, out_dir / "curves.png", run.name, run.metric)
    curves.image = "curves.png"
    missing = sorted(set(np.unique(run.folds).tolist()) - set(histories))
    if missing:
        curves.notes.append(f"No history for fold(s) {', '.join(map(str, missing))}.")
    return curves


def write_report(run_dir: Path, out_dir: Path | None = None, n_wrong: int = 16,
                 data: str | Path | None = None) -> Path:
    """Write PNG plots and ``index.html`` for one run into out_dir (default ``<run_dir>/report/``); return
    the HTML path. Plots that cannot be drawn (no fold histories, no image paths) are left out with a note.
    `data` is where the run's contest folder is now, when it moved (the wrongly predicted images are read
    there)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CompetitionError(f"{run_dir}: run folder not found")
    run = Run.load(run_dir, data=data)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / REPORT_DIR
    # never in the contest folder; in the run folder only a folder of its own (the default <run>/report): the run
    # folder itself and its other folders are not empty and not a report's
    check_output(out_dir, folder=True, ours=_is_report, protected=[("the run's contest folder", run.data_root)])
    out_dir.mkdir(parents=True, exist_ok=True)
    mark_owned(out_dir, "report")

    scores = score(run.y, run.oof, run.classes)
    per_fold = fold_scores(run.y, run.oof, run.folds)
    histories = read_histories(run_dir) if run.kind != "ensemble" else {}
    sections = [_curves_section(run, run_dir, histories, out_dir)]  # a. training curves
    # b. confusion matrix (multi-label: one per label), c. per-class bars
    if run.multilabel:
        plot_label_confusion(run.y, label_decisions(run.oof), run.classes, out_dir / "confusion.png", run.name)
        sections.append(Section("Confusion per label (OOF)", "confusion.png"))
    else:
        plot_confusion(confusion_counts(run.y, run.oof.argmax(axis=1), len(run.classes)), run.classes,
                       out_dir / "confusion.png", run.name)
        sections.append(Section("Confusion matrix (OOF)", "confusion.png"))
    plot_per_class(scores["per_class"], scores["macro_f1"], out_dir / "per_class.png", run.name)
    sections.append(Section("Per-class precision / recall / F1", "per_class.png"))
    # c2. an ensemble beside its members
    summary = ensemble_summary(run)
    if summary is not None and any(m["score"] is not None for m in summary["members"]):
        plot_members(summary, out_dir / "members.png", run.name)
        sections.append(Section("Ensemble against its members", "members.png"))
    else:
        (out_dir / "members.png").unlink(missing_ok=True)  # a stale plot must not linger beside the new page
    # d. most confidently wrong images, e. the same images explained (Grad-CAM)
    sections += [wrong_section(run, out_dir, n_wrong), wrong_gradcam_section(run, out_dir, n_wrong)]

    recipe_text = read_recipe_text(run_dir)
    page = out_dir / "index.html"
    write_text(page, render_html(run, scores, per_fold, histories, sections, recipe_text))
    return page
