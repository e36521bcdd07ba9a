"""HopfieldHRU: a Hopfield-inspired Hamiltonian RNN with symmetric couplings (SPEC §6).

``H_Δ(φ, π) = Δ [½‖π‖² + (α/2)‖φ‖² + (1/2β) ρ(φ)ᵀ W ρ(φ) + bᵀρ(φ) + (B u)ᵀ ρ(φ)]``

with ``W = (M + Mᵀ)/2`` (``M`` unconstrained: ``W`` is symmetric by construction, whatever the
optimiser does to ``M``), ``ρ`` = ``tanh`` (default) or ``sigmoid``, ``α = exp(log α)`` and
``β = exp(log β)`` (kept positive, so the potential stays bounded below), bias ``b ∈ ℝᴺ`` and input
map ``B ∈ ℝ^{N×H}`` (``N`` neurons, ``H`` input channels). The step ``Δ = exp(log Δ)`` is folded
into ``H`` as for the other units (frozen by default). The force is, in closed form,

``∂V/∂φ = Δ [α φ + ρ'(φ) ⊙ (W ρ(φ)/β + b + B u)]``

so the leapfrog, BPTT and the generic RHEL echo of :mod:`rhel_lib.echo` need no
unit-specific code. Because ``∂H/∂M = (Δ/2β) ρ(φ) ρ(φ)ᵀ``, RHEL becomes a contrastive Hebbian
rule for the couplings; :mod:`rhel_lib.hebbian` computes it with local accumulators.

Readout (per time step): ``y_k = C φ_{k+1} + d`` — affine in the positions, as the generic echo
requires of a unit's readout.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from rhel_lib._validation import check_choice, check_positive, check_positive_int
from rhel_lib.echo import GradientConfig
from rhel_lib.hamiltonian import Hamiltonian
from rhel_lib.units.base import HamiltonianUnit, uniform

NONLINEARITIES = ("tanh", "sigmoid")


def activation(name: str, x: Array) -> tuple[Array, Array, Array]:
    """``(ρ(x), ρ'(x), ρ''(x))`` of the nonlinearity ``name`` in closed form."""
    if name == "tanh":
        r = jnp.tanh(x)
        r1 = 1.0 - r * r
        return r, r1, -2.0 * r * r1
    if name == "sigmoid":
        r = jax.nn.sigmoid(x)
        r1 = r * (1.0 - r)
        return r, r1, r1 * (1.0 - 2.0 * r)
    raise ValueError(f"unknown nonlinearity {name!r}; expected one of {NONLINEARITIES}")


class HopfieldHamiltonian(Hamiltonian):
    """``H_Δ`` of :mod:`rhel_lib.units.hopfield`.

    Parameters (inexact-array leaves): ``M (N, N)`` (``W = (M + Mᵀ)/2``), ``bias (N,)``,
    ``B (N, H)``, ``log_alpha ()``, ``log_beta ()``, ``log_step ()`` (no gradient unless
    ``train_step``).
    """

    M: Float[Array, "N N"]
    bias: Float[Array, " N"]
    B: Float[Array, "N H"]
    log_alpha: Float[Array, ""]
    log_beta: Float[Array, ""]
    log_step: Float[Array, ""]
    nonlinearity: str = eqx.field(static=True, default="tanh")
    train_step: bool = eqx.field(static=True, default=False)

    @property
    def state_dim(self) -> int:
        return self.M.shape[0]

    @property
    def input_dim(self) -> int:
        return self.B.shape[1]

    @property
    def W(self) -> Float[Array, "N N"]:
        """The symmetric coupling ``W = (M + Mᵀ)/2``."""
        return 0.5 * (self.M + self.M.T)

    @property
    def alpha(self) -> Float[Array, ""]:
        return jnp.exp(self.log_alpha)

    @property
    def beta(self) -> Float[Array, ""]:
        return jnp.exp(self.log_beta)

    @property
    def step(self) -> Float[Array, ""]:
        """``Δ`` (with ``stop_gradient`` when the step is frozen)."""
        log_step = self.log_step if self.train_step else jax.lax.stop_gradient(self.log_step)
        return jnp.exp(log_step)

    def rho(self, phi: Array) -> Array:
        """``ρ(φ)``."""
        return activation(self.nonlinearity, phi)[0]

    def field(self, r: Float[Array, " N"], u: Float[Array, " H"]) -> Float[Array, " N"]:
        """``W ρ/β + b + B u`` (the drive that multiplies ``ρ'(φ)`` in the force)."""
        return self.W @ r / self.beta + self.bias + self.B @ u

    def kinetic(self, pi):
        return 0.5 * self.step * jnp.sum(pi**2)

    def potential(self, phi, u):
        r = self.rho(phi)
        quadratic = 0.5 * self.alpha * jnp.sum(phi**2)
        coupling = 0.5 * (r @ self.W @ r) / self.beta
        return self.step * (quadratic + coupling + r @ (self.bias + self.B @ u))

    def kinetic_grad(self, pi):
        return self.step * pi

    def potential_grad(self, phi, u):
        r, r1, _ = activation(self.nonlinearity, phi)
        return self.step * (self.alpha * phi + r1 * self.field(r, u))


def hopfield_param_count(input_dim: int, state_dim: int, output_dim: int) -> int:
    """Trainable parameters of a :class:`HopfieldHRU` (``M`` counted in full: ``N²``)."""
    N, H, O = state_dim, input_dim, output_dim
    return N * N + N + N * H + 3 + O * N + O


class HopfieldHRU(HamiltonianUnit):
    """Hopfield Hamiltonian recurrent unit: ``(K, H)`` inputs to ``(K, output_dim)`` outputs."""

    hamiltonian: HopfieldHamiltonian
    C: Float[Array, "O N"]
    d: Float[Array, " O"]
    gradient_config: GradientConfig = eqx.field(static=True)

    def __init__(
        self,
        input_dim: int,
        state_dim: int,
        output_dim: int,
        *,
        nonlinearity: str = "tanh",
        step: float = 0.1,
        train_step: bool = False,
        alpha: float = 1.0,
        beta: float = 1.0,
        coupling_scale: float = 1.0,
        gradient: str = "bptt",
        epsilon: float = 0.1,
        loss_scale: float | str = "auto",
        estimator: str = "centred",
        chunk_size: int | None = 1024,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        """Initialisation: ``M ~ U(±coupling_scale/√N)``, ``b = 0``, ``B ~ U(±1/√H)``,
        ``C ~ U(±1/√N)``, ``d = 0``, ``α``, ``β`` and ``Δ`` as given.

        Args:
            input_dim: ``H``, input channels.
            state_dim: ``N``, neurons.
            output_dim: readout channels.
            nonlinearity: ``"tanh"`` or ``"sigmoid"``.
            step: ``Δ > 0``.
            train_step: whether ``Δ`` (through ``log Δ``) receives gradients.
            alpha, beta: initial ``α > 0``, ``β > 0``.
            coupling_scale: scale of the initial ``M``.
            gradient, epsilon, loss_scale, estimator, chunk_size: see
                :class:`~rhel_lib.echo.GradientConfig`.
            dtype: floating dtype of every parameter.
            key: PRNG key.
        """
        check_positive_int("input_dim", input_dim)
        check_positive_int("state_dim", state_dim)
        check_positive_int("output_dim", output_dim)
        check_positive("step", step)
        check_positive("alpha", alpha)
        check_positive("beta", beta)
        check_positive("coupling_scale", coupling_scale)
        check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        self.gradient_config = GradientConfig(gradient, epsilon, loss_scale, estimator, chunk_size)
        k_m, k_b, k_c = jax.random.split(key, 3)
        N, H, O = state_dim, input_dim, output_dim
        self.hamiltonian = HopfieldHamiltonian(
            M=uniform(k_m, (N, N), coupling_scale * N**-0.5, dtype),
            bias=jnp.zeros((N,), dtype),
            B=uniform(k_b, (N, H), H**-0.5, dtype),
            log_alpha=jnp.asarray(math.log(alpha), dtype),
            log_beta=jnp.asarray(math.log(beta), dtype),
            log_step=jnp.asarray(math.log(step), dtype),
            nonlinearity=nonlinearity,
            train_step=train_step,
        )
        self.C = uniform(k_c, (O, N), N**-0.5, dtype)
        self.d = jnp.zeros((O,), dtype)

    @property
    def input_dim(self) -> int:
        return self.hamiltonian.input_dim

    @property
    def state_dim(self) -> int:
        return self.hamiltonian.state_dim

    @property
    def output_dim(self) -> int:
        return self.d.shape[0]

    def readout(self, phi: Float[Array, " N"], u: Float[Array, " H"]) -> Float[Array, " O"]:
        """``y = C φ + d`` for one step (also accepts a leading time axis)."""
        return phi @ self.C.T + self.d
