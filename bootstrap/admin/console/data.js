// Shared reads: certificate issuers and service configurations, and how they relate.

import { listAll } from "./api.js";

export const ISSUERS = "/v3/certificate-issuers";
export const CONFIGS = "/v3/certificate-issuer-configurations";
export const TRUSTED = "/v3/trusted-certificates";
export const ISSUED = "/v3/issued-certificates";
export const BOOTSTRAPS = "/v3/bootstrap-sessions";
export const LWM2M = "LWM2M";

export const TYPE_LABELS = { GLOBAL_SIGN: "GlobalSign", CFSSL_AUTH: "CFSSL" };
export const typeLabel = (type) => TYPE_LABELS[type] || type;

/** LWM2M first, then the custom services by reference. */
export function sortConfigs(configs) {
  return [...configs].sort((a, b) => {
    if (a.reference === LWM2M) return -1;
    if (b.reference === LWM2M) return 1;
    return a.reference.localeCompare(b.reference);
  });
}

/** Issuers (by name) and configurations (LWM2M first), read together. */
export async function loadCatalog() {
  const [issuers, configs] = await Promise.all([listAll(ISSUERS), listAll(CONFIGS)]);
  issuers.sort((a, b) => a.name.localeCompare(b.name));
  return { issuers, configs: sortConfigs(configs) };
}

/** References of the services each issuer is active for: Map(issuer id -> [reference...]). */
export function servicesByIssuer(configs) {
  const out = new Map();
  for (const config of configs) {
    if (config.certificate_issuer_id === null) continue;
    const list = out.get(config.certificate_issuer_id) || [];
    list.push(config.reference);
    out.set(config.certificate_issuer_id, list);
  }
  return out;
}

/** The URL path of one configuration (LWM2M has its own). */
export const configPath = (config) =>
  config.reference === LWM2M ? `${CONFIGS}/lwm2m` : `${CONFIGS}/${encodeURIComponent(config.id)}`;
