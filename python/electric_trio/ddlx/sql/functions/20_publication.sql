-- The publication electric_publication: what Electric's replication slot streams (§2).

-- Every table that belongs in the publication and exists: the published electric tables, then
-- each electrified table followed by its shadow table. An electrified table dropped behind our
-- back is left out rather than making the publication impossible to create.
CREATE OR REPLACE FUNCTION electric.__published_tables() RETURNS SETOF regclass
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT rel FROM (
            SELECT to_regclass(format('electric.%I', name)) AS rel, position, 0 AS sub
              FROM unnest(ARRAY[
                       'ddl_commands', 'electrified', 'transaction_marker',
                       'acknowledged_client_lsns', 'grants', 'roles', 'assignments'
                   ]) WITH ORDINALITY AS t(name, position)
            UNION ALL
            SELECT to_regclass(format('%I.%I', e.schema_name, e.table_name)), 100 + e.id, 0
              FROM electric.electrified e
            UNION ALL
            SELECT to_regclass(format('electric.%I',
                       electric.__shadow_name(e.schema_name, e.table_name))), 100 + e.id, 1
              FROM electric.electrified e
        ) AS wanted
        WHERE rel IS NOT NULL
        ORDER BY position, sub
    $$;

-- Adds one table to the publication unless it is already a member (creating the publication,
-- with every table it should have, when it does not exist).
CREATE OR REPLACE FUNCTION electric.__publish(rel regclass) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    pub pg_publication%ROWTYPE;
BEGIN
    SELECT * INTO pub FROM pg_publication WHERE pubname = 'electric_publication';
    IF NOT FOUND THEN
        PERFORM electric.__ensure_publication();
        SELECT * INTO pub FROM pg_publication WHERE pubname = 'electric_publication';
    END IF;
    IF NOT pub.puballtables AND NOT EXISTS (
        SELECT 1 FROM pg_publication_rel WHERE prpubid = pub.oid AND prrelid = rel
    ) THEN
        EXECUTE format('ALTER PUBLICATION electric_publication ADD TABLE %s', rel);
    END IF;
END;
$$;

-- Creates the publication with all its tables, or adds the ones it lacks. Run at every start,
-- so that a dropped publication comes back with every member (the original re-created it but
-- never reconciled an existing one). Tables are never removed: a member added by an operator
-- is theirs to keep.
CREATE OR REPLACE FUNCTION electric.__ensure_publication() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    pub pg_publication%ROWTYPE;
    rel regclass;
BEGIN
    SELECT * INTO pub FROM pg_publication WHERE pubname = 'electric_publication';
    IF NOT FOUND THEN
        EXECUTE 'CREATE PUBLICATION electric_publication FOR TABLE '
            || (SELECT string_agg(t::text, ', ') FROM electric.__published_tables() AS t);
    ELSIF NOT pub.puballtables THEN
        FOR rel IN
            SELECT t FROM electric.__published_tables() AS t
             WHERE NOT EXISTS (
                 SELECT 1 FROM pg_publication_rel WHERE prpubid = pub.oid AND prrelid = t)
        LOOP
            EXECUTE format('ALTER PUBLICATION electric_publication ADD TABLE %s', rel);
        END LOOP;
    END IF;
END;
$$;
