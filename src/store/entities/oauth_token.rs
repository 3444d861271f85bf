//! Entity for the `oauth_tokens` table (see `migrations/` for the schema).
use sea_orm::entity::prelude::*;

/// The OAuth2 tokens of one mailbox, sealed under the master key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "oauth_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub mailbox_id: Uuid,
    pub refresh_token_sealed: Vec<u8>,
    pub access_token_sealed: Option<Vec<u8>>,
    pub access_expires_at: Option<DateTimeUtc>,
    /// `authorized` or `needs_reauthorization`.
    pub state: String,
    /// Grows with each `mailbox authorize`.
    pub generation: i64,
    pub refreshed_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
