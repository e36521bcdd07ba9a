"""UEA multivariate classification archive: download, ``.ts`` parsing and processing.

Raw files: ``<root>/raw/UEA/<Name>.zip`` (from timeseriesclassification.com, the URL scheme the
``aeon`` toolkit uses) extracted into ``<root>/raw/UEA/<Name>/``. Processed output:
``<root>/processed/UEA/<Name>/`` (see :mod:`rhel_lib.data.store`).

Processing (identical for downloaded and offline sets):

* the original ``_TRAIN.ts`` and ``_TEST.ts`` are concatenated (train first); their indices are
  kept as ``orig_train_idx`` / ``orig_test_idx``;
* labels become int64 class ids in the order of the file's ``@classLabel`` header (the names
  are stored in the manifest);
* values are float32, channels last: ``X.shape == (N, L, C)``;
* unequal lengths (JapaneseVowels: 7-29 steps) are padded to the longest series by repeating
  the last observed value of every channel ("edge" padding); the true lengths are stored in
  the ``lengths`` array. Equal-length sets also get ``lengths`` (all equal to ``L``);
* missing values (``?``) are filled forward then backward in time (count in the manifest);
* no normalisation by default. ``normalize=True`` standardises every channel with the mean and
  standard deviation of the original *train* part (valid steps only); the statistics are
  stored in the manifest either way.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rhel_lib.data.download import download, safe_extract, sha256_file
from rhel_lib.data.store import (
    DEFAULT_ROOT,
    DatasetNotFoundError,
    fetch_command,
    save_processed,
)

__all__ = [
    "OFFLINE_DATASETS",
    "PAPER_DATASETS",
    "UEA_BASE_URL",
    "TsData",
    "aeon_data_dir",
    "download_uea",
    "find_ts_files",
    "pad_series",
    "process_uea",
    "read_ts",
    "uea_url",
]

UEA_BASE_URL = "https://timeseriesclassification.com/aeon-toolkit"

#: The six datasets of the paper: expected series length and number of classes.
PAPER_DATASETS: dict[str, dict[str, int]] = {
    "EigenWorms": {"seq_len": 17984, "n_classes": 5},
    "SelfRegulationSCP1": {"seq_len": 896, "n_classes": 2},
    "SelfRegulationSCP2": {"seq_len": 1152, "n_classes": 2},
    "EthanolConcentration": {"seq_len": 1751, "n_classes": 4},
    "Heartbeat": {"seq_len": 405, "n_classes": 2},
    "MotorImagery": {"seq_len": 3000, "n_classes": 2},
}

#: Real UEA sets shipped inside the ``aeon`` wheel (no download needed).
OFFLINE_DATASETS: tuple[str, ...] = ("BasicMotions", "JapaneseVowels")

#: Known SHA-256 digests of the archive zips (none recorded yet: the digest of every download
#: is stored in ``<zip>.sha256`` and in the manifest; pass ``--sha256`` to enforce one).
KNOWN_SHA256: dict[str, str] = {}


def uea_url(name: str, base_url: str = UEA_BASE_URL) -> str:
    """Archive URL of dataset ``name`` (``<base_url>/<name>.zip``)."""
    return f"{base_url.rstrip('/')}/{name}.zip"


def raw_dir(root: str | os.PathLike[str] = DEFAULT_ROOT) -> Path:
    """``<root>/raw/UEA``."""
    return Path(root) / "raw" / "UEA"


def download_uea(
    name: str,
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    *,
    base_url: str = UEA_BASE_URL,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Download and safely extract ``<name>.zip``; return the folder holding the ``.ts`` files.

    The zip stays in ``<root>/raw/UEA/`` (so re-running is instant); its SHA-256 is checked
    against ``sha256`` (or :data:`KNOWN_SHA256`) when one is known.
    """
    if name in OFFLINE_DATASETS:
        raise ValueError(
            f"{name} ships with the aeon package and needs no download; run "
            f"`python data_dir/process_uea.py --dataset {name}`"
        )
    archive = download(
        uea_url(name, base_url),
        raw_dir(root) / f"{name}.zip",
        sha256=sha256 or KNOWN_SHA256.get(name),
        progress=progress,
    )
    folder = raw_dir(root) / name
    safe_extract(archive, folder)
    find_ts_files(folder, name, root)  # fail now if the archive has no .ts files
    return folder


def aeon_data_dir(name: str) -> Path:
    """Folder of an offline dataset inside the installed ``aeon`` package (not imported)."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            f"UEA dataset {name!r} is read from the `aeon` package, which is not installed; "
            "install it with `pip install 'rhel-lib[data]'` (or `pip install aeon`)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name


def find_ts_files(
    folder: str | os.PathLike[str], name: str, root: str | os.PathLike[str] = DEFAULT_ROOT
) -> tuple[Path, Path]:
    """Locate ``<name>_TRAIN.ts`` and ``<name>_TEST.ts`` anywhere below ``folder``.

    Raises :class:`DatasetNotFoundError` naming the fetch command (for data root ``root``).
    """
    folder = Path(folder)
    found = []
    for split in ("TRAIN", "TEST"):
        matches = sorted(folder.rglob(f"{name}_{split}.ts")) if folder.is_dir() else []
        if not matches:
            raise DatasetNotFoundError(
                f"UEA dataset {name!r}: {name}_{split}.ts not found below {folder}. "
                f"Fetch it with:\n    {fetch_command('UEA', name, root)}"
            )
        found.append(matches[0])
    return found[0], found[1]


@dataclass(frozen=True)
class TsData:
    """Contents of one ``.ts`` file.

    Attributes:
        series: one float64 array ``(C, L_i)`` per case (lengths may differ).
        labels: the class label string of every case.
        class_names: class labels in the order of the ``@classLabel`` header.
        header: the other ``@key value`` header entries (lower-case keys).
    """

    series: list[np.ndarray]
    labels: list[str]
    class_names: list[str]
    header: dict[str, str]


def read_ts(path: str | os.PathLike[str]) -> TsData:
    """Parse a classification ``.ts`` file of the UEA/UCR archive (sktime/aeon format).

    Supports ``?`` for missing values (read as NaN) and unequal lengths. Time-stamped files
    (``@timeStamps true``) are refused with a ValueError.
    """
    path = Path(path)
    header: dict[str, str] = {}
    class_names: list[str] = []
    has_labels = True
    series: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    with open(path, encoding="utf-8") as handle:
        for line_no, raw_line in enumerate(handle, start=1):
            line = raw_line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if not line.startswith("@"):
                    raise ValueError(f"{path}:{line_no}: expected a header line, got {line[:40]!r}")
                key, _, value = line[1:].partition(" ")
                key = key.lower()
                if key == "data":
                    in_data = True
                    continue
                if key == "classlabel":
                    tokens = value.split()
                    has_labels = bool(tokens) and tokens[0].lower() == "true"
                    class_names = tokens[1:] if has_labels else []
                elif key == "timestamps" and value.strip().lower() == "true":
                    raise ValueError(f"{path}: time-stamped .ts files are not supported")
                header[key] = value.strip()
                continue
            fields = line.split(":")
            if has_labels:
                labels.append(fields[-1].strip())
                fields = fields[:-1]
            try:
                channels = [
                    np.array(f.replace("?", "nan").split(","), dtype=np.float64) for f in fields
                ]
            except ValueError as err:
                raise ValueError(f"{path}:{line_no}: cannot parse values ({err})") from err
            lengths = {len(c) for c in channels}
            if len(lengths) != 1:
                raise ValueError(f"{path}:{line_no}: channels of one case differ in length")
            series.append(np.stack(channels))
    if not in_data:
        raise ValueError(f"{path}: no @data section")
    if not series:
        raise ValueError(f"{path}: no cases after @data")
    n_channels = {s.shape[0] for s in series}
    if len(n_channels) != 1:
        raise ValueError(f"{path}: cases have different numbers of channels {sorted(n_channels)}")
    if "dimensions" in header and int(header["dimensions"]) != series[0].shape[0]:
        raise ValueError(
            f"{path}: header says {header['dimensions']} dimensions, data has {series[0].shape[0]}"
        )
    if not has_labels:
        raise ValueError(
            f"{path}: no class labels (@classLabel false); regression is not supported"
        )
    return TsData(series=series, labels=labels, class_names=class_names, header=header)


def _fill_missing(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Forward- then backward-fill NaNs along time of ``x`` (C, L); all-NaN channels -> 0."""
    mask = np.isnan(x)
    count = int(mask.sum())
    if count == 0:
        return x, 0
    x = x.copy()
    for c in range(x.shape[0]):
        row = x[c]
        valid = np.flatnonzero(~np.isnan(row))
        if valid.size == 0:
            row[:] = 0.0
            continue
        idx = np.where(~np.isnan(row), np.arange(row.size), 0)
        np.maximum.accumulate(idx, out=idx)
        row[:] = row[idx]
        row[: valid[0]] = row[valid[0]]
    return x, count


def pad_series(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``(C, L_i)`` series into channels-last float32 ``(N, L_max, C)``.

    Shorter series are padded at the end by repeating their last value (edge padding).

    Returns:
        ``(X, lengths)`` with ``X`` float32 ``(N, L_max, C)`` and ``lengths`` int64 ``(N,)``.
    """
    lengths = np.array([s.shape[1] for s in series], dtype=np.int64)
    if np.any(lengths == 0):
        raise ValueError("cannot pad an empty series")
    n_channels = series[0].shape[0]
    X = np.empty((len(series), int(lengths.max()), n_channels), dtype=np.float32)
    for i, s in enumerate(series):
        L = s.shape[1]
        X[i, :L] = s.T
        X[i, L:] = s[:, -1]
    return X, lengths


def _channel_stats(X: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std (float64, ``(C,)``) over the valid steps of ``X`` (N, L, C)."""
    valid = np.arange(X.shape[1])[None, :] < lengths[:, None]
    values = X[valid].astype(np.float64)  # (sum lengths, C)
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def process_uea(
    name: str,
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    *,
    source_dir: str | os.PathLike[str] | None = None,
    normalize: bool = False,
) -> Path:
    """Process UEA dataset ``name`` into ``<root>/processed/UEA/<name>/``.

    Args:
        name: dataset name, e.g. ``"Heartbeat"`` or ``"BasicMotions"``.
        root: data root.
        source_dir: folder with ``<name>_TRAIN.ts``/``_TEST.ts``; default: the aeon package for
            :data:`OFFLINE_DATASETS`, else ``<root>/raw/UEA/<name>`` (see :func:`download_uea`).
        normalize: standardise each channel with the original train part's statistics.

    Returns:
        The processed dataset folder.
    """
    if source_dir is None:
        if name in OFFLINE_DATASETS:
            source_dir = aeon_data_dir(name)
            source_kind = "aeon-package"
        else:
            source_dir = raw_dir(root) / name
            source_kind = "download"
    else:
        source_kind = "folder"
    train_path, test_path = find_ts_files(source_dir, name, root)
    train, test = read_ts(train_path), read_ts(test_path)
    class_names = train.class_names or sorted(set(train.labels) | set(test.labels))
    if test.class_names and test.class_names != class_names:
        raise ValueError(f"UEA {name}: train and test files list different classes")
    index = {c: i for i, c in enumerate(class_names)}
    lower = {c.lower(): i for i, c in enumerate(class_names)}
    if len(lower) == len(index):  # tolerate a header/data case mismatch ("Walking"/"walking")
        for lab in set(train.labels + test.labels) - set(index):
            if lab.lower() in lower:
                index[lab] = lower[lab.lower()]
    unknown = sorted({lab for lab in train.labels + test.labels if lab not in index})
    if unknown:
        raise ValueError(f"UEA {name}: labels {unknown} are not in the header {class_names}")

    filled = [_fill_missing(s) for s in train.series + test.series]
    n_missing = sum(c for _, c in filled)
    X, lengths = pad_series([s for s, _ in filled])
    y = np.array([index[lab] for lab in train.labels + test.labels], dtype=np.int64)
    n_train = len(train.series)
    orig_train_idx = np.arange(n_train, dtype=np.int64)
    orig_test_idx = np.arange(n_train, X.shape[0], dtype=np.int64)

    mean, std = _channel_stats(X[:n_train], lengths[:n_train])
    if normalize:
        X = ((X - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32)

    expected = PAPER_DATASETS.get(name)
    if expected is not None and (
        X.shape[1] != expected["seq_len"] or len(class_names) != expected["n_classes"]
    ):
        warnings.warn(
            f"UEA {name}: got length {X.shape[1]} and {len(class_names)} classes, the paper "
            f"lists {expected['seq_len']} and {expected['n_classes']}",
            stacklevel=2,
        )

    source: dict[str, Any] = {
        "kind": source_kind,
        "files": {p.name: sha256_file(p) for p in (train_path, test_path)},
    }
    if source_kind == "download":
        archive = raw_dir(root) / f"{name}.zip"
        source["url"] = uea_url(name)
        if archive.is_file():
            source["archive_sha256"] = sha256_file(archive)
    equal = bool(np.all(lengths == lengths[0]))
    manifest = {
        "task": "classification",
        "class_names": class_names,
        "n_classes": len(class_names),
        "source": source,
        "orig_split_sizes": {"train": n_train, "test": int(X.shape[0] - n_train)},
        "equal_length": equal,
        "lengths": {"min": int(lengths.min()), "max": int(lengths.max())},
        "padding": (
            "none (all series have the same length)"
            if equal
            else "edge: each series padded at the end to the longest length by repeating its "
            "last value; true lengths in the `lengths` array"
        ),
        "missing_values_filled": n_missing,
        "normalization": (
            "per-channel z-score with original-train statistics" if normalize else "none (raw)"
        ),
        "train_channel_mean": mean.tolist(),
        "train_channel_std": std.tolist(),
        "split": {
            "kind": "random",
            "fractions": [0.7, 0.15, 0.15],
            "how": "rhel_lib.data.make_splits(n_samples, seed)",
        },
        "paper_expected": expected,
    }
    arrays = {
        "X": X,
        "y": y,
        "lengths": lengths,
        "orig_train_idx": orig_train_idx,
        "orig_test_idx": orig_test_idx,
    }
    return save_processed("UEA", name, root, arrays, manifest)
