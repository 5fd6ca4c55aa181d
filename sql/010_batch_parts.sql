-- 010: a batch pays only for what it holds.
--
-- Measured with bench/sse-e2e (one webhook per POST, so batches of one or
-- two deliveries) and pg_stat_statements (track = all, track_planning):
-- PostgreSQL spent 4 to 5 ms of CPU per wa_apply_batch whatever the
-- batch held, most of it in work for parts the batch did not have:
--   * the other fields' functions (wa_apply_templates and
--     wa_apply_phone_health are SQL functions, parsed and planned again at
--     every call): 0.9 ms, for a batch with no fields;
--   * wa_derive_status: its UPDATE is planned again at every call (the
--     plan for the array given is always cheaper than the generic one),
--     1 ms, for a batch with no status and no outbound message;
--   * every other statement, on empty input: 0.05 to 0.2 ms each.
-- A batch split by customer sends a share with the webhook log only, or
-- the messages only; one with a single inbound message has no statuses.
-- wa_apply_batch now skips each part whose input is empty, and
-- wa_derive_status returns at once when nothing is touched.  Same
-- arguments, same results, same events.


-- whether a batch's part (a JSON array) has anything in it
CREATE FUNCTION wa_has(part jsonb)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(jsonb_array_length(part), 0) > 0 $$;


-- The raw deliveries, as received: the webhook log.
CREATE FUNCTION wa_log_deliveries(deliveries jsonb, bodies bytea[])
RETURNS void LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO webhook_log (received_at, stream_id, request_id, body, result,
                             error)
    SELECT DISTINCT ON (d.stream_id)
           coalesce(to_timestamp(d.rcvd / 1000.0), now()), d.stream_id, d.rid,
           bodies[d.body], d.result, d.error
    FROM jsonb_to_recordset(deliveries)
         AS d(stream_id text, rcvd bigint, rid text, body integer,
              result text, error text)
    ORDER BY d.stream_id
    ON CONFLICT DO NOTHING;
END
$$;


-- Business phone numbers seen in metadata; those known and unchanged
-- (nearly all) skipped here, as the upsert would lock their rows until
-- commit, and every batch of every worker names the same few numbers
-- (009).
CREATE FUNCTION wa_apply_phones(phones jsonb)
RETURNS void LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO phone_numbers AS p (phone_number_id, waba_id,
                                    display_phone_number)
    SELECT e.pn, e.waba_id, e.display
    FROM (SELECT DISTINCT ON (e.pn) e.pn, e.waba_id, e.display
          FROM jsonb_to_recordset(phones)
               AS e(pn text, waba_id text, display text)
          ORDER BY e.pn, e.display) e
    WHERE NOT EXISTS (
        SELECT 1 FROM phone_numbers k
        WHERE k.phone_number_id = e.pn
          AND (k.waba_id IS NOT NULL OR e.waba_id IS NULL)
          AND k.display_phone_number IS NOT DISTINCT FROM
              coalesce(e.display, k.display_phone_number))
    ORDER BY e.pn
    ON CONFLICT (phone_number_id) DO UPDATE
        SET waba_id = coalesce(p.waba_id, excluded.waba_id),
            display_phone_number = coalesce(excluded.display_phone_number,
                                            p.display_phone_number)
        WHERE (p.waba_id IS NULL AND excluded.waba_id IS NOT NULL)
           OR p.display_phone_number IS DISTINCT FROM
              coalesce(excluded.display_phone_number,
                       p.display_phone_number);
END
$$;


-- The other fields, kept as they came; templates and number health also
-- in their own tables.  Returns their realtime events (JSON text built
-- directly: json, not jsonb, nothing to parse again), or NULL.
CREATE FUNCTION wa_apply_fields(fields jsonb)
RETURNS text LANGUAGE plpgsql
AS $$
DECLARE
    events  text;
BEGIN
    INSERT INTO field_events (waba_id, field, at, value, value_md5)
    SELECT DISTINCT ON (e.waba_id, e.field, md5(e.value::text))
           e.waba_id, e.field, to_timestamp(e.time), e.value,
           md5(e.value::text)
    FROM jsonb_to_recordset(fields)
         AS e(waba_id text, field text, time bigint, value jsonb)
    ORDER BY e.waba_id, e.field, md5(e.value::text)
    ON CONFLICT DO NOTHING;

    SELECT string_agg(line, '' ORDER BY ord, k) INTO events
    FROM (
        SELECT 1 AS ord, t.template_id AS k,
               wa_outbox_line('template.status', to_json(t)::text) AS line
        FROM wa_apply_templates(fields) t
        UNION ALL
        SELECT 2, p.phone_number_id,
               wa_outbox_line('phone.health', to_json(p)::text)
        FROM wa_apply_phone_health(fields) p
    ) field_events;

    RETURN events;
END
$$;


-- A batch's events for the state it moved: its new messages in Meta's
-- time order (with their conversation's assignee, known once the
-- conversations are upserted), then the status changes of messages
-- stored before, then the conversations.
CREATE FUNCTION wa_state_events(msg_events wa_message_event[],
                                changed messages[], new_msgs messages[],
                                convs conversations[])
RETURNS text LANGUAGE plpgsql
AS $$
DECLARE
    moved  text;
BEGIN
    SELECT string_agg(line, '' ORDER BY ord, k) INTO moved
    FROM (
        SELECT 3 AS ord, to_char(e.ordinality, 'FM0000000000') AS k,
               wa_outbox_line(e.event, json_build_object(
                   'phone_number_id', e.phone_number_id,
                   'conversation_id', e.conversation_id,
                   'assignee', v.assignee,
                   'message', e.message)::text) AS line
        FROM unnest(msg_events) WITH ORDINALITY e
        LEFT JOIN unnest(convs) v ON v.id = e.conversation_id
        UNION ALL
        SELECT 4, c.wamid,
               wa_outbox_line('message.status', json_build_object(
                   'phone_number_id', c.phone_number_id,
                   'conversation_id', c.conversation_id,
                   'assignee', (SELECT x.assignee FROM conversations x
                                WHERE x.id = c.conversation_id),
                   'message', json_build_object(
                       'wamid', c.wamid, 'direction', c.direction,
                       'status', c.status, 'status_at', c.status_at,
                       'sent_status_at', c.sent_status_at,
                       'delivered_at', c.delivered_at, 'read_at', c.read_at,
                       'played_at', c.played_at, 'failed_at', c.failed_at,
                       'error_code', c.error_code,
                       'error_title', c.error_title))::text)
        FROM unnest(changed) c
        LEFT JOIN unnest(new_msgs) n ON n.wamid = c.wamid
        WHERE n.wamid IS NULL
        UNION ALL
        SELECT 5, v.id::text,
               wa_outbox_line('conversation.update', json_build_object(
                   'phone_number_id', v.phone_number_id,
                   'conversation', to_json(v))::text)
        FROM unnest(convs) v
    ) state_events;

    RETURN moved;
END
$$;


-- wa_apply_batch as in 009, each part skipped when the batch has none.
CREATE OR REPLACE FUNCTION wa_apply_batch(batch jsonb, bodies bytea[], consumer text,
                               done bigint[], OUT outbox_id bigint,
                               OUT events text, OUT commands text)
LANGUAGE plpgsql
-- its statements handle hundreds of rows: LLVM compilation (jit) costs
-- far more than it saves (bench/README.md)
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    new_msgs   messages[] := '{}';
    msg_events wa_message_event[] := '{}';
    changed    messages[];
    replies    messages[] := '{}';
    announced  messages[];
    convs      conversations[] := '{}';
    moved      text;
    awaited    text[] := '{}';
BEGIN
    IF cardinality(done) > 0 THEN
        DELETE FROM update_outbox o WHERE o.id = ANY (done);
    END IF;

    -- statuses whose message is not stored (yet): an array, not a join,
    -- so the plan is index lookups whatever the statistics said when it
    -- was made
    IF wa_has(batch->'statuses') THEN
        awaited := ARRAY(
            SELECT e->>'wamid' FROM jsonb_array_elements(batch->'statuses') e);
        awaited := ARRAY(
            SELECT unnest(awaited)
            EXCEPT
            SELECT m.wamid FROM messages m WHERE m.wamid = ANY (awaited));
    END IF;

    -- in a fixed order, so that two transactions never wait on each other
    -- both ways
    IF wa_has(batch->'messages') OR cardinality(awaited) > 0 THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(k, 0))
        FROM (SELECT e->>'wamid' AS k
              FROM jsonb_array_elements(batch->'messages') e
              UNION
              SELECT coalesce(e->'msg'->'edit'->>'original_message_id',
                              e->'msg'->'revoke'->>'original_message_id')
              FROM jsonb_array_elements(batch->'messages') e
              UNION
              SELECT unnest(awaited)
              ORDER BY 1) keys
        WHERE k IS NOT NULL;
    END IF;

    IF wa_has(batch->'deliveries') THEN
        PERFORM wa_log_deliveries(batch->'deliveries', bodies);
    END IF;

    IF wa_has(batch->'phones') THEN
        PERFORM wa_apply_phones(batch->'phones');
    END IF;

    IF wa_has(batch->'contacts') THEN
        PERFORM wa_apply_contacts(batch->'contacts');
    END IF;

    -- messages, once each; what was new drives everything after
    IF wa_has(batch->'messages') THEN
        WITH ins AS (
            INSERT INTO messages (wamid, conversation_id, phone_number_id,
                                  customer_id, direction, source, type,
                                  sent_at, body, media_id, media_mime_type,
                                  media_sha256, media_filename, reply_to,
                                  refers_to, content)
            SELECT DISTINCT ON (e.wamid)
                   e.wamid, wa_conversation_id(e.pn, e.customer), e.pn,
                   e.customer, e.dir, e.source, e.msg->>'type',
                   to_timestamp(e.ts), wa_message_body(e.msg), media->>'id',
                   media->>'mime_type', media->>'sha256',
                   media->>'filename', e.msg->'context'->>'id',
                   coalesce(e.msg->'edit'->>'original_message_id',
                            e.msg->'revoke'->>'original_message_id',
                            e.msg->'reaction'->>'message_id'),
                   e.msg
            FROM jsonb_to_recordset(batch->'messages')
                 AS e(wamid text, pn text, customer text, dir text,
                      source text, ts bigint, msg jsonb),
                 LATERAL (SELECT e.msg->(e.msg->>'type') AS media) x
            ORDER BY e.wamid, e.source
            ON CONFLICT (wamid) DO NOTHING
            RETURNING *
        )
        SELECT coalesce(array_agg(ins::messages ORDER BY sent_at, wamid),
                        '{}')
        INTO new_msgs FROM ins;
    END IF;

    IF cardinality(new_msgs) > 0 THEN
        PERFORM wa_apply_edits(new_msgs);
    END IF;

    IF wa_has(batch->'statuses') THEN
        PERFORM wa_apply_statuses(batch->'statuses');
    END IF;

    IF cardinality(new_msgs) > 0 THEN
        replies := wa_auto_replies(new_msgs);
    END IF;

    announced := new_msgs || replies;

    -- the other fields: kept as they came, templates and number health
    -- also in their own tables, their events first
    IF wa_has(batch->'fields') THEN
        events := wa_apply_fields(batch->'fields');
    END IF;

    -- the new messages' events, in Meta's time order, all but their
    -- conversation's assignee: known once the conversations are upserted
    -- (below, locked until commit), where only the lines are put together
    IF cardinality(announced) > 0 THEN
        msg_events := ARRAY(
            SELECT ROW(CASE WHEN m.source = 'echo' THEN 'message.echo'
                            ELSE 'message.new' END,
                       m.phone_number_id, m.conversation_id,
                       wa_message_event_json(
                           announced[m.ordinality::integer]))::wa_message_event
            FROM unnest(announced) WITH ORDINALITY m
            WHERE m.source <> 'history'
            ORDER BY m.ordinality);
    END IF;

    -- then the status changes and the conversations they moved: the
    -- rows other batches touch too, locked until the commit that follows
    -- (returns at once when neither moves a message)
    changed := wa_derive_status(batch->'statuses', new_msgs);

    IF cardinality(announced) > 0 THEN
        convs := wa_apply_conversations(announced);
    END IF;

    IF cardinality(msg_events) > 0 OR cardinality(changed) > 0
       OR cardinality(convs) > 0
    THEN
        moved := wa_state_events(msg_events, changed, new_msgs, convs);
    END IF;

    events := nullif(coalesce(events, '') || coalesce(moved, ''), '');

    IF events IS NOT NULL THEN
        INSERT INTO update_outbox (events, owner) VALUES (events, consumer)
        RETURNING id INTO outbox_id;
    END IF;

    -- the sender's doorbells, rung by the worker once this commits
    IF cardinality(replies) > 0 THEN
        SELECT string_agg(json_build_object(
                              'op', 'send', 'id', r.id,
                              'phone_number_id', r.phone_number_id,
                              'to', coalesce(r.content->>'to',
                                             r.content->>'recipient'),
                              'bulk', false)::text || E'\n', ''
                          ORDER BY r.ordinality)
        INTO commands
        FROM unnest(replies) WITH ORDINALITY r;
    END IF;
END
$$;


-- A message's status columns from its statuses, for the messages the
-- batch's statuses name and its new outbound messages (a status may have
-- come first), merged into what the row holds: the higher status (failed
-- is terminal), the earliest time of each transition.  A merge, not a
-- replacement: another transaction may have applied statuses this one's
-- snapshot does not show, and the row it committed is what this UPDATE
-- merges into.  Returns the messages changed.
-- As in 002, returning at once when nothing is touched.
CREATE OR REPLACE FUNCTION wa_derive_status(statuses jsonb, new_msgs messages[])
RETURNS messages[] LANGUAGE plpgsql
AS $$
DECLARE
    touched  text[];
    changed  messages[];
BEGIN
    -- an array, not a join, so the plan is index lookups whatever the
    -- statistics said when it was made (empty tables: seq scans)
    touched := ARRAY(
        SELECT e->>'wamid' FROM jsonb_array_elements(statuses) e
        UNION
        SELECT n.wamid FROM unnest(new_msgs) n WHERE n.direction = 'out');

    -- nothing to derive (a batch of inbound messages): the UPDATE below
    -- is planned again at every call, for 1 ms
    IF cardinality(touched) = 0 THEN
        RETURN '{}';
    END IF;

    WITH derived AS (
        SELECT s.wamid,
               (array_agg(s.status ORDER BY wa_status_rank(s.status) DESC))[1]
                   AS status,
               (array_agg(s.at ORDER BY wa_status_rank(s.status) DESC))[1]
                   AS status_at,
               min(s.at) FILTER (WHERE s.status = 'sent') AS sent_status_at,
               min(s.at) FILTER (WHERE s.status = 'delivered') AS delivered_at,
               min(s.at) FILTER (WHERE s.status = 'read') AS read_at,
               min(s.at) FILTER (WHERE s.status = 'played') AS played_at,
               min(s.at) FILTER (WHERE s.status = 'failed') AS failed_at,
               (array_agg(s.error_code) FILTER (WHERE s.status = 'failed'))[1]
                   AS error_code,
               (array_agg(s.error_title) FILTER (WHERE s.status = 'failed'))[1]
                   AS error_title
        FROM message_statuses s
        WHERE s.wamid = ANY (touched) AND wa_status_rank(s.status) > 0
        GROUP BY s.wamid
    ), upd AS (
        UPDATE messages m
        SET status = CASE WHEN wa_status_rank(d.status)
                               > wa_status_rank(m.status)
                          THEN d.status ELSE m.status END,
            status_at = CASE WHEN wa_status_rank(d.status)
                                  > wa_status_rank(m.status)
                               OR (d.status = m.status
                                   AND wa_earlier(d.status_at, m.status_at))
                             THEN d.status_at ELSE m.status_at END,
            sent_status_at = least(m.sent_status_at, d.sent_status_at),
            delivered_at = least(m.delivered_at, d.delivered_at),
            read_at = least(m.read_at, d.read_at),
            played_at = least(m.played_at, d.played_at),
            failed_at = least(m.failed_at, d.failed_at),
            error_code = CASE WHEN wa_earlier(d.failed_at, m.failed_at)
                              THEN d.error_code ELSE m.error_code END,
            error_title = CASE WHEN wa_earlier(d.failed_at, m.failed_at)
                               THEN d.error_title ELSE m.error_title END
        FROM derived d
        WHERE m.wamid = d.wamid AND m.wamid = ANY (touched)
          -- something moves: no dead tuple, no event otherwise
          AND (wa_status_rank(d.status) > wa_status_rank(m.status)
               OR (d.status = m.status
                   AND wa_earlier(d.status_at, m.status_at))
               OR wa_earlier(d.sent_status_at, m.sent_status_at)
               OR wa_earlier(d.delivered_at, m.delivered_at)
               OR wa_earlier(d.read_at, m.read_at)
               OR wa_earlier(d.played_at, m.played_at)
               OR wa_earlier(d.failed_at, m.failed_at))
        RETURNING m.*
    )
    SELECT coalesce(array_agg(upd::messages ORDER BY wamid), '{}')
    INTO changed FROM upd;

    RETURN changed;
END
$$;
