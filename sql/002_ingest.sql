-- 002: applying a batch of parsed webhook events, in one call.
--
-- The worker parses Meta's payloads (yajl) into rows and calls
-- wa_apply_batch() once per batch, in a transaction of its own.  Every
-- step is an idempotent, order-insensitive merge:
--   * messages are keyed by wamid, inserted once;
--   * statuses are kept per (wamid, status), the earliest report wins, and
--     a message's status columns are derived from them, so a status that
--     came first is applied when its message arrives and status never goes
--     backwards (sent < delivered < read < played; failed is terminal);
--   * a conversation's unread count grows by the inbound messages actually
--     inserted, its last message is the greatest (sent_at, wamid) seen;
--   * names, template and phone-number states keep the newest by Meta's
--     own timestamp.
-- Realtime events go to update_outbox (one row) in the same transaction
-- and are also returned, so the worker publishes them without reading
-- them back; the rows it has published are deleted by its next call
-- (`done`), not by a transaction (and a disk flush) of their own.
--
-- What bench/persist measured shaped it: the batch's arrays are read once
-- each with jsonb_to_recordset and new messages travel between statements
-- as a messages[] array; one upsert brings conversations up to date;
-- statuses are derived only for outbound messages (Meta reports statuses
-- of messages the business sent); event JSON is built as json text.
--
-- Workers apply batches side by side.  A status of a message already
-- stored takes no lock: its status columns are merged into the row (the
-- higher status, the earliest time of each transition), so two
-- transactions that both change the row agree whatever the order, the
-- later one re-reading the row the earlier one committed.  What can still
-- race is locked per wamid until commit: a new message (a status or an
-- edit of it may be in another transaction), an edit's or revoke's
-- original, a status whose message is not stored yet.  The statements
-- that lock rows many batches touch (message status columns,
-- conversations) come last, just before the commit.

CREATE FUNCTION wa_conversation_id(phone_number_id text, customer_id text)
RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT md5(phone_number_id || ':' || customer_id)::uuid $$;


CREATE FUNCTION wa_status_rank(status text)
RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE status
        WHEN 'accepted' THEN 1 WHEN 'sent' THEN 2 WHEN 'delivered' THEN 3
        WHEN 'read' THEN 4 WHEN 'played' THEN 5 WHEN 'failed' THEN 9
        ELSE 0 END
$$;


-- What a person would read of a message: its text, caption or a summary.
CREATE FUNCTION wa_message_body(m jsonb)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE m->>'type'
        WHEN 'text' THEN m->'text'->>'body'
        WHEN 'image' THEN m->'image'->>'caption'
        WHEN 'video' THEN m->'video'->>'caption'
        WHEN 'document' THEN coalesce(m->'document'->>'caption',
                                      m->'document'->>'filename')
        WHEN 'reaction' THEN m->'reaction'->>'emoji'
        WHEN 'button' THEN m->'button'->>'text'
        WHEN 'interactive' THEN coalesce(
            m->'interactive'->'button_reply'->>'title',
            m->'interactive'->'list_reply'->>'title',
            m->'interactive'->'nfm_reply'->>'body',
            m->'interactive'->'call_permission_reply'->>'response')
        WHEN 'location' THEN coalesce(m->'location'->>'name',
                                      m->'location'->>'address',
                                      (m->'location'->>'latitude') || ','
                                      || (m->'location'->>'longitude'))
        WHEN 'contacts' THEN m->'contacts'->0->'name'->>'formatted_name'
        WHEN 'order' THEN m->'order'->>'text'
        WHEN 'system' THEN m->'system'->>'body'
        WHEN 'template' THEN m->'template'->>'name'
        ELSE NULL END
$$;


-- One event as an outbox line.
CREATE FUNCTION wa_outbox_line(event text, data text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT event || E'\t' || data || E'\n' $$;


CREATE FUNCTION wa_apply_batch(batch jsonb, bodies bytea[], consumer text,
                               done bigint[],
                               OUT outbox_id bigint, OUT events text)
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


-- Whether a profile name seen at new_at replaces the one kept: newest by
-- Meta's time, equal times the greater name, so any order agrees.
CREATE FUNCTION wa_name_is_newer(new_name text, new_at timestamptz,
                                 old_name text, old_at timestamptz)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT new_name IS NOT NULL
           AND (old_at IS NULL OR (new_at, new_name) > (old_at, old_name))
$$;


-- Customers of the batch's messages, with their names.
CREATE FUNCTION wa_apply_contacts(contacts jsonb)
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
    -- most are known and unchanged: skip them here, as the upsert would
    -- lock (and write WAL for) every row it finds, changed or not
    WHERE NOT EXISTS (
        SELECT 1 FROM contacts k
        WHERE k.phone_number_id = e.pn AND k.customer_id = e.customer
          AND (k.wa_id IS NOT NULL OR e.wa_id IS NULL)
          AND (k.user_id IS NOT NULL OR e.user_id IS NULL)
          AND NOT wa_name_is_newer(e.name, e.at, k.profile_name,
                                   k.profile_name_at))
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
        -- no dead tuple when nothing changes
        WHERE (c.wa_id IS NULL AND excluded.wa_id IS NOT NULL)
           OR (c.user_id IS NULL AND excluded.user_id IS NOT NULL)
           OR wa_name_is_newer(excluded.profile_name,
                               excluded.profile_name_at,
                               c.profile_name, c.profile_name_at);
END
$$;


-- Edits and revokes, whichever arrives first, the original or them: an
-- original shows its latest edit's text and the first revoke.
CREATE FUNCTION wa_apply_edits(new_msgs messages[])
RETURNS void LANGUAGE plpgsql
AS $$
DECLARE
    touched  text[];
BEGIN
    -- the originals the new edits and revokes name, and the new messages
    -- an edit or revoke reached first (= ANY: index lookups)
    touched := ARRAY(
        SELECT n.refers_to FROM unnest(new_msgs) n
        WHERE n.type IN ('edit', 'revoke')
        UNION
        SELECT x.refers_to FROM messages x
        WHERE x.refers_to = ANY (ARRAY(SELECT n.wamid FROM unnest(new_msgs) n))
          AND x.type IN ('edit', 'revoke'));

    IF cardinality(touched) = 0 THEN
        RETURN;
    END IF;

    WITH derived AS (
        SELECT t.wamid,
               (SELECT wa_message_body(x.content->'edit'->'message')
                FROM messages x
                WHERE x.refers_to = t.wamid AND x.type = 'edit'
                ORDER BY x.sent_at DESC, x.wamid DESC LIMIT 1) AS body,
               (SELECT max(x.sent_at) FROM messages x
                WHERE x.refers_to = t.wamid AND x.type = 'edit') AS edited_at,
               (SELECT min(x.sent_at) FROM messages x
                WHERE x.refers_to = t.wamid AND x.type = 'revoke')
                   AS revoked_at
        FROM unnest(touched) t(wamid)
    )
    UPDATE messages m
    SET body = coalesce(d.body, m.body), edited_at = d.edited_at,
        revoked_at = d.revoked_at
    FROM derived d
    WHERE m.wamid = d.wamid
      AND (d.edited_at IS NOT NULL OR d.revoked_at IS NOT NULL)
      AND (m.edited_at, m.revoked_at) IS DISTINCT FROM
          (d.edited_at, d.revoked_at);
END
$$;


-- Statuses: the earliest report of each (wamid, status) is kept; a
-- failure is remembered on the contact it was sent to (campaign safety
-- reads it), newest by Meta's time.
CREATE FUNCTION wa_apply_statuses(statuses jsonb)
RETURNS void LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO message_statuses AS s (wamid, status, at, phone_number_id,
                                       recipient_id, meta_conversation_id,
                                       pricing_category, error_code,
                                       error_title, raw)
    SELECT DISTINCT ON (e.wamid, e.status)
           e.wamid, e.status, to_timestamp(e.ts), e.pn,
           e.raw->>'recipient_id', e.raw->'conversation'->>'id',
           e.raw->'pricing'->>'category',
           (e.raw->'errors'->0->>'code')::integer,
           e.raw->'errors'->0->>'title', e.raw
    FROM jsonb_to_recordset(statuses)
         AS e(wamid text, status text, ts bigint, pn text, raw jsonb)
    ORDER BY e.wamid, e.status, e.ts, e.raw::text
    ON CONFLICT (wamid, status) DO UPDATE
        SET at = excluded.at, recipient_id = excluded.recipient_id,
            meta_conversation_id = excluded.meta_conversation_id,
            pricing_category = excluded.pricing_category,
            error_code = excluded.error_code,
            error_title = excluded.error_title, raw = excluded.raw
        WHERE (excluded.at, excluded.raw::text) < (s.at, s.raw::text);

    INSERT INTO contacts AS c (phone_number_id, customer_id, wa_id, user_id,
                               last_error_code, last_error_at)
    SELECT DISTINCT ON (e.pn, customer)
           e.pn, customer, e.raw->>'recipient_id',
           e.raw->>'recipient_user_id',
           (e.raw->'errors'->0->>'code')::integer, to_timestamp(e.ts)
    FROM jsonb_to_recordset(statuses)
         AS e(status text, ts bigint, pn text, raw jsonb),
         coalesce(e.raw->>'recipient_id', e.raw->>'recipient_user_id')
             AS customer
    WHERE e.status = 'failed' AND customer IS NOT NULL
      AND e.raw->'errors'->0->>'code' IS NOT NULL
    ORDER BY e.pn, customer, e.ts DESC,
             (e.raw->'errors'->0->>'code')::integer DESC
    ON CONFLICT (phone_number_id, customer_id) DO UPDATE
        SET wa_id = coalesce(c.wa_id, excluded.wa_id),
            user_id = coalesce(c.user_id, excluded.user_id),
            last_error_code = excluded.last_error_code,
            last_error_at = excluded.last_error_at
        WHERE c.last_error_at IS NULL
           OR (excluded.last_error_at, excluded.last_error_code)
              > (c.last_error_at, c.last_error_code);
END
$$;


-- b replaces a: a is unknown, or later than b
CREATE FUNCTION wa_earlier(b timestamptz, a timestamptz)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT b IS NOT NULL AND (a IS NULL OR b < a) $$;


-- A message's status columns from its statuses, for the messages the
-- batch's statuses name and its new outbound messages (a status may have
-- come first), merged into what the row holds: the higher status (failed
-- is terminal), the earliest time of each transition.  A merge, not a
-- replacement: another transaction may have applied statuses this one's
-- snapshot does not show, and the row it committed is what this UPDATE
-- merges into.  Returns the messages changed.
CREATE FUNCTION wa_derive_status(statuses jsonb, new_msgs messages[])
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


-- Conversations of the new messages, in one upsert: created when first
-- seen; unread grows once per new inbound message; the 24-hour window
-- follows the newest inbound message; the last message is the greatest
-- (sent_at, wamid), whatever the order seen.  Returns the conversations
-- to announce (those with live messages, not only history).
CREATE FUNCTION wa_apply_conversations(new_msgs messages[])
RETURNS conversations[] LANGUAGE plpgsql
AS $$
DECLARE
    convs  conversations[];
BEGIN
    WITH n AS (
        SELECT m.conversation_id AS id,
               count(*) FILTER (WHERE m.direction = 'in'
                                AND m.source = 'webhook') AS unread,
               max(m.sent_at) FILTER (WHERE m.direction = 'in') AS last_in,
               bool_or(m.source <> 'history') AS live
        FROM unnest(new_msgs) m
        GROUP BY 1
    ), last AS (
        SELECT DISTINCT ON (m.conversation_id) m.*
        FROM unnest(new_msgs) m
        ORDER BY m.conversation_id, m.sent_at DESC, m.wamid DESC
    ), up AS (
        INSERT INTO conversations AS c (id, phone_number_id, customer_id,
                                        unread_count,
                                        last_customer_message_at,
                                        last_message_at, last_message_id,
                                        last_message_preview,
                                        last_message_direction)
        SELECT n.id, l.phone_number_id, l.customer_id, n.unread, n.last_in,
               l.sent_at, l.wamid,
               left(coalesce(l.body, '[' || l.type || ']'), 100), l.direction
        FROM n JOIN last l ON l.conversation_id = n.id
        ORDER BY n.id
        ON CONFLICT (id) DO UPDATE
            SET unread_count = c.unread_count + excluded.unread_count,
                last_customer_message_at =
                    greatest(c.last_customer_message_at,
                             excluded.last_customer_message_at),
                (last_message_at, last_message_id, last_message_preview,
                 last_message_direction) =
                    (SELECT CASE WHEN newer THEN excluded.last_message_at
                                 ELSE c.last_message_at END,
                            CASE WHEN newer THEN excluded.last_message_id
                                 ELSE c.last_message_id END,
                            CASE WHEN newer THEN excluded.last_message_preview
                                 ELSE c.last_message_preview END,
                            CASE WHEN newer THEN excluded.last_message_direction
                                 ELSE c.last_message_direction END
                     FROM (SELECT c.last_message_at IS NULL
                                  OR (excluded.last_message_at,
                                      excluded.last_message_id)
                                     > (c.last_message_at, c.last_message_id)
                                  AS newer) w)
        RETURNING c.*
    )
    SELECT coalesce(array_agg(up::conversations ORDER BY up.id), '{}')
    INTO convs
    FROM up JOIN n ON n.id = up.id
    WHERE n.live;

    RETURN convs;
END
$$;


-- message_template_status_update / _quality_update: newest by entry time;
-- returns the templates changed
CREATE FUNCTION wa_apply_templates(fields jsonb)
RETURNS SETOF templates LANGUAGE sql
AS $$
    INSERT INTO templates AS t (waba_id, template_id, name, language, category,
                                status, quality_score, reason, updated_at)
    SELECT DISTINCT ON (e->>'waba_id', e->'value'->>'message_template_id')
           e->>'waba_id', e->'value'->>'message_template_id',
           e->'value'->>'message_template_name',
           e->'value'->>'message_template_language',
           e->'value'->>'message_template_category',
           CASE WHEN e->>'field' = 'message_template_status_update'
                THEN e->'value'->>'event' END,
           e->'value'->>'new_quality_score',
           e->'value'->>'reason',
           to_timestamp((e->>'time')::bigint)
    FROM jsonb_array_elements(fields) e
    WHERE e->>'field' IN ('message_template_status_update',
                          'message_template_quality_update')
      AND e->'value'->>'message_template_id' IS NOT NULL
    ORDER BY e->>'waba_id', e->'value'->>'message_template_id',
             (e->>'time')::bigint DESC, e->>'field', (e->'value')::text
    ON CONFLICT (waba_id, template_id) DO UPDATE
        SET name = coalesce(excluded.name, t.name),
            language = coalesce(excluded.language, t.language),
            category = coalesce(excluded.category, t.category),
            status = coalesce(excluded.status, t.status),
            quality_score = coalesce(excluded.quality_score, t.quality_score),
            reason = coalesce(excluded.reason, t.reason),
            updated_at = excluded.updated_at
        WHERE t.updated_at IS NULL OR excluded.updated_at >= t.updated_at
    RETURNING *;
$$;


-- phone_number_quality_update: newest by entry time; returns the numbers
-- changed
CREATE FUNCTION wa_apply_phone_health(fields jsonb)
RETURNS SETOF phone_numbers LANGUAGE sql
AS $$
    UPDATE phone_numbers p
    SET quality_rating = coalesce(q.value->>'current_limit', p.quality_rating),
        messaging_limit_tier = coalesce(q.value->>'current_limit',
                                        p.messaging_limit_tier),
        status = coalesce(q.value->>'event', p.status),
        health_updated_at = q.at
    FROM (SELECT DISTINCT ON (e->'value'->>'display_phone_number')
                 e->'value' AS value, to_timestamp((e->>'time')::bigint) AS at
          FROM jsonb_array_elements(fields) e
          WHERE e->>'field' = 'phone_number_quality_update'
          ORDER BY e->'value'->>'display_phone_number',
                   (e->>'time')::bigint DESC, (e->'value')::text) q
    WHERE p.display_phone_number = q.value->>'display_phone_number'
      AND (p.health_updated_at IS NULL OR q.at >= p.health_updated_at)
    RETURNING p.*;
$$;


-- Drop webhook log partitions older than the retention; create today's
-- and tomorrow's.  Called by every worker at start and once an hour; one
-- at a time (workers starting together both found today's partition
-- missing, and the second CREATE queued an exclusive lock on webhook_log
-- behind the first one's batch, with every later batch queued behind it).
CREATE FUNCTION wa_webhook_log_retain(keep interval)
RETURNS void LANGUAGE plpgsql
AS $$
DECLARE
    day   date;
    part  record;
BEGIN
    PERFORM pg_advisory_xact_lock(727202);

    FOR day IN SELECT d::date FROM generate_series(current_date,
                                                   current_date + 1,
                                                   interval '1 day') d
    LOOP
        IF to_regclass('webhook_log_' || to_char(day, 'YYYYMMDD')) IS NULL
           AND NOT EXISTS (SELECT 1 FROM webhook_log_default
                           WHERE received_at >= day
                             AND received_at < day + 1)
        THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF webhook_log '
                           'FOR VALUES FROM (%L) TO (%L)',
                           'webhook_log_' || to_char(day, 'YYYYMMDD'),
                           day, day + 1);
        END IF;
    END LOOP;

    FOR part IN SELECT c.relname FROM pg_inherits i
                JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'webhook_log'::regclass
                  AND c.relname ~ '^webhook_log_\d{8}$'
                  AND to_date(substr(c.relname, 13), 'YYYYMMDD')
                      < current_date - keep
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
    END LOOP;
END
$$;
