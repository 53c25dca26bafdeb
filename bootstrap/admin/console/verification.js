// Verification state of each CA.
//
// The API's issuer object says whether and when a CA was last verified (`verified_at`,
// `verify_successful`, `verify_message`; reset when the CA is edited), and that is what is shown.
// For servers that do not report it, the console falls back to the results of the verifications it
// ran in this browser session (sessionStorage), keyed by issuer id and tied to the issuer's etag.

const ITEM = "lwm2m-console.verifications";

function load() {
  try {
    return JSON.parse(sessionStorage.getItem(ITEM) || "{}");
  } catch {
    return {};
  }
}

/** Remember the outcome of POST /verify for `issuer` (the object as listed). */
export function remember(issuer, outcome) {
  const all = load();
  all[issuer.id] = {
    etag: issuer.etag,
    successful: Boolean(outcome.successful),
    message: String(outcome.message || ""),
    at: new Date().toISOString(),
  };
  sessionStorage.setItem(ITEM, JSON.stringify(all));
}

export function forgetAll() {
  sessionStorage.removeItem(ITEM);
}

/**
 * What is known about the verification of `issuer`:
 * {successful, message, at, source: "server" | "session"} or null when never verified (as far as
 * we know).
 */
export function stateOf(issuer) {
  if (!issuer) return null;
  if ("verify_successful" in issuer) {
    if (issuer.verify_successful === null || issuer.verify_successful === undefined) return null;
    return {
      successful: Boolean(issuer.verify_successful),
      message: issuer.verify_message || "",
      at: issuer.verified_at || null,
      source: "server",
    };
  }
  const known = load()[issuer.id];
  if (!known || known.etag !== issuer.etag) return null;
  return { ...known, source: "session" };
}

/** True when the server reports verification state (so the UI can say where results come from). */
export const serverTracksVerification = (issuers) => issuers.some((i) => "verify_successful" in i);
