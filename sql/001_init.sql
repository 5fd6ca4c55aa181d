-- 001: the data model the worker fills and the API reads.
--
-- Keys are natural or derived from them (a conversation's id is a hash of
-- its business number and customer), never sequences, so that any order
-- and any number of repeats of the same Meta deliveries converge to the
-- same rows.  Timestamps come from Meta's payloads, not from now().

CREATE TABLE phone_numbers (
    phone_number_id       text PRIMARY KEY,
    waba_id               text,
    display_phone_number  text,
    quality_rating        text,
    messaging_limit_tier  text,
    throughput_level      text,
    status                text,
    health_updated_at     timestamptz
);

CREATE TABLE contacts (
    phone_number_id       text NOT NULL,
    customer_id           text NOT NULL,      -- wa_id, else the BSUID
    wa_id                 text,
    user_id               text,               -- business-scoped user id
    profile_name          text,
    profile_name_at       timestamptz,        -- the message that carried it
    opted_out             boolean NOT NULL DEFAULT false,
    blocked               boolean NOT NULL DEFAULT false,
    retarget_attempts     integer NOT NULL DEFAULT 0,
    last_retarget_at      timestamptz,
    last_error_code       integer,
    last_error_at         timestamptz,
    PRIMARY KEY (phone_number_id, customer_id)
);

CREATE TABLE conversations (
    id                    uuid PRIMARY KEY,   -- wa_conversation_id(pn, customer)
    phone_number_id       text NOT NULL,
    customer_id           text NOT NULL,
    type                  text,
    status                text NOT NULL DEFAULT 'open'
                          CHECK (status IN ('open', 'archived', 'closed',
                                            'blocked')),
    assignee              text,
    last_message_at       timestamptz,
    last_message_id       text,
    last_message_preview  text,
    last_message_direction text,
    last_customer_message_at timestamptz,     -- the 24-hour window
    unread_count          integer NOT NULL DEFAULT 0,
    reference_link        text,
    muted_until           timestamptz,
    UNIQUE (phone_number_id, customer_id)
);

CREATE TABLE messages (
    wamid                 text PRIMARY KEY,
    conversation_id       uuid NOT NULL,
    phone_number_id       text NOT NULL,
    customer_id           text NOT NULL,
    direction             text NOT NULL CHECK (direction IN ('in', 'out')),
    source                text NOT NULL,      -- webhook, echo, history, api
    type                  text NOT NULL,
    sent_at               timestamptz NOT NULL,
    body                  text,               -- text, caption or summary
    media_id              text,
    media_mime_type       text,
    media_sha256          text,
    media_filename        text,
    media_url             text,
    reply_to              text,               -- context.id
    refers_to             text,               -- an edit's, revoke's or
                                              -- reaction's target wamid
    content               jsonb NOT NULL,     -- the message object as sent
    edited_at             timestamptz,        -- body is the latest edit's
    revoked_at            timestamptz,
    status                text,
    status_at             timestamptz,
    sent_status_at        timestamptz,
    delivered_at          timestamptz,
    read_at               timestamptz,
    played_at             timestamptz,
    failed_at             timestamptz,
    error_code            integer,
    error_title           text,
    sender_agent          text
);

CREATE INDEX messages_conversation
    ON messages (conversation_id, sent_at DESC, wamid DESC);

CREATE INDEX messages_refers_to ON messages (refers_to)
    WHERE refers_to IS NOT NULL;

-- Every status Meta reported, first report kept.  A status may arrive
-- before its message: it waits here and is applied when the message
-- arrives.  A message's status columns are derived from this table.
CREATE TABLE message_statuses (
    wamid                 text NOT NULL,
    status                text NOT NULL,
    at                    timestamptz NOT NULL,
    phone_number_id       text NOT NULL,
    recipient_id          text,
    meta_conversation_id  text,
    pricing_category      text,
    error_code            integer,
    error_title           text,
    raw                   jsonb NOT NULL,
    PRIMARY KEY (wamid, status)
);

CREATE TABLE templates (
    waba_id               text NOT NULL,
    template_id           text NOT NULL,
    name                  text,
    language              text,
    category              text,
    status                text,
    quality_score         text,
    reason                text,
    updated_at            timestamptz,
    PRIMARY KEY (waba_id, template_id)
);

-- the other webhook fields (account_update, template updates, phone
-- quality, ...), one row per distinct change
CREATE TABLE field_events (
    waba_id               text NOT NULL,
    field                 text NOT NULL,
    at                    timestamptz,
    value                 jsonb NOT NULL,
    value_md5             text NOT NULL,
    PRIMARY KEY (waba_id, field, value_md5)
);

-- Every raw delivery as received, with its processing result; one
-- partition a day so retention is DROP TABLE (wa_webhook_log_retain).
CREATE TABLE webhook_log (
    received_at           timestamptz NOT NULL,
    stream_id             text NOT NULL,
    request_id            text,
    body                  bytea NOT NULL,     -- the bytes received
    result                text NOT NULL,      -- ok, unknown, invalid, dead
    error                 text,
    PRIMARY KEY (stream_id, received_at)
) PARTITION BY RANGE (received_at);

CREATE TABLE webhook_log_default PARTITION OF webhook_log DEFAULT;

-- Realtime events committed with the data that caused them, published to
-- Redis after commit (transactional outbox: nothing published is lost
-- with a crash between commit and publish).  One row per transaction,
-- not one per event: a batch of 500 webhook events made 500 to 1,000
-- rows to insert, read back and delete, a third of the worker's time in
-- PostgreSQL (bench/README.md).  `events` holds the transaction's events
-- in order, one line each: the event name, a tab, the data's JSON
-- (PostgreSQL's JSON output never contains a raw newline), a newline.
-- A row the worker did not publish (Redis away, a crash between commit
-- and publish) is published by a later sweep: its owner's at once,
-- another worker's once it is older than the claim idle time (the owner
-- is gone), rows without an owner (written by the API) by whichever
-- worker sweeps first.
CREATE TABLE update_outbox (
    id                    bigserial PRIMARY KEY,
    -- lz4: pglz took a third of the time of writing a batch's row
    events                text COMPRESSION lz4 NOT NULL,
    owner                 text,               -- the worker (consumer name)
    created_at            timestamptz NOT NULL DEFAULT now()
);
