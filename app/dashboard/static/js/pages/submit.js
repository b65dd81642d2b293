// Submit a job: a form for the common spec fields plus JSON for everything else.
//
// The server is the one validator: fields left empty are left out of the spec (the server
// fills its defaults), and a 422's errors are shown next to the field each one names.

import { ApiError, getJson, sendJson } from "../api.js";
import { focusHeading, navigate } from "../app.js";
import { announce, h, replaceChildren } from "../dom.js";
import { counted } from "../format.js";

const ARCHES = ["mlp", "cnn", "resnet"];
// The list of layer sizes is named differently per architecture (app/spec.py).
const WIDTH_FIELD = { mlp: "hidden_sizes", cnn: "channels", resnet: "widths" };
const WIDTH_LABEL = { mlp: "Hidden layer sizes", cnn: "Conv channels", resnet: "Stage widths" };
const DEFAULT_ARCH = "cnn";
// What the server fills in for each architecture's recipe (tests/app/dashboard/test_recipe_defaults.py checks these
// against app/spec), shown as the placeholders of the fields left empty.
const RECIPE_DEFAULTS = {
  mlp: { epochs: "3", lr: "0.01", "batch-size": "256" },
  cnn: { epochs: "3", lr: "0.01", "batch-size": "128" },
  resnet: { epochs: "15", lr: "0.003", "batch-size": "256" },
};
const ACTIVATIONS = ["relu", "gelu", "silu", "tanh", "sigmoid", "elu", "leaky_relu"];
const OPTIMIZERS = ["sgd", "adam", "adamw", "rmsprop"];

/** Every form field: its input's id, label, and where its value goes in the spec. */
const FIELDS = [
  { id: "name", label: "Name", path: ["name"], kind: "text", hint: "Optional; default arch-dataset." },
  { id: "dataset", label: "Dataset", path: ["dataset"], kind: "dataset" },
  { id: "arch", label: "Architecture", path: ["model", "arch"], kind: "select", options: ARCHES, empty: `default (${DEFAULT_ARCH})` },
  { id: "widths", label: WIDTH_LABEL[DEFAULT_ARCH], path: ["model", "widths"], kind: "list", hint: "Comma-separated, e.g. 32, 64. Empty: the default." },
  { id: "activation", label: "Activation", path: ["model", "activation"], kind: "select", options: ACTIVATIONS, empty: "default (relu)" },
  { id: "epochs", label: "Epochs", path: ["training", "epochs"], kind: "number", placeholder: RECIPE_DEFAULTS[DEFAULT_ARCH].epochs },
  { id: "optimizer", label: "Optimizer", path: ["training", "optimizer"], kind: "select", options: OPTIMIZERS, empty: "default (adamw)" },
  { id: "lr", label: "Learning rate", path: ["training", "lr"], kind: "number", placeholder: RECIPE_DEFAULTS[DEFAULT_ARCH].lr },
  { id: "batch-size", label: "Batch size", path: ["training", "batch_size"], kind: "number", placeholder: RECIPE_DEFAULTS[DEFAULT_ARCH]["batch-size"] },
  { id: "acceleration", label: "Acceleration", path: ["acceleration"], kind: "select", options: ["auto", "off"], empty: null,
    hint: "off: the plain fp32 loop, the honest baseline." },
];
const EXTRA = { id: "extra", label: "More settings (JSON)", path: [] };

export async function render(main) {
  const form = new SubmitForm();
  main.append(h("h1", { text: "Submit a job" }), form.element);
  focusHeading();
  await form.loadDatasets();
  return null;
}

class SubmitForm {
  constructor() {
    this.inputs = new Map(FIELDS.map((field) => [field.id, makeInput(field)]));
    this.errors = new Map([...FIELDS, EXTRA].map((field) =>
      [field.id, h("p", { id: `${field.id}-error`, class: "field-error" })]));
    this.extra = h("textarea", { id: EXTRA.id, rows: 6, spellcheck: "false",
      "aria-describedby": `${EXTRA.id}-hint ${EXTRA.id}-error`,
      placeholder: '{"training": {"weight_decay": 0.0001, "evals_per_epoch": 4}}' });
    this.summary = h("div", { class: "alert", role: "alert", tabindex: -1 });
    this.submitButton = h("button", { type: "submit", text: "Submit job" });
    this.inputs.get("arch").addEventListener("change", () => this.relabelWidths());
    this.element = h("form", { novalidate: true, onsubmit: (event) => this.submit(event) },
      this.summary,
      fieldset("Data and model", ["name", "dataset", "arch", "widths", "activation"].map((id) => this.field(id))),
      fieldset("Training", ["epochs", "optimizer", "lr", "batch-size", "acceleration"].map((id) => this.field(id))),
      h("fieldset", { class: "panel" }, h("legend", { text: "Everything else" }),
        h("label", { for: EXTRA.id, text: EXTRA.label }), this.extra,
        h("p", { id: `${EXTRA.id}-hint`, class: "field-hint",
          text: "Merged with the fields above, which win where both set a value. See the examples/ folder and /docs for every setting." }),
        this.errors.get(EXTRA.id)),
      h("div", { class: "form-actions" }, this.submitButton));
  }

  field(id) {
    const field = FIELDS.find((candidate) => candidate.id === id);
    const hint = field.hint ? h("p", { id: `${id}-hint`, class: "field-hint", text: field.hint }) : null;
    const input = this.inputs.get(id);
    input.setAttribute("aria-describedby", [hint ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(" "));
    return h("div", { class: "field" }, h("label", { for: id, id: `${id}-label`, text: field.label }), input, hint, this.errors.get(id));
  }

  relabelWidths() {
    const arch = this.inputs.get("arch").value || DEFAULT_ARCH;
    document.getElementById("widths-label").textContent = WIDTH_LABEL[arch];
    for (const [id, value] of Object.entries(RECIPE_DEFAULTS[arch])) this.inputs.get(id).placeholder = value;
  }

  async loadDatasets() {
    const select = this.inputs.get("dataset");
    let datasets;
    try {
      datasets = (await getJson("/v1/datasets")).items;
    } catch (error) {
      this.summary.textContent = `Could not list the datasets: ${error.message}`;
      return;
    }
    replaceChildren(select, datasets.map((dataset) => h("option", { value: dataset.id,
      text: datasetLabel(dataset), title: dataset.reason })));
    const preferred = datasets.find((dataset) => dataset.id === "fashion_mnist" && dataset.available)
      || datasets.find((dataset) => dataset.available);
    if (preferred) select.value = preferred.id;
  }

  /** The spec: the JSON textarea's object with every filled-in field set over it. */
  buildSpec() {
    const text = this.extra.value.trim();
    let spec = {};
    if (text) {
      try {
        spec = JSON.parse(text);
      } catch (error) {
        throw new FormProblem(EXTRA.id, `Not valid JSON: ${error.message}`);
      }
      if (!spec || typeof spec !== "object" || Array.isArray(spec)) {
        throw new FormProblem(EXTRA.id, "Must be a JSON object, like {\"training\": {...}}");
      }
    }
    const arch = this.inputs.get("arch").value || spec.model?.arch || DEFAULT_ARCH;
    for (const field of FIELDS) {
      const value = readValue(field, this.inputs.get(field.id));
      if (value === null) continue;
      const path = field.id === "widths" ? ["model", WIDTH_FIELD[arch]] : field.path;
      setPath(spec, path, value);
    }
    return spec;
  }

  async submit(event) {
    event.preventDefault();
    this.clearErrors();
    let spec;
    try {
      spec = this.buildSpec();
    } catch (problem) {
      if (!(problem instanceof FormProblem)) throw problem;
      return this.showErrors([{ field: problem.field, message: problem.message }]);
    }
    this.submitButton.disabled = true;
    try {
      const job = await sendJson("POST", "/v1/jobs", spec);
      announce(`Submitted ${job.name}.`);
      navigate(`#/jobs/${encodeURIComponent(job.id)}`);
    } catch (error) {
      this.showErrors(error instanceof ApiError && Array.isArray(error.detail)
        ? error.detail.map(fieldError)
        : [{ field: null, message: error.message }]);
    } finally {
      this.submitButton.disabled = false;
    }
  }

  clearErrors() {
    this.summary.textContent = "";
    for (const [id, paragraph] of this.errors) {
      paragraph.textContent = "";
      const input = id === EXTRA.id ? this.extra : this.inputs.get(id);
      input.removeAttribute("aria-invalid");
    }
  }

  /** Each error next to its field; those that name no field in a summary at the top. */
  showErrors(errors) {
    const unplaced = [];
    for (const { field, message } of errors) {
      if (!field) {
        unplaced.push(message);
        continue;
      }
      const paragraph = this.errors.get(field);
      paragraph.textContent = paragraph.textContent ? `${paragraph.textContent} ${message}` : message;
      (field === EXTRA.id ? this.extra : this.inputs.get(field)).setAttribute("aria-invalid", "true");
    }
    const placed = errors.length - unplaced.length;
    const where = placed === errors.length ? ", shown next to the fields."
      : placed ? ", shown next to the fields and here:" : ":";
    replaceChildren(this.summary,
      h("p", { text: `The job was not submitted: ${counted(errors.length, "problem")}${where}` }),
      unplaced.length ? h("ul", {}, unplaced.map((message) => h("li", { text: message }))) : null);
    const firstInvalid = this.element.querySelector('[aria-invalid="true"]');
    (firstInvalid || this.summary).focus();
  }
}

class FormProblem extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/**
 * Which field a 422 error belongs to. `loc` is ["body", ...path]; pydantic puts the model's
 * arch between "model" and the field ("model", "mlp", "hidden_sizes", 0), and names the union
 * member inside "acceleration". Errors no field owns go to the summary, with their path.
 */
export function fieldError({ loc = [], msg }) {
  let path = loc[0] === "body" ? loc.slice(1) : [...loc];
  if (path[0] === "model" && ARCHES.includes(path[1])) path = ["model", ...path.slice(2)];
  const field = FIELDS.find((candidate) => owns(candidate, path));
  if (field) return { field: field.id, message: msg };
  const where = path.join(".");
  return { field: null, message: where ? `${where}: ${msg}` : msg };
}

function owns(field, path) {
  if (field.id === "widths") return path[0] === "model" && Object.values(WIDTH_FIELD).includes(path[1]);
  if (field.id === "acceleration") return path[0] === "acceleration";
  return field.path.every((part, index) => path[index] === part);
}

function makeInput(field) {
  const common = { id: field.id, name: field.id };
  if (field.kind === "dataset") return h("select", common, h("option", { value: "", text: "Loading…" }));
  if (field.kind === "select") {
    return h("select", common,
      field.empty ? h("option", { value: "", text: field.empty }) : null,
      field.options.map((option) => h("option", { value: option, text: option })));
  }
  if (field.kind === "number") {
    // No min/max here: the server's limits are the rules, and its message says them.
    return h("input", { ...common, type: "number", step: "any", inputmode: "decimal", placeholder: field.placeholder });
  }
  return h("input", { ...common, type: "text", autocomplete: "off", placeholder: field.placeholder });
}

/** A field's value for the spec, or null when it is empty (the server's default applies).
 * Text that is not a number is sent as typed, so the server's message names it. */
function readValue(field, input) {
  const raw = input.value.trim();
  if (raw === "") return null;
  if (field.kind === "number") return Number.isFinite(Number(raw)) ? Number(raw) : raw;
  if (field.kind === "list") {
    return raw.split(/[\s,]+/).filter(Boolean).map((part) => (/^\d+$/.test(part) ? Number(part) : part));
  }
  return raw;
}

function setPath(target, path, value) {
  let node = target;
  for (const part of path.slice(0, -1)) {
    if (!node[part] || typeof node[part] !== "object" || Array.isArray(node[part])) node[part] = {};
    node = node[part];
  }
  node[path[path.length - 1]] = value;
}

function datasetLabel(dataset) {
  const name = dataset.kind === "builtin" ? dataset.id : `${dataset.name} (${dataset.id})`;
  return dataset.available ? name : `${name} — unavailable`;
}

function fieldset(legend, fields) {
  return h("fieldset", { class: "panel" }, h("legend", { text: legend }), h("div", { class: "form-grid" }, fields));
}
