"""How accurate is the RHEL gradient in finite precision? Error versus the nudging strength ε.

RHEL reads the gradient off the difference of two nudged echoes. Its relative error against the
exact gradient has two branches:

* **bias**: the centred estimator errs by ``O(ν²)`` where ``ν = εγ`` is the nudge (``O(ν)`` for the
  one-sided estimator); it vanishes for the linear unit, whose echoes are exactly linear in ``ν``;
* **round-off**: the two echoes differ by ``O(ν |g|)`` while each is computed with relative
  precision ``u`` (the unit round-off of the dtype), so the difference divided by ``ν`` carries an
  error ``∝ u / (ε γ |g|)``.

Together they make the U-shaped curve of :func:`epsilon_study`; the bottom of the U
(:func:`best_epsilon`) sits near ``ε* ∝ u^{1/3} / γ`` with an error ``∝ u^{2/3}`` — about
``1e-5`` in float32 and ``1e-11`` in float64. The loss scale ``γ`` moves the curve along the
ε axis (only ``εγ`` enters) without changing its depth; ``γ = "auto"`` (``1 / Σ_k |g_k|₁``) fixes
the total injected momentum to ``ε`` whatever the scale of the loss.

The study runs one Hamiltonian unit on a random input sequence with the loss
``L = (1/K) Σ_k ½ ‖R φ_{k+1} − y_k‖²`` (``R`` a fixed random readout, ``y`` a random target),
computes the RHEL estimate of ``∂L/∂θ`` for every Hamiltonian parameter ``θ`` (and ``∂L/∂u``)
in each requested dtype, and compares it with BPTT (autodiff) in float64 on the same parameters.

Example::

    records = epsilon_study(("LinHRU", "NonlinHRU"), loss_scales=(1.0, 1e4, "auto"))
    best_epsilon(records)            # the bottom of each U
    fig = plot_epsilon_study(records)
    anim = loss_scale_animation(records)   # one frame per γ; anim.to_jshtml() for a page

:func:`draw_epsilon_panel` draws one unit's curves on a given axis (the book's live explorer).

Compilation: the sweep over ``ε`` is one ``vmap`` over a traced nudge with
:func:`rhel_lib.echo.echo_gradients`. For a numeric ``γ`` the echo sees ``ε`` and ``γ`` only
through the nudge ``ν = εγ`` (the kick is ``ν g`` and the estimate is divided by ``ν``), so every
numeric ``γ`` of a study shares one compiled sweep over ``ν`` (run with ``loss_scale=1``); the
automatic ``γ`` has its own: two compilations per (unit, dtype), however many ``ε`` and ``γ``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from rhel_lib._validation import check_positive_int
from rhel_lib.echo import GradientConfig, echo_gradients, integrate
from rhel_lib.units import LinHRU, NonlinHRU

__all__ = [
    "DEFAULT_EPSILONS",
    "UNITS",
    "best_epsilon",
    "draw_epsilon_panel",
    "epsilon_study",
    "error_curve",
    "format_loss_scale",
    "loss_scale_animation",
    "plot_epsilon_study",
]

#: The default sweep: ``ε`` from ``1e-8`` to ``1`` (two points per decade).
DEFAULT_EPSILONS = np.logspace(-8, 0, 17)

#: Units the study knows how to build.
UNITS: dict[str, type] = {"LinHRU": LinHRU, "NonlinHRU": NonlinHRU}

#: Constructor options per unit unless overridden by ``unit_kwargs``. The linear unit runs its
#: sequential ``lax.scan`` (the same trajectory as the parallel scan to round-off, closer to a
#: physical system stepping in time, and several times faster to compile).
DEFAULT_UNIT_KWARGS: dict[str, dict[str, Any]] = {"LinHRU": {"parallel": False}, "NonlinHRU": {}}

_DTYPES = ("float16", "bfloat16", "float32", "float64")
_LINE_STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)), (0, (8, 2)))


# ---------------------------------------------------------------------------------------------
# float64
# ---------------------------------------------------------------------------------------------
def _x64_scope():
    """A context in which float64 arrays exist (the reference gradient always needs them).

    Nothing to do when ``jax_enable_x64`` is on; otherwise ``jax.enable_x64(True)`` (JAX ≥ 0.6;
    ``jax.experimental.enable_x64`` before), limited to the study.
    """
    if jax.config.jax_enable_x64:
        return contextlib.nullcontext()
    scope = getattr(jax, "enable_x64", None)
    if scope is None:
        scope = getattr(getattr(jax, "experimental", None), "enable_x64", None)
    if scope is None:
        raise RuntimeError(
            "epsilon_study needs float64 (the reference gradient is float64 BPTT), but "
            "jax_enable_x64 is off and this JAX has no enable_x64 context manager: call "
            'jax.config.update("jax_enable_x64", True) first (or set JAX_ENABLE_X64=1).'
        )
    return scope(True)


# ---------------------------------------------------------------------------------------------
# the computation
# ---------------------------------------------------------------------------------------------
def _loss(phi, readout, target, weight):
    """``weight · (1/K) Σ_k ½ ‖R φ_{k+1} − y_k‖²``."""
    residual = phi @ readout.T - target
    return weight * 0.5 * jnp.mean(jnp.sum(residual**2, axis=-1))


@eqx.filter_jit
def _bptt_gradients(ham, inputs, readout, target, weight):
    """Autodiff (BPTT) gradients of the study's loss w.r.t. the Hamiltonian and the inputs."""

    def loss(pair):
        h, u = pair
        return _loss(integrate(h, u, GradientConfig("bptt")), readout, target, weight)

    return eqx.filter_grad(loss)((ham, inputs))


@eqx.filter_jit
def _rhel_sweep(ham, inputs, readout, target, weight, nudges, config, batch_size):
    """RHEL gradients for every value of the traced override ``nudges`` (one compilation).

    Returns the stacked parameter and input gradients (leading axis: ``nudges``) and ``Σ|g|``.
    """
    params, static = eqx.partition(ham, eqx.is_inexact_array)
    final, record = ham.trajectory(ham.zero_state(inputs.dtype), inputs)
    cotangent = jax.grad(_loss)(record.phi_out, readout, target, weight)

    def one(nudge):
        return echo_gradients(params, static, inputs, final, cotangent, config, epsilon=nudge)

    if batch_size is None:
        grads, grad_inputs = jax.vmap(one)(nudges)
    else:
        grads, grad_inputs = jax.lax.map(one, nudges, batch_size=batch_size)
    return grads, grad_inputs, jnp.sum(jnp.abs(cotangent))


def _cast(tree, dtype):
    return jax.tree_util.tree_map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, tree)


def _named_leaves(tree) -> list[tuple[str, np.ndarray]]:
    """``(name, float64 array)`` for every inexact-array leaf (``.A_hat`` -> ``A_hat``)."""
    leaves = jax.tree_util.tree_leaves_with_path(eqx.filter(tree, eqx.is_inexact_array))
    return [
        (jax.tree_util.keystr(path).lstrip("."), np.asarray(x, np.float64)) for path, x in leaves
    ]


def _rel_error(value: np.ndarray, reference: np.ndarray, axis=None) -> np.ndarray:
    """``‖value − reference‖ / ‖reference‖`` (over the trailing axes when ``axis`` is given)."""
    return np.linalg.norm(value - reference, axis=axis) / np.linalg.norm(reference)


def _check_loss_scales(loss_scales) -> tuple:
    if isinstance(loss_scales, (str, int, float)):
        loss_scales = (loss_scales,)
    out = []
    for scale in loss_scales:
        if scale == "auto":
            out.append("auto")
        elif isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)):
            raise TypeError(f"loss_scales holds {scale!r}: expected numbers > 0 or 'auto'")
        elif not (math.isfinite(float(scale)) and scale > 0):
            raise ValueError(f"loss_scales holds {scale!r}: expected numbers > 0 or 'auto'")
        else:
            out.append(float(scale))
    if not out:
        raise ValueError("loss_scales is empty")
    return tuple(dict.fromkeys(out))


def _check_epsilons(epsilons) -> np.ndarray:
    eps = np.asarray(epsilons, np.float64).ravel()
    if eps.size == 0 or not np.all(np.isfinite(eps)) or np.any(eps <= 0):
        raise ValueError(f"epsilons must be finite numbers > 0; got {epsilons!r}")
    return np.sort(eps)


def epsilon_study(
    units: str | Sequence[str] = ("LinHRU", "NonlinHRU"),
    *,
    epsilons: Iterable[float] = DEFAULT_EPSILONS,
    dtypes: Sequence[str] = ("float32", "float64"),
    loss_scales: Sequence[float | str] = (1.0, 1e4, "auto"),
    paired_echoes: bool = True,
    estimator: str = "centred",
    seq_len: int = 64,
    hidden: int = 4,
    state: int = 8,
    step: float = 0.1,
    seed: int = 0,
    loss_weight: float = 1.0,
    chunk_size: int | None = 1024,
    unit_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int | None = None,
) -> list[dict[str, Any]]:
    """Relative error of the RHEL gradient against float64 BPTT, for every ε, dtype and γ.

    Args:
        units: ``"LinHRU"``, ``"NonlinHRU"`` or a sequence of them.
        epsilons: the nudging strengths ``ε > 0`` to sweep.
        dtypes: floating dtypes in which the forward pass and the echoes run (parameters, inputs
            and cotangents are cast from the float64 originals).
        loss_scales: values of ``γ`` (numbers > 0, or ``"auto"`` for ``γ = 1/Σ_k |g_k|₁``).
        paired_echoes: simulate the linear unit's two echoes separately, as hardware would (the
            nonlinear unit always does). ``False`` uses the library's default for quadratic
            Hamiltonians: mean ± half-difference, exact at any ε.
        estimator: ``"centred"`` (bias ``O(ε²)``) or ``"one-sided"`` (bias ``O(ε)``).
        seq_len, hidden, state: ``K`` steps, ``H`` input channels, ``P`` oscillators.
        step: the integration step ``Δ`` of both units (``0 < Δ < 1`` for LinHRU).
        seed: PRNG seed of the parameters, inputs, readout and target.
        loss_weight: a factor on the loss (e.g. a sum instead of a mean): it scales ``g``, hence
            moves the curves of a fixed ``γ`` but not those of ``γ = "auto"``.
        chunk_size: echo steps per chunk (see :class:`~rhel_lib.echo.GradientConfig`).
        unit_kwargs: extra constructor options per unit name, e.g.
            ``{"LinHRU": {"parallel": True}}`` (defaults: :data:`DEFAULT_UNIT_KWARGS`).
        batch_size: evaluate the echoes ``batch_size`` nudges at a time (``lax.map``) instead of
            all at once (``vmap``) — for long sequences or large states.

    Returns:
        Tidy records (a list of dicts; ``pandas.DataFrame(records)`` makes a table), one per
        (unit, dtype, loss_scale, epsilon, parameter), with keys

        * ``unit``, ``dtype``, ``loss_scale`` (as given: a float or ``"auto"``), ``gamma`` (the
          value of ``γ`` used; for ``"auto"`` ``1/Σ|g|`` in that dtype), ``estimator``,
          ``paired_echoes`` (whether the two echoes were simulated separately), ``epsilon``,
          ``nudge`` (``εγ``);
        * ``parameter``: ``"all"`` (every Hamiltonian parameter array concatenated), the name of
          one array (``"A_hat"``, ``"B_real"``, ``"W"``, …; arrays whose exact gradient is zero,
          such as a frozen step, are left out) or ``"inputs"`` (``∂L/∂u``, not part of ``"all"``);
        * ``rel_error``: ``‖g_RHEL − g_BPTT,64‖ / ‖g_BPTT,64‖``;
        * ``bptt_rel_error``: the same for BPTT run in ``dtype`` (the precision's own floor).
    """
    names = (units,) if isinstance(units, str) else tuple(units)
    for name in names:
        if name not in UNITS:
            raise ValueError(f"unknown unit {name!r}; expected one of {tuple(UNITS)}")
    dtypes = (dtypes,) if isinstance(dtypes, str) else tuple(dtypes)
    for dtype in dtypes:
        if str(dtype) not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {_DTYPES}")
    eps = _check_epsilons(epsilons)
    scales = _check_loss_scales(loss_scales)
    numeric = [s for s in scales if s != "auto"]
    if not isinstance(paired_echoes, bool):
        raise TypeError(f"paired_echoes must be a bool; got {paired_echoes!r}")
    if isinstance(loss_weight, bool) or not isinstance(loss_weight, (int, float)):
        raise TypeError(f"loss_weight must be a number; got {loss_weight!r}")
    if not (math.isfinite(loss_weight) and loss_weight != 0):
        raise ValueError(f"loss_weight must be a finite non-zero number; got {loss_weight!r}")
    check_positive_int("seq_len", seq_len)
    extra = {k: dict(v) for k, v in (unit_kwargs or {}).items()}

    records: list[dict[str, Any]] = []
    with _x64_scope():
        for index, name in enumerate(names):
            key = jax.random.fold_in(jax.random.PRNGKey(seed), index)
            k_unit, k_in, k_read, k_target = jax.random.split(key, 4)
            options = {**DEFAULT_UNIT_KWARGS.get(name, {}), **extra.get(name, {})}
            unit = UNITS[name](hidden, state, step=step, dtype=jnp.float64, key=k_unit, **options)
            ham = unit.hamiltonian
            q = ham.state_dim
            inputs = jax.random.normal(k_in, (seq_len, hidden), jnp.float64)
            readout = jax.random.normal(k_read, (hidden, q), jnp.float64) / math.sqrt(q)
            target = jax.random.normal(k_target, (seq_len, hidden), jnp.float64)
            weight = jnp.asarray(loss_weight, jnp.float64)
            ref_ham, ref_inputs = _bptt_gradients(ham, inputs, readout, target, weight)
            reference = _named_leaves(ref_ham)
            kept = [i for i, (_, r) in enumerate(reference) if np.any(r)]
            ref_all = np.concatenate([reference[i][1].ravel() for i in kept])
            ref_in = np.asarray(ref_inputs, np.float64)
            paired = paired_echoes or not ham.is_quadratic
            base = GradientConfig(
                "rhel",
                loss_scale=1.0,
                estimator=estimator,
                chunk_size=chunk_size,
                paired_echoes=paired_echoes,
            )

            for dtype_name in dtypes:
                dtype = jnp.dtype(str(dtype_name))
                args = [_cast(x, dtype) for x in (ham, inputs, readout, target, weight)]
                b_ham, b_in = _bptt_gradients(*args)
                b_leaves = _named_leaves(b_ham)
                floor = {reference[i][0]: _rel_error(b_leaves[i][1], reference[i][1]) for i in kept}
                floor["all"] = _rel_error(
                    np.concatenate([b_leaves[i][1].ravel() for i in kept]), ref_all
                )
                floor["inputs"] = _rel_error(np.asarray(b_in, np.float64), ref_in)

                runs = []  # (loss_scale, gamma per ε, stacked grads, stacked input grads)
                if numeric:
                    nudges = np.concatenate([eps * s for s in numeric])
                    grads, grads_in, _ = _rhel_sweep(
                        *args, jnp.asarray(nudges, dtype), base, batch_size
                    )
                    leaves = _named_leaves(grads)
                    grads_in = np.asarray(grads_in, np.float64)
                    for j, scale in enumerate(numeric):
                        rows = slice(j * eps.size, (j + 1) * eps.size)
                        runs.append(
                            (scale, scale, [(n, g[rows]) for n, g in leaves], grads_in[rows])
                        )
                if "auto" in scales:
                    config = base.replace(loss_scale="auto")
                    grads, grads_in, total = _rhel_sweep(
                        *args, jnp.asarray(eps, dtype), config, batch_size
                    )
                    total = float(total)
                    gamma = 1.0 / total if total > 0 else 1.0
                    runs.append(
                        ("auto", gamma, _named_leaves(grads), np.asarray(grads_in, np.float64))
                    )
                runs.sort(key=lambda run: scales.index(run[0]))

                for scale, gamma, leaves, grads_in in runs:
                    errors = {
                        reference[i][0]: _rel_error(
                            leaves[i][1].reshape(eps.size, -1),
                            reference[i][1].ravel(),
                            axis=1,
                        )
                        for i in kept
                    }
                    stacked = np.concatenate(
                        [leaves[i][1].reshape(eps.size, -1) for i in kept], axis=1
                    )
                    errors = {"all": _rel_error(stacked, ref_all, axis=1), **errors}
                    errors["inputs"] = _rel_error(
                        grads_in.reshape(eps.size, -1), ref_in.ravel(), axis=1
                    )
                    for k, epsilon in enumerate(eps):
                        for parameter, values in errors.items():
                            records.append(
                                {
                                    "unit": name,
                                    "dtype": str(dtype),
                                    "loss_scale": scale,
                                    "gamma": float(gamma),
                                    "estimator": base.estimator,
                                    "paired_echoes": paired,
                                    "epsilon": float(epsilon),
                                    "nudge": float(epsilon * gamma),
                                    "parameter": parameter,
                                    "rel_error": float(values[k]),
                                    "bptt_rel_error": float(floor[parameter]),
                                }
                            )
    return records


# ---------------------------------------------------------------------------------------------
# reading the records
# ---------------------------------------------------------------------------------------------
def _as_records(records) -> list[dict[str, Any]]:
    if hasattr(records, "to_dict"):  # a pandas DataFrame
        return records.to_dict("records")
    return list(records)


def _same_scale(a, b) -> bool:
    if a == "auto" or b == "auto":
        return a == b
    return math.isclose(float(a), float(b), rel_tol=1e-12)


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def error_curve(
    records, *, unit: str, dtype: str, loss_scale: float | str, parameter: str = "all"
) -> tuple[np.ndarray, np.ndarray]:
    """``(epsilons, rel_errors)`` of one setting, sorted by ``ε``."""
    rows = [
        r
        for r in _as_records(records)
        if r["unit"] == unit
        and r["dtype"] == str(dtype)
        and _same_scale(r["loss_scale"], loss_scale)
        and r["parameter"] == parameter
    ]
    if not rows:
        raise ValueError(
            f"no records for unit={unit!r}, dtype={dtype!r}, loss_scale={loss_scale!r}, "
            f"parameter={parameter!r}"
        )
    rows.sort(key=lambda r: r["epsilon"])
    return (
        np.array([r["epsilon"] for r in rows]),
        np.array([r["rel_error"] for r in rows]),
    )


def best_epsilon(records, *, parameter: str = "all") -> list[dict[str, Any]]:
    """The bottom of each U: for every (unit, dtype, loss_scale) the swept ``ε`` with the
    smallest relative error (of ``parameter``; the grid's resolution limits its precision).

    Returns one dict per setting (in the records' order) with the keys of the records
    (``epsilon``, ``rel_error``, ``gamma``, ``nudge``, ``bptt_rel_error``, …) and
    ``at_grid_edge``: whether the best ``ε`` is the smallest or largest swept (the true
    optimum may then lie outside the grid).
    """
    best: dict[tuple, dict[str, Any]] = {}
    swept: dict[tuple, list[float]] = {}
    for r in _as_records(records):
        if r["parameter"] != parameter:
            continue
        key = (r["unit"], r["dtype"], r["loss_scale"], r["estimator"], r["paired_echoes"])
        swept.setdefault(key, []).append(r["epsilon"])
        if key not in best or r["rel_error"] < best[key]["rel_error"]:
            best[key] = dict(r)
    if not best:
        raise ValueError(f"no records with parameter={parameter!r}")
    for key, row in best.items():
        row["at_grid_edge"] = row["epsilon"] in (min(swept[key]), max(swept[key]))
    return list(best.values())


def format_loss_scale(loss_scale: float | str, gamma: float | None = None) -> str:
    """A legend label for ``γ``: ``"γ = 1"``, ``"γ = 10⁴"`` (mathtext), ``"γ auto"``."""
    if loss_scale == "auto":
        return "γ auto" if gamma is None else f"γ auto (= {gamma:.2g})"
    value = float(loss_scale)
    exponent = math.log10(value)
    if value == 1.0:
        return "γ = 1"
    if abs(exponent - round(exponent)) < 1e-9:
        return f"γ = $10^{{{round(exponent)}}}$"
    return f"γ = {value:.3g}"


def _precision_color(dtype: str) -> str:
    from rhel_lib.plotting import PALETTE, PRECISION_COLORS

    return PRECISION_COLORS.get(dtype, PALETTE[_DTYPES.index(dtype) % len(PALETTE)])


def _unit_title(rows: list[dict[str, Any]], unit: str) -> str:
    paired = any(r["paired_echoes"] for r in rows if r["unit"] == unit)
    if unit == "LinHRU":
        return f"{unit} ({'paired echoes' if paired else 'mean ± half-difference'})"
    return unit


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def _draw_bptt_floor(ax, floor: float, color: str, dtype: str) -> None:
    """BPTT's own error in ``dtype`` as a dotted line (none in float64: BPTT is the reference)."""
    if floor > 0:
        ax.axhline(
            floor, color=color, linestyle=(0, (1, 2)), linewidth=1, alpha=0.8,
            label=f"BPTT in {dtype}",
        )  # fmt: skip


def _draw_epsilon_mark(ax, epsilon: float) -> None:
    ax.axvline(epsilon, color="0.4", linewidth=1, linestyle="--", label=f"ε = {epsilon:g}")


def draw_epsilon_panel(
    ax,
    records,
    *,
    unit: str,
    loss_scales: Sequence[float | str] | None = None,
    dtypes: Sequence[str] | None = None,
    parameter: str = "all",
    mark_best: bool = True,
    mark_epsilon: float | None = None,
    show_bptt: bool = True,
    ylim: tuple[float, float] | None = None,
    legend: bool = True,
    auto_value: bool = True,
) -> None:
    """Draw the error-versus-ε curves of one unit on ``ax`` (log-log).

    Colour per precision (:data:`rhel_lib.plotting.PRECISION_COLORS`), line style per ``γ``; a
    dot marks the best ``ε`` of each curve, a dotted horizontal line the same-precision BPTT
    error, and ``mark_epsilon`` (e.g. the paper's ``0.1``) draws a vertical line with the error
    of each curve there. ``auto_value`` writes the value of the automatic ``γ`` in the legend.
    """
    rows = [r for r in _as_records(records) if r["unit"] == unit and r["parameter"] == parameter]
    if not rows:
        raise ValueError(f"no records for unit={unit!r} and parameter={parameter!r}")
    dtypes = _ordered(r["dtype"] for r in rows) if dtypes is None else [str(d) for d in dtypes]
    scales = _ordered(r["loss_scale"] for r in rows) if loss_scales is None else list(loss_scales)
    bests = {(b["dtype"], b["loss_scale"]): b for b in best_epsilon(rows, parameter=parameter)}
    for dtype in dtypes:
        color = _precision_color(dtype)
        for j, scale in enumerate(scales):
            eps, err = error_curve(
                rows, unit=unit, dtype=dtype, loss_scale=scale, parameter=parameter
            )
            best = next(b for (d, s), b in bests.items() if d == dtype and _same_scale(s, scale))
            label = f"{dtype}, {format_loss_scale(scale, best['gamma'] if auto_value else None)}"
            ax.plot(
                eps, err, color=color, linestyle=_LINE_STYLES[j % len(_LINE_STYLES)], label=label
            )
            if mark_best:
                ax.plot(
                    [best["epsilon"]],
                    [best["rel_error"]],
                    "o",
                    color=color,
                    ms=7,
                    markeredgecolor="black",
                    zorder=5,
                )
            if mark_epsilon is not None:
                at = float(np.exp(np.interp(np.log(mark_epsilon), np.log(eps), np.log(err))))
                ax.plot(
                    [mark_epsilon], [at], "D", color=color, ms=6, markeredgecolor="white", zorder=6
                )
        floor = next(r["bptt_rel_error"] for r in rows if r["dtype"] == dtype)
        if show_bptt:
            _draw_bptt_floor(ax, floor, color, dtype)
    if mark_epsilon is not None:
        _draw_epsilon_mark(ax, mark_epsilon)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("nudging strength ε")
    ax.set_ylabel("relative gradient error")
    ax.set_title(_unit_title(rows, unit))
    if legend:
        ax.legend(fontsize="small", loc="best")


def plot_epsilon_study(
    records,
    *,
    units: Sequence[str] | None = None,
    loss_scales: Sequence[float | str] | None = None,
    dtypes: Sequence[str] | None = None,
    parameter: str = "all",
    show_bptt: bool = True,
    figsize: tuple[float, float] | None = None,
):
    """The study's figure: one log-log panel per unit of relative gradient error versus ``ε``,
    colours per precision, line styles per ``γ``, a dot at the best ``ε`` of each curve.

    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from rhel_lib.plotting import set_style

    set_style()
    rows = [r for r in _as_records(records) if r["parameter"] == parameter]
    if not rows:
        raise ValueError(f"no records with parameter={parameter!r}")
    units = _ordered(r["unit"] for r in rows) if units is None else list(units)
    shown = [
        r
        for r in rows
        if r["unit"] in units
        and (dtypes is None or r["dtype"] in [str(d) for d in dtypes])
        and (loss_scales is None or any(_same_scale(r["loss_scale"], s) for s in loss_scales))
    ]
    if not shown:
        raise ValueError("nothing to plot: no records match units, dtypes and loss_scales")
    errors = np.array([r["rel_error"] for r in shown])
    positive = errors[errors > 0]
    low = 10 ** (np.floor(np.log10(positive.min())) - 0.5) if positive.size else 1e-17
    ylim = (low, min(10 ** np.ceil(np.log10(errors.max())), 1e2))
    figsize = figsize or (5.2 * len(units), 4.2)
    fig, axes = plt.subplots(1, len(units), figsize=figsize, sharey=True, squeeze=False)
    for ax, unit in zip(axes[0], units):
        draw_epsilon_panel(
            ax,
            rows,
            unit=unit,
            loss_scales=loss_scales,
            dtypes=dtypes,
            parameter=parameter,
            show_bptt=show_bptt,
            ylim=ylim,
            legend=False,
            auto_value=False,
        )
        if ax is not axes[0, 0]:
            ax.set_ylabel("")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize="small")
    return fig


def loss_scale_animation(
    records,
    *,
    units: Sequence[str] | None = None,
    loss_scales: Sequence[float | str] | None = None,
    dtypes: Sequence[str] | None = None,
    parameter: str = "all",
    mark_epsilon: float | None = 0.1,
    interval: int = 700,
    figsize: tuple[float, float] | None = None,
):
    """An animation over ``γ`` (one frame per loss scale): the error-versus-ε curves of each unit
    (one panel per unit, one curve per precision), the best ``ε`` (dots) and the error at
    ``mark_epsilon`` (diamonds on a dashed vertical line).

    Frames only move the curves' data (the axes are drawn once), so ``anim.to_jshtml()`` is
    cheap. Returns the :class:`matplotlib.animation.FuncAnimation` (its figure is
    ``anim._fig``; close it after rendering).
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation
    from matplotlib.ticker import LogLocator, NullLocator

    from rhel_lib.plotting import set_style

    set_style()
    rows = [r for r in _as_records(records) if r["parameter"] == parameter]
    if not rows:
        raise ValueError(f"no records with parameter={parameter!r}")
    units = _ordered(r["unit"] for r in rows) if units is None else list(units)
    dtypes = _ordered(r["dtype"] for r in rows) if dtypes is None else [str(d) for d in dtypes]
    scales = _ordered(r["loss_scale"] for r in rows) if loss_scales is None else list(loss_scales)
    bests = best_epsilon(rows, parameter=parameter)
    curves, marks = {}, {}
    for unit in units:
        for dtype in dtypes:
            for scale in scales:
                eps, err = error_curve(
                    rows, unit=unit, dtype=dtype, loss_scale=scale, parameter=parameter
                )
                best = next(
                    b
                    for b in bests
                    if b["unit"] == unit
                    and b["dtype"] == dtype
                    and _same_scale(b["loss_scale"], scale)
                )
                at = None
                if mark_epsilon is not None:
                    at = float(np.exp(np.interp(np.log(mark_epsilon), np.log(eps), np.log(err))))
                curves[unit, dtype, scales.index(scale)] = (eps, err)
                marks[unit, dtype, scales.index(scale)] = (best, at)
    errors = np.concatenate([err for _, err in curves.values()])
    positive = errors[errors > 0]
    low = 10 ** (np.floor(np.log10(positive.min())) - 0.5) if positive.size else 1e-17
    high = min(10 ** np.ceil(np.log10(errors.max())), 1e2)
    all_eps = np.concatenate([eps for eps, _ in curves.values()])

    figsize = figsize or (4.6 * len(units) + 0.4, 3.9)
    fig, axes = plt.subplots(
        1, len(units), figsize=figsize, sharey=True, squeeze=False, layout="constrained"
    )
    artists = {}
    for ax, unit in zip(axes[0], units):
        for dtype in dtypes:
            color = _precision_color(dtype)
            (line,) = ax.plot(*curves[unit, dtype, 0], color=color, label=dtype)
            (dot,) = ax.plot(
                [1.0], [1.0], "o", color=color, ms=7, markeredgecolor="black", zorder=5
            )
            (diamond,) = ax.plot(
                [1.0], [1.0], "D", color=color, ms=6, markeredgecolor="white", zorder=6
            )
            artists[unit, dtype] = (line, dot, diamond)
            floor = next(
                r["bptt_rel_error"] for r in rows if r["unit"] == unit and r["dtype"] == dtype
            )
            _draw_bptt_floor(ax, floor, color, dtype)
        if mark_epsilon is not None:
            _draw_epsilon_mark(ax, mark_epsilon)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(all_eps.min() / 2, all_eps.max() * 2)
        ax.set_ylim(low, high)
        for axis in (ax.xaxis, ax.yaxis):  # few ticks: frames render fast
            axis.set_major_locator(LogLocator(numticks=6))
            axis.set_minor_locator(NullLocator())
        ax.set_xlabel("nudging strength ε")
        ax.set_title(_unit_title(rows, unit), fontsize="medium")
    axes[0, 0].set_ylabel("relative gradient error")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize="small")
    title = fig.suptitle("")

    def draw(i):
        changed = [title]
        for unit in units:
            for dtype in dtypes:
                line, dot, diamond = artists[unit, dtype]
                line.set_data(*curves[unit, dtype, i])
                best, at = marks[unit, dtype, i]
                dot.set_data([best["epsilon"]], [best["rel_error"]])
                if at is not None:
                    diamond.set_data([mark_epsilon], [at])
                changed += [line, dot, diamond]
        gamma = marks[units[0], dtypes[0], i][0]["gamma"]
        title.set_text(f"loss scale {format_loss_scale(scales[i], gamma)}")
        return changed

    draw(0)
    return FuncAnimation(fig, draw, frames=len(scales), interval=interval, blit=False)
