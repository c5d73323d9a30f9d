-- The GONE batch sent for an unsubscription, kept with its unsubscribe point until the client
-- acknowledges it (gone_subscription_ids) or resumes without listing the subscription: a client
-- that missed it (a connection lost after the unsubscribe) gets it again when it resumes
-- (satellite-protocol.md §7.2 step 7), also after a restart of the service.
ALTER TABLE electric.client_unsub_points ADD COLUMN gone_batch bytea;
