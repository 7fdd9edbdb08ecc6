//! The tool registry: typed tools (name, JSON schema of the arguments, handler, group) shared
//! by the fast path and the LLM, and the routing rules that decide who may call them.
//!
//! Every call goes through [`ToolRegistry::call`], which validates the arguments against the
//! schema and checks routing first; a refusal is a polite reply, not an error.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use jiff::{SignedDuration, Zoned};
use serde::Serialize;
use serde_json::{json, Value};

use super::speak;
use crate::config::RoutingConfig;
use crate::domain::{ConversationId, MessageId, Trust};
use crate::home::reminders::{Kind, NewReminder, Reminders};
use crate::nlu::intents::Recurrence;
use crate::nlu::llm::ToolSpec;
use crate::store::StoreError;

/// Who is calling, from where, and when.
#[derive(Debug, Clone)]
pub struct ToolContext {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Its channel.
    pub channel: String,
    /// The sender's trust.
    pub trust: Trust,
    /// Now, in the device time zone.
    pub now: Zoned,
    /// The message being answered.
    pub source_message_id: Option<MessageId>,
}

/// What a tool did, in words and as data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolOutput {
    /// The sentence to say.
    pub say: String,
    /// Structured result.
    pub data: Value,
}

/// Why a tool call failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// No such tool.
    #[error("unknown tool {0:?}")]
    Unknown(String),
    /// Arguments do not match the schema.
    #[error("invalid arguments for {tool}: {message}")]
    InvalidArguments {
        /// Tool.
        tool: String,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service behind the tool failed or is unavailable (e.g. a model is missing).
    #[error("{tool} failed: {message}")]
    Failed {
        /// Tool.
        tool: String,
        /// What went wrong.
        message: String,
    },
}

/// A tool.
pub trait Tool: Send + Sync + 'static {
    /// Name, description and argument schema.
    fn spec(&self) -> ToolSpec;
    /// Routing group (`time`, `timer`, `reminder`, `calendar`, …).
    fn group(&self) -> &'static str;
    /// Run it (arguments already validated).
    fn call<'a>(
        &'a self,
        args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>>;
}

/// A refusal by the routing rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The group that was refused.
    pub group: String,
    /// A polite sentence explaining it.
    pub say: String,
}

/// The routing rules.
#[derive(Debug, Clone)]
pub struct Router {
    cfg: RoutingConfig,
}

impl Router {
    /// Rules from config.
    pub fn new(cfg: RoutingConfig) -> Self {
        Self { cfg }
    }

    /// The trust of a sender: configured owner/household numbers first, then the contact's.
    pub fn trust_of(&self, address: &str, contact_trust: Option<Trust>) -> Trust {
        if self.cfg.owner_numbers.iter().any(|n| n.as_str() == address) {
            return Trust::Owner;
        }
        if self
            .cfg
            .household_numbers
            .iter()
            .any(|n| n.as_str() == address)
        {
            return Trust::Household;
        }
        contact_trust.unwrap_or(Trust::Unknown)
    }

    /// The trust of the API token holder.
    pub fn api_trust(&self) -> Trust {
        self.cfg.api_trust
    }

    /// The trust of whoever speaks to the device's own microphone.
    pub fn local_trust(&self) -> Trust {
        self.cfg.local_trust
    }

    /// May `trust` on `channel` use `group`?
    pub fn check(&self, group: &str, channel: &str, trust: Trust) -> Result<(), Refusal> {
        let min = self
            .cfg
            .min_trust
            .get(group)
            .copied()
            .unwrap_or(Trust::Owner);
        let denied_by_rule = self.cfg.deny.iter().any(|r| {
            (r.channel == "*" || r.channel == channel)
                && trust <= r.max_trust
                && r.groups.iter().any(|g| g == "*" || g == group)
        });
        if trust < min || denied_by_rule {
            let what = match group {
                "calendar" => "the calendar",
                "task" => "the task lists",
                "memory" => "what I remember",
                "contact" => "the contacts",
                "reminder" => "reminders",
                "timer" => "timers",
                "time" => "the time",
                _ => "that",
            };
            return Err(Refusal {
                group: group.to_owned(),
                say: format!(
                    "Sorry, I can't help you with {what}. Please ask the owner of this assistant."
                ),
            });
        }
        Ok(())
    }
}

/// All tools by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

/// A call as recorded in the turn.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ToolCallRecord {
    /// Tool name.
    pub name: String,
    /// Arguments.
    pub arguments: Value,
    /// Result data, or `{"error": …}` / `{"refused": …}`.
    pub result: Value,
}

impl ToolRegistry {
    /// Register a tool (replacing one of the same name).
    pub fn register(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.spec().name, tool);
    }

    /// The specs of the tools `trust` may use on `channel` (what the LLM is offered).
    pub fn specs_for(&self, router: &Router, channel: &str, trust: Trust) -> Vec<ToolSpec> {
        self.tools
            .values()
            .filter(|t| router.check(t.group(), channel, trust).is_ok())
            .map(|t| t.spec())
            .collect()
    }

    /// A tool's group.
    pub fn group_of(&self, name: &str) -> Option<&'static str> {
        self.tools.get(name).map(|t| t.group())
    }

    /// Check routing and the arguments, then run the tool.
    pub async fn call(
        &self,
        router: &Router,
        name: &str,
        args: Value,
        ctx: &ToolContext,
    ) -> Result<Result<ToolOutput, Refusal>, ToolError> {
        let tool = self
            .tools
            .get(name)
            .ok_or_else(|| ToolError::Unknown(name.to_owned()))?;
        if let Err(refusal) = router.check(tool.group(), &ctx.channel, ctx.trust) {
            return Ok(Err(refusal));
        }
        validate(&tool.spec().parameters, &args).map_err(|message| {
            ToolError::InvalidArguments {
                tool: name.to_owned(),
                message,
            }
        })?;
        Ok(Ok(tool.call(args, ctx).await?))
    }
}

/// Validate `value` against the supported schema subset (object of typed properties).
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    let obj = value
        .as_object()
        .ok_or_else(|| "arguments must be a JSON object".to_owned())?;
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(r) {
                return Err(format!("missing required property {r:?}"));
            }
        }
    }
    for (k, v) in obj {
        let Some(p) = props.get(k) else {
            return Err(format!("unknown property {k:?}"));
        };
        let ty = p.get("type").and_then(Value::as_str).unwrap_or("string");
        let ok = match ty {
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            _ => true,
        };
        if !ok {
            return Err(format!("property {k:?} must be of type {ty}"));
        }
        if let Some(allowed) = p.get("enum").and_then(Value::as_array) {
            if !allowed.contains(v) {
                return Err(format!("property {k:?} must be one of {allowed:?}"));
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Built-in tools: time/date, timers, reminders.
// ------------------------------------------------------------------------------------------

struct TimeNow;

impl Tool for TimeNow {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "time_now".into(),
            description: "Tell the current time.".into(),
            parameters: json!({"type": "object", "properties": {}}),
        }
    }
    fn group(&self) -> &'static str {
        "time"
    }
    fn call<'a>(
        &'a self,
        _args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            Ok(ToolOutput {
                say: format!("It's {}.", speak::time_of_day(&ctx.now)),
                data: json!({ "now": ctx.now.to_string() }),
            })
        })
    }
}

struct DateQuery;

impl Tool for DateQuery {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "date_query".into(),
            description: "Tell today's date, or the date of a given day (YYYY-MM-DD).".into(),
            parameters: json!({"type": "object", "properties": {"date": {"type": "string"}}}),
        }
    }
    fn group(&self) -> &'static str {
        "time"
    }
    fn call<'a>(
        &'a self,
        args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let today = ctx.now.date();
            let date = match args.get("date").and_then(Value::as_str) {
                None => today,
                Some(s) => {
                    s.parse::<jiff::civil::Date>()
                        .map_err(|e| ToolError::InvalidArguments {
                            tool: "date_query".into(),
                            message: format!("date must be YYYY-MM-DD: {e}"),
                        })?
                }
            };
            let say = if date == today {
                format!("Today is {}.", speak::long_date(date))
            } else {
                let d = speak::day(date, &ctx.now);
                let d = d.strip_prefix("on ").unwrap_or(&d).to_owned();
                format!("{} is {}.", capitalize(&d), speak::long_date(date))
            };
            Ok(ToolOutput {
                say,
                data: json!({ "date": date.to_string() }),
            })
        })
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

struct TimerSet(Reminders);

impl Tool for TimerSet {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "timer_set".into(),
            description: "Start a timer for a number of seconds, with an optional label.".into(),
            parameters: json!({"type": "object", "properties": {
                "seconds": {"type": "integer"}, "label": {"type": "string"}}, "required": ["seconds"]}),
        }
    }
    fn group(&self) -> &'static str {
        "timer"
    }
    fn call<'a>(
        &'a self,
        args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let secs = args.get("seconds").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=7 * 86_400).contains(&secs) {
                return Err(ToolError::InvalidArguments {
                    tool: "timer_set".into(),
                    message: format!("seconds must be from 1 to 604800; got {secs}"),
                });
            }
            let label = args
                .get("label")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_owned();
            let d = SignedDuration::from_secs(secs);
            let due = ctx
                .now
                .checked_add(d)
                .map_err(|e| ToolError::InvalidArguments {
                    tool: "timer_set".into(),
                    message: e.to_string(),
                })?;
            let r = self
                .0
                .create(NewReminder {
                    kind: Kind::Timer,
                    conversation_id: ctx.conversation_id,
                    text: label.clone(),
                    due,
                    rule: None,
                    source_message_id: ctx.source_message_id,
                    target: None,
                })
                .await?;
            let say = if label.is_empty() {
                format!("Timer set for {}.", speak::duration(d))
            } else {
                format!(
                    "{} timer set for {}.",
                    capitalize(&label),
                    speak::duration(d)
                )
            };
            Ok(ToolOutput {
                say,
                data: json!({ "id": r.id, "due": r.due.to_string(), "label": label }),
            })
        })
    }
}

struct ListTool(Reminders, Kind);

impl Tool for ListTool {
    fn spec(&self) -> ToolSpec {
        let (name, description) = match self.1 {
            Kind::Timer => ("timer_list", "List the running timers and the time left."),
            Kind::Reminder => ("reminder_list", "List the upcoming reminders."),
        };
        ToolSpec {
            name: name.into(),
            description: description.into(),
            parameters: json!({"type": "object", "properties": {}}),
        }
    }
    fn group(&self) -> &'static str {
        match self.1 {
            Kind::Timer => "timer",
            Kind::Reminder => "reminder",
        }
    }
    fn call<'a>(
        &'a self,
        _args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let items = self.0.list(ctx.conversation_id, self.1).await?;
            let say = describe_list(self.1, &items, &ctx.now);
            let data: Vec<Value> = items
                .iter()
                .map(|r| json!({"id": r.id, "text": r.text, "due": r.due.to_string()}))
                .collect();
            Ok(ToolOutput {
                say,
                data: Value::Array(data),
            })
        })
    }
}

fn describe_list(kind: Kind, items: &[crate::home::reminders::Reminder], now: &Zoned) -> String {
    match (kind, items.len()) {
        (Kind::Timer, 0) => "You have no timers running.".into(),
        (Kind::Reminder, 0) => "You have no reminders.".into(),
        (Kind::Timer, n) => {
            let parts: Vec<String> = items
                .iter()
                .map(|r| {
                    let left = now.duration_until(&r.due).max(SignedDuration::ZERO);
                    let left = SignedDuration::from_secs(left.as_secs());
                    if r.text.is_empty() {
                        format!("{} left", speak::duration(left))
                    } else {
                        format!("{} left on the {} timer", speak::duration(left), r.text)
                    }
                })
                .collect();
            let head = if n == 1 {
                "You have one timer".to_owned()
            } else {
                format!("You have {n} timers")
            };
            format!("{head}: {}.", speak::list_and(&parts))
        }
        (Kind::Reminder, n) => {
            let parts: Vec<String> = items
                .iter()
                .map(|r| {
                    let when = speak::day_and_time(&r.due, now);
                    match &r.rule {
                        Some(rule) => {
                            format!("{} {} (repeats {})", r.text, when, describe_rule(rule))
                        }
                        None => format!("{} {when}", r.text),
                    }
                })
                .collect();
            let head = if n == 1 {
                "You have one reminder".to_owned()
            } else {
                format!("You have {n} reminders")
            };
            format!("{head}: {}.", speak::list_and(&parts))
        }
    }
}

/// "every day", "every Monday and Thursday", "every month on the 4th", "every 2 hours".
pub fn describe_rule(rule: &Recurrence) -> String {
    match rule {
        Recurrence::Daily => "every day".into(),
        Recurrence::Weekly { days } => {
            let names: Vec<String> = days
                .iter()
                .map(|d| speak::weekday_name(*d).to_owned())
                .collect();
            format!("every {}", speak::list_and(&names))
        }
        Recurrence::Monthly { day } => {
            format!("every month on the {}", speak::ordinal(i64::from(*day)))
        }
        Recurrence::Every { interval } => format!("every {}", speak::duration(*interval)),
    }
}

struct CancelTool(Reminders, Kind);

impl Tool for CancelTool {
    fn spec(&self) -> ToolSpec {
        let name = match self.1 {
            Kind::Timer => "timer_cancel",
            Kind::Reminder => "reminder_cancel",
        };
        ToolSpec {
            name: name.into(),
            description: format!(
                "Cancel {}s: those whose text contains `match`, or all of them with all=true.",
                self.1.as_str()
            ),
            parameters: json!({"type": "object", "properties": {
                "match": {"type": "string"}, "all": {"type": "boolean"}}}),
        }
    }
    fn group(&self) -> &'static str {
        match self.1 {
            Kind::Timer => "timer",
            Kind::Reminder => "reminder",
        }
    }
    fn call<'a>(
        &'a self,
        args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let all = args.get("all").and_then(Value::as_bool).unwrap_or(false);
            let needle = args
                .get("match")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_lowercase();
            let items = self.0.list(ctx.conversation_id, self.1).await?;
            let chosen: Vec<_> = if all {
                items
            } else if needle.is_empty() {
                // "cancel the timer" with exactly one running.
                if items.len() == 1 {
                    items
                } else {
                    Vec::new()
                }
            } else {
                items
                    .into_iter()
                    .filter(|r| {
                        let t = r.text.to_lowercase();
                        !t.is_empty() && (t.contains(&needle) || needle.contains(&t))
                    })
                    .collect()
            };
            let noun = self.1.as_str();
            if chosen.is_empty() {
                return Ok(ToolOutput {
                    say: if needle.is_empty() {
                        format!("Which {noun}? Say its name, or say \"all {noun}s\".")
                    } else {
                        format!("I couldn't find a {noun} matching \"{needle}\".")
                    },
                    data: json!({ "cancelled": 0 }),
                });
            }
            let ids: Vec<i64> = chosen.iter().map(|r| r.id).collect();
            let n = self.0.cancel(ids.clone()).await?;
            let say = match (n, chosen.first()) {
                (1, Some(r)) if !r.text.is_empty() => {
                    format!("Cancelled the {noun} \"{}\".", r.text)
                }
                (1, _) => format!("Cancelled the {noun}."),
                (n, _) => format!("Cancelled {n} {noun}s."),
            };
            Ok(ToolOutput {
                say,
                data: json!({ "cancelled": n, "ids": ids }),
            })
        })
    }
}

struct ReminderSet(Reminders);

impl Tool for ReminderSet {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "reminder_set".into(),
            description: "Set a reminder: what to remind of and when (RFC 3339 time with zone, e.g. 2026-11-26T17:00:00+01:00[Europe/Berlin]); optional repeat: daily, weekly:mon,thu, monthly:4 or every:SECONDS; optional deliver_to: here (default) or speaker.".into(),
            parameters: json!({"type": "object", "properties": {
                "text": {"type": "string"}, "at": {"type": "string"}, "repeat": {"type": "string"},
                "deliver_to": {"type": "string", "enum": ["here", "speaker"]}},
                "required": ["text", "at"]}),
        }
    }
    fn group(&self) -> &'static str {
        "reminder"
    }
    fn call<'a>(
        &'a self,
        args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let bad = |message: String| ToolError::InvalidArguments {
                tool: "reminder_set".into(),
                message,
            };
            let text = args
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_owned();
            if text.is_empty() {
                return Err(bad("text must not be empty".into()));
            }
            let at_s = args.get("at").and_then(Value::as_str).unwrap_or("");
            let at: Zoned = at_s
                .parse::<Zoned>()
                .or_else(|_| {
                    at_s.parse::<jiff::Timestamp>()
                        .map(|t| t.to_zoned(ctx.now.time_zone().clone()))
                })
                .map_err(|e| bad(format!("at must be an RFC 3339 time: {e}")))?;
            let rule = match args.get("repeat").and_then(Value::as_str) {
                None | Some("") => None,
                Some(r) => Some(parse_repeat(r).ok_or_else(|| {
                    bad(format!(
                        "repeat must be daily, weekly:mon,thu, monthly:N or every:SECONDS; got {r:?}"
                    ))
                })?),
            };
            if rule.is_none() && at <= ctx.now {
                return Err(bad(format!("{at} is in the past")));
            }
            let r = self
                .0
                .create(NewReminder {
                    kind: Kind::Reminder,
                    conversation_id: ctx.conversation_id,
                    text: text.clone(),
                    due: at.clone(),
                    rule: rule.clone(),
                    source_message_id: ctx.source_message_id,
                    target: match args.get("deliver_to").and_then(Value::as_str) {
                        Some("speaker") => Some(crate::home::reminders::DeliveryTarget::speaker()),
                        _ => None,
                    },
                })
                .await?;
            let when = speak::day_and_time(&r.due, &ctx.now);
            let say = match &rule {
                Some(rule) => format!(
                    "Okay, I'll remind you to {text} {}, starting {when}.",
                    describe_rule(rule)
                ),
                None => format!("Okay, I'll remind you to {text} {when}."),
            };
            Ok(ToolOutput {
                say,
                data: json!({ "id": r.id, "due": r.due.to_string() }),
            })
        })
    }
}

struct SnoozeTool(Reminders);

impl Tool for SnoozeTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "reminder_snooze".into(),
            description: "Snooze the reminder or timer that just fired (or the one with `id`) by `minutes` (default 10).".into(),
            parameters: json!({"type": "object", "properties": {
                "minutes": {"type": "integer"}, "id": {"type": "integer"}}}),
        }
    }
    fn group(&self) -> &'static str {
        "reminder"
    }
    fn call<'a>(
        &'a self,
        args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let minutes = args.get("minutes").and_then(Value::as_i64).unwrap_or(10);
            let target = match args.get("id").and_then(Value::as_i64) {
                Some(id) => self
                    .0
                    .get(id)
                    .await
                    .ok()
                    .filter(|r| r.conversation_id == ctx.conversation_id),
                // "Right after it fired": the last one of this conversation in the past hour.
                None => {
                    self.0
                        .last_fired(ctx.conversation_id, std::time::Duration::from_secs(3600))
                        .await?
                }
            };
            let Some(r) = target else {
                return Ok(ToolOutput {
                    say: "There's no reminder that just went off to snooze.".into(),
                    data: json!({ "snoozed": false }),
                });
            };
            let snoozed = self.0.snooze(r.id, minutes).await.map_err(|e| match e {
                crate::home::reminders::ReminderError::Store(s) => ToolError::Store(s),
                other => ToolError::InvalidArguments {
                    tool: "reminder_snooze".into(),
                    message: other.to_string(),
                },
            })?;
            let what = match (snoozed.kind, snoozed.text.is_empty()) {
                (Kind::Timer, true) => "the timer".to_owned(),
                (Kind::Timer, false) => format!("the {} timer", snoozed.text),
                (Kind::Reminder, _) => format!("the reminder to {}", snoozed.text),
            };
            Ok(ToolOutput {
                say: format!(
                    "Okay, I'll remind you again in {} ({what}).",
                    speak::duration(SignedDuration::from_mins(minutes))
                ),
                data: json!({ "snoozed": true, "id": snoozed.id, "due": snoozed.due.to_string() }),
            })
        })
    }
}

/// `daily`, `weekly:mon,thu`, `monthly:4`, `every:3600`.
pub fn parse_repeat(s: &str) -> Option<Recurrence> {
    let (head, rest) = s.split_once(':').unwrap_or((s, ""));
    Some(match head.trim() {
        "daily" => Recurrence::Daily,
        "weekly" => {
            let days: Option<Vec<_>> = rest
                .split(',')
                .map(|d| {
                    Some(match d.trim().get(..3)?.to_ascii_lowercase().as_str() {
                        "mon" => jiff::civil::Weekday::Monday,
                        "tue" => jiff::civil::Weekday::Tuesday,
                        "wed" => jiff::civil::Weekday::Wednesday,
                        "thu" => jiff::civil::Weekday::Thursday,
                        "fri" => jiff::civil::Weekday::Friday,
                        "sat" => jiff::civil::Weekday::Saturday,
                        "sun" => jiff::civil::Weekday::Sunday,
                        _ => return None,
                    })
                })
                .collect();
            let days = days?;
            if days.is_empty() {
                return None;
            }
            Recurrence::Weekly { days }
        }
        "monthly" => {
            let day: i8 = rest.trim().parse().ok()?;
            if !(1..=31).contains(&day) {
                return None;
            }
            Recurrence::Monthly { day }
        }
        "every" => {
            let secs: i64 = rest.trim().parse().ok()?;
            if secs < 60 {
                return None;
            }
            Recurrence::Every {
                interval: SignedDuration::from_secs(secs),
            }
        }
        _ => return None,
    })
}

/// `repeat` argument for a recurrence (inverse of [`parse_repeat`]).
pub fn repeat_arg(rule: &Recurrence) -> String {
    match rule {
        Recurrence::Daily => "daily".into(),
        Recurrence::Weekly { days } => {
            let d: Vec<&str> = days.iter().map(|d| &speak::weekday_name(*d)[..3]).collect();
            format!("weekly:{}", d.join(",").to_lowercase())
        }
        Recurrence::Monthly { day } => format!("monthly:{day}"),
        Recurrence::Every { interval } => format!("every:{}", interval.as_secs()),
    }
}

/// The registry with the built-in tools of this release.
pub fn builtin(reminders: &Reminders) -> ToolRegistry {
    let mut r = ToolRegistry::default();
    r.register(Arc::new(TimeNow));
    r.register(Arc::new(DateQuery));
    r.register(Arc::new(TimerSet(reminders.clone())));
    r.register(Arc::new(ListTool(reminders.clone(), Kind::Timer)));
    r.register(Arc::new(CancelTool(reminders.clone(), Kind::Timer)));
    r.register(Arc::new(ReminderSet(reminders.clone())));
    r.register(Arc::new(ListTool(reminders.clone(), Kind::Reminder)));
    r.register(Arc::new(CancelTool(reminders.clone(), Kind::Reminder)));
    r.register(Arc::new(SnoozeTool(reminders.clone())));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DenyRule;

    fn router(deny: Vec<DenyRule>) -> Router {
        let mut cfg = crate::config::Config::defaults().routing;
        cfg.deny = deny;
        Router::new(cfg)
    }

    #[test]
    fn trust_levels_gate_groups_and_deny_rules_narrow_per_channel() {
        let r = router(vec![DenyRule {
            channel: "sms".into(),
            max_trust: Trust::Known,
            groups: vec!["timer".into()],
        }]);
        assert!(r.check("time", "sms", Trust::Unknown).is_ok());
        assert!(r.check("timer", "sms", Trust::Unknown).is_err());
        assert!(r.check("timer", "sms", Trust::Known).is_err(), "deny rule");
        assert!(r.check("timer", "voice", Trust::Known).is_ok());
        assert!(r.check("timer", "sms", Trust::Household).is_ok());
        assert!(r.check("calendar", "sms", Trust::Known).is_err());
        assert!(r.check("calendar", "sms", Trust::Household).is_ok());
        assert!(r.check("contact", "api", Trust::Household).is_err());
        let refusal = r.check("calendar", "sms", Trust::Unknown).unwrap_err();
        assert!(refusal.say.contains("the calendar"), "{}", refusal.say);
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let schema = json!({"type": "object", "properties": {
            "seconds": {"type": "integer"}, "unit": {"type": "string", "enum": ["s", "m"]}},
            "required": ["seconds"]});
        assert!(validate(&schema, &json!({"seconds": 5})).is_ok());
        assert!(validate(&schema, &json!({}))
            .unwrap_err()
            .contains("missing required property \"seconds\""));
        assert!(validate(&schema, &json!({"seconds": "5"}))
            .unwrap_err()
            .contains("must be of type integer"));
        assert!(validate(&schema, &json!({"seconds": 5, "unit": "h"}))
            .unwrap_err()
            .contains("one of"));
        assert!(validate(&schema, &json!({"seconds": 5, "x": 1}))
            .unwrap_err()
            .contains("unknown property"));
        assert!(validate(&schema, &json!([1])).is_err());
    }

    #[test]
    fn repeat_arguments_round_trip() {
        for s in ["daily", "weekly:mon,thu", "monthly:4", "every:7200"] {
            let rule = parse_repeat(s).expect(s);
            assert_eq!(repeat_arg(&rule), s);
        }
        for bad in ["weekly:", "weekly:xyz", "monthly:32", "every:5", "hourly"] {
            assert_eq!(parse_repeat(bad), None, "{bad}");
        }
    }
}
