-- 003: the realtime outbox holds one row per transaction, not one per event.
--
-- A batch of 500 webhook events produced 500 to 1,000 outbox rows, each
-- inserted, read back and deleted: a third of the worker's time in
-- PostgreSQL (bench/README.md).  Now each transaction that has something to
-- publish adds one row whose `events` holds its events in order, one line
-- each: the event name, a tab, the data's JSON (PostgreSQL's JSON output
-- never contains a raw newline), a newline.  The worker publishes the lines
-- and deletes the row.  A row that was not published (Redis away, a crash
-- between commit and publish) is published by a later sweep: its owner's at
-- once, another worker's once it is older than the claim idle time (the
-- owner is gone), and rows without an owner (written by the API) by
-- whichever worker sweeps first.

ALTER TABLE update_outbox RENAME TO update_outbox_v1;

CREATE TABLE update_outbox (
    id                    bigserial PRIMARY KEY,
    -- lz4: pglz took a third of the time of writing a batch's row
    events                text COMPRESSION lz4 NOT NULL,
    owner                 text,               -- the worker (consumer name)
    created_at            timestamptz NOT NULL DEFAULT now()
);


-- One event as an outbox line.
CREATE FUNCTION wa_outbox_line(event text, data text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT event || E'\t' || data || E'\n' $$;


INSERT INTO update_outbox (events)
SELECT string_agg(wa_outbox_line(event, data::text), '' ORDER BY id)
FROM update_outbox_v1
HAVING count(*) > 0;

DROP TABLE update_outbox_v1;
