-- 012: a batch's webhook log, contacts and realtime lines cost less.
--
-- Found by replaying the calls of a bench/persist drain into a fresh
-- database, one warm session, with auto_explain (bench/README.md,
-- bench/persist, eighth round):
--   * wa_log_deliveries sorted the batch's deliveries by stream id, their
--     bodies with them (DISTINCT ON), and looked each body up by its index
--     in the bytea[] argument.  Elements of an array of variable length are
--     found by walking from the first, so the n lookups cost n * n / 2
--     steps.  The deliveries come in stream order, once each (ON CONFLICT
--     DO NOTHING still skips an entry logged before), and the bodies are
--     now joined by their ordinal: one pass.
--   * wa_apply_contacts looked every contact up first, to skip those the
--     upsert would not change (the upsert locks every row it finds).  A
--     contact that comes with a profile name almost always changes: its
--     name's time moves to the newer message.  So the look-up found
--     nothing to skip, and was planned as a scan of all contacts (a hash
--     anti join).  It now runs only for contacts without a name, the rows
--     that usually change nothing (each message also names its sender).
--   * wa_state_events sorted all of a batch's lines as text (event kind,
--     then a text key: the message's position written as ten digits).
--     Each kind is now put together in its own order: messages by their
--     position, statuses by wamid, conversations by id.  Its message.status
--     lines lacked the message's API id that the sender's lines (011)
--     carry: a status from a webhook now names it too, so a browser gets
--     one shape whichever way the status came.
-- Same arguments and results; the events in the same order.


CREATE OR REPLACE FUNCTION wa_log_deliveries(deliveries jsonb, bodies bytea[])
RETURNS void LANGUAGE plpgsql
AS $$
BEGIN
    -- a body missing from bodies is an error (the column is NOT NULL),
    -- never a delivery left out of the log
    INSERT INTO webhook_log (received_at, stream_id, request_id, body, result,
                             error)
    SELECT coalesce(to_timestamp(d.rcvd / 1000.0), now()), d.stream_id, d.rid,
           b.bytes, d.result, d.error
    FROM jsonb_to_recordset(deliveries)
         AS d(stream_id text, rcvd bigint, rid text, body integer,
              result text, error text)
    LEFT JOIN unnest(bodies) WITH ORDINALITY AS b(bytes, i) ON b.i = d.body
    ON CONFLICT DO NOTHING;
END
$$;


CREATE OR REPLACE FUNCTION wa_apply_contacts(contacts jsonb)
RETURNS void LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO contacts AS c (phone_number_id, customer_id, wa_id, user_id,
                               profile_name, profile_name_at)
    SELECT e.pn, e.customer, e.wa_id, e.user_id, e.name, e.at
    FROM (SELECT DISTINCT ON (e.pn, e.customer)
                 e.pn, e.customer, e.wa_id, e.user_id, e.name,
                 CASE WHEN e.name IS NOT NULL THEN to_timestamp(e.ts) END AS at
          FROM jsonb_to_recordset(contacts)
               AS e(pn text, customer text, wa_id text, user_id text,
                    name text, ts bigint)
          ORDER BY e.pn, e.customer, (e.name IS NOT NULL) DESC, e.ts DESC,
                   e.name DESC) e
    -- a known contact without a name changes nothing but its missing ids:
    -- skipped here, as the upsert would lock (and write WAL for) its row
    WHERE e.name IS NOT NULL
       OR NOT EXISTS (
        SELECT 1 FROM contacts k
        WHERE k.phone_number_id = e.pn AND k.customer_id = e.customer
          AND (k.wa_id IS NOT NULL OR e.wa_id IS NULL)
          AND (k.user_id IS NOT NULL OR e.user_id IS NULL))
    ORDER BY e.pn, e.customer
    ON CONFLICT (phone_number_id, customer_id) DO UPDATE
        SET wa_id = coalesce(c.wa_id, excluded.wa_id),
            user_id = coalesce(c.user_id, excluded.user_id),
            profile_name = CASE
                WHEN wa_name_is_newer(excluded.profile_name,
                                      excluded.profile_name_at,
                                      c.profile_name, c.profile_name_at)
                THEN excluded.profile_name ELSE c.profile_name END,
            profile_name_at = CASE
                WHEN wa_name_is_newer(excluded.profile_name,
                                      excluded.profile_name_at,
                                      c.profile_name, c.profile_name_at)
                THEN excluded.profile_name_at ELSE c.profile_name_at END
        -- no dead tuple when nothing changes (a name not newer)
        WHERE (c.wa_id IS NULL AND excluded.wa_id IS NOT NULL)
           OR (c.user_id IS NULL AND excluded.user_id IS NOT NULL)
           OR wa_name_is_newer(excluded.profile_name,
                               excluded.profile_name_at,
                               c.profile_name, c.profile_name_at);
END
$$;


CREATE OR REPLACE FUNCTION wa_state_events(msg_events wa_message_event[],
                                           changed messages[],
                                           new_msgs messages[],
                                           convs conversations[])
RETURNS text LANGUAGE plpgsql
AS $$
DECLARE
    message_lines  text;
    status_lines   text;
    conv_lines     text;
BEGIN
    SELECT string_agg(wa_outbox_line(e.event, json_build_object(
                          'phone_number_id', e.phone_number_id,
                          'conversation_id', e.conversation_id,
                          'assignee', v.assignee,
                          'message', e.message)::text), ''
                      ORDER BY e.ordinality)
    INTO message_lines
    FROM unnest(msg_events) WITH ORDINALITY e
    LEFT JOIN unnest(convs) v ON v.id = e.conversation_id;

    -- the sender's message.status line (wa_send_status_line, 011) has the
    -- same fields; calling it here measured 3 to 5 % slower per batch
    -- (bench/persist REPLAY), so the object is built in place
    SELECT string_agg(wa_outbox_line('message.status', json_build_object(
                          'phone_number_id', c.phone_number_id,
                          'conversation_id', c.conversation_id,
                          'assignee', (SELECT x.assignee FROM conversations x
                                       WHERE x.id = c.conversation_id),
                          'message', json_build_object(
                              'id', c.id,
                              'wamid', c.wamid, 'direction', c.direction,
                              'status', c.status, 'status_at', c.status_at,
                              'sent_status_at', c.sent_status_at,
                              'delivered_at', c.delivered_at,
                              'read_at', c.read_at,
                              'played_at', c.played_at,
                              'failed_at', c.failed_at,
                              'error_code', c.error_code,
                              'error_title', c.error_title))::text), ''
                      ORDER BY c.wamid)
    INTO status_lines
    FROM unnest(changed) c
    LEFT JOIN unnest(new_msgs) n ON n.wamid = c.wamid
    WHERE n.wamid IS NULL;

    SELECT string_agg(wa_outbox_line('conversation.update', json_build_object(
                          'phone_number_id', v.phone_number_id,
                          'conversation', to_json(v))::text), ''
                      ORDER BY v.id)
    INTO conv_lines
    FROM unnest(convs) v;

    RETURN nullif(coalesce(message_lines, '') || coalesce(status_lines, '')
                  || coalesce(conv_lines, ''), '');
END
$$;
