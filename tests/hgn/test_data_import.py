"""Importing your own frames (hamflow-data import / import_frames): the end-to-end path to
training, every refusal, the deterministic hash and split, and corrupt files.

Arrays are tiny (8x8 or 16x16 frames, a few sequences) so the file runs in seconds on 2 cores.
"""

import copy
import dataclasses
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hamflow_hgn.config import ModelConfig, TrainConfig
from hamflow_hgn.data import DatasetError, ImportConfig, import_frames, open_dataset
from hamflow_hgn.data.__main__ import main as data_main
from hamflow_hgn.data.imported import FRAME_SIZES
from hamflow_hgn.evaluate import evaluate
from hamflow_hgn.models import build_model
from hamflow_hgn.runs import load_run
from hamflow_hgn.train import train


def moving_squares(n: int, t: int, size: int, seed: int = 0) -> np.ndarray:
    """``(n, t, size, size, 3)`` uint8: a coloured square moving one pixel a frame."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, t, size, size, 3), np.uint8)
    for i in range(n):
        r, c = rng.integers(0, size - 3, 2)
        color = rng.integers(64, 256, 3)
        for k in range(t):
            cc = (c + k) % (size - 3)
            x[i, k, r : r + 3, cc : cc + 3] = color
    return x


def as_images(x: np.ndarray) -> torch.Tensor:
    """What the dataset should give back for source frames ``x``: float, channels first."""
    return torch.from_numpy(x.transpose(0, 1, 4, 2, 3).astype(np.float32) / 255.0)


def test_import_then_train_end_to_end(tmp_path):
    torch.set_num_threads(1)
    x = moving_squares(12, 5, 16)
    np.save(tmp_path / "frames.npy", x)
    assert data_main(["import", str(tmp_path / "frames.npy"), "--out", str(tmp_path / "ds"),
                      "--no-progress"]) == 0  # fmt: skip
    train_set, test_set = (
        open_dataset(tmp_path / "ds", "train"),
        open_dataset(tmp_path / "ds", "test"),
    )
    assert (len(train_set), len(test_set)) == (10, 2)
    assert (train_set.config.steps, train_set.config.size) == (5, 16)
    # every source sequence lands in exactly one split, pixel for pixel
    got = torch.cat([train_set.render_batch(range(10)), test_set.render_batch(range(2))])
    want = as_images(x)
    matches = [[bool(torch.equal(g, w)) for w in want] for g in got]
    assert sorted(row.index(True) for row in matches) == list(range(12))
    assert torch.equal(train_set[3], train_set.render_batch([3])[0])

    cfg = TrainConfig(
        data=str(tmp_path / "ds"), out=str(tmp_path / "run"), model=ModelConfig.reduced(8),
        steps=2, batch_size=4, log_every=1, progress=False, device="cpu",
    )  # fmt: skip
    run = train(cfg)
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and all(np.isfinite(float(v)) for v in rows[-1].split(","))
    loaded = load_run(run, device="cpu")
    assert (loaded.config.model.frames, loaded.config.model.image_size) == (5, 16)
    with torch.no_grad():
        frames = loaded.model.rollout(test_set.render_batch([0, 1])).frames
    assert frames.shape == (2, 5, 3, 16, 16)
    # hamflow-evaluate scores it by pixels and leaves out the body tracking
    # (tests/hgn/test_evaluate_imported.py); a baseline that needs the system says so
    metrics = evaluate(run, device="cpu", rollouts=0, max_sequences=2)
    assert metrics["splits"]["test"]["tracking"] is None and "tracking" in metrics["skipped"]
    with pytest.raises(ValueError, match="no simulated system .*system.state_dim"):
        build_model(dataclasses.replace(cfg, model_name="pixel_hnn_mlp"), train_set)


def test_hash_and_split_are_deterministic(tmp_path):
    x = moving_squares(10, 3, 8)
    a = import_frames(x, tmp_path / "a", seed=3)
    b = import_frames(x, tmp_path / "b", seed=3)
    c = import_frames(x, tmp_path / "c", seed=4)
    meta = {k: json.loads((p / "metadata.json").read_text()) for k, p in zip("abc", (a, b, c))}
    assert meta["a"]["content_hash"] == meta["b"]["content_hash"]
    for name in ("train_images.npy", "test_images.npy"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert meta["a"]["content_hash"] != meta["c"]["content_hash"]
    assert open_dataset(a, "train").content_hash == meta["a"]["content_hash"]
    # another seed draws another test split from the same sequences
    test_a = open_dataset(a, "test").render_batch([0, 1])
    test_c = open_dataset(c, "test").render_batch([0, 1])
    assert not torch.equal(test_a, test_c)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(2, 40),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**31),
)
def test_split_is_a_partition(tmp_path_factory, n, fraction, seed):
    x = np.arange(n, dtype=np.uint8)[:, None, None, None, None] * np.ones((1, 2, 8, 8, 3), np.uint8)
    out = import_frames(x, tmp_path_factory.mktemp("p"), test_fraction=fraction, seed=seed)
    tags = []
    for split in ("train", "test"):
        ds = open_dataset(out, split)
        tags += (ds.render_batch(range(len(ds)))[:, 0, 0, 0, 0] * 255).round().long().tolist()
    assert sorted(tags) == list(range(n))
    n_test = len(open_dataset(out, "test"))
    assert 1 <= n_test <= n - 1 and n_test == min(n - 1, max(1, round(fraction * n)))


def test_folder_of_arrays_is_pooled_and_npz_keys(tmp_path):
    src = tmp_path / "clips"
    src.mkdir()
    np.save(src / "a.npy", moving_squares(3, 4, 8, seed=1))
    np.savez(src / "b.npz", moving_squares(2, 4, 8, seed=2))
    (src / "notes.txt").write_text("ignored")
    out = import_frames(src, tmp_path / "ds", test_fraction=0.2)
    assert len(open_dataset(out, "train")) + len(open_dataset(out, "test")) == 5
    two = tmp_path / "two.npz"
    np.savez(two, video=moving_squares(3, 4, 8), other=np.zeros(3))
    with pytest.raises(
        ValueError, match=r"key: .*\['video', 'other'\]|key: .*\['other', 'video'\]"
    ):
        import_frames(two, tmp_path / "k")
    assert len(open_dataset(import_frames(two, tmp_path / "k", key="video"), "train")) == 2


@pytest.mark.parametrize(
    "array, error, pattern",
    [
        (moving_squares(4, 3, 8).astype(np.float32), TypeError, r"dtype uint8 .*got float32"),
        (moving_squares(4, 3, 8)[0], ValueError, r"\(N, T, H, W, 3\).*\(3, 8, 8, 3\).*array\[None"),
        (moving_squares(4, 3, 8).transpose(0, 1, 4, 2, 3), ValueError, r"channels first"),
        (np.zeros((4, 3, 24, 24, 3), np.uint8), ValueError, r"sizes \(8, 16, .*got 24x24"),
        (np.zeros((4, 3, 16, 32, 3), np.uint8), ValueError, r"square frames.*got 16x32"),
        (np.zeros((4, 1, 8, 8, 3), np.uint8), ValueError, r"at least 2 frames.*got T=1"),
        (np.zeros((1, 3, 8, 8, 3), np.uint8), ValueError, r"at least 2 sequences.*got 1"),
        ([[1, 2]], TypeError, r"source: expected a numpy array, got list"),
    ],
)  # fmt: skip
def test_bad_arrays_are_refused(tmp_path, array, error, pattern):
    with pytest.raises(error, match=pattern):
        import_frames(array, tmp_path / "ds")
    assert not (tmp_path / "ds" / "metadata.json").exists()


def test_bad_arguments_are_refused(tmp_path):
    x = moving_squares(4, 3, 8)
    with pytest.raises(ValueError, match=r"source: expected at least 6 frames.*frames=6.*got T=3"):
        import_frames(x, tmp_path / "a", frames=6)
    with pytest.raises(ValueError, match=r"test_fraction: expected a number in \(0, 1\), got 1"):
        import_frames(x, tmp_path / "a", test_fraction=1)
    with pytest.raises(ValueError, match="source: no file or folder"):
        import_frames(tmp_path / "missing.npy", tmp_path / "a")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .npy or .npz files"):
        import_frames(tmp_path / "empty", tmp_path / "a")
    # --frames keeps the first frames of each sequence
    out = import_frames(x, tmp_path / "b", frames=2)
    assert open_dataset(out, "train").render_batch([0]).shape == (1, 2, 3, 8, 8)


def test_inconsistent_folder_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", moving_squares(2, 4, 8))
    np.save(tmp_path / "b.npy", moving_squares(2, 5, 8))
    with pytest.raises(ValueError, match=r"a\.npy has \(4, 8, 8\).*b\.npy has \(5, 8, 8\)"):
        import_frames(tmp_path, tmp_path / "ds")


def test_corrupt_source_files_are_refused(tmp_path):
    np.save(tmp_path / "ok.npy", moving_squares(4, 3, 8))
    raw = (tmp_path / "ok.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match=r"cut\.npy: unreadable or corrupt \.npy"):
        import_frames(tmp_path / "cut.npy", tmp_path / "ds")
    (tmp_path / "junk.npz").write_bytes(b"not a zip archive")
    with pytest.raises(DatasetError, match=r"junk\.npz: unreadable or corrupt \.npz"):
        import_frames(tmp_path / "junk.npz", tmp_path / "ds")
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as z:
        z.writestr("frames.npy", b"\x93NUMPY garbage")
    with pytest.raises(DatasetError, match=r"bad\.npz: unreadable or corrupt"):
        import_frames(tmp_path / "bad.npz", tmp_path / "ds")


def test_corrupt_or_modified_dataset_is_refused(tmp_path):
    out = import_frames(moving_squares(6, 3, 8), tmp_path / "ds")
    path = out / "train_images.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"train_images\.npy: sha256 mismatch.*Re-import"):
        open_dataset(out, "train")
    assert len(open_dataset(out, "test")) == 1  # the untouched split still opens
    meta = json.loads((out / "metadata.json").read_text())
    meta["config"]["n_train"] = 4
    (out / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="content_hash does not match"):
        open_dataset(out, "test")


def test_imported_data_refuses_what_needs_a_simulator(tmp_path):
    out = import_frames(moving_squares(4, 3, 8), tmp_path / "ds")
    ds = open_dataset(out, "test")
    with pytest.raises(ValueError, match="replay: .*no simulator"):
        ds.replay([0], 2.0)
    with pytest.raises(ValueError, match="no simulated system .*system.colors"):
        ds.system.colors  # noqa: B018
    twin = pickle.loads(pickle.dumps(copy.deepcopy(ds)))  # DataLoader workers pickle it
    assert torch.equal(twin.render_batch([0]), ds.render_batch([0]))
    with pytest.raises(ValueError, match="return_states: .*imported frames"):
        open_dataset(out, "test", return_states=True)
    expect = ImportConfig("other", n_train=3, n_test=1, steps=3, size=8)
    with pytest.raises(DatasetError, match="name: stored 'frames', expected 'other'"):
        open_dataset(out, "test", expect=expect)


def test_frame_sizes_are_exactly_those_the_model_takes():
    for size in range(4, 300):
        try:
            ModelConfig(image_size=size)
            model_ok = True
        except ValueError:
            model_ok = False
        assert model_ok == (size in FRAME_SIZES), size


def test_cli_reports_errors_with_exit_status_2(tmp_path, capsys):
    np.save(tmp_path / "f.npy", np.zeros((4, 3, 8, 8, 3), np.float64))
    assert data_main(["import", str(tmp_path / "f.npy"), "--out", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "expected dtype uint8" in err and "float64" in err
