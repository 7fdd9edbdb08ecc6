//! Channels: adapters between the outside world and the core. Each turns its transport into
//! inbound messages (through the inbox or a direct turn) and registers a
//! [`crate::messaging::outbox::DeliveryHandler`] for what goes out. Nothing in the core knows
//! which channel it talks to.

pub mod local;
