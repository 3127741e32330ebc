"""Hamiltonian Neural Network on phase-space states, and its plain-MLP baseline (paper A.3).

The HNN (Greydanus et al., 2019) learns a scalar ``H(q, p)`` (an MLP with two hidden layers of
200 tanh units, :class:`hamflow.MLPHamiltonian`) whose symplectic gradient
``(∂H/∂p, −∂H/∂q)`` matches the time derivative of observed states (Eq. 12). The baseline it is
compared with, :class:`MLPVectorField`, regresses the time derivative directly. Both roll out
with the core's RK4 (:func:`hamflow.integrators.rollout`) or with scipy's ``solve_ivp``, as the
original paper did.

The paper checked its HNN on ground-truth states of the mass-spring, pendulum and two-body
systems before using it on pixels; :func:`state_space_check` runs that check for one system.

References:
    Toth et al., "Hamiltonian Generative Networks", ICLR 2020, A.3 (Eq. 12).
    Greydanus, Dzamba and Yosinski, "Hamiltonian Neural Networks", NeurIPS 2019.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor, nn

from hamflow import MLPHamiltonian
from hamflow.hamiltonians import Hamiltonian
from hamflow.integrators import rollout as core_rollout

from .networks import mlp

__all__ = [
    "HNN",
    "MLPVectorField",
    "finite_differences",
    "hnn_loss",
    "fit_vector_field",
    "StateCheckConfig",
    "state_space_check",
]


def _check_state_dim(x: Tensor, state_dim: int, name: str = "x") -> None:
    if x.dim() != 2 or x.shape[-1] != state_dim:
        raise ValueError(f"{name}: expected shape (B, {state_dim}), got {tuple(x.shape)}")


def _even_state_dim(state_dim: int) -> int:
    if int(state_dim) < 2 or int(state_dim) % 2:
        raise ValueError(f"state_dim: expected an even integer >= 2, got {state_dim!r}")
    return int(state_dim)


class _FieldAsHamiltonian(Hamiltonian):
    """Adapter: a vector field ``f(x) = (dq/dt, dp/dt)`` seen through the Hamiltonian interface.

    The core integrators only call ``grad_p`` (= dq/dt) and ``grad_q`` (= −dp/dt), so RK4 and
    Euler can integrate any vector field, Hamiltonian or not, without a private integrator.
    """

    def __init__(self, field) -> None:
        super().__init__()
        self.field = field

    def _split(self, q: Tensor, p: Tensor) -> tuple[Tensor, Tensor]:
        f = self.field(torch.cat([q, p], dim=-1))
        return f[..., : q.shape[-1]], f[..., q.shape[-1] :]

    def grad_p(self, q: Tensor, p: Tensor) -> Tensor:
        return self._split(q, p)[0]

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        return -self._split(q, p)[1]


class _StateModel(nn.Module):
    """Shared rollout code: subclasses define ``time_derivative(x) -> dx/dt``."""

    state_dim: int

    def time_derivative(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """``dx/dt`` at states ``x (B, state_dim)``."""
        raise NotImplementedError

    def _as_hamiltonian(self) -> Hamiltonian:
        return _FieldAsHamiltonian(self.time_derivative)

    def rollout(self, x0: Tensor, dt: float, steps: int, method: str = "rk4") -> Tensor:
        """States ``(steps + 1, B, state_dim)`` from ``x0 (B, state_dim)``, the start first.

        ``method`` is a core integrator name (``"rk4"``, ``"euler"``) or ``"solve_ivp"`` for
        scipy's adaptive RK45 at tight tolerances, as in the original HNN code.
        """
        _check_state_dim(x0, self.state_dim, "x0")
        if method == "solve_ivp":
            return self._rollout_scipy(x0, dt, steps)
        half = self.state_dim // 2
        with torch.no_grad():
            qs, ps = core_rollout(
                self._as_hamiltonian(), x0[:, :half], x0[:, half:], dt, steps, method=method
            )
        return torch.cat([qs, ps], dim=-1)

    def _rollout_scipy(self, x0: Tensor, dt: float, steps: int) -> Tensor:
        b, d = x0.shape

        def rhs(t: float, y: np.ndarray) -> np.ndarray:
            x = torch.as_tensor(y.reshape(b, d), dtype=x0.dtype, device=x0.device)
            with torch.enable_grad():
                f = self.time_derivative(x)
            return f.detach().cpu().double().numpy().reshape(-1)

        times = np.arange(steps + 1) * float(dt)
        y0 = x0.detach().cpu().double().numpy().reshape(-1)
        sol = solve_ivp(rhs, (0.0, times[-1]), y0, t_eval=times, rtol=1e-9, atol=1e-9)
        if not sol.success:  # pragma: no cover - scipy failure
            raise RuntimeError(f"solve_ivp failed: {sol.message}")
        out = torch.as_tensor(sol.y.T.reshape(steps + 1, b, d), dtype=x0.dtype)
        return out.to(x0.device)


class HNN(_StateModel):
    """A learned Hamiltonian on flat states ``x = cat(q, p)`` (Greydanus et al. 2019; A.3).

    Args:
        state_dim: length of ``x`` (even): 2 for mass-spring and pendulum, 8 for two-body,
            12 for three-body.
        hidden: hidden widths; the paper uses two layers of 200.
        activation: ``"tanh"`` as in the paper, or ``"softplus"``.

    Example:
        >>> hnn = HNN(2, hidden=(16, 16))
        >>> x = torch.randn(5, 2)
        >>> hnn.energy(x).shape, hnn.time_derivative(x).shape
        (torch.Size([5]), torch.Size([5, 2]))
        >>> hnn.rollout(x, dt=0.1, steps=3).shape
        torch.Size([4, 5, 2])

    References:
        Toth et al., ICLR 2020, A.3, Eq. 12.
    """

    def __init__(
        self, state_dim: int, hidden: Sequence[int] = (200, 200), activation: str = "tanh"
    ) -> None:
        super().__init__()
        self.state_dim = _even_state_dim(state_dim)
        self.hamiltonian = MLPHamiltonian(self.state_dim // 2, hidden, activation)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(q, p)``: the halves of ``x = cat(q, p)``."""
        half = self.state_dim // 2
        return x[..., :half], x[..., half:]

    def energy(self, x: Tensor) -> Tensor:
        """Learned ``H(x)``, shape ``(B,)``."""
        _check_state_dim(x, self.state_dim)
        return self.hamiltonian.energy(*self.split(x))

    def time_derivative(self, x: Tensor) -> Tensor:
        """The symplectic gradient ``(∂H/∂p, −∂H/∂q)``; differentiable while training."""
        _check_state_dim(x, self.state_dim)
        q, p = self.split(x)
        return torch.cat([self.hamiltonian.grad_p(q, p), -self.hamiltonian.grad_q(q, p)], -1)

    def _as_hamiltonian(self) -> Hamiltonian:
        return self.hamiltonian


class MLPVectorField(_StateModel):
    """The baseline of Greydanus et al.: an MLP that outputs ``dx/dt`` directly.

    Same widths and activation as :class:`HNN`, but with ``state_dim`` outputs and no
    Hamiltonian structure, so nothing makes its rollouts conserve energy.

    Example:
        >>> MLPVectorField(4, hidden=(8,)).time_derivative(torch.zeros(3, 4)).shape
        torch.Size([3, 4])
    """

    def __init__(
        self, state_dim: int, hidden: Sequence[int] = (200, 200), activation: str = "tanh"
    ) -> None:
        super().__init__()
        self.state_dim = _even_state_dim(state_dim)
        self.net = mlp([self.state_dim, *hidden, self.state_dim], activation)

    def time_derivative(self, x: Tensor) -> Tensor:
        _check_state_dim(x, self.state_dim)
        return self.net(x)


def finite_differences(states: Tensor, dt: float) -> tuple[Tensor, Tensor]:
    """Midpoints and finite-difference derivatives of trajectories ``(N, T + 1, D)``.

    Returns ``x = (s_t + s_{t+1}) / 2`` and ``dx/dt = (s_{t+1} − s_t) / dt``, both flattened to
    ``(N * T, D)``; the difference quotient is second-order accurate at the midpoint.

    Example:
        >>> s = torch.tensor([[[0.0, 1.0], [1.0, 3.0]]])
        >>> x, dxdt = finite_differences(s, dt=0.5)
        >>> x.tolist(), dxdt.tolist()
        ([[0.5, 2.0]], [[2.0, 4.0]])
    """
    if states.dim() != 3 or states.shape[1] < 2:
        raise ValueError(f"states: expected shape (N, T + 1 >= 2, D), got {tuple(states.shape)}")
    if dt == 0:
        raise ValueError(f"dt: expected a non-zero number, got {dt!r}")
    a, b = states[:, :-1], states[:, 1:]
    d = states.shape[-1]
    return (0.5 * (a + b)).reshape(-1, d), ((b - a) / dt).reshape(-1, d)


def hnn_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Eq. 12 averaged over batch and coordinates: ``mean((f(x) − dx/dt)²)``.

    This is the mean squared error of the original implementation (the constant ½ of Eq. 12
    and the sum over coordinates only rescale it).
    """
    if predicted.shape != target.shape:
        raise ValueError(
            f"target: expected shape {tuple(predicted.shape)}, got {tuple(target.shape)}"
        )
    return ((predicted - target) ** 2).mean()


def fit_vector_field(
    model: _StateModel,
    x: Tensor,
    dxdt: Tensor,
    *,
    steps: int = 2000,
    lr: float = 1e-3,
    batch_size: int | None = None,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> list[float]:
    """Train ``model`` (HNN or MLP baseline) on ``(x, dx/dt)`` pairs with Adam; losses per step.

    ``batch_size=None`` trains full-batch as Greydanus et al. did (Adam, lr 1e-3, weight decay
    1e-4).
    """
    if steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    for _ in range(steps):
        if batch_size is None or batch_size >= len(x):
            xb, yb = x, dxdt
        else:
            idx = torch.randint(len(x), (batch_size,), generator=gen).to(x.device)
            xb, yb = x[idx], dxdt[idx]
        loss = hnn_loss(model.time_derivative(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@dataclass(frozen=True)
class StateCheckConfig:
    """Settings of :func:`state_space_check` (the HNN sanity check of paper Sec. 4)."""

    system: str = "mass_spring"
    n_train: int = 50
    n_test: int = 10
    steps: int = 30
    dt: float = 0.125
    rollout_steps: int = 200
    train_steps: int = 500
    hidden: tuple[int, ...] = (200, 200)
    models: tuple[str, ...] = ("hnn", "mlp")
    seed: int = 0


def _simulate(system, n: int, steps: int, dt: float, seed: int) -> np.ndarray:
    from ..data.simulate import integrate

    rng = np.random.default_rng(seed)
    x0 = np.stack([system.sample_initial(rng) for _ in range(n)])
    return integrate(system, x0, np.arange(steps + 1) * dt)


def state_space_check(config: StateCheckConfig = StateCheckConfig()) -> dict:
    """Train an HNN and the MLP baseline on clean ground-truth states of one system.

    Returns a dict with the config, each model's relative vector-field error on held-out
    states and the mean relative drift of the *true* energy along ``rollout_steps`` RK4 steps
    from held-out initial states (lower is better for both).
    """
    from ..data.systems import get_system

    torch.manual_seed(config.seed)
    system = get_system(config.system)
    train = torch.as_tensor(
        _simulate(system, config.n_train, config.steps, config.dt, config.seed), dtype=torch.float32
    )
    test = _simulate(system, config.n_test, config.steps, config.dt, config.seed + 1)
    x, dxdt = finite_differences(train, config.dt)
    x_test = torch.as_tensor(test.reshape(-1, system.state_dim), dtype=torch.float32)
    f_test = torch.as_tensor(
        system.vector_field_batch(test.reshape(-1, system.state_dim)), dtype=torch.float32
    )
    x0 = torch.as_tensor(test[:, 0], dtype=torch.float32)
    e0 = system.hamiltonian(test[:, 0])
    out: dict = {"config": asdict(config)}
    classes = {"hnn": HNN, "mlp": MLPVectorField}
    for name in config.models:
        cls = classes[name]
        torch.manual_seed(config.seed)
        model = cls(system.state_dim, hidden=config.hidden)
        losses = fit_vector_field(model, x, dxdt, steps=config.train_steps, seed=config.seed)
        f = model.time_derivative(x_test).detach()
        field_err = float(torch.linalg.norm(f - f_test) / torch.linalg.norm(f_test))
        traj = model.rollout(x0, config.dt, config.rollout_steps).double().numpy()
        energy = system.hamiltonian(traj)  # (T + 1, B)
        drift = float(np.mean(np.abs(energy - e0) / np.abs(e0)))
        out[name] = {"final_loss": losses[-1], "field_rel_error": field_err, "energy_drift": drift}
    return out
