"""LinHRU and NonlinHRU: RHEL equals BPTT per parameter leaf (float64), options, errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import leaf_errors, random_inputs, rel_error, slope

from rhel_lib.units import LinHRU, NonlinHRU

H, P, K = 4, 6, 160


def _loss(unit, u, target):
    return jnp.mean((unit(u) - target) ** 2)


_grad = eqx.filter_jit(eqx.filter_grad(_loss))
_grads = jax.jit(jax.grad(_loss, argnums=(0, 1)))  # parameters and inputs, one compile


def _compare(unit, *, seed=0, length=K):
    """Relative error of RHEL against BPTT for every parameter leaf and for the inputs."""
    u, target = random_inputs(seed, (length, H)), random_inputs(seed + 1, (length, H))
    (g, gu), (g_ref, gu_ref) = (_grads(m, u, target) for m in (unit, unit.with_gradient("bptt")))
    errors = leaf_errors(g, g_ref)
    errors["inputs"] = rel_error(gu, gu_ref)
    return errors


@pytest.mark.parametrize("complex_ssm, parallel", [(True, True), (False, False)])
def test_linhru_rhel_is_exact_at_any_epsilon(complex_ssm, parallel):
    unit = LinHRU(
        H,
        P,
        complex_ssm=complex_ssm,
        parallel=parallel,
        gradient="rhel",
        chunk_size=64,
        dtype=jnp.float64,
        key=jax.random.PRNGKey(1),
    )
    for eps in (1e-8, 10.0):
        errors = _compare(unit.with_gradient(epsilon=eps))
        assert max(errors.values()) < 1e-10, (eps, errors)


def test_linhru_paired_echoes_agree_with_bptt():
    """The physical two-echo arithmetic is the same estimator, with round-off ∝ 1/ε."""
    unit = LinHRU(
        H,
        P,
        gradient="rhel",
        loss_scale=1.0,
        parallel=False,
        dtype=jnp.float64,
        key=jax.random.PRNGKey(2),
    ).with_gradient(paired_echoes=True, epsilon=1.0)
    assert max(_compare(unit).values()) < 1e-10
    worse = max(_compare(unit.with_gradient(epsilon=1e-9)).values())
    assert 1e-10 < worse < 1e-1  # round-off branch, still a gradient


def test_linhru_trainable_and_frozen_step():
    key = jax.random.PRNGKey(3)
    u, target = random_inputs(5, (K, H)), random_inputs(6, (K, H))
    for gradient in ("bptt", "rhel"):
        trained = LinHRU(
            H, P, train_step=True, parallel=False, gradient=gradient, dtype=jnp.float64, key=key
        )
        frozen = LinHRU(
            H, P, train_step=False, parallel=False, gradient=gradient, dtype=jnp.float64, key=key
        )
        assert float(jnp.linalg.norm(_grad(trained, u, target).hamiltonian.step_hat)) > 1e-4
        np.testing.assert_array_equal(_grad(frozen, u, target).hamiltonian.step_hat, 0.0)
    assert (
        max(
            _compare(
                LinHRU(
                    H,
                    P,
                    train_step=False,
                    parallel=False,
                    gradient="rhel",
                    dtype=jnp.float64,
                    key=key,
                )
            ).values()
        )
        < 1e-10
    )


@pytest.mark.parametrize("step", [0.01, 0.1, 0.5, 0.9])
def test_nonlinhru_rhel_matches_bptt_at_small_epsilon(step):
    unit = NonlinHRU(
        H,
        P,
        step=step,
        train_step=True,
        gradient="rhel",
        epsilon=1e-4,
        dtype=jnp.float64,
        key=jax.random.PRNGKey(4),
    )
    errors = _compare(unit)
    assert max(errors.values()) < 1e-6, errors


def test_nonlinhru_error_falls_as_eps_squared():
    unit = NonlinHRU(
        H,
        P,
        step=0.5,
        train_step=True,
        gradient="rhel",
        dtype=jnp.float64,
        key=jax.random.PRNGKey(5),
    )
    eps = np.array([0.4, 0.2, 0.1, 0.05])
    errors = [max(_compare(unit.with_gradient(epsilon=float(e))).values()) for e in eps]
    assert 1.8 < slope(eps, errors) < 2.2, errors


def test_nonlinhru_every_parameter_gets_a_gradient_under_both_algorithms():
    u, target = random_inputs(7, (K, H)), random_inputs(8, (K, H))
    for gradient in ("bptt", "rhel"):
        unit = NonlinHRU(
            H,
            P,
            step=0.3,
            train_step=True,
            gradient=gradient,
            dtype=jnp.float64,
            key=jax.random.PRNGKey(6),
        )
        grads = _grad(unit, u, target)
        for path, leaf in jax.tree_util.tree_leaves_with_path(
            eqx.filter(grads, eqx.is_inexact_array)
        ):
            assert float(jnp.linalg.norm(leaf)) > 1e-8, (gradient, jax.tree_util.keystr(path))


def test_long_sequences():
    """3000 steps. (With Δ ≳ 0.3 over thousands of steps the driven nonlinear oscillators
    turn chaotic — BPTT's gradient grows like e^{λK} — and no finite-ε echo can follow; see the
    book's chapter on the discrete echo.)"""
    unit = NonlinHRU(
        H,
        P,
        step=0.1,
        gradient="rhel",
        epsilon=1e-4,
        dtype=jnp.float64,
        chunk_size=512,
        key=jax.random.PRNGKey(8),
    )
    assert max(_compare(unit, length=3000).values()) < 1e-6
    lin = LinHRU(
        H,
        P,
        step=(0.01, 0.9),
        parallel=False,  # the parallel scan's compile time is spent in other tests
        gradient="rhel",
        epsilon=1e-4,
        dtype=jnp.float64,
        key=jax.random.PRNGKey(9),
    )
    assert max(_compare(lin, length=3000).values()) < 1e-10


def test_unit_input_errors():
    unit = LinHRU(H, P, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="inputs"):
        unit(jnp.ones((10, H + 1)))
    with pytest.raises(ValueError, match="inputs"):
        unit(jnp.ones((2, 10, H)))
    with pytest.raises(ValueError, match="NaN"):
        unit(jnp.full((10, H), jnp.nan))
    with pytest.raises(ValueError, match="state_dim"):
        LinHRU(H, 0, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="step"):
        LinHRU(H, P, step=1.5, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="step"):
        NonlinHRU(H, P, step=-0.1, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="epsilon"):
        unit.with_gradient("rhel", epsilon=-1.0)
    with pytest.raises(ValueError, match="gradient"):
        unit.with_gradient("eprop")


def test_with_gradient_keeps_parameters():
    unit = LinHRU(H, P, key=jax.random.PRNGKey(0))
    switched = unit.with_gradient("rhel", epsilon=0.05, loss_scale=1e4)
    assert switched.gradient == "rhel" and unit.gradient == "bptt"
    assert switched.gradient_config.epsilon == 0.05
    assert switched.gradient_config.loss_scale == 1e4
    assert switched.hamiltonian.B_real is unit.hamiltonian.B_real
    u = random_inputs(0, (32, H), jnp.float32)
    np.testing.assert_array_equal(switched(u), unit(u))
