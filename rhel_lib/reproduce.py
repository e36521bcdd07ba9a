"""Batch reproduction: the run matrix, one papermill-executed notebook per run, executors.

``python -m rhel_lib reproduce --profile smoke|full`` expands a **run matrix** (model × dataset ×
gradient × seed) from the shipped configurations (:func:`expand_matrix`), skips the runs that
already finished, and executes the parameterised notebook ``rhel_lib/notebooks/
run_experiment.ipynb`` once per remaining run with `papermill <https://papermill.readthedocs.io>`_
(:func:`execute_run`). Each run leaves two files in its folder::

    <output_dir>/<profile>/<Model>/<Dataset>/<gradient>/seed<seed>/
        result.json    written by rhel_lib.train (or rhel_lib.hopfield_train): status, metrics
        run.ipynb      the executed notebook: settings, log, learning curve (or the traceback)
        kernel.log     the kernel process's own messages (XLA, crashes; usually empty)

A failed run does not stop the others: every failure is listed at the end and the command
exits with status 1. A run interrupted halfway (Ctrl-C, ``kill``, a cluster time limit) is
resumed from its last checkpoint the next time the same command runs; finished runs are never
run again.

**Executors** (:func:`reproduce`, ``--executor``):

* ``local`` — on this machine; ``--jobs N`` runs N notebooks at a time in separate processes;
* ``slurm`` — one SLURM job per run through :class:`submitit.AutoExecutor` (GPUs, CPUs,
  memory, time limit and partition from :data:`RESOURCES` or the command line);
* ``debug`` — submitit's in-process debug executor: the same submission code path as
  ``slurm``, without a cluster (used by the tests).

**Matrix.** HSSM runs (``LinHRU``/``NonlinHRU``) take their settings from
``rhel_lib/configs/<Model>/<Dataset>.json`` (:func:`rhel_lib.config.load_config`) and their
seeds from the profile (``smoke``: 2 seeds, ``full``: the paper's 5 seeds 2345 … 6789). The
Hopfield network of the follow-up (model ``HopfieldHRU`` on ``CopyPaste`` /
``HeidelbergDigits``) takes its settings, methods and seeds from
``rhel_lib/configs/hopfield/<Task>.json`` (:func:`rhel_lib.hopfield_train.load_hopfield_config`);
its "gradient" is the training method (``bptt``, ``rhel``, ``hebbian``, ``eprop``, ``tbptt``).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from rhel_lib.config import (
    ALL_DATASETS,
    ALL_GRADIENTS,
    ALL_MODELS,
    DATASETS,
    GRADIENTS,
    HOPFIELD_METHODS,
    HOPFIELD_MODEL,
    HOPFIELD_TASKS,
    PROFILES,
    ConfigError,
    ExperimentConfig,
    available_configs,
    load_config,
    parse_override,
)
from rhel_lib.results import json_safe, read_result, run_dir

__all__ = [
    "ALL_DATASETS",
    "ALL_MODELS",
    "DEFAULT_DATASETS",
    "EXECUTORS",
    "HOPFIELD_MODEL",
    "HOPFIELD_TASKS",
    "RESOURCES",
    "RUN_NOTEBOOK",
    "Run",
    "RunOutcome",
    "Summary",
    "execute_run",
    "expand_matrix",
    "find_data_root",
    "kernel_manager_class",
    "missing_data",
    "prepare_datasets",
    "reproduce",
    "resolve_config",
    "run_notebook_path",
    "run_state",
    "run_training",
]

EXECUTORS = ("local", "slurm", "debug")
RUN_NOTEBOOK = "run_experiment.ipynb"
NOTEBOOK_FILE = "run.ipynb"
KERNEL_LOG = "kernel.log"
OFFLINE_UEA = ("BasicMotions", "JapaneseVowels")
PAPER_DATASETS = (
    "EigenWorms",
    "SelfRegulationSCP1",
    "SelfRegulationSCP2",
    "EthanolConcentration",
    "Heartbeat",
    "MotorImagery",
    "PPG",
)

#: Datasets of a profile when ``--datasets`` is not given. ``smoke``: the two UEA sets that
#: ship inside the ``aeon`` wheel (no download) and Copy-Paste (generated); ``full``: the
#: RHEL paper's seven datasets (SPEC §8) and the Hopfield follow-up's two tasks.
DEFAULT_DATASETS: dict[str, tuple[str, ...]] = {
    "smoke": (*OFFLINE_UEA, "CopyPaste"),
    "full": (*PAPER_DATASETS, *HOPFIELD_TASKS),
}

#: Resources of one SLURM job per profile (``--gpus``, ``--cpus``, ``--mem-gb``,
#: ``--time-min``, ``--partition`` override them). ``timeout_min`` is SLURM's time limit; a
#: run stopped by it resumes from its last checkpoint when ``reproduce`` is run again.
RESOURCES: dict[str, dict[str, Any]] = {
    "smoke": {"gpus_per_node": 0, "cpus_per_task": 2, "mem_gb": 8, "timeout_min": 30},
    "full": {"gpus_per_node": 1, "cpus_per_task": 8, "mem_gb": 64, "timeout_min": 24 * 60},
}

#: SLURM job states in which a job submitted earlier is still alive (not submitted again).
_ALIVE_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED")


# ------------------------------------------------------------------------------ the matrix


@dataclasses.dataclass(frozen=True)
class Run:
    """One cell of the run matrix.

    ``overrides`` are the setting changes of this run as a sorted tuple of ``(key, value)``
    pairs (hashable); ``config`` is the resolved configuration (for display and for comparing
    with a finished run's ``result.json``; not part of equality).
    """

    profile: str
    model: str
    dataset: str
    gradient: str
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    @property
    def kind(self) -> str:
        """``"hopfield"`` for the Hopfield network, ``"hssm"`` otherwise."""
        return "hopfield" if self.model == HOPFIELD_MODEL else "hssm"

    @property
    def name(self) -> str:
        """``Model/Dataset/gradient/seed<seed>``."""
        return f"{self.model}/{self.dataset}/{self.gradient}/seed{self.seed}"

    def folder(self, output_dir: str | os.PathLike[str]) -> Path:
        """The run's folder below the results root ``output_dir``."""
        return run_dir(output_dir, self.profile, self.model, self.dataset, self.gradient, self.seed)

    def overrides_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.overrides}


def _split_list(values: Iterable[str] | str | None) -> list[str] | None:
    """``["a,b", "c"]`` or ``"a,b"`` -> ``["a", "b", "c"]``; None stays None."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    out = [v.strip() for value in values for v in str(value).split(",") if v.strip()]
    return out


def _check_choices(kind: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    import difflib

    for value in values:
        if value not in allowed:
            close = difflib.get_close_matches(value, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown {kind} {value!r}{hint} (known: {', '.join(allowed)})")


def _parse_overrides(texts: Iterable[str]) -> list[tuple[str, str, Any]]:
    """``[PATTERN:]KEY=VALUE`` -> ``(pattern, key, value)``; the pattern (default ``*``) is
    matched with :func:`fnmatch.fnmatch` against ``Model/Dataset`` (e.g. ``LinHRU/*``,
    ``*/PPG``); the value is parsed as JSON (a plain string when it is not JSON)."""
    out = []
    for text in texts or ():
        head, sep, _ = text.partition("=")
        if not sep:
            raise ConfigError(f"--override {text!r}: expected [MODEL/DATASET:]KEY=VALUE")
        pattern, key_text = "*", text
        if ":" in head:
            pattern, key_text = text.split(":", 1)
        key, raw = key_text.split("=", 1)
        key, raw = key.strip(), raw.strip()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.append((pattern.strip() or "*", key, value))
    return out


def _hssm_keys() -> set[str]:
    return {f.name for f in dataclasses.fields(ExperimentConfig)} - {"model", "dataset"}


def _hopfield_keys() -> set[str]:
    from rhel_lib.hopfield_train import HopfieldConfig

    return {f.name for f in dataclasses.fields(HopfieldConfig)} - {"task"}


def resolve_config(
    model: str, dataset: str, profile: str, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The resolved, validated settings of ``model`` × ``dataset`` for ``profile`` (a plain
    JSON-ready dict; ``rhel_lib.config`` for the HSSMs, ``rhel_lib.hopfield_train`` for
    ``HopfieldHRU``). Raises :class:`~rhel_lib.config.ConfigError` on invalid settings."""
    if model == HOPFIELD_MODEL:
        from rhel_lib.hopfield_train import load_hopfield_config

        if dataset not in HOPFIELD_TASKS:
            raise ConfigError(f"{model} runs on {', '.join(HOPFIELD_TASKS)}, not {dataset!r}")
        try:
            config = load_hopfield_config(dataset, profile, dict(overrides or {}))
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return json.loads(json.dumps(json_safe(config.to_dict())))
    return json.loads(json.dumps(load_config(model, dataset, profile, overrides).to_dict()))


def _pairs(models: Sequence[str], datasets: Sequence[str]) -> list[tuple[str, str]]:
    shipped = set(available_configs())
    pairs = []
    for model in models:
        for dataset in datasets:
            if model == HOPFIELD_MODEL:
                if dataset in HOPFIELD_TASKS:
                    pairs.append((model, dataset))
            elif (model, dataset) in shipped:
                pairs.append((model, dataset))
    return pairs


def expand_matrix(
    profile: str,
    *,
    models: Iterable[str] | str | None = None,
    datasets: Iterable[str] | str | None = None,
    gradients: Iterable[str] | str | None = None,
    seeds: Iterable[int] | None = None,
    overrides: Iterable[str] | None = None,
) -> list[Run]:
    """The runs of a profile: every shipped model × dataset (filtered) × gradient × seed.

    Args:
        profile: ``"smoke"`` or ``"full"``.
        models: subset of :data:`ALL_MODELS` (default: all; names or comma-separated text).
        datasets: subset of :data:`ALL_DATASETS` (default: :data:`DEFAULT_DATASETS` of the
            profile). Pairs without a configuration (e.g. ``HopfieldHRU`` × ``Heartbeat``) are
            left out.
        gradients: HSSM gradients (``bptt``, ``rhel``) and Hopfield methods (also
            ``hebbian``, ``eprop``, ``tbptt``); default: ``bptt`` and ``rhel`` for the HSSMs
            and the config's ``methods`` for the Hopfield network.
        seeds: default: the ``seeds`` of each resolved configuration.
        overrides: ``[MODEL/DATASET:]KEY=VALUE`` strings; an override without a pattern
            applies to every run whose settings have ``KEY`` (and must fit at least one).

    Returns:
        The runs, ordered by model, dataset, gradient, seed.

    Raises:
        ConfigError: an unknown name, an invalid setting, or a selection with no run.
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    models = _split_list(models) or list(ALL_MODELS)
    datasets = _split_list(datasets) or list(DEFAULT_DATASETS[profile])
    gradients = _split_list(gradients)
    _check_choices("model", models, ALL_MODELS)
    _check_choices("dataset", datasets, ALL_DATASETS)
    if gradients is not None:
        _check_choices("gradient", gradients, ALL_GRADIENTS)
    seeds = None if seeds is None else [int(s) for s in seeds]
    if seeds is not None:
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seeds must be distinct integers >= 0; got {seeds}")
    parsed = _parse_overrides(overrides or ())
    pairs = _pairs(models, datasets)
    if not pairs:
        raise ConfigError(
            f"no configuration for models {models} × datasets {datasets} "
            "(HopfieldHRU runs on CopyPaste/HeidelbergDigits, LinHRU/NonlinHRU on the others)"
        )
    key_sets = {"hssm": _hssm_keys()}
    every_pair = _pairs(ALL_MODELS, ALL_DATASETS)
    for pattern, key, value in parsed:
        matching = [(m, d) for m, d in every_pair if fnmatch.fnmatchcase(f"{m}/{d}", pattern)]
        if not matching:  # a typo; a pattern outside this selection is simply not used
            raise ConfigError(
                f"--override {pattern}:{key}: the pattern matches no Model/Dataset pair"
            )
        kinds = {"hopfield" if m == HOPFIELD_MODEL else "hssm" for m, _ in matching}
        if "hopfield" in kinds and "hopfield" not in key_sets:
            key_sets["hopfield"] = _hopfield_keys()
        if not any(key in key_sets[k] for k in kinds):
            if "hssm" in kinds:
                parse_override(f"{key}={json.dumps(value)}")  # raises, with a suggestion
            import difflib

            valid = sorted(set().union(*(key_sets[k] for k in kinds)))
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"--override: unknown key {key!r}{hint}")
    if any(m == HOPFIELD_MODEL for m, _ in pairs) and "hopfield" not in key_sets:
        key_sets["hopfield"] = _hopfield_keys()

    runs: list[Run] = []
    for model, dataset in pairs:
        kind = "hopfield" if model == HOPFIELD_MODEL else "hssm"
        mine = {
            key: value
            for pattern, key, value in parsed
            if fnmatch.fnmatchcase(f"{model}/{dataset}", pattern) and key in key_sets[kind]
        }
        config = resolve_config(model, dataset, profile, mine)
        if kind == "hopfield":
            allowed = list(config["methods"])
        else:
            allowed = list(GRADIENTS)
        chosen = allowed if gradients is None else [g for g in gradients if g in allowed]
        if gradients is not None and kind == "hopfield":
            chosen = [g for g in gradients if g in HOPFIELD_METHODS]
        run_seeds = list(config["seeds"]) if seeds is None else seeds
        frozen = tuple(sorted((k, _freeze(v)) for k, v in mine.items()))
        for gradient in chosen:
            for seed in run_seeds:
                runs.append(Run(profile, model, dataset, gradient, int(seed), frozen, config))
    if not runs:
        raise ConfigError("the selection contains no run (check --gradients)")
    return runs


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


# ------------------------------------------------------------------------------ run states


def _comparable(config: Mapping[str, Any], kind: str) -> dict[str, Any]:
    drop = ("seeds", "methods") if kind == "hopfield" else ("seeds",)
    return json.loads(json.dumps(json_safe({k: v for k, v in config.items() if k not in drop})))


def run_state(run: Run, output_dir: str | os.PathLike[str]) -> str:
    """``"finished"`` (a finished ``result.json`` with the same settings: skipped),
    ``"conflict"`` (finished with other settings: not touched), or ``"todo"`` (no result,
    or an unfinished one: running, interrupted or diverged)."""
    result = read_result(run.folder(output_dir))
    if result is None or result.get("status") != "finished":
        return "todo"
    if run.config and _comparable(result.get("config", {}), run.kind) != _comparable(
        run.config, run.kind
    ):
        return "conflict"
    return "finished"


# ---------------------------------------------------------------------------- data


def find_data_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest ``data_dir`` folder at or above ``start`` (default: the working directory),
    so that a notebook running in ``notebooks/`` uses the repository's ``data_dir``; falls
    back to ``<start>/data_dir``."""
    start = Path.cwd() if start is None else Path(start)
    for folder in (start, *start.resolve().parents):
        if (folder / "data_dir").is_dir():
            return folder / "data_dir"
    return start / "data_dir"


def prepare_datasets(
    runs: Iterable[Run | str],
    data_root: str | os.PathLike[str],
    log: Callable[[str], None] = print,
) -> None:
    """Process the offline UEA sets (BasicMotions, JapaneseVowels: shipped inside the ``aeon``
    wheel) that the runs (or dataset names) need and that are not processed yet. Other
    datasets must be downloaded first; their runs fail with a message naming the command."""
    from rhel_lib.data import processed_dir

    names = {r if isinstance(r, str) else r.dataset for r in runs}
    needed = sorted(names & set(OFFLINE_UEA))
    for name in needed:
        if (processed_dir("UEA", name, data_root) / "manifest.json").is_file():
            continue
        try:
            from rhel_lib.data import process_uea

            process_uea(name, data_root)
            log(
                f"processed the offline dataset {name} into {processed_dir('UEA', name, data_root)}"
            )
        except Exception as err:  # noqa: BLE001 - reported; the runs then fail with the cause
            log(f"warning: could not process {name} from the aeon package: {err}")


def _dataset_location(run: Run) -> tuple[str, str] | None:
    """``(collection, name)`` of the processed dataset a run reads (None: generated data)."""
    if run.kind == "hopfield":
        if run.dataset == "HeidelbergDigits":
            return "Heidelberg", str(run.config.get("dataset_name", "HeidelbergDigits"))
        return None
    info = DATASETS[run.dataset]
    return info.collection, info.name


def missing_data(run: Run, data_root: str | os.PathLike[str]) -> str | None:
    """Why ``run`` cannot start because its processed dataset is missing (naming the command
    that fetches it), or None when the data is there (or generated, as Copy-Paste is)."""
    from rhel_lib.data import fetch_command, processed_dir

    location = _dataset_location(run)
    if location is None:
        return None
    collection, name = location
    folder = processed_dir(collection, name, data_root)
    for file in ("manifest.json", "data.npz"):
        if not (folder / file).is_file():
            return (
                f"DatasetNotFoundError: {collection} dataset {name!r} is not available "
                f"({folder / file} not found). Fetch and process it with: "
                f"{fetch_command(collection, name, data_root)}"
            )
    return None


# ---------------------------------------------------------------- one run (in the notebook)


def run_training(
    *,
    profile: str,
    model: str,
    dataset: str,
    gradient: str,
    seed: int,
    overrides: Mapping[str, Any] | None = None,
    data_root: str | os.PathLike[str] = "data_dir",
    output_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train one run (what the run notebook calls): :func:`rhel_lib.train.train` for the
    HSSMs, :func:`rhel_lib.hopfield_train.train_hopfield` for ``HopfieldHRU``. Resumes from a
    checkpoint and skips a finished run. Returns the result dict (``status`` ``finished`` or
    ``diverged``)."""
    import jax

    output_dir = Path(data_root) / "results" if output_dir is None else Path(output_dir)
    config = resolve_config(model, dataset, profile, overrides)
    if config.get("dtype") == "float64":
        jax.config.update("jax_enable_x64", True)
    if model == HOPFIELD_MODEL:
        from rhel_lib.hopfield_train import load_hopfield_config, train_hopfield

        hconfig = load_hopfield_config(dataset, profile, dict(overrides or {}))
        return train_hopfield(
            hconfig,
            method=gradient,
            seed=int(seed),
            profile=profile,
            output_dir=output_dir,
            data_root=data_root,
            progress=progress,
        )
    from rhel_lib.train import train

    return train(
        load_config(model, dataset, profile, overrides),
        gradient=gradient,
        seed=int(seed),
        profile=profile,
        output_dir=output_dir,
        data_root=data_root,
        progress=progress,
    )


# ------------------------------------------------------------------ one run (papermill)


def run_notebook_path() -> Path:
    """The parameterised run notebook shipped with the package."""
    return Path(str(resources.files("rhel_lib") / "notebooks" / RUN_NOTEBOOK))


def kernel_manager_class(log_file=None):
    """A Jupyter kernel manager that starts an IPython kernel with *this* interpreter, so the
    run uses the same environment (and ``rhel_lib``) as ``reproduce`` whatever kernelspecs
    are installed. It talks to the kernel over local sockets in a private folder (no TCP
    ports: two kernels started at the same moment cannot pick the same addresses); the book
    build uses it too. The kernel process's own stdout/stderr (XLA and kernel messages, not the
    notebook's outputs) go to ``log_file`` (an open binary file) when given."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class ThisPythonKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            if os.name == "posix":  # local sockets: no TCP ports, no "unencrypted TCP" warning
                self.transport = "ipc"
                # jupyter_client names ipc sockets "<ip>-1", "<ip>-2", ... taking the first
                # names not on disk, with ip = "kernel-ipc" relative to the working directory:
                # two runs started at the same moment could pick the same sockets and talk to
                # each other's kernels ("Invalid Signature"). A private folder per kernel
                # makes the names unique (and short: socket paths are limited to ~100 bytes).
                self._ipc_dir = tempfile.mkdtemp(prefix="rhel-kernel-")
                self.ip = os.path.join(self._ipc_dir, "ipc")
            # a busy machine may need more than the default 5 s to shut a kernel down cleanly
            self.shutdown_wait_time = 30.0

        @property
        def kernel_spec(self):
            if self._kernel_spec is None:
                self._kernel_spec = KernelSpec(
                    argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    display_name=f"Python ({sys.executable})",
                    language="python",
                )
            return self._kernel_spec

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            ipc_dir = getattr(self, "_ipc_dir", None)
            if ipc_dir is not None and not restart:
                shutil.rmtree(ipc_dir, ignore_errors=True)

        async def start_kernel(self, **kwargs):
            if log_file is not None:
                kwargs.setdefault("stdout", log_file)
                kwargs.setdefault("stderr", log_file)
            return await super().start_kernel(**kwargs)

    return ThisPythonKernelManager


@dataclasses.dataclass
class RunOutcome:
    """What happened to one run: ``status`` is ``"finished"``, ``"skipped"`` or ``"failed"``."""

    run: Run
    status: str
    seconds: float = 0.0
    error: str | None = None
    notebook: str | None = None
    metric: str | None = None
    value: float | None = None

    def line(self) -> str:
        if self.status == "failed":
            where = f" (see {self.notebook})" if self.notebook else ""
            return f"FAILED {self.run.name}: {self.error}{where}"
        value = "" if self.value is None else f" test {self.metric} {self.value:.4f}"
        return f"{self.status} {self.run.name}:{value} ({self.seconds:.1f} s)"


def _one_line(text: Any, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def execute_run(
    run: Run,
    output_dir: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    timeout: float | None = None,
) -> RunOutcome:
    """Execute the run notebook for ``run`` with papermill into ``<run folder>/run.ipynb``
    and read back its ``result.json``. Never raises on a failed run (a Ctrl-C does): the
    outcome says what failed (the exception of the notebook cell, a diverged loss, a kernel
    that died)."""
    import papermill as pm

    started = time.perf_counter()
    output_dir = Path(output_dir).resolve()
    data_root = Path(data_root).resolve()
    folder = run.folder(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    notebook = folder / NOTEBOOK_FILE
    parameters = {
        "profile": run.profile,
        "model": run.model,
        "dataset": run.dataset,
        "gradient": run.gradient,
        "seed": run.seed,
        "overrides": json.loads(json.dumps(run.overrides_dict())),
        "data_root": str(data_root),
        "output_dir": str(output_dir),
    }
    error = None
    try:
        with open(folder / KERNEL_LOG, "ab") as log_file, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # papermill's "black is not installed" etc.
            pm.execute_notebook(
                str(run_notebook_path()),
                str(notebook),
                parameters=parameters,
                kernel_manager_class=kernel_manager_class(log_file),
                cwd=str(folder),
                progress_bar=False,
                log_output=False,
                execution_timeout=timeout,
                request_save_on_cell_execute=True,
                autosave_cell_every=60,
            )
    except pm.PapermillExecutionError as err:
        error = f"{err.ename}: {_one_line(err.evalue)}"
    except Exception as err:  # noqa: BLE001 - a dead kernel, a timeout, an unwritable folder
        error = f"{type(err).__name__}: {_one_line(err)}"
    seconds = time.perf_counter() - started
    result = read_result(folder)
    if error is None:
        if result is None:
            error = "the notebook ran but wrote no result.json"
        elif result.get("status") != "finished":
            error = f"run status {result.get('status')!r}: {_one_line(result.get('message', ''))}"
    if error is not None:
        return RunOutcome(run, "failed", seconds, error, str(notebook))
    value = result.get("test_metric", result.get("final_metric"))
    return RunOutcome(run, "finished", seconds, None, str(notebook), result.get("metric"), value)


# ------------------------------------------------------------------------------- executors


@dataclasses.dataclass
class Summary:
    """Outcome of :func:`reproduce`."""

    profile: str
    output_dir: Path
    outcomes: list[RunOutcome]
    seconds: float

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def executed(self) -> list[RunOutcome]:
        """Runs whose notebook was executed in this call (finished or failed)."""
        return [o for o in self.outcomes if o.status != "skipped" and o.notebook is not None]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def report(self) -> str:
        lines = [
            f"reproduce [{self.profile}]: {len(self.outcomes)} "
            f"run{'' if len(self.outcomes) == 1 else 's'} — "
            f"{self.count('finished')} done, {self.count('skipped')} skipped (already "
            f"finished), {self.count('failed')} failed — in {self.seconds:.1f} s; results in "
            f"{self.output_dir / self.profile}"
        ]
        if self.failed:
            lines.append(f"{len(self.failed)} failed run(s):")
            lines += [f"  {o.line()}" for o in self.failed]
            lines.append("Fix the cause and run the same command again: finished runs are kept.")
        return "\n".join(lines)


def _progress(total: int, initial: int, profile: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=f"reproduce [{profile}]",
        unit="run",
        disable=not enabled,
        dynamic_ncols=True,
        file=sys.stderr,
    )


def _local_serial(todo, execute, on_done):
    for run in todo:
        on_done(execute(run))


def _local_parallel(todo, execute, on_done, jobs: int):
    import concurrent.futures as cf
    import multiprocessing

    # spawn, not fork: the parent has JAX (and its threads) loaded.
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(execute, run): run for run in todo}
        try:
            for future in cf.as_completed(futures):
                try:
                    outcome = future.result()
                except Exception as err:  # noqa: BLE001 - a worker process died
                    outcome = RunOutcome(futures[future], "failed", 0.0, f"worker: {err}")
                on_done(outcome)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _submitit_executor(cluster: str, folder: Path, resources_: Mapping[str, Any]):
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {k: v for k, v in resources_.items() if v is not None}
    generic = {k: params.pop(k) for k in list(params) if not k.startswith("slurm_")}
    if cluster == "slurm":
        executor.update_parameters(**generic, **params)
    else:  # the debug executor takes no resources; the slurm ones are checked, then ignored
        executor.update_parameters(name=generic.get("name", "rhel"))
    return executor


def _jobs_file(folder: Path) -> Path:
    return folder / "jobs.json"


def _submitit_runs(todo, execute, on_done, cluster, folder: Path, resources_, log):
    """Submit one job per run and collect the outcomes as the jobs end. On SLURM, the job ids
    are kept in ``<folder>/jobs.json``: a later call re-attaches to the jobs that are still
    queued or running instead of submitting the same runs again."""
    import submitit
    from submitit.helpers import as_completed

    folder.mkdir(parents=True, exist_ok=True)
    registry: dict[str, str] = {}
    if cluster == "slurm" and _jobs_file(folder).is_file():
        registry = json.loads(_jobs_file(folder).read_text())
    executor = _submitit_executor(cluster, folder, resources_)
    jobs = {}
    for run in todo:
        job = None
        job_id = registry.get(run.name)
        if cluster == "slurm" and job_id:
            try:
                old = submitit.SlurmJob(folder=folder, job_id=job_id)
                if old.state.upper().split()[0] in _ALIVE_STATES:
                    job = old
                    log(f"{run.name}: job {job_id} is still {old.state}; waiting for it")
            except Exception:  # noqa: BLE001 - unknown to SLURM by now: submit again
                job = None
        if job is None:
            executor.update_parameters(name=f"rhel-{run.profile}-{run.name.replace('/', '-')}")
            job = executor.submit(execute, run)
        jobs[job] = run
        registry[run.name] = str(job.job_id)
    if cluster == "slurm":
        from rhel_lib.results import atomic_write_json

        atomic_write_json(_jobs_file(folder), registry)
        log(f"submitted {len(jobs)} SLURM job(s); logs and job ids in {folder}")
    for job in as_completed(list(jobs), poll_frequency=5 if cluster == "slurm" else 0.1):
        run = jobs[job]
        try:
            outcome = job.result()
        except Exception as err:  # noqa: BLE001 - the job itself failed (node, time limit)
            where = getattr(getattr(job, "paths", None), "stderr", None)
            message = f"job {job.job_id}: {_one_line(err, 300)}"
            if where is not None:
                message += f" (job log {where})"
            outcome = RunOutcome(run, "failed", 0.0, message)
        on_done(outcome)


def reproduce(
    profile: str = "smoke",
    *,
    models: Iterable[str] | str | None = None,
    datasets: Iterable[str] | str | None = None,
    gradients: Iterable[str] | str | None = None,
    seeds: Iterable[int] | None = None,
    overrides: Iterable[str] | None = None,
    runs: Sequence[Run] | None = None,
    executor: str = "local",
    jobs: int = 1,
    output_dir: str | os.PathLike[str] | None = None,
    data_root: str | os.PathLike[str] = "data_dir",
    timeout: float | None = None,
    resources_: Mapping[str, Any] | None = None,
    submitit_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Summary:
    """Run the matrix of ``profile`` (see :func:`expand_matrix` for the filters) and return a
    :class:`Summary`; :attr:`Summary.exit_code` is 1 when any run failed.

    Args:
        runs: an explicit list of runs instead of the filters.
        executor: ``"local"``, ``"slurm"`` or ``"debug"`` (submitit in-process).
        jobs: local runs executed at a time (separate processes when > 1).
        output_dir: results root (default ``<data_root>/results``).
        data_root: root of the processed datasets (offline UEA sets are processed if missing).
        timeout: seconds per notebook cell (None: no limit).
        resources_: SLURM job resources (default :data:`RESOURCES` of the profile); keys of
            :class:`submitit.AutoExecutor` (``gpus_per_node``, ``cpus_per_task``, ``mem_gb``,
            ``timeout_min``, ``slurm_partition``, ``slurm_account``, …).
        submitit_dir: folder of submitit's job files and logs (default
            ``<output_dir>/<profile>/_submitit``).
        progress: a tqdm bar over the runs (done / skipped / failed).
        log: where messages go (default: ``tqdm.write``).
    """
    import functools

    from tqdm.auto import tqdm

    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor {executor!r} (known: {', '.join(EXECUTORS)})")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1; got {jobs}")
    if not run_notebook_path().is_file():
        raise FileNotFoundError(
            f"the run notebook {run_notebook_path()} is missing from the installed package "
            "(reinstall rhel-lib; it is package data)"
        )
    started = time.perf_counter()
    say = log or (lambda message: tqdm.write(message, file=sys.stderr))
    data_root = Path(data_root)
    output_dir = data_root / "results" if output_dir is None else Path(output_dir)
    if runs is None:
        runs = expand_matrix(
            profile,
            models=models,
            datasets=datasets,
            gradients=gradients,
            seeds=seeds,
            overrides=overrides,
        )
    runs = list(runs)
    outcomes: list[RunOutcome] = []
    todo: list[Run] = []
    for run in runs:
        state = run_state(run, output_dir)
        if state == "finished":
            result = read_result(run.folder(output_dir)) or {}
            value = result.get("test_metric", result.get("final_metric"))
            outcomes.append(
                RunOutcome(run, "skipped", 0.0, None, None, result.get("metric"), value)
            )
        elif state == "conflict":
            outcomes.append(
                RunOutcome(
                    run,
                    "failed",
                    error=f"{run.folder(output_dir)} holds a finished run with other settings; "
                    "delete that folder to run it again, or choose another --output-dir",
                )
            )
        else:
            todo.append(run)
    prepare_datasets(todo, data_root, say)
    ready = []
    for run in todo:  # a missing dataset fails its runs at once, without starting a kernel
        why = missing_data(run, data_root)
        if why is None:
            ready.append(run)
        else:
            outcomes.append(RunOutcome(run, "failed", error=why))
    todo = ready

    bar = _progress(len(runs), len(outcomes), profile, progress)

    def counts() -> str:
        done = sum(o.status == "finished" for o in outcomes)
        skipped = sum(o.status == "skipped" for o in outcomes)
        failed = sum(o.status == "failed" for o in outcomes)
        return f"done={done} skipped={skipped} failed={failed}"

    bar.set_postfix_str(counts())
    if not progress and outcomes:
        skipped = sum(o.status == "skipped" for o in outcomes)
        say(
            f"{skipped} of {len(runs)} runs already finished (skipped); "
            f"{len(outcomes) - skipped} cannot start (listed at the end)"
        )

    def on_done(outcome: RunOutcome) -> None:
        outcomes.append(outcome)
        bar.update(1)
        bar.set_postfix_str(counts())
        say(outcome.line())

    execute = functools.partial(  # absolute paths: a cluster job may start elsewhere
        execute_run, output_dir=output_dir.resolve(), data_root=data_root.resolve(), timeout=timeout
    )
    try:
        if not todo:
            pass
        elif executor == "local":
            if jobs == 1 or len(todo) == 1:
                _local_serial(todo, execute, on_done)
            else:
                _local_parallel(todo, execute, on_done, jobs)
        else:
            folder = (
                Path(submitit_dir)
                if submitit_dir is not None
                else output_dir / profile / "_submitit"
            )
            merged = {**RESOURCES[profile], **(resources_ or {})}
            _submitit_runs(todo, execute, on_done, executor, folder, merged, say)
    finally:
        bar.close()
    order = {run: i for i, run in enumerate(runs)}
    outcomes.sort(key=lambda o: order.get(o.run, len(order)))
    return Summary(profile, output_dir, outcomes, time.perf_counter() - started)


# ------------------------------------------------------------------------------------- CLI


def add_reproduce_parser(subparsers) -> None:
    """The ``reproduce`` sub-command of ``python -m rhel_lib``."""
    from rhel_lib.__main__ import common_parent

    parser = subparsers.add_parser(
        "reproduce",
        parents=[common_parent()],
        help="run the reproduction matrix (papermill notebook per run; local, SLURM)",
        description="Expand the run matrix (model × dataset × gradient × seed) of a profile, skip\n"
        "finished runs, and execute the run notebook with papermill once per remaining run:\n"
        "  <output-dir>/<profile>/<Model>/<Dataset>/<gradient>/seed<seed>/"
        "{run.ipynb,result.json}\n"
        "Failed runs are listed at the end (exit status 1); running the same command again\n"
        "skips finished runs, resumes interrupted ones and retries failed ones.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  python -m rhel_lib reproduce --profile smoke\n"
        "  python -m rhel_lib reproduce --profile smoke --models LinHRU --gradients rhel "
        "--seeds 2345 --jobs 2\n"
        "  python -m rhel_lib reproduce --profile full --datasets Heartbeat,PPG "
        "--executor slurm --partition gpu --gpus 1 --time-min 720\n"
        "  python -m rhel_lib reproduce --profile full --dry-run     # list the matrix",
    )
    parser.add_argument("--profile", default="smoke", choices=PROFILES, help="default: smoke")
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help=f"models (space- or comma-separated; default all): {', '.join(ALL_MODELS)}",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        metavar="DATASET",
        help="datasets (default: smoke = BasicMotions, JapaneseVowels, CopyPaste; full = the "
        f"paper's seven and the Hopfield tasks); known: {', '.join(ALL_DATASETS)}",
    )
    parser.add_argument(
        "--gradients",
        nargs="+",
        metavar="GRADIENT",
        help="bptt, rhel (HSSMs and Hopfield) and hebbian, eprop, tbptt (Hopfield only); "
        "default: bptt,rhel for the HSSMs and the config's methods for the Hopfield network",
    )
    parser.add_argument(
        "--seeds", nargs="+", type=int, metavar="SEED", help="default: the profile's seeds"
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="[MODEL/DATASET:]KEY=VALUE",
        help="change a setting of the runs (value: JSON); the optional glob pattern selects "
        "runs, e.g. 'LinHRU/*:lr=1e-3'; repeatable",
    )
    parser.add_argument("--executor", default="local", choices=EXECUTORS, help="default: local")
    parser.add_argument(
        "--jobs", type=int, default=1, help="local executor: runs at a time (processes)"
    )
    parser.add_argument(
        "--data-root", default="data_dir", help="root of processed datasets (default data_dir)"
    )
    parser.add_argument(
        "--output-dir", default=None, help="results root (default <data-root>/results)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per notebook cell (default: none)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    slurm = parser.add_argument_group(
        "SLURM (--executor slurm; defaults per profile: "
        + "; ".join(
            f"{p}: {r['gpus_per_node']} GPU, {r['cpus_per_task']} CPUs, {r['mem_gb']} GB, "
            f"{r['timeout_min']} min"
            for p, r in RESOURCES.items()
        )
        + ")"
    )
    slurm.add_argument("--partition", default=None, help="SLURM partition")
    slurm.add_argument("--account", default=None, help="SLURM account")
    slurm.add_argument("--gpus", type=int, default=None, help="GPUs per job")
    slurm.add_argument("--cpus", type=int, default=None, help="CPUs per job")
    slurm.add_argument("--mem-gb", type=float, default=None, help="memory per job (GB)")
    slurm.add_argument("--time-min", type=int, default=None, help="time limit per job (minutes)")
    slurm.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. --slurm-option constraint=a100 (repeatable)",
    )
    slurm.add_argument(
        "--submitit-dir",
        default=None,
        help="submitit job files and logs (default <output-dir>/<profile>/_submitit)",
    )
    parser.set_defaults(func=run_reproduce_command)


def _slurm_resources(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "gpus_per_node": args.gpus,
        "cpus_per_task": args.cpus,
        "mem_gb": args.mem_gb,
        "timeout_min": args.time_min,
        "slurm_partition": args.partition,
        "slurm_account": args.account,
    }
    extra = {}
    for text in args.slurm_option:
        if "=" not in text:
            raise ConfigError(f"--slurm-option {text!r}: expected KEY=VALUE")
        key, value = text.split("=", 1)
        extra[key.strip().lstrip("-").replace("-", "_")] = value.strip()
    if extra:
        out["slurm_additional_parameters"] = extra
    return {k: v for k, v in out.items() if v is not None}


def run_reproduce_command(args: argparse.Namespace) -> int:
    runs = expand_matrix(
        args.profile,
        models=args.models,
        datasets=args.datasets,
        gradients=args.gradients,
        seeds=args.seeds,
        overrides=args.override,
    )
    output_dir = (
        Path(args.data_root) / "results" if args.output_dir is None else Path(args.output_dir)
    )
    if args.dry_run:
        for run in runs:
            state = run_state(run, output_dir)
            extra = f"  {dict(run.overrides)}" if run.overrides else ""
            print(f"{state:9s} {run.name}{extra}")
        todo = sum(run_state(r, output_dir) == "todo" for r in runs)
        print(f"{len(runs)} runs, {todo} to run; results in {output_dir / args.profile}")
        return 0
    summary = reproduce(
        args.profile,
        runs=runs,
        executor=args.executor,
        jobs=args.jobs,
        output_dir=output_dir,
        data_root=args.data_root,
        timeout=args.timeout,
        resources_=_slurm_resources(args),
        submitit_dir=args.submitit_dir,
        progress=not args.no_progress,
    )
    print(summary.report(), file=sys.stderr if summary.failed else sys.stdout)
    if not summary.failed:
        print(
            f"tables: python -m rhel_lib results --profile {args.profile}"
            + ("" if args.output_dir is None else f" --output-dir {args.output_dir}")
        )
    return summary.exit_code
