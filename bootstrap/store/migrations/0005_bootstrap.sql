-- Bootstrap configurations, the LwM2M-server PSK accounts the bootstrap provisions, and an audit
-- of every bootstrap.

-- scope '*' is the default; any other scope is an endpoint name overriding it.
CREATE TABLE bootstrap_configs (
    scope              text PRIMARY KEY CHECK (char_length(scope) BETWEEN 1 AND 128),
    server_uri         text NOT NULL,
    security_mode      text NOT NULL CHECK (security_mode IN ('est', 'certificate', 'psk', 'nosec')),
    short_server_id    integer NOT NULL DEFAULT 1 CHECK (short_server_id BETWEEN 1 AND 65534),
    lifetime           integer NOT NULL DEFAULT 86400 CHECK (lifetime > 0),
    binding            text NOT NULL DEFAULT 'U',
    server_certificate bytea,           -- DER: the LwM2M server's certificate or trust anchor (/0/x/4)
    certificate_usage  integer CHECK (certificate_usage BETWEEN 0 AND 3),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    etag               text NOT NULL
);

-- PSK accounts written to devices in mode psk, for the LwM2M server to authenticate them.
CREATE TABLE lwm2m_psk_accounts (
    endpoint     text PRIMARY KEY,
    psk_identity text NOT NULL UNIQUE,
    psk_key      bytea NOT NULL,        -- sealed
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bootstrap_sessions (
    id          bigserial PRIMARY KEY,
    endpoint    text NOT NULL,
    method      text NOT NULL CHECK (method IN ('request', 'pack')),
    transport   text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('success', 'failed')),
    reason      text,
    security_mode text
);
CREATE INDEX bootstrap_sessions_endpoint ON bootstrap_sessions (endpoint, started_at DESC);
CREATE INDEX bootstrap_sessions_started ON bootstrap_sessions (started_at DESC);
