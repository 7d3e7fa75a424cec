//! Any bytes as a webhook payload (EventList, Event, arrays of them): decoding returns events
//! and rejections or an error, never panics, and accounts for every item it saw; `validate`
//! (what ingest checks before it answers) takes exactly what `decode` takes.
#![no_main]

use kaudit_engine::audit::{Rejection, decode, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limit = data.len() / 2;
    for max in [usize::MAX, limit] {
        let decoded = decode(data, max);
        let validated = validate(data, max);
        match (&decoded, &validated) {
            (Ok(d), Ok(v)) => {
                assert_eq!(v.accepted, d.events.len());
                assert_eq!(v.rejected, d.rejected);
            }
            (Err(d), Err(v)) => assert_eq!(d, v),
            _ => panic!("decode {decoded:?} but validate {validated:?}"),
        }
    }
    let Ok(all) = decode(data, usize::MAX) else {
        return;
    };
    // Without a size limit nothing is too large, and rejections are in item order.
    assert!(all.rejected.iter().all(|(_, r)| *r != Rejection::TooLarge));
    assert!(all.rejected.windows(2).all(|w| w[0].0 < w[1].0));
    for ev in &all.events {
        let _ = ev.audit_id();
    }
    // With a small limit the same items are seen: as many events plus rejections.
    if let Ok(small) = decode(data, limit) {
        assert_eq!(
            small.events.len() + small.rejected.len(),
            all.events.len() + all.rejected.len()
        );
    }
});
