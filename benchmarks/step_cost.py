"""Time and memory of one jitted training step: forward-only floor, BPTT and RHEL.

Each configuration runs in a fresh subprocess (``rhel_lib.cost``); one run prints a table of
RHEL/BPTT ratios, checks them against the project's targets and writes JSON::

    python benchmarks/step_cost.py                 # L = 1k, 4k, 16k + the state-heavy setting
    python benchmarks/step_cost.py --long          # also L = 50k
    python benchmarks/step_cost.py --quick         # L = 1k, 4k only (a minute or two)

Settings (float32, classification, batch 4): "small" = 2 blocks, hidden 64, state 16 (the public
reference was measured there); "state-heavy" = 4 blocks, hidden 16, state 256 (the paper's
EthanolConcentration shape) at L = 16k.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from rhel_lib.cost import StepSetting, measure_grid, ratios

SMALL = dict(batch=4, hidden_dim=64, ssm_dim=16, num_blocks=2)
HEAVY = dict(batch=4, hidden_dim=16, ssm_dim=256, num_blocks=4)
TARGETS = {  # at L = 16k
    "small": {"temp_ratio": 0.9, "time_ratio": 1.0},
    "state-heavy": {"temp_ratio": 0.4, "time_ratio": 1.2},
}
REFERENCE_RHEL_FRACTION = 0.35  # our RHEL temp vs the public reference's RHEL temp (LinHRU)


def published_reference() -> dict:
    text = resources.files("rhel_lib").joinpath("published.json").read_text()
    return json.loads(text)["public_reference_implementation_measured"]


def settings(models, lengths, heavy_length, repeats) -> list[StepSetting]:
    out = []
    for model in models:
        for seq_len in lengths:
            for method in ("forward", "bptt", "rhel"):
                out.append(StepSetting(model, method, seq_len, repeats=repeats, **SMALL))
        if heavy_length:
            for method in ("forward", "bptt", "rhel"):
                out.append(StepSetting(model, method, heavy_length, repeats=repeats, **HEAVY))
    return out


def shape_name(row) -> str:
    return "state-heavy" if row["ssm_dim"] == HEAVY["ssm_dim"] else "small"


def table(rows, reference) -> str:
    head = (
        f"{'model':<10}{'shape':<12}{'L':>7} | {'FWD ms':>8}{'BPTT ms':>9}{'RHEL ms':>9}"
        f"{'R/B':>6} | {'FWD MiB':>8}{'BPTT MiB':>9}{'RHEL MiB':>9}{'R/B':>6} | "
        f"{'ref RHEL MiB':>12}{'ours/ref':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ref = reference.get(r["model"], {}).get(str(r["seq_len"]))
        ref_mib = ref["RHEL"][1] if ref and shape_name(r) == "small" else None
        lines.append(
            f"{r['model']:<10}{shape_name(r):<12}{r['seq_len']:>7} | "
            f"{r.get('forward_ms', float('nan')):>8.0f}{r['bptt_ms']:>9.0f}{r['rhel_ms']:>9.0f}"
            f"{r['time_ratio']:>6.2f} | {r.get('forward_temp_mib', float('nan')):>8.0f}"
            f"{r['bptt_temp_mib']:>9.0f}{r['rhel_temp_mib']:>9.0f}{r['temp_ratio']:>6.2f} | "
            + (
                f"{ref_mib:>12.0f}{r['rhel_temp_mib'] / ref_mib:>9.2f}"
                if ref_mib
                else f"{'-':>12}{'-':>9}"
            )
        )
    return "\n".join(lines)


def check_targets(rows, reference, length=16000) -> list[str]:
    """One line per target at L = ``length``: PASS or FAIL with the measured number."""
    verdicts = []
    for r in rows:
        if r["seq_len"] != length:
            continue
        shape = shape_name(r)
        for key, bound in TARGETS[shape].items():
            ok = r[key] <= bound
            verdicts.append(
                f"{'PASS' if ok else 'FAIL'} {r['model']} {shape} {key} {r[key]:.2f} <= {bound}"
            )
        ref = reference.get(r["model"], {}).get(str(length))
        if shape == "small" and r["model"] == "LinHRU" and ref:
            bound = REFERENCE_RHEL_FRACTION * ref["RHEL"][1]
            ok = r["rhel_temp_mib"] <= bound
            verdicts.append(
                f"{'PASS' if ok else 'FAIL'} LinHRU small RHEL temp "
                f"{r['rhel_temp_mib']:.0f} MiB <= {bound:.0f} MiB "
                f"(0.35 x public reference)"
            )
    return verdicts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="LinHRU,NonlinHRU")
    parser.add_argument("--long", action="store_true", help="add L = 50,000")
    parser.add_argument("--quick", action="store_true", help="L = 1k and 4k only, no heavy")
    parser.add_argument("--lengths", default=None, help="comma-separated, overrides the default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default="benchmarks/results/step_cost.json")
    args = parser.parse_args(argv)
    lengths = [1000, 4000] if args.quick else [1000, 4000, 16000]
    if args.long:
        lengths.append(50000)
    if args.lengths:
        lengths = [int(v) for v in args.lengths.split(",")]
    heavy = None if args.quick else 16000
    results = measure_grid(settings(args.models.split(","), lengths, heavy, args.repeats))
    rows = ratios(results)
    reference = published_reference()
    print(table(rows, reference))
    verdicts = check_targets(rows, reference)
    print("\n".join(verdicts) if verdicts else "(no L = 16k rows: targets not checked)")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "runs": results, "targets": verdicts}, indent=1))
    print(f"wrote {out}")
    return 1 if any(v.startswith("FAIL") for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
