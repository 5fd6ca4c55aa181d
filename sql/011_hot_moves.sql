-- 011: status moves of a message stay HOT; the sender's outcomes pay only
-- for what they hold.
--
-- Found with bench/send and bench/persist (PG_STATS=1):
--   * messages_unsent (007) named `status` in its predicate.  A column in
--     any index's key or predicate makes every update that changes it
--     write a new entry into every index of the table (no HOT update).  So
--     each claim (queued -> sending) and each status webhook (sent,
--     delivered, read) of an outgoing message wrote five index entries.
--     The index now picks unsent messages by their placeholder wamid
--     ('pending.<id>', replaced when Meta accepts them) and failed_at (set
--     when Meta refuses them), keyed by the time they were queued: columns
--     neither a claim nor a status webhook changes.
--   * wa_send_results ran every statement on empty input, and called
--     wa_send_status_line once per message (an SQL function with a
--     sub-select is never inlined: about 40 us each).  Each part is now
--     skipped when empty, and the lines are one join.
--   * wa_send_results' update of the conversations joined a round's
--     accepted messages to the whole table (a plan for few rows).
--   * wa_message_event_json was IMMUTABLE around to_json (STABLE), so
--     PostgreSQL could not inline it: it ran as a function call per new
--     message (about 15 us each).
-- Same arguments, same results, same events.


DROP INDEX messages_unsent;

-- the sweeps: what waits, or was being sent when a sender died (building
-- it reads messages once; writes to messages wait until it is built)
CREATE INDEX messages_unsent ON messages (sent_at)
    WHERE wamid LIKE 'pending.%' AND failed_at IS NULL;

-- room on each new page for the status moves of its messages, and for
-- the updates of conversations that touch no indexed column (HOT updates
-- need it on the row's own page)
ALTER TABLE messages SET (fillfactor = 90);
ALTER TABLE conversations SET (fillfactor = 80);


CREATE OR REPLACE FUNCTION wa_message_event_json(m messages)
RETURNS json LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN wa_message_pending(m)
                THEN (to_jsonb(m) || '{"wamid": null}')::json
                ELSE to_json(m) END
$$;


-- message.status data, as sql/006_event_scope.sql shapes it, with our id,
-- for a message whose conversation's assignee is known (no sub-select:
-- inlined where it is used)
CREATE FUNCTION wa_send_status_line(m messages, assignee text)
RETURNS text LANGUAGE sql STABLE
AS $$
    SELECT wa_outbox_line('message.status', json_build_object(
        'phone_number_id', m.phone_number_id,
        'conversation_id', m.conversation_id,
        'assignee', assignee,
        'message', json_build_object(
            'id', m.id,
            'wamid', CASE WHEN wa_message_pending(m) THEN NULL
                          ELSE m.wamid END,
            'direction', m.direction,
            'status', m.status, 'status_at', m.status_at,
            'sent_status_at', m.sent_status_at,
            'delivered_at', m.delivered_at, 'read_at', m.read_at,
            'played_at', m.played_at, 'failed_at', m.failed_at,
            'error_code', m.error_code,
            'error_title', m.error_title))::text)
$$;

CREATE OR REPLACE FUNCTION wa_send_status_line(m messages)
RETURNS text LANGUAGE sql STABLE
AS $$
    SELECT wa_send_status_line(m, (SELECT x.assignee FROM conversations x
                                   WHERE x.id = m.conversation_id))
$$;


-- wa_send_sweep as in 007, its unsent messages found by the new index
CREATE OR REPLACE FUNCTION wa_send_sweep(p_consumer text, p_own boolean,
                              p_after interval, p_idle interval,
                              p_limit integer)
RETURNS TABLE (op text, key text, phone_number_id text, recipient text,
               bulk boolean)
LANGUAGE sql STABLE
AS $$
    (SELECT 'unknown', m.id::text, m.phone_number_id, NULL, m.bulk
     FROM messages m
     WHERE m.wamid LIKE 'pending.%' AND m.failed_at IS NULL
       AND m.status = 'sending'
       AND (m.status_at < now() - p_idle
            OR p_own AND m.send_consumer = p_consumer)
     ORDER BY m.status_at
     LIMIT p_limit)
    UNION ALL
    (SELECT 'send', m.id::text, m.phone_number_id, m.content->>'to', m.bulk
     FROM messages m
     WHERE m.wamid LIKE 'pending.%' AND m.failed_at IS NULL
       AND m.status = 'queued' AND m.status_at < now() - p_after
     ORDER BY m.status_at
     LIMIT p_limit)
    UNION ALL
    (SELECT 'read', m.wamid, m.phone_number_id, NULL, NULL
     FROM messages m
     WHERE m.receipt = 'queued'
     LIMIT p_limit)
$$;


-- wa_send_results as in 007, each part skipped when the round has none,
-- the events' lines one join
CREATE OR REPLACE FUNCTION wa_send_results(p_consumer text, p_results jsonb,
                                OUT outbox_id bigint, OUT events text)
LANGUAGE plpgsql
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    accepted  messages[] := '{}';
    failed    messages[] := '{}';
    unknown   messages[] := '{}';
    paused    phone_numbers[] := '{}';
BEGIN
    IF wa_has(p_results->'accepted') THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(a.wamid, 0))
        FROM jsonb_to_recordset(p_results->'accepted')
             AS a(id uuid, wamid text)
        ORDER BY a.wamid;

        WITH upd AS (
            UPDATE messages m
            SET wamid = a.wamid, status = 'accepted', status_at = now()
            FROM jsonb_to_recordset(p_results->'accepted')
                 AS a(id uuid, wamid text)
            WHERE m.id = a.id AND m.status = 'sending'
            RETURNING m.*
        )
        SELECT coalesce(array_agg(upd::messages), '{}') INTO accepted
        FROM upd;

        PERFORM wa_derive_status('[]', accepted);

        -- a conversation whose last message it is names it by its wamid
        -- (found by id, as an array: a join planned for a round's few
        -- rows read the whole table)
        UPDATE conversations c SET last_message_id = a.wamid
        FROM unnest(accepted) a
        WHERE c.id = ANY (ARRAY(SELECT x.conversation_id
                                FROM unnest(accepted) x))
          AND c.id = a.conversation_id
          AND c.last_message_id = 'pending.' || a.id;
    END IF;

    IF wa_has(p_results->'failed') THEN
        WITH upd AS (
            UPDATE messages m
            SET status = 'failed', status_at = now(), failed_at = now(),
                error_code = f.code, error_title = f.title
            FROM jsonb_to_recordset(p_results->'failed')
                 AS f(id uuid, code integer, title text)
            WHERE m.id = f.id AND m.status = 'sending'
            RETURNING m.*
        )
        SELECT coalesce(array_agg(upd::messages), '{}') INTO failed FROM upd;

        -- campaign safety reads a contact's last error
        UPDATE contacts k
        SET last_error_code = f.error_code, last_error_at = f.failed_at
        FROM unnest(failed) f
        WHERE k.phone_number_id = f.phone_number_id
          AND k.customer_id = f.customer_id AND f.error_code IS NOT NULL
          AND (k.last_error_at IS NULL OR k.last_error_at <= f.failed_at);
    END IF;

    IF wa_has(p_results->'unknown') THEN
        WITH upd AS (
            UPDATE messages m
            SET status = 'unknown', status_at = now(), error_title = u.title
            FROM jsonb_to_recordset(p_results->'unknown')
                 AS u(id uuid, title text)
            WHERE m.id = u.id AND m.status = 'sending'
            RETURNING m.*
        )
        SELECT coalesce(array_agg(upd::messages), '{}') INTO unknown
        FROM upd;
    END IF;

    IF wa_has(p_results->'queued') THEN
        UPDATE messages m SET status = 'queued', status_at = now()
        FROM jsonb_to_recordset(p_results->'queued') AS q(id uuid)
        WHERE m.id = q.id AND m.status = 'sending';
    END IF;

    IF wa_has(p_results->'receipts') THEN
        UPDATE messages m SET receipt = r.receipt
        FROM jsonb_to_recordset(p_results->'receipts')
             AS r(wamid text, receipt text)
        WHERE m.wamid = r.wamid AND m.receipt = 'sending';
    END IF;

    IF wa_has(p_results->'paused') THEN
        WITH upd AS (
            UPDATE phone_numbers p
            SET send_paused_at = now(),
                send_paused_reason = '(#' || x.code || ') ' || x.title
            FROM jsonb_to_recordset(p_results->'paused')
                 AS x(phone_number_id text, code integer, title text)
            WHERE p.phone_number_id = x.phone_number_id
              AND p.send_paused_at IS NULL
            RETURNING p.*
        )
        SELECT coalesce(array_agg(upd::phone_numbers), '{}') INTO paused
        FROM upd;
    END IF;

    IF cardinality(accepted) + cardinality(failed) + cardinality(unknown)
       + cardinality(paused) = 0
    THEN
        RETURN;
    END IF;

    -- the rows as they are now: statuses Meta reported first are applied
    SELECT string_agg(line, '' ORDER BY ord, k) INTO events
    FROM (SELECT 1 AS ord, m.id::text AS k,
                 wa_send_status_line(m, c.assignee) AS line
          FROM messages m
          LEFT JOIN conversations c ON c.id = m.conversation_id
          WHERE m.id = ANY (ARRAY(SELECT x.id FROM unnest(accepted) x
                                  UNION ALL SELECT x.id FROM unnest(failed) x
                                  UNION ALL
                                  SELECT x.id FROM unnest(unknown) x))
          UNION ALL
          SELECT 2, p.phone_number_id,
                 wa_outbox_line('phone.health', to_json(p)::text)
          FROM unnest(paused) p) lines;

    IF events IS NOT NULL THEN
        INSERT INTO update_outbox (events, owner)
        VALUES (events, p_consumer)
        RETURNING id INTO outbox_id;
    END IF;
END
$$;
