-- Result of the last "verify" of each issuer (activation may require a success).
ALTER TABLE certificate_issuers
    ADD COLUMN verified_at       timestamptz,
    ADD COLUMN verify_successful boolean,
    ADD COLUMN verify_message    text;
