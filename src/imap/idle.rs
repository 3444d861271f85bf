//! Waiting for new mail: IDLE (RFC 2177), or NOOP polling when the server lacks it.

use std::time::Duration;

use async_imap::extensions::idle::Handle;
use async_imap::imap_proto::{MailboxDatum, Response, Status};
use futures::StreamExt as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::ImapClient;
use super::exchange::{announces_new_data, describe, timed};
use super::transport::Transport;
use super::{IdleOutcome, ImapError};

/// How often to ask with `NOOP` when the server has no IDLE.
const POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Longest wait accepted; callers re-issue IDLE far more often anyway.
const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

impl ImapClient {
    /// Waits in the selected folder until new messages arrive, `max` elapses or `cancel` fires.
    ///
    /// Uses IDLE and always ends it with `DONE`, so the session stays usable afterwards. Keep
    /// `max` below 29 minutes: servers may drop idle clients after 30 (RFC 2177 §3). Returns
    /// [`IdleOutcome::NewData`] at once if new messages were announced since the last
    /// [`ImapClient::uids_after`]. Cancel through the token rather than dropping the future: a
    /// dropped wait loses the session.
    pub async fn idle_wait(
        &mut self,
        max: Duration,
        cancel: &CancellationToken,
    ) -> Result<IdleOutcome, ImapError> {
        self.absorb_unsolicited();
        if cancel.is_cancelled() {
            return Ok(IdleOutcome::Cancelled);
        }
        if std::mem::take(&mut self.new_data_pending) {
            return Ok(IdleOutcome::NewData);
        }
        if !self.supports_idle() {
            return self.poll_wait(max, cancel).await;
        }
        let session = self.session.take().ok_or(ImapError::Disconnected)?;
        // From here on an error leaves `session` empty: the stream position is unknown.
        let timeout = self.timeout;
        // `init` routes an EXISTS sent just before the server's "+ idling" to this channel.
        let announced_early = session.unsolicited_responses.clone();
        let result = async move {
            let mut handle = session.idle();
            timed(timeout, "idle", handle.init()).await?;
            let mut early = false;
            while let Ok(response) = announced_early.try_recv() {
                early |= announces_new_data(&response);
            }
            let outcome = if early {
                IdleOutcome::NewData
            } else {
                wait_for_news(&mut handle, max, cancel).await?
            };
            let session = timed(timeout, "idle done", handle.done()).await?;
            Ok((session, outcome))
        }
        .await;
        match result {
            Ok((session, outcome)) => {
                self.session = Some(session);
                // EXISTS that raced with DONE went to async-imap's channel: keep it for next time.
                self.absorb_unsolicited();
                Ok(outcome)
            }
            Err(error) => {
                self.selected = None;
                Err(error)
            }
        }
    }

    /// IDLE substitute: `NOOP` every [`POLL_INTERVAL`]; servers report new messages with any
    /// command (RFC 3501 §6.1.2).
    pub(super) async fn poll_wait(
        &mut self,
        max: Duration,
        cancel: &CancellationToken,
    ) -> Result<IdleOutcome, ImapError> {
        let deadline = deadline_after(max);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(IdleOutcome::Timeout);
            }
            let pause = (deadline - now).min(POLL_INTERVAL);
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(IdleOutcome::Cancelled),
                () = tokio::time::sleep(pause) => {}
            }
            self.run_tagged("noop", "NOOP", None, |_| false).await?;
            if std::mem::take(&mut self.new_data_pending) {
                return Ok(IdleOutcome::NewData);
            }
        }
    }
}

/// Caps waits so `Instant + max` cannot overflow.
fn deadline_after(max: Duration) -> Instant {
    Instant::now() + max.min(MAX_WAIT)
}

/// Reads IDLE responses until `EXISTS`/`RECENT`, the deadline or cancellation. Keep-alives
/// (`* OK Still here`), `EXPUNGE` and flag `FETCH`es are ignored. `StreamExt::next` is
/// cancel-safe: a partly read response stays in async-imap's buffer for `DONE`'s reader.
async fn wait_for_news(
    handle: &mut Handle<Transport>,
    max: Duration,
    cancel: &CancellationToken,
) -> Result<IdleOutcome, ImapError> {
    let operation = "idle";
    let deadline = deadline_after(max);
    loop {
        let next = tokio::select! {
            biased;
            () = cancel.cancelled() => return Ok(IdleOutcome::Cancelled),
            () = tokio::time::sleep_until(deadline) => return Ok(IdleOutcome::Timeout),
            next = handle.next() => next,
        };
        let response = match next {
            Some(Ok(response)) => response,
            Some(Err(error)) => return Err(ImapError::from_io(operation, error)),
            None => return Err(ImapError::ConnectionLost { operation }),
        };
        match response.parsed() {
            Response::MailboxData(MailboxDatum::Exists(_) | MailboxDatum::Recent(_)) => {
                return Ok(IdleOutcome::NewData);
            }
            Response::Done { .. } => {
                return Err(ImapError::Protocol(
                    "server ended idle on its own".to_owned(),
                ));
            }
            Response::Data {
                status: Status::Bye,
                outcome,
            } => {
                tracing::info!(detail = %describe(outcome), "imap server is closing the idle connection");
            }
            _ => {}
        }
    }
}
