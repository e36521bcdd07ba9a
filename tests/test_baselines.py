"""Truncated BPTT and e-prop on the Hopfield Hamiltonian RNN: hand-checked small cases (float64)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import leaf_errors, random_inputs

from rhel_lib.baselines import (
    eprop_gradients,
    eprop_positions,
    own_jacobian_blocks,
    truncated_bptt_gradients,
    truncated_bptt_positions,
)
from rhel_lib.echo import forward_positions
from rhel_lib.hamiltonian import PhaseState
from rhel_lib.integrators import leapfrog_step
from rhel_lib.units import HopfieldHRU

H, N, K = 3, 5, 24


def _ham(train_step=True, nonlinearity="tanh", seed=0):
    unit = HopfieldHRU(
        H,
        N,
        2,
        step=0.3,
        train_step=train_step,
        nonlinearity=nonlinearity,
        dtype=jnp.float64,
        key=jax.random.PRNGKey(seed),
    )
    ham = unit.hamiltonian  # non-zero bias so that every parameter matters
    return eqx.tree_at(lambda h: h.bias, ham, random_inputs(seed + 10, (N,)) * 0.3)


@jax.jit
def _bptt(ham, u, g):
    params, static = eqx.partition(ham, eqx.is_inexact_array)
    _, vjp = jax.vjp(lambda p: forward_positions(eqx.combine(p, static), u), params)
    return vjp(g)[0]


_tbptt = jax.jit(truncated_bptt_gradients, static_argnums=3)
_eprop = jax.jit(eprop_gradients)


def _max(errors):
    return max(errors.values())


@pytest.fixture(scope="module")
def data():
    return random_inputs(1, (K, H)), random_inputs(2, (K, N))


# ------------------------------------------------------------------------ truncated BPTT


def test_truncation_at_full_length_is_bptt(data):
    window = 12
    u, g = (x[:12] for x in data)
    ham = _ham()
    errors = leaf_errors(_tbptt(ham, u, g, window), _bptt(ham, u, g))
    assert _max(errors) < 1e-12, errors


def test_window_two_by_hand(data):
    """Loss term t sees only steps t−1 and t, from the forward state before step t−1 held
    fixed; written out as an explicit loop."""
    K = 8
    u, g = (x[:K] for x in data)
    ham = _ham()
    params, static = eqx.partition(ham, eqx.is_inexact_array)
    states = [ham.zero_state(jnp.float64)]
    for k in range(K):
        states.append(leapfrog_step(ham, states[-1], u[k])[0])

    def surrogate(p):
        h = eqx.combine(p, static)
        total = 0.0
        for t in range(K):
            first = max(t - 1, 0)
            state = states[first]
            for s in range(first, t + 1):
                state = leapfrog_step(h, state, u[s])[0]
            total = total + state.phi @ g[t]
        return total

    by_hand = jax.jit(jax.grad(surrogate))(params)
    errors = leaf_errors(_tbptt(ham, u, g, 2), by_hand)
    assert _max(errors) < 1e-12, errors
    assert _max(leaf_errors(by_hand, _bptt(ham, u, g))) > 1e-2  # truncation matters here


def test_truncated_positions_have_the_forward_values(data):
    u, _ = data
    ham = _ham()
    for window in (1, 3):
        np.testing.assert_allclose(
            truncated_bptt_positions(ham, u, window), forward_positions(ham, u), rtol=1e-13
        )
    with pytest.raises(ValueError, match="window"):
        truncated_bptt_positions(ham, u, 0)


# ----------------------------------------------------------------------------------- e-prop


def test_own_blocks_are_the_diagonal_blocks_of_the_step_jacobian():
    ham = _ham(seed=3)
    state = PhaseState(random_inputs(4, (N,)), random_inputs(5, (N,)))
    u = random_inputs(6, (H,))

    def step(flat):
        new, _ = leapfrog_step(ham, PhaseState(flat[:N], flat[N:]), u)
        return jnp.concatenate([new.phi, new.pi])

    J = jax.jacfwd(step)(jnp.concatenate([state.phi, state.pi]))
    blocks = own_jacobian_blocks(ham, state, u)
    for i in range(N):
        expected = J[np.ix_([i, N + i], [i, N + i])]
        np.testing.assert_allclose(blocks[i], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("nonlinearity", ["tanh", "sigmoid"])
def test_eprop_is_exact_without_recurrent_coupling(data, nonlinearity):
    """W = 0: the neurons decouple, the step Jacobian is block-diagonal and the per-step loss
    has no other path: e-prop = BPTT for every parameter (including a trainable Δ)."""
    u, g = data
    ham = _ham(nonlinearity=nonlinearity)
    ham = eqx.tree_at(lambda h: h.M, ham, jnp.zeros((N, N)))
    errors = leaf_errors(_eprop(ham, u, g), _bptt(ham, u, g))
    del errors[".log_beta"]  # both exactly 0: β only scales W
    assert _max(errors) < 1e-10, errors


def test_eprop_differs_when_neurons_are_coupled(data):
    u, g = data
    ham = _ham()
    errors = leaf_errors(_eprop(ham, u, g), _bptt(ham, u, g))
    assert errors[".M"] > 1e-2 and errors[".bias"] > 1e-2 and errors[".B"] > 1e-2


def test_eprop_is_exact_for_a_single_step_with_coupling(data):
    """One step from rest: the trace is the step's immediate derivative, which is exact."""
    u, g = data
    ham = _ham()
    errors = leaf_errors(_eprop(ham, u[:1], g[:1]), _bptt(ham, u[:1], g[:1]))
    assert _max(errors) < 1e-12, errors


def test_eprop_positions_custom_vjp_batched(data):
    u, g = data
    ham = _ham(train_step=False)
    batch, cot = jnp.stack([u, 0.5 * u]), jnp.stack([g, -g])
    grads = eqx.filter_jit(
        eqx.filter_grad(lambda h: jnp.sum(jax.vmap(lambda x: eprop_positions(h, x))(batch) * cot))
    )(ham)
    separate = [_eprop(ham, x, c) for x, c in zip(batch, cot)]
    total = jax.tree_util.tree_map(jnp.add, *separate)
    errors = leaf_errors(grads, total)
    del errors[".log_step"]  # frozen: both 0
    assert _max(errors) < 1e-12
    assert float(grads.log_step) == 0.0
    np.testing.assert_allclose(eprop_positions(ham, u), forward_positions(ham, u), rtol=1e-13)
