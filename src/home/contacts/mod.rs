//! Contacts: names, aliases ("mom"), phone numbers normalised to E.164 with a default region,
//! emails, notes and a trust level that routing uses; caller identification for every
//! channel; vCard import and export.
//!
//! Invariants: a phone number or email belongs to at most one contact (the database enforces
//! it); every write re-links the conversations whose address belongs to the changed contacts
//! in the same transaction, so `conversations.contact_id` (and with it the sender's trust) is
//! never stale; an import is all or nothing. Contacts never talk to channels: channels and
//! the inbox ask [`identify`](sql::identify) who an address is.

pub mod phone;
pub mod sql;
pub mod tools;
pub mod vcard;

use std::sync::Arc;

use crate::domain::{Trust, UnixMillis};
use crate::events::{EventBus, EventKind};
use crate::store::{Store, StoreError};
pub use phone::{PhoneError, Region};

/// Labels a phone number may carry.
pub const PHONE_LABELS: &[&str] = &["mobile", "home", "work", "main", "fax", "pager", "other"];
/// Labels an email may carry.
pub const EMAIL_LABELS: &[&str] = &["home", "work", "other"];

/// A phone number of a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    /// E.164.
    pub number: String,
    /// One of [`PHONE_LABELS`].
    pub label: String,
}

/// An email address of a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The address (lowercase).
    pub address: String,
    /// One of [`EMAIL_LABELS`].
    pub label: String,
}

/// A stored contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Id.
    pub id: i64,
    /// Stable id for vCard round trips.
    pub uid: String,
    /// The name shown and said.
    pub display_name: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Other names people use ("mom", "Annie").
    pub aliases: Vec<String>,
    /// Phone numbers, first is primary.
    pub phones: Vec<Phone>,
    /// Emails.
    pub emails: Vec<Email>,
    /// Free text.
    pub notes: String,
    /// Trust level routing applies to this contact.
    pub trust: Trust,
    /// Created.
    pub created_at: UnixMillis,
    /// Last changed.
    pub updated_at: UnixMillis,
}

/// A phone number as given (any format) with its label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhoneInput {
    /// As typed: "(202) 555-0143", "+49 30 901820", …
    pub number: String,
    /// Label (default `mobile`).
    pub label: Option<String>,
}

/// An email as given, with its label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmailInput {
    /// Address.
    pub address: String,
    /// Label (default `home`).
    pub label: Option<String>,
}

/// A new contact or a change to one: `None` leaves a field as it is (a new contact gets
/// the defaults: empty, trust `known`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactInput {
    /// Display name (required for a new contact unless given/family name is set).
    pub display_name: Option<String>,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Aliases (replaces all).
    pub aliases: Option<Vec<String>>,
    /// Phone numbers (replaces all).
    pub phones: Option<Vec<PhoneInput>>,
    /// Emails (replaces all).
    pub emails: Option<Vec<EmailInput>>,
    /// Notes.
    pub notes: Option<String>,
    /// Trust.
    pub trust: Option<Trust>,
    /// vCard UID (generated for a new contact when absent).
    pub uid: Option<String>,
}

/// A validated input: numbers in E.164, labels checked, names trimmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Valid {
    /// Display name.
    pub display_name: Option<String>,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Aliases.
    pub aliases: Option<Vec<String>>,
    /// Numbers.
    pub phones: Option<Vec<Phone>>,
    /// Emails.
    pub emails: Option<Vec<Email>>,
    /// Notes.
    pub notes: Option<String>,
    /// Trust.
    pub trust: Option<Trust>,
    /// UID.
    pub uid: Option<String>,
}

/// Why a contact operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// A field is invalid; nothing was stored.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, e.g. `phones[1].number`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A number, email or UID belongs to another contact; nothing was stored.
    #[error("{field}: {message}")]
    Conflict {
        /// The field.
        field: String,
        /// Which contact has it.
        message: String,
    },
    /// No such contact.
    #[error("contact {0} not found")]
    NotFound(i64),
    /// A vCard file could not be read or a card in it is invalid; nothing was imported.
    #[error("{0}; nothing was imported")]
    VCard(#[from] vcard::VCardError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ContactError {
    ContactError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Case-fold a name for matching ("Mom " → "mom").
pub fn fold(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn text_field(field: &str, v: Option<&String>, max: usize) -> Result<Option<String>, ContactError> {
    match v {
        None => Ok(None),
        Some(s) => {
            let t = s.trim();
            if t.chars().count() > max {
                return Err(invalid(field, format!("must be at most {max} characters")));
            }
            if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                return Err(invalid(field, "must not contain control characters"));
            }
            Ok(Some(t.to_owned()))
        }
    }
}

/// Validate `input` (for a new contact when `new`), normalising numbers in `region`.
pub fn validate(input: &ContactInput, region: Region, new: bool) -> Result<Valid, ContactError> {
    let mut v = Valid {
        display_name: text_field("display_name", input.display_name.as_ref(), 200)?,
        given_name: text_field("given_name", input.given_name.as_ref(), 200)?,
        family_name: text_field("family_name", input.family_name.as_ref(), 200)?,
        notes: text_field("notes", input.notes.as_ref(), 10_000)?,
        trust: input.trust,
        ..Valid::default()
    };
    if v.display_name.as_deref() == Some("") {
        if new {
            v.display_name = None;
        } else {
            return Err(invalid("display_name", "must not be empty"));
        }
    }
    if new && v.display_name.is_none() {
        let built = [v.given_name.as_deref(), v.family_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if built.is_empty() {
            return Err(invalid(
                "display_name",
                "is required (or give given_name / family_name)",
            ));
        }
        v.display_name = Some(built);
    }
    if let Some(uid) = &input.uid {
        let u = uid.trim();
        if u.is_empty() || u.len() > 200 || u.chars().any(char::is_control) {
            return Err(invalid("uid", "must be 1-200 printable characters"));
        }
        v.uid = Some(u.to_owned());
    }
    if let Some(aliases) = &input.aliases {
        let mut out: Vec<String> = Vec::new();
        for (i, a) in aliases.iter().enumerate() {
            let field = format!("aliases[{i}]");
            let a = text_field(&field, Some(a), 100)?.unwrap_or_default();
            if a.is_empty() {
                return Err(invalid(field, "must not be empty"));
            }
            if !out.iter().any(|o| fold(o) == fold(&a)) {
                out.push(a);
            }
        }
        v.aliases = Some(out);
    }
    if let Some(phones) = &input.phones {
        let mut out: Vec<Phone> = Vec::new();
        for (i, p) in phones.iter().enumerate() {
            let number = phone::normalize(&p.number, region)
                .map_err(|e| invalid(format!("phones[{i}].number"), e.to_string()))?;
            let label = p.label.as_deref().unwrap_or("mobile").trim().to_lowercase();
            if !PHONE_LABELS.contains(&label.as_str()) {
                return Err(invalid(
                    format!("phones[{i}].label"),
                    format!("must be one of {}; got {label:?}", PHONE_LABELS.join(", ")),
                ));
            }
            if !out.iter().any(|o| o.number == number.as_str()) {
                out.push(Phone {
                    number: number.as_str().to_owned(),
                    label,
                });
            }
        }
        v.phones = Some(out);
    }
    if let Some(emails) = &input.emails {
        let mut out: Vec<Email> = Vec::new();
        for (i, e) in emails.iter().enumerate() {
            let field = format!("emails[{i}].address");
            let address = e.address.trim().to_lowercase();
            let ok = address.len() <= 254
                && !address.chars().any(|c| c.is_whitespace() || c.is_control())
                && address
                    .split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'));
            if !ok {
                return Err(invalid(
                    field,
                    format!("{:?} is not an email address (name@example.org)", e.address),
                ));
            }
            let label = e.label.as_deref().unwrap_or("home").trim().to_lowercase();
            if !EMAIL_LABELS.contains(&label.as_str()) {
                return Err(invalid(
                    format!("emails[{i}].label"),
                    format!("must be one of {}; got {label:?}", EMAIL_LABELS.join(", ")),
                ));
            }
            if !out.iter().any(|o| o.address == address) {
                out.push(Email { address, label });
            }
        }
        v.emails = Some(out);
    }
    Ok(v)
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// New contacts.
    pub created: usize,
    /// Contacts updated because their UID was already known.
    pub updated: usize,
}

/// The contacts service (cheap to clone).
#[derive(Clone)]
pub struct Contacts {
    store: Store,
    events: Arc<EventBus>,
    region: Region,
}

impl Contacts {
    /// A service over `store` reading national numbers in `region`.
    pub fn new(store: Store, events: Arc<EventBus>, region: Region) -> Self {
        Self {
            store,
            events,
            region,
        }
    }

    /// The default region.
    pub fn region(&self) -> Region {
        self.region
    }

    fn publish(&self, action: &str, contact_id: i64, name: &str) {
        let display_name = name.to_owned();
        self.events.publish(match action {
            "created" => EventKind::ContactCreated {
                contact_id,
                display_name,
            },
            "deleted" => EventKind::ContactDeleted {
                contact_id,
                display_name,
            },
            _ => EventKind::ContactUpdated {
                contact_id,
                display_name,
            },
        });
    }

    /// Create a contact.
    pub async fn create(&self, input: ContactInput) -> Result<Contact, ContactError> {
        let v = validate(&input, self.region, true)?;
        let region = self.region;
        let c = self
            .store
            .write(move |c| {
                if let Some((field, message)) = sql::conflicts(c, &v, None)? {
                    return Ok(Err(ContactError::Conflict { field, message }));
                }
                let id = sql::insert(c, &v, UnixMillis::now())?;
                sql::relink(c, Some(region), &[id])?;
                Ok(sql::get(c, id)?.ok_or(ContactError::NotFound(id)))
            })
            .await??;
        self.publish("created", c.id, &c.display_name);
        Ok(c)
    }

    /// Change a contact (fields left `None` keep their value).
    pub async fn update(&self, id: i64, input: ContactInput) -> Result<Contact, ContactError> {
        let v = validate(&input, self.region, false)?;
        let region = self.region;
        let c = self
            .store
            .write(move |c| {
                if sql::get(c, id)?.is_none() {
                    return Ok(Err(ContactError::NotFound(id)));
                }
                if let Some((field, message)) = sql::conflicts(c, &v, Some(id))? {
                    return Ok(Err(ContactError::Conflict { field, message }));
                }
                sql::update(c, id, &v, UnixMillis::now())?;
                sql::relink(c, Some(region), &[id])?;
                Ok(sql::get(c, id)?.ok_or(ContactError::NotFound(id)))
            })
            .await??;
        self.publish("updated", c.id, &c.display_name);
        Ok(c)
    }

    /// Delete a contact.
    pub async fn delete(&self, id: i64) -> Result<(), ContactError> {
        let region = self.region;
        let name = self
            .store
            .write(move |c| {
                let Some(old) = sql::get(c, id)? else {
                    return Ok(None);
                };
                sql::delete(c, id)?;
                // Its conversations may belong to nobody now, or to someone sharing an alias.
                sql::relink(c, Some(region), &[])?;
                Ok(Some(old.display_name))
            })
            .await?
            .ok_or(ContactError::NotFound(id))?;
        self.publish("deleted", id, &name);
        Ok(())
    }

    /// One contact.
    pub async fn get(&self, id: i64) -> Result<Contact, ContactError> {
        self.store
            .read(move |c| sql::get(c, id))
            .await?
            .ok_or(ContactError::NotFound(id))
    }

    /// A page of contacts by name (optionally matching `q`), and the total matching.
    pub async fn list(
        &self,
        q: Option<String>,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<Contact>, i64), ContactError> {
        Ok(self
            .store
            .read(move |c| sql::list(c, q.as_deref(), limit, offset))
            .await?)
    }

    /// Contacts called `name` ("Anna", "mom", "my sister"), best first; the orchestrator
    /// uses this to turn names in requests ("with Anna", "call mom") into contacts.
    pub async fn find_by_name(&self, name: &str) -> Result<Vec<Contact>, ContactError> {
        let name = name.to_owned();
        Ok(self
            .store
            .read(move |c| sql::find_by_name(c, &name))
            .await?)
    }

    /// Caller identification: the contact an address on a channel belongs to (E.164 or any
    /// national form in the default region, `tel:`/`sip:` URIs, email addresses, SIP user
    /// names matched against aliases). The channel does not change the answer today; it is
    /// part of the question so that channel-specific address forms can be added here.
    pub async fn identify(
        &self,
        _channel: &str,
        address: &str,
    ) -> Result<Option<Contact>, ContactError> {
        let address = address.to_owned();
        let region = self.region;
        Ok(self
            .store
            .read(move |c| match sql::identify(c, &address, Some(region))? {
                Some((id, _)) => sql::get(c, id),
                None => Ok(None),
            })
            .await?)
    }

    /// Every contact as one vCard file.
    pub async fn export_vcf(&self, version: vcard::Version) -> Result<String, ContactError> {
        let all = self.store.read(sql::all).await?;
        let cards: Vec<vcard::OutCard<'_>> = all
            .iter()
            .map(|c| vcard::OutCard {
                uid: &c.uid,
                formatted_name: &c.display_name,
                family_name: &c.family_name,
                given_name: &c.given_name,
                nicknames: c.aliases.iter().map(String::as_str).collect(),
                phones: c
                    .phones
                    .iter()
                    .map(|p| (p.number.as_str(), p.label.as_str()))
                    .collect(),
                emails: c
                    .emails
                    .iter()
                    .map(|e| (e.address.as_str(), e.label.as_str()))
                    .collect(),
                note: &c.notes,
                trust: c.trust,
            })
            .collect();
        Ok(vcard::write(&cards, version))
    }

    /// Import a vCard file: a card whose UID is known updates that contact, others are
    /// created. All or nothing: the first invalid card (bad line, unreadable number, a number
    /// another contact has) fails the import, names the card and line, and stores nothing.
    pub async fn import_vcf(&self, text: &str) -> Result<ImportReport, ContactError> {
        let cards = vcard::parse(text)?;
        let mut valid = Vec::with_capacity(cards.len());
        let mut seen_numbers: std::collections::HashMap<String, String> =
            std::collections::HashMap::new();
        for card in &cards {
            let input = ContactInput {
                display_name: Some(card.formatted_name.clone()),
                given_name: Some(card.given_name.clone()),
                family_name: Some(card.family_name.clone()),
                aliases: Some(card.nicknames.clone()),
                phones: Some(
                    card.phones
                        .iter()
                        .map(|p| PhoneInput {
                            number: p.value.clone(),
                            label: Some(p.label.clone()),
                        })
                        .collect(),
                ),
                emails: Some(
                    card.emails
                        .iter()
                        .map(|e| EmailInput {
                            address: e.value.clone(),
                            label: Some(e.label.clone()),
                        })
                        .collect(),
                ),
                notes: Some(card.note.clone()),
                trust: card.trust,
                uid: card.uid.clone(),
            };
            let v = validate(&input, self.region, true).map_err(|e| card_error(card, e))?;
            for (i, p) in v.phones.iter().flatten().enumerate() {
                if let Some(other) = seen_numbers.insert(p.number.clone(), card.describe()) {
                    return Err(ContactError::VCard(vcard::VCardError {
                        card: card.describe(),
                        line: card.phones.get(i).map_or(card.line, |l| l.line),
                        message: format!("{} is also the number of {other} in this file", p.number),
                    }));
                }
            }
            valid.push((card.clone(), v));
        }
        let region = self.region;
        let (report, changed) = self
            .store
            .write(move |c| {
                let mut plan = Vec::with_capacity(valid.len());
                for (card, v) in &valid {
                    let own = match &v.uid {
                        Some(uid) => sql::id_by_uid(c, uid)?,
                        None => None,
                    };
                    if let Some((field, message)) = sql::conflicts(c, v, own)? {
                        return Ok(Err(ContactError::VCard(vcard::VCardError {
                            card: card.describe(),
                            line: card.line,
                            message: format!("{field}: {message}"),
                        })));
                    }
                    plan.push(own);
                }
                let now = UnixMillis::now();
                let mut report = ImportReport::default();
                let mut changed = Vec::new();
                for ((_, v), own) in valid.iter().zip(plan) {
                    let id = match own {
                        Some(id) => {
                            // A card without the trust property keeps the trust set here.
                            sql::update(c, id, v, now)?;
                            report.updated += 1;
                            id
                        }
                        None => {
                            report.created += 1;
                            sql::insert(c, v, now)?
                        }
                    };
                    changed.push(id);
                }
                sql::relink(c, Some(region), &changed)?;
                Ok(Ok((report, changed)))
            })
            .await??;
        let _ = changed;
        self.events.publish(EventKind::ContactsImported {
            created: report.created,
            updated: report.updated,
        });
        Ok(report)
    }
}

fn card_error(card: &vcard::Card, e: ContactError) -> ContactError {
    let (field, message) = match e {
        ContactError::Invalid { field, message } | ContactError::Conflict { field, message } => {
            (field, message)
        }
        other => return other,
    };
    // Point at the line of the offending TEL/EMAIL when the field says which.
    let index = |prefix: &str| -> Option<usize> {
        field
            .strip_prefix(prefix)?
            .split(']')
            .next()?
            .parse::<usize>()
            .ok()
    };
    let line = index("phones[")
        .and_then(|i| card.phones.get(i).map(|p| p.line))
        .or_else(|| index("emails[").and_then(|i| card.emails.get(i).map(|p| p.line)))
        .unwrap_or(card.line);
    ContactError::VCard(vcard::VCardError {
        card: card.describe(),
        line,
        message: format!("{field}: {message}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let us = Region::parse("US").expect("US");
        let cases: Vec<(ContactInput, &str)> = vec![
            (ContactInput::default(), "display_name: is required"),
            (
                ContactInput {
                    display_name: Some("A".into()),
                    phones: Some(vec![
                        PhoneInput {
                            number: "+1 202 555 0143".into(),
                            label: None,
                        },
                        PhoneInput {
                            number: "12".into(),
                            label: None,
                        },
                    ]),
                    ..ContactInput::default()
                },
                "phones[1].number: cannot read \"12\"",
            ),
            (
                ContactInput {
                    display_name: Some("A".into()),
                    phones: Some(vec![PhoneInput {
                        number: "2025550143".into(),
                        label: Some("car".into()),
                    }]),
                    ..ContactInput::default()
                },
                "phones[0].label: must be one of",
            ),
            (
                ContactInput {
                    display_name: Some("A".into()),
                    emails: Some(vec![EmailInput {
                        address: "anna at home".into(),
                        label: None,
                    }]),
                    ..ContactInput::default()
                },
                "emails[0].address",
            ),
            (
                ContactInput {
                    display_name: Some("A".into()),
                    aliases: Some(vec![" ".into()]),
                    ..ContactInput::default()
                },
                "aliases[0]: must not be empty",
            ),
        ];
        for (input, want) in cases {
            let e = validate(&input, us, true).expect_err(want).to_string();
            assert!(e.starts_with(want), "{e:?} should start with {want:?}");
        }
        let ok = validate(
            &ContactInput {
                given_name: Some("Anna".into()),
                family_name: Some("Smith".into()),
                phones: Some(vec![
                    PhoneInput {
                        number: "(202) 555-0143".into(),
                        label: None,
                    },
                    PhoneInput {
                        number: "+12025550143".into(),
                        label: Some("work".into()),
                    },
                ]),
                ..ContactInput::default()
            },
            us,
            true,
        )
        .expect("valid");
        assert_eq!(ok.display_name.as_deref(), Some("Anna Smith"));
        assert_eq!(
            ok.phones.map(|p| p.len()),
            Some(1),
            "the same number twice is kept once"
        );
    }
}
