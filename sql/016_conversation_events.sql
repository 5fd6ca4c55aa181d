-- 016: one shape for conversation.update, whoever publishes it.
--
-- The API's own changes to a conversation (wa_api_publish, 004) publish
-- it as the API returns it (wa_conversation_json: the contact's
-- profile_name, window_closes_at, times in UTC with a Z).  The ingest
-- (wa_state_events, 012) and the API's sends (wa_api_send, 007) published
-- the bare row instead: no profile_name, so a browser had no name to show
-- for a customer's first message, no window_closes_at, and times as
-- PostgreSQL writes them.  A frontend had two shapes of one event to
-- handle.  Now all three build the line with one function,
-- wa_conversation_line: wa_conversation_json, a superset of the row's
-- fields.  wa_api_send and wa_state_events are restated whole, as they
-- were, with only that expression changed and the contacts joined for
-- the profile names; wa_api_publish is restated to use it too.
--
-- The cost, measured by bench/persist's REPLAY (N=50000, batches of
-- 1,000, PostgreSQL's time in wa_apply_batch, four rounds): 4.5 to 9.4 %
-- more, 7 to 13 µs per event.  With a sub-select per conversation
-- instead of the join, 10 to 11 % (two rounds).


-- The one conversation.update line, whoever publishes it: the
-- conversation as the API returns it, with its contact's profile name.
CREATE FUNCTION wa_conversation_line(c conversations, profile_name text)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT wa_outbox_line('conversation.update', json_build_object(
               'phone_number_id', c.phone_number_id,
               'conversation', wa_conversation_json(c, profile_name))::text)
$$;


-- as in 004, through wa_conversation_line
CREATE OR REPLACE FUNCTION wa_api_publish(c conversations)
RETURNS void LANGUAGE sql
AS $$
    INSERT INTO update_outbox (events)
    VALUES (wa_conversation_line(c, (SELECT k.profile_name FROM contacts k
                                     WHERE k.phone_number_id = c.phone_number_id
                                       AND k.customer_id = c.customer_id)))
$$;


-- as in 007, through wa_conversation_line
CREATE OR REPLACE FUNCTION wa_api_send(
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
              SELECT 2, wa_conversation_line(v, k.profile_name)
              FROM unnest(v_convs) v
              LEFT JOIN contacts k ON k.phone_number_id = v.phone_number_id
                                  AND k.customer_id = v.customer_id) lines;

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



-- as in 012, through wa_conversation_line, the profile names joined
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

    SELECT string_agg(wa_conversation_line(v, k.profile_name), ''
                      ORDER BY v.id)
    INTO conv_lines
    FROM unnest(convs) v
    LEFT JOIN contacts k ON k.phone_number_id = v.phone_number_id
                        AND k.customer_id = v.customer_id;

    RETURN nullif(coalesce(message_lines, '') || coalesce(status_lines, '')
                  || coalesce(conv_lines, ''), '');
END
$$;

-- Its statements look rows up by key only (conversations by id, contacts
-- by number and customer).  On a young table the planner would rather
-- read contacts whole, and a session keeps that plan while the table
-- grows (015 found the same for messages): seq scans are off here.
ALTER FUNCTION wa_state_events(wa_message_event[], messages[], messages[],
                               conversations[])
    SET enable_seqscan = off;
