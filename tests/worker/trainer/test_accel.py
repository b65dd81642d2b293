"""The accelerated path: same results as the baseline where it must, resumable, and honest about
what it applied. CUDA-only checks skip on machines without CUDA."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from taas.app.spec import AccelerationSpec, CnnSpec, MlpSpec, ResnetSpec
from taas.worker.trainer.accel import (
    allowed_cores,
    free_cores,
    keep_threads_of_resumed_attempt,
    plan_acceleration,
)
from taas.worker.trainer.data import load_dataset
from taas.worker.trainer.feed import translate
from taas.worker.trainer.loop import TrainingPreempted, TrainResult, train
from tests.worker.trainer.fakes import RecordingContext, tiny_spec

CNN: dict[str, Any] = {"arch": "cnn", "channels": [8, 16], "hidden_size": 32}
# BatchNorm's running statistics need more steps than the tiny set has to settle.
BN_CNN: dict[str, Any] = {**CNN, "batch_norm": True}
# Settings under which the tiny convnets learn in a few epochs (as in test_loop.py).
LEARNABLE: dict[str, Any] = {
    "options": {"noise": 0.3},
    "lr": 0.003,
    "optimizer": "adam",
    "lr_schedule": "constant",
    "batch_size": 16,
}
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# torch.compile's internals warn differently from one torch release to the next; GPU machines
# bring their own build.
compile_warnings = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def run_spec(context: RecordingContext | None = None, **spec: Any) -> TrainResult:
    job = tiny_spec(**spec)
    return train(job, load_dataset(job, None), context or RecordingContext())


@pytest.mark.parametrize("model", [{"arch": "mlp", "hidden_sizes": [32]}, CNN])
def test_off_and_auto_reach_the_same_accuracy(model: dict[str, Any]) -> None:
    separable = {**LEARNABLE, "options": {"noise": 0.15}}
    off = run_spec(model=model, acceleration="off", epochs=5, **separable)
    auto = run_spec(model=model, acceleration="auto", epochs=5, **separable)

    assert off.acceleration["applied"] == []
    assert "data_on_device" in auto.acceleration["applied"]  # type: ignore[operator]
    assert off.test_accuracy >= 0.98
    assert auto.test_accuracy >= 0.98


def test_resume_from_a_mid_run_checkpoint_gives_the_same_final_weights() -> None:
    model = {**BN_CNN, "dropout": 0.2}  # the dropout RNG and BN statistics must be restored
    settings: dict[str, Any] = {"model": model, "acceleration": "off", "epochs": 4}
    whole = run_spec(**settings)

    # Stopped during epoch 3 (8 batches an epoch): the checkpoint after epoch 2 is the last.
    interrupted = RecordingContext(stop_after=8 * 2 + 3)
    first = run_spec(interrupted, **settings)
    assert first.stop_reason == "cancelled"
    assert [state["epoch"] for state in interrupted.checkpoints] == [1, 2]

    resumed = RecordingContext()
    resumed.resume_from = interrupted.checkpoints[-1]
    second = run_spec(resumed, **settings)

    assert [point.epoch for point in resumed.points] == [3, 4]
    assert second.epochs_completed == 4
    final, expected = second.model.state_dict(), whole.model.state_dict()
    assert all(torch.equal(final[name], expected[name]) for name in expected)
    assert second.test_accuracy == whole.test_accuracy


@pytest.mark.parametrize("acceleration", ["off", "auto"])
def test_a_run_preempted_mid_epoch_goes_on_from_that_batch_with_the_same_result(
    acceleration: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the CPU "auto" takes as many threads as the machine has free cores, and another count
    # sums in another order. The resume is exact because it keeps the count of the attempt it
    # resumes, whatever the load says then: here the load seems to change between attempts.
    monkeypatch.setattr("taas.worker.trainer.accel.free_cores", lambda: 2)
    # Dropout, EMA, augmentation and an evaluation half-way: all must carry over exactly.
    settings: dict[str, Any] = {
        "model": {**BN_CNN, "dropout": 0.2},
        "acceleration": acceleration,
        "epochs": 3,
        "evals_per_epoch": 2,
        "ema_decay": 0.9,
        "augment": {"flip": True, "translate": 1},
    }
    uninterrupted = RecordingContext()
    whole = run_spec(uninterrupted, **settings)

    # Preempted before the 6th of epoch 2's 8 batches, after its half-way evaluation.
    interrupted = RecordingContext(stop_after=8 + 6, preempted=True)
    with pytest.raises(TrainingPreempted, match="after 5 batches of epoch 2"):
        run_spec(interrupted, **settings)  # no final evaluation: the job is given back
    saved = interrupted.checkpoints[-1]
    assert (saved["epoch"], saved["within_epoch"]["batches_done"]) == (1, 5)
    assert saved["within_epoch"]["val"] is not None

    resumed = RecordingContext()
    resumed.resume_from = saved
    monkeypatch.setattr("taas.worker.trainer.accel.free_cores", lambda: 1)
    second = run_spec(resumed, **settings)

    assert any("5 batches into epoch 2" in message for message in resumed.messages)
    assert [point.epoch for point in resumed.points] == [2, 3]
    final, expected = second.model.state_dict(), whole.model.state_dict()
    assert all(torch.equal(final[name], expected[name]) for name in expected)
    assert second.test_accuracy == whole.test_accuracy
    epoch_2, expected_2 = resumed.points[0], uninterrupted.points[1]
    assert epoch_2.train_loss == pytest.approx(expected_2.train_loss, rel=1e-6)
    assert epoch_2.train_accuracy == expected_2.train_accuracy
    assert (epoch_2.val_loss, epoch_2.val_accuracy) == (
        expected_2.val_loss,
        expected_2.val_accuracy,
    )
    if acceleration == "auto":
        assert "2 CPU threads, as the attempt it resumes" in " ".join(resumed.messages)


def test_a_cancel_does_not_checkpoint_where_it_stopped() -> None:
    cancelled = RecordingContext(stop_after=8 + 6)  # the user's cancel, not a preemption

    run_spec(cancelled, model=CNN, epochs=3)

    assert [state["epoch"] for state in cancelled.checkpoints] == [1]
    assert "within_epoch" not in cancelled.checkpoints[0]


def test_checkpoints_hold_everything_a_resume_needs() -> None:
    context = RecordingContext()
    run_spec(context, model=CNN, epochs=2, ema_decay=0.9)

    (state,) = context.checkpoints  # after epoch 1; none after the last epoch
    assert state["epoch"] == 1
    assert {"model", "optimizer", "schedule", "order_rng", "torch_rng", "ema"} <= set(state)
    assert state["schedule"]["last_epoch"] == 8  # steps taken


def test_ema_exports_the_averaged_weights() -> None:
    plain = run_spec(model=CNN, epochs=3, **LEARNABLE)
    averaged = run_spec(model=CNN, epochs=3, ema_decay=0.5, **LEARNABLE)

    assert set(averaged.model.state_dict()) == set(plain.model.state_dict())
    changed = [
        name
        for name, tensor in averaged.model.state_dict().items()
        if tensor.is_floating_point() and not torch.equal(tensor, plain.model.state_dict()[name])
    ]
    assert changed  # same seed and data: only the averaging can make them differ
    assert averaged.test_accuracy > 0.8


def test_gradient_clipping_warmup_and_augmentation_train() -> None:
    settings = {**LEARNABLE, "lr_schedule": "cosine"}
    result = run_spec(
        model=CNN,
        epochs=4,
        grad_clip_norm=0.5,
        warmup_epochs=1,
        augment={"flip": True, "translate": 1},
        **settings,
    )
    assert result.test_accuracy > 0.8


def test_warmup_raises_the_learning_rate_linearly() -> None:
    context = RecordingContext()
    run_spec(context, epochs=3, warmup_epochs=2, lr_schedule="constant", lr=0.01)

    lrs = [point.lr for point in context.points]  # the lr of each epoch's last step
    assert lrs == pytest.approx([0.01 * 8 / 16, 0.01, 0.01])


def test_resnet_learns() -> None:
    resnet = {"arch": "resnet", "widths": [8, 16], "blocks_per_stage": 1}
    context = RecordingContext()
    result = run_spec(context, model=resnet, epochs=4, **LEARNABLE)

    losses = [point.train_loss for point in context.points]
    assert losses[-1] < losses[0]
    assert result.test_accuracy > 0.7  # 4 classes: chance is 0.25


def test_max_seconds_keeps_the_best_model_seen() -> None:
    context = RecordingContext()
    # fp32 throughout: bf16 validation may rank a model one test sample off its fp32 accuracy.
    result = run_spec(
        context,
        model=CNN,
        epochs=1000,
        max_seconds=0.5,
        evals_per_epoch=2,
        acceleration={"amp": False},
    )

    assert result.stop_reason == "max_seconds"
    assert context.points
    best = max(point.val_accuracy or 0.0 for point in context.points)
    assert result.test_accuracy >= best - 1e-9


def test_target_accuracy_is_checked_within_an_epoch() -> None:
    context = RecordingContext()
    result = run_spec(
        context, model=CNN, epochs=10, target_accuracy=0.5, evals_per_epoch=4, **LEARNABLE
    )

    assert result.stop_reason == "target_reached"
    assert result.epochs_completed == 1
    assert context.points[0].val_accuracy is not None
    assert context.points[0].val_accuracy >= 0.5


def test_translate_shifts_each_image_and_fills_with_zeros() -> None:
    image = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)
    images = image.repeat(2, 1, 1, 1)
    shifted = translate(images, torch.tensor([[1, 0], [0, -1]]), limit=1)

    assert torch.equal(shifted[0, 0, 1:], image[0, 0, :3])  # down by one row
    assert torch.equal(shifted[0, 0, 0], torch.zeros(4, dtype=torch.uint8))
    assert torch.equal(shifted[1, 0, :, :3], image[0, 0, :, 1:])  # left by one column
    assert torch.equal(shifted[1, 0, :, 3], torch.zeros(4, dtype=torch.uint8))


def test_plan_off_applies_nothing_and_says_why() -> None:
    plan = plan_acceleration("off", MlpSpec(), torch.device("cpu")).report()

    assert plan["applied"] == []
    assert set(plan["skipped"]) == {  # type: ignore[arg-type]
        "data_on_device", "amp", "channels_last", "pool_first", "fused_optimizer", "compile",
        "cuda_graphs",
    }  # fmt: skip


def test_plan_auto_on_cpu_skips_cuda_features_with_reasons() -> None:
    report = plan_acceleration("auto", CnnSpec(), torch.device("cpu")).report()

    skipped = report["skipped"]
    assert isinstance(skipped, dict)
    assert "needs a CUDA device" in skipped["cuda_graphs"]
    assert "compile" in skipped
    assert report["threads"] is not None


def test_plan_honours_explicit_switches() -> None:
    requested = AccelerationSpec(channels_last=False, fused_optimizer=False, threads=1)
    plan = plan_acceleration(requested, ResnetSpec(), torch.device("cpu"))

    assert plan.mode == "custom"
    assert not plan.channels_last
    assert not plan.fused_optimizer
    assert plan.threads == 1
    assert plan.data_on_device  # left to the trainer: auto's choice
    assert plan.reasons["channels_last"] == "set in the spec"


def test_pool_first_is_applied_to_max_pooled_cnns_only() -> None:
    cpu = torch.device("cpu")

    assert plan_acceleration("auto", CnnSpec(), cpu).pool_first
    assert not plan_acceleration("auto", CnnSpec(activation="gelu"), cpu).pool_first
    forced = plan_acceleration(AccelerationSpec(pool_first=True), ResnetSpec(), cpu)
    assert not forced.pool_first
    assert "max-pooling" in forced.reasons["pool_first"]


def test_pool_first_trains_exactly_like_the_standard_order() -> None:
    model = {**CNN, "channels": [8, 16], "pool_every": 1}
    first = run_spec(model=model, epochs=2, acceleration={"pool_first": False}, **LEARNABLE)
    second = run_spec(model=model, epochs=2, acceleration={"pool_first": True}, **LEARNABLE)

    assert first.acceleration["applied"] != second.acceleration["applied"]
    assert second.test_accuracy == pytest.approx(first.test_accuracy, abs=0.02)


def test_a_resume_keeps_its_thread_count_only_where_the_cores_allow_it() -> None:
    plan = plan_acceleration("auto", MlpSpec(), torch.device("cpu"))
    plan.threads = 1
    too_many = allowed_cores() + 1

    message = keep_threads_of_resumed_attempt(plan, too_many)

    assert plan.threads == 1
    assert message is not None
    assert f"used {too_many} CPU threads" in message
    assert "may differ in the last bits" in message
    assert keep_threads_of_resumed_attempt(plan, 1) is None  # the same count: nothing to say


def test_free_cores_is_between_one_and_the_allowed_cores() -> None:
    assert 1 <= free_cores(sample_seconds=0.05) <= (torch.get_num_threads() or 1) + 64


@cuda_only
@compile_warnings
@pytest.mark.parametrize("model", [{"arch": "mlp", "hidden_sizes": [32]}, CNN])
def test_cuda_auto_compiles_and_matches_the_cpu_baseline(model: dict[str, Any]) -> None:
    cpu = run_spec(model=model, acceleration="off", epochs=4)
    job = tiny_spec(model=model, epochs=4).model_copy(update={"device": "cuda"})
    cuda = train(job, load_dataset(job, None), RecordingContext())

    assert cuda.device == "cuda"
    assert {"compile", "cuda_graphs", "amp"} <= set(cuda.acceleration["applied"])  # type: ignore[arg-type]
    assert abs(cuda.test_accuracy - cpu.test_accuracy) <= 0.03


@cuda_only
@compile_warnings
def test_cuda_resume_restores_the_cuda_rng() -> None:
    context = RecordingContext()
    job = tiny_spec(model={**BN_CNN, "dropout": 0.2}, epochs=2).model_copy(
        update={"device": "cuda"}
    )
    train(job, load_dataset(job, None), context)
    assert "cuda_rng" in context.checkpoints[0]
