//! The `s3` sink against moto's S3 (path-style, static keys from files): objects are gzip'd
//! NDJSON under the time partition; a batch sent again (same uuids) does not overwrite its
//! object (the conditional write answers 412, counted as delivered); a missing bucket (a
//! denial) is dead-lettered once `spool.denied_retry_secs` is over; an outage (the connection
//! cut) and a kaudit restart lose nothing.

use std::collections::HashSet;
use std::io::Read;

use kaudit::alert::{Alert, Priority};
use serde_json::Value;

use super::servers::Proxy;
use super::{Destination, outage_then_restart, start, wait_sent};
use crate::brokers::{Moto, moto_bin};
use crate::support::{alert, config};

const AUTH: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

/// An S3 call to moto; returns the status and the raw body.
async fn call(moto: &Moto, method: reqwest::Method, path: &str) -> (u16, Vec<u8>) {
    let r = reqwest::Client::builder()
        .no_gzip()
        .build()
        .unwrap()
        .request(method, format!("{}/{path}", moto.url()))
        .header("authorization", AUTH)
        .send()
        .await
        .expect("s3 call");
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// Every object of `bucket`: key and the alerts of its gunzipped NDJSON body.
async fn objects(moto: &Moto, bucket: &str) -> Vec<(String, Vec<Value>)> {
    let (status, list) = call(moto, reqwest::Method::GET, &format!("{bucket}?list-type=2")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&list));
    let list = String::from_utf8(list).unwrap();
    let mut out = Vec::new();
    for part in list.split("<Key>").skip(1) {
        let key = &part[..part.find("</Key>").expect("closing </Key>")];
        let (status, body) = call(moto, reqwest::Method::GET, &format!("{bucket}/{key}")).await;
        assert_eq!(status, 200);
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .expect("the object is gzip");
        let alerts = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one alert JSON per line"))
            .collect();
        out.push((key.to_string(), alerts));
    }
    out
}

fn sink(dir: &std::path::Path, moto: &Moto, bucket: &str) -> String {
    sink_at(dir, &moto.url(), bucket)
}

fn sink_at(dir: &std::path::Path, endpoint: &str, bucket: &str) -> String {
    std::fs::write(dir.join("id"), "AKIDTEST\n").unwrap();
    std::fs::write(dir.join("secret"), "c2VjcmV0\n").unwrap();
    format!(
        "  - name: s3\n    type: s3\n    bucket: {bucket}\n    prefix: falco\n    region: us-east-1\n    endpoint: {}\n    access_key_id_file: {}\n    secret_access_key_file: {}\n    batch_wait_ms: 50\n",
        endpoint,
        dir.join("id").display(),
        dir.join("secret").display()
    )
}

#[tokio::test]
async fn gzipped_ndjson_objects_that_a_retry_does_not_overwrite() {
    let Some(bin) = moto_bin() else { return };
    let moto = Moto::start(bin).await;
    assert_eq!(call(&moto, reqwest::Method::PUT, "archive").await.0, 200);
    let dir = tempfile::tempdir().unwrap();
    let (r, metrics) = start(dir.path(), &sink(dir.path(), &moto, "archive")).await;
    let a = alert("First", Priority::Warning);
    r.sender().send(a.clone()).await.unwrap();
    wait_sent(&metrics, "s3", 1).await;
    // The same batch again (same uuid: the same object name) with another output.
    let again = Alert {
        output: "changed".into(),
        ..a.clone()
    };
    r.sender().send(again).await.unwrap();
    wait_sent(&metrics, "s3", 2).await;
    let more = [
        alert("Second", Priority::Notice),
        alert("Third", Priority::Critical),
    ];
    for m in &more {
        r.sender().send(m.clone()).await.unwrap();
    }
    wait_sent(&metrics, "s3", 4).await;
    r.shutdown().await;
    let objs = objects(&moto, "archive").await;
    let partition = a.time.format("falco/%Y/%m/%d/%H/").to_string();
    let mut uuids = HashSet::new();
    for (key, alerts) in &objs {
        assert!(key.starts_with(&partition), "{key}");
        assert!(key.ends_with(".ndjson.gz"), "{key}");
        for al in alerts {
            assert!(uuids.insert(al["uuid"].as_str().unwrap().to_string()));
            if al["uuid"] == a.uuid.to_string() {
                assert_eq!(al["output"], a.output, "the first write stands");
                assert_eq!(al["rule"], "First");
            }
        }
    }
    let want: HashSet<String> = [&a, &more[0], &more[1]]
        .iter()
        .map(|x| x.uuid.to_string())
        .collect();
    assert_eq!(uuids, want);
}

#[tokio::test]
async fn a_missing_bucket_is_dead_lettered() {
    let Some(bin) = moto_bin() else { return };
    let moto = Moto::start(bin).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sink(dir.path(), &moto, "nowhere"));
    let l = crate::support::refused_alert(&cfg, "s3").await;
    assert!(
        l["reason"].as_str().unwrap().contains("NoSuchBucket"),
        "{l}"
    );
}

/// moto behind a proxy: the outage cuts the proxy; moto keeps its objects.
struct Cut {
    moto: Moto,
    proxy: Proxy,
}

impl Destination for Cut {
    async fn stop(&mut self) {
        self.proxy.cut();
    }
    async fn start(&mut self) {
        self.proxy.open().await;
    }
    async fn received(&mut self) -> HashSet<String> {
        objects(&self.moto, "archive")
            .await
            .iter()
            .flat_map(|(_, alerts)| alerts.iter())
            .filter_map(|a| a["uuid"].as_str().map(str::to_string))
            .collect()
    }
}

#[tokio::test]
async fn an_outage_and_a_restart_lose_nothing() {
    let Some(bin) = moto_bin() else { return };
    let moto = Moto::start(bin).await;
    assert_eq!(call(&moto, reqwest::Method::PUT, "archive").await.0, 200);
    let proxy = Proxy::start(moto.port).await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{}    timeout_ms: 1000\n",
        sink_at(
            dir.path(),
            &format!("http://127.0.0.1:{}", proxy.port),
            "archive"
        )
    );
    let mut d = Cut { moto, proxy };
    outage_then_restart(dir.path(), &yaml, "s3", &mut d).await;
}
