-- 006: two workers apply batches side by side without waiting on each other.
--
-- 005 locked every wamid of a batch, its statuses' included, for the whole
-- transaction.  A message's sent, delivered and read statuses arrive in
-- consecutive batches, so a second worker waited on the first one's locks
-- for most of each batch (pg_stat_activity: Lock/advisory was the most
-- frequent wait) and two workers drained no faster than one.
--
-- Now:
--   * a status of a message already stored takes no lock: its status
--     columns are merged (the higher status, the earliest time of each
--     transition), so two transactions that both change the row agree
--     whatever the order, the later one re-reading the row the earlier
--     one committed;
--   * what can still race is locked: a new message with a status or an
--     edit in another transaction (its own wamid), an edit or revoke with
--     its original (the original's wamid) and a status whose message is
--     not stored yet (that wamid);
--   * the statements that lock rows many batches touch (message status
--     columns, conversations) come last, just before the commit, and the
--     events of new messages are built before them: what another worker
--     may wait for is short.

-- b replaces a: a is unknown, or later than b
CREATE FUNCTION wa_earlier(b timestamptz, a timestamptz)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT b IS NOT NULL AND (a IS NULL OR b < a) $$;


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

    -- realtime events: fields, then messages in Meta's time order (JSON
    -- text built directly: json, not jsonb, nothing to parse again) ...
    SELECT string_agg(line, '' ORDER BY ord, k) INTO events
    FROM (
        SELECT 1 AS ord, t.template_id AS k,
               wa_outbox_line('template.status', to_json(t)::text) AS line
        FROM wa_apply_templates(batch->'fields') t
        UNION ALL
        SELECT 2, p.phone_number_id,
               wa_outbox_line('phone.health', to_json(p)::text)
        FROM wa_apply_phone_health(batch->'fields') p
        UNION ALL
        SELECT 3, to_char(m.ordinality, 'FM0000000000'),
               wa_outbox_line(
                   CASE WHEN m.source = 'echo' THEN 'message.echo'
                        ELSE 'message.new' END,
                   json_build_object('phone_number_id', m.phone_number_id,
                                     'conversation_id', m.conversation_id,
                                     'message', to_json(m))::text)
        FROM unnest(new_msgs) WITH ORDINALITY m
        WHERE m.source <> 'history'
    ) message_events;

    -- ... then the status changes and the conversations they moved: the
    -- rows other batches touch too, locked until the commit that follows
    changed := wa_derive_status(batch->'statuses', new_msgs);
    convs := wa_apply_conversations(new_msgs);

    SELECT string_agg(line, '' ORDER BY ord, k) INTO moved
    FROM (
        SELECT 4 AS ord, c.wamid AS k,
               wa_outbox_line('message.status', json_build_object(
                   'phone_number_id', c.phone_number_id,
                   'conversation_id', c.conversation_id,
                   'message', json_build_object(
                       'wamid', c.wamid, 'direction', c.direction,
                       'status', c.status, 'status_at', c.status_at,
                       'sent_status_at', c.sent_status_at,
                       'delivered_at', c.delivered_at, 'read_at', c.read_at,
                       'played_at', c.played_at, 'failed_at', c.failed_at,
                       'error_code', c.error_code,
                       'error_title', c.error_title))::text) AS line
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


-- A message's status columns from its statuses, for the messages the
-- batch's statuses name and its new outbound messages (a status may have
-- come first), merged into what the row holds: the higher status (failed
-- is terminal), the earliest time of each transition.  A merge, not a
-- replacement: another transaction may have applied statuses this one's
-- snapshot does not show, and the row it committed is what this UPDATE
-- merges into.  Returns the messages changed.
CREATE OR REPLACE FUNCTION wa_derive_status(statuses jsonb,
                                            new_msgs messages[])
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



-- Workers starting together both found today's partition missing and
-- both created it: the second one's CREATE waited for the first one's
-- batch (a partition takes an exclusive lock on webhook_log), and every
-- batch after it waited in line.  The worker calls this instead: one
-- worker at a time, the others find the partitions there and change
-- nothing.
CREATE FUNCTION wa_webhook_log_retain_once(keep interval)
RETURNS void LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(727202);
    PERFORM wa_webhook_log_retain(keep);
END
$$;
