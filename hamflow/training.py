"""One training loop for NHF and any normflows model: :func:`fit`.

A density model trained on a few hundred rows overfits within seconds, and a learning rate that
suits the start is too large near the end. :func:`fit` therefore builds in what a careful user
would write around ``model.forward_kld``:

- a **validation split** (or rows passed in), scored every few steps on a fixed random draw, with
  **early stopping** and the **best state restored** at the end;
- a **cosine learning-rate schedule** over the budget, which is a number of steps and/or seconds
  of CPU time (``max_time``);
- a **divergence guard**: a non-finite loss or gradient skips the step; a run of them, a
  non-finite validation score or an exception inside the model restores the best state and
  halves the learning rate. Each event is recorded in the history; the loop never ends with a
  broken model;
- gradient clipping at a multiple of the running median gradient norm, so that one bad batch
  cannot throw the model far;
- a tqdm **progress bar** (``verbose``) and one torch thread by default (``threads``).

The model needs ``forward_kld(x)`` (a loss to minimise) and ``log_prob(x)``: both NHF and a
``normflows.NormalizingFlow`` have them. :class:`~hamflow.NHFDensity` calls this loop, and so do
the benchmarks for every model they train, so that NHF, RealNVP and NSF are trained alike.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from .nhf import NHF

__all__ = ["fit", "FitConfig", "FitResult"]

LR_FLOOR = 1 / 20
"""The cosine schedule's last learning rate, as a fraction of the first."""


def cosine_factor(progress: float) -> float:
    """The cosine schedule's learning-rate multiplier at ``progress`` (0 to 1, clamped): 1 at
    the start, :data:`LR_FLOOR` at the end.

    Example:
        >>> [round(cosine_factor(t), 4) for t in (0.0, 0.5, 1.0, 2.0)]
        [1.0, 0.525, 0.05, 0.05]
    """
    t = min(max(progress, 0.0), 1.0)
    return LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * t))


@dataclass(frozen=True)
class FitConfig:
    """Settings of :func:`fit` (all keyword arguments of it, with these defaults).

    Parameters
    ----------
    max_steps, max_time
        The budget: optimiser steps and/or CPU seconds (``time.process_time``, validation
        included). At least one must be set; training stops at the first reached.
    batch_size
        Rows per step (capped at the number of training rows).
    lr, weight_decay
        AdamW's learning rate (the schedule's start) and decoupled weight decay.
    schedule
        ``"cosine"`` (from ``lr`` down to ``lr / 20`` over the budget) or ``"constant"``.
    val_fraction
        Share of the rows held out for validation when no ``x_val`` is given (at least 2 rows
        and at most 2,000); ``0`` turns validation, early stopping and restore off.
    eval_every
        Steps between validation scores.
    patience
        Validation scores without improvement before training stops early (``None``: never).
    val_samples
        Momenta per row for an NHF's validation score (``log_prob``'s ``num_samples``).
    clip
        Gradients are clipped to ``clip ×`` the median norm of the last 100 steps (``None``: off).
    average
        Validate, keep and return an exponential moving average of the weights with this
        decay (e.g. ``0.99``) instead of the weights themselves (``None``: off).
    threads
        torch threads during training (restored after); ``None`` leaves the setting alone.
    seed
        Seeds the split, the batches and the model's random draws (global RNG left as it was).
    verbose
        Show a tqdm progress bar.
    """

    max_steps: int | None = None
    max_time: float | None = 60.0
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    val_fraction: float = 0.1
    eval_every: int = 25
    patience: int | None = 40
    val_samples: int = 16
    clip: float | None = 5.0
    average: float | None = None
    threads: int | None = 1
    seed: int | None = 0
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_time is None:
            raise ValueError("max_steps, max_time: expected at least one budget, got neither")
        if self.max_steps is not None and (
            not isinstance(self.max_steps, int) or self.max_steps < 1
        ):
            raise ValueError(f"max_steps: expected an integer >= 1 or None, got {self.max_steps!r}")
        if self.max_time is not None and not (
            isinstance(self.max_time, (int, float)) and self.max_time > 0
        ):
            raise ValueError(f"max_time: expected seconds > 0 or None, got {self.max_time!r}")
        for name in ("batch_size", "eval_every", "val_samples"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: expected a positive finite number, got {self.lr!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay: expected a number >= 0, got {self.weight_decay!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule: expected 'cosine' or 'constant', got {self.schedule!r}")
        if not (0 <= self.val_fraction < 1):
            raise ValueError(
                f"val_fraction: expected a number in [0, 1), got {self.val_fraction!r}"
            )
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ValueError(f"patience: expected an integer >= 1 or None, got {self.patience!r}")
        if self.average is not None and not (0 < self.average < 1):
            raise ValueError(f"average: expected a decay in (0, 1) or None, got {self.average!r}")
        if self.clip is not None and not (self.clip > 0 and math.isfinite(self.clip)):
            raise ValueError(f"clip: expected a positive number or None, got {self.clip!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads: expected an integer >= 1 or None, got {self.threads!r}")


@dataclass
class FitResult:
    """What :func:`fit` did: the history of validation scores and events, and its totals.

    ``history`` holds one dict per validation score (``step``, ``seconds``, ``lr``,
    ``train_loss``: the mean loss since the last score, ``val_nll``) and one per event
    (``event``: ``"skipped"`` for a step with a non-finite loss or gradient, ``"restored"`` when
    the best state was put back and the learning rate halved, with a ``reason``;
    ``"interrupted"`` when Ctrl-C ended training, which then keeps the best state as usual).
    """

    steps: int = 0
    seconds: float = 0.0
    best_step: int = 0
    best_val_nll: float = math.inf
    stopped_early: bool = False
    skipped_steps: int = 0
    restores: int = 0
    history: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)


def fit(
    model: nn.Module,
    x: Tensor,
    x_val: Tensor | None = None,
    *,
    context: Tensor | None = None,
    context_val: Tensor | None = None,
    callback: Callable[[dict], None] | None = None,
    **options,
) -> FitResult:
    """Train ``model`` on the rows of ``x`` by minimising ``model.forward_kld``; return what
    happened. The model ends in its best validation state, in eval mode.

    The options are those of :class:`FitConfig`. Works for :class:`~hamflow.NHF` and any
    ``normflows.NormalizingFlow`` (``forward_kld`` to train on, ``log_prob`` to validate).

    Parameters
    ----------
    model
        The model to train, in place.
    x
        Training rows, ``(N, dim)``, on the model's dtype and device.
    x_val
        Validation rows; by default ``val_fraction`` of ``x`` is held out.
    context, context_val
        For a conditional model (``NHF(dim, context_dim=c)``, a normflows
        ``ConditionalNormalizingFlow``): the context of each row of ``x`` and of ``x_val``,
        ``(N, c)``; the loss is then ``forward_kld(x, context)``.
    callback
        Called with each history record as it is made.
    **options
        :class:`FitConfig` fields (``max_time``, ``max_steps``, ``lr``, ...).

    Returns
    -------
    FitResult
        Steps, seconds, the best step and validation NLL, and the history of scores and events.

    Examples
    --------
    >>> from hamflow import NHF
    >>> model = NHF(dim=2, num_flows=2, hidden=(16, 16), encoder_hidden=(16,))
    >>> x = torch.randn(200, 2) * 0.5 + 1.0
    >>> result = fit(model, x, max_steps=30, eval_every=10, max_time=None)
    >>> result.steps, len([h for h in result.history if "val_nll" in h])
    (30, 3)
    >>> model.training, math.isfinite(result.best_val_nll)
    (False, True)
    """
    cfg = FitConfig(**options)
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"x: expected shape (N >= 2, dim), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x: expected finite values, got NaN or inf")
    for name, c, rows in (("context", context, x), ("context_val", context_val, x_val)):
        if c is None:
            continue
        if not isinstance(c, Tensor) or c.dim() != 2 or rows is None or len(c) != len(rows):
            n = None if rows is None else len(rows)
            raise ValueError(
                f"{name}: expected a tensor of shape ({n}, context_dim), one row per data row, "
                f"got {tuple(c.shape) if isinstance(c, Tensor) else type(c).__name__}"
            )
    if (x_val is not None) and ((context is None) != (context_val is None)):
        raise ValueError("context_val: give it exactly when context is given (and x_val)")
    old_threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            if cfg.seed is not None:
                torch.manual_seed(cfg.seed)
            return _Loop(model, (x, context), (x_val, context_val), cfg, callback).run()
    finally:
        torch.set_num_threads(old_threads)


def split_validation(
    x: Tensor, fraction: float, gen: torch.Generator, context: Tensor | None = None
) -> tuple:
    """Shuffle ``x`` and hold out ``fraction`` of it (2 to 2,000 rows): ``(train, val)``, or
    ``(train, val, context_train, context_val)`` when a ``context`` is given."""
    n_val = min(2000, max(2, int(round(fraction * len(x)))))
    if len(x) - n_val < 2:
        raise ValueError(
            f"x: {len(x)} rows are too few to hold out {n_val} for validation; pass more rows, "
            "x_val, or val_fraction=0"
        )
    order = torch.randperm(len(x), generator=gen).to(x.device)
    if context is None:
        return x[order[n_val:]], x[order[:n_val]]
    return x[order[n_val:]], x[order[:n_val]], context[order[n_val:]], context[order[:n_val]]


def validation_nll(
    model: nn.Module, x: Tensor, num_samples: int, seed: int, context: Tensor | None = None
) -> float:
    """Mean NLL of ``x`` under ``model`` (``inf`` if any row's is not finite), with the model's
    random draws seeded so that every call scores the same draw."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        args = (x,) if context is None else (x, context)
        if isinstance(model, NHF):
            lp = model.log_prob(*args, num_samples=num_samples)
        else:
            lp = model.log_prob(*args)
    model.train(was_training)
    lp = lp.double()
    if not torch.isfinite(lp).all():
        return math.inf
    return -lp.mean().item()


class _Loop:
    """The state of one :func:`fit` call."""

    def __init__(self, model, data, val, cfg: FitConfig, callback) -> None:
        self.model, self.cfg, self.callback = model, cfg, callback
        self.gen = torch.Generator().manual_seed(0 if cfg.seed is None else cfg.seed)
        (x, c), (x_val, c_val) = data, val
        if x_val is None and cfg.val_fraction > 0:
            if c is None:
                x, x_val = split_validation(x, cfg.val_fraction, self.gen)
            else:
                x, x_val, c, c_val = split_validation(x, cfg.val_fraction, self.gen, c)
        self.x, self.x_val, self.c, self.c_val = x, x_val, c, c_val
        self.batch = min(cfg.batch_size, len(x))
        self.opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.lr_scale = 1.0
        self.result = FitResult(config=asdict(cfg))
        self.grad_norms: list[float] = []
        self.best_state = None
        self.ema: dict | None = None
        self.val_seed = 0 if cfg.seed is None else cfg.seed

    def record(self, entry: dict) -> None:
        self.result.history.append(entry)
        if self.callback is not None:
            self.callback(entry)

    def progress(self) -> float:
        cfg, r = self.cfg, self.result
        parts = []
        if cfg.max_steps is not None:
            parts.append(r.steps / cfg.max_steps)
        if cfg.max_time is not None:
            parts.append(r.seconds / cfg.max_time)
        return max(parts)

    def set_lr(self) -> float:
        lr = self.cfg.lr * self.lr_scale
        if self.cfg.schedule == "cosine":
            lr *= cosine_factor(self.progress())
        for group in self.opt.param_groups:
            group["lr"] = lr
        return lr

    def step(self, lr: float) -> float | None:
        """One optimiser step; the loss, or ``None`` when it was skipped."""
        idx = torch.randint(len(self.x), (self.batch,), generator=self.gen).to(self.x.device)
        if self.c is None:
            loss = self.model.forward_kld(self.x[idx])
        else:
            loss = self.model.forward_kld(self.x[idx], self.c[idx])
        self.opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            return None
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item()
        if not math.isfinite(norm):
            self.opt.zero_grad(set_to_none=True)
            return None
        if self.cfg.clip is not None and len(self.grad_norms) >= 10:
            limit = self.cfg.clip * sorted(self.grad_norms)[len(self.grad_norms) // 2]
            if norm > limit:
                for p in params:
                    p.grad.mul_(limit / norm)
        self.grad_norms = (self.grad_norms + [norm])[-100:]
        self.opt.step()
        self.update_average()
        return loss.item()

    def update_average(self) -> None:
        if self.cfg.average is None:
            return
        params = dict(self.model.named_parameters())
        if self.ema is None:  # after the first step, which may initialise data-dependent layers
            self.ema = {k: v.detach().clone() for k, v in params.items()}
            return
        with torch.no_grad():
            for k, v in params.items():
                self.ema[k].lerp_(v.detach(), 1 - self.cfg.average)

    def swap_average(self) -> None:
        """Exchange the model's weights with their moving average (a second call undoes it)."""
        if self.ema is None:
            return
        with torch.no_grad():
            for k, v in self.model.named_parameters():
                tmp = v.detach().clone()
                v.copy_(self.ema[k])
                self.ema[k] = tmp

    def restore(self, reason: str) -> None:
        """Put the best state back (the start, if none yet) and halve the learning rate."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )
        self.lr_scale /= 2
        self.grad_norms = []
        self.result.restores += 1
        self.ema = None
        self.record({"event": "restored", "step": self.result.steps, "reason": reason})

    def validate(self, train_losses: list[float], lr: float) -> bool:
        """Score the validation rows; keep the state if best. ``False`` to stop early."""
        r, cfg = self.result, self.cfg
        entry = {"step": r.steps, "seconds": round(r.seconds, 3), "lr": lr}
        entry["train_loss"] = sum(train_losses) / len(train_losses) if train_losses else math.nan
        if self.x_val is None:
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.record(entry)
            return True
        t0 = time.process_time()
        self.swap_average()  # score (and keep) the averaged weights, if averaging
        nll = validation_nll(self.model, self.x_val, cfg.val_samples, self.val_seed, self.c_val)
        r.seconds += time.process_time() - t0
        entry["val_nll"] = nll
        self.record(entry)
        if not math.isfinite(nll):
            self.restore("non-finite validation score")
            return True
        if nll < r.best_val_nll:
            r.best_val_nll, r.best_step = nll, r.steps
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.since_best = 0
        else:
            self.since_best += 1
        self.swap_average()
        return cfg.patience is None or self.since_best < cfg.patience

    def run(self) -> FitResult:
        r, cfg, model = self.result, self.cfg, self.model
        model.train()
        self.since_best = 0
        self.best_state = copy.deepcopy(model.state_dict())
        bar = _progress_bar(cfg)
        losses: list[float] = []
        bad_run = 0
        try:
            while self.progress() < 1.0:
                lr = self.set_lr()
                t0 = time.process_time()
                try:
                    loss = self.step(lr)
                except (ValueError, RuntimeError) as err:
                    if r.steps == 0:
                        raise  # the model cannot take this data at all: the user's error
                    loss, reason = None, f"{type(err).__name__}: {err}"
                    self.restore(reason)
                r.seconds += time.process_time() - t0
                r.steps += 1
                if loss is None:
                    r.skipped_steps += 1
                    bad_run += 1
                    self.record({"event": "skipped", "step": r.steps})
                    if bad_run >= 5:
                        self.restore("5 steps in a row with a non-finite loss or gradient")
                        bad_run = 0
                else:
                    bad_run = 0
                    losses.append(loss)
                if r.steps % cfg.eval_every == 0 or self.progress() >= 1.0:
                    keep_going = self.validate(losses, lr)
                    losses = []
                    if bar is not None:
                        bar.set_postfix(val_nll=f"{r.best_val_nll:.3f}", refresh=False)
                    if not keep_going:
                        r.stopped_early = True
                        break
                if bar is not None:
                    bar.n = round(min(self.progress(), 1.0) * 1000)
                    bar.refresh()
        except KeyboardInterrupt:  # Ctrl-C ends training early and keeps the best state
            self.record({"event": "interrupted", "step": r.steps})
        finally:
            if bar is not None:
                bar.close()
        model.load_state_dict(self.best_state)
        model.eval()
        return r


def _progress_bar(cfg: FitConfig):
    if not cfg.verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=1000, desc="fit", bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}")
