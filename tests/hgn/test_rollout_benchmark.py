"""benchmarks/hgn_rollouts.py publishes a merged table: rows run again replace their old
selves, the other published rows stay unless their option's flags changed, and the caption's
one command makes every row."""

import pytest
import torch
from _benchmarks import benchmark_module
from hypothesis import assume, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def bench():
    with benchmark_module("hgn_rollouts_merge", "hgn_rollouts.py") as module:
        yield module


def _row(option, seed, x2=0.5, command=None):
    row = {"option": option, "seed": seed, "x2": {"frames": x2}}
    return row if command is None else {**row, "command": command}


def test_merge_keeps_rows_not_rerun_and_replaces_those_rerun(bench):
    options = {"paper_span": ["--steps", "3000"], "confined_1dof": ["--c", "1.8"]}
    earlier = {
        "command": "old",
        "settings": {"options": dict(options)},
        "rows": [_row("confined_1dof", 0, 0.1), _row("paper_span", 0), _row("confined_1dof", 1)],
    }
    rows = bench.merge(earlier, [_row("confined_1dof", 0, 0.9, "new")], options)
    assert [(r["option"], r["seed"], r["command"]) for r in rows] == [
        ("paper_span", 0, "old"),
        ("confined_1dof", 0, "new"),
        ("confined_1dof", 1, "old"),
    ]
    assert rows[1]["x2"]["frames"] == 0.9  # the rerun replaced the old row, not added to it


def test_merge_drops_rows_whose_option_changed_or_vanished(bench):
    earlier = {
        "command": "old",
        "settings": {"options": {"a": ["--steps", "1000"], "gone": ["--x"]}},
        "rows": [_row("a", 0), _row("gone", 0)],
    }
    assert bench.merge(earlier, [], {"a": ["--steps", "2000"]}) == []
    assert [r["option"] for r in bench.merge(earlier, [], {"a": ["--steps", "1000"]})] == ["a"]


def test_merge_refuses_a_file_it_did_not_write(bench):
    with pytest.raises(ValueError, match="earlier"):
        bench.merge({"table": []}, [], {})


def test_whole_command_names_every_row_and_publishes(bench):
    rows = [_row("paper_span", 0), _row("confined_1dof", 0), _row("confined_1dof", 1),
            _row("long", 11)]  # fmt: skip
    words = bench.whole_command(rows).split()
    args = words[2:]
    assert words[:2] == ["python", "benchmarks/hgn_rollouts.py"] and args[-1] == "--publish"
    assert args[: args.index("--seeds")] == ["--options", "paper_span", "confined_1dof"]
    assert args[args.index("--more") + 1 : -1] == ["confined_1dof:1", "long:11"]


SAME_IN_QUICK = ("--confinement", "--state-channels", "--latent-size", "--hamiltonian-lr",
                 "--hamiltonian-width", "--variant", "--latent-consistency")  # fmt: skip
"""Flags that make an option what it is: its ``--quick`` twin keeps their values."""


def _value(flags, name):
    return flags[flags.index(name) + 1] if name in flags else None


def test_every_option_parses_and_its_quick_twin_keeps_what_makes_it(bench):
    example = bench._example()
    assert set(bench.QUICK) == set(bench.OPTIONS)
    for option, flags in bench.OPTIONS.items():
        quick = bench.QUICK[option]
        for stage in [*bench.stages(flags), *bench.stages([*quick, "--steps", "30"])]:
            example.parse_args(stage)  # a misspelt flag or bad value exits
        for name in SAME_IN_QUICK:
            assert _value(quick, name) == _value(flags, name), (option, name)
        assert ("--kl-warmup-steps" in quick) == ("--kl-warmup-steps" in flags), option
        assert ("--encoder-frames" in quick) == ("--encoder-frames" in flags), option


@settings(max_examples=30, deadline=None)
@given(
    a=st.floats(-3, 3),
    b=st.floats(-5, 5),
    truth=st.lists(st.floats(2.0, 5.0), min_size=3, max_size=12, unique=True),
)
def test_slope_of_a_line_is_its_gradient(bench, a, b, truth):
    t = torch.tensor(truth, dtype=torch.float64)
    assume(float(t.std()) > 0.05)
    assert bench.slope(a * t + b, t) == pytest.approx(a, abs=1e-9)


def test_escape_step_is_the_first_window_below_the_threshold(bench):
    steps = list(range(10, 110, 10))
    flat = [1.0] * 10
    assert bench.escape_step(steps, flat, 1.0) is None
    drop = [1.0] * 6 + [0.5] * 4  # windows of 5 ending at step 70: 0.9, 80: 0.8, 90: 0.7
    assert bench.escape_step(steps, drop, 1.0) == 90
    assert bench.escape_step(steps, drop, 2.0) == 50  # every window below 0.8 x 2
    assert bench.escape_step(steps[:4], [0.1] * 4, 1.0) is None  # shorter than one window


def test_markdown_shows_the_period_slope_and_escape_step(bench):
    share = {"frames": 0.5, "sequences": 0.25}
    row = {
        "option": "a", "seed": 0, "frames": 16, "encoder_frames": 16, "train_steps": 3000,
        "in_span_ratio": 0.3, "in_span_tracked": share, "x2": share, "x4": share,
        "period": {"learned_5_95": [3.0, 3.5], "slope": 0.456}, "escape_step": 750,
    }  # fmt: skip
    old = {**row, "period": {"learned_5_95": [3.0, 3.5]}}
    del old["escape_step"]
    never = {**row, "escape_step": None}
    lines = bench.markdown([row, old, never], "cmd").splitlines()
    body = [line for line in lines if line.startswith("| a |")]
    assert body[0].endswith("| 3.0-3.5 (0.46) | 750 |")
    assert body[1].endswith("| 3.0-3.5 | - |")
    assert body[2].endswith("| never |")
