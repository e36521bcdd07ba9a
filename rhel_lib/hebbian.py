"""RHEL as a local contrastive Hebbian rule for the Hopfield Hamiltonian (SPEC §6).

For :class:`~rhel_lib.units.hopfield.HopfieldHamiltonian` every parameter enters ``H`` through a
sum of products of *local* quantities at the leapfrog half-step position ``φ_h`` (the position
shared by the sub-steps ``k+1/3`` and ``k+2/3``, where ``H_{1/2}`` evaluates ``V``)::

    ∂H_{1/2}/∂M_ij  = (Δ/2β) ρ(φ_h,i) ρ(φ_h,j)        (synapse: pre × post)
    ∂H_{1/2}/∂b_i   = Δ ρ(φ_h,i)
    ∂H_{1/2}/∂B_ik  = Δ ρ(φ_h,i) u_k                   (input synapse)
    ∂H_{1/2}/∂log α = Δ α ½ φ_h,i²  summed over i
    ∂H_{1/2}/∂log β = −(Δ/2β) Σ_ij W_ij ρ_i ρ_j        (from the synapse accumulators)
    ∂H_{1/2}/∂log Δ = H_{1/2}                          (only with a trainable step)

So the RHEL estimator ``∂L/∂θ ≈ −Σ_j [∂_θ H_{1/2}(echo a) − ∂_θ H_{1/2}(echo b)] / (Δσ ν)`` is a
difference of **two accumulators per synapse** — ``Σ ρ_i ρ_j`` over one phase minus the same sum
over another — that each synapse can keep by itself. This module runs the phases explicitly with
the leapfrog (closed-form forces; no ``jax.grad``/``vjp``/``jvp`` anywhere in this path) and
accumulates only these sums:

* ``estimator="one-sided"``: the **free phase** (the forward pass itself, accumulated while it
  runs) against one echo nudged by ``+ν g``. In exact arithmetic the un-nudged echo retraces the
  free phase through the same half-step positions, so this equals the generic one-sided RHEL
  estimator of :mod:`rhel_lib.echo` (to round-off) and errs by ``O(ε)``.
* ``estimator="centred"``: an echo nudged by ``+ν g`` against one nudged by ``−ν g``: equal to the
  generic centred estimator to round-off, error ``O(ε²)``.

Sign: with the one-sided ``+ν`` echo, ``∂L/∂M = (Δ/2βν) [A_free − A_echo]``, so gradient descent
changes ``M`` by ``∝ A_echo − A_free``; nudging the echo by ``−ν g`` (towards a lower loss)
flips it into the abstract's ``ΔW ∝ Σ_t [ρ_iρ_j (free) − ρ_iρ_j (echo)]``.

The nudge follows :class:`rhel_lib.echo.GradientConfig`: ``ν = ε γ`` with ``γ = loss_scale``, or
``γ = 1 / Σ_k |g_k|₁`` for ``loss_scale="auto"``. The cotangents ``g_k = ∂L/∂φ_{k+1}`` are the
learning signal delivered from above (the readout and the loss); the readout's own parameters get
their ordinary gradients there.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from rhel_lib._validation import check_choice, check_positive
from rhel_lib.echo import ESTIMATORS
from rhel_lib.hamiltonian import PhaseState, StepRecord
from rhel_lib.integrators import leapfrog_step
from rhel_lib.units.hopfield import HopfieldHamiltonian

__all__ = [
    "HebbianAccumulators",
    "contrastive_hebbian_gradients",
    "echo_phase",
    "energy_derivatives",
    "free_phase",
    "hebbian_positions",
    "nudge_size",
]

_ALIASES = {"centered": "centred", "one_sided": "one-sided", "onesided": "one-sided"}


class HebbianAccumulators(NamedTuple):
    """Sums over the leapfrog steps of one phase, at the half-step positions ``φ_h``.

    ``rho_rho (N, N)``: ``Σ ρ_i ρ_j`` (one per synapse); ``rho (N,)``: ``Σ ρ_i``;
    ``rho_u (N, H)``: ``Σ ρ_i u_k``; ``phi_sq (N,)``: ``Σ φ_h,i²``; ``pi_sq (N,)``:
    ``Σ ½(π_in,i² + π_out,i²)`` (used only for a trainable step).
    """

    rho_rho: Float[Array, "N N"]
    rho: Float[Array, " N"]
    rho_u: Float[Array, "N H"]
    phi_sq: Float[Array, " N"]
    pi_sq: Float[Array, " N"]

    @classmethod
    def zeros(cls, state_dim: int, input_dim: int, dtype) -> HebbianAccumulators:
        N, H = state_dim, input_dim
        z = jnp.zeros((N,), dtype)
        return cls(jnp.zeros((N, N), dtype), z, jnp.zeros((N, H), dtype), z, z)

    def add(self, ham: HopfieldHamiltonian, record: StepRecord, u: Array) -> HebbianAccumulators:
        """Add the local products of one leapfrog step (``record``) with input ``u``."""
        r = ham.rho(record.phi_half)
        return HebbianAccumulators(
            self.rho_rho + jnp.outer(r, r),
            self.rho + r,
            self.rho_u + jnp.outer(r, u),
            self.phi_sq + record.phi_half**2,
            self.pi_sq + 0.5 * (record.pi_in**2 + record.pi_out**2),
        )

    def __sub__(self, other: HebbianAccumulators) -> HebbianAccumulators:
        return HebbianAccumulators(*(a - b for a, b in zip(self, other)))


def _dtype(ham: HopfieldHamiltonian, inputs: Array):
    return jnp.result_type(inputs.dtype, ham.M.dtype)


def free_phase(
    ham: HopfieldHamiltonian, inputs: Float[Array, "K H"]
) -> tuple[PhaseState, Float[Array, "K N"], HebbianAccumulators]:
    """The forward (free) phase from rest: final state, positions ``φ_1 … φ_K`` and the
    free-phase accumulators."""
    dtype = _dtype(ham, inputs)
    start = ham.zero_state(dtype)
    acc = HebbianAccumulators.zeros(ham.state_dim, inputs.shape[1], dtype)

    def body(carry, u):
        state, acc = carry
        state, record = leapfrog_step(ham, state, u)
        return (state, acc.add(ham, record, u)), record.phi_out

    (final, acc), positions = lax.scan(body, (start, acc), inputs.astype(dtype))
    return final, positions, acc


def echo_phase(
    ham: HopfieldHamiltonian,
    final: PhaseState,
    inputs: Float[Array, "K H"],
    cotangent: Float[Array, "K N"],
    nudge: float | Array,
) -> HebbianAccumulators:
    """One echo from ``(φ_K, −π_K)``: before echo step ``j`` the momentum gets
    ``nudge · g_{K−1−j}``; step ``j`` uses the input ``u_{K−1−j}``. Returns its accumulators."""
    dtype = final.phi.dtype
    acc = HebbianAccumulators.zeros(ham.state_dim, inputs.shape[1], dtype)
    start = PhaseState(final.phi, -final.pi)

    def body(carry, xs):
        state, acc = carry
        u, g = xs
        state = PhaseState(state.phi, state.pi + nudge * g)
        state, record = leapfrog_step(ham, state, u)
        return (state, acc.add(ham, record, u)), None

    xs = (inputs[::-1].astype(dtype), cotangent[::-1].astype(dtype))
    (_, acc), _ = lax.scan(body, (start, acc), xs)
    return acc


def energy_derivatives(ham: HopfieldHamiltonian, acc: HebbianAccumulators) -> HopfieldHamiltonian:
    """``∂_θ Σ_j H_{1/2}`` from accumulators (linear in them), as a tree shaped like ``ham``.

    ``log_step`` gets ``Σ H_{1/2}`` when the step is trainable and 0 otherwise.
    """
    step, alpha, beta = ham.step, ham.alpha, ham.beta
    coupling = jnp.sum(ham.W * acc.rho_rho)
    d_step = step * (
        0.5 * jnp.sum(acc.pi_sq)
        + 0.5 * alpha * jnp.sum(acc.phi_sq)
        + 0.5 * coupling / beta
        + acc.rho @ ham.bias
        + jnp.sum(ham.B * acc.rho_u)
    )
    if not ham.train_step:
        d_step = jnp.zeros_like(d_step)
    values = (
        0.5 * step / beta * acc.rho_rho,
        step * acc.rho,
        step * acc.rho_u,
        0.5 * step * alpha * jnp.sum(acc.phi_sq),
        -0.5 * step / beta * coupling,
        d_step,
    )
    return eqx.tree_at(
        lambda h: (h.M, h.bias, h.B, h.log_alpha, h.log_beta, h.log_step),
        ham,
        tuple(v.astype(ham.M.dtype) for v in values),
    )


def nudge_size(cotangent: Array, epsilon: float | Array, loss_scale: float | str) -> Array:
    """``ν = ε γ``; ``γ = 1/Σ|g|₁`` for ``loss_scale="auto"`` (as in :mod:`rhel_lib.echo`)."""
    if loss_scale == "auto":
        total = jnp.sum(jnp.abs(cotangent))
        return epsilon / jnp.where(total > 0, total, 1.0)
    return epsilon * jnp.asarray(loss_scale, cotangent.dtype)


def _check(epsilon, loss_scale, estimator) -> str:
    if not isinstance(epsilon, jax.Array):
        check_positive("epsilon", epsilon)
    if loss_scale != "auto":
        check_positive("loss_scale", loss_scale)
    return check_choice("estimator", _ALIASES.get(estimator, estimator), ESTIMATORS)


def contrastive_hebbian_gradients(
    ham: HopfieldHamiltonian,
    inputs: Float[Array, "K H"],
    cotangent: Float[Array, "K N"],
    *,
    epsilon: float | Array = 0.1,
    loss_scale: float | str = "auto",
    estimator: str = "centred",
    free: tuple[PhaseState, HebbianAccumulators] | None = None,
) -> HopfieldHamiltonian:
    """RHEL estimate of ``∂L/∂θ`` for every parameter of ``ham`` from local accumulators.

    Args:
        ham: the Hopfield Hamiltonian.
        inputs: ``u_0 … u_{K−1}``.
        cotangent: ``g_k = ∂L/∂φ_{k+1}``, shape ``(K, N)``.
        epsilon, loss_scale: the nudge ``ν`` (see :func:`nudge_size`).
        estimator: ``"centred"`` (``+ν`` vs ``−ν`` echoes) or ``"one-sided"`` (free phase vs
            the ``+ν`` echo).
        free: ``(final state, free-phase accumulators)`` of an already run forward pass
            (otherwise the free phase is run here).

    Returns:
        A tree shaped like ``ham`` holding the gradient estimate (0 for a frozen step).
    """
    estimator = _check(epsilon, loss_scale, estimator)
    if free is None:
        final, _, acc_free = free_phase(ham, inputs)
    else:
        final, acc_free = free
    nudge = nudge_size(cotangent.astype(final.phi.dtype), epsilon, loss_scale)
    if estimator == "centred":
        signs = jnp.asarray([1.0, -1.0], final.phi.dtype)
        acc = jax.vmap(lambda s: echo_phase(ham, final, inputs, cotangent, s * nudge))(signs)
        contrast = HebbianAccumulators(*(a[0] - a[1] for a in acc))
        denominator = 2.0 * nudge
    else:
        contrast = echo_phase(ham, final, inputs, cotangent, nudge) - acc_free
        denominator = nudge
    grads = energy_derivatives(ham, contrast)
    scale = -1.0 / denominator
    return jax.tree_util.tree_map(
        lambda x: (scale * x).astype(x.dtype) if eqx.is_inexact_array(x) else x, grads
    )


def hebbian_positions(
    ham: HopfieldHamiltonian,
    inputs: Float[Array, "K H"],
    *,
    epsilon: float = 0.1,
    loss_scale: float | str = "auto",
    estimator: str = "centred",
) -> Float[Array, "K N"]:
    """Positions ``φ_1 … φ_K`` whose parameter gradient is the local contrastive Hebbian rule.

    A ``custom_vjp``: the forward is the free phase (which keeps only its final state and its
    accumulators), the backward runs the echo phase(s) with the incoming cotangents and returns
    :func:`contrastive_hebbian_gradients`. ``inputs`` are treated as data (no gradient).
    """
    _check(epsilon, loss_scale, estimator)
    params, static = eqx.partition(ham, eqx.is_inexact_array)

    @jax.custom_vjp
    def positions(params, inputs):
        return free_phase(eqx.combine(params, static), inputs)[1]

    def positions_fwd(params, inputs):
        final, phi, acc = free_phase(eqx.combine(params, static), inputs)
        return phi, (params, inputs, final, acc)

    def positions_bwd(residuals, cotangent):
        params, inputs, final, acc = residuals
        h = eqx.combine(params, static)
        grads = contrastive_hebbian_gradients(
            h,
            inputs,
            cotangent,
            epsilon=epsilon,
            loss_scale=loss_scale,
            estimator=estimator,
            free=(final, acc),
        )
        return eqx.filter(grads, eqx.is_inexact_array), jnp.zeros_like(inputs)

    positions.defvjp(positions_fwd, positions_bwd)
    return positions(params, lax.stop_gradient(inputs))
