//! The integration tests, as one test binary: every suite is a module here, so the crate and
//! its dependencies are linked once instead of once per suite (`cargo test chat::` runs one).

mod common;

mod api;
mod appliance;
mod caldav;
mod calendar;
mod calls;
mod chat;
mod chat_llm;
mod contacts;
mod durability;
mod events;
mod lifecycle;
mod llm_candle;
mod llm_ollama;
mod llm_worker;
mod memory;
mod models;
mod nlu_intents;
mod outbox;
mod reminders_api;
mod source_docs;
mod speech_listen;
mod speech_roundtrip;
mod speech_tts;
mod speech_vosk;
mod speech_whisper;
mod systemd_unit;
mod tasks;
mod tasks_sync;
mod twilio;
mod voice;
mod vonage;
