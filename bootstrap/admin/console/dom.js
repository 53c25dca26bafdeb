// Small DOM helpers: building elements without HTML strings, formatting, announcements, focus.

/**
 * h("button", {class: "x", type: "button", on: {click: fn}, dataset: {id: 1}}, "text", child...)
 * Children may be strings, nodes, arrays, null or undefined.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Text for screen readers only. */
export const srOnly = (text) => h("span", { class: "visually-hidden" }, text);

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

const pad = (n) => String(n).padStart(2, "0");

/**
 * "2025-03-04 12:30 UTC" in a <time> element (null/undefined: an em dash). In tables the column
 * header says UTC and `utc: false` leaves the suffix out.
 */
export function time(iso, { seconds = false, utc = true } = {}) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h("span", {}, iso);
  const text =
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}${seconds ? `:${pad(d.getUTCSeconds())}` : ""}${utc ? " UTC" : ""}`;
  return h("time", { datetime: iso }, text);
}

/** "AB:CD:..." from lower-case hex, in a <code> that wraps only after a colon. */
export function fingerprint(hex) {
  const pairs = (hex || "").toUpperCase().match(/../g) || [];
  const parts = [];
  pairs.forEach((pair, i) => {
    parts.push(i < pairs.length - 1 ? `${pair}:` : pair);
    if (i < pairs.length - 1) parts.push(h("wbr"));
  });
  return h("code", { class: "fingerprint" }, parts);
}

/** Replace the children of `el`. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

let announceTimer;
/** Say `message` through the polite live region (and show it in the status bar). */
export function announce(message) {
  const region = document.getElementById("announcer");
  region.textContent = "";
  window.clearTimeout(announceTimer);
  // A fresh text node after a tick makes screen readers repeat identical messages.
  announceTimer = window.setTimeout(() => {
    region.textContent = message;
  }, 50);
}

/**
 * Re-render while keeping keyboard focus: if the focused element carried data-focus-key and was
 * replaced, focus its replacement.
 */
export function keepingFocus(render) {
  const active = document.activeElement;
  const key = active && active.dataset ? active.dataset.focusKey : undefined;
  render();
  if (key && !(active && active.isConnected)) focusKey(key);
}

/** Focus the element with this data-focus-key, if there is one. Returns whether it did. */
export function focusKey(key) {
  const target = document.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
  if (target) target.focus();
  return Boolean(target);
}

/** A button whose accessible name includes context after the visible label ("Verify" + " ca-1"). */
export function actionButton(label, context, { focusKey: key, danger = false, onClick, busy } = {}) {
  return h(
    "button",
    {
      type: "button",
      class: danger ? "button small danger" : "button small",
      dataset: key ? { focusKey: key } : undefined,
      "aria-disabled": busy ? "true" : undefined,
      on: { click: onClick },
    },
    label,
    context ? srOnly(` ${context}`) : null,
  );
}
