"""rhel_lib: Recurrent Hamiltonian Echo Learning in JAX + Equinox."""

from rhel_lib.echo import GradientConfig, integrate
from rhel_lib.hamiltonian import Hamiltonian, PhaseState, StepRecord
from rhel_lib.integrators import leapfrog_step, linear_oscillator_trajectory, sequential_trajectory
from rhel_lib.units import LinearHamiltonian, LinHRU, NonlinearHamiltonian, NonlinHRU

__version__ = "0.1.0"

__all__ = [
    "GradientConfig",
    "Hamiltonian",
    "LinHRU",
    "LinearHamiltonian",
    "NonlinHRU",
    "NonlinearHamiltonian",
    "PhaseState",
    "StepRecord",
    "integrate",
    "leapfrog_step",
    "linear_oscillator_trajectory",
    "sequential_trajectory",
]
