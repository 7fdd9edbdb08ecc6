//! Contact routes: list (search, pagination), get, create, patch, delete, and vCard export
//! and import.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::ApiState;
use crate::domain::Trust;
use crate::home::contacts::{vcard, Contact, ContactInput, EmailInput, PhoneInput};

/// Largest page.
const MAX_PAGE: usize = 200;

/// A phone number.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneDto {
    /// E.164 when read; any format when written (national forms use `contacts.default_region`).
    pub number: String,
    /// `mobile` (default), `home`, `work`, `main`, `fax`, `pager` or `other`.
    pub label: Option<String>,
}

/// An email address.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailDto {
    /// The address.
    pub address: String,
    /// `home` (default), `work` or `other`.
    pub label: Option<String>,
}

/// A contact.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContactDto {
    /// Id.
    pub id: i64,
    /// vCard UID.
    pub uid: String,
    /// Display name.
    pub display_name: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Nicknames ("mom").
    pub aliases: Vec<String>,
    /// Phone numbers, primary first.
    pub phones: Vec<PhoneDto>,
    /// Emails.
    pub emails: Vec<EmailDto>,
    /// Notes.
    pub notes: String,
    /// `owner`, `household`, `known` or `unknown`.
    pub trust: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}

impl From<Contact> for ContactDto {
    fn from(c: Contact) -> Self {
        Self {
            id: c.id,
            uid: c.uid,
            display_name: c.display_name,
            given_name: c.given_name,
            family_name: c.family_name,
            aliases: c.aliases,
            phones: c
                .phones
                .into_iter()
                .map(|p| PhoneDto {
                    number: p.number,
                    label: Some(p.label),
                })
                .collect(),
            emails: c
                .emails
                .into_iter()
                .map(|e| EmailDto {
                    address: e.address,
                    label: Some(e.label),
                })
                .collect(),
            notes: c.notes,
            trust: c.trust.as_str().to_owned(),
            created_at: c.created_at.to_rfc3339(),
            updated_at: c.updated_at.to_rfc3339(),
        }
    }
}

/// A new contact, or (for PATCH) the fields to change; lists replace the whole list.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    /// Display name (required to create unless given_name/family_name is set).
    pub display_name: Option<String>,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Nicknames.
    pub aliases: Option<Vec<String>>,
    /// Phone numbers.
    pub phones: Option<Vec<PhoneDto>>,
    /// Emails.
    pub emails: Option<Vec<EmailDto>>,
    /// Notes.
    pub notes: Option<String>,
    /// `owner`, `household`, `known` (default) or `unknown`.
    pub trust: Option<String>,
    /// vCard UID (generated when absent).
    pub uid: Option<String>,
}

impl ContactRequest {
    fn into_input(self) -> Result<ContactInput, ApiError> {
        let trust = match self.trust.as_deref() {
            None => None,
            Some(t) => Some(Trust::parse(t).ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "trust: must be owner, household, known or unknown; got {t:?}"
                ))
            })?),
        };
        Ok(ContactInput {
            display_name: self.display_name,
            given_name: self.given_name,
            family_name: self.family_name,
            aliases: self.aliases,
            phones: self.phones.map(|v| {
                v.into_iter()
                    .map(|p| PhoneInput {
                        number: p.number,
                        label: p.label,
                    })
                    .collect()
            }),
            emails: self.emails.map(|v| {
                v.into_iter()
                    .map(|e| EmailInput {
                        address: e.address,
                        label: e.label,
                    })
                    .collect()
            }),
            notes: self.notes,
            trust,
            uid: self.uid,
        })
    }
}

/// Search and paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ContactQuery {
    /// Only contacts whose name, alias, email or number contains this.
    pub q: Option<String>,
    /// Items per page, 1 to 200 (default 50).
    pub limit: Option<usize>,
    /// Items to skip (`next_offset` of the previous page).
    pub offset: Option<usize>,
}

/// A page of contacts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContactPage {
    /// By name.
    pub items: Vec<ContactDto>,
    /// How many match in all.
    pub total: i64,
    /// Pass as `offset` for the next page; absent on the last page.
    pub next_offset: Option<usize>,
}

fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request(format!(
            "contact id must be a positive integer; got {raw:?}"
        ))
    })
}

/// Contacts by name, optionally searched.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts", security(("bearer" = [])),
    params(ContactQuery),
    responses(
        (status = 200, description = "A page of contacts", body = ContactPage),
        (status = 400, description = "Bad query parameters", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<ContactQuery>,
) -> Result<Json<ContactPage>, ApiError> {
    let limit = match p.limit {
        None => 50,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit must be 1 to {MAX_PAGE}; got {n}"
            )))
        }
    };
    let offset = p.offset.unwrap_or(0);
    let q = p.q.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
    let (items, total) = state.contacts.list(q, limit, offset).await?;
    let next = offset + items.len();
    Ok(Json(ContactPage {
        next_offset: (i64::try_from(next).unwrap_or(i64::MAX) < total).then_some(next),
        items: items.into_iter().map(Into::into).collect(),
        total,
    }))
}

/// One contact.
#[utoipa::path(get, path = "/api/v1/contacts/{id}", tag = "contacts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Contact id")),
    responses(
        (status = 200, description = "The contact", body = ContactDto),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 404, description = "No such contact", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ContactDto>, ApiError> {
    Ok(Json(state.contacts.get(parse_id(&id)?).await?.into()))
}

/// Create a contact.
#[utoipa::path(post, path = "/api/v1/contacts", tag = "contacts", security(("bearer" = [])),
    request_body = ContactRequest,
    responses(
        (status = 201, description = "Created", body = ContactDto),
        (status = 409, description = "A number, email or UID belongs to another contact", body = ErrorBody),
        (status = 422, description = "Invalid field (named in the message)", body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    ApiJson(req): ApiJson<ContactRequest>,
) -> Result<Response, ApiError> {
    let c = state.contacts.create(req.into_input()?).await?;
    Ok((StatusCode::CREATED, Json(ContactDto::from(c))).into_response())
}

/// Change a contact; absent fields keep their value, lists replace the whole list.
#[utoipa::path(patch, path = "/api/v1/contacts/{id}", tag = "contacts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Contact id")),
    request_body = ContactRequest,
    responses(
        (status = 200, description = "Changed", body = ContactDto),
        (status = 404, description = "No such contact", body = ErrorBody),
        (status = 409, description = "A number, email or UID belongs to another contact", body = ErrorBody),
        (status = 422, description = "Invalid field (named in the message)", body = ErrorBody)))]
pub async fn patch(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ContactRequest>,
) -> Result<Json<ContactDto>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(
        state.contacts.update(id, req.into_input()?).await?.into(),
    ))
}

/// Delete a contact: its conversations stay, without the link; the facts it told the
/// assistant are erased with it (contact ids can be reused, and a new contact must not inherit
/// someone else's memories).
#[utoipa::path(delete, path = "/api/v1/contacts/{id}", tag = "contacts", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Contact id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such contact", body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    state.contacts.delete(id).await?;
    // After the contact's row is gone: a crash in between leaves orphans that the memory
    // service erases when it opens.
    state.memory.forget_contact(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Export parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `3.0` (default, what most phones import) or `4.0`.
    pub version: Option<String>,
}

/// Every contact as a vCard file.
#[utoipa::path(get, path = "/api/v1/contacts/export.vcf", tag = "contacts", security(("bearer" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "vCard file", content_type = "text/vcard", body = String),
        (status = 400, description = "Unknown version", body = ErrorBody)))]
pub async fn export(
    State(state): State<ApiState>,
    ApiQuery(p): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let version = match p.version.as_deref() {
        None | Some("3.0" | "3") => vcard::Version::V3,
        Some("4.0" | "4") => vcard::Version::V4,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "version must be 3.0 or 4.0; got {v:?}"
            )))
        }
    };
    let body = state.contacts.export_vcf(version).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/vcard; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"contacts.vcf\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// What an import did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportResult {
    /// New contacts.
    pub created: usize,
    /// Contacts updated (their UID was known).
    pub updated: usize,
}

/// Import a vCard file (3.0 or 4.0; the request body). All or nothing: an invalid card fails
/// the import with its position, name and line, and nothing is stored.
#[utoipa::path(post, path = "/api/v1/contacts/import", tag = "contacts", security(("bearer" = [])),
    request_body(content = String, content_type = "text/vcard"),
    responses(
        (status = 200, description = "Imported", body = ImportResult),
        (status = 422, description = "A card is invalid; nothing was imported", body = ErrorBody)))]
pub async fn import(
    State(state): State<ApiState>,
    body: String,
) -> Result<Json<ImportResult>, ApiError> {
    let r = state.contacts.import_vcf(&body).await?;
    Ok(Json(ImportResult {
        created: r.created,
        updated: r.updated,
    }))
}
