"""Per-run result files: where they live, how they are written (atomically) and read back.

Layout (``output_dir`` defaults to ``<data_root>/results``, i.e. ``data_dir/results``)::

    <output_dir>/<profile>/<Model>/<Dataset>/<gradient>/seed<seed>/
        result.json              status, config, history, best / test metrics, timing, versions
        checkpoint/
            checkpoint.json      sidecar: step, best metric, history, data order, file name below
            ckpt-<step>.eqx      model, optimiser state, eqx State, best model, RNG key data

``result.json`` has ``"status"``: ``"running"`` (written at every evaluation), ``"finished"``
(the run is complete: it is never re-run), or ``"diverged"`` (a NaN/Inf loss stopped it; the
last good checkpoint is kept). Floats that are not finite are written as the strings
``"nan"``, ``"inf"``, ``"-inf"`` so that every file is strict JSON.

**Resume and skip** (the rule every trainer shares, :func:`finished_run`): a run is identified
by the hash of what determines its numbers (:func:`run_hash`: settings, gradient, seed,
profile); a folder holding a result of another hash is refused (:class:`RunConflictError`)
unless the run is restarted (:func:`clear_run`), a finished result of the same hash is returned
instead of running again, and anything else (running, interrupted, diverged) runs again.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import platform
import resource
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CHECKPOINT_DIR",
    "RESULT_FILE",
    "RESULT_FORMAT",
    "RunConflictError",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_seed",
    "clear_run",
    "environment_info",
    "finished_run",
    "json_safe",
    "peak_memory_mb",
    "read_json",
    "read_result",
    "result_path",
    "run_dir",
    "run_hash",
    "say",
    "write_result",
]

RESULT_FILE = "result.json"
RESULT_FORMAT = 1
CHECKPOINT_DIR = "checkpoint"


class RunConflictError(RuntimeError):
    """The run folder holds a run with another configuration (restart it or pick another
    output folder)."""


def run_dir(
    output_dir: str | os.PathLike[str],
    profile: str,
    model: str,
    dataset: str,
    gradient: str,
    seed: int,
) -> Path:
    """Folder of one run: ``<output_dir>/<profile>/<model>/<dataset>/<gradient>/seed<seed>``."""
    return Path(output_dir) / profile / model / dataset / gradient / f"seed{int(seed)}"


def result_path(folder: str | os.PathLike[str]) -> Path:
    """``<run folder>/result.json``."""
    return Path(folder) / RESULT_FILE


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars/arrays turned into Python objects, tuples into lists and
    non-finite floats into ``"nan"``/``"inf"``/``"-inf"`` strings (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_safe(value.tolist())  # numpy / jax scalars and arrays
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync,
    then :func:`os.replace` (a reader sees the old file or the new one, never a partial one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """:func:`atomic_write_bytes` of ``json_safe(data)`` (indented, sorted keys kept in order)."""
    text = json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when the file does not exist."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def read_result(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``result.json`` of a run folder, or None."""
    return read_json(result_path(folder))


def write_result(folder: str | os.PathLike[str], result: Mapping[str, Any]) -> Path:
    """Write ``result.json`` into a run folder atomically; returns its path."""
    path = result_path(folder)
    atomic_write_json(path, {"format": RESULT_FORMAT, **result})
    return path


def check_seed(seed: Any) -> int:
    """``seed`` as an int if it is an integer >= 0 (numpy integers too), else ValueError."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    return int(seed)


def run_hash(identity: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of ``identity`` (what determines a run's numbers: its
    settings, gradient or method, seed and profile) as sorted, strict JSON."""
    text = json.dumps(json_safe(identity), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def clear_run(folder: str | os.PathLike[str]) -> None:
    """Delete a run folder's ``result.json`` and ``checkpoint/`` (what ``--restart`` does)."""
    shutil.rmtree(Path(folder) / CHECKPOINT_DIR, ignore_errors=True)
    result_path(folder).unlink(missing_ok=True)


def finished_run(
    folder: str | os.PathLike[str],
    current_hash: str,
    *,
    resume: bool = True,
    label: str | None = None,
    progress: bool = False,
) -> dict[str, Any] | None:
    """The resume/skip rule of every trainer, applied before a run starts.

    ``resume=False`` first clears the folder (:func:`clear_run`). Returns the previous result
    with ``"skipped": True`` when the folder holds a finished run of the same hash
    (nothing is to run; said on the progress output when ``progress``), else None (no result,
    or a running, interrupted or diverged one: the run starts or resumes).

    Raises:
        RunConflictError: the folder's result has another hash than ``current_hash``.
    """
    if not resume:
        clear_run(folder)
    previous = read_result(folder)
    if previous is None:
        return None
    if previous.get("run_hash") != current_hash:
        raise RunConflictError(
            f"{folder} holds a run with a different configuration (run hash "
            f"{previous.get('run_hash')} vs {current_hash}); pass --restart (resume=False) to "
            "replace it, or choose another --output-dir"
        )
    if previous.get("status") != "finished":
        return None
    say(progress, f"{label or folder}: already finished ({result_path(folder)}); skipped")
    return {**previous, "skipped": True}


def say(enabled: bool, message: str, error: bool = False) -> None:
    """Print ``message`` through tqdm (so that progress bars stay intact) when ``enabled``;
    on stderr when ``error``."""
    if enabled:
        from tqdm.auto import tqdm

        tqdm.write(message, file=sys.stderr if error else None)


def peak_memory_mb() -> float:
    """Peak resident memory of this process in MiB (``getrusage`` ``ru_maxrss``)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes vs KiB


def environment_info() -> dict[str, Any]:
    """Library versions, Python, host and the JAX device the run used (plus the device's peak
    memory where the backend reports it, e.g. GPUs)."""
    import equinox
    import jax
    import jaxlib
    import numpy
    import optax

    from rhel_lib import __version__

    device = jax.devices()[0]
    info: dict[str, Any] = {
        "rhel_lib": __version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "equinox": equinox.__version__,
        "optax": optax.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "platform": device.platform,
        "device": getattr(device, "device_kind", str(device)),
        "device_count": jax.device_count(),
        "x64": bool(jax.config.jax_enable_x64),
    }
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory statistics
        stats = {}
    if "peak_bytes_in_use" in stats:
        info["device_peak_memory_mb"] = stats["peak_bytes_in_use"] / 2**20
    return info
