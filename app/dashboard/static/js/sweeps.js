// What the sweep pages share: how an objective, a value and a trial's params read, and which
// trials rank (succeeded, objective known, within the constraint; the Pareto front first).

import { duration, number, percent } from "./format.js";

export function objectiveText(sweep) {
  const text = sweep.objective.map((item) => `${item.goal} ${item.metric}`).join(", ");
  const bounds = [];
  for (const [metric, bound] of Object.entries(sweep.constraint || {})) {
    if (bound.min !== null && bound.min !== undefined) bounds.push(`${metric} ≥ ${bound.min}`);
    if (bound.max !== null && bound.max !== undefined) bounds.push(`${metric} ≤ ${bound.max}`);
  }
  return bounds.length ? `${text}, where ${bounds.join(" and ")}` : text;
}

export function metricValue(metric, value) {
  if (value === null || value === undefined) return "—";
  if (metric === "train_seconds") return value < 60 ? `${value.toFixed(2)}s` : duration(value);
  if (metric.endsWith("accuracy")) return percent(value, 2);
  return number(value, 4);
}

/** "trial 3: val_accuracy 91.23%". */
export function trialResult(sweep, trial) {
  const values = trial.values || [];
  const shown = sweep.objective.map((item, index) => `${item.metric} ${metricValue(item.metric, values[index])}`);
  return `trial ${trial.number}: ${shown.join(", ")}`;
}

export function bestText(sweep) {
  if (sweep.pareto && sweep.pareto.length) {
    return `Pareto front: trials ${sweep.pareto.map((trial) => trial.number).join(", ")}`;
  }
  return sweep.best ? trialResult(sweep, sweep.best) : "no best trial yet";
}

export function counts(trial) {
  return trial.status === "succeeded" && trial.values !== null && trial.within_constraint === true;
}

/** [{rank, trial}] : the trials that count, best first (front first), then the rest by number. */
export function rankedTrials(sweep) {
  const sign = sweep.objective[0].goal === "maximize" ? -1 : 1;
  const front = new Set((sweep.pareto || []).map((trial) => trial.number));
  const counted = sweep.trials.filter(counts).sort((a, b) =>
    (front.has(b.number) - front.has(a.number)) || sign * (a.values[0] - b.values[0]) || a.number - b.number);
  const rest = sweep.trials.filter((trial) => !counts(trial)).sort((a, b) => a.number - b.number);
  return [...counted.map((trial, index) => ({ rank: index + 1, trial })), ...rest.map((trial) => ({ rank: null, trial }))];
}

/** `training.lr` -> `lr` unless two paths end alike. */
export function shortNames(paths) {
  const end = (path) => path.split(".").pop();
  const seen = new Map();
  paths.forEach((path) => seen.set(end(path), (seen.get(end(path)) || 0) + 1));
  return Object.fromEntries(paths.map((path) => [path, seen.get(end(path)) === 1 ? end(path) : path]));
}

export function paramValue(value) {
  if (typeof value === "number" && !Number.isInteger(value)) return number(value, 4);
  if (Array.isArray(value)) return `[${value.map(paramValue).join(", ")}]`;
  return String(value);
}

export function trialStatus(trial) {
  if (trial.stop_reason === "pruned") return "pruned";
  if (trial.status === "succeeded" && trial.within_constraint === false) return "outside constraint";
  return trial.status;
}
