"""Separable, time-reversible Hamiltonians.

A Hamiltonian recurrent unit is described by one object: its energy
``H(φ, π; θ, u) = T(π; θ) + V(φ; θ, u)`` with ``T`` even in ``π``. The parameters ``θ`` are the
inexact-array leaves of the module; the integration step (possibly one per dimension) is folded
into ``H``. Everything else — the leapfrog map, BPTT, and the RHEL echo — is derived from these
two scalar functions, so a new unit only has to write its energy.
"""

from __future__ import annotations

import abc
from typing import ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


class PhaseState(NamedTuple):
    """A point of phase space: positions ``φ`` and momenta ``π``, both of shape ``(Q,)``."""

    phi: Float[Array, " Q"]
    pi: Float[Array, " Q"]


class StepRecord(NamedTuple):
    """What one leapfrog step visits (each of shape ``(Q,)``, or with leading time axes).

    ``phi_in`` is the position entering the step, ``phi_half`` the position of the two
    intermediate sub-steps, ``pi_in`` the momentum entering the step (sub-step ``k+1/3``),
    ``pi_out`` the momentum leaving it (``k+2/3``) and ``phi_out`` the position after the step.
    """

    phi_in: Float[Array, " Q"]
    phi_half: Float[Array, " Q"]
    pi_in: Float[Array, " Q"]
    pi_out: Float[Array, " Q"]
    phi_out: Float[Array, " Q"]


class Hamiltonian(eqx.Module):
    """Base class of separable, time-reversal-symmetric Hamiltonians with the step folded in.

    Subclasses implement :meth:`kinetic` and :meth:`potential` (scalars) and
    :attr:`state_dim`. They may override :meth:`kinetic_grad` / :meth:`potential_grad` with
    closed forms and :meth:`trajectory` with a faster integrator (the linear unit uses a parallel
    scan); the defaults use autodiff and a sequential ``lax.scan``.

    A subclass whose ``T`` and ``V`` are quadratic in the state sets ``is_quadratic = True``: its
    leapfrog map is then affine, the two nudged echoes differ by an exactly linear response, and
    the echo evaluates them as ``mean ± half-difference`` (no cancellation, exact at any ``ε``).
    """

    is_quadratic: ClassVar[bool] = False

    @property
    @abc.abstractmethod
    def state_dim(self) -> int:
        """Number ``Q`` of position (and momentum) coordinates."""

    @abc.abstractmethod
    def kinetic(self, pi: Float[Array, " Q"]) -> Float[Array, ""]:
        """Kinetic energy ``T(π; θ)``; must be even in ``π``."""

    @abc.abstractmethod
    def potential(self, phi: Float[Array, " Q"], u: Float[Array, " H"]) -> Float[Array, ""]:
        """Potential energy ``V(φ; θ, u)`` for the input ``u`` of the current step."""

    def kinetic_grad(self, pi: Float[Array, " Q"]) -> Float[Array, " Q"]:
        """``∂T/∂π``."""
        return jax.grad(self.kinetic)(pi)

    def potential_grad(self, phi: Float[Array, " Q"], u: Float[Array, " H"]) -> Float[Array, " Q"]:
        """``∂V/∂φ``."""
        return jax.grad(self.potential)(phi, u)

    def energy(self, state: PhaseState, u: Float[Array, " H"]) -> Float[Array, ""]:
        """``H(φ, π; θ, u)`` at a phase-space point."""
        return self.kinetic(state.pi) + self.potential(state.phi, u)

    def half_step_energy(self, record: StepRecord, u: Float[Array, " H"]) -> Float[Array, ""]:
        """``H_{1/2}`` of one leapfrog step: the mean of ``H`` at sub-steps ``k+1/3`` and ``k+2/3``.

        Both sub-states share the position ``φ_h``, so this is
        ``V(φ_h, u) + [T(π_in) + T(π_out)] / 2``. Its parameter and input derivatives, differenced
        between nudged echoes, are the RHEL gradient estimators.
        """
        kinetic = 0.5 * (self.kinetic(record.pi_in) + self.kinetic(record.pi_out))
        return kinetic + self.potential(record.phi_half, u)

    def zero_state(self, dtype) -> PhaseState:
        """The resting state ``Φ_0 = (0, 0)`` every trajectory starts from."""
        zeros = jnp.zeros((self.state_dim,), dtype)
        return PhaseState(zeros, zeros)

    def trajectory(
        self,
        state: PhaseState,
        inputs: Float[Array, "K H"],
        kicks: Float[Array, "K Q"] | None = None,
    ) -> tuple[PhaseState, StepRecord]:
        """``K`` leapfrog steps; see :func:`rhel_lib.integrators.sequential_trajectory`."""
        from rhel_lib.integrators import sequential_trajectory

        return sequential_trajectory(self, state, inputs, kicks)
