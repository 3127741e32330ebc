"""Hamiltonians and the energies they are built from (paper Sec. 3.1, 3.3 and A.2).

A *Hamiltonian* maps a phase-space state ``(q, p)`` to a scalar energy per batch element and
exposes its partial derivatives. States may have any shape with a leading batch dimension:
``(B, d)`` vectors in NHF, ``(B, 16, 4, 4)`` feature maps in HGN.

An *energy* is a scalar function of one of the two halves of the state, e.g. a kinetic energy
``K(p)`` or a potential energy ``V(q)``. :class:`SeparableHamiltonian` adds two of them, which is
what the explicit symplectic integrators in :mod:`hamflow.integrators` need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._mlp_grad import MLPInputGrad

__all__ = [
    "Energy",
    "MLPEnergy",
    "QuadraticEnergy",
    "Hamiltonian",
    "SeparableHamiltonian",
    "MLPHamiltonian",
    "autograd_grad",
]


def autograd_grad(fn, x: Tensor) -> Tensor:
    """Gradient of ``fn(x).sum()`` with respect to ``x`` by autograd.

    The graph is kept (``create_graph=True``) whenever gradients are enabled by the caller, so the
    result can itself be differentiated during training; under ``torch.no_grad()`` it is a plain
    tensor. This is the reference path that closed-form gradients are tested against.
    """
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        leaf = x if x.requires_grad else x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(leaf).sum(), leaf, create_graph=create_graph)
    return grad


class Energy(nn.Module):
    """A scalar energy ``E(x) -> (B,)`` of a batched tensor, with its input gradient.

    Subclasses implement :meth:`forward`; :meth:`grad` defaults to autograd and may be
    overridden with a closed form.
    """

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def grad(self, x: Tensor) -> Tensor:
        """``dE/dx``, the same shape as ``x``."""
        return autograd_grad(self, x)


class MLPEnergy(Energy):
    """Softplus MLP energy with a closed-form input gradient (paper A.2).

    The energy is ``E(x) = w_L · softplus(... softplus(W_1 x + b_1) ...) + b_L`` on the flattened
    non-batch dimensions of ``x``. Softplus is used, as in the paper, because training a Hamiltonian
    flow differentiates ``dE/dx`` again, which ReLU would make zero almost everywhere.

    :meth:`grad` back-propagates through the layers explicitly inside the forward graph,
    ``g ← (g ⊙ sigmoid(z_l)) W_l``, as one fused autograd node with a hand-written backward
    (:mod:`hamflow._mlp_grad`), so a training step needs one ordinary backward pass instead of
    autograd inside autograd. It is differentiable once, which is what training needs.
    ``closed_form=False`` switches to the autograd reference, differentiable to any order.

    Args:
        dim: number of input features (the product of the non-batch dimensions).
        hidden: widths of the hidden layers; the paper uses ``(128, 128)``.
        closed_form: compute :meth:`grad` in closed form (default) or by autograd.
        out_scale: multiplies the initial output layer weights; a small value starts the flow
            close to the identity.
        in_scale: multiplies the initial first-layer weights and biases. The default
            initialisation gives pre-activations of about unit spread on unit-scale inputs, so
            every softplus ramp is about as wide as the data; ``in_scale = 3`` starts with ramps
            a third as wide, from which sharp features (edges, narrow wells) are learned in
            fewer steps (``NHF(potential_in_scale=...)``, docs/density/index.md).
        gain: the weights are stored divided by ``gain`` and multiplied back when used. The
            function at initialisation is the same, but an optimiser step of a given size
            (Adam's is about its learning rate) moves the energy ``gain`` times further. NHF
            uses it to let its potentials learn faster than its encoder
            (``benchmarks/nhf_ablation.py``).

    Non-finite inputs are refused with a ``ValueError`` on a CPU; on an accelerator that check
    is left to the callers that own the input (:class:`~hamflow.NHF`,
    :class:`~hamflow.HamiltonianFlow`), so that a kick never waits for the device.

    Example:
        >>> energy = MLPEnergy(2, hidden=(16, 16)).double()
        >>> x = torch.randn(5, 2, dtype=torch.float64)
        >>> energy(x).shape, energy.grad(x).shape
        (torch.Size([5]), torch.Size([5, 2]))
        >>> bool(torch.allclose(energy.grad(x), autograd_grad(energy, x), atol=1e-12))
        True
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (128, 128),
        *,
        closed_form: bool = True,
        out_scale: float = 1.0,
        in_scale: float = 1.0,
        gain: float = 1.0,
    ) -> None:
        super().__init__()
        if int(dim) < 1:
            raise ValueError(f"dim: expected a positive integer, got {dim!r}")
        if len(hidden) < 1 or any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden: expected one or more positive widths, got {hidden!r}")
        for name, value in (("gain", gain), ("in_scale", in_scale)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
        self.dim = int(dim)
        self.closed_form = closed_form
        self.gain = float(gain)
        widths = [self.dim, *[int(h) for h in hidden]]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        # No output bias: a constant offset of the energy moves nothing, and a parameter that
        # never receives a gradient would trip DDP and "every parameter learns" checks.
        self.layers.append(nn.Linear(widths[-1], 1, bias=False))
        with torch.no_grad():
            self.layers[-1].weight.mul_(out_scale)
            self.layers[0].weight.mul_(in_scale)
            self.layers[0].bias.mul_(in_scale)
            for param in self.parameters():
                param.div_(self.gain)

    def _flat(self, x: Tensor) -> Tensor:
        h = x.flatten(1) if x.dim() > 1 else x.reshape(x.shape[0], -1)
        if h.shape[1] != self.dim:
            raise ValueError(
                f"x: expected {self.dim} features per batch element, got shape {tuple(x.shape)}"
            )
        # On a CPU the check is cheap. On an accelerator it would make the host wait for the
        # device at every kick, so there the public entry points (NHF, HamiltonianFlow) check
        # their inputs once per call instead.
        if h.device.type == "cpu" and not torch.isfinite(h).all():
            raise ValueError("x: expected finite values, got NaN or inf")
        return h

    def _params(self) -> list[Tensor]:
        """``W_1, b_1, …, W_L, b_L, w``: the effective (gain-multiplied) weights."""
        params: list[Tensor] = []
        for layer in self.layers[:-1]:
            params += [layer.weight, layer.bias]
        params.append(self.layers[-1].weight)
        return params if self.gain == 1.0 else [self.gain * p for p in params]

    def forward(self, x: Tensor) -> Tensor:
        h = self._flat(x)
        params = self._params()
        for i in range(0, len(params) - 1, 2):
            h = F.softplus(F.linear(h, params[i], params[i + 1]))
        return F.linear(h, params[-1]).squeeze(-1)

    def grad(self, x: Tensor) -> Tensor:
        if not self.closed_form:
            return autograd_grad(self, x)
        g = MLPInputGrad.apply(self._flat(x), *self._params())
        return g.reshape(x.shape)


class QuadraticEnergy(Energy):
    """Kinetic energy ``½ pᵀ M⁻¹ p`` with a learnable diagonal mass ``M`` (paper Sec. 3.1).

    The mass is stored as its logarithm, so it stays positive. It broadcasts over the trailing
    dimensions given by ``shape``.

    Args:
        shape: the non-batch shape of ``p`` (an int for vectors).
        mass: initial mass, a scalar.
        learnable: whether the mass is a trainable parameter.

    Example:
        >>> kinetic = QuadraticEnergy(2, mass=0.5)
        >>> p = torch.tensor([[1.0, 2.0]])
        >>> kinetic(p).tolist(), kinetic.grad(p).tolist()
        ([5.0], [[2.0, 4.0]])
    """

    def __init__(
        self, shape: int | Sequence[int], mass: float = 1.0, *, learnable: bool = True
    ) -> None:
        super().__init__()
        shape = (int(shape),) if isinstance(shape, int) else tuple(int(s) for s in shape)
        if not (isinstance(mass, (int, float)) and math.isfinite(mass) and mass > 0):
            raise ValueError(f"mass: expected a positive finite number, got {mass!r}")
        self.dim = math.prod(shape)
        # M = mass · exp(log_scale): the initial mass is a Python float, exact in any dtype, and
        # learning moves the log-scale, which starts at zero.
        self.mass = float(mass)
        log_scale = torch.zeros(shape)
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    def inverse_mass(self) -> Tensor:
        """The diagonal of ``M⁻¹``, shaped like one batch element of ``p``."""
        return torch.exp(-self.log_scale) / self.mass

    def _check(self, p: Tensor) -> None:
        if p.shape[1:] != self.log_scale.shape:
            raise ValueError(
                f"p: expected shape (batch, {', '.join(map(str, self.log_scale.shape))}), "
                f"got {tuple(p.shape)}"
            )

    def forward(self, p: Tensor) -> Tensor:
        self._check(p)
        return 0.5 * (p * p * self.inverse_mass()).flatten(1).sum(-1)

    def grad(self, p: Tensor) -> Tensor:
        self._check(p)
        return p * self.inverse_mass()


class Hamiltonian(nn.Module):
    """A scalar Hamiltonian ``H(q, p) -> (B,)`` and its partial derivatives (paper Eq. 3).

    Subclasses implement :meth:`energy`. :meth:`grad_q` and :meth:`grad_p` default to autograd,
    keeping the graph while training. ``separable`` tells the explicit symplectic integrators
    whether ``H = K(p) + V(q)``, in which case ``grad_q`` depends on ``q`` only and ``grad_p`` on
    ``p`` only.
    """

    separable: bool = False

    def energy(self, q: Tensor, p: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, q: Tensor, p: Tensor) -> Tensor:
        return self.energy(q, p)

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        """``∂H/∂q``, the same shape as ``q``."""
        return autograd_grad(lambda x: self.energy(x, p), q)

    def grad_p(self, q: Tensor, p: Tensor) -> Tensor:
        """``∂H/∂p``, the same shape as ``p``."""
        return autograd_grad(lambda x: self.energy(q, x), p)


class SeparableHamiltonian(Hamiltonian):
    """``H(q, p) = K(p) + V(q)`` from a kinetic and a potential :class:`Energy` (paper A.2).

    Separability is what makes the explicit leapfrog integrator exact-inverse and
    volume-preserving. :meth:`dK_dp` and :meth:`dV_dq` use each energy's own (possibly
    closed-form) gradient.

    Example:
        >>> H = SeparableHamiltonian(QuadraticEnergy(1, learnable=False), MLPEnergy(1, (8,)))
        >>> q, p = torch.randn(4, 1), torch.randn(4, 1)
        >>> H.energy(q, p).shape, H.grad_p(q, p).shape
        (torch.Size([4]), torch.Size([4, 1]))
    """

    separable = True

    def __init__(self, kinetic: Energy, potential: Energy) -> None:
        super().__init__()
        self.kinetic = kinetic
        self.potential = potential

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        return self.kinetic(p) + self.potential(q)

    def dK_dp(self, p: Tensor) -> Tensor:
        return self.kinetic.grad(p)

    def dV_dq(self, q: Tensor) -> Tensor:
        return self.potential.grad(q)

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        return self.dV_dq(q)

    def grad_p(self, q: Tensor, p: Tensor) -> Tensor:
        return self.dK_dp(p)


class MLPHamiltonian(Hamiltonian):
    """A general, non-separable Hamiltonian: an MLP on ``cat(q, p)`` (HNN, Greydanus et al. 2019).

    Used by the HNN baseline (paper A.3) and with the non-symplectic integrators; the explicit
    symplectic schemes refuse it.

    Args:
        dim: size of ``q`` (and of ``p``) per batch element.
        hidden: hidden widths; HNN uses ``(200, 200)``.
        activation: ``"tanh"`` (HNN) or ``"softplus"``.

    Example:
        >>> H = MLPHamiltonian(1, hidden=(16,))
        >>> H.energy(torch.zeros(3, 1), torch.ones(3, 1)).shape
        torch.Size([3])
    """

    def __init__(
        self, dim: int, hidden: Sequence[int] = (200, 200), activation: str = "tanh"
    ) -> None:
        super().__init__()
        acts = {"tanh": nn.Tanh, "softplus": nn.Softplus}
        if activation not in acts:
            raise ValueError(f"activation: expected one of {sorted(acts)}, got {activation!r}")
        widths = [2 * int(dim), *[int(h) for h in hidden]]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), acts[activation]()]
        layers.append(nn.Linear(widths[-1], 1))
        self.net = nn.Sequential(*layers)
        self.dim = int(dim)

    def energy(self, q: Tensor, p: Tensor) -> Tensor:
        x = torch.cat([q.reshape(q.shape[0], -1), p.reshape(p.shape[0], -1)], dim=-1)
        return self.net(x).squeeze(-1)
