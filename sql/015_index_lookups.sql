-- 015: two look-ups that read all of messages now go through an index.
--
-- Found with bench/sse-e2e at 1,000 webhooks/s (auto_explain with
-- log_nested_statements): small batches, a database a few seconds old.
--
--   * wa_apply_edits looks for edits and revokes of the batch's new
--     messages (messages_refers_to).  Its plan is made in the worker's
--     session when messages holds a few pages, and there a seq scan is
--     the cheaper plan; the session keeps it until autoanalyze runs (a
--     minute at least), while the table grows.  At 10,000 rows it cost
--     3 to 9 ms per batch, most of PostgreSQL's time for a batch of a few
--     webhooks.  Every statement of the function looks rows up by wamid
--     or refers_to, so seq scans are off there, as for the status
--     derivation in 013.
--   * wa_send_reconcile (every sender sweep, 5 s by default) looked for
--     `unknown` messages with a condition no index has, so it read the
--     whole table every time: 7 to 13 ms at 20,000 messages, seconds at
--     millions.  An unknown message still has its placeholder wamid and
--     no failure (it was `sending`, and only Meta's answer moves it), so
--     the condition of messages_unsent (011) is added: the sweep's index
--     finds them.  Seq scans are off in it too: on a table of a few pages
--     the planner would still rather read it all, and every statement of
--     the function looks rows up by key.
-- Same arguments, same results.

ALTER FUNCTION wa_apply_edits(messages[])
    SET enable_seqscan = off;


-- as in 007, the unknown messages found through messages_unsent
CREATE OR REPLACE FUNCTION wa_send_reconcile(p_consumer text,
                                  OUT outbox_id bigint, OUT events text)
LANGUAGE plpgsql
SET jit = off
SET enable_seqscan = off
AS $$
DECLARE
    found_  messages[];
BEGIN
    WITH pair AS (
        SELECT DISTINCT ON (m.id) m.id, s.wamid
        FROM messages m
        JOIN message_statuses s
          ON s.raw->>'biz_opaque_callback_data' = m.id::text
         AND s.raw ? 'biz_opaque_callback_data'
        WHERE m.wamid LIKE 'pending.%' AND m.failed_at IS NULL
          AND m.status = 'unknown'
          AND NOT EXISTS (SELECT 1 FROM messages x WHERE x.wamid = s.wamid)
        ORDER BY m.id, s.wamid
    ), upd AS (
        UPDATE messages m
        SET wamid = pair.wamid, status = 'accepted', status_at = now(),
            error_title = NULL
        FROM pair
        WHERE m.id = pair.id AND m.status = 'unknown'
        RETURNING m.*
    )
    SELECT coalesce(array_agg(upd::messages), '{}') INTO found_ FROM upd;

    IF cardinality(found_) = 0 THEN
        RETURN;
    END IF;

    PERFORM wa_derive_status('[]', found_);

    SELECT string_agg(wa_send_status_line(m), '' ORDER BY m.id) INTO events
    FROM messages m
    WHERE m.id IN (SELECT x.id FROM unnest(found_) x);

    INSERT INTO update_outbox (events, owner) VALUES (events, p_consumer)
    RETURNING id INTO outbox_id;
END
$$;
