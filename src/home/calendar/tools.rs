//! The calendar's tools (group `calendar`) for the fast path and LLM tool calls:
//! `appointment_create` (reports conflicts and asks before double-booking),
//! `appointment_list` (a range, or its free slots), `appointment_move` and
//! `appointment_cancel`.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Zoned};
use serde_json::{json, Value};

use super::{describe_free, describe_list, Calendar, CalendarError, NewEvent, Occurrence};
use crate::home::contacts::Contacts;
use crate::nlu::llm::ToolSpec;
use crate::orchestrator::speak;
use crate::orchestrator::tools::{Tool, ToolContext, ToolError, ToolOutput, ToolRegistry};

/// Parse a time argument: RFC 3339 with a zone (`2026-11-26T15:00:00+01:00[Europe/Berlin]`),
/// an instant (`…Z`), a local date-time (device zone) or a date (`2026-11-26`, all-day).
/// Returns the time and whether it was a date.
pub fn parse_time(s: &str, tz: &TimeZone) -> Result<(Zoned, bool), String> {
    let s = s.trim();
    if let Ok(z) = s.parse::<Zoned>() {
        return Ok((z, false));
    }
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok((ts.to_zoned(tz.clone()), false));
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        if s.contains('T') || s.contains(' ') {
            return dt
                .to_zoned(tz.clone())
                .map(|z| (z, false))
                .map_err(|e| e.to_string());
        }
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return d
            .to_zoned(tz.clone())
            .map(|z| (z, true))
            .map_err(|e| e.to_string());
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 like 2026-11-26T15:00:00+01:00[Europe/Berlin], 2026-11-26T15:00 or a date 2026-11-26"
    ))
}

fn bad(tool: &str, message: String) -> ToolError {
    ToolError::InvalidArguments {
        tool: tool.into(),
        message,
    }
}

fn cal_err(tool: &str, e: CalendarError) -> ToolError {
    match e {
        CalendarError::Store(s) => ToolError::Store(s),
        other => bad(tool, other.to_string()),
    }
}

fn str_arg<'a>(args: &'a Value, k: &str) -> Option<&'a str> {
    args.get(k)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn occ_json(o: &Occurrence) -> Value {
    json!({ "uid": o.uid, "title": o.title, "start": o.start.to_string(), "end": o.end.to_string(),
            "all_day": o.all_day, "recurring": o.recurring })
}

fn conflict_words(c: &[Occurrence], now: &Zoned) -> String {
    let items: Vec<String> = c
        .iter()
        .take(3)
        .map(|o| format!("{} {}", o.title, speak::day_and_time(&o.start, now)))
        .collect();
    speak::list_and(&items)
}

/// "tomorrow", "thursday afternoon" → "tomorrow", "on Thursday afternoon".
pub fn label_phrase(label: &str) -> String {
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let words: Vec<String> = label
        .split_whitespace()
        .map(|w| {
            if DAYS.contains(&w.to_ascii_lowercase().as_str()) {
                let mut c = w.chars();
                c.next().map_or_else(String::new, |f| {
                    f.to_uppercase().collect::<String>() + c.as_str()
                })
            } else {
                w.to_owned()
            }
        })
        .collect();
    let s = words.join(" ");
    let first = label
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if DAYS.contains(&first.as_str()) {
        format!("on {s}")
    } else {
        s
    }
}

/// An attendee named in a request ("with Anna"): linked to the contact of that name when
/// exactly one matches (with its first email and phone, as a calendar invitation carries
/// them), else kept as a name.
async fn attendee(contacts: &Contacts, name: &str) -> super::Attendee {
    let found = contacts.find_by_name(name).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "calendar: cannot look up attendee {name:?}");
        Vec::new()
    });
    match found.as_slice() {
        [c] => super::Attendee {
            name: Some(c.display_name.clone()),
            email: c.emails.first().map(|e| e.address.clone()),
            phone: c.phones.first().map(|p| p.number.clone()),
            contact_id: Some(c.id),
        },
        _ => super::Attendee {
            name: Some(name.to_owned()),
            ..Default::default()
        },
    }
}

struct Create(Calendar, Contacts);

impl Tool for Create {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "appointment_create".into(),
            description: "Book an appointment: title and start (RFC 3339 with zone, or a date for all-day); optional end or duration_minutes, location, with (names), notes, rrule (RFC 5545, e.g. FREQ=WEEKLY;BYDAY=MO), alarm_minutes (before the start; -1 for none). If it overlaps other appointments nothing is booked unless confirm=true.".into(),
            parameters: json!({"type": "object", "properties": {
                "title": {"type": "string"}, "start": {"type": "string"}, "end": {"type": "string"},
                "duration_minutes": {"type": "integer"}, "location": {"type": "string"},
                "with": {"type": "string"}, "notes": {"type": "string"}, "rrule": {"type": "string"},
                "alarm_minutes": {"type": "integer"}, "confirm": {"type": "boolean"}},
                "required": ["title", "start"]}),
        }
    }
    fn group(&self) -> &'static str {
        "calendar"
    }
    fn call<'a>(
        &'a self,
        args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            const T: &str = "appointment_create";
            let cal = &self.0;
            let tz = ctx.now.time_zone().clone();
            let title =
                str_arg(&args, "title").ok_or_else(|| bad(T, "title must not be empty".into()))?;
            let (start, all_day) = parse_time(str_arg(&args, "start").unwrap_or(""), &tz)
                .map_err(|m| bad(T, format!("start: {m}")))?;
            let end = match (
                str_arg(&args, "end"),
                args.get("duration_minutes").and_then(Value::as_i64),
            ) {
                (Some(e), _) => {
                    parse_time(e, &tz)
                        .map_err(|m| bad(T, format!("end: {m}")))?
                        .0
                }
                (None, Some(m)) if (1..=10_080).contains(&m) => start
                    .checked_add(SignedDuration::from_mins(m))
                    .map_err(|e| bad(T, e.to_string()))?,
                (None, Some(m)) => {
                    return Err(bad(
                        T,
                        format!("duration_minutes must be 1 to 10080; got {m}"),
                    ))
                }
                (None, None) if all_day => start
                    .checked_add(jiff::Span::new().days(1))
                    .map_err(|e| bad(T, e.to_string()))?,
                (None, None) => start
                    .checked_add(cal.config().default_duration)
                    .map_err(|e| bad(T, e.to_string()))?,
            };
            if !all_day && args.get("rrule").is_none() && start <= ctx.now {
                return Err(bad(T, format!("start {start} is in the past")));
            }
            let mut new = NewEvent::new(title, start.clone(), end);
            new.all_day = all_day;
            new.location = str_arg(&args, "location").map(str::to_owned);
            new.notes = str_arg(&args, "notes").map(str::to_owned);
            new.rrule = str_arg(&args, "rrule").map(str::to_owned);
            new.alarms = match args.get("alarm_minutes").and_then(Value::as_i64) {
                Some(m) if m < 0 => Vec::new(),
                Some(m) => vec![m],
                None => cal.config().default_alarm.into_iter().collect(),
            };
            if let Some(w) = str_arg(&args, "with") {
                let names: Vec<String> = w
                    .replace(" and ", ",")
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                for n in names {
                    new.attendees.push(attendee(&self.1, &n).await);
                }
            }
            let confirm = args
                .get("confirm")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let already = match ctx.source_message_id {
                Some(src) => cal.booked_by(src).await.map_err(|e| cal_err(T, e))?,
                None => None,
            };
            if already.is_none() && !confirm {
                let conflicts = cal.check(&new).await.map_err(|e| cal_err(T, e))?;
                if !conflicts.is_empty() {
                    return Ok(ToolOutput {
                        say: format!(
                            "That overlaps with {}. Should I book {title} anyway?",
                            conflict_words(&conflicts, &ctx.now)
                        ),
                        data: json!({ "booked": false, "conflicts": conflicts.iter().map(occ_json).collect::<Vec<_>>() }),
                    });
                }
            }
            let booked = cal
                .create(new, ctx.source_message_id)
                .await
                .map_err(|e| cal_err(T, e))?;
            let e = &booked.event;
            let when = if e.all_day {
                format!("{} all day", speak::day(e.start.date(), &ctx.now))
            } else {
                format!(
                    "{} until {}",
                    speak::day_and_time(&e.start, &ctx.now),
                    speak::time_of_day(&e.end)
                )
            };
            let mut say = format!("Booked {} {when}", e.title);
            if let Some(l) = &e.location {
                say.push_str(&format!(" at {l}"));
            }
            say.push('.');
            if !booked.conflicts.is_empty() {
                say.push_str(&format!(
                    " It overlaps with {}.",
                    conflict_words(&booked.conflicts, &ctx.now)
                ));
            }
            Ok(ToolOutput {
                say,
                data: json!({ "booked": true, "uid": e.uid, "start": e.start.to_string(), "end": e.end.to_string(),
                              "conflicts": booked.conflicts.iter().map(occ_json).collect::<Vec<_>>() }),
            })
        })
    }
}

struct List(Calendar);

impl Tool for List {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "appointment_list".into(),
            description: "List appointments between from and to (RFC 3339; default the next 7 days), or with free_slots=true the free gaps of at least min_minutes in that range's waking hours.".into(),
            parameters: json!({"type": "object", "properties": {
                "from": {"type": "string"}, "to": {"type": "string"}, "label": {"type": "string"},
                "free_slots": {"type": "boolean"}, "min_minutes": {"type": "integer"}}}),
        }
    }
    fn group(&self) -> &'static str {
        "calendar"
    }
    fn call<'a>(
        &'a self,
        args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            const T: &str = "appointment_list";
            let tz = ctx.now.time_zone().clone();
            let from = match str_arg(&args, "from") {
                Some(s) => {
                    parse_time(s, &tz)
                        .map_err(|m| bad(T, format!("from: {m}")))?
                        .0
                }
                None => ctx.now.clone(),
            };
            let to = match str_arg(&args, "to") {
                Some(s) => {
                    parse_time(s, &tz)
                        .map_err(|m| bad(T, format!("to: {m}")))?
                        .0
                }
                None => from
                    .checked_add(jiff::Span::new().days(7))
                    .map_err(|e| bad(T, e.to_string()))?,
            };
            if to <= from {
                return Err(bad(T, "to must be after from".into()));
            }
            let label = match str_arg(&args, "label") {
                Some(l) => label_phrase(l),
                None if str_arg(&args, "from").is_none() && str_arg(&args, "to").is_none() => {
                    "in the next 7 days".into()
                }
                None => String::new(),
            };
            let last = to
                .checked_sub(SignedDuration::from_nanos(1))
                .unwrap_or_else(|_| to.clone());
            let one_day = from.date() == last.date();
            if args
                .get("free_slots")
                .and_then(Value::as_bool)
                .unwrap_or(false)
            {
                let min = match args.get("min_minutes").and_then(Value::as_i64) {
                    Some(m) if (5..=720).contains(&m) => Some(SignedDuration::from_mins(m)),
                    Some(m) => {
                        return Err(bad(T, format!("min_minutes must be 5 to 720; got {m}")))
                    }
                    None => None,
                };
                // Never offer time that has passed.
                let from = if from < ctx.now && to > ctx.now {
                    ctx.now.clone()
                } else {
                    from
                };
                let slots = self
                    .0
                    .free(&from, &to, min)
                    .await
                    .map_err(|e| cal_err(T, e))?;
                return Ok(ToolOutput {
                    say: describe_free(&slots, &label, &ctx.now),
                    data: json!(slots
                        .iter()
                        .map(|s| json!({"start": s.start.to_string(), "end": s.end.to_string()}))
                        .collect::<Vec<_>>()),
                });
            }
            let items = self
                .0
                .list(from.timestamp(), to.timestamp())
                .await
                .map_err(|e| cal_err(T, e))?;
            Ok(ToolOutput {
                say: describe_list(&items, &label, &ctx.now, one_day),
                data: json!(items.iter().map(occ_json).collect::<Vec<_>>()),
            })
        })
    }
}

/// Find the instance a move/cancel means: by title words and/or by time (`at` at midnight
/// means that whole day), soonest first, from now on; with neither, the most recently changed
/// event's next instance.
async fn find(
    cal: &Calendar,
    args: &Value,
    ctx: &ToolContext,
    tool: &str,
) -> Result<Vec<Occurrence>, ToolError> {
    let tz = ctx.now.time_zone().clone();
    let needle = str_arg(args, "match").map(str::to_lowercase);
    let at = match str_arg(args, "at") {
        Some(s) => Some(parse_time(s, &tz).map_err(|m| bad(tool, format!("at: {m}")))?),
        None => None,
    };
    let from = match &at {
        Some((z, _)) if z.time() == jiff::civil::Time::midnight() => z.clone(),
        Some((z, _)) => z.clone(),
        None => ctx.now.clone(),
    };
    let to = match &at {
        Some((z, _)) if z.time() == jiff::civil::Time::midnight() => z
            .checked_add(jiff::Span::new().days(1))
            .map_err(|e| bad(tool, e.to_string()))?,
        Some((z, _)) => z
            .checked_add(SignedDuration::from_mins(1))
            .map_err(|e| bad(tool, e.to_string()))?,
        None => ctx
            .now
            .checked_add(jiff::Span::new().days(super::CONFLICT_HORIZON_DAYS))
            .map_err(|e| bad(tool, e.to_string()))?,
    };
    let items = cal
        .list(from.timestamp(), to.timestamp())
        .await
        .map_err(|e| cal_err(tool, e))?;
    let exact_time = at
        .as_ref()
        .is_some_and(|(z, _)| z.time() != jiff::civil::Time::midnight());
    let mut hits: Vec<Occurrence> = items
        .into_iter()
        .filter(|o| {
            !exact_time
                || at
                    .as_ref()
                    .is_some_and(|(z, _)| o.start.timestamp() == z.timestamp())
        })
        .filter(|o| {
            needle.as_ref().is_none_or(|n| {
                let t = o.title.to_lowercase();
                t.contains(n.as_str()) || n.contains(t.as_str())
            })
        })
        .collect();
    if needle.is_none() && at.is_none() {
        let latest = cal.latest().await.map_err(|e| cal_err(tool, e))?;
        hits.retain(|o| latest.as_ref().is_some_and(|l| l.uid == o.uid));
    }
    Ok(hits)
}

fn not_found(args: &Value) -> String {
    match str_arg(args, "match") {
        Some(m) => format!("I couldn't find an appointment matching \"{m}\"."),
        None => "I couldn't find that appointment.".into(),
    }
}

struct Move(Calendar);

impl Tool for Move {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "appointment_move".into(),
            description: "Reschedule an appointment (keeping its length) to `to` (RFC 3339). Pick it by title words (`match`) and/or its current start or day (`at`); neither means the last one talked about. For a series only that instance moves.".into(),
            parameters: json!({"type": "object", "properties": {
                "match": {"type": "string"}, "at": {"type": "string"}, "to": {"type": "string"}},
                "required": ["to"]}),
        }
    }
    fn group(&self) -> &'static str {
        "calendar"
    }
    fn call<'a>(
        &'a self,
        args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            const T: &str = "appointment_move";
            let tz = ctx.now.time_zone().clone();
            let (to, _) = parse_time(str_arg(&args, "to").unwrap_or(""), &tz)
                .map_err(|m| bad(T, format!("to: {m}")))?;
            let hits = find(&self.0, &args, ctx, T).await?;
            let Some(o) = hits.first() else {
                return Ok(ToolOutput {
                    say: not_found(&args),
                    data: json!({ "moved": false }),
                });
            };
            let e = self
                .0
                .move_to(&o.uid, o.recurrence_id.as_ref(), &to)
                .await
                .map_err(|e| cal_err(T, e))?;
            let conflicts: Vec<Occurrence> = self
                .0
                .check_moved(&e, &to)
                .await
                .map_err(|e| cal_err(T, e))?;
            let when = speak::day_and_time(&to, &ctx.now);
            let when = when.strip_prefix("on ").unwrap_or(&when);
            let mut say = format!("Moved {} to {when}.", o.title);
            if !conflicts.is_empty() {
                say.push_str(&format!(
                    " Note that it now overlaps with {}.",
                    conflict_words(&conflicts, &ctx.now)
                ));
            }
            Ok(ToolOutput {
                say,
                data: json!({ "moved": true, "uid": e.uid, "from": o.start.to_string(), "to": to.to_string(),
                              "conflicts": conflicts.iter().map(occ_json).collect::<Vec<_>>() }),
            })
        })
    }
}

struct Cancel(Calendar);

impl Tool for Cancel {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "appointment_cancel".into(),
            description: "Cancel an appointment chosen by title words (`match`) and/or start or day (`at`); all=true cancels every upcoming appointment (in the `at` day if given). For a series only that instance is cancelled unless series=true.".into(),
            parameters: json!({"type": "object", "properties": {
                "match": {"type": "string"}, "at": {"type": "string"}, "all": {"type": "boolean"},
                "series": {"type": "boolean"}}}),
        }
    }
    fn group(&self) -> &'static str {
        "calendar"
    }
    fn call<'a>(
        &'a self,
        args: Value,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            const T: &str = "appointment_cancel";
            let all = args.get("all").and_then(Value::as_bool).unwrap_or(false);
            let series = args.get("series").and_then(Value::as_bool).unwrap_or(false);
            if all {
                let hits = self.upcoming(&args, ctx).await?;
                let mut uids: Vec<String> = hits.iter().map(|o| o.uid.clone()).collect();
                uids.dedup();
                uids.sort();
                uids.dedup();
                for u in &uids {
                    match self.0.delete(u).await {
                        Ok(_) | Err(CalendarError::NotFound { .. }) => {}
                        Err(e) => return Err(cal_err(T, e)),
                    }
                }
                let n = uids.len();
                return Ok(ToolOutput {
                    say: match n {
                        0 => "You have no appointments to cancel.".into(),
                        1 => "Cancelled 1 appointment.".into(),
                        n => format!("Cancelled {n} appointments."),
                    },
                    data: json!({ "cancelled": n, "uids": uids }),
                });
            }
            let hits = find(&self.0, &args, ctx, T).await?;
            let Some(o) = hits.first() else {
                return Ok(ToolOutput {
                    say: not_found(&args),
                    data: json!({ "cancelled": 0 }),
                });
            };
            let when = if o.all_day {
                speak::day(o.start.date(), &ctx.now)
            } else {
                speak::day_and_time(&o.start, &ctx.now)
            };
            match (&o.recurrence_id, series) {
                (Some(rid), false) => {
                    self.0
                        .cancel_instance(&o.uid, rid)
                        .await
                        .map_err(|e| cal_err(T, e))?;
                }
                _ => {
                    self.0.delete(&o.uid).await.map_err(|e| cal_err(T, e))?;
                }
            }
            let say = if o.recurring && !series {
                format!(
                    "Cancelled {} {when}; the rest of the series stays.",
                    o.title
                )
            } else {
                format!("Cancelled {} {when}.", o.title)
            };
            Ok(ToolOutput {
                say,
                data: json!({ "cancelled": 1, "uid": o.uid, "start": o.start.to_string() }),
            })
        })
    }
}

impl Cancel {
    async fn upcoming(
        &self,
        args: &Value,
        ctx: &ToolContext,
    ) -> Result<Vec<Occurrence>, ToolError> {
        // `find` without match/at means "the last one"; "all" means every upcoming one.
        if str_arg(args, "match").is_none() && str_arg(args, "at").is_none() {
            let to = ctx
                .now
                .checked_add(jiff::Span::new().days(super::CONFLICT_HORIZON_DAYS))
                .map_err(|e| bad("appointment_cancel", e.to_string()))?;
            return self
                .0
                .list(ctx.now.timestamp(), to.timestamp())
                .await
                .map_err(|e| cal_err("appointment_cancel", e));
        }
        find(&self.0, args, ctx, "appointment_cancel").await
    }
}

/// Register the calendar tools.
pub fn register(r: &mut ToolRegistry, cal: &Calendar, contacts: &Contacts) {
    r.register(Arc::new(Create(cal.clone(), contacts.clone())));
    r.register(Arc::new(List(cal.clone())));
    r.register(Arc::new(Move(cal.clone())));
    r.register(Arc::new(Cancel(cal.clone())));
}
