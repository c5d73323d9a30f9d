-- Move-ins whose additional data the client has not acknowledged, stored with the client's
-- checkpoint (msgpack: the next additional-data ref, and per ref the position of its
-- transaction and the (layer label, keys) pairs to read): after a restart of the service a
-- resuming client gets that data read again (satellite-protocol.md §7.2 step 7).
ALTER TABLE electric.client_checkpoints ADD COLUMN pending_move_ins bytea;
