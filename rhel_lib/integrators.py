"""The reversible leapfrog integrator: one step, a sequential trajectory, a parallel trajectory.

For a separable Hamiltonian ``H = T(π) + V(φ, u)`` (step folded in) one step has three explicit
sub-steps ``k → k+1/3 → k+2/3 → k+1``::

    φ_h     = φ_k + ½ ∂_π T(π_k)
    π_{k+1} = π_k − ∂_φ V(φ_h, u_k)
    φ_{k+1} = φ_h + ½ ∂_π T(π_{k+1})

Stepping from ``(φ_{k+1}, −π_{k+1})`` with the same input returns ``(φ_k, −π_k)`` through the same
``φ_h``: the map is exactly time-reversible, which is what RHEL needs.

``kicks`` (optional, one per step) are added to the momentum *before* the step; the RHEL echo
injects its nudges this way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from rhel_lib.hamiltonian import Hamiltonian, PhaseState, StepRecord


def leapfrog_step(
    ham: Hamiltonian, state: PhaseState, u: Float[Array, " H"]
) -> tuple[PhaseState, StepRecord]:
    """One reversible leapfrog step of ``ham`` from ``state`` with input ``u``.

    Returns the new state and the :class:`StepRecord` of the visited sub-steps.
    """
    phi, pi = state
    phi_half = phi + 0.5 * ham.kinetic_grad(pi)
    pi_out = pi - ham.potential_grad(phi_half, u)
    phi_out = phi_half + 0.5 * ham.kinetic_grad(pi_out)
    return PhaseState(phi_out, pi_out), StepRecord(phi, phi_half, pi, pi_out, phi_out)


def sequential_trajectory(
    ham: Hamiltonian,
    state: PhaseState,
    inputs: Float[Array, "K H"],
    kicks: Float[Array, "K Q"] | None = None,
) -> tuple[PhaseState, StepRecord]:
    """``K`` leapfrog steps with ``lax.scan``.

    Returns the final state and the stacked :class:`StepRecord` (leading axis ``K``); with kicks,
    ``record.pi_in`` is the momentum after the kick.
    """

    def body(carry, xs):
        u, kick = xs
        if kick is not None:
            carry = PhaseState(carry.phi, carry.pi + kick)
        return leapfrog_step(ham, carry, u)

    return lax.scan(body, state, (inputs, kicks))


def _compose(earlier, later):
    """Compose two affine maps ``s ↦ M s + b`` given as 2×2 blocks per dimension."""
    (a00, a01, a10, a11, a0, a1) = earlier
    (b00, b01, b10, b11, b0, b1) = later
    return (
        b00 * a00 + b01 * a10,
        b00 * a01 + b01 * a11,
        b10 * a00 + b11 * a10,
        b10 * a01 + b11 * a11,
        b00 * a0 + b01 * a1 + b0,
        b10 * a0 + b11 * a1 + b1,
    )


def linear_oscillator_trajectory(
    stiffness: Float[Array, " Q"],
    step: Float[Array, " Q"],
    forcing: Float[Array, "K Q"],
    state: PhaseState,
    kicks: Float[Array, "K Q"] | None = None,
) -> tuple[PhaseState, StepRecord]:
    """Leapfrog trajectory of ``H = Σ_i Δ_i (½π_i² + ½a_i φ_i² − φ_i f_i)`` by a parallel scan.

    The step is linear, so ``K`` steps are the prefix compositions of ``K`` affine maps, computed by
    ``lax.associative_scan`` in ``O(log K)`` depth. Same trajectory (to round-off) as
    :func:`sequential_trajectory` on the same Hamiltonian.

    Args:
        stiffness: ``a ≥ 0`` per dimension.
        step: ``Δ`` per dimension.
        forcing: ``f_k = (B u_k)`` per step and dimension.
        state: initial phase-space point.
        kicks: momentum added before each step (``None`` for none).
    """
    d = step
    half_d2 = 0.5 * d * d
    m_diag = 1.0 - half_d2 * stiffness
    m01 = d * (1.0 - 0.5 * half_d2 * stiffness)
    m10 = -d * stiffness
    b0 = half_d2 * forcing
    b1 = d * forcing
    if kicks is not None:
        b0 = b0 + m01 * kicks
        b1 = b1 + m_diag * kicks
    shape = forcing.shape
    elems = tuple(jnp.broadcast_to(m, shape) for m in (m_diag, m01, m10, m_diag)) + (b0, b1)
    c00, c01, c10, c11, c0, c1 = lax.associative_scan(_compose, elems, axis=0)
    phi_out = c00 * state.phi + c01 * state.pi + c0
    pi_out = c10 * state.phi + c11 * state.pi + c1
    phi_prev = jnp.concatenate([state.phi[None], phi_out[:-1]], axis=0)
    pi_prev = jnp.concatenate([state.pi[None], pi_out[:-1]], axis=0)
    pi_in = pi_prev if kicks is None else pi_prev + kicks
    phi_half = phi_prev + 0.5 * d * pi_in
    final = PhaseState(phi_out[-1], pi_out[-1])
    return final, StepRecord(phi_prev, phi_half, pi_in, pi_out, phi_out)


def flip(state: PhaseState) -> PhaseState:
    """The momentum flip ``Σ(φ, π) = (φ, −π)``."""
    return PhaseState(state.phi, -state.pi)


def energies(
    ham: Hamiltonian, states: PhaseState, inputs: Float[Array, "K H"]
) -> Float[Array, " K"]:
    """``H`` at each of a stack of states (leading axis ``K``) with the matching inputs."""
    return jax.vmap(ham.energy)(states, inputs)
