//! The `sources:` of kaudit's config from `KauditDeployment.spec.sources`: the settings checked
//! (no inline credentials, no file settings), each `secretRef` turned into a credential file of
//! the config Secret, and the entry checked by kaudit's own source config. An empty list is
//! kaudit's default (the webhook alone).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::operator::crd::SourceSpec;
use crate::sources::SourceConfig;

use super::plan::{CONFIG_DIR, RenderError, key_safe, sha256_hex};
use super::sinks::{check_settings, set_path};

/// Source settings holding credentials inline (besides those with `secret`, `token`,
/// `password` in their name, which the sinks' check refuses).
const INLINE_SOURCE_SECRETS: &[&str] = &["connection_string", "access_key_id"];

/// The rendered sources.
#[derive(Debug)]
pub struct Sources {
    /// Entries as written in `kaudit.yaml` (empty: the key is left at kaudit's default).
    pub entries: Vec<Value>,
    /// kaudit's typed entries.
    pub configs: Vec<SourceConfig>,
    /// Credential files of the config Secret: key → content.
    pub files: BTreeMap<String, Vec<u8>>,
}

fn refused(name: &str, message: impl std::fmt::Display) -> RenderError {
    RenderError::Config {
        message: format!("spec.sources {name:?}: {message}"),
    }
}

/// Renders `specs`; the Secrets are those of namespace `ns` in `secrets`.
pub fn render(
    ns: &str,
    specs: &[SourceSpec],
    secrets: &BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
) -> Result<Sources, RenderError> {
    let mut out = Sources {
        entries: Vec::new(),
        configs: Vec::new(),
        files: BTreeMap::new(),
    };
    for spec in specs {
        let name = spec.name.as_str();
        check_settings(&spec.settings, "")
            .map_err(|e| refused(name, format!("settings.{}: {}", e.key, e.message)))?;
        // Credential settings of sources that the sinks' word list does not name.
        if let Some(k) = spec
            .settings
            .keys()
            .find(|k| INLINE_SOURCE_SECRETS.contains(&k.to_ascii_lowercase().as_str()))
        {
            return Err(refused(
                name,
                format!(
                    "settings.{k}: credentials must come from a Secret (secretRefs), never inline"
                ),
            ));
        }
        let mut entry: Map<String, Value> = spec.settings.clone();
        entry.insert("name".into(), Value::String(spec.name.clone()));
        entry.insert("type".into(), Value::String(spec.type_.clone()));
        for r in &spec.secret_refs {
            let ok = r.setting.ends_with("_file")
                && r.setting
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(refused(
                    name,
                    format!(
                        "secretRefs: setting {:?} must be a `*_file` setting",
                        r.setting
                    ),
                ));
            }
            let value = secrets
                .get(&(ns.to_string(), r.name.clone()))
                .ok_or_else(|| {
                    refused(
                        name,
                        format!("secretRefs: Secret {ns}/{} not found", r.name),
                    )
                })?
                .get(&r.key)
                .ok_or_else(|| {
                    refused(
                        name,
                        format!("secretRefs: Secret {ns}/{} has no key {:?}", r.name, r.key),
                    )
                })?;
            let h = sha256_hex(&[value]);
            let key = format!(
                "cred.source.{}.{}.{}",
                key_safe(name),
                key_safe(&r.setting),
                &h[..12]
            );
            set_path(
                &mut entry,
                &[r.setting.as_str()],
                Value::String(format!("{CONFIG_DIR}/{key}")),
            );
            out.files.insert(key, value.clone());
        }
        let config: SourceConfig =
            serde_json::from_value(Value::Object(entry.clone())).map_err(|e| refused(name, e))?;
        out.configs.push(config);
        out.entries.push(Value::Object(entry));
    }
    // The list as a whole (unique names, one webhook, each type's rules) as kaudit checks it;
    // files are checked in the pod, where they exist.
    if let Err(e) = crate::sources::validate_all(&out.configs)
        && !e.message.contains("does not exist")
    {
        return Err(RenderError::Config {
            message: format!("spec.{}: {}", e.key, e.message),
        });
    }
    Ok(out)
}

/// The directories of `file` sources: mounted read-only from the node at the same path.
pub fn host_dirs(specs: &[SourceSpec]) -> Vec<String> {
    let mut dirs: Vec<String> = specs
        .iter()
        .filter(|s| s.type_ == "file")
        .filter_map(|s| s.settings.get("path").and_then(Value::as_str))
        .filter_map(|p| std::path::Path::new(p).parent())
        .map(|d| d.display().to_string())
        .filter(|d| d.starts_with('/') && d != "/")
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SourceSpec {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn credentials_come_from_secrets_only() {
        let secrets = BTreeMap::from([(
            ("kaudit".to_string(), "eventhub".to_string()),
            BTreeMap::from([(
                "conn".to_string(),
                b"Endpoint=sb://h/;SharedAccessKey=k".to_vec(),
            )]),
        )]);
        let aks = spec(
            "name: aks\ntype: aks\nsettings: {event_hub: insights-logs-kube-audit}\nsecretRefs: [{setting: connection_string_file, name: eventhub, key: conn}]\n",
        );
        let r = render("kaudit", std::slice::from_ref(&aks), &secrets).unwrap();
        let file = r.entries[0]["connection_string_file"].as_str().unwrap();
        assert!(
            file.starts_with("/etc/kaudit/config/cred.source.aks.connection_string_file."),
            "{file}"
        );
        assert_eq!(r.files.len(), 1);
        assert!(
            !serde_json::to_string(&r.entries)
                .unwrap()
                .contains("SharedAccessKey")
        );
        // Inline credentials and file settings are refused, and so are other namespaces' Secrets.
        let inline = spec("name: aks\ntype: aks\nsettings: {event_hub: x, connection_string: s}\n");
        assert!(render("kaudit", &[inline], &secrets).is_err());
        let file =
            spec("name: aks\ntype: aks\nsettings: {event_hub: x, connection_string_file: /x}\n");
        assert!(render("kaudit", &[file], &secrets).is_err());
        assert!(render("other", &[aks], &secrets).is_err());
        let bad = spec("name: f\ntype: file\nsettings: {path: /var/log/a.log, nope: 1}\n");
        assert!(
            render("kaudit", &[bad], &secrets)
                .unwrap_err()
                .to_string()
                .contains("nope")
        );
    }

    #[test]
    fn file_sources_mount_their_directory() {
        let f =
            spec("name: f\ntype: file\nsettings: {path: /var/log/kubernetes/audit/audit.log}\n");
        assert_eq!(host_dirs(&[f]), ["/var/log/kubernetes/audit"]);
    }
}
