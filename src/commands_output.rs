//! How the CLI prints what it gets, the same whether the answer came from the daemon's API or from the
//! database directly: JSON with `--json` (stable shapes), a table otherwise.
use serde_json::Value;

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or("-")
}

/// A number as text (`Value`'s `Display` ignores width and alignment).
fn num(value: &Value, key: &str) -> String {
    value[key].to_string()
}

/// Prints a JSON value, pretty.
pub fn json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(err) => eprintln!("inboxd: cannot render json: {err}"),
    }
}

/// `mailbox list|status`: a JSON array, or a table.
pub fn mailboxes(rows: &[Value], as_json: bool) {
    if as_json {
        return json(&Value::Array(rows.to_vec()));
    }
    println!(
        "{:<20} {:<8} {:<7} {:<12} {:>8}  {:<25} last error",
        "mailbox", "kind", "origin", "status", "stored", "last sync"
    );
    for row in rows {
        println!(
            "{:<20} {:<8} {:<7} {:<12} {:>8}  {:<25} {}",
            text(row, "name"),
            text(row, "kind"),
            text(row, "origin"),
            text(row, "status"),
            num(row, "messages_stored"),
            row["last_sync_at"].as_str().unwrap_or("never"),
            text(row, "last_error")
        );
    }
}

/// `sync --once`: a JSON array of reports, or a table.
pub fn sync_reports(reports: &[Value], as_json: bool) {
    if as_json {
        return json(&Value::Array(reports.to_vec()));
    }
    println!(
        "{:<20} {:>8} {:>8} {:>10} {:>8}  error",
        "mailbox", "fetched", "stored", "duplicates", "flagged"
    );
    for report in reports {
        println!(
            "{:<20} {:>8} {:>8} {:>10} {:>8}  {}",
            text(report, "mailbox"),
            num(report, "fetched"),
            num(report, "stored"),
            num(report, "duplicates"),
            num(report, "flagged"),
            text(report, "error")
        );
    }
}

/// `conversations`: a JSON array, or a table.
pub fn conversations(items: &[Value], as_json: bool) {
    if as_json {
        return json(&Value::Array(items.to_vec()));
    }
    println!(
        "{:<36}  {:<12} {:<7} {:<12} {:>4}  subject",
        "conversation", "mailbox", "state", "assignee", "msgs"
    );
    for item in items {
        println!(
            "{:<36}  {:<12} {:<7} {:<12} {:>4}  {}",
            text(item, "id"),
            text(item, "mailbox"),
            text(item, "state"),
            text(item, "assignee"),
            num(item, "messages"),
            item["subject"].as_str().unwrap_or_default()
        );
    }
}

/// `show`: the conversation as JSON, or readable text.
pub fn conversation(view: &Value, as_json: bool) {
    if as_json {
        return json(view);
    }
    println!(
        "conversation {}  [{}]  {}",
        text(view, "id"),
        text(view, "state"),
        view["subject"].as_str().unwrap_or_default()
    );
    if let Some(assignee) = view["assignee"].as_str() {
        println!("assigned to {assignee}");
    }
    for message in view["messages"].as_array().into_iter().flatten() {
        let from: Vec<&str> = message["headers"]["from"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|address| address["email"].as_str().unwrap_or_default())
            .collect();
        println!(
            "\n--- {} {} from {} ({})",
            text(message, "direction"),
            text(message, "id"),
            from.join(", "),
            text(message, "status")
        );
        println!(
            "{}",
            message["body"]["text"]
                .as_str()
                .unwrap_or_default()
                .trim_end()
        );
        for attachment in message["attachments"].as_array().into_iter().flatten() {
            println!(
                "  [attachment {}] {} ({} bytes, {})",
                text(attachment, "id"),
                attachment["meta"]["filename"].as_str().unwrap_or("unnamed"),
                attachment["size"],
                text(&attachment["meta"], "content_type")
            );
        }
        for event in message["events"].as_array().into_iter().flatten() {
            println!(
                "  [{}] {} {} {}",
                text(event, "event"),
                text(event, "recipient"),
                event["status"].as_str().unwrap_or(""),
                event["diagnostic"].as_str().unwrap_or("")
            );
        }
    }
    for note in view["notes"].as_array().into_iter().flatten() {
        println!(
            "\n[note by {} at {}]\n{}",
            text(note, "author"),
            text(note, "created_at"),
            note["body"].as_str().unwrap_or_default().trim_end()
        );
    }
}

/// `search`: `{"total": N, "hits": [...]}` as JSON, or a list.
pub fn search(result: &Value, as_json: bool) {
    if as_json {
        return json(result);
    }
    println!("{} conversations", result["total"]);
    for hit in result["hits"].as_array().into_iter().flatten() {
        println!(
            "{}  {}  {}\n    {}",
            text(hit, "conversation_id"),
            text(hit, "newest"),
            hit["subject"].as_str().unwrap_or_default(),
            hit["snippet"]
                .as_str()
                .unwrap_or_default()
                .replace('\n', " ")
        );
    }
}

/// `token list`: a JSON array, or a table.
pub fn tokens(items: &[Value], as_json: bool) {
    if as_json {
        return json(&Value::Array(items.to_vec()));
    }
    println!(
        "{:<36}  {:<20} {:<6} {:<20} {:<25} state",
        "id", "name", "role", "mailboxes", "last used"
    );
    for item in items {
        let scope = item["mailboxes"]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| "all".to_string());
        println!(
            "{:<36}  {:<20} {:<6} {:<20} {:<25} {}",
            text(item, "id"),
            text(item, "name"),
            text(item, "role"),
            scope,
            item["last_used_at"].as_str().unwrap_or("never"),
            if item["revoked_at"].is_string() {
                "revoked"
            } else {
                "active"
            }
        );
    }
}

/// `token create`: the new token with its secret (shown once).
pub fn token_created(value: &Value, as_json: bool) {
    if as_json {
        return json(value);
    }
    println!(
        "token {} ({}) created; its secret, shown only now:\n{}",
        text(value, "name"),
        text(value, "role"),
        text(value, "secret")
    );
}

/// `mailbox test`: each check with its outcome.
pub fn connection_test(value: &Value, as_json: bool) {
    if as_json {
        return json(value);
    }
    for check in value["checks"].as_array().into_iter().flatten() {
        println!(
            "{:<4} {:<24} {}",
            if check["ok"] == true { "ok" } else { "FAIL" },
            text(check, "check"),
            text(check, "detail")
        );
    }
    println!(
        "mailbox {}: {}",
        text(value, "mailbox"),
        if value["ok"] == true {
            "connection works"
        } else {
            "connection test failed"
        }
    );
}
