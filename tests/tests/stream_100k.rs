//! A stream of 100,000 sandbox users: every user arrives exactly once, as NDJSON, read
//! incrementally the way a client would. (Its peak memory is measured by
//! `bench/stream-memory.sh`, not asserted here: machines are shared and noisy.)

use std::collections::HashSet;

use serde_json::Value;
use unigate_gateway::Gateway;
use unigate_tests::serve;

const USERS: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_100k_users_each_exactly_once() {
    let gateway = serve(Gateway::sandbox(USERS).await.expect("sandbox")).await;
    let url = format!(
        "{}/unified/user-directory/users?integrated_account_id=sandbox-cursor&limit=500&truto_response_format=stream&truto_ignore_remote_data=true",
        gateway.origin
    );
    let mut response = reqwest::Client::new()
        .get(&url)
        .bearer_auth("sandbox")
        .send()
        .await
        .expect("stream starts");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut seen = HashSet::with_capacity(USERS);
    let mut pending = Vec::new();
    let mut lines = 0usize;
    while let Some(chunk) = response.chunk().await.expect("the stream is not cut") {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let record: Value = serde_json::from_slice(&line).expect("one JSON record per line");
            assert!(
                record.get("truto_stream_error").is_none(),
                "the stream failed: {record}"
            );
            let id = record["id"].as_str().expect("id").to_owned();
            assert!(seen.insert(id.clone()), "{id} arrived twice");
            lines += 1;
        }
    }
    assert!(pending.is_empty(), "the last line ends with a newline");
    assert_eq!((lines, seen.len()), (USERS, USERS));
    assert!(seen.contains("usr_00001") && seen.contains("usr_100000"));
}
