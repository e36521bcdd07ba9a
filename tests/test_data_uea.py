"""UEA pipeline: .ts parsing, the shipped real sets, storage errors, splits, download + CLI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rhel_lib.data import (
    DatasetCorruptError,
    DatasetError,
    DatasetNotFoundError,
    fetch_command,
    load_processed,
    make_splits,
)
from rhel_lib.data.uea import aeon_data_dir, download_uea, pad_series, process_uea, read_ts

try:
    from data_fixtures import serve_files, zip_bytes
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import serve_files, zip_bytes

REPO = Path(__file__).resolve().parents[1]

SMALL_TS = """# comment line
@problemName Tiny
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true up down
@data
1.0,2.0,3.0:10,20,30:up
4.5,?,6.5,7.5:-1,-2,?,-4:down
"""


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "data_dir" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def offline_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("uea_root")
    process_uea("BasicMotions", root)
    process_uea("JapaneseVowels", root)
    return root


def test_read_ts_values_missing_and_unequal_lengths(tmp_path):
    path = tmp_path / "Tiny_TRAIN.ts"
    path.write_text(SMALL_TS)
    ts = read_ts(path)
    assert ts.class_names == ["up", "down"]
    assert ts.labels == ["up", "down"]
    assert ts.series[0].shape == (2, 3) and ts.series[1].shape == (2, 4)
    np.testing.assert_array_equal(ts.series[0], [[1, 2, 3], [10, 20, 30]])
    assert np.isnan(ts.series[1][0, 1]) and np.isnan(ts.series[1][1, 2])


def test_pad_series_repeats_last_value():
    a = np.array([[1.0, 2.0], [5.0, 6.0]])  # (C=2, L=2)
    b = np.array([[7.0, 8.0, 9.0], [0.0, -1.0, -2.0]])
    X, lengths = pad_series([a, b])
    assert X.dtype == np.float32 and X.shape == (2, 3, 2)
    np.testing.assert_array_equal(lengths, [2, 3])
    np.testing.assert_array_equal(X[0], [[1, 5], [2, 6], [2, 6]])
    np.testing.assert_array_equal(X[1], [[7, 0], [8, -1], [9, -2]])


def test_basic_motions_processed_matches_source(offline_root):
    ds = load_processed("UEA", "BasicMotions", offline_root)
    assert ds.X.shape == (80, 100, 6) and ds.X.dtype == np.float32
    assert ds.y.dtype == np.int64 and np.bincount(ds.y).tolist() == [20, 20, 20, 20]
    assert ds.class_names == ["Standing", "Running", "Walking", "Badminton"]
    assert ds.n_classes == 4
    np.testing.assert_array_equal(ds.orig_train_idx, np.arange(40))
    np.testing.assert_array_equal(ds.orig_test_idx, np.arange(40, 80))
    # First test case, channel 0, begins -0.740653,-0.740653,10.208449 in BasicMotions_TEST.ts
    np.testing.assert_allclose(ds.X[40, :3, 0], [-0.740653, -0.740653, 10.208449], rtol=1e-6)
    # independent cross-check against aeon's own .ts reader
    from aeon.datasets import load_from_ts_file

    folder = aeon_data_dir("BasicMotions")
    X_tr, _ = load_from_ts_file(str(folder / "BasicMotions_TRAIN.ts"))
    X_te, y_te = load_from_ts_file(str(folder / "BasicMotions_TEST.ts"))
    ref = np.concatenate([X_tr, X_te]).transpose(0, 2, 1).astype(np.float32)
    np.testing.assert_array_equal(ds.X, ref)
    names = [c.lower() for c in ds.class_names]
    assert [names[i] for i in ds.y[40:]] == [str(v).lower() for v in y_te]
    m = ds.manifest
    assert m["equal_length"] is True and m["normalization"] == "none (raw)"
    assert m["source"]["kind"] == "aeon-package"
    assert set(m["source"]["files"]) == {"BasicMotions_TRAIN.ts", "BasicMotions_TEST.ts"}
    assert m["arrays"]["X"] == {"shape": [80, 100, 6], "dtype": "float32"}


def test_japanese_vowels_unequal_lengths_are_edge_padded(offline_root):
    ds = load_processed("UEA", "JapaneseVowels", offline_root)
    assert ds.X.shape == (640, 29, 12)
    assert ds.orig_train_idx.size == 270 and ds.orig_test_idx.size == 370
    assert ds.n_classes == 9 and np.bincount(ds.y[:270]).tolist() == [30] * 9
    lengths = ds.lengths
    assert lengths.min() == 7 and lengths.max() == 29
    assert ds.manifest["lengths"] == {"min": 7, "max": 29}
    assert "edge" in ds.manifest["padding"]
    from aeon.datasets import load_from_ts_file

    series, _ = load_from_ts_file(str(aeon_data_dir("JapaneseVowels") / "JapaneseVowels_TRAIN.ts"))
    for i in (0, 1, 100, 269):
        L = series[i].shape[1]
        assert lengths[i] == L
        np.testing.assert_allclose(ds.X[i, :L], series[i].T, rtol=1e-6)
        # padding repeats the last observed value of every channel
        np.testing.assert_array_equal(ds.X[i, L:], np.repeat(ds.X[i, L - 1 : L], 29 - L, axis=0))
    short = int(np.argmin(lengths))
    assert np.all(ds.X[short, lengths[short] :] == ds.X[short, lengths[short] - 1])


def test_normalize_uses_train_statistics(tmp_path):
    process_uea("BasicMotions", tmp_path, normalize=True)
    ds = load_processed("UEA", "BasicMotions", tmp_path)
    train = ds.X[ds.orig_train_idx].reshape(-1, 6).astype(np.float64)
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.std(axis=0), 1.0, atol=1e-5)
    assert ds.manifest["normalization"].startswith("per-channel z-score")


def test_make_splits_deterministic_partition():
    a = make_splits(80, seed=2345)
    b = make_splits(80, seed=2345)
    c = make_splits(80, seed=3456)
    assert [len(s) for s in a] == [56, 12, 12]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(np.sort(np.concatenate(a)), np.arange(80))
    assert all(s.dtype == np.int64 for s in a)
    assert [len(s) for s in make_splits(10, 0, (0.5, 0.25, 0.25))] == [5, 2, 3]
    with pytest.raises(ValueError, match="sum to 1"):
        make_splits(10, 0, (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="n must be"):
        make_splits(2, 0)


def test_dataset_splits_are_seeded(offline_root):
    ds = load_processed("UEA", "BasicMotions", offline_root)
    tr, va, te = ds.splits(7)
    np.testing.assert_array_equal(tr, make_splits(80, 7)[0])
    assert len(va) == 12 and len(te) == 12


def test_missing_dataset_names_the_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_processed("UEA", "Heartbeat", "data_dir_missing_for_test")
    msg = str(info.value)
    assert "'Heartbeat'" in msg
    assert (
        "python data_dir/download_uea.py --dataset Heartbeat --root data_dir_missing_for_test "
        "&& python data_dir/process_uea.py --dataset Heartbeat --root data_dir_missing_for_test"
    ) in msg
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DatasetError)
    assert fetch_command("UEA", "Heartbeat") == (
        "python data_dir/download_uea.py --dataset Heartbeat && "
        "python data_dir/process_uea.py --dataset Heartbeat"
    )
    assert fetch_command("UEA", "BasicMotions") == (
        "python data_dir/process_uea.py --dataset BasicMotions"
    )
    # raw files missing: processing also names the command
    with pytest.raises(DatasetNotFoundError, match="download_uea.py --dataset Heartbeat"):
        process_uea("Heartbeat", tmp_path)


def test_corrupt_dataset_is_detected(tmp_path):
    process_uea("BasicMotions", tmp_path)
    folder = tmp_path / "processed" / "UEA" / "BasicMotions"
    npz = folder / "data.npz"
    original = npz.read_bytes()

    npz.write_bytes(original[:-100] + bytes(100))  # damaged bytes -> checksum mismatch
    with pytest.raises(DatasetCorruptError) as info:
        load_processed("UEA", "BasicMotions", tmp_path)
    msg = str(info.value)
    assert "'BasicMotions'" in msg and "SHA-256" in msg
    assert f"process_uea.py --dataset BasicMotions --root {tmp_path}" in msg
    assert isinstance(info.value, ValueError)
    with pytest.raises(DatasetCorruptError, match="cannot read data.npz"):
        load_processed("UEA", "BasicMotions", tmp_path, verify=False)

    npz.write_bytes(original)
    assert load_processed("UEA", "BasicMotions", tmp_path).X.shape == (80, 100, 6)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetCorruptError, match="cannot parse manifest.json"):
        load_processed("UEA", "BasicMotions", tmp_path)
    npz.unlink()
    with pytest.raises(DatasetNotFoundError, match="data.npz not found"):
        load_processed("UEA", "BasicMotions", tmp_path)


def _write_ts(name: str, cases: list[tuple[np.ndarray, str]], classes: list[str]) -> bytes:
    lines = [
        f"@problemName {name}",
        "@timeStamps false",
        "@missing false",
        "@univariate false",
        f"@dimensions {cases[0][0].shape[0]}",
        "@equalLength true",
        f"@seriesLength {cases[0][0].shape[1]}",
        f"@classLabel true {' '.join(classes)}",
        "@data",
    ]
    for x, label in cases:
        lines.append(":".join(",".join(f"{v:.6f}" for v in ch) for ch in x) + f":{label}")
    return ("\n".join(lines) + "\n").encode()


def test_download_and_process_synthetic_heartbeat_via_cli(tmp_path, capsys):
    """A Heartbeat-shaped archive (405 steps, 2 classes) served from 127.0.0.1."""
    rng = np.random.default_rng(1)
    train = [(rng.normal(size=(3, 405)), lab) for lab in ["normal", "abnormal", "normal"]]
    test = [(rng.normal(size=(3, 405)), lab) for lab in ["abnormal", "abnormal"]]
    classes = ["abnormal", "normal"]
    archive = zip_bytes(
        {
            "Heartbeat_TRAIN.ts": _write_ts("Heartbeat", train, classes),
            "Heartbeat_TEST.ts": _write_ts("Heartbeat", test, classes),
        }
    )
    with serve_files({"/aeon-toolkit/Heartbeat.zip": archive}) as server:
        download_main = _load_script("download_uea").main
        argv = ["--dataset", "Heartbeat", "--root", str(tmp_path), "--no-progress"]
        argv += ["--base-url", server.url("/aeon-toolkit")]
        assert download_main(argv) == 0
        assert server.log == [("/aeon-toolkit/Heartbeat.zip", None, 200)]
        # a wrong checksum is a one-line error and exit code 1
        (tmp_path / "raw" / "UEA" / "Heartbeat.zip").unlink()
        assert download_main([*argv, "--sha256", "ab" * 32]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("download_uea.py: error: ChecksumError: SHA-256 mismatch")
        assert "\n" not in err
        download_uea("Heartbeat", tmp_path, base_url=server.url("/aeon-toolkit"), progress=False)

    assert (
        _load_script("process_uea").main(["--dataset", "Heartbeat", "--root", str(tmp_path)]) == 0
    )
    ds = load_processed("UEA", "Heartbeat", tmp_path)
    assert ds.X.shape == (5, 405, 3)
    np.testing.assert_array_equal(ds.y, [1, 0, 1, 0, 0])
    np.testing.assert_allclose(ds.X[3], test[0][0].T, atol=5e-7)
    np.testing.assert_array_equal(ds.orig_test_idx, [3, 4])
    manifest = json.loads((tmp_path / "processed/UEA/Heartbeat/manifest.json").read_text())
    assert manifest["source"]["kind"] == "download"
    assert len(manifest["source"]["archive_sha256"]) == 64
    assert manifest["paper_expected"] == {"seq_len": 405, "n_classes": 2}

    # missing raw data -> exit code 1 and a one-line message naming the command
    rc = _load_script("process_uea").main(["--dataset", "MotorImagery", "--root", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err
    assert "python data_dir/download_uea.py --dataset MotorImagery" in err


def test_script_runs_as_file_and_rejects_typos(capsys):
    out = subprocess.run(
        [sys.executable, str(REPO / "data_dir" / "download_uea.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "--dataset" in out.stdout and "--root" in out.stdout and "--sha256" in out.stdout
    with pytest.raises(SystemExit) as info:
        _load_script("process_uea").main(["--dataset", "Heartbeet"])
    assert info.value.code == 2
    assert "invalid choice: 'Heartbeet'" in capsys.readouterr().err
