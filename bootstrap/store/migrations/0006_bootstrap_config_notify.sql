-- Running servers cache "which bootstrap configuration applies" while only the default exists;
-- any change to the table tells them to look again. One notification per statement, not per row:
-- a bulk load of a million per-endpoint configurations is one COPY, one notification.
CREATE FUNCTION bootstrap_configs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lwm2m_bootstrap_configs', TG_OP);
    RETURN NULL;
END;
$$;

CREATE TRIGGER bootstrap_configs_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON bootstrap_configs
    FOR EACH STATEMENT EXECUTE FUNCTION bootstrap_configs_notify();
