-- 004: the agent REST API, answered by SQL functions.
--
-- The module authenticates the agent, routes `METHOD /path` and calls ONE
-- function per request with bound text parameters, then sends back the
-- (status, body) row it returns, verbatim.  So every endpoint function
--   * takes the caller's scope first: agent text (JWT sub, NULL with
--     `whatsapp_auth off`), phones text[] (allowed phone_number_ids; NULL =
--     all, '{}' = none), assigned_only boolean (only conversations whose
--     assignee = agent; NULL is taken as true: a module bug must not widen
--     the scope);
--   * then the request's parameters as text exactly as received (query
--     string values, or the raw JSON body), NULL when absent, and validates
--     and casts them itself: a bad value is a 400 naming the parameter;
--   * enforces the scope in every statement it runs: a conversation outside
--     it is a 404 exactly like a missing one, so ids cannot be probed;
--   * returns exactly one row (status integer, body text), the body a JSON
--     document, errors as {"error":{"code":"…","message":"…"}}.
-- Parameters are named p_* so that no parameter can be mistaken for a
-- column in the functions' statements (the module calls them
-- positionally).  Query-string values that are empty ("?status=") count
-- as absent, as an empty search box or an unset filter would send them.
--
-- Changes are published in the same transaction as one update_outbox row
-- (001): one line, conversation.update and its data.
--
-- The read endpoints build their JSON as json, not jsonb (kept in the
-- order written, nothing to print again) and aggregate each page straight
-- from its query.  bench/api measured 2.5 to 4 ms of PostgreSQL CPU per
-- call when the pages were built as jsonb, row by row out of an array of
-- rows, with four to_char calls per timestamp and the messages query
-- planned again on every call; 0.8 to 1.5 ms now.
--
-- Timestamps in JSON are RFC 3339 in UTC ("2024-11-21T15:00:00Z", with a
-- fraction only when there is one), whatever the session's TimeZone.


-- The name an agent gives a conversation (the customer's WhatsApp profile
-- name stays on contacts).  No default: rows the worker writes are
-- unchanged.
ALTER TABLE conversations ADD COLUMN name text;


-- Latest activity first, conversations without messages (created by the
-- API) last: ORDER BY last_message_at DESC NULLS LAST, id DESC, written as
-- coalesce(last_message_at, '-infinity') DESC, id DESC so that the keyset
-- condition of the cursor is a single row comparison the btree can start
-- from (NULLs would need a second branch).  Meta's timestamps are never
-- -infinity, so the two orders are the same.
--
-- Every index costs the worker an entry per conversation update
-- (last_message_at changes, so those updates are never HOT): these and no
-- more.

-- one phone number (a single-number scope or ?phone_number_id=)
CREATE INDEX conversations_activity ON conversations
    (phone_number_id, (coalesce(last_message_at, '-infinity'::timestamptz))
     DESC, id DESC);

-- all numbers, or several (the scope is then a filter on this walk)
CREATE INDEX conversations_activity_all ON conversations
    ((coalesce(last_message_at, '-infinity'::timestamptz)) DESC, id DESC);

-- assigned_only agents and ?assignee=; unassigned rows take no space
CREATE INDEX conversations_assignee_activity ON conversations
    (assignee, (coalesce(last_message_at, '-infinity'::timestamptz)) DESC,
     id DESC)
    WHERE assignee IS NOT NULL;

-- unread counts and the first unread conversations of the notifications
-- summary, polled by every agent: a small index instead of a full scan
CREATE INDEX conversations_unread ON conversations
    ((coalesce(last_message_at, '-infinity'::timestamptz)) DESC, id DESC)
    WHERE unread_count > 0;

-- windows about to close: a range of last_customer_message_at
CREATE INDEX conversations_window ON conversations (last_customer_message_at)
    WHERE status = 'open';

-- /stats: outbound messages by send time; the phone number second, so a
-- scoped range is filtered in the index.  Neither column ever changes, so
-- status updates of messages stay HOT.
CREATE INDEX messages_outbound_sent ON messages (sent_at, phone_number_id)
    WHERE direction = 'out';


-- ---------------------------------------------------------------------
-- JSON representations, shared with the worker's realtime events
-- ---------------------------------------------------------------------

-- RFC 3339 in UTC, independent of the session's TimeZone and DateStyle
-- (JSON prints a timestamp in ISO 8601 whatever DateStyle says).
CREATE FUNCTION wa_json_time(t timestamptz)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT btrim(to_json(t AT TIME ZONE 'UTC')::text, '"') || 'Z' $$;


-- With the contact's profile name given: no sub-select, so the planner
-- inlines it (a page of 25 called it 25 times as a function: 1.5 ms).
CREATE FUNCTION wa_conversation_json(c conversations, profile_name text)
RETURNS json LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT json_build_object(
        'id', c.id,
        'phone_number_id', c.phone_number_id,
        'customer_id', c.customer_id,
        'name', c.name,
        'profile_name', profile_name,
        'type', c.type,
        'status', c.status,
        'assignee', c.assignee,
        'unread_count', c.unread_count,
        'last_message_at', wa_json_time(c.last_message_at),
        'last_message_id', c.last_message_id,
        'last_message_preview', c.last_message_preview,
        'last_message_direction', c.last_message_direction,
        'last_customer_message_at', wa_json_time(c.last_customer_message_at),
        -- the 24-hour customer-service window; null: never opened
        'window_closes_at', wa_json_time(c.last_customer_message_at
                                         + interval '24 hours'),
        'reference_link', c.reference_link,
        'muted_until', wa_json_time(c.muted_until))
$$;

-- One conversation: its contact looked up.
CREATE FUNCTION wa_conversation_json(c conversations)
RETURNS json LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT wa_conversation_json(c, (SELECT k.profile_name FROM contacts k
                                    WHERE k.phone_number_id = c.phone_number_id
                                      AND k.customer_id = c.customer_id))
$$;


CREATE FUNCTION wa_message_json(m messages)
RETURNS json LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT json_build_object(
        'wamid', m.wamid,
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


-- ---------------------------------------------------------------------
-- Helpers: errors, validation, cursors, scope, outbox
-- ---------------------------------------------------------------------

-- An HTTP error, raised as SQLSTATE WA<status> (WA400, WA403, WA404) with
-- the API's error code as DETAIL: validation helpers can stop an endpoint
-- from any depth, and the endpoint's handler turns it into its one row
-- (rolling back whatever it had written).
-- (IMMUTABLE: the same arguments always raise the same error, so the
-- validation helpers calling it can be IMMUTABLE too.)
CREATE FUNCTION wa_api_raise(http_status integer, code text, message text)
RETURNS void LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'WA' || http_status, MESSAGE = message,
                          DETAIL = code;
END
$$;


CREATE FUNCTION wa_api_error_json(code text, message text)
RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT jsonb_build_object('error', jsonb_build_object('code', code,
                                                          'message', message))
$$;


-- {"data": [...], "<cursor name>": cursor or null}
CREATE FUNCTION wa_api_page(data json, cursor_name text, cursor text)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT '{"data":' || coalesce(data::text, '[]') || ','
           || to_json(cursor_name)::text || ':'
           || coalesce(to_json(cursor)::text, 'null') || '}'
$$;


-- ?limit=: an integer from 1 to max; over max is refused (400), not
-- clamped, so that a client never believes it got everything it asked for.
CREATE FUNCTION wa_api_limit(value text, dflt integer, max integer)
RETURNS integer LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF coalesce(value, '') = '' THEN
        RETURN dflt;
    END IF;
    -- at most 9 digits: the cast below cannot overflow
    IF value ~ '^[0-9]{1,9}$' THEN
        IF value::integer BETWEEN 1 AND max THEN
            RETURN value::integer;
        END IF;
    END IF;
    PERFORM wa_api_raise(400, 'invalid_parameter',
                         format('limit must be an integer from 1 to %s', max));
END
$$;


-- RFC 3339 date-time (an offset or Z is required: a bare local time would
-- depend on the session's TimeZone); NULL or '' is NULL.
CREATE FUNCTION wa_api_time(value text, name text)
RETURNS timestamptz LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF coalesce(value, '') = '' THEN
        RETURN NULL;
    END IF;
    IF value ~ ('^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}'
                '(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$') THEN
        BEGIN
            RETURN value::timestamptz;
        EXCEPTION WHEN data_exception THEN
            NULL;     -- 2024-02-30 and the like: refused below
        END;
    END IF;
    PERFORM wa_api_raise(400, 'invalid_parameter',
                         name || ' must be an RFC 3339 timestamp such as '
                         || '2024-11-21T15:00:00Z');
END
$$;


-- A path id: NULL when it is not a uuid (the caller answers 404, as for
-- an unknown id).
CREATE FUNCTION wa_api_uuid(value text)
RETURNS uuid LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RETURN value::uuid;
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END
$$;


-- The request body: must parse as JSON (400 malformed_json, the cast error
-- caught) and be an object.
CREATE FUNCTION wa_api_body(value text)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    j  jsonb;
BEGIN
    IF value IS NULL OR btrim(value, E' \t\r\n') = '' THEN
        PERFORM wa_api_raise(400, 'malformed_json',
                             'the request body must be a JSON object');
    END IF;
    BEGIN
        j := value::jsonb;
    -- bad syntax, bad escapes (\u0000), nesting too deep
    EXCEPTION WHEN data_exception OR program_limit_exceeded THEN
        PERFORM wa_api_raise(400, 'malformed_json',
                             'the request body is not valid JSON');
    END;
    IF jsonb_typeof(j) <> 'object' THEN
        PERFORM wa_api_raise(400, 'malformed_json',
                             'the request body must be a JSON object');
    END IF;
    RETURN j;
END
$$;


-- Refuses fields the endpoint does not know: a typo must not be ignored.
CREATE FUNCTION wa_api_known_fields(body jsonb, known text[])
RETURNS void LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    unknown  text;
BEGIN
    SELECT k INTO unknown FROM jsonb_object_keys(body) k
    WHERE NOT k = ANY (known) ORDER BY k LIMIT 1;
    IF FOUND THEN
        PERFORM wa_api_raise(400, 'invalid_parameter',
                             format('unknown field %s', to_jsonb(unknown)));
    END IF;
END
$$;


-- A body field that must be a non-empty string of at most max_len
-- characters, or null / absent (NULL).
CREATE FUNCTION wa_api_string(v jsonb, name text, max_len integer)
RETURNS text LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) = 'string' THEN
        IF char_length(v #>> '{}') BETWEEN 1 AND max_len THEN
            RETURN v #>> '{}';
        END IF;
    END IF;
    PERFORM wa_api_raise(400, 'invalid_parameter',
                         format('%s must be a non-empty string of at most %s '
                                'characters, or null', name, max_len));
END
$$;


-- A link an agent clicks: http(s), a host, no whitespace or control
-- characters (no javascript:, no header or log injection), at most 2048.
CREATE FUNCTION wa_api_url(v jsonb, name text)
RETURNS text LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    s  text;
BEGIN
    IF v IS NULL OR jsonb_typeof(v) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(v) = 'string' THEN
        s := v #>> '{}';
        IF char_length(s) <= 2048
           AND s ~* '^https?://[^[:space:][:cntrl:]/?#]+([/?#][^[:space:][:cntrl:]]*)?$'
        THEN
            RETURN s;
        END IF;
    END IF;
    PERFORM wa_api_raise(400, 'invalid_parameter',
                         name || ' must be an http(s) URL without whitespace, '
                         || 'at most 2048 characters, or null');
END
$$;


-- Cursors are opaque to clients: base64url of a versioned key.  (STABLE,
-- not IMMUTABLE: convert_to/convert_from are.)
CREATE FUNCTION wa_api_b64url(s text)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    -- encode() wraps lines at 76 characters: the newlines go too
    SELECT rtrim(translate(encode(convert_to(s, 'UTF8'), 'base64'),
                           E'+/\n', '-_'), '=')
$$;


-- NULL when it is not base64url of UTF-8 text
CREATE FUNCTION wa_api_unb64url(s text)
RETURNS text LANGUAGE plpgsql STABLE
AS $$
BEGIN
    -- (a {m,n} bound over 255 is not a valid regular expression)
    IF length(s) > 1400 OR s !~ '^[A-Za-z0-9_-]+$' THEN
        RETURN NULL;
    END IF;
    RETURN convert_from(decode(translate(s, '-_', '+/')
                               || repeat('=', (4 - length(s) % 4) % 4),
                               'base64'), 'UTF8');
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END
$$;


-- Microseconds since the epoch, exact both ways (to_timestamp(double)
-- would round).  STABLE, as extract() and + interval on timestamptz are.
CREATE FUNCTION wa_api_micros(t timestamptz)
RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT (extract(epoch FROM t) * 1000000)::bigint $$;

CREATE FUNCTION wa_api_from_micros(us bigint)
RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT to_timestamp(us / 1000000) + (us % 1000000) * interval '1 microsecond'
$$;


-- The conversations cursor: the last row's sort key,
-- "c1:<last_message_at in µs or n>:<id>".
CREATE FUNCTION wa_api_conversation_cursor(c conversations)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT wa_api_b64url('c1:' || coalesce(wa_api_micros(c.last_message_at)::text,
                                           'n')
                         || ':' || c.id::text)
$$;


-- -> (activity, id) to continue after, as in the ORDER BY; 400 if malformed
CREATE FUNCTION wa_api_conversation_after(cursor text,
                                          OUT at timestamptz, OUT id uuid)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    parts  text[];
BEGIN
    parts := regexp_match(wa_api_unb64url(cursor),
                          '^c1:(-?[0-9]{1,16}|n):([0-9a-f-]{36})$');
    IF parts IS NOT NULL THEN
        BEGIN
            at := CASE WHEN parts[1] = 'n' THEN '-infinity'::timestamptz
                       ELSE wa_api_from_micros(parts[1]::bigint) END;
            id := parts[2]::uuid;
            RETURN;
        EXCEPTION WHEN data_exception THEN
            NULL;
        END;
    END IF;
    PERFORM wa_api_raise(400, 'invalid_parameter', 'cursor is malformed');
END
$$;


-- The messages cursor: the oldest message returned, "m1:<sent_at µs>:<wamid>".
CREATE FUNCTION wa_api_message_cursor(m messages)
RETURNS text LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT wa_api_b64url('m1:' || wa_api_micros(m.sent_at)::text || ':'
                         || m.wamid)
$$;


CREATE FUNCTION wa_api_message_before(cursor text,
                                      OUT at timestamptz, OUT wamid text)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    parts  text[];
BEGIN
    parts := regexp_match(wa_api_unb64url(cursor),
                          '^m1:(-?[0-9]{1,16}):(.+)$');
    IF parts IS NOT NULL THEN
        BEGIN
            at := wa_api_from_micros(parts[1]::bigint);
            wamid := parts[2];
            RETURN;
        EXCEPTION WHEN data_exception THEN
            NULL;
        END;
    END IF;
    PERFORM wa_api_raise(400, 'invalid_parameter', 'before is malformed');
END
$$;


-- The scope, for statements that have the conversation row at hand.  The
-- list queries write the same predicate out, so the planner sees the
-- columns (an index on phone_number_id or assignee is then usable).
CREATE FUNCTION wa_api_in_scope(c conversations, agent text, phones text[],
                                assigned_only boolean)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (phones IS NULL OR c.phone_number_id = ANY (phones))
           AND (NOT coalesce(assigned_only, true)
                OR c.assignee IS NOT DISTINCT FROM agent
                   AND agent IS NOT NULL)
$$;


-- One outbox row for this transaction's conversation.update.
CREATE FUNCTION wa_api_publish(c conversations)
RETURNS void LANGUAGE sql
AS $$
    INSERT INTO update_outbox (events)
    VALUES (wa_outbox_line('conversation.update',
                           jsonb_build_object(
                               'phone_number_id', c.phone_number_id,
                               'conversation', wa_conversation_json(c))::text))
$$;


-- ---------------------------------------------------------------------
-- GET /conversations
-- ---------------------------------------------------------------------

-- 200 {"data":[conversation...],"next_cursor":"…"|null}
--
-- Keyset pagination on (activity, id), the order of the activity
-- indexes: a page starts strictly after the previous page's last key
-- (next_cursor encodes it), so a row that existed when paging started and
-- did not move is returned exactly once whatever is inserted or updated
-- meanwhile.  A row whose activity changes during the walk moves to the
-- top: not returned again if already seen, skipped if not (clients learn
-- of it from its conversation.update event or a fresh first page).
--
-- Filters (each optional): phone_number_id (outside the scope: no rows),
-- type ("none": no type), status, assignee (an agent id, "none":
-- unassigned, "me": the caller), unread ("true": unread_count > 0,
-- "false": = 0), q (case-insensitive substring of the customer id, the
-- conversation's name or the contact's profile name; a query that looks
-- like a phone number, e.g. "+49 151-2", also matches its digits in the
-- customer id).  limit 1..100, default 25, over 100 → 400.
CREATE FUNCTION wa_api_conversations(
    p_agent text, p_phones text[], p_assigned_only boolean,
    p_phone_number_id text, p_type text, p_status text, p_assignee text,
    p_unread text, p_q text, p_cursor text, p_limit text)
RETURNS TABLE (status integer, body text)
LANGUAGE plpgsql STABLE
-- the filters are written "(v IS NULL OR col = v)": planned for the values
-- at hand, the unused ones fold away and the right index is chosen
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    v_only        boolean := coalesce(p_assigned_only, true);
    -- a one-number scope as an equality: "= ANY" cannot walk the
    -- per-number index in order, "=" can
    v_one         text := CASE WHEN cardinality(p_phones) = 1
                               THEN p_phones[1] END;
    v_pn          text := nullif(p_phone_number_id, '');
    v_type        text := nullif(p_type, '');
    v_type_none   boolean := false;
    v_status      text := nullif(p_status, '');
    v_assignee    text := nullif(p_assignee, '');
    v_unassigned  boolean := false;
    v_unread      boolean;
    v_q           text := nullif(p_q, '');
    v_pat         text;
    v_digits      text;
    v_after_at    timestamptz;
    v_after_id    uuid;
    v_limit       integer;
    v_data        json;
    v_next        text;
    v_code        text;
    v_msg         text;
BEGIN
    BEGIN
        v_limit := wa_api_limit(p_limit, 25, 100);

        IF v_status IS NOT NULL
           AND v_status NOT IN ('open', 'archived', 'closed', 'blocked') THEN
            PERFORM wa_api_raise(400, 'invalid_parameter',
                'status must be one of open, archived, closed, blocked');
        END IF;

        IF v_type = 'none' THEN
            v_type := NULL;
            v_type_none := true;
        END IF;

        IF v_assignee = 'none' THEN
            v_assignee := NULL;
            v_unassigned := true;
        ELSIF v_assignee = 'me' THEN
            IF p_agent IS NULL THEN
                PERFORM wa_api_raise(400, 'invalid_parameter',
                    'assignee=me needs an authenticated agent');
            END IF;
            v_assignee := p_agent;
        END IF;

        IF p_unread = 'true' THEN
            v_unread := true;
        ELSIF p_unread = 'false' THEN
            v_unread := false;
        ELSIF coalesce(p_unread, '') <> '' THEN
            PERFORM wa_api_raise(400, 'invalid_parameter',
                                 'unread must be true or false');
        END IF;

        IF v_q IS NOT NULL THEN
            IF char_length(v_q) > 200 THEN
                PERFORM wa_api_raise(400, 'invalid_parameter',
                    'q must be at most 200 characters');
            END IF;
            -- the input is data, never a pattern: LIKE's wildcards and the
            -- escape character itself are escaped
            -- lower() LIKE rather than ILIKE: the same matches, and twice
            -- as fast over 100,000 rows when measured
            v_pat := '%' || replace(replace(replace(lower(v_q), '!', '!!'),
                                            '%', '!%'), '_', '!_') || '%';
            IF v_q ~ '^[+0-9 ().-]+$' AND v_q ~ '[0-9]' THEN
                v_digits := '%' || regexp_replace(v_q, '[^0-9]', '', 'g')
                            || '%';
            END IF;
        END IF;

        IF coalesce(p_cursor, '') <> '' THEN
            SELECT a.at, a.id INTO v_after_at, v_after_id
            FROM wa_api_conversation_after(p_cursor) a;
        END IF;

    EXCEPTION WHEN SQLSTATE 'WA400' THEN
        GET STACKED DIAGNOSTICS v_code = PG_EXCEPTION_DETAIL,
                                v_msg = MESSAGE_TEXT;
        RETURN QUERY SELECT 400, wa_api_error_json(v_code, v_msg)::text;
        RETURN;
    END;

    -- one more than the page says whether there is a next one
    SELECT json_agg(wa_conversation_json(p.c, k.profile_name) ORDER BY p.n)
               FILTER (WHERE p.n <= v_limit),
           min(wa_api_conversation_cursor(p.c)) FILTER (WHERE p.n = v_limit
                                                        AND p.total > v_limit)
    INTO v_data, v_next
    -- (numbered in the order the index gave them: a window without ORDER
    -- BY numbers its input as it comes, with no sort of its own)
    FROM (SELECT x.c, row_number() OVER () AS n, count(*) OVER () AS total
          FROM (SELECT c FROM conversations c
                WHERE (p_phones IS NULL OR c.phone_number_id = ANY (p_phones))
                  AND (v_one IS NULL OR c.phone_number_id = v_one)
                  AND (NOT v_only OR (c.assignee = p_agent))
                  AND (v_pn IS NULL OR c.phone_number_id = v_pn)
                  AND (v_type IS NULL OR c.type = v_type)
                  AND (NOT v_type_none OR c.type IS NULL)
                  AND (v_status IS NULL OR c.status = v_status)
                  AND (v_assignee IS NULL OR c.assignee = v_assignee)
                  AND (NOT v_unassigned OR c.assignee IS NULL)
                  AND (v_unread IS NULL OR (c.unread_count > 0) = v_unread)
                  AND (v_pat IS NULL
                       OR lower(c.customer_id) LIKE v_pat ESCAPE '!'
                       OR lower(c.name) LIKE v_pat ESCAPE '!'
                       OR (v_digits IS NOT NULL
                           AND c.customer_id LIKE v_digits)
                       -- one pass over contacts into a hash, probed per row
                       OR (c.phone_number_id, c.customer_id) IN (
                              SELECT k.phone_number_id, k.customer_id
                              FROM contacts k
                              WHERE lower(k.profile_name) LIKE v_pat
                                    ESCAPE '!'))
                  AND (v_after_id IS NULL
                       OR (coalesce(c.last_message_at,
                                    '-infinity'::timestamptz), c.id)
                          < (v_after_at, v_after_id))
                ORDER BY coalesce(c.last_message_at, '-infinity'::timestamptz)
                         DESC, c.id DESC
                LIMIT v_limit + 1) x) p
    LEFT JOIN contacts k ON k.phone_number_id = (p.c).phone_number_id
                        AND k.customer_id = (p.c).customer_id;

    RETURN QUERY SELECT 200, wa_api_page(v_data, 'next_cursor', v_next);
END
$$;


-- ---------------------------------------------------------------------
-- GET /conversations/counts
-- ---------------------------------------------------------------------

-- 200 {"total":N,"unread":N,"by_status":{"open":N,"archived":N,
--      "closed":N,"blocked":N},"by_type":{"<type or none>":N,...}}
-- unread counts conversations with unread messages.  One pass over the
-- scope's rows.
CREATE FUNCTION wa_api_conversation_counts(
    p_agent text, p_phones text[], p_assigned_only boolean,
    p_phone_number_id text)
RETURNS TABLE (status integer, body text)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    v_only  boolean := coalesce(p_assigned_only, true);
    v_pn    text := nullif(p_phone_number_id, '');
    v_body  jsonb;
BEGIN
    WITH g AS (
        SELECT c.status AS st, coalesce(c.type, 'none') AS ty,
               count(*) AS n, count(*) FILTER (WHERE c.unread_count > 0) AS u
        FROM conversations c
        WHERE (p_phones IS NULL OR c.phone_number_id = ANY (p_phones))
          AND (NOT v_only OR (c.assignee = p_agent))
          AND (v_pn IS NULL OR c.phone_number_id = v_pn)
        GROUP BY 1, 2
    )
    SELECT jsonb_build_object(
        'total', coalesce((SELECT sum(n) FROM g), 0),
        'unread', coalesce((SELECT sum(u) FROM g), 0),
        'by_status', (SELECT jsonb_object_agg(s.st, coalesce(
                                 (SELECT sum(n) FROM g WHERE g.st = s.st), 0))
                      FROM unnest(ARRAY['open', 'archived', 'closed',
                                        'blocked']) s(st)),
        'by_type', (SELECT coalesce(jsonb_object_agg(t.ty, t.n), '{}')
                    FROM (SELECT ty, sum(n) AS n FROM g GROUP BY ty) t))
    INTO v_body;
    RETURN QUERY SELECT 200, v_body::text;
END
$$;


-- ---------------------------------------------------------------------
-- POST /conversations
-- ---------------------------------------------------------------------

-- body {"phone_number_id":"…","phone":"+4915112345678","name":"…",
--       "reference_link":"https://…"}
-- Find or create by number: 201 with the conversation when created, 200
-- when it existed.  On an existing conversation a name or reference_link
-- given (non-null) replaces the stored one (null or absent leaves it): the
-- caller said what it wants to see.  An agent limited to assigned
-- conversations gets the ones it creates assigned to itself (it could not
-- see them otherwise) and a 403 for an existing one assigned to someone
-- else or to no one (it gave the number, so nothing is probed; taking over
-- a conversation is for PATCH by someone who sees it).
CREATE FUNCTION wa_api_conversation_create(
    p_agent text, p_phones text[], p_assigned_only boolean, p_body text)
RETURNS TABLE (status integer, body text)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_only    boolean := coalesce(p_assigned_only, true);
    j         jsonb;
    v_phone   text;
    v_digits  text;
    v_pn      text;
    v_name    text;
    v_link    text;
    v_id      uuid;
    v_conv    conversations;
    v_old     conversations;
    v_code    text;
    v_msg     text;
    v_http    integer;
    v_body    jsonb;
BEGIN
    BEGIN
        j := wa_api_body(p_body);
        PERFORM wa_api_known_fields(j, ARRAY['phone_number_id', 'phone',
                                             'name', 'reference_link']);

        v_phone := CASE WHEN jsonb_typeof(j->'phone') = 'string'
                        THEN j->>'phone' END;
        IF v_phone IS NULL OR v_phone !~ '^\+?[1-9][0-9]{6,14}$' THEN
            PERFORM wa_api_raise(400, 'invalid_parameter',
                'phone must be an E.164 number: an optional +, then 7 to 15 '
                'digits, the first not 0');
        END IF;
        v_digits := ltrim(v_phone, '+');

        v_pn := wa_api_string(j->'phone_number_id', 'phone_number_id', 64);
        IF v_pn IS NULL AND cardinality(p_phones) = 1 THEN
            v_pn := p_phones[1];
        END IF;
        IF v_pn IS NULL THEN
            PERFORM wa_api_raise(400, 'invalid_parameter',
                                 'phone_number_id is required');
        END IF;

        v_name := wa_api_string(j->'name', 'name', 256);
        v_link := wa_api_url(j->'reference_link', 'reference_link');

        -- scope before existence: numbers outside it are not probed
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
                                 'no agent to assign the conversation to');
        END IF;

        INSERT INTO contacts AS k (phone_number_id, customer_id, wa_id)
        VALUES (v_pn, v_digits, v_digits)
        ON CONFLICT (phone_number_id, customer_id) DO UPDATE
            SET wa_id = excluded.wa_id
            WHERE k.wa_id IS NULL;

        -- the id is derived from the key, so concurrent calls for the same
        -- number meet on the primary key: one inserts, the others find it
        v_id := wa_conversation_id(v_pn, v_digits);
        FOR attempt IN 1 .. 3 LOOP
            INSERT INTO conversations AS c (id, phone_number_id, customer_id,
                                            name, reference_link, assignee)
            VALUES (v_id, v_pn, v_digits, v_name, v_link,
                    CASE WHEN v_only THEN p_agent END)
            ON CONFLICT DO NOTHING
            RETURNING c.* INTO v_conv;
            IF FOUND THEN
                PERFORM wa_api_publish(v_conv);
                v_http := 201;
                EXIT;
            END IF;

            SELECT c.* INTO v_old FROM conversations c WHERE c.id = v_id
            FOR UPDATE;
            -- deleted between the two statements: insert again
            CONTINUE WHEN NOT FOUND;

            IF v_only AND v_old.assignee IS DISTINCT FROM p_agent THEN
                PERFORM wa_api_raise(403, 'forbidden',
                    'this conversation is not assigned to you');
            END IF;
            v_conv := v_old;
            v_conv.name := coalesce(v_name, v_old.name);
            v_conv.reference_link := coalesce(v_link, v_old.reference_link);
            IF v_conv IS DISTINCT FROM v_old THEN
                UPDATE conversations c
                SET name = v_conv.name, reference_link = v_conv.reference_link
                WHERE c.id = v_id
                RETURNING c.* INTO v_conv;
                PERFORM wa_api_publish(v_conv);
            END IF;
            v_http := 200;
            EXIT;
        END LOOP;

        IF v_http IS NULL THEN
            RAISE EXCEPTION 'conversation % neither inserted nor found', v_id;
        END IF;
        v_body := wa_conversation_json(v_conv);
    EXCEPTION WHEN SQLSTATE 'WA400' OR SQLSTATE 'WA403'
                    OR SQLSTATE 'WA404' THEN
        GET STACKED DIAGNOSTICS v_code = PG_EXCEPTION_DETAIL,
                                v_msg = MESSAGE_TEXT;
        v_http := substr(SQLSTATE, 3)::integer;
        v_body := wa_api_error_json(v_code, v_msg);
    END;
    RETURN QUERY SELECT v_http, v_body::text;
END
$$;


-- ---------------------------------------------------------------------
-- PATCH /conversations/{id}
-- ---------------------------------------------------------------------

-- body: any of assignee (string, null: unassign), status (open, archived,
-- closed, blocked), type (string ≤ 64, null; "none" is reserved: it
-- means "no type" in filters and counts), name (≤ 256, null),
-- reference_link (http(s) URL, null), muted_until (RFC 3339, null).
-- Strings must not be empty: null clears.  Unknown fields → 400; an id
-- that is not a uuid, unknown or outside the scope → 404.  200 with the
-- conversation; conversation.update is published when something changed.
-- The body is checked before the row is looked up and locked.  An agent
-- limited to assigned conversations may hand one over (assign it to
-- someone else); it then no longer sees it.
CREATE FUNCTION wa_api_conversation_update(
    p_agent text, p_phones text[], p_assigned_only boolean, p_id text,
    p_body text)
RETURNS TABLE (status integer, body text)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    j        jsonb;
    v_id     uuid;
    v_old    conversations;
    v_new    conversations;
    v_st     text;
    v_type   text;
    v_code   text;
    v_msg    text;
    v_http   integer;
    v_body   jsonb;
BEGIN
    BEGIN
        j := wa_api_body(p_body);
        PERFORM wa_api_known_fields(j, ARRAY['assignee', 'status', 'type',
                                             'name', 'reference_link',
                                             'muted_until']);
        IF j ? 'status' THEN
            v_st := CASE WHEN jsonb_typeof(j->'status') = 'string'
                         THEN j->>'status' END;
            IF v_st IS NULL
               OR v_st NOT IN ('open', 'archived', 'closed', 'blocked') THEN
                PERFORM wa_api_raise(400, 'invalid_parameter',
                    'status must be one of open, archived, closed, blocked');
            END IF;
        END IF;
        v_type := wa_api_string(j->'type', 'type', 64);
        IF v_type = 'none' THEN
            PERFORM wa_api_raise(400, 'invalid_parameter',
                'type "none" is reserved (it means no type): use null');
        END IF;

        v_id := wa_api_uuid(p_id);
        SELECT c.* INTO v_old FROM conversations c
        WHERE c.id = v_id
          AND wa_api_in_scope(c, p_agent, p_phones, p_assigned_only)
        FOR UPDATE;
        IF NOT FOUND THEN
            PERFORM wa_api_raise(404, 'not_found', 'conversation not found');
        END IF;

        v_new := v_old;
        IF j ? 'assignee' THEN
            v_new.assignee := wa_api_string(j->'assignee', 'assignee', 256);
        END IF;
        IF j ? 'status' THEN
            v_new.status := v_st;
        END IF;
        IF j ? 'type' THEN
            v_new.type := v_type;
        END IF;
        IF j ? 'name' THEN
            v_new.name := wa_api_string(j->'name', 'name', 256);
        END IF;
        IF j ? 'reference_link' THEN
            v_new.reference_link := wa_api_url(j->'reference_link',
                                               'reference_link');
        END IF;
        IF j ? 'muted_until' THEN
            -- a number or an empty string is not a time: refused here, as
            -- wa_api_time would take '' for "absent"
            IF jsonb_typeof(j->'muted_until') NOT IN ('string', 'null')
               OR j->>'muted_until' = '' THEN
                PERFORM wa_api_raise(400, 'invalid_parameter',
                    'muted_until must be an RFC 3339 timestamp such as '
                    '2024-11-21T15:00:00Z, or null');
            END IF;
            v_new.muted_until := wa_api_time(j->>'muted_until', 'muted_until');
        END IF;

        IF v_new IS DISTINCT FROM v_old THEN
            UPDATE conversations c
            SET assignee = v_new.assignee, status = v_new.status,
                type = v_new.type, name = v_new.name,
                reference_link = v_new.reference_link,
                muted_until = v_new.muted_until
            WHERE c.id = v_id
            RETURNING c.* INTO v_new;
            PERFORM wa_api_publish(v_new);
        END IF;

        v_http := 200;
        v_body := wa_conversation_json(v_new);
    EXCEPTION WHEN SQLSTATE 'WA400' OR SQLSTATE 'WA403'
                    OR SQLSTATE 'WA404' THEN
        GET STACKED DIAGNOSTICS v_code = PG_EXCEPTION_DETAIL,
                                v_msg = MESSAGE_TEXT;
        v_http := substr(SQLSTATE, 3)::integer;
        v_body := wa_api_error_json(v_code, v_msg);
    END;
    RETURN QUERY SELECT v_http, v_body::text;
END
$$;


-- ---------------------------------------------------------------------
-- POST /conversations/{id}/read
-- ---------------------------------------------------------------------

-- unread_count = 0; 200 with the conversation; conversation.update only
-- if it was not 0 already (no write, no event otherwise).
CREATE FUNCTION wa_api_conversation_read(
    p_agent text, p_phones text[], p_assigned_only boolean, p_id text)
RETURNS TABLE (status integer, body text)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_id    uuid := wa_api_uuid(p_id);
    v_conv  conversations;
BEGIN
    UPDATE conversations c SET unread_count = 0
    WHERE c.id = v_id AND c.unread_count <> 0
      AND wa_api_in_scope(c, p_agent, p_phones, p_assigned_only)
    RETURNING c.* INTO v_conv;
    IF FOUND THEN
        PERFORM wa_api_publish(v_conv);
    ELSE
        SELECT c.* INTO v_conv FROM conversations c
        WHERE c.id = v_id
          AND wa_api_in_scope(c, p_agent, p_phones, p_assigned_only);
        IF NOT FOUND THEN
            RETURN QUERY SELECT 404, wa_api_error_json(
                'not_found', 'conversation not found')::text;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT 200, wa_conversation_json(v_conv)::text;
END
$$;


-- ---------------------------------------------------------------------
-- GET /conversations/{id}/messages
-- ---------------------------------------------------------------------

-- 200 {"data":[message... oldest first],"next_before":"…"|null}: the
-- newest `limit` (1..100, default 20) messages older than `before` (the
-- previous page's next_before; absent: the newest), keyset on
-- (sent_at, wamid) over messages_conversation.  Every row of the
-- conversation is returned, reactions, edits and revokes included (their
-- effect is also folded into their target: body, edited_at, revoked_at).
CREATE FUNCTION wa_api_messages(
    p_agent text, p_phones text[], p_assigned_only boolean,
    p_conversation_id text, p_before text, p_limit text)
RETURNS TABLE (status integer, body text)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
DECLARE
    v_id       uuid;
    v_limit    integer;
    v_at       timestamptz;
    v_wamid    text;
    v_data     json;
    v_next     text;
    v_code     text;
    v_msg      text;
BEGIN
    BEGIN
        v_id := wa_api_uuid(p_conversation_id);
        IF NOT EXISTS (SELECT 1 FROM conversations c
                       WHERE c.id = v_id
                         AND wa_api_in_scope(c, p_agent, p_phones,
                                             p_assigned_only)) THEN
            PERFORM wa_api_raise(404, 'not_found', 'conversation not found');
        END IF;

        v_limit := wa_api_limit(p_limit, 20, 100);
        IF coalesce(p_before, '') <> '' THEN
            SELECT b.at, b.wamid INTO v_at, v_wamid
            FROM wa_api_message_before(p_before) b;
        END IF;
    EXCEPTION WHEN SQLSTATE 'WA400' OR SQLSTATE 'WA404' THEN
        GET STACKED DIAGNOSTICS v_code = PG_EXCEPTION_DETAIL,
                                v_msg = MESSAGE_TEXT;
        RETURN QUERY SELECT substr(SQLSTATE, 3)::integer,
                            wa_api_error_json(v_code, v_msg)::text;
        RETURN;
    END;

    -- newest first from the index (numbered as they come: a window
    -- without ORDER BY has no sort of its own), oldest first in the
    -- answer; one more than the page says whether there is an older page
    SELECT json_agg(wa_message_json(p.m) ORDER BY p.n DESC)
               FILTER (WHERE p.n <= v_limit),
           min(wa_api_message_cursor(p.m)) FILTER (WHERE p.n = v_limit
                                                   AND p.total > v_limit)
    INTO v_data, v_next
    FROM (SELECT x.m, row_number() OVER () AS n, count(*) OVER () AS total
          FROM (SELECT m FROM messages m
                WHERE m.conversation_id = v_id
                  AND (v_wamid IS NULL
                       OR (m.sent_at, m.wamid) < (v_at, v_wamid))
                ORDER BY m.sent_at DESC, m.wamid DESC
                LIMIT v_limit + 1) x) p;

    RETURN QUERY SELECT 200, wa_api_page(v_data, 'next_before', v_next);
END
$$;


-- ---------------------------------------------------------------------
-- GET /notifications/summary
-- ---------------------------------------------------------------------

-- 200 {"expiring":[{conversation_id, phone_number_id, customer_id, name,
--                   window_closes_at, minutes_left, severity}...],
--      "expiring_total":N,
--      "unread":{"conversations":N,"messages":N},
--      "unread_conversations":[conversation... first 50 by activity]}
--
-- The 24-hour window closes at last_customer_message_at + 24 h.  Expiring:
-- open conversations whose window is still open and closes within 3 h
-- (closes_at > now() and closes_at <= now() + 3 h), soonest first, at
-- most 100 (expiring_total says how many); severity "critical" under 1 h
-- left, "urgent" from 1 h to 3 h.  name is the conversation's name, else
-- the contact's profile name.  Muted conversations (muted_until > now())
-- are left out of the whole summary: muting is about notifications.
CREATE FUNCTION wa_api_notifications_summary(
    p_agent text, p_phones text[], p_assigned_only boolean)
RETURNS TABLE (status integer, body text)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    v_only      boolean := coalesce(p_assigned_only, true);
    v_expiring  jsonb;
    v_total     bigint;
    v_unread    jsonb;
    v_rows      conversations[];
    v_first     jsonb;
BEGIN
    WITH e AS (
        SELECT c.id, c.phone_number_id, c.customer_id,
               coalesce(c.name, (SELECT k.profile_name FROM contacts k
                                 WHERE k.phone_number_id = c.phone_number_id
                                   AND k.customer_id = c.customer_id))
                   AS name,
               c.last_customer_message_at + interval '24 hours' AS closes
        FROM conversations c
        WHERE c.status = 'open'
          AND c.last_customer_message_at > now() - interval '24 hours'
          AND c.last_customer_message_at <= now() - interval '21 hours'
          AND (c.muted_until IS NULL OR c.muted_until <= now())
          AND (p_phones IS NULL OR c.phone_number_id = ANY (p_phones))
          AND (NOT v_only OR (c.assignee = p_agent))
    )
    SELECT (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'conversation_id', x.id,
                'phone_number_id', x.phone_number_id,
                'customer_id', x.customer_id,
                'name', x.name,
                'window_closes_at', wa_json_time(x.closes),
                'minutes_left', floor(extract(epoch FROM x.closes - now())
                                      / 60)::integer,
                'severity', CASE WHEN x.closes - now() < interval '1 hour'
                                 THEN 'critical' ELSE 'urgent' END)
                ORDER BY x.closes, x.id), '[]')
            FROM (SELECT * FROM e ORDER BY e.closes, e.id LIMIT 100) x),
           (SELECT count(*) FROM e)
    INTO v_expiring, v_total;

    SELECT jsonb_build_object('conversations', count(*),
                              'messages', coalesce(sum(c.unread_count), 0))
    INTO v_unread
    FROM conversations c
    WHERE c.unread_count > 0
      AND (c.muted_until IS NULL OR c.muted_until <= now())
      AND (p_phones IS NULL OR c.phone_number_id = ANY (p_phones))
      AND (NOT v_only OR (c.assignee = p_agent));

    v_rows := ARRAY(
        SELECT c FROM conversations c
        WHERE c.unread_count > 0
          AND (c.muted_until IS NULL OR c.muted_until <= now())
          AND (p_phones IS NULL OR c.phone_number_id = ANY (p_phones))
          AND (NOT v_only OR (c.assignee = p_agent))
        ORDER BY coalesce(c.last_message_at, '-infinity'::timestamptz) DESC,
                 c.id DESC
        LIMIT 50);
    v_first := (SELECT coalesce(jsonb_agg(wa_conversation_json(v_rows[i])
                                          ORDER BY i), '[]')
                FROM generate_subscripts(v_rows, 1) i);

    RETURN QUERY SELECT 200, jsonb_build_object(
        'expiring', v_expiring,
        'expiring_total', v_total,
        'unread', v_unread,
        'unread_conversations', v_first)::text;
END
$$;


-- ---------------------------------------------------------------------
-- GET /stats
-- ---------------------------------------------------------------------

-- 200 {"from":…,"to":…,"data":[{"phone_number_id","sent","delivered",
--      "read","failed","delivery_rate","read_rate"}...]}
-- Outbound messages sent in [from, to) (RFC 3339; default: the 7 days up
-- to now, or 7 days before `to`; to defaults to now), one entry per phone
-- number in scope (and ?phone_number_id=) known in phone_numbers, zeros
-- included, ordered by phone_number_id.  A message counts by the highest
-- status it reached, by its status or any per-transition time: read or
-- played count as sent, delivered and read; failed counts failures
-- (a message sent then failed is also sent).  delivery_rate = delivered /
-- sent, read_rate = read / delivered, 0 when the denominator is 0, 4
-- decimals.  With assigned_only, the messages of the conversations now
-- assigned to the agent.
CREATE FUNCTION wa_api_stats(
    p_agent text, p_phones text[], p_assigned_only boolean,
    p_phone_number_id text, p_from text, p_to text)
RETURNS TABLE (status integer, body text)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    v_only   boolean := coalesce(p_assigned_only, true);
    v_pn     text := nullif(p_phone_number_id, '');
    v_from   timestamptz;
    v_to     timestamptz;
    v_data   jsonb;
    v_code   text;
    v_msg    text;
    v_http   integer;
    v_body   jsonb;
BEGIN
    BEGIN
        v_from := wa_api_time(p_from, 'from');
        v_to := coalesce(wa_api_time(p_to, 'to'), now());
        v_from := coalesce(v_from, v_to - interval '7 days');
        IF v_from >= v_to THEN
            PERFORM wa_api_raise(400, 'invalid_parameter',
                                 'from must be before to');
        END IF;

        WITH m AS (
            SELECT m.phone_number_id AS pn,
                   (m.status IN ('sent', 'delivered', 'read', 'played')
                    OR m.sent_status_at IS NOT NULL
                    OR m.delivered_at IS NOT NULL OR m.read_at IS NOT NULL
                    OR m.played_at IS NOT NULL) AS sent,
                   (m.status IN ('delivered', 'read', 'played')
                    OR m.delivered_at IS NOT NULL OR m.read_at IS NOT NULL
                    OR m.played_at IS NOT NULL) AS delivered,
                   (m.status IN ('read', 'played')
                    OR m.read_at IS NOT NULL OR m.played_at IS NOT NULL)
                       AS read,
                   (m.status = 'failed' OR m.failed_at IS NOT NULL) AS failed
            FROM messages m
            WHERE m.direction = 'out'
              AND m.sent_at >= v_from AND m.sent_at < v_to
              AND (p_phones IS NULL OR m.phone_number_id = ANY (p_phones))
              AND (v_pn IS NULL OR m.phone_number_id = v_pn)
              AND (NOT v_only
                   OR EXISTS (SELECT 1 FROM conversations c
                              WHERE c.id = m.conversation_id
                                AND c.assignee = p_agent))
        ), n AS (
            SELECT p.phone_number_id,
                   count(m.pn) FILTER (WHERE m.sent) AS sent,
                   count(m.pn) FILTER (WHERE m.delivered) AS delivered,
                   count(m.pn) FILTER (WHERE m.read) AS read,
                   count(m.pn) FILTER (WHERE m.failed) AS failed
            FROM phone_numbers p
            LEFT JOIN m ON m.pn = p.phone_number_id
            WHERE (p_phones IS NULL OR p.phone_number_id = ANY (p_phones))
              AND (v_pn IS NULL OR p.phone_number_id = v_pn)
            GROUP BY p.phone_number_id
        )
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'phone_number_id', n.phone_number_id,
                   'sent', n.sent, 'delivered', n.delivered,
                   'read', n.read, 'failed', n.failed,
                   -- trim_scale: 0.8 and 1, not 0.8000 and 1.0000
                   'delivery_rate', CASE WHEN n.sent = 0 THEN 0
                       ELSE trim_scale(round(n.delivered::numeric / n.sent,
                                             4)) END,
                   'read_rate', CASE WHEN n.delivered = 0 THEN 0
                       ELSE trim_scale(round(n.read::numeric / n.delivered,
                                             4)) END)
                   ORDER BY n.phone_number_id), '[]')
        INTO v_data FROM n;

        v_http := 200;
        v_body := jsonb_build_object('from', wa_json_time(v_from),
                                     'to', wa_json_time(v_to),
                                     'data', v_data);
    EXCEPTION WHEN SQLSTATE 'WA400' OR SQLSTATE 'WA403'
                    OR SQLSTATE 'WA404' THEN
        GET STACKED DIAGNOSTICS v_code = PG_EXCEPTION_DETAIL,
                                v_msg = MESSAGE_TEXT;
        v_http := substr(SQLSTATE, 3)::integer;
        v_body := wa_api_error_json(v_code, v_msg);
    END;
    RETURN QUERY SELECT v_http, v_body::text;
END
$$;
