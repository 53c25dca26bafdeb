// Certificate authorities: list, add (form per type), edit, verify (result in the row), delete.

import { request } from "./api.js";
import { $, $$, actionButton, announce, h, keepingFocus, replaceChildren, time } from "./dom.js";
import { clearErrors, closeDialog, confirmAction, openDialog, showErrors } from "./dialogs.js";
import { ISSUERS, loadCatalog, servicesByIssuer, typeLabel } from "./data.js";
import { remember, serverTracksVerification, stateOf } from "./verification.js";
import { openServiceDialog } from "./services.js";

const state = { issuers: [], configs: [], notes: new Map(), verifying: new Set(), editing: null };

const section = () => $("#view-cas");

function showViewError(error) {
  const banner = $(".view-error", section());
  if (!error) {
    banner.hidden = true;
    banner.textContent = "";
    return;
  }
  banner.textContent = error.message;
  banner.hidden = false;
}

/** The verification cell's content for one issuer. */
function verificationContent(issuer) {
  if (state.verifying.has(issuer.id)) return h("span", { class: "status pending" }, "Verifying…");
  const known = stateOf(issuer);
  if (!known) return h("span", { class: "status muted" }, "Not verified");
  return h(
    "span",
    { class: known.successful ? "status ok" : "status bad" },
    h("strong", {}, known.successful ? "Verified" : "Verification failed"),
    known.message ? h("span", { class: "detail" }, known.message) : null,
  );
}

function serviceLinks(issuer, references) {
  if (!references.length) return h("span", { class: "muted" }, "No service");
  return h(
    "ul",
    { class: "chips" },
    references.map((reference) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "chip",
            "aria-label": `${reference}: change its CA`,
            dataset: { focusKey: `ca-service:${issuer.id}:${reference}` },
            on: { click: () => openServiceDialog({ issuerId: issuer.id, reference, onSaved: reload }) },
          },
          reference,
        ),
      ),
    ),
  );
}

function row(issuer, active) {
  const references = active.get(issuer.id) || [];
  const cells = h(
    "tr",
    { dataset: { issuerId: issuer.id } },
    h(
      "th",
      { scope: "row" },
      h("span", { class: "name" }, issuer.name),
      issuer.description ? h("span", { class: "detail" }, issuer.description) : null,
    ),
    h("td", {}, typeLabel(issuer.issuer_type)),
    h("td", {}, serviceLinks(issuer, references)),
    h("td", {}, time(issuer.created_at, { utc: false })),
    h("td", { class: "verification" }, verificationContent(issuer)),
    h(
      "td",
      { class: "row-actions" },
      actionButton("Verify", issuer.name, {
        focusKey: `verify:${issuer.id}`,
        busy: state.verifying.has(issuer.id),
        onClick: () => verify(issuer),
      }),
      actionButton("Activate…", issuer.name, {
        focusKey: `activate:${issuer.id}`,
        onClick: () => openServiceDialog({ issuerId: issuer.id, onSaved: reload }),
      }),
      actionButton("Edit", issuer.name, { focusKey: `edit:${issuer.id}`, onClick: () => openEdit(issuer) }),
      actionButton("Delete", issuer.name, {
        focusKey: `delete:${issuer.id}`,
        danger: true,
        onClick: () => remove(issuer),
      }),
    ),
  );
  const note = state.notes.get(issuer.id);
  if (!note) return [cells];
  return [
    cells,
    h(
      "tr",
      { class: "row-note" },
      h("td", { colspan: 6 }, h("p", { class: `banner ${note.kind}`, role: "alert" }, note.text)),
    ),
  ];
}

function renderTable() {
  const active = servicesByIssuer(state.configs);
  const body = $("#ca-table tbody");
  keepingFocus(() => replaceChildren(body, state.issuers.map((issuer) => row(issuer, active))));
  $("#ca-table").hidden = state.issuers.length === 0;
  $(".empty", section()).hidden = state.issuers.length !== 0;
  $("#ca-verify-source").textContent = serverTracksVerification(state.issuers)
    ? "Verification results are those recorded by the server."
    : "Verification shows the results of verifications run from this console in this browser session " +
      "(the API does not report earlier ones). Editing a CA resets its verification.";
}

export async function reload() {
  try {
    const catalog = await loadCatalog();
    state.issuers = catalog.issuers;
    state.configs = catalog.configs;
    state.notes.clear(); // row messages answer the last action only
    showViewError(null);
  } catch (error) {
    showViewError(error);
    return;
  }
  renderTable();
}

function replaceRow(issuer) {
  const active = servicesByIssuer(state.configs);
  const old = $(`#ca-table tbody tr[data-issuer-id="${CSS.escape(issuer.id)}"]`);
  if (!old) return;
  const next = old.nextElementSibling;
  if (next && next.classList.contains("row-note")) next.remove();
  const fresh = row(issuer, active);
  keepingFocus(() => old.replaceWith(...fresh));
}

/** Update the verification cell and the Verify button in place (the outcome is announced). */
function updateVerification(issuer) {
  const tr = $(`#ca-table tbody tr[data-issuer-id="${CSS.escape(issuer.id)}"]`);
  if (!tr) return;
  replaceChildren($(".verification", tr), verificationContent(issuer));
  const button = $(`[data-focus-key="verify:${CSS.escape(issuer.id)}"]`, tr);
  if (button) button.setAttribute("aria-disabled", String(state.verifying.has(issuer.id)));
}

async function verify(issuer) {
  if (state.verifying.has(issuer.id)) return;
  if (state.notes.delete(issuer.id)) replaceRow(issuer);
  state.verifying.add(issuer.id);
  updateVerification(issuer);
  announce(`Verifying ${issuer.name}: the CA is asked to sign a test certificate.`);
  try {
    const outcome = await request("POST", `${ISSUERS}/${encodeURIComponent(issuer.id)}/verify`);
    remember(issuer, outcome);
    if ("verify_successful" in issuer) {
      // The server recorded the same outcome; mirror it without reloading the list.
      Object.assign(issuer, {
        verify_successful: Boolean(outcome.successful),
        verify_message: String(outcome.message || ""),
        verified_at: new Date().toISOString(),
      });
    }
    announce(
      outcome.successful
        ? `${issuer.name} verified: ${outcome.message}`
        : `Verification of ${issuer.name} failed: ${outcome.message}`,
    );
  } catch (error) {
    state.verifying.delete(issuer.id);
    state.notes.set(issuer.id, { kind: "error", text: `Could not verify ${issuer.name}: ${error.message}` });
    replaceRow(issuer); // its note is an alert
    return;
  }
  state.verifying.delete(issuer.id);
  updateVerification(issuer);
}

async function remove(issuer) {
  state.notes.delete(issuer.id);
  const confirmed = await confirmAction({
    title: `Delete ${issuer.name}?`,
    message: `The CA “${issuer.name}” and its stored credentials will be deleted. Certificates it issued stay valid.`,
    action: "Delete",
  });
  if (!confirmed) return;
  try {
    await request("DELETE", `${ISSUERS}/${encodeURIComponent(issuer.id)}`, { etag: issuer.etag });
  } catch (error) {
    const text =
      error.status === 412
        ? "Not deleted: someone changed this CA meanwhile. The list was refreshed; try again."
        : `Cannot delete ${issuer.name}: ${error.message}`;
    if (error.status === 412) await reload();
    state.notes.set(issuer.id, { kind: "error", text });
    replaceRow(state.issuers.find((i) => i.id === issuer.id) || issuer); // its note is an alert
    return;
  }
  announce(`${issuer.name} deleted.`);
  await reload();
  $("#ca-add").focus();
}

// --- the add / edit dialog ---------------------------------------------------------------------

const dialog = () => $("#ca-dialog");
const form = () => $("#ca-form");

function selectType(type) {
  for (const fieldset of $$(".type-fields", form())) {
    const on = fieldset.dataset.type === type;
    fieldset.hidden = !on;
    fieldset.disabled = !on;
  }
  for (const radio of $$("input[name=issuer_type]", form())) radio.checked = radio.value === type;
}

function resetForm() {
  const f = form();
  f.reset();
  clearErrors(f);
  for (const details of $$("details", f)) details.open = false;
}

function openAdd() {
  state.editing = null;
  resetForm();
  replaceChildren($("#ca-dialog-title"), "Add CA");
  replaceChildren($("#ca-submit"), "Add CA");
  $("#ca-type-fieldset").disabled = false;
  $("#ca-secret-note").hidden = true;
  selectType("GLOBAL_SIGN");
  openDialog(dialog(), { focus: "#ca-type-gs" });
}

function openEdit(issuer) {
  state.editing = issuer;
  resetForm();
  replaceChildren($("#ca-dialog-title"), `Edit ${issuer.name}`);
  replaceChildren($("#ca-submit"), "Save changes");
  selectType(issuer.issuer_type);
  $("#ca-type-fieldset").disabled = true; // the type of an issuer cannot change
  $("#ca-secret-note").hidden = false;
  $("#ca-name").value = issuer.name;
  $("#ca-description").value = issuer.description || "";
  for (const control of $$("[data-field^='issuer_attributes.']", form())) {
    if (control.matches(":disabled")) continue;
    const key = control.dataset.field.slice("issuer_attributes.".length);
    control.value = issuer.issuer_attributes[key] || "";
    if (control.value && control.closest("details")) control.closest("details").open = true;
  }
  openDialog(dialog(), { focus: "#ca-name" });
}

/** The request body from the form: only the controls of the chosen type, empty ones left out. */
function body() {
  const f = form();
  const type = $("input[name=issuer_type]:checked", f)?.value;
  const attributes = {};
  const credentials = {};
  for (const control of $$("[data-field]", f)) {
    if (control.matches(":disabled") || control.type === "radio") continue;
    const [group, key] = control.dataset.field.split(".");
    const value = control.value.trim();
    if (!key || !value) continue;
    if (group === "issuer_attributes") attributes[key] = value;
    if (group === "issuer_credentials") credentials[key] = control.tagName === "TEXTAREA" ? control.value : value;
  }
  const out = { name: $("#ca-name").value.trim() };
  const description = $("#ca-description").value.trim();
  if (state.editing) {
    out.description = description;
    out.issuer_attributes = attributes;
    if (Object.keys(credentials).length) out.issuer_credentials = credentials;
  } else {
    if (description) out.description = description;
    out.issuer_type = type;
    out.issuer_attributes = attributes;
    out.issuer_credentials = credentials;
  }
  return out;
}

async function submit(event) {
  event.preventDefault();
  const f = form();
  clearErrors(f);
  const submitButton = $("#ca-submit");
  submitButton.disabled = true;
  const editing = state.editing;
  let saved;
  try {
    saved = editing
      ? await request("PUT", `${ISSUERS}/${encodeURIComponent(editing.id)}`, { body: body(), etag: editing.etag })
      : await request("POST", ISSUERS, { body: body() });
  } catch (error) {
    submitButton.disabled = false;
    if (error.status === 412) {
      showErrors(f, { message: "Someone changed this CA meanwhile: close this dialog and edit it again.", fields: [] });
    } else {
      showErrors(f, error);
    }
    return;
  }
  submitButton.disabled = false;
  state.notes.delete(saved.id);
  await reload();
  // A new CA: land on its row, ready to verify it.
  closeDialog(dialog(), { focusKey: editing ? undefined : `verify:${saved.id}` });
  announce(
    editing
      ? `${saved.name} saved. Its verification was reset: verify it again.`
      : `${saved.name} added. Verify it, then activate it for a service.`,
  );
}

function mount() {
  $("#ca-add").addEventListener("click", openAdd);
  form().addEventListener("submit", submit);
  for (const radio of $$("input[name=issuer_type]", form())) {
    radio.addEventListener("change", () => {
      clearErrors(form());
      selectType(radio.value);
    });
  }
}

function reset() {
  state.issuers = [];
  state.configs = [];
  state.notes.clear();
  state.verifying.clear();
  replaceChildren($("#ca-table tbody"));
}

export default { title: "Certificate authorities", mount, show: reload, reset };
