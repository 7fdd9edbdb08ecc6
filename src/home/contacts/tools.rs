//! The contact tools (routing group `contact`): `contact_lookup` (a name or alias → the
//! numbers and emails) and `contact_add`.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use super::{Contact, ContactError, ContactInput, Contacts, EmailInput, PhoneInput};
use crate::domain::Trust;
use crate::nlu::llm::ToolSpec;
use crate::orchestrator::tools::{Tool, ToolContext, ToolError, ToolOutput, ToolRegistry};

fn tool_error(tool: &str, e: ContactError) -> ToolError {
    match e {
        ContactError::Store(s) => ToolError::Store(s),
        other => ToolError::InvalidArguments {
            tool: tool.into(),
            message: other.to_string(),
        },
    }
}

fn contact_json(c: &Contact) -> Value {
    json!({
        "id": c.id,
        "name": c.display_name,
        "aliases": c.aliases,
        "phones": c.phones.iter().map(|p| json!({"number": p.number, "label": p.label})).collect::<Vec<_>>(),
        "emails": c.emails.iter().map(|e| json!({"address": e.address, "label": e.label})).collect::<Vec<_>>(),
        "trust": c.trust.as_str(),
    })
}

fn describe(c: &Contact) -> String {
    match c.phones.first() {
        Some(p) if c.phones.len() == 1 => {
            format!("{}'s number is {} ({}).", c.display_name, p.number, p.label)
        }
        Some(_) => {
            let list: Vec<String> = c
                .phones
                .iter()
                .map(|p| format!("{} {}", p.label, p.number))
                .collect();
            format!(
                "{} has {} numbers: {}.",
                c.display_name,
                c.phones.len(),
                crate::orchestrator::speak::list_and(&list)
            )
        }
        None => match c.emails.first() {
            Some(e) => format!(
                "I have no number for {}, only the email {}.",
                c.display_name, e.address
            ),
            None => format!("I have no number for {}.", c.display_name),
        },
    }
}

struct Lookup(Contacts);

impl Tool for Lookup {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "contact_lookup".into(),
            description: "Find a contact by name or nickname (\"Anna\", \"mom\") and tell their phone numbers and emails.".into(),
            parameters: json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
        }
    }
    fn group(&self) -> &'static str {
        "contact"
    }
    fn call<'a>(
        &'a self,
        args: Value,
        _ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let name = args
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim();
            if name.is_empty() {
                return Err(ToolError::InvalidArguments {
                    tool: "contact_lookup".into(),
                    message: "name must not be empty".into(),
                });
            }
            let found = self
                .0
                .find_by_name(name)
                .await
                .map_err(|e| tool_error("contact_lookup", e))?;
            let say = match found.as_slice() {
                [] => format!("I don't have a contact called {name}."),
                [c] => describe(c),
                many => {
                    let names: Vec<String> = many.iter().map(|c| c.display_name.clone()).collect();
                    format!(
                        "I have {} contacts called {name}: {}. Which one?",
                        many.len(),
                        crate::orchestrator::speak::list_and(&names)
                    )
                }
            };
            Ok(ToolOutput {
                say,
                data: Value::Array(found.iter().map(contact_json).collect()),
            })
        })
    }
}

struct Add(Contacts);

impl Tool for Add {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "contact_add".into(),
            description: "Add a contact: a name, optional phone number (any format), email, nicknames (comma-separated) and trust (owner, household, known, unknown).".into(),
            parameters: json!({"type": "object", "properties": {
                "name": {"type": "string"}, "phone": {"type": "string"}, "email": {"type": "string"},
                "aliases": {"type": "string"},
                "trust": {"type": "string", "enum": ["owner", "household", "known", "unknown"]}},
                "required": ["name"]}),
        }
    }
    fn group(&self) -> &'static str {
        "contact"
    }
    fn call<'a>(
        &'a self,
        args: Value,
        _ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let s = |k: &str| {
                args.get(k)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
            };
            let input = ContactInput {
                display_name: s("name"),
                phones: s("phone").map(|number| {
                    vec![PhoneInput {
                        number,
                        label: None,
                    }]
                }),
                emails: s("email").map(|address| {
                    vec![EmailInput {
                        address,
                        label: None,
                    }]
                }),
                aliases: s("aliases").map(|a| {
                    a.split(',')
                        .map(|x| x.trim().to_owned())
                        .filter(|x| !x.is_empty())
                        .collect()
                }),
                trust: s("trust").as_deref().and_then(Trust::parse),
                ..ContactInput::default()
            };
            let c = self
                .0
                .create(input)
                .await
                .map_err(|e| tool_error("contact_add", e))?;
            let say = match c.phones.first() {
                Some(p) => format!("Added {} with the number {}.", c.display_name, p.number),
                None => format!("Added {}.", c.display_name),
            };
            Ok(ToolOutput {
                say,
                data: contact_json(&c),
            })
        })
    }
}

/// Register the contact tools.
pub fn register(registry: &mut ToolRegistry, contacts: &Contacts) {
    registry.register(Arc::new(Lookup(contacts.clone())));
    registry.register(Arc::new(Add(contacts.clone())));
}
