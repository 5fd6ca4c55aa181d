-- 013: the status derivation is planned once per session, not at every
-- call.
--
-- Found with bench/persist (WA_WORKER_BATCH=1, PG_STATS=1,
-- pg_stat_statements.track_planning=on): wa_derive_status' UPDATE was
-- planned again at every call that had a status in it, for 0.67 ms,
-- against 0.11 ms to run it.  A batch of one status webhook (the common
-- case: every message sent gets three of them) spent a third of its time
-- in PostgreSQL planning it.  PostgreSQL plans a statement with its
-- arguments as constants (a "custom" plan) for the first five calls, and
-- keeps doing so while such a plan looks cheaper than the generic one;
-- for an array of one wamid it always does.
--
-- The generic plan is made from the statistics of the moment, and on a
-- new installation message_statuses is empty: it would be a seq scan,
-- kept until autoanalyze.  Every statement of this function looks rows
-- up by key (wamid), so seq scans are off here: index lookups whatever
-- the statistics say, the plan the custom plans were.
-- Same arguments, same results.

ALTER FUNCTION wa_derive_status(jsonb, messages[])
    SET plan_cache_mode = force_generic_plan;

ALTER FUNCTION wa_derive_status(jsonb, messages[])
    SET enable_seqscan = off;
