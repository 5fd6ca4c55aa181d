-- 009: ingest without waits nobody needs.
--
-- wa_apply_batch as in 008, with two changes found with bench/persist
-- (bench/README.md, fifth round):
--   * the business phone numbers of a batch's metadata: the upsert locked
--     their rows (ON CONFLICT DO UPDATE locks the row it finds even when
--     its WHERE then changes nothing) until commit.  Every batch names the
--     same few numbers, so two workers' batches waited on each other at
--     this statement, for most of the first one's transaction.  Known and
--     unchanged numbers are now skipped before the upsert, as contacts
--     are;
--   * the advisory locks of statuses whose message is not stored: the
--     statuses were joined to messages with NOT EXISTS, and a plan made
--     while messages was small (a worker's first batches) kept hashing the
--     whole table for every batch after.  An array lookup now, as in
--     wa_derive_status.
-- Same arguments, same results, same events.


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
    new_msgs   messages[];
    msg_events wa_message_event[];
    changed    messages[];
    replies    messages[];
    announced  messages[];
    convs      conversations[];
    moved      text;
    awaited    text[];
BEGIN
    DELETE FROM update_outbox o WHERE o.id = ANY (done);

    -- statuses whose message is not stored (yet): an array, not a join,
    -- so the plan is index lookups whatever the statistics said when it
    -- was made
    awaited := ARRAY(
        SELECT e->>'wamid' FROM jsonb_array_elements(batch->'statuses') e);
    awaited := ARRAY(
        SELECT unnest(awaited)
        EXCEPT
        SELECT m.wamid FROM messages m WHERE m.wamid = ANY (awaited));

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
          SELECT unnest(awaited)
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

    -- business phone numbers seen in metadata; those known and unchanged
    -- (nearly all) skipped here, as the upsert would lock their rows until
    -- commit, and every batch of every worker names the same few numbers
    INSERT INTO phone_numbers AS p (phone_number_id, waba_id,
                                    display_phone_number)
    SELECT e.pn, e.waba_id, e.display
    FROM (SELECT DISTINCT ON (e.pn) e.pn, e.waba_id, e.display
          FROM jsonb_to_recordset(batch->'phones')
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
    replies := wa_auto_replies(new_msgs);
    announced := new_msgs || replies;

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
                   wa_message_event_json(
                       announced[m.ordinality::integer]))::wa_message_event
        FROM unnest(announced) WITH ORDINALITY m
        WHERE m.source <> 'history'
        ORDER BY m.ordinality);

    -- then the status changes and the conversations they moved: the
    -- rows other batches touch too, locked until the commit that follows
    changed := wa_derive_status(batch->'statuses', new_msgs);
    convs := wa_apply_conversations(announced);

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

    -- the sender's doorbells, rung by the worker once this commits
    SELECT string_agg(json_build_object('op', 'send', 'id', r.id,
                                        'phone_number_id', r.phone_number_id,
                                        'to', coalesce(r.content->>'to',
                                                       r.content->>'recipient'),
                                        'bulk', false)::text || E'\n', ''
                      ORDER BY r.ordinality)
    INTO commands
    FROM unnest(replies) WITH ORDINALITY r;
END
$$;
