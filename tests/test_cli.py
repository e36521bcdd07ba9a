"""Command line: help, one-line errors and exit codes, divergence, kill -9 and resume; the
Hopfield network through the same ``train`` command."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from rhel_lib.__main__ import EXIT_DIVERGED, EXIT_ERROR, main
from rhel_lib.data import process_uea
from rhel_lib.results import read_result, run_dir

SEED = 2345


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    process_uea("BasicMotions", root)
    return root


def _train_args(data_root, output_dir, *extra):
    return [
        "train", "--model", "LinHRU", "--dataset", "BasicMotions", "--gradient", "rhel",
        "--seed", str(SEED), "--profile", "smoke", "--data-root", str(data_root),
        "--output-dir", str(output_dir), "--no-progress", *extra,
    ]  # fmt: skip


def test_help_lists_commands_and_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "train" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--model",
        "--dataset",
        "--gradient",
        "--seed",
        "--profile",
        "--override",
        "--data-root",
        "--output-dir",
        "--restart",
        "--debug",
    ):
        assert option in out


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "LinHRU", "--dataset", "BasicMotions", "--gradient", "adam"])
    assert exit_info.value.code == 2


def test_config_error_is_one_line_with_suggestion(data_root, tmp_path, capsys):
    rc = main(_train_args(data_root, tmp_path, "--override", "learning_rate=1e-3"))
    err = capsys.readouterr().err
    assert rc == EXIT_ERROR
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "'learning_rate'" in err and "did you mean 'lr'" in err
    rc = main(_train_args(data_root, tmp_path, "--override", "batch_size=0"))
    err = capsys.readouterr().err
    assert rc == EXIT_ERROR and "'batch_size'" in err and "BasicMotions.json" in err
    with pytest.raises(ValueError):  # --debug shows the real exception
        main(_train_args(data_root, tmp_path, "--override", "batch_size=0", "--debug"))


def test_missing_dataset_names_the_fetch_command(tmp_path, capsys):
    args = _train_args(tmp_path / "empty", tmp_path / "out")
    args[args.index("BasicMotions")] = "Heartbeat"
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == EXIT_ERROR and err.count("\n") == 1 and "Traceback" not in err
    assert "Heartbeat" in err and "download_uea.py --dataset Heartbeat" in err
    assert "process_uea.py --dataset Heartbeat" in err


def test_config_command_prints_resolved_json(capsys):
    rc = main(
        [
            "config",
            "--model",
            "NonlinHRU",
            "--dataset",
            "PPG",
            "--profile",
            "full",
            "--override",
            "lr=2e-4",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["config"]["lr"] == 2e-4 and data["config"]["output_step"] == 128


def test_divergence_exits_nonzero(data_root, tmp_path, capsys):
    tiny = [
        "--override",
        "hidden_dim=8",
        "--override",
        "ssm_dim=4",
        "--override",
        "lr=1e12",
        "--override",
        "num_steps=20",
        "--override",
        "eval_every=10",
    ]
    rc = main(_train_args(data_root, tmp_path, *tiny))
    err = capsys.readouterr().err
    assert rc == EXIT_DIVERGED
    assert "diverged" in err and "at step" in err
    folder = run_dir(tmp_path, "smoke", "LinHRU", "BasicMotions", "rhel", SEED)
    assert read_result(folder)["status"] == "diverged"


def _numbers(result):
    history = [{k: v for k, v in h.items() if k != "time_s"} for h in result["history"]]
    keys = ("best", "best_step", "best_val_metric", "test_metric", "test_loss", "steps")
    return {"history": history, **{k: result[k] for k in keys}}


def test_kill_9_and_rerun_gives_the_same_final_metrics(data_root, tmp_path):
    """A real process is killed (SIGKILL) right after its first checkpoint; the same command
    then resumes it and must end with exactly the numbers of an uninterrupted run."""
    env = dict(os.environ)
    # one compilation shared by the three processes (same executable, hence same numbers)
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax_cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PLATFORMS"] = "cpu"
    overrides = ["--override", "hidden_dim=8", "--override", "ssm_dim=4",
                 "--override", "num_steps=200", "--override", "eval_every=20",
                 "--override", "patience=null"]  # fmt: skip

    def command(output_dir):
        return [sys.executable, "-m", "rhel_lib", *_train_args(data_root, output_dir, *overrides)]

    done = subprocess.run(
        command(tmp_path / "full"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    folder_full = run_dir(tmp_path / "full", "smoke", "LinHRU", "BasicMotions", "rhel", SEED)
    uninterrupted = read_result(folder_full)
    assert uninterrupted["status"] == "finished" and uninterrupted["steps"] == 200

    folder = run_dir(tmp_path / "cut", "smoke", "LinHRU", "BasicMotions", "rhel", SEED)
    sidecar = folder / "checkpoint" / "checkpoint.json"
    process = subprocess.Popen(
        command(tmp_path / "cut"),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not sidecar.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = json.loads(sidecar.read_text())["step"]
    assert killed_at < 200
    partial = read_result(folder)
    assert partial is None or partial["status"] == "running"

    again = subprocess.run(
        command(tmp_path / "cut"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    resumed = read_result(folder)
    assert resumed["status"] == "finished" and resumed["resumed"] == 1
    assert _numbers(resumed) == _numbers(uninterrupted)

    # and once more: a finished run is skipped
    skipped = subprocess.run(
        command(tmp_path / "cut"),
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert skipped.returncode == 0 and "skipped" in skipped.stdout
    assert read_result(folder) == resumed


# ------------------------------------------------------------- HopfieldHRU through `train`

#: A Copy-Paste run of a few seconds: 6 neurons, 16-step sequences, 3 Adam steps.
HOPFIELD_STEPS = 3
HOPFIELD_TINY = [
    f"--override={key}={value}"
    for key, value in dict(
        pattern_length=4, delay=3, state_dim=6, batch_size=4, num_steps=HOPFIELD_STEPS,
        eval_every=HOPFIELD_STEPS, eval_size=8, eval_batch_size=8, cosine_steps="[]",
    ).items()
]  # fmt: skip


def _hopfield_args(output_dir, gradient, *extra):
    return [
        "train", "--model", "HopfieldHRU", "--dataset", "CopyPaste", "--gradient", gradient,
        "--seed", "0", "--profile", "smoke", "--output-dir", str(output_dir), "--no-progress",
        *HOPFIELD_TINY, *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("gradient", ["rhel", "hebbian"])
def test_train_command_trains_the_hopfield_network(gradient, tmp_path, capsys):
    rc = main(_hopfield_args(tmp_path, gradient))
    out = capsys.readouterr().out
    folder = run_dir(tmp_path, "smoke", "HopfieldHRU", "CopyPaste", gradient, 0)
    assert rc == 0 and f"{folder}/result.json" in out
    result = read_result(folder)
    assert result["status"] == "finished" and result["model"] == "HopfieldHRU"
    assert result["method"] == result["gradient"] == gradient and result["seed"] == 0
    assert result["task"] == result["dataset"] == "CopyPaste" and result["profile"] == "smoke"
    assert result["steps"] == HOPFIELD_STEPS == result["config"]["num_steps"]
    assert result["config"]["state_dim"] == 6 and result["history"][-1]["step"] == HOPFIELD_STEPS
    assert result["metric"] == "bit_accuracy" and 0.0 <= result["final_metric"] <= 1.0
    assert result["final_metric"] == result["history"][-1]["test_metric"]
    assert f"test bit_accuracy {result['final_metric']:.4f}" in out

    # the same command again: skipped, the file untouched
    before = (folder / "result.json").read_bytes()
    rc = main(_hopfield_args(tmp_path, gradient))
    assert rc == 0 and "already finished, skipped" in capsys.readouterr().out
    assert (folder / "result.json").read_bytes() == before


def test_train_command_takes_several_gradients(tmp_path, capsys):
    args = _hopfield_args(tmp_path, "eprop")
    args.insert(args.index("eprop") + 1, "tbptt")  # --gradient eprop tbptt
    assert main(args) == 0
    out = capsys.readouterr().out
    for gradient in ("eprop", "tbptt"):
        folder = run_dir(tmp_path, "smoke", "HopfieldHRU", "CopyPaste", gradient, 0)
        assert read_result(folder)["method"] == gradient
        assert f"{gradient} seed 0: test bit_accuracy" in out
    # a gradient the model does not have: refused before anything runs
    args = [
        "train", "--model", "LinHRU", "--dataset", "BasicMotions", "--gradient", "rhel",
        "hebbian", "--profile", "smoke", "--output-dir", str(tmp_path / "hssm"), "--no-progress",
    ]  # fmt: skip
    assert main(args) == EXIT_ERROR
    assert "hebbian" in capsys.readouterr().err
    assert not (tmp_path / "hssm").exists()


def test_train_command_hopfield_restart_and_conflict(tmp_path, capsys):
    assert main(_hopfield_args(tmp_path, "bptt")) == 0
    folder = run_dir(tmp_path, "smoke", "HopfieldHRU", "CopyPaste", "bptt", 0)
    first = read_result(folder)
    # other settings in the same run folder: refused (one line, exit 1) ...
    capsys.readouterr()
    assert main(_hopfield_args(tmp_path, "bptt", "--override", "lr=0.02")) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different configuration" in err and "--restart" in err
    assert read_result(folder) == first
    # ... unless restarted
    assert main(_hopfield_args(tmp_path, "bptt", "--override", "lr=0.02", "--restart")) == 0
    again = read_result(folder)
    assert again["config"]["lr"] == 0.02 and again["run_hash"] != first["run_hash"]


@pytest.mark.parametrize(
    "model, dataset, gradient, extra, expected",
    [
        ("LinHRU", "BasicMotions", "hebbian", [],
         ["LinHRU does not run with gradient 'hebbian'", "LinHRU/NonlinHRU: bptt, rhel",
          "HopfieldHRU: bptt, rhel, hebbian, eprop, tbptt"]),
        ("HopfieldHRU", "BasicMotions", "rhel", [],
         ["HopfieldHRU does not run with dataset 'BasicMotions'",
          "HopfieldHRU: CopyPaste, HeidelbergDigits"]),
        ("NonlinHRU", "CopyPaste", "bptt", [],
         ["NonlinHRU does not run with dataset 'CopyPaste'", "HopfieldHRU: CopyPaste"]),
        ("LinHRU", "BasicMotions", "rhel", ["--profile", "cpu"],
         ["LinHRU does not run with profile 'cpu'", "HopfieldHRU: smoke, cpu, full"]),
        ("HopfieldHRU", "CopyPaste", "rhel", ["--override", "state_dims=4"],
         ["CopyPaste.json [smoke]", "unknown key 'state_dims'", "did you mean 'state_dim'"]),
        ("HopfieldHRU", "CopyPaste", "rhel", ["--override", "task=HeidelbergDigits"],
         ["choose the task with --dataset"]),
        ("HopfieldHRU", "CopyPaste", "rhel", ["--seed", "-1"], ["seed must be an integer >= 0"]),
    ],
)  # fmt: skip
def test_train_command_refuses_invalid_combinations(
    model, dataset, gradient, extra, expected, tmp_path, capsys
):
    args = ["train", "--model", model, "--dataset", dataset, "--gradient", gradient,
            "--profile", "smoke", "--output-dir", str(tmp_path), "--no-progress",
            *extra]  # fmt: skip
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == EXIT_ERROR and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("python -m rhel_lib train: error: ")
    for text in expected:
        assert text in err
    assert not any(tmp_path.iterdir())  # nothing was written
    from rhel_lib.config import ConfigError

    with pytest.raises(ConfigError):  # --debug: the exception itself
        main([*args, "--debug"])


def test_hopfield_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "HopfieldHRU", "--dataset", "CopyPaste", "--gradient", "adam"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--model", "Hopfield", "--dataset", "CopyPaste", "--gradient", "rhel"])
    assert exit_info.value.code == 2


def test_config_and_configs_commands_know_the_hopfield_network(capsys):
    rc = main(["config", "--model", "HopfieldHRU", "--dataset", "CopyPaste", "--profile", "cpu",
               "--override", "state_dim=12"])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["file"].endswith(os.path.join("hopfield", "CopyPaste.json"))
    assert data["config"]["state_dim"] == 12 and data["config"]["num_steps"] == 400
    assert data["config"]["methods"] == ["bptt", "rhel", "hebbian", "eprop", "tbptt"]
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 9 + 2
    assert [line.split()[:2] for line in lines[-2:]] == [
        ["HopfieldHRU", "CopyPaste"],
        ["HopfieldHRU", "HeidelbergDigits"],
    ]
