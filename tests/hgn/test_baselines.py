"""HNN and PixelHNN baselines (paper A.3): shapes, each loss term by hand, learning checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hamflow_hgn.config import PixelHNNConfig
from hamflow_hgn.models.hnn import (
    HNN,
    MLPVectorField,
    StateCheckConfig,
    finite_differences,
    fit_vector_field,
    hnn_loss,
    state_space_check,
)
from hamflow_hgn.models.pixel_hnn import PixelHNN, pixel_hnn_losses


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: on shared, oversubscribed cores torch's thread pool is far slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_config(**kw) -> PixelHNNConfig:
    base = dict(
        kind="mlp",
        latent_dim=2,
        frames=5,
        image_size=8,
        hidden=16,
        hnn_hidden=(16,),
        pairs_per_batch=0,
        encoder_widths=(4,) * 7,
        latent_channels=4,
        decoder_width=4,
        state_channels=4,
        latent_size=4,
    )
    base.update(kw)
    return PixelHNNConfig(**base)


# -- HNN on states ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hnn_field_is_the_symplectic_gradient(dtype):
    hnn = HNN(4, hidden=(8, 8)).to(dtype)
    x = torch.randn(3, 4, dtype=dtype, requires_grad=True)
    (grad,) = torch.autograd.grad(hnn.energy(x).sum(), x)
    expected = torch.cat([grad[:, 2:], -grad[:, :2]], dim=-1)  # (dH/dp, -dH/dq)
    assert torch.allclose(hnn.time_derivative(x), expected)
    assert hnn.rollout(x.detach(), 0.1, 4).dtype == dtype


def test_hnn_rollout_methods_agree_and_reverse():
    torch.manual_seed(0)
    hnn = HNN(2, hidden=(16,)).double()
    x0 = torch.randn(3, 2, dtype=torch.float64)
    rk4 = hnn.rollout(x0, 0.05, 20)
    scipy = hnn.rollout(x0, 0.05, 20, method="solve_ivp")
    assert rk4.shape == scipy.shape == (21, 3, 2)
    assert torch.allclose(rk4, scipy, atol=1e-6)
    back = hnn.rollout(rk4[-1], -0.05, 20)
    assert torch.allclose(back[-1], x0, atol=1e-6)


def test_finite_differences_and_loss_by_hand():
    s = torch.tensor([[[0.0, 2.0], [1.0, 2.0], [3.0, 0.0]]])
    x, dxdt = finite_differences(s, dt=0.5)
    assert x.tolist() == [[0.5, 2.0], [2.0, 1.0]]
    assert dxdt.tolist() == [[2.0, 0.0], [4.0, -4.0]]
    f = torch.tensor([[1.0, 1.0], [4.0, -2.0]])
    # mean over batch and coordinates of (f - dx/dt)^2: (1 + 1 + 0 + 4) / 4
    assert hnn_loss(f, dxdt).item() == pytest.approx(1.5)
    with pytest.raises(ValueError, match="target"):
        hnn_loss(f, dxdt[:1])
    with pytest.raises(ValueError, match="state_dim"):
        HNN(3)


def test_hnn_learns_mass_spring_from_states():
    """Trained briefly on clean mass-spring states, the HNN recovers the true vector field to
    6 % and its RK4 rollouts keep the true energy within 3 % over ~12 periods; the same checks
    fail for an untrained HNN, so the test can fail."""
    cfg = StateCheckConfig(
        "mass_spring", n_train=20, n_test=8, train_steps=300, rollout_steps=300, hidden=(64, 64)
    )
    out = state_space_check(cfg)
    assert out["hnn"]["field_rel_error"] < 0.06, out
    assert out["hnn"]["energy_drift"] < 0.03, out
    untrained = state_space_check(
        StateCheckConfig(**{**cfg.__dict__, "train_steps": 1, "models": ("hnn",)})
    )
    assert untrained["hnn"]["field_rel_error"] > 0.3, untrained
    assert set(out["mlp"]) == {"final_loss", "field_rel_error", "energy_drift"}


def test_fit_vector_field_lowers_the_loss():
    torch.manual_seed(0)
    x = torch.randn(64, 2)
    dxdt = torch.stack([2 * x[:, 1], -2 * x[:, 0]], -1)
    losses = fit_vector_field(MLPVectorField(2, hidden=(32,)), x, dxdt, steps=100, batch_size=32)
    assert losses[-1] < 0.3 * losses[0]


# -- PixelHNN ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_pixel_hnn_shapes_and_gradients(kind):
    model = PixelHNN(tiny_config(kind=kind, latent_dim=4, pairs_per_batch=5))
    images = torch.rand(2, 5, 3, 8, 8)
    loss, metrics = model(images)
    assert loss.shape == () and torch.isfinite(loss)
    assert set(metrics) == {"loss", "ae", "cc", "hnn", "wd", "mse"}
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    out = model.rollout(images, steps=7)
    assert out.frames.shape == (2, 8, 3, 8, 8)
    assert out.q.shape == out.p.shape == (2, 8, 2)  # batch first, like frames
    assert out.energy.shape == (2, 8)
    assert model.config.target_frames == tuple(range(5))
    with pytest.raises(ValueError, match="images"):
        model(torch.rand(2, 5, 3, 16, 16))


def test_pixel_hnn_loss_terms_by_hand():
    torch.manual_seed(1)
    cfg = tiny_config(latent_dim=2, dt=0.5)
    model = PixelHNN(cfg).double()
    images = torch.rand(2, 4, 3, 8, 8, dtype=torch.float64)
    ae = cc = hnn = 0.0
    n = 0
    for b in range(2):
        for t in range(2):  # T+1 = 4 frames: pairs start at 0 and 1 (X_{t+1} needs t+2)
            x = images[b, t : t + 2].reshape(1, -1)
            x_next = images[b, t + 1 : t + 3].reshape(1, -1)
            z, z_next = model.encoder(x), model.encoder(x_next)
            x_hat = model.decoder(z)
            ae += ((x - x_hat) ** 2).mean().item()
            q, p, q_next = z[0, 0], z[0, 1], z_next[0, 0]
            cc += (p - (q_next - q) / 0.5).item() ** 2
            zz = z.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(model.hnn.hamiltonian.net(zz).sum(), zz)
            field = torch.stack([g[0, 1], -g[0, 0]])
            hnn += (((field - (z_next - z)[0] / 0.5) ** 2).mean()).item()
            n += 1
    wd = 0.5 * sum((p.detach() ** 2).sum().item() for p in model.parameters())
    loss, m = model(images)
    assert m["ae"].item() == pytest.approx(ae / n, rel=1e-10)
    assert m["cc"].item() == pytest.approx(cc / n, rel=1e-10)
    assert m["hnn"].item() == pytest.approx(hnn / n, rel=1e-10)
    assert m["wd"].item() == pytest.approx(wd, rel=1e-10)
    total = ae / n + cc / n + 0.1 * hnn / n + 1e-5 * wd  # Eq. 15
    assert loss.item() == pytest.approx(total, rel=1e-10)


def test_pixel_hnn_losses_helper_and_pair_sampling():
    z = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    z_next = torch.tensor([[2.0, 2.0], [1.0, 0.0]])
    out = pixel_hnn_losses(torch.zeros(2, 3), torch.ones(2, 3), z, z_next, torch.zeros(2, 2))
    assert out["ae"].item() == 1.0
    assert out["cc"].item() == pytest.approx(((2 - 1) ** 2 + (-1 - 1) ** 2) / 2)
    assert out["hnn"].item() == pytest.approx((1 + 0 + 1 + 1) / 4)
    model = PixelHNN(tiny_config(pairs_per_batch=7))
    frames = torch.arange(6.0).view(1, 6, 1, 1, 1).expand(2, 6, 3, 8, 8)
    x, x_next = model._pairs(frames)
    assert x.shape == x_next.shape == (7, 2, 3, 8, 8)
    t = x[:, 0, 0, 0, 0]
    assert torch.equal(x[:, 1, 0, 0, 0], t + 1) and torch.equal(x_next[:, 1, 0, 0, 0], t + 2)
    assert int(t.max()) <= 3


def moving_blob(n: int, frames: int, size: int = 8) -> torch.Tensor:
    """A bright square oscillating left-right: a 1-D harmonic motion in pixels."""
    t = torch.arange(frames) * 0.4
    phase = torch.rand(n, 1) * 6.28
    x = (size / 2 - 1) + 2.5 * torch.cos(t + phase)  # (n, frames)
    cols = torch.arange(size).view(1, 1, size)
    row = torch.exp(-((cols - x[..., None]) ** 2))  # (n, frames, size)
    img = row[:, :, None, None, :].expand(n, frames, 3, size, size).clone()
    return img


@pytest.mark.parametrize("kind", ["mlp", "conv"])
def test_pixel_hnn_short_training_lowers_reconstruction(kind):
    torch.manual_seed(0)
    model = PixelHNN(tiny_config(kind=kind, pairs_per_batch=32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = moving_blob(16, 5)
    history = []
    for step in range(80):
        loss, m = model(data, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(m["ae"].item())
    assert np.mean(history[-10:]) < 0.75 * np.mean(history[:5]), history[::10]


# -- registry plug-in: the same train / evaluate path as HGN ----------------------------------


def test_pixel_hnn_trains_and_evaluates_through_the_cli(tmp_path):
    from hamflow_hgn.data import DataConfig, generate, open_dataset
    from hamflow_hgn.evaluate import evaluate_split
    from hamflow_hgn.evaluate import main as evaluate_main
    from hamflow_hgn.models import MODELS
    from hamflow_hgn.runs import load_run
    from hamflow_hgn.train import main as train_main

    assert {"pixel_hnn_mlp", "pixel_hnn_conv"} <= set(MODELS)
    data = generate(
        DataConfig("two_body", n_train=8, n_test=4, steps=5, size=16),
        tmp_path / "data",
        workers=1,
        progress=False,
    )
    run = tmp_path / "run"
    argv = ["--data", str(data), "--out", str(run), "--model", "pixel_hnn_mlp", "--steps", "4"]
    argv += ["--batch-size", "4", "--lr", "1e-3", "--device", "cpu", "--no-progress"]
    assert train_main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model_name"] == "pixel_hnn_mlp"
    model = load_run(run, device="cpu").model
    assert isinstance(model, PixelHNN) and model.config.latent_dim == 8  # two-body phase space
    metrics = evaluate_split(model, open_dataset(data, "test"))
    assert metrics["sequences"] == 4 and len(metrics["mse_curve"]) == 5
    assert 0 < metrics["mse_x1e4"]["mean"] < 1e4
    assert evaluate_main([str(run), "--data", str(data), "--split", "test", "--rollouts", "0"]) == 0
    saved = json.loads((run / "eval" / "metrics.json").read_text())
    assert saved["model"] == "pixel_hnn_mlp" and saved["protocol"] == "reconstruct"
