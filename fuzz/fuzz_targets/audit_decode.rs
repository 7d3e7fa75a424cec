//! Any bytes as a webhook payload (EventList, Event, arrays of them): decoding returns events
//! and rejections or an error, never panics, and accounts for every item it saw.
#![no_main]

use kaudit_engine::audit::{Rejection, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
    let limit = data.len() / 2;
    if let Ok(small) = decode(data, limit) {
        assert_eq!(
            small.events.len() + small.rejected.len(),
            all.events.len() + all.rejected.len()
        );
    }
});
