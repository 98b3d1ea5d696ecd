"""Run an analysis of the supplement and write its table, summary and plot (shared by CLI and demo)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cxr_fgbg.attention.analysis import load_samples, token_auroc
from cxr_fgbg.attention.localizer import Localizer
from cxr_fgbg.io import atomic_path, write_csv_atomic


def save_analysis(out: str | os.PathLike[str], name: str, table: Any, summary: Any,
                  plot: Callable[[Any], None]) -> Path:
    """Write OUT/NAME.csv, OUT/NAME_summary.csv and OUT/NAME.png (drawn by `plot(ax)`); returns the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(out)
    write_csv_atomic(folder / f"{name}.csv", table)
    write_csv_atomic(folder / f"{name}_summary.csv", summary)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.set_ylabel("pixel AUROC")  # before `plot`, which may label the axis itself
    plot(ax)
    fig.tight_layout()
    png = folder / f"{name}.png"
    with atomic_path(png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return png


def run_token_analysis(localizer: Localizer, index_dir: str | os.PathLike[str], out: str | os.PathLike[str],
                       prompt_source: str = "phrase", limit: int | None = 20) -> tuple[Any, Any, Path]:
    """Pixel AUROC of every token of the prompt (supplement Fig. 3): table, summary and plot path."""
    Path(out).mkdir(parents=True, exist_ok=True)
    table = token_auroc(localizer, load_samples(localizer, index_dir, out, prompt_source, limit))
    table["kind"] = table["token_index"].map(lambda i: "finding words (sum)" if i < 0 else "token")
    table.loc[(table["token_index"] >= 0) & table["is_target"], "kind"] = "finding token"
    table.loc[(table["token_index"] >= 0) & ~table["is_target"], "kind"] = "other token"
    summary = table.groupby("kind")["auroc"].agg(["mean", "std", "count"]).reset_index()

    def plot(ax: Any) -> None:
        groups = [table.loc[table["kind"] == k, "auroc"].dropna() for k in summary["kind"]]
        ax.boxplot(groups, tick_labels=list(summary["kind"]))
        ax.axhline(0.5, color="grey", linestyle=":")
        ax.set_title("AUROC per token of the prompt")

    return table, summary, save_analysis(out, "token_auroc", table, summary, plot)


def run_conditioning_analysis(localizer: Localizer, index_dir: str | os.PathLike[str], out: str | os.PathLike[str],
                              prompt_source: str = "phrase", limit: int | None = 20,
                              splits: Sequence[str] | None = None) -> tuple[Any, Any, Path]:
    """M-hat of the finding words beside the conditioning map (`analyze conditioning`): table, summary, plot."""
    from cxr_fgbg.attention.analysis import conditioning_vs_attention, summarise_conditioning

    Path(out).mkdir(parents=True, exist_ok=True)
    table = conditioning_vs_attention(localizer, load_samples(localizer, index_dir, out, prompt_source, limit,
                                                              splits=splits))
    summary = summarise_conditioning(table)

    def plot(ax: Any) -> None:
        ax.scatter(table["auroc_attention"], table["auroc_conditioning"])
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
        ax.set_xlabel("pixel AUROC, M-hat of the finding's words")
        ax.set_ylabel("pixel AUROC, conditioning map")

    return table, summary, save_analysis(out, "conditioning_vs_attention", table, summary, plot)
