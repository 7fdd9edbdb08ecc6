//! Home data the assistant keeps: reminders and timers, and the CalDAV sync of the calendar;
//! calendar, tasks, contacts and memory join here with the Home data issue and plug into the
//! same tool registry.

pub mod caldav;
pub mod calendar;
pub mod contacts;
pub mod memory;
pub mod reminders;
pub mod tasks;
