"""Training of the Hopfield Hamiltonian RNN on Copy-Paste and Heidelberg Digits (SPEC §6).

One run = ``(config, method, seed)``: a :class:`~rhel_lib.units.hopfield.HopfieldHRU` (``N``
neurons, per-step linear readout) trained with optax Adam, where the gradient of the
Hamiltonian's parameters comes from one of

* ``bptt``    — autodiff through the leapfrog (the unit with ``gradient="bptt"``);
* ``rhel``    — the generic RHEL echo of :mod:`rhel_lib.echo` (the unit with
  ``gradient="rhel"``);
* ``hebbian`` — the local contrastive Hebbian form of :mod:`rhel_lib.hebbian` (all Hamiltonian
  parameters from phase accumulators; no autodiff); by default (``hebbian_estimator``) the
  abstract's rule, free phase vs one nudged echo;
* ``eprop``   — e-prop, :func:`rhel_lib.baselines.eprop_positions`;
* ``tbptt``   — truncated BPTT with window ``tbptt_window`` (default 2),
  :func:`rhel_lib.baselines.truncated_bptt_positions`.

The readout (``C``, ``d``) gets its ordinary, instantaneous gradient (for ``rhel`` the generic echo
computes it from its retrace of the forward positions, to ``O(ε²)``). Everything
random is a pure function of the seed: the initial parameters (``jax.random.key(seed)``), the
Copy-Paste batch of step ``s`` (``default_rng([seed, 0, s])``), the test sequences
(``default_rng([seed, 1, i])``), the cosine probe batch (``default_rng([seed, 2, 0])``), and for
Heidelberg Digits the train/val split and the epoch permutations (``default_rng([seed, e])``).

For Copy-Paste the loss is a sum of per-step terms, so the cotangent ``∂L/∂φ_{k+1}`` that e-prop
uses is the instantaneous learning signal; for Heidelberg Digits (cross-entropy of the
time-averaged readout) it carries the whole sequence's output error, as in e-prop's
classification setting.

**Gradient alignment.** At the optimiser steps ``cosine_steps`` (fractions of ``num_steps``;
default start, middle, end) the method's gradient and the BPTT gradient are computed at the same
parameters on the same probe batch, and their cosine similarity is recorded (over all trainable
parameters, over the Hamiltonian's parameters, over ``M`` alone).

Results: ``<output_dir>/<profile>/HopfieldHRU/<task>/<method>/seed<seed>/result.json`` (the
layout of every model, :mod:`rhel_lib.results`; :func:`train_hopfield`'s default
``output_dir`` is ``data_dir/results``, shared with every model). The resume/skip rule is the
shared one (:func:`rhel_lib.results.finished_run`): a finished run with the same settings is
not run again, a folder holding a run of other settings is refused unless restarted.
:func:`results_table` collects the runs into mean ± std per method next to the published column
(``rhel_lib/configs/hopfield/published.json``).

Command line: the shared ``train`` command (one method, one or more seeds; default results root
``data_dir/results``) and the ``results`` command (``--format hopfield``: this table)::

    python -m rhel_lib train --model HopfieldHRU --dataset CopyPaste --gradient rhel \\
        --profile cpu --seed 0 1 2 3 4
    python -m rhel_lib results --profile cpu --format hopfield

``python -m rhel_lib.hopfield_train run|table`` is a deprecated alias (:func:`main`) that
forwards to them.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rhel_lib import config as shared_config
from rhel_lib.baselines import eprop_positions, truncated_bptt_positions
from rhel_lib.data.store import DEFAULT_ROOT
from rhel_lib.hebbian import hebbian_positions
from rhel_lib.results import (
    check_seed,
    environment_info,
    finished_run,
    run_dir,
    run_hash,
    say,
    write_result,
)
from rhel_lib.tasks.copy_paste import CopyPaste, bit_accuracy, copy_paste_batch, copy_paste_loss
from rhel_lib.train import adam_optimizer
from rhel_lib.units.hopfield import NONLINEARITIES, HopfieldHRU

__all__ = [
    "METHODS",
    "MODEL_NAME",
    "PROFILES",
    "TASKS",
    "HopfieldConfig",
    "build_unit",
    "config_path",
    "format_table",
    "gradient_cosines",
    "has_profile_settings",
    "load_hopfield_config",
    "main",
    "published_results",
    "results_table",
    "run_many",
    "train_hopfield",
]

MODEL_NAME = shared_config.HOPFIELD_MODEL
TASKS = shared_config.HOPFIELD_TASKS
METHODS = shared_config.HOPFIELD_METHODS
PROFILES = shared_config.HOPFIELD_PROFILES
DEFAULT_OUTPUT = Path(DEFAULT_ROOT) / "results"  # shared with every model


# --------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class HopfieldConfig:
    """Settings of a Hopfield-RNN experiment (every field is a key of the JSON configs).

    Task: ``task``; Copy-Paste lengths ``num_bits``, ``num_patterns``, ``pattern_length``,
    ``delay``, ``cue_length``; Heidelberg Digits ``dataset_name`` (processed name),
    ``val_fraction``.
    Model: ``state_dim`` (neurons), ``nonlinearity``, ``step`` (Δ), ``train_step``, ``alpha``,
    ``beta``, ``coupling_scale``, ``dtype``. Optimisation: ``lr``, ``schedule``
    (``constant``/``cosine``), ``grad_clip``, ``batch_size``, ``num_steps``, ``eval_every``,
    ``eval_size`` (Copy-Paste test sequences), ``eval_batch_size``. Gradients: ``epsilon``,
    ``loss_scale``, ``estimator``, ``chunk_size`` (RHEL; ``epsilon`` and ``loss_scale`` also for
    hebbian), ``hebbian_estimator``, ``tbptt_window``.
    Alignment: ``cosine_steps`` (fractions of ``num_steps`` in [0, 1]; empty: not measured),
    ``cosine_batch_size``.
    Runs: ``methods``, ``seeds``.
    """

    task: str = "CopyPaste"
    num_bits: int = 3
    num_patterns: int = 2
    pattern_length: int = 100
    delay: int = 199
    cue_length: int = 1
    dataset_name: str = "HeidelbergDigits"
    val_fraction: float = 0.1
    state_dim: int = 64
    nonlinearity: str = "tanh"
    step: float = 0.05
    train_step: bool = False
    alpha: float = 1.0
    beta: float = 1.0
    coupling_scale: float = 1.0
    dtype: str = "float32"
    lr: float = 0.01
    schedule: str = "constant"
    grad_clip: float | None = None
    batch_size: int = 32
    num_steps: int = 500
    eval_every: int = 100
    eval_size: int = 512
    eval_batch_size: int = 256
    epsilon: float = 0.1
    loss_scale: float | str = "auto"
    estimator: str = "centred"
    hebbian_estimator: str = "one-sided"
    chunk_size: int | None = 1024
    tbptt_window: int = 2
    cosine_steps: tuple[float, ...] = (0.0, 0.5, 1.0)
    cosine_batch_size: int = 32
    methods: tuple[str, ...] = ("bptt", "rhel", "eprop", "tbptt")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)

    def __post_init__(self):
        for name in ("cosine_steps", "methods", "seeds"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    # ---- derived
    @property
    def copy_paste(self) -> CopyPaste:
        return CopyPaste(
            self.num_bits, self.num_patterns, self.pattern_length, self.delay, self.cue_length
        )

    @property
    def cosine_at(self) -> tuple[int, ...]:
        """Optimiser steps (0 … ``num_steps``) at which the cosine to BPTT is measured."""
        return tuple(sorted({int(round(f * self.num_steps)) for f in self.cosine_steps}))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> HopfieldConfig:
        return from_dict({**self.to_dict(), **changes})

    def validate(self) -> None:
        def bad(key: str, why: str) -> ValueError:
            return ValueError(f"hopfield config: key {key!r} {why}; got {getattr(self, key)!r}")

        _choice = {
            "task": TASKS,
            "nonlinearity": NONLINEARITIES,
            "dtype": ("float32", "float64"),
            "schedule": ("constant", "cosine"),
            "estimator": ("centred", "one-sided"),
            "hebbian_estimator": ("centred", "one-sided"),
        }
        for key, choices in _choice.items():
            if getattr(self, key) not in choices:
                raise bad(key, f"must be one of {choices}")
        positive_int = (
            "num_bits num_patterns pattern_length cue_length state_dim batch_size num_steps "
            "eval_every eval_size eval_batch_size tbptt_window cosine_batch_size"
        ).split()
        for key in positive_int:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(key, "must be an integer >= 1")
        if isinstance(self.delay, bool) or not isinstance(self.delay, int) or self.delay < 0:
            raise bad("delay", "must be an integer >= 0")
        for key in ("step", "alpha", "beta", "coupling_scale", "lr", "epsilon"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(key, "must be a number")
            if not math.isfinite(value) or value <= 0:
                raise bad(key, "must be a finite number > 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise bad("val_fraction", "must lie in [0, 1)")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise bad("grad_clip", "must be > 0 or null")
        if self.loss_scale != "auto" and not (
            isinstance(self.loss_scale, (int, float)) and self.loss_scale > 0
        ):
            raise bad("loss_scale", 'must be "auto" or a number > 0')
        if self.chunk_size is not None and (
            not isinstance(self.chunk_size, int) or self.chunk_size < 1
        ):
            raise bad("chunk_size", "must be an integer >= 1 or null")
        if self.eval_every > self.num_steps:
            raise bad("eval_every", f"must be <= num_steps ({self.num_steps})")
        if any(
            isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f <= 1.0
            for f in self.cosine_steps
        ):
            raise bad("cosine_steps", "must be a list of fractions in [0, 1] (empty: none)")
        if not self.methods or any(m not in METHODS for m in self.methods):
            raise bad("methods", f"must be a non-empty list from {METHODS}")
        if not self.seeds or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.seeds
        ):
            raise bad("seeds", "must be a non-empty list of integers >= 0")
        if self.task == "CopyPaste":
            self.copy_paste  # noqa: B018 - validates the lengths


_FIELDS = {f.name: f for f in dataclasses.fields(HopfieldConfig)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def from_dict(values: Mapping[str, Any], source: str = "<dict>") -> HopfieldConfig:
    """A validated :class:`HopfieldConfig` from a mapping (unknown keys are an error)."""
    for key in values:
        if key not in _FIELDS:
            close = difflib.get_close_matches(key, list(_FIELDS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{source}: unknown key {key!r}{hint}")
    values = dict(values)
    for key in ("step", "alpha", "beta", "coupling_scale", "lr", "epsilon", "val_fraction"):
        if isinstance(values.get(key), int) and not isinstance(values.get(key), bool):
            values[key] = float(values[key])
    try:
        return HopfieldConfig(**values)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None


def config_path(task: str) -> Path:
    """``rhel_lib/configs/hopfield/<task>.json`` (:func:`rhel_lib.config.config_path`)."""
    return shared_config.config_path(MODEL_NAME, task)


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with the value parsed as JSON (a plain string when it is not JSON); the
    task is chosen with ``--dataset``, not overridden."""
    return shared_config.split_override(text, fixed=("task",))


def load_hopfield_config(
    task: str = "CopyPaste",
    profile: str = "full",
    overrides: Mapping[str, Any] | None = None,
) -> HopfieldConfig:
    """Resolve ``HopfieldConfig`` defaults ← file ``"full"`` ← file ``<profile>`` ← overrides."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    path = config_path(task)
    data = json.loads(path.read_text())
    for key in data:
        if key not in ("description", *PROFILES):
            raise ValueError(f"{path}: unknown top-level key {key!r}")
    values = {"task": task, **data.get("full", {})}
    if profile != "full":
        values.update(data.get(profile, {}))
    values.update(overrides or {})
    return from_dict(values, f"{path} [{profile}]")


def published_results() -> dict[str, Any]:
    """The follow-up's Table 1 (``rhel_lib/configs/hopfield/published.json``)."""
    return json.loads(config_path(TASKS[0]).parent.joinpath("published.json").read_text())


# -------------------------------------------------------------------------- model and data


def build_unit(config: HopfieldConfig, seed: int, input_dim: int, output_dim: int) -> HopfieldHRU:
    """The initial unit of a run (parameters from ``jax.random.key(seed)``)."""
    return HopfieldHRU(
        input_dim,
        config.state_dim,
        output_dim,
        nonlinearity=config.nonlinearity,
        step=config.step,
        train_step=config.train_step,
        alpha=config.alpha,
        beta=config.beta,
        coupling_scale=config.coupling_scale,
        epsilon=config.epsilon,
        loss_scale=config.loss_scale,
        estimator=config.estimator,
        chunk_size=config.chunk_size,
        dtype=jnp.dtype(config.dtype),
        key=jax.random.key(seed),
    )


def _outputs(unit: HopfieldHRU, inputs: jax.Array, method: str, config: HopfieldConfig):
    """Readout ``(K, O)`` of one sequence, with the gradient of ``method``."""
    if method in ("bptt", "rhel"):
        return unit.with_gradient(method)(inputs)
    ham = unit.hamiltonian
    if method == "hebbian":
        phi = hebbian_positions(
            ham,
            inputs,
            epsilon=config.epsilon,
            loss_scale=config.loss_scale,
            estimator=config.hebbian_estimator,
        )
    elif method == "eprop":
        phi = eprop_positions(ham, inputs)
    elif method == "tbptt":
        phi = truncated_bptt_positions(ham, inputs, config.tbptt_window)
    else:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    return jax.vmap(unit.readout)(phi, inputs)


def _batch_loss(unit, batch, method: str, config: HopfieldConfig):
    """Loss and metric of a batch: Copy-Paste ``(inputs, targets, mask)`` (BCE, bit accuracy)
    or Heidelberg ``(inputs, labels, lengths)`` (cross-entropy of the time-averaged readout
    over the valid frames, accuracy)."""
    inputs = batch[0].astype(unit.C.dtype)
    logits = jax.vmap(lambda u: _outputs(unit, u, method, config))(inputs)
    if config.task == "CopyPaste":
        _, targets, mask = batch
        return copy_paste_loss(logits, targets, mask), bit_accuracy(logits, targets, mask)
    _, labels, lengths = batch
    valid = (jnp.arange(logits.shape[1])[None, :] < lengths[:, None]).astype(logits.dtype)
    pooled = (
        jnp.sum(logits * valid[..., None], axis=1)
        / jnp.maximum(jnp.sum(valid, axis=1), 1.0)[:, None]
    )
    log_probs = jax.nn.log_softmax(pooled, axis=-1)
    loss = -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))
    accuracy = jnp.mean((jnp.argmax(pooled, axis=-1) == labels).astype(jnp.float32))
    return loss, accuracy


def make_optimizer(config: HopfieldConfig) -> optax.GradientTransformation:
    """Adam (constant or cosine-decayed learning rate), optional global-norm clipping: the
    HSSMs' optimiser, :func:`rhel_lib.train.adam_optimizer`."""
    return adam_optimizer(
        lr=config.lr,
        num_steps=config.num_steps,
        schedule=config.schedule,
        grad_clip=config.grad_clip,
    )


@functools.lru_cache(maxsize=32)
def _functions(config: HopfieldConfig, method: str):
    """Jitted ``train_step``, ``grad`` (of ``method`` and of BPTT) and ``evaluate`` (cached so
    that the seeds of one process share the compilations)."""
    optimizer = make_optimizer(config)

    def value_and_grad(m):
        return eqx.filter_value_and_grad(
            lambda unit, batch: _batch_loss(unit, batch, m, config), has_aux=True
        )

    @eqx.filter_jit
    def train_step(unit, opt_state, batch):
        (loss, metric), grads = value_and_grad(method)(unit, batch)
        updates, opt_state = optimizer.update(
            grads, opt_state, eqx.filter(unit, eqx.is_inexact_array)
        )
        return eqx.apply_updates(unit, updates), opt_state, loss, metric

    @eqx.filter_jit
    def gradients(unit, batch):
        return value_and_grad(method)(unit, batch)[1], value_and_grad("bptt")(unit, batch)[1]

    @eqx.filter_jit
    def evaluate(unit, batch):
        return _batch_loss(unit, batch, "bptt", config)

    return optimizer, train_step, gradients, evaluate


def gradient_cosines(grads: HopfieldHRU, reference: HopfieldHRU) -> dict[str, float]:
    """Cosine similarity of ``grads`` with ``reference`` over all trainable parameters
    (``"all"``), the Hamiltonian's (``"hamiltonian"``), the couplings ``M`` (``"W"``) and the
    readout (``"readout"``)."""

    def flat(tree) -> np.ndarray:
        leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))
        if not leaves:
            return np.zeros(0)
        return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in leaves])

    def cosine(a, b) -> float:
        a, b = flat(a), flat(b)
        denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
        return float(a @ b / denominator) if denominator > 0 else math.nan

    return {
        "all": cosine(grads, reference),
        "hamiltonian": cosine(grads.hamiltonian, reference.hamiltonian),
        "W": cosine(grads.hamiltonian.M, reference.hamiltonian.M),
        "readout": cosine((grads.C, grads.d), (reference.C, reference.d)),
    }


class _CopyPasteData:
    """Generated Copy-Paste batches (pure functions of seed and index)."""

    def __init__(self, config: HopfieldConfig, seed: int):
        self.task = config.copy_paste
        self.config = config
        self.seed = seed
        self.input_dim, self.output_dim = self.task.input_dim, self.task.output_dim

    def train_batch(self, step: int):
        b = copy_paste_batch(
            self.task, self.config.batch_size, seed=self.seed, split="train", index=step
        )
        return b.inputs, b.targets, b.mask

    def probe_batch(self):
        b = copy_paste_batch(
            self.task, self.config.cosine_batch_size, seed=self.seed, split="probe"
        )
        return b.inputs, b.targets, b.mask

    def eval_batches(self, split: str = "test"):
        size, per = self.config.eval_size, self.config.eval_batch_size
        for index, start in enumerate(range(0, size, per)):
            n = min(per, size - start)
            b = copy_paste_batch(self.task, n, seed=self.seed, split="test", index=index)
            yield (b.inputs, b.targets, b.mask), n

    def describe(self) -> dict[str, Any]:
        return {"task": self.task.to_dict(), "sequence_length": self.task.length}


class _HeidelbergData:
    """Processed Heidelberg Digits (log-mel), split by seed: val from the published train."""

    def __init__(self, config: HopfieldConfig, seed: int, data_root):
        from rhel_lib.data import load_processed

        ds = load_processed("Heidelberg", config.dataset_name, data_root)
        fractions = (1.0 - config.val_fraction, config.val_fraction, 0.0)
        train, val, test = ds.splits(seed, fractions)
        X = np.asarray(ds.X, np.float32)
        y = np.asarray(ds.y, np.int32)
        lengths = ds.lengths
        lengths = (
            np.full((X.shape[0],), X.shape[1], np.int32)
            if lengths is None
            else np.asarray(lengths, np.int32)
        )
        self.parts = {
            name: (X[idx], y[idx], lengths[idx])
            for name, idx in (("train", train), ("val", val), ("test", test))
        }
        self.config, self.seed = config, seed
        self.input_dim = int(X.shape[2])
        self.output_dim = int(max(ds.n_classes, int(y.max()) + 1))

    def _indices(self, step: int) -> np.ndarray:
        """Positions ``step·B … step·B + B − 1`` of the stream of epoch permutations
        ``default_rng([seed, epoch]).permutation(n_train)``."""
        n, size = self.parts["train"][0].shape[0], self.config.batch_size
        positions = np.arange(step * size, (step + 1) * size)
        epochs, offsets = np.divmod(positions, n)
        perms = {e: np.random.default_rng([self.seed, int(e)]).permutation(n) for e in set(epochs)}
        return np.asarray([perms[e][o] for e, o in zip(epochs, offsets)])

    def train_batch(self, step: int):
        idx = self._indices(step)
        return tuple(a[idx] for a in self.parts["train"])

    def probe_batch(self):
        x, y, lengths = self.parts["train"]
        n = min(self.config.cosine_batch_size, x.shape[0])
        return x[:n], y[:n], lengths[:n]

    def eval_batches(self, split: str = "test"):
        x, y, lengths = self.parts[split]
        per = self.config.eval_batch_size
        for start in range(0, x.shape[0], per):
            part = slice(start, start + per)
            yield (x[part], y[part], lengths[part]), int(x[part].shape[0])

    def describe(self) -> dict[str, Any]:
        return {name: int(part[0].shape[0]) for name, part in self.parts.items()}


def _evaluate(evaluate, unit, data, split: str = "test") -> dict[str, float]:
    """Mean loss and metric over a split (Copy-Paste: bit accuracy; Heidelberg: accuracy)."""
    total_loss = total_metric = count = 0.0
    for batch, n in data.eval_batches(split):
        loss, metric = evaluate(unit, tuple(jnp.asarray(a) for a in batch))
        total_loss += float(loss) * n
        total_metric += float(metric) * n
        count += n
    return {"loss": total_loss / count, "metric": total_metric / count}


# ------------------------------------------------------------------------------ training


def _run_hash(config: HopfieldConfig, method: str, seed: int, profile: str) -> str:
    """What determines a run's numbers (the lists of ``methods`` and ``seeds`` do not)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("methods", "seeds")}
    return run_hash({"config": settings, "method": method, "seed": seed, "profile": profile})


def has_profile_settings(result: Mapping[str, Any]) -> bool:
    """Whether a ``result.json`` dict was produced with exactly the settings its profile's
    shipped config gives today (no overrides), so that the documented command would skip it
    rather than refuse it as a run of other settings."""
    config = load_hopfield_config(result["task"], result["profile"])
    expected = _run_hash(config, result["method"], result["seed"], result["profile"])
    return result.get("run_hash") == expected


def train_hopfield(
    config: HopfieldConfig,
    *,
    method: str,
    seed: int,
    profile: str = "full",
    output_dir: str | os.PathLike[str] | None = DEFAULT_OUTPUT,
    data_root: str | os.PathLike[str] = DEFAULT_ROOT,
    progress: bool = True,
    restart: bool = False,
) -> dict[str, Any]:
    """Train one run and return its result (also written as ``result.json``).

    Args:
        config: resolved settings (:func:`load_hopfield_config`).
        method: one of :data:`METHODS`.
        seed: parameters, data and probe batch derive from it.
        profile: label of the results folder.
        output_dir: results root (``None``: write nothing).
        data_root: root of the processed datasets (Heidelberg Digits).
        progress: tqdm progress bar.
        restart: discard the run folder's previous result and run again (the shared
            ``--restart``; :func:`rhel_lib.results.finished_run`).

    Returns:
        The result: ``method`` (also as ``gradient``), ``task`` (also as ``dataset``),
        ``seed``, ``status`` (``finished`` or ``diverged``, with a ``message``), ``steps``,
        ``final_metric`` (Copy-Paste: test bit accuracy of the final parameters; Heidelberg:
        test accuracy of the best-validation parameters), ``history``, ``cosine`` (list of
        ``{"step", "all", "hamiltonian", "W", "readout"}``), ``wall_time_s``, ``num_params``,
        …; ``skipped`` is True when a finished result was found and nothing ran.

    Raises:
        rhel_lib.results.RunConflictError: the run folder holds a run of other settings.
    """
    from tqdm.auto import tqdm

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    seed = check_seed(seed)
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError('dtype "float64" needs jax_enable_x64 (jax.config.update(...))')
    started = time.perf_counter()
    this_hash = _run_hash(config, method, seed, profile)
    label = f"{MODEL_NAME}/{config.task} {method} seed {seed} [{profile}]"
    folder = None
    if output_dir is not None:
        folder = run_dir(output_dir, profile, MODEL_NAME, config.task, method, seed)
        skipped = finished_run(
            folder, this_hash, resume=not restart, label=label, progress=progress
        )
        if skipped is not None:
            return skipped

    if config.task == "CopyPaste":
        data = _CopyPasteData(config, seed)
    else:
        data = _HeidelbergData(config, seed, data_root)
    unit = build_unit(config, seed, data.input_dim, data.output_dim)
    optimizer, train_step, gradients, evaluate = _functions(config, method)
    opt_state = optimizer.init(eqx.filter(unit, eqx.is_inexact_array))
    num_params = int(
        sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(unit, eqx.is_inexact_array)))
    )
    probe = tuple(jnp.asarray(a) for a in data.probe_batch())
    cosine_at = set(config.cosine_at)
    cosines: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    best = None
    best_unit = unit

    def measure_cosine(step: int) -> None:
        g, g_ref = gradients(unit, probe)
        cosines.append({"step": step, **gradient_cosines(g, g_ref)})

    bar = tqdm(total=config.num_steps, desc=label, disable=not progress, dynamic_ncols=True)
    loss_sum = metric_sum = 0.0
    count = steps_done = 0
    status = "finished"
    train_time = 0.0
    try:
        for step in range(config.num_steps):
            if step in cosine_at:
                measure_cosine(step)
            t0 = time.perf_counter()
            batch = tuple(jnp.asarray(a) for a in data.train_batch(step))
            unit, opt_state, loss, metric = train_step(unit, opt_state, batch)
            loss = float(loss)
            train_time += time.perf_counter() - t0
            if not math.isfinite(loss):
                status = "diverged"
                history.append({"step": step + 1, "train_loss": loss})
                break
            loss_sum += loss
            metric_sum += float(metric)
            count += 1
            steps_done += 1
            bar.update(1)
            if (step + 1) % config.eval_every == 0 or step + 1 == config.num_steps:
                record = {
                    "step": step + 1,
                    "train_loss": loss_sum / count,
                    "train_metric": metric_sum / count,
                    "time_s": train_time,
                }
                split = "val" if config.task == "HeidelbergDigits" else "test"
                evaluation = _evaluate(evaluate, unit, data, split)
                record[f"{split}_loss"] = evaluation["loss"]
                record[f"{split}_metric"] = evaluation["metric"]
                if split == "val" and (best is None or evaluation["metric"] > best["metric"]):
                    best = {"step": step + 1, **evaluation}
                    best_unit = unit
                history.append(record)
                bar.set_postfix(
                    loss=f"{record['train_loss']:.4f}", acc=f"{evaluation['metric']:.4f}"
                )
                loss_sum = metric_sum = 0.0
                count = 0
        else:
            if config.num_steps in cosine_at:
                measure_cosine(config.num_steps)
    finally:
        bar.close()

    result: dict[str, Any] = {
        "run_hash": this_hash,
        "status": status,
        "model": MODEL_NAME,
        "task": config.task,
        "dataset": config.task,
        "method": method,
        "gradient": method,
        "seed": seed,
        "profile": profile,
        "steps": steps_done,
        "config": config.to_dict(),
        "data": data.describe(),
        "num_params": num_params,
        "metric": "bit_accuracy" if config.task == "CopyPaste" else "accuracy",
        "history": history,
        "cosine": cosines,
        "train_time_s": train_time,
        "environment": environment_info(),
    }
    if status == "finished":
        if config.task == "CopyPaste":
            final = history[-1]["test_metric"]
        else:
            test = _evaluate(evaluate, best_unit, data, "test")
            result.update(best_val=best, test_loss=test["loss"])
            final = test["metric"]
        result["final_metric"] = final
    else:
        last = history[-1]
        result["message"] = (
            f"{label}: training diverged: training loss is {last['train_loss']} at step "
            f"{last['step']}. Try a smaller lr (--override lr=...) or grad_clip."
        )
    result["wall_time_s"] = time.perf_counter() - started
    if folder is not None:
        result["run_dir"] = str(folder)
        write_result(folder, result)
        result["result_file"] = str(folder / "result.json")
    if status == "diverged":
        say(progress, result["message"], error=True)
    else:
        say(
            progress,
            f"{label}: finished at step {steps_done}; {result['metric']} "
            f"{result['final_metric']:.4f} in {result['wall_time_s']:.1f} s",
        )
    return {**result, "skipped": False}


def run_many(
    config: HopfieldConfig,
    *,
    profile: str,
    methods: Iterable[str] | None = None,
    seeds: Iterable[int] | None = None,
    output_dir: str | os.PathLike[str] | None = DEFAULT_OUTPUT,
    data_root: str | os.PathLike[str] = DEFAULT_ROOT,
    progress: bool = True,
    restart: bool = False,
) -> list[dict[str, Any]]:
    """Every ``(method, seed)`` run (defaults: the config's ``methods`` and ``seeds``)."""
    methods = tuple(config.methods if methods is None else methods)
    seeds = tuple(config.seeds if seeds is None else seeds)
    return [
        train_hopfield(
            config,
            method=m,
            seed=s,
            profile=profile,
            output_dir=output_dir,
            data_root=data_root,
            progress=progress,
            restart=restart,
        )
        for m in methods
        for s in seeds
    ]


# -------------------------------------------------------------------------------- tables


def results_table(
    results: Sequence[Mapping[str, Any]] | None = None,
    *,
    task: str = "CopyPaste",
    profile: str | None = None,
    output_dir: str | os.PathLike[str] = DEFAULT_OUTPUT,
) -> list[dict[str, Any]]:
    """Mean ± std (in %, population std over seeds) of the final metric per method, next to the
    published column, plus the mean cosine to BPTT at each measured step.

    ``results``: result dicts; by default the finished ``result.json`` files of ``task`` (and
    ``profile``, if given) below ``output_dir``.
    """
    if results is None:
        pattern = f"{profile or '*'}/{MODEL_NAME}/{task}/*/seed*/result.json"
        results = [json.loads(p.read_text()) for p in sorted(Path(output_dir).glob(pattern))]
    published = published_results()["tasks"].get(task, {})
    rows = []
    for method in METHODS:
        runs = [
            r
            for r in results
            if r.get("method") == method
            and r.get("task") == task
            and r.get("status") == "finished"
            and (profile is None or r.get("profile") == profile)
        ]
        reference = published.get(method)
        if not runs and reference is None:
            continue
        values = 100.0 * np.asarray([r["final_metric"] for r in runs], np.float64)
        by_step: dict[int, list[float]] = {}
        for r in runs:
            for c in r.get("cosine", []):
                by_step.setdefault(int(c["step"]), []).append(float(c["hamiltonian"]))
        rows.append(
            {
                "method": method,
                "n_seeds": len(runs),
                "seeds": sorted(int(r["seed"]) for r in runs),
                "mean": float(values.mean()) if runs else None,
                "std": float(values.std()) if runs else None,
                "published_mean": None if reference is None else reference["mean"],
                "published_std": None if reference is None else reference["std"],
                "cosine_hamiltonian": {s: float(np.mean(v)) for s, v in sorted(by_step.items())},
                "wall_time_s": float(sum(r.get("wall_time_s", 0.0) for r in runs)),
            }
        )
    return rows


_LABELS = {
    "bptt": "BPTT",
    "rhel": "RHEL (generic echo)",
    "hebbian": "RHEL (local Hebbian)",
    "eprop": "e-prop",
    "tbptt": "truncated BPTT",
}


def format_table(rows: Sequence[Mapping[str, Any]], task: str = "CopyPaste") -> str:
    """A Markdown table of :func:`results_table` rows."""

    def pm(mean, std):
        return "–" if mean is None else f"{mean:.2f} ± {std:.2f}"

    lines = [
        f"| method | {task}: measured (%) | seeds | published (%) | cosine to BPTT (start → end) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        cos = row["cosine_hamiltonian"]
        trend = " → ".join(f"{v:.3f}" for v in cos.values()) if cos else "–"
        lines.append(
            f"| {_LABELS.get(row['method'], row['method'])} | {pm(row['mean'], row['std'])} | "
            f"{row['n_seeds']} | {pm(row['published_mean'], row['published_std'])} | {trend} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Deprecated command line ``python -m rhel_lib.hopfield_train run|table``.

    ``run`` forwards every method to the shared ``python -m rhel_lib train --model
    HopfieldHRU`` (one call per method; its exit code is the worst of them) and then prints the
    table; ``table`` prints :func:`format_table` (also ``python -m rhel_lib results --format
    hopfield``). The results root is the shared one, ``data_dir/results``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m rhel_lib.hopfield_train",
        description="Deprecated: use `python -m rhel_lib train --model HopfieldHRU --dataset "
        "TASK --gradient METHOD` and `python -m rhel_lib results --format hopfield`.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train every (method, seed) of a profile")
    table = sub.add_parser("table", help="print the results table")
    for p in (run, table):
        p.add_argument("--task", default="CopyPaste", choices=TASKS)
        p.add_argument("--output-dir", default=str(DEFAULT_OUTPUT))
    run.add_argument("--profile", default="smoke", choices=PROFILES)
    table.add_argument("--profile", default=None, choices=PROFILES)
    run.add_argument("--methods", nargs="+", choices=METHODS)
    run.add_argument("--seeds", nargs="+", type=int)
    run.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--data-root", default=DEFAULT_ROOT)
    run.add_argument("--restart", action="store_true", help="rerun finished runs")
    run.add_argument("--no-progress", action="store_true")
    table.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    print(
        "python -m rhel_lib.hopfield_train is deprecated; use `python -m rhel_lib train "
        "--model HopfieldHRU --dataset TASK --gradient METHOD ...` and `python -m rhel_lib "
        "results --format hopfield`",
        file=sys.stderr,
    )

    if args.command == "table":
        rows = results_table(task=args.task, profile=args.profile, output_dir=args.output_dir)
        print(json.dumps(rows, indent=2) if args.json else format_table(rows, args.task))
        return 0
    from rhel_lib.__main__ import main as rhel_main

    methods = args.methods
    if methods is None:
        overrides = dict(parse_override(o) for o in args.override)
        methods = load_hopfield_config(args.task, args.profile, overrides).methods
    common = ["--model", MODEL_NAME, "--dataset", args.task, "--profile", args.profile]
    common += ["--output-dir", args.output_dir, "--data-root", str(args.data_root)]
    common += [f"--override={o}" for o in args.override]
    common += ["--seed", *map(str, args.seeds)] if args.seeds else []
    common += ["--restart"] * args.restart + ["--no-progress"] * args.no_progress
    codes = [rhel_main(["train", "--gradient", m, *common]) for m in methods]
    rows = results_table(task=args.task, profile=args.profile, output_dir=args.output_dir)
    print(format_table(rows, args.task))
    return max(codes)


if __name__ == "__main__":
    raise SystemExit(main())
