// Datasets: the built-ins and this tenant's uploads, whether each can be used now, upload
// (with progress) and delete.

import { authHeaders, errorFrom, getJson, sendJson } from "../api.js";
import { focusHeading } from "../app.js";
import { announce, h, replaceChildren } from "../dom.js";
import { bytes, dateTime, integer } from "../format.js";

export async function render(main) {
  const page = new DatasetsPage(main);
  await page.load();
  return () => page.stop();
}

// Columns a phone leaves out (the name, availability, sizes and actions stay).
const OPTIONAL = new Set(["ID", "Kind", "Shape", "Classes", "Size"]);

class DatasetsPage {
  constructor(main) {
    this.body = h("tbody");
    this.error = h("p", { class: "alert", role: "alert" });
    this.upload = new UploadForm(() => this.load());
    main.append(
      h("h1", { text: "Datasets" }),
      this.error,
      h("div", { class: "table-wrap" }, h("table", {},
        h("caption", { text: "Built-in datasets, then yours" }),
        h("thead", {}, h("tr", {}, ["Name", "ID", "Kind", "Available", "Shape", "Classes", "Train", "Test", "Size", "Actions"]
          .map((text) => h("th", { scope: "col", class: OPTIONAL.has(text) ? "wide-only" : null, text })))),
        this.body)),
      h("h2", { text: "Upload a dataset" }),
      this.upload.element);
    focusHeading();
  }

  async load() {
    let datasets;
    try {
      datasets = (await getJson("/v1/datasets")).items;
    } catch (error) {
      this.error.textContent = `Could not list the datasets: ${error.message}`;
      return;
    }
    this.error.textContent = "";
    replaceChildren(this.body, datasets.map((dataset) => this.row(dataset)));
  }

  row(dataset) {
    const remove = dataset.kind === "uploaded"
      ? h("button", { type: "button", class: "danger", text: "Delete", "aria-label": `Delete ${dataset.name}`,
        onclick: () => this.remove(dataset) })
      : null;
    return h("tr", {},
      h("td", { text: dataset.name }),
      h("td", { class: "wide-only" }, h("code", { text: dataset.id })),
      h("td", { class: "wide-only", text: dataset.kind === "builtin" ? "built-in" : `uploaded ${dataset.format || ""}`.trim() }),
      h("td", {}, availability(dataset)),
      h("td", { class: "wide-only", text: dataset.shape.join("×") }),
      h("td", { class: "number wide-only", text: integer(dataset.num_classes) }),
      h("td", { class: "number", text: integer(dataset.train_size) }),
      h("td", { class: "number", text: integer(dataset.test_size) }),
      h("td", { class: "number wide-only", text: dataset.size_bytes === null ? "—" : bytes(dataset.size_bytes),
        title: dataset.created_at ? `uploaded ${dateTime(dataset.created_at)}` : null }),
      h("td", {}, remove));
  }

  async remove(dataset) {
    if (!confirm(`Delete the dataset ${dataset.name}?`)) return;
    try {
      await sendJson("DELETE", `/v1/datasets/${encodeURIComponent(dataset.id)}`);
    } catch (error) {
      this.error.textContent = `Could not delete ${dataset.name}: ${error.message}`;
      return;
    }
    announce(`Deleted ${dataset.name}.`);
    this.load();
  }

  stop() {
    this.upload.abort();
  }
}

// Why a dataset cannot be used can take a paragraph (where its files were looked for): folded.
function availability(dataset) {
  if (dataset.available) return h("span", { title: dataset.reason, text: "yes" });
  return h("details", {}, h("summary", { text: "no: why" }), h("p", { class: "field-hint", text: dataset.reason }));
}

/** The upload form. XMLHttpRequest rather than fetch(): only it reports upload progress. */
class UploadForm {
  constructor(onUploaded) {
    this.onUploaded = onUploaded;
    this.file = h("input", { id: "dataset-file", name: "file", type: "file", accept: ".npz,.csv,.zip",
      required: true, "aria-describedby": "dataset-file-hint" });
    this.name = h("input", { id: "dataset-name", name: "name", type: "text", maxlength: 100, autocomplete: "off" });
    this.progress = h("progress", { max: 1, value: 0, hidden: true, "aria-label": "Upload progress" });
    this.status = h("p", { role: "status" });
    this.button = h("button", { type: "submit", text: "Upload" });
    this.element = h("form", { class: "panel", novalidate: true, onsubmit: (event) => this.send(event) },
      h("div", { class: "form-grid" },
        h("div", { class: "field" }, h("label", { for: "dataset-file", text: "File" }), this.file,
          h("p", { id: "dataset-file-hint", class: "field-hint",
            text: ".npz (x, y, optional x_test, y_test), CSV with a label column, or a .zip of one folder of images per class." })),
        h("div", { class: "field" }, h("label", { for: "dataset-name", text: "Name (optional)" }), this.name)),
      h("div", { class: "form-actions" }, this.button, this.progress),
      this.status);
  }

  send(event) {
    event.preventDefault();
    const file = this.file.files[0];
    if (!file) {
      this.status.textContent = "Choose a file to upload.";
      this.file.focus();
      return;
    }
    const body = new FormData();
    body.append("file", file);
    if (this.name.value.trim()) body.append("name", this.name.value.trim());
    this.request = new XMLHttpRequest();
    this.request.open("POST", "/v1/datasets");
    for (const [name, value] of Object.entries(authHeaders())) this.request.setRequestHeader(name, value);
    this.request.upload.addEventListener("progress", (progress) => this.showProgress(progress));
    this.request.addEventListener("load", () => this.finish());
    this.request.addEventListener("error", () => this.fail("the connection failed"));
    this.button.disabled = true;
    this.progress.hidden = false;
    this.progress.value = 0;
    this.status.textContent = `Uploading ${file.name}…`;
    this.request.send(body);
  }

  showProgress(progress) {
    if (progress.lengthComputable) this.progress.value = progress.loaded / progress.total;
  }

  async finish() {
    const request = this.request;
    this.button.disabled = false;
    this.progress.hidden = true;
    if (request.status >= 400) {
      // errorFrom() reads a Response; wrap the XHR's answer in one so errors read the same.
      const error = await errorFrom(new Response(request.responseText, { status: request.status }));
      return this.fail(error.message);
    }
    const dataset = JSON.parse(request.responseText);
    this.status.textContent = request.status === 200
      ? `Already uploaded as ${dataset.name} (${dataset.id}).`
      : `Uploaded ${dataset.name} (${dataset.id}): ${integer(dataset.train_size)} training samples.`;
    this.element.reset();
    this.onUploaded();
  }

  fail(message) {
    this.button.disabled = false;
    this.progress.hidden = true;
    this.status.textContent = `Upload failed: ${message}`;
  }

  abort() {
    if (this.request && this.request.readyState !== XMLHttpRequest.DONE) this.request.abort();
  }
}
