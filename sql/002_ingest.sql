-- 002: applying a batch of parsed webhook events, in one call.
--
-- The worker parses Meta's payloads (yajl) into rows and calls
-- wa_apply_batch() once per batch, inside its transaction.  Every step is
-- an idempotent, order-insensitive merge:
--   * messages are keyed by wamid, inserted once;
--   * statuses are kept per (wamid, status), the earliest report wins, and
--     a message's status columns are derived from them, so a status that
--     came first is applied when its message arrives and status never goes
--     backwards (sent < delivered < read < played; failed is terminal);
--   * a conversation's unread count grows by the inbound messages actually
--     inserted, its last message is the greatest (sent_at, wamid) seen;
--   * names, template and phone-number states keep the newest by Meta's
--     own timestamp.
-- Realtime events go to update_outbox in the same transaction.

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


CREATE FUNCTION wa_apply_batch(batch jsonb, bodies bytea[])
RETURNS integer LANGUAGE plpgsql
AS $$
DECLARE
    new_messages  jsonb;
    changed       jsonb;
    touched_ids   text[];
    events        integer := 0;
    n             integer;
BEGIN
    -- Two workers may hold a message and its status in two batches: the
    -- per-wamid lock, taken in a fixed order, makes the later transaction
    -- see the earlier one's rows when it derives the status.
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 0))
    FROM (SELECT DISTINCT k FROM (
              SELECT e->>'wamid' AS k
              FROM jsonb_array_elements(batch->'messages') e
              UNION
              SELECT e->>'wamid' FROM jsonb_array_elements(batch->'statuses') e
          ) keys ORDER BY k) ordered;

    -- the raw deliveries, as received
    INSERT INTO webhook_log (received_at, stream_id, request_id, body, result,
                             error)
    SELECT DISTINCT ON (e->>'stream_id')
           coalesce(to_timestamp((e->>'rcvd')::bigint / 1000.0), now()),
           e->>'stream_id',
           e->>'rid', bodies[(e->>'body')::integer], e->>'result', e->>'error'
    FROM jsonb_array_elements(batch->'deliveries') e
    ORDER BY e->>'stream_id'
    ON CONFLICT DO NOTHING;

    -- business phone numbers seen in metadata
    INSERT INTO phone_numbers AS p (phone_number_id, waba_id,
                                    display_phone_number)
    SELECT DISTINCT ON (e->>'pn') e->>'pn', e->>'waba_id', e->>'display'
    FROM jsonb_array_elements(batch->'phones') e
    ORDER BY e->>'pn', e->>'display'
    ON CONFLICT (phone_number_id) DO UPDATE
        SET waba_id = coalesce(p.waba_id, excluded.waba_id),
            display_phone_number = coalesce(excluded.display_phone_number,
                                            p.display_phone_number);

    -- customers: from messages, then names (newest by Meta's timestamp;
    -- equal timestamps: the greater name, so any order gives one answer)
    INSERT INTO contacts AS c (phone_number_id, customer_id, wa_id, user_id,
                               profile_name, profile_name_at)
    SELECT DISTINCT ON (e->>'pn', e->>'customer')
           e->>'pn', e->>'customer', e->>'wa_id', e->>'user_id', e->>'name',
           CASE WHEN e->>'name' IS NOT NULL
                THEN to_timestamp((e->>'ts')::bigint) END
    FROM jsonb_array_elements(batch->'contacts') e
    ORDER BY e->>'pn', e->>'customer', (e->>'name' IS NOT NULL) DESC,
             (e->>'ts')::bigint DESC, e->>'name' DESC
    ON CONFLICT (phone_number_id, customer_id) DO UPDATE
        SET wa_id = coalesce(c.wa_id, excluded.wa_id),
            user_id = coalesce(c.user_id, excluded.user_id),
            profile_name = CASE
                WHEN excluded.profile_name IS NOT NULL
                     AND (c.profile_name_at IS NULL
                          OR (excluded.profile_name_at, excluded.profile_name)
                             > (c.profile_name_at, c.profile_name))
                THEN excluded.profile_name ELSE c.profile_name END,
            profile_name_at = CASE
                WHEN excluded.profile_name IS NOT NULL
                     AND (c.profile_name_at IS NULL
                          OR (excluded.profile_name_at, excluded.profile_name)
                             > (c.profile_name_at, c.profile_name))
                THEN excluded.profile_name_at ELSE c.profile_name_at END
        -- no dead tuple when nothing changes
        WHERE (c.wa_id IS NULL AND excluded.wa_id IS NOT NULL)
           OR (c.user_id IS NULL AND excluded.user_id IS NOT NULL)
           OR (excluded.profile_name IS NOT NULL
               AND (c.profile_name_at IS NULL
                    OR (excluded.profile_name_at, excluded.profile_name)
                       > (c.profile_name_at, c.profile_name)));

    INSERT INTO conversations (id, phone_number_id, customer_id)
    SELECT DISTINCT wa_conversation_id(e->>'pn', e->>'customer'),
           e->>'pn', e->>'customer'
    FROM jsonb_array_elements(batch->'messages') e
    ON CONFLICT DO NOTHING;

    -- messages, once each; what was new drives everything after
    WITH ins AS (
        INSERT INTO messages (wamid, conversation_id, phone_number_id,
                              customer_id, direction, source, type, sent_at,
                              body, media_id, media_mime_type, media_sha256,
                              media_filename, reply_to, refers_to, content)
        SELECT DISTINCT ON (e->>'wamid')
               e->>'wamid', wa_conversation_id(e->>'pn', e->>'customer'),
               e->>'pn', e->>'customer', e->>'dir', e->>'source',
               e->'msg'->>'type', to_timestamp((e->>'ts')::bigint),
               wa_message_body(e->'msg'),
               e->'msg'->(e->'msg'->>'type')->>'id',
               e->'msg'->(e->'msg'->>'type')->>'mime_type',
               e->'msg'->(e->'msg'->>'type')->>'sha256',
               e->'msg'->(e->'msg'->>'type')->>'filename',
               e->'msg'->'context'->>'id',
               coalesce(e->'msg'->'edit'->>'original_message_id',
                        e->'msg'->'revoke'->>'original_message_id',
                        e->'msg'->'reaction'->>'message_id'),
               e->'msg'
        FROM jsonb_array_elements(batch->'messages') e
        ORDER BY e->>'wamid', e->>'source'
        ON CONFLICT (wamid) DO NOTHING
        RETURNING *
    )
    SELECT coalesce(jsonb_agg(to_jsonb(ins) ORDER BY sent_at, wamid), '[]')
    INTO new_messages FROM ins;

    -- edits and revokes, whichever arrives first, the original or them:
    -- an original shows its latest edit's text and the first revoke
    WITH touched AS (
        SELECT e->>'refers_to' AS wamid FROM jsonb_array_elements(new_messages) e
        WHERE e->>'type' IN ('edit', 'revoke')
        UNION
        SELECT e->>'wamid' FROM jsonb_array_elements(new_messages) e
    ), derived AS (
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
        FROM touched t
    )
    UPDATE messages m
    SET body = coalesce(d.body, m.body), edited_at = d.edited_at,
        revoked_at = d.revoked_at
    FROM derived d
    WHERE m.wamid = d.wamid
      AND (d.edited_at IS NOT NULL OR d.revoked_at IS NOT NULL)
      AND (m.edited_at, m.revoked_at) IS DISTINCT FROM
          (d.edited_at, d.revoked_at);

    -- statuses: the earliest report of each (wamid, status) is kept
    INSERT INTO message_statuses AS s (wamid, status, at, phone_number_id,
                                       recipient_id, meta_conversation_id,
                                       pricing_category, error_code,
                                       error_title, raw)
    SELECT DISTINCT ON (e->>'wamid', e->>'status')
           e->>'wamid', e->>'status', to_timestamp((e->>'ts')::bigint),
           e->>'pn', e->'raw'->>'recipient_id',
           e->'raw'->'conversation'->>'id',
           e->'raw'->'pricing'->>'category',
           (e->'raw'->'errors'->0->>'code')::integer,
           e->'raw'->'errors'->0->>'title', e->'raw'
    FROM jsonb_array_elements(batch->'statuses') e
    ORDER BY e->>'wamid', e->>'status', (e->>'ts')::bigint, e->>'raw'
    ON CONFLICT (wamid, status) DO UPDATE
        SET at = excluded.at, recipient_id = excluded.recipient_id,
            meta_conversation_id = excluded.meta_conversation_id,
            pricing_category = excluded.pricing_category,
            error_code = excluded.error_code,
            error_title = excluded.error_title, raw = excluded.raw
        WHERE (excluded.at, excluded.raw::text) < (s.at, s.raw::text);

    -- a failure is remembered on the contact it was sent to (campaign
    -- safety reads it), newest by Meta's time
    INSERT INTO contacts AS c (phone_number_id, customer_id, wa_id, user_id,
                               last_error_code, last_error_at)
    SELECT DISTINCT ON (e->>'pn', customer)
           e->>'pn', customer, e->'raw'->>'recipient_id',
           e->'raw'->>'recipient_user_id',
           (e->'raw'->'errors'->0->>'code')::integer,
           to_timestamp((e->>'ts')::bigint)
    FROM jsonb_array_elements(batch->'statuses') e,
         coalesce(e->'raw'->>'recipient_id',
                  e->'raw'->>'recipient_user_id') AS customer
    WHERE e->>'status' = 'failed' AND customer IS NOT NULL
      AND e->'raw'->'errors'->0->>'code' IS NOT NULL
    ORDER BY e->>'pn', customer, (e->>'ts')::bigint DESC,
             (e->'raw'->'errors'->0->>'code')::integer DESC
    ON CONFLICT (phone_number_id, customer_id) DO UPDATE
        SET wa_id = coalesce(c.wa_id, excluded.wa_id),
            user_id = coalesce(c.user_id, excluded.user_id),
            last_error_code = excluded.last_error_code,
            last_error_at = excluded.last_error_at
        WHERE c.last_error_at IS NULL
           OR (excluded.last_error_at, excluded.last_error_code)
              > (c.last_error_at, c.last_error_code);

    -- derive status columns of every message touched, from all statuses;
    -- an array, not a join, so the plan is index lookups whatever the
    -- statistics said when it was made (empty tables: seq scans)
    touched_ids := ARRAY(
        SELECT e->>'wamid' FROM jsonb_array_elements(batch->'statuses') e
        UNION
        SELECT e->>'wamid' FROM jsonb_array_elements(new_messages) e);

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
        WHERE s.wamid = ANY (touched_ids) AND wa_status_rank(s.status) > 0
        GROUP BY s.wamid
    ), upd AS (
        UPDATE messages m
        SET status = d.status, status_at = d.status_at,
            sent_status_at = d.sent_status_at, delivered_at = d.delivered_at,
            read_at = d.read_at, played_at = d.played_at,
            failed_at = d.failed_at, error_code = d.error_code,
            error_title = d.error_title
        FROM derived d
        WHERE m.wamid = d.wamid AND m.wamid = ANY (touched_ids)
          AND wa_status_rank(d.status) >= wa_status_rank(m.status)
          AND (m.status, m.status_at, m.sent_status_at, m.delivered_at,
               m.read_at, m.played_at, m.failed_at)
              IS DISTINCT FROM
              (d.status, d.status_at, d.sent_status_at, d.delivered_at,
               d.read_at, d.played_at, d.failed_at)
        RETURNING m.*
    )
    SELECT coalesce(jsonb_agg(to_jsonb(upd) ORDER BY wamid), '[]')
    INTO changed FROM upd;

    -- conversations: unread grows once per new inbound message; the last
    -- message is the greatest (sent_at, wamid), whatever the order seen
    UPDATE conversations c
    SET unread_count = c.unread_count + n.unread,
        last_customer_message_at = greatest(c.last_customer_message_at,
                                            n.last_in)
    FROM (SELECT (e->>'conversation_id')::uuid AS id,
                 count(*) FILTER (WHERE e->>'direction' = 'in'
                                  AND e->>'source' = 'webhook') AS unread,
                 max((e->>'sent_at')::timestamptz)
                     FILTER (WHERE e->>'direction' = 'in') AS last_in
          FROM jsonb_array_elements(new_messages) e GROUP BY 1) n
    WHERE c.id = n.id;

    UPDATE conversations c
    SET last_message_at = n.sent_at, last_message_id = n.wamid,
        last_message_preview = left(coalesce(n.body, '[' || n.type || ']'),
                                    100),
        last_message_direction = n.direction
    FROM (SELECT DISTINCT ON (e->>'conversation_id')
                 (e->>'conversation_id')::uuid AS id,
                 (e->>'sent_at')::timestamptz AS sent_at, e->>'wamid' AS wamid,
                 e->>'body' AS body, e->>'type' AS type,
                 e->>'direction' AS direction
          FROM jsonb_array_elements(new_messages) e
          ORDER BY e->>'conversation_id', (e->>'sent_at')::timestamptz DESC,
                   e->>'wamid' DESC) n
    WHERE c.id = n.id
      AND (c.last_message_at IS NULL
           OR (n.sent_at, n.wamid) > (c.last_message_at, c.last_message_id));

    -- the other fields: kept as they came, templates and number health
    -- also in their own tables
    INSERT INTO field_events (waba_id, field, at, value, value_md5)
    SELECT DISTINCT ON (e->>'waba_id', e->>'field', md5((e->'value')::text))
           e->>'waba_id', e->>'field',
           to_timestamp((e->>'time')::bigint), e->'value',
           md5((e->'value')::text)
    FROM jsonb_array_elements(batch->'fields') e
    ORDER BY e->>'waba_id', e->>'field', md5((e->'value')::text)
    ON CONFLICT DO NOTHING;

    INSERT INTO update_outbox (event, data)
    SELECT 'template.status', to_jsonb(t) FROM wa_apply_templates(batch->'fields') t;
    GET DIAGNOSTICS n = ROW_COUNT;
    events := events + n;

    INSERT INTO update_outbox (event, data)
    SELECT 'phone.health', to_jsonb(p)
    FROM wa_apply_phone_health(batch->'fields') p;
    GET DIAGNOSTICS n = ROW_COUNT;
    events := events + n;

    -- realtime events, in Meta's time order
    INSERT INTO update_outbox (event, data)
    SELECT CASE WHEN m->>'source' = 'echo' THEN 'message.echo'
                ELSE 'message.new' END,
           jsonb_build_object('phone_number_id', m->>'phone_number_id',
                              'conversation_id', m->>'conversation_id',
                              'message', m - 'content'
                                         || jsonb_build_object('content',
                                                               m->'content'))
    FROM jsonb_array_elements(new_messages) m
    WHERE m->>'source' <> 'history';
    GET DIAGNOSTICS n = ROW_COUNT;
    events := events + n;

    INSERT INTO update_outbox (event, data)
    SELECT 'message.status',
           jsonb_build_object('phone_number_id', m->>'phone_number_id',
                              'conversation_id', m->>'conversation_id',
                              'message', m - 'content')
    FROM jsonb_array_elements(changed) m
    WHERE NOT m->'wamid' <@ (SELECT coalesce(jsonb_agg(e->'wamid'), '[]')
                              FROM jsonb_array_elements(new_messages) e);
    GET DIAGNOSTICS n = ROW_COUNT;
    events := events + n;

    INSERT INTO update_outbox (event, data)
    SELECT 'conversation.update',
           jsonb_build_object('phone_number_id', c.phone_number_id,
                              'conversation', to_jsonb(c))
    FROM conversations c
    WHERE c.id IN (SELECT (e->>'conversation_id')::uuid
                   FROM jsonb_array_elements(new_messages) e
                   WHERE e->>'source' <> 'history')
    ORDER BY c.id;
    GET DIAGNOSTICS n = ROW_COUNT;

    RETURN events + n;
END
$$;


-- Its statements handle hundreds of rows: LLVM compilation (jit) costs
-- far more than it saves, and grows as the planner's estimates do
-- (bench/README.md: +20 to 25 % drain rate without it).
ALTER FUNCTION wa_apply_batch(jsonb, bytea[]) SET jit = off;


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
-- and tomorrow's.  Called by the worker once an hour.
CREATE FUNCTION wa_webhook_log_retain(keep interval)
RETURNS void LANGUAGE plpgsql
AS $$
DECLARE
    day   date;
    part  record;
BEGIN
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
