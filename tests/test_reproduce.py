"""Batch reproduction: run matrix, skip-finished, failure isolation, submitit, workflow file.

The tests that execute the run notebook use tiny overrides (a 1-block LinHRU of width 4 for
4 optimiser steps, a 4-step Copy-Paste run), so each run costs little more than starting a
Jupyter kernel.
"""

import json
import os
from pathlib import Path

import nbformat
import pytest
import yaml

import rhel_lib.reproduce as rp
from rhel_lib.__main__ import main
from rhel_lib.config import ConfigError, load_config
from rhel_lib.data import process_uea, processed_dir
from rhel_lib.results import read_result, write_result

ROOT = Path(__file__).resolve().parents[1]
SEED = 2345
TINY = [
    "LinHRU/*:hidden_dim=4",
    "LinHRU/*:ssm_dim=4",
    "LinHRU/*:num_blocks=1",
    "LinHRU/*:batch_size=8",
    "LinHRU/*:num_steps=4",
    "LinHRU/*:eval_every=2",
    "LinHRU/*:eval_batch_size=16",
    "HopfieldHRU/*:state_dim=4",
    "HopfieldHRU/*:num_steps=4",
    "HopfieldHRU/*:eval_every=2",
    "HopfieldHRU/*:eval_size=8",
    "HopfieldHRU/*:batch_size=4",
    "HopfieldHRU/*:cosine_batch_size=4",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """BasicMotions processed; JapaneseVowels processed, then corrupted (its checksum fails
    when a run loads it, inside the notebook); nothing else."""
    root = tmp_path_factory.mktemp("data")
    process_uea("BasicMotions", root)
    process_uea("JapaneseVowels", root)
    npz = processed_dir("UEA", "JapaneseVowels", root) / "data.npz"
    npz.write_bytes(npz.read_bytes()[:-64] + b"\0" * 64)
    return root


# ------------------------------------------------------------------------------ the matrix


def _smoke_seeds(model="LinHRU", dataset="BasicMotions"):
    return load_config(model, dataset, "smoke").seeds


def test_smoke_matrix_counts():
    runs = rp.expand_matrix("smoke")
    hssm = [r for r in runs if r.kind == "hssm"]
    hopfield = [r for r in runs if r.kind == "hopfield"]
    n_seeds = len(_smoke_seeds())
    assert n_seeds == 2
    assert len(hssm) == 2 * 2 * 2 * n_seeds  # models × offline datasets × gradients × seeds
    assert {r.dataset for r in hssm} == {"BasicMotions", "JapaneseVowels"}
    assert {r.gradient for r in hssm} == {"bptt", "rhel"}
    assert {r.seed for r in hssm} == set(_smoke_seeds())
    hopfield_config = hopfield[0].config
    assert len(hopfield) == len(hopfield_config["methods"]) * len(hopfield_config["seeds"])
    assert {r.dataset for r in hopfield} == {"CopyPaste"}
    assert len(runs) == len(set(runs)) == 26
    assert all(r.profile == "smoke" and not r.overrides for r in runs)


def test_full_matrix_is_the_papers():
    runs = rp.expand_matrix("full")
    hssm = [r for r in runs if r.kind == "hssm"]
    assert {r.dataset for r in hssm} == set(rp.PAPER_DATASETS)
    assert {r.seed for r in hssm} == {2345, 3456, 4567, 5678, 6789}
    assert len(hssm) == 2 * 7 * 2 * 5
    assert {r.dataset for r in runs if r.kind == "hopfield"} == {"CopyPaste", "HeidelbergDigits"}
    assert len(runs) == 140 + 2 * 5 * 5
    heartbeat = next(r for r in hssm if r.dataset == "Heartbeat" and r.model == "LinHRU")
    assert heartbeat.config["lr"] == 1e-5 and heartbeat.config["num_steps"] == 100_000


def test_matrix_filters_and_seeds():
    runs = rp.expand_matrix(
        "smoke",
        models="LinHRU",
        datasets=["BasicMotions,JapaneseVowels"],
        gradients=["rhel"],
        seeds=[1, 2, 3],
    )
    assert [r.name for r in runs] == [
        f"LinHRU/{d}/rhel/seed{s}" for d in ("BasicMotions", "JapaneseVowels") for s in (1, 2, 3)
    ]
    # Hopfield: the gradients filter selects methods; its own seeds by default
    runs = rp.expand_matrix("smoke", models=["HopfieldHRU"], gradients="bptt,eprop")
    assert sorted({r.gradient for r in runs}) == ["bptt", "eprop"] and len(runs) == 4
    # a dataset without a configuration for the model is left out
    runs = rp.expand_matrix("smoke", datasets=["BasicMotions", "CopyPaste"], gradients=["bptt"])
    assert {(r.model, r.dataset) for r in runs} == {
        ("LinHRU", "BasicMotions"),
        ("NonlinHRU", "BasicMotions"),
        ("HopfieldHRU", "CopyPaste"),
    }


def test_matrix_overrides_apply_to_matching_runs():
    runs = rp.expand_matrix("smoke", datasets="BasicMotions", overrides=TINY + ["lr=0.01"])
    lin = [r for r in runs if r.model == "LinHRU"]
    nonlin = [r for r in runs if r.model == "NonlinHRU"]
    assert all(r.config["num_steps"] == 4 and r.config["lr"] == 0.01 for r in lin)
    assert all(r.config["num_steps"] != 4 and r.config["lr"] == 0.01 for r in nonlin)
    assert dict(lin[0].overrides)["hidden_dim"] == 4 and "hidden_dim" not in dict(
        nonlin[0].overrides
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"models": ["LinHRV"]}, "did you mean 'LinHRU'"),
        ({"datasets": ["Heartbeet"]}, "did you mean 'Heartbeat'"),
        ({"gradients": ["bptt", "adam"]}, "unknown gradient 'adam'"),
        ({"models": ["HopfieldHRU"], "datasets": ["BasicMotions"]}, "no configuration"),
        ({"overrides": ["learning_rate=1e-3"]}, "did you mean 'lr'"),
        ({"overrides": ["batch_size=0"]}, "'batch_size'"),
        ({"overrides": ["Foo/*:lr=1e-3"]}, "matches no Model/Dataset"),
        ({"seeds": [1, 1]}, "distinct"),
        ({"models": ["LinHRU"], "gradients": ["eprop"]}, "no run"),
    ],
)
def test_matrix_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        rp.expand_matrix("smoke", **kwargs)


def test_run_state_reads_result_files(tmp_path):
    run = rp.expand_matrix("smoke", models="LinHRU", datasets="BasicMotions", seeds=[SEED])[0]
    assert rp.run_state(run, tmp_path) == "todo"
    folder = run.folder(tmp_path)
    write_result(folder, {"status": "running", "config": dict(run.config)})
    assert rp.run_state(run, tmp_path) == "todo"  # interrupted: resumed, not skipped
    write_result(folder, {"status": "diverged", "config": dict(run.config)})
    assert rp.run_state(run, tmp_path) == "todo"
    write_result(folder, {"status": "finished", "config": {**run.config, "seeds": [9]}})
    assert rp.run_state(run, tmp_path) == "finished"  # the list of seeds does not matter
    write_result(folder, {"status": "finished", "config": {**run.config, "lr": 0.5}})
    assert rp.run_state(run, tmp_path) == "conflict"


def test_dry_run_lists_the_matrix(tmp_path, capsys):
    rc = main(["reproduce", "--profile", "smoke", "--models", "NonlinHRU", "--seeds", "7",
               "--output-dir", str(tmp_path), "--dry-run"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "todo      NonlinHRU/JapaneseVowels/rhel/seed7" in out
    assert "4 runs, 4 to run" in out


def test_run_notebook_is_clean_and_parameterised():
    path = rp.run_notebook_path()
    assert path.is_file() and path.parent.parent.name == "rhel_lib"
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in ("profile", "model", "dataset", "gradient", "seed", "overrides", "data_root"):
        assert f"{name} = " in tagged[0].source
    assert not any(c.get("outputs") or c.get("execution_count") for c in nb.cells
                   if c.cell_type == "code")  # fmt: skip


# ---------------------------------------------------------------------------- execution


def _args(data_root, output_dir, *extra):
    return [
        "reproduce", "--profile", "smoke", "--models", "LinHRU", "--gradients", "rhel",
        "--seeds", str(SEED), "--data-root", str(data_root), "--output-dir", str(output_dir),
        "--no-progress", *(x for o in TINY for x in ("--override", o)), *extra,
    ]  # fmt: skip


def test_failures_are_isolated_and_finished_runs_skipped(data_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "results"
    # BasicMotions runs; JapaneseVowels fails inside its notebook (corrupt data); Heartbeat
    # fails before starting (not downloaded)
    rc = main(_args(data_root, out, "--datasets", "BasicMotions,JapaneseVowels,Heartbeat"))
    err = capsys.readouterr().err
    assert rc == 1
    assert "2 failed run(s)" in err
    assert "FAILED LinHRU/JapaneseVowels/rhel/seed2345: DatasetCorruptError" in err
    assert "FAILED LinHRU/Heartbeat/rhel/seed2345: DatasetNotFoundError" in err
    assert "download_uea.py --dataset Heartbeat" in err
    assert "1 done, 0 skipped" in err

    good = out / "smoke" / "LinHRU" / "BasicMotions" / "rhel" / f"seed{SEED}"
    result = read_result(good)
    assert result["status"] == "finished" and result["steps"] == 4
    assert result["config"]["hidden_dim"] == 4
    executed = nbformat.read(good / "run.ipynb", as_version=4)
    assert executed.metadata["papermill"]["exception"] in (None, False)
    injected = next(
        c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])
    )
    assert 'dataset = "BasicMotions"' in injected.source and "hidden_dim" in injected.source
    broken = out / "smoke" / "LinHRU" / "JapaneseVowels" / "rhel" / f"seed{SEED}"
    failed_nb = nbformat.read(broken / "run.ipynb", as_version=4)
    assert failed_nb.metadata["papermill"]["exception"]
    assert "DatasetCorruptError" in json.dumps(failed_nb.cells[-1].get("outputs", [])) or any(
        "DatasetCorruptError" in json.dumps(c.get("outputs", [])) for c in failed_nb.cells
    )

    # the same command again: the finished run is skipped without starting a kernel
    before = (good / "result.json").read_bytes()

    def no_execution(*args, **kwargs):
        raise AssertionError("a finished run was executed again")

    monkeypatch.setattr(rp, "execute_run", no_execution)
    summary = rp.reproduce(
        "smoke",
        models="LinHRU",
        datasets="BasicMotions",
        gradients="rhel",
        seeds=[SEED],
        overrides=TINY,
        data_root=data_root,
        output_dir=out,
        progress=False,
        log=lambda message: None,
    )
    assert summary.exit_code == 0 and summary.count("skipped") == 1 and not summary.executed
    assert (good / "result.json").read_bytes() == before
    # other settings for a finished run folder: reported, never overwritten
    rc = main(_args(data_root, out, "--datasets", "BasicMotions", "--override", "lr=0.5"))
    assert rc == 1 and "holds a finished run with other settings" in capsys.readouterr().err
    assert (good / "result.json").read_bytes() == before


def test_submitit_debug_executor_runs_a_job(data_root, tmp_path):
    out = tmp_path / "results"
    summary = rp.reproduce(
        "smoke",
        models="HopfieldHRU",
        gradients="rhel",
        seeds=[0],
        overrides=TINY,
        executor="debug",
        data_root=data_root,
        output_dir=out,
        progress=False,
        log=lambda message: None,
    )
    assert summary.exit_code == 0, summary.report()
    assert [o.status for o in summary.outcomes] == ["finished"]
    folder = out / "smoke" / "HopfieldHRU" / "CopyPaste" / "rhel" / "seed0"
    result = read_result(folder)
    assert result["status"] == "finished" and result["config"]["num_steps"] == 4
    assert (folder / "run.ipynb").is_file()
    logs = list((out / "smoke" / "_submitit").glob("*_log.out"))
    assert logs, "submitit wrote no job log"


def test_slurm_resources_from_profile_and_options():
    parser_args = [
        "reproduce", "--profile", "full", "--executor", "slurm", "--partition", "gpu",
        "--gpus", "2", "--time-min", "90", "--slurm-option", "constraint=a100",
    ]  # fmt: skip
    from rhel_lib.__main__ import build_parser

    args = build_parser().parse_args(parser_args)
    resources = rp._slurm_resources(args)
    assert resources == {
        "gpus_per_node": 2,
        "timeout_min": 90,
        "slurm_partition": "gpu",
        "slurm_additional_parameters": {"constraint": "a100"},
    }
    merged = {**rp.RESOURCES["full"], **resources}
    assert merged["cpus_per_task"] == rp.RESOURCES["full"]["cpus_per_task"]
    assert (
        rp.RESOURCES["full"]["gpus_per_node"] >= 1 and rp.RESOURCES["smoke"]["gpus_per_node"] == 0
    )


def test_slurm_job_script_carries_the_resources(tmp_path, monkeypatch):
    """The SLURM executor's sbatch script (submitit needs ``srun`` on the PATH to start: a
    stand-in is enough to build the script; nothing is submitted)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    from submitit.slurm.slurm import _make_sbatch_string

    resources = {**rp.RESOURCES["full"], "slurm_partition": "gpu", "timeout_min": 90}
    executor = rp._submitit_executor("slurm", tmp_path / "jobs", resources)
    script = _make_sbatch_string(
        command="true", folder=str(tmp_path / "jobs"), **executor._executor.parameters
    )
    for line in ("--partition=gpu", "--gpus-per-node=1", "--time=90", "--cpus-per-task=8"):
        assert f"#SBATCH {line}" in script


# ------------------------------------------------------------------------- GPU workflow


def test_gpu_workflow_file():
    path = ROOT / ".github" / "workflows" / "gpu-full.yml"
    workflow = yaml.safe_load(path.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    inputs = triggers["workflow_dispatch"]["inputs"]
    assert {"models", "datasets", "seeds"} <= set(inputs)
    (job,) = workflow["jobs"].values()
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    steps = job["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert 'pip install -U "jax[cuda12]"' in runs
    assert "python -m rhel_lib reproduce --profile full" in runs
    assert "python -m rhel_lib results" in runs
    order = [runs.index(s) for s in ("jax[cuda12]", "rhel_lib reproduce", "rhel_lib results")]
    assert order == sorted(order)
    upload = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert upload and "data_dir/results" in upload[0]["with"]["path"]
    assert upload[0].get("if") == "always()"


@pytest.mark.skipif(os.name != "posix", reason="ipc sockets are POSIX only")
def test_parallel_kernels_get_private_ipc_sockets(tmp_path, monkeypatch):
    """Two runs started together must not share socket names (they did when jupyter_client
    named them ``kernel-ipc-N`` in the working directory: the second kernel's client then
    received the first one's messages, "Invalid Signature")."""
    monkeypatch.chdir(tmp_path)
    manager_class = rp.kernel_manager_class()
    first, second = manager_class(), manager_class()
    assert first.transport == second.transport == "ipc"
    assert os.path.isabs(first.ip) and os.path.isabs(second.ip)
    assert os.path.dirname(first.ip) != os.path.dirname(second.ip)
    assert len(first.ip) + len("-65535") < 100  # AF_UNIX path limit

    import asyncio
    import concurrent.futures

    async def start_and_stop(manager):
        await manager.start_kernel()
        client = manager.client()
        client.start_channels()
        await client.wait_for_ready(timeout=120)
        reply = await client.kernel_info(reply=True)
        client.stop_channels()
        await manager.shutdown_kernel(now=True)
        return reply["content"]["status"]

    async def both():
        return await asyncio.gather(start_and_stop(first), start_and_stop(second))

    # in a thread of its own: an earlier test of this worker may have left an event loop
    # running in the main thread (nbclient/papermill), where asyncio.run() refuses to start
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(lambda: asyncio.run(both())).result(timeout=300) == ["ok", "ok"]
    assert not os.path.exists(os.path.dirname(first.ip))  # removed with the kernel
    assert not list(tmp_path.iterdir())  # nothing left in the working directory
