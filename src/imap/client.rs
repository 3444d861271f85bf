//! The authenticated session and the mailbox commands the sync engine uses.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use async_imap::Session;
use async_imap::imap_proto::{
    AttributeValue, MailboxDatum, MessageSection, Response, ResponseCode, SectionPath, Status,
};

use super::transport::Transport;
use super::wire::{MAX_RANGES_PER_COMMAND, quoted_mailbox, uid_sets};
use super::{FetchedMessage, FolderStatus, ImapError};

/// An authenticated IMAP session (RFC 3501 authenticated/selected state).
///
/// Not `Clone`: one session is one TCP connection and commands run one at a time.
pub struct ImapClient {
    /// `None` once a failure left the stream in an unknown state, or while `IDLE` owns it.
    pub(super) session: Option<Session<Transport>>,
    /// Server capabilities after login, upper-cased (`IDLE`, `MOVE`, `UIDPLUS`, `AUTH=PLAIN`...).
    pub(super) capabilities: HashSet<String>,
    /// Limit for each network exchange.
    pub(super) timeout: Duration,
    /// Server host, for errors.
    pub(super) host: String,
    /// Folder currently selected, if any.
    pub(super) selected: Option<String>,
    /// Set when the server announced `EXISTS`/`RECENT` outside `SELECT`, so an `IDLE` started
    /// afterwards would miss it; cleared by `select` and `uids_after`.
    pub(super) new_data_pending: bool,
}

impl fmt::Debug for ImapClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapClient")
            .field("host", &self.host)
            .field("usable", &self.session.is_some())
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

/// Which part of a message a `UID FETCH` asks for.
#[derive(Clone, Copy)]
enum Section {
    /// `BODY.PEEK[]`: the whole message, without setting `\Seen` (RFC 3501 §6.4.5).
    Full,
    /// `BODY.PEEK[HEADER]`: the header block including the blank line.
    Header,
}

impl ImapClient {
    /// Whether the server announced IDLE (RFC 2177).
    pub fn supports_idle(&self) -> bool {
        self.has_capability("IDLE")
    }

    /// Whether the server announced the capability `name` (case-insensitive), e.g. `MOVE`.
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.contains(&name.to_ascii_uppercase())
    }

    /// False once a timeout, I/O or protocol failure dropped the session; reconnect then.
    pub fn is_usable(&self) -> bool {
        self.session.is_some()
    }

    /// Opens `folder` read-write with `SELECT` (not `EXAMINE`, so flags can be stored).
    pub async fn select(&mut self, folder: &str) -> Result<FolderStatus, ImapError> {
        let command = format!("SELECT {}", quoted_mailbox(folder)?);
        self.selected = None;
        let (mut uid_validity, mut uid_next, mut exists) = (None, None, 0);
        let result = self
            .run_tagged("select", &command, None, |response| match response {
                Response::Data {
                    status: Status::Ok,
                    outcome,
                } => {
                    match outcome.code {
                        Some(ResponseCode::UidValidity(value)) => uid_validity = Some(value),
                        Some(ResponseCode::UidNext(value)) => uid_next = Some(value),
                        _ => {}
                    }
                    true
                }
                Response::MailboxData(MailboxDatum::Exists(count)) => {
                    exists = *count;
                    true
                }
                Response::MailboxData(MailboxDatum::Recent(_)) => true,
                _ => false,
            })
            .await;
        match missing_folder_as(folder, result) {
            // Some servers (Dovecot) answer a missing folder with a bare NO: ask LIST.
            Err(ImapError::Rejected { .. }) if !self.folder_exists(folder).await? => {
                return Err(ImapError::NoSuchFolder(folder.to_owned()));
            }
            other => other?,
        }
        let uid_validity = uid_validity.ok_or_else(|| {
            ImapError::Protocol("select answer carries no uidvalidity".to_owned())
        })?;
        // The EXISTS above is the folder's current state: nothing is pending any more.
        self.new_data_pending = false;
        self.selected = Some(folder.to_owned());
        Ok(FolderStatus {
            uid_validity,
            uid_next,
            exists,
        })
    }

    /// Whether `LIST "" folder` (RFC 3501 §6.3.8) names the folder.
    async fn folder_exists(&mut self, folder: &str) -> Result<bool, ImapError> {
        let command = format!("LIST \"\" {}", quoted_mailbox(folder)?);
        let mut listed = false;
        self.run_tagged("list", &command, None, |response| {
            let is_list = matches!(response, Response::MailboxData(MailboxDatum::List { .. }));
            listed |= is_list;
            is_list
        })
        .await?;
        Ok(listed)
    }

    /// UIDs greater than `last_uid` in the selected folder, ascending.
    ///
    /// `UID SEARCH UID n:*` also matches the highest UID when it is below `n` (RFC 3501 §6.4.8,
    /// `*` is the largest UID in use), so the answer is filtered.
    pub async fn uids_after(&mut self, last_uid: u32) -> Result<Vec<u32>, ImapError> {
        let Some(first) = last_uid.checked_add(1) else {
            return Ok(Vec::new());
        };
        self.absorb_unsolicited();
        self.new_data_pending = false;
        let mut uids = Vec::new();
        let command = format!("UID SEARCH UID {first}:*");
        self.run_tagged("uid search", &command, None, |response| {
            if let Response::MailboxData(MailboxDatum::Search(found)) = response {
                uids.extend(found.iter().copied().filter(|&uid| uid > last_uid));
                return true;
            }
            false
        })
        .await?;
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// `RFC822.SIZE` of each UID still present, ascending by UID.
    pub async fn sizes(&mut self, uids: &[u32]) -> Result<Vec<(u32, u64)>, ImapError> {
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        let mut sizes = BTreeMap::new();
        for set in uid_sets(uids, MAX_RANGES_PER_COMMAND) {
            let command = format!("UID FETCH {set} (UID RFC822.SIZE)");
            let result = self
                .run_tagged("uid fetch size", &command, None, |response| {
                    let Response::Fetch(_, attributes) = response else {
                        return false;
                    };
                    let uid = fetch_uid(attributes);
                    let size = attributes.iter().find_map(|attribute| match attribute {
                        AttributeValue::Rfc822Size(size) => Some(u64::from(*size)),
                        _ => None,
                    });
                    if let (Some(uid), Some(size)) = (uid, size)
                        && wanted.contains(&uid)
                    {
                        sizes.insert(uid, size);
                    }
                    true
                })
                .await;
            tolerate_expunged(result)?;
        }
        Ok(sizes.into_iter().collect())
    }

    /// Whole raw messages (`UID FETCH set (UID BODY.PEEK[])`), ascending by UID. The server copy
    /// stays unread. UIDs the server no longer has are absent from the result.
    pub async fn fetch_batch(&mut self, uids: &[u32]) -> Result<Vec<FetchedMessage>, ImapError> {
        self.fetch_section(uids, Section::Full).await
    }

    /// Header blocks only (`BODY.PEEK[HEADER]`), for messages too large to fetch whole.
    pub async fn fetch_headers(&mut self, uids: &[u32]) -> Result<Vec<FetchedMessage>, ImapError> {
        self.fetch_section(uids, Section::Header).await
    }

    async fn fetch_section(
        &mut self,
        uids: &[u32],
        section: Section,
    ) -> Result<Vec<FetchedMessage>, ImapError> {
        let (operation, items) = match section {
            Section::Full => ("uid fetch body", "(UID BODY.PEEK[])"),
            Section::Header => ("uid fetch header", "(UID BODY.PEEK[HEADER])"),
        };
        let wanted: HashSet<u32> = uids.iter().copied().collect();
        let mut messages: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        for set in uid_sets(uids, MAX_RANGES_PER_COMMAND) {
            let command = format!("UID FETCH {set} {items}");
            let result = self
                .run_tagged(operation, &command, None, |response| {
                    let Response::Fetch(_, attributes) = response else {
                        return false;
                    };
                    // Unsolicited FETCH responses (flag changes by other sessions) carry no
                    // section data or belong to other UIDs: skip them.
                    if let (Some(uid), Some(data)) =
                        (fetch_uid(attributes), section_data(attributes, section))
                        && wanted.contains(&uid)
                    {
                        // The one copy per message: out of the response buffer into an owned Vec.
                        messages.insert(uid, data.to_vec());
                    }
                    true
                })
                .await;
            tolerate_expunged(result)?;
        }
        Ok(messages
            .into_iter()
            .map(|(uid, raw)| FetchedMessage { uid, raw })
            .collect())
    }

    /// Adds `\Seen` to the given UIDs (`UID STORE +FLAGS.SILENT`); other messages keep their flags.
    pub async fn mark_seen(&mut self, uids: &[u32]) -> Result<(), ImapError> {
        self.store_flag(uids, "\\Seen").await
    }

    async fn store_flag(&mut self, uids: &[u32], flag: &str) -> Result<(), ImapError> {
        for set in uid_sets(uids, MAX_RANGES_PER_COMMAND) {
            let command = format!("UID STORE {set} +FLAGS.SILENT ({flag})");
            self.run_tagged("uid store", &command, None, |_| false)
                .await?;
        }
        Ok(())
    }

    /// Moves UIDs of the selected folder into `folder`: `UID MOVE` (RFC 6851) when offered, else
    /// `UID COPY` + `\Deleted` + `UID EXPUNGE` (RFC 4315). Without UIDPLUS the originals stay
    /// flagged `\Deleted` rather than running a plain `EXPUNGE` that would also remove messages
    /// other clients flagged.
    pub async fn move_to(&mut self, uids: &[u32], folder: &str) -> Result<(), ImapError> {
        let target = quoted_mailbox(folder)?;
        if self.has_capability("MOVE") {
            self.move_with_move(uids, folder, &target).await
        } else {
            self.move_with_copy(uids, folder, &target).await
        }
    }

    pub(super) async fn move_with_move(
        &mut self,
        uids: &[u32],
        folder: &str,
        target: &str,
    ) -> Result<(), ImapError> {
        for set in uid_sets(uids, MAX_RANGES_PER_COMMAND) {
            let command = format!("UID MOVE {set} {target}");
            let result = self.run_tagged("uid move", &command, None, |_| false).await;
            missing_folder_as(folder, result)?;
        }
        Ok(())
    }

    pub(super) async fn move_with_copy(
        &mut self,
        uids: &[u32],
        folder: &str,
        target: &str,
    ) -> Result<(), ImapError> {
        for set in uid_sets(uids, MAX_RANGES_PER_COMMAND) {
            let command = format!("UID COPY {set} {target}");
            let result = self.run_tagged("uid copy", &command, None, |_| false).await;
            missing_folder_as(folder, result)?;
        }
        self.store_flag(uids, "\\Deleted").await?;
        if !self.has_capability("UIDPLUS") {
            tracing::warn!(
                host = %self.host,
                "server lacks uidplus: moved messages stay flagged deleted in the source folder"
            );
            return Ok(());
        }
        for set in uid_sets(uids, MAX_RANGES_PER_COMMAND) {
            let command = format!("UID EXPUNGE {set}");
            self.run_tagged("uid expunge", &command, None, |_| false)
                .await?;
        }
        Ok(())
    }

    /// Stores `raw` as a new message in `folder` (`APPEND`, RFC 3501 §6.3.11), without flags.
    pub async fn append(&mut self, folder: &str, raw: &[u8]) -> Result<(), ImapError> {
        self.append_with_flags(folder, "", raw).await
    }

    /// Stores `raw` in `folder` already flagged `\Seen`, e.g. a sent reply.
    pub async fn append_seen(&mut self, folder: &str, raw: &[u8]) -> Result<(), ImapError> {
        self.append_with_flags(folder, " (\\Seen)", raw).await
    }

    async fn append_with_flags(
        &mut self,
        folder: &str,
        flags: &str,
        raw: &[u8],
    ) -> Result<(), ImapError> {
        let command = format!(
            "APPEND {}{flags} {{{}}}",
            quoted_mailbox(folder)?,
            raw.len()
        );
        let result = self
            .run_tagged("append", &command, Some(raw), |_| false)
            .await;
        missing_folder_as(folder, result)
    }

    /// Creates `folder`; succeeds when it already exists (`[ALREADYEXISTS]`, RFC 5530).
    pub async fn create_folder(&mut self, folder: &str) -> Result<(), ImapError> {
        let command = format!("CREATE {}", quoted_mailbox(folder)?);
        match self.run_tagged("create", &command, None, |_| false).await {
            Err(ImapError::Rejected { detail, .. }) if detail.contains("ALREADYEXISTS") => Ok(()),
            other => other,
        }
    }

    /// Deletes `folder` and its messages. Unselects it first when it is the selected folder.
    pub async fn delete_folder(&mut self, folder: &str) -> Result<(), ImapError> {
        let command = format!("DELETE {}", quoted_mailbox(folder)?);
        if self.selected.as_deref() == Some(folder) {
            self.unselect().await?;
        }
        let result = self.run_tagged("delete", &command, None, |_| false).await;
        missing_folder_as(folder, result)
    }

    /// Leaves the selected state without expunging (`UNSELECT`, RFC 3691), or with `CLOSE`.
    async fn unselect(&mut self) -> Result<(), ImapError> {
        let command = if self.has_capability("UNSELECT") {
            "UNSELECT"
        } else {
            "CLOSE"
        };
        self.run_tagged("unselect", command, None, |_| false)
            .await?;
        self.selected = None;
        Ok(())
    }

    /// Ends the session politely (`LOGOUT`); failures are irrelevant at this point.
    pub async fn logout(mut self) {
        if let Some(mut session) = self.session.take() {
            let outcome = tokio::time::timeout(self.timeout, session.logout()).await;
            if !matches!(outcome, Ok(Ok(()))) {
                tracing::debug!(host = %self.host, "imap logout did not complete cleanly");
            }
        }
    }
}

/// Maps "folder does not exist" answers (`[NONEXISTENT]` RFC 5530, `[TRYCREATE]` RFC 3501 §6.3.11)
/// to [`ImapError::NoSuchFolder`].
fn missing_folder_as(folder: &str, result: Result<(), ImapError>) -> Result<(), ImapError> {
    match result {
        Err(ImapError::Rejected { detail, .. })
            if detail.contains("NONEXISTENT") || detail.contains("TryCreate") =>
        {
            Err(ImapError::NoSuchFolder(folder.to_owned()))
        }
        other => other,
    }
}

/// A `NO [EXPUNGEISSUED]` (RFC 5530) after a FETCH only says some requested messages are gone;
/// the data of the others has been delivered.
fn tolerate_expunged(result: Result<(), ImapError>) -> Result<(), ImapError> {
    match result {
        Err(ImapError::Rejected { detail, .. }) if detail.contains("EXPUNGEISSUED") => Ok(()),
        other => other,
    }
}

fn fetch_uid(attributes: &[AttributeValue<'_>]) -> Option<u32> {
    attributes.iter().find_map(|attribute| match attribute {
        AttributeValue::Uid(uid) => Some(*uid),
        _ => None,
    })
}

fn section_data<'a>(attributes: &'a [AttributeValue<'_>], section: Section) -> Option<&'a [u8]> {
    attributes
        .iter()
        .find_map(|attribute| match (section, attribute) {
            (
                Section::Full,
                AttributeValue::BodySection {
                    section: None,
                    data: Some(data),
                    ..
                }
                | AttributeValue::Rfc822(Some(data)),
            ) => Some(data.as_ref()),
            (
                Section::Header,
                AttributeValue::BodySection {
                    section: Some(SectionPath::Full(MessageSection::Header)),
                    data: Some(data),
                    ..
                }
                | AttributeValue::Rfc822Header(Some(data)),
            ) => Some(data.as_ref()),
            _ => None,
        })
}
