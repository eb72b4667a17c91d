"""The shared training loop: convergence, schedules, checkpoints and exact resumption, DDP replicas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from collagekit.errors import CollagekitError
from collagekit.training import TrainingConfig, load_weights, lr_factor, save_weights, train


class Regression(nn.Module):
    """Fit y = x @ w_true + noise: a loss that a working optimiser must drive down."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch
        # Noise drawn from the global RNG, which train() reseeds per step: resumption must replay it.
        pred = self.linear(x) + 0.01 * torch.randn_like(y)
        loss = (pred - y).pow(2).mean()
        return loss, {"mse": loss.detach()}


W_TRUE = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def make_batch(step: int, rank: int, world_size: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(step * 7919 + rank)
    x = torch.randn(32, 4, generator=g)
    return x, x @ W_TRUE


def config(**changes) -> TrainingConfig:
    base = dict(steps=60, lr=0.05, log_every=10, checkpoint_every=1000, lr_schedule="constant")
    return TrainingConfig(**{**base, **changes})


def test_loss_goes_down_and_history_is_logged() -> None:
    torch.manual_seed(0)
    result = train(Regression(), make_batch, config())
    assert [e["step"] for e in result.history] == [10, 20, 30, 40, 50, 60]
    assert result.history[-1]["loss"] < 0.05 * result.history[0]["loss"]
    assert set(result.history[0]) == {"step", "loss", "mse"}


def test_schedules() -> None:
    cosine = TrainingConfig(steps=110, warmup_steps=10)
    assert lr_factor(0, cosine) == pytest.approx(0.1)
    assert lr_factor(9, cosine) == pytest.approx(1.0)
    assert lr_factor(10, cosine) == pytest.approx(1.0)
    assert lr_factor(60, cosine) == pytest.approx(0.5)
    assert lr_factor(109, cosine) < 0.01
    assert lr_factor(50, TrainingConfig(lr_schedule="constant")) == 1.0


class Crash(Exception):
    pass


def test_a_crashed_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    cfg = config(steps=30, lr_schedule="cosine", warmup_steps=3, checkpoint_every=4)
    torch.manual_seed(1)
    straight = Regression()
    initial = {k: v.clone() for k, v in straight.state_dict().items()}
    train(straight, make_batch, cfg)

    def crashing_batch(step: int, rank: int, world_size: int):
        if step == 14:
            raise Crash
        return make_batch(step, rank, world_size)

    crashed = Regression()
    crashed.load_state_dict(initial)
    with pytest.raises(Crash):
        train(crashed, crashing_batch, cfg, out_dir=tmp_path)
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 12

    restarted = Regression()  # a fresh process: everything must come from the checkpoint
    result = train(restarted, make_batch, cfg, out_dir=tmp_path)
    assert result.resumed_from == 12
    assert [e["step"] for e in result.history] == [10, 20, 30]
    for a, b in zip(straight.parameters(), restarted.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)

    finished = train(Regression(), make_batch, cfg, out_dir=tmp_path)  # nothing left to do
    assert finished.resumed_from == 30


def test_divergence_is_a_clear_error() -> None:
    class Exploding(Regression):
        def forward(self, batch):
            loss, metrics = super().forward(batch)
            return loss * float("nan"), metrics

    with pytest.raises(CollagekitError, match="diverged at step 0"):
        train(Exploding(), make_batch, config(steps=3))


def test_weights_round_trip_and_mismatch_errors(tmp_path: Path) -> None:
    model = Regression()
    save_weights(model, tmp_path / "m.safetensors", {"model": "regression", "version": "1"})
    other = Regression()
    assert load_weights(other, tmp_path / "m.safetensors") == {"model": "regression", "version": "1"}
    torch.testing.assert_close(other.linear.weight, model.linear.weight)

    with pytest.raises(CollagekitError, match="do not fit this model"):
        load_weights(nn.Linear(3, 1), tmp_path / "m.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CollagekitError, match="not a readable safetensors file"):
        load_weights(model, tmp_path / "bad.safetensors")
    with pytest.raises(CollagekitError, match="no weights file"):
        load_weights(model, tmp_path / "missing.safetensors")


DDP_WORKER = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_training import Regression, make_batch, config
    from collagekit.training import train
    torch.manual_seed(int(__import__("os").environ["RANK"]))  # different initial weights per rank
    model = Regression()
    result = train(model, make_batch, config(steps=8, log_every=4), out_dir={out!r})
    rank = int(__import__("os").environ["RANK"])
    torch.save({{"params": [p.detach() for p in model.parameters()], "history": result.history}}, {out!r} + f"/rank{{rank}}.pt")
    """
)


def test_torchrun_two_cpu_processes_keep_identical_replicas(tmp_path: Path) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER.format(tests=str(Path(__file__).parent), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for a, b in zip(ranks[0]["params"], ranks[1]["params"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Each rank logged its own data's loss: different batches, so different numbers.
    assert ranks[0]["history"][0]["loss"] != ranks[1]["history"][0]["loss"]
    # Only rank 0 wrote the checkpoint, at the end.
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 8


@pytest.mark.gpu
def test_training_on_cuda_matches_the_cpu_loss_curve() -> None:
    torch.manual_seed(0)
    cpu_model = Regression()
    cuda_model = Regression()
    cuda_model.load_state_dict(cpu_model.state_dict())
    cpu = train(cpu_model, make_batch, config(steps=20))
    cuda = train(cuda_model, lambda *a: tuple(t.cuda() for t in make_batch(*a)), config(steps=20), device="cuda")
    assert next(cuda_model.parameters()).is_cuda
    assert cuda.history[-1]["loss"] == pytest.approx(cpu.history[-1]["loss"], rel=0.2, abs=1e-3)
