"""Hamiltonian recurrent units: each writes its Hamiltonian, BPTT and RHEL come for free."""

from rhel_lib.units.base import HamiltonianUnit
from rhel_lib.units.hopfield import HopfieldHRU as HopfieldHRU
from rhel_lib.units.linear import LinearHamiltonian, LinHRU
from rhel_lib.units.nonlinear import NonlinearHamiltonian, NonlinHRU

__all__ = ["HamiltonianUnit", "LinHRU", "LinearHamiltonian", "NonlinHRU", "NonlinearHamiltonian"]
