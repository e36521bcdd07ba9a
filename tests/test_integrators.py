"""Leapfrog integrator: reversibility, parallel = sequential, bounded energy error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_inputs

from rhel_lib.hamiltonian import PhaseState
from rhel_lib.integrators import energies, flip, leapfrog_step, sequential_trajectory
from rhel_lib.units import LinHRU, NonlinHRU


def _linear(seed, *, complex_ssm=True, parallel=True, step=None, P=6, H=4):
    unit = LinHRU(
        H,
        P,
        complex_ssm=complex_ssm,
        parallel=parallel,
        step=step,
        dtype=jnp.float64,
        key=jax.random.PRNGKey(seed),
    )
    return unit.hamiltonian


def _nonlinear(seed, step, P=6, H=4):
    ham = NonlinHRU(H, P, step=step, dtype=jnp.float64, key=jax.random.PRNGKey(seed)).hamiltonian
    # random, non-default parameters: bias and coupling strengths away from their init
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed + 100))
    return ham.__class__(
        W=ham.W,
        c_hat=jax.random.normal(k1, (P,)),
        alpha=ham.alpha,
        bias=jax.random.normal(k2, (P,)),
        B=2.0 * ham.B,
        log_step=ham.log_step,
    )


HAMILTONIANS = {
    "linear-complex-parallel": lambda: _linear(0),
    "linear-real-sequential": lambda: _linear(1, complex_ssm=False, parallel=False),
    "linear-large-step": lambda: _linear(2, step=0.9),
    "nonlinear-step-0.5": lambda: _nonlinear(3, 0.5),
    "nonlinear-step-0.9": lambda: _nonlinear(4, 0.9),
    "nonlinear-step-1e-2": lambda: _nonlinear(5, 1e-2),
}


@pytest.mark.parametrize("name", list(HAMILTONIANS))
def test_flip_and_retrace_returns_to_start(name):
    ham = HAMILTONIANS[name]()
    K = 400
    u = random_inputs(0, (K, 4))
    start = PhaseState(random_inputs(1, (ham.state_dim,)), random_inputs(2, (ham.state_dim,)))
    final, forward = ham.trajectory(start, u)
    back_final, backward = ham.trajectory(flip(final), u[::-1])
    scale = float(jnp.max(jnp.abs(forward.phi_out)))
    assert scale > 0.1  # the trajectory actually moved
    np.testing.assert_allclose(back_final.phi, start.phi, rtol=0, atol=1e-12 * max(scale, 1))
    np.testing.assert_allclose(-back_final.pi, start.pi, rtol=0, atol=1e-12 * max(scale, 1))
    # every intermediate position is retraced, half-step positions included
    np.testing.assert_allclose(backward.phi_out[:-1], forward.phi_out[::-1][1:], atol=1e-12 * scale)
    np.testing.assert_allclose(backward.phi_half, forward.phi_half[::-1], atol=1e-12 * scale)


def test_single_step_is_an_involution_under_flip():
    ham = _nonlinear(7, 0.7)
    state = PhaseState(random_inputs(3, (6,)), random_inputs(4, (6,)))
    u = random_inputs(5, (4,))
    stepped, _ = leapfrog_step(ham, state, u)
    back, _ = leapfrog_step(ham, flip(stepped), u)
    np.testing.assert_allclose(back.phi, state.phi, atol=1e-15)
    np.testing.assert_allclose(-back.pi, state.pi, atol=1e-15)


@pytest.mark.parametrize("complex_ssm", [True, False])
def test_parallel_scan_equals_sequential_scan(complex_ssm):
    ham = _linear(11, complex_ssm=complex_ssm)
    sequential = ham.__class__(ham.A_hat, ham.step_hat, ham.B_real, ham.B_imag, parallel=False)
    K = 257  # not a power of two
    u = random_inputs(6, (K, 4))
    kicks = random_inputs(7, (K, ham.state_dim))
    start = PhaseState(random_inputs(8, (ham.state_dim,)), random_inputs(9, (ham.state_dim,)))
    for k in (None, kicks):
        fin_p, rec_p = ham.trajectory(start, u, k)
        fin_s, rec_s = sequential.trajectory(start, u, k)
        for a, b in zip(rec_p, rec_s):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-11)
        np.testing.assert_allclose(fin_p.pi, fin_s.pi, atol=1e-11)


def test_closed_form_gradients_match_autodiff():
    for ham in (_linear(12), _nonlinear(13, 0.3)):
        phi, pi, u = (
            random_inputs(1, (ham.state_dim,)),
            random_inputs(2, (ham.state_dim,)),
            random_inputs(3, (4,)),
        )
        np.testing.assert_allclose(ham.kinetic_grad(pi), jax.grad(ham.kinetic)(pi), atol=1e-14)
        np.testing.assert_allclose(
            ham.potential_grad(phi, u), jax.grad(ham.potential)(phi, u), atol=1e-14
        )


@pytest.mark.parametrize("name", ["linear-complex-parallel", "nonlinear-step-0.5"])
def test_energy_error_is_bounded_without_drift(name):
    """Symplectic integration: with a constant input the energy error oscillates, it does not
    grow, over 10k steps."""
    ham = HAMILTONIANS[name]()
    K = 10_000
    u = jnp.broadcast_to(random_inputs(0, (4,)), (K, 4))
    start = PhaseState(random_inputs(1, (ham.state_dim,)), jnp.zeros(ham.state_dim))
    _, rec = sequential_trajectory(ham, start, u)
    h = np.asarray(energies(ham, PhaseState(rec.phi_out, rec.pi_out), u))
    h0 = float(ham.energy(start, u[0]))
    deviation = np.abs(h - h0)
    scale = np.abs(h0) + np.max(np.abs(h))
    assert np.max(deviation) < 0.2 * scale  # bounded: O(Δ² a) with Δ up to ~0.7 here
    first, last = deviation[:1000].max(), deviation[-1000:].max()
    assert last < 1.5 * first + 1e-12 * scale  # no secular growth
    trend = np.polyfit(np.arange(K), h, 1)[0] * K  # change of the fitted line over 10k steps
    assert abs(trend) < 0.1 * max(np.ptp(h), 1e-12 * scale) + 1e-10 * scale
