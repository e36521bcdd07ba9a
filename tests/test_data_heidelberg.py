"""Heidelberg Digits: generated FLAC files in the real layout, served from 127.0.0.1."""

from __future__ import annotations

import io

import numpy as np
import pytest

from rhel_lib.data import DatasetCorruptError, load_processed
from rhel_lib.data.heidelberg import (
    CLASS_NAMES,
    download_heidelberg,
    fix_frames,
    log_mel,
    parse_hd_filename,
    process_heidelberg,
)

try:
    from data_fixtures import serve_files, tar_gz_bytes
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import serve_files, tar_gz_bytes

SR = 48_000
# (file name, tone frequency in Hz, duration in s); the last train file is longer than
# n_frames * hop (truncated), the others shorter (padded)
TRAIN = [
    ("lang-english_speaker-00_trial-0_digit-0.flac", 300.0, 0.30),
    ("lang-english_speaker-01_trial-3_digit-7.flac", 700.0, 0.20),
    ("lang-german_speaker-02_trial-1_digit-3.flac", 1500.0, 0.25),
    ("lang-german_speaker-03_trial-0_digit-9.flac", 3000.0, 0.80),
]
TEST = [
    ("lang-german_speaker-04_trial-2_digit-0.flac", 500.0, 0.30),
    ("lang-english_speaker-05_trial-0_digit-5.flac", 2200.0, 0.15),
]
EXTRA = ("lang-english_speaker-09_trial-9_digit-1.flac", 400.0, 0.1)  # in no list


def _flac(freq: float, seconds: float) -> bytes:
    import soundfile

    t = np.arange(int(round(seconds * SR))) / SR
    wave = 0.5 * np.sin(2 * np.pi * freq * t)
    buf = io.BytesIO()
    soundfile.write(buf, wave, SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def hd_archive() -> bytes:
    members = {f"audio/{n}": _flac(f, s) for n, f, s in [*TRAIN, *TEST, EXTRA]}
    members["train_filenames.txt"] = ("\n".join(n for n, _, _ in TRAIN) + "\n").encode()
    members["test_filenames.txt"] = ("\n".join(n for n, _, _ in TEST) + "\n").encode()
    members["README.md"] = b"Heidelberg Digits (synthetic test copy)\n"
    return tar_gz_bytes(members)


@pytest.fixture(scope="module")
def hd_root(tmp_path_factory, hd_archive):
    root = tmp_path_factory.mktemp("hd_root")
    with serve_files({"/datasets/hd_audio.tar.gz": hd_archive}) as server:
        folder = download_heidelberg(
            root, url=server.url("/datasets/hd_audio.tar.gz"), progress=False
        )
        assert server.log == [("/datasets/hd_audio.tar.gz", None, 200)]
    assert (folder / "audio" / TRAIN[0][0]).is_file()
    process_heidelberg(root, n_frames=50, normalize=False, progress=False)
    return root


def test_labels_split_and_shapes(hd_root):
    ds = load_processed("Heidelberg", "HeidelbergDigits", hd_root)
    assert ds.X.shape == (6, 50, 40) and ds.X.dtype == np.float32
    np.testing.assert_array_equal(ds.y, [0, 7, 13, 19, 10, 5])
    assert ds.n_classes == 20 and ds.class_names[13] == "german-3" == CLASS_NAMES[13]
    np.testing.assert_array_equal(ds.orig_train_idx, [0, 1, 2, 3])
    np.testing.assert_array_equal(ds.orig_test_idx, [4, 5])
    np.testing.assert_array_equal(ds.extras["speaker"], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(ds.extras["language"], [0, 0, 1, 1, 1, 0])
    # frames = 1 + samples_16k // 160 (centred frames), capped at n_frames = 50
    np.testing.assert_array_equal(ds.lengths, [31, 21, 26, 50, 31, 16])
    assert ds.manifest["features"]["frames_before_fixing"]["truncated"] == 1
    assert ds.manifest["features"]["frames_before_fixing"]["max"] == 81
    assert ds.manifest["orig_split_sizes"] == {"train": 4, "test": 2}
    # published test set kept; train/val drawn from the published train list by seed
    tr, va, te = ds.splits(seed=0)
    np.testing.assert_array_equal(te, [4, 5])
    assert sorted([*tr, *va]) == [0, 1, 2, 3] and len(va) == 1


def test_features_follow_the_tone_and_padding(hd_root):
    import librosa

    ds = load_processed("Heidelberg", "HeidelbergDigits", hd_root)
    centres = librosa.mel_frequencies(n_mels=42, fmin=20.0, fmax=8000.0)[1:-1]
    for i, (_, freq, _) in enumerate([*TRAIN, *TEST]):
        L = ds.lengths[i]
        band = int(np.argmax(ds.X[i, 2 : L - 2].mean(axis=0)))  # skip edge frames
        expected = int(np.argmin(np.abs(centres - freq)))
        assert abs(band - expected) <= 1, (freq, band, expected)
        np.testing.assert_array_equal(ds.X[i, L:], np.float32(np.log(1e-6)))
    # a 0.5-amplitude tone carries far more energy than the silence floor
    assert ds.X[0, 10].max() > np.log(1e-6) + 10


def test_normalized_features(hd_root):
    process_heidelberg(hd_root, n_frames=50, normalize=True, progress=False, name="HDnorm")
    ds = load_processed("Heidelberg", "HDnorm", hd_root)
    valid = np.arange(50)[None, :] < ds.lengths[:4, None]
    train = ds.X[:4][valid].astype(np.float64)
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(train.std(axis=0), 1.0, atol=1e-3)
    assert len(ds.manifest["train_band_mean"]) == 40


def test_log_mel_and_fix_frames_direct():
    wave = np.zeros(16_000, dtype=np.float32)
    feats = log_mel(wave, 16_000, n_mels=20, hop_ms=10.0)
    assert feats.shape == (101, 20) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, np.log(1e-6), rtol=1e-6)
    stereo = np.stack([np.ones(800), -np.ones(800)], axis=1)  # averages to silence
    assert log_mel(stereo, 8_000, n_mels=10).shape == (11, 10)
    out, n = fix_frames(np.ones((3, 2), np.float32), 5, -9.0)
    assert n == 3 and out[:3].tolist() == [[1, 1]] * 3 and out[3:].tolist() == [[-9, -9]] * 2
    out, n = fix_frames(np.arange(12, dtype=np.float32).reshape(6, 2), 4, 0.0)
    assert n == 4 and out[-1].tolist() == [6, 7]


def test_filename_parsing_and_missing_audio(tmp_path, hd_root):
    f = parse_hd_filename("audio/lang-german_speaker-11_trial-37_digit-8.flac")
    assert (f.language, f.speaker, f.trial, f.digit, f.label) == ("german", 11, 37, 8, 18)
    with pytest.raises(ValueError, match="not a Heidelberg Digits file name"):
        parse_hd_filename("lang-french_speaker-01_trial-0_digit-1.flac")

    import shutil

    src = hd_root / "raw" / "Heidelberg" / "hd_audio"
    broken = tmp_path / "hd_audio"
    shutil.copytree(src, broken)
    (broken / "audio" / TEST[1][0]).unlink()
    with pytest.raises(DatasetCorruptError, match="1 listed files are missing"):
        process_heidelberg(tmp_path, source_dir=broken, progress=False)


def test_cli_script(tmp_path, hd_archive):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "data_dir" / "download_heidelberg.py"
    spec = importlib.util.spec_from_file_location("download_heidelberg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = str(tmp_path)
    with serve_files({"/hd_audio.tar.gz": hd_archive}) as server:
        url = server.url("/hd_audio.tar.gz")
        assert module.main(["--root", root, "--url", url, "--no-progress", "--no-process"]) == 0
    assert not (tmp_path / "processed").exists()
    argv = ["--root", root, "--skip-download", "--no-progress", "--n-frames", "20"]
    assert module.main([*argv, "--n-mels", "16"]) == 0
    ds = load_processed("Heidelberg", "HeidelbergDigits", tmp_path)
    assert ds.X.shape == (6, 20, 16)
    assert ds.manifest["features"]["n_mels"] == 16
