//! sea-orm entities, one per table. Queries live in the sibling modules of `store`, never in callers.
pub mod api_token;
pub mod attachment;
pub mod audit_entry;
pub mod conversation;
pub mod data_key;
pub mod delivery_event;
pub mod folder_state;
pub mod instance_setting;
pub mod mailbox;
pub mod message;
pub mod message_address;
pub mod message_blob;
pub mod note;
pub mod oauth_token;
pub mod outbox;
pub mod thread_id;
pub mod tombstone;
