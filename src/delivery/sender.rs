//! The outbox sender task: sends due replies through the mailbox's SMTP server with DSN requests and a
//! VERP envelope sender, and records per-recipient results as events and row states.
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use super::bounces::{EventDetail, record_event};
use super::outbox::{self, Wake, state};
use super::smtp::{self, DsnRequest, Envelope, Notify, RecipientResult, SmtpSettings, SmtpTls};
use super::{DeliveryError, envelope_tag, event, verp_sender};
use crate::config::{
    OutboxConfig, Outgoing, PasswordSource, Secret, TlsSetting, read_secret_env, read_secret_file,
};
use crate::ingest::commit::Ingestor;
use crate::ingest::imap_sync::OAuthContext;
use crate::ingest::supervisor::MailboxSet;
use crate::oauth::sasl::AuthMechanism;
use crate::store::entities::{mailbox, message, outbox as outbox_rows};
use crate::store::read;

/// How long the sender sleeps when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_secs(2);

/// The sender task.
pub struct Sender {
    pub ingestor: Ingestor,
    pub mailboxes: MailboxSet,
    pub policy: OutboxConfig,
    /// Notified when a reply is queued.
    pub wake: Wake,
    pub timeout: Duration,
}

/// Client settings from a mailbox's `[mailbox.smtp]`, reading the password now.
pub fn smtp_settings(
    name: &str,
    outgoing: &Outgoing,
    timeout: Duration,
) -> Result<SmtpSettings, DeliveryError> {
    let key = format!("mailbox `{name}` smtp password");
    let mut auth = AuthMechanism::Password;
    let password = match &outgoing.smtp.password {
        Some(PasswordSource::File(path)) => {
            Some(read_secret_file(&key, path).map_err(crate::ingest::IngestError::from)?)
        }
        Some(PasswordSource::Env(variable)) => {
            Some(read_secret_env(&key, variable).map_err(crate::ingest::IngestError::from)?)
        }
        Some(PasswordSource::Stored(secret)) => Some(secret.clone()),
        // Filled in by `with_oauth_token`.
        Some(PasswordSource::OAuth(oauth)) => {
            auth = oauth.mechanism.into();
            Some(Secret::new(String::new()))
        }
        None => None,
    };
    let smtp = &outgoing.smtp;
    Ok(SmtpSettings {
        host: smtp.host.clone(),
        port: smtp.port,
        tls: match (smtp.insecure, smtp.tls) {
            (true, _) => SmtpTls::Plain,
            (false, TlsSetting::Implicit) => SmtpTls::Implicit,
            (false, TlsSetting::StartTls) => SmtpTls::StartTls,
        },
        username: smtp.username.clone(),
        password: password.map(|secret| secret.expose().to_string()),
        auth,
        ca_file: smtp.ca_file.clone(),
        insecure: smtp.insecure,
        timeout,
        helo_name: super::compose::domain_of(&outgoing.address).to_string(),
    })
}

/// Puts an OAuth2 access token into the settings of a mailbox whose SMTP side signs in with OAuth (a
/// new one if `rejected` was refused); other settings pass through unchanged.
pub async fn with_oauth_token(
    name: &str,
    outgoing: &Outgoing,
    mut settings: SmtpSettings,
    context: &OAuthContext<'_>,
    rejected: Option<&Secret>,
) -> Result<SmtpSettings, DeliveryError> {
    let Some(PasswordSource::OAuth(oauth)) = &outgoing.smtp.password else {
        return Ok(settings);
    };
    let source = crate::oauth::TokenSource {
        db: context.db,
        key: context.key,
        mailbox_id: context.mailbox_id,
        mailbox: name,
        oauth,
    };
    let token = source
        .access_token(rejected)
        .await
        .map_err(crate::ingest::IngestError::from)?;
    settings.password = Some(token.expose().to_string());
    Ok(settings)
}

/// Submits through the mailbox's relay; an OAuth token the relay refuses is refreshed and the
/// submission tried once more (the refusal comes before `MAIL FROM`, so nothing was sent yet).
async fn send_with_credentials(
    name: &str,
    outgoing: &Outgoing,
    settings: SmtpSettings,
    context: &OAuthContext<'_>,
    submission: (&Envelope, &DsnRequest, &[u8]),
) -> Result<Result<smtp::SendOutcome, smtp::SmtpError>, DeliveryError> {
    let (envelope, dsn, raw) = submission;
    let settings = with_oauth_token(name, outgoing, settings, context, None).await?;
    let first = smtp::send(&settings, envelope, dsn, raw).await;
    let oauth = matches!(outgoing.smtp.password, Some(PasswordSource::OAuth(_)));
    match first {
        Err(err) if oauth && err.is_auth() => {
            let used = settings.password.clone().map(Secret::new);
            let settings =
                with_oauth_token(name, outgoing, settings, context, used.as_ref()).await?;
            Ok(smtp::send(&settings, envelope, dsn, raw).await)
        }
        other => Ok(other),
    }
}

/// Instance setting recording that a mailbox's relay advertised DSN (RFC 3461).
fn dsn_key(mailbox: &str) -> String {
    format!("relay_dsn:{mailbox}")
}

fn retry_delay(policy: &OutboxConfig, attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.max(1) - 1).unwrap_or(0).min(16);
    policy
        .retry_base
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(Duration::from_secs(3600))
}

impl Sender {
    /// Runs until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        match outbox::recover_interrupted(&self.ingestor.store.db, self.policy.interrupted_grace)
            .await
        {
            Ok(0) => {}
            Ok(count) => warn!(
                count,
                "outbox rows were interrupted mid-send; not resending them"
            ),
            Err(err) => warn!(error = %err, "cannot recover the outbox"),
        }
        loop {
            if let Err(err) = self.pass(&cancel).await {
                warn!(error = %err, "outbox pass failed");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    /// Sends every message that has due rows; returns how many were attempted.
    pub async fn pass(&self, cancel: &CancellationToken) -> Result<usize, DeliveryError> {
        let due = outbox::due_messages(&self.ingestor.store.db, crate::clock::now(), 20).await?;
        let mut attempted = 0;
        for message_id in due {
            if cancel.is_cancelled() {
                break;
            }
            self.send_message(message_id).await?;
            attempted += 1;
        }
        Ok(attempted)
    }

    async fn send_message(&self, message_id: Uuid) -> Result<(), DeliveryError> {
        let db = &self.ingestor.store.db;
        let master = self.ingestor.master();
        let row = message::Entity::find_by_id(message_id)
            .one(db)
            .await?
            .ok_or_else(|| DeliveryError::NotFound(format!("message {message_id}")))?;
        let now = crate::clock::now();
        let rows = outbox::due_rows(db, master, &row, now).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mailbox_row = mailbox::Entity::find_by_id(row.mailbox_id)
            .one(db)
            .await?
            .ok_or_else(|| DeliveryError::NotFound("mailbox".to_string()))?;
        let from_config = self.mailboxes.from_config.read().await.clone();
        let configs = crate::store::mailboxes::all_configs(db, master, &from_config).await?;
        let outgoing = configs
            .iter()
            .find(|config| config.name == mailbox_row.name)
            .and_then(|config| config.outgoing.clone());
        let Some(outgoing) = outgoing else {
            let error = DeliveryError::NoSmtp(mailbox_row.name.clone()).to_string();
            return self.settle_all(&row, &rows, Err((false, error))).await;
        };
        // Rows of an interrupted send are sent again only to a relay known to issue DSNs (its silence
        // proves it never accepted them); otherwise a second copy could reach the recipient.
        let relay_issues_dsn = crate::store::settings::get(db, &dsn_key(&mailbox_row.name))
            .await?
            .is_some();
        let (rows, undecidable): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .partition(|(row, _)| row.state != state::UNKNOWN || relay_issues_dsn);
        if !undecidable.is_empty() {
            let reason = "interrupted while sending to a relay without DSN support; not resent to avoid a duplicate";
            self.settle_all(&row, &undecidable, Err((false, reason.to_string())))
                .await?;
        }
        if rows.is_empty() {
            return Ok(());
        }
        let raw = read::raw_message(db, master, self.ingestor.store.blob_dir(), row.id).await?;
        let settings = smtp_settings(&mailbox_row.name, &outgoing, self.timeout)?;
        let tag = envelope_tag(&row.id);
        let envelope = Envelope {
            mail_from: if outgoing.smtp.verp {
                verp_sender(&outgoing.address, &tag)
            } else {
                outgoing.address.clone()
            },
            recipients: rows
                .iter()
                .map(|(_, recipient)| recipient.clone())
                .collect(),
            envelope_id: tag,
        };
        // Marked before the first byte goes out: a crash from here on never leads to a resend.
        let ids: Vec<Uuid> = rows.iter().map(|(row, _)| row.id).collect();
        outbox_rows::Entity::update_many()
            .col_expr(outbox_rows::Column::State, Expr::value(state::SENDING))
            .col_expr(outbox_rows::Column::UpdatedAt, Expr::value(now))
            .filter(outbox_rows::Column::Id.is_in(ids))
            .exec(db)
            .await?;
        let dsn = DsnRequest {
            notify: vec![Notify::Success, Notify::Failure, Notify::Delay],
            ret_headers_only: true,
        };
        let context = OAuthContext {
            db,
            key: master,
            mailbox_id: mailbox_row.id,
        };
        let sent = send_with_credentials(
            &mailbox_row.name,
            &outgoing,
            settings,
            &context,
            (&envelope, &dsn, &raw),
        )
        .await;
        let sent = match sent {
            Ok(sent) => sent,
            // No token (revoked grant, provider down): the rows wait as a temporary failure; a
            // revoked grant is shown on the mailbox as needs_reauthorization by its IMAP side.
            Err(err) => {
                warn!(message = %row.id, error = %err, "no credentials for sending");
                return self
                    .settle_all(&row, &rows, Err((true, err.to_string())))
                    .await;
            }
        };
        match sent {
            Ok(outcome) => {
                if outcome.dsn_supported {
                    crate::store::settings::set(db, &dsn_key(&mailbox_row.name), "1").await?;
                }
                let data = outcome.data.clone();
                let transaction = crate::store::begin_write(db).await?;
                for (outbox_row, recipient) in &rows {
                    let result = outcome
                        .recipients
                        .iter()
                        .find(|(address, _)| address == recipient)
                        .map(|(_, result)| result.clone());
                    let verdict = match (result, &data) {
                        (Some(RecipientResult::Accepted), Some(data)) if data.accepted => {
                            Ok(data.queue_id.clone())
                        }
                        (Some(RecipientResult::Accepted), Some(data)) => {
                            Err((!data.permanent, format!("{} {}", data.code, data.message)))
                        }
                        (Some(RecipientResult::Accepted), None) => Err((
                            true,
                            "the server ended the transaction before DATA".to_string(),
                        )),
                        (Some(RecipientResult::TemporaryFailure { code, message, .. }), _) => {
                            Err((true, format!("{code} {message}")))
                        }
                        (Some(RecipientResult::PermanentFailure { code, message, .. }), _) => {
                            Err((false, format!("{code} {message}")))
                        }
                        (None, _) => Err((true, "no answer for this recipient".to_string())),
                    };
                    self.settle(&transaction, &row, outbox_row, recipient, verdict)
                        .await?;
                }
                transaction.commit().await?;
            }
            Err(err) => {
                warn!(message = %row.id, error = %err, "sending failed");
                let verdict = Err((err.is_transient(), err.to_string()));
                self.settle_all(&row, &rows, verdict).await?;
            }
        }
        Ok(())
    }

    async fn settle_all(
        &self,
        message: &message::Model,
        rows: &[(outbox_rows::Model, String)],
        verdict: Result<Option<String>, (bool, String)>,
    ) -> Result<(), DeliveryError> {
        let transaction = crate::store::begin_write(&self.ingestor.store.db).await?;
        for (row, recipient) in rows {
            self.settle(&transaction, message, row, recipient, verdict.clone())
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Records one recipient's outcome: `Ok(queue id)` sent; `Err((transient, reason))` retried or failed.
    async fn settle(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        message: &message::Model,
        row: &outbox_rows::Model,
        recipient: &str,
        verdict: Result<Option<String>, (bool, String)>,
    ) -> Result<(), DeliveryError> {
        let master = self.ingestor.master();
        let now = crate::clock::now();
        let attempts = row.attempts + 1;
        let mut active: outbox_rows::ActiveModel = row.clone().into();
        active.attempts = Set(attempts);
        active.updated_at = Set(now);
        let (kind, status, diagnostic, queue_id) = match verdict {
            Ok(queue_id) => {
                active.state = Set(state::SENT.to_string());
                active.last_error = Set(None);
                info!(message = %message.id, attempts, "reply accepted by the relay");
                (event::SENT, None, None, queue_id)
            }
            Err((true, reason))
                if u32::try_from(attempts).unwrap_or(u32::MAX) < self.policy.max_attempts =>
            {
                let delay = retry_delay(&self.policy, attempts);
                active.state = Set(state::RETRY.to_string());
                active.next_attempt_at =
                    Set(now + chrono::Duration::from_std(delay).unwrap_or_default());
                active.last_error = Set(Some(smtp::redact_addresses(&reason)));
                (event::DEFERRED, enhanced_code(&reason), Some(reason), None)
            }
            Err((_, reason)) => {
                active.state = Set(state::FAILED.to_string());
                active.last_error = Set(Some(smtp::redact_addresses(&reason)));
                (event::FAILED, enhanced_code(&reason), Some(reason), None)
            }
        };
        active.update(db).await?;
        let detail = EventDetail {
            recipient: recipient.to_string(),
            diagnostic,
            reporting_mta: None,
            queue_id,
        };
        record_event(db, master, message, kind, status.as_deref(), &detail, now).await?;
        Ok(())
    }
}

/// The RFC 3463 enhanced status code in a server reply, if any (`550 5.1.1 …` → `5.1.1`).
pub fn enhanced_code(reply: &str) -> Option<String> {
    reply.split_whitespace().find_map(|word| {
        let parts: Vec<&str> = word
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .split('.')
            .collect();
        (parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts.iter().all(|part| {
                !part.is_empty() && part.len() <= 3 && part.chars().all(|c| c.is_ascii_digit())
            }))
        .then(|| parts.join("."))
    })
}

/// Rows of a message, for status views.
pub async fn rows_of(
    db: &impl sea_orm::ConnectionTrait,
    message_id: Uuid,
) -> Result<Vec<outbox_rows::Model>, DeliveryError> {
    Ok(outbox_rows::Entity::find()
        .filter(outbox_rows::Column::MessageId.eq(message_id))
        .all(db)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes_are_found() {
        assert_eq!(
            enhanced_code("550 5.1.1 <x@y>: user unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            enhanced_code("451 4.7.1 try later").as_deref(),
            Some("4.7.1")
        );
        assert_eq!(enhanced_code("connection refused"), None);
    }

    #[test]
    fn retries_back_off() {
        let policy = OutboxConfig {
            interrupted_grace: Duration::from_secs(1),
            retry_base: Duration::from_secs(10),
            max_attempts: 5,
        };
        assert_eq!(retry_delay(&policy, 1), Duration::from_secs(10));
        assert_eq!(retry_delay(&policy, 3), Duration::from_secs(40));
        assert_eq!(retry_delay(&policy, 30), Duration::from_secs(3600));
    }
}
