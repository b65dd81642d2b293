// Sign in: the reader pastes an API key; it is checked against the API before it is kept.

import { ApiError, forgetApiKey, getJson, saveApiKey } from "../api.js";
import { navigate } from "../app.js";
import { h } from "../dom.js";

export function render(main, { query }) {
  const keyInput = h("input", {
    id: "api-key", name: "api-key", type: "password", required: true,
    autocomplete: "current-password", spellcheck: "false", "aria-describedby": "api-key-hint",
  });
  const error = h("p", { id: "sign-in-error", class: "alert", role: "alert" });
  const form = h("form", { class: "panel", novalidate: true },
    h("div", { class: "field" },
      h("label", { for: "api-key", text: "API key" }),
      keyInput,
      h("p", { id: "api-key-hint", class: "field-hint" },
        h("code", { text: "taas serve" }), " prints one on first start and saves it in ",
        h("code", { text: ".taas/api_key" }), " (under its TAAS_HOME); ",
        h("code", { text: "taas keys create --tenant NAME" }), " makes more. ",
        "It is kept in this tab only, until you sign out or close the tab.")),
    error,
    h("div", { class: "form-actions" }, h("button", { type: "submit", text: "Sign in" })));

  if (query.get("expired")) error.textContent = "The API key was refused. Sign in again.";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(keyInput.value.trim(), error, query.get("next"));
  });
  main.append(h("h1", { text: "Sign in" }), form);
  keyInput.focus(); // the one thing to do here
}

async function signIn(key, error, next) {
  error.textContent = "";
  if (!key) {
    error.textContent = "Enter an API key.";
    return;
  }
  saveApiKey(key);
  try {
    await getJson("/v1/jobs?limit=1"); // any authenticated read proves the key
  } catch (failure) {
    forgetApiKey();
    error.textContent = failure instanceof ApiError && failure.status === 401
      ? "That API key is not valid."
      : `Could not sign in: ${failure.message}`;
    return;
  }
  navigate(next && next.startsWith("#/") && !next.startsWith("#/signin") ? next : "#/jobs");
}
