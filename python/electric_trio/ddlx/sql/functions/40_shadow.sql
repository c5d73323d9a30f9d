-- Shadow and tombstone tables, the per-table trigger functions generated from them, and the
-- triggers (§2, §6).
--
-- Each electrified table T = <schema>.<table> gets:
--   electric.shadow__<schema>__<table>    conflict-resolution state per row of T (published):
--       _tags, _last_modified, _is_a_delete_operation, _tag, _observed_tags,
--       _modified_columns_bit_mask, _resolved, _currently_reordering,
--       __reordered_<c> per non-PK column c (client values waiting to be applied),
--       then in T's column order each PK column (NOT NULL) or _tag_<c> for a non-PK column.
--   electric.tombstone__<schema>__<table> the last values of deleted rows (not published).
-- Unlike the original, columns whose names start with "_" are tracked like any other (it
-- skipped them, so writes to them were never tagged).
--
-- The generated functions are specialised per table (static SQL, no per-row EXECUTE) and are
-- regenerated from the tombstone table's columns, which are exactly the columns Electric knows
-- about: a column added to T behind Electric's back is ignored rather than breaking writes.

-- ---------------------------------------------------------------------------------------------
-- Transaction-local state.
-- ---------------------------------------------------------------------------------------------

-- electric.current_transaction_max_tag (transaction-local GUC): the highest tag time among the
-- rows a Postgres-side transaction has written so far, in microseconds since the epoch (a
-- number, not a timestamp's text, so that a change of DateStyle within the transaction cannot
-- misread it). The row triggers raise it (inline, they run for every row); the original kept
-- the last row's value instead, so that with a future-dated tag on one row the other rows of
-- the transaction could end with tags it had not beaten. With the maximum, every row of the
-- transaction settles on one tag that beats all of their previous tags.
--
-- The transaction's tag for Postgres-side writes: (that time, NULL source). Not pinned to a
-- search_path (it names nothing outside pg_catalog) so that the per-row caller pays no
-- configuration switch.
CREATE OR REPLACE FUNCTION electric.__tx_max_tag() RETURNS electric.tag
    LANGUAGE sql STABLE
    AS $$
        SELECT ROW(coalesce(
                   timestamptz 'epoch' + nullif(
                       current_setting('electric.current_transaction_max_tag', true), ''
                   )::int8 * interval '1 microsecond',
                   CURRENT_TIMESTAMP(3)), NULL)::electric.tag
    $$;

-- Records that a row was reported as a referenced record in this transaction; false when it
-- already was. The set lives in a temporary table emptied at commit: a growing JSON document
-- in a GUC (the original's way) costs time proportional to its size on every row, which turns
-- a large transaction quadratic. (A transaction that uses it cannot be PREPAREd for two-phase
-- commit; one that only writes rows without foreign keys never touches it.)
CREATE OR REPLACE FUNCTION electric.__tx_touch_row(schema_name text, table_name text, pk text)
    RETURNS bool
    LANGUAGE plpgsql
    AS $$
DECLARE
    owner oid;
BEGIN
    SELECT relowner INTO owner FROM pg_class
     WHERE oid = to_regclass('pg_temp.electric_touched_rows');
    -- Our callers run as the schema's owner: a table of that name planted by the session's
    -- own user (with a trigger, say) must not be written with those rights.
    IF FOUND AND owner <> current_user::regrole THEN
        RAISE EXCEPTION 'pg_temp.electric_touched_rows belongs to another role'
            USING ERRCODE = 'insufficient_privilege';
    ELSIF NOT FOUND THEN
        CREATE TEMPORARY TABLE electric_touched_rows (
            schema_name text NOT NULL,
            table_name  text NOT NULL,
            pk          text NOT NULL,
            PRIMARY KEY (schema_name, table_name, pk)
        ) ON COMMIT DELETE ROWS;
    END IF;
    INSERT INTO pg_temp.electric_touched_rows VALUES (schema_name, table_name, pk)
        ON CONFLICT DO NOTHING;
    RETURN FOUND;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Shape of an electrified table as Electric knows it.
-- ---------------------------------------------------------------------------------------------

-- Names and columns used by the generators: qualified main, shadow and tombstone table names;
-- PK columns in PK order and the other columns in table order, each with its type.
CREATE OR REPLACE FUNCTION electric.__table_layout(
    schema_name text,
    table_name text,
    OUT main_table text,
    OUT shadow_table text,
    OUT tombstone_table text,
    OUT tombstone_oid regclass,
    OUT pk text[],
    OUT pk_types text[],
    OUT non_pk text[],
    OUT non_pk_types text[]
) LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    main_table := electric.__ident(schema_name) || '.' || electric.__ident(table_name);
    shadow_table := 'electric.' || electric.__ident(electric.__shadow_name(schema_name, table_name));
    tombstone_table := 'electric.'
        || electric.__ident(electric.__tombstone_name(schema_name, table_name));
    tombstone_oid := to_regclass(tombstone_table);
    IF tombstone_oid IS NULL THEN
        RAISE EXCEPTION 'table % has no tombstone table %: is it electrified?',
                main_table, tombstone_table
            USING ERRCODE = 'undefined_table';
    END IF;
    SELECT array_agg(a.attname ORDER BY k.ord),
           array_agg(electric.__column_type(tombstone_oid, a.attnum) ORDER BY k.ord)
      INTO pk, pk_types
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = tombstone_oid AND i.indisprimary;
    SELECT coalesce(array_agg(a.attname ORDER BY a.attnum), '{}'),
           coalesce(array_agg(electric.__column_type(tombstone_oid, a.attnum)
                              ORDER BY a.attnum), '{}')
      INTO non_pk, non_pk_types
      FROM pg_attribute a
     WHERE a.attrelid = tombstone_oid AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname <> ALL (pk);
END;
$$;

-- Creates the shadow and tombstone tables of a table being electrified (existing rows get no
-- shadow rows: the sync service gives such rows the tag (epoch, NULL)).
CREATE OR REPLACE FUNCTION electric.__create_shadow_tables(table_oid regclass) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    _schema name;
    _table name;
    pk text[];
    reordered_columns text[];
    shadow_columns text[];
    tombstone_columns text[];
BEGIN
    SELECT n.nspname, c.relname INTO _schema, _table
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = table_oid;
    SELECT array_agg(a.attname ORDER BY k.ord) INTO pk
      FROM pg_index i
      CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = table_oid AND i.indisprimary;

    SELECT array_agg(format('%s %s', electric.__ident('__reordered_' || a.attname), col.type)
                     ORDER BY a.attnum)
               FILTER (WHERE NOT col.is_pk),
           array_agg(CASE WHEN col.is_pk
                          THEN format('%s %s NOT NULL', electric.__ident(a.attname), col.type)
                          ELSE format('%s electric.tag', electric.__ident('_tag_' || a.attname))
                     END
                     ORDER BY a.attnum),
           array_agg(format('%s %s%s', electric.__ident(a.attname), col.type,
                            CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END)
                     ORDER BY a.attnum)
      INTO reordered_columns, shadow_columns, tombstone_columns
      FROM pg_attribute a
      CROSS JOIN LATERAL (
          SELECT electric.__column_type(table_oid, a.attnum) AS type,
                 a.attname = ANY (pk) AS is_pk
      ) AS col
     WHERE a.attrelid = table_oid AND a.attnum > 0 AND NOT a.attisdropped;

    EXECUTE format(
        E'CREATE TABLE electric.%s (\n'
        '    _tags electric.tag[] DEFAULT ''{}'',\n'
        '    _last_modified int8,\n'              -- xid of the last writer
        '    _is_a_delete_operation bool DEFAULT false,\n'
        '    _tag electric.tag,\n'
        '    _observed_tags electric.tag[],\n'
        '    _modified_columns_bit_mask bool[],\n'
        '    _resolved bool,\n'
        '    _currently_reordering bool,\n'
        '    %s\n'
        '    PRIMARY KEY (%s)\n'
        ')',
        electric.__ident(electric.__shadow_name(_schema, _table)),
        array_to_string(coalesce(reordered_columns, '{}') || shadow_columns, E',\n    ') || ',',
        electric.__format_each(electric.__idents(pk), '%s'));
    -- Electric reads the old shadow row of every change from the WAL.
    EXECUTE format('ALTER TABLE electric.%s REPLICA IDENTITY FULL',
                   electric.__ident(electric.__shadow_name(_schema, _table)));

    EXECUTE format(
        E'CREATE TABLE electric.%s (\n    %s,\n    PRIMARY KEY (%s)\n)',
        electric.__ident(electric.__tombstone_name(_schema, _table)),
        array_to_string(tombstone_columns, E',\n    '),
        electric.__format_each(electric.__idents(pk), '%s'));
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Generators: each (re)creates one function for one table and returns its name.
-- In the generated code, PK columns match with "pk = NEW.pk", column lists follow the
-- layout's order, and the bit mask's position i is the i-th non-PK column.
-- Names of the table are the user's: each is double-quoted (electric.__ident, never %I: see
-- 00_helpers.sql), and a column named like a PL/pgSQL variable ("found", "new", "tg_op")
-- is read as the column (#variable_conflict use_column) instead of making the statement
-- ambiguous. The generated code's own variables start with "__" (besides NEW, OLD and
-- shadow_row, which are only used qualified): a column named exactly like one of them
-- (__tag, __max...) would be taken for it, and is not supported.
-- ---------------------------------------------------------------------------------------------

-- AFTER DELETE on T (always, whoever deletes): keep the deleted row's values.
CREATE OR REPLACE FUNCTION electric.install_function__generate_tombstone_entry(
    schema_name text, table_name text
) RETURNS name
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $gen$
DECLARE
    l record := electric.__table_layout(schema_name, table_name);
    fn name := electric.__function_name('generate_tombstone_entry', schema_name, table_name);
BEGIN
    EXECUTE format($tpl$
CREATE OR REPLACE FUNCTION electric.%1$s() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
#variable_conflict use_column
BEGIN
    INSERT INTO %2$s (%3$s) VALUES (%4$s)
        ON CONFLICT (%5$s) %6$s;
    RETURN NULL;
END;
$fn$ $tpl$,
        electric.__ident(fn),
        l.tombstone_table,
        electric.__format_each(electric.__idents(l.pk || l.non_pk), '%s'),
        electric.__format_each(electric.__idents(l.pk || l.non_pk), 'OLD.%s'),
        electric.__format_each(electric.__idents(l.pk), '%s'),
        CASE WHEN cardinality(l.non_pk) = 0 THEN 'DO NOTHING'
             ELSE 'DO UPDATE SET ' || electric.__format_each(electric.__idents(l.non_pk), '%1$s = EXCLUDED.%1$s')
        END);
    RETURN fn;
END;
$gen$;

-- BEFORE INSERT OR UPDATE on T by Postgres itself (§6): tag the row with the transaction's
-- time and no source, mark the columns this write changed, and remember the highest tag so
-- that postgres_write__write_resolved_tags can settle all rows on one tag at commit.
CREATE OR REPLACE FUNCTION electric.install_function__create_shadow_row_from_upsert(
    schema_name text, table_name text
) RETURNS name
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $gen$
DECLARE
    l record := electric.__table_layout(schema_name, table_name);
    fn name := electric.__function_name('create_shadow_row_from_upsert', schema_name, table_name);
    tag_columns text[] := ARRAY(SELECT '_tag_' || c FROM unnest(l.non_pk) AS c);
BEGIN
    EXECUTE format($tpl$
CREATE OR REPLACE FUNCTION electric.%1$s() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
#variable_conflict use_column
DECLARE
    __tag electric.tag := ROW(CURRENT_TIMESTAMP(3), NULL);
    __mask bool[];
    __max timestamptz;
    __micros int8;
    __tx_max text;
BEGIN
    -- An insert writes every column (the original marked only the non-NULL ones).
    -- The shadow row of an updated row usually exists and that of an inserted one usually does
    -- not: try the likely statement first (an upsert that meets a conflict costs a tuple lock
    -- and twice the WAL of a plain UPDATE).
    IF TG_OP = 'UPDATE' THEN
        __mask := ARRAY[%3$s]::bool[];
        UPDATE %4$s AS s
           SET _last_modified = pg_current_xact_id()::text::int8,
               _tag = __tag,
               _is_a_delete_operation = false,
               _resolved = false,
               _modified_columns_bit_mask = ARRAY[%8$s]::bool[]
         WHERE %10$s
        -- only the time: INTO a composite variable would assign field by field
        RETURNING (GREATEST(s._tag%9$s)).timestamp INTO __max;
    ELSE
        __mask := array_fill(true, ARRAY[%2$s]);
    END IF;
    IF NOT FOUND THEN
        INSERT INTO %4$s AS s (_last_modified, _tag, _tags, _resolved%5$s)
            VALUES (pg_current_xact_id()::text::int8, __tag, ARRAY[__tag], false%6$s)
            ON CONFLICT (%7$s) DO UPDATE SET
                _last_modified = EXCLUDED._last_modified,
                _tag = EXCLUDED._tag,
                _is_a_delete_operation = false,
                _resolved = false,
                _modified_columns_bit_mask = ARRAY[%8$s]::bool[]
            RETURNING (GREATEST(s._tag%9$s)).timestamp INTO __max;
    END IF;
    -- raise electric.current_transaction_max_tag (usually set once per transaction)
    __micros := (extract(epoch FROM __max) * 1000000)::int8;
    __tx_max := current_setting('electric.current_transaction_max_tag', true);
    IF coalesce(__tx_max, '') = '' OR __tx_max::int8 < __micros THEN
        PERFORM set_config('electric.current_transaction_max_tag', __micros::text, true);
    END IF;
    RETURN NEW;
END;
$fn$ $tpl$,
        electric.__ident(fn),
        cardinality(l.non_pk),
        electric.__format_each(electric.__idents(l.non_pk), 'NEW.%1$s IS DISTINCT FROM OLD.%1$s'),
        l.shadow_table,
        electric.__format_each(electric.__idents(l.pk || tag_columns), ', %s', ''),
        electric.__format_each(electric.__idents(l.pk), ', NEW.%s', '')
            || repeat(', __tag', cardinality(l.non_pk)),
        electric.__format_each(electric.__idents(l.pk), '%s'),
        electric.__format_each(l.non_pk,
            '__mask[%2$s] OR coalesce(s._modified_columns_bit_mask[%2$s], false)'),
        electric.__format_each(electric.__idents(tag_columns), ', s.%s', ''),
        electric.__format_each(electric.__idents(l.pk), 's.%1$s = NEW.%1$s', ' AND '));
    RETURN fn;
END;
$gen$;

-- BEFORE DELETE on T by Postgres itself: mark the shadow row deleted (nothing to do when the
-- row predates electrification and has no shadow row).
CREATE OR REPLACE FUNCTION electric.install_function__update_shadow_row_from_delete(
    schema_name text, table_name text
) RETURNS name
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $gen$
DECLARE
    l record := electric.__table_layout(schema_name, table_name);
    fn name := electric.__function_name('update_shadow_row_from_delete', schema_name, table_name);
    tag_columns text[] := ARRAY(SELECT '_tag_' || c FROM unnest(l.non_pk) AS c);
BEGIN
    EXECUTE format($tpl$
CREATE OR REPLACE FUNCTION electric.%1$s() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
#variable_conflict use_column
DECLARE
    __tag electric.tag := ROW(CURRENT_TIMESTAMP(3), NULL);
    __max timestamptz;
    __micros int8;
    __tx_max text;
BEGIN
    UPDATE %2$s AS s
       SET _last_modified = pg_current_xact_id()::text::int8,
           _tag = __tag,
           _is_a_delete_operation = true,
           _resolved = false
     WHERE %3$s
    RETURNING (GREATEST(s._tag%4$s)).timestamp INTO __max;
    IF FOUND THEN
        __micros := (extract(epoch FROM __max) * 1000000)::int8;
        __tx_max := current_setting('electric.current_transaction_max_tag', true);
        IF coalesce(__tx_max, '') = '' OR __tx_max::int8 < __micros THEN
            PERFORM set_config('electric.current_transaction_max_tag', __micros::text, true);
        END IF;
    END IF;
    RETURN OLD;
END;
$fn$ $tpl$,
        electric.__ident(fn),
        l.shadow_table,
        electric.__format_each(electric.__idents(l.pk), 's.%1$s = OLD.%1$s', ' AND '),
        electric.__format_each(electric.__idents(tag_columns), ', s.%s', ''));
    RETURN fn;
END;
$gen$;

-- Deferred to commit, once per shadow row a Postgres-side write updated: settle the row on the
-- transaction's tag. A delete leaves no tags (so a concurrent client insert wins, add-wins); an
-- upsert leaves exactly the transaction's tag, on the row and on each column it changed.
CREATE OR REPLACE FUNCTION electric.install_function__write_correct_max_tag(
    schema_name text, table_name text
) RETURNS name
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $gen$
DECLARE
    l record := electric.__table_layout(schema_name, table_name);
    fn name := electric.__function_name('write_correct_max_tag', schema_name, table_name);
    tag_columns text[] := ARRAY(SELECT '_tag_' || c FROM unnest(l.non_pk) AS c);
BEGIN
    EXECUTE format($tpl$
CREATE OR REPLACE FUNCTION electric.%1$s() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
#variable_conflict use_column
DECLARE
    __max electric.tag := electric.__tx_max_tag();
BEGIN
    -- Reads the row as it is now, not NEW as it was when the event was queued: a row written
    -- twice in the transaction is settled once, with the union of the changed columns.
    UPDATE %2$s
       SET _tag = __max,
           _tags = CASE WHEN _is_a_delete_operation THEN '{}'::electric.tag[]
                        ELSE ARRAY[__max]::electric.tag[] END,%3$s
           _modified_columns_bit_mask = CASE WHEN _is_a_delete_operation
                                             THEN _modified_columns_bit_mask
                                             ELSE '{}'::bool[] END,
           _resolved = true
     WHERE %4$s AND NOT _resolved;
    RETURN NULL;
END;
$fn$ $tpl$,
        electric.__ident(fn),
        l.shadow_table,
        electric.__format_zip(electric.__idents(tag_columns), electric.__idents(l.non_pk), E'\n           %1$s = CASE WHEN NOT _is_a_delete_operation AND coalesce(_modified_columns_bit_mask[%3$s], false) THEN __max ELSE %1$s END,', ''),
        electric.__format_each(electric.__idents(l.pk), '%1$s = NEW.%1$s', ' AND '));
    RETURN fn;
END;
$gen$;

-- BEFORE INSERT OR UPDATE on T by a client (replica role), outermost statement only: the main
-- row is written later, by the shadow row's resolver; here its values are parked in the shadow
-- row's __reordered_* columns and the write itself is suppressed. The main row, when it exists,
-- is locked before the shadow row is written: a Postgres-side UPDATE or DELETE locks the main
-- row before its triggers write the shadow row, and taking the two in the other order here
-- deadlocked the two writers (found by tests/integration/test_write_convergence.py).
CREATE OR REPLACE FUNCTION electric.install_function__reorder_main_op(
    schema_name text, table_name text
) RETURNS name
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $gen$
DECLARE
    l record := electric.__table_layout(schema_name, table_name);
    fn name := electric.__function_name('reorder_main_op', schema_name, table_name);
    reordered text[] := ARRAY(SELECT '__reordered_' || c FROM unnest(l.non_pk) AS c);
BEGIN
    EXECUTE format($tpl$
CREATE OR REPLACE FUNCTION electric.%1$s() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM %7$s WHERE %8$s FOR UPDATE;
    INSERT INTO %2$s (_currently_reordering, %3$s)
        VALUES (true, %4$s)
        ON CONFLICT (%5$s) DO UPDATE SET _currently_reordering = true%6$s;
    RETURN NULL;
END;
$fn$ $tpl$,
        electric.__ident(fn),
        l.shadow_table,
        electric.__format_each(electric.__idents(l.pk || reordered), '%s'),
        electric.__format_each(electric.__idents(l.pk || l.non_pk), 'NEW.%s'),
        electric.__format_each(electric.__idents(l.pk), '%s'),
        electric.__format_each(electric.__idents(reordered), ', %1$s = EXCLUDED.%1$s', ''),
        l.main_table,
        electric.__format_each(electric.__idents(l.pk), '%1$s = NEW.%1$s', ' AND '));
    RETURN fn;
END;
$gen$;

-- BEFORE INSERT on the shadow table by a client, outermost statement only: the client's shadow
-- row (tag, observed tags, bit mask) is re-issued as an upsert; since the main-row diversion
-- already created the shadow row, that is an UPDATE, which runs the resolver below.
CREATE OR REPLACE FUNCTION electric.install_function__shadow_insert_to_upsert(
    schema_name text, table_name text
) RETURNS name
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $gen$
DECLARE
    l record := electric.__table_layout(schema_name, table_name);
    fn name := electric.__function_name('shadow_insert_to_upsert', schema_name, table_name);
    tag_columns text[] := ARRAY(SELECT '_tag_' || c FROM unnest(l.non_pk) AS c);
BEGIN
    EXECUTE format($tpl$
CREATE OR REPLACE FUNCTION electric.%1$s() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
#variable_conflict use_column
BEGIN
    INSERT INTO %2$s (_last_modified, _tag, _tags%3$s)
        VALUES (pg_current_xact_id()::text::int8, NEW._tag, ARRAY[NEW._tag]%4$s)
        ON CONFLICT (%5$s) DO UPDATE SET
            _currently_reordering = NULL,
            _last_modified = EXCLUDED._last_modified,
            _tag = EXCLUDED._tag,
            _is_a_delete_operation = coalesce(NEW._is_a_delete_operation, false),
            _observed_tags = NEW._observed_tags,
            _modified_columns_bit_mask = NEW._modified_columns_bit_mask;
    RETURN NULL;
END;
$fn$ $tpl$,
        electric.__ident(fn),
        l.shadow_table,
        electric.__format_each(electric.__idents(l.pk || tag_columns), ', %s', ''),
        electric.__format_each(electric.__idents(l.pk), ', NEW.%s', '') || repeat(', NEW._tag', cardinality(l.non_pk)),
        electric.__format_each(electric.__idents(l.pk), '%s'));
    RETURN fn;
END;
$gen$;

-- BEFORE UPDATE on the shadow table by a client: conflict resolution (§6).
--   1. tags: the row's tags minus the ones the client observed, plus the client's (not for a
--      delete) - add-wins: a delete only removes what it saw;
--   2. each column's tag becomes the client's, unless the write is a delete, is older than the
--      column's tag, or did not touch the column;
--   3. the main row is written accordingly (perform_reordered_op);
--   4. the parked values are cleared.
CREATE OR REPLACE FUNCTION electric.install_function__resolve_observed_tags(
    schema_name text, table_name text
) RETURNS name
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $gen$
DECLARE
    l record := electric.__table_layout(schema_name, table_name);
    fn name := electric.__function_name('resolve_observed_tags', schema_name, table_name);
    tag_columns text[] := ARRAY(SELECT '_tag_' || c FROM unnest(l.non_pk) AS c);
    reordered text[] := ARRAY(SELECT '__reordered_' || c FROM unnest(l.non_pk) AS c);
BEGIN
    EXECUTE format($tpl$
CREATE OR REPLACE FUNCTION electric.%1$s() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
#variable_conflict use_column
DECLARE
    __delete bool := coalesce(NEW._is_a_delete_operation, false);
BEGIN
    -- A set: sorted (by tag order) and without duplicates, so that a replayed write is a no-op.
    -- NOT (x IS NULL) rather than x IS NOT NULL: the latter is false for (t, NULL).
    NEW._tags := ARRAY(
        SELECT t FROM (
            SELECT unnest(OLD._tags)
            EXCEPT SELECT unnest(NEW._observed_tags)
            UNION SELECT NEW._tag WHERE NOT __delete AND NOT (NEW._tag IS NULL)
        ) AS r(t)
        ORDER BY t);
    NEW._observed_tags := NULL;
%2$s
    PERFORM electric.%3$s(NEW);

    NEW._currently_reordering := NULL;%4$s
    RETURN NEW;
END;
$fn$ $tpl$,
        electric.__ident(fn),
        electric.__format_zip(electric.__idents(tag_columns), l.non_pk, $blk$
    IF __delete
       OR coalesce(NEW._tag OPERATOR(electric.<) OLD.%1$s, false)
       OR NOT coalesce(NEW._modified_columns_bit_mask[%3$s], true) THEN
        NEW.%1$s := OLD.%1$s;
    ELSE
        NEW.%1$s := NEW._tag;
    END IF;$blk$, ''),
        electric.__ident(electric.__function_name('perform_reordered_op', schema_name, table_name)),
        electric.__format_each(electric.__idents(reordered), E'\n    NEW.%s := NULL;', ''));
    RETURN fn;
END;
$gen$;

-- Writes the main row a resolved client write asks for: no tags left means the row is gone;
-- otherwise each column takes the client's value if the client won that column, else keeps
-- the current value - from the row if it exists, else from its tombstone (a row re-created
-- after a delete gets back the values the client did not write), else the client's.
CREATE OR REPLACE FUNCTION electric.install_function__perform_reordered_op(
    schema_name text, table_name text
) RETURNS name
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $gen$
DECLARE
    l record := electric.__table_layout(schema_name, table_name);
    fn name := electric.__function_name('perform_reordered_op', schema_name, table_name);
    tag_columns text[] := ARRAY(SELECT '_tag_' || c FROM unnest(l.non_pk) AS c);
    reordered text[] := ARRAY(SELECT '__reordered_' || c FROM unnest(l.non_pk) AS c);
    pk_match text := electric.__format_each(electric.__idents(l.pk), '%1$s = shadow_row.%1$s', ' AND ');
BEGIN
    EXECUTE format($tpl$
CREATE OR REPLACE FUNCTION electric.%1$s(shadow_row %2$s) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
#variable_conflict use_column
DECLARE
    __built %3$s%%ROWTYPE;
    __current record;
    __have_current bool;
    __in_main bool;
BEGIN
    IF coalesce(cardinality(shadow_row._tags), 0) = 0 THEN
        DELETE FROM %3$s WHERE %4$s;
        RETURN;
    END IF;

    SELECT * INTO __current FROM %3$s WHERE %4$s;
    __in_main := FOUND;
    __have_current := FOUND;
    IF NOT __have_current THEN
        SELECT * INTO __current FROM %5$s WHERE %4$s;
        __have_current := FOUND;
    END IF;
%6$s%7$s
    IF __in_main THEN
        %8$s
    ELSE
        INSERT INTO %3$s (%9$s) VALUES (%10$s);
    END IF;
END;
$fn$ $tpl$,
        electric.__ident(fn),
        l.shadow_table,
        l.main_table,
        pk_match,
        l.tombstone_table,
        electric.__format_each(electric.__idents(l.pk), E'\n    __built.%1$s := shadow_row.%1$s;', ''),
        (SELECT coalesce(string_agg(format($blk$
    IF __have_current
       AND (coalesce(shadow_row.%1$s OPERATOR(electric.<>) shadow_row._tag, false)
            OR NOT coalesce(shadow_row._modified_columns_bit_mask[%4$s], true)) THEN
        __built.%2$s := __current.%2$s;
    ELSE
        __built.%2$s := shadow_row.%3$s;
    END IF;$blk$, electric.__ident(t), electric.__ident(c), electric.__ident(r), i),
                                  '' ORDER BY i), '')
           FROM unnest(tag_columns, l.non_pk, reordered) WITH ORDINALITY AS u(t, c, r, i)),
        CASE WHEN cardinality(l.non_pk) = 0 THEN 'NULL;  -- no column besides the key'
             ELSE format('UPDATE %s SET %s WHERE %s;', l.main_table,
                         electric.__format_each(electric.__idents(l.non_pk), '%1$s = __built.%1$s'), pk_match)
        END,
        electric.__format_each(electric.__idents(l.pk || l.non_pk), '%s'),
        electric.__format_each(electric.__idents(l.pk || l.non_pk), '__built.%s'));
    RETURN fn;
END;
$gen$;

-- Foreign keys of an electrified table to electrified tables, as calls to make: the parent's
-- send_self_and_references function and, in the parent's PK order, the child's columns that
-- hold the parent's key. A foreign key to anything but a parent's whole PK is skipped.
CREATE OR REPLACE FUNCTION electric.__electrified_foreign_keys(schema_name text, table_name text)
    RETURNS TABLE (parent_function name, child_columns text[])
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
        SELECT electric.__function_name('send_self_and_references', pe.schema_name,
                                        pe.table_name),
               ARRAY(SELECT ca.attname::text
                       FROM unnest(ppk.attnums) WITH ORDINALITY AS p(attnum, ord)
                       JOIN pg_attribute ca
                         ON ca.attrelid = co.conrelid
                        AND ca.attnum = co.conkey[array_position(co.confkey, p.attnum)]
                      ORDER BY p.ord)
          FROM pg_constraint co
          JOIN electric.electrified pe
            ON to_regclass(electric.__ident(pe.schema_name) || '.'
                           || electric.__ident(pe.table_name)) = co.confrelid
          CROSS JOIN LATERAL (
              SELECT i.indkey::int2[] AS attnums FROM pg_index i
               WHERE i.indrelid = co.confrelid AND i.indisprimary
          ) AS ppk
         WHERE co.contype = 'f'
           -- $1, $2: electrified has columns of the same names, which would win
           AND co.conrelid = to_regclass(electric.__ident($1) || '.' || electric.__ident($2))
           AND co.confkey @> ppk.attnums AND co.confkey <@ ppk.attnums
         ORDER BY co.conname
    $$;

-- Reports a row that a transaction's new rows reference (a "referenced record", §8) as a
-- transactional logical message 'electric.fk_chain_touch', once per transaction, and then the
-- rows it references in turn. A row the transaction wrote itself is not reported: its own
-- change is in the transaction. Values are rendered as text with Electric's session settings,
-- whatever the writer's session uses, so that they read like the replication stream's.
CREATE OR REPLACE FUNCTION electric.install_function__send_self_and_references(
    schema_name text, table_name text
) RETURNS name
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $gen$
DECLARE
    l record := electric.__table_layout(schema_name, table_name);
    fn name := electric.__function_name('send_self_and_references', schema_name, table_name);
    args text[] := ARRAY(SELECT '__pk_' || i FROM generate_series(1, cardinality(l.pk)) AS i);
    recursion text;
BEGIN
    SELECT coalesce(string_agg(format(E'\n    IF %s THEN\n        PERFORM electric.%s(%s);\n    END IF;',
                                      electric.__format_each(electric.__idents(child_columns), '__row.%s IS NOT NULL', ' AND '),
                                      electric.__ident(parent_function),
                                      electric.__format_each(electric.__idents(child_columns), '__row.%s')), ''), '')
      INTO recursion
      FROM electric.__electrified_foreign_keys(schema_name, table_name);

    EXECUTE format($tpl$
CREATE OR REPLACE FUNCTION electric.%1$s(%2$s) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET DateStyle = 'ISO, DMY'
    SET TimeZone = 'UTC'
    SET IntervalStyle = 'postgres'
    SET extra_float_digits = 1
    SET bytea_output = 'hex'
    AS $fn$
#variable_conflict use_column
DECLARE
    __row %3$s%%ROWTYPE;
    __tags electric.tag[];
    __last_modified int8;
    __pk json;
BEGIN
    SELECT * INTO __row FROM %3$s WHERE %4$s;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT _tags, _last_modified INTO __tags, __last_modified FROM %5$s WHERE %4$s;
    IF __last_modified = pg_current_xact_id()::text::int8 THEN
        RETURN;
    END IF;
    __pk := json_build_array(%6$s);
    IF NOT electric.__tx_touch_row(%7$L, %8$L, __pk::text) THEN
        RETURN;
    END IF;
    PERFORM pg_logical_emit_message(true, 'electric.fk_chain_touch', json_build_object(
        'schema', %7$L,
        'table', %8$L,
        'tags', coalesce(__tags, '{"(epoch,)"}'::electric.tag[])::text,
        'data', json_build_object(%9$s),
        'pk', __pk)::text);%10$s
END;
$fn$ $tpl$,
        electric.__ident(fn),
        electric.__format_zip(electric.__idents(args), l.pk_types, '%1$s %2$s'),
        l.main_table,
        electric.__format_zip(electric.__idents(l.pk), electric.__idents(args), '%1$s = %2$s', ' AND '),
        l.shadow_table,
        electric.__format_each(electric.__idents(l.pk), '__row.%s::text'),
        schema_name,
        table_name,
        electric.__format_zip(l.pk || l.non_pk, electric.__idents(l.pk || l.non_pk),
                              '%1$L, __row.%2$s::text'),
        recursion);
    RETURN fn;
END;
$gen$;

-- AFTER INSERT / AFTER UPDATE on T, per statement, whoever writes: report the rows the new
-- rows reference (each distinct parent key once per statement).
CREATE OR REPLACE FUNCTION electric.install_function__send_self_trigger(
    schema_name text, table_name text
) RETURNS name
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $gen$
DECLARE
    fn name := electric.__function_name('send_self_trigger', schema_name, table_name);
    loops text;
BEGIN
    SELECT coalesce(string_agg(format($blk$
    FOR __r IN SELECT DISTINCT %1$s FROM new_table WHERE %2$s LOOP
        PERFORM electric.%3$s(%4$s);
    END LOOP;$blk$,
                electric.__format_each(electric.__idents(child_columns), '%s'),
                electric.__format_each(electric.__idents(child_columns), '%s IS NOT NULL', ' AND '),
                electric.__ident(parent_function),
                electric.__format_each(electric.__idents(child_columns), '__r.%s')), ''), '')
      INTO loops
      FROM electric.__electrified_foreign_keys(schema_name, table_name);

    EXECUTE format($tpl$
CREATE OR REPLACE FUNCTION electric.%1$s() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $fn$
#variable_conflict use_column
DECLARE
    __r record;
BEGIN%2$s
    RETURN NULL;
END;
$fn$ $tpl$,
        electric.__ident(fn),
        loops);
    RETURN fn;
END;
$gen$;

-- ---------------------------------------------------------------------------------------------
-- Installers.
-- ---------------------------------------------------------------------------------------------

-- (Re)generates every per-table function of an electrified table. Safe at any time: it only
-- replaces function bodies, so it takes no lock on the tables.
CREATE OR REPLACE FUNCTION electric.install_conflict_resolution_functions(
    schema_name text, table_name text
) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    -- perform_reordered_op and send_self_and_references first: others call them.
    PERFORM electric.install_function__perform_reordered_op(schema_name, table_name);
    PERFORM electric.install_function__send_self_and_references(schema_name, table_name);
    PERFORM electric.install_function__generate_tombstone_entry(schema_name, table_name);
    PERFORM electric.install_function__create_shadow_row_from_upsert(schema_name, table_name);
    PERFORM electric.install_function__update_shadow_row_from_delete(schema_name, table_name);
    PERFORM electric.install_function__write_correct_max_tag(schema_name, table_name);
    PERFORM electric.install_function__reorder_main_op(schema_name, table_name);
    PERFORM electric.install_function__shadow_insert_to_upsert(schema_name, table_name);
    PERFORM electric.install_function__resolve_observed_tags(schema_name, table_name);
    PERFORM electric.install_function__send_self_trigger(schema_name, table_name);
END;
$$;

-- DROP TRIGGER IF EXISTS without its notice when there is nothing to drop.
CREATE OR REPLACE FUNCTION electric.__drop_trigger(rel text, trigger_name name) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_trigger
                WHERE tgrelid = rel::regclass AND tgname = trigger_name) THEN
        EXECUTE format('DROP TRIGGER %s ON %s', electric.__ident(trigger_name), rel);
    END IF;
END;
$$;

-- Generates the functions and (re)creates the triggers of an electrified table.
--   "role" = electric.__session_replication_role(); ENABLE ALWAYS triggers fire whatever the
--   builtin session_replication_role, plain ones only where it is origin/local.
CREATE OR REPLACE FUNCTION electric.install_functions_and_triggers(
    schema_name text, table_name text
) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $body$
DECLARE
    main text := electric.__ident(schema_name) || '.' || electric.__ident(table_name);
    shadow text := 'electric.' || electric.__ident(electric.__shadow_name(schema_name, table_name));
    has_references bool;
BEGIN
    PERFORM electric.install_conflict_resolution_functions(schema_name, table_name);

    -- Main table --------------------------------------------------------------------------
    EXECUTE format($$
        CREATE OR REPLACE TRIGGER as_first__save_deleted_rows_to_tombstone_table
            AFTER DELETE ON %s FOR EACH ROW
            EXECUTE FUNCTION electric.%s()$$,
        main, electric.__ident(electric.__function_name('generate_tombstone_entry', schema_name, table_name)));
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER as_first__save_deleted_rows_to_tombstone_table', main);

    EXECUTE format($$
        CREATE OR REPLACE TRIGGER postgres_write__upsert_generate_shadow_rows
            BEFORE INSERT OR UPDATE ON %s FOR EACH ROW
            WHEN (electric.__session_replication_role() <> 'replica')
            EXECUTE FUNCTION electric.%s()$$,
        main, electric.__ident(electric.__function_name('create_shadow_row_from_upsert', schema_name, table_name)));
    EXECUTE format('ALTER TABLE %s ENABLE TRIGGER postgres_write__upsert_generate_shadow_rows', main);

    EXECUTE format($$
        CREATE OR REPLACE TRIGGER postgres_write__delete_generate_shadow_rows
            BEFORE DELETE ON %s FOR EACH ROW
            WHEN (electric.__session_replication_role() <> 'replica')
            EXECUTE FUNCTION electric.%s()$$,
        main, electric.__ident(electric.__function_name('update_shadow_row_from_delete', schema_name, table_name)));
    EXECUTE format('ALTER TABLE %s ENABLE TRIGGER postgres_write__delete_generate_shadow_rows', main);

    EXECUTE format($$
        CREATE OR REPLACE TRIGGER satellite_write__save_operation_for_reordering
            BEFORE INSERT OR UPDATE ON %s FOR EACH ROW
            WHEN (electric.__session_replication_role() = 'replica' AND pg_trigger_depth() < 1)
            EXECUTE FUNCTION electric.%s()$$,
        main, electric.__ident(electric.__function_name('reorder_main_op', schema_name, table_name)));
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER satellite_write__save_operation_for_reordering', main);

    -- Only tables with foreign keys to electrified tables have referenced records to report;
    -- sparing the others the statement triggers spares them the transition tables too.
    has_references := EXISTS (
        SELECT 1 FROM electric.__electrified_foreign_keys(schema_name, table_name));
    IF has_references THEN
        -- Two triggers: one with REFERENCING cannot be both AFTER INSERT and AFTER UPDATE.
        EXECUTE format($$
            CREATE OR REPLACE TRIGGER send_self_and_references_on_insert
                AFTER INSERT ON %s REFERENCING NEW TABLE AS new_table FOR EACH STATEMENT
                EXECUTE FUNCTION electric.%s()$$,
            main, electric.__ident(electric.__function_name('send_self_trigger', schema_name, table_name)));
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER send_self_and_references_on_insert', main);
        EXECUTE format($$
            CREATE OR REPLACE TRIGGER send_self_and_references_on_update
                AFTER UPDATE ON %s REFERENCING NEW TABLE AS new_table FOR EACH STATEMENT
                EXECUTE FUNCTION electric.%s()$$,
            main, electric.__ident(electric.__function_name('send_self_trigger', schema_name, table_name)));
        EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER send_self_and_references_on_update', main);
    ELSE
        PERFORM electric.__drop_trigger(main, 'send_self_and_references_on_insert');
        PERFORM electric.__drop_trigger(main, 'send_self_and_references_on_update');
    END IF;

    -- Shadow table ------------------------------------------------------------------------
    -- A constraint trigger cannot be replaced, only dropped and created again.
    PERFORM electric.__drop_trigger(shadow, 'postgres_write__write_resolved_tags');
    EXECUTE format($$
        CREATE CONSTRAINT TRIGGER postgres_write__write_resolved_tags
            AFTER UPDATE ON %s DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            WHEN (electric.__session_replication_role() <> 'replica' AND NOT NEW._resolved)
            EXECUTE FUNCTION electric.%s()$$,
        shadow, electric.__ident(electric.__function_name('write_correct_max_tag', schema_name, table_name)));

    EXECUTE format($$
        CREATE OR REPLACE TRIGGER satellite_write__upsert_rows
            BEFORE INSERT ON %s FOR EACH ROW
            WHEN (electric.__session_replication_role() = 'replica' AND pg_trigger_depth() < 1
                  AND NEW._currently_reordering IS NULL)
            EXECUTE FUNCTION electric.%s()$$,
        shadow, electric.__ident(electric.__function_name('shadow_insert_to_upsert', schema_name, table_name)));
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER satellite_write__upsert_rows', shadow);

    EXECUTE format($$
        CREATE OR REPLACE TRIGGER satellite_write__resolve_observed_tags
            BEFORE UPDATE ON %s FOR EACH ROW
            WHEN (electric.__session_replication_role() = 'replica'
                  AND NEW._currently_reordering IS NULL)
            EXECUTE FUNCTION electric.%s()$$,
        shadow, electric.__ident(electric.__function_name('resolve_observed_tags', schema_name, table_name)));
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER satellite_write__resolve_observed_tags', shadow);
END;
$body$;

-- A column added to an electrified table (called by the migrations proxy after
-- ALTER TABLE ... ADD COLUMN): the shadow table gets __reordered_<col> and _tag_<col>, the
-- tombstone <col>, and the per-table functions are regenerated (the triggers need not change).
-- `action` is ignored (only additions exist). The column's type is taken from the table when
-- the column is there, col_type otherwise.
CREATE OR REPLACE PROCEDURE electric.alter_shadow_table(
    schema_name name,
    table_name name,
    action text,
    col_name name,
    col_type text
)   LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    main_oid regclass :=
        to_regclass(electric.__ident(schema_name) || '.' || electric.__ident(table_name));
    type_ddl text;
BEGIN
    SELECT electric.__column_type(main_oid, a.attnum) INTO type_ddl
      FROM pg_attribute a
     WHERE a.attrelid = main_oid AND a.attname = col_name AND NOT a.attisdropped;
    type_ddl := coalesce(type_ddl, col_type);
    EXECUTE format('ALTER TABLE electric.%s ADD COLUMN IF NOT EXISTS %s %s, '
                   'ADD COLUMN IF NOT EXISTS %s electric.tag',
                   electric.__ident(electric.__shadow_name(schema_name, table_name)),
                   electric.__ident('__reordered_' || col_name), type_ddl,
                   electric.__ident('_tag_' || col_name));
    EXECUTE format('ALTER TABLE electric.%s ADD COLUMN IF NOT EXISTS %s %s',
                   electric.__ident(electric.__tombstone_name(schema_name, table_name)),
                   electric.__ident(col_name), type_ddl);
    PERFORM electric.install_conflict_resolution_functions(schema_name, table_name);
END;
$$;

-- Regenerates the functions of every electrified table that is still whole; run at every
-- start so that a fix in a generator reaches tables electrified by an older version.
CREATE OR REPLACE FUNCTION electric.__reinstall_table_functions() RETURNS int4
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    e record;
    n int4 := 0;
BEGIN
    FOR e IN SELECT schema_name, table_name FROM electric.electrified ORDER BY id LOOP
        CONTINUE WHEN to_regclass(electric.__ident(e.schema_name) || '.'
                                  || electric.__ident(e.table_name)) IS NULL
            OR to_regclass('electric.' || electric.__ident(
                               electric.__shadow_name(e.schema_name, e.table_name))) IS NULL
            OR to_regclass('electric.' || electric.__ident(
                               electric.__tombstone_name(e.schema_name, e.table_name))) IS NULL;
        PERFORM electric.install_conflict_resolution_functions(e.schema_name, e.table_name);
        n := n + 1;
    END LOOP;
    RETURN n;
END;
$$;
