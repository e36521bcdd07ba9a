"""LinHRU: a bank of independent linear oscillators (after LinOSS), trained by BPTT or RHEL.

``H_Δ = Σ_i Δ_i (½π_i² + ½A_i φ_i² − φ_i (B u)_i)`` with ``A = ReLU(Â) ≥ 0`` and
``Δ = sigmoid(Δ̂)``; readout ``y = Re(C φ) + D ⊙ u``. With ``complex_ssm=True``, ``B`` and ``C`` are
complex: since ``A`` and ``Δ`` are real, the real and imaginary parts of ``φ`` are two independent
real oscillator banks (state dimension ``Q = 2P``) driven by ``Re(B) u`` and ``Im(B) u``, and
``Re(C φ) = Re(C) φ_re − Im(C) φ_im``.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from rhel_lib._validation import check_positive_int
from rhel_lib.echo import GradientConfig
from rhel_lib.hamiltonian import Hamiltonian, PhaseState, StepRecord
from rhel_lib.integrators import linear_oscillator_trajectory, sequential_trajectory
from rhel_lib.units.base import HamiltonianUnit, uniform


class LinearHamiltonian(Hamiltonian):
    """``H_Δ`` of :mod:`rhel_lib.units.linear`; parameters ``Â (P,)``, ``Δ̂ (P,)``, ``B (P, H)``."""

    is_quadratic: ClassVar[bool] = True

    A_hat: Float[Array, " P"]
    step_hat: Float[Array, " P"]
    B_real: Float[Array, "P H"]
    B_imag: Float[Array, "P H"] | None
    train_step: bool = eqx.field(static=True, default=True)
    parallel: bool = eqx.field(static=True, default=True)

    @property
    def state_dim(self) -> int:
        return self.A_hat.shape[0] * (1 if self.B_imag is None else 2)

    def _tile(self, x: Float[Array, " P"]) -> Float[Array, " Q"]:
        return x if self.B_imag is None else jnp.concatenate([x, x])

    @property
    def stiffness(self) -> Float[Array, " Q"]:
        """``A = ReLU(Â)``, per state dimension."""
        return self._tile(jax.nn.relu(self.A_hat))

    @property
    def step(self) -> Float[Array, " Q"]:
        """``Δ = sigmoid(Δ̂)``, per state dimension (no gradient when frozen)."""
        step_hat = self.step_hat if self.train_step else jax.lax.stop_gradient(self.step_hat)
        return self._tile(jax.nn.sigmoid(step_hat))

    def forcing(self, u: Float[Array, "... H"]) -> Float[Array, "... Q"]:
        """``B u`` (real and imaginary banks stacked)."""
        force = u @ self.B_real.T
        if self.B_imag is not None:
            force = jnp.concatenate([force, u @ self.B_imag.T], axis=-1)
        return force

    def kinetic(self, pi):
        return 0.5 * jnp.sum(self.step * pi**2)

    def potential(self, phi, u):
        return jnp.sum(self.step * (0.5 * self.stiffness * phi**2 - phi * self.forcing(u)))

    def kinetic_grad(self, pi):
        return self.step * pi

    def potential_grad(self, phi, u):
        return self.step * (self.stiffness * phi - self.forcing(u))

    def trajectory(
        self,
        state: PhaseState,
        inputs: Float[Array, "K H"],
        kicks: Float[Array, "K Q"] | None = None,
    ) -> tuple[PhaseState, StepRecord]:
        """Parallel associative scan (``parallel=True``) or sequential ``lax.scan``."""
        if not self.parallel:
            return sequential_trajectory(self, state, inputs, kicks)
        return linear_oscillator_trajectory(
            self.stiffness, self.step, self.forcing(inputs), state, kicks
        )


def _step_logits(step, shape, key, dtype) -> Array:
    """``Δ̂`` such that ``sigmoid(Δ̂)`` is ``step`` (a float) or uniform in ``step = (lo, hi)``."""
    if step is None:
        return jax.random.uniform(key, shape, dtype)
    low, high = (step, step) if isinstance(step, (int, float)) else step
    if not 0.0 < low <= high < 1.0:
        raise ValueError(f"step must lie in (0, 1) for LinHRU (Δ = sigmoid(Δ̂)); got {step!r}")
    values = jax.random.uniform(key, shape, dtype, minval=low, maxval=high)
    return jnp.log(values) - jnp.log1p(-values)


class LinHRU(HamiltonianUnit):
    """Linear Hamiltonian recurrent unit; maps ``(K, H)`` inputs to ``(K, H)`` outputs."""

    hamiltonian: LinearHamiltonian
    C_real: Float[Array, "H P"]
    C_imag: Float[Array, "H P"] | None
    D: Float[Array, " H"]
    gradient_config: GradientConfig = eqx.field(static=True)

    def __init__(
        self,
        input_dim: int,
        state_dim: int,
        *,
        complex_ssm: bool = True,
        train_step: bool = True,
        step: float | tuple[float, float] | None = None,
        parallel: bool = True,
        gradient: str = "bptt",
        epsilon: float = 0.1,
        loss_scale: float | str = "auto",
        estimator: str = "centred",
        chunk_size: int | None = 1024,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        """Reference initialisation: ``Â, Δ̂ ~ U(0, 1)``, ``B, C ~ U(±1/√fan_in)``, ``D ~ N(0, 1)``.

        Args:
            input_dim: ``H``, channels in and out.
            state_dim: ``P``, oscillators per bank.
            complex_ssm: complex ``B``, ``C`` (two real banks).
            train_step: whether ``Δ̂`` receives gradients.
            step: initial ``Δ`` (a float, or a range ``(lo, hi)``); default ``sigmoid(U(0, 1))``.
            parallel: parallel associative scan instead of a sequential ``lax.scan``.
            gradient, epsilon, loss_scale, estimator, chunk_size: see
                :class:`~rhel_lib.echo.GradientConfig`.
            dtype: floating dtype of every parameter.
            key: PRNG key.
        """
        check_positive_int("input_dim", input_dim)
        check_positive_int("state_dim", state_dim)
        self.gradient_config = GradientConfig(gradient, epsilon, loss_scale, estimator, chunk_size)
        k_a, k_s, k_br, k_bi, k_cr, k_ci, k_d = jax.random.split(key, 7)
        P, H = state_dim, input_dim
        self.hamiltonian = LinearHamiltonian(
            A_hat=jax.random.uniform(k_a, (P,), dtype),
            step_hat=_step_logits(step, (P,), k_s, dtype),
            B_real=uniform(k_br, (P, H), H**-0.5, dtype),
            B_imag=uniform(k_bi, (P, H), H**-0.5, dtype) if complex_ssm else None,
            train_step=train_step,
            parallel=parallel,
        )
        self.C_real = uniform(k_cr, (H, P), P**-0.5, dtype)
        self.C_imag = uniform(k_ci, (H, P), P**-0.5, dtype) if complex_ssm else None
        self.D = jax.random.normal(k_d, (H,), dtype)

    @property
    def input_dim(self) -> int:
        return self.D.shape[0]

    def readout(self, phi, u):
        P = self.C_real.shape[1]
        out = self.C_real @ phi[:P]
        if self.C_imag is not None:
            out = out - self.C_imag @ phi[P:]
        return out + self.D * u
