//! Home data the assistant keeps: reminders and timers now; calendar, tasks, contacts and
//! memory join here with the Home data issue and plug into the same tool registry.

pub mod reminders;
pub mod tasks;
