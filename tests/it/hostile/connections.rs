//! Connections that never send a request: on main, 1000 of 1000 idle connections and every
//! half HTTP/2 preface were still open after 35 s with a 2 s read timeout.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Kaudit, eventually, metric};

/// Reads until the server closes the connection (EOF or reset).
async fn closed(mut s: TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_half_preface_connections_are_closed_and_service_goes_on() {
    let k = Kaudit::start(
        "ingest:\n  read_timeout_secs: 1\nconnections:\n  max: 150\n  idle_timeout_secs: 2\n",
    )
    .await;
    let addr = k.base.trim_start_matches("http://").to_string();
    let mut conns = Vec::new();
    // More silent connections than the cap, and half HTTP/2 prefaces.
    for i in 0..180 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        if i % 6 == 0 {
            s.write_all(b"PRI * HTTP/2.0\r\n")
                .await
                .expect("half preface");
        }
        conns.push(s);
    }
    // A real client still gets served once the cap's slots are freed by the timeouts.
    assert_eq!(k.post(br#"{"kind":"EventList","items":[]}"#).await, 200);
    let all = futures_util::future::join_all(conns.into_iter().map(closed));
    tokio::time::timeout(crate::support::PATIENCE, all)
        .await
        .expect("silent connections were never closed");
    let m = eventually("the closures counted", || async {
        let m = k.metrics().await;
        let n = metric(
            &m,
            "kaudit_http_connections_closed_total{reason=\"no_request\"}",
        );
        (n >= 180.0).then_some(m)
    })
    .await;
    // An idle keep-alive connection (one request, then nothing) is closed too.
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    tokio::time::timeout(crate::support::PATIENCE, closed(s))
        .await
        .expect("an idle keep-alive connection was never closed");
    let _ = m;
    // An idle HTTP/2 connection (nothing times those out in hyper but keep-alive pings, which
    // a client answers).
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2 client");
    let r = h2
        .get(format!("{}/healthz", k.base))
        .send()
        .await
        .expect("h2 request");
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    eventually("the idle HTTP/2 connection closed and counted", || async {
        let m = k.metrics().await;
        (metric(&m, "kaudit_http_connections_closed_total{reason=\"idle\"}") >= 1.0).then_some(())
    })
    .await;
    drop(h2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_the_token() {
    let k = Kaudit::start("auth:\n  tokens: [t0ken]\n  protect_metrics: true\n").await;
    let c = reqwest::Client::new();
    let url = format!("{}/metrics", k.base);
    let r = c.get(&url).send().await.expect("metrics");
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .get(&url)
        .bearer_auth("t0ken")
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status().as_u16(), 200);
    // Probes stay open.
    let r = c
        .get(format!("{}/healthz", k.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status().as_u16(), 200);
}
