//! Waiting for mail (IDLE and NOOP polling), unsolicited responses, UIDVALIDITY changes.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::*;

#[tokio::test]
async fn unsolicited_responses_do_not_break_commands() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut watcher = lab.client("alice").await;
    let mut other = lab.client("alice").await;
    let (folder, originals) = folder_with_three(&mut watcher, "unsolicited").await;

    // Another session changes flags and adds a message: the watcher gets FETCH and EXISTS
    // responses in the middle of its own commands.
    other.select(&folder).await.expect("other select");
    other.mark_seen(&[1, 2, 3]).await.expect("other marks seen");
    other
        .append(&folder, &message("unsolicited-new", 300))
        .await
        .expect("other append");

    let fetched = watcher
        .fetch_batch(&[1, 2, 3])
        .await
        .expect("fetch amid unsolicited data");
    let got: Vec<Vec<u8>> = fetched.into_iter().map(|m| m.raw).collect();
    assert!(got == originals);
    // The EXISTS seen during the fetch makes the next wait return at once.
    let outcome = watcher
        .idle_wait(Duration::from_secs(20), &CancellationToken::new())
        .await
        .expect("idle");
    assert_eq!(outcome, IdleOutcome::NewData);
    assert_eq!(watcher.uids_after(3).await.expect("new uid"), vec![4]);

    other.logout().await;
    remove_folders(&mut watcher, &[&folder]).await;
    watcher.logout().await;
}

#[tokio::test]
async fn idle_returns_new_data_when_another_session_appends() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut watcher = lab.client("bob").await;
    let folder = scratch_folder(&mut watcher, "").await;
    watcher.select(&folder).await.expect("select");
    assert!(watcher.uids_after(0).await.expect("empty").is_empty());

    let mut writer = lab.client("bob").await;
    let target = folder.clone();
    let append = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        writer
            .append(&target, &message("idle-new", 300))
            .await
            .expect("append");
        writer.logout().await;
    });
    let started = Instant::now();
    let outcome = watcher
        .idle_wait(Duration::from_secs(60), &CancellationToken::new())
        .await
        .expect("idle wait");
    assert_eq!(outcome, IdleOutcome::NewData);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    append.await.expect("append task");

    // DONE was sent properly: the session keeps working.
    assert_eq!(watcher.uids_after(0).await.expect("after idle"), vec![1]);
    remove_folders(&mut watcher, &[&folder]).await;
    watcher.logout().await;
}

#[tokio::test]
async fn idle_times_out_and_cancels_cleanly() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut client = lab.client("alice").await;
    let folder = scratch_folder(&mut client, "").await;
    client.select(&folder).await.expect("select");

    let started = Instant::now();
    let outcome = client
        .idle_wait(Duration::from_millis(800), &CancellationToken::new())
        .await
        .expect("idle timeout");
    assert_eq!(outcome, IdleOutcome::Timeout);
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert!(client.is_usable());

    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let outcome = client
        .idle_wait(Duration::from_secs(60), &cancel)
        .await
        .expect("idle cancel");
    assert_eq!(outcome, IdleOutcome::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(10));
    // Already cancelled: returns without touching the network.
    assert_eq!(
        client
            .idle_wait(Duration::from_secs(60), &cancel)
            .await
            .ok(),
        Some(IdleOutcome::Cancelled)
    );

    client
        .append(&folder, &message("after-idle", 300))
        .await
        .expect("append after idle");
    assert_eq!(client.select(&folder).await.expect("reselect").exists, 1);
    remove_folders(&mut client, &[&folder]).await;
    client.logout().await;
}

#[tokio::test]
async fn noop_polling_substitute_sees_new_mail() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut client = lab.client("alice").await;
    let folder = scratch_folder(&mut client, "").await;
    client.select(&folder).await.expect("select");
    let cancel = CancellationToken::new();
    let quiet = client
        .poll_wait(Duration::from_millis(300), &cancel)
        .await
        .expect("poll");
    assert_eq!(quiet, IdleOutcome::Timeout);

    let mut writer = lab.client("alice").await;
    writer
        .append(&folder, &message("poll-new", 300))
        .await
        .expect("append");
    writer.logout().await;
    let noticed = client
        .poll_wait(Duration::from_millis(300), &cancel)
        .await
        .expect("poll");
    assert_eq!(noticed, IdleOutcome::NewData);
    remove_folders(&mut client, &[&folder]).await;
    client.logout().await;
}

#[tokio::test]
async fn recreated_folder_gets_a_new_uidvalidity() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut watcher = lab.client("bob").await;
    let folder = scratch_folder(&mut watcher, "").await;
    watcher
        .append(&folder, &message("validity", 300))
        .await
        .expect("append");
    let first = watcher.select(&folder).await.expect("select").uid_validity;

    let mut admin = lab.client("bob").await;
    admin.delete_folder(&folder).await.expect("delete");
    admin.create_folder(&folder).await.expect("recreate");
    admin.logout().await;

    // Dovecot may end the watcher's session because its selected folder vanished.
    let second = match watcher.select(&folder).await {
        Ok(status) => status,
        Err(error) => {
            assert!(error.is_transient(), "{error:?}");
            watcher = lab.client("bob").await;
            watcher
                .select(&folder)
                .await
                .expect("select after reconnect")
        }
    };
    assert_ne!(first, second.uid_validity);
    assert_eq!(second.exists, 0);
    remove_folders(&mut watcher, &[&folder]).await;
    watcher.logout().await;
}
