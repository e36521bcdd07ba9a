"""NonlinHRU: independent nonlinear oscillators (after UnICORNN), trained by BPTT or RHEL.

``H_Δ = Δ [½‖π‖² + ½α‖φ‖² + Σ_i c_i log cosh(W_i φ_i + (B u)_i + b_i) / W_i]`` with diagonal
``W``, ``c = sigmoid(ĉ)`` and scalar ``α``; readout ``y = C φ + D ⊙ u``. The leapfrog evaluates
``∂V/∂φ`` at the half-step position, which keeps the map exactly reversible for any ``Δ`` (the
public reference evaluates it at ``φ_k``, which is not reversible and biases RHEL).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from rhel_lib._validation import check_positive, check_positive_int
from rhel_lib.echo import GradientConfig
from rhel_lib.hamiltonian import Hamiltonian
from rhel_lib.units.base import HamiltonianUnit, uniform


def log_cosh(x: Array) -> Array:
    """``log cosh x`` without overflow for large ``|x|``."""
    return jnp.logaddexp(x, -x) - math.log(2.0)


class NonlinearHamiltonian(Hamiltonian):
    """``H_Δ`` of :mod:`rhel_lib.units.nonlinear`; ``Δ = exp(log_step)``."""

    W: Float[Array, " P"]
    c_hat: Float[Array, " P"]
    alpha: Float[Array, ""]
    bias: Float[Array, " P"]
    B: Float[Array, "P H"]
    log_step: Float[Array, ""]
    train_step: bool = eqx.field(static=True, default=False)

    @property
    def state_dim(self) -> int:
        return self.W.shape[0]

    @property
    def step(self) -> Float[Array, ""]:
        log_step = self.log_step if self.train_step else jax.lax.stop_gradient(self.log_step)
        return jnp.exp(log_step)

    def _preactivation(self, phi, u):
        return self.W * phi + self.B @ u + self.bias

    def kinetic(self, pi):
        return 0.5 * self.step * jnp.sum(pi**2)

    def potential(self, phi, u):
        c = jax.nn.sigmoid(self.c_hat)
        spring = 0.5 * self.alpha * jnp.sum(phi**2)
        return self.step * (spring + jnp.sum(c * log_cosh(self._preactivation(phi, u)) / self.W))

    def kinetic_grad(self, pi):
        return self.step * pi

    def potential_grad(self, phi, u):
        c = jax.nn.sigmoid(self.c_hat)
        return self.step * (self.alpha * phi + c * jnp.tanh(self._preactivation(phi, u)))


class NonlinHRU(HamiltonianUnit):
    """Nonlinear Hamiltonian recurrent unit; maps ``(K, H)`` inputs to ``(K, H)`` outputs."""

    hamiltonian: NonlinearHamiltonian
    C: Float[Array, "H P"]
    D: Float[Array, " H"]
    gradient_config: GradientConfig = eqx.field(static=True)

    def __init__(
        self,
        input_dim: int,
        state_dim: int,
        *,
        step: float = 1e-4,
        train_step: bool = False,
        gradient: str = "bptt",
        epsilon: float = 0.1,
        loss_scale: float | str = "auto",
        estimator: str = "centred",
        chunk_size: int | None = 64,
        dtype=jnp.float32,
        key: PRNGKeyArray,
    ):
        """Reference initialisation: ``W ~ U(0.5, 1)``, ``ĉ ~ U(0, 1)``, ``α ~ U(0.1, 1)``,
        ``b = 0``, ``B, C ~ U(±1/√fan_in)``, ``D ~ N(0, 1)``.

        Args:
            input_dim: ``H``, channels in and out.
            state_dim: ``P``, number of oscillators.
            step: the integration step ``Δ > 0`` (reference: ``1e-4``).
            train_step: whether ``Δ`` (through ``log Δ``) receives gradients.
            gradient, epsilon, loss_scale, estimator, chunk_size: see
                :class:`~rhel_lib.echo.GradientConfig`.
            dtype: floating dtype of every parameter.
            key: PRNG key.
        """
        check_positive_int("input_dim", input_dim)
        check_positive_int("state_dim", state_dim)
        check_positive("step", step)
        self.gradient_config = GradientConfig(gradient, epsilon, loss_scale, estimator, chunk_size)
        k_w, k_c, k_a, k_b, k_out, k_d = jax.random.split(key, 6)
        P, H = state_dim, input_dim
        self.hamiltonian = NonlinearHamiltonian(
            W=jax.random.uniform(k_w, (P,), dtype, minval=0.5, maxval=1.0),
            c_hat=jax.random.uniform(k_c, (P,), dtype),
            alpha=jax.random.uniform(k_a, (), dtype, minval=0.1, maxval=1.0),
            bias=jnp.zeros((P,), dtype),
            B=uniform(k_b, (P, H), H**-0.5, dtype),
            log_step=jnp.asarray(math.log(step), dtype),
            train_step=train_step,
        )
        self.C = uniform(k_out, (H, P), P**-0.5, dtype)
        self.D = jax.random.normal(k_d, (H,), dtype)

    @property
    def input_dim(self) -> int:
        return self.D.shape[0]

    def readout(self, phi, u):
        return self.C @ phi + self.D * u
