// A job's curve points, shared by the job and compare pages.

import { getJson, jobPath } from "./api.js";

/**
 * The job's curve points: its step series, or its epoch points when it has no step series
 * (a job that ran before the series existed, or one too short to report a step point) or the
 * server has none (it then answers with epoch points anyway).
 */
export async function loadPoints(job) {
  const steps = (await getJson(jobPath(job.id, "/metrics?granularity=step"))).items;
  if (steps.length || !job.metrics.latest) return steps;
  return (await getJson(jobPath(job.id, "/metrics"))).items;
}

/**
 * The job page's points: the step series with the epoch points merged in, each after the step
 * points of its epoch. Training accuracy is measured once an epoch, so only the epoch points
 * carry it; the chart takes rows in x order.
 */
export async function loadPointsWithEpochs(job) {
  const points = await loadPoints(job);
  const isStepSeries = points.length > 0 && points[0].step !== undefined && points[0].step !== null;
  if (!isStepSeries) return points;
  const epochs = (await getJson(jobPath(job.id, "/metrics"))).items;
  const merged = [];
  let next = 0;
  for (const point of points) {
    while (next < epochs.length && epochs[next].epoch < point.epoch) merged.push(epochs[next++]);
    merged.push(point);
  }
  return merged.concat(epochs.slice(next));
}
