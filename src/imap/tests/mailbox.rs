//! Mailbox commands: select, search, fetch, flags, move, append, folders.

use std::time::Instant;

use super::*;

#[tokio::test]
async fn appended_messages_round_trip_byte_exact() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut client = lab.client("alice").await;
    let folder = scratch_folder(&mut client, "").await;
    let originals: Vec<Vec<u8>> = (0..3)
        .map(|index| message(&format!("round-trip-{index}"), 2_000 * (index + 1)))
        .collect();
    for raw in &originals {
        client.append(&folder, raw).await.expect("append");
    }
    let status = client.select(&folder).await.expect("select");
    assert_eq!((status.exists, status.uid_next), (3, Some(4)));

    let uids = client.uids_after(0).await.expect("uids after 0");
    assert_eq!(uids, vec![1, 2, 3]);
    // Ask out of order and with a duplicate: the answer is in UID order, once each.
    let fetched = client.fetch_batch(&[3, 1, 2, 1]).await.expect("fetch");
    let got: Vec<(u32, &[u8])> = fetched.iter().map(|m| (m.uid, m.raw.as_slice())).collect();
    let expected: Vec<(u32, &[u8])> = uids
        .iter()
        .copied()
        .zip(originals.iter().map(Vec::as_slice))
        .collect();
    assert!(got == expected, "fetched bytes differ from appended bytes");
    assert!(
        client
            .fetch_batch(&[])
            .await
            .expect("empty fetch")
            .is_empty()
    );

    remove_folders(&mut client, &[&folder]).await;
    client.logout().await;
}

#[tokio::test]
async fn twenty_megabyte_message_round_trips() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut client = lab.client("bob").await;
    let folder = scratch_folder(&mut client, "").await;
    let big = message("big-message", 20 * 1024 * 1024);
    client.append(&folder, &big).await.expect("append 20 MB");
    client.select(&folder).await.expect("select");

    let sizes = client.sizes(&[1]).await.expect("sizes");
    assert_eq!(sizes, vec![(1, big.len() as u64)]);
    let started = Instant::now();
    let fetched = client.fetch_batch(&[1]).await.expect("fetch 20 MB");
    eprintln!("fetched {} bytes in {:?}", big.len(), started.elapsed());
    assert_eq!(fetched.len(), 1);
    assert!(
        fetched[0].raw == big,
        "20 MB message differs after the round trip"
    );

    remove_folders(&mut client, &[&folder]).await;
    client.logout().await;
}

#[tokio::test]
async fn uids_after_filters_the_star_edge() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut client = lab.client("alice").await;
    let folder = scratch_folder(&mut client, "").await;
    client.select(&folder).await.expect("select empty");
    assert_eq!(
        client.uids_after(0).await.expect("empty folder"),
        Vec::<u32>::new()
    );
    for index in 0..3 {
        client
            .append(&folder, &message(&format!("edge-{index}"), 500))
            .await
            .expect("append");
    }
    client.select(&folder).await.expect("select");
    assert_eq!(client.uids_after(1).await.expect("after 1"), vec![2, 3]);
    // `UID SEARCH UID 4:*` and `11:*` match UID 3 (the highest); it must be filtered out.
    assert_eq!(
        client.uids_after(3).await.expect("after 3"),
        Vec::<u32>::new()
    );
    assert_eq!(
        client.uids_after(10).await.expect("after 10"),
        Vec::<u32>::new()
    );
    assert_eq!(
        client.uids_after(u32::MAX).await.expect("after max"),
        Vec::<u32>::new()
    );
    remove_folders(&mut client, &[&folder]).await;
    client.logout().await;
}

#[tokio::test]
async fn sizes_headers_and_missing_uids() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut client = lab.client("alice").await;
    let folder = scratch_folder(&mut client, "").await;
    let originals = [message("sizes-a", 700), message("sizes-b", 9_000)];
    for raw in &originals {
        client.append(&folder, raw).await.expect("append");
    }
    client.select(&folder).await.expect("select");

    let sizes = client.sizes(&[2, 1, 77]).await.expect("sizes");
    let expected: Vec<(u32, u64)> = vec![
        (1, originals[0].len() as u64),
        (2, originals[1].len() as u64),
    ];
    assert_eq!(sizes, expected);

    let headers = client.fetch_headers(&[1, 2]).await.expect("headers");
    assert_eq!(headers.len(), 2);
    for (header, original) in headers.iter().zip(&originals) {
        let end = original
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .expect("test message has a header end")
            + 4;
        assert!(
            header.raw == original[..end],
            "uid {} header differs",
            header.uid
        );
    }

    let fetched = client
        .fetch_batch(&[2, 50, 51])
        .await
        .expect("fetch with missing uids");
    assert_eq!(fetched.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![2]);
    remove_folders(&mut client, &[&folder]).await;
    client.logout().await;
}

#[tokio::test]
async fn fetch_keeps_unread_and_mark_seen_touches_only_the_given_uids() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut client = lab.client("alice").await;
    let folder = scratch_folder(&mut client, "").await;
    for index in 0..4 {
        client
            .append(&folder, &message(&format!("seen-{index}"), 300))
            .await
            .expect("append");
    }
    client.select(&folder).await.expect("select");
    client.fetch_batch(&[1, 2, 3, 4]).await.expect("fetch");
    let before = flags(&mut client).await;
    assert_eq!(before.len(), 4);
    assert!(
        (1..=4).all(|uid| !has_seen(&before, uid)),
        "BODY.PEEK must not set \\Seen"
    );

    client.mark_seen(&[2, 4]).await.expect("mark seen");
    let after = flags(&mut client).await;
    let seen: Vec<u32> = (1..=4).filter(|&uid| has_seen(&after, uid)).collect();
    assert_eq!(seen, vec![2, 4]);
    remove_folders(&mut client, &[&folder]).await;
    client.logout().await;
}

#[tokio::test]
async fn move_to_with_move_and_with_copy_fallback() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut client = lab.client("bob").await;
    assert!(client.has_capability("MOVE") && client.has_capability("UIDPLUS"));
    let target = scratch_folder(&mut client, "").await;

    let (source, originals) = folder_with_three(&mut client, "move").await;
    client.move_to(&[1, 3], &target).await.expect("uid move");
    assert_eq!(client.uids_after(0).await.expect("source left"), vec![2]);

    let (fallback_source, fallback_originals) = folder_with_three(&mut client, "copy").await;
    let quoted = wire::quoted_mailbox(&target).expect("quote");
    client
        .move_with_copy(&[2], &target, &quoted)
        .await
        .expect("copy fallback");
    assert_eq!(
        client.uids_after(0).await.expect("fallback left"),
        vec![1, 3]
    );

    client.select(&target).await.expect("select target");
    let moved: Vec<Vec<u8>> = client
        .fetch_batch(&[1, 2, 3])
        .await
        .expect("fetch moved")
        .into_iter()
        .map(|m| m.raw)
        .collect();
    let expected = vec![
        originals[0].clone(),
        originals[2].clone(),
        fallback_originals[1].clone(),
    ];
    assert!(moved == expected, "moved messages differ");

    let missing = client.move_to(&[1], &format!("{target}-nonexistent")).await;
    assert!(
        matches!(missing, Err(ImapError::NoSuchFolder(_))),
        "{missing:?}"
    );
    assert!(client.is_usable());
    remove_folders(&mut client, &[&source, &fallback_source, &target]).await;
    client.logout().await;
}

#[tokio::test]
async fn missing_folder_and_unicode_names() {
    let Some(lab) = reachable_lab().await else {
        return;
    };
    let mut client = lab.client("bob").await;
    let error = client
        .select("t-does-not-exist-4711")
        .await
        .expect_err("missing folder");
    assert!(
        matches!(error, ImapError::NoSuchFolder(ref name) if name == "t-does-not-exist-4711"),
        "{error:?}"
    );
    assert!(client.is_usable(), "a NO leaves the session usable");

    let folder = scratch_folder(&mut client, "-Entwürfe & 台北").await;
    let raw = message("unicode-folder", 300);
    client
        .append(&folder, &raw)
        .await
        .expect("append to unicode folder");
    client.select(&folder).await.expect("select unicode folder");
    let fetched = client.fetch_batch(&[1]).await.expect("fetch");
    assert!(fetched.first().is_some_and(|m| m.raw == raw));
    remove_folders(&mut client, &[&folder]).await;
    client.logout().await;
}
