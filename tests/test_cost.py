"""The step-cost measurement behind benchmarks/step_cost.py (numbers, not timings, asserted)."""

import importlib.util
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
