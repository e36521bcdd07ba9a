"""The ε / precision study: the U-shaped error curve, its branches, γ, and the linear unit."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import slope

from rhel_lib import precision
from rhel_lib.echo import GradientConfig, echo_gradients
from rhel_lib.precision import (
    best_epsilon,
    epsilon_study,
    error_curve,
    loss_scale_animation,
    plot_epsilon_study,
)

SIZES = {"seq_len": 32, "hidden": 3, "state": 4, "seed": 1}
EPS = np.logspace(-8, 0, 17)


def _curve(records, unit, dtype, scale, parameter="all"):
    return error_curve(records, unit=unit, dtype=dtype, loss_scale=scale, parameter=parameter)


def _best(records, unit, dtype, scale):
    (row,) = [
        b
        for b in best_epsilon(records)
        if b["unit"] == unit and b["dtype"] == dtype and b["loss_scale"] == scale
    ]
    return row


@pytest.fixture(scope="module")
def nonlin():
    return epsilon_study("NonlinHRU", epsilons=EPS, loss_scales=(1.0, 1e2, 1e4, "auto"), **SIZES)


@pytest.fixture(scope="module")
def lin_paired():
    return epsilon_study("LinHRU", epsilons=EPS, loss_scales=(1.0, 1e4), **SIZES)


@pytest.fixture(scope="module")
def lin_split():
    return epsilon_study("LinHRU", epsilons=EPS, loss_scales=(1.0,), paired_echoes=False, **SIZES)


def test_records_are_tidy(nonlin, lin_split):
    keys = {
        "unit", "dtype", "loss_scale", "gamma", "estimator", "paired_echoes", "epsilon", "nudge",
        "parameter", "rel_error", "bptt_rel_error",
    }  # fmt: skip
    assert all(set(r) == keys for r in nonlin + lin_split)
    # NonlinHRU: W, c_hat, alpha, bias, B (the frozen step has no gradient), "all" and "inputs"
    params = {r["parameter"] for r in nonlin}
    assert params == {"all", "inputs", "W", "c_hat", "alpha", "bias", "B"}
    assert len(nonlin) == 2 * 4 * EPS.size * len(params)
    assert {r["parameter"] for r in lin_split} == {
        "all", "inputs", "A_hat", "step_hat", "B_real", "B_imag"
    }  # fmt: skip
    assert {r["dtype"] for r in nonlin} == {"float32", "float64"}
    assert [s for s in dict.fromkeys(r["loss_scale"] for r in nonlin)] == [1.0, 1e2, 1e4, "auto"]
    assert all(r["paired_echoes"] for r in nonlin)  # a nonlinear unit always pairs its echoes
    assert not any(r["paired_echoes"] for r in lin_split)
    for r in nonlin:
        assert r["nudge"] == pytest.approx(r["epsilon"] * r["gamma"])
        assert np.isfinite(r["rel_error"]) and r["rel_error"] >= 0
        if r["loss_scale"] != "auto":
            assert r["gamma"] == r["loss_scale"]
    autos = {r["gamma"] for r in nonlin if r["loss_scale"] == "auto" and r["dtype"] == "float64"}
    assert len(autos) == 1 and 0 < autos.pop() < np.inf
    # float64 BPTT is the reference itself; float32 BPTT errs at its round-off level
    assert all(r["bptt_rel_error"] == 0 for r in nonlin if r["dtype"] == "float64")
    floors = [r["bptt_rel_error"] for r in nonlin if r["dtype"] == "float32"]
    assert 0 < max(floors) < 1e-4
    eps, err = _curve(nonlin, "NonlinHRU", "float64", 1.0)
    np.testing.assert_array_equal(eps, EPS)
    assert err.shape == EPS.shape


def test_nonlinear_bias_branch_is_quadratic_in_float64(nonlin):
    eps, err = _curve(nonlin, "NonlinHRU", "float64", 1.0)
    large = eps >= 1e-2
    assert slope(eps[large], err[large]) == pytest.approx(2.0, abs=0.15)
    assert err[-1] > 1e-6  # a real bias, far above round-off


def test_one_sided_bias_branch_is_linear():
    records = epsilon_study(
        "NonlinHRU",
        epsilons=np.logspace(-2, 0, 5),
        dtypes=("float64",),
        loss_scales=(1.0,),
        estimator="one-sided",
        **SIZES,
    )
    eps, err = _curve(records, "NonlinHRU", "float64", 1.0)
    assert slope(eps, err) == pytest.approx(1.0, abs=0.15)


def _left_branch(eps, err):
    """The round-off branch: ε 1.5 decades or more below the best ε, error < 0.3 (where the
    nudge has not vanished in round-off altogether)."""
    keep = (eps <= eps[np.argmin(err)] / 30) & (err < 0.3)
    assert keep.sum() >= 4
    return eps[keep], err[keep]


def test_float32_round_off_branch_grows_like_one_over_epsilon(nonlin):
    eps, err = _curve(nonlin, "NonlinHRU", "float32", 1.0)
    assert slope(*_left_branch(eps, err)) == pytest.approx(-1.0, abs=0.25)
    assert err[0] > 1e3 * err.min()
    eps, err = _curve(nonlin, "NonlinHRU", "float64", 1.0)
    assert slope(*_left_branch(eps, err)) == pytest.approx(-1.0, abs=0.25)


def test_float32_bottom_is_higher_and_further_right(nonlin):
    for scale in (1.0, 1e2, "auto"):
        b32, b64 = (_best(nonlin, "NonlinHRU", d, scale) for d in ("float32", "float64"))
        assert b32["epsilon"] > b64["epsilon"] * 30, scale
        assert 1e-7 < b32["rel_error"] < 1e-3, b32
        assert b64["rel_error"] < 1e-9, b64
        assert b32["rel_error"] > 100 * b64["rel_error"]
        assert not b32["at_grid_edge"] and not b64["at_grid_edge"]


def test_loss_scale_moves_the_curve_left(nonlin):
    smallest = {s: _curve(nonlin, "NonlinHRU", "float32", s)[1][0] for s in (1.0, 1e2, 1e4)}
    assert smallest[1.0] > 10 * smallest[1e2] > 100 * smallest[1e4]
    bests = [_best(nonlin, "NonlinHRU", "float32", s) for s in (1.0, 1e2, 1e4)]
    assert bests[0]["epsilon"] > bests[1]["epsilon"] > bests[2]["epsilon"]
    # only εγ matters: the bottom of the U keeps its depth
    depths = [b["rel_error"] for b in bests]
    assert max(depths) < 10 * min(depths)
    for b in bests:
        assert 1e-4 < b["nudge"] < 10


def test_linear_unit_has_no_bias_branch(lin_paired):
    eps, err = _curve(lin_paired, "LinHRU", "float64", 1.0)
    assert err[-1] < 1e-12  # ε = 1: no O(ε²) bias at all
    assert err[0] > 1e3 * err[-1]  # paired echoes: round-off ∝ 1/ε remains
    assert slope(*_left_branch(eps, err)) == pytest.approx(-1.0, abs=0.25)
    eps, err = _curve(lin_paired, "LinHRU", "float32", 1.0)
    assert err[-1] < 1e-4 and err[0] > 1e-2


def test_linear_unit_without_paired_echoes_is_exact_at_every_epsilon(lin_split):
    _, err64 = _curve(lin_split, "LinHRU", "float64", 1.0)
    assert err64.max() < 1e-12
    _, err32 = _curve(lin_split, "LinHRU", "float32", 1.0)
    floor = next(r["bptt_rel_error"] for r in lin_split if r["dtype"] == "float32")
    assert err32.max() < max(20 * floor, 1e-5)  # float32 round-off only, independent of ε
    assert err32.max() < 10 * err32.min()


def test_a_numeric_loss_scale_enters_only_through_the_nudge():
    """The study runs every numeric γ as ``loss_scale=1`` with ε → εγ: the same arithmetic."""
    unit = precision.UNITS["NonlinHRU"](3, 4, step=0.1, dtype=jnp.float64, key=jax.random.key(4))
    ham = unit.hamiltonian
    u = jax.random.normal(jax.random.key(5), (16, 3), jnp.float64)
    final, record = ham.trajectory(ham.zero_state(jnp.float64), u)
    g = jax.random.normal(jax.random.key(6), record.phi_out.shape, jnp.float64)
    epsilon, gamma = 2.0**-20, 2.0**10  # εγ exact in every precision
    configured = GradientConfig("rhel", epsilon=epsilon, loss_scale=gamma)

    @eqx.filter_jit
    def both(h, uu, ff, gg):
        params, static = eqx.partition(h, eqx.is_inexact_array)
        direct = echo_gradients(params, static, uu, ff, gg, configured)
        nudge = jnp.asarray(epsilon * gamma, uu.dtype)
        unit_scale = configured.replace(loss_scale=1.0)
        return direct, echo_gradients(params, static, uu, ff, gg, unit_scale, epsilon=nudge)

    for dtype, rtol in ((jnp.float64, 1e-12), (jnp.float32, 1e-5)):
        direct, nudged = both(*(precision._cast(x, dtype) for x in (ham, u, final, g)))
        for a, b in zip(jax.tree_util.tree_leaves(direct), jax.tree_util.tree_leaves(nudged)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=0)


def test_best_epsilon_and_grid_edges(lin_paired):
    bests = best_epsilon(lin_paired)
    assert len(bests) == 2 * 2  # dtypes × loss scales
    for b in bests:
        eps, err = _curve(lin_paired, "LinHRU", b["dtype"], b["loss_scale"])
        assert b["rel_error"] == err.min() and b["epsilon"] == eps[np.argmin(err)]
        assert b["at_grid_edge"] == (b["epsilon"] in (eps[0], eps[-1]))
    # with γ = 1 the linear unit's error keeps falling up to the largest ε swept
    assert _best(lin_paired, "LinHRU", "float64", 1.0)["at_grid_edge"]
    per_leaf = best_epsilon(lin_paired, parameter="B_real")
    assert all(b["parameter"] == "B_real" for b in per_leaf)


def test_plot_epsilon_study(nonlin, lin_paired):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plot_epsilon_study(lin_paired + nonlin, loss_scales=(1.0, 1e4))
    axes = fig.get_axes()
    assert len(axes) == 2
    assert [ax.get_title() for ax in axes] == ["LinHRU (paired echoes)", "NonlinHRU"]
    assert axes[0].get_xlabel() == "nudging strength ε"
    assert axes[0].get_ylabel() == "relative gradient error" and axes[1].get_ylabel() == ""
    assert axes[0].get_xscale() == "log" and axes[0].get_yscale() == "log"
    # 2 dtypes × 2 γ curves, 4 best-ε dots, 1 BPTT floor (float32) per panel
    assert len(axes[1].get_lines()) == 2 * 2 * 2 + 1
    plt.close(fig)

    anim = loss_scale_animation(nonlin, loss_scales=(1.0, 1e4), mark_epsilon=0.1)
    with plt.rc_context({"savefig.dpi": 20}):
        html = anim.to_jshtml()
    assert html.count("data:image/png;base64") == 2  # one frame per γ
    plt.close("all")


def test_invalid_arguments():
    with pytest.raises(ValueError, match="unknown unit"):
        epsilon_study("GRU")
    with pytest.raises(ValueError, match="epsilons"):
        epsilon_study("LinHRU", epsilons=[0.1, -1.0])
    with pytest.raises(ValueError, match="loss_scales"):
        epsilon_study("LinHRU", loss_scales=(0.0,))
    with pytest.raises(ValueError, match="unknown dtype"):
        epsilon_study("LinHRU", dtypes=("int32",))
    with pytest.raises(ValueError, match="no records"):
        error_curve([], unit="LinHRU", dtype="float32", loss_scale=1.0)


def test_float64_needs_x64_or_a_scope(monkeypatch):
    """Without x64 the study opens ``jax.enable_x64`` itself; without that, a clear error."""
    assert precision._x64_scope() is not None
    with jax.enable_x64(False):
        monkeypatch.delattr(jax, "enable_x64")
        monkeypatch.delattr(jax.experimental, "enable_x64", raising=False)
        with pytest.raises(RuntimeError, match="jax_enable_x64"):
            precision._x64_scope()
        monkeypatch.undo()
