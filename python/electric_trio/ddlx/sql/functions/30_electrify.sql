-- Electrification (§4.1): CALL electric.electrify('t') | ('public', 't') | ('"public"."t"'),
-- and its DDLX aliases enable(), disable().

-- Resolves the names electrify() was given, as the caller sees them (the caller's
-- search_path): (schema, table) when both are given; 'schema.table' (quoted parts allowed);
-- else a table name looked up on the search_path.
CREATE OR REPLACE FUNCTION electric.__resolve_table_from_names(
    name1 text,
    name2 text,
    OUT schema_name name,
    OUT table_name name,
    OUT table_oid regclass
) LANGUAGE plpgsql STABLE AS $$
DECLARE
    parts text[];
BEGIN
    IF name1 IS NULL THEN
        RAISE EXCEPTION 'no valid table name given' USING ERRCODE = 'invalid_parameter_value';
    ELSIF name2 IS NOT NULL THEN
        table_oid := format('%I.%I', name1, name2)::regclass;
    ELSIF strpos(name1, '.') > 0 THEN
        parts := parse_ident(name1);
        IF cardinality(parts) = 1 THEN
            table_oid := quote_ident(parts[1])::regclass;
        ELSIF cardinality(parts) = 2 THEN
            table_oid := format('%I.%I', parts[1], parts[2])::regclass;
        ELSE
            RAISE EXCEPTION 'invalid table name given %', name1
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSE
        table_oid := quote_ident(name1)::regclass;
    END IF;
    -- The names as the catalog spells them.
    SELECT n.nspname, c.relname INTO schema_name, table_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = table_oid;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- Validation, in the order electrify() applies it. Each check raises one error that names
-- everything at fault, so that a user fixes a table in one go.
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE PROCEDURE electric.__validate_table_schema(table_oid regclass)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    _schema name;
BEGIN
    SELECT n.nspname INTO _schema
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = table_oid;
    IF _schema <> 'public'
       AND electric.__lookup_test_flag('__schema_validation_enabled', true) THEN
        RAISE EXCEPTION 'Cannot electrify %: only tables in the public schema can be electrified',
                table_oid
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Move the table to the public schema.';
    END IF;
END;
$$;

-- Supported column types (§4.1): these builtin types (varchar only without a length), and
-- enums whose labels are all plain identifiers (clients turn labels into identifiers).
CREATE OR REPLACE PROCEDURE electric.__validate_table_column_types(table_oid regclass)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    offenders text[];
BEGIN
    SELECT array_agg(
               CASE WHEN t.typtype = 'e' THEN
                   format('%I %s (enum labels not supported: %s)', a.attname,
                          format_type(a.atttypid, a.atttypmod),
                          (SELECT string_agg(quote_literal(e.enumlabel), ', '
                                             ORDER BY e.enumsortorder)
                             FROM pg_enum e
                            WHERE e.enumtypid = t.oid
                              AND e.enumlabel !~* '^[a-z][a-z_0-9]*$'))
               ELSE
                   format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
               END
               ORDER BY a.attnum)
      INTO offenders
      FROM pg_attribute a
      JOIN pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = table_oid AND a.attnum > 0 AND NOT a.attisdropped
       AND CASE
               WHEN t.typtype = 'e' THEN EXISTS (
                   SELECT 1 FROM pg_enum e
                    WHERE e.enumtypid = t.oid AND e.enumlabel !~* '^[a-z][a-z_0-9]*$')
               ELSE NOT (
                   -- by OID's namespace too: a user type called "text" is not text
                   t.typnamespace = 'pg_catalog'::regnamespace
                   AND t.typname IN ('bool', 'bytea', 'date', 'float4', 'float8', 'int2',
                                     'int4', 'int8', 'jsonb', 'text', 'time', 'timestamp',
                                     'timestamptz', 'uuid', 'varchar')
                   AND (t.typname <> 'varchar' OR a.atttypmod = -1))
           END;
    IF offenders IS NOT NULL THEN
        RAISE EXCEPTION E'Cannot electrify % because of column types Electric does not support:\n    %',
                table_oid, array_to_string(offenders, E'\n    ')
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Supported: bool, bytea, date, float4, float8, int2, int4, int8, jsonb, '
                         'text, time, timestamp, timestamptz, uuid, varchar without a length, '
                         'and enums whose labels match ^[a-z][a-z_0-9]*$.';
    END IF;
END;
$$;

-- Clients create rows themselves, so a value Postgres would fill in (DEFAULT, GENERATED ...
-- STORED, and, unlike the original, identity columns, whose ALWAYS form even refuses the
-- values clients send) cannot be honoured.
CREATE OR REPLACE PROCEDURE electric.__validate_table_column_defaults(table_oid regclass)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    offenders text[];
BEGIN
    SELECT array_agg(
               format('%I (%s)', attname,
                      CASE WHEN attidentity <> '' THEN 'identity'
                           WHEN attgenerated <> '' THEN 'generated'
                           ELSE 'default' END)
               ORDER BY attnum)
      INTO offenders
      FROM pg_attribute
     WHERE attrelid = table_oid AND attnum > 0 AND NOT attisdropped
       AND (atthasdef OR attidentity <> '' OR attgenerated <> '');
    IF offenders IS NOT NULL THEN
        RAISE EXCEPTION E'Cannot electrify % because some of its columns have DEFAULT values, which Electric does not support:\n    %',
                table_oid, array_to_string(offenders, E'\n    ')
            USING ERRCODE = 'feature_not_supported';
    END IF;
END;
$$;

-- A PRIMARY KEY is required; constraints other than PRIMARY KEY, FOREIGN KEY and NOT NULL
-- (which PostgreSQL 18 records as constraints of kind 'n') cannot be enforced on clients.
CREATE OR REPLACE PROCEDURE electric.__validate_table_constraints(table_oid regclass)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    offenders text[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = table_oid AND contype = 'p') THEN
        RAISE EXCEPTION 'Cannot electrify % because it doesn''t have a PRIMARY KEY.', table_oid
            USING ERRCODE = 'invalid_table_definition';
    END IF;
    SELECT array_agg(
               format('%I (%s%s)', c.conname,
                      CASE c.contype WHEN 'c' THEN 'CHECK' WHEN 'u' THEN 'UNIQUE'
                                     WHEN 'x' THEN 'EXCLUDE' WHEN 't' THEN 'CONSTRAINT TRIGGER'
                                     ELSE 'constraint of kind ' || c.contype::text END,
                      coalesce(' on ' || (
                          SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.i)
                            FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, i)
                            JOIN pg_attribute a
                              ON a.attrelid = c.conrelid AND a.attnum = k.attnum), ''))
               ORDER BY c.conname)
      INTO offenders
      FROM pg_constraint c
     WHERE c.conrelid = table_oid AND c.contype NOT IN ('p', 'f', 'n');
    IF offenders IS NOT NULL
       AND electric.__lookup_test_flag('__constraint_validation_enabled', true) THEN
        RAISE EXCEPTION E'Cannot electrify % because it has CHECK, UNIQUE, EXCLUDE or user-defined constraints, which Electric does not support:\n    %',
                table_oid, array_to_string(offenders, E'\n    ')
            USING ERRCODE = 'feature_not_supported';
    END IF;
END;
$$;

-- Names Electric derives from the table must be usable: the shadow table's name is fixed by
-- the protocol and must fit in 63 bytes (Postgres would silently truncate it), and no column
-- may collide with the shadow table's own columns. Not in the original, which truncated.
CREATE OR REPLACE PROCEDURE electric.__validate_table_names(table_oid regclass)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    _schema name;
    _table name;
    offenders text[];
BEGIN
    SELECT n.nspname, c.relname INTO _schema, _table
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = table_oid;
    IF octet_length(electric.__shadow_name(_schema, _table)) > 63 THEN
        RAISE EXCEPTION 'Cannot electrify % because its shadow table name % would be longer than 63 bytes',
                table_oid, quote_ident(electric.__shadow_name(_schema, _table))
            USING ERRCODE = 'name_too_long', HINT = 'Use a shorter table name.';
    END IF;
    WITH cols AS (
        SELECT a.attname::text AS name, a.attnum,
               EXISTS (SELECT 1 FROM pg_index i
                        WHERE i.indrelid = a.attrelid AND i.indisprimary
                          AND a.attnum = ANY (i.indkey)) AS pk
          FROM pg_attribute a
         WHERE a.attrelid = table_oid AND a.attnum > 0 AND NOT a.attisdropped
    ),
    shadow_cols AS (
        SELECT name AS origin, name AS derived FROM cols WHERE pk
        UNION ALL SELECT name, '__reordered_' || name FROM cols WHERE NOT pk
        UNION ALL SELECT name, '_tag_' || name FROM cols WHERE NOT pk
        UNION ALL SELECT NULL, fixed
          FROM unnest(ARRAY['_tags', '_last_modified', '_is_a_delete_operation', '_tag',
                            '_observed_tags', '_modified_columns_bit_mask', '_resolved',
                            '_currently_reordering']) AS fixed
    )
    SELECT array_agg(DISTINCT quote_ident(s.origin))
      INTO offenders
      FROM shadow_cols s
     WHERE s.origin IS NOT NULL
       AND (octet_length(s.derived) > 63
            OR (SELECT count(*) FROM shadow_cols o WHERE o.derived = s.derived) > 1);
    IF offenders IS NOT NULL THEN
        RAISE EXCEPTION 'Cannot electrify % because these column names clash with the columns of its shadow table or are too long: %',
                table_oid, array_to_string(offenders, ', ')
            USING ERRCODE = 'invalid_name';
    END IF;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- The DDL that describes an electrified table to clients: one CREATE TYPE ... AS ENUM per enum
-- type its columns use (in column order), a CREATE TABLE with the columns and their NOT NULL,
-- and the PRIMARY KEY and FOREIGN KEY constraints inline, then one CREATE INDEX per index that
-- does not back a constraint. One statement per element, each captured as its own
-- ddl_commands row. search_path is pg_catalog, so every name outside it comes out qualified.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION electric.__table_ddl(table_oid regclass) RETURNS text[]
    LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    statements text[];
    create_table text;
BEGIN
    SELECT coalesce(array_agg(ddl ORDER BY first_attnum), '{}')
      INTO statements
      FROM (
          SELECT format(E'CREATE TYPE %I.%I AS ENUM (%s);', n.nspname, t.typname,
                        (SELECT string_agg(quote_literal(e.enumlabel), ', '
                                           ORDER BY e.enumsortorder)
                           FROM pg_enum e WHERE e.enumtypid = t.oid)) AS ddl,
                 min(a.attnum) AS first_attnum
            FROM pg_attribute a
            JOIN pg_type t ON t.oid = a.atttypid
            JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE a.attrelid = table_oid AND a.attnum > 0 AND NOT a.attisdropped
             AND t.typtype = 'e'
           GROUP BY n.nspname, t.typname, t.oid
      ) AS enums;

    SELECT format(E'CREATE TABLE %I.%I (\n    %s\n);', n.nspname, c.relname,
                  array_to_string(definitions, E',\n    '))
      INTO create_table
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      CROSS JOIN LATERAL (
          SELECT array_agg(definition ORDER BY kind, ord, name) AS definitions
            FROM (
                SELECT 0 AS kind, a.attnum::int8 AS ord, a.attname::text AS name,
                       format('%I %s', a.attname, electric.__column_type(c.oid, a.attnum))
                       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END AS definition
                  FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                UNION ALL
                -- PRIMARY KEY first, then the other constraints by name; NOT NULL is inline.
                SELECT 1, CASE WHEN co.contype = 'p' THEN 0 ELSE 1 END, co.conname::text,
                       format('CONSTRAINT %I %s', co.conname, pg_get_constraintdef(co.oid))
                  FROM pg_constraint co
                 WHERE co.conrelid = c.oid AND co.contype <> 'n'
            ) AS parts
      ) AS d
     WHERE c.oid = table_oid;
    statements := statements || create_table;

    SELECT statements || coalesce(array_agg(pg_get_indexdef(i.indexrelid) || ';'
                                            ORDER BY ic.relname), '{}')
      INTO statements
      FROM pg_index i
      JOIN pg_class ic ON ic.oid = i.indexrelid
     WHERE i.indrelid = table_oid
       AND NOT EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = i.indexrelid
                                                        AND co.conrelid = table_oid);
    RETURN statements;
END;
$$;

-- ---------------------------------------------------------------------------------------------
-- electrify() itself.
-- ---------------------------------------------------------------------------------------------

-- Runs with the caller's rights and search_path, only to resolve the names; the work is done
-- by __electrify(), which runs as the schema's owner with a fixed search_path.
CREATE OR REPLACE PROCEDURE electric.electrify(name1 text, name2 text DEFAULT NULL)
    LANGUAGE plpgsql AS $$
DECLARE
    _oid regclass;
BEGIN
    SELECT r.table_oid INTO _oid FROM electric.__resolve_table_from_names(name1, name2) AS r;
    CALL electric.__electrify(_oid);
END;
$$;

CREATE OR REPLACE PROCEDURE electric.__electrify(table_oid regclass)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    rel pg_class%ROWTYPE;
    _schema name;
    statement text;
BEGIN
    SELECT * INTO rel FROM pg_class WHERE oid = table_oid;
    SELECT nspname INTO _schema FROM pg_namespace WHERE oid = rel.relnamespace;

    IF rel.relkind <> 'r' THEN
        RAISE EXCEPTION '%.% is not an ordinary table',
                quote_ident(_schema), quote_ident(rel.relname)
            USING ERRCODE = 'wrong_object_type';
    END IF;
    -- This runs as the schema's owner: only the table's owner (or a member of its role) may
    -- change what happens to the table.
    IF NOT pg_has_role(session_user, rel.relowner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', table_oid
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Taken now rather than by the ALTER TABLE below: a concurrent electrify() of the same
    -- table waits here, then sees this one's row and stops at the check that follows.
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', table_oid);
    IF EXISTS (SELECT 1 FROM electric.electrified e
                WHERE e.schema_name = _schema AND e.table_name = rel.relname) THEN
        RAISE NOTICE 'table %.% is already electrified', _schema, rel.relname;
        RETURN;
    END IF;

    RAISE NOTICE 'Electrify table %.%', quote_ident(_schema), quote_ident(rel.relname);
    CALL electric.__validate_table_schema(table_oid);
    CALL electric.__validate_table_column_types(table_oid);
    CALL electric.__validate_table_column_defaults(table_oid);
    CALL electric.__validate_table_constraints(table_oid);
    CALL electric.__validate_table_names(table_oid);

    -- The table's description becomes part of this transaction's migration.
    FOREACH statement IN ARRAY electric.__table_ddl(table_oid) LOOP
        CALL electric.capture_ddl(statement);
    END LOOP;

    -- Deletes and updates must carry the whole old row, for shapes and for tags.
    EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', table_oid);
    INSERT INTO electric.electrified (schema_name, table_name, oid)
        VALUES (_schema, rel.relname, table_oid);
    PERFORM electric.__publish(table_oid);

    PERFORM electric.__create_shadow_tables(table_oid);
    PERFORM electric.install_functions_and_triggers(_schema, rel.relname);
    PERFORM electric.__publish(
        format('electric.%I', electric.__shadow_name(_schema, rel.relname))::regclass);

    -- Tables electrified earlier whose foreign keys point here can now report this table's
    -- rows as referenced records (fk_chain_touch).
    PERFORM electric.install_functions_and_triggers(e.schema_name, e.table_name)
       FROM electric.electrified e
      WHERE e.oid <> table_oid
        AND EXISTS (SELECT 1 FROM pg_constraint co
                     WHERE co.contype = 'f' AND co.conrelid = e.oid
                       AND co.confrelid = table_oid);
END;
$$;

CREATE OR REPLACE PROCEDURE electric.enable(table_name text)
    LANGUAGE plpgsql AS $$
BEGIN
    CALL electric.electrify(table_name);
END;
$$;

-- DDLX DISABLE and SQLITE are accepted and do nothing, as in the original.
CREATE OR REPLACE PROCEDURE electric.disable(table_name text)
    LANGUAGE plpgsql AS $$
BEGIN
END;
$$;

CREATE OR REPLACE PROCEDURE electric.sqlite(sql text)
    LANGUAGE plpgsql AS $$
BEGIN
END;
$$;
