-- Migration capture and versions (§5). A migration is one transaction: its version is the
-- migration_versions row keyed by (current_xact_id(), current_xact_ts()), and each captured
-- statement is a ddl_commands row with the same key.

CREATE OR REPLACE FUNCTION electric.tx_has_assigned_version() RETURNS bool
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT EXISTS (
            SELECT 1 FROM electric.migration_versions
             WHERE txid = electric.current_xact_id() AND txts = electric.current_xact_ts())
    $$;

-- Names the current transaction's migration. Several sources may name it (§5: the user's
-- migration_version() 32767, a framework's version seen by the proxy 4 or 2, generated
-- versions 0); the highest priority wins and a tie keeps the first.
CREATE OR REPLACE PROCEDURE electric.assign_migration_version(_version text, _priority int)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    INSERT INTO electric.migration_versions AS v (version, priority)
        VALUES (_version, _priority::int2)
        ON CONFLICT (txid, txts) DO UPDATE
            SET version = EXCLUDED.version, priority = EXCLUDED.priority
            WHERE EXCLUDED.priority > v.priority;
END;
$$;

-- The user-facing way to name a migration: `CALL electric.migration_version('2024...')`.
CREATE OR REPLACE PROCEDURE electric.migration_version(_version text)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    CALL electric.assign_migration_version(_version, 32767);
END;
$$;

-- A version for a migration nobody named: the transaction's start time, YYYYMMDDHHMMSS_mmm.
-- Taken in UTC, unlike the original (which used the session's time zone): versions must sort
-- chronologically as strings, across sessions and against the proxy's generated versions,
-- which are UTC too.
CREATE OR REPLACE PROCEDURE electric.assign_default_version()
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF NOT electric.tx_has_assigned_version() THEN
        CALL electric.assign_migration_version(
            to_char(transaction_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISS_MS'), 0);
    END IF;
END;
$$;

-- Records a DDL statement as part of the current transaction's migration (the statement
-- being executed when _query is NULL). The same text twice in one transaction is stored once.
CREATE OR REPLACE PROCEDURE electric.capture_ddl(_query text DEFAULT NULL)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    CALL electric.assign_default_version();
    INSERT INTO electric.ddl_commands (query)
        VALUES (coalesce(_query, current_query()))
        ON CONFLICT ON CONSTRAINT ddl_table_unique_migrations DO NOTHING;
END;
$$;

-- The REPLICA trigger of acknowledged_client_lsns: Postgres's apply worker can only INSERT,
-- so the row it inserts for a client is turned into an upsert (and a no-op when unchanged).
CREATE OR REPLACE FUNCTION electric.upsert_acknowledged_client_lsn() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    INSERT INTO electric.acknowledged_client_lsns AS t (client_id, lsn)
        VALUES (NEW.client_id, NEW.lsn)
        ON CONFLICT (client_id) DO UPDATE
            SET lsn = EXCLUDED.lsn
            WHERE t.lsn IS DISTINCT FROM EXCLUDED.lsn;
    RETURN NULL;
END;
$$;

-- Created here rather than in a migration because it needs the function above; skipped when
-- present so that a restart takes no lock on the table.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_trigger
         WHERE tgrelid = 'electric.acknowledged_client_lsns'::regclass
           AND tgname = 'upsert_acknowledged_client_lsn'
    ) THEN
        CREATE TRIGGER upsert_acknowledged_client_lsn
            BEFORE INSERT ON electric.acknowledged_client_lsns
            FOR EACH ROW
            WHEN (pg_trigger_depth() < 1)
            EXECUTE FUNCTION electric.upsert_acknowledged_client_lsn();
        -- Fires only where session_replication_role = replica: in the apply worker.
        ALTER TABLE electric.acknowledged_client_lsns
            ENABLE REPLICA TRIGGER upsert_acknowledged_client_lsn;
    END IF;
END;
$$;
