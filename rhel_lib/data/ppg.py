"""PPG-DaLiA (UCI dataset 495): download, raw subject reading and windowing (SPEC section 7).

Raw: ``<root>/raw/PPG/ppg+dalia.zip`` from UCI; only the subject pickles
``PPG_FieldStudy/S{i}/S{i}.pkl`` (i = 1..15) are extracted (from the outer zip, or from a
nested ``PPG_FieldStudy.zip`` inside it) into ``<root>/raw/PPG/extracted/``.

Processing of every subject (all parameters of :func:`process_ppg`):

1. wrist ``ACC`` (32 Hz, 3 channels) repeated x2, ``BVP`` (64 Hz, 1 channel), ``EDA`` and
   ``TEMP`` (4 Hz, 1 channel each) repeated x16 -> 6 channels at 64 Hz, in the order
   ``ACC_x, ACC_y, ACC_z, BVP, EDA, TEMP``; truncated to the shortest of the four streams;
2. each channel min-max scaled to [-1, 1] **per subject** (over that subject's whole
   recording; a constant channel becomes 0);
3. heart-rate labels (one every 2 s, each over an 8 s window) get their first value prepended
   3 times, so that aligned label ``j`` belongs to samples ``[128 j, 128 (j + 1))``: the label
   of the 8 s ECG window that *ends* at the end of that 2 s segment (with ``n`` original
   labels and ``T`` seconds, ``n = T/2 - 3``, so the aligned sequence covers the recording);
4. the recording (cut to a whole number of 128-step segments) is cut into windows of
   ``window`` = 49,920 steps with stride ``stride`` (default: ``window``, i.e. non-overlapping;
   the incomplete tail is dropped); each window gets ``window / 128`` = 390 labels in bpm
   (float32, not scaled);
5. fixed subject-based split (default: train S1-S11, validation S12-S13, test S14-S15),
   stored as ``train_idx``/``val_idx``/``test_idx``.

The raw pickles are the original distribution format and are read with a restricted
unpickler that only admits numpy arrays and builtin containers; processed data are ``.npz``.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from collections.abc import Mapping, Sequence
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
    "CHANNEL_NAMES",
    "DEFAULT_SPLIT",
    "LABEL_STEP",
    "PPG_NAME",
    "PPG_URL",
    "WINDOW",
    "align_labels",
    "download_ppg",
    "extract_ppg_archive",
    "find_subject_files",
    "load_subject_pickle",
    "minmax_scale",
    "process_ppg",
    "subject_signals",
    "window_subject",
]

PPG_URL = "https://archive.ics.uci.edu/static/public/495/ppg+dalia.zip"
PPG_NAME = "PPGDaLiA"
FS = 64
WINDOW = 49_920
LABEL_STEP = 128
N_PREPEND = 3
CHANNEL_NAMES = ("ACC_x", "ACC_y", "ACC_z", "BVP", "EDA", "TEMP")
DEFAULT_SPLIT: dict[str, tuple[int, ...]] = {
    "train": tuple(range(1, 12)),
    "val": (12, 13),
    "test": (14, 15),
}
#: SHA-256 of the UCI zip if known (none recorded yet; pass ``--sha256`` to enforce one).
KNOWN_SHA256: str | None = None

_SUBJECT_RE = re.compile(r"^S(\d+)\.pkl$")


def raw_dir(root: str | os.PathLike[str] = DEFAULT_ROOT) -> Path:
    """``<root>/raw/PPG``."""
    return Path(root) / "raw" / "PPG"


def _wanted(name: str) -> bool:
    """Archive members worth extracting: subject pickles and nested (non-E4) zips."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return bool(_SUBJECT_RE.match(base)) or (base.endswith(".zip") and "_E4" not in base)


def extract_ppg_archive(archive: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Extract the subject pickles of the UCI archive into ``target`` (safe extraction).

    Nested zips (e.g. ``PPG_FieldStudy.zip`` inside ``ppg+dalia.zip``) are opened up to two
    levels deep. Returns ``target``.
    """
    target = Path(target)

    def _extract(arch: Path, dest: Path, depth: int) -> None:
        for path in safe_extract(arch, dest, include=_wanted):
            if path.suffix == ".zip" and depth < 2:
                _extract(path, path.with_suffix(""), depth + 1)
                path.unlink()

    _extract(Path(archive), target, 0)
    return target


def download_ppg(
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    *,
    url: str = PPG_URL,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Download the UCI archive (resumable, checksummed) and extract the subject pickles.

    Returns the extraction folder ``<root>/raw/PPG/extracted``.
    """
    archive = download(
        url, raw_dir(root) / "ppg+dalia.zip", sha256=sha256 or KNOWN_SHA256, progress=progress
    )
    folder = extract_ppg_archive(archive, raw_dir(root) / "extracted")
    find_subject_files(folder, root)  # fail now if no subject was found
    return folder


def find_subject_files(
    folder: str | os.PathLike[str], root: str | os.PathLike[str] = DEFAULT_ROOT
) -> dict[int, Path]:
    """Map subject id ``i`` -> path of ``S{i}/S{i}.pkl`` found anywhere below ``folder``."""
    folder = Path(folder)
    found: dict[int, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.rglob("S*.pkl")):
            match = _SUBJECT_RE.match(path.name)
            if match and path.parent.name == f"S{match.group(1)}":
                found.setdefault(int(match.group(1)), path)
    if not found:
        raise DatasetNotFoundError(
            f"PPG-DaLiA: no PPG_FieldStudy/S<i>/S<i>.pkl below {folder}. Fetch it with:\n"
            f"    {fetch_command('PPG', PPG_NAME, root)}"
        )
    return dict(sorted(found.items()))


class _RawUnpickler(pickle.Unpickler):
    """Unpickler for the raw DaLiA files: numpy arrays/scalars and builtin values only."""

    _NUMPY = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
    _BUILTINS = frozenset(
        "dict list tuple set frozenset int float complex str bytes bytearray bool object".split()
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._NUMPY:
            return super().find_class(module, name)
        if module == "builtins" and name in self._BUILTINS:
            return super().find_class(module, name)
        if (module, name) in {("copyreg", "_reconstructor"), ("_codecs", "encode")}:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name} from a PPG-DaLiA pickle (only numpy arrays and "
            "builtin containers are expected)"
        )


def load_subject_pickle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one raw ``S{i}.pkl`` (Python 2 pickle, ``latin1``) with a restricted unpickler."""
    data = Path(path).read_bytes()
    try:
        obj = _RawUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
        raise ValueError(f"PPG-DaLiA: cannot read raw subject file {path}: {err}") from err
    if not isinstance(obj, dict):
        raise ValueError(f"PPG-DaLiA: {path} does not contain a dict")
    return obj


def _stream(wrist: Mapping[str, Any], key: str, channels: int, where: str) -> np.ndarray:
    if key not in wrist:
        raise ValueError(f"PPG-DaLiA {where}: signal['wrist'] has no {key!r}")
    arr = np.asarray(wrist[key], dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] != channels:
        raise ValueError(
            f"PPG-DaLiA {where}: wrist {key} must have shape (T, {channels}), got {arr.shape}"
        )
    return arr


def subject_signals(raw: Mapping[str, Any], where: str = "subject") -> np.ndarray:
    """Six 64 Hz channels of one subject: float64 ``(T, 6)``, not yet scaled.

    ACC (32 Hz) is repeated x2, EDA and TEMP (4 Hz) x16; all streams are truncated to the
    shortest. Channel order: :data:`CHANNEL_NAMES`.
    """
    try:
        wrist = raw["signal"]["wrist"]
    except (KeyError, TypeError) as err:
        raise ValueError(f"PPG-DaLiA {where}: no signal['wrist'] entry") from err
    acc = np.repeat(_stream(wrist, "ACC", 3, where), 2, axis=0)
    bvp = _stream(wrist, "BVP", 1, where)
    eda = np.repeat(_stream(wrist, "EDA", 1, where), 16, axis=0)
    temp = np.repeat(_stream(wrist, "TEMP", 1, where), 16, axis=0)
    T = min(len(acc), len(bvp), len(eda), len(temp))
    return np.concatenate([acc[:T], bvp[:T], eda[:T], temp[:T]], axis=1)


def align_labels(labels: np.ndarray, n_prepend: int = N_PREPEND) -> np.ndarray:
    """Prepend the first heart-rate value ``n_prepend`` times: float64 ``(n + n_prepend,)``."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if labels.size == 0:
        raise ValueError("PPG-DaLiA: empty label array")
    return np.concatenate([np.full(n_prepend, labels[0]), labels])


def minmax_scale(x: np.ndarray) -> np.ndarray:
    """Scale every column of ``x`` (T, C) linearly to [-1, 1]; constant columns -> 0."""
    lo = x.min(axis=0)
    hi = x.max(axis=0)
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    out = 2.0 * (x - lo) / safe - 1.0
    return np.where(span > 0, out, 0.0)


def window_subject(
    signals: np.ndarray,
    aligned_labels: np.ndarray,
    *,
    window: int = WINDOW,
    label_step: int = LABEL_STEP,
    stride: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut one subject into windows.

    Args:
        signals: ``(T, C)`` scaled signals at 64 Hz.
        aligned_labels: ``(n,)`` output of :func:`align_labels`; label ``j`` covers steps
            ``[j * label_step, (j + 1) * label_step)``.
        window: steps per window (multiple of ``label_step``).
        label_step: steps per label.
        stride: steps between window starts (multiple of ``label_step``); default ``window``.

    Returns:
        ``(X, Y, starts)``: float32 ``(W, window, C)``, float32 ``(W, window // label_step)``
        and int64 ``(W,)`` start steps. ``W`` may be 0.
    """
    stride = window if stride is None else stride
    if window <= 0 or label_step <= 0 or stride <= 0:
        raise ValueError("window, label_step and stride must be positive")
    if window % label_step or stride % label_step:
        raise ValueError(
            f"window ({window}) and stride ({stride}) must be multiples of label_step "
            f"({label_step})"
        )
    n_seg = min(signals.shape[0] // label_step, aligned_labels.shape[0])
    usable = n_seg * label_step
    starts = np.arange(0, max(usable - window + 1, 0), stride, dtype=np.int64)
    per = window // label_step
    X = np.zeros((starts.size, window, signals.shape[1]), dtype=np.float32)
    Y = np.zeros((starts.size, per), dtype=np.float32)
    for w, s in enumerate(starts):
        X[w] = signals[s : s + window]
        Y[w] = aligned_labels[s // label_step : s // label_step + per]
    return X, Y, starts


def process_ppg(
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    *,
    source_dir: str | os.PathLike[str] | None = None,
    window: int = WINDOW,
    label_step: int = LABEL_STEP,
    stride: int | None = None,
    split: Mapping[str, Sequence[int]] | None = None,
    name: str = PPG_NAME,
) -> Path:
    """Process the extracted subject pickles into ``<root>/processed/PPG/<name>/``.

    Args:
        root: data root.
        source_dir: folder holding ``S{i}/S{i}.pkl`` (default ``<root>/raw/PPG/extracted``).
        window, label_step, stride: see :func:`window_subject`.
        split: subject ids per split, keys ``train``/``val``/``test``
            (default :data:`DEFAULT_SPLIT`). Every subject found must be in exactly one split.
        name: dataset name of the output folder.

    Returns:
        The processed dataset folder. Arrays: ``X`` float32 ``(N, window, 6)``, ``y`` float32
        ``(N, window // label_step)`` (bpm), ``subject`` and ``start`` int64 ``(N,)``,
        ``train_idx``/``val_idx``/``test_idx`` (fixed split); ``orig_*_idx`` are empty.
    """
    split = dict(DEFAULT_SPLIT if split is None else split)
    if set(split) != {"train", "val", "test"}:
        raise ValueError(f"split must have keys train, val, test; got {sorted(split)}")
    source_dir = raw_dir(root) / "extracted" if source_dir is None else Path(source_dir)
    files = find_subject_files(source_dir, root)
    assigned = {s: k for k, ids in split.items() for s in ids}
    unassigned = sorted(set(files) - set(assigned))
    if unassigned:
        raise ValueError(f"PPG-DaLiA: subjects {unassigned} are in no split of {split}")

    xs, ys, subjects, starts = [], [], [], []
    per_subject: dict[str, Any] = {}
    for sid, path in files.items():
        raw = load_subject_pickle(path)
        where = f"S{sid} ({path})"
        signals = minmax_scale(subject_signals(raw, where))
        if "label" not in raw:
            raise ValueError(f"PPG-DaLiA {where}: no 'label' entry")
        aligned = align_labels(raw["label"])
        X, Y, st = window_subject(
            signals, aligned, window=window, label_step=label_step, stride=stride
        )
        xs.append(X)
        ys.append(Y)
        subjects.append(np.full(len(X), sid, dtype=np.int64))
        starts.append(st)
        per_subject[f"S{sid}"] = {
            "steps": int(signals.shape[0]),
            "labels": int(np.asarray(raw["label"]).size),
            "windows": int(len(X)),
            "sha256": sha256_file(path),
        }
    X = np.concatenate(xs)
    y = np.concatenate(ys)
    subject = np.concatenate(subjects)
    if X.shape[0] == 0:
        raise ValueError(f"PPG-DaLiA: no window of {window} steps fits in any recording")
    idx = {
        k: np.flatnonzero(np.isin(subject, np.asarray(list(ids), dtype=np.int64))).astype(np.int64)
        for k, ids in split.items()
    }
    archive = raw_dir(root) / "ppg+dalia.zip"
    source: dict[str, Any] = {"kind": "download", "url": PPG_URL, "subjects": per_subject}
    if archive.is_file():
        source["archive_sha256"] = sha256_file(archive)
    train_y = y[idx["train"]] if idx["train"].size else y
    manifest = {
        "task": "regression",
        "target": "heart rate (bpm), one value per label_step steps",
        "class_names": [],
        "n_classes": 0,
        "channel_names": list(CHANNEL_NAMES),
        "sampling_rate_hz": FS,
        "window": window,
        "label_step": label_step,
        "stride": window if stride is None else stride,
        "labels_per_window": window // label_step,
        "label_alignment": f"first label prepended {N_PREPEND}x; label j covers steps "
        "[j*label_step, (j+1)*label_step) of the recording",
        "scaling": "per subject, per channel min-max to [-1, 1] over the whole recording",
        "resampling": "ACC x2, BVP x1, EDA x16, TEMP x16 (sample repetition), truncated to "
        "the shortest stream",
        "source": source,
        "split": {
            "kind": "fixed",
            "by": "subject",
            "subjects": {k: sorted(int(s) for s in v) for k, v in split.items()},
            "sizes": {k: int(v.size) for k, v in idx.items()},
        },
        "train_target_stats": {
            "mean": float(train_y.mean()),
            "std": float(train_y.std()),
            "min": float(train_y.min()),
            "max": float(train_y.max()),
        },
    }
    arrays = {
        "X": X,
        "y": y,
        "subject": subject,
        "start": np.concatenate(starts),
        "train_idx": idx["train"],
        "val_idx": idx["val"],
        "test_idx": idx["test"],
        "orig_train_idx": np.zeros(0, dtype=np.int64),
        "orig_test_idx": np.zeros(0, dtype=np.int64),
    }
    return save_processed("PPG", name, root, arrays, manifest)
