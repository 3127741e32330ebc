"""Training presets (``hamflow-train --preset``): the default is the dataclasses' defaults, the
small preset is what examples/pendulum_hgn.py trained with, and explicit flags override them."""

import dataclasses

import pytest

from hamflow_hgn.config import (
    GECO_SETTINGS,
    TRAIN_PRESETS,
    ModelConfig,
    TrainConfig,
    TrainPreset,
)
from hamflow_hgn.train import _parser as train_parser
from hamflow_hgn.train import config_from_args

BASE = ["--data", "D", "--out", "R"]

# examples/pendulum_hgn.py's settings as they stood before it read the preset: FULL's width 16,
# encoder_width 32, latent_channels 4 and steps 3000; GECO_SETTING "calibrated"; LATENT_PRIOR
# "matched"; LR 1e-3; HAMILTONIAN_LR 3e-4; LR_DECAY 0.3 (prior warm-up and batch: defaults).
EXAMPLE_MODEL = ModelConfig.reduced(
    16, encoder_widths=(32,) * 7, latent_channels=4, latent_prior="matched",
    prior_warmup_steps=ModelConfig().prior_warmup_steps, **GECO_SETTINGS["calibrated"],
)  # fmt: skip
EXAMPLE_TRAIN = dict(steps=3000, lr=1e-3, hamiltonian_lr=3e-4, lr_decay=0.3, batch_size=16)


def cli(*flags: str) -> TrainConfig:
    return config_from_args(train_parser().parse_args(BASE + list(flags)))


def test_small_preset_is_what_the_example_trained_with():
    small = TRAIN_PRESETS["small"]
    assert small.model_config() == EXAMPLE_MODEL
    cfg = small.train_config("D", "R")
    assert cfg.model == EXAMPLE_MODEL
    assert {k: getattr(cfg, k) for k in EXAMPLE_TRAIN} == EXAMPLE_TRAIN
    assert cli("--preset", "small") == cfg  # the CLI builds the same config


def test_example_trains_with_the_small_preset():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "examples" / "pendulum_hgn.py"
    spec = importlib.util.spec_from_file_location("pendulum_hgn_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    small = TRAIN_PRESETS["small"]
    assert (example.LR, example.HAMILTONIAN_LR, example.LR_DECAY) == (1e-3, 3e-4, 0.3)
    assert (example.GECO_SETTING, example.LATENT_PRIOR) == ("calibrated", "matched")
    full = {k: example.FULL[k] for k in ("width", "encoder_width", "latent_channels", "steps")}
    assert full == {"width": 16, "encoder_width": 32, "latent_channels": 4, "steps": 3000}
    assert full == {k: getattr(small, k) for k in full}


def test_default_preset_is_the_paper_default_and_the_cli_default():
    assert TRAIN_PRESETS["default"].train_config("D", "R") == TrainConfig("D", "R")
    assert cli() == TrainConfig("D", "R", model=ModelConfig())
    assert cli("--preset", "default") == cli()
    assert cli().model.encoder_widths == (32, 64, 64, 64, 64, 64, 64)  # A.1's


def test_explicit_flags_override_the_preset():
    small = TRAIN_PRESETS["small"].train_config("D", "R")
    cfg = cli("--preset", "small", "--lr", "2e-3", "--steps", "50", "--geco-setting", "default")
    assert (cfg.lr, cfg.steps, cfg.model.kl_balance) == (2e-3, 50, "geco")
    assert cfg.hamiltonian_lr == small.hamiltonian_lr and cfg.lr_decay == small.lr_decay
    assert cfg.model.latent_prior == "matched" and cfg.model.encoder_widths == (32,) * 7
    # --width replaces every width of the preset, z's channels included ...
    wide = cli("--preset", "small", "--width", "8").model
    assert wide == ModelConfig.reduced(8, latent_prior="matched", **GECO_SETTINGS["calibrated"])
    # ... and --encoder-width / --latent-channels apply over it, or over the preset's
    assert cli("--preset", "small", "--latent-channels", "2").model == dataclasses.replace(
        EXAMPLE_MODEL, latent_channels=2
    )
    mixed = cli("--preset", "small", "--width", "8", "--encoder-width", "12").model
    assert mixed.encoder_widths == (12,) * 7 and mixed.decoder_width == mixed.latent_channels == 8
    zero = cli("--preset", "small", "--lr-decay", "0", "--latent-prior", "standard")
    assert zero.lr_decay == 0.0 and zero.model.latent_prior == "standard"


def test_help_says_which_preset_to_pick(capsys):
    with pytest.raises(SystemExit):
        train_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, preset in TRAIN_PRESETS.items():
        assert f"{name}: {' '.join(preset.summary.split())}" in text
    assert "--preset small: 0.001" in text and "(default: 0.00015)" in text
    with pytest.raises(SystemExit):
        train_parser().parse_args(BASE + ["--preset", "huge"])


def test_a_bad_preset_is_refused():
    with pytest.raises(ValueError, match=r"geco_setting: expected one of \[.*\], got 'nope'"):
        TrainPreset("x", geco_setting="nope")
    with pytest.raises(ValueError, match="width: expected an integer >= 1, got 0"):
        TrainPreset("x", width=0)
