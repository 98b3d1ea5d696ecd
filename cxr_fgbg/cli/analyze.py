"""`cxr-fgbg analyze ...`: the supplement's analyses of the attention heat maps (a table and a plot each)."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr_fgbg.cli.common import config_option, load_cli_config, resolve_model_folder, set_option

analyze_app = typer.Typer(
    help=(
        "Analyses of the attention heat maps on MS-CXR (or natural-image) samples (supplement of the paper): "
        "which tokens point at the finding, how many noise draws and noise levels are needed, how much the map depends "
        "on the wording of the prompt. Each writes OUT/NAME.csv (one row per sample), "
        "OUT/NAME_summary.csv and OUT/NAME.png."
    ),
    no_args_is_help=True,
)

MODEL = typer.Option(None, "--model", "-m", file_okay=False, help="The diffusion model: a diffusers folder "
                     "(default: paths.model, else model.path in the config).")
INDEX = typer.Option(..., "--index", "-i", file_okay=False, help="Folder written by `cxr-fgbg index` (ms_cxr.csv) or "
                     "`cxr-fgbg index-natural` (samples.csv).")
OUT = typer.Option(..., "--out", "-o", help="Output folder for the table and the plot.")
LIMIT = typer.Option(20, "--limit", min=1, help="Number of samples analysed (the first usable ones).")


def _setup(model: Path | None, config: Path | None, overrides: list[str], out: Path):
    from cxr_fgbg.attention.localizer import Localizer
    from cxr_fgbg.config import dump_config
    from cxr_fgbg.io import write_text_atomic

    full = load_cli_config(config, overrides)
    model = resolve_model_folder(model, full, config)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", dump_config(full))
    return Localizer(model, full), full


def _save(out: Path, name: str, table, summary, plot) -> None:
    from cxr_fgbg.attention.analysis_outputs import save_analysis

    save_analysis(out, name, table, summary, plot)
    typer.echo(f"wrote {out / (name + '.csv')}, {name}_summary.csv and {name}.png")
    typer.echo(summary.to_string(index=False))


def _ints(text: str, option: str) -> list[int]:
    from cxr_fgbg.errors import ConfigError

    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected comma-separated integers, e.g. 1,2,4,8") from None


@analyze_app.command("tokens")
def tokens(model: Path | None = MODEL, index: Path = INDEX, out: Path = OUT, limit: int = LIMIT,
           config: Path | None = config_option(), overrides: list[str] = set_option()) -> None:
    """Pixel AUROC of every token of the prompt (Fig. 3): do the finding's words point at the box?"""
    from cxr_fgbg.attention.analysis_outputs import run_token_analysis

    localizer, full = _setup(model, config, overrides, out)
    _, summary, png = run_token_analysis(localizer, index, out, full.localize.prompt, limit)
    typer.echo(f"wrote {out / 'token_auroc.csv'}, token_auroc_summary.csv and {png.name}")
    typer.echo(summary.to_string(index=False))


@analyze_app.command("draws")
def draws(model: Path | None = MODEL, index: Path = INDEX, out: Path = OUT, limit: int = LIMIT,
          n_draws: str = typer.Option("1,2,4,8", "--draws", help="Noise draws N per timestep to compare."),
          seeds: str = typer.Option("0,1,2", "--seeds", help="Seeds for the spread."),
          config: Path | None = config_option(), overrides: list[str] = set_option()) -> None:
    """AUROC and its spread over seeds versus the number N of noise draws of eq. 1 (Fig. 2)."""
    from cxr_fgbg.attention.analysis import draws_auroc, load_samples, summarise

    localizer, full = _setup(model, config, overrides, out)
    samples = load_samples(localizer, index, out, full.localize.prompt, limit)
    table = draws_auroc(localizer, samples, _ints(n_draws, "--draws"), _ints(seeds, "--seeds"))
    summary = summarise(table, "n_draws")

    def plot(ax):
        ax.errorbar(summary["n_draws"], summary["auroc_mean"], yerr=summary["auroc_std_over_seeds"], marker="o")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("noise draws N per timestep")

    _save(out, "draws_auroc", table, summary, plot)


@analyze_app.command("t0")
def t0(model: Path | None = MODEL, index: Path = INDEX, out: Path = OUT, limit: int = LIMIT,
       t0s: str = typer.Option("1,5,10,20,30,40,50", "--t0", help="Numbers of lowest grid timesteps summed."),
       config: Path | None = config_option(), overrides: list[str] = set_option()) -> None:
    """AUROC versus T0, the number of (lowest) timesteps of the DDIM grid that are summed."""
    from cxr_fgbg.attention.analysis import load_samples, summarise, t0_auroc

    localizer, full = _setup(model, config, overrides, out)
    table = t0_auroc(localizer, load_samples(localizer, index, out, full.localize.prompt, limit), _ints(t0s, "--t0"))
    summary = summarise(table, "t0")

    def plot(ax):
        ax.errorbar(summary["t0"], summary["auroc_mean"], yerr=summary["auroc_std"], marker="o")
        ax.set_xlabel("T0 (timesteps summed)")

    _save(out, "t0_auroc", table, summary, plot)


@analyze_app.command("prompts")
def prompts(model: Path | None = MODEL, index: Path = INDEX, out: Path = OUT, limit: int = LIMIT,
            config: Path | None = config_option(), overrides: list[str] = set_option()) -> None:
    """Prompt sensitivity (Fig. 5): the MS-CXR phrase versus the report impression for the same image."""
    from cxr_fgbg.attention.analysis import load_samples, prompt_sensitivity

    localizer, full = _setup(model, config, overrides, out)
    phrase = load_samples(localizer, index, out, "phrase", limit)
    impression = load_samples(localizer, index, out, "impression", limit)
    table = prompt_sensitivity(localizer, phrase, impression, seed=full.seed)
    summary = table[["auroc_a", "auroc_b", "mask_iou", "mean_abs_diff"]].agg(["mean", "std", "count"]).T
    summary = summary.reset_index().rename(columns={"index": "quantity"})

    def plot(ax):
        ax.scatter(table["auroc_a"], table["auroc_b"])
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
        ax.set_xlabel("pixel AUROC, phrase prompt")

    _save(out, "prompt_sensitivity", table, summary, plot)


@analyze_app.command("conditioning")
def conditioning(model: Path | None = MODEL, index: Path = INDEX, out: Path = OUT, limit: int = LIMIT,
                 split: list[str] = typer.Option([], "--split", help="Only samples of this split (repeatable), "
                                                 "e.g. --split val: analyse where you may tune."),
                 config: Path | None = config_option(), overrides: list[str] = set_option()) -> None:
    """Does the model bind the report to the finding at all? M-hat of the finding's words beside the map of
    where the prompt changes the denoiser's prediction (|eps(y) - eps(empty)|), both against the boxes. A
    conditioning map that follows the finding while M-hat does not means the binding is there but is not
    carried by the finding's tokens (a diagnostic; the paper's localiser is M-hat)."""
    from cxr_fgbg.attention.analysis_outputs import run_conditioning_analysis

    localizer, full = _setup(model, config, overrides, out)
    _, summary, png = run_conditioning_analysis(localizer, index, out, full.localize.prompt, limit, splits=split)
    typer.echo(f"wrote {out / 'conditioning_vs_attention.csv'}, conditioning_vs_attention_summary.csv and {png.name}")
    typer.echo(summary.to_string(index=False))


def register(app: typer.Typer) -> None:
    app.add_typer(analyze_app, name="analyze")
