//! The corpus of the integration tests (`tests.rs`): 30 support messages in 17 conversations
//! covering every field and operator of the query language.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Participant, SearchDoc};

pub(super) const HEAP: usize = 30_000_000;

pub(super) fn conversation(number: u16) -> Uuid {
    Uuid::from_u128(0x1000 + u128::from(number))
}

pub(super) fn message(number: u16) -> Uuid {
    Uuid::from_u128(0x2000 + u128::from(number))
}

pub(super) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test dates are valid")
        .with_timezone(&Utc)
}

fn person(name: &str, address: &str) -> Participant {
    let name = (!name.is_empty()).then(|| name.to_string());
    (name, Some(address.to_string()))
}

const SUPPORT: (&str, &str) = ("ACME Support", "support@acme.test");
const BILLING: (&str, &str) = ("", "billing@acme.test");
const SALES: (&str, &str) = ("Sales", "sales@acme.test");
const ALICE: (&str, &str) = ("Alice Smith", "alice.smith@example.org");
const MULLER: (&str, &str) = ("Jürgen Müller", "j.mueller@beispiel.de");
const BOB: (&str, &str) = ("Bob Jones", "bob@customer.example");
const EMILIE: (&str, &str) = ("Émilie Dubois", "emilie@societe.fr");
const DAVE: (&str, &str) = ("", "dave@example.org");
const USER: (&str, &str) = ("", "user@example.com");
const ACCOUNTING: (&str, &str) = ("Accounting", "acct@bigcorp.example");
const GRACE: (&str, &str) = ("Grace Hopper", "grace@example.com");
const HEIDI: (&str, &str) = ("Heidi Klum", "heidi@partner.example");
const JUDY: (&str, &str) = ("Judy", "judy@example.com");

/// Conversation number, mailbox, state, then its messages:
/// (message number, date, from, to, subject, body).
type Thread<'a> = (u16, &'a str, &'a str, &'a [Mail<'a>]);
type Mail<'a> = (
    u16,
    &'a str,
    (&'a str, &'a str),
    (&'a str, &'a str),
    &'a str,
    &'a str,
);

#[rustfmt::skip]
const THREADS: &[Thread<'static>] = &[
    (1, "support", "open", &[
        (1, "2024-01-10T09:00:00Z", ALICE, SUPPORT, "Invoice 4711 missing",
         "Hello, I did not receive the invoice for order 4711. Could you resend it?"),
        (2, "2024-01-10T11:00:00Z", SUPPORT, ALICE, "Re: Invoice 4711 missing",
         "We attached the document again. Sorry for the trouble."),
        (3, "2024-01-11T08:00:00Z", ALICE, SUPPORT, "Re: Invoice 4711 missing",
         "Thanks, I got both invoices now."),
    ]),
    (2, "support", "pending", &[
        (4, "2024-02-01T00:30:00Z", MULLER, SUPPORT, "Lieferung verspätet",
         "Meine Lieferung ist verspätet. Bitte um Rückmeldung. Grüße, Jürgen Müller"),
        (5, "2024-02-02T10:00:00Z", SUPPORT, MULLER, "Re: Lieferung verspätet",
         "We are sorry about the late delivery of your parcel."),
    ]),
    (3, "billing", "closed", &[
        (6, "2024-03-05T14:00:00Z", BOB, BILLING, "Refund request",
         "I would like a refund for my last payment. The product arrived broken, so please \
          refund me."),
        (7, "2024-03-06T09:00:00Z", BILLING, BOB, "Re: Refund request",
         "Your refund has been processed."),
    ]),
    (4, "support", "open", &[
        (8, "2024-03-10T12:00:00Z", ("Mail Delivery System", "MAILER-DAEMON@acme.test"), SUPPORT,
         "Undelivered Mail Returned to Sender",
         "Delivery to the following recipient failed permanently: nobody@nowhere.example"),
    ]),
    (5, "Sales EU", "open", &[
        (9, "2024-04-01T10:00:00Z", EMILIE, SALES, "Quote for 500 licences",
         "Could you send us a quote for 500 licences? We need the pricing by Friday."),
        (10, "2024-04-02T10:00:00Z", SALES, EMILIE, "Re: Quote for 500 licences",
         "Please find our offer attached."),
    ]),
    (6, "support", "open", &[
        (11, "2024-04-15T08:00:00Z", DAVE, SUPPORT, "Password reset not working",
         "The password reset link expired immediately. Can you help?"),
        (12, "2024-04-16T08:00:00Z", SUPPORT, DAVE, "Re: Password reset not working",
         "Please try again, the link is valid for 24 hours. Tip: use a < b style passphrases \
          & symbols."),
    ]),
    (7, "billing", "pending", &[
        (13, "2024-05-01T09:00:00Z", ALICE, BILLING, "Payment failed",
         "My credit card payment failed twice this morning."),
    ]),
    (8, "support", "closed", &[
        (14, "2024-05-03T07:00:00Z", ("ACME Deals", "news@marketing.example"), SUPPORT,
         "Special offers", "Special offers on invoicing software! Unsubscribe here."),
    ]),
    (9, "support", "open", &[
        (15, "2024-05-05T06:00:00Z", ("Mail Delivery System", "postmaster@acme.test"), SUPPORT,
         "Delivery Status Notification (Delay)",
         "Delivery to frank@slow.example has been delayed. The server will retry."),
    ]),
    (10, "Sales EU", "open", &[
        (16, "2024-06-01T00:00:00Z", ("Frank O'Brien", "frank.obrien@partner.example"), SALES,
         "Meeting next week", "Let's meet next week to discuss the partnership."),
    ]),
    (11, "support", "open", &[
        (17, "2024-06-10T15:00:00Z", ("Zoë", "zoe@example.net"), SUPPORT, "Café order",
         "I ordered a café crème but received tea."),
    ]),
    (12, "support", "open", &[
        (18, "2024-06-11T09:00:00Z", USER, SUPPORT, "Login problem",
         "I cannot log in since yesterday."),
        (19, "2024-06-11T10:00:00Z", SUPPORT, USER, "Re: Login problem",
         "Which browser do you use?"),
        (20, "2024-06-11T11:00:00Z", USER, SUPPORT, "Re: Login problem", "Firefox on Linux."),
        (21, "2024-06-12T09:00:00Z", SUPPORT, USER, "Re: Login problem",
         "We fixed the login issue, please try again."),
    ]),
    (13, "billing", "open", &[
        (22, "2024-06-20T09:00:00Z", ACCOUNTING, BILLING, "Invoice copy request",
         "Please send a copy of invoice 5120."),
        (23, "2024-06-20T12:00:00Z", BILLING, ACCOUNTING, "Re: Invoice copy request",
         "Here is the copy you asked for."),
    ]),
    (14, "support", "closed", &[
        (24, "2024-07-01T09:00:00Z", GRACE, SUPPORT, "Feature request: dark mode",
         "Please add a dark mode to the dashboard."),
        (25, "2024-07-02T09:00:00Z", SUPPORT, GRACE, "Re: Feature request: dark mode",
         "Thanks, we added it to our roadmap."),
    ]),
    (15, "Sales EU", "closed", &[
        (26, "2024-07-05T09:00:00Z", HEIDI, SALES, "Contract renewal",
         "Our contract renewal is due next month."),
        (27, "2024-07-06T09:00:00Z", SALES, HEIDI, "Re: Contract renewal",
         "The contract renewal is signed. A refund of the overpaid amount follows."),
    ]),
    (16, "support", "open", &[
        (28, "2024-07-10T09:00:00Z", ("", "ivan@example.org"), SUPPORT, "Weekly report",
         "The delivery of the weekly report was late again."),
    ]),
    (17, "support", "pending", &[
        (29, "2024-07-15T09:00:00Z", JUDY, SUPPORT, "Hello", "Just saying hello to the team."),
        (30, "2024-07-16T09:00:00Z", SUPPORT, JUDY, "Re: Hello", "Hello Judy, thanks!"),
    ]),
];

/// Attachments, cc, folder and delivery status of the messages that have them.
fn decorate(doc: &mut SearchDoc, number: u16) {
    let attach = |doc: &mut SearchDoc, name: &str, text: &str| {
        doc.attachment_names.push(name.to_string());
        doc.attachment_text = text.to_string();
        doc.has_attachment = true;
    };
    match number {
        2 => attach(
            doc,
            "Invoice-4711.pdf",
            "Invoice number 4711, total amount 99 EUR",
        ),
        6 => doc.cc.push(person("Carol White", "carol@customer.example")),
        8 => doc.delivery_status = Some("bounced".to_string()),
        9 => attach(
            doc,
            "requirements.docx",
            "Requirement list: single sign-on, audit log",
        ),
        10 => attach(doc, "Quote 2024-04.pdf", ""),
        11 | 12 => doc.folder = Some("INBOX".to_string()),
        14 => doc.folder = Some("Spam".to_string()),
        15 => doc.delivery_status = Some("delayed".to_string()),
        16 => doc.cc.push(person(ALICE.0, ALICE.1)),
        23 => attach(doc, "invoice-5120.pdf", "Invoice 5120 total 1200 EUR"),
        _ => {}
    }
    if number == 10 {
        doc.folder = Some("INBOX".to_string());
    }
}

pub(super) fn corpus() -> Vec<SearchDoc> {
    let mut docs = Vec::new();
    for (thread, mailbox, state, mails) in THREADS {
        for (number, date, from, to, subject, body) in mails.iter() {
            let mut doc = SearchDoc {
                message_id: message(*number),
                conversation_id: conversation(*thread),
                mailbox: mailbox.to_string(),
                folder: None,
                subject: subject.to_string(),
                body: body.to_string(),
                from: vec![person(from.0, from.1)],
                to: vec![person(to.0, to.1)],
                cc: Vec::new(),
                attachment_names: Vec::new(),
                attachment_text: String::new(),
                date: at(date),
                has_attachment: false,
                state: state.to_string(),
                delivery_status: None,
            };
            decorate(&mut doc, *number);
            docs.push(doc);
        }
    }
    docs
}
