//! Real servers for the sink tests, each on ephemeral ports in a temporary directory, waited
//! for (never a bare sleep), and killed with its process group on drop: rsyslog, Redis,
//! Mosquitto and RabbitMQ (Debian packages; `scripts/lib/deps.sh` installs them).

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::brokers::find_bin;
use crate::support::{PATIENCE, free_port};

/// A server process in its own process group, output in a log file.
pub struct Daemon {
    what: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd`, stdout and stderr to `log`.
    pub fn spawn(what: &'static str, cmd: &mut Command, log: PathBuf) -> Daemon {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        Daemon {
            what,
            child: Some(child),
            log,
        }
    }

    /// Panics with the log when the process has exited.
    pub fn check_alive(&mut self) {
        if let Some(Ok(Some(st))) = self.child.as_mut().map(Child::try_wait) {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("{} exited ({st}):\n{log}", self.what);
        }
    }

    /// Waits until `port` on 127.0.0.1 accepts TCP connections.
    pub async fn wait_port(&mut self, port: u16) {
        let start = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            self.check_alive();
            assert!(
                start.elapsed() < PATIENCE,
                "{} on port {port} never became ready",
                self.what
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILLs the process group and reaps the child.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .stderr(Stdio::null())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after [`PATIENCE`]).
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let start = Instant::now();
            while !matches!(c.try_wait(), Ok(Some(_))) {
                if start.elapsed() > PATIENCE {
                    let _ = c.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!(
                "---- {} log ----\n{}",
                self.what,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        self.kill();
    }
}

/// rsyslogd (`apt-get install rsyslog rsyslog-gnutls`).
pub fn rsyslogd_bin() -> Option<PathBuf> {
    find_bin(
        "rsyslogd",
        &[PathBuf::from("/usr/sbin/rsyslogd")],
        "scripts/test installs it, or: apt-get install rsyslog rsyslog-gnutls",
    )
}

/// TLS files of an rsyslog TLS listener that requires a client certificate of `ca`.
#[derive(Clone, Debug)]
pub struct SyslogTls {
    /// The CA.
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// rsyslogd listening on TCP (or TLS, octet-counted framing either way) and UDP, writing each
/// message it parsed as one line of `pri|version|timestamp|host|app|procid|msgid|sd|msg` to
/// `out.log`.
pub struct Rsyslog {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// The TCP (or TLS) port.
    pub tcp: u16,
    /// The UDP port.
    pub udp: u16,
    tls: Option<SyslogTls>,
    daemon: Option<Daemon>,
}

impl Rsyslog {
    /// Starts one, TLS with client certificates when `tls` is given, and waits for its TCP port.
    pub async fn start(bin: PathBuf, tls: Option<SyslogTls>) -> Rsyslog {
        let mut r = Rsyslog {
            bin,
            dir: tempfile::tempdir().expect("temp dir"),
            tcp: free_port(),
            udp: free_udp_port(),
            tls,
            daemon: None,
        };
        r.spawn().await;
        r
    }

    fn conf(&self) -> String {
        let d = self.dir.path().display();
        let (global_tls, imtcp) = match &self.tls {
            Some(t) => (
                format!(
                    "global(defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\")\n",
                    t.ca.display(),
                    t.cert.display(),
                    t.key.display()
                ),
                "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=\"x509/certvalid\")",
            ),
            None => (String::new(), "module(load=\"imtcp\")"),
        };
        format!(
            r#"global(workDirectory="{d}" maxMessageSize="64k")
{global_tls}{imtcp}
input(type="imtcp" port="{tcp}" address="127.0.0.1")
module(load="imudp")
input(type="imudp" port="{udp}" address="127.0.0.1")
template(name="fields" type="list") {{
  property(name="pri") constant(value="|")
  property(name="protocol-version") constant(value="|")
  property(name="timereported" dateFormat="rfc3339") constant(value="|")
  property(name="hostname") constant(value="|")
  property(name="app-name") constant(value="|")
  property(name="procid") constant(value="|")
  property(name="msgid") constant(value="|")
  property(name="structured-data") constant(value="|")
  property(name="msg") constant(value="\n")
}}
action(type="omfile" file="{d}/out.log" template="fields")
"#,
            tcp = self.tcp,
            udp = self.udp,
        )
    }

    async fn spawn(&mut self) {
        let conf = self.dir.path().join("rsyslog.conf");
        std::fs::write(&conf, self.conf()).expect("write rsyslog.conf");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(self.dir.path().join("rsyslogd.pid"));
        let mut d = Daemon::spawn("rsyslogd", &mut cmd, self.dir.path().join("rsyslogd.log"));
        d.wait_port(self.tcp).await;
        self.daemon = Some(d);
    }

    /// The lines written so far, split into their nine fields.
    pub fn messages(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.dir.path().join("out.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.splitn(9, '|').map(str::to_string).collect())
            .collect()
    }

    /// SIGKILLs it.
    pub fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill();
        }
    }

    /// Starts it again on the same ports and output file.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

/// A UDP port nothing is bound to right now.
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral UDP port");
    s.local_addr().expect("local addr").port()
}

/// redis-server (`apt-get install redis-server`).
pub fn redis_bin() -> Option<PathBuf> {
    find_bin(
        "redis-server",
        &[PathBuf::from("/usr/bin/redis-server")],
        "scripts/test installs it, or: apt-get install redis-server",
    )
}

/// A redis-server with a password and an fsync-always append-only file (a restart keeps every
/// entry), plain on `port` or TLS with client certificates.
pub struct RedisServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its port.
    pub port: u16,
    tls: Option<SyslogTls>,
    daemon: Option<Daemon>,
}

/// The password of the test Redis.
pub const REDIS_PASSWORD: &str = "redis-s3cret";

impl RedisServer {
    /// Starts one (TLS-only, client certificates required, when `tls` is given).
    pub async fn start(bin: PathBuf, tls: Option<SyslogTls>) -> RedisServer {
        let mut r = RedisServer {
            bin,
            dir: tempfile::tempdir().expect("temp dir"),
            port: free_port(),
            tls,
            daemon: None,
        };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--requirepass", REDIS_PASSWORD])
            .arg("--dir")
            .arg(self.dir.path());
        match &self.tls {
            Some(t) => {
                cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                    .arg("--tls-cert-file")
                    .arg(&t.cert)
                    .arg("--tls-key-file")
                    .arg(&t.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&t.ca)
                    .args(["--tls-auth-clients", "yes"]);
            }
            None => {
                cmd.args(["--port", &self.port.to_string()]);
            }
        }
        let mut d = Daemon::spawn("redis-server", &mut cmd, self.dir.path().join("redis.log"));
        d.wait_port(self.port).await;
        self.daemon = Some(d);
    }

    /// SIGKILLs it (the append-only file keeps what was acknowledged).
    pub fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill();
        }
    }

    /// Starts it again on the same port and data.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

/// mosquitto (`apt-get install mosquitto`).
pub fn mosquitto_bin() -> Option<PathBuf> {
    find_bin(
        "mosquitto",
        &[PathBuf::from("/usr/sbin/mosquitto")],
        "scripts/test installs it, or: apt-get install mosquitto",
    )
}

/// The test broker's user and password.
pub const MQTT_USER: (&str, &str) = ("kaudit", "mqtt-s3cret");

/// A Mosquitto broker with persistence (a SIGTERM saves sessions and queued messages), a
/// password file, a plain listener and, with `tls`, a TLS listener that requires a client
/// certificate.
pub struct Mosquitto {
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// The plain port.
    pub port: u16,
    /// The TLS port (when started with TLS).
    pub tls_port: u16,
    tls: Option<SyslogTls>,
    daemon: Option<Daemon>,
}

impl Mosquitto {
    /// Starts one and waits for its ports.
    pub async fn start(bin: PathBuf, tls: Option<SyslogTls>) -> Mosquitto {
        let dir = tempfile::tempdir().expect("temp dir");
        let passwd = dir.path().join("passwd");
        let st = Command::new("/usr/bin/mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwd)
            .args([MQTT_USER.0, MQTT_USER.1])
            .status()
            .expect("mosquitto_passwd");
        assert!(st.success(), "mosquitto_passwd failed");
        let mut m = Mosquitto {
            bin,
            dir,
            port: free_port(),
            tls_port: free_port(),
            tls,
            daemon: None,
        };
        m.spawn().await;
        m
    }

    async fn spawn(&mut self) {
        let d = self.dir.path();
        // `user root`: started as root, mosquitto would switch to its own user, which may not
        // write the temporary directory (no persistence file, no sessions after a restart);
        // the setting does nothing for a user who is not root.
        let mut conf = format!(
            "user root\nlog_dest file {}/broker.log\nlog_type all\npersistence true\npersistence_location {}/\nallow_anonymous false\npassword_file {}\nlistener {} 127.0.0.1\n",
            d.display(),
            d.display(),
            d.join("passwd").display(),
            self.port
        );
        if let Some(t) = &self.tls {
            conf.push_str(&format!(
                "listener {} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
                self.tls_port,
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            ));
        }
        let path = d.join("mosquitto.conf");
        std::fs::write(&path, conf).expect("write mosquitto.conf");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(&path);
        let mut dm = Daemon::spawn("mosquitto", &mut cmd, d.join("mosquitto.log"));
        dm.wait_port(self.port).await;
        if self.tls.is_some() {
            dm.wait_port(self.tls_port).await;
        }
        self.daemon = Some(dm);
    }

    /// Stops it with SIGTERM (it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.terminate();
        }
    }

    /// Starts it again with the same ports, users and saved state.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }
}

/// A TCP proxy on a fixed loopback port to `upstream`: [`Proxy::cut`] closes the port and
/// every connection through it (an outage, as the client sees it), [`Proxy::open`] listens
/// again on the same port.
pub struct Proxy {
    /// Its port.
    pub port: u16,
    upstream: u16,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    /// A proxy to `127.0.0.1:upstream`, open.
    pub async fn start(upstream: u16) -> Proxy {
        let mut p = Proxy {
            port: free_port(),
            upstream,
            tasks: Default::default(),
        };
        p.open().await;
        p
    }

    /// Listens (again) on its port.
    pub async fn open(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the proxy port");
        let upstream = self.upstream;
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let t = tokio::spawn(async move {
                    if let Ok(mut up) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                tasks.lock().expect("lock").push(t);
            }
        });
        self.tasks.lock().expect("lock").push(accept);
    }

    /// Closes the port and every connection through it.
    pub fn cut(&mut self) {
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// RabbitMQ's start script (`apt-get install rabbitmq-server`), run as the current user.
pub fn rabbitmq_bin() -> Option<PathBuf> {
    find_bin(
        "rabbitmq-server",
        &[PathBuf::from("/usr/lib/rabbitmq/bin/rabbitmq-server")],
        "scripts/test installs it, or: apt-get install rabbitmq-server",
    )
}

/// The test broker's user.
pub const RABBIT_USER: (&str, &str) = ("kaudit", "rabbit-s3cret");

/// The one RabbitMQ of a test run (it takes seconds to boot): plain AMQP on `port`, AMQPS with
/// client certificates on `tls_port`, user [`RABBIT_USER`]. It runs under a shell that holds
/// the read end of a pipe from this process and kills the broker (and its epmd) when the pipe
/// closes, that is when the test binary exits, however it exits.
pub struct Rabbit {
    /// AMQP port.
    pub port: u16,
    /// AMQPS port.
    pub tls_port: u16,
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A client certificate and key of that CA.
    pub client: (PathBuf, PathBuf),
    /// How long the broker took to accept AMQP connections.
    pub boot: Duration,
    _dir: tempfile::TempDir,
    _guard: std::sync::Mutex<std::process::ChildStdin>,
}

static RABBIT: tokio::sync::OnceCell<Option<Rabbit>> = tokio::sync::OnceCell::const_new();

/// The shared broker, started on first use; `None` when rabbitmq-server is missing (skipped).
pub async fn rabbit() -> Option<&'static Rabbit> {
    RABBIT
        .get_or_init(|| async {
            let bin = rabbitmq_bin()?;
            Some(Rabbit::boot(bin).await)
        })
        .await
        .as_ref()
}

impl Rabbit {
    async fn boot(bin: PathBuf) -> Rabbit {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let [ca, cert, key, client, client_key] = crate::support::write_pki(d);
        let (port, tls_port, dist, epmd) = (free_port(), free_port(), free_port(), free_port());
        std::fs::write(
            d.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.1 = 127.0.0.1:{port}\nlisteners.ssl.1 = 127.0.0.1:{tls_port}\n\
                 ssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = true\n\
                 default_user = {}\ndefault_pass = {}\nloopback_users = none\n",
                ca.display(),
                cert.display(),
                key.display(),
                RABBIT_USER.0,
                RABBIT_USER.1
            ),
        )
        .expect("rabbitmq.conf");
        std::fs::write(d.join("enabled_plugins"), "[].\n").expect("enabled_plugins");
        std::fs::write(d.join("rabbitmq-env.conf"), "").expect("rabbitmq-env.conf");
        // On EOF: stop epmd, remove the directory from outside the group, kill the group.
        let script = format!(
            "{} & read _; epmd -kill >/dev/null 2>&1; setsid sh -c 'sleep 2; rm -rf {}' & kill -KILL 0",
            bin.display(),
            d.display()
        );
        let start = Instant::now();
        let log = std::fs::File::create(d.join("rabbitmq.out")).expect("log");
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .env("HOME", d)
            .env("ERL_EPMD_PORT", epmd.to_string())
            .env("RABBITMQ_NODENAME", format!("kaudit{port}@localhost"))
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("rabbitmq.pid"))
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn rabbitmq-server");
        let stdin = child.stdin.take().expect("stdin");
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                let out = std::fs::read_to_string(d.join("rabbitmq.out")).unwrap_or_default();
                panic!("rabbitmq-server exited ({st}):\n{out}");
            }
            assert!(
                start.elapsed() < PATIENCE * 3,
                "rabbitmq-server never listened on {port}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let boot = start.elapsed();
        eprintln!("rabbitmq-server accepted AMQP after {boot:?}");
        // The child is reaped by nobody: the shell outlives this value only as long as the
        // test binary does.
        std::mem::forget(child);
        Rabbit {
            port,
            tls_port,
            ca,
            client: (client, client_key),
            boot,
            _dir: dir,
            _guard: std::sync::Mutex::new(stdin),
        }
    }

    /// An AMQP connection as the test user.
    pub async fn connect(&self) -> lapin::Connection {
        let uri = format!(
            "amqp://{}:{}@127.0.0.1:{}/%2f",
            RABBIT_USER.0, RABBIT_USER.1, self.port
        );
        lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
            .await
            .expect("AMQP connection")
    }
}
