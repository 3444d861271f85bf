//! Search benchmark: builds N synthetic support messages (default 100,000; `cargo bench --bench search
//! -- N`), indexes them on tantivy's MmapDirectory and on inboxd's EncryptedDirectory, and reports
//! indexing throughput and query latency (median, p99) over a fixed set of 26 queries of every kind,
//! plus the encrypted/plain ratios.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use inboxd::search::directory::{DEFAULT_CACHE_BYTES, EncryptedDirectory};
use inboxd::search::{Order, SearchDoc, SearchIndex, SearchOptions};
use tantivy::directory::MmapDirectory;
use uuid::Uuid;

/// xorshift64*: deterministic, dependency-free.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    /// Roughly Zipf-distributed index in `0..bound`.
    fn zipf(&mut self, bound: usize) -> usize {
        let uniform = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((bound as f64).powf(uniform) - 1.0) as usize
    }
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoë", "jürgen",
    "émilie", "søren", "agnès",
];
const LAST: &[&str] = &[
    "smith", "jones", "müller", "dubois", "rossi", "novak", "kowalski", "garcía", "nguyen",
    "o'brien", "schmidt", "larsen", "silva", "tanaka", "murphy", "weber",
];
const MAILBOXES: &[&str] = &["support", "billing", "sales", "Sales EU", "partners"];
const STATES: &[&str] = &["open", "open", "pending", "closed", "closed", "closed"];
const TOPICS: &[&str] = &[
    "invoice",
    "refund request",
    "late delivery",
    "password reset",
    "login problem",
    "payment failed",
    "contract renewal",
    "cancel subscription",
    "quote",
    "feature request",
    "bug report",
    "shipping address",
    "account locked",
    "data export",
    "api limits",
];
const PHRASES: &[&str] = &[
    "I did not receive the invoice for my last order",
    "could you please process a refund for the broken item",
    "we are sorry about the late delivery of your parcel",
    "the password reset link expired immediately",
    "my credit card payment failed twice",
    "please cancel my subscription at the end of the month",
    "the contract renewal is due next month",
    "attached you will find the requested documents",
    "thank you for your patience while we investigate",
    "can you send us a quote for 500 licences",
];
const EXTENSIONS: &[&str] = &["pdf", "docx", "png", "csv", "txt"];

/// Synthetic vocabulary: pronounceable pseudo-words, used with a Zipf distribution.
fn vocabulary(random: &mut Random) -> Vec<String> {
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mi", "ne", "ra", "su", "ti", "vo", "ze", "ban", "cor", "del", "fin", "gar",
        "hel", "jor", "kel", "mar", "nor", "pel", "qua", "ros", "sen", "tor", "ul", "ver", "wen",
    ];
    (0..8000)
        .map(|_| {
            let count = 2 + random.below(3);
            (0..count)
                .map(|_| random.pick(SYLLABLES))
                .collect::<String>()
        })
        .collect()
}

fn person(random: &mut Random, domain_count: usize) -> (Option<String>, Option<String>) {
    let first = random.pick(FIRST);
    let last = random.pick(LAST);
    let capitalize = |word: &str| {
        let mut characters = word.chars();
        characters
            .next()
            .map(|head| head.to_uppercase().chain(characters).collect::<String>())
            .unwrap_or_default()
    };
    let local = format!("{first}.{last}").replace(['\'', 'ü', 'é', 'ø', 'è', 'ë', 'í'], "");
    (
        Some(format!("{} {}", capitalize(first), capitalize(last))),
        Some(format!(
            "{local}@customer{}.example",
            random.below(domain_count)
        )),
    )
}

fn body(random: &mut Random, words: &[String], topic: &str) -> String {
    let mut text = format!("Hello,\n\nabout the {topic}: ");
    let length = 40 + random.below(160);
    for index in 0..length {
        if index % 25 == 0 && random.chance(40) {
            text.push_str(random.pick(PHRASES));
            text.push_str(". ");
        }
        text.push_str(&words[random.zipf(words.len())]);
        text.push(if index % 12 == 11 { '.' } else { ' ' });
        if index % 48 == 47 {
            text.push_str("\n\n");
        }
    }
    text.push_str("\n\nBest regards");
    text
}

fn corpus(count: usize) -> Vec<SearchDoc> {
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    let words = vocabulary(&mut random);
    let start = Utc
        .with_ymd_and_hms(2023, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    let support = (
        Some("ACME Support".to_string()),
        Some("support@acme.test".to_string()),
    );
    let mut docs = Vec::with_capacity(count);
    while docs.len() < count {
        let conversation_id =
            Uuid::from_u128(random.next() as u128 | (random.next() as u128) << 64);
        let mailbox = random.pick(MAILBOXES).to_string();
        let state = random.pick(STATES).to_string();
        let topic = random.pick(TOPICS);
        let customer = person(&mut random, 400);
        let mut date: DateTime<Utc> =
            start + chrono::Duration::minutes(random.below(1_000_000) as i64);
        let length = 1 + random.zipf(12);
        for position in 0..length.min(count - docs.len()) {
            let inbound = position % 2 == 0;
            let (from, to) = if inbound {
                (customer.clone(), support.clone())
            } else {
                (support.clone(), customer.clone())
            };
            let attachment = random.chance(15);
            let attachment_names = if attachment {
                vec![format!(
                    "{}-{}.{}",
                    topic.replace(' ', "-"),
                    random.below(10_000),
                    random.pick(EXTENSIONS)
                )]
            } else {
                Vec::new()
            };
            let subject = if position == 0 {
                format!("{topic} #{}", random.below(100_000))
            } else {
                format!("Re: {topic}")
            };
            docs.push(SearchDoc {
                message_id: Uuid::from_u128(random.next() as u128 | (random.next() as u128) << 64),
                conversation_id,
                mailbox: mailbox.clone(),
                folder: Some("INBOX".to_string()),
                subject,
                body: body(&mut random, &words, topic),
                from: vec![from],
                to: vec![to],
                cc: if random.chance(10) {
                    vec![person(&mut random, 400)]
                } else {
                    Vec::new()
                },
                attachment_text: if attachment && random.chance(50) {
                    body(&mut random, &words, topic)
                } else {
                    String::new()
                },
                attachment_names,
                date,
                has_attachment: attachment,
                state: state.clone(),
                delivery_status: (inbound && random.chance(2)).then(|| "bounced".to_string()),
            });
            date += chrono::Duration::minutes(5 + random.below(3000) as i64);
        }
    }
    docs
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn main() {
    let mut arguments = std::env::args()
        .skip(1)
        .filter(|argument| !argument.starts_with("--"));
    let count: usize = arguments
        .next()
        .and_then(|text| text.parse().ok())
        .or_else(|| std::env::var("BENCH_MESSAGES").ok()?.parse().ok())
        .unwrap_or(100_000);
    let repetitions: usize = arguments
        .next()
        .and_then(|text| text.parse().ok())
        .unwrap_or(30);
    let generation = Instant::now();
    let docs = corpus(count);
    let text_bytes: usize = docs
        .iter()
        .map(|doc| doc.body.len() + doc.attachment_text.len())
        .sum();
    println!(
        "generated {count} messages ({} MB of text) in {:.1} s",
        text_bytes / 1_000_000,
        generation.elapsed().as_secs_f64()
    );
    let plain_dir = tempfile::tempdir().expect("temp dir");
    let encrypted_dir = tempfile::tempdir().expect("temp dir");
    let plain = MmapDirectory::open(plain_dir.path()).expect("mmap directory");
    let key = [7u8; 32];
    let encrypted = EncryptedDirectory::open(encrypted_dir.path(), key, DEFAULT_CACHE_BYTES)
        .expect("encrypted directory");
    let plain_stats = measure(
        "plain MmapDirectory",
        Box::new(plain),
        plain_dir.path(),
        &docs,
        repetitions,
    );
    let encrypted_stats = measure(
        "EncryptedDirectory",
        Box::new(encrypted),
        encrypted_dir.path(),
        &docs,
        repetitions,
    );
    println!(
        "\nencrypted / plain: indexing time {:.2}x, query median {:.2}x, p99 {:.2}x",
        encrypted_stats.0 / plain_stats.0,
        encrypted_stats.1 / plain_stats.1,
        encrypted_stats.2 / plain_stats.2
    );
}

/// Builds the index on `directory`, runs the query set; returns (indexing s, median ms, p99 ms).
fn measure(
    label: &str,
    directory: Box<dyn tantivy::Directory>,
    directory_path: &std::path::Path,
    docs: &[SearchDoc],
    repetitions: usize,
) -> (f64, f64, f64) {
    println!("\n== {label}");
    let count = docs.len();
    let index = SearchIndex::open_or_create(directory).expect("index");
    let mut writer = index.writer(200_000_000).expect("writer");
    let indexing = Instant::now();
    for (position, doc) in docs.iter().enumerate() {
        writer.add(doc).expect("add");
        if position % 20_000 == 19_999 {
            writer.commit().expect("commit");
        }
    }
    writer.commit().expect("commit");
    writer.close().expect("close");
    let indexing_seconds = indexing.elapsed().as_secs_f64();
    println!(
        "indexed {count} docs in {indexing_seconds:.1} s: {:.0} docs/s ({} segments)",
        count as f64 / indexing_seconds,
        index.num_segments()
    );
    index.reload().expect("reload");
    let size: u64 = std::fs::read_dir(directory_path)
        .expect("list")
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum();
    println!("index size {} MB", size / 1_000_000);
    let only: Option<String> = None;
    let newest = SearchOptions::default();
    let relevance = SearchOptions {
        order: Order::Relevance,
        ..SearchOptions::default()
    };
    let billing = SearchOptions {
        mailboxes: Some(vec!["billing".into(), "support".into()]),
        ..SearchOptions::default()
    };
    let deep_page = SearchOptions {
        offset: 200,
        ..SearchOptions::default()
    };
    let queries: Vec<(&str, &SearchOptions)> = vec![
        ("invoice", &newest),
        ("refund request", &newest),
        ("\"late delivery\"", &newest),
        ("\"password reset link expired\"", &newest),
        ("invoi*", &newest),
        ("deliv*", &newest),
        ("from:alice", &newest),
        ("from:alice.smith@customer7.example", &newest),
        ("from:\"Jürgen Müller\"", &newest),
        ("muller", &newest),
        ("to:support@acme.test", &newest),
        ("cc:kowalski", &newest),
        ("subject:invoice", &newest),
        ("mailbox:billing invoice", &newest),
        ("has:attachment filename:pdf", &newest),
        ("after:2024-06-01 before:2024-07-01", &newest),
        ("is:open refund", &newest),
        ("status:bounced", &newest),
        ("refund OR password", &newest),
        ("(refund OR cancel) -is:closed", &newest),
        ("invoice -refund", &newest),
        ("invoice payment", &relevance),
        ("\"late delivery\" parcel", &relevance),
        ("invoice", &billing),
        ("is:open", &deep_page),
        ("-is:closed", &newest),
    ];
    let mut all = Vec::new();
    let mut minimums = Vec::new();
    println!(
        "\n{:<44} {:>8} {:>9} {:>9} {:>9}",
        "query", "convs", "median", "p99", "min"
    );
    for (query, options) in &queries {
        if only.as_deref().is_some_and(|only| only != *query) {
            continue;
        }
        let results = index.search(query, options).expect("query");
        let mut timings = Vec::with_capacity(repetitions);
        for _ in 0..repetitions {
            let started = Instant::now();
            let results = index.search(query, options).expect("query");
            timings.push(started.elapsed());
            std::hint::black_box(results);
        }
        timings.sort();

        println!(
            "{:<44} {:>8} {:>7.2}ms {:>7.2}ms {:>7.2}ms",
            format!(
                "{query}{}",
                if options.order == Order::Relevance {
                    " [relevance]"
                } else if options.mailboxes.is_some() {
                    " [scoped]"
                } else if options.offset > 0 {
                    " [offset 200]"
                } else {
                    ""
                }
            ),
            results.total_conversations,
            milliseconds(percentile(&timings, 0.5)),
            milliseconds(percentile(&timings, 0.99)),
            milliseconds(timings[0]),
        );
        minimums.push(timings[0]);
        all.extend(timings);
    }
    all.sort();
    minimums.sort();
    println!(
        "fastest run of each query (machine noise removed): median {:.2} ms, max {:.2} ms",
        milliseconds(percentile(&minimums, 0.5)),
        milliseconds(*minimums.last().expect("timings")),
    );
    println!(
        "\nall {} queries x {repetitions}: median {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        queries.len(),
        milliseconds(percentile(&all, 0.5)),
        milliseconds(percentile(&all, 0.95)),
        milliseconds(percentile(&all, 0.99)),
        milliseconds(*all.last().expect("timings")),
    );
    (
        indexing_seconds,
        milliseconds(percentile(&all, 0.5)),
        milliseconds(percentile(&all, 0.99)),
    )
}
