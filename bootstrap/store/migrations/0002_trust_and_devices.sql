-- Trusted certificates (who may bootstrap), PSK device credentials, the server's own certificate.

CREATE TABLE trusted_certificates (
    id                 text PRIMARY KEY,
    name               text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 100),
    description        text CHECK (description IS NULL OR char_length(description) <= 500),
    service            text NOT NULL CHECK (service IN ('bootstrap', 'lwm2m')),
    status             text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'INACTIVE')),
    certificate_pem    text NOT NULL,          -- the PEM as uploaded (a chain is allowed)
    fingerprint_sha256 text NOT NULL,          -- of the first certificate
    subject            text NOT NULL,
    issuer             text NOT NULL,
    not_before         timestamptz NOT NULL,
    not_after          timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    etag               text NOT NULL,
    UNIQUE (service, fingerprint_sha256)
);

-- Per-device PSK credentials for bootstrapping in PSK mode. The key is sealed.
CREATE TABLE device_credentials (
    endpoint     text PRIMARY KEY CHECK (char_length(endpoint) BETWEEN 1 AND 128),
    psk_identity text NOT NULL UNIQUE CHECK (octet_length(psk_identity) BETWEEN 1 AND 128),
    psk_key      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The server's own (D)TLS certificate when issued by the built-in CA, per host name.
CREATE TABLE server_certificates (
    hostname    text PRIMARY KEY,
    certificate bytea NOT NULL,      -- DER
    private_key bytea NOT NULL,      -- sealed PKCS#8 PEM
    not_after   timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION notify_trust_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lwm2m_bootstrap_trust', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER trusted_certificates_notify AFTER INSERT OR UPDATE OR DELETE ON trusted_certificates
    FOR EACH STATEMENT EXECUTE FUNCTION notify_trust_changed();

-- Row-level: the payload names the PSK identity that changed, so caches can drop just that one.
CREATE FUNCTION notify_psk_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('lwm2m_bootstrap_psk', OLD.psk_identity);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('lwm2m_bootstrap_psk', NEW.psk_identity);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER device_credentials_notify AFTER INSERT OR UPDATE OR DELETE ON device_credentials
    FOR EACH ROW EXECUTE FUNCTION notify_psk_changed();
