-- 014: the ids the ingest looks rows up by compare byte by byte.
--
-- wamids, stream ids, phone number ids and customer ids are opaque
-- identifiers: no language orders them.  With the database's collation
-- (C.UTF-8 here, en_US.UTF-8 on many installations), each comparison in
-- their btrees went through strcoll() on NUL-terminated copies of both
-- values; with "C" it is a memcmp().  Every event compares them about
-- twenty times per index it writes or searches.  Replays of one drain's
-- calls side by side (bench/persist REPLAY, N=100000, a C.UTF-8
-- database): 5 % less PostgreSQL time in wa_apply_batch.  Locales with
-- real collation rules cost far more per strcoll().
--
-- Comparisons with these columns now use "C" whatever the other side's
-- collation (an explicit column collation wins over the default), so
-- every query keeps its indexes.  Orders by these ids become byte orders,
-- which for Meta's ASCII ids is the order they had under C.UTF-8.
--
-- On an existing installation this rebuilds the indexes on these columns
-- (the tables themselves are not rewritten), holding each table's lock
-- while it does: run it when traffic is low.

ALTER TABLE messages
    ALTER COLUMN wamid TYPE text COLLATE "C",
    ALTER COLUMN phone_number_id TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C",
    ALTER COLUMN refers_to TYPE text COLLATE "C";

ALTER TABLE message_statuses
    ALTER COLUMN wamid TYPE text COLLATE "C",
    ALTER COLUMN status TYPE text COLLATE "C";

ALTER TABLE webhook_log
    ALTER COLUMN stream_id TYPE text COLLATE "C";

ALTER TABLE contacts
    ALTER COLUMN phone_number_id TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C";

ALTER TABLE conversations
    ALTER COLUMN phone_number_id TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C";

ALTER TABLE phone_numbers
    ALTER COLUMN phone_number_id TYPE text COLLATE "C";
