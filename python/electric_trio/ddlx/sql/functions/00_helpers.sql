-- Small helpers used by everything else. Re-run (CREATE OR REPLACE) on every start.
--
-- Conventions for every routine in this directory:
--   * SECURITY DEFINER routines pin `search_path = pg_catalog, pg_temp`, so that a caller's
--     search_path cannot substitute its own functions or operators for ours; everything outside
--     pg_catalog is therefore written schema-qualified (electric.x, OPERATOR(electric.<)).
--   * Values are interpolated with %L or passed as parameters. Identifiers in the SQL and
--     PL/pgSQL that 40_shadow.sql generates are always double-quoted, with electric.__ident(),
--     never with %I or quote_ident() (see there why).

-- The replication role that decides which triggers act (§2): the custom GUC
-- electric.session_replication_role (set by the direct writer, whose builtin role stays
-- "origin"), else the builtin session_replication_role ("replica" in Postgres's logical
-- replication apply worker). A SQL function so that trigger WHEN clauses inline it.
CREATE OR REPLACE FUNCTION electric.__session_replication_role() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN coalesce(
        nullif(current_setting('electric.session_replication_role', true), ''),
        current_setting('session_replication_role'));

-- Test switches: GUC electric.<flag_name>, or default_val when the GUC is not set.
CREATE OR REPLACE FUNCTION electric.__lookup_test_flag(flag_name text, default_val bool)
    RETURNS bool
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN coalesce(
        nullif(current_setting('electric.' || flag_name, true), '')::bool, default_val);

-- (xid, start time) of the current transaction: the key of its migration_versions row.
CREATE OR REPLACE FUNCTION electric.current_transaction_id(OUT txid xid8, OUT txts int8)
    LANGUAGE sql STABLE
    AS $$ SELECT electric.current_xact_id(), electric.current_xact_ts() $$;

-- An identifier, always double-quoted. format('%I') and quote_ident() leave a name bare
-- unless SQL reserves it, but PL/pgSQL reserves words that SQL does not (BY, LOOP, WHILE,
-- FOREACH, STRICT): generated from a column named "by", NEW.by reads in PL/pgSQL as NEW
-- followed by the keyword BY ('record "new" has no field "by"'), and every write to the
-- table failed.
CREATE OR REPLACE FUNCTION electric.__ident(name text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN '"' || replace(name, '"', '""') || '"';

-- electric.__ident() of each name, in order.
CREATE OR REPLACE FUNCTION electric.__idents(names text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ARRAY(SELECT electric.__ident(n) FROM unnest(names) WITH ORDINALITY AS u(n, i)
                  ORDER BY i);

-- Joins format(fmt, element, position) over an array, in array order; '' for an empty or
-- NULL array. The generators below build their SQL with it.
CREATE OR REPLACE FUNCTION electric.__format_each(items text[], fmt text, sep text DEFAULT ', ')
    RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN coalesce(
        (SELECT string_agg(format(fmt, item, position), sep ORDER BY position)
           FROM unnest(items) WITH ORDINALITY AS u(item, position)),
        '');

-- Like __format_each over two arrays of the same length: %1$ from the first, %2$ from the
-- second, %3$ the position.
CREATE OR REPLACE FUNCTION electric.__format_zip(
    items1 text[], items2 text[], fmt text, sep text DEFAULT ', '
) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN coalesce(
        (SELECT string_agg(format(fmt, a, b, position), sep ORDER BY position)
           FROM unnest(items1, items2) WITH ORDINALITY AS u(a, b, position)),
        '');

-- A name derived from a table's schema and name (tombstone table, per-table functions).
-- Postgres silently truncates identifiers to 63 bytes, so that two long table names could end
-- up sharing a derived name; a name that does not fit keeps a readable prefix and ends with a
-- hash of the full name instead.
CREATE OR REPLACE FUNCTION electric.__derived_name(prefix text, schema_name text, table_name text)
    RETURNS name
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    full_name text := prefix || schema_name || '__' || table_name;
    head text;
BEGIN
    IF octet_length(full_name) <= 63 THEN
        RETURN full_name;
    END IF;
    head := full_name;
    WHILE octet_length(head) > 54 LOOP  -- 54 + '_' + 8 hex digits = 63
        head := left(head, -1);          -- by characters, so that UTF-8 stays whole
    END LOOP;
    RETURN head || '_' || left(md5(full_name), 8);
END;
$$;

-- The shadow table of an electrified table. Its name is fixed by the protocol (the sync
-- service recognises shadow changes by it), so it is never hashed: electrify() refuses tables
-- whose shadow name would not fit.
CREATE OR REPLACE FUNCTION electric.__shadow_name(schema_name text, table_name text)
    RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN 'shadow__' || schema_name || '__' || table_name;

CREATE OR REPLACE FUNCTION electric.__tombstone_name(schema_name text, table_name text)
    RETURNS name
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN electric.__derived_name('tombstone__', schema_name, table_name);

-- Name of the per-table generated function of a kind: <kind>___<schema>__<table>.
CREATE OR REPLACE FUNCTION electric.__function_name(kind text, schema_name text, table_name text)
    RETURNS name
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN electric.__derived_name(kind || '___', schema_name, table_name);

-- A column's type as DDL: format_type() plus a COLLATE clause when the column's collation is
-- not its type's. Pinned search_path, so that every type outside pg_catalog comes out
-- schema-qualified.
CREATE OR REPLACE FUNCTION electric.__column_type(rel_oid regclass, col_num int2) RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                       THEN (SELECT format(' COLLATE %I.%I', n.nspname, c.collname)
                               FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace
                              WHERE c.oid = a.attcollation)
                       ELSE '' END
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
         WHERE a.attrelid = rel_oid AND a.attnum = col_num
    $$;
