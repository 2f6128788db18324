"""training.model / train / run / CLI: shapes, learning, determinism, the run folder.

Runs are tiny (a few synthetic maps, a few epochs) so the file stays fast;
the figures of a full run are in the README, each with its command.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from training.data import load_training_data, to_tensor
from training.model import LATENT_SHAPE, ConvAutoencoder
from training.train import COURSE_REPORT_MSE, Recipe, evaluate, train

from test_training_data import toy, write_layouts

TINY = dict(epochs=3, batch_size=8, val_split=0.0, threads=1)
STATE_KEYS = [
    "encoder.conv1.weight", "encoder.conv1.bias", "encoder.conv2.weight", "encoder.conv2.bias",
    "encoder.conv3.weight", "encoder.conv3.bias", "decoder.t_conv1.weight", "decoder.t_conv1.bias",
    "decoder.t_conv2.weight", "decoder.t_conv2.bias", "decoder.t_conv3.weight", "decoder.t_conv3.bias",
]


def test_model_shapes_and_keys():
    model = ConvAutoencoder().eval()
    x = to_tensor(toy(4)[0])
    with torch.no_grad():
        z = model.encoder(x)
        y = model(x)
    assert tuple(z.shape) == (4, *LATENT_SHAPE) == (4, 64, 3, 3)
    assert tuple(y.shape) == (4, 3, 26, 26)
    assert float(y.min()) > 0 and float(y.max()) < 1  # sigmoid outputs
    assert list(model.state_dict()) == STATE_KEYS


def test_evaluate_figures_on_known_outputs():
    x = to_tensor(toy(5)[0])
    perfect = evaluate(nn.Identity(), x)
    assert perfect == {"mse": 0.0, "accuracy": 1.0, "defect_recall": 1.0}

    class Half(nn.Module):
        def forward(self, t):
            return torch.full_like(t, 0.5)

    half = evaluate(Half(), x)
    assert half["mse"] == pytest.approx(0.25)

    class AllNormal(nn.Module):
        def forward(self, t):
            out = torch.zeros_like(t)
            out[:, 1] = 1
            return out

    normal = evaluate(AllNormal(), x)
    share_normal = float((x.argmax(1) == 1).float().mean())
    assert normal["accuracy"] == pytest.approx(share_normal)
    assert normal["defect_recall"] == 0.0
    # every die wrong in 2 of 3 channels, except the normal ones: mse = 2/3 of the non-normal share
    assert normal["mse"] == pytest.approx((1 - share_normal) * 2 / 3)


def test_short_training_lowers_the_loss():
    x = to_tensor(toy(32)[0])
    torch.manual_seed(0)
    before = evaluate(ConvAutoencoder(), x)["mse"]
    res = train(x, Recipe(**{**TINY, "epochs": 4}))
    after = res.metrics["train_mse"]
    assert after < 0.8 * before
    assert res.history.train_mse[-1] == pytest.approx(after)
    assert len(res.history.train_loss) == len(res.history.lr) == 4
    assert not res.model.training  # returned in eval mode


def test_same_seed_same_weights_and_history_other_seed_differs():
    x = to_tensor(toy(24)[0])
    a = train(x, Recipe(**TINY, seed=3))
    b = train(x, Recipe(**TINY, seed=3))
    c = train(x, Recipe(**TINY, seed=4))
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    assert a.history.as_dict() == b.history.as_dict()
    assert a.history.train_loss != c.history.train_loss
    assert not torch.equal(a.model.state_dict()["encoder.conv1.weight"], c.model.state_dict()["encoder.conv1.weight"])


@pytest.mark.parametrize("schedule", ["constant", "onecycle", "cosine"])
def test_schedules_peak_at_the_given_lr(schedule):
    x = to_tensor(toy(16)[0])
    res = train(x, Recipe(**{**TINY, "epochs": 6, "batch_size": 4}, schedule=schedule, lr=2e-3), eval_every_epoch=False)
    lrs = res.history.lr
    assert max(lrs) <= 2e-3 + 1e-12
    if schedule == "constant":
        assert lrs == [2e-3] * 6
    else:  # warm up, then decay below the start
        peak = lrs.index(max(lrs))
        assert 0 < peak < 5 and lrs[-1] < lrs[peak] and lrs[0] < lrs[peak]


def test_bce_loss_and_clip_run():
    x = to_tensor(toy(16)[0])
    res = train(x, Recipe(**TINY, loss="bce", clip=0.5, optimizer="adamw"))
    assert np.isfinite(res.metrics["train_mse"])
    assert res.history.train_loss[-1] > res.history.train_mse[-1]  # BCE is not the MSE that is reported


def test_recipe_defaults_and_choices():
    from edge_infer.errors import InputError

    # the shipped recipe keeps the course's epochs and batch size
    assert (Recipe().epochs, Recipe().batch_size) == (100, 61)
    course = Recipe.course()
    assert (course.lr, course.weight_decay, course.schedule, course.loss, course.optimizer) == (1e-3, 1e-5, "constant", "mse", "adam")
    with pytest.raises(InputError, match="--schedule must be one of constant, onecycle, cosine"):
        Recipe(schedule="linear")
    with pytest.raises(InputError, match="--val-split"):
        dataclasses.replace(Recipe(), val_split=1.0)


# ------------------------------------------------------------ the run folder


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One CLI run on synthetic maps with a held-out check, shared by the tests below."""
    from typer.testing import CliRunner

    from training.__main__ import app

    root = tmp_path_factory.mktemp("run")
    maps, labels = toy(20)
    data, _ = write_layouts(root, maps, labels)["folder"]
    out = root / "runs" / "tiny"
    result = CliRunner().invoke(
        app, ["--data", str(data), "--out", str(out), "--epochs", "3", "--batch-size", "8", "--val-split", "0.25", "-q"]
    )
    assert result.exit_code == 0, result.output
    return out, data, result.output


def test_run_folder_contents(tiny_run):
    out, data, output = tiny_run
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["checkpoint.pt", "history.json", "history.csv", "loss.png", "metrics.json"]
    )
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    assert output.startswith(f"wrote {out}: training MSE ")
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["format"] == "edge-infer-checkpoint" and ckpt["format_version"] == 1
    assert list(ckpt["model"]) == STATE_KEYS
    assert ckpt["recipe"] == {**Recipe().as_dict(), "epochs": 3, "batch_size": 8, "val_split": 0.25}
    assert ckpt["data"]["n_maps"] == 20 and ckpt["data"]["path"] == str(data)
    assert ckpt["data"]["sha256"] == load_training_data(data).sha256
    assert set(ckpt["versions"]) >= {"torch", "python", "edge_infer"}

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("train_mse", "train_accuracy", "train_defect_recall", "holdout_val_mse", "holdout_val_accuracy",
                "holdout_val_defect_recall", "holdout_train_mse", "epochs", "seconds"):
        assert key in metrics and metrics[key] is not None, key
    assert metrics["n_train"] == 20 and metrics["holdout_n_train"] == 15 and metrics["holdout_n_val"] == 5
    assert metrics["epochs"] == 3 and metrics["course_report_train_mse"] == COURSE_REPORT_MSE
    assert {k: metrics[k] for k in ckpt["metrics"]} == json.loads(json.dumps(ckpt["metrics"]))

    # the saved weights are the ones the metrics describe
    model = ConvAutoencoder()
    model.load_state_dict(ckpt["model"])
    x = to_tensor(load_training_data(data).maps)
    assert evaluate(model, x)["mse"] == pytest.approx(metrics["train_mse"], rel=1e-6)

    history = json.loads((out / "history.json").read_text())
    assert len(history["final"]["train_loss"]) == 3 and len(history["holdout"]["val_mse"]) == 3
    assert history["final"]["train_mse"][-1] == pytest.approx(metrics["train_mse"])
    assert history["holdout"]["val_mse"][-1] == pytest.approx(metrics["holdout_val_mse"])
    assert (out / "history.csv").read_text().splitlines()[0] == "epoch,train_loss,train_mse,lr"


def test_checkpoint_loads_in_the_exporter(tiny_run):
    pytest.importorskip("export.checkpoint")
    from export.checkpoint import load_checkpoint

    ck = load_checkpoint(tiny_run[0])
    assert ck.metrics["epochs"] == 3 and ck.data["n_maps"] == 20


def test_force_replaces_a_run_whole(tmp_path):
    from typer.testing import CliRunner

    from training.__main__ import app

    maps, labels = toy(8)
    data, _ = write_layouts(tmp_path, maps, labels)["folder"]
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"an old run")
    (out / "stale.txt").write_text("old run")
    args = ["--data", str(data), "--out", str(out), "--epochs", "1", "--val-split", "0", "-q", "--force"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not (out / "stale.txt").exists() and (out / "checkpoint.pt").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert "holdout_val_mse" not in metrics and "no held-out check" in metrics["validation"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "loose", "run", "wafer.zip"]


def test_interrupted_run_leaves_nothing(tmp_path):
    from training.run import train_run

    maps, labels = toy(8)
    data, _ = write_layouts(tmp_path, maps, labels)["folder"]
    td = load_training_data(data)
    out = tmp_path / "runs" / "cut"

    def progress(title, total):
        def cb(epoch, step, loss):
            if epoch == 2:
                raise KeyboardInterrupt

        return cb

    with pytest.raises(KeyboardInterrupt):
        train_run(td, out, Recipe(**TINY), progress=progress)
    assert not out.exists()
    assert not (out.parent.exists() and list(out.parent.iterdir()))


def test_failure_while_writing_keeps_the_old_run(tmp_path, monkeypatch):
    import training.plots

    maps, labels = toy(8)
    td = load_training_data(*write_layouts(tmp_path, maps, labels)["paths"])
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"previous run")
    (out / "old.txt").write_text("previous run")

    def broken_plot(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(training.plots, "plot_loss", broken_plot)
    from training.run import train_run

    with pytest.raises(OSError, match="disk full"):
        train_run(td, out, dataclasses.replace(Recipe(**TINY), epochs=1), force=True)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "loose", "run", "wafer.zip"]


def test_short_run_on_the_course_data(wafer_zip, tmp_path):
    """Two epochs on a 244-map subset of the real maps: the loop runs and learns."""
    td = load_training_data(wafer_zip)
    x = to_tensor(td.maps[::5][:244])
    torch.manual_seed(0)
    before = evaluate(ConvAutoencoder(), x)["mse"]
    res = train(x, Recipe(epochs=2, val_split=0.0))
    assert res.metrics["train_mse"] < 0.8 * before
    assert res.metrics["n_train"] == 244


def test_training_leaves_no_global_torch_state():
    x = to_tensor(toy(8)[0])
    threads, flag = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(x, Recipe(**{**TINY, "epochs": 1, "threads": threads + 1}))
    assert torch.equal(torch.rand(3), expected)  # the caller's RNG stream is untouched
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, flag)


def _train_cli(tmp_path, stderr):
    """`python -m training` as the README runs it: no -q, so the progress path runs."""
    import subprocess
    import sys

    from conftest import REPO

    maps, labels = toy(8)
    data, _ = write_layouts(tmp_path, maps, labels)["folder"]
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "training", "--data", str(data), "--out", str(out),
           "--epochs", "2", "--batch-size", "4", "--val-split", "0"]
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=300)
    return proc, out


def test_cli_progress_lines_when_stderr_is_not_a_terminal(tmp_path):
    import subprocess

    proc, out = _train_cli(tmp_path, subprocess.PIPE)
    assert proc.returncode == 0, proc.stderr
    assert "100%" in proc.stderr and "epoch 2" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "checkpoint.pt").exists() and "wrote" in proc.stdout


def test_cli_progress_bar_on_a_terminal(tmp_path):
    """On a terminal the progress is a tqdm bar (needs the train extra's tqdm)."""
    import os
    import pty

    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    # A new pty is 0×0, and tqdm draws nothing in zero columns.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        proc, out = _train_cli(tmp_path, follower)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    shown = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, shown
    assert "step/s" in shown or "steps/s" in shown or "s/step" in shown, shown
    assert "Traceback" not in shown and (out / "checkpoint.pt").exists()


def test_force_never_replaces_a_folder_that_is_not_a_run(tmp_path):
    from typer.testing import CliRunner

    from training.__main__ import app

    maps, labels = toy(8)
    data, _ = write_layouts(tmp_path, maps, labels)["folder"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    args = ["--data", str(data), "--out", str(precious), "--epochs", "1", "--val-split", "0", "-q", "--force"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "not a training run; refusing to replace it" in result.output
    assert (precious / "thesis.tex").read_text() == "years of work"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".keep").write_text("")
    args[3] = str(empty)
    result = CliRunner().invoke(app, args[:-1])  # an empty placeholder folder is filled without --force
    assert result.exit_code == 0, result.output
    assert (empty / "checkpoint.pt").exists()
