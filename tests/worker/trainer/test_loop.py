from __future__ import annotations

import math
from typing import Any, get_args

import pytest
import torch

from taas.app.spec import Activation, JobSpec, OptimizerName, ScheduleName
from taas.worker.trainer.data import load_dataset
from taas.worker.trainer.evaluation import EVAL_BATCH_SIZE, evaluate
from taas.worker.trainer.loop import TrainResult, pick_device, train
from taas.worker.trainer.run import MetricPoint
from tests.worker.trainer.fakes import TINY_BATCHES_PER_EPOCH, RecordingContext, tiny_spec

CNN = {"arch": "cnn", "channels": [8, 16], "hidden_size": 32}


def run(
    spec_model: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    acceleration: str | dict[str, Any] = "auto",
    **training: Any,
) -> tuple[TrainResult, RecordingContext]:
    spec = tiny_spec(spec_model, options, acceleration, **training)
    context = RecordingContext()
    return train(spec, load_dataset(spec, None), context), context


@pytest.mark.parametrize("model", [{"arch": "mlp", "hidden_sizes": [32]}, CNN])
def test_loss_falls_and_the_model_learns(model: dict[str, Any]) -> None:
    # Less noise than the default: a convnet finds per-pixel prototypes slower than an MLP does.
    settings = {"lr": 0.003, "lr_schedule": "constant", "optimizer": "adam", "batch_size": 16}
    result, context = run(model, {"noise": 0.3}, epochs=4, **settings)

    losses = [point.train_loss for point in context.points]
    assert len(context.points) == 4
    assert losses[-1] < 0.5 * losses[0]
    val_losses = [point.val_loss for point in context.points if point.val_loss is not None]
    assert len(val_losses) == 4
    assert val_losses[-1] < val_losses[0]
    assert result.test_accuracy > 0.9  # 4 classes: chance is 0.25
    assert result.stop_reason == "completed"
    assert result.epochs_completed == 4


def test_result_describes_the_trained_model() -> None:
    result, context = run(CNN, epochs=1)

    assert not result.model.training
    assert all(p.device.type == "cpu" for p in result.model.parameters())
    assert result.parameter_count == sum(p.numel() for p in result.model.parameters())
    assert result.device == "cpu"
    assert result.acceleration["mode"] == "auto"
    applied, skipped = result.acceleration["applied"], result.acceleration["skipped"]
    assert isinstance(applied, list)
    assert isinstance(skipped, dict)
    assert {"data_on_device", "channels_last", "fused_optimizer"} <= set(applied)
    assert {"compile", "cuda_graphs"} <= set(skipped)  # CUDA only
    assert all(skipped.values())  # every skipped switch says why
    assert 0.0 <= result.test_accuracy <= 1.0
    point = context.points[0]
    assert point.epoch == 1
    assert point.epoch_seconds > 0
    assert point.samples_per_second == pytest.approx(256 / point.epoch_seconds)
    assert set(point.to_json()) == {
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "epoch_seconds",
        "samples_per_second",
    }


def test_final_metrics_are_the_last_epochs_test_metrics_on_cpu() -> None:
    result, context = run(epochs=2)

    assert context.points[-1].val_accuracy == result.test_accuracy
    assert context.points[-1].val_loss == pytest.approx(result.test_loss, rel=1e-6)


@pytest.mark.parametrize("acceleration", ["off", {"threads": 2}])
def test_same_seed_gives_identical_training(acceleration: str | dict[str, Any]) -> None:
    # The accelerated path is deterministic too once its thread count is fixed.
    model = {**CNN, "dropout": 0.2}  # dropout masks must follow the seed too
    first, first_context = run(model, acceleration=acceleration, epochs=2)
    second, second_context = run(model, acceleration=acceleration, epochs=2)
    _, other_context = run(model, acceleration=acceleration, epochs=2, seed=1)

    def comparable(points: list[MetricPoint]) -> list[tuple[Any, ...]]:
        return [(p.train_loss, p.train_accuracy, p.val_loss, p.val_accuracy, p.lr) for p in points]

    assert comparable(first_context.points) == comparable(second_context.points)
    assert (first.test_accuracy, first.test_loss) == (second.test_accuracy, second.test_loss)
    state, again = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(state[name], again[name]) for name in state)
    assert comparable(first_context.points) != comparable(other_context.points)


def test_should_stop_cancels_within_one_batch() -> None:
    spec = tiny_spec(epochs=3)
    context = RecordingContext(stop_after=3)

    result = train(spec, load_dataset(spec, None), context)

    assert result.stop_reason == "cancelled"
    assert context.stop_checks == 3  # asked before each batch; two batches ran, then it stopped
    assert result.epochs_completed == 0
    assert context.points == []
    assert 0.0 <= result.test_accuracy <= 1.0  # still a usable, evaluated model
    assert not result.model.training


def test_should_stop_in_a_later_epoch_keeps_the_completed_epochs() -> None:
    spec = tiny_spec(epochs=3)
    context = RecordingContext(stop_after=TINY_BATCHES_PER_EPOCH + 2)

    result = train(spec, load_dataset(spec, None), context)

    assert result.stop_reason == "cancelled"
    assert result.epochs_completed == 1
    assert [point.epoch for point in context.points] == [1]


def test_uncancelled_run_checks_should_stop_before_every_batch() -> None:
    _, context = run(epochs=2)

    assert context.stop_checks == 2 * TINY_BATCHES_PER_EPOCH


def test_target_accuracy_stops_early() -> None:
    result, context = run(epochs=20, target_accuracy=0.8, lr_schedule="constant")

    assert result.stop_reason == "target_reached"
    assert result.epochs_completed < 20
    assert len(context.points) == result.epochs_completed
    assert context.points[-1].val_accuracy is not None
    assert context.points[-1].val_accuracy >= 0.8
    assert all(p.val_accuracy is not None and p.val_accuracy < 0.8 for p in context.points[:-1])


def test_max_seconds_stops_training() -> None:
    result, context = run(epochs=50, max_seconds=1e-9)

    assert result.stop_reason == "max_seconds"
    assert result.epochs_completed == 0
    assert context.points == []


@pytest.mark.parametrize("activation", get_args(Activation))
def test_every_activation_trains(activation: str) -> None:
    result, context = run({"arch": "mlp", "hidden_sizes": [16], "activation": activation}, epochs=1)

    assert math.isfinite(context.points[0].train_loss)
    assert math.isfinite(result.test_loss)


@pytest.mark.parametrize("optimizer", get_args(OptimizerName))
def test_every_optimizer_trains(optimizer: str) -> None:
    result, context = run(optimizer=optimizer, epochs=1, weight_decay=0.01)

    assert math.isfinite(context.points[0].train_loss)
    assert result.test_accuracy > 0.25


def test_sgd_with_nesterov_trains_and_needs_momentum() -> None:
    result, _ = run(optimizer="sgd", nesterov=True, momentum=0.9, epochs=1)
    assert math.isfinite(result.test_loss)

    with pytest.raises(ValueError, match=r"nesterov=True needs training\.momentum > 0"):
        run(optimizer="sgd", nesterov=True, momentum=0.0, epochs=1)


@pytest.mark.parametrize("schedule", get_args(ScheduleName))
def test_every_schedule_trains(schedule: str) -> None:
    result, context = run(lr_schedule=schedule, epochs=1)

    assert math.isfinite(context.points[0].train_loss)
    assert context.points[0].lr > 0
    assert math.isfinite(result.test_loss)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("constant", [0.01, 0.01, 0.01, 0.01]),
        ("step", [0.01, 0.01, 0.001, 0.0001]),  # x0.1 after 1/2 and again after 3/4 of steps
    ],
)
def test_schedule_sets_the_learning_rate_per_epoch(schedule: str, expected: list[float]) -> None:
    # The reported lr is that of each epoch's last step: steps 8, 16, 24 and 32 of 32.
    _, context = run(lr_schedule=schedule, epochs=4, lr=0.01)

    assert [point.lr for point in context.points] == pytest.approx(expected)


def test_cosine_and_onecycle_end_near_zero_and_onecycle_peaks_at_lr() -> None:
    _, cosine = run(lr_schedule="cosine", epochs=4, lr=0.01)
    _, onecycle = run(lr_schedule="onecycle", epochs=4, lr=0.01)

    cosine_lrs = [point.lr for point in cosine.points]
    assert cosine_lrs == sorted(cosine_lrs, reverse=True)
    assert cosine_lrs[-1] < 1e-4
    onecycle_lrs = [point.lr for point in onecycle.points]
    assert max(onecycle_lrs) <= 0.01
    assert onecycle_lrs[0] > onecycle_lrs[-1]
    assert onecycle_lrs[-1] < 1e-4


def test_label_smoothing_raises_the_reported_training_loss() -> None:
    _, plain = run(epochs=1)
    _, smoothed = run(epochs=1, label_smoothing=0.2)

    # Same weights for the first step; a smoothed target can never be fit to zero loss.
    assert smoothed.points[0].train_loss > plain.points[0].train_loss


def test_batch_norm_trains_when_the_last_batch_would_hold_one_sample() -> None:
    spec = tiny_spec(
        {"arch": "mlp", "hidden_sizes": [16], "batch_norm": True},
        options={"train_size": 65},
        batch_size=32,
        epochs=1,
    )
    context = RecordingContext()

    result = train(spec, load_dataset(spec, None), context)

    assert result.stop_reason == "completed"
    assert context.stop_checks == 2  # two batches of 32; the lone 65th sample is left out


def test_evaluate_counts_correct_predictions_over_eval_batches() -> None:
    result, _ = run(epochs=1)
    spec = tiny_spec()
    dataset = load_dataset(spec, None)
    x = dataset.test_x.repeat(10, 1, 1, 1)  # 1280 samples: two evaluation batches
    y = dataset.test_y.repeat(10)
    assert len(y) > EVAL_BATCH_SIZE
    result.model.train()

    loss, accuracy = evaluate(result.model, x, y, result.preprocess, torch.device("cpu"))

    with torch.no_grad():
        result.model.eval()
        logits = result.model(result.preprocess.apply(x))
    assert accuracy == (logits.argmax(dim=1) == y).sum().item() / len(y)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert accuracy == result.test_accuracy  # the same 128 samples, ten times


def test_evaluate_restores_the_training_mode() -> None:
    result, _ = run(epochs=1)
    dataset = load_dataset(tiny_spec(), None)
    result.model.train()

    evaluate(result.model, dataset.test_x, dataset.test_y, result.preprocess, torch.device("cpu"))

    assert result.model.training


def test_pick_device() -> None:
    messages: list[str] = []

    assert pick_device("cpu", messages.append) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto", messages.append).type == expected
    assert pick_device("cuda", messages.append).type == expected
    assert bool(messages) == (not torch.cuda.is_available())
    with pytest.raises(ValueError, match="device='tpu'"):
        pick_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda_trains_on_cpu_and_says_so() -> None:
    spec = tiny_spec().model_copy(update={"device": "cuda"})
    context = RecordingContext()

    result = train(spec, load_dataset(spec, None), context)

    assert result.device == "cpu"
    assert any("no CUDA device" in message for message in context.messages)


def test_default_synthetic_dataset_is_learnable_by_the_default_mlp() -> None:
    spec = JobSpec.model_validate(
        {
            "dataset": "synthetic",
            "model": {"arch": "mlp"},
            "training": {"epochs": 2},
            "device": "cpu",
        }
    )

    result = train(spec, load_dataset(spec, None), RecordingContext())

    assert result.test_accuracy > 0.8  # 10 classes: chance is 0.1


def test_a_pruned_run_stops_within_a_batch_and_keeps_its_model() -> None:
    spec = tiny_spec(epochs=3)
    context = RecordingContext(prune_after=5)  # asked before the 5th batch of epoch 1
    result = train(spec, load_dataset(spec, None), context)
    assert result.stop_reason == "pruned"
    assert result.epochs_completed == 0
    assert context.stop_checks == 5
    assert 0.0 <= result.test_accuracy <= 1.0  # evaluated and exportable, unlike a cancel
    assert any("stopped (pruned)" in message for message in context.messages)


def test_the_device_and_acceleration_plan_are_said_when_training_starts() -> None:
    result, context = run({"arch": "mlp", "hidden_sizes": [8]}, epochs=1)
    assert context.started is not None
    device, plan = context.started
    assert device == "cpu"
    assert plan["mode"] == "auto"
    # The final report adds to the plan (what compiling did, where it ran), never contradicts it.
    assert {key: result.acceleration[key] for key in plan} == plan
