"""genir.checkpoint as both training loops use it: atomic folders, a fresh run never resumes an earlier run's
checkpoints, the retrieval loop's first-format checkpoints still resume, the recommendation loop's old in-place
checkpoints are refused with a message naming the fix, fingerprints name what differs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from genir import checkpoint
from genir.rec.training import fit
from genir.train import TensorBatches, latest_checkpoint, train_model
from tests.test_model_train import TinyModel, tiny_cfg, tiny_data


class Interrupt(Exception):
    pass


def _stop_at(step_to_stop: int):
    def on_step(step: int, loss: float) -> None:
        if step == step_to_stop:
            raise Interrupt

    return on_step


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _train(workdir, data, *, init: dict, resume: bool = False, stop: int | None = None):
    model = TinyModel()
    model.load_state_dict(init)
    on_step = _stop_at(stop) if stop is not None else None
    result = train_model(model, data, tiny_cfg(), device="cpu", workdir=workdir, resume=resume, on_step=on_step)
    return model, result


def _other_data() -> TensorBatches:
    """As many examples as tiny_data, other targets: the example count alone cannot tell the two apart."""
    data = tiny_data()
    return TensorBatches(x=data.tensors["x"], codes=data.tensors["codes"].flip(0))


def test_a_fresh_run_never_resumes_an_earlier_runs_checkpoints(tmp_path):
    torch.manual_seed(0)
    init = _weights(TinyModel())
    _train(tmp_path, tiny_data(), init=init)  # an earlier run on other data left step-10 and step-12
    with pytest.raises(Interrupt):  # a fresh run (no resume) on new data, killed at step 7 (checkpoint at 5)
        _train(tmp_path, _other_data(), init=init, stop=7)
    assert [p.name for p in checkpoint.checkpoints(tmp_path / "checkpoints")] == ["step-00000005"]
    resumed, result = _train(tmp_path, _other_data(), init=init, resume=True)
    reference, _ = _train(tmp_path / "ref", _other_data(), init=init)
    assert result.resumed_from == 5
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_first_format_retrieval_checkpoints_still_resume(tmp_path):
    torch.manual_seed(0)
    init = _weights(TinyModel())
    reference, full = _train(tmp_path / "ref", tiny_data(), init=init)
    with pytest.raises(Interrupt):
        _train(tmp_path, tiny_data(), init=init, stop=7)
    state_file = latest_checkpoint(tmp_path / "checkpoints") / "state.json"
    state = json.loads(state_file.read_text())
    for key in ("settings", "data"):  # as the loop wrote it before genir.checkpoint
        del state[key]
    state_file.write_text(json.dumps({**state, "format": 1}))
    resumed, result = _train(tmp_path, tiny_data(), init=init, resume=True)
    assert result.resumed_from == 5 and result.final_loss == full.final_loss
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    # and a first-format checkpoint of other settings is refused like any other
    with pytest.raises(Interrupt):
        _train(tmp_path / "b", tiny_data(), init=init, stop=7)
    old = latest_checkpoint(tmp_path / "b" / "checkpoints") / "state.json"
    state = json.loads(old.read_text())
    state["train_config"]["lr"] = 0.5
    old.write_text(json.dumps({**{k: v for k, v in state.items() if k not in ("settings", "data")}, "format": 1}))
    with pytest.raises(ValueError, match=r"different run: training settings differ \(lr: 0.5 -> 0.01\)"):
        _train(tmp_path / "b", tiny_data(), init=init, resume=True)


def test_unknown_checkpoint_format_is_refused(tmp_path):
    folder = tmp_path / "step-00000001"
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="format 99, which this genir cannot read.*another --workdir"):
        checkpoint.read(folder)


def test_fingerprints_name_what_differs():
    base = checkpoint.fingerprint({"lr": 0.1, "dim": 8, "epochs": 3}, data=[np.arange(4)],
                                  leave_out=lambda name: name == "epochs")
    assert base.settings == {"lr": 0.1, "dim": 8}
    checkpoint.check_resumable("ck", base, checkpoint.fingerprint({"lr": 0.1, "dim": 8, "epochs": 9},
                                                                  data=[np.arange(4)], leave_out=lambda n: n == "epochs"))
    with pytest.raises(ValueError, match=r"settings differ \(dim: 8 -> 16\)"):
        checkpoint.check_resumable("ck", base, checkpoint.fingerprint({"lr": 0.1, "dim": 16}, data=[np.arange(4)]))
    with pytest.raises(ValueError, match="trained on other data"):
        checkpoint.check_resumable("ck", base, checkpoint.fingerprint({"lr": 0.1, "dim": 8}, data=[np.arange(5)]))
    # same bytes, other shape or dtype: other data
    assert checkpoint.fingerprint({}, data=[np.zeros(4)]).data != checkpoint.fingerprint({}, data=[np.zeros((2, 2))]).data


# ---------------------------------------------------------------------------------------------- recommendation loop
def _wobbly(model: nn.Module) -> dict[str, float]:
    """A validation metric that is a function of the weights (so a resumed run sees what the first one saw)
    and goes up and down (so the learning rate decays on some epochs)."""
    return {"m": float(torch.sin(1e3 * model.weight.detach().double().sum()))}


def _fit(model: nn.Module, folder, *, resume: bool, max_epochs: int = 3, validate=None):
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    y = x.sum(1, keepdim=True)

    def batches(rng: np.random.Generator):
        order = rng.permutation(64)
        for lo in range(0, 64, 16):
            yield x[order[lo:lo + 16]], y[order[lo:lo + 16]]

    scores = iter([0.5, 0.4, 0.6, 0.3, 0.7, 0.2])  # improvement, none (lr decays), improvement, ...
    return fit(model, batches=batches, loss_fn=lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(),
               validate=validate or (lambda: {"m": next(scores)}), metric="m", lr=0.05, max_epochs=max_epochs, patience=5,
               lr_decay=0.5, checkpoint_dir=folder, resume=resume,
               fingerprint=checkpoint.fingerprint({"lr": 0.05}, data=[x.numpy()]))


def test_rec_loop_writes_one_atomic_checkpoint_per_epoch(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    report = _fit(model, tmp_path, resume=False)
    [ck] = checkpoint.checkpoints(tmp_path)
    assert ck.name == "epoch-00000003" and sorted(p.name for p in ck.iterdir()) == [
        "best.safetensors", "model.safetensors", "optimizer.safetensors", "state.json"]
    state = checkpoint.read(ck)
    assert state["epoch"] == 3 and state["report"]["best_epoch"] == 3 == report.best_epoch
    assert state["lrs"] == [0.025]  # decayed once, after epoch 2
    assert not list(tmp_path.glob(".tmp-*"))


def test_rec_loop_refuses_old_in_place_checkpoints_and_a_fresh_run_removes_them(tmp_path):
    (tmp_path / "train_state.json").write_text("{}")
    (tmp_path / "last.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="older genir, written in place.*delete it, use another --workdir"):
        _fit(nn.Linear(4, 1), tmp_path, resume=True)
    _fit(nn.Linear(4, 1), tmp_path, resume=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-00000003"]


def test_rec_loop_killed_before_a_checkpoint_is_published_resumes_exactly(tmp_path, monkeypatch):
    """The window the old in-place writes had: epoch 2's files complete, not yet published."""
    torch.manual_seed(0)
    reference = nn.Linear(4, 1)
    init = _weights(reference)
    full = _fit(reference, tmp_path / "a", resume=False, max_epochs=5, validate=lambda: _wobbly(reference))

    class Kill(BaseException):
        pass

    points = []

    def crash_at_second_write(name: str) -> None:
        points.append(name)
        if points.count("checkpoint.written") == 2:
            raise Kill

    monkeypatch.setattr(checkpoint, "crash_point", crash_at_second_write)
    model = nn.Linear(4, 1)
    model.load_state_dict(init)
    with pytest.raises(Kill):
        _fit(model, tmp_path / "b", resume=False, max_epochs=5, validate=lambda: _wobbly(model))
    monkeypatch.undo()
    assert [p.name for p in checkpoint.checkpoints(tmp_path / "b")] == ["epoch-00000001"]
    resumed = nn.Linear(4, 1)  # a new process: everything comes from the checkpoint
    report = _fit(resumed, tmp_path / "b", resume=True, max_epochs=5, validate=lambda: _wobbly(resumed))
    assert [h["valid"] for h in report.history] == [h["valid"] for h in full.history]
    assert report.best_epoch == full.best_epoch and report.best_epoch < 5  # the kept weights are an earlier epoch's
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
