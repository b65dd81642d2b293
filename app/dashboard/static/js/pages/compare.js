// Compare: the curves of two or more jobs on shared charts, against the epoch (jobs with other
// batch sizes take different numbers of steps per epoch, so steps would not line up).

import { getJson, jobPath } from "../api.js";
import { focusHeading, navigate } from "../app.js";
import { alignSeries, lineChart } from "../chart.js";
import { h, replaceChildren } from "../dom.js";
import { counted, percent } from "../format.js";
import { loadPoints } from "../points.js";

const PICKER_SIZE = 50;

export async function render(main, { query }) {
  const ids = (query.get("ids") || "").split(",").filter(Boolean);
  const charts = h("div", { class: "charts" });
  const results = h("div");
  const message = h("p", { class: "notice", role: "status" });
  const picker = h("div");
  main.append(h("h1", { text: "Compare jobs" }), message, charts, results,
    h("h2", { text: "Choose jobs" }), picker);
  focusHeading();
  const choices = await showPicker(picker, ids);
  if (ids.length < 2) {
    message.textContent = choices < 2
      ? "Two jobs are needed to compare: submit a job (or two), then come back."
      : "Choose two or more jobs below, then Compare.";
    return null;
  }
  const drawn = await showCharts(charts, results, ids, message);
  return () => drawn.forEach((chart) => chart.destroy());
}

/** Shows the newest jobs to choose from; returns how many there are. */
async function showPicker(container, chosen) {
  let jobs;
  try {
    jobs = (await getJson(`/v1/jobs?limit=${PICKER_SIZE}`)).items;
  } catch (error) {
    container.append(h("p", { class: "alert", role: "alert", text: error.message }));
    return 0;
  }
  if (!jobs.length) {
    replaceChildren(container, h("p", { class: "notice" }, "No jobs yet. ",
      h("a", { href: "#/submit", text: "Submit one" }), "."));
    return 0;
  }
  const boxes = jobs.map((job) => h("li", {},
    h("input", { type: "checkbox", id: `pick-${job.id}`, value: job.id, checked: chosen.includes(job.id) }),
    h("label", { for: `pick-${job.id}`, class: "inline-label",
      text: `${job.name} — ${job.status}, ${job.spec.dataset}, ${job.spec.model.arch}` })));
  const form = h("form", { class: "panel", onsubmit: (event) => {
    event.preventDefault();
    const ids = [...form.querySelectorAll("input:checked")].map((box) => box.value);
    navigate(`#/compare?ids=${ids.join(",")}`);
  } },
  h("fieldset", {}, h("legend", { text: jobs.length === PICKER_SIZE ? `The ${PICKER_SIZE} newest jobs` : `Your ${counted(jobs.length, "job")}` }), h("ul", { class: "pick-list" }, boxes)),
  h("div", { class: "form-actions" }, h("button", { type: "submit", text: "Compare" })));
  replaceChildren(container, form);
  return jobs.length;
}

async function showCharts(container, results, ids, message) {
  const loaded = await Promise.allSettled(ids.map((id) => loadJob(id)));
  const jobs = loaded.filter((result) => result.status === "fulfilled").map((result) => result.value);
  const missing = ids.length - jobs.length;
  message.textContent = missing ? `${missing} of the chosen jobs could not be loaded.` : "";
  if (!jobs.length) return [];
  const series = jobs.map((job) => ({ label: distinctLabel(job, jobs) }));
  // Its own range, not 0-1, as on a job's page: jobs at 0.89 and 0.91 must look apart.
  const accuracy = lineChart({ title: "Validation accuracy", xLabel: "epoch", series: series.map(withPoints),
    xPadding: 0.03 });
  const loss = lineChart({ title: "Training loss", xLabel: "epoch", series });
  const [accuracyX, ...accuracyColumns] = alignSeries(jobs.map((job) => job.accuracy));
  accuracy.setColumns(accuracyX, accuracyColumns);
  const [lossX, ...lossColumns] = alignSeries(jobs.map((job) => job.loss));
  loss.setColumns(lossX, lossColumns);
  replaceChildren(container, accuracy.figure, loss.figure);
  replaceChildren(results, resultsTable(jobs));
  return [accuracy, loss];
}

const withPoints = (item) => ({ ...item, points: true });

/** A job and its two curves as [xs, ys] pairs (step points, or epoch points from a server
 * without the step series). */
async function loadJob(id) {
  const job = await getJson(jobPath(id));
  const points = await loadPoints(job);
  const loss = [[], []];
  const accuracy = [[], []];
  for (const point of points) {
    const isStep = point.step !== undefined && point.step !== null;
    if ((!isStep || point.kind === "train") && point.train_loss !== null) push(loss, point.epoch, point.train_loss);
    if ((!isStep || point.kind === "eval") && point.val_accuracy !== null) push(accuracy, point.epoch, point.val_accuracy);
  }
  return { id, name: job.name, job, loss, accuracy };
}

// uPlot.join needs strictly increasing x per series: a repeated x keeps its last value.
function push([xs, ys], x, y) {
  if (xs.length && xs[xs.length - 1] >= x) {
    if (xs[xs.length - 1] === x) ys[ys.length - 1] = y;
    return;
  }
  xs.push(x);
  ys.push(y);
}

function resultsTable(jobs) {
  return h("div", { class: "table-wrap panel" }, h("table", {},
    h("caption", { text: "Final results" }),
    h("thead", {}, h("tr", {}, ["Job", "Status", "Epochs", "Optimizer", "Learning rate", "Test accuracy"]
      .map((text) => h("th", { scope: "col", text })))),
    h("tbody", {}, jobs.map(({ job }) => h("tr", {},
      h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, text: job.name })),
      h("td", {}, h("span", { class: `status status-${job.status}`, text: job.status })),
      h("td", { class: "number", text: String(job.spec.training.epochs) }),
      h("td", { text: job.spec.training.optimizer }),
      h("td", { class: "number", text: String(job.spec.training.lr) }),
      h("td", { class: "number", text: percent(job.metrics.test_accuracy, 2) }))))));
}

/** A job's name, and its id's tail where another compared job has the same name. */
export function distinctLabel(job, jobs) {
  const twins = jobs.filter((other) => other.name === job.name).length;
  return twins > 1 ? `${job.name} (${job.id.slice(-6)})` : job.name;
}
