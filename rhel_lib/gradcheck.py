"""Static gradient comparison, RHEL versus BPTT (the paper's Fig. 4).

:func:`compare_gradients` differentiates the loss of one sample twice — with every
Hamiltonian unit on BPTT (autodiff) and on RHEL (echo) — using the same parameters, the same
BatchNorm state and the same dropout masks, and tabulates for every parameter array, per block:
the cosine similarity of the two gradients and the norm ratio ``‖g_RHEL‖ / ‖g_BPTT‖``.
:func:`plot_gradient_comparison` draws the table (two panels: cosine, norm ratio).

Example::

    model, state = make_model("LinHRU", data_dim=6, label_dim=4, hidden_dim=64, num_blocks=2,
                              ssm_dim=16, classification=True, key=jax.random.key(0))
    table = compare_gradients(model, state, x[0], y[0], epsilon=0.1, loss_scale=1e4)
    fig = plot_gradient_comparison(table)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from rhel_lib.models import model_loss, set_gradient

__all__ = ["PARAMETER_LABELS", "compare_gradients", "plot_gradient_comparison"]

#: Display names of the Hamiltonian units' parameters (the paper's notation).
PARAMETER_LABELS: dict[str, str] = {
    "unit.hamiltonian.A_hat": "A",
    "unit.hamiltonian.step_hat": "Δ",
    "unit.hamiltonian.log_step": "Δ",
    "unit.hamiltonian.B_real": "B (re)",
    "unit.hamiltonian.B_imag": "B (im)",
    "unit.hamiltonian.B": "B",
    "unit.hamiltonian.W": "W",
    "unit.hamiltonian.c_hat": "c",
    "unit.hamiltonian.alpha": "α",
    "unit.hamiltonian.bias": "b",
    "unit.C_real": "C (re)",
    "unit.C_imag": "C (im)",
    "unit.C": "C",
    "unit.D": "D",
}

_BLOCK_RE = re.compile(r"^\.blocks\[(\d+)\]\.(.*)$")


def _describe(path: str) -> dict[str, Any]:
    """Module, block, component and parameter name of a key path like
    ``.blocks[1].unit.hamiltonian.A_hat``."""
    match = _BLOCK_RE.match(path)
    if match:
        block, name = int(match.group(1)), match.group(2)
        component = name.split(".", 1)[0]
        return {
            "module": f"block {block}",
            "block": block,
            "component": component,
            "parameter": name,
            "label": PARAMETER_LABELS.get(name, name),
        }
    name = path.lstrip(".")
    module, _, rest = name.partition(".")
    return {
        "module": module,
        "block": None,
        "component": module,
        "parameter": rest or name,
        "label": f"{module}.{rest}" if rest else module,
    }


def _batch(x, y):
    """``(x, y)`` with a leading batch axis: one sequence ``(L, D)`` or a batch ``(B, L, D)``."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim == 2:
        return x[None], y[None]
    if x.ndim != 3:
        raise ValueError(f"x must be one sequence (L, D) or a batch (B, L, D); got {x.shape}")
    if x.shape[0] == 1 and (y.ndim == 0 or y.shape[0] != 1):
        y = y[None]  # one sample given with a batch axis, its label without
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels/targets for a batch of {x.shape[0]}")
    return x, y


@eqx.filter_jit
def _gradient(model, state, x, y, key):
    """Gradients of the training loss with respect to the parameters and to the input."""

    def loss(model_and_x):
        m, inputs = model_and_x
        return model_loss(m, state, inputs, y, key=key)[0]

    return eqx.filter_grad(loss)((model, x))


def _compare(path: str, a, b) -> dict[str, Any]:
    a = np.ravel(np.asarray(a, np.float64))
    b = np.ravel(np.asarray(b, np.float64))
    norm_a, norm_b = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    frozen = norm_a == 0.0 and norm_b == 0.0
    cosine = float(a @ b / (norm_a * norm_b)) if norm_a > 0 and norm_b > 0 else np.nan
    return {
        "path": path,
        "size": int(a.size),
        "bptt_norm": norm_a,
        "rhel_norm": norm_b,
        "cosine": np.nan if frozen else cosine,
        "norm_ratio": norm_b / norm_a if norm_a > 0 else np.nan,
        "rel_error": float(np.linalg.norm(b - a)) / norm_a if norm_a > 0 else np.nan,
        "frozen": frozen,
    }


def compare_gradients(
    model: eqx.Module,
    state: eqx.nn.State,
    x,
    y,
    *,
    epsilon: float = 0.1,
    loss_scale: float | str = 1e4,
    estimator: str = "centred",
    key: jax.Array | None = None,
    input_gradient: bool = False,
) -> list[dict[str, Any]]:
    """RHEL versus BPTT gradients of one sample (the paper's Fig. 4) or of a batch, per block
    and per parameter.

    Args:
        model: an HSSM (:func:`rhel_lib.models.make_model`); its units' current gradient
            setting does not matter (both are computed).
        state: the model's ``eqx.nn.State``.
        x: one input sequence ``(L, D)``, or a batch ``(B, L, D)``.
        y: its label (class id) or regression target; for a batch, one per sequence.
        epsilon, loss_scale, estimator: the RHEL settings compared.
        key: dropout key (default ``key(0)``); the same masks are used for both gradients.
        input_gradient: also compare the gradient with respect to ``x`` (a last row with
            ``module`` and ``path`` ``"input x"``): it has passed through every unit's echo.

    Returns:
        A tidy table, one dict per parameter array: ``module`` (``"encoder"``,
        ``"block 0"``, …, ``"head"``), ``block`` (int or None), ``component`` (``unit``,
        ``norm``, ``glu``, ``encoder``, ``head``), ``parameter`` (name in its module),
        ``label`` (paper notation for unit parameters), ``path``, ``size``, ``bptt_norm``,
        ``rhel_norm``, ``cosine``, ``norm_ratio`` (‖RHEL‖/‖BPTT‖), ``rel_error``
        (‖RHEL − BPTT‖/‖BPTT‖) and ``frozen`` (both gradients exactly zero, e.g. a frozen
        Δ; its cosine and ratio are NaN). ``pandas.DataFrame(table)`` makes it a frame.
    """
    key = jax.random.key(0) if key is None else key
    x, y = _batch(x, y)
    bptt = set_gradient(model, "bptt")
    rhel = set_gradient(model, "rhel", epsilon, loss_scale=loss_scale, estimator=estimator)
    g_bptt, x_bptt = _gradient(bptt, state, x, y, key)
    g_rhel, x_rhel = _gradient(rhel, state, x, y, key)
    ref = jax.tree_util.tree_leaves_with_path(eqx.filter(g_bptt, eqx.is_inexact_array))
    got = jax.tree_util.tree_leaves(eqx.filter(g_rhel, eqx.is_inexact_array))
    if len(ref) != len(got):  # pragma: no cover - same model, same structure
        raise RuntimeError("BPTT and RHEL gradients have different structures")
    table = []
    for (path, a), b in zip(ref, got):
        name = jax.tree_util.keystr(path)
        table.append({**_describe(name), **_compare(name, a, b)})
    if input_gradient:
        where = dict(module="input x", block=None, component="input", parameter="x", label="x")
        table.append({**where, **_compare("input x", x_bptt, x_rhel)})
    return table


def plot_gradient_comparison(
    table: Sequence[Mapping[str, Any]] | Any,
    *,
    units_only: bool = True,
    title: str | None = None,
):
    """Two-panel bar chart of a :func:`compare_gradients` table: cosine similarity and norm
    ratio RHEL/BPTT per parameter (x axis) and block (colour); dashed lines mark 1.

    Args:
        table: the list of dicts (or a DataFrame) from :func:`compare_gradients`.
        units_only: show only the Hamiltonian units' parameters (the paper's figure); False
            shows every parameter array (norms, GLUs, encoder, head).
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from rhel_lib.plotting import set_style

    set_style()
    frame = pd.DataFrame(table)
    frame = frame[~frame["frozen"].astype(bool)]
    if units_only:
        frame = frame[frame["component"] == "unit"]
    if frame.empty:
        raise ValueError("nothing to plot: the table has no (trainable) parameters to show")
    frame = frame.assign(module=frame["module"].astype(str))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    panels = [
        ("cosine", "cosine similarity (RHEL, BPTT)", "Cosine similarity"),
        ("norm_ratio", "norm ratio ‖RHEL‖ / ‖BPTT‖", "Norm ratio"),
    ]
    for ax, (column, ylabel, panel_title) in zip(axes, panels):
        sns.barplot(data=frame, x="label", y=column, hue="module", ax=ax, errorbar=None)
        ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1)
        upper = max(1.05, float(np.nanmax(frame[column])) * 1.05)
        lower = min(0.0, float(np.nanmin(frame[column])) * 1.05)
        ax.set_ylim(lower, upper)
        ax.set_xlabel("parameter")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title)
        ax.tick_params(axis="x", rotation=45 if frame["label"].nunique() > 8 else 0)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend(handles, labels, loc="outside right center")
    if title:
        fig.suptitle(title)
    return fig
