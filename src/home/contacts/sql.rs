//! SQL of contacts: rows with their numbers, emails and aliases; caller identification; and
//! re-linking conversations to the contact their address belongs to.

use rusqlite::{params, Connection, OptionalExtension};

use super::phone::{self, Region};
use super::{fold, Contact, Email, Phone, Valid};
use crate::domain::{PhoneNumber, Trust, UnixMillis};
use crate::store::StoreError;

const COLS: &str =
    "id, uid, display_name, given_name, family_name, notes, trust, created_at, updated_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Contact> {
    let trust: String = r.get(6)?;
    Ok(Contact {
        id: r.get(0)?,
        uid: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        display_name: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
        given_name: r.get(3)?,
        family_name: r.get(4)?,
        notes: r.get(5)?,
        trust: Trust::parse(&trust).unwrap_or(Trust::Unknown),
        aliases: Vec::new(),
        phones: Vec::new(),
        emails: Vec::new(),
        created_at: UnixMillis(r.get(7)?),
        updated_at: UnixMillis(r.get(8)?),
    })
}

fn fill(conn: &Connection, c: &mut Contact) -> Result<(), StoreError> {
    c.phones = conn
        .prepare_cached(
            "SELECT number, label FROM contact_phones WHERE contact_id = ?1 ORDER BY position, id",
        )?
        .query_map([c.id], |r| {
            Ok(Phone {
                number: r.get(0)?,
                label: r.get(1)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    c.emails = conn
        .prepare_cached(
            "SELECT address, label FROM contact_emails WHERE contact_id = ?1 ORDER BY position, id",
        )?
        .query_map([c.id], |r| {
            Ok(Email {
                address: r.get(0)?,
                label: r.get(1)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    c.aliases = conn
        .prepare_cached("SELECT alias FROM contact_aliases WHERE contact_id = ?1 ORDER BY id")?
        .query_map([c.id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(())
}

/// One contact with everything it has.
pub fn get(conn: &Connection, id: i64) -> Result<Option<Contact>, StoreError> {
    let c = conn
        .prepare_cached(&format!("SELECT {COLS} FROM contacts WHERE id = ?1"))?
        .query_row([id], row)
        .optional()?;
    match c {
        Some(mut c) => {
            fill(conn, &mut c)?;
            Ok(Some(c))
        }
        None => Ok(None),
    }
}

/// The id of the contact with this UID.
pub fn id_by_uid(conn: &Connection, uid: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id FROM contacts WHERE uid = ?1")?
        .query_row([uid], |r| r.get(0))
        .optional()?)
}

/// A page of contacts by name, optionally only those whose names, aliases, numbers or emails
/// contain `q`; and the total that matched.
pub fn list(
    conn: &Connection,
    q: Option<&str>,
    limit: usize,
    offset: usize,
) -> Result<(Vec<Contact>, i64), StoreError> {
    let pattern = q.map(|q| {
        let f = fold(q);
        // Digits of a number as typed ("555 01") match stored E.164 numbers too.
        format!("%{}%", f.replace(['%', '_'], ""))
    });
    let digits = q
        .map(|q| q.chars().filter(char::is_ascii_digit).collect::<String>())
        .filter(|d| d.len() >= 3)
        .map(|d| format!("%{d}%"));
    let filter = "(?1 IS NULL OR search LIKE ?1 OR (?2 IS NOT NULL AND id IN
                    (SELECT contact_id FROM contact_phones WHERE number LIKE ?2)))";
    let total: i64 = conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM contacts WHERE display_name IS NOT NULL AND {filter}"
        ))?
        .query_row(params![pattern, digits], |r| r.get(0))?;
    let mut items: Vec<Contact> = conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM contacts WHERE display_name IS NOT NULL AND {filter}
              ORDER BY lower(display_name), id LIMIT ?3 OFFSET ?4"
        ))?
        .query_map(
            params![
                pattern,
                digits,
                i64::try_from(limit).unwrap_or(i64::MAX),
                i64::try_from(offset).unwrap_or(i64::MAX)
            ],
            row,
        )?
        .collect::<Result<_, _>>()?;
    for c in &mut items {
        fill(conn, c)?;
    }
    Ok((items, total))
}

/// Every contact (for export), by name.
pub fn all(conn: &Connection) -> Result<Vec<Contact>, StoreError> {
    Ok(list(conn, None, usize::MAX >> 1, 0)?.0)
}

/// Contacts whose display name, given or family name, or an alias is `name` (case-folded;
/// "my", "the" and a possessive "'s" are ignored); if none is, those whose name has a word
/// starting with it. Best match first.
pub fn find_by_name(conn: &Connection, name: &str) -> Result<Vec<Contact>, StoreError> {
    let mut f = fold(name);
    for prefix in ["my ", "the "] {
        if let Some(rest) = f.strip_prefix(prefix) {
            f = rest.trim().to_owned();
        }
    }
    for suffix in ["'s", "’s"] {
        if let Some(rest) = f.strip_suffix(suffix) {
            f = rest.to_owned();
        }
    }
    if f.is_empty() {
        return Ok(Vec::new());
    }
    // Rank: 0 alias, 1 display name, 2 given, 3 family, 4 a word of the name starts with it.
    let ids: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM (
               SELECT contact_id AS id, 0 AS rank FROM contact_aliases WHERE folded = ?1
               UNION ALL SELECT id, 1 FROM contacts WHERE folded_name = ?1
               UNION ALL SELECT id, 2 FROM contacts WHERE folded_given = ?1 AND folded_given != ''
               UNION ALL SELECT id, 3 FROM contacts WHERE folded_family = ?1 AND folded_family != ''
               UNION ALL SELECT id, 4 FROM contacts
                  WHERE (' ' || folded_name) LIKE ('% ' || ?2 || '%') OR folded_aliases LIKE ('%|' || ?2 || '%'))
             GROUP BY id ORDER BY min(rank), id",
        )?
        .query_map(params![f, f.replace(['%', '_'], "")], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    // Exact matches hide prefix matches.
    let mut out = Vec::new();
    for id in ids {
        if let Some(c) = get(conn, id)? {
            out.push(c);
        }
    }
    let exact: Vec<Contact> = out
        .iter()
        .filter(|c| {
            fold(&c.display_name) == f
                || fold(&c.given_name) == f
                || fold(&c.family_name) == f
                || c.aliases.iter().any(|a| fold(a) == f)
        })
        .cloned()
        .collect();
    Ok(if exact.is_empty() { out } else { exact })
}

/// A conflict with another contact: (field, message).
pub type Conflict = (String, String);

/// Check that `v`'s numbers, emails and UID belong to no contact but `own` (nothing written).
pub fn conflicts(
    conn: &Connection,
    v: &Valid,
    own: Option<i64>,
) -> Result<Option<Conflict>, StoreError> {
    let owner_of = |sql: &str, value: &str| -> Result<Option<(i64, String)>, StoreError> {
        Ok(conn
            .prepare_cached(sql)?
            .query_row([value], |r| {
                Ok((
                    r.get(0)?,
                    r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                ))
            })
            .optional()?)
    };
    let taken = |field: String, value: &str, hit: Option<(i64, String)>| -> Option<Conflict> {
        match hit {
            Some((id, name)) if Some(id) != own => Some((
                field,
                format!("{value} already belongs to contact {id} ({name:?})"),
            )),
            _ => None,
        }
    };
    if let Some(phones) = &v.phones {
        for (i, p) in phones.iter().enumerate() {
            let hit = owner_of(
                "SELECT c.id, c.display_name FROM contact_phones p JOIN contacts c ON c.id = p.contact_id WHERE p.number = ?1",
                &p.number,
            )?;
            if let Some(c) = taken(format!("phones[{i}].number"), &p.number, hit) {
                return Ok(Some(c));
            }
        }
    }
    if let Some(emails) = &v.emails {
        for (i, e) in emails.iter().enumerate() {
            let hit = owner_of(
                "SELECT c.id, c.display_name FROM contact_emails e JOIN contacts c ON c.id = e.contact_id WHERE e.address = ?1",
                &e.address,
            )?;
            if let Some(c) = taken(format!("emails[{i}].address"), &e.address, hit) {
                return Ok(Some(c));
            }
        }
    }
    if let Some(uid) = &v.uid {
        let hit = owner_of("SELECT id, display_name FROM contacts WHERE uid = ?1", uid)?;
        if let Some(c) = taken("uid".into(), uid, hit) {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Insert a validated contact (conflicts already checked); returns its id.
pub fn insert(conn: &Connection, v: &Valid, now: UnixMillis) -> Result<i64, StoreError> {
    let uid = v
        .uid
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO contacts (display_name, given_name, family_name, notes, trust, uid, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING id",
        )?
        .query_row(
            params![
                v.display_name.as_deref().unwrap_or(""),
                v.given_name.as_deref().unwrap_or(""),
                v.family_name.as_deref().unwrap_or(""),
                v.notes.as_deref().unwrap_or(""),
                v.trust.unwrap_or(Trust::Known).as_str(),
                uid,
                now.0
            ],
            |r| r.get(0),
        )?;
    write_parts(conn, id, v)?;
    Ok(id)
}

/// Apply a validated change to contact `id` (conflicts already checked). `false` if absent.
pub fn update(conn: &Connection, id: i64, v: &Valid, now: UnixMillis) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE contacts SET display_name = coalesce(?2, display_name),
                                 given_name = coalesce(?3, given_name),
                                 family_name = coalesce(?4, family_name),
                                 notes = coalesce(?5, notes),
                                 trust = coalesce(?6, trust),
                                 uid = coalesce(?7, uid),
                                 updated_at = ?8
              WHERE id = ?1",
        )?
        .execute(params![
            id,
            v.display_name,
            v.given_name,
            v.family_name,
            v.notes,
            v.trust.map(Trust::as_str),
            v.uid,
            now.0
        ])?;
    if n == 0 {
        return Ok(false);
    }
    write_parts(conn, id, v)?;
    Ok(true)
}

fn write_parts(conn: &Connection, id: i64, v: &Valid) -> Result<(), StoreError> {
    if let Some(phones) = &v.phones {
        conn.prepare_cached("DELETE FROM contact_phones WHERE contact_id = ?1")?
            .execute([id])?;
        for (i, p) in phones.iter().enumerate() {
            conn.prepare_cached(
                "INSERT INTO contact_phones (contact_id, number, label, position) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, p.number, p.label, i64::try_from(i).unwrap_or(0)])?;
        }
        // The first number is mirrored into contacts.phone (the column of the first schema).
        conn.prepare_cached("UPDATE contacts SET phone = ?2 WHERE id = ?1")?
            .execute(params![id, phones.first().map(|p| p.number.as_str())])?;
    }
    if let Some(emails) = &v.emails {
        conn.prepare_cached("DELETE FROM contact_emails WHERE contact_id = ?1")?
            .execute([id])?;
        for (i, e) in emails.iter().enumerate() {
            conn.prepare_cached(
                "INSERT INTO contact_emails (contact_id, address, label, position) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, e.address, e.label, i64::try_from(i).unwrap_or(0)])?;
        }
    }
    if let Some(aliases) = &v.aliases {
        conn.prepare_cached("DELETE FROM contact_aliases WHERE contact_id = ?1")?
            .execute([id])?;
        for a in aliases {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO contact_aliases (contact_id, alias, folded) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id, a, fold(a)])?;
        }
    }
    refresh_search(conn, id)
}

/// Recompute the folded search columns of a contact.
fn refresh_search(conn: &Connection, id: i64) -> Result<(), StoreError> {
    let Some(c) = get(conn, id)? else {
        return Ok(());
    };
    let aliases: String = c.aliases.iter().map(|a| format!("|{}", fold(a))).collect();
    let search = [
        fold(&c.display_name),
        fold(&c.given_name),
        fold(&c.family_name),
        aliases.clone(),
        c.emails
            .iter()
            .map(|e| e.address.clone())
            .collect::<Vec<_>>()
            .join(" "),
        c.phones
            .iter()
            .map(|p| p.number.clone())
            .collect::<Vec<_>>()
            .join(" "),
    ]
    .join(" ");
    conn.prepare_cached(
        "UPDATE contacts SET folded_name = ?2, folded_given = ?3, folded_family = ?4,
                             folded_aliases = ?5, search = ?6 WHERE id = ?1",
    )?
    .execute(params![
        id,
        fold(&c.display_name),
        fold(&c.given_name),
        fold(&c.family_name),
        aliases,
        search
    ])?;
    Ok(())
}

/// Delete a contact (its conversations keep their messages and lose the link).
pub fn delete(conn: &Connection, id: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("DELETE FROM contacts WHERE id = ?1")?
        .execute([id])?
        > 0)
}

/// What a channel address says about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A phone number (E.164).
    Phone(PhoneNumber),
    /// An email address (lowercase).
    Email(String),
    /// A SIP user name without a number ("anna" of `sip:anna@pbx`): matched against aliases.
    Name(String),
    /// Nothing to match (the API's own token holder, a channel-internal name).
    None,
}

/// Read a channel address: `+15551234567`, `tel:…`, `sip:+1555…@gw`, `sip:anna@pbx`,
/// `anna@example.org`, or a national number when a default region is given.
pub fn classify(address: &str, region: Option<Region>) -> Address {
    let a = address.trim();
    let lower = a.to_ascii_lowercase();
    let (sip, rest) = if let Some(r) = lower.strip_prefix("sips:").or(lower.strip_prefix("sip:")) {
        (true, r.to_owned())
    } else if let Some(r) = lower.strip_prefix("tel:") {
        (false, r.to_owned())
    } else if let Some(r) = lower.strip_prefix("mailto:") {
        return Address::Email(r.to_owned());
    } else {
        (false, lower.clone())
    };
    let rest = rest.split(';').next().unwrap_or("").to_owned();
    let user = rest.split('@').next().unwrap_or("").to_owned();
    let as_phone = |s: &str| -> Option<PhoneNumber> {
        if let Ok(p) = PhoneNumber::parse(s) {
            return Some(p);
        }
        let digits = s.chars().filter(char::is_ascii_digit).count();
        if digits >= 3
            && s.chars()
                .all(|c| c.is_ascii_digit() || " -.()+".contains(c))
        {
            return region.and_then(|r| phone::normalize(s, r).ok());
        }
        None
    };
    if let Some(p) = as_phone(&user) {
        return Address::Phone(p);
    }
    if sip {
        if user.is_empty() {
            return Address::None;
        }
        return Address::Name(user);
    }
    if rest.contains('@') {
        return Address::Email(rest);
    }
    Address::None
}

/// The contact (id, trust) an address belongs to, if any.
pub fn identify(
    conn: &Connection,
    address: &str,
    region: Option<Region>,
) -> Result<Option<(i64, Trust)>, StoreError> {
    let one = |sql: &str, value: &str| -> Result<Option<(i64, Trust)>, StoreError> {
        let rows: Vec<(i64, String)> = conn
            .prepare_cached(sql)?
            .query_map([value], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        // An alias two contacts share identifies nobody.
        Ok(match rows.as_slice() {
            [(id, t)] => Some((*id, Trust::parse(t).unwrap_or(Trust::Unknown))),
            _ => None,
        })
    };
    match classify(address, region) {
        Address::Phone(p) => one(
            "SELECT c.id, c.trust FROM contact_phones p JOIN contacts c ON c.id = p.contact_id WHERE p.number = ?1",
            p.as_str(),
        ),
        Address::Email(e) => {
            let hit = one(
                "SELECT c.id, c.trust FROM contact_emails e JOIN contacts c ON c.id = e.contact_id WHERE e.address = ?1",
                &e,
            )?;
            match hit {
                Some(h) => Ok(Some(h)),
                None => one(
                    "SELECT DISTINCT c.id, c.trust FROM contact_aliases a JOIN contacts c ON c.id = a.contact_id WHERE a.folded = ?1",
                    e.split('@').next().unwrap_or(""),
                ),
            }
        }
        Address::Name(n) => one(
            "SELECT DISTINCT c.id, c.trust FROM contact_aliases a JOIN contacts c ON c.id = a.contact_id WHERE a.folded = ?1",
            &fold(&n),
        ),
        Address::None => Ok(None),
    }
}

/// Point every conversation that has no contact, or one of `changed`, at the contact its
/// address now belongs to. Returns how many conversations changed.
pub fn relink(
    conn: &Connection,
    region: Option<Region>,
    changed: &[i64],
) -> Result<usize, StoreError> {
    let ids = serde_json::to_string(changed).unwrap_or_else(|_| "[]".into());
    let convs: Vec<(i64, String, Option<i64>)> = conn
        .prepare_cached(
            "SELECT id, address, contact_id FROM conversations
              WHERE contact_id IS NULL OR contact_id IN (SELECT value FROM json_each(?1))",
        )?
        .query_map([ids], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut n = 0;
    for (id, address, current) in convs {
        let now = identify(conn, &address, region)?.map(|(c, _)| c);
        if now != current {
            conn.prepare_cached("UPDATE conversations SET contact_id = ?2 WHERE id = ?1")?
                .execute(params![id, now])?;
            n += 1;
        }
    }
    Ok(n)
}
