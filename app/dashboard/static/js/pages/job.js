// One job: live curves, progress with ETA, events, spec, acceleration report and artifacts.
//
// The snapshot comes from the REST routes; the job's event stream then replays its history and
// follows it live. Points and events already shown are recognised and skipped, so the replay
// and the snapshot never double up.

import { ApiError, authHeaders, errorFrom, getJson, jobPath, sendJson } from "../api.js";
import { focusHeading, navigate } from "../app.js";
import { lineChart } from "../chart.js";
import { announce, h, replaceChildren } from "../dom.js";
import {
  TERMINAL_STATUSES, bytes, dateTime, duration, integer, jobSeconds, number, percent, time,
} from "../format.js";
import { loadPointsWithEpochs } from "../points.js";
import { followStream } from "../sse.js";

const POLL_SECONDS = 2; // only when the server has no event stream

export async function render(main, { params: [jobId] }) {
  let job;
  try {
    job = await getJson(jobPath(jobId));
  } catch (error) {
    main.append(h("h1", { text: "Job not found" }),
      h("p", { class: "alert", role: "alert", text: error.message }),
      h("p", {}, h("a", { href: "#/jobs", text: "Back to the jobs" })));
    focusHeading();
    return null;
  }
  const page = new JobPage(main, job);
  await page.loadSnapshot();
  page.follow();
  return () => page.stop();
}

class JobPage {
  constructor(main, job) {
    this.job = job;
    this.seenEvents = new Set();
    this.curves = new Curves();
    this.build(main);
    this.showJob();
    focusHeading();
  }

  build(main) {
    this.heading = h("h1");
    // A live region: a status change is announced without moving focus.
    this.statusBadge = h("span", { role: "status", "aria-label": "Job status" });
    this.cancelButton = h("button", { type: "button", class: "danger", text: "Cancel job",
      onclick: () => this.cancel() });
    this.deleteButton = h("button", { type: "button", class: "danger", text: "Delete job",
      onclick: () => this.remove() });
    this.actionError = h("p", { class: "alert", role: "alert" });
    this.facts = h("dl", { class: "facts" });
    this.progress = new ProgressView();
    this.result = h("div", { "aria-live": "polite" });
    this.events = h("ol", { class: "events", "aria-label": "Events, oldest first" });
    this.artifacts = h("div");
    this.spec = h("pre", { class: "json", tabindex: 0, "aria-label": "Normalized spec" });
    this.acceleration = h("div");
    main.append(
      h("div", { class: "job-header" }, this.heading, this.statusBadge, this.cancelButton, this.deleteButton),
      this.actionError,
      h("section", { class: "panel", "aria-labelledby": "progress-heading" },
        h("h2", { id: "progress-heading", text: "Progress" }), this.progress.element, this.result),
      h("section", { "aria-labelledby": "curves-heading" },
        h("h2", { id: "curves-heading", text: "Curves" }), this.curves.element),
      h("div", { class: "two-columns" },
        section("Details", this.facts),
        section("Events", this.events),
        section("Artifacts", this.artifacts),
        section("Acceleration", this.acceleration)),
      section("Spec", this.spec));
  }

  async loadSnapshot() {
    const id = this.job.id;
    const [points, events, artifacts] = await Promise.allSettled([
      loadPointsWithEpochs(this.job),
      getJson(jobPath(id, "/events")),
      loadArtifacts(id),
    ]);
    if (points.status === "fulfilled") {
      this.curves.load(points.value);
      if (!points.value.length && TERMINAL_STATUSES.has(this.job.status)) {
        replaceChildren(this.curves.element,
          h("p", { class: "notice", text: "No curves: the job ended before it reported a training step." }));
      }
    }
    if (events.status === "fulfilled") events.value.items.forEach((event) => this.addEvent(event));
    if (artifacts.status === "fulfilled") this.showArtifacts(artifacts.value);
  }

  follow() {
    if (TERMINAL_STATUSES.has(this.job.status)) return; // its history is all shown already
    this.stream = followStream(jobPath(this.job.id, "/stream"), {
      closesAfterEnd: true,
      onEvent: (type, data) => this.onEvent(type, data),
      onUnavailable: (error) => { if (error.status === 404) this.poll(); },
    });
    this.ticker = setInterval(() => this.showFacts(), 1000);
  }

  onEvent(type, data) {
    if (type === "metric") this.curves.add(data);
    else if (type === "progress") {
      this.progress.show(this.job.status, data);
      // The device and acceleration plan are known once training starts, which the first
      // progress report follows: fetch the job then, once (the page may have loaded before).
      if (!this.job.device && !this.refreshing) {
        this.refreshing = this.refresh().finally(() => { this.refreshing = null; });
      }
    }
    else if (type === "log") this.addEvent(data);
    else if (type === "status") {
      this.addEvent(data);
      this.refresh({ status: data.status });
    } else if (type === "end") this.finish();
  }

  /** Reloads the job (new times, metrics, status); `changes` show at once meanwhile. */
  async refresh(changes = {}) {
    Object.assign(this.job, changes);
    this.showJob();
    try {
      this.job = await getJson(jobPath(this.job.id));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return navigate("#/jobs");
      return;
    }
    this.showJob();
  }

  async finish() {
    await this.refresh();
    const artifacts = await loadArtifacts(this.job.id).catch(() => null);
    if (artifacts) this.showArtifacts(artifacts);
    clearInterval(this.ticker);
    announce(`The job ${this.job.status}.`);
  }

  // A server without streams: reload the whole snapshot every few seconds until the job ends.
  poll() {
    this.pollTimer = setInterval(async () => {
      await this.refresh();
      const points = await loadPointsWithEpochs(this.job).catch(() => null);
      if (points) this.curves.load(points);
      const events = await getJson(jobPath(this.job.id, "/events")).catch(() => null);
      if (events) events.items.forEach((event) => this.addEvent(event));
      if (TERMINAL_STATUSES.has(this.job.status)) {
        clearInterval(this.pollTimer);
        this.finish();
      }
    }, POLL_SECONDS * 1000);
  }

  showJob() {
    const { job } = this;
    this.heading.textContent = job.name;
    this.statusBadge.className = `status status-${job.status}`;
    this.statusBadge.textContent = job.status;
    const ended = TERMINAL_STATUSES.has(job.status);
    this.cancelButton.hidden = ended || job.status === "cancelling";
    this.deleteButton.hidden = !ended;
    this.progress.show(job.status, job.progress);
    this.showResult();
    this.showFacts();
    this.spec.textContent = JSON.stringify(job.spec, null, 2);
    this.showAcceleration();
  }

  showResult() {
    const { metrics, error, status, stop_reason: stopReason } = this.job;
    const parts = [];
    if (metrics.test_accuracy !== null && metrics.test_accuracy !== undefined) {
      parts.push(h("p", {}, h("strong", { text: "Test accuracy: " }), percent(metrics.test_accuracy, 2),
        h("span", { class: "notice", text: ` (test loss ${number(metrics.test_loss)})` })));
    } else if (status === "succeeded") {
      parts.push(h("p", { class: "notice", text: "No test accuracy was recorded." }));
    }
    if (error?.type === "cancelled") {
      parts.push(h("p", { class: "notice", text: sentence(error.message) })); // the user's choice, no alarm
    } else if (error) {
      parts.push(h("p", { class: "alert", text: `${error.type}: ${error.message}` }));
    }
    // Said only when it is news: progress says "N of N epochs completed", a cancel says itself.
    if (TERMINAL_STATUSES.has(status) && EARLY_STOPS[stopReason]) {
      parts.push(h("p", { class: "notice", text: `Stopped early: ${EARLY_STOPS[stopReason]}.` }));
    }
    replaceChildren(this.result, parts);
  }

  showFacts() {
    const { job } = this;
    const facts = [
      ["ID", job.id], ["Dataset", job.spec.dataset], ["Model", job.spec.model.arch],
      ["Parameters", integer(job.parameter_count)], ["Device", job.device || "—"],
      ["Attempt", String(job.attempt)], ["Created", dateTime(job.created_at)],
      ["Started", dateTime(job.started_at)], ["Finished", dateTime(job.finished_at)],
      ["Duration", duration(jobSeconds(job))],
    ];
    if (job.waiting_for) facts.splice(1, 0, ["Waiting for", job.waiting_for]);
    const items = facts.map(([term, value]) => [h("dt", { text: term }), h("dd", { text: value })]);
    if (job.sweep_id) {
      items.push(h("dt", { text: "Sweep" }), h("dd", {},
        h("a", { href: `#/sweeps/${encodeURIComponent(job.sweep_id)}`, text: `trial ${job.trial_number}` })));
    }
    replaceChildren(this.facts, items);
  }

  showAcceleration() {
    const report = this.job.acceleration;
    if (!report) {
      replaceChildren(this.acceleration, h("p", { class: "notice", text: "Chosen when the job starts." }));
      return;
    }
    replaceChildren(this.acceleration,
      h("pre", { class: "json", tabindex: 0, "aria-label": "Acceleration report", text: JSON.stringify(report, null, 2) }));
  }

  addEvent(event) {
    // The same event may come from GET /events and from the stream's replay.
    const key = `${Date.parse(event.created_at)}|${event.message}`;
    if (this.seenEvents.has(key)) return;
    this.seenEvents.add(key);
    const label = event.status ? `${event.status}${event.message ? `: ${event.message}` : ""}` : event.message;
    const item = h("li", {}, h("time", { datetime: event.created_at, text: time(event.created_at) }), label);
    const stickToBottom = this.events.scrollTop + this.events.clientHeight >= this.events.scrollHeight - 4;
    this.events.append(item);
    if (stickToBottom) this.events.scrollTop = this.events.scrollHeight;
  }

  showArtifacts(items) {
    if (!items.length) {
      replaceChildren(this.artifacts, h("p", { class: "notice", text: "None yet: a succeeded job has its model here." }));
      return;
    }
    const rows = items.map((artifact) => h("tr", {},
      h("td", {}, artifact.name, artifact.checkpoint
        ? h("span", { class: "job-created", text: checkpointText(artifact.checkpoint) }) : ""),
      h("td", { class: "number", text: bytes(artifact.size_bytes) }),
      h("td", {}, h("button", { type: "button", class: "secondary", text: "Download",
        "aria-label": `Download ${artifact.name}`, onclick: (event) => this.download(artifact, event.target) }))));
    replaceChildren(this.artifacts, h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Name" }),
        h("th", { scope: "col", class: "number", text: "Size" }), h("th", { scope: "col", text: "File" }))),
      h("tbody", {}, rows))));
  }

  // A link cannot carry the Authorization header: fetch the bytes, then save them from a blob URL.
  async download(artifact, button) {
    button.disabled = true;
    try {
      const response = await fetch(jobPath(this.job.id, `/artifacts/${encodeURIComponent(artifact.name)}`),
        { headers: authHeaders() });
      if (!response.ok) throw await errorFrom(response);
      const url = URL.createObjectURL(await response.blob());
      const link = h("a", { href: url, download: artifact.name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (error) {
      this.actionError.textContent = `Could not download ${artifact.name}: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  }

  async cancel() {
    this.actionError.textContent = "";
    try {
      this.job = await sendJson("POST", jobPath(this.job.id, "/cancel"));
    } catch (error) {
      this.actionError.textContent = `Could not cancel: ${error.message}`;
      return;
    }
    this.showJob();
    announce(`Cancel requested; the job is ${this.job.status}.`);
    this.heading.focus({ preventScroll: true }); // the focused button just disappeared
  }

  async remove() {
    if (!confirm(`Delete the job ${this.job.name} and its artifacts? This cannot be undone.`)) return;
    try {
      await sendJson("DELETE", jobPath(this.job.id));
    } catch (error) {
      this.actionError.textContent = `Could not delete: ${error.message}`;
      return;
    }
    announce(`Deleted ${this.job.name}.`);
    navigate("#/jobs");
  }

  stop() {
    if (this.stream) this.stream.stop();
    clearInterval(this.ticker);
    clearInterval(this.pollTimer);
    this.curves.destroy();
  }
}

function section(title, content) {
  const id = `${title.toLowerCase()}-heading`;
  return h("section", { class: "panel", "aria-labelledby": id }, h("h2", { id, text: title }), content);
}

/** Which epoch: the one running (1-based) while the job runs, else how many were completed. */
export function epochText(status, progress) {
  if (status === "running") {
    return `Epoch ${Math.min(progress.epoch + 1, progress.epochs)} of ${progress.epochs}`;
  }
  return `${progress.epoch} of ${progress.epochs} epochs completed`;
}

/** The progress bar and the line under it: epoch, share done, speed, time left. */
class ProgressView {
  constructor() {
    this.bar = h("progress", { max: 1, value: 0, "aria-label": "Training progress" });
    this.text = h("p", { class: "notice" });
    this.element = h("div", {}, this.bar, this.text);
  }

  show(status, progress) {
    const fraction = status === "succeeded" ? 1 : progress.fraction || 0;
    this.bar.value = fraction;
    const parts = [epochText(status, progress), `${percent(fraction, 0)} done`];
    if (status === "running" && fraction >= 1) {
      // Every batch ran: the test split is evaluated and the model saved; no time left to show.
      this.text.textContent = [...parts, "final evaluation on the test split"].join(" · ");
      return;
    }
    // Batches, speed and time left describe a run in progress, not one that ended.
    if (status === "running") {
      if (progress.batches_per_epoch) {
        parts.push(`batch ${progress.batches_done ?? 0} of ${progress.batches_per_epoch}`);
      }
      if (progress.samples_per_second) parts.push(`${integer(progress.samples_per_second)} samples/s`);
      if (progress.eta_seconds !== null && progress.eta_seconds !== undefined) {
        parts.push(`about ${duration(progress.eta_seconds)} left`);
      }
    }
    this.text.textContent = parts.join(" · ");
  }
}

/**
 * The job's three charts against the epoch (fractional for step points, so train and eval
 * points share one axis). Step points when the server has them, else one point per epoch.
 */
/** The job's files, each checkpoint with what GET .../checkpoints says of it (its epoch and
 * that epoch's scores). */
async function loadArtifacts(jobId) {
  const [artifacts, checkpoints] = await Promise.all([
    getJson(jobPath(jobId, "/artifacts")),
    getJson(jobPath(jobId, "/checkpoints")).catch(() => ({ items: [] })), // an older server
  ]);
  const byName = new Map(checkpoints.items.map((item) => [item.name, item]));
  return artifacts.items.map((artifact) => ({ ...artifact, checkpoint: byName.get(artifact.name) }));
}

function checkpointText(checkpoint) {
  const accuracy = checkpoint.metrics?.val_accuracy;
  const score = accuracy === null || accuracy === undefined ? "" : ` · val accuracy ${percent(accuracy, 2)}`;
  return `after epoch ${checkpoint.epoch}${score}`;
}

// Why a job ended before its last epoch, in words (the trainer's stop reasons).
const EARLY_STOPS = {
  target_reached: "it reached its target",
  max_seconds: "its time budget (max_seconds) ran out; it kept its best model",
  pruned: "its sweep pruned it (early stopping)",
};

function sentence(text) {
  return text ? text[0].toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".") : "";
}

class Curves {
  constructor() {
    this.loss = lineChart({ title: "Loss", xLabel: "epoch",
      series: [{ label: "Training loss" }, { label: "Validation loss", points: true }] });
    // Its own range, not 0-1: a rise from 0.89 to 0.91 must be visible.
    this.accuracy = lineChart({ title: "Accuracy", xLabel: "epoch",
      series: [{ label: "Validation accuracy", points: true }, { label: "Training accuracy" }] });
    this.lr = lineChart({ title: "Learning rate", xLabel: "epoch", series: [{ label: "Learning rate" }] });
    this.element = h("div", { class: "charts" }, this.loss.figure, this.accuracy.figure, this.lr.figure);
    this.reset();
  }

  reset() {
    this.lastStep = { train: 0, eval: 0 };
    this.lastEpoch = 0;
    for (const chart of [this.loss, this.accuracy, this.lr]) {
      chart.setColumns([], chart === this.lr ? [[]] : [[], []]);
    }
  }

  /** Replaces every point with `items` from GET .../metrics (step points, or epoch points from
   * a server that has no step series). */
  load(items) {
    this.reset();
    items.forEach((item) => this.add(item));
  }

  /** Adds one point from the snapshot or a `metric` event, unless it is already drawn. */
  add(point) {
    if (point.step !== undefined && point.step !== null) this.addStep(point);
    else if (point.granularity !== "step") this.addEpoch(point);
  }

  addStep(point) {
    const kind = point.kind === "eval" ? "eval" : "train";
    if (point.step <= this.lastStep[kind]) return;
    this.lastStep[kind] = point.step;
    if (kind === "train") {
      this.loss.append(point.epoch, [point.train_loss, null]);
      if (point.lr !== null && point.lr !== undefined) this.lr.append(point.epoch, [point.lr]);
      if (point.train_accuracy !== null && point.train_accuracy !== undefined) {
        this.accuracy.append(point.epoch, [null, point.train_accuracy]);
      }
    } else {
      this.loss.append(point.epoch, [null, point.val_loss]);
      this.accuracy.append(point.epoch, [point.val_accuracy, null]);
    }
  }

  // Epoch points are drawn only while no step point has arrived (step points are finer), but
  // for the training accuracy.
  addEpoch(point) {
    if (point.epoch <= this.lastEpoch) return;
    this.lastEpoch = point.epoch;
    if (this.lastStep.train || this.lastStep.eval) {
      // Step points draw the rest; training accuracy is measured once an epoch only.
      const trainAccuracy = point.train_accuracy ?? null;
      if (trainAccuracy !== null) this.accuracy.append(point.epoch, [null, trainAccuracy]);
      return;
    }
    this.loss.append(point.epoch, [point.train_loss, point.val_loss]);
    this.accuracy.append(point.epoch, [point.val_accuracy, point.train_accuracy ?? null]);
    this.lr.append(point.epoch, [point.lr]);
  }

  destroy() {
    [this.loss, this.accuracy, this.lr].forEach((chart) => chart.destroy());
  }
}
