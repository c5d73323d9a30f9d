-- The DDLX permission procedures (§4): what ELECTRIC GRANT / REVOKE / ASSIGN / UNASSIGN become
-- in the migrations proxy, when ELECTRIC_FEATURES turns them on. They write electric.grants,
-- electric.assignments and (through per-assignment triggers) electric.roles, which are in the
-- publication; nothing in the service enforces them yet, as in the original.
--
-- Tables are passed as '"schema"."table"' and stored in that form. The caller (session_user)
-- must own the tables named.

-- The table a DDLX command names, which the caller must own.
CREATE OR REPLACE FUNCTION electric.__ddlx_table(full_name text, must_own bool DEFAULT true)
    RETURNS regclass
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    parts text[] := parse_ident(full_name);
    rel regclass;
BEGIN
    IF cardinality(parts) = 2 THEN
        rel := to_regclass(format('%I.%I', parts[1], parts[2]));
    ELSIF cardinality(parts) = 1 THEN
        rel := to_regclass(format('%I.%I', 'public', parts[1]));
    END IF;
    IF rel IS NULL THEN
        RAISE EXCEPTION 'relation % does not exist', full_name USING ERRCODE = 'undefined_table';
    END IF;
    IF must_own AND NOT pg_has_role(session_user,
                                    (SELECT relowner FROM pg_class WHERE oid = rel), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', rel USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN rel;
END;
$$;

-- The number of a column of rel, raising 42703 if it has none of that name.
CREATE OR REPLACE FUNCTION electric.__ddlx_column(rel regclass, column_name text) RETURNS int2
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    num int2;
BEGIN
    SELECT attnum INTO num FROM pg_attribute
     WHERE attrelid = rel AND attname = column_name AND attnum > 0 AND NOT attisdropped;
    IF num IS NULL THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist', column_name, rel
            USING ERRCODE = 'undefined_column';
    END IF;
    RETURN num;
END;
$$;

-- ELECTRIC GRANT: one row per column ('*' = the whole table); granting again replaces the
-- USING path and CHECK of the rows it names.
CREATE OR REPLACE PROCEDURE electric.grant(
    privilege_name text,
    on_table_name text,
    role_name text,
    columns text[],
    scope_name text,
    using_path text,
    check_fn text
)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    rel regclass;
    col text;
BEGIN
    IF privilege_name IS NULL OR privilege_name NOT IN ('select', 'insert', 'update', 'delete') THEN
        RAISE EXCEPTION 'unknown privilege %', coalesce(privilege_name, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF coalesce(role_name, '') = '' THEN
        RAISE EXCEPTION 'a role name is required' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    rel := electric.__ddlx_table(on_table_name);
    IF coalesce(scope_name, '__global__') <> '__global__' THEN
        PERFORM electric.__ddlx_table(scope_name, false);
    END IF;
    FOREACH col IN ARRAY coalesce(columns, ARRAY['*']) LOOP
        IF col <> '*' THEN
            PERFORM electric.__ddlx_column(rel, col);
        END IF;
        INSERT INTO electric.grants
               (privilege, on_table, role, column_name, scope, using_path, check_fn)
        VALUES (privilege_name, on_table_name, role_name, col,
                coalesce(scope_name, '__global__'), using_path, check_fn)
        ON CONFLICT ON CONSTRAINT grants_pkey DO UPDATE
           SET (using_path, check_fn) = (EXCLUDED.using_path, EXCLUDED.check_fn);
    END LOOP;
END;
$$;

-- ELECTRIC REVOKE: removes the rows of the columns named; '*' removes every column's.
-- (The original meant to do the same, but its '*' test never took effect: it only removed the
-- '*' rows.)
CREATE OR REPLACE PROCEDURE electric.revoke(
    privilege_name text,
    on_table_name text,
    role_name text,
    columns text[],
    scope_name text
)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM electric.__ddlx_table(on_table_name);
    DELETE FROM electric.grants g
     WHERE g.privilege = privilege_name
       AND g.on_table = on_table_name
       AND g.role = role_name
       AND g.scope = coalesce(scope_name, '__global__')
       AND ('*' = ANY (coalesce(columns, ARRAY['*'])) OR g.column_name = ANY (columns));
END;
$$;

-- Object names of an assignment (all below 63 bytes).
CREATE OR REPLACE FUNCTION electric.__assignment_name(assignment_id uuid, kind text)
    RETURNS name
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN 'assignment_' || replace(assignment_id::text, '-', '_') || '_' || kind;

-- ELECTRIC ASSIGN: records the assignment, then keeps electric.roles in step with the rows of
-- the table: each row whose user column is set (and whose IF expression, written with NEW.col,
-- holds) gives its user the role (the literal role_name_string, or the row's role_column_name),
-- within the row the foreign key to the scope table points at when there is a scope. A join
-- table electric.assignment_<id>_join maps each row (by primary key) to its electric.roles row;
-- an AFTER trigger (ENABLE ALWAYS: client writes applied by Postgres count too) updates both.
-- Rows already in the table get their roles at once.
--
-- Unlike grant(), assign() and unassign() run with the caller's rights (the original ran them as
-- the schema's owner): the functions they generate evaluate the IF expression as their owner on
-- every write to the table, so only a role that may create objects in the electric schema and
-- write electric.assignments (the service's own user, through the proxy) may create them.
CREATE OR REPLACE PROCEDURE electric.assign(
    assign_table_full_name text,
    scope text,
    user_column_name text,
    role_name_string text,
    role_column_name text,
    if_fn text
)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    rel regclass;
    rel_schema name;
    user_num int2;
    pk_columns text[];
    scope_rel regclass;
    scope_columns text[];
    fk_count int;
    assignment_id uuid;
    join_table text;
    apply_fn text;
    trigger_fn text;
    role_expr text;
    scope_id_expr text;
    condition text;
BEGIN
    rel := electric.__ddlx_table(assign_table_full_name);
    SELECT n.nspname INTO rel_schema
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    user_num := electric.__ddlx_column(rel, user_column_name);
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE contype = 'f' AND conrelid = rel AND user_num = ANY (conkey)) THEN
        RAISE EXCEPTION 'Could not find a foreign key pointing to the user table'
            USING ERRCODE = 'invalid_table_definition';
    END IF;
    IF role_name_string IS NULL AND role_column_name IS NULL THEN
        RAISE EXCEPTION 'You must give either a role_name_string or a role_column_name'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF role_name_string IS NOT NULL AND role_column_name IS NOT NULL THEN
        RAISE EXCEPTION 'You must give either a role_name_string or a role_column_name but not both'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF role_column_name IS NOT NULL THEN
        PERFORM electric.__ddlx_column(rel, role_column_name);
        role_expr := format('NEW.%s::text', electric.__ident(role_column_name));
    ELSE
        role_expr := quote_literal(role_name_string);
    END IF;
    SELECT array_agg(a.attname::text ORDER BY k.i) INTO pk_columns
      FROM pg_constraint co
           CROSS JOIN LATERAL unnest(co.conkey) WITH ORDINALITY AS k(attnum, i)
           JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.attnum
     WHERE co.conrelid = rel AND co.contype = 'p';
    IF pk_columns IS NULL THEN
        RAISE EXCEPTION 'table % has no primary key', rel USING ERRCODE = 'invalid_table_definition';
    END IF;

    scope_id_expr := 'NULL';
    IF scope IS NOT NULL THEN
        scope_rel := electric.__ddlx_table(scope, false);
        SELECT count(*) INTO fk_count FROM pg_constraint
         WHERE contype = 'f' AND conrelid = rel AND confrelid = scope_rel;
        IF fk_count = 0 THEN
            RAISE EXCEPTION 'Could not find a foreign key pointing to the scope table'
                USING ERRCODE = 'invalid_table_definition';
        ELSIF fk_count > 1 THEN
            RAISE EXCEPTION 'Too many foreign keys for the scope table'
                USING ERRCODE = 'invalid_table_definition';
        END IF;
        SELECT array_agg(a.attname::text ORDER BY k.i) INTO scope_columns
          FROM pg_constraint co
               CROSS JOIN LATERAL unnest(co.conkey) WITH ORDINALITY AS k(attnum, i)
               JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.attnum
         WHERE co.conrelid = rel AND co.contype = 'f' AND co.confrelid = scope_rel;
        -- The scope row's key as text, its columns joined with ', ' (as the original).
        scope_id_expr := format('array_to_string(ARRAY[%s], '', '')',
                                electric.__format_each(electric.__idents(scope_columns),
                                                       'NEW.%s::text'));
    END IF;

    IF EXISTS (SELECT 1 FROM electric.assignments a
                WHERE a.table_name = assign_table_full_name
                  AND a.scope_table = coalesce(scope, '__none__')
                  AND a.user_column = user_column_name
                  AND a.role_name = coalesce(role_name_string, '__none__')
                  AND a.role_column = coalesce(role_column_name, '__none__')) THEN
        RAISE EXCEPTION 'this assignment already exists' USING ERRCODE = 'duplicate_object';
    END IF;
    INSERT INTO electric.assignments
           (table_name, scope_table, user_column, role_name, role_column, if_fn)
    VALUES (assign_table_full_name, coalesce(scope, '__none__'), user_column_name,
            coalesce(role_name_string, '__none__'), coalesce(role_column_name, '__none__'), if_fn)
    RETURNING id INTO assignment_id;

    join_table := 'electric.' || electric.__ident(electric.__assignment_name(assignment_id, 'join'));
    apply_fn := 'electric.' || electric.__ident(electric.__assignment_name(assignment_id, 'apply'));
    trigger_fn := 'electric.'
                  || electric.__ident(electric.__assignment_name(assignment_id, 'trigger'));
    condition := format('NEW.%s IS NOT NULL AND (%s) IS NOT NULL',
                        electric.__ident(user_column_name), role_expr);
    IF if_fn IS NOT NULL THEN
        condition := condition || format(' AND coalesce((%s)::bool, false)', if_fn);
    END IF;

    EXECUTE format('CREATE TABLE %s (row_key jsonb PRIMARY KEY, '
                   'role_id uuid NOT NULL REFERENCES electric.roles (id) ON DELETE CASCADE)',
                   join_table);
    -- The row: NEW (a record, so that the function does not pin the table's row type).
    EXECUTE format($f$
CREATE FUNCTION %1$s(new record, present bool) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, %2$s, pg_temp
    AS $body$
DECLARE
    _key jsonb := jsonb_build_array(%3$s);
    role_key uuid;
BEGIN
    SELECT j.role_id INTO role_key FROM %4$s j WHERE j.row_key = _key;
    IF present AND %5$s THEN
        IF role_key IS NULL THEN
            INSERT INTO electric.roles (role, user_id, scope_table, scope_id)
            VALUES (%6$s, NEW.%7$s::text, %8$L, %9$s)
            RETURNING id INTO role_key;
            INSERT INTO %4$s (row_key, role_id) VALUES (_key, role_key);
        ELSE
            UPDATE electric.roles SET (role, user_id, scope_table, scope_id)
                 = (%6$s, NEW.%7$s::text, %8$L, %9$s)
             WHERE id = role_key;
        END IF;
    ELSIF role_key IS NOT NULL THEN
        DELETE FROM electric.roles WHERE id = role_key;
    END IF;
END;
$body$;
$f$,
        apply_fn,
        electric.__ident(rel_schema),
        electric.__format_each(electric.__idents(pk_columns), 'NEW.%s'),
        join_table,
        condition,
        role_expr,
        electric.__ident(user_column_name),
        scope,
        scope_id_expr);
    EXECUTE format($f$
CREATE FUNCTION %1$s() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $body$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM %2$s(OLD, false);
    ELSE
        IF TG_OP = 'UPDATE'
           AND jsonb_build_array(%3$s) IS DISTINCT FROM jsonb_build_array(%4$s) THEN
            PERFORM %2$s(OLD, false);  -- the key changed: the old row's role goes
        END IF;
        PERFORM %2$s(NEW, true);
    END IF;
    RETURN NULL;
END;
$body$;
$f$,
        trigger_fn,
        apply_fn,
        electric.__format_each(electric.__idents(pk_columns), 'OLD.%s'),
        electric.__format_each(electric.__idents(pk_columns), 'NEW.%s'));
    EXECUTE format('CREATE TRIGGER %s AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION %s()',
                   electric.__ident(electric.__assignment_name(assignment_id, 'trigger')),
                   rel, trigger_fn);
    EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %s', rel,
                   electric.__ident(electric.__assignment_name(assignment_id, 'trigger')));
    EXECUTE format('SELECT %s(t, true) FROM %s t', apply_fn, rel);
END;
$$;

-- ELECTRIC UNASSIGN: removes an assignment, its trigger, join table and the roles it gave.
CREATE OR REPLACE PROCEDURE electric.unassign(
    assign_table_full_name text,
    scope text,
    user_column_name text,
    role_name_string text,
    role_column_name text
)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    rel regclass;
    assignment_id uuid;
    join_table text;
BEGIN
    rel := electric.__ddlx_table(assign_table_full_name);
    SELECT a.id INTO assignment_id FROM electric.assignments a
     WHERE a.table_name = assign_table_full_name
       AND a.scope_table = coalesce(scope, '__none__')
       AND a.user_column = user_column_name
       AND a.role_name = coalesce(role_name_string, '__none__')
       AND a.role_column = coalesce(role_column_name, '__none__');
    IF assignment_id IS NULL THEN
        RAISE NOTICE 'no such assignment on %', assign_table_full_name;
        RETURN;
    END IF;
    join_table := 'electric.' || electric.__ident(electric.__assignment_name(assignment_id, 'join'));
    EXECUTE format('DROP TRIGGER IF EXISTS %s ON %s',
                   electric.__ident(electric.__assignment_name(assignment_id, 'trigger')), rel);
    EXECUTE format('DELETE FROM electric.roles r USING %s j WHERE r.id = j.role_id', join_table);
    EXECUTE format('DROP TABLE %s', join_table);
    EXECUTE format('DROP FUNCTION %s()',
                   'electric.' || electric.__ident(
                       electric.__assignment_name(assignment_id, 'trigger')));
    EXECUTE format('DROP FUNCTION %s(record, bool)',
                   'electric.' || electric.__ident(
                       electric.__assignment_name(assignment_id, 'apply')));
    DELETE FROM electric.assignments a WHERE a.id = assignment_id;
END;
$$;
