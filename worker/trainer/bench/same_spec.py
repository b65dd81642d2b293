"""(a) Same spec: each network trained with acceleration off and auto, same epochs, same seed."""

from __future__ import annotations

from taas.app.spec import JobSpec
from taas.worker.trainer.bench.results import ModeSummary, SameSpecComparison, SpeedRun
from taas.worker.trainer.bench.timing import run_timed, steady_throughput
from taas.worker.trainer.bench.workload import MODES, NETWORKS, Echo, Mode, Workload, plain_spec
from taas.worker.trainer.data import Dataset


def measure_same_spec(
    workload: Workload, epochs: int, repeats: int, echo: Echo
) -> list[SameSpecComparison]:
    """(a): each network trained with acceleration off and auto, same epochs, same seed."""
    echo(f"[same-spec] loading {workload.dataset}")
    dataset = workload.load()
    return [
        compare_modes(workload, dataset, network, epochs, repeats, echo) for network in NETWORKS
    ]


def compare_modes(
    workload: Workload, dataset: Dataset, network: str, epochs: int, repeats: int, echo: Echo
) -> SameSpecComparison:
    label, model = NETWORKS[network]
    runs: dict[Mode, list[SpeedRun]] = {mode: [] for mode in MODES}
    for repeat in range(1, repeats + 1):
        for mode in MODES:
            echo(f"[same-spec] {network}, acceleration {mode}, run {repeat}/{repeats}")
            spec = plain_spec(workload, model, mode, epochs=epochs)
            run = speed_run(spec, dataset, echo)
            echo(
                f"    {run.samples_per_second.show(',.0f')} samples/s, test accuracy "
                f"{run.test_accuracy:.4f}, {run.wall_seconds:.1f} s, {run.threads} threads"
            )
            runs[mode].append(run)
    off, auto = ModeSummary.of("off", runs["off"]), ModeSummary.of("auto", runs["auto"])
    return SameSpecComparison(
        network=network,
        label=label,
        spec=plain_spec(workload, model, "off", epochs=epochs).model_dump(mode="json"),
        off=off,
        auto=auto,
        speedup=auto.samples_per_second.median / off.samples_per_second.median,
        accuracy_delta_points=100 * (auto.test_accuracy.median - off.test_accuracy.median),
    )


def speed_run(spec: JobSpec, dataset: Dataset, echo: Echo) -> SpeedRun:
    timed = run_timed(spec, lambda: dataset, echo)
    return SpeedRun(
        samples_per_second=steady_throughput(timed.points),
        test_accuracy=timed.result.test_accuracy,
        wall_seconds=timed.wall_seconds,
        epochs=timed.result.epochs_completed,
        threads=timed.threads,
        acceleration=timed.result.acceleration,
    )
