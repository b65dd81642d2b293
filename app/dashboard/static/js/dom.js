// Building DOM nodes without innerHTML: every value from the API is inserted as text, so a job
// name or a log line can never become markup.

/**
 * h("a", {href: "#/jobs", class: "x"}, "text", child) -> HTMLAnchorElement.
 * Attributes: `class`, `text`, `on<event>` (a listener), booleans (present when true) and
 * everything else as a string attribute; null/undefined/false are left out.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    setAttribute(element, name, value);
  }
  append(element, children);
  return element;
}

function setAttribute(element, name, value) {
  if (value === null || value === undefined || value === false) return;
  if (name.startsWith("on") && typeof value === "function") {
    element.addEventListener(name.slice(2), value);
  } else if (name === "text") {
    element.textContent = value;
  } else if (name === "value" && "value" in element) {
    element.value = value;
  } else {
    element.setAttribute(name, value === true ? "" : String(value));
  }
}

/** Appends children: nodes, strings (as text), arrays of them; skips null and false. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces every child of `parent`. */
export function replaceChildren(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** Tells screen-reader users what just happened (the page's polite live region). */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  // A fresh text node in a later task, so the same message twice is announced twice.
  setTimeout(() => { region.textContent = message; }, 50);
}
