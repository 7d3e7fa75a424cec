//! Per-container fields, `ka.req.pod.<group>.<property>`: one row per property, generated for
//! each container list of a pod spec (`containers`, `initContainers`, `ephemeralContainers`).
//! A field yields one value per container (or only container `[N]`).

use std::borrow::Cow;

use serde_json::Value;

use super::values::{indexed, stringify};
use super::{ArgKind, Container, Extract, PropFn, Row, Values};
use crate::json::JsonRef;

type Out<'e> = Vec<Cow<'e, str>>;

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
    const ALL: [Group; 3] = [Group::Containers, Group::Init, Group::Ephemeral];

    /// The pod spec's key of the list.
    pub(super) fn key(self) -> &'static str {
        match self {
            Group::Containers => "containers",
            Group::Init => "initContainers",
            Group::Ephemeral => "ephemeralContainers",
        }
    }
}

/// One per-container property: its name after the group, what it is, how it is read, and
/// whether ephemeral containers have it.
struct Prop {
    name: &'static str,
    desc: &'static str,
    read: PropFn,
    ephemeral: bool,
}

const fn prop(name: &'static str, desc: &'static str, read: PropFn) -> Prop {
    Prop {
        name,
        desc,
        read,
        ephemeral: true,
    }
}

/// The properties, in documentation order.
const PROPS: &[Prop] = &[
    prop("name", "container name", name),
    prop("image", "container image", image),
    prop(
        "image.repository",
        "container image without tag or digest",
        repository,
    ),
    prop("command", "container command, joined with spaces", command),
    prop("args", "container arguments, joined with spaces", args),
    prop("privileged", "securityContext.privileged", privileged),
    prop(
        "allow_privilege_escalation",
        "securityContext.allowPrivilegeEscalation",
        allow_privilege_escalation,
    ),
    prop(
        "read_only_fs",
        "securityContext.readOnlyRootFilesystem",
        read_only_fs,
    ),
    prop("run_as_user", "securityContext.runAsUser", run_as_user),
    prop(
        "eff_run_as_user",
        "effective user: the container's runAsUser, else the pod's, else 0",
        eff_run_as_user,
    ),
    prop("run_as_group", "securityContext.runAsGroup", run_as_group),
    prop(
        "eff_run_as_group",
        "effective group: the container's runAsGroup, else the pod's, else 0",
        eff_run_as_group,
    ),
    prop("proc_mount", "securityContext.procMount", proc_mount),
    prop(
        "add_capabilities",
        "added capabilities, the JSON text of securityContext.capabilities.add",
        add_capabilities,
    ),
    Prop {
        name: "host_port",
        desc: "host ports of the container's ports (else their container ports)",
        read: host_port,
        ephemeral: false,
    },
];

/// Every per-container field, with its full name.
pub(super) fn rows() -> Vec<(Row, String)> {
    let mut out = Vec::new();
    for g in Group::ALL {
        for p in PROPS {
            if g == Group::Ephemeral && !p.ephemeral {
                continue;
            }
            let row = Row {
                name: p.name,
                list: true,
                arg: ArgKind::Index,
                desc: p.desc,
                extract: Extract::Container(g, p.read),
                reads: super::Reads::Nothing,
            };
            out.push((row, format!("ka.req.pod.{}.{}", g.key(), p.name)));
        }
    }
    out
}

/// The values of one property over the containers of a group (or only container `index`).
pub(super) fn values<'e>(
    j: JsonRef<'e>,
    g: Group,
    read: PropFn,
    index: Option<usize>,
) -> Option<Vec<Cow<'e, str>>> {
    let spec = j.get("requestObject")?.get("spec")?;
    let ctrs = spec.get(g.key())?.as_array()?;
    let mut out = Vec::new();
    for c in indexed(ctrs, index) {
        let c = Container {
            json: c,
            pod_spec: spec,
            index,
        };
        read(&c, &mut out)?;
    }
    Some(out)
}

/// A property of the first of `spec.containers` (the deprecated scalar `ka.req.container.*`).
pub(super) fn first<'e>(j: JsonRef<'e>, read: PropFn) -> Option<Values<'e>> {
    let mut v = values(j, Group::Containers, read, Some(0))?;
    v.truncate(1);
    Some(Values::Many(v))
}

fn security<'e>(c: &'e Value, k: &str) -> Option<&'e Value> {
    c.get("securityContext")
        .and_then(|s| s.get(k))
        .filter(|v| !v.is_null())
}

/// A container without the key makes the whole field unavailable.
fn name<'e>(c: &Container<'e>, out: &mut Out<'e>) -> Option<()> {
    out.push(stringify(c.json.get("name")?));
    Some(())
}

pub(super) fn image<'e>(c: &Container<'e>, out: &mut Out<'e>) -> Option<()> {
    out.push(stringify(c.json.get("image")?));
    Some(())
}

pub(super) fn repository<'e>(c: &Container<'e>, out: &mut Out<'e>) -> Option<()> {
    out.push(match stringify(c.json.get("image")?) {
        Cow::Borrowed(s) => Cow::Borrowed(image_repository(s)),
        Cow::Owned(s) => Cow::Owned(image_repository(&s).to_string()),
    });
    Some(())
}

/// An image without tag or digest; cut at the first `:` as the plugin does.
fn image_repository(image: &str) -> &str {
    let s = image.split(':').next().unwrap_or(image);
    s.split('@').next().unwrap_or(s)
}

/// An array of strings joined with spaces; absent or null adds nothing, anything else (or a
/// non-string item) makes the field unavailable.
fn joined<'e>(c: &Container<'e>, k: &str, out: &mut Out<'e>) -> Option<()> {
    match c.json.get(k) {
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
    Some(())
}

fn command<'e>(c: &Container<'e>, out: &mut Out<'e>) -> Option<()> {
    joined(c, "command", out)
}

fn args<'e>(c: &Container<'e>, out: &mut Out<'e>) -> Option<()> {
    joined(c, "args", out)
}

/// Defines a property that is one `securityContext` key (absent adds nothing).
macro_rules! security_prop {
    ($($f:ident => $key:literal),* $(,)?) => {$(
        fn $f<'e>(c: &Container<'e>, out: &mut Out<'e>) -> Option<()> {
            out.extend(security(c.json, $key).map(stringify));
            Some(())
        }
    )*};
}

security_prop! {
    privileged => "privileged",
    allow_privilege_escalation => "allowPrivilegeEscalation",
    read_only_fs => "readOnlyRootFilesystem",
    run_as_user => "runAsUser",
    run_as_group => "runAsGroup",
    proc_mount => "procMount",
}

/// The container's `securityContext` key, else the pod's, else `0`.
fn effective<'e>(c: &Container<'e>, k: &str, out: &mut Out<'e>) -> Option<()> {
    let v = security(c.json, k)
        .map(JsonRef::Value)
        .or_else(|| c.pod_spec.get("securityContext")?.get(k))
        .filter(|v| !v.is_null());
    out.push(v.map(JsonRef::stringify).unwrap_or(Cow::Borrowed("0")));
    Some(())
}

fn eff_run_as_user<'e>(c: &Container<'e>, out: &mut Out<'e>) -> Option<()> {
    effective(c, "runAsUser", out)
}

fn eff_run_as_group<'e>(c: &Container<'e>, out: &mut Out<'e>) -> Option<()> {
    effective(c, "runAsGroup", out)
}

fn add_capabilities<'e>(c: &Container<'e>, out: &mut Out<'e>) -> Option<()> {
    if let Some(add) = c
        .json
        .get("securityContext")
        .and_then(|s| s.pointer("/capabilities/add"))
        && !add.is_null()
    {
        out.push(Cow::Owned(add.to_string()));
    }
    Some(())
}

/// `hostPort` of each port, else its `containerPort`; the field's `[N]` also selects the port,
/// as the plugin does.
fn host_port<'e>(c: &Container<'e>, out: &mut Out<'e>) -> Option<()> {
    if let Some(ports) = c.json.get("ports").and_then(Value::as_array) {
        for port in indexed(ports, c.index) {
            if let Some(v) = port.get("hostPort").or_else(|| port.get("containerPort")) {
                out.push(stringify(v));
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_repository_cuts_tag_and_digest() {
        assert_eq!(image_repository("nginx:1.7.9"), "nginx");
        assert_eq!(image_repository("a/b@sha256:00"), "a/b");
        assert_eq!(image_repository("myreg:5000/x:1"), "myreg");
    }
}
