// Modal dialogs (native <dialog>: focus stays inside, Escape cancels) and form error display.

import { $, $$, focusKey, h, replaceChildren } from "./dom.js";

/**
 * Open `dialog` modally and focus `focus` (an element or selector; default: the first field).
 * When it closes, focus goes back to the element that opened it (or its re-rendered twin).
 */
export function openDialog(dialog, { focus, returnFocusKey } = {}) {
  const opener = document.activeElement;
  const openerKey = opener && opener.dataset ? opener.dataset.focusKey : undefined;
  const focusable = (el) =>
    el && el.isConnected && typeof el.focus === "function" && !el.closest("dialog:not([open])");
  dialog.addEventListener(
    "close",
    () => {
      const override = dialog.dataset.returnFocusKey;
      delete dialog.dataset.returnFocusKey;
      if (override && focusKey(override)) return;
      if (returnFocusKey && focusKey(returnFocusKey)) return;
      if (focusable(opener)) opener.focus();
      else if (!(openerKey && focusKey(openerKey))) {
        const heading = $("main section:not([hidden]) h1");
        if (heading) heading.focus();
      }
    },
    { once: true },
  );
  dialog.showModal();
  const target =
    typeof focus === "string"
      ? $(focus, dialog)
      : focus || $("input:not([type=hidden]):not(:disabled), select, textarea, button", dialog);
  if (target) target.focus();
}

/** Close `dialog`; focus then goes to the element with data-focus-key `focusKey` if given. */
export function closeDialog(dialog, { focusKey: key } = {}) {
  if (key) dialog.dataset.returnFocusKey = key;
  if (dialog.open) dialog.close();
}

/** Every button with data-close inside a dialog closes it. */
export function wireCloseButtons(root = document) {
  for (const button of $$("dialog [data-close]", root)) {
    button.addEventListener("click", () => closeDialog(button.closest("dialog")));
  }
}

/**
 * Ask for confirmation. Resolves true if the operator confirmed.
 * `action` names the confirming button ("Delete").
 */
export function confirmAction({ title, message, action, danger = true }) {
  const dialog = $("#confirm-dialog");
  replaceChildren($("#confirm-title", dialog), title);
  replaceChildren($("#confirm-message", dialog), message);
  const ok = $("#confirm-ok", dialog);
  replaceChildren(ok, action);
  ok.className = danger ? "button danger" : "button primary";
  return new Promise((resolve) => {
    let confirmed = false;
    const onOk = () => {
      confirmed = true;
      dialog.close();
    };
    ok.addEventListener("click", onOk, { once: true });
    dialog.addEventListener(
      "close",
      () => {
        ok.removeEventListener("click", onOk);
        resolve(confirmed);
      },
      { once: true },
    );
    openDialog(dialog, { focus: "#confirm-cancel" });
  });
}

// --- field errors ---------------------------------------------------------------------------

/** The control a field path of the error object refers to ("issuer_credentials.api_key"). */
function controlFor(form, field) {
  const usable = (el) => !el.matches(":disabled") && !el.closest("[hidden]");
  const exact = $$(`[data-field="${CSS.escape(field)}"]`, form).filter(usable);
  if (exact.length) return exact[0];
  // "issuer_credentials" (the whole object): the first control under it.
  const under = $$("[data-field]", form).filter((el) => el.dataset.field.startsWith(`${field}.`) && usable(el));
  return under[0] || null;
}

function errorSlot(control) {
  return document.getElementById(`${control.id}-error`);
}

const sentence = (text) => {
  const t = String(text || "").trim();
  if (!t) return t;
  const first = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
};

export function clearErrors(form) {
  for (const control of $$("[aria-invalid]", form)) control.removeAttribute("aria-invalid");
  for (const slot of $$(".field-error", form)) {
    slot.hidden = true;
    slot.textContent = "";
  }
  const general = $(".form-error", form);
  if (general) {
    general.hidden = true;
    general.replaceChildren();
  }
}

/**
 * Show an ApiError on `form`: each `fields[]` entry under its control (aria-invalid, message tied
 * with aria-describedby), anything else in the form's alert. Focuses the first invalid control.
 */
export function showErrors(form, error) {
  clearErrors(form);
  const general = $(".form-error", form);
  const unplaced = [];
  let first = null;
  for (const item of error.fields || []) {
    const control = controlFor(form, item.field);
    const slot = control && errorSlot(control);
    if (!slot) {
      unplaced.push(`${item.field}: ${item.message}`);
      continue;
    }
    control.setAttribute("aria-invalid", "true");
    slot.textContent = sentence(item.message);
    slot.hidden = false;
    // Open a collapsed <details> holding the control, so the message is visible.
    const details = control.closest("details");
    if (details) details.open = true;
    first = first || control;
  }
  if (!first || unplaced.length) {
    const lines = [first ? "Please correct the fields marked below." : sentence(error.message)];
    if (unplaced.length) lines.push(...unplaced.map(sentence));
    if (general) {
      general.replaceChildren(...lines.map((line) => h("p", {}, line)));
      general.hidden = false;
    }
  }
  if (first) first.focus();
  else if (general) general.focus();
}

/** Let a file input fill a textarea with the file's text (PEM). */
export function wirePemFile(fileInput, textarea) {
  fileInput.addEventListener("change", async () => {
    const file = fileInput.files && fileInput.files[0];
    if (!file) return;
    textarea.value = await file.text();
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  });
}

/**
 * The details dialog: a title, label/value pairs, an optional PEM block and extra action buttons
 * (placed before Close).
 */
export function openDetails({ title, rows, pem, actions = [] }) {
  const dialog = $("#details-dialog");
  replaceChildren($("#details-title", dialog), title);
  const list = h(
    "dl",
    { class: "details" },
    rows.map(([label, value]) => [h("dt", {}, label), h("dd", {}, value ?? "—")]),
  );
  const block = pem
    ? h("details", { class: "pem-block" }, h("summary", {}, "PEM"), h("pre", { tabindex: "0", "aria-label": "PEM" }, pem))
    : null;
  replaceChildren($("#details-body", dialog), list, block);
  const bar = $("#details-actions", dialog);
  for (const extra of $$("[data-extra]", bar)) extra.remove();
  for (const button of actions) {
    button.dataset.extra = "true";
    bar.prepend(button);
  }
  openDialog(dialog, { focus: $("[data-close]", bar) });
}
