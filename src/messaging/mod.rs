//! Messaging: the inbox (inbound messages made durable before they are acknowledged) and the
//! outbox (outbound deliveries retried until delivered or dead-lettered), shared by every
//! channel adapter.
//!
//! Architecture Invariant: messaging knows no wire format; channels turn their protocol into
//! [`inbox::InboundText`] and implement [`outbox::DeliveryHandler`].

pub mod inbox;
pub mod outbox;
