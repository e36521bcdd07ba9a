"""Time and memory of one training step: BPTT vs RHEL vs the forward pass alone.

:func:`measure_step` builds an HSSM, jits one loss+gradient step (or the loss alone for the
``"forward"`` floor) and reports the median wall time over repetitions after warm-up, the XLA
temporary buffer size of the compiled step (``compile().memory_analysis()``) and the process's
peak resident memory. :func:`measure_in_subprocess` runs it in a fresh Python process so that
peak memory and caches of one configuration never leak into another; :func:`measure_grid` runs a
grid of configurations that way and :func:`ratios` pairs them up.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

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
