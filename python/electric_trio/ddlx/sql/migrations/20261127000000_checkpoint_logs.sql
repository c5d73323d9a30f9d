-- A client's sent-rows graph stored as it changes: client_checkpoints.sent_rows_graph holds a
-- base (a whole graph, usually the empty one the client started from) and the lineage it
-- begins, and each piece of the graph's change log taken since (the edges added and removed,
-- the journal's steps) is a row here, applied in seq order on load. A large shape's rows are
-- stored once, as they are sent, instead of in a whole-graph export at every checkpoint.
-- pg_wal_pos and pending_move_ins are those of the graph once the piece is applied.
CREATE TABLE electric.client_checkpoint_logs (
    client_id        text        NOT NULL,
    lineage          int8        NOT NULL,
    seq              int8        NOT NULL,
    pg_wal_pos       int8        NOT NULL,
    changes          bytea       NOT NULL,
    pending_move_ins bytea,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, lineage, seq)
);
-- Not compressed: the pieces are mostly keys (UUIDs as their 16 bytes), and pglz would cost the
-- server's CPU while a large shape is being sent.
ALTER TABLE electric.client_checkpoint_logs ALTER COLUMN changes SET STORAGE EXTERNAL;
