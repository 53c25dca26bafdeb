-- OSCORE (RFC 8613) for the LwM2M server account: a configuration may ask for it (security mode
-- nosec, the link in /0/x/17 to an OSCORE object instance /21/y), and each device then gets its
-- own security context, kept here for the LwM2M server (lwm2m-oscore export).
ALTER TABLE bootstrap_configs ADD COLUMN oscore boolean NOT NULL DEFAULT false;
ALTER TABLE bootstrap_configs ADD CONSTRAINT bootstrap_configs_oscore_nosec
    CHECK (NOT oscore OR security_mode = 'nosec');

CREATE TABLE lwm2m_oscore_accounts (
    endpoint       text PRIMARY KEY,
    sender_id      bytea NOT NULL UNIQUE,   -- the device's Sender ID: the LwM2M server's kid lookup
    recipient_id   bytea NOT NULL,          -- the device's Recipient ID: the server's Sender ID
    master_secret  bytea NOT NULL,          -- sealed
    master_salt    bytea NOT NULL,
    aead_algorithm integer NOT NULL,
    hmac_algorithm integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
