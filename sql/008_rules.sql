-- 008: business rules kept in tables: a conversation's type from the
-- first template sent to it, and auto-replies to customers' answers.
--
-- Both are rows a team edits with SQL while everything runs (nothing to
-- reload): each statement that applies them reads the table as it is.
--
-- Conversation type (the API's `type`, used for filters and counts).
-- While a conversation has no type, every template stored for it (sent
-- through POST /messages, by an auto-reply, or echoed from another
-- device) is matched by name against conversation_type_rules in
-- `position` order; the first rule that matches sets the type.  An agent's
-- PATCH sets or clears it as before; a template never overrides it.  The
-- seed systems' rule ("owner" for names that start with owner or contain
-- owners_template, "guest" otherwise) is two rows:
--   INSERT INTO conversation_type_rules (position, template_name,
--                                        conversation_type)
--   VALUES (10, '^owner|owners_template', 'owner'), (20, '', 'guest');
-- The type is set when the template is stored, not when Meta accepts it:
-- it says which audience the agent chose, and the browser's tabs follow
-- at once (conversation.update carries it).
--
-- Auto-replies.  A rule answers a customer's quick-reply (a template's
-- button, or an interactive reply button) with a template:
--   INSERT INTO auto_reply_rules (in_reply_to_template, answer,
--                                 send_template, send_language)
--   VALUES ('visit_offer', 'Yes', 'visit_booking', 'en');
-- `answer` matches the button's text (case-insensitive) or its payload
-- (exactly); `in_reply_to_template`, when set, the name of our template
-- the customer answered (Meta's context.id).  The first enabled rule
-- that matches (one of the number's own before one for every number,
-- then by id) queues the template in the transaction that stores the
-- customer's message, as POST /messages would (`source` "auto", ahead of
-- bulk sends), and the worker rings the sender's doorbell after commit.
-- Once per rule and answered message: a customer who taps "Yes" twice
-- gets one reply, a delivery Meta repeats none, and a rule never answers
-- an opted-out or blocked contact or a blocked conversation.


CREATE TABLE conversation_type_rules (
    position           integer PRIMARY KEY,
    phone_number_id    text,              -- null: every number
    template_name      text NOT NULL      -- a POSIX regular expression
                       CHECK (('' ~ template_name) IS NOT NULL),
    conversation_type  text NOT NULL
                       CHECK (length(conversation_type) BETWEEN 1 AND 64
                              AND conversation_type <> 'none')
);


CREATE TABLE auto_reply_rules (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phone_number_id       text,           -- null: every number
    in_reply_to_template  text,           -- null: an answer to anything
    answer                text NOT NULL CHECK (answer <> ''),
    send_template         text NOT NULL
                          CHECK (send_template ~ '^[a-z0-9_]+$'
                                 AND length(send_template) <= 512),
    send_language         text NOT NULL
                          CHECK (send_language ~ '^[a-z]{2,3}(_[A-Za-z0-9]{2,4})?$'),
    send_components       jsonb           -- Meta's template components
                          CHECK (jsonb_typeof(send_components) = 'array'),
    enabled               boolean NOT NULL DEFAULT true,
    created_at            timestamptz NOT NULL DEFAULT now()
);

-- the replies sent: once per rule and answered message
CREATE TABLE auto_replies (
    rule_id     bigint NOT NULL REFERENCES auto_reply_rules ON DELETE CASCADE,
    answered    text NOT NULL,   -- our message answered, else the answer
    message_id  uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_id, answered)
);


-- A template stored for a conversation without a type sets it by the
-- first matching rule.  A trigger, so that every way a template is
-- stored follows the rule; it runs for outgoing templates only.
CREATE FUNCTION wa_conversation_type_rule()
RETURNS trigger LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE conversations c
    SET type = r.conversation_type
    FROM (SELECT t.conversation_type
          FROM conversation_type_rules t
          WHERE (t.phone_number_id IS NULL
                 OR t.phone_number_id = NEW.phone_number_id)
            AND NEW.content->'template'->>'name' ~ t.template_name
          ORDER BY t.position
          LIMIT 1) r
    WHERE c.id = NEW.conversation_id AND c.type IS NULL;

    RETURN NULL;
END
$$;

CREATE TRIGGER messages_conversation_type
    AFTER INSERT ON messages
    FOR EACH ROW
    WHEN (NEW.direction = 'out' AND NEW.type = 'template')
    EXECUTE FUNCTION wa_conversation_type_rule();


-- The auto-replies the new messages ask for, queued; returns them.
CREATE FUNCTION wa_auto_replies(new_msgs messages[])
RETURNS messages[] LANGUAGE plpgsql
AS $$
DECLARE
    v_hit      record;
    v_id       uuid;
    v_replies  messages[] := '{}';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM auto_reply_rules WHERE enabled) THEN
        RETURN v_replies;
    END IF;

    FOR v_hit IN
        SELECT DISTINCT ON (m.wamid)
               m.wamid, m.phone_number_id, m.customer_id, m.conversation_id,
               coalesce('+' || k.wa_id, k.user_id,
                        CASE WHEN m.customer_id ~ '^[0-9]+$'
                             THEN '+' || m.customer_id
                             ELSE m.customer_id END) AS send_to,
               coalesce(m.reply_to, m.wamid) AS answered, r.id AS rule_id,
               jsonb_build_object('name', r.send_template,
                                  'language', jsonb_build_object(
                                      'code', r.send_language))
               || CASE WHEN r.send_components IS NULL THEN '{}'::jsonb
                       ELSE jsonb_build_object('components',
                                               r.send_components) END
               AS template
        FROM unnest(new_msgs) m
        CROSS JOIN LATERAL (
            SELECT coalesce(m.content->'button'->>'text',
                            m.content->'interactive'->'button_reply'
                                     ->>'title') AS text,
                   coalesce(m.content->'button'->>'payload',
                            m.content->'interactive'->'button_reply'
                                     ->>'id') AS payload) a
        JOIN auto_reply_rules r
          ON r.enabled
         AND (lower(r.answer) = lower(a.text) OR r.answer = a.payload)
         AND (r.phone_number_id IS NULL
              OR r.phone_number_id = m.phone_number_id)
        LEFT JOIN messages q ON q.wamid = m.reply_to
        LEFT JOIN contacts k ON k.phone_number_id = m.phone_number_id
                            AND k.customer_id = m.customer_id
        WHERE m.direction = 'in' AND m.source = 'webhook'
          AND (r.in_reply_to_template IS NULL
               OR r.in_reply_to_template = q.content->'template'->>'name')
          AND NOT coalesce(k.opted_out OR k.blocked, false)
          AND NOT EXISTS (SELECT 1 FROM conversations c
                          WHERE c.id = m.conversation_id
                            AND c.status = 'blocked')
        ORDER BY m.wamid, r.phone_number_id NULLS LAST, r.id
    LOOP
        INSERT INTO auto_replies (rule_id, answered, message_id)
        VALUES (v_hit.rule_id, v_hit.answered, gen_random_uuid())
        ON CONFLICT DO NOTHING
        RETURNING message_id INTO v_id;

        CONTINUE WHEN v_id IS NULL;

        -- the conversation exists before its template: the type rule
        -- sees it
        INSERT INTO conversations (id, phone_number_id, customer_id)
        VALUES (v_hit.conversation_id, v_hit.phone_number_id,
                v_hit.customer_id)
        ON CONFLICT DO NOTHING;

        v_replies := v_replies || wa_message_queue(
            v_id, v_hit.phone_number_id, v_hit.customer_id, v_hit.send_to,
            jsonb_build_object('type', 'template',
                               'template', v_hit.template),
            'auto', NULL, false);
    END LOOP;

    RETURN v_replies;
END
$$;


-- The worker reads a third column (commands) from here on.
DROP FUNCTION wa_apply_batch(jsonb, bytea[], text, bigint[]);

-- As in 006, and the auto-replies the new messages asked for.
CREATE FUNCTION wa_apply_batch(batch jsonb, bodies bytea[], consumer text,
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
