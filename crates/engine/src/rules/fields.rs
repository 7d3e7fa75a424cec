//! The `ka.*`, `jevt.*`/`json.*` and `evt.*` fields of an audit event: the catalog (names,
//! list-ness, arguments) and extraction from the event's JSON.
//!
//! Every value is a string. A field yields no value ("not available"), one value, or, for list
//! fields, several. An empty result means "not available" to the operators.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::audit::AuditEvent;

/// What argument a field takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// No argument.
    None,
    /// An optional numeric index, e.g. `[0]`.
    Index,
    /// A required key, e.g. `[command]`.
    Key,
}

/// Which container list of a pod spec a container field reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    /// `spec.containers`.
    Containers,
    /// `spec.initContainers`.
    Init,
    /// `spec.ephemeralContainers`.
    Ephemeral,
}

impl Group {
    fn key(self) -> &'static str {
        match self {
            Group::Containers => "containers",
            Group::Init => "initContainers",
            Group::Ephemeral => "ephemeralContainers",
        }
    }
}

/// A per-container property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prop {
    /// `name`.
    Name,
    /// `image`.
    Image,
    /// Image without tag or digest.
    Repository,
    /// `command`, joined with spaces.
    Command,
    /// `args`, joined with spaces.
    Args,
    /// `securityContext.privileged`.
    Privileged,
    /// `securityContext.allowPrivilegeEscalation`.
    AllowPrivilegeEscalation,
    /// `securityContext.readOnlyRootFilesystem`.
    ReadOnlyFs,
    /// `securityContext.runAsUser`.
    RunAsUser,
    /// Effective run-as user (container, else pod, else 0).
    EffRunAsUser,
    /// `securityContext.runAsGroup`.
    RunAsGroup,
    /// Effective run-as group.
    EffRunAsGroup,
    /// `securityContext.procMount`.
    ProcMount,
    /// `securityContext.capabilities.add` (one JSON text per container).
    AddCapabilities,
    /// `ports[*].hostPort`, else `containerPort`.
    HostPort,
}

const PROPS: &[(&str, Prop)] = &[
    ("name", Prop::Name),
    ("image", Prop::Image),
    ("image.repository", Prop::Repository),
    ("command", Prop::Command),
    ("args", Prop::Args),
    ("privileged", Prop::Privileged),
    ("allow_privilege_escalation", Prop::AllowPrivilegeEscalation),
    ("read_only_fs", Prop::ReadOnlyFs),
    ("run_as_user", Prop::RunAsUser),
    ("eff_run_as_user", Prop::EffRunAsUser),
    ("run_as_group", Prop::RunAsGroup),
    ("eff_run_as_group", Prop::EffRunAsGroup),
    ("proc_mount", Prop::ProcMount),
    ("add_capabilities", Prop::AddCapabilities),
    ("host_port", Prop::HostPort),
];

/// How a field is extracted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A scalar at a path of object keys (already unescaped).
    Ptr(&'static [&'static str]),
    /// `ka.user.groups`.
    UserGroups,
    /// `ka.uri.param[key]`.
    UriParam,
    /// `ka.target.pod.name`.
    TargetPodName,
    /// `ka.req.binding.subjects`.
    Subjects,
    /// Subject names of one kind (`User`, `ServiceAccount`, `Group`).
    SubjectNames(&'static str),
    /// `namespace:name` of ServiceAccount subjects.
    SubjectSaNsNames,
    /// `ka.req.binding.subject.has_name[key]`: always `true`.
    SubjectHasName,
    /// A per-container property list.
    Ctr(Group, Prop),
    /// A property of the first container (deprecated scalar fields).
    FirstCtr(Prop),
    /// `ka.req.container.privileged`: any container privileged.
    AnyPrivileged,
    /// `ka.req.role.rules`.
    RoleRules,
    /// A flattened array property of every role rule.
    RoleRuleProp(&'static str),
    /// `ka.req.pod.supplemental_groups`.
    SupplementalGroups,
    /// `ka.req.service.ports`: the whole ports array as one JSON text.
    ServicePorts,
    /// `ka.req.pod.volumes.hostpath`.
    VolumeHostPaths,
    /// `ka.req.volume.hostpath[key]`.
    VolumeHostPathMatch,
    /// `ka.req.pod.volumes.flexvolume_driver`.
    FlexVolumeDrivers,
    /// `ka.req.pod.volumes.volume_type`.
    VolumeTypes,
    /// `ka.sourceips` (reads the top-level `sourceIPs`).
    SourceIps,
    /// `jevt.value[/pointer]`.
    JsonValue,
    /// `jevt.obj`.
    JsonObj,
    /// `jevt.rawtime`, `evt.rawtime`.
    RawTime,
    /// `evt.time`: `HH:MM:SS.nnnnnnnnn` (UTC).
    EvtTime,
    /// `evt.time.iso8601`.
    EvtTimeIso,
    /// `evt.datetime`: `YYYY-MM-DD HH:MM:SS` (UTC).
    EvtDatetime,
    /// `evt.source`: `k8s_audit`.
    EvtSource,
}

/// One catalog entry.
#[derive(Clone, Debug)]
pub struct FieldDef {
    /// Field name.
    pub name: String,
    /// How it is extracted.
    pub kind: Kind,
    /// List field (only `exists`, `in` and `intersects` apply).
    pub list: bool,
    /// Its argument.
    pub arg: ArgKind,
}

/// A field with its argument, as used in a compiled rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Field {
    /// How it is extracted.
    pub kind: Kind,
    /// List field.
    pub list: bool,
    /// `[N]`.
    pub index: Option<usize>,
    /// `[key]`.
    pub key: Option<String>,
}

fn def(name: &str, kind: Kind, list: bool, arg: ArgKind) -> FieldDef {
    FieldDef {
        name: name.to_string(),
        kind,
        list,
        arg,
    }
}

/// Every field of the catalog, in documentation order.
pub fn catalog() -> Vec<FieldDef> {
    use ArgKind as A;
    use Kind as K;
    let mut v = vec![
        def("ka.auditid", K::Ptr(&["auditID"]), false, A::None),
        def("ka.stage", K::Ptr(&["stage"]), false, A::None),
        def(
            "ka.auth.decision",
            K::Ptr(&["annotations", "authorization.k8s.io/decision"]),
            false,
            A::None,
        ),
        def(
            "ka.auth.reason",
            K::Ptr(&["annotations", "authorization.k8s.io/reason"]),
            false,
            A::None,
        ),
        def(
            "ka.auth.openshift.decision",
            K::Ptr(&["annotations", "authentication.openshift.io/decision"]),
            false,
            A::None,
        ),
        def(
            "ka.validations.admission.policy.failure",
            K::Ptr(&[
                "annotations",
                "validation.policy.admission.k8s.io/validation_failure",
            ]),
            false,
            A::None,
        ),
        def(
            "ka.security.pod.violations",
            K::Ptr(&["annotations", "pod-security.kubernetes.io/audit-violations"]),
            false,
            A::None,
        ),
        def(
            "ka.auth.openshift.username",
            K::Ptr(&["annotations", "authentication.openshift.io/username"]),
            false,
            A::None,
        ),
        def(
            "ka.user.name",
            K::Ptr(&["user", "username"]),
            false,
            A::None,
        ),
        def("ka.user.groups", K::UserGroups, true, A::None),
        def(
            "ka.impuser.name",
            K::Ptr(&["impersonatedUser", "username"]),
            false,
            A::None,
        ),
        def("ka.verb", K::Ptr(&["verb"]), false, A::None),
        def("ka.uri", K::Ptr(&["requestURI"]), false, A::None),
        def("ka.uri.param", K::UriParam, false, A::Key),
        def(
            "ka.target.name",
            K::Ptr(&["objectRef", "name"]),
            false,
            A::None,
        ),
        def(
            "ka.target.namespace",
            K::Ptr(&["objectRef", "namespace"]),
            false,
            A::None,
        ),
        def(
            "ka.target.resource",
            K::Ptr(&["objectRef", "resource"]),
            false,
            A::None,
        ),
        def(
            "ka.target.subresource",
            K::Ptr(&["objectRef", "subresource"]),
            false,
            A::None,
        ),
        def("ka.target.pod.name", K::TargetPodName, false, A::None),
        def("ka.req.binding.subjects", K::Subjects, true, A::None),
        def(
            "ka.req.binding.subjects.user_names",
            K::SubjectNames("User"),
            true,
            A::None,
        ),
        def(
            "ka.req.binding.subjects.serviceaccount_names",
            K::SubjectNames("ServiceAccount"),
            true,
            A::None,
        ),
        def(
            "ka.req.binding.subjects.serviceaccount_ns_names",
            K::SubjectSaNsNames,
            true,
            A::None,
        ),
        def(
            "ka.req.binding.subjects.group_names",
            K::SubjectNames("Group"),
            true,
            A::None,
        ),
        def(
            "ka.req.binding.role",
            K::Ptr(&["requestObject", "roleRef", "name"]),
            false,
            A::None,
        ),
        def(
            "ka.req.binding.subject.has_name",
            K::SubjectHasName,
            false,
            A::Key,
        ),
        def(
            "ka.req.configmap.name",
            K::Ptr(&["objectRef", "name"]),
            false,
            A::None,
        ),
        def(
            "ka.req.configmap.obj",
            K::Ptr(&["requestObject", "data"]),
            false,
            A::None,
        ),
        def(
            "ka.req.container.image",
            K::FirstCtr(Prop::Image),
            false,
            A::None,
        ),
        def(
            "ka.req.container.image.repository",
            K::FirstCtr(Prop::Repository),
            false,
            A::None,
        ),
        def(
            "ka.req.pod.host_ipc",
            K::Ptr(&["requestObject", "spec", "hostIPC"]),
            false,
            A::None,
        ),
        def(
            "ka.req.pod.host_network",
            K::Ptr(&["requestObject", "spec", "hostNetwork"]),
            false,
            A::None,
        ),
        def(
            "ka.req.container.host_network",
            K::Ptr(&["requestObject", "spec", "hostNetwork"]),
            false,
            A::None,
        ),
        def(
            "ka.req.pod.host_pid",
            K::Ptr(&["requestObject", "spec", "hostPID"]),
            false,
            A::None,
        ),
        def(
            "ka.req.container.privileged",
            K::AnyPrivileged,
            false,
            A::None,
        ),
        def(
            "ka.req.pod.run_as_user",
            K::Ptr(&["requestObject", "spec", "securityContext", "runAsUser"]),
            false,
            A::None,
        ),
        def(
            "ka.req.pod.run_as_group",
            K::Ptr(&["requestObject", "spec", "securityContext", "runAsGroup"]),
            false,
            A::None,
        ),
        def("ka.req.role.rules", K::RoleRules, true, A::None),
        def(
            "ka.req.role.rules.apiGroups",
            K::RoleRuleProp("apiGroups"),
            true,
            A::Index,
        ),
        def(
            "ka.req.role.rules.nonResourceURLs",
            K::RoleRuleProp("nonResourceURLs"),
            true,
            A::Index,
        ),
        def(
            "ka.req.role.rules.verbs",
            K::RoleRuleProp("verbs"),
            true,
            A::Index,
        ),
        def(
            "ka.req.role.rules.resources",
            K::RoleRuleProp("resources"),
            true,
            A::Index,
        ),
        def(
            "ka.req.pod.fs_group",
            K::Ptr(&["requestObject", "spec", "securityContext", "fsGroup"]),
            false,
            A::None,
        ),
        def(
            "ka.req.pod.supplemental_groups",
            K::SupplementalGroups,
            true,
            A::None,
        ),
        def(
            "ka.req.service.type",
            K::Ptr(&["requestObject", "spec", "type"]),
            false,
            A::None,
        ),
        def("ka.req.service.ports", K::ServicePorts, true, A::Index),
        def(
            "ka.req.pod.volumes.hostpath",
            K::VolumeHostPaths,
            true,
            A::Index,
        ),
        def(
            "ka.req.volume.hostpath",
            K::VolumeHostPathMatch,
            false,
            A::Key,
        ),
        def(
            "ka.req.pod.volumes.flexvolume_driver",
            K::FlexVolumeDrivers,
            true,
            A::Index,
        ),
        def(
            "ka.req.pod.volumes.volume_type",
            K::VolumeTypes,
            true,
            A::Index,
        ),
        def(
            "ka.resp.name",
            K::Ptr(&["responseObject", "metadata", "name"]),
            false,
            A::None,
        ),
        def(
            "ka.response.code",
            K::Ptr(&["responseStatus", "code"]),
            false,
            A::None,
        ),
        def(
            "ka.response.reason",
            K::Ptr(&["responseStatus", "reason"]),
            false,
            A::None,
        ),
        def("ka.useragent", K::Ptr(&["userAgent"]), false, A::None),
        def("ka.sourceips", K::SourceIps, true, A::Index),
        def(
            "ka.cluster.name",
            K::Ptr(&["annotations", "cluster_name"]),
            false,
            A::None,
        ),
    ];
    for g in [Group::Containers, Group::Init, Group::Ephemeral] {
        for (pname, p) in PROPS {
            if g == Group::Ephemeral && *p == Prop::HostPort {
                continue;
            }
            v.push(def(
                &format!("ka.req.pod.{}.{pname}", g.key()),
                K::Ctr(g, *p),
                true,
                A::Index,
            ));
        }
    }
    for prefix in ["jevt", "json"] {
        v.push(def(&format!("{prefix}.value"), K::JsonValue, false, A::Key));
        v.push(def(&format!("{prefix}.obj"), K::JsonObj, false, A::None));
        v.push(def(
            &format!("{prefix}.rawtime"),
            K::RawTime,
            false,
            A::None,
        ));
    }
    v.push(def("evt.time", K::EvtTime, false, A::None));
    v.push(def("evt.time.iso8601", K::EvtTimeIso, false, A::None));
    v.push(def("evt.datetime", K::EvtDatetime, false, A::None));
    v.push(def("evt.rawtime", K::RawTime, false, A::None));
    v.push(def("evt.source", K::EvtSource, false, A::None));
    v
}

fn catalog_cached() -> &'static [FieldDef] {
    static CAT: std::sync::OnceLock<Vec<FieldDef>> = std::sync::OnceLock::new();
    CAT.get_or_init(catalog)
}

/// True when `name` is a field of the catalog (argument not checked).
pub fn is_field(name: &str) -> bool {
    catalog_cached().iter().any(|d| d.name == name)
}

/// Resolves a field name and its argument, checking the argument's shape.
pub fn lookup(name: &str, arg: Option<&str>) -> Result<Field, String> {
    let Some(d) = catalog_cached().iter().find(|d| d.name == name) else {
        return Err(format!("unknown field '{name}'"));
    };
    let mut f = Field {
        kind: d.kind,
        list: d.list,
        index: None,
        key: None,
    };
    match (d.arg, arg) {
        (ArgKind::None, None) | (ArgKind::Index, None) => {}
        (ArgKind::None, Some(a)) => {
            return Err(format!("field '{name}' takes no argument, got '[{a}]'"));
        }
        (ArgKind::Index, Some(a)) => {
            let ok = !a.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && (a == "0" || !a.starts_with('0'));
            match a.parse::<usize>() {
                Ok(i) if ok => f.index = Some(i),
                _ => {
                    return Err(format!("field '{name}' takes a numeric index, got '[{a}]'"));
                }
            }
        }
        (ArgKind::Key, Some(a)) => f.key = Some(a.to_string()),
        (ArgKind::Key, None) => {
            return Err(format!(
                "field '{name}' requires an argument, e.g. '{name}[x]'"
            ));
        }
    }
    Ok(f)
}

/// Extracted values of one field for one event (none or an empty list = not available).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Values<'e> {
    /// Not available.
    #[default]
    None,
    /// One value (most fields): no list allocated.
    One(Cow<'e, str>),
    /// Several values (list fields).
    Many(Vec<Cow<'e, str>>),
}

impl<'e> Values<'e> {
    /// The values as a slice (empty when not available).
    pub fn as_slice(&self) -> &[Cow<'e, str>] {
        match self {
            Values::None => &[],
            Values::One(v) => std::slice::from_ref(v),
            Values::Many(v) => v,
        }
    }

    /// The values as owned strings.
    pub fn to_strings(&self) -> Vec<String> {
        self.as_slice().iter().map(|c| c.to_string()).collect()
    }
}

/// A JSON value as the plugin stringifies it: strings raw, anything else compact JSON.
pub fn stringify(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        other => Cow::Owned(other.to_string()),
    }
}

fn needs_audit_id(k: Kind) -> bool {
    !matches!(
        k,
        Kind::JsonValue
            | Kind::JsonObj
            | Kind::RawTime
            | Kind::EvtTime
            | Kind::EvtTimeIso
            | Kind::EvtDatetime
            | Kind::EvtSource
    )
}

/// `HH:MM:SS.nnnnnnnnn` in UTC, Falco's `%evt.time`.
pub fn evt_time(t: &DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.9f").to_string()
}

/// Nanoseconds since the epoch (0 when out of range).
pub fn raw_time(t: &DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(0)
}

/// Extracts `f` from `ev`.
pub fn extract<'e>(f: &Field, ev: &'e AuditEvent) -> Values<'e> {
    let j = &ev.json;
    if needs_audit_id(f.kind) && j.get("auditID").is_none() {
        return Values::None;
    }
    // The common scalar paths produce their value without building a list.
    let single = match f.kind {
        Kind::Ptr(path) => Some(walk(j, path)),
        Kind::JsonValue => Some(f.key.as_deref().and_then(|k| json_pointer(j, k))),
        _ => None,
    };
    if let Some(v) = single {
        return v.map(|v| Values::One(stringify(v))).unwrap_or_default();
    }
    match extract_inner(f, ev) {
        Some(v) => Values::Many(v),
        None => Values::None,
    }
}

fn walk<'e>(j: &'e Value, path: &[&str]) -> Option<&'e Value> {
    let mut cur = j;
    for seg in path {
        cur = match cur {
            Value::Object(o) => o.get(*seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn one(v: Cow<'_, str>) -> Option<Vec<Cow<'_, str>>> {
    Some(vec![v])
}

fn ptr<'e>(j: &'e Value, p: &str) -> Option<&'e Value> {
    json_pointer(j, p)
}

/// Elements of an array, or only element `index` of it.
fn indexed(a: &[Value], index: Option<usize>) -> &[Value] {
    match index {
        None => a,
        Some(i) => a.get(i..i + 1).unwrap_or(&[]),
    }
}

fn extract_inner<'e>(f: &Field, ev: &'e AuditEvent) -> Option<Vec<Cow<'e, str>>> {
    let j = &ev.json;
    match f.kind {
        Kind::Ptr(p) => one(stringify(walk(j, p)?)),
        Kind::UserGroups => {
            let a = ptr(j, "/user/groups")?.as_array()?;
            Some(a.iter().map(stringify).collect())
        }
        Kind::UriParam => {
            let uri = ptr(j, "/requestURI")?.as_str()?;
            let key = f.key.as_deref()?;
            uri_param(uri, key).map(|v| vec![Cow::Owned(v)])
        }
        Kind::TargetPodName => {
            let res = ptr(j, "/objectRef/resource")?.as_str()?;
            let sub = ptr(j, "/objectRef/subresource").and_then(Value::as_str);
            if res != "pods" || sub.is_some_and(|s| !s.is_empty()) {
                return None;
            }
            one(stringify(ptr(j, "/responseObject/metadata/name")?))
        }
        Kind::Subjects => {
            let a = ptr(j, "/requestObject/subjects")?.as_array()?;
            Some(a.iter().map(|s| Cow::Owned(s.to_string())).collect())
        }
        Kind::SubjectNames(kind) => {
            let a = ptr(j, "/requestObject/subjects")?.as_array()?;
            Some(
                a.iter()
                    .filter(|s| s.get("kind").and_then(Value::as_str) == Some(kind))
                    .filter_map(|s| s.get("name").map(stringify))
                    .collect(),
            )
        }
        Kind::SubjectSaNsNames => {
            let a = ptr(j, "/requestObject/subjects")?.as_array()?;
            Some(
                a.iter()
                    .filter(|s| s.get("kind").and_then(Value::as_str) == Some("ServiceAccount"))
                    .filter_map(|s| {
                        let ns = s.get("namespace")?;
                        let name = s.get("name")?;
                        Some(Cow::Owned(format!("{}:{}", stringify(ns), stringify(name))))
                    })
                    .collect(),
            )
        }
        Kind::SubjectHasName => one(Cow::Borrowed("true")),
        Kind::Ctr(g, p) => container_values(j, g, p, f.index),
        Kind::FirstCtr(p) => {
            let mut v = container_values(j, Group::Containers, p, Some(0))?;
            v.truncate(1);
            Some(v)
        }
        Kind::AnyPrivileged => {
            let a = ptr(j, "/requestObject/spec/containers")?.as_array()?;
            let any = a
                .iter()
                .any(|c| c.pointer("/securityContext/privileged") == Some(&Value::Bool(true)));
            one(Cow::Borrowed(if any { "true" } else { "false" }))
        }
        Kind::RoleRules => {
            let a = ptr(j, "/requestObject/rules")?.as_array()?;
            Some(a.iter().map(|r| Cow::Owned(r.to_string())).collect())
        }
        Kind::RoleRuleProp(key) => {
            let a = ptr(j, "/requestObject/rules")?.as_array()?;
            let mut out = Vec::new();
            for r in indexed(a, f.index) {
                match r.get(key) {
                    Some(Value::Array(items)) => out.extend(items.iter().map(stringify)),
                    Some(Value::Null) | None => {}
                    Some(other) => out.push(stringify(other)),
                }
            }
            Some(out)
        }
        Kind::SupplementalGroups => {
            let a = ptr(j, "/requestObject/spec/securityContext/supplementalGroups")?.as_array()?;
            Some(a.iter().map(stringify).collect())
        }
        Kind::ServicePorts => one(Cow::Owned(ptr(j, "/requestObject/spec/ports")?.to_string())),
        Kind::VolumeHostPaths | Kind::FlexVolumeDrivers => {
            let a = ptr(j, "/requestObject/spec/volumes")?.as_array()?;
            let p = if f.kind == Kind::VolumeHostPaths {
                "/hostPath/path"
            } else {
                "/flexVolume/driver"
            };
            Some(
                indexed(a, f.index)
                    .iter()
                    .filter_map(|v| v.pointer(p).map(stringify))
                    .collect(),
            )
        }
        Kind::VolumeTypes => {
            let a = ptr(j, "/requestObject/spec/volumes")?.as_array()?;
            let mut out = Vec::new();
            for v in indexed(a, f.index) {
                if let Some(o) = v.as_object() {
                    out.extend(
                        o.keys()
                            .filter(|k| k.as_str() != "name")
                            .map(|k| Cow::Borrowed(k.as_str())),
                    );
                }
            }
            Some(out)
        }
        Kind::VolumeHostPathMatch => {
            let a = ptr(j, "/requestObject/spec/volumes")?.as_array()?;
            if a.is_empty() {
                return None;
            }
            let key = f.key.as_deref()?;
            let hit = a.iter().any(|v| {
                let Some(path) = v.pointer("/hostPath/path").and_then(Value::as_str) else {
                    return false;
                };
                match key.strip_suffix('*') {
                    Some(prefix) => path.starts_with(prefix),
                    None => path == key,
                }
            });
            one(Cow::Borrowed(if hit { "true" } else { "false" }))
        }
        Kind::SourceIps => {
            let a = ptr(j, "/sourceIPs")?.as_array()?;
            Some(indexed(a, f.index).iter().map(stringify).collect())
        }
        Kind::JsonValue => {
            let key = f.key.as_deref()?;
            one(stringify(json_pointer(j, key)?))
        }
        Kind::JsonObj => serde_json::to_string_pretty(j)
            .ok()
            .map(|s| vec![Cow::Owned(s)]),
        Kind::RawTime => one(Cow::Owned(raw_time(&ev.time).to_string())),
        Kind::EvtTime => one(Cow::Owned(evt_time(&ev.time))),
        Kind::EvtTimeIso => one(Cow::Owned(
            ev.time.format("%Y-%m-%dT%H:%M:%S%.9f+0000").to_string(),
        )),
        Kind::EvtDatetime => one(Cow::Owned(ev.time.format("%Y-%m-%d %H:%M:%S").to_string())),
        Kind::EvtSource => one(Cow::Borrowed("k8s_audit")),
    }
}

/// Walks an RFC 6901 pointer; the leading `/` is optional and an empty pointer is the document.
pub fn json_pointer<'e>(j: &'e Value, key: &str) -> Option<&'e Value> {
    let key = key.strip_prefix('/').unwrap_or(key);
    if key.is_empty() {
        return Some(j);
    }
    let mut cur = j;
    for seg in key.split('/') {
        let seg: Cow<'_, str> = if seg.contains('~') {
            Cow::Owned(seg.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(seg)
        };
        cur = match cur {
            Value::Object(o) => o.get(seg.as_ref())?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn image_repository(image: &str) -> &str {
    let s = image.split(':').next().unwrap_or(image);
    s.split('@').next().unwrap_or(s)
}

fn container_values<'e>(
    j: &'e Value,
    g: Group,
    p: Prop,
    index: Option<usize>,
) -> Option<Vec<Cow<'e, str>>> {
    let spec = j.pointer("/requestObject/spec")?;
    let ctrs = spec.get(g.key())?.as_array()?;
    let mut out = Vec::new();
    for c in indexed(ctrs, index) {
        let sc = c.get("securityContext");
        let sc_get = |k: &str| sc.and_then(|s| s.get(k)).filter(|v| !v.is_null());
        match p {
            Prop::Name | Prop::Image => {
                // A container without the key makes the whole field unavailable.
                let k = if p == Prop::Name { "name" } else { "image" };
                out.push(stringify(c.get(k)?));
            }
            Prop::Repository => match stringify(c.get("image")?) {
                Cow::Borrowed(s) => out.push(Cow::Borrowed(image_repository(s))),
                Cow::Owned(s) => out.push(Cow::Owned(image_repository(&s).to_string())),
            },
            Prop::Command | Prop::Args => {
                let k = if p == Prop::Command {
                    "command"
                } else {
                    "args"
                };
                match c.get(k) {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(a)) => {
                        let mut parts = Vec::with_capacity(a.len());
                        for x in a {
                            parts.push(x.as_str()?);
                        }
                        out.push(Cow::Owned(parts.join(" ")));
                    }
                    Some(_) => return None,
                }
            }
            Prop::Privileged => out.extend(sc_get("privileged").map(stringify)),
            Prop::AllowPrivilegeEscalation => {
                out.extend(sc_get("allowPrivilegeEscalation").map(stringify))
            }
            Prop::ReadOnlyFs => out.extend(sc_get("readOnlyRootFilesystem").map(stringify)),
            Prop::RunAsUser => out.extend(sc_get("runAsUser").map(stringify)),
            Prop::RunAsGroup => out.extend(sc_get("runAsGroup").map(stringify)),
            Prop::ProcMount => out.extend(sc_get("procMount").map(stringify)),
            Prop::EffRunAsUser | Prop::EffRunAsGroup => {
                let k = if p == Prop::EffRunAsUser {
                    "runAsUser"
                } else {
                    "runAsGroup"
                };
                let v = sc_get(k)
                    .or_else(|| spec.pointer(&format!("/securityContext/{k}")))
                    .filter(|v| !v.is_null());
                out.push(v.map(stringify).unwrap_or(Cow::Borrowed("0")));
            }
            Prop::AddCapabilities => {
                if let Some(add) = sc.and_then(|s| s.pointer("/capabilities/add"))
                    && !add.is_null()
                {
                    out.push(Cow::Owned(add.to_string()));
                }
            }
            Prop::HostPort => {
                if let Some(ports) = c.get("ports").and_then(Value::as_array) {
                    for port in indexed(ports, index) {
                        if let Some(v) = port.get("hostPort").or_else(|| port.get("containerPort"))
                        {
                            out.push(stringify(v));
                        }
                    }
                }
            }
        }
    }
    Some(out)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn url_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push(hi * 16 + lo);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// First value of query parameter `key` in `uri` (`+` and `%xx` decoded).
pub fn uri_param(uri: &str, key: &str) -> Option<String> {
    let (_, query) = uri.split_once('?')?;
    let query = query.split('#').next().unwrap_or(query);
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if url_decode(k).as_deref() == Some(key) {
            return url_decode(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_has_the_plugins_100_fields_once_each() {
        let cat = catalog();
        let ka: Vec<&str> = cat
            .iter()
            .map(|d| d.name.as_str())
            .filter(|n| n.starts_with("ka."))
            .collect();
        assert_eq!(ka.len(), 100);
        let mut names: Vec<&str> = cat.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate field names");
        for f in [
            "jevt.value",
            "json.value",
            "jevt.obj",
            "json.obj",
            "jevt.rawtime",
            "json.rawtime",
        ] {
            assert!(is_field(f), "{f}");
        }
    }

    #[test]
    fn uri_params_and_pointers() {
        assert_eq!(uri_param("/x?a=1&b=2+3&a=4", "a").as_deref(), Some("1"));
        assert_eq!(uri_param("/x?a=1&b=2+3", "b").as_deref(), Some("2 3"));
        assert_eq!(uri_param("/x?c=%2Fetc%2F", "c").as_deref(), Some("/etc/"));
        assert_eq!(uri_param("/x?flag&b=1", "flag").as_deref(), Some(""));
        assert_eq!(uri_param("/x", "a"), None);
        assert_eq!(uri_param("/x?a=%zz", "a"), None);
        let j = serde_json::json!({"a/b": {"~c": [10, 20]}});
        assert_eq!(
            json_pointer(&j, "/a~1b/~0c/1"),
            Some(&serde_json::json!(20))
        );
        assert_eq!(json_pointer(&j, "a~1b/~0c/0"), Some(&serde_json::json!(10)));
        assert_eq!(json_pointer(&j, ""), Some(&j));
        assert_eq!(json_pointer(&j, "/a~1b/~0c/x"), None);
        assert_eq!(image_repository("nginx:1.7.9"), "nginx");
        assert_eq!(image_repository("a/b@sha256:00"), "a/b");
        assert_eq!(image_repository("myreg:5000/x:1"), "myreg");
    }
}
