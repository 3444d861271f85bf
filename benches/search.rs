//! Search benchmark: builds N synthetic support messages (default 100,000), indexes them on
//! tantivy's MmapDirectory and on inboxd's EncryptedDirectory, and reports indexing throughput,
//! index size and query latency (median, p95, p99) over a fixed set of 26 queries of every kind,
//! plus the encrypted/plain ratios.
//!
//! `cargo bench --bench search -- [N] [runs] [--rebuild] [--cache-mb=MB] [--only=QUERY]
//! [--threads=T] [--dir=PATH]`. Built indexes are kept under `--dir` (default `$TMPDIR/inboxd-search-bench`), in
//! a directory named by N and [`BENCH_FORMAT`], and reused by later runs: only the first run at a
//! given N pays for indexing. `--rebuild` builds them again; `--cache-mb` sets the encrypted
//! directory's cache (default: the library default); `--only` runs the queries containing QUERY;
//! `--threads` searches the segments of a query on a pool of that many threads (default 1).

use std::path::{Path, PathBuf};
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

/// Version of the kept indexes: bump it when the corpus generator, the index schema or the way the
/// bench builds indexes changes, so stale indexes are rebuilt rather than measured.
const BENCH_FORMAT: u32 = 1;
/// The key of the encrypted bench index (fixed, so a kept index opens again).
const BENCH_KEY: [u8; 32] = [7u8; 32];

struct Settings {
    count: usize,
    repetitions: usize,
    rebuild: bool,
    cache_bytes: usize,
    only: Option<String>,
    threads: Option<usize>,
    root: PathBuf,
}

impl Settings {
    fn from_arguments() -> Settings {
        let arguments: Vec<String> = std::env::args().skip(1).collect();
        let flag = |name: &str| {
            arguments
                .iter()
                .find_map(|argument| argument.strip_prefix(&format!("--{name}=")))
                .map(str::to_string)
        };
        let mut positional = arguments
            .iter()
            .filter(|argument| !argument.starts_with("--"));
        let count = positional
            .next()
            .and_then(|text| text.parse().ok())
            .or_else(|| std::env::var("BENCH_MESSAGES").ok()?.parse().ok())
            .unwrap_or(100_000);
        let repetitions = positional
            .next()
            .and_then(|text| text.parse().ok())
            .unwrap_or(30);
        Settings {
            count,
            repetitions,
            rebuild: arguments.iter().any(|argument| argument == "--rebuild"),
            cache_bytes: flag("cache-mb")
                .and_then(|text| text.parse::<usize>().ok())
                .map_or(DEFAULT_CACHE_BYTES, |megabytes| megabytes * 1024 * 1024),
            only: flag("only"),
            threads: flag("threads").and_then(|text| text.parse().ok()),
            root: flag("dir").map_or_else(
                || std::env::temp_dir().join("inboxd-search-bench"),
                PathBuf::from,
            ),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    Encrypted,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Plain => "plain MmapDirectory",
            Kind::Encrypted => "EncryptedDirectory",
        }
    }

    fn directory_name(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Encrypted => "encrypted",
        }
    }
}

/// Figures of one directory kind.
struct Figures {
    indexing_seconds: f64,
    median: f64,
    p95: f64,
    p99: f64,
}

/// CPU time this process has used (all threads: searches may run on several), from
/// `/proc/self/stat` (utime + stime, in ticks of 10 ms: USER_HZ is 100 on Linux). Wall-clock
/// latency on a busy machine includes waiting for a core; the CPU time per run, averaged over the
/// repetitions, is what the code itself costs.
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn main() {
    let settings = Settings::from_arguments();
    let home = settings
        .root
        .join(format!("v{BENCH_FORMAT}-n{}", settings.count));
    let mut docs: Option<Vec<SearchDoc>> = None;
    println!(
        "search threads per query: {}",
        settings
            .threads
            .map_or_else(|| "1 (default)".to_string(), |threads| threads.to_string())
    );
    let mut figures = Vec::new();
    for kind in [Kind::Plain, Kind::Encrypted] {
        figures.push(measure(kind, &settings, &home, &mut docs));
    }
    let [plain, encrypted] = &figures[..] else {
        unreachable!("two kinds measured")
    };
    println!(
        "\nencrypted / plain: indexing time {:.2}x, query median {:.2}x, p95 {:.2}x, p99 {:.2}x",
        encrypted.indexing_seconds / plain.indexing_seconds,
        encrypted.median / plain.median,
        encrypted.p95 / plain.p95,
        encrypted.p99 / plain.p99,
    );
}

/// The corpus, generated on first use (kept indexes need none).
fn corpus_once(count: usize, docs: &mut Option<Vec<SearchDoc>>) -> &[SearchDoc] {
    docs.get_or_insert_with(|| {
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
        docs
    })
}

/// The directory of `kind` at `path`, and the encrypted one again (a clone sharing its cache) for
/// its cache counters.
fn open_directory(
    kind: Kind,
    path: &Path,
    settings: &Settings,
) -> (Box<dyn tantivy::Directory>, Option<EncryptedDirectory>) {
    match kind {
        Kind::Plain => (
            Box::new(MmapDirectory::open(path).expect("mmap directory")),
            None,
        ),
        Kind::Encrypted => {
            let directory = EncryptedDirectory::open(path, BENCH_KEY, settings.cache_bytes)
                .expect("encrypted directory");
            (Box::new(directory.clone()), Some(directory))
        }
    }
}

/// The index in `directory`, searched on `--threads` threads if given.
fn open_index(directory: Box<dyn tantivy::Directory>, settings: &Settings) -> SearchIndex {
    match settings.threads {
        Some(threads) => SearchIndex::open_or_create_with_threads(directory, threads),
        None => SearchIndex::open_or_create(directory),
    }
    .expect("open bench index")
}

/// Indexes `docs` into a fresh index at `path`; returns the indexing time in seconds.
fn build(kind: Kind, path: &Path, settings: &Settings, docs: &[SearchDoc]) -> f64 {
    if path.exists() {
        std::fs::remove_dir_all(path).expect("remove stale bench index");
    }
    std::fs::create_dir_all(path).expect("create bench index directory");
    let index = open_index(open_directory(kind, path, settings).0, settings);
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
    indexing.elapsed().as_secs_f64()
}

/// Builds the index of `kind` (or reuses the kept one) and runs the query set on it.
fn measure(
    kind: Kind,
    settings: &Settings,
    home: &Path,
    docs: &mut Option<Vec<SearchDoc>>,
) -> Figures {
    println!("\n== {}", kind.label());
    let path = home.join(kind.directory_name());
    let stats_path = home.join(format!("{}.indexing-seconds", kind.directory_name()));
    let kept = std::fs::read_to_string(&stats_path)
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|_| !settings.rebuild);
    let (indexing_seconds, reused) = match kept {
        Some(seconds) => (seconds, true),
        None => {
            let _ = std::fs::remove_file(&stats_path);
            let seconds = build(kind, &path, settings, corpus_once(settings.count, docs));
            std::fs::write(&stats_path, format!("{seconds}\n")).expect("write build stats");
            (seconds, false)
        }
    };
    let (directory, encrypted) = open_directory(kind, &path, settings);
    let opening = Instant::now();
    let index = open_index(directory, settings);
    let open_time = opening.elapsed();
    let size: u64 = std::fs::read_dir(&path)
        .expect("list")
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum();
    println!(
        "{} {} docs in {indexing_seconds:.1} s: {:.0} docs/s; {} segments, index size {} MB ({})",
        if reused { "kept index:" } else { "indexed" },
        index.num_docs(),
        settings.count as f64 / indexing_seconds,
        index.num_segments(),
        size / 1_000_000,
        path.display(),
    );
    println!(
        "opened in {:.1} ms (reading every segment's conversation ids included)",
        milliseconds(open_time)
    );
    let (median, p95, p99) = run_queries(&index, settings);
    if let Some(encrypted) = encrypted {
        let stats = encrypted.cache_stats();
        println!(
            "cache: {} MB of {} MB used, {} hits, {} block misses",
            stats.used_bytes / 1_000_000,
            stats.capacity_bytes / 1_000_000,
            stats.hits,
            stats.misses
        );
    }
    Figures {
        indexing_seconds,
        median,
        p95,
        p99,
    }
}

/// The fixed query set: every operator and field, both orders, a scoped and a deep-page search.
fn queries() -> Vec<(&'static str, SearchOptions)> {
    let newest = SearchOptions::default;
    let relevance = || SearchOptions {
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
    vec![
        ("invoice", newest()),
        ("refund request", newest()),
        ("\"late delivery\"", newest()),
        ("\"password reset link expired\"", newest()),
        ("invoi*", newest()),
        ("deliv*", newest()),
        ("from:alice", newest()),
        ("from:alice.smith@customer7.example", newest()),
        ("from:\"Jürgen Müller\"", newest()),
        ("muller", newest()),
        ("to:support@acme.test", newest()),
        ("cc:kowalski", newest()),
        ("subject:invoice", newest()),
        ("mailbox:billing invoice", newest()),
        ("has:attachment filename:pdf", newest()),
        ("after:2024-06-01 before:2024-07-01", newest()),
        ("is:open refund", newest()),
        ("status:bounced", newest()),
        ("refund OR password", newest()),
        ("(refund OR cancel) -is:closed", newest()),
        ("invoice -refund", newest()),
        ("invoice payment", relevance()),
        ("\"late delivery\" parcel", relevance()),
        ("invoice", billing),
        ("is:open", deep_page),
        ("-is:closed", newest()),
    ]
}

fn describe(query: &str, options: &SearchOptions) -> String {
    let suffix = if options.order == Order::Relevance {
        " [relevance]"
    } else if options.mailboxes.is_some() {
        " [scoped]"
    } else if options.offset > 0 {
        " [offset 200]"
    } else {
        ""
    };
    format!("{query}{suffix}")
}

/// Runs every query `repetitions` times after one untimed (cold) run; returns the median, p95
/// and p99 in milliseconds over all timed runs.
fn run_queries(index: &SearchIndex, settings: &Settings) -> (f64, f64, f64) {
    let queries = queries();
    let repetitions = settings.repetitions;
    let mut all = Vec::new();
    let mut minimums = Vec::new();
    let mut cpu_total = Duration::ZERO;
    println!(
        "\n{:<44} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "query", "convs", "cold", "median", "p95", "p99", "min", "cpu/run"
    );
    for (query, options) in &queries {
        let described = describe(query, options);
        if let Some(only) = &settings.only
            && !described.contains(only.as_str())
        {
            continue;
        }
        let started = Instant::now();
        let results = index.search(query, options).expect("query");
        let cold = started.elapsed();
        let mut timings = Vec::with_capacity(repetitions);
        let cpu_before = process_cpu_time();
        for _ in 0..repetitions {
            let started = Instant::now();
            let results = index.search(query, options).expect("query");
            timings.push(started.elapsed());
            std::hint::black_box(results);
        }
        let cpu = process_cpu_time()
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before))
            .unwrap_or_default();
        cpu_total += cpu;
        timings.sort();
        println!(
            "{described:<44} {:>8} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms",
            results.total_conversations,
            milliseconds(cold),
            milliseconds(percentile(&timings, 0.5)),
            milliseconds(percentile(&timings, 0.95)),
            milliseconds(percentile(&timings, 0.99)),
            milliseconds(timings[0]),
            milliseconds(cpu) / repetitions as f64,
        );
        minimums.push(timings[0]);
        all.extend(timings);
    }
    assert!(!all.is_empty(), "no query matched --only");
    all.sort();
    minimums.sort();
    println!(
        "fastest run of each query (machine noise removed): median {:.2} ms, max {:.2} ms",
        milliseconds(percentile(&minimums, 0.5)),
        milliseconds(*minimums.last().expect("timings")),
    );
    let (median, p95, p99) = (
        milliseconds(percentile(&all, 0.5)),
        milliseconds(percentile(&all, 0.95)),
        milliseconds(percentile(&all, 0.99)),
    );
    let wall_total: Duration = all.iter().sum();
    println!(
        "\nall {} queries x {repetitions}: median {median:.2} ms, p95 {p95:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
        minimums.len(),
        milliseconds(*all.last().expect("timings")),
    );
    println!(
        "CPU time {:.0}% of wall time (with one search thread, below ~95% means the machine was busy and latencies include waiting for a core)",
        100.0 * cpu_total.as_secs_f64() / wall_total.as_secs_f64().max(f64::MIN_POSITIVE),
    );
    (median, p95, p99)
}
