// Jobs: the tenant's jobs, newest first, a page at a time, kept live by the event stream.

import { getJson, query } from "../api.js";
import { focusHeading, navigate } from "../app.js";
import { announce, h, replaceChildren } from "../dom.js";
import { STATUSES, counted, duration, jobSeconds, percent, shortDateTime } from "../format.js";
import { followStream } from "../sse.js";

const PAGE_SIZE = 20;
const POLL_SECONDS = 5; // only when the server has no event stream

export function render(main, { query: search }) {
  const status = STATUSES.includes(search.get("status")) ? search.get("status") : "";
  const page = new JobsPage(main, status);
  page.load(null);
  return () => page.stop();
}

class JobsPage {
  constructor(main, status) {
    this.status = status;
    this.cursors = [null]; // cursor of each page seen, for "Previous page"
    this.rows = new Map(); // job id -> JobRow
    this.selected = new Set();
    this.reloadTimer = 0;
    this.build(main);
    this.stream = followStream("/v1/stream", {
      onEvent: (type, data) => this.onEvent(type, data),
      onGap: () => this.reloadSoon(),
      onUnavailable: () => this.poll(),
    });
    this.ticker = setInterval(() => this.rows.forEach((row) => row.tick()), 1000);
  }

  build(main) {
    const filter = h("select", { id: "status-filter", onchange: (event) => this.filterBy(event.target.value) },
      h("option", { value: "", text: "All" }),
      STATUSES.map((name) => h("option", { value: name, text: name, selected: name === this.status })));
    // On a phone the selection column is hidden; the Compare page has its own picker.
    this.compareButton = h("button", { type: "button", class: "wide-only", disabled: true, text: "Compare selected",
      onclick: () => navigate(`#/compare?ids=${[...this.selected].join(",")}`) });
    this.body = h("tbody");
    this.caption = h("caption");
    this.previous = h("button", { type: "button", class: "secondary", text: "Previous page",
      onclick: () => this.turn(-1) });
    this.next = h("button", { type: "button", class: "secondary", text: "Next page",
      onclick: () => this.turn(1) });
    this.error = h("p", { class: "alert", role: "alert" });
    main.append(
      h("div", { class: "job-header" }, h("h1", { text: "Jobs" }),
        h("a", { class: "button", href: "#/submit", text: "Submit a job" })),
      h("div", { class: "toolbar" },
        h("div", {}, h("label", { for: "status-filter", text: "Status" }), filter),
        this.compareButton),
      this.error,
      h("div", { class: "table-wrap" }, h("table", {}, this.caption, tableHead(), this.body)),
      h("nav", { class: "toolbar", "aria-label": "Pages" }, this.previous, this.next));
    focusHeading();
  }

  async load(cursor) {
    this.cursor = cursor;
    let listing;
    try {
      listing = await getJson(`/v1/jobs${query({ status: this.status, limit: PAGE_SIZE, cursor })}`);
    } catch (error) {
      this.error.textContent = `Could not load the jobs: ${error.message}`;
      return;
    }
    this.error.textContent = "";
    this.nextCursor = listing.next_cursor;
    this.showJobs(listing.items);
  }

  showJobs(jobs) {
    this.rows = new Map(jobs.map((job) => [job.id, new JobRow(job, this)]));
    replaceChildren(this.body, [...this.rows.values()].map((row) => row.element));
    if (!jobs.length) {
      const empty = this.status ? `No ${this.status} jobs.` : "No jobs yet: submit one.";
      this.body.append(h("tr", {}, h("td", { colspan: 8, text: empty })));
    }
    const number = this.cursors.length;
    this.caption.textContent = `Page ${number}, ${counted(jobs.length, "job")}, newest first`;
    this.previous.disabled = number === 1;
    this.next.disabled = !this.nextCursor;
  }

  filterBy(status) {
    navigate(status ? `#/jobs?status=${status}` : "#/jobs");
  }

  turn(direction) {
    if (direction > 0 && this.nextCursor) this.cursors.push(this.nextCursor);
    if (direction < 0 && this.cursors.length > 1) this.cursors.pop();
    this.load(this.cursors[this.cursors.length - 1]);
    announce(`Page ${this.cursors.length}`);
  }

  toggle(jobId, checked) {
    if (checked) this.selected.add(jobId);
    else this.selected.delete(jobId);
    this.compareButton.disabled = this.selected.size < 2;
    this.compareButton.textContent = `Compare selected (${this.selected.size})`;
  }

  onEvent(type, data) {
    const row = this.rows.get(data.job_id);
    if (type === "progress" && row) {
      row.update({ progress: { ...row.job.progress, ...data } });
    } else if (type === "status" || type === "end") {
      // A status change may move a job into or out of this page or filter: ask the server.
      if (row && type === "status") row.update({ status: data.status });
      this.reloadSoon();
    }
  }

  reloadSoon() {
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.load(this.cursor), 300);
  }

  poll() {
    this.pollTimer = setInterval(() => this.load(this.cursor), POLL_SECONDS * 1000);
  }

  stop() {
    this.stream.stop();
    clearInterval(this.ticker);
    clearInterval(this.pollTimer);
    clearTimeout(this.reloadTimer);
  }
}

function tableHead() {
  const column = (text, className) => h("th", { scope: "col", class: className, text });
  return h("thead", {}, h("tr", {},
    column("Select", "wide-only"), column("Name"), column("Status"), column("Dataset", "wide-only"),
    column("Model", "wide-only"), column("Accuracy", "number"),
    column("Duration", "number wide-only"), column("Progress")));
}

/** One job's row, updated in place (rebuilding it would drop the keyboard focus). */
class JobRow {
  constructor(job, page) {
    this.job = job;
    const checkbox = h("input", { type: "checkbox", checked: page.selected.has(job.id),
      "aria-label": `Select ${job.name}`, onchange: (event) => page.toggle(job.id, event.target.checked) });
    this.status = h("span");
    this.accuracy = h("td", { class: "number" });
    this.duration = h("td", { class: "number wide-only" });
    // The bar's value is what assistive technology reads; no duplicate text is needed.
    this.bar = h("progress", { max: 1, "aria-label": `Progress of ${job.name}` });
    this.element = h("tr", {},
      h("td", { class: "wide-only" }, checkbox),
      // Two jobs may share a name: the creation time (and the id, on hover) tells them apart.
      h("td", { class: "job-name" },
        h("a", { href: `#/jobs/${encodeURIComponent(job.id)}`, text: job.name, title: job.id }),
        h("span", { class: "job-created", text: shortDateTime(job.created_at) })),
      h("td", {}, this.status),
      h("td", { class: "wide-only", text: job.spec.dataset }),
      h("td", { class: "wide-only", text: job.spec.model.arch }),
      this.accuracy, this.duration, h("td", {}, this.bar));
    this.update({});
  }

  update(changes) {
    Object.assign(this.job, changes);
    const { job } = this;
    this.status.className = `status status-${job.status}`;
    this.status.textContent = job.status;
    this.accuracy.textContent = percent(accuracyOf(job));
    this.bar.value = job.status === "succeeded" ? 1 : job.progress.fraction;
    this.tick();
  }

  tick() {
    this.duration.textContent = duration(jobSeconds(this.job));
  }
}

/** The final test accuracy once there is one, the latest validation accuracy before. */
export function accuracyOf(job) {
  const metrics = job.metrics || {};
  if (metrics.test_accuracy !== null && metrics.test_accuracy !== undefined) return metrics.test_accuracy;
  return metrics.latest ? metrics.latest.val_accuracy : null;
}

