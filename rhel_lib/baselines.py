"""Baseline learning rules on the Hopfield Hamiltonian RNN: truncated BPTT and e-prop (SPEC §6).

Both are written, like RHEL, as functions of the unit's Hamiltonian, its inputs and the cotangents
``g_k = ∂L/∂φ_{k+1}`` that arrive from the readout and the loss (for a loss that is a sum of
per-step terms ``ℓ_k(φ_{k+1})``, ``g_k = ∂ℓ_k/∂φ_{k+1}`` is the instantaneous learning signal),
and as ``positions`` functions whose autodiff gradient is the baseline's estimate, so that a
training loop only swaps the function that produces ``φ_1 … φ_K``.

**Truncated BPTT** (:func:`truncated_bptt_positions`, window ``k``, default 2) — *per-step
truncated graph*: the loss term of step ``t`` back-propagates through exactly its last ``k``
leapfrog steps ``t−k+1 … t`` and no further. It is implemented by recomputing, for every ``t``
(vmapped), the ``k``-step window from the forward state before step ``t−k+1`` held fixed with
``lax.stop_gradient`` (the rest state ``Φ_0`` when the window reaches the start); cost
``O(K k)``. With ``k ≥ K`` every window starts at rest and the result is BPTT exactly. The values
of the positions are those of the forward pass.

**e-prop** (:func:`eprop_gradients`, :func:`eprop_positions`) — eligibility traces that keep,
of the Jacobian ``∂Φ_{t+1}/∂Φ_t`` of a leapfrog step, only each neuron's own 2×2 block on
``(φ_i, π_i)``::

    J_i = [[1 − Δ²κ_i/2, Δ(1 − Δ²κ_i/4)], [−Δκ_i, 1 − Δ²κ_i/2]],
    κ_i = ∂f_i/∂φ_i = α + ρ''(φ_h,i) h_i + ρ'(φ_h,i)² W_ii/β,   h = Wρ/β + b + B u,

(``f = ∂V/∂φ / Δ`` at the half-step position ``φ_h``). A parameter ``θ`` that enters neuron
``i``'s force with the drive ``a_i = ∂f_i/∂θ`` has the trace
``e_{t+1} = J_i e_t − Δ a_i (Δ/2, 1)`` (the second term is the step's immediate derivative
``∂Φ_{i,t+1}/∂θ`` at fixed ``Φ_t``), and the estimate is ``Σ_t g_{t,i} e_{t+1}[φ]`` — the
instantaneous learning signal times the trace, no future credit. Synapse ``W_ij`` (row ``i``
acts on neuron ``i``) keeps one 2-vector trace per ``(i, j)`` with ``a = ρ'_i ρ_j / β``; the
gradient of the unconstrained ``M`` (``W = (M + Mᵀ)/2``) is the symmetric part of that of ``W``.
When ``W = 0`` the neurons decouple, the Jacobian is block-diagonal and e-prop is exact.
The traces are computed in one forward-in-time scan (here run in the backward pass of
:func:`eprop_positions`, which gives the same numbers as running it online, since the traces do
not depend on the learning signal).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from rhel_lib._validation import check_positive_int
from rhel_lib.echo import forward_positions
from rhel_lib.hamiltonian import PhaseState
from rhel_lib.integrators import leapfrog_step
from rhel_lib.units.hopfield import HopfieldHamiltonian, activation

__all__ = [
    "eprop_gradients",
    "own_jacobian_blocks",
    "eprop_positions",
    "truncated_bptt_gradients",
    "truncated_bptt_positions",
]


# ------------------------------------------------------------------------ truncated BPTT


def truncated_bptt_positions(
    ham, inputs: Float[Array, "K H"], window: int = 2
) -> Float[Array, "K Q"]:
    """Positions ``φ_1 … φ_K`` whose gradient flows back through at most ``window`` steps.

    Works for any :class:`~rhel_lib.hamiltonian.Hamiltonian` (autodiff through the windows).
    """
    check_positive_int("window", window)
    num_steps = inputs.shape[0]
    dtype = jnp.result_type(
        inputs.dtype, *(x.dtype for x in jax.tree_util.tree_leaves(ham) if eqx.is_inexact_array(x))
    )
    start = ham.zero_state(dtype)
    _, record = ham.trajectory(start, inputs)
    # States before each step, Φ_0 … Φ_{K−1}, held fixed.
    before = PhaseState(
        jnp.concatenate([start.phi[None], record.phi_out[:-1]]),
        jnp.concatenate([start.pi[None], record.pi_out[:-1]]),
    )
    before = lax.stop_gradient(before)
    k = min(window, num_steps)

    def one(t):
        first = t + 1 - k
        state = jax.tree_util.tree_map(lambda x: x[jnp.maximum(first, 0)], before)

        def body(state, m):
            s = first + m
            new, _ = leapfrog_step(ham, state, inputs[jnp.clip(s, 0, num_steps - 1)])
            keep = s >= 0
            return jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, state), None

        state, _ = lax.scan(body, state, jnp.arange(k))
        return state.phi

    return jax.vmap(one)(jnp.arange(num_steps))


def truncated_bptt_gradients(
    ham, inputs: Float[Array, "K H"], cotangent: Float[Array, "K Q"], window: int = 2
):
    """Truncated-BPTT estimate of ``∂L/∂θ`` (a tree shaped like ``ham``) from ``g_k``."""
    params, static = eqx.partition(ham, eqx.is_inexact_array)
    out, vjp = jax.vjp(
        lambda p: truncated_bptt_positions(eqx.combine(p, static), inputs, window), params
    )
    return vjp(cotangent.astype(out.dtype))[0]


# ------------------------------------------------------------------------------- e-prop


class _Traces(NamedTuple):
    """Eligibility traces, last axis ``(φ, π)``: one per (neuron, parameter it drives)."""

    W: Float[Array, "N N 2"]
    bias: Float[Array, "N 2"]
    B: Float[Array, "N H 2"]
    log_alpha: Float[Array, "N 2"]
    log_beta: Float[Array, "N 2"]
    log_step: Float[Array, "N 2"]


class _Sums(NamedTuple):
    W: Float[Array, "N N"]
    bias: Float[Array, " N"]
    B: Float[Array, "N H"]
    log_alpha: Float[Array, ""]
    log_beta: Float[Array, ""]
    log_step: Float[Array, ""]


def _block_entries(step, kappa):
    """``(J00, J01, J10)`` of the own 2×2 block (``J11 = J00``) for curvature ``κ``."""
    return (
        1.0 - 0.5 * step**2 * kappa,
        step * (1.0 - 0.25 * step**2 * kappa),
        -step * kappa,
    )


def own_jacobian_blocks(
    ham: HopfieldHamiltonian, state: PhaseState, u: Float[Array, " H"]
) -> Float[Array, "N 2 2"]:
    """The 2×2 diagonal blocks ``∂(φ_i, π_i)_{k+1}/∂(φ_i, π_i)_k`` of one leapfrog step —
    the part of the step's Jacobian that e-prop keeps."""
    step, beta = ham.step, ham.beta
    phi_h = state.phi + 0.5 * step * state.pi
    r, r1, r2 = activation(ham.nonlinearity, phi_h)
    kappa = ham.alpha + r2 * ham.field(r, u) + r1 * r1 * jnp.diagonal(ham.W) / beta
    j00, j01, j10 = _block_entries(step, kappa)
    return jnp.stack([jnp.stack([j00, j01], -1), jnp.stack([j10, j00], -1)], -2)


def eprop_gradients(
    ham: HopfieldHamiltonian, inputs: Float[Array, "K H"], cotangent: Float[Array, "K N"]
) -> HopfieldHamiltonian:
    """e-prop estimate of ``∂L/∂θ`` for every parameter of the Hopfield Hamiltonian.

    One forward scan carrying the state, the per-neuron 2×2-block eligibility traces and the
    running sums ``Σ_t g_t · e_{t+1}``; closed form (no autodiff). Returns a tree shaped like
    ``ham`` (``log_step`` is 0 unless the step is trainable).
    """
    dtype = jnp.result_type(inputs.dtype, ham.M.dtype)
    N, H = ham.state_dim, inputs.shape[1]
    step, alpha, beta = ham.step, ham.alpha, ham.beta
    W = ham.W
    W_diag = jnp.diagonal(W)

    def body(carry, xs):
        state, traces, sums = carry
        u, g = xs
        phi, pi = state
        phi_h = phi + 0.5 * step * pi
        r, r1, r2 = activation(ham.nonlinearity, phi_h)
        h = W @ r / beta + ham.bias + ham.B @ u
        force = alpha * phi_h + r1 * h
        pi_out = pi - step * force
        phi_out = phi_h + 0.5 * step * pi_out
        j00, j01, j10 = _block_entries(step, alpha + r2 * h + r1 * r1 * W_diag / beta)

        def propagate(trace, drive):
            """``J_i e − Δ a (Δ/2, 1)`` with neuron ``i`` on axis 0 of ``drive``."""
            shape = (N,) + (1,) * (drive.ndim - 1)
            a00, a01, a10 = (x.reshape(shape) for x in (j00, j01, j10))
            e_phi, e_pi = trace[..., 0], trace[..., 1]
            new_phi = a00 * e_phi + a01 * e_pi - 0.5 * step**2 * drive
            new_pi = a10 * e_phi + a00 * e_pi - step * drive
            return jnp.stack([new_phi, new_pi], axis=-1)

        traces_W = propagate(traces.W, r1[:, None] * r[None, :] / beta)
        traces_b = propagate(traces.bias, r1)
        traces_B = propagate(traces.B, r1[:, None] * u[None, :])
        traces_a = propagate(traces.log_alpha, alpha * phi_h)
        traces_beta = propagate(traces.log_beta, -r1 * (W @ r) / beta)
        if ham.train_step:  # immediate derivative of the whole step with respect to log Δ
            v = 0.5 * step * pi
            d_force = alpha * v + r2 * v * h + r1 * (W @ (r1 * v)) / beta
            d_pi = -step * force - step * d_force
            d_phi = v + 0.5 * step * pi_out + 0.5 * step * d_pi
            zero = jnp.zeros((N,), dtype)
            traces_s = propagate(traces.log_step, zero) + jnp.stack([d_phi, d_pi], axis=-1)
        else:
            traces_s = traces.log_step
        traces = _Traces(traces_W, traces_b, traces_B, traces_a, traces_beta, traces_s)
        sums = _Sums(
            sums.W + g[:, None] * traces_W[..., 0],
            sums.bias + g * traces_b[..., 0],
            sums.B + g[:, None] * traces_B[..., 0],
            sums.log_alpha + g @ traces_a[..., 0],
            sums.log_beta + g @ traces_beta[..., 0],
            sums.log_step + g @ traces_s[..., 0],
        )
        return (PhaseState(phi_out, pi_out), traces, sums), None

    z2 = jnp.zeros((N, 2), dtype)
    traces = _Traces(jnp.zeros((N, N, 2), dtype), z2, jnp.zeros((N, H, 2), dtype), z2, z2, z2)
    scalar = jnp.zeros((), dtype)
    sums = _Sums(jnp.zeros((N, N), dtype), jnp.zeros((N,), dtype), jnp.zeros((N, H), dtype),
                 scalar, scalar, scalar)  # fmt: skip
    carry = (ham.zero_state(dtype), traces, sums)
    (_, _, sums), _ = lax.scan(body, carry, (inputs.astype(dtype), cotangent.astype(dtype)))
    values = (
        0.5 * (sums.W + sums.W.T),
        sums.bias,
        sums.B,
        sums.log_alpha,
        sums.log_beta,
        sums.log_step,
    )
    return eqx.tree_at(
        lambda h: (h.M, h.bias, h.B, h.log_alpha, h.log_beta, h.log_step),
        ham,
        tuple(v.astype(ham.M.dtype) for v in values),
    )


def eprop_positions(ham: HopfieldHamiltonian, inputs: Float[Array, "K H"]) -> Float[Array, "K N"]:
    """Positions ``φ_1 … φ_K`` whose parameter gradient is the e-prop estimate.

    A ``custom_vjp`` whose backward is :func:`eprop_gradients`; ``inputs`` are treated as data
    (no gradient).
    """
    params, static = eqx.partition(ham, eqx.is_inexact_array)

    @jax.custom_vjp
    def positions(params, inputs):
        return forward_positions(eqx.combine(params, static), inputs)

    def positions_fwd(params, inputs):
        return positions(params, inputs), (params, inputs)

    def positions_bwd(residuals, cotangent):
        params, inputs = residuals
        grads = eprop_gradients(eqx.combine(params, static), inputs, cotangent)
        return eqx.filter(grads, eqx.is_inexact_array), jnp.zeros_like(inputs)

    positions.defvjp(positions_fwd, positions_bwd)
    return positions(params, lax.stop_gradient(inputs))
