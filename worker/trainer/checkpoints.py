"""A run's checkpoint: all a resumed run needs to continue exactly where the last attempt
stopped, after an epoch or (when it was preempted) part-way through one."""

from __future__ import annotations

from typing import Any

import torch

from taas.worker.trainer.run import EpochProgress, MetricPoint, Run


def checkpoint_state(run: Run, epoch: int, order_rng: torch.Tensor | None = None) -> dict[str, Any]:
    """All a resumed run needs to continue exactly after ``epoch``: tensors and plain values
    only. ``order_rng`` is the order generator's state the next epoch draws from (by default
    its state now)."""
    state: dict[str, Any] = {
        "epoch": epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "schedule": run.schedule.state_dict(),
        "order_rng": run.order.get_state() if order_rng is None else order_rng,
        "torch_rng": torch.get_rng_state(),
        # A resumed run on the CPU keeps this count (keep_threads_of_resumed_attempt says why).
        "cpu_threads": torch.get_num_threads(),
        "history": [point.to_json() for point in run.history],  # plain dicts: weights_only loads
    }
    if run.ema is not None:
        state["ema"] = run.ema.state_dict()
    if run.best is not None:  # the best validation so far: a resumed run still exports it
        score, weights, best_epoch = run.best
        state["best"] = {"score": score, "weights": weights, "epoch": best_epoch}
    if run.device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(run.device)
    return state


def resume(run: Run, state: dict[str, Any] | None) -> int:
    """Restore a checkpoint; returns the first epoch still to train (1 without one)."""
    if state is None:
        return 1
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.load_state_dict(state["schedule"])
    run.order.set_state(state["order_rng"])
    torch.set_rng_state(state["torch_rng"])
    if run.ema is not None and "ema" in state:
        run.ema.load_state_dict(state["ema"])
    if "best" in state:
        best = state["best"]
        weights = {key: value.to(run.device) for key, value in best["weights"].items()}
        run.best = (float(best["score"]), weights, float(best["epoch"]))
    if "cuda_rng" in state and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], run.device)
    # Checkpoints written before the history was kept have none.
    run.history = [MetricPoint(**point) for point in state.get("history", [])]
    epoch = int(state["epoch"])
    message = f"resumed from the checkpoint after epoch {epoch}"
    if "within_epoch" in state:  # saved when the last attempt was preempted mid-epoch
        run.within_epoch = EpochProgress.from_json(state["within_epoch"])
        message += f", {run.within_epoch.batches_done} batches into epoch {epoch + 1}"
    run.context.log(message)
    return epoch + 1
