"""Computations behind the book's echo chapters, and the echo explorer's thin widget layer.

The RHEL backward pass (:func:`rhel_lib.echo.echo_gradients`) keeps nothing of the echoes but the
gradient. The book wants to *look* at them, so this module runs the same echo in the open:

* :func:`echo_trajectories` returns the forward record and both nudged echo records, with the
  same conventions as the echo (start ``(φ_K, −π_K)``, nudge ``σ ν g_{K−1−j}`` added to the
  momentum before echo step ``j``, inputs reversed, ``ν = ε γ``), run by the Hamiltonian's own
  ``trajectory`` method;
* :func:`step_contributions` / :func:`running_estimate` split the estimator into its per-step
  terms; the last value of the running estimate is the full RHEL gradient;
* :func:`bptt_gradients`, :func:`rhel_gradients`, :func:`error_vs_epsilon`,
  :func:`compare_with_bptt` and :func:`retrace_error` measure the estimator against autodiff;
* :class:`NonReversibleNonlinearHamiltonian` is the nonlinear unit with a *defective* integrator
  (``∂V`` evaluated at ``φ_k`` instead of the half-step position ``φ_h``, as one public
  implementation does) to show why reversibility matters;
* :func:`echo_grid` computes everything the explorer shows over a grid of ``ε`` and ``Δ`` in one
  jitted, vectorised call; :func:`plot_echo_frame`, :func:`echo_scrubber` and
  :func:`echo_explorer` draw it (matplotlib / ipywidgets are imported lazily).

These helpers store per-step quantities (``K × parameters``): they are for small, didactic
systems. Training uses :func:`rhel_lib.echo.integrate`, which never does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float, PyTree

from rhel_lib.echo import GradientConfig, echo_gradients, integrate
from rhel_lib.hamiltonian import Hamiltonian, PhaseState, StepRecord
from rhel_lib.integrators import flip
from rhel_lib.units.linear import LinearHamiltonian
from rhel_lib.units.nonlinear import NonlinearHamiltonian

__all__ = [
    "EchoGrid",
    "EchoRun",
    "LinearReadoutLoss",
    "NonReversibleNonlinearHamiltonian",
    "bptt_gradients",
    "compare_with_bptt",
    "echo_explorer",
    "echo_grid",
    "echo_scrubber",
    "echo_trajectories",
    "error_vs_epsilon",
    "forward_run",
    "leaf_relative_errors",
    "make_non_reversible",
    "make_unit_problem",
    "nudge_size",
    "open_echo_gradients",
    "plot_echo_frame",
    "relative_error",
    "retrace_error",
    "rhel_gradients",
    "running_estimate",
    "step_contributions",
    "tree_norm",
    "with_step",
]

ENERGIES = ("half-step", "endpoints")
_SYMBOLS = {"coupling": "J"}  # how the book writes a parameter leaf


# ---------------------------------------------------------------------------------------------
# the echo, in the open
# ---------------------------------------------------------------------------------------------
class EchoRun(NamedTuple):
    """A forward run and its two nudged echoes.

    Attributes:
        forward: record of the forward run (leaves ``(K, Q)``; step ``k`` has input ``u_k``).
        final: the final forward state ``Φ_K``.
        echoes: records of the two echoes (leaves ``(2, K, Q)``: echo ``σ₁`` then echo ``σ₂``;
            echo step ``j`` has input ``u_{K−1−j}``).
        signs: ``(σ₁, σ₂)``: ``(1, −1)`` (centred) or ``(1, 0)`` (one-sided).
        nudge: ``ν``, the nudge per unit cotangent (``ε γ``).
        cotangent: ``g_k = ∂L/∂φ_{k+1}`` (``(K, Q)``, forward order).
    """

    forward: StepRecord
    final: PhaseState
    echoes: StepRecord
    signs: Float[Array, " 2"]
    nudge: Float[Array, ""]
    cotangent: Float[Array, "K Q"]


def _float_dtype(ham: Hamiltonian, inputs: Array):
    leaves = [x for x in jax.tree_util.tree_leaves(ham) if eqx.is_inexact_array(x)]
    return jnp.result_type(inputs.dtype, *(x.dtype for x in leaves))


def _record(**fields) -> StepRecord:
    """A :class:`StepRecord` from keyword fields (fields it does not have are dropped)."""
    return StepRecord(**{k: v for k, v in fields.items() if k in StepRecord._fields})


def forward_run(ham: Hamiltonian, inputs: Float[Array, "K H"]) -> tuple[PhaseState, StepRecord]:
    """``(Φ_K, record)`` of the trajectory from rest driven by ``inputs``."""
    return ham.trajectory(ham.zero_state(_float_dtype(ham, inputs)), inputs)


def nudge_size(cotangent: Array, epsilon, loss_scale: float | str = "auto") -> Array:
    """``ν`` such that echo ``σ`` receives the momentum kicks ``σ ν g``: ``ε γ``, with
    ``γ = 1 / Σ_k |g_k|₁`` for ``loss_scale="auto"`` (as in :class:`~rhel_lib.GradientConfig`)."""
    if loss_scale == "auto":
        total = jnp.sum(jnp.abs(cotangent))
        return epsilon / jnp.where(total > 0, total, 1.0)
    return epsilon * loss_scale


def _signs(estimator: str) -> tuple[float, float]:
    return (1.0, -1.0) if estimator == "centred" else (1.0, 0.0)


def echo_trajectories(
    ham: Hamiltonian,
    inputs: Float[Array, "K H"],
    cotangent: Float[Array, "K Q"],
    *,
    epsilon,
    loss_scale: float | str = "auto",
    estimator: str = "centred",
) -> EchoRun:
    """Run ``ham`` forwards over ``inputs``, then its two echoes nudged by ``cotangent``.

    Same conventions as :func:`rhel_lib.echo.echo_gradients` (both echoes are simulated as two
    trajectories, as a physical system would; the echo of a quadratic Hamiltonian in
    :mod:`rhel_lib.echo` may instead use the mean/half-difference form, which is the same
    estimator without cancellation). ``epsilon`` may be ``0`` (both echoes then retrace the
    forward run) or a traced scalar. Compiled once per shape (``ε`` is not a static argument).
    """
    estimator = GradientConfig("rhel", estimator=estimator).estimator  # validates, aliases
    return _echo_run(ham, inputs, cotangent, jnp.asarray(epsilon), loss_scale, estimator)


@eqx.filter_jit
def _echo_run(ham, inputs, cotangent, epsilon, loss_scale, estimator) -> EchoRun:
    final, forward = forward_run(ham, inputs)
    dtype = final.phi.dtype
    signs = jnp.asarray(_signs(estimator), dtype)
    epsilon = epsilon.astype(dtype)
    nudge = jnp.asarray(nudge_size(cotangent.astype(dtype), epsilon, loss_scale), dtype)
    kicks = signs[:, None, None] * nudge * cotangent[::-1].astype(dtype)[None]
    _, echoes = jax.vmap(ham.trajectory, in_axes=(None, None, 0))(flip(final), inputs[::-1], kicks)
    return EchoRun(forward, final, echoes, signs, nudge, cotangent)


def _endpoint_energy(ham: Hamiltonian, record: StepRecord, phi_in: Array, u: Array) -> Array:
    """Trapezoid ``½[H(φ_j, π_j) + H(φ_{j+1}, π_{j+1})]`` at the integer states of a step."""
    start = PhaseState(phi_in, record.pi_in)
    end = PhaseState(record.phi_out, record.pi_out)
    return 0.5 * (ham.energy(start, u) + ham.energy(end, u))


def step_contributions(
    ham: Hamiltonian, inputs: Float[Array, "K H"], run: EchoRun, *, energy: str = "half-step"
) -> tuple[PyTree, Float[Array, "K H"]]:
    """The estimator's terms, one per echo step ``j``.

    Returns ``(c_θ, c_u)``: ``c_θ`` has the structure of the inexact-array leaves of ``ham``
    with a leading axis ``K`` (echo order), ``c_θ[j] = −[∂_θ E_j(σ₁) − ∂_θ E_j(σ₂)] / ((σ₁ − σ₂)
    ν)``, and ``c_u[j]`` is the same for the input ``u_{K−1−j}`` of that step (echo order).

    ``energy="half-step"`` takes ``E_j = H_{1/2}`` of echo step ``j`` (the RHEL estimator);
    ``"endpoints"`` takes the trapezoid of ``H`` at the integer states before and after the step,
    a natural-looking discretisation that is *not* the gradient of the discrete dynamics.
    """
    if energy not in ENERGIES:
        raise ValueError(f"unknown energy {energy!r}; expected one of {ENERGIES}")
    params, static = eqx.partition(ham, eqx.is_inexact_array)
    u_echo = inputs[::-1]
    records = run.echoes
    # positions entering each echo step (not differentiated: they are measured states)
    phi_in = records.phi_half - 0.5 * jax.vmap(jax.vmap(ham.kinetic_grad))(records.pi_in)

    def step_energy(p, record, phi0, u):
        h = eqx.combine(p, static)
        if energy == "half-step":
            return h.half_step_energy(record, u)
        return _endpoint_energy(h, record, phi0, u)

    def contrast(p, u, rec_a, rec_b, phi_a, phi_b):
        return step_energy(p, rec_a, phi_a, u) - step_energy(p, rec_b, phi_b, u)

    first = jax.tree_util.tree_map(lambda x: x[0], records)
    second = jax.tree_util.tree_map(lambda x: x[1], records)
    grads_p, grads_u = jax.vmap(jax.grad(contrast, argnums=(0, 1)), in_axes=(None, 0, 0, 0, 0, 0))(
        params, u_echo, first, second, phi_in[0], phi_in[1]
    )
    scale = -1.0 / ((run.signs[0] - run.signs[1]) * run.nudge)
    grads_p = jax.tree_util.tree_map(lambda x: scale * x, grads_p)
    return grads_p, scale * grads_u


@eqx.filter_jit
def running_estimate(
    ham: Hamiltonian, inputs: Float[Array, "K H"], run: EchoRun, *, energy: str = "half-step"
) -> tuple[PyTree, Float[Array, "K H"]]:
    """The parameter estimate accumulated over the echo steps, and the input gradient.

    Returns ``(G, ∂L/∂u)``: ``G`` has a leading axis ``K`` with ``G[j] = Σ_{i ≤ j} c_θ[i]``
    (``G[K−1]`` is the RHEL gradient), ``∂L/∂u`` is in forward order (``(K, H)``).
    """
    per_step, per_input = step_contributions(ham, inputs, run, energy=energy)
    return jax.tree_util.tree_map(lambda x: jnp.cumsum(x, axis=0), per_step), per_input[::-1]


# ---------------------------------------------------------------------------------------------
# gradients and their errors
# ---------------------------------------------------------------------------------------------
def _param_leaves(tree) -> list[tuple[str, Array]]:
    pairs = jax.tree_util.tree_leaves_with_path(eqx.filter(tree, eqx.is_inexact_array))
    return [(jax.tree_util.keystr(path).lstrip("."), leaf) for path, leaf in pairs]


def relative_error(estimate: PyTree, reference: PyTree) -> Array:
    """``‖a − b‖ / ‖b‖`` over all inexact-array leaves together (``‖a‖`` when ``b = 0``)."""
    a = [x for _, x in _param_leaves(estimate)]
    b = [x for _, x in _param_leaves(reference)]
    diff = jnp.sqrt(sum(jnp.sum((x - y) ** 2) for x, y in zip(a, b)))
    norm = jnp.sqrt(sum(jnp.sum(y**2) for y in b))
    return jnp.where(norm > 0, diff / jnp.where(norm > 0, norm, 1.0), diff)


def leaf_relative_errors(estimate: PyTree, reference: PyTree) -> dict[str, Array]:
    """:func:`relative_error` per leaf, keyed by the leaf's attribute path (e.g. ``"B"``)."""
    ref = _param_leaves(reference)
    got = [x for _, x in _param_leaves(estimate)]
    return {name: relative_error(g, r) for (name, r), g in zip(ref, got)}


def tree_norm(tree: PyTree) -> Array:
    """Euclidean norm of all inexact-array leaves together."""
    return jnp.sqrt(sum(jnp.sum(x**2) for _, x in _param_leaves(tree)))


@eqx.filter_jit
def bptt_gradients(ham: Hamiltonian, inputs: Float[Array, "K H"], loss_fn) -> tuple[Any, Array]:
    """``(∂L/∂ham, ∂L/∂inputs)`` by autodiff through the integrator, ``L = loss_fn(φ_{1..K})``."""

    def loss(h, u):
        return loss_fn(integrate(h, u, GradientConfig("bptt")))

    return jax.grad(loss, argnums=(0, 1))(ham, inputs)


@eqx.filter_jit
def rhel_gradients(
    ham: Hamiltonian,
    inputs: Float[Array, "K H"],
    loss_fn,
    config: GradientConfig,
    *,
    epsilon=None,
) -> tuple[Any, Array]:
    """``(∂L/∂ham, ∂L/∂inputs)`` from :func:`rhel_lib.echo.echo_gradients`; ``epsilon``
    (optional, may be traced) overrides ``config.epsilon``."""
    params, static = eqx.partition(ham, eqx.is_inexact_array)
    final, record = forward_run(ham, inputs)
    cotangent = jax.grad(loss_fn)(record.phi_out)
    return echo_gradients(params, static, inputs, final, cotangent, config, epsilon=epsilon)


def open_echo_gradients(
    ham: Hamiltonian,
    inputs: Float[Array, "K H"],
    loss_fn,
    config: GradientConfig,
    *,
    epsilon=None,
    energy: str = "half-step",
) -> tuple[Any, Array]:
    """Like :func:`rhel_gradients`, but from :func:`echo_trajectories` and
    :func:`running_estimate` (the echo in the open); ``energy="endpoints"`` swaps ``H_{1/2}`` for
    the trapezoid of ``H`` at the integer states (see :func:`step_contributions`)."""
    _, record = forward_run(ham, inputs)
    cotangent = jax.grad(loss_fn)(record.phi_out)
    eps = config.epsilon if epsilon is None else epsilon
    run = echo_trajectories(
        ham,
        inputs,
        cotangent,
        epsilon=eps,
        loss_scale=config.loss_scale,
        estimator=config.estimator,
    )
    running, grads_u = running_estimate(ham, inputs, run, energy=energy)
    return jax.tree_util.tree_map(lambda x: x[-1], running), grads_u


@eqx.filter_jit
def error_vs_epsilon(
    ham: Hamiltonian,
    inputs: Float[Array, "K H"],
    loss_fn,
    epsilons: Float[Array, " E"],
    config: GradientConfig,
    *,
    energy: str | None = None,
) -> dict[str, Array]:
    """Relative error of RHEL against BPTT for each ``ε`` (one compile, vectorised).

    The RHEL gradient comes from :func:`rhel_lib.echo.echo_gradients` (``energy=None``) or from
    :func:`open_echo_gradients` with the given ``energy``. Returns ``{"parameters": (E,),
    "inputs": (E,), <leaf name>: (E,), ..., "bptt_norm": (), "bptt_input_norm": ()}``: the
    error of all parameters together, of the input gradient and of each parameter leaf, and the
    norms of the BPTT gradients.
    """
    ref, ref_u = bptt_gradients(ham, inputs, loss_fn)

    def one(eps):
        if energy is None:
            grads, grads_u = rhel_gradients(ham, inputs, loss_fn, config, epsilon=eps)
        else:
            grads, grads_u = open_echo_gradients(
                ham, inputs, loss_fn, config, epsilon=eps, energy=energy
            )
        out = {"parameters": relative_error(grads, ref), "inputs": relative_error(grads_u, ref_u)}
        out.update(leaf_relative_errors(grads, ref))
        return out

    out = jax.vmap(one)(jnp.asarray(epsilons, _float_dtype(ham, inputs)))
    out["bptt_norm"] = tree_norm(ref)
    out["bptt_input_norm"] = jnp.linalg.norm(ref_u)
    return out


@eqx.filter_jit
def compare_with_bptt(
    ham: Hamiltonian, inputs: Float[Array, "K H"], loss_fn, config: GradientConfig
) -> dict[str, Array]:
    """Norms of the BPTT and RHEL parameter gradients and the relative errors of RHEL."""
    ref, ref_u = bptt_gradients(ham, inputs, loss_fn)
    grads, grads_u = rhel_gradients(ham, inputs, loss_fn, config)
    return {
        "bptt_norm": tree_norm(ref),
        "rhel_norm": tree_norm(grads),
        "parameters": relative_error(grads, ref),
        "inputs": relative_error(grads_u, ref_u),
    }


@eqx.filter_jit
def retrace_error(ham: Hamiltonian, inputs: Float[Array, "K H"]) -> dict[str, Array]:
    """Flip the final state and run forwards with the inputs reversed: how far is the echo
    from the forward trajectory, time-reversed? (max abs. deviation of positions, momenta)

    Also returns ``"scale"``, the largest ``|φ|`` or ``|π|`` of the forward run.
    """
    final, forward = forward_run(ham, inputs)
    _, back = ham.trajectory(flip(final), inputs[::-1])
    phi_before = jnp.concatenate([jnp.zeros_like(final.phi)[None], forward.phi_out[:-1]])
    pi_before = jnp.concatenate([jnp.zeros_like(final.pi)[None], forward.pi_out[:-1]])
    return {
        "positions": jnp.max(jnp.abs(back.phi_out[::-1] - phi_before)),
        "momenta": jnp.max(jnp.abs(back.pi_out[::-1] + pi_before)),
        "scale": jnp.maximum(jnp.max(jnp.abs(forward.phi_out)), jnp.max(jnp.abs(forward.pi_out))),
    }


# ---------------------------------------------------------------------------------------------
# a non-reversible integrator, and small test problems
# ---------------------------------------------------------------------------------------------
class NonReversibleNonlinearHamiltonian(NonlinearHamiltonian):
    """The nonlinear unit's Hamiltonian integrated by a *non-reversible* leapfrog.

    The momentum update evaluates the force at the position ``φ_k`` that *enters* the step
    instead of the half-step position ``φ_h``::

        φ_h     = φ_k + ½ ∂_π T(π_k)
        π_{k+1} = π_k − ∂_φ V(φ_k, u_k)        (reversible leapfrog: ∂_φ V(φ_h, u_k))
        φ_{k+1} = φ_h + ½ ∂_π T(π_{k+1})

    Flipping the momenta and stepping again no longer retraces the path (the force is taken at
    ``φ_{k+1}`` on the way back), so the echo drifts away from the forward run and the RHEL
    estimate is biased by an amount that does not vanish as ``ε → 0``. BPTT (autodiff of this
    very map) is unaffected. For demonstration only.
    """

    def trajectory(self, state, inputs, kicks=None):
        def body(carry, xs):
            u, kick = xs
            phi, pi = carry
            if kick is not None:
                pi = pi + kick
            phi_half = phi + 0.5 * self.kinetic_grad(pi)
            pi_out = pi - self.potential_grad(phi, u)  # the defect: force at φ_k
            phi_out = phi_half + 0.5 * self.kinetic_grad(pi_out)
            record = _record(
                phi_in=phi, phi_half=phi_half, pi_in=pi, pi_out=pi_out, phi_out=phi_out
            )
            return PhaseState(phi_out, pi_out), record

        return lax.scan(body, state, (inputs, kicks))


def make_non_reversible(ham: NonlinearHamiltonian) -> NonReversibleNonlinearHamiltonian:
    """The same parameters, integrated by the non-reversible leapfrog."""
    fields = {f.name: getattr(ham, f.name) for f in dataclasses.fields(ham)}
    return NonReversibleNonlinearHamiltonian(**fields)


class LinearReadoutLoss(eqx.Module):
    """``L = ½ · mean_{k, o} (φ_{k+1} R − y*_k)²``: a regression on a fixed linear readout."""

    readout: Float[Array, "Q O"]
    target: Float[Array, "K O"]

    def __call__(self, positions: Float[Array, "K Q"]) -> Float[Array, ""]:
        return 0.5 * jnp.mean((positions @ self.readout - self.target) ** 2)

    def first(self, num_steps: int) -> LinearReadoutLoss:
        """The loss of the first ``num_steps`` steps."""
        return LinearReadoutLoss(self.readout, self.target[:num_steps])


def with_step(ham: Hamiltonian, step) -> Hamiltonian:
    """The same unit Hamiltonian with the time step ``Δ`` set to ``step`` (a scalar).

    Supports the nonlinear unit (``Δ = exp(log Δ)``, also its non-reversible variant), the
    linear unit (``Δ = sigmoid(Δ̂)`` for every oscillator, ``0 < Δ < 1``) and the toy
    :class:`rhel_lib.toy.CoupledOscillators`.
    """
    if isinstance(ham, NonlinearHamiltonian):
        value = jnp.log(jnp.asarray(step, ham.log_step.dtype))
        return eqx.tree_at(lambda h: h.log_step, ham, value)
    if isinstance(ham, LinearHamiltonian):
        value = jnp.asarray(step, ham.step_hat.dtype)
        logit = jnp.broadcast_to(jnp.log(value) - jnp.log1p(-value), ham.step_hat.shape)
        return eqx.tree_at(lambda h: h.step_hat, ham, logit)
    if hasattr(ham, "with_constants"):
        return ham.with_constants(step=step)
    raise TypeError(f"with_step does not know where {type(ham).__name__} keeps its step")


def make_unit_problem(
    kind: str = "nonlinear",
    *,
    step: float = 0.1,
    state_dim: int = 8,
    input_dim: int = 3,
    num_steps: int = 200,
    seed: int = 0,
    parallel: bool = False,
    dtype=None,
) -> tuple[Hamiltonian, Float[Array, "K H"], LinearReadoutLoss]:
    """``(hamiltonian, inputs, loss_fn)`` for gradient checks of a unit's Hamiltonian.

    ``kind="nonlinear"``: the NonlinHRU Hamiltonian (frozen ``Δ = step``); ``"linear"``: the
    real LinHRU Hamiltonian (trainable ``Δ``, initialised to ``step`` for every oscillator).
    Parameters are drawn like the units' reference initialisation (with numpy, to avoid
    compiling anything); the inputs are Gaussian and the loss regresses a Gaussian target on a
    fixed random readout of the positions. ``parallel`` selects the linear unit's parallel
    (associative) scan; the default sequential scan gives the same trajectory and compiles much
    faster for these small problems.
    """
    dtype = dtype or jnp.result_type(float)
    rng = np.random.default_rng(seed)  # numpy draws: no compilation for a small problem
    P, H = state_dim, input_dim

    def draw(fn, *args, **kwargs):
        return jnp.asarray(fn(*args, **kwargs), dtype)

    B = draw(rng.uniform, -(H**-0.5), H**-0.5, (P, H))
    if kind == "nonlinear":
        ham = NonlinearHamiltonian(
            W=draw(rng.uniform, 0.5, 1.0, P),
            c_hat=draw(rng.uniform, 0.0, 1.0, P),
            alpha=draw(rng.uniform, 0.1, 1.0),
            bias=jnp.zeros((P,), dtype),
            B=B,
            log_step=jnp.asarray(np.log(step), dtype),
        )
    elif kind == "linear":
        if not 0.0 < step < 1.0:
            raise ValueError(f"step must lie in (0, 1) for the linear unit; got {step!r}")
        ham = LinearHamiltonian(
            A_hat=draw(rng.uniform, 0.0, 1.0, P),
            step_hat=jnp.full((P,), np.log(step) - np.log1p(-step), dtype),
            B_real=B,
            B_imag=None,
            parallel=parallel,
        )
    else:
        raise ValueError(f"unknown kind {kind!r}; expected 'nonlinear' or 'linear'")
    inputs = draw(rng.standard_normal, (num_steps, H))
    readout = draw(rng.standard_normal, (P, H)) / np.sqrt(P)
    target = draw(rng.standard_normal, (num_steps, H))
    return ham, inputs, LinearReadoutLoss(readout, target)


# ---------------------------------------------------------------------------------------------
# the explorer: one vectorised computation over a grid
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EchoGrid:
    """What the echo explorer shows, for every ``(Δ, ε)`` of a grid (numpy arrays).

    Axes: ``D`` steps, ``E`` values of ``ε``, ``K`` sequence length; times run ``0 … K``.

    Attributes:
        epsilons: ``(E,)``; steps: ``(D,)``.
        forward: ``(D, K+1)`` position of the observed oscillator, forward run (time ``0…K``).
        echoes: ``(D, E, 2, K+1)`` the same for the two echoes, placed on the forward time axis
            (the echo visits time ``K`` first).
        difference: ``(D, E, K+1)`` ``(φ(σ₁) − φ(σ₂)) / ((σ₁ − σ₂) ε)`` of the observed oscillator.
        running: ``(D, E, K)`` running estimate of the tracked component over the echo steps.
        bptt: ``(D,)`` the BPTT value of that component.
        final_error: ``(D, E)`` relative error of the full RHEL parameter gradient vs BPTT.
        loss: ``(D,)``; target: ``(K,)``.
        component: name of the tracked gradient component, e.g. ``"coupling[0, 1]"``.
        anharmonicity, estimator: the settings of the grid.
    """

    epsilons: np.ndarray
    steps: np.ndarray
    forward: np.ndarray
    echoes: np.ndarray
    difference: np.ndarray
    running: np.ndarray
    bptt: np.ndarray
    final_error: np.ndarray
    loss: np.ndarray
    target: np.ndarray
    component: str
    anharmonicity: float
    estimator: str

    @property
    def num_steps(self) -> int:
        return self.target.shape[0]


@eqx.filter_jit
def _grid_arrays(task, epsilons, steps, leaf: str, index: tuple, loss_scale, estimator: str):
    observed = task.loss_fn.observed

    def per_step(step):
        t = task.replace(step=step)
        ham, inputs, loss_fn = t.hamiltonian, t.inputs, t.loss_fn
        final, fwd = forward_run(ham, inputs)
        cotangent = jax.grad(loss_fn)(fwd.phi_out)
        ref, _ = bptt_gradients(ham, inputs, loss_fn)
        ref_component = getattr(ref, leaf)[index]

        def per_eps(eps):
            run = echo_trajectories(
                ham, inputs, cotangent, epsilon=eps, loss_scale=loss_scale, estimator=estimator
            )
            running, _ = running_estimate(ham, inputs, run)
            final_estimate = jax.tree_util.tree_map(lambda x: x[-1], running)
            phi = run.echoes.phi_out[:, :, observed]  # (2, K), echo order
            on_time_axis = jnp.concatenate(
                [phi[:, ::-1], jnp.broadcast_to(final.phi[observed], (2, 1))], axis=1
            )
            diff = (on_time_axis[0] - on_time_axis[1]) / ((run.signs[0] - run.signs[1]) * eps)
            return {
                "echoes": on_time_axis,
                "difference": diff,
                "running": getattr(running, leaf)[(slice(None), *index)],
                "final_error": relative_error(final_estimate, ref),
            }

        out = jax.vmap(per_eps)(epsilons)
        start = jnp.zeros((1,), final.phi.dtype)
        out["forward"] = jnp.concatenate([start, fwd.phi_out[:, observed]])
        out["bptt"] = ref_component
        out["loss"] = loss_fn(fwd.phi_out)
        return out

    return jax.vmap(per_step)(steps)


def echo_grid(
    task,
    epsilons,
    steps=None,
    *,
    component: tuple[str, tuple[int, ...]] = ("coupling", (0, 1)),
    loss_scale: float | str = "auto",
    estimator: str = "centred",
) -> EchoGrid:
    """Forward run, echoes, their difference and the running estimate for a grid of ``(Δ, ε)``.

    Args:
        task: a :class:`rhel_lib.toy.ToyTask` (its sequence length and anharmonicity are used).
        epsilons: values of ``ε`` (all ``> 0``).
        steps: values of ``Δ`` (default: the task's own).
        component: ``(leaf name, index)`` of the gradient entry whose running estimate is
            tracked, e.g. ``("coupling", (0, 1))`` or ``("B", (0, 0))``.
        loss_scale, estimator: as in :class:`~rhel_lib.GradientConfig`.
    """
    ham = task.hamiltonian
    dtype = ham.coupling.dtype
    eps = np.asarray(epsilons, dtype=np.float64).ravel()
    if eps.size == 0 or np.any(eps <= 0) or not np.all(np.isfinite(eps)):
        raise ValueError("epsilons must be a non-empty list of finite values > 0")
    if steps is None:
        steps = [float(ham.step)]
    steps_np = np.asarray(steps, dtype=np.float64).ravel()
    if steps_np.size == 0 or np.any(steps_np <= 0):
        raise ValueError("steps must be a non-empty list of values > 0")
    leaf, index = component
    index = tuple(int(i) for i in index)
    estimator = GradientConfig("rhel", estimator=estimator).estimator
    out = _grid_arrays(
        task,
        jnp.asarray(eps, dtype),
        jnp.asarray(steps_np, dtype),
        leaf,
        index,
        loss_scale,
        estimator,
    )
    out = {k: np.asarray(v) for k, v in out.items()}
    return EchoGrid(
        epsilons=eps,
        steps=steps_np,
        forward=out["forward"],
        echoes=out["echoes"],
        difference=out["difference"],
        running=out["running"],
        bptt=out["bptt"],
        final_error=out["final_error"],
        loss=out["loss"],
        target=np.asarray(task.target),
        component=f"{_SYMBOLS.get(leaf, leaf)}[{', '.join(map(str, index))}]",
        anharmonicity=float(ham.anharmonicity),
        estimator=estimator,
    )


# ---------------------------------------------------------------------------------------------
# drawing (matplotlib and ipywidgets are imported lazily)
# ---------------------------------------------------------------------------------------------
def _limits(values: np.ndarray, pad: float = 0.08) -> tuple[float, float]:
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    return lo - pad * span, hi + pad * span


def _frame_limits(grid: EchoGrid, i_step=slice(None), i_eps=slice(None)) -> dict:
    """Axis limits that hold for every frame of the selection (an animation over ``ε`` fixes
    ``i_step``; one over ``Δ`` fixes ``i_eps``)."""
    running = np.concatenate([np.ravel(grid.running[i_step, i_eps]), np.ravel(grid.bptt[i_step])])
    errors = np.ravel(grid.final_error[i_step])
    errors = errors[np.isfinite(errors) & (errors > 0)]
    err_lo, err_hi = (errors.min(), errors.max()) if errors.size else (1e-16, 1.0)
    positions = np.concatenate([np.ravel(grid.echoes[i_step, i_eps]), grid.target])
    return {
        "position": _limits(positions),
        "difference": _limits(grid.difference[i_step, i_eps]),
        "running": _limits(running),
        "error": (err_lo / 3.0, err_hi * 3.0),
    }


class _EchoPanels:
    """The explorer's four panels; :meth:`show` moves them to another ``(Δ, ε)`` by updating the
    data of existing artists (cheap enough to render animation frames)."""

    def __init__(self, grid: EchoGrid, axes):
        from rhel_lib.plotting import PALETTE, method_color

        self.grid = grid
        self.axes = axes = np.asarray(axes).ravel()
        self.fig = axes[0].figure
        K = grid.num_steps
        self.time = np.arange(K + 1)
        centred = grid.estimator == "centred"
        lo_label = "−ε" if centred else "0 (retrace)"
        diff_label = "(φ₀⁺ − φ₀⁻) / 2ε (a.u.)" if centred else "(φ₀⁺ − φ₀) / ε (a.u.)"

        ax = axes[0]
        ax.plot(np.arange(1, K + 1), grid.target, color=PALETTE[7], lw=1.0, ls=":", label="target")
        (self.forward,) = ax.plot([], [], color="k", lw=2.6, alpha=0.3, label="forward")
        (self.echo_hi,) = ax.plot([], [], color=PALETTE[3], lw=1.2, label="echo +ε")
        (self.echo_lo,) = ax.plot(
            [], [], color=PALETTE[0], lw=1.2, ls="--", label=f"echo {lo_label}"
        )
        ax.set(
            xlim=(0, K),
            xlabel="time step k",
            ylabel="position φ₀ (a.u.)",
            title="Forward run and the two echoes",
        )
        ax.legend(loc="upper left", ncols=4, fontsize="x-small")

        ax = axes[1]
        (self.difference,) = ax.plot([], [], color=PALETTE[2])
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set(
            xlim=(0, K),
            xlabel="time step k",
            ylabel=diff_label,
            title="Difference of the echoes, per unit ε",
        )

        ax = axes[2]
        (self.running,) = ax.plot([], [], color=method_color("rhel"), label="RHEL, running sum")
        (self.bptt,) = ax.plot([0, K], [0, 0], color=method_color("bptt"), ls="--", label="BPTT")
        ax.set(
            xlim=(0, K),
            xlabel="echo step j",
            ylabel=f"∂L/∂{grid.component} (a.u.)",
            title="Gradient read off the echoes",
        )
        ax.legend(loc="best", fontsize="small")

        ax = axes[3]
        (self.errors,) = ax.plot([], [], "o-", color=method_color("rhel"), ms=3)
        (self.current,) = ax.plot([], [], "o", ms=10, mfc="none", mec="k", mew=1.5)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="nudging strength ε (a.u.)",
            ylabel="relative error vs BPTT",
            title="Error of the whole gradient",
        )
        eps = grid.epsilons
        ax.set_xlim(eps.min() / 1.5, eps.max() * 1.5)
        self.suptitle = self.fig.suptitle("", fontsize="medium")

    def show(self, i_step: int, i_eps: int, limits: dict | None = None) -> None:
        grid, time = self.grid, self.time
        limits = limits or _frame_limits(grid, i_step, i_eps)
        self.forward.set_data(time, grid.forward[i_step])
        self.echo_hi.set_data(time, grid.echoes[i_step, i_eps, 0])
        self.echo_lo.set_data(time, grid.echoes[i_step, i_eps, 1])
        self.difference.set_data(time, grid.difference[i_step, i_eps])
        self.running.set_data(np.arange(1, grid.num_steps + 1), grid.running[i_step, i_eps])
        self.bptt.set_ydata([grid.bptt[i_step]] * 2)
        errors = np.maximum(grid.final_error[i_step], 1e-300)
        self.errors.set_data(grid.epsilons, errors)
        self.current.set_data([grid.epsilons[i_eps]], [errors[i_eps]])
        for ax, key in zip(self.axes, ("position", "difference", "running", "error")):
            ax.set_ylim(limits[key])
        self.suptitle.set_text(
            f"ε = {grid.epsilons[i_eps]:.3g}, Δ = {grid.steps[i_step]:.3g}, "
            f"K = {grid.num_steps} steps, β = {grid.anharmonicity:.3g}: "
            f"relative error {grid.final_error[i_step, i_eps]:.1e}"
        )


def plot_echo_frame(
    grid: EchoGrid,
    i_step: int = 0,
    i_eps: int = 0,
    *,
    axes=None,
    limits: dict | None = None,
):
    """Draw the explorer's four panels for ``(Δ, ε) = (steps[i_step], epsilons[i_eps])``.

    Panels: the forward run and both echoes (observed oscillator) with the target; the echo
    difference per unit ``ε``; the running estimate of the tracked component against BPTT; the
    final relative error against ``ε`` (current ``ε`` marked). ``axes``: four axes to draw into
    (default: a new figure); ``limits``: y-limits per panel (default: fitted to this frame).
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(2, 2, figsize=(10, 6.4))
    panels = _EchoPanels(grid, axes)
    panels.show(i_step, i_eps, limits)
    return panels.fig


def echo_scrubber(
    grid: EchoGrid,
    *,
    over: str = "epsilon",
    index: int = 0,
    interval: int = 400,
    figsize=(10, 6.4),
    dpi: int = 72,
) -> str:
    """A kernel-free animation (``FuncAnimation(...).to_jshtml()``) of :func:`plot_echo_frame`.

    ``over="epsilon"`` steps through ``grid.epsilons`` at ``Δ = steps[index]``;
    ``over="step"`` steps through ``grid.steps`` at ``ε = epsilons[index]``. The axes keep the
    same limits in every frame. Returns HTML.
    """
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    if over not in ("epsilon", "step"):
        raise ValueError(f"over must be 'epsilon' or 'step'; got {over!r}")
    fig, axes = plt.subplots(2, 2, figsize=figsize, dpi=dpi)
    panels = _EchoPanels(grid, axes)
    if over == "epsilon":
        frames, limits = len(grid.epsilons), _frame_limits(grid, index, slice(None))

        def frame(i):
            return index, i

    else:
        frames, limits = len(grid.steps), _frame_limits(grid, slice(None), index)

        def frame(i):
            return i, index

    panels.show(*frame(0), limits)
    fig.canvas.draw()  # lay the figure out once, then keep that layout for every frame
    fig.set_layout_engine("none")
    anim = FuncAnimation(
        fig,
        lambda i: panels.show(*frame(i), limits),
        frames=frames,
        interval=interval,
        blit=False,
    )
    # frames are saved with the savefig settings: keep them small and all of one size
    with plt.rc_context({"savefig.dpi": dpi, "savefig.bbox": "standard"}):
        html = anim.to_jshtml(default_mode="once")
    plt.close(fig)
    return html


def echo_explorer(
    task,
    *,
    epsilons,
    steps,
    lengths,
    anharmonicities,
    component: tuple[str, tuple[int, ...]] = ("coupling", (0, 1)),
    defaults: dict | None = None,
    precomputed: dict | None = None,
):
    """ipywidgets controls (ε, Δ, sequence length, anharmonicity β) over :func:`echo_grid`.

    Changing ``ε`` or ``Δ`` redraws from the current grid; changing the length or ``β``
    computes a new grid (cached). ``task`` must be at least ``max(lengths)`` steps long; a
    shorter sequence uses its first steps. ``precomputed`` maps ``(length, β)`` to grids
    already computed with the same ``epsilons`` and ``steps``. Returns the widget box.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    defaults = defaults or {}
    eps_options = [(f"{e:.3g}", i) for i, e in enumerate(epsilons)]
    controls = {
        "eps": widgets.SelectionSlider(
            options=eps_options,
            value=defaults.get("eps", len(epsilons) // 2),
            description="ε",
            continuous_update=False,
        ),
        "step": widgets.Dropdown(
            options=[(f"{s:g}", i) for i, s in enumerate(steps)],
            value=defaults.get("step", 0),
            description="Δ",
        ),
        "length": widgets.Dropdown(
            options=[(str(k), k) for k in lengths],
            value=defaults.get("length", lengths[-1]),
            description="K (steps)",
        ),
        "beta": widgets.Dropdown(
            options=[(f"{b:g}" + (" (harmonic)" if b == 0 else ""), b) for b in anharmonicities],
            value=defaults.get("beta", anharmonicities[-1]),
            description="β",
        ),
    }
    figure_out = widgets.Output()
    cache: dict[tuple[int, float], EchoGrid] = dict(precomputed or {})

    def current_grid() -> EchoGrid:
        key = (controls["length"].value, controls["beta"].value)
        if key not in cache:
            sub = task.first(key[0]).replace(anharmonicity=key[1])
            cache[key] = echo_grid(sub, epsilons, steps, component=component)
        return cache[key]

    def draw():
        fig = plot_echo_frame(current_grid(), controls["step"].value, controls["eps"].value)
        display(fig)
        plt.close(fig)

    def redraw(_change=None):
        with figure_out:
            figure_out.clear_output(wait=True)
            draw()

    for control in controls.values():
        control.observe(redraw, names="value")
    with figure_out:  # the first figure: also what a static page shows
        draw()
    row = widgets.HBox([controls["eps"], controls["step"]])
    row2 = widgets.HBox([controls["length"], controls["beta"]])
    return widgets.VBox([row, row2, figure_out])
