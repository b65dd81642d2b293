// Sweeps: the tenant's sweeps, newest first, refreshed while any of them runs.

import { getJson } from "../api.js";
import { focusHeading } from "../app.js";
import { h, replaceChildren } from "../dom.js";
import { dateTime, shortDateTime } from "../format.js";
import { bestText, objectiveText } from "../sweeps.js";

const REFRESH_SECONDS = 3;

export function render(main) {
  const body = h("tbody");
  const error = h("p", { class: "alert", role: "alert" });
  main.append(
    h("h1", { text: "Sweeps" }),
    h("p", { class: "notice" }, "Submit a sweep with ", h("code", { text: "taas sweep submit FILE" }),
      " or POST /v1/sweeps; each trial is a job."),
    error,
    h("div", { class: "table-wrap" }, h("table", {},
      h("caption", { text: "Newest first" }),
      // On a phone the objective and the date give way (the date shows under the name).
      h("thead", {}, h("tr", {}, [["Name"], ["Status"], ["Trials"], ["Objective", "wide-only"], ["Best"],
        ["Created", "wide-only"]].map(([text, className]) => h("th", { scope: "col", class: className, text })))),
      body)));
  focusHeading();
  let timer = 0;
  async function load() {
    let sweeps;
    try {
      sweeps = (await getJson("/v1/sweeps?limit=100")).items;
    } catch (failure) {
      error.textContent = `Could not load the sweeps: ${failure.message}`;
      return;
    }
    error.textContent = "";
    replaceChildren(body, sweeps.length ? sweeps.map(sweepRow) : h("tr", {}, h("td", { colspan: 6, text: "No sweeps yet." })));
    if (sweeps.some((sweep) => sweep.status === "running")) timer = setTimeout(load, REFRESH_SECONDS * 1000);
  }
  load();
  return () => clearTimeout(timer);
}

function sweepRow(sweep) {
  const started = Object.values(sweep.counts).reduce((sum, count) => sum + count, 0);
  return h("tr", {},
    h("td", { class: "job-name" }, h("a", { href: `#/sweeps/${encodeURIComponent(sweep.id)}`, text: sweep.name }),
      h("span", { class: "job-created narrow-only", text: shortDateTime(sweep.created_at) })),
    h("td", {}, h("span", { class: `status status-${sweep.status}`, text: sweep.status })),
    h("td", { class: "number", text: `${started} / ${sweep.max_trials}` }),
    h("td", { class: "wide-only", text: objectiveText(sweep) }),
    h("td", { text: bestText(sweep) }),
    h("td", { class: "wide-only", text: dateTime(sweep.created_at) }));
}
