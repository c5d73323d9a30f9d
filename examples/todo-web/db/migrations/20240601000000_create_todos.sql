-- The todos table, electrified. Apply it through the service's migrations proxy (see the README).
BEGIN;
CALL electric.migration_version('20240601000000');
CREATE TABLE todos (
    id uuid PRIMARY KEY,
    title text NOT NULL,
    done boolean NOT NULL,
    created_at timestamptz NOT NULL
);
ALTER TABLE todos ENABLE ELECTRIC;
COMMIT;
