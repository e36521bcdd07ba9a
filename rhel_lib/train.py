"""Resumable training of an HSSM (LinHRU / NonlinHRU, BPTT or RHEL) on a processed dataset.

:func:`train` runs one ``(config, gradient, seed)``: Adam (optax) with a constant or scheduled
learning rate, minibatches from the seed's train split, validation every ``eval_every`` steps,
early stopping after ``patience`` evaluations without improvement, and the test metric of the
best validation checkpoint (accuracy for classification, MSE for regression).

**Reproducible and resumable by construction.** Everything random is a pure function of
``(seed, step)``: the split (``ds.splits(seed)``), the initial parameters (``key(seed)``), the
dropout key of step ``s`` (``fold_in(fold_in(key(seed), 1), s)``) and the minibatch of step
``s`` (sample positions ``s·B … s·B + B − 1`` of a stream of epochs, epoch ``e`` being the
permutation ``default_rng([seed, e]).permutation(n_train)``). A checkpoint at every evaluation
(model, optimiser state, BatchNorm state, best model, RNG key, step, best metric, history)
therefore holds all there is: a run killed at any point and restarted with the same command
continues from its last checkpoint and ends with exactly the metrics of an uninterrupted run.

Files: see :mod:`rhel_lib.results` (``result.json`` plus ``checkpoint/``). Checkpoints are
written atomically (temporary file + ``os.replace``): first ``ckpt-<step>.eqx``
(:func:`equinox.tree_serialise_leaves`), then the JSON sidecar ``checkpoint.json`` that names
it; older ``.eqx`` files are removed only afterwards, so a kill at any instant leaves a
consistent pair. No pickle anywhere.
"""

from __future__ import annotations

import datetime
import functools
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rhel_lib.config import DATASETS, GRADIENTS, ExperimentConfig
from rhel_lib.data import load_processed
from rhel_lib.data.store import DEFAULT_ROOT
from rhel_lib.models import make_model, model_loss
from rhel_lib.results import (
    CHECKPOINT_DIR,
    RunConflictError,
    atomic_write_json,
    check_seed,
    environment_info,
    finished_run,
    peak_memory_mb,
    read_json,
    run_dir,
    run_hash,
    say,
    write_result,
)

__all__ = [
    "CHECKPOINT_DIR",
    "RunConflictError",
    "TrainingData",
    "adam_optimizer",
    "batch_indices",
    "build_model",
    "evaluate",
    "load_checkpoint",
    "load_training_data",
    "make_optimizer",
    "train",
]

SIDECAR = "checkpoint.json"
CHECKPOINT_FORMAT = 1


# ----------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class TrainingData:
    """Arrays of one seed's splits, ready for the model (regression targets scaled)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    data_dim: int
    label_dim: int
    classification: bool
    target_offset: float = 0.0  # regression: y_model = (y - offset) / scale
    target_scale: float = 1.0


def load_training_data(
    config: ExperimentConfig, seed: int, data_root: str | os.PathLike[str] = DEFAULT_ROOT
) -> TrainingData:
    """Load the processed dataset of ``config`` and split it with ``seed``.

    Classification labels stay int class ids. Regression targets of shape ``(N, T)`` become
    ``(N, T, 1)`` float32; with ``target_scaling="minmax"`` they are mapped to ``[-1, 1]`` with
    the train split's min and max (the model's head ends in ``tanh``).

    Raises:
        rhel_lib.data.DatasetNotFoundError: naming the command that fetches the dataset.
    """
    info = DATASETS[config.dataset]
    ds = load_processed(info.collection, info.name, data_root)
    train_idx, val_idx, test_idx = ds.splits(seed)
    X = np.asarray(ds.X, np.float32)
    classification = info.task == "classification"
    if classification:
        y = np.asarray(ds.y, np.int32)
        label_dim = max(ds.n_classes, int(y.max()) + 1)
        offset, scale = 0.0, 1.0
    else:
        y = np.asarray(ds.y, np.float32)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim == 2:
            y = y[:, :, None]
        label_dim = int(y.shape[-1])
        expected = X.shape[1] // config.output_step
        if y.shape[1] != expected:
            raise ValueError(
                f"{config.dataset}: {y.shape[1]} targets per sequence, but length "
                f"{X.shape[1]} // output_step {config.output_step} = {expected} predictions"
            )
        if config.target_scaling == "minmax":
            low, high = float(y[train_idx].min()), float(y[train_idx].max())
            offset, scale = (high + low) / 2, max((high - low) / 2, 1e-12)
        else:
            offset, scale = 0.0, 1.0
        y = ((y - offset) / scale).astype(np.float32)
    return TrainingData(
        x_train=X[train_idx],
        y_train=y[train_idx],
        x_val=X[val_idx],
        y_val=y[val_idx],
        x_test=X[test_idx],
        y_test=y[test_idx],
        data_dim=int(X.shape[2]),
        label_dim=int(label_dim),
        classification=classification,
        target_offset=offset,
        target_scale=scale,
    )


@functools.lru_cache(maxsize=8)
def _epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """Train-set indices of the minibatch of optimiser step ``step`` (0-based): positions
    ``step·B … step·B + B − 1`` of the stream of epoch permutations
    ``default_rng([seed, epoch]).permutation(n)`` — a pure function of its arguments."""
    out = []
    position = step * batch_size
    end = position + batch_size
    while position < end:
        epoch, offset = divmod(position, n)
        take = min(n - offset, end - position)
        out.append(_epoch_permutation(seed, epoch, n)[offset : offset + take])
        position += take
    return np.concatenate(out)


# ---------------------------------------------------------------------- model and optimiser


def build_model(config: ExperimentConfig, gradient: str, seed: int, data: TrainingData):
    """The initial ``(model, state)`` of a run (parameters drawn from ``key(seed)``)."""
    return make_model(
        config.model,
        data_dim=data.data_dim,
        label_dim=data.label_dim,
        hidden_dim=config.hidden_dim,
        num_blocks=config.num_blocks,
        ssm_dim=config.ssm_dim,
        classification=data.classification,
        gradient=gradient,
        epsilon=config.epsilon,
        loss_scale=config.loss_scale,
        estimator=config.estimator,
        chunk_size=config.chunk_size,
        output_step=config.output_step,
        include_time=config.include_time,
        complex_ssm=config.complex_ssm,
        parallel=config.parallel_scan,
        train_step=config.train_step,
        step=config.step,
        dropout_rate=config.dropout_rate,
        dtype=jnp.dtype(config.dtype),
        key=jax.random.key(seed),
    )


_OPTIMIZER_KEYS = ("lr", "schedule", "warmup_steps", "min_lr_ratio", "grad_clip", "num_steps")


def make_optimizer(config: ExperimentConfig) -> optax.GradientTransformation:
    """Adam with the learning-rate schedule of ``config`` (and optional global-norm clipping).

    * ``constant``: ``lr`` (after a linear warm-up of ``warmup_steps`` if > 0);
    * ``cosine``: cosine decay from ``lr`` to ``lr · min_lr_ratio`` over ``num_steps``;
    * ``warmup_cosine``: linear warm-up from 0, then the cosine decay.
    """
    return adam_optimizer(**{k: getattr(config, k) for k in _OPTIMIZER_KEYS})


def adam_optimizer(
    *,
    lr: float,
    num_steps: int,
    schedule: str = "constant",
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
    grad_clip: float | None = None,
) -> optax.GradientTransformation:
    """:func:`make_optimizer` from plain settings (also the Hopfield network's optimiser,
    :func:`rhel_lib.hopfield_train.make_optimizer`)."""
    if schedule == "constant":
        if warmup_steps > 0:
            learning_rate = optax.join_schedules(
                [optax.linear_schedule(0.0, lr, warmup_steps), optax.constant_schedule(lr)],
                [warmup_steps],
            )
        else:
            learning_rate = lr
    elif schedule == "cosine":
        learning_rate = optax.cosine_decay_schedule(lr, num_steps, alpha=min_lr_ratio)
    else:
        learning_rate = optax.warmup_cosine_decay_schedule(
            0.0, lr, max(warmup_steps, 1), num_steps, end_value=lr * min_lr_ratio
        )
    adam = optax.adam(learning_rate)
    if grad_clip is not None:
        return optax.chain(optax.clip_by_global_norm(grad_clip), adam)
    return adam


def _train_step_for(config: ExperimentConfig):
    return _make_train_step(tuple((k, getattr(config, k)) for k in _OPTIMIZER_KEYS))


@functools.lru_cache(maxsize=16)
def _make_train_step(settings: tuple):
    """The jitted train step for the optimiser ``settings`` (cached, so that runs sharing
    them — several seeds in one process, other patience or evaluation settings — share one
    compilation)."""
    optimizer = adam_optimizer(**dict(settings))

    @eqx.filter_jit(donate="all-except-first")
    def train_step(base_key, model, opt_state, state, x, y, step):
        key = jax.random.fold_in(base_key, step)
        grad_fn = eqx.filter_value_and_grad(model_loss, has_aux=True)
        (loss, (state, _)), grads = grad_fn(model, state, x, y, key=key)
        params = eqx.filter(model, eqx.is_inexact_array)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        model = eqx.apply_updates(model, updates)
        return model, opt_state, state, loss

    return train_step


@eqx.filter_jit
def _eval_batch(model, state, x, y, mask):
    """Sums over the valid samples of a padded batch: ``(loss, correct or squared error)``."""
    out, _ = model(x, state, inference=True)
    if model.classification:
        log_probs = jax.nn.log_softmax(out.astype(jnp.float32), axis=-1)
        losses = -jnp.take_along_axis(log_probs, y[:, None], axis=-1)[:, 0]
        score = (jnp.argmax(out, axis=-1) == y).astype(jnp.float32)
    else:
        losses = jnp.mean((out - y) ** 2, axis=tuple(range(1, out.ndim)))
        score = losses
    return jnp.sum(losses * mask), jnp.sum(score * mask)


def evaluate(model, state, x: np.ndarray, y: np.ndarray, batch_size: int) -> dict[str, float]:
    """Loss and metric of ``model`` (inference mode) on ``(x, y)``: ``{"loss", "metric"}``
    with metric = accuracy (classification) or MSE (regression). Batches are padded to
    ``batch_size`` so that one compilation serves every batch."""
    n = x.shape[0]
    if n == 0:
        return {"loss": math.nan, "metric": math.nan}
    total_loss, total_score = 0.0, 0.0
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)
        mask = (idx < n).astype(np.float32)
        idx = np.minimum(idx, n - 1)
        loss, score = _eval_batch(model, state, jnp.asarray(x[idx]), jnp.asarray(y[idx]), mask)
        total_loss += float(loss)
        total_score += float(score)
    return {"loss": total_loss / n, "metric": total_score / n}


# ------------------------------------------------------------------------------ checkpoints


def _run_identity(config: ExperimentConfig, gradient: str, seed: int, profile: str) -> dict:
    """What determines a run's numbers (the list of ``seeds`` does not: one seed runs)."""
    settings = {k: v for k, v in config.to_dict().items() if k != "seeds"}
    return {"config": settings, "gradient": gradient, "seed": seed, "profile": profile}


def _checkpoint_tree(model, opt_state, state, best_model, best_state, key_data):
    return {
        "model": model,
        "opt_state": opt_state,
        "state": state,
        "best_model": best_model,
        "best_state": best_state,
        "key_data": key_data,
    }


def _save_checkpoint(folder: Path, tree: dict, sidecar: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{sidecar['step']:09d}.eqx"
    tmp = folder / f".{name}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as handle:
            eqx.tree_serialise_leaves(handle, tree)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / name)
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_json(folder / SIDECAR, {**sidecar, "eqx_file": name})
    for old in folder.glob("ckpt-*.eqx"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_checkpoint(folder: Path, like: dict) -> tuple[dict, dict] | None:
    """``(tree, sidecar)`` of the checkpoint in ``folder`` (``like``: a tree of the same
    structure, e.g. a fresh model), or None when there is none."""
    sidecar = read_json(folder / SIDECAR)
    if sidecar is None:
        return None
    tree = eqx.tree_deserialise_leaves(folder / sidecar["eqx_file"], like)
    return tree, sidecar


def _is_better(candidate: dict, best: dict | None, classification: bool) -> bool:
    """Higher accuracy (ties: lower loss) or lower MSE."""
    if best is None:
        return True
    if classification:
        if candidate["val_metric"] != best["val_metric"]:
            return candidate["val_metric"] > best["val_metric"]
        return candidate["val_loss"] < best["val_loss"]
    return candidate["val_metric"] < best["val_metric"]


def _copy_tree(tree):
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True) if eqx.is_array(x) else x, tree)


# ----------------------------------------------------------------------------------- train


def train(
    config: ExperimentConfig,
    *,
    gradient: str,
    seed: int,
    profile: str = "full",
    output_dir: str | os.PathLike[str] | None = None,
    data_root: str | os.PathLike[str] = DEFAULT_ROOT,
    progress: bool = True,
    resume: bool = True,
) -> dict[str, Any]:
    """Train one run and return its result (the content of ``result.json``).

    Args:
        config: the resolved, validated experiment configuration.
        gradient: ``"bptt"`` or ``"rhel"``.
        seed: split, initialisation, dropout and data order all derive from it.
        profile: label of the results folder (``"smoke"``/``"full"``).
        output_dir: results root (default ``<data_root>/results``); the run folder is
            ``<output_dir>/<profile>/<model>/<dataset>/<gradient>/seed<seed>``.
        data_root: root of the processed datasets.
        progress: show a tqdm progress bar.
        resume: continue from the run folder's checkpoint (and skip a finished run); False
            deletes the run folder's previous checkpoint and result and starts afresh.

    Returns:
        The result dict. ``result["status"]`` is ``"finished"`` or ``"diverged"`` (NaN/Inf
        loss; the last good checkpoint is kept); ``result["skipped"]`` is True when a
        finished result was found and nothing was run.

    Raises:
        rhel_lib.data.DatasetNotFoundError: the dataset is not processed (the message names
            the command that fetches it).
        RunConflictError: the run folder holds a run of another configuration.
    """
    if gradient not in GRADIENTS:
        raise ValueError(f"unknown gradient {gradient!r}; expected one of {list(GRADIENTS)}")
    seed = check_seed(seed)
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError(
            'dtype "float64" needs 64-bit JAX: set JAX_ENABLE_X64=1 (the command line does '
            "this by itself for such configs)"
        )
    output_dir = Path(data_root) / "results" if output_dir is None else Path(output_dir)
    folder = run_dir(output_dir, profile, config.model, config.dataset, gradient, seed)
    ckpt_dir = folder / CHECKPOINT_DIR
    identity = _run_identity(config, gradient, seed, profile)
    this_hash = run_hash(identity)
    label = f"{config.model}/{config.dataset} {gradient} seed {seed} [{profile}]"
    skipped = finished_run(folder, this_hash, resume=resume, label=label, progress=progress)
    if skipped is not None:
        return skipped

    data = load_training_data(config, seed, data_root)
    model, state = build_model(config, gradient, seed, data)
    optimizer = make_optimizer(config)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    base_key = jax.random.fold_in(jax.random.key(seed), 1)
    key_data = np.asarray(jax.random.key_data(base_key))

    step, best, history = 0, None, []
    evals_since_best, train_time, resumed, wall_before = 0, 0.0, 0, 0.0
    session_start = time.perf_counter()
    best_model, best_state = model, state
    loaded = load_checkpoint(
        ckpt_dir, _checkpoint_tree(model, opt_state, state, model, state, key_data)
    )
    if loaded is not None:
        tree, sidecar = loaded
        if sidecar.get("run_hash") != this_hash:
            raise RunConflictError(
                f"{ckpt_dir} holds a checkpoint of a different configuration; pass --restart "
                "(resume=False) to replace it, or choose another --output-dir"
            )
        model, opt_state, state = tree["model"], tree["opt_state"], tree["state"]
        best_model, best_state = tree["best_model"], tree["best_state"]
        step, best, history = sidecar["step"], sidecar["best"], sidecar["history"]
        evals_since_best = sidecar["evals_since_best"]
        train_time = sidecar["train_time_s"]
        wall_before = sidecar.get("wall_time_s", 0.0)
        resumed = sidecar.get("resumed", 0) + 1
        say(progress, f"{label}: resuming from the checkpoint at step {step}")

    n_train = data.x_train.shape[0]
    batch_size = config.batch_size
    eval_bs = min(config.eval_batch_size, max(data.x_val.shape[0], data.x_test.shape[0], 1))
    train_step = _train_step_for(config)
    num_params = int(
        sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array)))
    )
    base = {
        "run_hash": this_hash,
        "model": config.model,
        "dataset": config.dataset,
        "gradient": gradient,
        "seed": seed,
        "profile": profile,
        "task": config.task,
        "metric": "accuracy" if data.classification else "mse",
        "config": config.to_dict(),
        "num_params": num_params,
        "n_train": n_train,
        "n_val": int(data.x_val.shape[0]),
        "n_test": int(data.x_test.shape[0]),
        "target_scaling": None
        if data.classification
        else {"offset": data.target_offset, "scale": data.target_scale},
        "data_root": str(data_root),
        "run_dir": str(folder),
    }

    def patience_exhausted() -> bool:
        return config.patience is not None and evals_since_best >= config.patience

    def write_running(extra: dict | None = None) -> None:
        write_result(folder, {**base, **_summary(), "status": "running", **(extra or {})})

    def _summary() -> dict:
        return {
            "steps": step,
            "history": history,
            "best": best,
            "wall_time_s": wall_before + time.perf_counter() - session_start,
            "train_time_s": train_time,
            "steps_per_s": (step / train_time) if train_time > 0 else None,
            "resumed": resumed,
            "updated_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
            "peak_memory_mb": peak_memory_mb(),
            "environment": environment_info(),
        }

    from tqdm.auto import tqdm

    bar = tqdm(
        total=config.num_steps,
        initial=step,
        desc=label,
        disable=not progress,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    latest_val = history[-1]["val_metric"] if history else None
    loss_sum, loss_count = 0.0, 0
    segment_start = time.perf_counter()
    diverged = None
    try:
        while step < config.num_steps and not patience_exhausted():
            idx = batch_indices(seed, step, n_train, batch_size)
            x = jnp.asarray(data.x_train[idx])
            y = jnp.asarray(data.y_train[idx])
            model, opt_state, state, loss = train_step(
                base_key, model, opt_state, state, x, y, jnp.asarray(step, jnp.int32)
            )
            loss = float(loss)
            if not math.isfinite(loss):
                diverged = {"step": step + 1, "loss": loss, "where": "training loss"}
                break
            step += 1
            loss_sum += loss
            loss_count += 1
            bar.update(1)
            bar.set_postfix(
                loss=f"{loss:.4g}",
                val="-" if latest_val is None else f"{latest_val:.4g}",
                refresh=False,
            )
            if step % config.eval_every == 0 or step == config.num_steps:
                train_time += time.perf_counter() - segment_start
                val = evaluate(model, state, data.x_val, data.y_val, eval_bs)
                if not math.isfinite(val["loss"]):
                    diverged = {"step": step, "loss": val["loss"], "where": "validation loss"}
                    break
                record = {
                    "step": step,
                    "train_loss": loss_sum / max(loss_count, 1),
                    "val_loss": val["loss"],
                    "val_metric": val["metric"],
                    "time_s": train_time,
                }
                history.append(record)
                latest_val = val["metric"]
                loss_sum, loss_count = 0.0, 0
                if _is_better(record, best, data.classification):
                    best = {"step": step, "val_loss": val["loss"], "val_metric": val["metric"]}
                    best_model, best_state = _copy_tree(model), _copy_tree(state)
                    evals_since_best = 0
                else:
                    evals_since_best += 1
                tree = _checkpoint_tree(model, opt_state, state, best_model, best_state, key_data)
                _save_checkpoint(
                    ckpt_dir,
                    tree,
                    {
                        "format": CHECKPOINT_FORMAT,
                        "run_hash": this_hash,
                        "identity": identity,
                        "step": step,
                        "best": best,
                        "history": history,
                        "evals_since_best": evals_since_best,
                        "train_time_s": train_time,
                        "wall_time_s": wall_before + time.perf_counter() - session_start,
                        "resumed": resumed,
                        "rng": "dropout key of step s = fold_in(fold_in(key(seed), 1), s)",
                        "data_order": {
                            "kind": "epoch permutations default_rng([seed, epoch])",
                            "seed": seed,
                            "batch_size": batch_size,
                            "n_train": n_train,
                            "next_sample": step * batch_size,
                        },
                    },
                )
                write_running()
                segment_start = time.perf_counter()
    finally:
        bar.close()

    if diverged is not None:
        train_time += time.perf_counter() - segment_start
        last = history[-1]["step"] if history else None
        kept = (
            f"the last good checkpoint (step {last}) is kept in {ckpt_dir}"
            if last is not None
            else "no checkpoint had been written yet"
        )
        message = (
            f"{label}: training diverged: {diverged['where']} is {diverged['loss']} at step "
            f"{diverged['step']}; {kept}. Try a smaller lr (--override lr=...) or grad_clip."
        )
        say(progress, message, error=True)
        result = {
            **base,
            **_summary(),
            "status": "diverged",
            "diverged": diverged,
            "message": message,
        }
        write_result(folder, result)
        return {**result, "skipped": False}

    if best is None:  # num_steps reached without an evaluation (cannot happen when validated)
        raise RuntimeError(f"{label}: no validation was run")
    test = evaluate(best_model, best_state, data.x_test, data.y_test, eval_bs)
    result = {
        **base,
        **_summary(),
        "status": "finished",
        "stopped_early": patience_exhausted(),
        "best_val_metric": best["val_metric"],
        "best_val_loss": best["val_loss"],
        "best_step": best["step"],
        "test_metric": test["metric"],
        "test_loss": test["loss"],
    }
    if not data.classification:
        # MSE in the targets' own units (e.g. bpm²) as well as in the scaled units.
        result["test_mse_original_units"] = test["metric"] * data.target_scale**2
    write_result(folder, result)
    metric = result["metric"]
    say(
        progress,
        f"{label}: finished at step {step} — best val {metric} {best['val_metric']:.4f} "
        f"(step {best['step']}), test {metric} {test['metric']:.4f}",
    )
    return {**result, "skipped": False}
