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
