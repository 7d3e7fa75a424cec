//! A real control plane per test: etcd, kube-apiserver and (when asked) kube-controller-manager,
//! built from their Go modules by `tests/kube/build.sh` into `.tools/kube/bin`, started on
//! ephemeral ports with a temporary CA, and killed when the [`Cluster`] is dropped. There is no
//! kubelet and no scheduler: pods are created (and pass admission) but stay `Pending`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::pki::{CertFiles, Pki};
use crate::support::free_port;

/// How long a control-plane component may take to become ready (2 shared cores, cold caches).
pub const STARTUP: Duration = Duration::from_secs(180);

/// The programs of `tests/kube/build.sh`.
pub const PROGRAMS: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubectl",
    "helm",
];

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the built programs are.
#[derive(Clone, Debug)]
pub struct Bins {
    dir: PathBuf,
}

impl Bins {
    /// The path of one program.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The built programs (`KUBE_TESTS_BIN`, default `.tools/kube/bin`). When one is missing the
/// test is skipped with a message, and fails under `CI=true`.
pub fn bins() -> Option<Bins> {
    let dir = std::env::var_os("KUBE_TESTS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/kube/bin"));
    let missing: Vec<&str> = PROGRAMS
        .iter()
        .copied()
        .filter(|p| !dir.join(p).is_file())
        .collect();
    if missing.is_empty() {
        return Some(Bins { dir });
    }
    let msg = format!(
        "{} missing in {}: run tests/kube/build.sh (scripts/test does; the first build takes a while)",
        missing.join(", "),
        dir.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// One kube test at a time: each starts a control plane, and the machine has two cores.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A child process with its output in files, killed on drop (and its log tail printed when
/// the test is failing).
pub struct Proc {
    name: String,
    child: Option<Child>,
    /// Its stderr.
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr going to `<dir>/<name>.out` and `<dir>/<name>.log`.
    pub fn spawn(name: &str, dir: &Path, cmd: &mut Command) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = dir.join(format!("{name}.out"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&log).expect("stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    /// Panics with the log tail when it has exited.
    pub fn check_alive(&mut self) {
        if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
            panic!("{} exited ({st}):\n{}", self.name, self.log_tail(60));
        }
    }

    /// Its stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of its stderr.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, then waits up to `grace` for it to exit (SIGKILL after that).
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!(
                "---- {} (last lines of {}) ----\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            );
        }
        self.kill();
    }
}

/// The apiserver's audit settings.
#[derive(Clone, Debug)]
pub struct Audit {
    /// `--audit-policy-file`.
    pub policy: PathBuf,
    /// `--audit-webhook-config-file`.
    pub webhook_config: PathBuf,
    /// More `--audit-webhook-*` flags.
    pub flags: Vec<String>,
}

/// What to start.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Audit webhook settings; none by default.
    pub audit: Option<Audit>,
    /// Start kube-controller-manager too (deployments, replica sets, stateful sets, disruption
    /// budgets, garbage collection, namespaces, service accounts, role aggregation).
    pub controller_manager: bool,
    /// More kube-apiserver flags.
    pub apiserver_args: Vec<String>,
}

/// etcd, kube-apiserver and optionally kube-controller-manager, killed on drop.
pub struct Cluster {
    /// The programs.
    pub bins: Bins,
    /// The CA and keys.
    pub pki: Pki,
    /// The apiserver's port on 127.0.0.1.
    pub port: u16,
    /// The admin's kubeconfig (user `kaudit-admin`, group `system:masters`).
    pub admin: PathBuf,
    procs: Vec<Proc>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the control plane and waits until the apiserver's `/readyz` answers 200 (and,
    /// with the controller manager, until it created the `default` ServiceAccount).
    pub async fn start(bins: Bins, opts: Options) -> Cluster {
        crate::support::install_crypto_provider();
        // KUBE_TESTS_KEEP=1 keeps the directory (logs, kubeconfigs) for a look afterwards.
        let dir = tempfile::Builder::new()
            .prefix("kaudit-kube-")
            .disable_cleanup(std::env::var_os("KUBE_TESTS_KEEP").is_some())
            .tempdir()
            .expect("temp dir");
        let pki = Pki::new(&dir.path().join("pki"));
        let port = free_port();
        let mut c = Cluster {
            admin: dir.path().join("admin.kubeconfig"),
            bins,
            pki,
            port,
            procs: Vec::new(),
            dir,
        };
        let admin = c
            .pki
            .client("admin", "kaudit-admin", Some("system:masters"));
        c.write_kubeconfig(&c.admin, "kaudit-admin", &cert_user(&admin));
        let etcd = c.start_etcd().await;
        c.start_apiserver(etcd, &opts).await;
        if opts.controller_manager {
            c.start_controller_manager().await;
        }
        c
    }

    /// The temporary directory of this cluster (logs, kubeconfigs, certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    async fn start_etcd(&mut self) -> u16 {
        let client = free_port();
        let peer = free_port();
        let curl = format!("http://127.0.0.1:{client}");
        let purl = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new(self.bins.path("etcd"));
        cmd.arg("--name=etcd")
            .arg(format!("--data-dir={}", self.dir().join("etcd").display()))
            .arg(format!("--listen-client-urls={curl}"))
            .arg(format!("--advertise-client-urls={curl}"))
            .arg(format!("--listen-peer-urls={purl}"))
            .arg(format!("--initial-advertise-peer-urls={purl}"))
            .arg(format!("--initial-cluster=etcd={purl}"))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn");
        let p = Proc::spawn("etcd", self.dir.path(), &mut cmd);
        self.procs.push(p);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(r) = http.get(format!("{curl}/health")).send().await
                && r.status().is_success()
                && r.text().await.unwrap_or_default().contains("true")
            {
                return client;
            }
            self.procs[0].check_alive();
            assert!(Instant::now() < deadline, "etcd never became healthy");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn start_apiserver(&mut self, etcd: u16, opts: &Options) {
        let serving = self.pki.server(
            "apiserver",
            &[
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default.svc",
                "10.0.0.1",
            ],
        );
        let pki = &self.pki;
        let mut cmd = Command::new(self.bins.path("kube-apiserver"));
        cmd.arg(format!("--etcd-servers=http://127.0.0.1:{etcd}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={}", self.port))
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--tls-cert-file={}", serving.cert.display()))
            .arg(format!("--tls-private-key-file={}", serving.key.display()))
            .arg(format!("--client-ca-file={}", pki.ca.display()))
            .arg(format!(
                "--service-account-key-file={}",
                pki.sa_pub.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.sa_key.display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--authorization-mode=Node,RBAC")
            // Privileged pods are allowed so that creating one is what the rules see.
            .arg("--allow-privileged=true")
            .arg("--profiling=false")
            .arg(format!("--cert-dir={}", self.dir().join("certs").display()));
        cmd.args(&opts.apiserver_args);
        if let Some(a) = &opts.audit {
            cmd.arg(format!("--audit-policy-file={}", a.policy.display()))
                .arg(format!(
                    "--audit-webhook-config-file={}",
                    a.webhook_config.display()
                ))
                .args(&a.flags);
        }
        let p = Proc::spawn("kube-apiserver", self.dir.path(), &mut cmd);
        self.procs.push(p);
        let i = self.procs.len() - 1;
        let client = self.client(&self.admin).await;
        let deadline = Instant::now() + STARTUP;
        loop {
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("request");
            if client.request_text(req).await.is_ok() {
                return;
            }
            self.procs[i].check_alive();
            assert!(
                Instant::now() < deadline,
                "kube-apiserver never became ready:\n{}",
                self.procs[i].log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn start_controller_manager(&mut self) {
        let cert = self
            .pki
            .client("kcm", "system:kube-controller-manager", None);
        let kc = self.dir().join("kcm.kubeconfig");
        self.write_kubeconfig(&kc, "system:kube-controller-manager", &cert_user(&cert));
        let mut cmd = Command::new(self.bins.path("kube-controller-manager"));
        cmd.arg(format!("--kubeconfig={}", kc.display()))
            .arg("--secure-port=0")
            .arg("--leader-elect=false")
            .arg("--use-service-account-credentials=true")
            .arg(format!("--root-ca-file={}", self.pki.ca.display()))
            .arg(format!(
                "--service-account-private-key-file={}",
                self.pki.sa_key.display()
            ))
            .arg(
                "--controllers=deployment-controller,replicaset-controller,daemonset-controller,\
                 statefulset-controller,disruption-controller,garbage-collector-controller,namespace-controller,serviceaccount-controller,\
                 serviceaccount-token-controller,root-ca-certificate-publisher-controller,\
                 clusterrole-aggregation-controller",
            );
        let p = Proc::spawn("kube-controller-manager", self.dir.path(), &mut cmd);
        self.procs.push(p);
        let i = self.procs.len() - 1;
        // Ready once its service-account controller made the default namespace's account.
        let deadline = Instant::now() + STARTUP;
        loop {
            let out = self.kubectl(
                &self.admin,
                &["get", "serviceaccount", "default", "-n", "default"],
            );
            if out.status.success() {
                return;
            }
            self.procs[i].check_alive();
            assert!(
                Instant::now() < deadline,
                "kube-controller-manager never created the default ServiceAccount:\n{}",
                self.procs[i].log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Writes a kubeconfig for this cluster with `user_yaml` as the user's entry.
    pub fn write_kubeconfig(&self, path: &Path, user: &str, user_yaml: &str) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    \
             certificate-authority: {}\nusers:\n- name: {user:?}\n  user:\n{user_yaml}\ncontexts:\n- name: test\n  \
             context:\n    cluster: test\n    user: {user:?}\ncurrent-context: test\n",
            self.url(),
            self.pki.ca.display()
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }

    /// A kubeconfig for user `name` in group `group`, with a client certificate of the CA.
    pub fn user(&self, name: &str, group: Option<&str>) -> PathBuf {
        let cert = self.pki.client(&format!("user-{name}"), name, group);
        let path = self.dir().join(format!("{name}.kubeconfig"));
        self.write_kubeconfig(&path, name, &cert_user(&cert));
        path
    }

    /// A kubeconfig presenting a bearer token.
    pub fn token_user(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir().join(format!("{name}.kubeconfig"));
        self.write_kubeconfig(&path, name, &format!("    token: {token}"));
        path
    }

    /// `GET <path>` with no credentials at all (kubectl would prompt for a password); returns
    /// the status code.
    pub async fn anonymous_get(&self, path: &str) -> u16 {
        let ca = std::fs::read(&self.pki.ca).expect("CA");
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("CA cert")])
            .build()
            .expect("client");
        http.get(format!("{}{path}", self.url()))
            .send()
            .await
            .expect("anonymous request")
            .status()
            .as_u16()
    }

    /// A client from a kubeconfig file.
    pub async fn client(&self, kubeconfig: &Path) -> Client {
        crate::support::install_crypto_provider();
        let kc = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig");
        Client::try_from(cfg).expect("client")
    }

    /// Runs the built kubectl with `kubeconfig`.
    pub fn kubectl(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        self.kubectl_in(kubeconfig, args, None)
    }

    /// Runs kubectl with `stdin` as its standard input.
    pub fn kubectl_in(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(self.bins.path("kubectl"));
        cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(args)
            .env("HOME", self.dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().expect("spawn kubectl");
        if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
            w.write_all(data).expect("kubectl stdin");
        }
        child.wait_with_output().expect("kubectl")
    }

    /// Runs kubectl and returns its stdout; panics with its stderr when it fails.
    pub fn kubectl_ok(&self, kubeconfig: &Path, args: &[&str]) -> String {
        let out = self.kubectl(kubeconfig, args);
        check(&format!("kubectl {}", args.join(" ")), out)
    }

    /// As [`Cluster::kubectl_ok`], with standard input.
    pub fn kubectl_in_ok(&self, kubeconfig: &Path, args: &[&str], stdin: &[u8]) -> String {
        let out = self.kubectl_in(kubeconfig, args, Some(stdin));
        check(&format!("kubectl {}", args.join(" ")), out)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The controller manager and the apiserver before etcd.
        while let Some(mut p) = self.procs.pop() {
            if std::thread::panicking() {
                drop(p);
            } else {
                p.kill();
            }
        }
    }
}

/// The user entry of a kubeconfig for a client certificate.
fn cert_user(c: &CertFiles) -> String {
    format!(
        "    client-certificate: {}\n    client-key: {}",
        c.cert.display(),
        c.key.display()
    )
}

/// Stdout of a successful command; panics with its stderr otherwise.
pub fn check(what: &str, out: Output) -> String {
    if !out.status.success() {
        panic!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}
