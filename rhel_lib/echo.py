"""Recurrent Hamiltonian Echo Learning: one echo for every Hamiltonian.

:func:`integrate` runs a unit's Hamiltonian from rest over an input sequence and returns the
positions ``φ_1 … φ_K``. With ``GradientConfig(method="bptt")`` gradients come from ordinary
autodiff through the integrator. With ``method="rhel"`` the positions are a ``custom_vjp`` whose
backward pass stores nothing of the forward trajectory but its last state ``Φ_K``:

* echo start ``e_0 = (φ_K, −π_K)``; before echo step ``j`` the momentum gets the nudge
  ``σ ν g_{K−1−j}``, with ``ν = ε γ`` and ``g_k = ∂L/∂φ_{k+1}`` the incoming cotangent;
* echo step ``j`` is the same leapfrog step with input ``u_{K−1−j}`` (inputs reversed);
* two echoes run together, ``σ = ±1`` (centred estimator, error ``O(ε²)``, exact for the linear
  unit) or ``σ ∈ {1, 0}`` (one-sided, error ``O(ε)``; ``σ = 0`` retraces the forward pass);
* ``∂L/∂θ ≈ −Σ_j [∂_θ H_{1/2}(σ₁) − ∂_θ H_{1/2}(σ₂)] / (Δσ ν)`` and the same for ``∂L/∂u_{K−1−j}``
  at echo step ``j``.

The echo runs in chunks of ``chunk_size`` steps (a ``lax.scan`` over chunks): inside a chunk the
unit's own trajectory method runs (parallel scan for the linear unit) and the parameter gradient of
the chunk is one autodiff of ``Σ_j H_{1/2}``, i.e. matrix products reducing over time — never a
per-step parameter-gradient tensor. Memory therefore does not grow with ``K`` beyond the inputs,
the cotangents and the input gradients.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, PyTree

from rhel_lib._validation import check_choice, check_positive, check_positive_int
from rhel_lib.hamiltonian import Hamiltonian, PhaseState

GRADIENT_METHODS = ("bptt", "rhel")
ESTIMATORS = ("centred", "one-sided")
_ESTIMATOR_ALIASES = {"centered": "centred", "one_sided": "one-sided", "onesided": "one-sided"}


@dataclasses.dataclass(frozen=True)
class GradientConfig:
    """How a Hamiltonian unit gets its gradients (hashable: stored as static module field).

    Attributes:
        method: ``"bptt"`` (autodiff through the integrator) or ``"rhel"`` (echo).
        epsilon: nudging strength ``ε > 0`` (RHEL only).
        loss_scale: ``γ > 0``; the nudge is ``ε γ g`` and the estimate is divided by ``γ`` again,
            which moves the nudge away from round-off without changing the maths (the paper uses
            ``ε = 0.1, γ = 10⁴``). ``"auto"`` (default) takes ``γ = 1 / Σ_k |g_k|₁`` for each
            echo, so that ``ε`` bounds the total momentum injected: the nudge is then small
            against the state (bias ``O(ε²)``) yet far above round-off whatever the loss's scale.
        estimator: ``"centred"`` (±ε echoes) or ``"one-sided"`` (+ε echo vs. the retrace).
        chunk_size: echo steps per chunk (``None``: one chunk); bounds the echo's memory.
        paired_echoes: always simulate the two echoes as two separate trajectories, as a
            physical system would. By default a quadratic Hamiltonian (the linear unit) evaluates
            them as mean ± half-difference instead: the same estimator without the floating-point
            cancellation, so its gradient is exact to round-off at any ``ε``.
    """

    method: str = "bptt"
    epsilon: float = 0.1
    loss_scale: float | str = "auto"
    estimator: str = "centred"
    chunk_size: int | None = 1024
    paired_echoes: bool = False

    def __post_init__(self):
        check_choice("gradient", self.method, GRADIENT_METHODS)
        object.__setattr__(self, "epsilon", check_positive("epsilon", self.epsilon))
        if self.loss_scale != "auto":
            object.__setattr__(self, "loss_scale", check_positive("loss_scale", self.loss_scale))
        estimator = _ESTIMATOR_ALIASES.get(self.estimator, self.estimator)
        object.__setattr__(self, "estimator", check_choice("estimator", estimator, ESTIMATORS))
        check_positive_int("chunk_size", self.chunk_size, allow_none=True)
        if not isinstance(self.paired_echoes, bool):
            raise TypeError(f"paired_echoes must be a bool; got {self.paired_echoes!r}")

    def replace(self, **changes) -> GradientConfig:
        """A copy with some fields changed (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _dtype_of(ham: Hamiltonian, inputs: Array):
    leaves = [x for x in jax.tree_util.tree_leaves(ham) if eqx.is_inexact_array(x)]
    return jnp.result_type(inputs.dtype, *(x.dtype for x in leaves))


def forward_positions(ham: Hamiltonian, inputs: Float[Array, "K H"]) -> Float[Array, "K Q"]:
    """Positions ``φ_1 … φ_K`` of the trajectory from rest (differentiable by autodiff)."""
    _, record = ham.trajectory(ham.zero_state(_dtype_of(ham, inputs)), inputs)
    return record.phi_out


def integrate(
    ham: Hamiltonian, inputs: Float[Array, "K H"], config: GradientConfig
) -> Float[Array, "K Q"]:
    """Positions ``φ_1 … φ_K`` of ``ham`` driven by ``inputs`` from rest, with the gradient
    method of ``config`` (BPTT by autodiff, or the RHEL echo)."""
    if config.method == "bptt":
        return forward_positions(ham, inputs)
    params, static = eqx.partition(ham, eqx.is_inexact_array)

    @jax.custom_vjp
    def positions(params, inputs):
        return forward_positions(eqx.combine(params, static), inputs)

    def positions_fwd(params, inputs):
        h = eqx.combine(params, static)
        final, record = h.trajectory(h.zero_state(_dtype_of(h, inputs)), inputs)
        return record.phi_out, (params, inputs, final)

    def positions_bwd(residuals, cotangent):
        params, inputs, final = residuals
        return echo_gradients(params, static, inputs, final, cotangent, config)

    positions.defvjp(positions_fwd, positions_bwd)
    return positions(params, inputs)


def echo_gradients(
    params: PyTree,
    static: PyTree,
    inputs: Float[Array, "K H"],
    final: PhaseState,
    cotangent: Float[Array, "K Q"],
    config: GradientConfig,
) -> tuple[PyTree, Float[Array, "K H"]]:
    """RHEL estimates of ``(∂L/∂params, ∂L/∂inputs)`` from the final state and ``∂L/∂φ_{1..K}``.

    ``params``/``static`` are the two halves of ``eqx.partition(ham, eqx.is_inexact_array)``.
    The two echoes are carried as a pair of phase-space points: the echoes themselves, or — for a
    quadratic Hamiltonian unless ``config.paired_echoes`` — their mean ``c`` and half-difference
    ``d``, propagated as a trajectory and its exact linear response (``jax.jvp``).
    """
    ham = eqx.combine(params, static)
    num_steps = inputs.shape[0]
    dtype = final.phi.dtype
    if config.loss_scale == "auto":
        total = jnp.sum(jnp.abs(cotangent)).astype(dtype)
        nudge = config.epsilon / jnp.where(total > 0, total, 1.0)
    else:
        nudge = config.epsilon * config.loss_scale
    sign_hi, sign_lo = (1.0, -1.0) if config.estimator == "centred" else (1.0, 0.0)
    denominator = (sign_hi - sign_lo) * nudge
    split = ham.is_quadratic and not config.paired_echoes
    if split:  # mean and half-difference of the two echoes
        kick_signs = jnp.asarray((sign_hi + sign_lo, sign_hi - sign_lo), dtype) * (0.5 * nudge)
    else:
        kick_signs = jnp.asarray((sign_hi, sign_lo), dtype) * nudge

    chunk = min(config.chunk_size or num_steps, num_steps)
    num_chunks = -(-num_steps // chunk)
    pad = num_chunks * chunk - num_steps

    def chunked(x):  # reverse time, pad the end, split into chunks
        x = jnp.concatenate([x[::-1], jnp.zeros((pad,) + x.shape[1:], x.dtype)])
        return x.reshape((num_chunks, chunk) + x.shape[1:])

    mask = chunked(jnp.ones((num_steps,), dtype))
    flipped = PhaseState(final.phi, -final.pi)
    if split:
        zero = jax.tree_util.tree_map(jnp.zeros_like, flipped)
        start = jax.tree_util.tree_map(lambda c, d: jnp.stack([c, d]), flipped, zero)
    else:
        start = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), flipped)

    def contrast(p, u, records, m):
        """``Σ_j m_j [H_{1/2}(echo 1) − H_{1/2}(echo 2)]`` over one chunk (gradient = estimate)."""
        h = eqx.combine(p, static)
        if split:  # H is quadratic: H(c + d) − H(c − d) = 2 ∂H(c)·d exactly
            mean, half_diff = (jax.tree_util.tree_map(lambda x, i=i: x[i], records) for i in (0, 1))

            def tangent(rc, rd, uj):
                return jax.jvp(lambda r: h.half_step_energy(r, uj), (rc,), (rd,))[1]

            return 2.0 * jnp.sum(m * jax.vmap(tangent)(mean, half_diff, u))
        energies = jax.vmap(jax.vmap(h.half_step_energy), in_axes=(0, None))(records, u)
        return jnp.sum(m * (energies[0] - energies[1]))

    def run_pair(state, u, kicks):
        if split:
            primal = PhaseState(state.phi[0], state.pi[0])
            tangent = PhaseState(state.phi[1], state.pi[1])
            out, out_dot = jax.jvp(
                lambda s, k: ham.trajectory(s, u, k), (primal, kicks[0]), (tangent, kicks[1])
            )
            return jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), out, out_dot)
        return jax.vmap(ham.trajectory, in_axes=(0, None, 0))(state, u, kicks)

    def chunk_step(carry, xs):
        state, accumulated = carry
        u, g, m = xs
        kicks = kick_signs[:, None, None] * g[None].astype(dtype)
        state, records = run_pair(state, u, kicks)
        grad_params, grad_inputs = jax.grad(contrast, argnums=(0, 1))(params, u, records, m)
        accumulated = jax.tree_util.tree_map(jnp.add, accumulated, grad_params)
        return (state, accumulated), grad_inputs

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    (_, grad_params), grad_inputs = lax.scan(
        chunk_step, (start, zeros), (chunked(inputs), chunked(cotangent), mask)
    )
    scale = -1.0 / denominator
    grad_params = jax.tree_util.tree_map(lambda x: (scale * x).astype(x.dtype), grad_params)
    grad_inputs = grad_inputs.reshape((num_chunks * chunk,) + inputs.shape[1:])[:num_steps][::-1]
    return grad_params, (scale * grad_inputs).astype(inputs.dtype)
