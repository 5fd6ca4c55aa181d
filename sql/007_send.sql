-- Sending: POST /messages and POST /messages/{id}/read at the edge, the
-- worker's sender behind them.
--
-- PostgreSQL is the queue of record.  The API function checks the
-- request against the rules (scope, opt-out, 24-hour window, idempotency
-- key) and stores the message as `queued` in the same transaction, so a
-- 202 means the message is durable, and a rule is never checked against
-- a state that changes before the row is written.  The module then adds
-- a doorbell entry to wa:outbox so the sender starts at once; a lost
-- doorbell (Redis away) costs only latency: the sender also sweeps queued
-- rows (wa_send_sweep).
--
-- A message's send states, before Meta's own (accepted, sent, delivered,
-- read, played, failed: sql/002_ingest.sql):
--   queued    stored, waiting for its turn (its number's pace, a retry)
--   sending   claimed by a sender, the request may be on its way to Meta
--   unknown   the sender lost the answer of a request Meta may have
--             acted on (a timeout after the request was sent, a crash):
--             it is not sent again, so nothing is sent twice; Meta's
--             status webhooks carry our id back (biz_opaque_callback_data)
--             and move it on if Meta did accept it
-- All rank 0 (wa_status_rank), below every status Meta reports.
--
-- Until Meta answers, a message has no wamid; its primary key holds
-- "pending.<id>" (never a Meta id, which starts with "wamid."), replaced
-- by the wamid when Meta accepts it.  API and events show the placeholder
-- as null; the message's own id (returned by POST /messages) stays.

ALTER TABLE messages
    ADD COLUMN id uuid,                       -- ours, for sends (API)
    ADD COLUMN bulk boolean,                  -- behind agent replies
    ADD COLUMN send_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN send_consumer text,            -- the sender that claimed it
    ADD COLUMN receipt text                   -- read receipt asked of Meta:
        CHECK (receipt IN ('queued', 'sending', 'sent', 'failed'));

CREATE UNIQUE INDEX messages_id ON messages (id) WHERE id IS NOT NULL;

-- the sweeps: what waits, or was being sent when a sender died
CREATE INDEX messages_unsent ON messages (status_at)
    WHERE status IN ('queued', 'sending', 'unknown');
CREATE INDEX messages_receipts ON messages (phone_number_id)
    WHERE receipt IN ('queued', 'sending');

-- a send to a business-scoped user id finds its contact
CREATE INDEX contacts_user_id ON contacts (phone_number_id, user_id)
    WHERE user_id IS NOT NULL;

-- a status webhook of a message whose answer was lost names our id
CREATE INDEX message_statuses_callback
    ON message_statuses ((raw->>'biz_opaque_callback_data'))
    WHERE raw ? 'biz_opaque_callback_data';

-- Idempotency keys: the same caller and key always get the same message.
CREATE TABLE send_requests (
    agent                 text NOT NULL,      -- '' for a caller without
    key                   text NOT NULL,
    request_md5           text NOT NULL,
    message_id            uuid NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, key)
);

-- Access tokens, sealed with AES-256-GCM by the worker (whatsapp-worker
-- token set): the key never reaches PostgreSQL, so a dump or a replica
-- holds no usable token.
CREATE TABLE phone_number_tokens (
    phone_number_id       text PRIMARY KEY,
    sealed                bytea NOT NULL,     -- nonce, ciphertext, tag
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Meta refused the token (code 190): sends from the number wait, queued,
-- until a new token is stored.
ALTER TABLE phone_numbers
    ADD COLUMN send_paused_at timestamptz,
    ADD COLUMN send_paused_reason text;


CREATE FUNCTION wa_message_pending(m messages)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT m.wamid LIKE 'pending.%' $$;


-- A message as events and the API show it: the placeholder wamid as null.
CREATE FUNCTION wa_message_event_json(m messages)
RETURNS json LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN wa_message_pending(m)
                THEN (to_jsonb(m) || '{"wamid": null}')::json
                ELSE to_json(m) END
$$;


CREATE OR REPLACE FUNCTION wa_message_json(m messages)
RETURNS json LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT json_build_object(
        'id', m.id,
        'wamid', CASE WHEN wa_message_pending(m) THEN NULL ELSE m.wamid END,
        'conversation_id', m.conversation_id,
        'phone_number_id', m.phone_number_id,
        'customer_id', m.customer_id,
        'direction', m.direction,
        'source', m.source,
        'type', m.type,
        'sent_at', wa_json_time(m.sent_at),
        'body', m.body,
        'media_id', m.media_id,
        'media_mime_type', m.media_mime_type,
        'media_sha256', m.media_sha256,
        'media_filename', m.media_filename,
        'media_url', m.media_url,
        'reply_to', m.reply_to,
        'refers_to', m.refers_to,
        'edited_at', wa_json_time(m.edited_at),
        'revoked_at', wa_json_time(m.revoked_at),
        'status', m.status,
        'status_at', wa_json_time(m.status_at),
        'sent_status_at', wa_json_time(m.sent_status_at),
        'delivered_at', wa_json_time(m.delivered_at),
        'read_at', wa_json_time(m.read_at),
        'played_at', wa_json_time(m.played_at),
        'failed_at', wa_json_time(m.failed_at),
        'error_code', m.error_code,
        'error_title', m.error_title,
        'sender_agent', m.sender_agent,
        'content', m.content)
$$;


-- message.status data, as sql/006_event_scope.sql shapes it, with our id.
CREATE FUNCTION wa_send_status_line(m messages)
RETURNS text LANGUAGE sql STABLE
AS $$
    SELECT wa_outbox_line('message.status', json_build_object(
        'phone_number_id', m.phone_number_id,
        'conversation_id', m.conversation_id,
        'assignee', (SELECT x.assignee FROM conversations x
                     WHERE x.id = m.conversation_id),
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


-- The customer a send goes to (contacts.customer_id): the digits of an
-- E.164 number; for a business-scoped user id (a customer who shares no
-- phone number), the contact that id belongs to, so that a customer known
-- by both keeps one conversation, else the id itself, as ingest keys such
-- a customer.
CREATE FUNCTION wa_send_customer(p_phone_number_id text, p_to text)
RETURNS text LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN p_to LIKE '+%' THEN ltrim(p_to, '+')
                ELSE coalesce((SELECT k.customer_id FROM contacts k
                               WHERE k.phone_number_id = p_phone_number_id
                                 AND k.user_id = p_to
                               ORDER BY k.wa_id IS NULL, k.customer_id
                               LIMIT 1), p_to) END
$$;


-- An outgoing message stored `queued` for the sender, to p_to (E.164 with
-- its "+", else a business-scoped user id), for the customer p_customer
-- (contacts.customer_id).  The body is what the sender posts to Meta, as it is:
-- Meta's own body (validated by the module, or built by a rule), with our
-- id for the status webhooks to carry back (biz_opaque_callback_data).
-- The caller has checked the rules and made the contact and the
-- conversation exist.
CREATE FUNCTION wa_message_queue(p_id uuid, p_phone_number_id text,
                                 p_customer text, p_to text, p_body jsonb,
                                 p_source text, p_agent text,
                                 p_bulk boolean)
RETURNS messages LANGUAGE sql
AS $$
    WITH c AS (
        SELECT p_body - 'to' - 'recipient' || jsonb_build_object(
                   'messaging_product', 'whatsapp',
                   'recipient_type', 'individual',
                   CASE WHEN p_to LIKE '+%' THEN 'to' ELSE 'recipient' END,
                   p_to,
                   'type', coalesce(p_body->>'type', 'text'),
                   'biz_opaque_callback_data', p_id) AS content
    )
    INSERT INTO messages (wamid, id, conversation_id, phone_number_id,
                          customer_id, direction, source, type, sent_at,
                          body, media_id, media_filename, reply_to,
                          refers_to, content, status, status_at,
                          sender_agent, bulk)
    SELECT 'pending.' || p_id, p_id,
           wa_conversation_id(p_phone_number_id, p_customer),
           p_phone_number_id, p_customer, 'out', p_source,
           c.content->>'type', now(), wa_message_body(c.content),
           c.content->(c.content->>'type')->>'id',
           c.content->(c.content->>'type')->>'filename',
           c.content->'context'->>'message_id',
           c.content->'reaction'->>'message_id', c.content, 'queued', now(),
           p_agent, coalesce(p_bulk, false)
    FROM c
    RETURNING *
$$;


-- ---------------------------------------------------------------------
-- POST /messages
-- ---------------------------------------------------------------------

-- The module has validated the body against Meta's shapes (common/
-- wa_send.c) and passes what it found: the sending number, the
-- recipient in E.164, whether the message is free-form (anything but a
-- template), bulk, the idempotency key.  Answers:
--   202 {"id","status","conversation_id"} and the doorbell command
--   403 number outside the scope; conversation not assigned to the
--       caller (assigned-only scope)
--   404 phone number unknown
--   409 idempotency key already used for another request
--   422 opted_out, blocked, window_closed (free-form outside the
--       customer's 24 hours; templates are always allowed)
-- The same key with the same request answers the first answer's id and
-- the message's current status, and sends nothing again.
CREATE FUNCTION wa_api_send(
    p_agent text, p_phones text[], p_assigned_only boolean,
    p_phone_number_id text, p_to text, p_free_form boolean, p_bulk boolean,
    p_key text, p_body text)
RETURNS TABLE (status integer, body text, command text)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_only     boolean := coalesce(p_assigned_only, true);
    v_pn       text := p_phone_number_id;
    v_digits   text := wa_send_customer(p_phone_number_id, p_to);
    v_md5      text := md5(p_body);
    v_conv_id  uuid := wa_conversation_id(p_phone_number_id, v_digits);
    v_id       uuid := gen_random_uuid();
    v_prev     send_requests;
    v_contact  contacts;
    v_conv     conversations;
    v_msg      messages;
    v_convs    conversations[];
    v_code     text;
    v_text     text;
    v_http     integer;
    v_body     jsonb;
    v_command  text;
BEGIN
    BEGIN
        IF p_phones IS NOT NULL AND NOT v_pn = ANY (p_phones) THEN
            PERFORM wa_api_raise(403, 'forbidden',
                                 'phone_number_id is outside your scope');
        END IF;
        IF NOT EXISTS (SELECT 1 FROM phone_numbers p
                       WHERE p.phone_number_id = v_pn) THEN
            PERFORM wa_api_raise(404, 'not_found', 'phone number not found');
        END IF;
        IF v_only AND p_agent IS NULL THEN
            PERFORM wa_api_raise(403, 'forbidden',
                'an assigned-only scope without an agent cannot send');
        END IF;

        IF p_key IS NOT NULL THEN
            -- two requests with one key: the second waits for the first
            PERFORM pg_advisory_xact_lock(hashtextextended(
                'send:' || coalesce(p_agent, '') || ':' || p_key, 0));
            SELECT * INTO v_prev FROM send_requests q
            WHERE q.agent = coalesce(p_agent, '') AND q.key = p_key;
            IF FOUND THEN
                IF v_prev.request_md5 <> v_md5 THEN
                    PERFORM wa_api_raise(409, 'idempotency_key_reused',
                        'idempotency_key was used for another request');
                END IF;
                SELECT m.* INTO v_msg FROM messages m
                WHERE m.id = v_prev.message_id;
                RETURN QUERY SELECT 202, json_build_object(
                    'id', v_prev.message_id, 'status', v_msg.status,
                    'conversation_id', v_msg.conversation_id)::text,
                    NULL::text;
                RETURN;
            END IF;
        END IF;

        SELECT k.* INTO v_contact FROM contacts k
        WHERE k.phone_number_id = v_pn AND k.customer_id = v_digits;
        IF v_contact.opted_out THEN
            PERFORM wa_api_raise(422, 'opted_out',
                                 'the contact opted out of messages');
        END IF;
        IF v_contact.blocked THEN
            PERFORM wa_api_raise(422, 'blocked', 'the contact is blocked');
        END IF;

        SELECT c.* INTO v_conv FROM conversations c WHERE c.id = v_conv_id;
        IF FOUND THEN
            IF v_only AND v_conv.assignee IS DISTINCT FROM p_agent THEN
                PERFORM wa_api_raise(403, 'forbidden',
                    'this conversation is not assigned to you');
            END IF;
            IF v_conv.status = 'blocked' THEN
                PERFORM wa_api_raise(422, 'blocked',
                                     'the conversation is blocked');
            END IF;
        END IF;

        IF p_free_form
           AND (v_conv.last_customer_message_at IS NULL
                OR v_conv.last_customer_message_at
                   < now() - interval '24 hours')
        THEN
            PERFORM wa_api_raise(422, 'window_closed',
                CASE WHEN v_conv.last_customer_message_at IS NULL
                     THEN 'the customer has not written yet: only a '
                          'template can start the conversation'
                     ELSE 'the customer last wrote at '
                          || wa_json_time(v_conv.last_customer_message_at)
                          || ', more than 24 hours ago: only a template '
                          || 'can be sent'
                END);
        END IF;

        -- a template may start a conversation
        IF v_contact.customer_id IS NULL THEN
            INSERT INTO contacts (phone_number_id, customer_id, wa_id,
                                  user_id)
            VALUES (v_pn, v_digits,
                    CASE WHEN p_to LIKE '+%' THEN v_digits END,
                    CASE WHEN p_to NOT LIKE '+%' THEN p_to END)
            ON CONFLICT DO NOTHING;
        END IF;
        IF v_conv.id IS NULL THEN
            INSERT INTO conversations (id, phone_number_id, customer_id,
                                       assignee)
            VALUES (v_conv_id, v_pn, v_digits,
                    CASE WHEN v_only THEN p_agent END)
            ON CONFLICT DO NOTHING;
        END IF;

        v_msg := wa_message_queue(v_id, v_pn, v_digits, p_to,
                                  p_body::jsonb - 'phone_number_id'
                                                - 'idempotency_key'
                                                - 'priority',
                                  'api', p_agent, p_bulk);

        v_convs := wa_apply_conversations(ARRAY[v_msg]);

        INSERT INTO update_outbox (events)
        SELECT string_agg(line, '' ORDER BY ord)
        FROM (SELECT 1 AS ord,
                     wa_outbox_line('message.new', json_build_object(
                         'phone_number_id', v_pn,
                         'conversation_id', v_conv_id,
                         'assignee', (SELECT c.assignee FROM conversations c
                                      WHERE c.id = v_conv_id),
                         'message', wa_message_event_json(v_msg))::text)
                         AS line
              UNION ALL
              SELECT 2, wa_outbox_line('conversation.update',
                                       json_build_object(
                                           'phone_number_id', v.phone_number_id,
                                           'conversation', to_json(v))::text)
              FROM unnest(v_convs) v) lines;

        IF p_key IS NOT NULL THEN
            INSERT INTO send_requests (agent, key, request_md5, message_id)
            VALUES (coalesce(p_agent, ''), p_key, v_md5, v_id);
        END IF;

        v_http := 202;
        v_body := jsonb_build_object('id', v_id, 'status', 'queued',
                                     'conversation_id', v_conv_id);
        v_command := json_build_object('op', 'send', 'id', v_id,
                                       'phone_number_id', v_pn,
                                       'to', p_to,
                                       'bulk', coalesce(p_bulk, false))::text;
    EXCEPTION WHEN SQLSTATE 'WA403' OR SQLSTATE 'WA404'
                    OR SQLSTATE 'WA409' OR SQLSTATE 'WA422' THEN
        GET STACKED DIAGNOSTICS v_code = PG_EXCEPTION_DETAIL,
                                v_text = MESSAGE_TEXT;
        v_http := substr(SQLSTATE, 3)::integer;
        v_body := wa_api_error_json(v_code, v_text);
    END;
    RETURN QUERY SELECT v_http, v_body::text, v_command;
END
$$;


-- ---------------------------------------------------------------------
-- POST /messages/{wamid}/read
-- ---------------------------------------------------------------------

-- Blue ticks for an inbound message: the read receipt is queued for the
-- sender (Meta marks every earlier message of the thread read too), and
-- the conversation's unread count is reset at once (conversation.update).
-- 202 {"wamid","receipt":"queued"} and the doorbell command; 404 for a
-- message that is not an inbound one in the caller's scope.
CREATE FUNCTION wa_api_message_read(
    p_agent text, p_phones text[], p_assigned_only boolean, p_wamid text)
RETURNS TABLE (status integer, body text, command text)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_msg   messages;
    v_conv  conversations;
BEGIN
    SELECT m.* INTO v_msg FROM messages m
    WHERE m.wamid = p_wamid AND m.direction = 'in';
    SELECT c.* INTO v_conv FROM conversations c
    WHERE c.id = v_msg.conversation_id;

    IF v_msg.wamid IS NULL OR v_conv.id IS NULL
       OR NOT wa_api_in_scope(v_conv, p_agent, p_phones, p_assigned_only)
    THEN
        RETURN QUERY SELECT 404, wa_api_error_json('not_found',
                                 'message not found')::text, NULL::text;
        RETURN;
    END IF;

    UPDATE messages m SET receipt = 'queued'
    WHERE m.wamid = p_wamid
      AND m.receipt IS DISTINCT FROM 'queued'
      AND m.receipt IS DISTINCT FROM 'sending';

    UPDATE conversations c SET unread_count = 0
    WHERE c.id = v_conv.id AND c.unread_count <> 0
    RETURNING c.* INTO v_conv;
    IF FOUND THEN
        PERFORM wa_api_publish(v_conv);
    END IF;

    RETURN QUERY SELECT 202,
        json_build_object('wamid', p_wamid, 'receipt', 'queued')::text,
        json_build_object('op', 'read', 'wamid', p_wamid,
                          'phone_number_id', v_msg.phone_number_id)::text;
END
$$;


-- ---------------------------------------------------------------------
-- The worker's sender
-- ---------------------------------------------------------------------

-- Claims queued messages for a request to Meta now: each is `sending`
-- (and its attempt counted) before its request leaves, so that after a
-- crash it is never sent again blindly.  Messages another sender claimed,
-- or no longer queued, are not returned.
CREATE FUNCTION wa_send_claim(p_consumer text, p_ids uuid[])
RETURNS TABLE (id uuid, content text)
LANGUAGE sql
AS $$
    UPDATE messages m
    SET status = 'sending', status_at = now(),
        send_attempts = m.send_attempts + 1, send_consumer = p_consumer
    WHERE m.id = ANY (p_ids) AND m.status = 'queued'
    RETURNING m.id, m.content::text
$$;


CREATE FUNCTION wa_receipt_claim(p_wamids text[])
RETURNS TABLE (wamid text, phone_number_id text)
LANGUAGE sql
AS $$
    UPDATE messages m SET receipt = 'sending'
    WHERE m.wamid = ANY (p_wamids) AND m.receipt = 'queued'
    RETURNING m.wamid, m.phone_number_id
$$;


-- The outcomes of a round of requests, in one transaction, and their
-- events as one outbox row owned by the sender (published by it, or by a
-- sweep):
--   {"accepted": [{"id", "wamid"}],            Meta took it
--    "failed":   [{"id", "code", "title"}],    Meta refused it for good
--    "unknown":  [{"id", "title"}],            the answer was lost
--    "queued":   [{"id"}],                     again, later (a retry, a
--                                              paused number)
--    "receipts": [{"wamid", "receipt"}],       sent, failed or queued
--    "paused":   [{"phone_number_id", "code", "title"}]}
-- Only messages still `sending` move.  An accepted message takes its
-- wamid, and every status Meta reported for that wamid before we knew it
-- is applied (wa_derive_status); the wamid is locked as the ingest of
-- statuses locks it, so one of the two sees the other.
CREATE FUNCTION wa_send_results(p_consumer text, p_results jsonb,
                                OUT outbox_id bigint, OUT events text)
LANGUAGE plpgsql
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    accepted  messages[];
    failed    messages[];
    unknown   messages[];
    paused    phone_numbers[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(a.wamid, 0))
    FROM jsonb_to_recordset(p_results->'accepted') AS a(id uuid, wamid text)
    ORDER BY a.wamid;

    WITH upd AS (
        UPDATE messages m
        SET wamid = a.wamid, status = 'accepted', status_at = now()
        FROM jsonb_to_recordset(p_results->'accepted')
             AS a(id uuid, wamid text)
        WHERE m.id = a.id AND m.status = 'sending'
        RETURNING m.*
    )
    SELECT coalesce(array_agg(upd::messages), '{}') INTO accepted FROM upd;

    PERFORM wa_derive_status('[]', accepted);

    -- a conversation whose last message it is names it by its wamid now
    UPDATE conversations c SET last_message_id = a.wamid
    FROM unnest(accepted) a
    WHERE c.id = a.conversation_id
      AND c.last_message_id = 'pending.' || a.id;

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

    WITH upd AS (
        UPDATE messages m
        SET status = 'unknown', status_at = now(), error_title = u.title
        FROM jsonb_to_recordset(p_results->'unknown')
             AS u(id uuid, title text)
        WHERE m.id = u.id AND m.status = 'sending'
        RETURNING m.*
    )
    SELECT coalesce(array_agg(upd::messages), '{}') INTO unknown FROM upd;

    UPDATE messages m SET status = 'queued', status_at = now()
    FROM jsonb_to_recordset(p_results->'queued') AS q(id uuid)
    WHERE m.id = q.id AND m.status = 'sending';

    UPDATE messages m SET receipt = r.receipt
    FROM jsonb_to_recordset(p_results->'receipts')
         AS r(wamid text, receipt text)
    WHERE m.wamid = r.wamid AND m.receipt = 'sending';

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

    SELECT string_agg(line, '' ORDER BY ord, k) INTO events
    FROM (SELECT 1 AS ord, m.id::text AS k, wa_send_status_line(m) AS line
          FROM messages m
          WHERE m.id IN (SELECT x.id FROM unnest(accepted) x
                         UNION ALL SELECT x.id FROM unnest(failed) x
                         UNION ALL SELECT x.id FROM unnest(unknown) x)
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


-- What a sender should take up besides its doorbells: messages and read
-- receipts queued for longer than p_after (a doorbell lost with Redis),
-- oldest first; and, answered as "unknown", messages left `sending` by a
-- sender that is gone: this one at its start (p_own), any after p_idle.
CREATE FUNCTION wa_send_sweep(p_consumer text, p_own boolean,
                              p_after interval, p_idle interval,
                              p_limit integer)
RETURNS TABLE (op text, key text, phone_number_id text, recipient text,
               bulk boolean)
LANGUAGE sql STABLE
AS $$
    (SELECT 'unknown', m.id::text, m.phone_number_id, NULL, m.bulk
     FROM messages m
     WHERE m.status = 'sending'
       AND (m.status_at < now() - p_idle
            OR p_own AND m.send_consumer = p_consumer)
     ORDER BY m.status_at
     LIMIT p_limit)
    UNION ALL
    (SELECT 'send', m.id::text, m.phone_number_id, m.content->>'to', m.bulk
     FROM messages m
     WHERE m.status = 'queued' AND m.status_at < now() - p_after
     ORDER BY m.status_at
     LIMIT p_limit)
    UNION ALL
    (SELECT 'read', m.wamid, m.phone_number_id, NULL, NULL
     FROM messages m
     WHERE m.receipt = 'queued'
     LIMIT p_limit)
$$;


-- Messages whose answer was lost but that Meta did accept: a status
-- webhook names our id; the message takes that wamid and moves on.
-- Returns the outbox row of their events, like wa_send_results.
CREATE FUNCTION wa_send_reconcile(p_consumer text,
                                  OUT outbox_id bigint, OUT events text)
LANGUAGE plpgsql
SET jit = off
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
        WHERE m.status = 'unknown'
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


-- The numbers a sender may send from, with their sealed tokens (NULL:
-- none stored yet) and whether Meta raised their throughput (1,000/s).
CREATE FUNCTION wa_send_numbers()
RETURNS TABLE (phone_number_id text, sealed bytea, token_at timestamptz,
               high_throughput boolean, paused boolean)
LANGUAGE sql STABLE
AS $$
    SELECT p.phone_number_id, t.sealed, t.updated_at,
           p.status = 'THROUGHPUT_UPGRADE'
               OR p.throughput_level = 'HIGH',
           p.send_paused_at IS NOT NULL
    FROM phone_numbers p
    LEFT JOIN phone_number_tokens t USING (phone_number_id)
$$;


-- whatsapp-worker token set: stores a sealed token, lifts a pause.
CREATE FUNCTION wa_send_token_set(p_phone_number_id text, p_sealed bytea)
RETURNS void LANGUAGE sql
AS $$
    INSERT INTO phone_numbers (phone_number_id)
    VALUES (p_phone_number_id)
    ON CONFLICT DO NOTHING;

    INSERT INTO phone_number_tokens (phone_number_id, sealed)
    VALUES (p_phone_number_id, p_sealed)
    ON CONFLICT (phone_number_id) DO UPDATE
        SET sealed = excluded.sealed, updated_at = now();

    UPDATE phone_numbers p
    SET send_paused_at = NULL, send_paused_reason = NULL
    WHERE p.phone_number_id = p_phone_number_id
      AND p.send_paused_at IS NOT NULL;
$$;
