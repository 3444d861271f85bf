//! One mail transaction: `MAIL FROM`, `RCPT TO` per recipient, `DATA` (RFC 5321 §3.3), with
//! the DSN parameters of RFC 3461 when the server announces them.

use std::borrow::Cow;

use lettre::Address;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{MailBodyParameter, MailParameter, RcptParameter};

use super::session::{Reply, Session};
use super::wire::{data_for_lettre, queue_id, split_enhanced, xtext_len};
use super::{DataResult, DsnRequest, Envelope, Notify, RecipientResult, SendOutcome, SmtpError};

/// RFC 3461 §4.4: the ENVID value is at most 100 characters, xtext-encoded.
const MAX_ENVELOPE_ID_LENGTH: usize = 100;

/// A recipient as checked before connecting.
enum Recipient {
    /// Valid syntax; sent in `RCPT TO`.
    Valid(Address),
    /// Not an address; reported without asking the server.
    Invalid(RecipientResult),
}

/// The envelope and data, checked and prepared before connecting.
pub(super) struct Plan<'a> {
    reverse_path: Option<Address>,
    recipients: Vec<(String, Recipient)>,
    envelope_id: Option<String>,
    dsn: &'a DsnRequest,
    data: Cow<'a, [u8]>,
    /// Any address is non-ASCII: needs `SMTPUTF8` (RFC 6531 §3.4).
    needs_smtp_utf8: bool,
}

impl<'a> Plan<'a> {
    /// Parses the addresses, checks the ENVID and prepares the data.
    pub(super) fn new(
        envelope: &Envelope,
        dsn: &'a DsnRequest,
        raw_message: &'a [u8],
    ) -> Result<Plan<'a>, SmtpError> {
        if envelope.recipients.is_empty() {
            return Err(SmtpError::Config("envelope has no recipients".to_owned()));
        }
        if raw_message.is_empty() {
            return Err(SmtpError::Config("message is empty".to_owned()));
        }
        let reverse_path =
            if envelope.mail_from.is_empty() {
                None
            } else {
                Some(envelope.mail_from.parse::<Address>().map_err(|_| {
                    SmtpError::Config("mail_from is not a valid address".to_owned())
                })?)
            };
        let recipients: Vec<(String, Recipient)> = envelope
            .recipients
            .iter()
            .map(|recipient| (recipient.clone(), parse_recipient(recipient)))
            .collect();
        let needs_smtp_utf8 = !envelope.mail_from.is_ascii()
            || recipients.iter().any(|(recipient, parsed)| {
                matches!(parsed, Recipient::Valid(_)) && !recipient.is_ascii()
            });
        let envelope_id = match envelope.envelope_id.as_str() {
            "" => None,
            envelope_id => Some(checked_envelope_id(envelope_id)?.to_owned()),
        };
        Ok(Plan {
            reverse_path,
            recipients,
            envelope_id,
            dsn,
            data: data_for_lettre(raw_message),
            needs_smtp_utf8,
        })
    }

    /// True when at least one recipient can be sent to the server.
    pub(super) fn has_valid_recipient(&self) -> bool {
        self.recipients
            .iter()
            .any(|(_, recipient)| matches!(recipient, Recipient::Valid(_)))
    }

    /// The outcome when every recipient was refused locally.
    pub(super) fn outcome_without_connection(&self) -> SendOutcome {
        SendOutcome {
            recipients: self
                .recipients
                .iter()
                .filter_map(|(text, recipient)| match recipient {
                    Recipient::Invalid(result) => Some((text.clone(), result.clone())),
                    Recipient::Valid(_) => None,
                })
                .collect(),
            data: None,
            dsn_supported: false,
        }
    }

    /// `MAIL FROM` parameters: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), and RET
    /// and ENVID (RFC 3461) when the server has DSN. lettre xtext-encodes the values.
    fn mail_parameters(&self, dsn_supported: bool, announces_size: bool) -> Vec<MailParameter> {
        let mut parameters = Vec::new();
        if announces_size {
            // Data length plus the CRLF lettre appends; dot-stuffing adds a little more.
            parameters.push(MailParameter::Size(self.data.len() + 2));
        }
        if !self.data.is_ascii() {
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if self.needs_smtp_utf8 {
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if dsn_supported {
            let ret = if self.dsn.ret_headers_only {
                "HDRS"
            } else {
                "FULL"
            };
            parameters.push(other_mail("RET", ret));
            if let Some(envelope_id) = &self.envelope_id {
                parameters.push(other_mail("ENVID", envelope_id));
            }
        }
        parameters
    }

    /// `RCPT TO` parameters: NOTIFY and ORCPT (RFC 3461 §4.1, §4.2) when the server has DSN.
    fn recipient_parameters(&self, address: &Address, dsn_supported: bool) -> Vec<RcptParameter> {
        let mut parameters = Vec::new();
        if !dsn_supported {
            return parameters;
        }
        if let Some(notify) = notify_value(&self.dsn.notify) {
            parameters.push(other_rcpt("NOTIFY", &notify));
        }
        // The rfc822 address type is ASCII only; UTF-8 addresses would need RFC 6533.
        let address = address.to_string();
        if address.is_ascii() {
            parameters.push(other_rcpt("ORCPT", &format!("rfc822;{address}")));
        }
        parameters
    }
}

fn other_mail(keyword: &str, value: &str) -> MailParameter {
    MailParameter::Other {
        keyword: keyword.to_owned(),
        value: Some(value.to_owned()),
    }
}

fn other_rcpt(keyword: &str, value: &str) -> RcptParameter {
    RcptParameter::Other {
        keyword: keyword.to_owned(),
        value: Some(value.to_owned()),
    }
}

/// `SUCCESS,FAILURE,DELAY` in a fixed order without repeats; `None` for an empty list.
fn notify_value(notify: &[Notify]) -> Option<String> {
    let names: Vec<&str> = [
        (Notify::Success, "SUCCESS"),
        (Notify::Failure, "FAILURE"),
        (Notify::Delay, "DELAY"),
    ]
    .into_iter()
    .filter(|(condition, _)| notify.contains(condition))
    .map(|(_, name)| name)
    .collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// ENVID must be printable US-ASCII (RFC 3461 §4.4); control characters are refused too,
/// which also keeps the command on one line.
fn checked_envelope_id(envelope_id: &str) -> Result<&str, SmtpError> {
    if !envelope_id
        .bytes()
        .all(|byte| (b' '..=b'~').contains(&byte))
    {
        return Err(SmtpError::Config(
            "envelope_id must be printable US-ASCII".to_owned(),
        ));
    }
    if xtext_len(envelope_id) > MAX_ENVELOPE_ID_LENGTH {
        return Err(SmtpError::Config(format!(
            "envelope_id is longer than {MAX_ENVELOPE_ID_LENGTH} characters once xtext-encoded"
        )));
    }
    Ok(envelope_id)
}

fn parse_recipient(recipient: &str) -> Recipient {
    match recipient.parse::<Address>() {
        Ok(address) => Recipient::Valid(address),
        // Reported like the 501 5.1.3 a server gives for bad syntax (RFC 3463).
        Err(_) => Recipient::Invalid(RecipientResult::PermanentFailure {
            code: 501,
            enhanced: Some("5.1.3".to_owned()),
            message: "5.1.3 not a valid address; not sent to the server".to_owned(),
        }),
    }
}

/// Classifies a reply to `RCPT TO` (RFC 5321 §4.2.1: 2xx, 4xx, 5xx).
fn recipient_result(reply: Reply) -> Result<RecipientResult, SmtpError> {
    let (enhanced, _) = split_enhanced(&reply.text, reply.code);
    match reply.code {
        200..=299 => Ok(RecipientResult::Accepted),
        400..=499 => Ok(RecipientResult::TemporaryFailure {
            code: reply.code,
            enhanced,
            message: reply.text,
        }),
        500..=599 => Ok(RecipientResult::PermanentFailure {
            code: reply.code,
            enhanced,
            message: reply.text,
        }),
        code => Err(SmtpError::Protocol(format!(
            "unexpected reply {code} to RCPT TO"
        ))),
    }
}

fn data_result(reply: &Reply) -> DataResult {
    let (_, text) = split_enhanced(&reply.text, reply.code);
    let accepted = (200..300).contains(&reply.code);
    DataResult {
        code: reply.code,
        queue_id: if accepted { queue_id(&text) } else { None },
        message: reply.text.clone(),
        accepted,
        permanent: (500..600).contains(&reply.code),
    }
}

/// Runs the transaction on an open session.
pub(super) async fn run(session: &mut Session, plan: &Plan<'_>) -> Result<SendOutcome, SmtpError> {
    let capabilities = session.capabilities().clone();
    if !plan.data.is_ascii() && !capabilities.eight_bit_mime {
        return Err(SmtpError::Unsupported("8BITMIME"));
    }
    if plan.needs_smtp_utf8 && !capabilities.smtp_utf8 {
        return Err(SmtpError::Unsupported("SMTPUTF8"));
    }
    let dsn_supported = capabilities.dsn;
    let mail = Mail::new(
        plan.reverse_path.clone(),
        plan.mail_parameters(dsn_supported, capabilities.size.is_some()),
    );
    let reply = session.exchange(mail, "MAIL FROM").await?;
    if !(200..300).contains(&reply.code) {
        return Err(SmtpError::Rejected {
            command: "MAIL FROM",
            code: reply.code,
            permanent: reply.code >= 500,
            message: reply.text,
        });
    }
    let mut recipients = Vec::with_capacity(plan.recipients.len());
    for (text, recipient) in &plan.recipients {
        let result = match recipient {
            Recipient::Invalid(result) => result.clone(),
            Recipient::Valid(address) => {
                let parameters = plan.recipient_parameters(address, dsn_supported);
                let command = Rcpt::new(address.clone(), parameters);
                recipient_result(session.exchange(command, "RCPT TO").await?)?
            }
        };
        recipients.push((text.clone(), result));
    }
    let data = if recipients.iter().any(|(_, result)| result.is_accepted()) {
        Some(send_data(session, &plan.data).await?)
    } else {
        // RFC 5321 §3.3: without an accepted recipient DATA must fail; the session ends with
        // QUIT, which also drops the transaction.
        None
    };
    Ok(SendOutcome {
        recipients,
        data,
        dsn_supported,
    })
}

async fn send_data(session: &mut Session, data: &[u8]) -> Result<DataResult, SmtpError> {
    let reply = session.exchange(Data, "DATA").await?;
    match reply.code {
        // RFC 5321 §4.2.1: 354 asks for the data; a refusal of DATA itself is the result.
        300..=399 => Ok(data_result(&session.send_data(data).await?)),
        400..=599 => Ok(data_result(&reply)),
        code => Err(SmtpError::Protocol(format!(
            "unexpected reply {code} to DATA"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(recipients: &[&str], envelope_id: &str) -> Envelope {
        Envelope {
            mail_from: "bounces+t1@inboxd.test".to_owned(),
            recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
            envelope_id: envelope_id.to_owned(),
        }
    }

    fn request(notify: Vec<Notify>, ret_headers_only: bool) -> DsnRequest {
        DsnRequest {
            notify,
            ret_headers_only,
        }
    }

    #[test]
    fn mail_command_carries_dsn_parameters_only_when_supported() {
        let dsn = request(vec![Notify::Failure], true);
        let plan =
            Plan::new(&envelope(&["a@x.test"], "id+1=2 x"), &dsn, b"Hi\r\n").expect("valid plan");
        let with_dsn = Mail::new(plan.reverse_path.clone(), plan.mail_parameters(true, true));
        assert_eq!(
            with_dsn.to_string(),
            "MAIL FROM:<bounces+t1@inboxd.test> SIZE=4 RET=HDRS ENVID=id+2B1+3D2+20x\r\n"
        );
        let without = Mail::new(
            plan.reverse_path.clone(),
            plan.mail_parameters(false, false),
        );
        assert_eq!(
            without.to_string(),
            "MAIL FROM:<bounces+t1@inboxd.test>\r\n"
        );
    }

    #[test]
    fn rcpt_command_carries_notify_and_orcpt() {
        let dsn = request(
            vec![
                Notify::Delay,
                Notify::Success,
                Notify::Failure,
                Notify::Delay,
            ],
            false,
        );
        let plan =
            Plan::new(&envelope(&["bob+tag@inboxd.test"], ""), &dsn, b"x").expect("valid plan");
        let Some((_, Recipient::Valid(address))) = plan.recipients.first() else {
            panic!("recipient should parse");
        };
        let command = Rcpt::new(address.clone(), plan.recipient_parameters(address, true));
        assert_eq!(
            command.to_string(),
            "RCPT TO:<bob+tag@inboxd.test> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;bob+2Btag@inboxd.test\r\n"
        );
        assert!(plan.recipient_parameters(address, false).is_empty());
        let mail = Mail::new(None, plan.mail_parameters(true, false));
        assert_eq!(mail.to_string(), "MAIL FROM:<> RET=FULL\r\n");
    }

    #[test]
    fn empty_notify_leaves_the_parameter_out() {
        assert_eq!(notify_value(&[]), None);
        assert_eq!(notify_value(&[Notify::Failure]).as_deref(), Some("FAILURE"));
    }

    #[test]
    fn eight_bit_data_and_utf8_addresses_get_their_parameters() {
        let dsn = request(vec![], false);
        let plan = Plan::new(
            &envelope(&["jörg@bücher.test"], ""),
            &dsn,
            "Grüße".as_bytes(),
        )
        .expect("valid plan");
        assert!(plan.needs_smtp_utf8);
        let parameters = plan.mail_parameters(false, false);
        assert!(parameters.contains(&MailParameter::Body(MailBodyParameter::EightBitMime)));
        assert!(parameters.contains(&MailParameter::SmtpUtfEight));
    }

    #[test]
    fn envelope_id_is_checked() {
        let dsn = request(vec![], false);
        let long = "a".repeat(101);
        let spaces = " ".repeat(34);
        for bad in [
            long.as_str(),
            spaces.as_str(),
            "tab\there",
            "line\r\nMAIL",
            "é",
        ] {
            assert!(
                matches!(
                    Plan::new(&envelope(&["a@x.test"], bad), &dsn, b"x"),
                    Err(SmtpError::Config(_))
                ),
                "envelope id {bad:?} should be refused"
            );
        }
        let limit = "a".repeat(100);
        assert!(Plan::new(&envelope(&["a@x.test"], &limit), &dsn, b"x").is_ok());
    }

    #[test]
    fn invalid_recipients_are_reported_without_the_server() {
        let dsn = request(vec![], false);
        let plan = Plan::new(&envelope(&["not an address", "a@x.test"], ""), &dsn, b"x")
            .expect("valid plan");
        assert!(plan.has_valid_recipient());
        let only_bad = Plan::new(&envelope(&["nope", "@x"], ""), &dsn, b"x").expect("plan");
        assert!(!only_bad.has_valid_recipient());
        let outcome = only_bad.outcome_without_connection();
        assert_eq!(outcome.recipients.len(), 2);
        assert!(outcome.data.is_none());
        assert!(matches!(
            &outcome.recipients[0].1,
            RecipientResult::PermanentFailure { code: 501, .. }
        ));
    }

    #[test]
    fn bad_return_path_and_no_recipients_are_config_errors() {
        let dsn = request(vec![], false);
        let mut bad_sender = envelope(&["a@x.test"], "");
        bad_sender.mail_from = "no at sign".to_owned();
        assert!(matches!(
            Plan::new(&bad_sender, &dsn, b"x"),
            Err(SmtpError::Config(_))
        ));
        assert!(matches!(
            Plan::new(&envelope(&[], ""), &dsn, b"x"),
            Err(SmtpError::Config(_))
        ));
        assert!(matches!(
            Plan::new(&envelope(&["a@x.test"], ""), &dsn, b""),
            Err(SmtpError::Config(_))
        ));
    }

    #[test]
    fn replies_are_classified() {
        let reply = |code: u16, text: &str| Reply {
            code,
            text: text.to_owned(),
        };
        assert_eq!(
            recipient_result(reply(250, "2.1.5 Ok")).expect("classified"),
            RecipientResult::Accepted
        );
        assert_eq!(
            recipient_result(reply(450, "4.2.0 greylisted")).expect("classified"),
            RecipientResult::TemporaryFailure {
                code: 450,
                enhanced: Some("4.2.0".to_owned()),
                message: "4.2.0 greylisted".to_owned()
            }
        );
        assert!(matches!(
            recipient_result(reply(501, "5.1.3 Bad recipient address syntax")),
            Ok(RecipientResult::PermanentFailure { code: 501, .. })
        ));
        assert!(recipient_result(reply(354, "go on")).is_err());

        let accepted = data_result(&reply(250, "2.0.0 Ok: queued as 4XyZ12"));
        assert_eq!(accepted.queue_id.as_deref(), Some("4XyZ12"));
        assert_eq!(accepted.message, "2.0.0 Ok: queued as 4XyZ12");
        assert!(accepted.accepted && !accepted.permanent);
        let refused = data_result(&reply(554, "5.7.1 queued as nothing"));
        assert!(!refused.accepted && refused.permanent);
        assert_eq!(refused.queue_id, None);
    }
}
