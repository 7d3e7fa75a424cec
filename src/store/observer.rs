//! The store as a [`DeliveryObserver`]: each lane's outcomes become the alerts' per-sink
//! delivery rows, and each sink's latest success and error are kept in memory for the
//! console's sinks page. Lanes that carry no alerts (the Falco forwarder) and the console's own
//! sink (its alerts are the store) write no rows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AlertStore, DeliveryState, OutcomeBatch};
use crate::delivery::{DeliveryObserver, Outcome, SinkLabels};

/// The sink type whose lane writes the store itself.
pub const CONSOLE_SINK_TYPE: &str = "console";

/// A sink's latest activity, as this process saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SinkActivity {
    /// When the destination last confirmed a batch.
    pub last_success: Option<DateTime<Utc>>,
    /// The last failed attempt's error.
    pub last_error: Option<String>,
    /// When it failed.
    pub last_error_at: Option<DateTime<Utc>>,
    /// The last dead letter's reason.
    pub last_dead_letter: Option<String>,
    /// When it was written.
    pub last_dead_letter_at: Option<DateTime<Utc>>,
}

/// Every sink's [`SinkActivity`], by sink name.
#[derive(Clone, Default)]
pub struct Activity(Arc<Mutex<HashMap<String, SinkActivity>>>);

impl Activity {
    /// The activity of sink `name` (default when it has had none).
    pub fn get(&self, name: &str) -> SinkActivity {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    fn note(&self, sink: &str, outcome: Outcome<'_>) {
        let now = Utc::now();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let a = map.entry(sink.to_string()).or_default();
        match outcome {
            Outcome::Spooled => {}
            Outcome::Delivered => a.last_success = Some(now),
            Outcome::Failed { error } => {
                a.last_error = Some(error.to_string());
                a.last_error_at = Some(now);
            }
            Outcome::DeadLettered { reason } => {
                a.last_dead_letter = Some(reason.to_string());
                a.last_dead_letter_at = Some(now);
            }
        }
    }
}

/// Feeds delivery outcomes into a store and into [`Activity`].
pub struct StoreObserver {
    /// Where delivery rows go.
    pub store: Arc<dyn AlertStore>,
    /// Where each sink's latest activity is kept.
    pub activity: Activity,
}

#[derive(Deserialize)]
struct JustUuid {
    uuid: uuid::Uuid,
}

impl DeliveryObserver for StoreObserver {
    fn observe(&self, lane: &SinkLabels, payloads: &[&[u8]], outcome: Outcome<'_>) {
        if lane.sink_type == "forwarder" {
            return;
        }
        self.activity.note(&lane.sink, outcome);
        if lane.sink_type == CONSOLE_SINK_TYPE {
            return;
        }
        let (state, reason) = match outcome {
            Outcome::Spooled => (DeliveryState::Spooled, None),
            Outcome::Delivered => (DeliveryState::Delivered, None),
            Outcome::Failed { .. } => return,
            Outcome::DeadLettered { reason } => {
                (DeliveryState::DeadLettered, Some(reason.to_string()))
            }
        };
        let uuids: Vec<uuid::Uuid> = payloads
            .iter()
            .filter_map(|p| serde_json::from_slice::<JustUuid>(p).ok())
            .map(|j| j.uuid)
            .collect();
        if uuids.is_empty() {
            return;
        }
        self.store.record(OutcomeBatch {
            uuids,
            sink: lane.sink.clone(),
            sink_type: lane.sink_type.clone(),
            state,
            reason,
            at: Utc::now(),
        });
    }
}
