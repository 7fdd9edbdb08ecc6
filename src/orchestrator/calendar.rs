//! The calendar dialogue: appointment intents → calendar tools, with slot filling (a missing
//! title or time is asked for), a confirmation before double-booking, and a confirmation
//! before "cancel all my appointments".

use serde_json::{json, Value};

use super::tools::{ToolCallRecord, ToolContext};
use super::{Decision, Inner, Pending};
use crate::nlu::intents::{self, Intent, ParseContext, SlotKind, SlotValue, Target, When};

/// `match`/`at` arguments picking the appointment a target names.
fn target_args(target: Option<Target>) -> Value {
    match target {
        Some(Target::Named { text }) => json!({ "match": text }),
        Some(Target::At { when }) => json!({ "at": when.first().to_string() }),
        Some(Target::All) => json!({ "all": true }),
        Some(Target::Last) | None => json!({}),
    }
}

fn slot_time(v: Option<SlotValue>) -> Option<String> {
    match v? {
        SlotValue::DateTime(z) => Some(z.to_string()),
        SlotValue::When(When::At { at }) => Some(at.to_string()),
        SlotValue::When(When::Recurring { first, .. }) => Some(first.to_string()),
        _ => None,
    }
}

impl Inner {
    /// A fresh appointment intent.
    pub(super) async fn appointment(
        &self,
        intent: Intent,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> Decision {
        if let Err(r) = self.router.check("calendar", &tctx.channel, tctx.trust) {
            return Decision::Refuse(r.say);
        }
        match intent {
            Intent::AppointmentCreate {
                title,
                start,
                duration,
                with,
                location,
            } => {
                let p = Pending::Appointment {
                    title,
                    start: start.map(|z| z.to_string()),
                    minutes: duration.map(|d| d.as_mins()),
                    with,
                    location,
                    attempts: 0,
                };
                self.appointment_step(p, tctx, calls).await
            }
            Intent::AppointmentList { range, free_slots } => {
                let mut args = json!({});
                match range {
                    Some(r) => {
                        args["from"] = json!(r.start.to_string());
                        args["to"] = json!(r.end.to_string());
                        args["label"] = json!(r.label);
                    }
                    None if free_slots => {
                        // "When am I free?": the rest of today.
                        let end = tctx
                            .now
                            .date()
                            .tomorrow()
                            .ok()
                            .and_then(|d| d.to_zoned(tctx.now.time_zone().clone()).ok());
                        if let Some(end) = end {
                            args["from"] = json!(tctx.now.to_string());
                            args["to"] = json!(end.to_string());
                            args["label"] = json!("today");
                        }
                    }
                    None => {}
                }
                if free_slots {
                    args["free_slots"] = json!(true);
                }
                self.call_tool("appointment_list", args, tctx, calls).await
            }
            Intent::AppointmentMove { target, to } => {
                let mut args = target_args(target);
                if let Some(o) = args.as_object_mut() {
                    o.remove("all");
                }
                match to {
                    Some(z) => {
                        args["to"] = json!(z.to_string());
                        self.call_tool("appointment_move", args, tctx, calls).await
                    }
                    None => Decision::Ask(
                        "When should I move it to?".into(),
                        Pending::AppointmentMove { args, attempts: 0 },
                    ),
                }
            }
            Intent::AppointmentCancel { target } => match target {
                Some(Target::All) => self.confirm_cancel_all_appointments(tctx).await,
                other => {
                    self.call_tool("appointment_cancel", target_args(other), tctx, calls)
                        .await
                }
            },
            _ => Decision::Llm,
        }
    }

    async fn confirm_cancel_all_appointments(&self, tctx: &ToolContext) -> Decision {
        let to = tctx
            .now
            .checked_add(jiff::Span::new().days(crate::home::calendar::CONFLICT_HORIZON_DAYS));
        let args = match &to {
            Ok(to) => json!({ "from": tctx.now.to_string(), "to": to.to_string() }),
            Err(_) => json!({}),
        };
        let mut uids: Vec<String> = self
            .tools
            .call(&self.router, "appointment_list", args, tctx)
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|o| {
                o.data.as_array().map(|a| {
                    a.iter()
                        .filter_map(|x| x["uid"].as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default();
        uids.sort();
        uids.dedup();
        match uids.len() {
            0 => Decision::Say("You have no appointments to cancel.".into()),
            n => Decision::Confirm(
                if n == 1 {
                    "Cancel your one upcoming appointment?".into()
                } else {
                    format!("Cancel all {n} upcoming appointments?")
                },
                Pending::Confirm {
                    tool: "appointment_cancel".into(),
                    args: json!({ "all": true }),
                    decline: "Okay, I'll keep your appointments.".into(),
                    attempts: 0,
                },
            ),
        }
    }

    /// Ask for what is missing, else book (asking first when it would double-book).
    async fn appointment_step(
        &self,
        p: Pending,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> Decision {
        let Pending::Appointment {
            title,
            start,
            minutes,
            with,
            location,
            attempts,
        } = p
        else {
            return Decision::Llm;
        };
        let Some(t) = title.clone() else {
            return Decision::Ask(
                "What is the appointment?".into(),
                Pending::Appointment {
                    title,
                    start,
                    minutes,
                    with,
                    location,
                    attempts,
                },
            );
        };
        let Some(s) = start.clone() else {
            return Decision::Ask(
                format!("When is {t}?"),
                Pending::Appointment {
                    title,
                    start,
                    minutes,
                    with,
                    location,
                    attempts: 0,
                },
            );
        };
        let mut args = json!({ "title": t, "start": s });
        if let Some(m) = minutes {
            args["duration_minutes"] = json!(m);
        }
        if let Some(w) = with {
            args["with"] = json!(w);
        }
        if let Some(l) = location {
            args["location"] = json!(l);
        }
        match self
            .tools
            .call(&self.router, "appointment_create", args.clone(), tctx)
            .await
        {
            Ok(Ok(out)) => {
                let ask = out.data["booked"] == json!(false);
                calls.push(ToolCallRecord {
                    name: "appointment_create".into(),
                    arguments: args.clone(),
                    result: out.data,
                });
                if ask {
                    args["confirm"] = json!(true);
                    Decision::Confirm(
                        out.say,
                        Pending::Confirm {
                            tool: "appointment_create".into(),
                            args,
                            decline: "Okay, I haven't booked it.".into(),
                            attempts: 0,
                        },
                    )
                } else {
                    Decision::Say(out.say)
                }
            }
            Ok(Err(refusal)) => Decision::Refuse(refusal.say),
            Err(e) => {
                tracing::warn!(tool = "appointment_create", error = %e, "tool call failed");
                calls.push(ToolCallRecord {
                    name: "appointment_create".into(),
                    arguments: args,
                    result: json!({ "error": e.to_string() }),
                });
                Decision::Say(format!("Sorry, that didn't work: {e}."))
            }
        }
    }

    /// The answer to an appointment question; `Err(())` when it is a new request instead.
    pub(super) async fn continue_appointment(
        &self,
        text: &str,
        p: Pending,
        intent: Option<&Intent>,
        pctx: &ParseContext,
        tctx: &ToolContext,
        calls: &mut Vec<ToolCallRecord>,
    ) -> Result<(Decision, Option<String>), ()> {
        let new_request = matches!(intent, Some(i) if !matches!(i, Intent::Yes | Intent::No));
        match p {
            Pending::AppointmentMove { mut args, attempts } => {
                match slot_time(intents::parse_slot(text, SlotKind::DateTime, pctx))
                    .or_else(|| slot_time(intents::parse_slot(text, SlotKind::When, pctx)))
                {
                    Some(to) => {
                        args["to"] = json!(to);
                        Ok((
                            self.call_tool("appointment_move", args, tctx, calls).await,
                            Some("appointment.move".into()),
                        ))
                    }
                    None if new_request => Err(()),
                    None if attempts >= 1 => Ok((
                        Decision::Say(
                            "Sorry, I didn't get the time, so I haven't moved it.".into(),
                        ),
                        None,
                    )),
                    None => Ok((
                        Decision::Ask(
                            "Sorry, when should I move it to? For example, Monday at 10 AM.".into(),
                            Pending::AppointmentMove {
                                args,
                                attempts: attempts + 1,
                            },
                        ),
                        None,
                    )),
                }
            }
            Pending::Appointment {
                mut title,
                mut start,
                mut minutes,
                with,
                location,
                attempts,
            } => {
                if title.is_none() {
                    // "a dentist appointment on Friday at 3" may answer more than asked.
                    let combined = intents::parse(&format!("book {text}"), pctx);
                    match combined {
                        Some(Intent::AppointmentCreate {
                            title: Some(t),
                            start: s,
                            duration,
                            ..
                        }) if !new_request => {
                            title = Some(t);
                            start = start.or(s.map(|z| z.to_string()));
                            minutes = minutes.or(duration.map(|d| d.as_mins()));
                        }
                        _ => match intents::parse_slot(text, SlotKind::Text, pctx) {
                            Some(SlotValue::Text(t)) if !new_request && !t.trim().is_empty() => {
                                title = Some(t);
                            }
                            _ if new_request => return Err(()),
                            _ => {
                                return Ok((
                                    Decision::Ask(
                                        "Sorry, what is the appointment?".into(),
                                        Pending::Appointment {
                                            title,
                                            start,
                                            minutes,
                                            with,
                                            location,
                                            attempts: attempts + 1,
                                        },
                                    ),
                                    None,
                                ))
                            }
                        },
                    }
                } else if start.is_none() {
                    match slot_time(intents::parse_slot(text, SlotKind::DateTime, pctx))
                        .or_else(|| slot_time(intents::parse_slot(text, SlotKind::When, pctx)))
                    {
                        Some(s) => start = Some(s),
                        None if new_request => return Err(()),
                        None if attempts >= 1 => {
                            return Ok((
                                Decision::Say(
                                    "Sorry, I didn't get the time, so I haven't booked it.".into(),
                                ),
                                None,
                            ))
                        }
                        None => {
                            return Ok((
                                Decision::Ask(
                                    "Sorry, when is it? For example, Friday at 3 PM.".into(),
                                    Pending::Appointment {
                                        title,
                                        start,
                                        minutes,
                                        with,
                                        location,
                                        attempts: attempts + 1,
                                    },
                                ),
                                None,
                            ))
                        }
                    }
                }
                let p = Pending::Appointment {
                    title,
                    start,
                    minutes,
                    with,
                    location,
                    attempts,
                };
                Ok((
                    self.appointment_step(p, tctx, calls).await,
                    Some("appointment.create".into()),
                ))
            }
            _ => Err(()),
        }
    }
}
