"""The local contrastive Hebbian form of RHEL (rhel_lib.hebbian) against the generic echo and
BPTT, in float64."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import leaf_errors, random_inputs, slope

from rhel_lib.echo import GradientConfig, echo_gradients, forward_positions
from rhel_lib.hebbian import (
    HebbianAccumulators,
    contrastive_hebbian_gradients,
    echo_phase,
    energy_derivatives,
    free_phase,
    hebbian_positions,
)
from rhel_lib.integrators import sequential_trajectory
from rhel_lib.units import HopfieldHRU

H, N, K = 3, 7, 80


@pytest.fixture(scope="module")
def case():
    unit = HopfieldHRU(
        H, N, 2, step=0.3, train_step=True, dtype=jnp.float64, key=jax.random.PRNGKey(0)
    )
    ham = unit.hamiltonian
    u, g = random_inputs(1, (K, H)), random_inputs(2, (K, N))
    return ham, u, g, _bptt(ham, u, g)


@jax.jit
def _bptt(ham, u, g):
    params, static = eqx.partition(ham, eqx.is_inexact_array)
    _, vjp = jax.vjp(lambda p: forward_positions(eqx.combine(p, static), u), params)
    return vjp(g)[0]


_local = jax.jit(contrastive_hebbian_gradients, static_argnames=("loss_scale", "estimator"))


@eqx.filter_jit
def _generic(ham, u, g, epsilon, estimator):
    """The generic echo of rhel_lib.echo (ε traced: one compilation per estimator)."""
    params, static = eqx.partition(ham, eqx.is_inexact_array)
    config = GradientConfig("rhel", estimator=estimator)
    final = free_phase(ham, u)[0]
    return echo_gradients(params, static, u, final, g, config, epsilon=epsilon)[0]


def _max(errors):
    return max(errors.values())


def test_centred_local_rule_equals_generic_centred_rhel(case):
    ham, u, g, _ = case
    for eps in (0.1, 1e-2, 1e-3):
        local = _local(ham, u, g, epsilon=eps, estimator="centred")
        errors = leaf_errors(local, _generic(ham, u, g, jnp.asarray(eps), "centred"))
        assert len(errors) == 6  # M, b, B, log α, log β, log Δ
        assert _max(errors) < 1e-9, (eps, errors)


def test_one_sided_local_rule_with_the_free_phase_equals_generic_one_sided(case):
    """The free phase is accumulated during the forward pass; the generic one-sided estimator
    uses the un-nudged echo, which retraces the same half-step positions: equal to round-off.
    Both err by O(ε) against BPTT."""
    ham, u, g, reference = case
    eps = np.array([0.1, 0.05, 0.025])
    errors = []
    for e in eps:
        local = _local(ham, u, g, epsilon=float(e), estimator="one-sided")
        assert _max(leaf_errors(local, _generic(ham, u, g, jnp.asarray(e), "one-sided"))) < 1e-9
        errors.append(_max(leaf_errors(local, reference)))
    assert 0.9 < slope(eps, errors) < 1.1, errors
    assert 1e-4 < errors[-1] < 1e-1


def test_centred_local_rule_is_bptt_to_eps_squared(case):
    ham, u, g, reference = case
    eps = np.array([0.4, 0.2, 0.1, 0.05])
    errors = [
        _max(leaf_errors(_local(ham, u, g, epsilon=float(e), estimator="centred"), reference))
        for e in eps
    ]
    assert 1.8 < slope(eps, errors) < 2.2, errors
    small = _local(ham, u, g, epsilon=1e-4, estimator="centred")
    assert _max(leaf_errors(small, reference)) < 1e-6


def test_accumulators_sum_products_at_the_half_step_positions(case):
    ham, u, _, _ = case
    final, positions, acc = free_phase(ham, u)
    end, record = sequential_trajectory(ham, ham.zero_state(jnp.float64), u)
    r = jnp.tanh(record.phi_half)  # ρ at the half-step positions φ_h, not at φ_k or φ_{k+1}
    np.testing.assert_allclose(acc.rho_rho, r.T @ r, rtol=1e-12)
    np.testing.assert_allclose(acc.rho, r.sum(0), rtol=1e-12)
    np.testing.assert_allclose(acc.rho_u, r.T @ u, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(acc.phi_sq, (record.phi_half**2).sum(0), rtol=1e-12)
    np.testing.assert_allclose(positions, record.phi_out, rtol=1e-13)
    np.testing.assert_allclose(final.phi, end.phi, rtol=1e-13)
    # an un-nudged echo retraces the free phase: the same accumulators
    retrace = echo_phase(ham, final, u, jnp.zeros((K, N)), 0.0)
    for a, b in zip(retrace, acc):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-9)


def test_weight_gradient_is_the_scaled_difference_of_two_synapse_accumulators(case):
    """∂L/∂M = (Δ/2βν) [A_free − A_echo] (one-sided), i.e. ΔM ∝ A_echo − A_free."""
    ham, u, g, _ = case
    eps = 0.05
    final, _, free = free_phase(ham, u)
    nudge = eps / jnp.sum(jnp.abs(g))
    echo = echo_phase(ham, final, u, g, nudge)
    expected = ham.step / (2 * ham.beta * nudge) * (free.rho_rho - echo.rho_rho)
    local = _local(ham, u, g, epsilon=eps, estimator="one-sided")
    np.testing.assert_allclose(local.M, expected, rtol=1e-10)
    np.testing.assert_allclose(local.M, local.M.T, rtol=1e-12)  # symmetric, like W
    # energy_derivatives is linear in the accumulators
    both = energy_derivatives(ham, HebbianAccumulators(*(a - b for a, b in zip(free, echo))))
    np.testing.assert_allclose(both.M, ham.step / (2 * ham.beta) * (free.rho_rho - echo.rho_rho))


def test_no_autodiff_in_the_local_path(case, monkeypatch):
    ham, u, g, _ = case

    def forbidden(*args, **kwargs):
        raise AssertionError("autodiff used in the local Hebbian path")

    for name in ("grad", "value_and_grad", "vjp", "jvp", "linearize", "jacfwd", "jacrev"):
        monkeypatch.setattr(jax, name, forbidden)
    for estimator in ("centred", "one-sided"):  # not jitted: traced afresh here
        out = contrastive_hebbian_gradients(ham, u[:20], g[:20], epsilon=0.1, estimator=estimator)
        assert np.all(np.isfinite(np.asarray(out.M)))


def test_hebbian_positions_gradient_is_the_local_rule(case):
    """As a custom_vjp (also under vmap over a batch, where gradients are summed)."""
    ham, u, g, reference = case
    batch = jnp.stack([u, -u])
    cot = jnp.stack([g, 2 * g])

    @eqx.filter_jit
    @eqx.filter_grad
    def batched(h):
        return jnp.sum(jax.vmap(lambda x: hebbian_positions(h, x, epsilon=1e-4))(batch) * cot)

    grads = batched(ham)
    separate = [_local(ham, x, c, epsilon=1e-4, estimator="centred") for x, c in zip(batch, cot)]
    total = jax.tree_util.tree_map(jnp.add, *separate)
    assert _max(leaf_errors(grads, total)) < 1e-8  # round-off amplified by 1/ν only
    assert _max(leaf_errors(separate[0], reference)) < 1e-6
    values = hebbian_positions(ham, u)
    np.testing.assert_allclose(values, forward_positions(ham, u), rtol=1e-13)


def test_bad_arguments():
    ham = HopfieldHRU(H, N, 2, key=jax.random.PRNGKey(0)).hamiltonian
    u, g = jnp.ones((5, H)), jnp.ones((5, N))
    with pytest.raises(ValueError, match="estimator"):
        contrastive_hebbian_gradients(ham, u, g, estimator="forward")
    with pytest.raises(ValueError, match="epsilon"):
        contrastive_hebbian_gradients(ham, u, g, epsilon=-1.0)
    with pytest.raises(ValueError, match="loss_scale"):
        hebbian_positions(ham, u, loss_scale=0.0)
