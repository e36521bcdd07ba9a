"""Training loop: data order, determinism, skip/conflict handling, divergence, learning."""

import json

import numpy as np
import pytest

from rhel_lib.config import ExperimentConfig, load_config
from rhel_lib.data import load_processed, process_uea, save_processed
from rhel_lib.results import read_result, run_dir
from rhel_lib.train import RunConflictError, batch_indices, train

SEED = 2345


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    process_uea("BasicMotions", root)
    return root


def tiny(**changes) -> ExperimentConfig:
    """A LinHRU that compiles in seconds: 1 block, H = 8, P = 4, sequential scan."""
    values = dict(
        model="LinHRU",
        dataset="BasicMotions",
        hidden_dim=8,
        ssm_dim=4,
        num_blocks=1,
        parallel_scan=False,
        batch_size=8,
        lr=3e-3,
        num_steps=20,
        eval_every=10,
        patience=None,
        eval_batch_size=16,
        seeds=(SEED,),
    )
    values.update(changes)
    return ExperimentConfig.from_dict(values)


def _numbers(result: dict) -> dict:
    """The parts of a result that must be reproducible (no timing)."""
    history = [{k: v for k, v in h.items() if k != "time_s"} for h in result["history"]]
    keys = ("best", "best_val_metric", "best_step", "test_metric", "test_loss", "steps")
    return {"history": history, **{k: result.get(k) for k in keys}}


def test_batch_indices_are_a_pure_function_of_seed_and_step():
    n, batch = 10, 4
    stream = np.concatenate([batch_indices(7, s, n, batch) for s in range(5)])
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:20])  # reshuffled every epoch
    np.testing.assert_array_equal(batch_indices(7, 3, n, batch), stream[12:16])
    assert not np.array_equal(batch_indices(8, 0, n, batch), batch_indices(7, 0, n, batch))
    big = batch_indices(1, 0, 3, 7)  # a batch larger than the train set wraps around epochs
    assert len(big) == 7 and set(big) == {0, 1, 2}


def test_same_seed_gives_identical_metrics_and_result_file(data_root, tmp_path):
    config = tiny()
    first = train(
        config,
        gradient="rhel",
        seed=SEED,
        profile="test",
        data_root=data_root,
        output_dir=tmp_path / "a",
        progress=False,
    )
    second = train(
        config,
        gradient="rhel",
        seed=SEED,
        profile="test",
        data_root=data_root,
        output_dir=tmp_path / "b",
        progress=False,
    )
    assert first["status"] == second["status"] == "finished"
    assert _numbers(first) == _numbers(second)
    assert [h["step"] for h in first["history"]] == [10, 20]

    folder = run_dir(tmp_path / "a", "test", "LinHRU", "BasicMotions", "rhel", SEED)
    on_disk = read_result(folder)
    assert on_disk["status"] == "finished" and on_disk["config"] == config.to_dict()
    for key in ("wall_time_s", "train_time_s", "steps_per_s", "peak_memory_mb", "num_params"):
        assert key in on_disk
    assert on_disk["environment"]["jax"] and on_disk["environment"]["rhel_lib"]
    assert on_disk["environment"]["device"] and on_disk["peak_memory_mb"] > 0
    json.loads((folder / "result.json").read_text())  # strict JSON
    # the checkpoint holds the model at the last evaluation and the best one
    sidecar = json.loads((folder / "checkpoint" / "checkpoint.json").read_text())
    assert sidecar["step"] == 20 and (folder / "checkpoint" / sidecar["eqx_file"]).is_file()
    assert not list((folder / "checkpoint").glob(".*tmp*"))

    # another seed gives other numbers
    other = train(
        config,
        gradient="rhel",
        seed=SEED + 1,
        profile="test",
        data_root=data_root,
        output_dir=tmp_path / "a",
        progress=False,
    )
    assert _numbers(other) != _numbers(first)

    # a finished run is skipped (nothing is recomputed, the file is unchanged)
    before = (folder / "result.json").read_bytes()
    again = train(
        config,
        gradient="rhel",
        seed=SEED,
        profile="test",
        data_root=data_root,
        output_dir=tmp_path / "a",
        progress=False,
    )
    assert again["skipped"] and _numbers(again) == _numbers(first)
    assert (folder / "result.json").read_bytes() == before

    # a different configuration in the same folder is refused, unless restarting
    with pytest.raises(RunConflictError, match="different configuration"):
        train(
            tiny(patience=3),
            gradient="rhel",
            seed=SEED,
            profile="test",
            data_root=data_root,
            output_dir=tmp_path / "a",
            progress=False,
        )
    restarted = train(
        tiny(patience=3),
        gradient="rhel",
        seed=SEED,
        profile="test",
        data_root=data_root,
        output_dir=tmp_path / "a",
        progress=False,
        resume=False,
    )
    assert restarted["status"] == "finished" and not restarted["skipped"]
    assert read_result(folder)["config"]["patience"] == 3


def test_resume_after_a_crash_matches_an_uninterrupted_run(data_root, tmp_path, monkeypatch):
    """In-process version of the kill test (tests/test_cli.py kills a real process): the run
    crashes right after its first checkpoint; the same call then resumes and finishes."""
    import rhel_lib.train as train_module

    config = tiny(num_steps=30)
    kwargs = dict(gradient="bptt", seed=SEED, profile="test", data_root=data_root, progress=False)
    uninterrupted = train(config, output_dir=tmp_path / "full", **kwargs)

    real_save = train_module._save_checkpoint

    def save_then_crash(*args, **kw):
        real_save(*args, **kw)
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(config, output_dir=tmp_path / "cut", **kwargs)
    monkeypatch.setattr(train_module, "_save_checkpoint", real_save)
    folder = run_dir(tmp_path / "cut", "test", "LinHRU", "BasicMotions", "bptt", SEED)
    assert read_result(folder) is None  # crashed before its first result was written
    assert json.loads((folder / "checkpoint" / "checkpoint.json").read_text())["step"] == 10

    resumed = train(config, output_dir=tmp_path / "cut", **kwargs)
    assert resumed["resumed"] == 1 and resumed["steps"] == 30
    assert _numbers(resumed) == _numbers(uninterrupted)


def test_nan_loss_stops_with_status_diverged_and_keeps_checkpoint(data_root, tmp_path):
    """One training sample holds a NaN; it first enters the batch of step 6, after the first
    evaluation and checkpoint (step 5)."""
    ds = load_processed("UEA", "BasicMotions", data_root)
    train_idx, _, _ = ds.splits(SEED)
    config = tiny(num_steps=40, eval_every=5)
    sample = int(train_idx[batch_indices(SEED, 5, len(train_idx), config.batch_size)[0]])
    X = ds.X.copy()
    X[sample, 10, 0] = np.nan
    arrays = {
        "X": X,
        "y": ds.y,
        "orig_train_idx": ds.orig_train_idx,
        "orig_test_idx": ds.orig_test_idx,
        **ds.extras,
    }
    save_processed("UEA", "BasicMotions", tmp_path / "nan_data", arrays, ds.manifest)

    result = train(
        config,
        gradient="rhel",
        seed=SEED,
        profile="test",
        data_root=tmp_path / "nan_data",
        output_dir=tmp_path / "out",
        progress=False,
    )
    assert result["status"] == "diverged" and result["diverged"]["step"] == 6
    assert "nan" in result["message"] and "step 6" in result["message"]
    assert "checkpoint (step 5) is kept" in result["message"]
    folder = run_dir(tmp_path / "out", "test", "LinHRU", "BasicMotions", "rhel", SEED)
    assert read_result(folder)["status"] == "diverged"
    sidecar = json.loads((folder / "checkpoint" / "checkpoint.json").read_text())
    assert sidecar["step"] == 5 and (folder / "checkpoint" / sidecar["eqx_file"]).is_file()


@pytest.mark.parametrize("model", ["LinHRU", "NonlinHRU"])
@pytest.mark.parametrize("gradient", ["bptt", "rhel"])
def test_short_run_on_basic_motions_learns(data_root, tmp_path, model, gradient):
    """The shipped smoke config (150 steps, seconds on a CPU): 4 classes, chance is 25%."""
    config = load_config(model, "BasicMotions", "smoke")
    result = train(
        config,
        gradient=gradient,
        seed=SEED,
        profile="smoke",
        data_root=data_root,
        output_dir=tmp_path,
        progress=False,
    )
    assert result["status"] == "finished"
    assert result["best_val_metric"] >= 0.75, result["history"]
    assert result["test_metric"] >= 0.6, result
    assert result["history"][0]["train_loss"] > result["history"][-1]["train_loss"]


def test_regression_with_output_step(tmp_path):
    """A small synthetic dataset in the PPG layout (fixed split, a target every 8 steps)."""
    rng = np.random.default_rng(0)
    n, length, step = 12, 32, 8
    X = rng.normal(size=(n, length, 3)).astype(np.float32)
    y = (60 + 40 * np.tanh(X[:, step - 1 :: step, 0])).astype(np.float32)  # (n, 4), "bpm"
    arrays = {
        "X": X,
        "y": y,
        "train_idx": np.arange(8),
        "val_idx": np.arange(8, 10),
        "test_idx": np.arange(10, 12),
        "orig_train_idx": np.zeros(0, np.int64),
        "orig_test_idx": np.zeros(0, np.int64),
    }
    manifest = {"task": "regression", "split": {"kind": "fixed"}}
    save_processed("PPG", "PPGDaLiA", tmp_path / "data", arrays, manifest)
    config = tiny(dataset="PPG", output_step=step, include_time=True, batch_size=4)
    result = train(
        config,
        gradient="rhel",
        seed=SEED,
        profile="test",
        data_root=tmp_path / "data",
        output_dir=tmp_path / "out",
        progress=False,
    )
    assert result["status"] == "finished" and result["metric"] == "mse"
    assert result["target_scaling"] == {
        "offset": pytest.approx(float(y[:8].max() + y[:8].min()) / 2),
        "scale": pytest.approx(float(y[:8].max() - y[:8].min()) / 2),
    }
    assert np.isfinite(result["test_metric"]) and result["test_metric"] > 0
    scale = result["target_scaling"]["scale"]
    assert result["test_mse_original_units"] == pytest.approx(result["test_metric"] * scale**2)
    assert result["history"][-1]["val_metric"] == pytest.approx(result["history"][-1]["val_loss"])
    with pytest.raises(ValueError, match="output_step"):
        train(
            tiny(dataset="PPG", output_step=4),
            gradient="rhel",
            seed=SEED,
            profile="test",
            data_root=tmp_path / "data",
            output_dir=tmp_path / "out2",
            progress=False,
        )
