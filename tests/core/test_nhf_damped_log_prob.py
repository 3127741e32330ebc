"""``NHF.log_prob`` of a sampler with position dampings counts the dampings' log-det.

A target-driven NHF (issue 33) puts a :class:`~hamflow.sampling.DampedFlow` after every flow,
``p ← e^{−c(q)} ⊙ p``, whose Jacobian depends on the state. Its density at a data point is
then ``ln π(s₀) + ln |det ∂s₀/∂(x, p)|`` with that per-row log-det inside. The check computes
the joint density of ``(x, p)`` that the importance weights use and compares it, in float64,
with the prior's log-density plus the log-determinant of autograd's Jacobian of the whole map
back to the prior.
"""

import pytest
import torch

from hamflow import NHF
from hamflow.sampling import configure
from hamflow.targets import Banana


def _sampler(seed: int, kicks: bool) -> NHF:
    torch.manual_seed(seed)
    model = NHF(2, target=Banana(), hidden=(16,), encoder_hidden=(16,)).double()
    configure(model, scale=1.5, kicks=kicks, damping=True)
    model.double()
    with torch.no_grad():  # move every network, the dampings included, away from its start
        for param in model.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return model


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kicks", [False, True])
def test_joint_log_density_matches_autograd_jacobian(seed, kicks):
    model = _sampler(seed, kicks)
    assert any(type(f).__name__ == "DampedFlow" for f in model.flows)
    x = torch.randn(4, 2, dtype=torch.float64)
    eps = torch.randn(4, 2, dtype=torch.float64)
    q, _ = model.from_data(x)
    p, log_f = model.encoder.rsample(q, 1, eps)
    joint = (model._log_weights(x, 1, eps=eps) + log_f).reshape(-1)

    def to_prior(z):
        q_t, _ = model.from_data(z[:2][None])
        q0, p0 = model.transport(q_t, z[2:][None], inverse=True)
        return torch.cat([q0[0], p0[0]])

    for i in range(len(x)):
        z = torch.cat([x[i], p.reshape(len(x), 2)[i]])
        jac = torch.autograd.functional.jacobian(to_prior, z)
        ref = model.prior.log_prob(to_prior(z)[None])[0] + torch.linalg.slogdet(jac)[1]
        got, want = float(joint[i]), float(ref)
        assert abs(got - want) < 1e-9 * max(1.0, abs(want)), (i, got, want)
