// The dashboard's shell: a small hash router that shows one page module at a time.
//
// Routes look like "#/jobs?status=running" or "#/jobs/job_..."; each page module exports
// `render(main, {params, query})` and may return a function that stops what it started
// (streams, timers) when the reader leaves the page.

import { apiKey, forgetApiKey, unauthorized } from "./api.js";
import { h, replaceChildren } from "./dom.js";

const ROUTES = [
  { pattern: /^\/signin$/, page: "signin", title: "Sign in", public: true },
  { pattern: /^\/jobs$/, page: "jobs", title: "Jobs", nav: "#/jobs" },
  { pattern: /^\/jobs\/([^/]+)$/, page: "job", title: "Job", nav: "#/jobs" },
  { pattern: /^\/compare$/, page: "compare", title: "Compare jobs", nav: "#/compare" },
  { pattern: /^\/submit$/, page: "submit", title: "Submit a job", nav: "#/submit" },
  { pattern: /^\/sweeps$/, page: "sweeps", title: "Sweeps", nav: "#/sweeps" },
  { pattern: /^\/sweeps\/([^/]+)$/, page: "sweep", title: "Sweep", nav: "#/sweeps" },
  { pattern: /^\/datasets$/, page: "datasets", title: "Datasets", nav: "#/datasets" },
];

const main = document.getElementById("main");
const signOutButton = document.getElementById("sign-out");
let leavePage = null;
let rendering = 0;

function parseHash() {
  const hash = location.hash.slice(1) || "/jobs";
  const [path, search = ""] = hash.split("?");
  return { path, query: new URLSearchParams(search) };
}

function findRoute(path) {
  for (const route of ROUTES) {
    const match = route.pattern.exec(path);
    if (match) return { route, params: match.slice(1).map(decodeURIComponent) };
  }
  return null;
}

async function show() {
  // "#main" and other in-page anchors are not routes (the skip link uses one).
  if (location.hash && !location.hash.startsWith("#/")) return;
  const { path, query } = parseHash();
  const found = findRoute(path);
  if (!found) return navigate("#/jobs", { replace: true });
  if (!found.route.public && !apiKey()) {
    const back = location.hash || "#/jobs";
    return navigate(`#/signin?next=${encodeURIComponent(back)}`, { replace: true });
  }
  stopPage();
  const ticket = ++rendering;
  markNavigation(found.route);
  signOutButton.hidden = !apiKey();
  document.title = `${found.route.title} · taas`;
  replaceChildren(main, h("p", { class: "notice", text: "Loading…" }));
  const module = await import(`./pages/${found.route.page}.js`);
  if (ticket !== rendering) return; // the reader moved on while the module loaded
  replaceChildren(main);
  leavePage = (await module.render(main, { params: found.params, query })) || null;
  if (ticket !== rendering) stopPage();
}

function stopPage() {
  if (leavePage) leavePage();
  leavePage = null;
}

function markNavigation(route) {
  for (const link of document.querySelectorAll(".nav-list a")) {
    if (link.getAttribute("href") === route.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

/** Goes to a route; `replace` leaves no history entry (redirects). */
export function navigate(hash, { replace = false } = {}) {
  if (replace) {
    history.replaceState(null, "", hash);
    show();
  } else if (location.hash === hash) {
    show();
  } else {
    location.hash = hash;
  }
}

/** Moves focus to the page's heading after it rendered, so keyboard and screen-reader users
 * start at the new content (a hash change alone leaves focus where it was). */
export function focusHeading() {
  const heading = main.querySelector("h1");
  if (!heading) return;
  heading.setAttribute("tabindex", "-1");
  heading.focus({ preventScroll: true });
}

function signOut() {
  forgetApiKey();
  navigate("#/signin");
}

signOutButton.addEventListener("click", signOut);
unauthorized.addEventListener("unauthorized", () => {
  if (parseHash().path === "/signin") return;
  forgetApiKey();
  navigate(`#/signin?next=${encodeURIComponent(location.hash)}&expired=1`, { replace: true });
});
window.addEventListener("hashchange", show);
show();
