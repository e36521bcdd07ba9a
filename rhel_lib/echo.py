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

Forward pass and echo run in chunks of ``chunk_size`` steps (a ``lax.scan`` over chunks): inside a
chunk the unit's own trajectory method runs (parallel scan for the linear unit) and the parameter
gradient of the chunk is one autodiff of ``Σ_j H_{1/2}``, i.e. matrix products reducing over time
— never a per-step parameter-gradient tensor. A unit's readout ``y_k = r(φ_{k+1}, u_k)`` (affine
in ``φ``) is applied chunk by chunk inside the same ``custom_vjp`` (:func:`unit_outputs`), so the
positions are never stored either: memory does not grow with ``K`` beyond the inputs, the outputs
and their cotangents.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, PyTree

from rhel_lib._validation import check_choice, check_positive, check_positive_int
from rhel_lib.hamiltonian import Hamiltonian, PhaseState
from rhel_lib.integrators import sequential_trajectory

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
        chunk_size: steps per chunk of the forward pass and of the echo (``None``: one chunk);
            bounds the memory of both.
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


def _dtype_of(tree, inputs: Array):
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if eqx.is_inexact_array(x)]
    return jnp.result_type(inputs.dtype, *(x.dtype for x in leaves))


def _chunks(x: Array, chunk: int) -> tuple[Array, Array]:
    """Split the time axis into a head of ``K mod chunk`` steps and ``(n, chunk, ...)`` chunks."""
    head = x.shape[0] % chunk
    return x[:head], x[head:].reshape((-1, chunk) + x.shape[1:])


def _chunk_size(config: GradientConfig, num_steps: int) -> int:
    return max(1, min(config.chunk_size or num_steps, num_steps))


def _positions(model, phi, u):
    """The identity readout of :func:`integrate`: a unit's output is its position."""
    return phi


def _hamiltonian_itself(model):
    return model


def _unit_hamiltonian(unit):
    return unit.hamiltonian


def _unit_readout(unit, phi, u):
    return unit.readout(phi, u)


def _forward(model, get_ham, readout, inputs, chunk):
    """Outputs ``r(φ_{k+1}, u_k)`` from rest and the final state, computed chunk by chunk."""
    ham = get_ham(model)
    read = jax.vmap(lambda phi, u: readout(model, phi, u))

    def run(state, u, trajectory=ham.trajectory):
        state, record = trajectory(state, u)
        return state, read(record.phi_out, u)

    head, body = _chunks(inputs, chunk)
    state = ham.zero_state(_dtype_of(model, inputs))
    if head.shape[0]:  # a short remainder: the sequential scan compiles faster
        state, y_head = run(state, head, partial(sequential_trajectory, ham))
    final, y_body = lax.scan(run, state, body)
    y = y_body.reshape((-1,) + y_body.shape[2:])
    if head.shape[0]:
        y = jnp.concatenate([y_head, y])
    return y, final


def _with_echo_backward(model, get_ham, readout, inputs, config):
    """``r(φ_{k+1}, u_k)`` for all ``k``, differentiated by BPTT or by the RHEL echo."""
    chunk = _chunk_size(config, inputs.shape[0])
    if config.method == "bptt":
        return _forward(model, get_ham, readout, inputs, chunk)[0]
    params, static = eqx.partition(model, eqx.is_inexact_array)

    @jax.custom_vjp
    def outputs(params, inputs):
        return _forward(eqx.combine(params, static), get_ham, readout, inputs, chunk)[0]

    def outputs_fwd(params, inputs):
        y, final = _forward(eqx.combine(params, static), get_ham, readout, inputs, chunk)
        return y, (params, inputs, final)

    def outputs_bwd(residuals, cotangent):
        params, inputs, final = residuals
        return _echo(params, static, get_ham, readout, inputs, final, cotangent, config)

    outputs.defvjp(outputs_fwd, outputs_bwd)
    return outputs(params, inputs)


def integrate(
    ham: Hamiltonian, inputs: Float[Array, "K H"], config: GradientConfig
) -> Float[Array, "K Q"]:
    """Positions ``φ_1 … φ_K`` of ``ham`` driven by ``inputs`` from rest, with the gradient
    method of ``config`` (BPTT by autodiff, or the RHEL echo)."""
    return _with_echo_backward(ham, _hamiltonian_itself, _positions, inputs, config)


def unit_outputs(unit, inputs: Float[Array, "K H"], config: GradientConfig) -> Array:
    """Outputs ``unit.readout(φ_{k+1}, u_k)`` of a Hamiltonian unit (``unit.hamiltonian``, and a
    per-step ``unit.readout`` affine in ``φ``), differentiated by BPTT or the RHEL echo.

    The readout's parameters get their gradient from the echo's retrace of the forward positions
    (exact for the linear unit and for the one-sided estimator; for the centred estimator of a
    nonlinear unit the mean of the two echoes, which equals the retrace up to ``O(ε²)``)."""
    return _with_echo_backward(unit, _unit_hamiltonian, _unit_readout, inputs, config)


def forward_positions(ham: Hamiltonian, inputs: Float[Array, "K H"]) -> Float[Array, "K Q"]:
    """Positions ``φ_1 … φ_K`` of the trajectory from rest (differentiable by autodiff)."""
    _, record = ham.trajectory(ham.zero_state(_dtype_of(ham, inputs)), inputs)
    return record.phi_out


def echo_gradients(
    params: PyTree,
    static: PyTree,
    inputs: Float[Array, "K H"],
    final: PhaseState,
    cotangent: Float[Array, "K Q"],
    config: GradientConfig,
    *,
    epsilon: float | Array | None = None,
) -> tuple[PyTree, Float[Array, "K H"]]:
    """RHEL estimates of ``(∂L/∂params, ∂L/∂inputs)`` from the final state and ``∂L/∂φ_{1..K}``.

    ``params``/``static`` are the two halves of ``eqx.partition(ham, eqx.is_inexact_array)``.
    ``epsilon`` (optional) overrides ``config.epsilon`` and may be a traced scalar, so that a
    sweep over ``ε`` compiles once (see :mod:`rhel_lib.precision`).
    """
    return _echo(
        params,
        static,
        _hamiltonian_itself,
        _positions,
        inputs,
        final,
        cotangent,
        config,
        epsilon=epsilon,
    )


def _echo(params, static, get_ham, readout, inputs, final, cotangent, config, *, epsilon=None):
    """The RHEL backward pass of :func:`_with_echo_backward` (see the module docstring).

    The two echoes are carried as a pair of phase-space points: the echoes themselves, or — for a
    quadratic Hamiltonian unless ``config.paired_echoes`` — their mean ``c`` and half-difference
    ``d``, propagated as a trajectory and its exact linear response (``jax.jvp``). Chunks are
    visited from the last to the first (``lax.scan(..., reverse=True)``), each reversed in time, so
    no full-length reversed copy of the inputs or cotangents is made.
    """
    model = eqx.combine(params, static)
    ham = get_ham(model)
    num_steps = inputs.shape[0]
    dtype = final.phi.dtype
    epsilon = config.epsilon if epsilon is None else epsilon
    chunk = _chunk_size(config, num_steps)
    u_head, u_body = _chunks(inputs, chunk)
    g_head, g_body = _chunks(cotangent, chunk)

    def position_cotangents(u, g_out):
        return _position_cotangents(model, readout, ham.state_dim, u, g_out)

    if config.loss_scale == "auto":  # ε bounds the total injected momentum (see GradientConfig)

        def add_abs(total, xs):
            return total + jnp.sum(jnp.abs(position_cotangents(*xs))), None

        total = jnp.sum(jnp.abs(position_cotangents(u_head, g_head)))
        total = lax.scan(add_abs, total, (u_body, g_body))[0].astype(dtype)
        nudge = epsilon / jnp.where(total > 0, total, 1.0)
    else:
        nudge = epsilon * config.loss_scale
    sign_hi, sign_lo = (1.0, -1.0) if config.estimator == "centred" else (1.0, 0.0)
    denominator = (sign_hi - sign_lo) * nudge
    split = ham.is_quadratic and not config.paired_echoes
    if split:  # mean and half-difference of the two echoes
        kick_signs = jnp.asarray((sign_hi + sign_lo, sign_hi - sign_lo), dtype) * (0.5 * nudge)
        # echo at sign 0 (the retrace) = mean − coef · half-difference, exactly
        retrace_weights = jnp.asarray((1.0, -(sign_hi + sign_lo) / (sign_hi - sign_lo)), dtype)
    else:
        kick_signs = jnp.asarray((sign_hi, sign_lo), dtype) * nudge
        # linear interpolation of the two echoes to sign 0 (exact when sign_lo = 0)
        retrace_weights = jnp.asarray((-sign_lo, sign_hi), dtype) / (sign_hi - sign_lo)

    def contrast(p, u, records):
        """``Σ_j [H_{1/2}(echo 1) − H_{1/2}(echo 2)]`` over one chunk (gradient = estimate)."""
        h = get_ham(eqx.combine(p, static))
        if split:  # H is quadratic: H(c + d) − H(c − d) = 2 ∂H(c)·d exactly
            mean, half_diff = (jax.tree_util.tree_map(lambda x, i=i: x[i], records) for i in (0, 1))

            def tangent(rc, rd, uj):
                return jax.jvp(lambda r: h.half_step_energy(r, uj), (rc,), (rd,))[1]

            return 2.0 * jnp.sum(jax.vmap(tangent)(mean, half_diff, u))
        energies = jax.vmap(jax.vmap(h.half_step_energy), in_axes=(0, None))(records, u)
        return jnp.sum(energies[0] - energies[1])

    def read_back(p, phi, u, g):
        """``Σ_j r(φ_j, u_j) · g_j``: its gradient is the readout's share of the estimate."""
        m = eqx.combine(p, static)
        return jnp.sum(jax.vmap(lambda a, b: readout(m, a, b))(phi, u) * g)

    def run_pair(state, u, kicks, trajectory):
        if split:
            primal = PhaseState(state.phi[0], state.pi[0])
            tangent = PhaseState(state.phi[1], state.pi[1])
            out, out_dot = jax.jvp(
                lambda s, k: trajectory(s, u, k), (primal, kicks[0]), (tangent, kicks[1])
            )
            return jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), out, out_dot)
        return jax.vmap(trajectory, in_axes=(0, None, 0))(state, u, kicks)

    def echo_chunk(carry, xs, trajectory=ham.trajectory):
        state, accumulated = carry
        u, g_out = xs[0][::-1], xs[1][::-1]  # echo order within the chunk
        g = position_cotangents(u, g_out)
        kicks = kick_signs[:, None, None] * g[None].astype(dtype)
        state, records = run_pair(state, u, kicks, trajectory)
        grad_h, grad_u = jax.grad(contrast, argnums=(0, 1))(params, u, records)
        retrace = jnp.einsum("s,s...->...", retrace_weights, records.phi_in)
        grad_r, grad_u_read = jax.grad(read_back, argnums=(0, 2))(params, retrace, u, g_out)
        scale = -1.0 / denominator
        grads = jax.tree_util.tree_map(lambda a, b: scale * a + b, grad_h, grad_r)
        accumulated = jax.tree_util.tree_map(jnp.add, accumulated, grads)
        return (state, accumulated), (scale * grad_u + grad_u_read)[::-1]

    flipped = PhaseState(final.phi, -final.pi)
    if split:
        zero = jax.tree_util.tree_map(jnp.zeros_like, flipped)
        start = jax.tree_util.tree_map(lambda c, d: jnp.stack([c, d]), flipped, zero)
    else:
        start = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), flipped)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    carry, grad_u = lax.scan(echo_chunk, (start, zeros), (u_body, g_body), reverse=True)
    grad_u = grad_u.reshape((-1,) + inputs.shape[1:])
    if u_head.shape[0]:  # the first K mod chunk steps come last in the echo
        head = partial(sequential_trajectory, ham)
        carry, grad_u_head = echo_chunk(carry, (u_head, g_head), head)
        grad_u = jnp.concatenate([grad_u_head, grad_u])
    grad_params = jax.tree_util.tree_map(lambda x, p: x.astype(p.dtype), carry[1], params)
    return grad_params, grad_u.astype(inputs.dtype)


def _position_cotangents(model, readout, state_dim, u, g_out):
    """``∂L/∂φ_{k+1} = (∂r/∂φ)ᵀ g_k`` for a readout affine in ``φ`` (evaluated at ``φ = 0``)."""

    def one(uj, gj):
        zero = jnp.zeros((state_dim,), gj.dtype)
        return jax.vjp(lambda phi: readout(model, phi, uj), zero)[1](gj)[0]

    return jax.vmap(one)(u, g_out)
