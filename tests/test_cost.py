"""The step-cost measurement behind benchmarks/step_cost.py (numbers, not timings, asserted)."""

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest

from rhel_lib.cost import StepSetting, measure_in_subprocess, measure_step, ratios

TINY = dict(seq_len=64, batch=2, hidden_dim=8, ssm_dim=4, num_blocks=1, repeats=2)


def test_measure_step_reports_time_and_memory():
    result = measure_step(StepSetting("NonlinHRU", "rhel", **TINY))
    assert result["median_ms"] > 0 and len(result["all_ms"]) == 2
    assert result["temp_mib"] >= 0 and result["peak_rss_mib"] > 0
    assert result["setting"]["method"] == "rhel"
    with pytest.raises(ValueError, match="method"):
        measure_step(StepSetting("NonlinHRU", "adjoint", **TINY))


def test_subprocess_measurement_and_ratios():
    runs = [measure_in_subprocess(StepSetting("NonlinHRU", m, **TINY)) for m in ("bptt", "rhel")]
    (row,) = ratios(runs)
    assert row["time_ratio"] == pytest.approx(row["rhel_ms"] / row["bptt_ms"])
    assert row["temp_ratio"] == pytest.approx(row["rhel_temp_mib"] / row["bptt_temp_mib"])
    assert row["seq_len"] == 64 and row["model"] == "NonlinHRU"


def _benchmark_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "step_cost.py"
    spec = importlib.util.spec_from_file_location("step_cost", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_target_check_on_hand_made_rows():
    bench = _benchmark_module()
    reference = bench.published_reference()
    assert reference["LinHRU"]["16000"]["RHEL"] == [2622, 1387]
    rows = [
        dict(
            model="LinHRU",
            ssm_dim=16,
            seq_len=16000,
            time_ratio=0.8,
            temp_ratio=0.85,
            rhel_temp_mib=400.0,
            bptt_ms=1.0,
            rhel_ms=0.8,
            bptt_temp_mib=470.0,
        ),
        dict(
            model="NonlinHRU",
            ssm_dim=256,
            seq_len=16000,
            time_ratio=1.3,
            temp_ratio=0.3,
            rhel_temp_mib=100.0,
            bptt_ms=1.0,
            rhel_ms=1.3,
            bptt_temp_mib=333.0,
        ),
    ]
    verdicts = bench.check_targets(rows, reference)
    assert "PASS LinHRU small temp_ratio 0.85 <= 0.9" in verdicts
    assert "PASS LinHRU small RHEL temp 400 MiB <= 485 MiB (0.35 x public reference)" in verdicts
    assert "FAIL NonlinHRU state-heavy time_ratio 1.30 <= 1.2" in verdicts
    assert "PASS NonlinHRU state-heavy temp_ratio 0.30 <= 0.4" in verdicts
    assert "LinHRU" in bench.table(rows[:1], reference)


# ---------------------------------------------------------------------------------------------
# reading and showing results (hand-made rows; no measurement)
# ---------------------------------------------------------------------------------------------
def _row(model, seq_len, fwd, bptt, rhel, shape=None):
    """A row as rhel_lib.cost.ratios makes it; ``fwd/bptt/rhel`` are (ms, MiB) or None."""
    shape = shape or dict(batch=4, hidden_dim=64, ssm_dim=16, num_blocks=2)
    row = dict(model=model, seq_len=seq_len, **shape)
    for method, value in (("forward", fwd), ("bptt", bptt), ("rhel", rhel)):
        if value is not None:
            row[f"{method}_ms"], row[f"{method}_temp_mib"] = value
            row[f"{method}_rss_mib"] = 100.0
    if bptt and rhel:
        row["time_ratio"] = rhel[0] / bptt[0]
        row["temp_ratio"] = rhel[1] / bptt[1]
    return row


ROWS = [
    _row("LinHRU", 4000, (10.0, 20.0), (40.0, 100.0), (30.0, 50.0)),
    _row("LinHRU", 1000, (2.0, 5.0), (10.0, 25.0), (8.0, 15.0)),
    _row("NonlinHRU", 1000, None, (12.0, 30.0), (15.0, 20.0)),
]


def test_cost_table_sorts_and_derives_columns():
    from rhel_lib.cost import cost_table

    table = cost_table(ROWS)
    assert list(table["unit"]) == ["LinHRU", "LinHRU", "NonlinHRU"]
    assert list(table["L"]) == [1000, 4000, 1000]
    first = table.iloc[0]
    assert first["shape"] == "B=4, H=64, P=16, 2 blocks"
    assert first["RHEL/BPTT time"] == pytest.approx(0.8)
    assert first["RHEL/BPTT memory"] == pytest.approx(0.6)
    assert first["BPTT − FWD MiB"] == pytest.approx(20.0)
    assert first["RHEL − FWD MiB"] == pytest.approx(10.0)
    last = table.iloc[2]  # no forward row: floor and differences are NaN
    assert math.isnan(last["FWD ms"]) and math.isnan(last["RHEL − FWD MiB"])
    assert last["RHEL MiB"] == 20.0


def test_plot_cost_panels_scales_and_reference():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rhel_lib.cost import plot_cost

    reference = {
        "LinHRU": {"1000": {"BPTT": [59, 33], "RHEL": [139, 87]},
                   "4000": {"BPTT": [275, 133], "RHEL": [379, 347]}},
    }  # fmt: skip
    heavy = dict(batch=4, hidden_dim=16, ssm_dim=256, num_blocks=4)
    rows = [*ROWS, _row("LinHRU", 16000, (1.0, 2.0), (3.0, 4.0), (2.0, 1.0), shape=heavy)]
    fig = plot_cost(rows, reference=reference, title="test")
    axes = fig.axes
    assert len(axes) == 6  # (LinHRU small, NonlinHRU small, LinHRU heavy) x (time, memory)
    for ax in axes:
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        assert "sequence length" in ax.get_xlabel()
    assert "(ms" in axes[0].get_ylabel() and "(MiB)" in axes[1].get_ylabel()
    # LinHRU small: FWD, BPTT, RHEL + the reference's BPTT and RHEL; x sorted by length
    labels = [line.get_label() for line in axes[0].get_lines()]
    assert labels == ["FWD", "BPTT", "RHEL", "public reference BPTT", "public reference RHEL"]
    assert list(axes[0].get_lines()[1].get_xdata()) == [1000, 4000]
    assert list(axes[1].get_lines()[2].get_ydata()) == [15.0, 50.0]
    assert list(axes[1].get_lines()[4].get_ydata()) == [87, 347]
    # NonlinHRU: no forward row, and no reference numbers for it
    assert [line.get_label() for line in axes[2].get_lines()] == ["BPTT", "RHEL"]
    # the state-heavy shape is not the reference's shape
    assert len(axes[4].get_lines()) == 3
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts[:3] == ["FWD", "BPTT", "RHEL"] and len(legend_texts) == 5
    plt.close(fig)
    with pytest.raises(ValueError, match="no rows"):
        plot_cost([])


def test_load_measurement_reads_rows_and_provenance(tmp_path):
    from rhel_lib.cost import load_measurement

    runs = [
        {"setting": {"repeats": 5}, "device": "TFRT_CPU_0", "jax_version": "0.10.0"},
        {"setting": {"repeats": 5}, "device": "TFRT_CPU_0", "jax_version": "0.10.0"},
    ]
    path = tmp_path / "step_cost.json"
    path.write_text(json.dumps({"rows": ROWS, "runs": runs, "targets": ["PASS x"]}))
    result = load_measurement(path)
    assert result["rows"] == ROWS and result["targets"] == ["PASS x"]
    assert result["provenance"] == {
        "path": str(path),
        "devices": "TFRT_CPU_0",
        "jax_versions": "0.10.0",
        "num_runs": 2,
        "repeats": "5",
    }
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"rows": []}))
    assert load_measurement(bare)["provenance"]["devices"] == "unknown"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="rows"):
        load_measurement(bad)
    with pytest.raises(FileNotFoundError):
        load_measurement(tmp_path / "missing.json")


def test_shared_compilation_cache_sets_and_restores_the_environment(tmp_path, monkeypatch):
    from rhel_lib.cost import shared_compilation_cache

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "7")
    with shared_compilation_cache(tmp_path / "cache") as directory:
        assert directory == tmp_path / "cache"
        assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "cache")
        assert os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ
    assert os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "7"


def test_committed_benchmark_covers_what_chapter_6_shows():
    """Chapter 6 shows ``benchmarks/measured/step_cost.json``: both units at L = 16k in the
    small (reference) shape and the state-heavy one, with its targets and provenance."""
    from pathlib import Path

    from rhel_lib.cost import REFERENCE_SHAPE, load_measurement

    path = Path(__file__).parents[1] / "benchmarks" / "measured" / "step_cost.json"
    measured = load_measurement(path)
    at_16k = [r for r in measured["rows"] if r["seq_len"] == 16000]
    small = [r for r in at_16k if all(r[k] == v for k, v in REFERENCE_SHAPE.items())]
    assert {r["model"] for r in small} == {"LinHRU", "NonlinHRU"}
    assert {r["model"] for r in at_16k if r["ssm_dim"] == 256} == {"LinHRU", "NonlinHRU"}
    for r in at_16k:  # ratios are consistent with the measured numbers
        assert r["temp_ratio"] == pytest.approx(r["rhel_temp_mib"] / r["bptt_temp_mib"])
        assert r["time_ratio"] == pytest.approx(r["rhel_ms"] / r["bptt_ms"])
    assert len(measured["targets"]) == 9
    assert measured["provenance"]["devices"] != "unknown"


def test_memory_breakdown_sizes():
    from rhel_lib.cost import memory_breakdown

    row = dict(batch=4, seq_len=16000, hidden_dim=64, ssm_dim=16, num_blocks=2,
               forward_temp_mib=100.0, bptt_temp_mib=500.0, rhel_temp_mib=400.0)  # fmt: skip
    frame = memory_breakdown([{**row, "model": "NonlinHRU"}, {**row, "model": "LinHRU"}])
    lin = frame.loc[("LinHRU", "H=64, P=16", 16000)]
    nonlin = frame.loc[("NonlinHRU", "H=64, P=16", 16000)]
    assert lin["one activation B·L·H (MiB)"] == 4 * 16000 * 64 * 4 / 2**20 == 15.625
    assert lin["one trajectory B·L·2Q (MiB)"] == 15.625  # Q = 2P: two real banks
    assert nonlin["one trajectory B·L·2Q (MiB)"] == 7.8125  # Q = P
    assert lin["BPTT above floor (MiB)"] == 400.0 and lin["RHEL above floor (MiB)"] == 300.0
    assert list(frame.index.get_level_values("unit")) == ["LinHRU", "NonlinHRU"]  # sorted
