//! Chat and on-call sinks against loopback servers that check each API's documented schema
//! and answer its documented errors; Alertmanager against the real server.

mod alertmanager;
pub mod api;
pub mod cards;
pub mod oncall;
mod shaping;
pub mod slack;
mod test_alert;

/// Every fake refuses what its API refuses, with the API's answer: a malformed body gets the
/// bad-payload error and is recorded as a violation (so the other tests' checks can fail).
#[tokio::test]
async fn fakes_refuse_what_their_apis_refuse() {
    let apis: [&'static api::Api; 8] = [
        &slack::SLACK,
        &slack::MATTERMOST,
        &slack::ROCKETCHAT,
        &cards::TEAMS,
        &cards::GOOGLECHAT,
        &cards::DISCORD,
        &oncall::PAGERDUTY,
        &oncall::OPSGENIE,
    ];
    crate::support::install_crypto_provider();
    let c = reqwest::Client::new();
    for a in apis {
        let fake = api::Fake::start(a, vec![]).await;
        let resp = c
            .post(fake.base() + "/x")
            .header("content-type", "application/json")
            .body(r#"{"text": 1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), (a.bad)("x").status(), "{}", a.sink_type);
        let refused =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fake.assert_valid()));
        assert!(
            refused.is_err(),
            "{}: the violation was recorded",
            a.sink_type
        );
    }
}
