// Issuance and bootstraps: the most recent issued certificates and bootstrap outcomes, filtered;
// a certificate's details; revocation.

import { currentKey, request } from "./api.js";
import { $, actionButton, announce, fingerprint, h, keepingFocus, replaceChildren, time } from "./dom.js";
import { clearErrors, closeDialog, openDetails, openDialog, showErrors } from "./dialogs.js";
import { BOOTSTRAPS, ISSUED, loadCatalog, typeLabel } from "./data.js";

const PAGE = 25;
const METHODS = { request: "Request (/bs)", pack: "Pack (/bspack)" };

/** One paged list: its items, whether there are more, and how to fetch and draw them. */
function pagedList({ path, table, empty, more, error, query, row, noun }) {
  const list = { items: [], hasMore: false, unavailable: null };

  const banner = () => $(error);
  function setError(err) {
    banner().hidden = !err;
    banner().textContent = err ? err : "";
  }

  function render() {
    keepingFocus(() => replaceChildren($(`${table} tbody`), list.items.map(row)));
    $(table).hidden = list.unavailable !== null || list.items.length === 0;
    $(empty).hidden = list.unavailable !== null || list.items.length !== 0;
    $(more).hidden = !list.hasMore;
  }

  async function fetchPage(after) {
    return request("GET", path, { query: { ...query(), order: "DESC", limit: PAGE, after } });
  }

  function failed(err) {
    if (err.status === 404 && err.type === "not_found") {
      list.unavailable = `This server does not offer ${noun} history (GET ${path} answered 404).`;
      setError(list.unavailable);
      list.items = [];
      list.hasMore = false;
      render();
      return null;
    }
    if (err.status === 400 && err.fields.length) return err; // a filter the API refused
    setError(err.message);
    return null;
  }

  list.reload = async () => {
    try {
      const page = await fetchPage();
      list.items = page.data;
      list.hasMore = page.has_more;
      list.unavailable = null;
      setError(null);
    } catch (err) {
      return failed(err);
    }
    render();
    return null;
  };

  list.more = async () => {
    const last = list.items[list.items.length - 1];
    try {
      const page = await fetchPage(last ? last.id : undefined);
      list.items.push(...page.data);
      list.hasMore = page.has_more;
    } catch (err) {
      failed(err);
      return;
    }
    render();
    announce(`${list.items.length} ${noun}s shown.`);
    // The "Show more" button is gone: keep the keyboard user in this list.
    if (!list.hasMore) $(table).closest("section").querySelector("h2").focus();
  };

  list.reset = () => {
    list.items = [];
    list.hasMore = false;
    replaceChildren($(`${table} tbody`));
  };
  return list;
}

const value = (selector) => $(selector).value.trim();

// --- issued certificates -----------------------------------------------------------------------

function certificateStatus(cert) {
  if (cert.revoked_at) {
    return h("span", { class: "status bad" }, "Revoked", cert.revocation_reason ? h("span", { class: "detail" }, cert.revocation_reason) : null);
  }
  if (cert.valid) return h("span", { class: "status ok" }, "Valid");
  return h("span", { class: "status muted" }, new Date(cert.not_after) < new Date() ? "Expired" : "Not yet valid");
}

/** The service of a certificate; `__verify__` marks the test certificates of CA verification. */
const serviceLabel = (service) =>
  service === "__verify__" ? h("span", { class: "muted" }, "CA verification test") : service;

const caName = (cert) => (cert.issuer_id === null ? "Built-in CA" : cert.issuer_name);

function issuedRow(cert) {
  return h(
    "tr",
    { dataset: { certificateId: cert.id } },
    h("td", {}, time(cert.issued_at, { seconds: true, utc: false })),
    h("th", { scope: "row" }, h("span", { class: "name" }, cert.endpoint)),
    h("td", {}, serviceLabel(cert.service)),
    h("td", {}, caName(cert), " ", h("span", { class: "tag" }, typeLabel(cert.issuer_type))),
    h("td", {}, h("code", { class: "serial", title: cert.serial_number }, cert.serial_number)),
    h("td", {}, time(cert.not_after, { utc: false })),
    h("td", {}, certificateStatus(cert)),
    h(
      "td",
      { class: "row-actions" },
      actionButton("Details", `certificate of ${cert.endpoint}`, {
        focusKey: `issued-details:${cert.id}`,
        onClick: () => showCertificate(cert.id),
      }),
      cert.revoked_at
        ? null
        : actionButton("Revoke", `certificate of ${cert.endpoint}`, {
            focusKey: `issued-revoke:${cert.id}`,
            danger: true,
            onClick: () => openRevoke(cert),
          }),
    ),
  );
}

const issued = pagedList({
  path: ISSUED,
  table: "#issued-table",
  empty: "#issued-empty",
  more: "#issued-more",
  error: "#issued-error",
  noun: "certificate",
  row: issuedRow,
  query: () => ({ endpoint__eq: value("#filter-endpoint"), service__eq: value("#filter-service") }),
});

async function showCertificate(id) {
  let cert;
  try {
    cert = await request("GET", `${ISSUED}/${encodeURIComponent(id)}`);
  } catch (error) {
    announce(error.message);
    $("#issued-error").textContent = error.message;
    $("#issued-error").hidden = false;
    return;
  }
  const actions = cert.revoked_at
    ? []
    : [
        h(
          "button",
          {
            type: "button",
            class: "button danger",
            on: {
              click: () => {
                closeDialog($("#details-dialog"));
                openRevoke(cert);
              },
            },
          },
          "Revoke…",
        ),
      ];
  openDetails({
    title: `Certificate of ${cert.endpoint}`,
    rows: [
      ["Endpoint", cert.endpoint],
      ["Service", serviceLabel(cert.service)],
      ["Subject", h("span", { class: "dn" }, cert.subject)],
      ["Issued by", `${caName(cert)} (${typeLabel(cert.issuer_type)})`],
      ["Serial number", h("code", { class: "serial" }, cert.serial_number)],
      ["SHA-256 fingerprint", fingerprint(cert.certificate_fingerprint)],
      ["Valid from", time(cert.not_before, { seconds: true })],
      ["Valid until", time(cert.not_after, { seconds: true })],
      ["Issued at", time(cert.issued_at, { seconds: true })],
      ["Status", certificateStatus(cert)],
      ["Revoked at", cert.revoked_at ? time(cert.revoked_at, { seconds: true }) : "—"],
      ["Request id", h("code", {}, cert.request_id)],
    ],
    pem: cert.certificate,
    actions,
  });
}

const revokeState = { cert: null };

function openRevoke(cert) {
  revokeState.cert = cert;
  const f = $("#revoke-form");
  f.reset();
  clearErrors(f);
  replaceChildren(
    $("#revoke-summary"),
    "Certificate of ",
    h("strong", {}, cert.endpoint),
    ` for ${cert.service}, serial `,
    h("code", {}, cert.serial_number),
    ".",
  );
  openDialog($("#revoke-dialog"), { focus: "#revoke-reason", returnFocusKey: `issued-details:${cert.id}` });
}

async function revoke(event) {
  event.preventDefault();
  const f = $("#revoke-form");
  clearErrors(f);
  const cert = revokeState.cert;
  try {
    await request("POST", `${ISSUED}/${encodeURIComponent(cert.id)}/revoke`, { body: { reason: $("#revoke-reason").value } });
  } catch (error) {
    showErrors(f, error);
    return;
  }
  await issued.reload();
  closeDialog($("#revoke-dialog"));
  announce(`Certificate of ${cert.endpoint} revoked.`);
}

// --- bootstraps --------------------------------------------------------------------------------

function duration(session) {
  const ms = new Date(session.ended_at) - new Date(session.started_at);
  if (!Number.isFinite(ms) || ms < 0) return "—";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function bootstrapRow(session) {
  const ok = session.outcome === "success";
  return h(
    "tr",
    {},
    h("td", {}, time(session.started_at, { seconds: true, utc: false })),
    h("th", { scope: "row" }, h("span", { class: "name" }, session.endpoint)),
    h("td", {}, METHODS[session.method] || session.method),
    h("td", {}, session.transport),
    h("td", {}, session.security_mode || h("span", { class: "muted" }, "—")),
    h(
      "td",
      {},
      h("span", { class: ok ? "status ok" : "status bad" }, ok ? "Success" : "Failed", session.reason ? h("span", { class: "detail" }, session.reason) : null),
    ),
    h("td", {}, duration(session)),
  );
}

const bootstraps = pagedList({
  path: BOOTSTRAPS,
  table: "#bootstraps-table",
  empty: "#bootstraps-empty",
  more: "#bootstraps-more",
  error: "#bootstraps-error",
  noun: "bootstrap",
  row: bootstrapRow,
  query: () => ({
    endpoint__eq: value("#filter-endpoint"),
    outcome__eq: $("#filter-outcome").value,
    method__eq: $("#filter-method").value,
  }),
});

// --- the page ----------------------------------------------------------------------------------

async function fillServiceOptions() {
  try {
    const { configs } = await loadCatalog();
    replaceChildren($("#filter-service-options"), configs.map((c) => h("option", { value: c.reference })));
  } catch {
    // Suggestions only.
  }
}

async function reload() {
  const f = $("#activity-filter");
  clearErrors(f);
  const refused = (await Promise.all([issued.reload(), bootstraps.reload(), fillServiceOptions()])).filter(Boolean);
  if (refused.length) showErrors(f, refused[0]);
}

function mount() {
  const f = $("#activity-filter");
  f.addEventListener("submit", async (event) => {
    event.preventDefault();
    await reload();
    announce(`Filters applied: ${issued.items.length} certificates and ${bootstraps.items.length} bootstraps shown.`);
  });
  f.addEventListener("reset", () => {
    if (!currentKey()) return; // reset on sign-out: nothing to load
    window.setTimeout(async () => {
      await reload();
      announce("Filters cleared.");
    }, 0);
  });
  $("#issued-more").addEventListener("click", issued.more);
  $("#bootstraps-more").addEventListener("click", bootstraps.more);
  $("#revoke-form").addEventListener("submit", revoke);
}

function reset() {
  issued.reset();
  bootstraps.reset();
  $("#activity-filter").reset();
}

export default { title: "Issuance and bootstraps", mount, show: reload, reset };
