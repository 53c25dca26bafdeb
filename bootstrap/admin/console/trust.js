// Trusted certificates (bootstrap and lwm2m): list, upload a PEM, details, deactivate, delete.

import { request } from "./api.js";
import { $, actionButton, announce, fingerprint, h, keepingFocus, replaceChildren, time } from "./dom.js";
import { clearErrors, closeDialog, confirmAction, openDetails, openDialog, showErrors } from "./dialogs.js";
import { TRUSTED } from "./data.js";

const PAGE = 100;
const state = { items: [], hasMore: false };

const section = () => $("#view-trust");

function showViewError(error) {
  const banner = $(".view-error", section());
  banner.hidden = !error;
  banner.textContent = error ? error.message : "";
}

function statusCell(item) {
  const active = item.status === "ACTIVE";
  return h(
    "span",
    { class: active && item.valid ? "status ok" : "status muted" },
    active ? "Active" : "Inactive",
    item.valid ? null : h("span", { class: "detail bad-text" }, "Outside its validity period"),
  );
}

function row(item) {
  const active = item.status === "ACTIVE";
  return h(
    "tr",
    { dataset: { trustedId: item.id } },
    h("th", { scope: "row" }, h("span", { class: "name" }, item.name), item.description ? h("span", { class: "detail" }, item.description) : null),
    h("td", {}, item.service),
    h("td", { class: "dn" }, item.subject),
    h("td", {}, time(item.validity, { utc: false })),
    h("td", {}, statusCell(item)),
    h(
      "td",
      { class: "row-actions" },
      actionButton("Details", item.name, { focusKey: `trust-details:${item.id}`, onClick: () => details(item) }),
      actionButton(active ? "Deactivate" : "Activate", item.name, {
        focusKey: `trust-status:${item.id}`,
        onClick: () => setStatus(item, active ? "INACTIVE" : "ACTIVE"),
      }),
      actionButton("Delete", item.name, { focusKey: `trust-delete:${item.id}`, danger: true, onClick: () => remove(item) }),
    ),
  );
}

function render() {
  keepingFocus(() => replaceChildren($("#trust-table tbody"), state.items.map(row)));
  $("#trust-table").hidden = state.items.length === 0;
  $(".empty", section()).hidden = state.items.length !== 0;
  $("#trust-more").hidden = !state.hasMore;
}

function filters() {
  return { service__eq: $("#trust-filter-service").value };
}

async function fetchPage(after) {
  return request("GET", TRUSTED, { query: { ...filters(), limit: PAGE, after } });
}

export async function reload() {
  try {
    // Reload as many items as were shown (a page at least), so actions keep the reader's place.
    const items = [];
    let after;
    let hasMore = false;
    do {
      const page = await fetchPage(after);
      items.push(...page.data);
      hasMore = page.has_more;
      after = page.data.length ? page.data[page.data.length - 1].id : undefined;
    } while (hasMore && items.length < Math.max(state.items.length, PAGE));
    state.items = items;
    state.hasMore = hasMore;
    showViewError(null);
  } catch (error) {
    showViewError(error);
    return;
  }
  render();
}

async function more() {
  const last = state.items[state.items.length - 1];
  try {
    const page = await fetchPage(last ? last.id : undefined);
    state.items.push(...page.data);
    state.hasMore = page.has_more;
  } catch (error) {
    showViewError(error);
    return;
  }
  render();
  announce(`${state.items.length} trusted certificates shown.`);
  if (!state.hasMore) $("#trust-title").focus();
}

function details(item) {
  openDetails({
    title: `Trusted certificate ${item.name}`,
    rows: [
      ["Service", item.service],
      ["Status", item.status === "ACTIVE" ? "Active" : "Inactive"],
      ["Subject", h("span", { class: "dn" }, item.subject)],
      ["Issuer", h("span", { class: "dn" }, item.issuer)],
      ["Valid until", time(item.validity)],
      ["Valid now", item.valid ? "Yes" : "No"],
      ["SHA-256 fingerprint", fingerprint(item.certificate_fingerprint)],
      ["Description", item.description || "—"],
      ["Added", time(item.created_at)],
    ],
    pem: item.certificate,
  });
}

async function setStatus(item, status) {
  try {
    await request("PUT", `${TRUSTED}/${encodeURIComponent(item.id)}`, { body: { status }, etag: item.etag });
  } catch (error) {
    showViewError(error);
    announce(error.message);
    return;
  }
  announce(status === "ACTIVE" ? `${item.name} is trusted again.` : `${item.name} deactivated: it is no longer trusted.`);
  await reload();
}

async function remove(item) {
  const confirmed = await confirmAction({
    title: `Delete ${item.name}?`,
    message: `Devices whose certificates chain to “${item.name}” will no longer be accepted for ${item.service}.`,
    action: "Delete",
  });
  if (!confirmed) return;
  try {
    await request("DELETE", `${TRUSTED}/${encodeURIComponent(item.id)}`, { etag: item.etag });
  } catch (error) {
    showViewError(error);
    announce(error.message);
    return;
  }
  announce(`${item.name} deleted.`);
  await reload();
  $("#trust-upload").focus();
}

// --- upload ------------------------------------------------------------------------------------

const dialog = () => $("#trust-dialog");
const form = () => $("#trust-form");

function openUpload() {
  const f = form();
  f.reset();
  clearErrors(f);
  const service = $("#trust-filter-service").value;
  if (service) $("#trust-service").value = service;
  openDialog(dialog(), { focus: "#trust-name" });
}

async function submit(event) {
  event.preventDefault();
  const f = form();
  clearErrors(f);
  const body = {
    name: $("#trust-name").value.trim(),
    service: $("#trust-service").value,
    certificate: $("#trust-pem").value,
  };
  const description = $("#trust-description").value.trim();
  if (description) body.description = description;
  let created;
  try {
    created = await request("POST", TRUSTED, { body });
  } catch (error) {
    showErrors(f, error);
    return;
  }
  await reload();
  closeDialog(dialog());
  announce(`${created.name} uploaded and trusted for ${created.service}.`);
}

function mount() {
  $("#trust-upload").addEventListener("click", openUpload);
  form().addEventListener("submit", submit);
  $("#trust-more").addEventListener("click", more);
  $("#trust-filter").addEventListener("submit", (event) => event.preventDefault());
  $("#trust-filter-service").addEventListener("change", () => {
    state.items = [];
    reload();
  });
}

function reset() {
  state.items = [];
  state.hasMore = false;
  replaceChildren($("#trust-table tbody"));
}

export default { title: "Trusted certificates", mount, show: reload, reset };
