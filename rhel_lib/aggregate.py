"""Results tables: finished runs aggregated over seeds, next to the published numbers.

:func:`collect_results` reads every ``result.json`` below a results root
(``<output_dir>/<profile>/<Model>/<Dataset>/<gradient>/seed<seed>/``); :func:`aggregate` groups
the finished runs per profile × model × dataset × gradient and computes the mean and standard
deviation over seeds of the test metric, in the units of the papers:

* UEA classification: test accuracy in % (``test_metric`` × 100);
* PPG-DaLiA regression: test MSE in units of 10⁻² (``test_metric`` × 100; the MSE of the
  min-max scaled targets, see ``rhel_lib.train``);
* the Hopfield network (Copy-Paste, Heidelberg Digits): ``final_metric`` × 100 (bit accuracy
  or accuracy in %).

The standard deviation is the population one (``numpy.std``, ``ddof=0``) unless asked
otherwise, so that a single seed gives 0 rather than NaN. Each row carries the published
mean ± std (``rhel_lib/published.json``: Table 1 and Table 2 of the RHEL paper, Table 1 of the
Hopfield follow-up), the difference ours − paper and whether it lies within the published std.
That comparison is made for the ``full`` profile only: ``smoke`` runs use tiny models and a
few hundred steps (and mostly datasets that are not in the paper), so their rows say so
instead.

``python -m rhel_lib results`` prints the table (Markdown or CSV) and writes
``results.md``, ``results.csv`` and ``results.png`` into each profile's results folder;
``--format hopfield`` prints the Hopfield follow-up's table instead (:func:`format_hopfield`:
per method, mean ± std next to the published column and the cosine to BPTT during training).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "PROFILE_NOTES",
    "aggregate",
    "collect_results",
    "display_rows",
    "format_csv",
    "format_hopfield",
    "format_markdown",
    "format_published_markdown",
    "metric_label",
    "plot_results",
    "published",
    "published_reference",
    "published_rows",
    "published_table",
    "write_summary",
]

_MODEL_ORDER = ("LinHRU", "NonlinHRU", "HopfieldHRU")
_DATASET_ORDER = (
    "EigenWorms",
    "SelfRegulationSCP1",
    "SelfRegulationSCP2",
    "EthanolConcentration",
    "Heartbeat",
    "MotorImagery",
    "PPG",
    "BasicMotions",
    "JapaneseVowels",
    "CopyPaste",
    "HeidelbergDigits",
)
_GRADIENT_ORDER = ("bptt", "rhel", "hebbian", "eprop", "tbptt")
_PROFILE_ORDER = ("smoke", "cpu", "full")

#: One line per profile that says what its numbers are.
PROFILE_NOTES = {
    "smoke": "SMOKE profile: CPU settings (tiny models, a few hundred steps, few seeds) that "
    "check the pipeline. These numbers are not comparable with the paper; most smoke datasets "
    "are not in the paper at all.",
    "cpu": "CPU profile (HopfieldHRU only): a CPU-sized training of the follow-up's network "
    "(fewer neurons and steps than the published one); compare with the published column with "
    "care.",
    "full": "FULL profile: the paper's settings (the 'full' section of each configuration "
    "file), compared with the published mean ± std.",
}

_TABLE1 = "rhel_neurips2025_table1_uea_accuracy"
_TABLE2 = "rhel_neurips2025_table2_ppg_mse_x1e-2"
_HOPFIELD = "hopfield_rhel_table1_accuracy"
_HOPFIELD_COLUMNS = {"CopyPaste": "Copy-Paste", "HeidelbergDigits": "Heidelberg-Digits"}
_HOPFIELD_ROWS = {"bptt": "BPTT", "rhel": "RHEL", "eprop": "eprop", "tbptt": "truncated_bptt_2"}
_SOURCES = {
    _TABLE1: "RHEL paper, Table 1",
    _TABLE2: "RHEL paper, Table 2",
    _HOPFIELD: "Hopfield-RHEL follow-up, Table 1",
}


# ------------------------------------------------------------------------ published numbers


@lru_cache(maxsize=1)
def _published_text() -> str:
    return (resources.files("rhel_lib") / "published.json").read_text(encoding="utf-8")


def published() -> dict[str, Any]:
    """The published numbers shipped with the package (``rhel_lib/published.json``)."""
    return json.loads(_published_text())


def published_reference(model: str, dataset: str, gradient: str) -> dict[str, Any] | None:
    """``{"mean", "std", "source"}`` of the published number of a row, or None."""
    data = published()
    pair = None
    source = None
    if model in ("LinHRU", "NonlinHRU") and gradient in ("bptt", "rhel"):
        table1 = data[_TABLE1]
        if dataset in table1["datasets"]:
            pair = table1[model][gradient.upper()][table1["datasets"].index(dataset)]
            source = _TABLE1
        elif dataset == "PPG":
            pair = data[_TABLE2][model][gradient.upper()]
            source = _TABLE2
    elif model == "HopfieldHRU" and dataset in _HOPFIELD_COLUMNS and gradient in _HOPFIELD_ROWS:
        table = data[_HOPFIELD]
        column = table["_columns"].index(_HOPFIELD_COLUMNS[dataset])
        pair = table[_HOPFIELD_ROWS[gradient]][column]
        source = _HOPFIELD
    if pair is None:
        return None
    return {"mean": float(pair[0]), "std": float(pair[1]), "source": _SOURCES[source]}


def published_rows() -> list[dict[str, Any]]:
    """Every published number of the RHEL paper's Tables 1 (UEA accuracy, %) and 2 (PPG MSE,
    ×10⁻²) and the Hopfield follow-up's Table 1: ``{table, model, dataset, gradient, metric,
    unit, mean, std}``."""
    data = published()
    rows = []
    table1 = data[_TABLE1]
    for model in ("LinHRU", "NonlinHRU"):
        for gradient in ("bptt", "rhel"):
            for dataset in (*table1["datasets"], "PPG"):
                ref = published_reference(model, dataset, gradient)
                unit = "x1e-2" if dataset == "PPG" else "%"
                metric = "mse" if dataset == "PPG" else "accuracy"
                rows.append(
                    {
                        "table": ref["source"],
                        "model": model,
                        "dataset": dataset,
                        "gradient": gradient,
                        "metric": metric,
                        "unit": unit,
                        "mean": ref["mean"],
                        "std": ref["std"],
                    }
                )
    for gradient in _HOPFIELD_ROWS:
        for dataset in _HOPFIELD_COLUMNS:
            ref = published_reference("HopfieldHRU", dataset, gradient)
            rows.append(
                {
                    "table": ref["source"],
                    "model": "HopfieldHRU",
                    "dataset": dataset,
                    "gradient": gradient,
                    "metric": "bit_accuracy" if dataset == "CopyPaste" else "accuracy",
                    "unit": "%",
                    "mean": ref["mean"],
                    "std": ref["std"],
                }
            )
    return rows


def _label(gradient: str) -> str:
    from rhel_lib.plotting import method_label

    return method_label(gradient)


def published_table(table: str = "uea") -> tuple[str, list[dict[str, str]]]:
    """``(title, rows)`` of one published table for display: rows = model × gradient (as
    dicts ``{"model", "gradient", <dataset>: "mean ± std", ...}``). ``table`` is ``"uea"``
    (RHEL Table 1, accuracy %), ``"ppg"`` (RHEL Table 2, MSE ×10⁻²) or ``"hopfield"``
    (follow-up Table 1, accuracy %)."""
    rows = published_rows()
    titles = {
        "uea": (_TABLE1, "test accuracy (%), mean ± std over seeds"),
        "ppg": (_TABLE2, "PPG-DaLiA test MSE (×10⁻²), mean ± std over seeds"),
        "hopfield": (_HOPFIELD, "test accuracy (%), mean ± std over seeds"),
    }
    if table not in titles:
        raise ValueError(f"table must be 'uea', 'ppg' or 'hopfield', not {table!r}")
    source, what = titles[table]
    rows = [r for r in rows if r["table"] == _SOURCES[source]]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    cell = {(r["model"], r["gradient"], r["dataset"]): r for r in rows}
    out = []
    for model, gradient in dict.fromkeys((r["model"], r["gradient"]) for r in rows):
        line = {"model": model, "gradient": _label(gradient)}
        for dataset in datasets:
            r = cell.get((model, gradient, dataset))
            line[dataset] = "–" if r is None else f"{r['mean']:.2f} ± {r['std']:.2f}"
        out.append(line)
    return f"{_SOURCES[source]} — {what}", out


def _markdown(rows: Sequence[Mapping[str, str]]) -> list[str]:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in rows]
    return lines


def format_published_markdown(table: str = "uea") -> str:
    """One published table (see :func:`published_table`) as Markdown, titled "Published"."""
    title, rows = published_table(table)
    return "\n".join([f"**Published** — {title}", "", *_markdown(rows)]) + "\n"


# ----------------------------------------------------------------------------- our results


def collect_results(
    output_dir: str | os.PathLike[str], profile: str | None = None
) -> list[dict[str, Any]]:
    """Every readable ``result.json`` below ``output_dir`` (of ``profile``, or of every
    profile), each with its path under ``"_path"``."""
    pattern = f"{profile or '*'}/*/*/*/seed*/result.json"
    out = []
    for path in sorted(Path(output_dir).glob(pattern)):
        try:
            result = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            warnings.warn(f"skipping unreadable {path}: {err}", stacklevel=2)
            continue
        if isinstance(result, dict):
            out.append({**result, "_path": str(path)})
    return out


def _scaled_value(result: Mapping[str, Any]) -> float | None:
    """The run's test metric in table units (see the module docstring), or None."""
    value = result.get("test_metric", result.get("final_metric"))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return 100.0 * float(value)


def _unit(result: Mapping[str, Any]) -> str:
    return "x1e-2" if result.get("metric") == "mse" else "%"


def metric_label(metric: str, unit: str) -> str:
    """Axis/table label of a metric: ``"test accuracy (%)"``, ``"test MSE (×10⁻²)"``, …"""
    names = {"accuracy": "test accuracy", "bit_accuracy": "test bit accuracy", "mse": "test MSE"}
    units = {"%": "%", "x1e-2": "×10⁻²"}
    return f"{names.get(metric, metric)} ({units.get(unit, unit)})"


def _order(values: Sequence[str], value: str) -> tuple[int, str]:
    return (values.index(value) if value in values else len(values), value)


def aggregate(results: Iterable[Mapping[str, Any]], *, ddof: int = 0) -> list[dict[str, Any]]:
    """Mean ± std over seeds per profile × model × dataset × gradient.

    Only runs with ``status == "finished"`` enter the mean; the others are counted in
    ``n_unfinished`` (running, interrupted or diverged). For each seed the latest file wins
    (there is one per run folder).

    Returns:
        Rows (ordered by profile, model, dataset, gradient) with ``profile``, ``model``,
        ``dataset``, ``gradient``, ``metric``, ``unit`` (``"%"`` or ``"x1e-2"``), ``n_seeds``,
        ``seeds``, ``values`` (per seed, table units), ``mean``, ``std`` (None without a
        finished run), ``n_unfinished``, ``published_mean``, ``published_std``,
        ``published_source``, ``comparable`` (full profile and a published number),
        ``diff`` (ours − paper), ``within_published_std`` (``|diff| <= published std``) and
        ``note``.
    """
    import numpy as np

    groups: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for result in results:
        gradient = result.get("gradient", result.get("method"))
        dataset = result.get("dataset", result.get("task"))
        key = (str(result.get("profile")), str(result.get("model")), str(dataset), str(gradient))
        group = groups.setdefault(
            key, {"finished": {}, "unfinished": set(), "metric": None, "unit": None}
        )
        seed = int(result.get("seed", -1))
        value = _scaled_value(result)
        if result.get("status") == "finished" and value is not None:
            group["finished"][seed] = value
            group["unfinished"].discard(seed)
            group["metric"] = result.get("metric")
            group["unit"] = _unit(result)
        elif seed not in group["finished"]:
            group["unfinished"].add(seed)
            group["metric"] = group["metric"] or result.get("metric")
            group["unit"] = group["unit"] or _unit(result)
    rows = []
    for (profile, model, dataset, gradient), group in groups.items():
        seeds = sorted(group["finished"])
        values = [group["finished"][s] for s in seeds]
        arr = np.asarray(values, dtype=np.float64)
        mean = float(arr.mean()) if values else None
        std = float(arr.std(ddof=ddof)) if len(values) > ddof else None
        ref = published_reference(model, dataset, gradient)
        comparable = profile == "full" and ref is not None and mean is not None
        diff = mean - ref["mean"] if comparable else None
        if ref is None:
            note = "no published number"
        elif profile != "full":
            note = f"{profile} settings: not comparable"
        elif mean is None:
            note = "no finished run"
        else:
            note = ""
        rows.append(
            {
                "profile": profile,
                "model": model,
                "dataset": dataset,
                "gradient": gradient,
                "metric": group["metric"] or "",
                "unit": group["unit"] or "%",
                "n_seeds": len(values),
                "seeds": seeds,
                "values": values,
                "mean": mean,
                "std": std,
                "n_unfinished": len(group["unfinished"]),
                "published_mean": None if ref is None else ref["mean"],
                "published_std": None if ref is None else ref["std"],
                "published_source": None if ref is None else ref["source"],
                "comparable": comparable,
                "diff": diff,
                "within_published_std": None if diff is None else bool(abs(diff) <= ref["std"]),
                "note": note,
            }
        )
    rows.sort(
        key=lambda r: (
            _order(_PROFILE_ORDER, r["profile"]),
            _order(_MODEL_ORDER, r["model"]),
            _order(_DATASET_ORDER, r["dataset"]),
            _order(_GRADIENT_ORDER, r["gradient"]),
        )
    )
    return rows


# --------------------------------------------------------------------------------- tables


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f} ± {std:.2f}" if std is not None and math.isfinite(std) else f"{mean:.2f}"


def display_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """:func:`aggregate` rows as text cells, the columns of the Markdown table (also handy for
    ``pandas.DataFrame(display_rows(rows))``)."""
    out = []
    for r in rows:
        seeds = str(r["n_seeds"])
        if r["n_unfinished"]:
            seeds += f" (+{r['n_unfinished']} unfinished)"
        if r["published_mean"] is None:
            paper = "no published number"
        else:
            paper = _pm(r["published_mean"], r["published_std"])
        if r["diff"] is not None:
            diff, within = f"{r['diff']:+.2f}", "yes" if r["within_published_std"] else "no"
        elif r["published_mean"] is not None and r["profile"] != "full":
            diff, within = "–", f"n/a ({r['profile']})"
        else:
            diff, within = "–", "–"
        out.append(
            {
                "profile": r["profile"],
                "model": r["model"],
                "dataset": r["dataset"],
                "gradient": _label(r["gradient"]),
                "metric": metric_label(r["metric"], r["unit"]),
                "ours (mean ± std)": _pm(r["mean"], r["std"]),
                "seeds": seeds,
                "paper (mean ± std)": paper,
                "ours − paper": diff,
                "within paper std": within,
            }
        )
    return out


def format_markdown(rows: Sequence[Mapping[str, Any]], *, notes: bool = True) -> str:
    """Markdown tables of :func:`aggregate` rows, one per profile, each under a line that
    says which profile produced it (smoke numbers are labelled as not comparable)."""
    if not rows:
        return "_no finished runs_\n"
    out = []
    for profile in sorted({r["profile"] for r in rows}, key=lambda p: _order(_PROFILE_ORDER, p)):
        mine = [r for r in rows if r["profile"] == profile]
        if notes:
            out += [f"**{PROFILE_NOTES.get(profile, f'profile {profile}')}**", ""]
        out += [*_markdown(display_rows(mine)), ""]
    return "\n".join(out).rstrip() + "\n"


CSV_COLUMNS = (
    "profile",
    "model",
    "dataset",
    "gradient",
    "metric",
    "unit",
    "n_seeds",
    "seeds",
    "values",
    "mean",
    "std",
    "n_unfinished",
    "published_mean",
    "published_std",
    "published_source",
    "diff",
    "within_published_std",
    "note",
)


def format_hopfield(results: Iterable[Mapping[str, Any]]) -> str:
    """The Hopfield follow-up's table of the ``HopfieldHRU`` runs among ``results`` (result
    dicts, e.g. :func:`collect_results`), one per profile × task: per method the mean ± std
    over seeds, the published column and the cosine to BPTT at the measured steps
    (:func:`rhel_lib.hopfield_train.results_table`, :func:`~rhel_lib.hopfield_train.format_table`).
    Empty when there is no such run."""
    from rhel_lib.config import HOPFIELD_MODEL, HOPFIELD_TASKS
    from rhel_lib.hopfield_train import format_table, results_table

    runs = [r for r in results if r.get("model") == HOPFIELD_MODEL]
    out = []
    for profile in sorted(
        {str(r.get("profile")) for r in runs}, key=lambda p: _order(_PROFILE_ORDER, p)
    ):
        for task in HOPFIELD_TASKS:
            mine = [r for r in runs if r.get("profile") == profile and r.get("task") == task]
            if mine:
                rows = results_table(mine, task=task, profile=profile)
                out += [
                    f"**{profile} profile: {HOPFIELD_MODEL} on {task}**",
                    "",
                    format_table(rows, task),
                    "",
                ]
    return "\n".join(out).rstrip() + "\n" if out else ""


def format_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV of :func:`aggregate` rows (full precision; seeds and values separated by spaces;
    empty cells for missing numbers)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        cells = []
        for column in CSV_COLUMNS:
            value = r.get(column)
            if column in ("seeds", "values"):
                value = " ".join(repr(v) if isinstance(v, float) else str(v) for v in value)
            elif value is None:
                value = ""
            elif isinstance(value, float):
                value = repr(value)
            cells.append(value)
        writer.writerow(cells)
    return buffer.getvalue()


# --------------------------------------------------------------------------------- figure


def plot_results(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str] | None = None):
    """Ours (mean ± std over seeds, coloured by gradient) next to the paper (grey, mean ±
    std; full profile only: smoke numbers are not comparable), one panel per profile ×
    dataset. Saved to ``path`` when given; returns the figure."""
    import matplotlib.pyplot as plt

    from rhel_lib.plotting import method_color, set_style

    set_style()
    panels = list(dict.fromkeys((r["profile"], r["dataset"]) for r in rows))
    n = max(len(panels), 1)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no finished runs", ha="center", va="center")
        axes[0, 0].set_axis_off()
    labelled = set()
    for ax, (profile, dataset) in zip(axes.flat, panels):
        mine = [r for r in rows if r["profile"] == profile and r["dataset"] == dataset]
        ticks = []
        for i, r in enumerate(mine):
            ticks.append(f"{r['model']}\n{_label(r['gradient'])}")
            if r["mean"] is not None:
                label = _label(r["gradient"]) if r["gradient"] not in labelled else None
                labelled.add(r["gradient"])
                ax.errorbar(
                    i - 0.12,
                    r["mean"],
                    yerr=r["std"] or 0.0,
                    fmt="o",
                    color=method_color(r["gradient"]),
                    capsize=4,
                    label=label,
                )
            if r["published_mean"] is not None and r["profile"] == "full":  # comparable only
                label = "paper" if "paper" not in labelled else None
                labelled.add("paper")
                ax.errorbar(
                    i + 0.12,
                    r["published_mean"],
                    yerr=r["published_std"],
                    fmt="s",
                    color=method_color("paper"),
                    capsize=4,
                    label=label,
                )
        ax.set_xticks(range(len(mine)), ticks, fontsize="small")
        ax.set_xlim(-0.6, len(mine) - 0.4)
        ax.set_ylabel(metric_label(mine[0]["metric"], mine[0]["unit"]))
        if mine[0]["unit"] == "%":  # accuracies: never show axis values outside [0, 100]
            low, high = ax.get_ylim()
            ax.set_ylim(max(low, 0.0), min(high, 101.0))
        ax.set_title(f"{dataset} [{profile}]")
    if labelled:
        handles, labels = [], []
        for ax in axes.flat:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    if {r["profile"] for r in rows} == {"smoke"}:
        fig.suptitle("smoke profile: pipeline check, not comparable with the paper")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig


def write_summary(
    rows: Sequence[Mapping[str, Any]], folder: str | os.PathLike[str], figure: bool = True
) -> list[Path]:
    """Write ``results.md``, ``results.csv`` (and ``results.png``) of ``rows`` into
    ``folder``; returns the paths."""
    from rhel_lib.results import atomic_write_bytes

    folder = Path(folder)
    paths = [folder / "results.md", folder / "results.csv"]
    atomic_write_bytes(paths[0], format_markdown(rows).encode())
    atomic_write_bytes(paths[1], format_csv(rows).encode())
    if figure:
        import matplotlib.pyplot as plt

        fig = plot_results(rows, folder / "results.png")
        plt.close(fig)
        paths.append(folder / "results.png")
    return paths


# ------------------------------------------------------------------------------------- CLI


def add_results_parser(subparsers) -> None:
    """The ``results`` sub-command of ``python -m rhel_lib``."""
    from rhel_lib.__main__ import common_parent

    parser = subparsers.add_parser(
        "results",
        parents=[common_parent()],
        help="tables and a figure of the finished runs next to the published numbers",
        description="Aggregate the finished runs under <output-dir> (mean ± std over seeds per "
        "model × dataset × gradient) next to the published numbers, with the difference and "
        "whether it lies within the published std (full profile only). Prints the table and "
        "writes results.md, results.csv and results.png into <output-dir>/<profile>/.",
    )
    parser.add_argument(
        "--profile",
        default="all",
        choices=("smoke", "cpu", "full", "all"),
        help="which runs (default: all, one table per profile; cpu: HopfieldHRU only)",
    )
    parser.add_argument(
        "--format",
        default="md",
        choices=("md", "csv", "hopfield"),
        help="md (default), csv, or hopfield: the Hopfield follow-up's table per task "
        "(methods, published column, cosine to BPTT) of the HopfieldHRU runs",
    )
    parser.add_argument(
        "--output", default=None, help="write the table to this file instead of stdout"
    )
    parser.add_argument("--data-root", default="data_dir", help="data root (default data_dir)")
    parser.add_argument(
        "--output-dir", default=None, help="results root (default <data-root>/results)"
    )
    parser.add_argument(
        "--ddof", type=int, default=0, help="delta degrees of freedom of the std (default 0)"
    )
    parser.add_argument("--no-save", action="store_true", help="do not write results.{md,csv,png}")
    parser.set_defaults(func=run_results_command)


def run_results_command(args: argparse.Namespace) -> int:
    output_dir = (
        Path(args.data_root) / "results" if args.output_dir is None else Path(args.output_dir)
    )
    profile = None if args.profile == "all" else args.profile
    results = collect_results(output_dir, profile)
    rows = aggregate(results, ddof=args.ddof)
    if args.format == "hopfield":
        text = format_hopfield(results)
    else:
        text = format_markdown(rows) if args.format == "md" else format_csv(rows)
    if not rows or not text:
        where = output_dir / (profile or "*")
        command = f"python -m rhel_lib reproduce --profile {profile or 'smoke'}"
        if args.format == "hopfield" or profile == "cpu":
            where = where / "HopfieldHRU"
            command = (
                "python -m rhel_lib train --model HopfieldHRU --dataset CopyPaste "
                f"--gradient rhel --profile {profile or 'smoke'}"
            )
        print(
            f"python -m rhel_lib results: error: no result.json under {where}; run "
            f"`{command}` first",
            file=sys.stderr,
        )
        return 1
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if not args.no_save:
        for name in dict.fromkeys(r["profile"] for r in rows):
            mine = [r for r in rows if r["profile"] == name]
            paths = write_summary(mine, output_dir / name)
            print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0
