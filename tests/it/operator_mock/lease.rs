//! Leader election on the Lease: take it, wait for a live holder, take over an expired one, lose
//! a race, give it up.

use super::*;

/// Leader election: create when absent, wait while another holder is live, take over an
/// expired lease with the read resourceVersion, and treat a lost race (409) as not leading.
#[tokio::test]
async fn lease_election() {
    let (svc, mut h) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let lock = LeaseLock::new(
        client,
        "kaudit-system",
        "kaudit-operator",
        "me",
        Duration::from_secs(15),
    );
    const P: &str = "/apis/coordination.k8s.io/v1/namespaces/kaudit-system/leases";
    let lease = |holder: &str, renew: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kaudit-operator", "namespace": "kaudit-system", "resourceVersion": "42"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renew, "leaseTransitions": 3}})
    };
    let fresh = k8s_openapi::jiff::Timestamp::now().to_string();
    let script = tokio::spawn(async move {
        let mut calls = Vec::new();
        expect(&mut h, "GET", &format!("{P}/kaudit-operator"), 404, |_| {
            not_found()
        })
        .await;
        calls.push(expect(&mut h, "POST", P, 201, echo).await);
        let l = lease("other", &fresh);
        expect(
            &mut h,
            "GET",
            &format!("{P}/kaudit-operator"),
            200,
            move |_| l,
        )
        .await;
        let l = lease("other", "2020-01-01T00:00:00.000000Z");
        expect(
            &mut h,
            "GET",
            &format!("{P}/kaudit-operator"),
            200,
            move |_| l,
        )
        .await;
        calls.push(expect(&mut h, "PUT", &format!("{P}/kaudit-operator"), 409,
            |_| json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Conflict", "code": 409})).await);
        calls
    });
    assert!(
        lock.try_acquire_or_renew().await.unwrap(),
        "absent lease: acquired"
    );
    assert!(
        !lock.try_acquire_or_renew().await.unwrap(),
        "live foreign lease: wait"
    );
    assert!(
        !lock.try_acquire_or_renew().await.unwrap(),
        "lost race: not leading"
    );
    let calls = script.await.unwrap();
    assert_eq!(calls[0].body["spec"]["holderIdentity"], "me");
    let put = &calls[1].body;
    assert_eq!(put["metadata"]["resourceVersion"], "42");
    assert_eq!(put["spec"]["holderIdentity"], "me");
    assert_eq!(put["spec"]["leaseTransitions"], 4);
}

/// On shutdown the holder gives the lease up (holder cleared, with the read resourceVersion);
/// a lease held by someone else is left alone.
#[tokio::test]
async fn lease_release() {
    let (svc, mut h) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let lock = LeaseLock::new(
        client,
        "kaudit-system",
        "kaudit-operator",
        "me",
        Duration::from_secs(15),
    );
    const P: &str = "/apis/coordination.k8s.io/v1/namespaces/kaudit-system/leases/kaudit-operator";
    let lease = |holder: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kaudit-operator", "namespace": "kaudit-system", "resourceVersion": "9"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": "2026-01-01T00:00:00.000000Z"}})
    };
    let script = tokio::spawn(async move {
        let l = lease("me");
        expect(&mut h, "GET", P, 200, move |_| l).await;
        let put = expect(&mut h, "PUT", P, 200, echo).await;
        let l = lease("other");
        expect(&mut h, "GET", P, 200, move |_| l).await;
        put
    });
    assert!(lock.release().await.unwrap());
    assert!(!lock.release().await.unwrap());
    let put = script.await.unwrap();
    assert!(put.body["spec"]["holderIdentity"].is_null(), "{}", put.body);
    assert_eq!(put.body["metadata"]["resourceVersion"], "9");
}
