"""hamflow: learned Hamiltonian dynamics as generative models.

Implements the Hamiltonian flow machinery of *Hamiltonian Generative Networks*
(Toth et al., 2019): Hamiltonians and energies, symplectic integrators with an exact inverse,
:class:`HamiltonianFlow` layers for normflows, the exact-log-det scalings NHF may put around
them (:class:`ConformalFriction`, :class:`TriangularAffine`, :class:`DiagonalAffine`), and the
Neural Hamiltonian Flow density model :class:`NHF` (paper Sec. 3.3 and A.2).
"""

from . import conditional, integrators, sampling, targets
from .conditional import ConditionalMLPEnergy
from .distributions import GaussianMomentumEncoder, GeneralizedNormal, SoftUniform
from .estimator import NHFDensity
from .flows import HamiltonianFlow
from .geco import GECO
from .hamiltonians import (
    Energy,
    Hamiltonian,
    MLPEnergy,
    MLPHamiltonian,
    QuadraticEnergy,
    SeparableHamiltonian,
)
from .integrators import INTEGRATORS, get_integrator, integrate, rollout
from .marginals import MarginalGaussianizer
from .momentum_flow import MomentumFlow
from .nhf import NHF
from .sampling import fit_sampler
from .scaling import ConformalFriction, DiagonalAffine, TriangularAffine
from .training import FitConfig, FitResult, fit

__all__ = [
    "NHF",
    "NHFDensity",
    "MarginalGaussianizer",
    "ConditionalMLPEnergy",
    "fit",
    "FitConfig",
    "FitResult",
    "HamiltonianFlow",
    "ConformalFriction",
    "DiagonalAffine",
    "TriangularAffine",
    "SoftUniform",
    "GeneralizedNormal",
    "GaussianMomentumEncoder",
    "GECO",
    "Energy",
    "Hamiltonian",
    "MLPEnergy",
    "MLPHamiltonian",
    "QuadraticEnergy",
    "SeparableHamiltonian",
    "INTEGRATORS",
    "get_integrator",
    "integrate",
    "rollout",
    "integrators",
    "conditional",
    "sampling",
    "targets",
    "fit_sampler",
    "MomentumFlow",
]
