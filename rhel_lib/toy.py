"""A toy for the book: a chain of coupled oscillators that must track a target signal.

:class:`CoupledOscillators` is the smallest interesting Hamiltonian recurrent network: ``N``
oscillators with unit masses, a symmetric stiffness (coupling) matrix ``K``, an input signal
``u_k`` that pushes on them through ``B``, and an optional log-cosh anharmonicity of strength
``β``. With the step ``Δ`` folded in::

    H_Δ(φ, π; u) = Δ [ ½‖π‖² + ½ φᵀ K φ − φᵀ B u + β Σ_i log cosh φ_i ]

``K`` (symmetrised as ``½(K + Kᵀ)``) and ``B`` are the trained parameters; ``Δ`` and ``β`` are
array fields too (so that a grid over them can be vectorised) but no gradient flows into them.
With ``β = 0`` the oscillators are harmonic: the leapfrog map is affine and the centred RHEL
estimator is exact at any ``ε``.

:func:`make_toy_task` draws a network, an input signal and a target: the position of one
oscillator (``observed``) of a *teacher* network of the same kind, so that the target is
reachable. The loss (:class:`TrackingLoss`) is ``L = ½ · mean_k (φ_{k, observed} − y*_k)²``
over the positions ``φ_1 … φ_K``.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, PRNGKeyArray

from rhel_lib._validation import check_positive, check_positive_int
from rhel_lib.echo import GradientConfig, integrate
from rhel_lib.hamiltonian import Hamiltonian
from rhel_lib.units.nonlinear import log_cosh

__all__ = [
    "CoupledOscillators",
    "ToyTask",
    "TrackingLoss",
    "chain_stiffness",
    "make_toy_task",
    "toy_inputs",
]


class CoupledOscillators(Hamiltonian):
    """``N`` coupled, driven oscillators (see the module docstring for ``H_Δ``).

    Attributes:
        coupling: ``(N, N)`` stiffness matrix ``K`` (only its symmetric part acts).
        B: ``(N, H)`` input matrix.
        step: the time step ``Δ`` (scalar array; frozen).
        anharmonicity: ``β ≥ 0`` of the log-cosh term (scalar array; frozen).
    """

    coupling: Float[Array, "N N"]
    B: Float[Array, "N H"]
    step: Float[Array, ""]
    anharmonicity: Float[Array, ""]

    @property
    def state_dim(self) -> int:
        return self.coupling.shape[0]

    @property
    def stiffness(self) -> Float[Array, "N N"]:
        """The symmetric stiffness matrix ``½(K + Kᵀ)`` that acts on the positions."""
        return 0.5 * (self.coupling + self.coupling.T)

    def _constants(self):
        return lax.stop_gradient(self.step), lax.stop_gradient(self.anharmonicity)

    def kinetic(self, pi):
        step, _ = self._constants()
        return step * 0.5 * jnp.sum(pi**2)

    def potential(self, phi, u):
        step, beta = self._constants()
        spring = 0.5 * phi @ self.stiffness @ phi
        drive = phi @ (self.B @ u)
        return step * (spring - drive + beta * jnp.sum(log_cosh(phi)))

    def kinetic_grad(self, pi):
        step, _ = self._constants()
        return step * pi

    def potential_grad(self, phi, u):
        step, beta = self._constants()
        return step * (self.stiffness @ phi - self.B @ u + beta * jnp.tanh(phi))

    def with_constants(self, step=None, anharmonicity=None) -> CoupledOscillators:
        """The same network with another ``Δ`` and/or ``β`` (traced values are fine)."""
        new = self
        if step is not None:
            new = eqx.tree_at(lambda h: h.step, new, jnp.asarray(step, self.step.dtype))
        if anharmonicity is not None:
            value = jnp.asarray(anharmonicity, self.anharmonicity.dtype)
            new = eqx.tree_at(lambda h: h.anharmonicity, new, value)
        return new


def chain_stiffness(frequencies: Float[Array, " N"], spring: float) -> Float[Array, "N N"]:
    """Stiffness of a chain: on-site ``ω_i²`` and springs ``κ`` between neighbours.

    ``½ φᵀ K φ = ½ Σ_i ω_i² φ_i² + ½ κ Σ_i (φ_i − φ_{i+1})²``; positive definite.
    """
    n = frequencies.shape[0]
    neighbours = jnp.eye(n, k=1) + jnp.eye(n, k=-1)
    degree = jnp.sum(neighbours, axis=1)
    return jnp.diag(frequencies**2 + spring * degree) - spring * neighbours


def _random_network(key, num_oscillators, input_dim, spring, step, anharmonicity, dtype):
    k_freq, k_b = jax.random.split(key)
    frequencies = jax.random.uniform(k_freq, (num_oscillators,), dtype, minval=0.6, maxval=1.4)
    B = jax.random.normal(k_b, (num_oscillators, input_dim), dtype) / math.sqrt(input_dim)
    return CoupledOscillators(
        coupling=chain_stiffness(frequencies, spring).astype(dtype),
        B=B,
        step=jnp.asarray(step, dtype),
        anharmonicity=jnp.asarray(anharmonicity, dtype),
    )


def toy_inputs(
    key: PRNGKeyArray, num_steps: int, input_dim: int, step: float, dtype=None
) -> Float[Array, "K H"]:
    """A smooth input signal: per channel, two sinusoids of random frequency (0.1 to 0.6 in
    units of 1/time) and phase, sampled at ``t_k = k Δ``."""
    dtype = dtype or jnp.result_type(float)
    k_f, k_p = jax.random.split(key)
    freqs = jax.random.uniform(k_f, (2, input_dim), dtype, minval=0.1, maxval=0.6)
    phases = jax.random.uniform(k_p, (2, input_dim), dtype, maxval=2 * math.pi)
    t = step * jnp.arange(num_steps, dtype=dtype)[:, None, None]
    return jnp.sum(jnp.sin(2 * math.pi * freqs * t + phases), axis=1) / math.sqrt(2.0)


class TrackingLoss(eqx.Module):
    """``L(φ_{1..K}) = ½ · mean_k (φ_{k, observed} − y*_k)²`` (a callable pytree: jit-friendly)."""

    target: Float[Array, " K"]
    observed: int = eqx.field(static=True, default=0)

    def __call__(self, positions: Float[Array, "K N"]) -> Float[Array, ""]:
        return 0.5 * jnp.mean((positions[:, self.observed] - self.target) ** 2)


class ToyTask(eqx.Module):
    """A network, its input signal and the loss of the tracking task."""

    hamiltonian: CoupledOscillators
    inputs: Float[Array, "K H"]
    loss_fn: TrackingLoss

    @property
    def target(self) -> Float[Array, " K"]:
        return self.loss_fn.target

    @property
    def observed(self) -> int:
        return self.loss_fn.observed

    @property
    def num_steps(self) -> int:
        return self.inputs.shape[0]

    def loss(self, hamiltonian=None, inputs=None, config: GradientConfig | None = None):
        """The loss of ``hamiltonian`` (default: the task's) driven by ``inputs``; the gradient
        method is ``config`` (default BPTT)."""
        ham = self.hamiltonian if hamiltonian is None else hamiltonian
        u = self.inputs if inputs is None else inputs
        return self.loss_fn(integrate(ham, u, config or GradientConfig("bptt")))

    def gradients(self, config: GradientConfig):
        """``(∂L/∂hamiltonian, ∂L/∂inputs)`` with the gradient method of ``config``."""
        return _task_gradients(self, config)

    def replace(self, **changes) -> ToyTask:
        """The task with ``step``/``anharmonicity`` changed in its network (the input and
        target sequences stay as they are)."""
        return eqx.tree_at(
            lambda t: t.hamiltonian, self, self.hamiltonian.with_constants(**changes)
        )

    def first(self, num_steps: int) -> ToyTask:
        """The task restricted to its first ``num_steps`` steps."""
        check_positive_int("num_steps", num_steps)
        if num_steps > self.num_steps:
            raise ValueError(f"the task has {self.num_steps} steps; cannot take {num_steps}")
        loss_fn = TrackingLoss(self.target[:num_steps], self.observed)
        return ToyTask(self.hamiltonian, self.inputs[:num_steps], loss_fn)


@eqx.filter_jit
def _task_gradients(task: ToyTask, config: GradientConfig):
    def loss(ham, u):
        return task.loss_fn(integrate(ham, u, config))

    return jax.grad(loss, argnums=(0, 1))(task.hamiltonian, task.inputs)


def make_toy_task(
    num_oscillators: int = 4,
    input_dim: int = 2,
    num_steps: int = 200,
    *,
    step: float = 0.2,
    anharmonicity: float = 0.0,
    spring: float = 0.3,
    observed: int = 0,
    seed: int = 0,
    dtype=None,
) -> ToyTask:
    """Draw a toy tracking task.

    Args:
        num_oscillators: ``N``.
        input_dim: ``H``, channels of the input signal.
        num_steps: ``K``, length of the sequence.
        step: ``Δ``.
        anharmonicity: ``β`` (0: harmonic oscillators).
        spring: ``κ``, the nearest-neighbour coupling of the initial chain.
        observed: index of the oscillator whose position must follow the target.
        seed: seed of the network, the teacher network and the input signal.
        dtype: floating dtype (default: JAX's default float; float64 when x64 is enabled).
    """
    check_positive_int("num_oscillators", num_oscillators)
    check_positive_int("input_dim", input_dim)
    check_positive_int("num_steps", num_steps)
    check_positive("step", step)
    if anharmonicity < 0:
        raise ValueError(f"anharmonicity must be ≥ 0; got {anharmonicity!r}")
    if not 0 <= observed < num_oscillators:
        raise ValueError(
            f"observed must index an oscillator in [0, {num_oscillators}); got {observed!r}"
        )
    dtype = dtype or jnp.result_type(float)
    k_net, k_teacher, k_in = jax.random.split(jax.random.PRNGKey(seed), 3)
    student = _random_network(k_net, num_oscillators, input_dim, spring, step, anharmonicity, dtype)
    teacher = _random_network(
        k_teacher, num_oscillators, input_dim, spring, step, anharmonicity, dtype
    )
    inputs = toy_inputs(k_in, num_steps, input_dim, step, dtype)
    target = integrate(teacher, inputs, GradientConfig("bptt"))[:, observed]
    return ToyTask(student, inputs, TrackingLoss(target, observed))
