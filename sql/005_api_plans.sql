-- 005: GET /conversations planned once per shape.
--
-- 004 planned the page query afresh on every call (force_custom_plan), so
-- that the filters left out folded away and the right index was chosen:
-- about half of the call's PostgreSQL time was planning (0.5 of 1.1 ms on
-- bench/api's 100,000 conversations).  The page an agent's frontend asks
-- for again and again has no filter besides the caller's scope, and a
-- scope has one of three shapes, each with its own index walk.  Those
-- three are now written out as statements whose plan is made once per
-- connection and kept (wa_api_conversation_rows); a filtered list is still
-- planned for the values at hand.  The answers are unchanged.


-- The conversations of a page, in page order, one more than the page when
-- there is a next one.  The scope shapes, each a walk of its own index in
-- activity order:
--   assigned_only     conversations_assignee_activity (assignee = agent)
--   one number        conversations_activity (phone_number_id = it)
--   all, or several   conversations_activity_all (the scope a filter)
-- The keyset condition is always a row comparison the walk starts from:
-- the first page starts after (infinity, the greatest uuid), above every
-- row (Meta's timestamps are never infinity).
-- Any other filter: the general statement, planned on each call for the
-- values given (EXECUTE; its text is a constant, every value bound).
CREATE FUNCTION wa_api_conversation_rows(
    p_agent text, p_phones text[], p_only boolean,
    p_pn text, p_type text, p_type_none boolean, p_status text,
    p_assignee text, p_unassigned boolean, p_unread boolean, p_pat text,
    p_digits text, p_after_at timestamptz, p_after_id uuid, p_rows integer)
RETURNS SETOF conversations
LANGUAGE plpgsql STABLE
-- a page (default 25, + 1): the caller then looks their contacts up one
-- by one (estimated at the default 1,000 rows, it hashed all contacts)
ROWS 26
-- the three scope walks: planned once, whatever the parameters
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_at  timestamptz := coalesce(p_after_at, 'infinity');
    v_id  uuid := coalesce(p_after_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff');
    v_one text := p_phones[1];
BEGIN
    IF p_pn IS NOT NULL OR p_type IS NOT NULL OR p_type_none
       OR p_status IS NOT NULL OR p_assignee IS NOT NULL OR p_unassigned
       OR p_unread IS NOT NULL OR p_pat IS NOT NULL THEN
        RETURN QUERY EXECUTE $q$
            SELECT c.* FROM conversations c
            WHERE ($2 IS NULL OR c.phone_number_id = ANY ($2))
              -- a one-number scope as an equality: "= ANY" cannot walk
              -- the per-number index in order, "=" can
              AND (cardinality($2) IS DISTINCT FROM 1
                   OR c.phone_number_id = ($2)[1])
              AND (NOT $3 OR c.assignee = $1)
              AND ($4 IS NULL OR c.phone_number_id = $4)
              AND ($5 IS NULL OR c.type = $5)
              AND (NOT $6 OR c.type IS NULL)
              AND ($7 IS NULL OR c.status = $7)
              AND ($8 IS NULL OR c.assignee = $8)
              AND (NOT $9 OR c.assignee IS NULL)
              AND ($10 IS NULL OR (c.unread_count > 0) = $10)
              AND ($11 IS NULL
                   OR lower(c.customer_id) LIKE $11 ESCAPE '!'
                   OR lower(c.name) LIKE $11 ESCAPE '!'
                   OR ($12 IS NOT NULL AND c.customer_id LIKE $12)
                   -- one pass over contacts into a hash, probed per row
                   OR (c.phone_number_id, c.customer_id) IN (
                          SELECT k.phone_number_id, k.customer_id
                          FROM contacts k
                          WHERE lower(k.profile_name) LIKE $11 ESCAPE '!'))
              AND (coalesce(c.last_message_at, '-infinity'::timestamptz),
                   c.id) < ($13, $14)
            ORDER BY coalesce(c.last_message_at, '-infinity'::timestamptz)
                     DESC, c.id DESC
            LIMIT $15 $q$
            USING p_agent, p_phones, p_only, p_pn, p_type, p_type_none,
                  p_status, p_assignee, p_unassigned, p_unread, p_pat,
                  p_digits, v_at, v_id, p_rows;

    ELSIF p_only THEN
        RETURN QUERY
            SELECT c.* FROM conversations c
            WHERE c.assignee = p_agent
              AND (p_phones IS NULL OR c.phone_number_id = ANY (p_phones))
              AND (coalesce(c.last_message_at, '-infinity'::timestamptz),
                   c.id) < (v_at, v_id)
            ORDER BY coalesce(c.last_message_at, '-infinity'::timestamptz)
                     DESC, c.id DESC
            LIMIT p_rows;

    ELSIF cardinality(p_phones) = 1 THEN
        RETURN QUERY
            SELECT c.* FROM conversations c
            -- the number in the keyset and the order too: only the
            -- per-number index gives them (a walk of the other one,
            -- filtered, was preferred in a generic plan)
            WHERE c.phone_number_id = v_one
              AND (c.phone_number_id,
                   coalesce(c.last_message_at, '-infinity'::timestamptz),
                   c.id) < (v_one, v_at, v_id)
            ORDER BY c.phone_number_id DESC,
                     coalesce(c.last_message_at, '-infinity'::timestamptz)
                     DESC, c.id DESC
            LIMIT p_rows;

    ELSE
        RETURN QUERY
            SELECT c.* FROM conversations c
            -- a filter on the walk: "= ANY" on its own could be taken for
            -- an index condition on the per-number index, whose rows then
            -- need a sort
            WHERE (p_phones IS NULL OR c.phone_number_id = ANY (p_phones))
              AND (coalesce(c.last_message_at, '-infinity'::timestamptz),
                   c.id) < (v_at, v_id)
            ORDER BY coalesce(c.last_message_at, '-infinity'::timestamptz)
                     DESC, c.id DESC
            LIMIT p_rows;
    END IF;
END
$$;


-- As in 004 (parameters, filters, cursor, answers); the rows now come
-- from wa_api_conversation_rows.
CREATE OR REPLACE FUNCTION wa_api_conversations(
    p_agent text, p_phones text[], p_assigned_only boolean,
    p_phone_number_id text, p_type text, p_status text, p_assignee text,
    p_unread text, p_q text, p_cursor text, p_limit text)
RETURNS TABLE (status integer, body text)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
DECLARE
    v_only        boolean := coalesce(p_assigned_only, true);
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
    -- (numbered in the order they came: a window without ORDER BY numbers
    -- its input as it comes, with no sort of its own)
    FROM (SELECT x AS c, row_number() OVER () AS n, count(*) OVER () AS total
          FROM wa_api_conversation_rows(
                   p_agent, p_phones, v_only, v_pn, v_type, v_type_none, v_status, v_assignee,
                   v_unassigned, v_unread, v_pat, v_digits,
                   v_after_at, v_after_id, v_limit + 1) x) p
    LEFT JOIN contacts k ON k.phone_number_id = (p.c).phone_number_id
                        AND k.customer_id = (p.c).customer_id;

    RETURN QUERY SELECT 200, wa_api_page(v_data, 'next_cursor', v_next);
END
$$;
