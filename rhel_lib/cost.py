"""Time and memory of one training step: BPTT vs RHEL vs the forward pass alone.

:func:`measure_step` builds an HSSM, jits one loss+gradient step (or the loss alone for the
``"forward"`` floor) and reports the median wall time over repetitions after warm-up, the XLA
temporary buffer size of the compiled step (``compile().memory_analysis()``) and the process's
peak resident memory. :func:`measure_in_subprocess` runs it in a fresh Python process so that
peak memory and caches of one configuration never leak into another; :func:`measure_grid` runs a
grid of configurations that way and :func:`ratios` pairs them up.

Reading and showing results: :func:`load_measurement` reads a JSON file written by
``benchmarks/step_cost.py`` (with its provenance), :func:`cost_table` turns rows of
:func:`ratios` into a table, :func:`plot_cost` draws time and memory against the sequence length,
and :func:`shared_compilation_cache` lets a grid's subprocesses share XLA's persistent cache.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from unittest import mock

MIB = 2**20
METHODS = ("forward", "bptt", "rhel")


@dataclass(frozen=True)
class StepSetting:
    """One configuration of the benchmark (float32, classification)."""

    model: str = "LinHRU"
    method: str = "rhel"  # "forward", "bptt" or "rhel"
    seq_len: int = 1000
    batch: int = 4
    hidden_dim: int = 64
    ssm_dim: int = 16
    num_blocks: int = 2
    data_dim: int = 6
    label_dim: int = 4
    repeats: int = 5
    model_kwargs: dict = field(default_factory=dict)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def measure_step(setting: StepSetting, *, seed: int = 0) -> dict:
    """Measure one jitted training step of ``setting`` in this process.

    Returns a dict with the setting, ``median_ms``, ``all_ms``, ``temp_mib`` (XLA temporaries),
    ``args_mib``/``output_mib`` (argument and output buffers), ``compile_s`` and ``peak_rss_mib``.
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from rhel_lib.models import make_model, model_loss

    if setting.method not in METHODS:
        raise ValueError(f"unknown method {setting.method!r}; expected one of {METHODS}")
    key = jax.random.PRNGKey(seed)
    gradient = "bptt" if setting.method == "forward" else setting.method
    model, state = make_model(
        setting.model,
        data_dim=setting.data_dim,
        label_dim=setting.label_dim,
        hidden_dim=setting.hidden_dim,
        num_blocks=setting.num_blocks,
        ssm_dim=setting.ssm_dim,
        classification=True,
        gradient=gradient,
        key=key,
        dtype=jnp.float32,
        **setting.model_kwargs,
    )
    x = jax.random.normal(key, (setting.batch, setting.seq_len, setting.data_dim), jnp.float32)
    y = jnp.arange(setting.batch) % setting.label_dim
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(params, state, x, y, key):
        return model_loss(eqx.combine(params, static), state, x, y, key=key)

    if setting.method == "forward":

        def step(params, state, x, y, key):
            value, (state, _) = loss(params, state, x, y, key)
            return value, state
    else:

        def step(params, state, x, y, key):
            (value, (state, _)), grads = jax.value_and_grad(loss, has_aux=True)(
                params, state, x, y, key
            )
            return value, state, grads

    start = time.perf_counter()
    compiled = jax.jit(step).lower(params, state, x, y, key).compile()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()

    def run():
        out = compiled(params, state, x, y, key)
        jax.block_until_ready(out)

    run()  # warm-up
    times = []
    for _ in range(setting.repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return {
        "setting": asdict(setting),
        "median_ms": statistics.median(times),
        "all_ms": times,
        "temp_mib": memory.temp_size_in_bytes / MIB,
        "args_mib": memory.argument_size_in_bytes / MIB,
        "output_mib": memory.output_size_in_bytes / MIB,
        "compile_s": compile_s,
        "peak_rss_mib": _peak_rss_mib(),
        "device": str(jax.devices()[0]),
        "jax_version": jax.__version__,
    }


def measure_in_subprocess(setting: StepSetting, *, timeout: float | None = None) -> dict:
    """:func:`measure_step` in a fresh Python process (clean peak memory, no shared caches)."""
    payload = json.dumps(asdict(setting))
    code = (
        "import json, sys\n"
        "from rhel_lib.cost import StepSetting, measure_step\n"
        "setting = StepSetting(**json.loads(sys.argv[1]))\n"
        "print('RESULT' + json.dumps(measure_step(setting)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, payload],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark subprocess failed for {setting}:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT") :])


def measure_grid(settings: list[StepSetting], *, progress: bool = True) -> list[dict]:
    """Measure every setting, each in its own subprocess, with a progress bar."""
    from tqdm.auto import tqdm

    results = []
    bar = tqdm(settings, disable=not progress, desc="step cost")
    for setting in bar:
        bar.set_postfix_str(f"{setting.model} {setting.method} L={setting.seq_len}")
        results.append(measure_in_subprocess(setting))
    return results


def ratios(results: list[dict]) -> list[dict]:
    """One row per (model, shape, length): forward / BPTT / RHEL times and memories, and the
    RHEL/BPTT ratios."""
    groups: dict[tuple, dict] = {}
    for r in results:
        s = r["setting"]
        key = (s["model"], s["batch"], s["hidden_dim"], s["ssm_dim"], s["num_blocks"], s["seq_len"])
        groups.setdefault(key, {})[s["method"]] = r
    rows = []
    for (model, batch, hidden, ssm, blocks, seq_len), by_method in groups.items():
        row = dict(
            model=model,
            batch=batch,
            hidden_dim=hidden,
            ssm_dim=ssm,
            num_blocks=blocks,
            seq_len=seq_len,
        )
        for method, r in by_method.items():
            row[f"{method}_ms"] = r["median_ms"]
            row[f"{method}_temp_mib"] = r["temp_mib"]
            row[f"{method}_rss_mib"] = r["peak_rss_mib"]
        if "bptt" in by_method and "rhel" in by_method:
            row["time_ratio"] = row["rhel_ms"] / row["bptt_ms"]
            row["temp_ratio"] = row["rhel_temp_mib"] / row["bptt_temp_mib"]
            row["rss_ratio"] = row["rhel_rss_mib"] / row["bptt_rss_mib"]
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# reading and showing results
# ---------------------------------------------------------------------------------------------
#: Shape at which the public reference implementation was measured (``published.json``).
REFERENCE_SHAPE = dict(batch=4, hidden_dim=64, ssm_dim=16, num_blocks=2)

_CACHE_ENV = {
    "JAX_COMPILATION_CACHE_DIR": None,  # set to the directory
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
}


@contextlib.contextmanager
def shared_compilation_cache(directory: str | os.PathLike[str]):
    """Within the block, subprocesses started by :func:`measure_in_subprocess` share JAX's
    persistent compilation cache in ``directory`` (the environment is restored afterwards).

    Every fresh process otherwise recompiles the same small kernels of the model's
    initialisation (a few seconds each time). Use a new, empty directory for one grid: each
    configuration's training step is distinct, so it is still compiled (and its ``compile_s``
    measured) in its own process. JAX reads these variables when it is imported, so the calling
    process is not affected.
    """
    update = {**_CACHE_ENV, "JAX_COMPILATION_CACHE_DIR": str(Path(directory))}
    with mock.patch.dict(os.environ, update):  # restores the environment on exit
        yield Path(directory)


def load_measurement(path: str | os.PathLike[str]) -> dict:
    """Read a JSON file written by ``benchmarks/step_cost.py --output PATH``.

    Returns a dict with ``rows`` (as from :func:`ratios`), ``runs`` (one result of
    :func:`measure_step` per configuration), ``targets`` (the PASS/FAIL lines) and
    ``provenance``: ``path``, ``devices`` and ``jax_versions`` (each the distinct values over the
    runs, joined by ``", "``; ``"unknown"`` when absent), ``num_runs`` and ``repeats``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not such a measurement (no list of ``rows``).
    """
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path} is not a step-cost measurement: it has no list of 'rows'")
    runs = list(data.get("runs") or [])

    def distinct(key):
        values = sorted({str(r[key]) for r in runs if r.get(key) is not None})
        return ", ".join(values) if values else "unknown"

    repeats = sorted({r["setting"]["repeats"] for r in runs if "setting" in r})
    return {
        "rows": data["rows"],
        "runs": runs,
        "targets": list(data.get("targets") or []),
        "provenance": {
            "path": str(path),
            "devices": distinct("device"),
            "jax_versions": distinct("jax_version"),
            "num_runs": len(runs),
            "repeats": ", ".join(map(str, repeats)) if repeats else "unknown",
        },
    }


def _shape_label(row: dict) -> str:
    return (
        f"B={row['batch']}, H={row['hidden_dim']}, P={row['ssm_dim']}, "
        f"{row['num_blocks']} block{'s' if row['num_blocks'] != 1 else ''}"
    )


def _shape_key(row: dict) -> tuple:
    return tuple(row[k] for k in ("batch", "hidden_dim", "ssm_dim", "num_blocks"))


def cost_table(rows: list[dict]):
    """A ``pandas.DataFrame`` of rows from :func:`ratios`: one line per unit, shape and length
    with the median step times (ms), the XLA temporary memory (MiB) of the forward pass alone
    (FWD), BPTT and RHEL, the RHEL/BPTT ratios, and each gradient's memory above the forward
    floor. Missing measurements are NaN."""
    import pandas as pd

    nan = math.nan
    records = []
    for r in rows:
        fwd_mib = r.get("forward_temp_mib", nan)
        bptt_mib = r.get("bptt_temp_mib", nan)
        rhel_mib = r.get("rhel_temp_mib", nan)
        records.append(
            {
                "unit": r["model"],
                "shape": _shape_label(r),
                "L": int(r["seq_len"]),
                "FWD ms": r.get("forward_ms", nan),
                "BPTT ms": r.get("bptt_ms", nan),
                "RHEL ms": r.get("rhel_ms", nan),
                "RHEL/BPTT time": r.get("time_ratio", nan),
                "FWD MiB": fwd_mib,
                "BPTT MiB": bptt_mib,
                "RHEL MiB": rhel_mib,
                "RHEL/BPTT memory": r.get("temp_ratio", nan),
                "BPTT − FWD MiB": bptt_mib - fwd_mib,
                "RHEL − FWD MiB": rhel_mib - fwd_mib,
            }
        )
    columns = [
        "unit", "shape", "L", "FWD ms", "BPTT ms", "RHEL ms", "RHEL/BPTT time", "FWD MiB",
        "BPTT MiB", "RHEL MiB", "RHEL/BPTT memory", "BPTT − FWD MiB", "RHEL − FWD MiB",
    ]  # fmt: skip
    frame = pd.DataFrame.from_records(records, columns=columns)
    return frame.sort_values(["unit", "shape", "L"], kind="stable").reset_index(drop=True)


def memory_breakdown(rows: list[dict]):
    """Where a step's memory goes, per row of :func:`ratios`: the size of one activation
    ``B × L × H`` and of one unit trajectory ``B × L × 2Q`` (float32; ``Q = 2P`` for the complex
    linear unit's two real banks, ``P`` for the nonlinear unit), the forward-only floor, and
    what BPTT and RHEL keep above it, all in MiB. A ``pandas.DataFrame`` indexed by unit,
    shape and length."""
    import pandas as pd

    records = []
    for r in rows:
        q = 2 * r["ssm_dim"] if r["model"] == "LinHRU" else r["ssm_dim"]
        per_step = r["batch"] * r["seq_len"] * 4 / MIB  # one float32 per (sequence, step)
        floor = r.get("forward_temp_mib", math.nan)
        records.append(
            {
                "unit": r["model"],
                "shape": f"H={r['hidden_dim']}, P={r['ssm_dim']}",
                "L": int(r["seq_len"]),
                "one activation B·L·H (MiB)": per_step * r["hidden_dim"],
                "one trajectory B·L·2Q (MiB)": per_step * 2 * q,
                "FWD floor (MiB)": floor,
                "BPTT above floor (MiB)": r["bptt_temp_mib"] - floor,
                "RHEL above floor (MiB)": r["rhel_temp_mib"] - floor,
            }
        )
    return pd.DataFrame(records).set_index(["unit", "shape", "L"]).sort_index()


def plot_cost(
    rows: list[dict],
    *,
    reference: dict | None = None,
    reference_shape: dict | None = None,
    title: str | None = None,
):
    """Median step time and XLA temporary memory against the sequence length (log-log).

    One row of two panels (time, memory) per unit and model shape; one line per method: the
    forward pass alone (FWD, grey, dashed: the floor), BPTT and RHEL in the book's colours.

    Args:
        rows: rows of :func:`ratios` (e.g. ``load_measurement(path)["rows"]``).
        reference: the public reference's numbers, ``{unit: {"L": {"BPTT": [ms, MiB],
            "RHEL": [ms, MiB]}}}`` (``published.json``'s
            ``public_reference_implementation_measured``); drawn as dotted lines with open
            markers on the panels of the shape it was measured at.
        reference_shape: that shape (default :data:`REFERENCE_SHAPE`).
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from rhel_lib.plotting import method_color, set_style

    if not rows:
        raise ValueError("nothing to plot: no rows")
    set_style()
    ref_key = _shape_key(reference_shape or REFERENCE_SHAPE)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], _shape_key(r)), []).append(r)
    fig, axes = plt.subplots(
        len(groups), 2, figsize=(10, 3.4 * len(groups)), squeeze=False, sharex="row"
    )
    styles = {
        "forward": dict(color=method_color("forward"), linestyle="--", marker="s", label="FWD"),
        "bptt": dict(color=method_color("bptt"), linestyle="-", marker="o", label="BPTT"),
        "rhel": dict(color=method_color("rhel"), linestyle="-", marker="o", label="RHEL"),
    }
    columns = [("ms", "median step time (ms)"), ("temp_mib", "XLA temporary memory (MiB)")]
    for (model, shape), group in zip(groups, axes):
        members = sorted(groups[(model, shape)], key=lambda r: r["seq_len"])
        for ax, (suffix, ylabel) in zip(group, columns):
            for method, style in styles.items():
                points = [
                    (r["seq_len"], r[f"{method}_{suffix}"])
                    for r in members
                    if r.get(f"{method}_{suffix}") is not None
                ]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, **style)
            if reference and shape == ref_key and model in reference:
                lengths = sorted(int(k) for k in reference[model] if k.isdigit())
                for name, method in (("BPTT", "bptt"), ("RHEL", "rhel")):
                    index = 0 if suffix == "ms" else 1
                    ys = [reference[model][str(n)][name][index] for n in lengths]
                    ax.plot(
                        lengths,
                        ys,
                        color=method_color(method),
                        linestyle=":",
                        marker="o",
                        markerfacecolor="none",
                        label=f"public reference {name}",
                    )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("sequence length L (steps)")
            ax.set_ylabel(ylabel)
            kind = "step time" if suffix == "ms" else "memory"
            ax.set_title(f"{model}: {kind}\n{_shape_label(members[0])}", fontsize="medium")
    handles, labels = {}, []
    for ax in axes.ravel():
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    fig.legend([handles[label] for label in labels], labels, loc="outside right center")
    if title:
        fig.suptitle(title)
    return fig
