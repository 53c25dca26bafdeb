// The console's entry point: sign-in and sign-out, the section router (#/cas ...), dialogs wiring.

import * as api from "./api.js";
import { $, $$, announce } from "./dom.js";
import { clearErrors, showErrors, wireCloseButtons, wirePemFile } from "./dialogs.js";
import { forgetAll as forgetVerifications } from "./verification.js";
import cas from "./cas.js";
import services from "./services.js";
import trust from "./trust.js";
import activity from "./activity.js";

const VIEWS = { cas, services, trust, activity };
const DEFAULT_ROUTE = "cas";
const TITLE = "LwM2M bootstrap console";

function routeName() {
  const match = /^#\/([a-z]+)/.exec(window.location.hash);
  return match && VIEWS[match[1]] ? match[1] : DEFAULT_ROUTE;
}

function showSection(id) {
  for (const section of $$("main > section.view")) section.hidden = section.id !== id;
}

function signedIn() {
  return Boolean(api.currentKey());
}

function setChrome(isSignedIn) {
  $("#nav").hidden = !isSignedIn;
  $("#session").hidden = !isSignedIn;
}

let firstRender = true;

/** Show the section named by the URL fragment, load its data and move focus to its heading. */
async function render() {
  if (!signedIn()) {
    showSignIn();
    return;
  }
  setChrome(true);
  const name = routeName();
  const view = VIEWS[name];
  for (const link of $$("#nav a")) {
    if (link.dataset.route === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  showSection(`view-${name}`);
  document.title = `${view.title} · ${TITLE}`;
  const heading = $(`#view-${name} h1`);
  // Keyboard and screen-reader users land on the new page's heading (not on the first load).
  if (!firstRender || document.activeElement === document.body) heading.focus();
  firstRender = false;
  await view.show();
}

function showSignIn(message) {
  setChrome(false);
  showSection("view-signin");
  document.title = `Sign in · ${TITLE}`;
  const form = $("#signin-form");
  clearErrors(form);
  if (message) showErrors(form, { message, fields: [] });
  else $("#api-key").focus();
}

async function signIn(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const input = $("#api-key");
  const key = input.value.trim();
  clearErrors(form);
  if (!key) {
    showErrors(form, { message: "", fields: [{ field: "api_key", message: "Enter an API key" }] });
    return;
  }
  const button = $("button[type=submit]", form);
  button.disabled = true;
  try {
    // Any authenticated read tells whether the key is accepted.
    await api.request("GET", "/v3/certificate-issuers", { query: { limit: 2 }, key });
  } catch (error) {
    button.disabled = false;
    if (error.status === 401) {
      showErrors(form, { message: "", fields: [{ field: "api_key", message: error.message }] });
    } else {
      showErrors(form, error);
    }
    return;
  }
  button.disabled = false;
  input.value = "";
  api.storeKey(key);
  announce("Signed in.");
  firstRender = false;
  if (!/^#\/[a-z]+/.test(window.location.hash)) {
    window.location.hash = `#/${DEFAULT_ROUTE}`; // triggers render through hashchange
  } else {
    await render();
  }
}

function signOut(message) {
  api.forgetKey();
  forgetVerifications();
  for (const dialog of $$("dialog[open]")) dialog.close();
  for (const view of Object.values(VIEWS)) view.reset();
  showSignIn(message);
  announce(message || "Signed out.");
}

function boot() {
  wireCloseButtons();
  for (const input of $$("input[type=file][data-pem-for]")) {
    wirePemFile(input, document.getElementById(input.dataset.pemFor));
  }
  for (const view of Object.values(VIEWS)) view.mount();
  $("#signin-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => signOut());
  $(".skip-link").addEventListener("click", (event) => {
    event.preventDefault(); // keep the #/route fragment
    $("#main").focus();
  });
  api.onUnauthorized((error) => {
    if (signedIn()) signOut(`Signed out: ${error.message}`);
  });
  window.addEventListener("hashchange", () => {
    if (/^#\/[a-z]*/.test(window.location.hash) || window.location.hash === "") render();
  });
  render();
}

boot();
