//! inboxd: a shared-inbox daemon. Data flow: `ingest` (IMAP, Maildir) → `parse` → threading and
//! sealing (`store::threads`, `crypto`) → `store` (database + encrypted blobs).
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod cli;
pub mod client;
pub mod clock;
pub mod commands;
pub mod commands_api;
pub mod commands_conversations;
pub mod commands_oauth;
pub mod commands_output;
pub mod commands_purge;
pub mod commands_search;
pub mod config;
pub mod crypto;
pub mod delivery;
pub mod imap;
pub mod ingest;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod oauth;
pub mod parse;
pub mod purge;
pub mod search;
pub mod service;
pub mod store;
