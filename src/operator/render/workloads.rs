//! The workloads: kaudit's StatefulSet (a claim per pod for its data directory) or, when
//! `storage.emptyDir` asks for it, Deployment; its PodDisruptionBudget; the managed Falco's
//! Deployment or DaemonSet.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};

use crate::operator::crd::FalcoWorkload;

use super::object::{Object, Objects};
use super::plan::{
    CONFIG_DIR, DATA_DIR, FALCO_HEALTH_PORT, FALCO_PLUGIN_PORT, FALCO_PLUGINS_DIR,
    INTAKE_TOKEN_ENV, INTAKE_TOKEN_KEY, KAUDIT_GRACE_SECONDS, KAUDIT_PORT, Plan, RULES_DIR,
    RULES_HASH_ANNOTATION, RenderError, typed,
};

/// The user and group every container runs as (distroless `nonroot`).
const NONROOT: i64 = 65532;

/// JSON merge patch (RFC 7386) of `patch` onto `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The securityContext of every container: the `restricted` Pod Security Standard.
fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn config_map_volume(name: &str, config_map: &str) -> Volume {
    Volume {
        name: name.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.into(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        ..ContainerPort::default()
    }
}

/// An HTTP GET probe of `path` on the container port named `port`.
fn http_probe(path: &str, port: &str, scheme: Option<&str>) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port.into()),
            scheme: scheme.map(Into::into),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    }
}

/// `requests` of cpu and memory and a memory `limit`.
fn resources(cpu: &str, memory: &str, limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity(cpu.into())),
            ("memory".into(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([("memory".into(), Quantity(limit.into()))])),
        ..ResourceRequirements::default()
    }
}

/// The pod securityContext: non-root, the runtime's seccomp profile; `fs_group` owns volumes.
fn pod_security(fs_group: Option<i64>) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NONROOT),
        run_as_group: Some(NONROOT),
        fs_group,
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn selector(plan: &Plan, component: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(plan.selector(component)),
        ..LabelSelector::default()
    }
}

/// kaudit's pod template, with the spec's `podTemplate` merge patch applied. The `data` volume
/// is an `emptyDir` only when `storage.emptyDir` asks for it; otherwise it is the StatefulSet's
/// claim of the same name.
fn kaudit_template(plan: &Plan) -> Result<PodTemplateSpec, RenderError> {
    let spec = &plan.kd.spec;
    let mut volumes = vec![
        secret_volume("config", &plan.config_secret()),
        config_map_volume("rules", &plan.rules_config_map()),
    ];
    if spec.storage.empty_dir {
        volumes.push(empty_dir("data"));
    }
    let mut mounts = vec![
        mount("config", CONFIG_DIR, true),
        mount("rules", RULES_DIR, true),
        mount("data", DATA_DIR, false),
    ];
    if let Some(t) = &spec.service.tls_secret {
        volumes.push(secret_volume("tls", t));
        mounts.push(mount("tls", "/etc/kaudit/tls", true));
    }
    if let Some(t) = &spec.service.token_secret {
        volumes.push(secret_volume("token", t));
        mounts.push(mount("token", "/etc/kaudit/token", true));
    }
    if spec.console.enabled {
        use super::console::{STORE_DIR, TOKENS_DIR};
        if let Some(t) = &spec.console.token_secret {
            volumes.push(secret_volume("console-tokens", t));
            mounts.push(mount("console-tokens", TOKENS_DIR, true));
        }
        if let Some(p) = &spec.console.postgres_secret {
            volumes.push(secret_volume("console-store", p));
            mounts.push(mount("console-store", STORE_DIR, true));
        }
    }
    // A `file` source reads the node's audit log directory, read-only.
    for (i, dir) in super::sources::host_dirs(&spec.sources).iter().enumerate() {
        let name = format!("source-log-{i}");
        volumes.push(Volume {
            name: name.clone(),
            host_path: Some(k8s_openapi::api::core::v1::HostPathVolumeSource {
                path: dir.clone(),
                type_: Some("Directory".into()),
            }),
            ..Volume::default()
        });
        mounts.push(mount(&name, dir, true));
    }
    let scheme = if spec.service.tls_secret.is_some() {
        "HTTPS"
    } else {
        "HTTP"
    };
    let container = Container {
        name: "kaudit".into(),
        image: Some(spec.image.clone()),
        args: Some(vec![
            "serve".into(),
            "--config".into(),
            format!("{CONFIG_DIR}/kaudit.yaml"),
        ]),
        ports: Some(vec![port("webhook", KAUDIT_PORT)]),
        readiness_probe: Some(http_probe("/readyz", "webhook", Some(scheme))),
        liveness_probe: Some(http_probe("/healthz", "webhook", Some(scheme))),
        resources: Some(
            spec.resources
                .clone()
                .unwrap_or_else(|| resources("100m", "128Mi", "512Mi")),
        ),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(plan.labels("kaudit")),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(plan.name.clone()),
            automount_service_account_token: Some(false),
            // fsGroup makes the claim writable by the nonroot user.
            security_context: Some(pod_security(Some(NONROOT))),
            termination_grace_period_seconds: Some(KAUDIT_GRACE_SECONDS),
            containers: vec![container],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    };
    let Some(patch) = &spec.pod_template else {
        return Ok(template);
    };
    let what = "kaudit pod template";
    let mut v = serde_json::to_value(&template).map_err(|source| RenderError::Object {
        what: what.into(),
        source,
    })?;
    merge_patch(&mut v, patch);
    typed(what, v)
}

/// kaudit's workload: a StatefulSet with a `data` claim per pod (the default), or a Deployment
/// with an `emptyDir` when `storage.emptyDir` asks for it; the other kind is pruned. No content
/// hash in the template: kaudit reloads config and rules itself.
pub fn kaudit(plan: &Plan, out: &mut Objects) -> Result<(), RenderError> {
    let spec = &plan.kd.spec;
    let metadata = plan.meta(&plan.name, "kaudit");
    let template = kaudit_template(plan)?;
    if spec.storage.empty_dir {
        out.add(Object::Deployment(Deployment {
            metadata,
            spec: DeploymentSpec {
                replicas: Some(spec.replicas),
                selector: selector(plan, "kaudit"),
                template,
                ..DeploymentSpec::default()
            },
            status: None,
        }));
        out.prune("StatefulSet", &plan.name);
        return Ok(());
    }
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(plan.selector("kaudit")),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(spec.storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    };
    out.add(Object::StatefulSet(StatefulSet {
        metadata,
        spec: StatefulSetSpec {
            replicas: Some(spec.replicas),
            selector: selector(plan, "kaudit"),
            service_name: Some(plan.headless_service()),
            // Replicas share nothing: start and stop them together, not one by one.
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            template,
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        },
        status: None,
    }));
    out.prune("Deployment", &plan.name);
    Ok(())
}

/// kaudit's PodDisruptionBudget: voluntary disruptions (drains, evictions) take at most one
/// kaudit pod at a time.
pub fn disruption_budget(plan: &Plan) -> Object {
    Object::PodDisruptionBudget(PodDisruptionBudget {
        metadata: plan.meta(&plan.name, "kaudit"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector(plan, "kaudit")),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

/// falcoctl's init container, installing the plugins into the `plugins` volume.
fn plugin_installer(image: &str, refs: &[String]) -> Container {
    let mut args: Vec<String> = vec!["artifact".into(), "install".into()];
    args.extend(refs.iter().cloned());
    args.extend(
        [
            "--plugins-dir=/plugins",
            "--allowed-types=plugin",
            "--resolve-deps=false",
            "--log-format=json",
        ]
        .map(String::from),
    );
    Container {
        name: "install-plugins".into(),
        image: Some(image.into()),
        args: Some(args),
        env: Some(vec![EnvVar {
            name: "HOME".into(),
            value: Some("/tmp".into()),
            ..EnvVar::default()
        }]),
        resources: Some(resources("10m", "64Mi", "256Mi")),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![
            mount("plugins", "/plugins", false),
            mount("installer-tmp", "/tmp", false),
        ]),
        ..Container::default()
    }
}

/// Falco's pod template; `hash` rolls it when what Falco reads at start changes.
fn falco_template(plan: &Plan, hash: &str) -> PodTemplateSpec {
    let falco_spec = &plan.kd.spec.falco;
    let falco_name = plan.falco_name();
    let mut mounts = vec![
        mount("config", "/etc/falco-kaudit", true),
        mount("rules", RULES_DIR, true),
        mount("run", "/var/run/falco", false),
    ];
    let mut volumes = vec![
        config_map_volume("config", &falco_name),
        config_map_volume("rules", &plan.rules_config_map()),
        empty_dir("run"),
    ];
    let env = plan.intake_token.as_ref().map(|_| {
        vec![EnvVar {
            name: INTAKE_TOKEN_ENV.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: plan.config_secret(),
                    key: INTAKE_TOKEN_KEY.into(),
                    ..SecretKeySelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]
    });
    let plugins = &falco_spec.plugins;
    let mut init = Vec::new();
    if !plugins.installer_image.is_empty() {
        // falcoctl installs the plugins into a volume that Falco reads them from.
        init.push(plugin_installer(&plugins.installer_image, &plugins.refs));
        mounts.push(mount("plugins", FALCO_PLUGINS_DIR, true));
        volumes.push(empty_dir("plugins"));
        volumes.push(empty_dir("installer-tmp"));
    }
    let falco = Container {
        name: "falco".into(),
        image: Some(falco_spec.image.clone()),
        command: Some(vec!["/usr/bin/falco".into()]),
        args: Some(vec!["-c".into(), "/etc/falco-kaudit/falco.yaml".into()]),
        ports: Some(vec![
            port("k8saudit", FALCO_PLUGIN_PORT),
            port("health", FALCO_HEALTH_PORT),
        ]),
        readiness_probe: Some(http_probe("/healthz", "health", None)),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(30),
            ..http_probe("/healthz", "health", None)
        }),
        resources: Some(
            falco_spec
                .resources
                .clone()
                .unwrap_or_else(|| resources("100m", "256Mi", "1Gi")),
        ),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(mounts),
        env,
        ..Container::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(plan.labels("falco")),
            // A rules or config change rolls Falco: it does not reload plugin rules by itself.
            annotations: Some(BTreeMap::from([(
                RULES_HASH_ANNOTATION.into(),
                hash.into(),
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            service_account_name: Some(falco_name),
            automount_service_account_token: Some(false),
            security_context: Some(pod_security(None)),
            containers: vec![falco],
            init_containers: (!init.is_empty()).then_some(init),
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    }
}

/// Falco's workload, of the kind `falco.mode` asks for (the other kind is pruned); `hash` goes
/// into its pod template, so that a change of what Falco reads at start rolls it.
pub fn falco(plan: &Plan, hash: &str, out: &mut Objects) {
    let name = plan.falco_name();
    let metadata = plan.meta(&name, "falco");
    let selector = selector(plan, "falco");
    let template = falco_template(plan, hash);
    match plan.kd.spec.falco.mode {
        FalcoWorkload::Deployment => {
            out.add(Object::Deployment(Deployment {
                metadata,
                spec: DeploymentSpec {
                    replicas: Some(1),
                    selector,
                    template,
                    ..DeploymentSpec::default()
                },
                status: None,
            }));
            out.prune("DaemonSet", &name);
        }
        FalcoWorkload::DaemonSet => {
            out.add(Object::DaemonSet(DaemonSet {
                metadata,
                spec: DaemonSetSpec {
                    selector,
                    template,
                    ..DaemonSetSpec::default()
                },
                status: None,
            }));
            out.prune("Deployment", &name);
        }
    }
}
