-- Admin API keys (only a SHA-256 of each key is stored) and the audit of admin changes.

CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    name         text NOT NULL CHECK (name ~ '^[A-Za-z0-9_.@-]{1,100}$'),
    prefix       text NOT NULL UNIQUE,   -- public part of the key, to find its row and identify it
    key_sha256   bytea NOT NULL CHECK (octet_length(key_sha256) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,            -- updated at most once a minute
    revoked_at   timestamptz
);
-- A name identifies one live key; revoked keys keep their row (and name) for the audit.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (name) WHERE revoked_at IS NULL;

-- Every change made through the admin API (and API key changes made with the CLI).
CREATE TABLE admin_audit (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    api_key_id   text,                   -- NULL for the CLI
    api_key_name text NOT NULL,
    method       text NOT NULL,
    path         text NOT NULL,
    target_id    text,
    status       integer NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('success', 'failure')),
    request_id   text NOT NULL
);
CREATE INDEX admin_audit_at ON admin_audit (at DESC);
CREATE INDEX admin_audit_target ON admin_audit (target_id, at DESC);

-- Rows are never rewritten (old ones may be deleted for retention).
CREATE FUNCTION admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_audit is append-only';
END $$;
CREATE TRIGGER admin_audit_append_only BEFORE UPDATE ON admin_audit
    FOR EACH ROW EXECUTE FUNCTION admin_audit_append_only();
