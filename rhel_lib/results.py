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
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "RESULT_FILE",
    "RESULT_FORMAT",
    "atomic_write_bytes",
    "atomic_write_json",
    "environment_info",
    "json_safe",
    "peak_memory_mb",
    "read_json",
    "read_result",
    "result_path",
    "run_dir",
    "write_result",
]

RESULT_FILE = "result.json"
RESULT_FORMAT = 1


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
