-- Issuers, service configurations, the built-in CA and the issuance audit.

CREATE TABLE certificate_issuers (
    id                text PRIMARY KEY,
    name              text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 50),
    description       text CHECK (description IS NULL OR char_length(description) <= 100),
    issuer_type       text NOT NULL,
    issuer_attributes jsonb NOT NULL DEFAULT '{}'::jsonb,
    credentials       bytea,            -- AES-256-GCM sealed JSON, see bootstrap/secretbox.py
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    etag              text NOT NULL
);

-- One row per service: the CA active for it. NULL issuer = the built-in CA.
CREATE TABLE certificate_issuer_configurations (
    id                    text PRIMARY KEY,
    reference             text NOT NULL UNIQUE CHECK (reference ~ '^[A-Za-z0-9_.-]{1,100}$'),
    certificate_issuer_id text REFERENCES certificate_issuers (id) ON DELETE RESTRICT,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    etag                  text NOT NULL
);

INSERT INTO certificate_issuer_configurations (id, reference, certificate_issuer_id, etag)
VALUES (replace(gen_random_uuid()::text, '-', ''), 'LWM2M', NULL, md5(random()::text));

-- The built-in CA: a root and an issuing intermediate. Keys are sealed; one generation is active.
CREATE TABLE builtin_ca (
    generation          serial PRIMARY KEY,
    root_certificate    bytea NOT NULL,   -- DER
    root_key            bytea NOT NULL,   -- sealed PKCS#8 PEM
    issuing_certificate bytea NOT NULL,   -- DER
    issuing_key         bytea NOT NULL,   -- sealed PKCS#8 PEM
    active              boolean NOT NULL DEFAULT true,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX builtin_ca_one_active ON builtin_ca (active) WHERE active;

-- Append-only audit of every certificate handed out; committed before the device gets it.
CREATE TABLE issued_certificates (
    id                 bigserial PRIMARY KEY,
    serial_number      text NOT NULL,          -- upper-case hex
    endpoint           text NOT NULL,
    service_reference  text NOT NULL,
    issuer_id          text,                   -- NULL = built-in CA; no FK: the audit outlives issuers
    issuer_name        text NOT NULL,
    issuer_type        text NOT NULL,
    fingerprint_sha256 text NOT NULL UNIQUE,
    subject            text NOT NULL,
    not_before         timestamptz NOT NULL,
    not_after          timestamptz NOT NULL,
    certificate        bytea NOT NULL,         -- DER
    request_id         text NOT NULL,
    issued_at          timestamptz NOT NULL DEFAULT now(),
    revoked_at         timestamptz,
    revocation_reason  text
);
CREATE INDEX issued_certificates_endpoint ON issued_certificates (endpoint, issued_at DESC);
CREATE INDEX issued_certificates_issuer_serial ON issued_certificates (issuer_id, serial_number);

CREATE FUNCTION issued_certificates_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'issued_certificates is append-only';
    END IF;
    IF (NEW.serial_number, NEW.endpoint, NEW.service_reference, NEW.issuer_id, NEW.fingerprint_sha256,
        NEW.certificate, NEW.not_before, NEW.not_after, NEW.issued_at)
       IS DISTINCT FROM
       (OLD.serial_number, OLD.endpoint, OLD.service_reference, OLD.issuer_id, OLD.fingerprint_sha256,
        OLD.certificate, OLD.not_before, OLD.not_after, OLD.issued_at) THEN
        RAISE EXCEPTION 'issued_certificates: only revocation may be recorded on an existing row';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER issued_certificates_append_only BEFORE UPDATE OR DELETE ON issued_certificates
    FOR EACH ROW EXECUTE FUNCTION issued_certificates_append_only();

-- Cache invalidation across processes and replicas (LISTEN lwm2m_bootstrap_issuers).
CREATE FUNCTION notify_issuers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lwm2m_bootstrap_issuers', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER certificate_issuers_notify AFTER INSERT OR UPDATE OR DELETE ON certificate_issuers
    FOR EACH STATEMENT EXECUTE FUNCTION notify_issuers_changed();
CREATE TRIGGER certificate_issuer_configurations_notify
    AFTER INSERT OR UPDATE OR DELETE ON certificate_issuer_configurations
    FOR EACH STATEMENT EXECUTE FUNCTION notify_issuers_changed();
CREATE TRIGGER builtin_ca_notify AFTER INSERT OR UPDATE OR DELETE ON builtin_ca
    FOR EACH STATEMENT EXECUTE FUNCTION notify_issuers_changed();
