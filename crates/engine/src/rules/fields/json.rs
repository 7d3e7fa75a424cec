//! The json plugin's fields (`jevt.*`, and `json.*` under its other name) and the generic
//! `evt.*` fields: one row each. None of them needs an `auditID`.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::values::json_pointer;
use super::{ArgKind as A, Field, Reads, Row, Values};
use crate::audit::EventRef;

/// The rows, in documentation order.
pub(super) const FIELDS: &[Row] = &[
    Row::scalar(
        "jevt.value",
        A::Key,
        "the value at a JSON pointer, e.g. jevt.value[/verb]",
        value,
    )
    .reads(Reads::KeyPointer),
    Row::scalar("jevt.obj", A::None, "the whole event as indented JSON", obj),
    Row::scalar(
        "jevt.rawtime",
        A::None,
        "event time in nanoseconds since the epoch",
        rawtime,
    )
    .reads(Reads::Nothing),
    Row::alias("json.value", "jevt.value"),
    Row::alias("json.obj", "jevt.obj"),
    Row::alias("json.rawtime", "jevt.rawtime"),
    Row::scalar(
        "evt.time",
        A::None,
        "event time as HH:MM:SS.nnnnnnnnn (UTC)",
        time,
    )
    .reads(Reads::Nothing),
    Row::scalar(
        "evt.time.iso8601",
        A::None,
        "event time as ISO 8601 (UTC)",
        time_iso,
    )
    .reads(Reads::Nothing),
    Row::scalar(
        "evt.datetime",
        A::None,
        "event time as YYYY-MM-DD HH:MM:SS (UTC)",
        datetime,
    )
    .reads(Reads::Nothing),
    Row::alias("evt.rawtime", "jevt.rawtime"),
    Row::scalar("evt.source", A::None, "the event source, k8s_audit", source).reads(Reads::Nothing),
];

/// `HH:MM:SS.nnnnnnnnn` in UTC, Falco's `%evt.time`.
pub fn evt_time(t: &DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.9f").to_string()
}

/// Nanoseconds since the epoch (0 when out of range).
pub fn raw_time(t: &DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(0)
}

fn owned<'e>(s: String) -> Option<Values<'e>> {
    Some(Values::One(Cow::Owned(s)))
}

fn value<'e>(f: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    let key = f.key.as_deref()?;
    Some(Values::One(json_pointer(ev.json, key)?.stringify()))
}

fn obj<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    owned(serde_json::to_string_pretty(ev.json.to_value().as_ref()).ok()?)
}

fn rawtime<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    owned(raw_time(&ev.time).to_string())
}

fn time<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    owned(evt_time(&ev.time))
}

fn time_iso<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    owned(ev.time.format("%Y-%m-%dT%H:%M:%S%.9f+0000").to_string())
}

fn datetime<'e>(_: &Field, ev: EventRef<'e>) -> Option<Values<'e>> {
    owned(ev.time.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn source<'e>(_: &Field, _: EventRef<'e>) -> Option<Values<'e>> {
    Some(Values::One(Cow::Borrowed("k8s_audit")))
}
