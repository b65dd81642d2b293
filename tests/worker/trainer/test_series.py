"""The step series: enough training-loss points to draw a curve, bounded for long runs, every
evaluation, and the progress the trainer reports after each batch."""

from __future__ import annotations

import torch

from taas.worker.trainer.data import load_dataset
from taas.worker.trainer.loop import train
from taas.worker.trainer.series import TRAIN_POINTS_PER_RUN, StepPoint, StepSeries
from tests.worker.trainer.fakes import RecordingContext, tiny_spec


def test_a_run_of_over_1000_steps_draws_a_curve_of_bounded_length() -> None:
    # 1,024 samples in batches of 8: 128 steps an epoch, 1,152 steps in 9 epochs.
    spec = tiny_spec(
        options={"train_size": 1024}, batch_size=8, epochs=9, evals_per_epoch=2, lr=0.003
    )
    context = RecordingContext()
    train(spec, load_dataset(spec, None), context)

    train_points = [point for point in context.steps if point.kind == "train"]
    evaluations = [point for point in context.steps if point.kind == "eval"]
    assert 50 <= len(train_points) <= TRAIN_POINTS_PER_RUN
    steps = [point.step for point in train_points]
    assert steps == sorted(set(steps))
    assert steps[-1] > 1100  # reaches the end of the run
    # Every evaluation: 2 an epoch; the last epoch's second is the final test evaluation.
    assert len(evaluations) == 2 * 9
    assert evaluations[-1].step == 9 * 128
    assert evaluations[-1].val_accuracy == context.points[-1].val_accuracy
    # The loss falls: the curve has shape, not one point per epoch.
    first, last = train_points[:10], train_points[-10:]
    assert sum(p.train_loss or 0 for p in last) < 0.8 * sum(p.train_loss or 0 for p in first)
    # Progress after every batch: epoch, batches done, batches per epoch, samples so far.
    assert context.progress[0] == (1, 1, 128, 8)
    assert context.progress[-1] == (9, 128, 128, 1024)
    assert len(context.progress) == 9 * 128


def test_losses_are_averaged_between_points_and_read_in_one_go() -> None:
    reported: list[StepPoint] = []
    series = StepSeries(total_steps=2 * TRAIN_POINTS_PER_RUN, report=reported.append)
    assert series.every == 2
    for step, loss in enumerate([4.0, 2.0, 3.0, 1.0], start=1):
        series.add_train_step(step, step / 10, 0.1, torch.tensor(loss))
    assert reported == []  # still on the device: read within FLUSH_SECONDS, or now
    series.add_evaluation(4, 0.4, 0.9, 0.75)
    assert [(p.kind, p.step, p.train_loss, p.val_accuracy) for p in reported] == [
        ("train", 2, 3.0, None),
        ("train", 4, 2.0, None),
        ("eval", 4, None, 0.75),
    ]
