"""Dataset cache: determinism, on-the-fly vs materialised images, refusals, CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hamflow_hgn import data
from hamflow_hgn.data import (
    DataConfig,
    DatasetError,
    generate,
    make_loader,
    open_dataset,
    render_states,
    simulate,
)
from hamflow_hgn.data.systems import get_system

CFG = DataConfig("two_body", n_train=7, n_test=3, steps=6, size=16, seed=0)
FILES = ["train_clean.npy", "train_noisy.npy", "test_clean.npy", "test_noisy.npy"]


def _bytes(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in FILES + ["metadata.json"]}


@pytest.fixture(scope="module")
def cached(tmp_path_factory) -> Path:
    return generate(CFG, tmp_path_factory.mktemp("cache") / "ds", workers=1, progress=False)


def test_shapes_dtypes_and_range(cached):
    ds = open_dataset(cached, "train", expect=CFG, return_states=True)
    assert ds.states.shape == (7, 6, 8) and ds.states.dtype == np.float32
    assert ds.clean_states.shape == (7, 6, 8) and ds.clean_states.dtype == np.float32
    images, states = ds[2]
    assert images.shape == (6, 3, 16, 16) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    assert torch.equal(states, torch.from_numpy(ds.states[2]))
    assert len(open_dataset(cached, "test")) == 3
    size = sum((cached / name).stat().st_size for name in FILES)
    assert size < 2 * 10 * 6 * 8 * 4 + 4 * 200  # float32 states plus .npy headers


def test_stored_clean_states_conserve_energy(cached):
    ds = open_dataset(cached, "test")
    energy = ds.system.hamiltonian(np.asarray(ds.clean_states, dtype=np.float64))
    drift = np.abs(energy - energy[:, :1]).max(1) / np.abs(energy[:, 0])
    assert drift.max() < 1e-5  # float32 storage; float64 conservation is in test_data_systems


def test_same_seed_same_bytes_any_worker_count(cached, tmp_path, monkeypatch):
    monkeypatch.setattr(simulate, "CHUNK_SIZE", 3)  # several chunks, so the pool is used
    a = generate(CFG, tmp_path / "a", workers=1, progress=False)
    b = generate(CFG, tmp_path / "b", workers=2, progress=False)
    files_a, files_b = _bytes(a), _bytes(b)
    for name in FILES:
        assert files_a[name] == files_b[name], name
    monkeypatch.undo()
    again = generate(CFG, tmp_path / "again", workers=1, progress=False)
    for name in FILES:
        assert _bytes(again)[name] == _bytes(cached)[name], name
    x, y = open_dataset(again), open_dataset(cached)
    assert torch.equal(x.render_batch(range(7)), y.render_batch(range(7)))


def test_different_seed_different_data(cached, tmp_path):
    other = generate(
        DataConfig("two_body", 7, 3, steps=6, size=16, seed=1), tmp_path, 1, progress=False
    )
    assert not np.array_equal(open_dataset(other).states, open_dataset(cached).states)


def test_materialized_images_equal_on_the_fly(cached):
    paths = data.materialize(cached, batch=3, progress=False)
    for path, split in zip(paths, ("train", "test")):
        stored = np.load(path, mmap_mode="r")
        ds = open_dataset(cached, split)
        assert stored.dtype == np.uint8 and stored.shape == (len(ds), 6, 3, 16, 16)
        from_file = torch.from_numpy(np.array(stored)).float() / 255
        assert torch.equal(ds.render_batch(range(len(ds))), from_file)
        assert torch.equal(ds[1], from_file[1])
    meta = json.loads((cached / "metadata.json").read_text())
    assert set(meta["images"]) == {"train_images.npy", "test_images.npy"}


def test_loader_batches(cached):
    ds = open_dataset(cached, return_states=True)
    batches = list(make_loader(ds, batch_size=3, shuffle=True, seed=0))
    assert [b[0].shape[0] for b in batches] == [3, 3, 1]
    images, states = batches[0]
    assert images.shape == (3, 6, 3, 16, 16) and states.shape == (3, 6, 8)


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_mismatched_request_lists_fields_and_command(cached):
    want = DataConfig("two_body", n_train=7, n_test=3, steps=8, size=32, seed=0)
    with pytest.raises(DatasetError) as info:
        open_dataset(cached, expect=want)
    msg = str(info.value)
    assert "steps: stored 6, expected 8" in msg and "size: stored 16, expected 32" in msg
    assert "seed" not in msg.split("Regenerate")[0]
    assert "python -m hamflow_hgn.data --system two_body" in msg and "--steps 8" in msg
    assert isinstance(info.value, ValueError)


def test_corrupt_file_is_refused(cached, tmp_path):
    bad = _copy(cached, tmp_path / "bad")
    raw = bytearray((bad / "train_noisy.npy").read_bytes())
    raw[-5] ^= 0xFF
    (bad / "train_noisy.npy").write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="train_noisy.npy: sha256 mismatch.*Regenerate with"):
        open_dataset(bad)
    open_dataset(bad, "test")  # the other split is intact


def test_truncated_file_is_refused(cached, tmp_path):
    bad = _copy(cached, tmp_path / "bad")
    raw = (bad / "test_clean.npy").read_bytes()
    (bad / "test_clean.npy").write_bytes(raw[:-40])
    with pytest.raises(DatasetError, match="test_clean.npy"):
        open_dataset(bad, "test")
    with pytest.raises(DatasetError, match="unreadable or truncated"):
        open_dataset(bad, "test", verify=False)


def test_bad_metadata_is_refused(cached, tmp_path):
    with pytest.raises(DatasetError, match="no metadata.json"):
        open_dataset(tmp_path)
    bad = _copy(cached, tmp_path / "bad")
    meta = json.loads((bad / "metadata.json").read_text())
    meta["format_version"] = 99
    (bad / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="format_version expected 1, got 99"):
        open_dataset(bad)
    (bad / "metadata.json").write_text("{not json")
    with pytest.raises(DatasetError, match="corrupt metadata"):
        open_dataset(bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"system": "spring"}, "system: expected one of"),
        ({"size": 7}, "size: expected an int >= 8, got 7"),
        ({"n_train": 0}, "n_train: expected an int >= 1, got 0"),
        ({"n_test": -1}, "n_test: expected an int >= 1, got -1"),
        ({"steps": 0}, "steps: expected an int >= 2, got 0"),
        ({"dt": 0.0}, "dt: expected a finite float > 0, got 0.0"),
    ],
)
def test_config_validation(kwargs, message):
    args = {"system": "pendulum", "n_train": 4, "n_test": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        DataConfig(**args)


def test_system_accessors(cached):
    ds = open_dataset(cached)
    assert ds.system is get_system("two_body") and ds.config == CFG


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "hamflow_hgn.data", "--system", "pendulum", "--n-train", "4"]
    cmd += ["--n-test", "2", "--steps", "5", "--size", "8", "--seed", "3", "--out", str(out)]
    done = subprocess.run(cmd + ["--materialize"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "%" in done.stderr  # tqdm progress bar
    ds = open_dataset(out, "test", expect=DataConfig("pendulum", 4, 2, steps=5, size=8, seed=3))
    stored = torch.from_numpy(np.load(out / "test_images.npy")).float() / 255
    assert torch.equal(ds.render_batch([0, 1]), stored)
    bad = subprocess.run(cmd[:-2] + ["--size", "4", "--out", str(out)], capture_output=True)
    assert bad.returncode != 0 and b"size: expected an int >= 8, got 4" in bad.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--workers", "0"], "--workers: expected an integer >= 1, got 0"),
        (["--size", "24"], "size: expected a power of two from 8 to 256"),
    ],
)
def test_cli_refuses_what_training_would_refuse(tmp_path, capsys, argv, message):
    from hamflow_hgn.data.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["--system", "pendulum", "--out", str(tmp_path / "x"), *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_materialized_images_are_hashed_and_checked(cached, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(cached, copy)
    data.materialize(copy, batch=3, progress=False)
    images = data.load_images(copy, "test")
    assert images.dtype == np.uint8 and images.shape[0] == CFG.n_test
    raw = bytearray((copy / "test_images.npy").read_bytes())
    raw[-1] ^= 0xFF
    (copy / "test_images.npy").write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="test_images.npy: sha256 mismatch"):
        data.load_images(copy, "test")


def test_unguarded_script_with_workers_gets_a_clear_error(tmp_path):
    """'spawn' workers re-import the calling script; without a __main__ guard that must say so."""
    n = simulate.CHUNK_SIZE + 1  # two chunks, so the process pool is used
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from hamflow_hgn.data import DataConfig, generate\n"
        f"generate(DataConfig('mass_spring', n_train={n}, n_test=2, steps=3, size=8),\n"
        f"         {str(tmp_path / 'out')!r}, workers=2, progress=False)\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode != 0
    assert "RuntimeError: generate: a worker process died" in proc.stderr
    assert 'if __name__ == "__main__":' in proc.stderr
    assert not (tmp_path / "out" / "metadata.json").exists()


def test_replay_at_speed_one_and_two_is_the_stored_truth(cached):
    """Replaying a sequence reproduces its stored clean frames; at speed 2, every other frame."""
    ds = open_dataset(cached, "test")
    stored = render_states(torch.from_numpy(ds.clean_states[[0, 2]]), ds.system, CFG.size)
    once = ds.replay([0, 2], speed=1.0)
    assert once.shape == stored.shape == (2, 6, 3, 16, 16)
    # the same solver from the same (float32) first state: equal up to an 8-bit level in a pixel
    assert (once - stored).abs().max() <= 1.5 / 255
    twice = ds.replay([0, 2], speed=2.0, frames=3)
    assert (twice - stored[:, ::2]).abs().max() <= 1.5 / 255
    # and a speed-2 replay runs past the data: its frames differ from the data's own
    assert (ds.replay([0], speed=2.0) - stored[:1]).abs().max() > 0.1
    half = ds.replay([1], speed=0.5, frames=5)
    assert (half[:, ::2] - ds.replay([1], speed=1.0, frames=3)).abs().max() <= 1.5 / 255


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"indices": [0], "speed": 0.0}, "speed: expected a finite number > 0"),
        ({"indices": [0], "speed": float("nan")}, "speed: expected a finite number > 0"),
        ({"indices": [0], "speed": True}, "speed: expected a finite number > 0"),
        ({"indices": [3], "speed": 1.0}, "indices: expected sequence numbers from 0 to 2"),
        ({"indices": [0], "speed": 1.0, "frames": 0}, "frames: expected an int >= 1"),
    ],
)
def test_replay_refuses_bad_requests(cached, kwargs, message):
    with pytest.raises(ValueError, match=message):
        open_dataset(cached, "test").replay(**kwargs)
