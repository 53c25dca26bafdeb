// Service configurations: each service's active CA, and the "Select service configuration" dialog
// (move a service to another CA or to the built-in one, or create a custom service on the way).

import { request } from "./api.js";
import { $, actionButton, announce, h, keepingFocus, replaceChildren, time } from "./dom.js";
import { clearErrors, closeDialog, confirmAction, openDialog, showErrors } from "./dialogs.js";
import { CONFIGS, ISSUERS, LWM2M, configPath, loadCatalog, typeLabel } from "./data.js";
import { remember, stateOf } from "./verification.js";

const REFERENCE = /^[A-Za-z0-9_.-]{1,100}$/;
const BUILTIN = "Built-in CA";

const state = { issuers: [], configs: [] };
const dialogState = { issuers: [], configs: [], pending: [], onSaved: null, verifying: false };

const section = () => $("#view-services");

function showViewError(error) {
  const banner = $(".view-error", section());
  banner.hidden = !error;
  banner.textContent = error ? error.message : "";
}

const issuerById = (issuers, id) => issuers.find((issuer) => issuer.id === id) || null;

function caCell(issuers, config) {
  if (config.certificate_issuer_id === null) return h("span", {}, BUILTIN);
  const issuer = issuerById(issuers, config.certificate_issuer_id);
  if (!issuer) return h("span", { class: "muted" }, config.certificate_issuer_id);
  return h("span", {}, h("span", { class: "name" }, issuer.name), " ", h("span", { class: "tag" }, typeLabel(issuer.issuer_type)));
}

function verificationCell(issuers, config) {
  if (config.certificate_issuer_id === null) return h("span", { class: "muted" }, "Not applicable");
  const known = stateOf(issuerById(issuers, config.certificate_issuer_id));
  if (!known) return h("span", { class: "status warn" }, "Not verified");
  return h("span", { class: known.successful ? "status ok" : "status bad" }, known.successful ? "Verified" : "Failed");
}

function row(config) {
  const isLwm2m = config.reference === LWM2M;
  return h(
    "tr",
    { dataset: { configId: config.id } },
    h(
      "th",
      { scope: "row" },
      h("span", { class: "name" }, config.reference),
      h("span", { class: "detail" }, isLwm2m ? "Device LwM2M certificates" : "Custom service"),
    ),
    h("td", {}, caCell(state.issuers, config)),
    h("td", {}, verificationCell(state.issuers, config)),
    h("td", {}, time(config.updated_at, { utc: false })),
    h(
      "td",
      { class: "row-actions" },
      actionButton("Change CA", config.reference, {
        focusKey: `change:${config.id}`,
        onClick: () => openServiceDialog({ reference: config.reference, onSaved: reload }),
      }),
      isLwm2m
        ? null
        : actionButton("Delete", config.reference, {
            focusKey: `delete-config:${config.id}`,
            danger: true,
            onClick: () => remove(config),
          }),
    ),
  );
}

export async function reload() {
  try {
    const catalog = await loadCatalog();
    state.issuers = catalog.issuers;
    state.configs = catalog.configs;
    showViewError(null);
  } catch (error) {
    showViewError(error);
    return;
  }
  keepingFocus(() => replaceChildren($("#service-table tbody"), state.configs.map(row)));
}

async function remove(config) {
  const confirmed = await confirmAction({
    title: `Delete ${config.reference}?`,
    message: `Devices will no longer get certificates for the service “${config.reference}” (/est/${config.reference}/…).`,
    action: "Delete",
  });
  if (!confirmed) return;
  try {
    await request("DELETE", configPath(config), { etag: config.etag });
  } catch (error) {
    showViewError(error);
    announce(`Not deleted: ${error.message}`);
    return;
  }
  announce(`Service configuration ${config.reference} deleted.`);
  await reload();
  $("#service-new").focus();
}

// --- the dialog ------------------------------------------------------------------------------------

const dialog = () => $("#service-dialog");
const form = () => $("#service-form");

function fillIssuers(selectedId) {
  const select = $("#svc-issuer");
  replaceChildren(
    select,
    h("option", { value: "" }, `${BUILTIN} (this server)`),
    dialogState.issuers.map((issuer) =>
      h("option", { value: issuer.id }, `${issuer.name} (${typeLabel(issuer.issuer_type)})`),
    ),
  );
  select.value = selectedId || "";
}

function currentCaName(config) {
  if (config.certificate_issuer_id === null) return BUILTIN;
  return issuerById(dialogState.issuers, config.certificate_issuer_id)?.name || "unknown CA";
}

function fillConfigs(selectedReference) {
  const select = $("#svc-reference");
  replaceChildren(
    select,
    dialogState.configs.map((config) =>
      h("option", { value: config.reference }, `${config.reference} (now: ${currentCaName(config)})`),
    ),
    dialogState.pending.map((reference) =>
      h("option", { value: reference, dataset: { new: "true" } }, `${reference} (new)`),
    ),
  );
  select.value = selectedReference || LWM2M;
  updateSubmitLabel();
}

function selectedIsNew() {
  const option = $("#svc-reference").selectedOptions[0];
  return Boolean(option && option.dataset.new);
}

function updateSubmitLabel() {
  replaceChildren($("#svc-submit"), selectedIsNew() ? "Create" : "Save");
}

/** Warn when the chosen CA has no successful verification on record. */
function updateWarning() {
  const issuer = issuerById(dialogState.issuers, $("#svc-issuer").value);
  const box = $("#svc-warning");
  const text = $("#svc-warning-text");
  const verifyButton = $("#svc-verify");
  if (!issuer) {
    box.hidden = true;
    text.textContent = "";
    return;
  }
  const known = stateOf(issuer);
  if (dialogState.verifying) {
    text.textContent = `Verifying ${issuer.name}…`;
    box.className = "banner warning";
  } else if (known && known.successful) {
    text.textContent = `${issuer.name} was verified: ${known.message}`;
    box.className = "banner success";
  } else if (known) {
    text.textContent = `The last verification of ${issuer.name} failed: ${known.message}. Devices may fail to get certificates if you activate it.`;
    box.className = "banner warning";
  } else {
    text.textContent =
      known === null && "verify_successful" in issuer
        ? `${issuer.name} has never been verified. It is recommended to verify a CA before activating it.`
        : `${issuer.name} has not been verified in this console session. It is recommended to verify a CA before activating it.`;
    box.className = "banner warning";
  }
  verifyButton.hidden = Boolean(known && known.successful);
  box.hidden = false;
}

async function verifyInDialog() {
  const issuer = issuerById(dialogState.issuers, $("#svc-issuer").value);
  if (!issuer || dialogState.verifying) return;
  dialogState.verifying = true;
  updateWarning();
  try {
    const outcome = await request("POST", `${ISSUERS}/${encodeURIComponent(issuer.id)}/verify`);
    remember(issuer, outcome);
    announce(outcome.successful ? `${issuer.name} verified.` : `Verification of ${issuer.name} failed.`);
  } catch (error) {
    showErrors(form(), error);
  } finally {
    dialogState.verifying = false;
  }
  const hadFocus = document.activeElement === $("#svc-verify");
  updateWarning();
  if (hadFocus && $("#svc-verify").hidden) $("#svc-submit").focus();
  if (dialogState.onSaved) dialogState.onSaved(); // the page behind shows the new result too
}

function addPending() {
  const f = form();
  const input = $("#svc-new");
  const reference = input.value.trim();
  clearErrors(f);
  if (!REFERENCE.test(reference)) {
    showErrors(f, {
      message: "",
      fields: [{ field: "reference", message: "Enter 1-100 letters, digits, _ . or -" }],
    });
    return;
  }
  const existing = dialogState.configs.find((c) => c.reference.toLowerCase() === reference.toLowerCase());
  if (!existing && !dialogState.pending.includes(reference)) dialogState.pending.push(reference);
  fillConfigs(existing ? existing.reference : reference);
  input.value = "";
  announce(
    existing
      ? `${existing.reference} already exists and is selected.`
      : `${reference} added to the list and selected; it is created when you choose Create.`,
  );
  $("#svc-reference").focus();
}

/**
 * Open the dialog. `issuerId` preselects a CA (undefined: the service's current one; null: built-in),
 * `reference` a service; `newService` puts the focus on the new-service field.
 */
export async function openServiceDialog({ issuerId, reference, onSaved, newService = false } = {}) {
  let catalog;
  try {
    catalog = await loadCatalog();
  } catch (error) {
    announce(`Cannot open the dialog: ${error.message}`);
    return;
  }
  dialogState.issuers = catalog.issuers;
  dialogState.configs = catalog.configs;
  dialogState.pending = [];
  dialogState.onSaved = onSaved;
  const f = form();
  f.reset();
  clearErrors(f);
  fillConfigs(reference);
  const config = dialogState.configs.find((c) => c.reference === (reference || LWM2M));
  fillIssuers(issuerId !== undefined ? issuerId : config?.certificate_issuer_id);
  updateWarning();
  const focus = newService ? "#svc-new" : issuerId !== undefined ? "#svc-reference" : "#svc-issuer";
  openDialog(dialog(), { focus });
}

async function submit(event) {
  event.preventDefault();
  const f = form();
  clearErrors(f);
  const reference = $("#svc-reference").value;
  const issuerId = $("#svc-issuer").value || null;
  const issuerName = issuerById(dialogState.issuers, issuerId)?.name || BUILTIN;
  const isNew = selectedIsNew();
  const button = $("#svc-submit");
  button.disabled = true;
  try {
    if (isNew) {
      await request("POST", CONFIGS, { body: { reference, certificate_issuer_id: issuerId } });
    } else {
      const config = dialogState.configs.find((c) => c.reference === reference);
      await request("PUT", configPath(config), { body: { certificate_issuer_id: issuerId }, etag: config.etag });
    }
  } catch (error) {
    button.disabled = false;
    if (error.status === 412) {
      showErrors(f, { message: "Someone changed this service configuration meanwhile: close and try again.", fields: [] });
      return;
    }
    // A refused new reference is shown on the service list (the text field was emptied by +).
    const fields = error.fields.map((item) => (item.field === "reference" ? { ...item, field: "configuration" } : item));
    showErrors(f, { ...error, message: error.message, fields });
    return;
  }
  button.disabled = false;
  const onSaved = dialogState.onSaved;
  if (onSaved) await onSaved();
  closeDialog(dialog());
  announce(isNew ? `Service configuration ${reference} created with ${issuerName}.` : `${reference} now uses ${issuerName}.`);
}

function mount() {
  $("#service-new").addEventListener("click", () => openServiceDialog({ onSaved: reload, newService: true }));
  form().addEventListener("submit", submit);
  $("#svc-issuer").addEventListener("change", () => {
    clearErrors(form());
    updateWarning();
  });
  $("#svc-reference").addEventListener("change", updateSubmitLabel);
  $("#svc-add").addEventListener("click", addPending);
  $("#svc-new").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault(); // Enter adds the name instead of submitting the dialog
      addPending();
    }
  });
  $("#svc-verify").addEventListener("click", verifyInDialog);
}

function reset() {
  state.issuers = [];
  state.configs = [];
  replaceChildren($("#service-table tbody"));
}

export default { title: "Service configurations", mount, show: reload, reset };
