"""Heidelberg Digits (HD, zenkelab.org): download and log-mel features (SPEC section 6).

Raw: ``<root>/raw/Heidelberg/hd_audio.tar.gz`` extracted into ``<root>/raw/Heidelberg/hd_audio``.
The archive holds ``audio/lang-<english|german>_speaker-XX_trial-Y_digit-D.flac`` (48 kHz)
and the published split ``train_filenames.txt`` / ``test_filenames.txt`` (one file name per
line). The files are located by searching below the extraction folder, so an extra top-level
folder in the archive does not matter.

Features (parameters of :func:`process_heidelberg`): mono audio resampled to ``target_sr``
(16 kHz), power mel spectrogram (``n_mels`` = 40 bands, 25 ms Hann window, ``hop_ms`` = 10 ms
hop, centred frames), natural log of ``mel + 1e-6``; then padded (with the log of silence,
``log(1e-6)``) or truncated at the end to ``n_frames`` = 150 frames (1.5 s). The true number of
frames (capped at ``n_frames``) is kept in ``lengths``. With ``normalize=True`` (default) every
mel band is standardised with the mean/std of the valid frames of the published *train* set
(statistics in the manifest). Labels: ``digit + 10 * (language == "german")`` (20 classes).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rhel_lib.data.download import download, safe_extract, sha256_file
from rhel_lib.data.store import (
    DEFAULT_ROOT,
    DatasetCorruptError,
    DatasetNotFoundError,
    fetch_command,
    save_processed,
)

__all__ = [
    "CLASS_NAMES",
    "HD_NAME",
    "HD_URL",
    "HdFile",
    "download_heidelberg",
    "find_hd_layout",
    "fix_frames",
    "log_mel",
    "parse_hd_filename",
    "process_heidelberg",
]

HD_URL = "https://zenkelab.org/datasets/hd_audio.tar.gz"
HD_NAME = "HeidelbergDigits"
LANGUAGES = ("english", "german")
CLASS_NAMES: tuple[str, ...] = tuple(f"{lang}-{d}" for lang in LANGUAGES for d in range(10))
LOG_EPS = 1e-6
#: SHA-256 of hd_audio.tar.gz if known (none recorded yet; pass ``--sha256`` to enforce one).
KNOWN_SHA256: str | None = None

_NAME_RE = re.compile(
    r"^lang-(?P<lang>english|german)_speaker-(?P<speaker>\d+)_trial-(?P<trial>\d+)"
    r"_digit-(?P<digit>\d)\.flac$"
)


def raw_dir(root: str | os.PathLike[str] = DEFAULT_ROOT) -> Path:
    """``<root>/raw/Heidelberg``."""
    return Path(root) / "raw" / "Heidelberg"


@dataclass(frozen=True)
class HdFile:
    """Metadata parsed from an HD file name."""

    name: str
    language: str
    speaker: int
    trial: int
    digit: int

    @property
    def label(self) -> int:
        """Class id in ``0..19``: ``digit + 10 * (language == "german")``."""
        return self.digit + 10 * LANGUAGES.index(self.language)


def parse_hd_filename(name: str) -> HdFile:
    """Parse ``lang-<english|german>_speaker-XX_trial-Y_digit-D.flac`` (ValueError if not)."""
    base = name.strip().replace("\\", "/").rsplit("/", 1)[-1]
    match = _NAME_RE.match(base)
    if match is None:
        raise ValueError(f"not a Heidelberg Digits file name: {name!r}")
    return HdFile(
        name=base,
        language=match["lang"],
        speaker=int(match["speaker"]),
        trial=int(match["trial"]),
        digit=int(match["digit"]),
    )


def download_heidelberg(
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    *,
    url: str = HD_URL,
    sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Download ``hd_audio.tar.gz`` (resumable, checksummed) and extract it safely.

    Returns the extraction folder ``<root>/raw/Heidelberg/hd_audio``.
    """
    archive = download(
        url, raw_dir(root) / "hd_audio.tar.gz", sha256=sha256 or KNOWN_SHA256, progress=progress
    )
    folder = raw_dir(root) / "hd_audio"
    safe_extract(archive, folder)
    find_hd_layout(folder, root)
    return folder


def find_hd_layout(
    folder: str | os.PathLike[str], root: str | os.PathLike[str] = DEFAULT_ROOT
) -> tuple[Path, Path, Path]:
    """Return ``(audio_dir, train_list, test_list)`` found below ``folder``."""
    folder = Path(folder)
    lists = []
    for split in ("train", "test"):
        matches = sorted(folder.rglob(f"{split}_filenames.txt")) if folder.is_dir() else []
        if not matches:
            raise DatasetNotFoundError(
                f"Heidelberg Digits: {split}_filenames.txt not found below {folder}. "
                f"Fetch it with:\n    {fetch_command('Heidelberg', HD_NAME, root)}"
            )
        lists.append(matches[0])
    audio = lists[0].parent / "audio"
    if not audio.is_dir():
        candidates = sorted({p.parent for p in folder.rglob("lang-*.flac")})
        if not candidates:
            raise DatasetNotFoundError(
                f"Heidelberg Digits: no audio/lang-*.flac below {folder}. Fetch it with:\n"
                f"    {fetch_command('Heidelberg', HD_NAME, root)}"
            )
        audio = candidates[0]
    return audio, lists[0], lists[1]


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _import_librosa() -> Any:
    """Import librosa, turning an unusable installation into a clear error."""
    try:
        import librosa

        librosa.feature.melspectrogram  # noqa: B018 - forces the lazy (numba) submodules
        librosa.resample  # noqa: B018
    except ImportError as err:
        raise ImportError(
            "Heidelberg Digits features need librosa and soundfile: pip install 'rhel-lib[data]'"
        ) from err
    except AttributeError as err:  # numba compiled against another numpy
        import importlib.metadata as md

        versions = {p: md.version(p) for p in ("numba", "numpy")}
        raise RuntimeError(
            f"librosa cannot be loaded: numba {versions['numba']} does not support numpy "
            f"{versions['numpy']} ({err}); install a numpy that this numba supports "
            "(e.g. `pip install 'numpy<2.4'`) or a newer numba"
        ) from err
    return librosa


def log_mel(
    wave: np.ndarray,
    sr: int,
    *,
    target_sr: int = 16_000,
    n_mels: int = 40,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    fmin: float = 20.0,
    fmax: float | None = None,
) -> np.ndarray:
    """Log-mel spectrogram of one waveform.

    Args:
        wave: float ``(S,)`` mono or ``(S, channels)`` samples (channels are averaged).
        sr: sampling rate of ``wave`` in Hz; resampled to ``target_sr`` (soxr) if different.
        target_sr: analysis sampling rate.
        n_mels: number of mel bands.
        win_ms, hop_ms: analysis window and hop in milliseconds.
        fmin, fmax: mel filter range (``fmax`` default ``target_sr / 2``).

    Returns:
        float32 ``(frames, n_mels)`` with ``frames = 1 + S' // hop`` (``S'`` resampled
        length), values ``log(mel_power + 1e-6)``.
    """
    librosa = _import_librosa()
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)
    if wave.ndim != 1:
        raise ValueError(f"wave must be (samples,) or (samples, channels), got {wave.shape}")
    if sr != target_sr:
        wave = librosa.resample(wave, orig_sr=sr, target_sr=target_sr, res_type="soxr_hq")
    win = int(round(win_ms * target_sr / 1000))
    hop = int(round(hop_ms * target_sr / 1000))
    n_fft = 1 << (win - 1).bit_length()
    if wave.size == 0:
        return np.zeros((0, n_mels), dtype=np.float32)
    if wave.size < n_fft:  # very short clip: zero-pad to one analysis window
        wave = np.pad(wave, (0, n_fft - wave.size))
    mel = librosa.feature.melspectrogram(
        y=wave,
        sr=target_sr,
        n_fft=n_fft,
        hop_length=hop,
        win_length=win,
        window="hann",
        center=True,
        power=2.0,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax,
    )
    return np.log(mel + LOG_EPS).T.astype(np.float32)


def fix_frames(features: np.ndarray, n_frames: int, pad_value: float) -> tuple[np.ndarray, int]:
    """Pad (with ``pad_value``) or truncate ``features`` ``(F, M)`` at the end to ``n_frames``.

    Returns ``(float32 (n_frames, M), min(F, n_frames))``.
    """
    frames, n_mels = features.shape
    out = np.full((n_frames, n_mels), pad_value, dtype=np.float32)
    keep = min(frames, n_frames)
    out[:keep] = features[:keep]
    return out, keep


def process_heidelberg(
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    *,
    source_dir: str | os.PathLike[str] | None = None,
    n_mels: int = 40,
    n_frames: int = 150,
    target_sr: int = 16_000,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    normalize: bool = True,
    progress: bool = True,
    name: str = HD_NAME,
) -> Path:
    """Compute log-mel features for the published train/test lists.

    Args:
        root: data root; output in ``<root>/processed/Heidelberg/<name>/``.
        source_dir: extraction folder (default ``<root>/raw/Heidelberg/hd_audio``).
        n_mels, target_sr, win_ms, hop_ms: see :func:`log_mel`.
        n_frames: frames per sample after padding/truncation.
        normalize: standardise each mel band with published-train statistics.
        progress: tqdm progress bar.
        name: dataset name of the output folder.

    Returns:
        The processed folder. Arrays: ``X`` float32 ``(N, n_frames, n_mels)``, ``y`` int64
        ``(N,)`` in ``0..19``, ``lengths``/``speaker``/``language``/``digit`` int64 ``(N,)``;
        train files first (``orig_train_idx``), then test files (``orig_test_idx``).
    """
    import soundfile
    from tqdm.auto import tqdm

    _import_librosa()  # fail early on a broken audio stack
    if n_frames <= 0 or n_mels <= 0:
        raise ValueError(f"n_frames and n_mels must be positive, got {n_frames}, {n_mels}")
    source_dir = raw_dir(root) / "hd_audio" if source_dir is None else Path(source_dir)
    audio_dir, train_list, test_list = find_hd_layout(source_dir, root)
    train_names, test_names = _read_list(train_list), _read_list(test_list)
    entries = [parse_hd_filename(n) for n in train_names + test_names]
    missing = [e.name for e in entries if not (audio_dir / e.name).is_file()]
    if missing:
        raise DatasetCorruptError(
            f"Heidelberg Digits: {len(missing)} listed files are missing in {audio_dir} "
            f"(first: {missing[0]}). Delete {source_dir} and fetch again with:\n"
            f"    {fetch_command('Heidelberg', name, root)}"
        )

    pad_value = float(np.log(LOG_EPS))
    X = np.empty((len(entries), n_frames, n_mels), dtype=np.float32)
    lengths = np.empty(len(entries), dtype=np.int64)
    raw_frames = np.empty(len(entries), dtype=np.int64)
    sample_rates: set[int] = set()
    for i, entry in enumerate(tqdm(entries, desc="log-mel", disable=not progress)):
        wave, sr = soundfile.read(audio_dir / entry.name, dtype="float32", always_2d=False)
        sample_rates.add(int(sr))
        feats = log_mel(wave, sr, target_sr=target_sr, n_mels=n_mels, win_ms=win_ms, hop_ms=hop_ms)
        raw_frames[i] = feats.shape[0]
        X[i], lengths[i] = fix_frames(feats, n_frames, pad_value)

    n_train = len(train_names)
    valid = np.arange(n_frames)[None, :] < lengths[:n_train, None]
    train_frames = X[:n_train][valid].astype(np.float64)
    mean = train_frames.mean(axis=0)
    std = train_frames.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    if normalize:
        X = ((X - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32)

    archive = raw_dir(root) / "hd_audio.tar.gz"
    source: dict[str, Any] = {
        "kind": "download",
        "url": HD_URL,
        "lists": {p.name: sha256_file(p) for p in (train_list, test_list)},
        "audio_sample_rates_hz": sorted(sample_rates),
    }
    if archive.is_file():
        source["archive_sha256"] = sha256_file(archive)
    manifest = {
        "task": "classification",
        "class_names": list(CLASS_NAMES),
        "n_classes": len(CLASS_NAMES),
        "label": "digit + 10 * (language == 'german')",
        "features": {
            "kind": "log-mel",
            "library": "librosa",
            "target_sr": target_sr,
            "n_mels": n_mels,
            "win_ms": win_ms,
            "hop_ms": hop_ms,
            "fmin": 20.0,
            "log": f"ln(mel_power + {LOG_EPS})",
            "n_frames": n_frames,
            "padding": f"at the end with ln({LOG_EPS}) (silence) before normalisation; "
            "truncation at the end",
            "frames_before_fixing": {
                "min": int(raw_frames.min()),
                "max": int(raw_frames.max()),
                "truncated": int((raw_frames > n_frames).sum()),
            },
        },
        "normalization": (
            "per mel band z-score with published-train statistics over valid frames"
            if normalize
            else "none"
        ),
        "train_band_mean": mean.tolist(),
        "train_band_std": std.tolist(),
        "source": source,
        "orig_split_sizes": {"train": n_train, "test": len(test_names)},
        "split": {
            "kind": "orig_test",
            "how": "test = published test list; published train list split by seed into "
            "train/val (ProcessedDataset.splits)",
        },
    }
    arrays = {
        "X": X,
        "y": np.array([e.label for e in entries], dtype=np.int64),
        "lengths": lengths,
        "speaker": np.array([e.speaker for e in entries], dtype=np.int64),
        "language": np.array([LANGUAGES.index(e.language) for e in entries], dtype=np.int64),
        "digit": np.array([e.digit for e in entries], dtype=np.int64),
        "orig_train_idx": np.arange(n_train, dtype=np.int64),
        "orig_test_idx": np.arange(n_train, len(entries), dtype=np.int64),
    }
    return save_processed("Heidelberg", name, root, arrays, manifest)
