"""What every Hamiltonian unit shares: a Hamiltonian, a readout and a gradient switch."""

from __future__ import annotations

import copy

import equinox as eqx
import jax
from jaxtyping import Array, Float

from rhel_lib._validation import check_finite, check_last_dim
from rhel_lib.echo import GradientConfig, unit_outputs
from rhel_lib.hamiltonian import Hamiltonian


class HamiltonianUnit(eqx.Module):
    """A Hamiltonian recurrent unit: ``u_{1..K} ↦ y_{1..K}`` with ``y_k = readout(φ_{k+1}, u_k)``.

    Subclasses hold a :class:`~rhel_lib.hamiltonian.Hamiltonian` in ``hamiltonian`` and define
    :meth:`readout`. Whether gradients come from BPTT or RHEL is the static ``gradient_config``;
    :meth:`with_gradient` returns the same parameters with another setting.
    """

    hamiltonian: eqx.AbstractVar[Hamiltonian]
    gradient_config: eqx.AbstractVar[GradientConfig]

    @property
    def input_dim(self) -> int:
        raise NotImplementedError  # pragma: no cover - every unit defines it

    @property
    def gradient(self) -> str:
        """``"bptt"`` or ``"rhel"``."""
        return self.gradient_config.method

    def readout(self, phi: Float[Array, "K Q"], inputs: Float[Array, "K H"]) -> Float[Array, "K H"]:
        raise NotImplementedError  # pragma: no cover - every unit defines it

    def __call__(self, inputs: Float[Array, "K H"]) -> Float[Array, "K H"]:
        """Run the unit over one sequence ``inputs`` of shape ``(K, H)``."""
        if inputs.ndim != 2:
            raise ValueError(
                f"inputs must have shape (sequence_length, {self.input_dim}); got "
                f"{tuple(inputs.shape)} (vmap the unit over a batch)"
            )
        check_last_dim("inputs", inputs, self.input_dim, "the unit's input_dim")
        check_finite("inputs", inputs)
        return unit_outputs(self, inputs, self.gradient_config)

    def with_gradient(
        self,
        gradient: str | None = None,
        *,
        epsilon: float | None = None,
        loss_scale: float | None = None,
        estimator: str | None = None,
        chunk_size: int | None = None,
        paired_echoes: bool | None = None,
    ) -> HamiltonianUnit:
        """The same unit (same parameter arrays) with another gradient configuration."""
        config = self.gradient_config.replace(
            method=gradient,
            epsilon=epsilon,
            loss_scale=loss_scale,
            estimator=estimator,
            chunk_size=chunk_size,
            paired_echoes=paired_echoes,
        )
        new = copy.copy(self)
        object.__setattr__(new, "gradient_config", config)  # static field: rebuild, not mutate
        return new


def uniform(key, shape, bound: float, dtype) -> Array:
    """``U(−bound, bound)`` samples."""
    return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)
