//! Lazy extraction never sees less than a full parse (issue 15): every field of the catalog,
//! with every argument shape, is extracted from the lazily built event and from the fully
//! parsed one, over a large generated corpus (the repository's examples and Falco's trace
//! files, mutated: empty objects and arrays on the way to a path, nulls, escapes in keys and
//! values, deep nesting, duplicate keys, numbers of every form), and the values must agree.
//! The same holds for whole rulesets: `evaluate_raw` raises exactly the alerts of `evaluate`.

use std::path::Path;

use kaudit::audit::AuditEvent;
use kaudit::lazy::{self, PathSet};
use kaudit::rules::fields::{self, ArgKind, Field};
use kaudit::rules::{LoadOptions, RuleMatching, Ruleset};
use serde_json::{Value, json};

use super::rules::falco_dir;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The events of the repository's examples and of Falco's trace files, as JSON values.
fn base_events() -> Vec<Value> {
    let mut out = Vec::new();
    let mut add_file = |p: &Path| {
        let Ok(text) = std::fs::read_to_string(p) else {
            return;
        };
        let docs: Vec<Value> = match serde_json::from_str::<Value>(&text) {
            Ok(v) => vec![v],
            Err(_) => text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
        };
        for d in docs {
            match d.get("items").and_then(Value::as_array) {
                Some(items) => out.extend(items.iter().cloned()),
                None => out.push(d),
            }
        }
    };
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/audit");
    for dir in [
        examples,
        falco_dir().join("k8s_audit_tests/trace_files/k8s_audit"),
    ] {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for f in files {
            add_file(&f);
        }
    }
    out.retain(|e| e.get("stageTimestamp").is_some_and(Value::is_string));
    assert!(out.len() > 30, "only {} base events", out.len());
    out
}

/// Places the rules read, where mutations go.
const PLACES: &[&str] = &[
    "/verb",
    "/user",
    "/user/username",
    "/user/groups",
    "/impersonatedUser",
    "/objectRef",
    "/objectRef/resource",
    "/objectRef/subresource",
    "/objectRef/namespace",
    "/requestURI",
    "/annotations",
    "/sourceIPs",
    "/auditID",
    "/stage",
    "/responseStatus",
    "/responseStatus/code",
    "/responseObject",
    "/responseObject/metadata",
    "/requestObject",
    "/requestObject/data",
    "/requestObject/roleRef",
    "/requestObject/subjects",
    "/requestObject/subjects/0",
    "/requestObject/subjects/0/kind",
    "/requestObject/rules",
    "/requestObject/rules/0",
    "/requestObject/rules/0/verbs",
    "/requestObject/spec",
    "/requestObject/spec/type",
    "/requestObject/spec/ports",
    "/requestObject/spec/hostNetwork",
    "/requestObject/spec/securityContext",
    "/requestObject/spec/securityContext/runAsUser",
    "/requestObject/spec/securityContext/supplementalGroups",
    "/requestObject/spec/containers",
    "/requestObject/spec/containers/0",
    "/requestObject/spec/containers/0/image",
    "/requestObject/spec/containers/0/command",
    "/requestObject/spec/containers/0/securityContext",
    "/requestObject/spec/containers/0/securityContext/privileged",
    "/requestObject/spec/containers/0/ports",
    "/requestObject/spec/initContainers",
    "/requestObject/spec/ephemeralContainers",
    "/requestObject/spec/volumes",
    "/requestObject/spec/volumes/0",
    "/requestObject/spec/volumes/0/hostPath",
    "/requestObject/spec/volumes/0/hostPath/path",
    "/unread",
];

/// A number literal (placed textually, so every form of the grammar appears).
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "1.0",
    "0.5",
    "1e5",
    "1E-5",
    "-1.5e+10",
    "2.5E+3",
    "12345678901234567890",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1e308",
    "123456789012345678901234567890",
    "0.000000000000000000000000001",
];

fn deep(n: usize, leaf: Value) -> Value {
    (0..n).fold(leaf, |v, i| {
        if i % 2 == 0 {
            json!({ "d": v })
        } else {
            json!([v])
        }
    })
}

/// A replacement value; `"\u{0}NUM"` is replaced by a number literal in the text.
fn nasty(rng: &mut Rng) -> Value {
    match rng.below(14) {
        0 => json!({}),
        1 => json!([]),
        2 => Value::Null,
        3 => json!(""),
        4 => json!("\u{0}NUM"),
        5 => json!(true),
        6 => json!("esc \" \\ / \n \t \u{1} é 漢 \u{1F600}"),
        7 => json!([null, {}, [], "a", "\u{0}NUM"]),
        8 => json!({"x": null, "name": "n", "kind": "User", "image": "i:1"}),
        9 => deep(40, json!("bottom")),
        10 => json!([{"hostPath": {"path": "/var/run/docker.sock"}}, {}, null]),
        11 => json!([{"securityContext": {}}, {"securityContext": null, "image": ""}]),
        12 => json!({"a/b": {"~c": 1}, "": 2}),
        _ => json!(["get", "create"]),
    }
}

/// Sets the value at a pointer, making objects on the way (an array index past the end
/// appends, a scalar on the way is replaced).
fn set(root: &mut Value, pointer: &str, v: Value) {
    let segs: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    let mut cur = root;
    for (k, seg) in segs.iter().enumerate() {
        let last = k + 1 == segs.len();
        if !cur.is_object() && !cur.is_array() {
            *cur = json!({});
        }
        cur = match cur {
            Value::Array(a) => {
                let i = seg.parse::<usize>().unwrap_or(usize::MAX).min(a.len());
                if i == a.len() {
                    a.push(json!({}));
                }
                &mut a[i]
            }
            Value::Object(o) => o.entry(seg.to_string()).or_insert(json!({})),
            _ => return,
        };
        if last {
            *cur = v;
            return;
        }
    }
}

/// Textual mutations a `Value` cannot express: escaped keys, duplicate keys, spacing.
fn textual(rng: &mut Rng, mut text: String) -> String {
    const KEYS: &[(&str, &str)] = &[
        ("\"verb\":", "\"v\\u0065rb\":"),
        ("\"objectRef\":", "\"\\u006fbjectRef\":"),
        ("\"resource\":", "\"resourc\\u0065\":"),
        ("\"requestObject\":", "\"requestObj\\u0065ct\":"),
        ("\"image\":", "\"im\\u0061ge\":"),
        ("\"stageTimestamp\":", "\"stageTim\\u0065stamp\":"),
    ];
    for _ in 0..rng.below(3) {
        match rng.below(6) {
            0 => {
                let (a, b) = rng.pick(KEYS);
                text = text.replacen(a, b, 1);
            }
            1 => {
                // A duplicate before the original (the original wins) ...
                let dup = rng.pick(&[
                    r#""verb":"dup","#,
                    r#""objectRef":{"resource":"dup"},"#,
                    r#""requestObject":{"spec":{"containers":[{"image":"dup"}]}},"#,
                    r#""user":[],"#,
                ]);
                text = text.replacen('{', &format!("{{{dup}"), 1);
            }
            2 => {
                // ... or after it (the duplicate wins).
                let dup = rng.pick(&[
                    r#","verb":"dup""#,
                    r#","objectRef":{}"#,
                    r#","requestObject":null"#,
                    r#","sourceIPs":["1.2.3.4"]"#,
                    r#","annotations":{"authorization.k8s.io/decision":"forbid"}"#,
                ]);
                if let Some(end) = text.rfind('}') {
                    text.insert_str(end, dup);
                }
            }
            3 => text = text.replace(',', " ,\n\t"),
            4 => text = text.replace('/', "\\/"),
            _ => {
                let unread = format!(r#"{{"deepunread":{},"#, "[".repeat(150) + &"]".repeat(150));
                text = text.replacen('{', &unread, 1);
            }
        }
    }
    text
}

/// The generated corpus: every base event as is, then mutants.
fn corpus(n: usize) -> Vec<String> {
    let base = base_events();
    let mut rng = Rng(0x5eed_1a21_9e37_79b9);
    let mut out: Vec<String> = base.iter().map(Value::to_string).collect();
    while out.len() < n {
        let mut ev = rng.pick(&base).clone();
        for _ in 0..1 + rng.below(4) {
            let place = *rng.pick(PLACES);
            let v = nasty(&mut rng);
            set(&mut ev, place, v);
        }
        let mut text = ev.to_string();
        while let Some(at) = text.find("\"\\u0000NUM\"") {
            let num = *rng.pick(NUMBERS);
            text.replace_range(at..at + "\"\\u0000NUM\"".len(), num);
        }
        out.push(textual(&mut rng, text));
    }
    out
}

/// Every field of the catalog with every argument shape worth trying.
fn all_fields() -> Vec<(String, Field)> {
    let mut out = Vec::new();
    for d in fields::catalog() {
        let args: Vec<Option<&str>> = match (d.arg, d.name.as_str()) {
            (ArgKind::None, _) => vec![None],
            (ArgKind::Index, _) => vec![None, Some("0"), Some("1"), Some("3")],
            (ArgKind::Key, "jevt.value" | "json.value") => [
                "/verb",
                "verb",
                "/objectRef/resource",
                "/user/groups/0",
                "/user/groups/x",
                "/requestObject/spec/containers/0/image",
                "/requestObject/spec",
                "/annotations/authorization.k8s.io~1decision",
                "/a~1b/~0c",
                "/a~1b",
                "",
                "/",
                "//",
                "/requestObject",
                "/sourceIPs",
                "/sourceIPs/0",
                "/responseStatus/code",
                "/unread/d/0/d",
            ]
            .into_iter()
            .map(Some)
            .collect(),
            (ArgKind::Key, "ka.req.volume.hostpath") => {
                vec![Some("/var/run/docker.sock"), Some("/etc*"), Some("*")]
            }
            (ArgKind::Key, _) => vec![Some("command"), Some("watch"), Some("x y")],
        };
        for a in args {
            match fields::lookup(&d.name, a) {
                Ok(f) => out.push((format!("{}[{}]", d.name, a.unwrap_or("")), f)),
                Err(e) => panic!("{}: {e}", d.name),
            }
        }
    }
    out
}

fn paths_of(fs: &[&Field]) -> PathSet {
    let mut set = PathSet::new();
    for f in fs {
        f.add_reads(&mut set);
    }
    set
}

#[test]
fn every_field_agrees_with_a_full_parse_over_a_generated_corpus() {
    let texts = corpus(2000);
    let fields = all_fields();
    let single: Vec<PathSet> = fields.iter().map(|(_, f)| paths_of(&[f])).collect();
    // Every field reading less than the whole event (jevt.obj and pointers to the root read
    // it all), together: what a ruleset's scan builds.
    let mut every = PathSet::new();
    for s in single.iter().filter(|s| !s.is_whole()) {
        every.merge(s);
    }
    assert!(!every.is_whole());
    let whole = single.iter().filter(|s| s.is_whole()).count();
    assert!(whole <= 8, "{whole} fields read the whole event");
    let (mut checked, mut full_refused, mut values, mut scanned) = (0usize, 0usize, 0usize, 0usize);
    for (n, text) in texts.iter().enumerate() {
        let full = match serde_json::from_str::<Value>(text)
            .ok()
            .map(AuditEvent::from_json)
        {
            Some(Ok(ev)) => ev,
            Some(Err(r)) => {
                // Not an event: lazy extraction must say the same.
                assert_eq!(
                    lazy::extract(text, &every).err(),
                    Some(r),
                    "event {n}: {text}"
                );
                continue;
            }
            None => {
                full_refused += 1;
                continue;
            }
        };
        // As evaluation reads it (strings borrowed from the text where the scanner took it),
        // and as it converts to an `AuditEvent` (what alerts and the CLI's slow path read).
        let together = lazy::scan_event(text, &every)
            .unwrap_or_else(|r| panic!("event {n} refused lazily ({r:?}): {text}"));
        if matches!(together, lazy::Extracted::Scanned { .. }) {
            scanned += 1;
        }
        let converted = together.to_event();
        assert_eq!(together.view().time, full.time);
        for ((name, f), alone) in fields.iter().zip(&single) {
            let want = fields::extract(f, full.view());
            if !alone.is_whole() {
                let got = fields::extract(f, together.view());
                assert_eq!(got, want, "{name}, all fields' paths, event {n}: {text}");
                let got = fields::extract(f, converted.view());
                assert_eq!(got, want, "{name}, converted, event {n}: {text}");
            }
            let part = lazy::scan_event(text, alone)
                .unwrap_or_else(|r| panic!("event {n} refused lazily ({r:?}): {text}"));
            let got = fields::extract(f, part.view());
            assert_eq!(got, want, "{name}, its own paths, event {n}: {text}");
            values += want.as_slice().len();
            checked += 1;
        }
    }
    println!(
        "lazy vs full: {} events ({scanned} read by the one-pass scanner), {checked} field extractions agree ({values} values); {full_refused} events a full parse refuses were skipped",
        texts.len()
    );
    assert!(
        scanned * 2 > texts.len(),
        "the scanner read too few events: {scanned}"
    );
    assert!(
        values > 10_000,
        "the corpus exercises too few values: {values}"
    );
}

#[test]
fn unread_parts_past_the_parsers_limits_do_not_hide_an_event() {
    // 150 nested arrays in a member no rule reads: a full parse stops at its recursion
    // limit; lazy extraction only skips it, as ingest's validation did.
    let text = format!(
        r#"{{"kind":"Event","deep":{}{},"auditID":"a","verb":"get","stageTimestamp":"2026-01-01T00:00:00Z"}}"#,
        "[".repeat(150),
        "]".repeat(150)
    );
    assert!(serde_json::from_str::<Value>(&text).is_err());
    let f = fields::lookup("ka.verb", None).expect("ka.verb");
    let ev = lazy::scan_event(&text, &paths_of(&[&f])).expect("the event is read");
    assert_eq!(fields::extract(&f, ev.view()).to_strings(), vec!["get"]);
}

#[test]
fn event_lists_read_in_one_pass_give_every_item_as_the_walk_does() {
    // What `kaudit serve` detects on: EventLists of the corpus (and items that are no event),
    // read once each by the one-pass reader, against the walk that places every item then
    // extracts it alone.
    let texts = corpus(1200);
    let fields = all_fields();
    let mut every = PathSet::new();
    for (_, f) in &fields {
        let p = paths_of(&[f]);
        if !p.is_whole() {
            every.merge(&p);
        }
    }
    let mut items = 0usize;
    for (n, chunk) in texts.chunks(40).enumerate() {
        let mut parts: Vec<&str> = chunk.iter().map(String::as_str).collect();
        parts.insert(n % parts.len(), r#"{"kind":"Event","verb":"no time"}"#);
        parts.insert(n % 7, "[1,2]");
        let body = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
            parts.join(",")
        );
        for max in [usize::MAX, 1500] {
            let mut once = Vec::new();
            let read = lazy::for_each_event(body.as_bytes(), max, &every, |i, r| {
                once.push((i, r.map(|(raw, ev)| (raw.index, raw.text, ev.into_event()))))
            });
            let mut walked = Vec::new();
            let walk = lazy::for_each_raw(body.as_bytes(), max, |r| match r {
                Ok(raw) => walked.push((
                    raw.index,
                    raw.extract(&every).map(|ev| (raw.index, raw.text, ev)),
                )),
                Err((i, r)) => walked.push((i, Err(r))),
            });
            assert_eq!(read, walk, "list {n}");
            assert_eq!(once.len(), walked.len(), "list {n}");
            for (a, b) in once.iter().zip(&walked) {
                assert_eq!(a, b, "list {n}");
            }
            items += once.len();
        }
    }
    assert!(items > 2000, "too few items: {items}");
}

fn falco_rulesets() -> Vec<Ruleset> {
    let r = falco_dir().join("rules");
    let mut out = Vec::new();
    for m in [RuleMatching::First, RuleMatching::All] {
        let opts = LoadOptions {
            rule_matching: m,
            ..LoadOptions::default()
        };
        out.push(Ruleset::load_default(&opts).expect("default rules").0);
        for name in ["k8s_audit_rules.yaml", "k8s_audit_rules-0.6.0.yaml"] {
            let files = [r.join("falco_rules-1.0.1.yaml"), r.join(name)];
            out.push(
                Ruleset::load_files(&files, &opts)
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .0,
            );
        }
    }
    out
}

#[test]
fn rulesets_raise_the_same_alerts_lazily() {
    let texts = corpus(1500);
    let sets = falco_rulesets();
    let mut alerts_seen = 0usize;
    for rs in &sets {
        assert!(!rs.paths().is_whole());
        for text in &texts {
            let Ok(Ok(full)) = serde_json::from_str::<Value>(text).map(AuditEvent::from_json)
            else {
                continue;
            };
            let mut want = Vec::new();
            rs.evaluate(&full, &mut want);
            // The way detection and `rules test` read events (the one-pass path for a lone
            // Event), and one item of a payload.
            let mut got = Vec::new();
            let walked = lazy::for_each_event(text.as_bytes(), usize::MAX, rs.paths(), |_, r| {
                let (raw, ev) = r.expect("lazily read");
                rs.evaluate_extracted(&ev, &raw, &mut got);
            });
            if let Err(e) = walked {
                // Not a payload (a mutation broke its apiVersion): decoding says the same.
                let full = kaudit::audit::decode(text.as_bytes(), usize::MAX).map(|_| ());
                assert_eq!(full, Err(e), "{text}");
                continue;
            }
            let raw = lazy::RawEvent { index: 0, text };
            let mut one = Vec::new();
            rs.evaluate_raw(&raw, &mut one).expect("lazily read");
            let strip = |a: &[kaudit::alert::Alert]| {
                a.iter()
                    .map(|a| (a.rule.clone(), a.output.clone(), a.output_fields.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(strip(&got), strip(&want), "{text}");
            assert_eq!(strip(&one), strip(&want), "{text}");
            alerts_seen += want.len();
        }
    }
    println!(
        "lazy vs full: {alerts_seen} alerts identical over {} rulesets",
        sets.len()
    );
    assert!(
        alerts_seen > 100,
        "too few alerts to mean anything: {alerts_seen}"
    );
}
