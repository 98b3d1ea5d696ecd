"""report.md (+ report.html) and figures from a summary: tables with the maps beside the priors.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global
backend switch), so the report works on a headless server and inside other programs.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxr_fgbg.io import atomic_path, write_text_atomic

__all__ = [
    "METRIC_TITLES",
    "bar_chart",
    "comparison_sentence",
    "markdown_to_html",
    "overlay_figure",
    "render_localisation_report",
    "render_segmentation_report",
    "write_report",
]

METRIC_TITLES = {
    "pixel_auroc": "Pixel AUROC",
    "cnr_biovil": "CNR (BioViL convention)",
    "cnr_fau": "CNR (FAU convention)",
    "miou": "mIoU over thresholds 0.1-0.5 (BioViL)",
    "pointing_game": "Pointing game",
    "side_accuracy": "Side accuracy",
    "mask_pre_iou": "IoU of the GMM mask M_pre with the boxes",
    "mask_pre_box_iou": "Enclosing-box IoU of M_pre (inclusive bounds)",
    "accuracy": "Pixel accuracy",
    "iou": "Foreground IoU",
    "dice": "Dice",
    "miou_fg_bg": "mIoU (IoU_fg + IoU_bg) / 2",
    "enclosing_box_iou": "Enclosing-box IoU (inclusive bounds)",
}
BASELINE_TITLES = {
    "centred_gaussian": "centred Gaussian", "class_location": "class-location prior",
    "all_background": "all-background prediction",
}


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if np.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3f}"


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("mean") is None:
        return "n/a"
    lo, hi = entry.get("ci95") or [None, None]
    interval = f" [{_fmt(lo)}, {_fmt(hi)}]" if lo is not None and hi is not None else ""
    return f"{_fmt(entry['mean'])}{interval}"


def _mean(entry: dict[str, Any] | None) -> float | None:
    return None if not entry else entry.get("mean")


def _overlap(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool | None:
    ca, cb = (a or {}).get("ci95") or [None, None], (b or {}).get("ci95") or [None, None]
    if None in ca or None in cb:
        return None
    return not (ca[0] > cb[1] or cb[0] > ca[1])


def comparison_sentence(summary: dict[str, Any], metric: str) -> str:
    """A plain sentence saying in which classes the maps beat each prior on `metric` (higher is better)."""
    title = METRIC_TITLES.get(metric, metric)
    baselines = summary.get("baselines", {})
    if not baselines:
        return f"{title}: no baseline was computed, so nothing here says whether the maps beat a prior."
    parts = []
    classes = summary["classes"]
    for name, base in baselines.items():
        label = BASELINE_TITLES.get(name, name)
        wins, losses, undefined = [], [], []
        for category, entry in classes.items():
            ours, theirs = _mean(entry.get(metric)), _mean(base["classes"].get(category, {}).get(metric))
            if ours is None or theirs is None:
                undefined.append(category)
            elif ours > theirs:
                wins.append(category)
            else:
                losses.append(category)
        text = f"the maps beat the {label} in {len(wins)} of {len(classes)} classes"
        text += f" ({', '.join(wins)})" if wins else ""
        if losses:
            text += f" and do not in {', '.join(losses)}"
        if undefined:
            text += f"; undefined in {', '.join(undefined)}"
        ours_m, theirs_m = summary["macro"].get(metric), base["macro"].get(metric)
        if _mean(ours_m) is not None and _mean(theirs_m) is not None:
            verdict = "beat" if ours_m["mean"] > theirs_m["mean"] else "do not beat"
            text += f"; macro {_fmt(ours_m['mean'])} vs {_fmt(theirs_m['mean'])}: the maps {verdict} it"
            if theirs_m.get("n_classes", 0) < ours_m.get("n_classes", 0):
                text += f" (its macro covers only {theirs_m['n_classes']} of {ours_m['n_classes']} classes)"
            if _overlap(ours_m, theirs_m):
                text += " (the 95% intervals overlap, so the difference is not clear)"
        parts.append(text)
    return f"{title}: " + "; ".join(parts) + "."


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _published_lines(summary: dict[str, Any]) -> list[str]:
    published = summary.get("published")
    if not published:
        return []
    lines = ["", f"## Published MS-CXR figures ({published['label']})", ""]
    lines.append(
        "Measured by their authors on real MS-CXR, macro over its eight classes, each with the convention "
        "named; they are context for a run on real data, never a target for a phantom run."
    )
    lines.append("")
    rows = [[r["method"], r["metric"], _fmt(r["value"]), r["convention"]] for r in published["rows"]]
    return lines + _table(["method", "metric", "value", "convention"], rows)


def render_localisation_report(summary: dict[str, Any], figures: dict[str, str]) -> str:
    """Markdown of a heat-map evaluation: setup, one table per metric with maps beside the priors."""
    metrics = list(summary["metrics"])
    baselines = summary.get("baselines", {})
    lines = ["# cxr-fgbg evaluation: heat maps against boxes", ""]
    lines += [
        f"- Heat maps: `{summary.get('source', '')}`; splits evaluated: {', '.join(summary['splits']) or 'n/a'}.",
        f"- {summary['n_samples']} samples in {len(summary['classes'])} classes; "
        f"{summary['n_skipped']} skipped (listed with the reason in skipped.csv).",
        f"- Intervals: 95% bootstrap, samples resampled within each class ({summary['bootstrap_samples']} "
        f"resamples, seed {summary['seed']}); macro = unweighted mean over classes. `n/a`: undefined "
        "(e.g. side accuracy when every box crosses the midline).",
    ]
    lines += [f"- {note}" for note in summary.get("notes", [])]
    lines += ["", "## Baselines (no text, same samples)", ""]
    for name, base in baselines.items():
        lines.append(f"- {BASELINE_TITLES.get(name, name)}: {base['description']}")
    if "class_location" not in baselines:
        lines.append("- class-location prior: omitted, no training boxes were available (see the notes above).")
    lines += [
        "",
        "Pixel AUROC over the whole image rewards anatomy: a prior that only knows where a class usually "
        "sits scores high on it. Side accuracy asks whether the map follows the laterality in the text; "
        "a symmetric prior scores 0.5 on it.",
    ]
    lines += ["", "## Results", ""]
    for metric in metrics:
        lines += [f"### {METRIC_TITLES.get(metric, metric)}", "", comparison_sentence(summary, metric), ""]
        header = ["class", "n", "maps", *[BASELINE_TITLES.get(b, b) for b in baselines]]
        rows = []
        for category, entry in summary["classes"].items():
            row = [category, str(entry[metric]["n"] if metric in entry else 0), _cell(entry.get(metric))]
            row += [_cell(b["classes"].get(category, {}).get(metric)) for b in baselines.values()]
            rows.append(row)
        macro = ["**macro**", str(summary["macro"]["n"]), _cell(summary["macro"].get(metric))]
        macro += [_cell(b["macro"].get(metric)) for b in baselines.values()]
        lines += [*_table(header, [*rows, macro]), ""]
    extra = [m for m in summary.get("map_only_metrics", []) if m in summary["macro"]]
    if extra:
        lines += ["### Masks M_pre stored with the maps", ""]
        rows = [[c, *[_cell(e.get(m)) for m in extra]] for c, e in summary["classes"].items()]
        rows.append(["**macro**", *[_cell(summary["macro"].get(m)) for m in extra]])
        lines += [*_table(["class", *[METRIC_TITLES.get(m, m) for m in extra]], rows), ""]
    lines += _figure_lines(figures)
    lines += _published_lines(summary)
    return "\n".join(lines) + "\n"


def _figure_lines(figures: dict[str, str]) -> list[str]:
    if not figures:
        return ["## Figures", "", "Figures were not drawn (evaluate.figures is false).", ""]
    lines = ["## Figures", ""]
    for title, rel in figures.items():
        lines += [f"![{title}]({rel})", "", f"*{title}*", ""]
    return lines


def render_segmentation_report(summary: dict[str, Any], figures: dict[str, str]) -> str:
    """Markdown of a mask evaluation: per-image means with intervals and pixel-pooled scores per class and
    split, each beside the baselines (an all-background prediction shows what an empty mask already gets)."""
    metrics = list(summary["metrics"])
    baselines = summary.get("baselines", {})
    lines = ["# cxr-fgbg evaluation: masks against ground truth", ""]
    lines += [
        f"- Predicted masks: `{summary.get('source', '')}`; ground truth: `{summary.get('ground_truth', '')}`.",
        f"- {summary['n_samples']} samples in {len(summary['classes'])} classes; "
        f"{summary['n_skipped']} skipped (listed with the reason in skipped.csv).",
        f"- Per-image means with 95% bootstrap intervals ({summary['bootstrap_samples']} resamples, seed "
        f"{summary['seed']}); `pooled` sums the pixel counts over all images first (the paper's convention).",
    ]
    lines += [f"- Baseline, {BASELINE_TITLES.get(n, n)}: {b['description']}" for n, b in baselines.items()]
    lines += [f"- {note}" for note in summary.get("notes", [])]
    lines += ["", "## Per-image means", ""]
    rows = [[c, str(e["n"]), *[_cell(e.get(m)) for m in metrics]] for c, e in summary["classes"].items()]
    rows.append(["**macro**", str(summary["macro"]["n"]), *[_cell(summary["macro"].get(m)) for m in metrics]])
    for name, base in baselines.items():
        rows.append([f"*{BASELINE_TITLES.get(name, name)}*, macro", str(base["macro"]["n"]),
                     *[_cell(base["macro"].get(m)) for m in metrics]])
    lines += [*_table(["class", "n", *[METRIC_TITLES.get(m, m) for m in metrics]], rows), ""]
    lines += ["## Pooled over all pixels", ""]
    lines += _pooled_table(summary["pooled"], baselines, summary.get("counts", {}))
    lines += _figure_lines(figures)
    return "\n".join(lines) + "\n"


def _pooled_table(pooled: dict[str, Any], baselines: dict[str, Any], counts: dict[str, Any]) -> list[str]:
    """One row per class, per split and overall; each split and the whole set again for every baseline
    (scored on the same samples, hence the same n)."""
    metrics = list(pooled["all"])

    def row(label: str, scores: dict[str, Any], n: Any) -> list[str]:
        return [label, "" if n is None else str(n), *[_fmt(scores.get(m)) for m in metrics]]

    rows = [row(c, p, counts.get("classes", {}).get(c)) for c, p in pooled["classes"].items()]
    rows += [row(f"split {s}", p, counts.get("splits", {}).get(s)) for s, p in pooled.get("splits", {}).items()]
    rows.append(row("**all**", pooled["all"], counts.get("all")))
    for name, base in baselines.items():
        title = BASELINE_TITLES.get(name, name)
        base_pooled = base.get("pooled", {})
        rows += [row(f"*{title}*, split {s}", p, counts.get("splits", {}).get(s))
                 for s, p in base_pooled.get("splits", {}).items()]
        if "all" in base_pooled:
            rows.append(row(f"*{title}*, all", base_pooled["all"], counts.get("all")))
    return [*_table(["group", "n", *[METRIC_TITLES.get(m, m) for m in metrics]], rows), ""]


# ---------------------------------------------------------------- HTML


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"(?<![\w*])\*(.+?)\*(?![\w*])", r"<i>\1</i>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def markdown_to_html(markdown: str, title: str = "cxr-fgbg evaluation") -> str:
    """The small markdown subset the report uses (headings, lists, tables, images) as one HTML page."""
    out = [
        "<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 6px}img{max-width:100%}</style>", "</head><body>",
    ]
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            out.append("<table>")
            out.append("<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in block[0]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block[2:]]
            out.append("</table>")
            continue
        elif line.startswith("- "):
            out.append("<ul>")
            while i < len(lines) and lines[i].startswith("- "):
                out.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append("</ul>")
            continue
        elif (match := re.fullmatch(r"!\[(.*)\]\((.+)\)", line.strip())) is not None:
            out.append(f"<p><img src='{html.escape(match.group(2))}' alt='{html.escape(match.group(1))}'></p>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(out_dir: Path, markdown: str) -> Path:
    """Write report.md and its HTML twin report.html atomically; returns the markdown path."""
    path = out_dir / "report.md"
    write_text_atomic(path, markdown)
    write_text_atomic(out_dir / "report.html", markdown_to_html(markdown))
    return path


# ---------------------------------------------------------------- figures


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def bar_chart(summary: dict[str, Any], metrics: Sequence[str], path: Path) -> Path:
    """Per-class grouped bars (maps and each baseline) with 95% intervals, one panel per metric."""
    from matplotlib.figure import Figure

    series = {"maps": summary}
    series.update(summary.get("baselines", {}))
    classes = list(summary["classes"])
    ncols = min(3, len(metrics))
    nrows = int(np.ceil(len(metrics) / ncols))
    fig = Figure(figsize=(5.5 * ncols, 3.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    width = 0.8 / len(series)
    x = np.arange(len(classes) + 1)
    for ax, metric in zip(axes, metrics, strict=False):
        for k, (name, data) in enumerate(series.items()):
            entries = [data["classes"].get(c, {}).get(metric) for c in classes] + [data["macro"].get(metric)]
            means = np.array([_finite_or_nan(e) for e in entries])
            lo = np.array([_ci(e, 0, m) for e, m in zip(entries, means, strict=True)])
            hi = np.array([_ci(e, 1, m) for e, m in zip(entries, means, strict=True)])
            yerr = np.vstack([np.clip(means - lo, 0, None), np.clip(hi - means, 0, None)])
            ax.bar(x + (k - (len(series) - 1) / 2) * width, np.nan_to_num(means), width,
                   yerr=np.nan_to_num(yerr), capsize=2, label=BASELINE_TITLES.get(name, name))
        ax.set_title(METRIC_TITLES.get(metric, metric), fontsize=9)
        ax.set_xticks(x, [*classes, "macro"], rotation=45, ha="right", fontsize=7)
        ax.axvline(len(classes) - 0.5, color="grey", lw=0.5)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    _save(fig, path)
    return path


def _finite_or_nan(entry: dict[str, Any] | None) -> float:
    value = _mean(entry)
    return float(value) if value is not None and np.isfinite(value) else float("nan")


def _ci(entry: dict[str, Any] | None, side: int, mean: float) -> float:
    ci = (entry or {}).get("ci95") or [None, None]
    value = ci[side]
    return float(value) if value is not None and np.isfinite(value) else mean


def overlay_figure(panels: dict[str, list[dict[str, Any]]], path: Path, max_side: int = 384) -> Path:
    """Best / median / worst sample of each class: image (if found), heat map on top, boxes outlined.

    Each panel dict holds `label`, `heatmap`, `boxes` and optionally `image` (float [0, 1], same shape).
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    ncols = max(len(p) for p in panels.values())
    fig = Figure(figsize=(3.2 * ncols, 3.2 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), ncols, squeeze=False)
    for row, (category, items) in enumerate(panels.items()):
        for col in range(ncols):
            ax = axes[row, col]
            ax.set_axis_off()
            if col >= len(items):
                continue
            item = items[col]
            heatmap = np.asarray(item["heatmap"], dtype=np.float32)
            step = max(1, int(np.ceil(max(heatmap.shape) / max_side)))
            extent = (0, heatmap.shape[1], heatmap.shape[0], 0)
            image = item.get("image")
            if image is not None:
                ax.imshow(image[::step, ::step], cmap="gray", extent=extent)
                ax.imshow(heatmap[::step, ::step], cmap="jet", alpha=0.4, extent=extent)
            else:
                ax.imshow(heatmap[::step, ::step], cmap="jet", extent=extent)
            for x, y, w, h in np.asarray(item["boxes"], dtype=float).reshape(-1, 4):
                ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="white", lw=1.2))
            ax.set_title(f"{category}\n{item['label']}", fontsize=7)
    _save(fig, path)
    return path
