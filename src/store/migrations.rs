//! Versioned schema migrations, applied in order at start and by `local-assistant init-db`.
//!
//! The schema version is SQLite's `user_version`. Each migration runs in its own transaction
//! together with the version bump, so a crash mid-migration leaves the previous version.
//! Append new migrations; never edit one that has shipped.

use rusqlite::Connection;

use super::StoreError;

/// The migrations, in order; migration `i` brings the schema to version `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the core schema.
    r#"
    CREATE TABLE contacts (
        id           INTEGER PRIMARY KEY,
        display_name TEXT,
        phone        TEXT UNIQUE,
        trust        TEXT NOT NULL DEFAULT 'unknown'
                     CHECK (trust IN ('owner', 'household', 'known', 'unknown')),
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
    );
    CREATE TABLE conversations (
        id              INTEGER PRIMARY KEY,
        channel         TEXT NOT NULL,
        address         TEXT NOT NULL,
        contact_id      INTEGER REFERENCES contacts(id) ON DELETE SET NULL,
        created_at      INTEGER NOT NULL,
        last_message_at INTEGER NOT NULL,
        UNIQUE (channel, address)
    );
    CREATE INDEX conversations_recent ON conversations (last_message_at DESC, id DESC);
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        channel         TEXT NOT NULL,
        direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
        body            TEXT NOT NULL,
        media           TEXT NOT NULL DEFAULT '[]',
        status          TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages (conversation_id, id);
    CREATE TABLE inbox (
        id              INTEGER PRIMARY KEY,
        channel         TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        request_hash    TEXT NOT NULL,
        message_id      INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        status          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'processing', 'done', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        received_at     INTEGER NOT NULL,
        processed_at    INTEGER,
        UNIQUE (channel, idempotency_key)
    );
    CREATE INDEX inbox_by_status ON inbox (status, id);
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        channel         TEXT NOT NULL,
        recipient       TEXT NOT NULL,
        payload         TEXT NOT NULL,
        message_id      INTEGER REFERENCES messages(id) ON DELETE SET NULL,
        status          TEXT NOT NULL
                        CHECK (status IN ('pending', 'delivering', 'delivered', 'dead')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        max_attempts    INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        delivered_at    INTEGER
    );
    CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
    CREATE TABLE audit_log (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        subject TEXT,
        detail  TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE heartbeat (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        at INTEGER NOT NULL
    );
    INSERT INTO heartbeat (id, at) VALUES (1, 0);
    "#,
    // 2: the Brain: conversation sessions, turns, reminders and timers.
    r#"
    CREATE TABLE sessions (
        conversation_id INTEGER PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
        kind            TEXT NOT NULL DEFAULT 'text' CHECK (kind IN ('text', 'voice', 'call')),
        state           TEXT NOT NULL,
        pending         TEXT,
        updated_at      INTEGER NOT NULL
    );
    CREATE TABLE turns (
        id                  INTEGER PRIMARY KEY,
        conversation_id     INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        inbound_message_id  INTEGER REFERENCES messages(id) ON DELETE SET NULL,
        reply_message_id    INTEGER REFERENCES messages(id) ON DELETE SET NULL,
        intent              TEXT,
        tool_calls          TEXT NOT NULL DEFAULT '[]',
        outcome             TEXT NOT NULL,
        engine              TEXT NOT NULL,
        nlu_us              INTEGER NOT NULL,
        first_chunk_us      INTEGER,
        total_us            INTEGER NOT NULL,
        created_at          INTEGER NOT NULL
    );
    CREATE INDEX turns_by_conversation ON turns (conversation_id, id);
    CREATE TABLE reminders (
        id                INTEGER PRIMARY KEY,
        kind              TEXT NOT NULL CHECK (kind IN ('reminder', 'timer')),
        conversation_id   INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        text              TEXT NOT NULL,
        due_at            INTEGER NOT NULL,
        timezone          TEXT NOT NULL,
        rule              TEXT,
        status            TEXT NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'done', 'cancelled')),
        fire_count        INTEGER NOT NULL DEFAULT 0,
        source_message_id INTEGER UNIQUE REFERENCES messages(id) ON DELETE SET NULL,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    );
    CREATE INDEX reminders_due ON reminders (status, due_at);
    "#,
    // Memory: remembered facts with their sentence embeddings (little-endian f32).
    // `contact_id` has no foreign key: erasing a contact's memories is an explicit act
    // (`DELETE /api/v1/memories?contact_id=`), and the search index mirrors this table.
    r#"
    CREATE TABLE memories (
        id                INTEGER PRIMARY KEY,
        text              TEXT NOT NULL,
        contact_id        INTEGER,
        conversation_id   INTEGER REFERENCES conversations(id) ON DELETE SET NULL,
        source_message_id INTEGER UNIQUE REFERENCES messages(id) ON DELETE SET NULL,
        tags              TEXT NOT NULL DEFAULT '[]',
        model             TEXT NOT NULL,
        embedding         BLOB NOT NULL,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    );
    CREATE INDEX memories_by_contact ON memories (contact_id, id);
    "#,
    // CalDAV sync state (home::caldav): one row per synced event, keyed by its UID.
    r#"
    CREATE TABLE caldav_items (
        uid           TEXT PRIMARY KEY,
        href          TEXT NOT NULL UNIQUE,
        etag          TEXT,
        local_version INTEGER NOT NULL,
        synced_at     INTEGER NOT NULL
    );
    CREATE TABLE caldav_sync (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        collection     TEXT NOT NULL,
        local_version  INTEGER NOT NULL DEFAULT 0,
        ctag           TEXT,
        last_sync_at   INTEGER,
        last_error     TEXT
    );
    "#,
    // Contacts (names, aliases, several numbers and emails, notes, vCard UID) and reminder
    // delivery targets and snooze.
    r#"
    ALTER TABLE contacts ADD COLUMN given_name  TEXT NOT NULL DEFAULT '';
    ALTER TABLE contacts ADD COLUMN family_name TEXT NOT NULL DEFAULT '';
    ALTER TABLE contacts ADD COLUMN notes       TEXT NOT NULL DEFAULT '';
    ALTER TABLE contacts ADD COLUMN uid         TEXT;
    -- Case-folded names for lookups by name ("mom", "Anna"), kept by the contacts service.
    ALTER TABLE contacts ADD COLUMN folded_name    TEXT NOT NULL DEFAULT '';
    ALTER TABLE contacts ADD COLUMN folded_given   TEXT NOT NULL DEFAULT '';
    ALTER TABLE contacts ADD COLUMN folded_family  TEXT NOT NULL DEFAULT '';
    ALTER TABLE contacts ADD COLUMN folded_aliases TEXT NOT NULL DEFAULT '';
    ALTER TABLE contacts ADD COLUMN search         TEXT NOT NULL DEFAULT '';
    CREATE INDEX contacts_folded_name ON contacts (folded_name);
    CREATE UNIQUE INDEX contacts_uid ON contacts (uid) WHERE uid IS NOT NULL;
    CREATE TABLE contact_phones (
        id         INTEGER PRIMARY KEY,
        contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
        number     TEXT NOT NULL UNIQUE,
        label      TEXT NOT NULL DEFAULT 'mobile',
        position   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX contact_phones_by_contact ON contact_phones (contact_id, position);
    CREATE TABLE contact_emails (
        id         INTEGER PRIMARY KEY,
        contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
        address    TEXT NOT NULL UNIQUE,
        label      TEXT NOT NULL DEFAULT 'home',
        position   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX contact_emails_by_contact ON contact_emails (contact_id, position);
    CREATE TABLE contact_aliases (
        id         INTEGER PRIMARY KEY,
        contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
        alias      TEXT NOT NULL,
        folded     TEXT NOT NULL,
        UNIQUE (contact_id, folded)
    );
    CREATE INDEX contact_aliases_folded ON contact_aliases (folded);
    -- Senders used to be stored as nameless contacts; a contact is now only what someone
    -- entered. Conversations keep their address and lose the empty link.
    DELETE FROM contacts WHERE display_name IS NULL AND trust = 'unknown';
    INSERT INTO contact_phones (contact_id, number, label)
        SELECT id, phone, 'mobile' FROM contacts WHERE phone IS NOT NULL;
    UPDATE contacts SET uid = lower(hex(randomblob(16))) WHERE uid IS NULL;
    UPDATE contacts SET folded_name = lower(display_name), search = lower(display_name) || ' ' || coalesce(phone, '');

    ALTER TABLE reminders ADD COLUMN target_channel TEXT;
    ALTER TABLE reminders ADD COLUMN target_address TEXT;
    ALTER TABLE reminders ADD COLUMN snooze_count   INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE reminders ADD COLUMN last_fired_at  INTEGER;
    CREATE INDEX reminders_by_conversation ON reminders (conversation_id, status, due_at);
    "#,
    // Calendar: appointments (RFC 5545 events) with a change feed for CalDAV sync. Every row
    // carries a version from one global counter bumped on each local change; a delete keeps
    // the row as a tombstone (`deleted = 1`).
    r#"
    CREATE TABLE calendar_clock (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL
    );
    INSERT INTO calendar_clock (id, version) VALUES (1, 0);
    CREATE TABLE calendar_events (
        id                INTEGER PRIMARY KEY,
        uid               TEXT NOT NULL UNIQUE,
        version           INTEGER NOT NULL,
        deleted           INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
        title             TEXT NOT NULL,
        start_at          INTEGER NOT NULL,
        end_at            INTEGER NOT NULL,
        timezone          TEXT NOT NULL,
        all_day           INTEGER NOT NULL DEFAULT 0,
        rrule             TEXT,
        last_end_at       INTEGER,
        body              TEXT NOT NULL,
        source_message_id INTEGER UNIQUE REFERENCES messages(id) ON DELETE SET NULL,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    );
    CREATE INDEX calendar_events_by_version ON calendar_events (version);
    CREATE INDEX calendar_events_by_time ON calendar_events (deleted, start_at);
    "#,
    // Tasks: taskchampion's replica (tasks as key/value maps, the operations log for sync, the
    // working set, sync metadata), written by `home::tasks::storage`.
    r#"
    CREATE TABLE tc_tasks (
        uuid TEXT PRIMARY KEY,
        data TEXT NOT NULL
    );
    CREATE TABLE tc_operations (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid   TEXT,
        data   TEXT NOT NULL,
        synced INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX tc_operations_by_uuid ON tc_operations (uuid);
    CREATE INDEX tc_operations_by_synced ON tc_operations (synced, id);
    CREATE TABLE tc_working_set (
        idx  INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL
    );
    CREATE TABLE tc_sync_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // Appointment alarms that fired (home::calendar::alarms): one row per event, instance start
    // and lead time, written in the transaction that delivers the alarm.
    r#"
    CREATE TABLE calendar_alarms (
        uid           TEXT NOT NULL,
        occurrence_at INTEGER NOT NULL,
        minutes       INTEGER NOT NULL,
        fired_at      INTEGER NOT NULL,
        PRIMARY KEY (uid, occurrence_at, minutes)
    ) WITHOUT ROWID;
    CREATE INDEX calendar_alarms_by_time ON calendar_alarms (occurrence_at);
    "#,
    // 9: local voice turns with their timings (ms since the Unix epoch; latencies in ms).
    r#"
    CREATE TABLE voice_turns (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER REFERENCES conversations(id) ON DELETE SET NULL,
        message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
        trigger TEXT NOT NULL CHECK (trigger IN ('wake', 'button', 'follow_up')),
        wake_model TEXT,
        transcript TEXT NOT NULL,
        reply TEXT NOT NULL,
        outcome TEXT NOT NULL,
        triggered_at INTEGER NOT NULL,
        speech_end_at INTEGER,
        stt_ms REAL,
        first_text_ms REAL,
        first_audio_ms REAL,
        response_ms REAL
    );
    CREATE INDEX voice_turns_by_time ON voice_turns (triggered_at);
    "#,
    // 10: what a telephony provider (Twilio, Vonage) calls our messages and calls, and the
    // delivery state its status callbacks report.
    r#"
    CREATE TABLE provider_items (
        provider TEXT NOT NULL,
        sid TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('message', 'call')),
        outbox_id INTEGER,
        message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
        address TEXT NOT NULL,
        status TEXT NOT NULL,
        error_code TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (provider, sid)
    ) WITHOUT ROWID;
    CREATE INDEX provider_items_by_outbox ON provider_items (outbox_id);
    "#,
];

/// The schema version this binary writes.
pub fn latest_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// The database's current schema version.
pub fn current_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Apply every pending migration; returns how many ran. Re-running is a no-op.
pub fn migrate(conn: &mut Connection) -> Result<usize, StoreError> {
    let current = current_version(conn)?;
    let latest = latest_version();
    if current > latest {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: latest,
        });
    }
    let mut applied = 0;
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let version = i64::try_from(i + 1).unwrap_or(i64::MAX);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Migration { version, source: e })?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        applied += 1;
    }
    Ok(applied)
}
