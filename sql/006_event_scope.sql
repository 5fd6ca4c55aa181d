-- 006: message events carry their conversation's assignee.
--
-- The SSE relay in NGINX sends an agent who sees only the conversations
-- assigned to them (assigned_only) the events of those conversations, and
-- decides from the event alone, without asking PostgreSQL.
-- conversation.update already carries the whole conversation, assignee
-- included; message.new, message.echo and message.status now also carry
-- "assignee" (the conversation's, or null) at the top level of their
-- data, right after conversation_id.  Nothing else changes: the same
-- events, with the same data otherwise, in the same order.
--
-- Where the assignee comes from:
--   * message.new, message.echo: the conversations wa_apply_conversations
--     returned (every announced message's conversation is among them),
--     that is the row as this transaction holds it locked until commit:
--     an assignment by the API either committed before the upsert, which
--     then sees it, or waits for this commit, and its own
--     conversation.update follows these events.  Only the lines are
--     put together after that upsert; the messages' JSON (to_json of
--     whole rows, most of an event's cost) is still built before it, as
--     in 002 (wa_message_event carries it across), so that the rows other
--     batches wait for are not held much longer: for a batch of 375 new
--     messages, about 3 ms longer than with 002, against 7 with the whole
--     build after the upsert, and about 0.6 ms more work in all;
--   * message.status: a status may move a message of a conversation the
--     batch has no new message in, so one primary-key lookup per event
--     (a subquery: index lookups whatever the statistics say when the
--     plan is made).  Read, not locked: an assignment committed between
--     that read and this commit is announced by its own
--     conversation.update.


-- A message event but for its conversation's assignee: built before the
-- conversation rows are locked, completed after.
CREATE TYPE wa_message_event AS (
    event            text,        -- message.new or message.echo
    phone_number_id  text,
    conversation_id  uuid,
    message          json         -- the whole row, as 002 announced it
);


-- As in 002, but for the assignee in the message events.
CREATE OR REPLACE FUNCTION wa_apply_batch(batch jsonb, bodies bytea[],
                                          consumer text, done bigint[],
                                          OUT outbox_id bigint,
                                          OUT events text)
LANGUAGE plpgsql
-- its statements handle hundreds of rows: LLVM compilation (jit) costs
-- far more than it saves (bench/README.md)
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    new_msgs   messages[];
    msg_events wa_message_event[];
    changed    messages[];
    convs      conversations[];
    moved      text;
BEGIN
    DELETE FROM update_outbox o WHERE o.id = ANY (done);

    -- in a fixed order, so that two transactions never wait on each other
    -- both ways
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 0))
    FROM (SELECT e->>'wamid' AS k
          FROM jsonb_array_elements(batch->'messages') e
          UNION
          SELECT coalesce(e->'msg'->'edit'->>'original_message_id',
                          e->'msg'->'revoke'->>'original_message_id')
          FROM jsonb_array_elements(batch->'messages') e
          UNION
          SELECT s.wamid
          FROM (SELECT DISTINCT e->>'wamid' AS wamid
                FROM jsonb_array_elements(batch->'statuses') e) s
          WHERE NOT EXISTS (SELECT 1 FROM messages m
                            WHERE m.wamid = s.wamid)
          ORDER BY 1) keys
    WHERE k IS NOT NULL;

    -- the raw deliveries, as received
    INSERT INTO webhook_log (received_at, stream_id, request_id, body, result,
                             error)
    SELECT DISTINCT ON (d.stream_id)
           coalesce(to_timestamp(d.rcvd / 1000.0), now()), d.stream_id, d.rid,
           bodies[d.body], d.result, d.error
    FROM jsonb_to_recordset(batch->'deliveries')
         AS d(stream_id text, rcvd bigint, rid text, body integer,
              result text, error text)
    ORDER BY d.stream_id
    ON CONFLICT DO NOTHING;

    -- business phone numbers seen in metadata
    INSERT INTO phone_numbers AS p (phone_number_id, waba_id,
                                    display_phone_number)
    SELECT DISTINCT ON (e.pn) e.pn, e.waba_id, e.display
    FROM jsonb_to_recordset(batch->'phones')
         AS e(pn text, waba_id text, display text)
    ORDER BY e.pn, e.display
    ON CONFLICT (phone_number_id) DO UPDATE
        SET waba_id = coalesce(p.waba_id, excluded.waba_id),
            display_phone_number = coalesce(excluded.display_phone_number,
                                            p.display_phone_number)
        WHERE (p.waba_id IS NULL AND excluded.waba_id IS NOT NULL)
           OR p.display_phone_number IS DISTINCT FROM
              coalesce(excluded.display_phone_number,
                       p.display_phone_number);

    PERFORM wa_apply_contacts(batch->'contacts');

    -- messages, once each; what was new drives everything after
    WITH ins AS (
        INSERT INTO messages (wamid, conversation_id, phone_number_id,
                              customer_id, direction, source, type, sent_at,
                              body, media_id, media_mime_type, media_sha256,
                              media_filename, reply_to, refers_to, content)
        SELECT DISTINCT ON (e.wamid)
               e.wamid, wa_conversation_id(e.pn, e.customer), e.pn,
               e.customer, e.dir, e.source, e.msg->>'type', to_timestamp(e.ts),
               wa_message_body(e.msg), media->>'id', media->>'mime_type',
               media->>'sha256', media->>'filename', e.msg->'context'->>'id',
               coalesce(e.msg->'edit'->>'original_message_id',
                        e.msg->'revoke'->>'original_message_id',
                        e.msg->'reaction'->>'message_id'),
               e.msg
        FROM jsonb_to_recordset(batch->'messages')
             AS e(wamid text, pn text, customer text, dir text, source text,
                  ts bigint, msg jsonb),
             LATERAL (SELECT e.msg->(e.msg->>'type') AS media) x
        ORDER BY e.wamid, e.source
        ON CONFLICT (wamid) DO NOTHING
        RETURNING *
    )
    SELECT coalesce(array_agg(ins::messages ORDER BY sent_at, wamid), '{}')
    INTO new_msgs FROM ins;

    PERFORM wa_apply_edits(new_msgs);
    PERFORM wa_apply_statuses(batch->'statuses');

    -- the other fields: kept as they came, templates and number health
    -- also in their own tables
    INSERT INTO field_events (waba_id, field, at, value, value_md5)
    SELECT DISTINCT ON (e.waba_id, e.field, md5(e.value::text))
           e.waba_id, e.field, to_timestamp(e.time), e.value,
           md5(e.value::text)
    FROM jsonb_to_recordset(batch->'fields')
         AS e(waba_id text, field text, time bigint, value jsonb)
    ORDER BY e.waba_id, e.field, md5(e.value::text)
    ON CONFLICT DO NOTHING;

    -- realtime events: fields first (JSON text built directly: json, not
    -- jsonb, nothing to parse again) ...
    SELECT string_agg(line, '' ORDER BY ord, k) INTO events
    FROM (
        SELECT 1 AS ord, t.template_id AS k,
               wa_outbox_line('template.status', to_json(t)::text) AS line
        FROM wa_apply_templates(batch->'fields') t
        UNION ALL
        SELECT 2, p.phone_number_id,
               wa_outbox_line('phone.health', to_json(p)::text)
        FROM wa_apply_phone_health(batch->'fields') p
    ) field_events;

    -- ... and the new messages' events, in Meta's time order, all but
    -- their conversation's assignee: known once the conversations are
    -- upserted (below, locked until commit), where only the lines are
    -- put together
    msg_events := ARRAY(
        SELECT ROW(CASE WHEN m.source = 'echo' THEN 'message.echo'
                        ELSE 'message.new' END,
                   m.phone_number_id, m.conversation_id,
                   to_json(m))::wa_message_event
        FROM unnest(new_msgs) WITH ORDINALITY m
        WHERE m.source <> 'history'
        ORDER BY m.ordinality);

    -- then the status changes and the conversations they moved: the
    -- rows other batches touch too, locked until the commit that follows
    changed := wa_derive_status(batch->'statuses', new_msgs);
    convs := wa_apply_conversations(new_msgs);

    -- messages in Meta's time order, then statuses, then conversations
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

    events := nullif(coalesce(events, '') || coalesce(moved, ''), '');

    IF events IS NOT NULL THEN
        INSERT INTO update_outbox (events, owner) VALUES (events, consumer)
        RETURNING id INTO outbox_id;
    END IF;
END
$$;
