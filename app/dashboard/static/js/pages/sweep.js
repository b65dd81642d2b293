// One sweep: what it searches for, its progress, a chart of its trials and the leaderboard.
//
// One objective: each trial's value against its number, and the best so far as a line. Two
// objectives: the first against the second, the Pareto front joined by a line. Trials outside
// the constraint are drawn apart, so "the fastest that reaches 90%" reads off the chart.
// The page reloads the sweep every few seconds while it runs.

import { ApiError, getJson, sendJson } from "../api.js";
import { focusHeading, navigate } from "../app.js";
import { cssColor, lineChart } from "../chart.js";
import { announce, h, replaceChildren } from "../dom.js";
import { TERMINAL_STATUSES, dateTime, percent } from "../format.js";
import {
  bestText, counts, metricValue, objectiveText, paramValue, rankedTrials, shortNames, trialStatus,
} from "../sweeps.js";

const REFRESH_SECONDS = 2;
const sweepPath = (id, rest = "") => `/v1/sweeps/${encodeURIComponent(id)}${rest}`;

export async function render(main, { params: [sweepId] }) {
  let sweep;
  try {
    sweep = await getJson(sweepPath(sweepId));
  } catch (error) {
    main.append(h("h1", { text: "Sweep not found" }),
      h("p", { class: "alert", role: "alert", text: error.message }),
      h("p", {}, h("a", { href: "#/sweeps", text: "Back to the sweeps" })));
    focusHeading();
    return null;
  }
  const page = new SweepPage(main, sweep);
  return () => page.stop();
}

class SweepPage {
  constructor(main, sweep) {
    this.sweep = sweep;
    this.build(main);
    this.show();
    focusHeading();
    this.scheduleRefresh();
  }

  build(main) {
    this.heading = h("h1");
    this.statusBadge = h("span", { role: "status", "aria-label": "Sweep status" });
    this.cancelButton = h("button", { type: "button", class: "danger", text: "Cancel sweep",
      onclick: () => this.cancel() });
    this.deleteButton = h("button", { type: "button", class: "danger", text: "Delete sweep",
      onclick: () => this.remove() });
    this.actionError = h("p", { class: "alert", role: "alert" });
    this.facts = h("dl", { class: "facts" });
    this.chartSlot = h("div", { class: "charts" });
    this.board = h("tbody");
    this.boardHead = h("thead");
    this.chart = null;
    main.append(
      h("div", { class: "job-header" }, this.heading, this.statusBadge, this.cancelButton, this.deleteButton),
      this.actionError,
      h("section", { class: "panel", "aria-labelledby": "summary-heading" },
        h("h2", { id: "summary-heading", text: "Summary" }), this.facts),
      h("section", { "aria-labelledby": "trials-chart-heading" },
        h("h2", { id: "trials-chart-heading", text: "Trials" }), this.chartSlot),
      h("section", { "aria-labelledby": "leaderboard-heading" },
        h("h2", { id: "leaderboard-heading", text: "Leaderboard" }),
        h("div", { class: "table-wrap" }, h("table", {},
          h("caption", { text: "Best first; trials that do not count yet follow, by number" }),
          this.boardHead, this.board))));
  }

  show() {
    const { sweep } = this;
    this.heading.textContent = sweep.name;
    this.statusBadge.className = `status status-${sweep.status}`;
    this.statusBadge.textContent = sweep.status;
    this.cancelButton.hidden = sweep.status !== "running";
    this.deleteButton.hidden = sweep.status === "running";
    this.showFacts();
    this.showChart();
    this.showLeaderboard();
  }

  showFacts() {
    const { sweep } = this;
    const started = Object.values(sweep.counts).reduce((sum, count) => sum + count, 0);
    const byStatus = Object.entries(sweep.counts).map(([status, count]) => `${count} ${status}`).join(", ");
    const pruned = sweep.trials.filter((trial) => trial.stop_reason === "pruned").length;
    const rows = [
      ["Objective", objectiveText(sweep)],
      ["Search", `${sweep.method} over ${Object.keys(sweep.parameters).join(", ")}`],
      ["Trials", `${started} of at most ${sweep.max_trials}${byStatus ? ` (${byStatus})` : ""}` +
        (pruned ? `, ${pruned} stopped early` : "")],
      ["At once", `up to ${sweep.max_parallel}`],
      ["Early stopping", sweep.early_stopping ? sweep.early_stopping.method : "none"],
      ["Best", bestText(sweep)],
      ["Created", dateTime(sweep.created_at)],
      ["Ended", sweep.finished_at ? dateTime(sweep.finished_at) : "—"],
    ];
    if (sweep.reason) rows.splice(1, 0, ["Reason", sweep.reason]);
    replaceChildren(this.facts, rows.map(([term, value]) => [h("dt", { text: term }), h("dd", { text: value })]));
  }

  showChart() {
    const { sweep } = this;
    const plot = withoutConstraintSeries(
      sweep, sweep.objective.length === 2 ? paretoColumns(sweep) : progressColumns(sweep));
    if (!this.chart) {
      this.chart = lineChart({ title: plot.title, xLabel: plot.xLabel, series: plot.series,
        xPadding: 0.05, xIntegers: plot.xIntegers });
      replaceChildren(this.chartSlot, this.chart.figure);
    }
    this.chart.setColumns(plot.xs, plot.columns);
  }

  showLeaderboard() {
    const { sweep } = this;
    const names = shortNames(Object.keys(sweep.parameters));
    const front = new Set((sweep.pareto || []).map((trial) => trial.number));
    const metrics = sweep.objective.map((item) => item.metric);
    // A constraint's metric (val_accuracy for "the fastest that reaches 90%") is shown too.
    const bounded = Object.keys(sweep.constraint || {}).filter((metric) => !metrics.includes(metric));
    const columns = [
      ["Rank", true], ["Trial", true], ["Status", false],
      ...[...metrics, ...bounded].map((metric) => [metric, true]),
      ["Epochs", true], ["Test accuracy", true], ...Object.values(names).map((name) => [name, false]),
    ];
    replaceChildren(this.boardHead, h("tr", {}, columns.map(([text, numeric]) =>
      h("th", { scope: "col", class: numeric ? "number" : null, text }))));
    replaceChildren(this.board, rankedTrials(sweep).map(({ rank, trial }) => h("tr", {},
      h("td", { class: "number", text: rank ? `${rank}${front.has(trial.number) ? " (front)" : ""}` : "—" }),
      h("td", { class: "number" }, h("a", { href: `#/jobs/${encodeURIComponent(trial.job_id)}`,
        text: String(trial.number), "aria-label": `Trial ${trial.number}` })),
      h("td", {}, h("span", { class: `status status-${statusColor(trial)}`, text: trialStatus(trial) })),
      // Until a trial ends its objective is unknown; its latest measurement shows meanwhile.
      metrics.map((metric, index) => h("td", { class: "number",
        text: metricValue(metric, trial.values ? trial.values[index] : trial.metrics[metric]) })),
      bounded.map((metric) => h("td", { class: "number", text: metricValue(metric, trial.metrics[metric]) })),
      h("td", { class: "number", text: String(trial.epochs_trained) }),
      h("td", { class: "number", text: percent(trial.test_accuracy, 2) }),
      Object.keys(names).map((path) => h("td", { text: path in trial.params ? paramValue(trial.params[path]) : "—" })))));
    if (!sweep.trials.length) {
      this.board.append(h("tr", {}, h("td", { colspan: columns.length, text: "No trials yet." })));
    }
  }

  // While the sweep runs, and after it ended while its last trials finish (a cancel).
  scheduleRefresh() {
    const unfinished = this.sweep.trials.some((trial) => !TERMINAL_STATUSES.has(trial.status));
    if (this.sweep.status !== "running" && !unfinished) return;
    this.timer = setTimeout(() => this.refresh(), REFRESH_SECONDS * 1000);
  }

  async refresh() {
    const before = this.sweep.status;
    try {
      this.sweep = await getJson(sweepPath(this.sweep.id));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return navigate("#/sweeps");
      this.timer = setTimeout(() => this.refresh(), REFRESH_SECONDS * 1000);
      return;
    }
    this.show();
    if (before !== this.sweep.status) announce(`Sweep ${this.sweep.status}`);
    this.scheduleRefresh();
  }

  async cancel() {
    this.cancelButton.disabled = true;
    try {
      this.sweep = await sendJson("POST", sweepPath(this.sweep.id, "/cancel"));
      this.actionError.textContent = "";
      this.show();
      announce("Sweep cancelled");
      this.scheduleRefresh();
    } catch (error) {
      this.actionError.textContent = `Could not cancel: ${error.message}`;
    } finally {
      this.cancelButton.disabled = false;
    }
  }

  async remove() {
    if (!window.confirm(`Delete ${this.sweep.name}, its trials and their files?`)) return;
    try {
      await sendJson("DELETE", sweepPath(this.sweep.id));
    } catch (error) {
      this.actionError.textContent = `Could not delete: ${error.message}`;
      return;
    }
    announce("Sweep deleted");
    navigate("#/sweeps");
  }

  stop() {
    clearTimeout(this.timer);
    if (this.chart) this.chart.destroy();
  }
}

// A trial that ended outside the constraint reads as set aside (grey), not as a success.
function statusColor(trial) {
  return trial.status === "succeeded" && trial.within_constraint === false ? "queued" : trial.status;
}

/** A sweep without a constraint has no trials outside one: no such series, nor its "no points
 * yet" in the caption. (The series is the second of both plots.) */
function withoutConstraintSeries(sweep, plot) {
  if (Object.keys(sweep.constraint || {}).length) return plot;
  const keep = (_, index) => index !== 1;
  return { ...plot, series: plot.series.filter(keep), columns: plot.columns.filter(keep) };
}

/** One objective: value per trial number, split by whether the trial counts, and the best so
 * far (a step line through the counted trials). */
function progressColumns(sweep) {
  const [objective] = sweep.objective;
  const sign = objective.goal === "maximize" ? 1 : -1;
  const ended = sweep.trials.filter((trial) => trial.values).sort((a, b) => a.number - b.number);
  const xs = [];
  const within = [];
  const outside = [];
  const best = [];
  let bestSoFar = null;
  for (const trial of ended) {
    const value = trial.values[0];
    const counted = counts(trial);
    if (counted && (bestSoFar === null || sign * value > sign * bestSoFar)) bestSoFar = value;
    xs.push(trial.number);
    within.push(counted ? value : null);
    outside.push(counted ? null : value);
    best.push(bestSoFar);
  }
  return {
    title: `${objective.metric} by trial`,
    xLabel: "trial",
    xIntegers: true,
    xs,
    columns: [within, outside, best],
    series: [
      { label: "trials", line: false },
      { label: "outside constraint", line: false, color: cssColor("--muted"), pointSize: 6 },
      { label: "best so far" },
    ],
  };
}

/** Two objectives: the first against the second; the front's points joined by a line. */
function paretoColumns(sweep) {
  const [first, second] = sweep.objective;
  const front = new Set((sweep.pareto || []).map((trial) => trial.number));
  const ended = sweep.trials.filter((trial) => trial.values).sort((a, b) => a.values[1] - b.values[1]);
  const columns = [[], [], []];
  for (const trial of ended) {
    const value = trial.values[0];
    const group = front.has(trial.number) ? 2 : counts(trial) ? 0 : 1;
    columns.forEach((column, index) => column.push(index === group ? value : null));
  }
  return {
    title: `${first.metric} against ${second.metric}`,
    xLabel: second.metric,
    xs: ended.map((trial) => trial.values[1]),
    columns,
    series: [
      { label: "trials", line: false },
      { label: "outside constraint", line: false, color: cssColor("--muted"), pointSize: 6 },
      { label: "Pareto front", pointSize: 10 },
    ],
  };
}
