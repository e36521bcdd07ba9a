"""Results tables from hand-made result files: means, stds, published numbers, Markdown, CSV."""

import csv
import io
import json
import math
import statistics
from importlib import resources

import pytest

from rhel_lib.__main__ import main
from rhel_lib.aggregate import (
    aggregate,
    collect_results,
    display_rows,
    format_csv,
    format_markdown,
    format_published_markdown,
    plot_results,
    published_reference,
    published_rows,
    published_table,
)
from rhel_lib.results import run_dir, write_result


def _published_json():
    return json.loads((resources.files("rhel_lib") / "published.json").read_text())


def _write(root, profile, model, dataset, gradient, seed, value, status="finished", **extra):
    folder = run_dir(root, profile, model, dataset, gradient, seed)
    if model == "HopfieldHRU":  # the Hopfield trainer's keys
        result = {"model": model, "task": dataset, "method": gradient, "final_metric": value}
        result["metric"] = "bit_accuracy" if dataset == "CopyPaste" else "accuracy"
    else:
        result = {"model": model, "dataset": dataset, "gradient": gradient, "test_metric": value}
        result["metric"] = "mse" if dataset == "PPG" else "accuracy"
    write_result(folder, {**result, "profile": profile, "seed": seed, "status": status, **extra})


# Heartbeat, LinHRU, RHEL (full): 3 seeds; published 73.5 ± 1.6
HEARTBEAT = {2345: 0.70, 3456: 0.74, 4567: 0.78}
# PPG, NonlinHRU, BPTT (full): MSE 0.080, 0.090; published 7.8 ± 0.5 (×1e-2)
PPG = {2345: 0.080, 3456: 0.090}


@pytest.fixture
def results_root(tmp_path):
    root = tmp_path / "results"
    for seed, value in HEARTBEAT.items():
        _write(root, "full", "LinHRU", "Heartbeat", "rhel", seed, value)
    _write(root, "full", "LinHRU", "Heartbeat", "rhel", 5678, None, status="diverged")
    _write(root, "full", "LinHRU", "Heartbeat", "rhel", 6789, 0.2, status="running")
    for seed, value in PPG.items():
        _write(root, "full", "NonlinHRU", "PPG", "bptt", seed, value)
    _write(root, "full", "LinHRU", "BasicMotions", "bptt", 2345, 0.9)
    _write(root, "smoke", "LinHRU", "BasicMotions", "bptt", 2345, 0.5)
    _write(root, "smoke", "LinHRU", "BasicMotions", "bptt", 3456, 0.75)
    _write(root, "smoke", "HopfieldHRU", "CopyPaste", "rhel", 0, 0.625)
    # not a run folder: ignored
    (root / "smoke" / "results.md").write_text("old table")
    return root


def _row(rows, profile, model, dataset, gradient):
    (row,) = [
        r
        for r in rows
        if (r["profile"], r["model"], r["dataset"], r["gradient"])
        == (profile, model, dataset, gradient)
    ]
    return row


def test_published_reference_reads_the_shipped_tables():
    data = _published_json()
    table1 = data["rhel_neurips2025_table1_uea_accuracy"]
    for model in ("LinHRU", "NonlinHRU"):
        for gradient in ("bptt", "rhel"):
            for i, dataset in enumerate(table1["datasets"]):
                ref = published_reference(model, dataset, gradient)
                assert [ref["mean"], ref["std"]] == table1[model][gradient.upper()][i]
                assert ref["source"] == "RHEL paper, Table 1"
            ppg = published_reference(model, "PPG", gradient)
            expected = data["rhel_neurips2025_table2_ppg_mse_x1e-2"][model][gradient.upper()]
            assert [ppg["mean"], ppg["std"]] == expected
    hopfield = data["hopfield_rhel_table1_accuracy"]
    ref = published_reference("HopfieldHRU", "CopyPaste", "tbptt")
    assert [ref["mean"], ref["std"]] == hopfield["truncated_bptt_2"][1]
    assert published_reference("LinHRU", "BasicMotions", "rhel") is None
    assert published_reference("HopfieldHRU", "CopyPaste", "hebbian") is None
    assert len(published_rows()) == 2 * 2 * 7 + 4 * 2


def test_aggregate_means_and_stds(results_root):
    results = collect_results(results_root)
    assert len(results) == 11
    rows = aggregate(results)
    assert [(r["profile"], r["model"], r["dataset"], r["gradient"]) for r in rows] == [
        ("smoke", "LinHRU", "BasicMotions", "bptt"),
        ("smoke", "HopfieldHRU", "CopyPaste", "rhel"),
        ("full", "LinHRU", "Heartbeat", "rhel"),
        ("full", "LinHRU", "BasicMotions", "bptt"),
        ("full", "NonlinHRU", "PPG", "bptt"),
    ]

    heartbeat = _row(rows, "full", "LinHRU", "Heartbeat", "rhel")
    values = [100 * v for v in HEARTBEAT.values()]
    assert heartbeat["seeds"] == [2345, 3456, 4567] and heartbeat["n_seeds"] == 3
    assert heartbeat["values"] == values
    assert heartbeat["mean"] == pytest.approx(statistics.fmean(values), abs=1e-12)
    assert heartbeat["std"] == pytest.approx(statistics.pstdev(values), abs=1e-12)
    assert heartbeat["mean"] == pytest.approx(74.0, abs=1e-12)
    assert heartbeat["std"] == pytest.approx(math.sqrt(32 / 3), abs=1e-12)
    assert heartbeat["n_unfinished"] == 2  # diverged + running
    assert (heartbeat["published_mean"], heartbeat["published_std"]) == (73.5, 1.6)
    assert heartbeat["diff"] == pytest.approx(0.5, abs=1e-12)
    assert heartbeat["within_published_std"] is True and heartbeat["comparable"]

    ppg = _row(rows, "full", "NonlinHRU", "PPG", "bptt")
    assert ppg["unit"] == "x1e-2" and ppg["metric"] == "mse"
    assert ppg["mean"] == pytest.approx(8.5, abs=1e-12)
    assert ppg["std"] == pytest.approx(0.5, abs=1e-12)
    assert ppg["diff"] == pytest.approx(0.7, abs=1e-12)
    assert ppg["within_published_std"] is False

    offline = _row(rows, "full", "LinHRU", "BasicMotions", "bptt")
    assert offline["published_mean"] is None and offline["diff"] is None
    assert offline["note"] == "no published number" and offline["std"] == 0.0

    smoke = _row(rows, "smoke", "LinHRU", "BasicMotions", "bptt")
    assert smoke["mean"] == pytest.approx(62.5) and smoke["std"] == pytest.approx(12.5)
    copy = _row(rows, "smoke", "HopfieldHRU", "CopyPaste", "rhel")
    assert copy["mean"] == pytest.approx(62.5) and copy["metric"] == "bit_accuracy"
    assert copy["published_mean"] == 99.36 and copy["diff"] is None and not copy["comparable"]
    assert copy["note"] == "smoke settings: not comparable"

    # sample std on request
    rows1 = aggregate(results, ddof=1)
    assert _row(rows1, "full", "LinHRU", "Heartbeat", "rhel")["std"] == pytest.approx(
        statistics.stdev(values), abs=1e-12
    )
    assert _row(rows1, "full", "LinHRU", "BasicMotions", "bptt")["std"] is None
    # one profile only
    assert {r["profile"] for r in aggregate(collect_results(results_root, "smoke"))} == {"smoke"}


def test_markdown_table(results_root):
    text = format_markdown(aggregate(collect_results(results_root)))
    assert text.index("SMOKE profile") < text.index("FULL profile")
    assert "not comparable with the paper" in text
    lines = text.splitlines()
    heartbeat = next(line for line in lines if "| Heartbeat |" in line)
    cells = [c.strip() for c in heartbeat.strip("|").split("|")]
    assert cells == [
        "full",
        "LinHRU",
        "Heartbeat",
        "RHEL",
        "test accuracy (%)",
        "74.00 ± 3.27",
        "3 (+2 unfinished)",
        "73.50 ± 1.60",
        "+0.50",
        "yes",
    ]
    ppg = next(line for line in lines if "| PPG |" in line)
    assert "test MSE (×10⁻²)" in ppg and "8.50 ± 0.50" in ppg and "+0.70 | no |" in ppg
    smoke = [line for line in lines if line.startswith("| smoke |")]
    assert len(smoke) == 2
    assert "no published number" in smoke[0] and "62.50 ± 12.50" in smoke[0]
    assert "99.36 ± 0.02" in smoke[1] and "n/a (smoke)" in smoke[1]
    assert len(display_rows(aggregate(collect_results(results_root)))) == 5


def test_csv_table(results_root):
    rows = aggregate(collect_results(results_root))
    parsed = list(csv.DictReader(io.StringIO(format_csv(rows))))
    assert len(parsed) == len(rows)
    heartbeat = next(r for r in parsed if r["dataset"] == "Heartbeat")
    assert heartbeat["profile"] == "full" and heartbeat["unit"] == "%"
    assert float(heartbeat["mean"]) == _row(rows, "full", "LinHRU", "Heartbeat", "rhel")["mean"]
    assert heartbeat["seeds"] == "2345 3456 4567"
    assert [float(v) for v in heartbeat["values"].split()] == [100 * v for v in HEARTBEAT.values()]
    assert heartbeat["within_published_std"] == "True" and heartbeat["n_unfinished"] == "2"
    offline = next(r for r in parsed if r["dataset"] == "BasicMotions" and r["profile"] == "full")
    assert offline["published_mean"] == "" and offline["note"] == "no published number"


def test_published_tables_for_display():
    title, rows = published_table("uea")
    assert "Table 1" in title and len(rows) == 4
    assert rows[0]["model"] == "LinHRU" and rows[0]["gradient"] == "BPTT"
    assert rows[0]["EigenWorms"] == "78.30 ± 7.50"
    assert "9.10 ± 1.10" in format_published_markdown("ppg")
    assert "| HopfieldHRU | RHEL | 99.36 ± 0.02 | 97.61 ± 1.03 |" in format_published_markdown(
        "hopfield"
    )
    with pytest.raises(ValueError):
        published_table("table 3")


def test_figure(results_root):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = aggregate(collect_results(results_root))
    fig = plot_results(rows, results_root / "figure.png")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 5  # (profile, dataset) panels
    assert (results_root / "figure.png").stat().st_size > 1000
    plt.close(fig)


def test_results_command(results_root, tmp_path, capsys):
    rc = main(["results", "--output-dir", str(results_root), "--profile", "full", "--no-save"])
    out = capsys.readouterr().out
    assert rc == 0 and "FULL profile" in out and "SMOKE" not in out and "74.00 ± 3.27" in out
    table = tmp_path / "table.csv"
    rc = main(["results", "--output-dir", str(results_root), "--format", "csv",
               "--output", str(table)])  # fmt: skip
    assert rc == 0 and table.read_text().startswith("profile,model,dataset")
    for profile in ("smoke", "full"):
        for name in ("results.md", "results.csv", "results.png"):
            assert (results_root / profile / name).is_file()
    assert collect_results(results_root, "smoke")[0]["profile"] == "smoke"  # summaries ignored
    rc = main(["results", "--output-dir", str(tmp_path / "nothing")])
    assert rc == 1 and "reproduce" in capsys.readouterr().err


def test_results_command_prints_the_hopfield_table(results_root, tmp_path, capsys):
    for seed, value in ((0, 0.98), (1, 0.96)):
        cosine = [{"step": 0, "hamiltonian": 0.5}, {"step": 10, "hamiltonian": 0.25 * (seed + 1)}]
        _write(results_root, "cpu", "HopfieldHRU", "CopyPaste", "eprop", seed, value,
               cosine=cosine)  # fmt: skip
    rc = main(["results", "--output-dir", str(results_root), "--format", "hopfield", "--no-save"])
    out = capsys.readouterr().out
    assert rc == 0 and "Heartbeat" not in out
    smoke, cpu = out.index("**smoke profile: HopfieldHRU on CopyPaste**"), out.index("**cpu")
    assert smoke < cpu  # profiles in order smoke, cpu, full
    assert "| RHEL (generic echo) | 62.50 ± 0.00 | 1 | 99.36 ± 0.02 | – |" in out[:cpu]
    assert "| e-prop | 97.00 ± 1.00 | 2 | 77.77 ± 0.25 | 0.500 → 0.375 |" in out[cpu:]
    rc = main(["results", "--output-dir", str(results_root), "--profile", "full",
               "--format", "hopfield"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "HopfieldHRU" in err and "train --model HopfieldHRU" in err
