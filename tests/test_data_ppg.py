"""PPG-DaLiA end to end on a synthetic archive in the real layout, served from 127.0.0.1."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from rhel_lib.data import load_processed
from rhel_lib.data.ppg import (
    align_labels,
    download_ppg,
    load_subject_pickle,
    minmax_scale,
    process_ppg,
    subject_signals,
    window_subject,
)

try:
    from data_fixtures import serve_files, zip_bytes
except ImportError:  # tests/ imported as a package
    from tests.data_fixtures import serve_files, zip_bytes

SECONDS = 40  # synthetic recordings: 40 s per subject -> 2560 steps at 64 Hz
SPLIT = {"train": (1, 2), "val": (3,), "test": (4,)}


def _subject(sid: int) -> dict:
    """Raw dict with the keys of the real S{i}.pkl and realistic shapes (short duration)."""
    rng = np.random.default_rng(sid)
    n_labels = SECONDS // 2 - 3  # one label per 2 s for 8 s windows
    return {
        "rpeaks": np.arange(0, SECONDS * 700, 600),
        "signal": {
            "chest": {
                "ACC": rng.normal(size=(SECONDS * 700, 3)),
                "ECG": rng.normal(size=(SECONDS * 700, 1)),
                "Resp": rng.normal(size=(SECONDS * 700, 1)),
            },
            "wrist": {
                "ACC": rng.normal(size=(SECONDS * 32, 3)) * 30.0,
                "BVP": rng.normal(size=(SECONDS * 64 + 5, 1)) * 50.0,  # 5 extra samples
                "EDA": rng.uniform(0.1, 2.0, size=(SECONDS * 4, 1)),
                # subject 3 has a constant temperature -> scaled to 0
                "TEMP": np.full((SECONDS * 4 + 1, 1), 33.5)
                if sid == 3
                else rng.uniform(30, 35, size=(SECONDS * 4 + 1, 1)),
            },
        },
        "label": 60.0 + 100.0 * sid + np.arange(n_labels, dtype=np.float64),
        "activity": np.zeros((SECONDS * 4, 1)),
        "questionnaire": {"WEIGHT": 70.0, "Gender": " m", "AGE": 30, "HEIGHT": 180.0},
        "subject": f"S{sid}",
    }


def _archive(subjects: dict[int, dict], nested: bool) -> bytes:
    inner = {}
    for sid, raw in subjects.items():
        inner[f"PPG_FieldStudy/S{sid}/S{sid}.pkl"] = pickle.dumps(raw, protocol=2)
        inner[f"PPG_FieldStudy/S{sid}/S{sid}_quest.csv"] = b"# subj;S1\n"
        inner[f"PPG_FieldStudy/S{sid}/S{sid}_E4.zip"] = zip_bytes({"ACC.csv": b"0\n"})
    inner["PPG_FieldStudy/readme.pdf"] = b"%PDF"
    if nested:
        return zip_bytes({"PPG_FieldStudy.zip": zip_bytes(inner)})
    return zip_bytes(inner)


@pytest.fixture(scope="module")
def subjects() -> dict[int, dict]:
    return {sid: _subject(sid) for sid in (1, 2, 3, 4)}


@pytest.mark.parametrize("nested", [False, True])
def test_end_to_end_download_extract_process(tmp_path, subjects, nested):
    with serve_files({"/static/public/495/ppg+dalia.zip": _archive(subjects, nested)}) as srv:
        folder = download_ppg(
            tmp_path, url=srv.url("/static/public/495/ppg+dalia.zip"), progress=False
        )
    pkl_files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.pkl"))
    prefix = "PPG_FieldStudy/PPG_FieldStudy/" if nested else "PPG_FieldStudy/"
    assert pkl_files == [f"{prefix}S{i}/S{i}.pkl" for i in (1, 2, 3, 4)]
    assert not list(folder.rglob("PPG_FieldStudy.zip"))  # nested zip removed after extraction
    assert not list(folder.rglob("*_E4.zip"))  # only the pickles are extracted

    process_ppg(tmp_path, window=512, label_step=128, stride=256, split=SPLIT)
    ds = load_processed("PPG", "PPGDaLiA", tmp_path)
    # 2560 usable steps per subject -> windows start at 0, 256, ..., 2048: 9 per subject
    assert ds.X.shape == (36, 512, 6) and ds.X.dtype == np.float32
    assert ds.y.shape == (36, 4) and ds.y.dtype == np.float32
    np.testing.assert_array_equal(ds.extras["subject"], np.repeat([1, 2, 3, 4], 9))
    np.testing.assert_array_equal(ds.extras["start"][:9], np.arange(0, 2049, 256))
    assert ds.task == "regression"
    assert ds.manifest["labels_per_window"] == 4
    assert ds.manifest["channel_names"] == ["ACC_x", "ACC_y", "ACC_z", "BVP", "EDA", "TEMP"]

    # scaling range: per subject, every channel spans exactly [-1, 1] (constant TEMP -> 0)
    for sid in (1, 2, 4):
        x = ds.X[ds.extras["subject"] == sid]
        np.testing.assert_allclose(x.min(axis=(0, 1)), -1.0, atol=1e-6)
        np.testing.assert_allclose(x.max(axis=(0, 1)), 1.0, atol=1e-6)
    assert np.all(ds.X[ds.extras["subject"] == 3][..., 5] == 0.0)

    # channel construction against the raw arrays of subject 2 (window 1 starts at step 256)
    raw = subjects[2]["signal"]["wrist"]
    w = 9 + 1
    acc, bvp = raw["ACC"][: SECONDS * 32], raw["BVP"][: SECONDS * 64, 0]
    eda = raw["EDA"][:, 0]
    t = np.arange(256, 768)
    scale = lambda v, ref: 2 * (v - ref.min()) / (ref.max() - ref.min()) - 1  # noqa: E731
    np.testing.assert_allclose(ds.X[w, :, 0], scale(acc[t // 2, 0], acc[:, 0]), atol=1e-5)
    np.testing.assert_allclose(ds.X[w, :, 3], scale(bvp[t], bvp), atol=1e-5)
    np.testing.assert_allclose(ds.X[w, :, 4], scale(eda[t // 16], eda), atol=1e-5)

    # label alignment, hand-computed: subject 2 labels are 260, 261, ..., 276; the aligned
    # sequence is [260, 260, 260, 260, 261, ...]; window k covers labels 2k .. 2k+3
    np.testing.assert_array_equal(ds.y[9 + 0], [260, 260, 260, 260])
    np.testing.assert_array_equal(ds.y[9 + 1], [260, 260, 261, 262])
    np.testing.assert_array_equal(ds.y[9 + 8], [273, 274, 275, 276])

    tr, va, te = ds.splits(seed=123)  # fixed: the seed is ignored
    np.testing.assert_array_equal(tr, np.arange(18))
    np.testing.assert_array_equal(va, np.arange(18, 27))
    np.testing.assert_array_equal(te, np.arange(27, 36))
    assert ds.manifest["split"]["subjects"] == {"train": [1, 2], "val": [3], "test": [4]}
    assert len(ds.manifest["source"]["archive_sha256"]) == 64


def test_pure_steps_hand_computed():
    raw = {
        "signal": {
            "wrist": {
                "ACC": np.array([[0.0, 1, 2], [2, 3, 4]]),  # 32 Hz: 2 samples -> 4 steps
                "BVP": np.arange(40.0)[:, None],
                "EDA": np.array([[5.0], [7.0]]),  # 4 Hz: 2 samples -> 32 steps
                "TEMP": np.array([[1.0]]),
            }
        }
    }
    sig = subject_signals(raw)
    assert sig.shape == (4, 6)  # truncated to the shortest stream (ACC: 4 steps)
    np.testing.assert_array_equal(sig[:, 0], [0, 0, 2, 2])
    np.testing.assert_array_equal(sig[:, 3], [0, 1, 2, 3])
    np.testing.assert_array_equal(sig[:, 4], [5, 5, 5, 5])
    np.testing.assert_array_equal(align_labels(np.array([70.0, 71.0])), [70, 70, 70, 70, 71])
    scaled = minmax_scale(np.array([[0.0, 3.0], [5.0, 3.0], [10.0, 3.0]]))
    np.testing.assert_array_equal(scaled, [[-1, 0], [0, 0], [1, 0]])


def test_paper_window_size():
    steps = 2 * 49_920 + 3 * 128 + 17
    sig = np.linspace(-1, 1, steps * 6).reshape(steps, 6)
    labels = np.arange(steps // 128, dtype=np.float64)
    X, Y, starts = window_subject(sig, labels)
    assert X.shape == (2, 49_920, 6) and Y.shape == (2, 390)
    np.testing.assert_array_equal(starts, [0, 49_920])
    np.testing.assert_array_equal(Y[1, :3], [390, 391, 392])
    with pytest.raises(ValueError, match="multiples of label_step"):
        window_subject(sig, labels, window=1000)


def test_errors(tmp_path, subjects):
    evil = tmp_path / "S9" / "S9.pkl"
    evil.parent.mkdir()
    evil.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")  # os.system call
    with pytest.raises(ValueError, match="refusing to load"):
        load_subject_pickle(evil)

    good = tmp_path / "ok" / "S16" / "S16.pkl"
    good.parent.mkdir(parents=True)
    good.write_bytes(pickle.dumps(subjects[1], protocol=2))
    with pytest.raises(ValueError, match=r"subjects \[16\] are in no split"):
        process_ppg(tmp_path, source_dir=tmp_path / "ok", window=512)
    from rhel_lib.data import DatasetNotFoundError

    with pytest.raises(
        DatasetNotFoundError, match=r"download_ppg.py --root \S+ && python data_dir/process_ppg.py"
    ):
        process_ppg(tmp_path / "nothing")
    with pytest.raises(DatasetNotFoundError, match="PPG dataset 'PPGDaLiA'"):
        load_processed("PPG", "PPGDaLiA", tmp_path / "nothing")


def test_cli_scripts(tmp_path, subjects, capsys):
    import importlib.util
    from pathlib import Path

    def script(name: str):
        path = Path(__file__).resolve().parents[1] / "data_dir" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main

    root = str(tmp_path)
    assert script("process_ppg")(["--root", root]) == 1  # nothing downloaded yet
    err = capsys.readouterr().err.strip()
    assert err.startswith("process_ppg.py: error: DatasetNotFoundError") and "\n" not in err
    with serve_files({"/ppg.zip": _archive(subjects, nested=False)}) as srv:
        argv = ["--root", root, "--url", srv.url("/ppg.zip"), "--no-progress"]
        assert script("download_ppg")(argv) == 0
    assert script("process_ppg")(["--root", root, "--window", "512"]) == 0
    ds = load_processed("PPG", "PPGDaLiA", tmp_path)
    assert ds.X.shape == (20, 512, 6) and ds.y.shape == (20, 4)  # 5 windows per subject
    assert ds.manifest["stride"] == 512
    assert script("process_ppg")(["--root", root, "--window", "500"]) == 1
    assert "multiples of label_step" in capsys.readouterr().err
