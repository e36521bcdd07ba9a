"""On-disk format of processed datasets: ``data.npz`` + ``manifest.json``, and seeded splits.

Layout: ``<root>/processed/<collection>/<name>/{data.npz,manifest.json}``.

``data.npz`` is written with :func:`numpy.savez` and always read with ``allow_pickle=False``.
Mandatory arrays:

* ``X``: float32, shape ``(N, L, C)`` (samples, time steps, channels; channels last);
* ``y``: int64 class ids, shape ``(N,)``, or float32 regression targets, shape ``(N, ...)``;
* ``orig_train_idx`` / ``orig_test_idx``: int64 indices into ``X`` of the samples that came
  from the source's own train/test files (empty when the source has no such split).

Optional arrays (e.g. ``lengths``, ``subject``, ``train_idx``/``val_idx``/``test_idx`` for fixed
splits) are returned in :attr:`ProcessedDataset.extras`.

``manifest.json`` records shapes, dtypes, class names, the SHA-256 of the source and of
``data.npz`` (verified on load), processing parameters and creation info. It is written last,
so a folder without a manifest is an unfinished processing run.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rhel_lib.data.download import sha256_file

__all__ = [
    "DEFAULT_ROOT",
    "FORMAT_VERSION",
    "DatasetCorruptError",
    "DatasetError",
    "DatasetNotFoundError",
    "ProcessedDataset",
    "fetch_command",
    "load_processed",
    "make_splits",
    "processed_dir",
    "save_processed",
]

FORMAT_VERSION = 1
DEFAULT_ROOT = "data_dir"
DATA_FILE = "data.npz"
MANIFEST_FILE = "manifest.json"
REQUIRED_ARRAYS = ("X", "y", "orig_train_idx", "orig_test_idx")

# Collections, the scripts that fetch / process them, and the sets needing no download.
_SCRIPTS: dict[str, tuple[str | None, str]] = {
    "UEA": ("download_uea.py", "process_uea.py"),
    "PPG": ("download_ppg.py", "process_ppg.py"),
    "Heidelberg": (None, "download_heidelberg.py"),
}
_OFFLINE = {("UEA", "BasicMotions"), ("UEA", "JapaneseVowels")}


class DatasetError(Exception):
    """Base class of the data-availability errors (catch this to handle both)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A processed dataset is not on disk; the message names the command that creates it."""


class DatasetCorruptError(DatasetError, ValueError):
    """A processed dataset exists but is unreadable or fails its checksum."""


def fetch_command(collection: str, name: str, root: str | os.PathLike[str] = DEFAULT_ROOT) -> str:
    """Shell command that downloads and processes ``collection/name`` into ``root``.

    >>> fetch_command("UEA", "Heartbeat")
    'python data_dir/download_uea.py --dataset Heartbeat && python data_dir/process_uea.py --dataset Heartbeat'
    """  # noqa: E501
    if collection not in _SCRIPTS:
        raise ValueError(f"unknown collection {collection!r}; expected one of {sorted(_SCRIPTS)}")
    download_script, process_script = _SCRIPTS[collection]
    extra = "" if str(root) == DEFAULT_ROOT else f" --root {shlex.quote(str(root))}"
    dataset = f" --dataset {name}" if collection == "UEA" else ""
    steps = []
    if download_script is not None and (collection, name) not in _OFFLINE:
        steps.append(f"python data_dir/{download_script}{dataset}{extra}")
    steps.append(f"python data_dir/{process_script}{dataset}{extra}")
    return " && ".join(steps)


def processed_dir(collection: str, name: str, root: str | os.PathLike[str] = DEFAULT_ROOT) -> Path:
    """Folder ``<root>/processed/<collection>/<name>`` of a processed dataset."""
    return Path(root) / "processed" / collection / name


@dataclass(frozen=True)
class ProcessedDataset:
    """A processed dataset loaded from disk.

    Attributes:
        collection: e.g. ``"UEA"``, ``"PPG"``, ``"Heidelberg"``.
        name: dataset name, e.g. ``"Heartbeat"``.
        X: float32 ``(N, L, C)``.
        y: int64 ``(N,)`` class ids or float32 ``(N, ...)`` regression targets.
        manifest: the parsed ``manifest.json``.
        orig_train_idx: int64 indices of the samples from the source's train part.
        orig_test_idx: int64 indices of the samples from the source's test part.
        extras: the other arrays of ``data.npz`` (e.g. ``lengths``, ``subject``).
    """

    collection: str
    name: str
    X: np.ndarray
    y: np.ndarray
    manifest: dict[str, Any]
    orig_train_idx: np.ndarray
    orig_test_idx: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_channels(self) -> int:
        return int(self.X.shape[2])

    @property
    def task(self) -> str:
        """``"classification"`` or ``"regression"``."""
        return str(self.manifest["task"])

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest.get("class_names", []))

    @property
    def n_classes(self) -> int:
        return int(self.manifest.get("n_classes", 0))

    @property
    def lengths(self) -> np.ndarray | None:
        """int64 ``(N,)`` true lengths before padding, or None for equal-length data."""
        return self.extras.get("lengths")

    def splits(
        self, seed: int, fractions: Sequence[float] = (0.7, 0.15, 0.15)
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Train/val/test indices (int64, sorted) following ``manifest["split"]["kind"]``.

        * ``"fixed"`` (PPG-DaLiA): the stored ``train_idx``/``val_idx``/``test_idx``;
          ``seed`` and ``fractions`` are ignored.
        * ``"orig_test"`` (Heidelberg Digits): test = the published test set; the published
          train set is split by ``seed`` into train/val with the ratio
          ``fractions[0] : fractions[1]``.
        * ``"random"`` (UEA, default): :func:`make_splits` ``(n_samples, seed, fractions)``.
        """
        kind = self.manifest.get("split", {}).get("kind", "random")
        if kind == "fixed":
            return self.extras["train_idx"], self.extras["val_idx"], self.extras["test_idx"]
        if kind == "orig_test":
            f_train, f_val = float(fractions[0]), float(fractions[1])
            if f_train <= 0 or f_val < 0:
                raise ValueError(f"fractions must have train > 0 and val >= 0, got {fractions!r}")
            pool = self.orig_train_idx
            n_val = int(round(f_val / (f_train + f_val) * pool.size))
            perm = np.random.default_rng(seed).permutation(pool.size)
            val = np.sort(pool[perm[:n_val]])
            train = np.sort(pool[perm[n_val:]])
            return train, val, np.sort(self.orig_test_idx)
        if kind != "random":
            raise ValueError(f"{self.collection}/{self.name}: unknown split kind {kind!r}")
        return make_splits(self.n_samples, seed, fractions)


def make_splits(
    n: int, seed: int, fractions: Sequence[float] = (0.7, 0.15, 0.15)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random train/val/test partition of ``range(n)``, fully determined by ``seed``.

    Sizes are ``round(f_train * n)``, ``round(f_val * n)`` and the rest. Each returned int64
    array is sorted; together they are a partition of ``0..n-1``.

    Args:
        n: number of samples (>= 3).
        seed: seed of :func:`numpy.random.default_rng`.
        fractions: three non-negative fractions summing to 1.
    """
    if len(fractions) != 3:
        raise ValueError(f"fractions must have 3 entries (train, val, test), got {fractions!r}")
    f = np.asarray(fractions, dtype=np.float64)
    if np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {tuple(fractions)!r}")
    if n < 3:
        raise ValueError(f"n must be >= 3 to make three splits, got {n}")
    n_train = int(round(f[0] * n))
    n_val = int(round(f[1] * n))
    n_train = min(n_train, n)
    n_val = min(n_val, n - n_train)
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    train = np.sort(perm[:n_train])
    val = np.sort(perm[n_train : n_train + n_val])
    test = np.sort(perm[n_train + n_val :])
    return train, val, test


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a manifest")


def save_processed(
    collection: str,
    name: str,
    root: str | os.PathLike[str],
    arrays: Mapping[str, np.ndarray],
    manifest: Mapping[str, Any],
) -> Path:
    """Write ``data.npz`` and ``manifest.json`` for a processed dataset, atomically.

    Args:
        collection, name, root: where to write (see :func:`processed_dir`).
        arrays: must contain ``X`` (float32 ``(N, L, C)``), ``y``, ``orig_train_idx`` and
            ``orig_test_idx``; object arrays are refused (no pickle).
        manifest: JSON-serialisable description; shapes, dtypes, the npz checksum and
            creation info are added here.

    Returns:
        The dataset folder.
    """
    missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"{collection}/{name}: arrays missing {missing}")
    X = arrays["X"]
    if X.ndim != 3 or X.dtype != np.float32:
        raise ValueError(
            f"{collection}/{name}: X must be float32 (N, L, C), got {X.dtype} {X.shape}"
        )
    for key, value in arrays.items():
        if value.dtype == object:
            raise ValueError(f"{collection}/{name}: array {key!r} has dtype object (refused)")
        if value.shape[:1] != X.shape[:1] and key not in {
            "orig_train_idx",
            "orig_test_idx",
            "train_idx",
            "val_idx",
            "test_idx",
        }:
            raise ValueError(
                f"{collection}/{name}: array {key!r} has {value.shape[0]} rows, X has {X.shape[0]}"
            )

    folder = processed_dir(collection, name, root)
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / MANIFEST_FILE
    manifest_path.unlink(missing_ok=True)  # an old manifest must not describe the new npz
    tmp = folder / (DATA_FILE + ".tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **{k: np.asarray(v) for k, v in arrays.items()})
    os.replace(tmp, folder / DATA_FILE)

    from rhel_lib import __version__ as lib_version

    full = dict(manifest)
    full.update(
        {
            "format_version": FORMAT_VERSION,
            "collection": collection,
            "name": name,
            "n_samples": int(X.shape[0]),
            "seq_len": int(X.shape[1]),
            "n_channels": int(X.shape[2]),
            "arrays": {
                k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)}
                for k, v in arrays.items()
            },
            "npz_file": DATA_FILE,
            "npz_sha256": sha256_file(folder / DATA_FILE),
            "created": {
                "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "rhel_lib": lib_version,
                "numpy": np.__version__,
                "python": platform.python_version(),
            },
        }
    )
    tmp_manifest = folder / (MANIFEST_FILE + ".tmp")
    tmp_manifest.write_text(json.dumps(full, indent=2, default=_json_default) + "\n")
    os.replace(tmp_manifest, manifest_path)
    return folder


def load_processed(
    collection: str,
    name: str,
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    *,
    verify: bool = True,
) -> ProcessedDataset:
    """Load a processed dataset written by :func:`save_processed`.

    Args:
        collection: ``"UEA"``, ``"PPG"`` or ``"Heidelberg"``.
        name: dataset name inside the collection.
        root: the data root (default ``data_dir``).
        verify: check the SHA-256 of ``data.npz`` against the manifest.

    Raises:
        DatasetNotFoundError: the folder, the manifest or the npz is missing.
        DatasetCorruptError: unreadable manifest/npz, checksum or shape mismatch.

    Both messages name the dataset and the command that (re)creates it.
    """
    folder = processed_dir(collection, name, root)
    label = f"{collection} dataset {name!r}"
    try:
        command = fetch_command(collection, name, root)
    except ValueError:
        command = "(unknown collection: no command available)"
    manifest_path = folder / MANIFEST_FILE
    npz_path = folder / DATA_FILE
    if not manifest_path.is_file() or not npz_path.is_file():
        missing = manifest_path if not manifest_path.is_file() else npz_path
        raise DatasetNotFoundError(
            f"{label} is not available ({missing} not found). Fetch and process it with:\n"
            f"    {command}"
        )

    def corrupt(reason: str) -> DatasetCorruptError:
        return DatasetCorruptError(
            f"{label} in {folder} is corrupt: {reason}. Delete the folder and recreate it with:\n"
            f"    {command}"
        )

    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise corrupt(f"cannot parse {MANIFEST_FILE} ({err})") from err
    if not isinstance(manifest, dict) or "npz_sha256" not in manifest:
        raise corrupt(f"{MANIFEST_FILE} lacks the 'npz_sha256' entry")
    if verify:
        actual = sha256_file(npz_path)
        if actual != manifest["npz_sha256"]:
            raise corrupt(
                f"SHA-256 of {DATA_FILE} is {actual}, manifest records {manifest['npz_sha256']}"
            )
    try:
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise corrupt(f"cannot read {DATA_FILE} ({err})") from err
    missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
    if missing:
        raise corrupt(f"{DATA_FILE} lacks arrays {missing}")
    for key, info in manifest.get("arrays", {}).items():
        if key in arrays and list(arrays[key].shape) != list(info["shape"]):
            raise corrupt(
                f"array {key!r} has shape {arrays[key].shape}, manifest says {info['shape']}"
            )
    X = arrays.pop("X")
    if X.ndim != 3 or X.dtype != np.float32:
        raise corrupt(f"X must be float32 (N, L, C), found {X.dtype} {X.shape}")
    return ProcessedDataset(
        collection=collection,
        name=name,
        X=X,
        y=arrays.pop("y"),
        manifest=manifest,
        orig_train_idx=arrays.pop("orig_train_idx").astype(np.int64),
        orig_test_idx=arrays.pop("orig_test_idx").astype(np.int64),
        extras=arrays,
    )
