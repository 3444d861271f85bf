//! The HTTP API's request bodies and query strings, through the real router (auth, extractors,
//! validation, handlers) over a real SQLite store holding one ingested conversation.
//! Oracles: nothing panics and bad input is answered 4xx, never 5xx.
#![no_main]

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::http::{Method, Request};
use inboxd::api::{ApiState, Shared};
use inboxd::config::Config;
use inboxd::ingest::commit::Ingestor;
use inboxd::ingest::once::sync_mailboxes;
use inboxd::ingest::supervisor::MailboxSet;
use inboxd::search::indexer::{IndexHandle, open_index};
use inboxd::store::entities::conversation;
use libfuzzer_sys::fuzz_target;
use sea_orm::EntityTrait;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

struct World {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    token: String,
    conversation: String,
    _root: tempfile::TempDir,
    _opened: inboxd::app::Opened,
}

static WORLD: LazyLock<World> = LazyLock::new(setup);

fn setup() -> World {
    let root = tempfile::tempdir().expect("temporary directory");
    let maildir = root.path().join("maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    std::fs::write(
        maildir.join("new/1.fuzz"),
        "Message-ID: <a1@customer.example>\r\nFrom: Alice <alice@customer.example>\r\nTo: support@inboxd.test\r\nSubject: Order 4711\r\n\r\nWhere is my order?\r\n",
    )
    .expect("message");
    let data = root.path().join("data");
    let text = format!(
        "data_dir = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n[[mailbox]]\nname = \"support\"\nkind = \"maildir\"\npath = \"{}\"\n",
        data.display(),
        maildir.display()
    );
    let config = Config::from_toml(&text, None).expect("config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (opened, router, token, conversation) = runtime.block_on(async {
        let opened = inboxd::app::open(&config).await.expect("open store");
        let (index, _) = open_index(&config.index_dir(), &opened.master, 8 << 20).expect("index");
        let (index, _thread) = IndexHandle::start(index).expect("index writer");
        let ingestor = Ingestor::new(opened.store.clone(), Arc::clone(&opened.master))
            .with_index(index.clone());
        let cancel = CancellationToken::new();
        sync_mailboxes(&ingestor, &config.mailboxes, &config.ingest, &cancel)
            .await
            .expect("ingest the fixture");
        let conversation = conversation::Entity::find()
            .one(&opened.store.db)
            .await
            .expect("query")
            .expect("one conversation")
            .id
            .to_string();
        let (_, token) = inboxd::store::tokens::create(&opened.store.db, "fuzz", "admin", None)
            .await
            .expect("token");
        let state = ApiState::new(Shared {
            store: opened.store.clone(),
            master: Arc::clone(&opened.master),
            ingestor,
            index,
            mailboxes: MailboxSet {
                from_config: Arc::new(tokio::sync::RwLock::new(config.mailboxes.clone())),
                ingest: Arc::new(tokio::sync::RwLock::new(config.ingest.clone())),
                changed: Arc::new(tokio::sync::Notify::new()),
            },
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            sync_running: tokio::sync::Mutex::new(()),
            cancel,
            authorizations: std::sync::Mutex::default(),
        });
        (opened, inboxd::api::router(state), token, conversation)
    });
    World {
        runtime,
        router,
        token,
        conversation,
        _root: root,
        _opened: opened,
    }
}

/// Percent-encodes everything but unreserved characters and the query's own `=` and `&`.
fn query_string(bytes: &[u8]) -> String {
    let mut out = String::new();
    for byte in bytes {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'=' | b'&' => {
                out.push(char::from(*byte));
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [selector, body @ ..] = data else {
        return;
    };
    let world = &*WORLD;
    let c = &world.conversation;
    let with_body: [(Method, String); 11] = [
        (Method::PUT, format!("/v1/conversations/{c}/state")),
        (Method::PUT, format!("/v1/conversations/{c}/assignee")),
        (Method::POST, format!("/v1/conversations/{c}/replies")),
        (Method::POST, format!("/v1/conversations/{c}/notes")),
        (Method::POST, "/v1/mailboxes".to_string()),
        (Method::PUT, "/v1/mailboxes/support".to_string()),
        (Method::POST, "/v1/tokens".to_string()),
        (Method::PUT, "/v1/mailboxes/support/retention".to_string()),
        (Method::PUT, format!("/v1/conversations/{c}/hold")),
        (Method::PUT, "/v1/mailboxes/support/hold".to_string()),
        (Method::POST, "/v1/subjects/export".to_string()),
    ];
    let with_query = ["/v1/search", "/v1/conversations", "/v1/audit", "/v1/purge"];
    let index = usize::from(*selector) % (with_body.len() + with_query.len());
    let request = if let Some((method, path)) = with_body.get(index) {
        Request::builder()
            .method(method.clone())
            .uri(path.as_str())
            .header("authorization", format!("Bearer {}", world.token))
            .header("content-type", "application/json")
            .body(Body::from(body.to_vec()))
    } else {
        let path = with_query[index - with_body.len()];
        let method = if path == "/v1/purge" {
            Method::POST
        } else {
            Method::GET
        };
        Request::builder()
            .method(method)
            .uri(format!("{path}?{}", query_string(body)))
            .header("authorization", format!("Bearer {}", world.token))
            .body(Body::empty())
    };
    let Ok(request) = request else {
        return;
    };
    let response = world
        .runtime
        .block_on(world.router.clone().oneshot(request))
        .expect("the router is infallible");
    assert!(
        response.status().as_u16() < 500,
        "bad input answered {} for selector {selector}",
        response.status()
    );
});
