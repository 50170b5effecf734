//! A private RabbitMQ node for tests that must restart a broker or change its listeners: its own
//! node name, ports, data and log directories and (empty) plugin list, all in a temporary
//! directory, so that the shared broker on 5672/61613 that the other tests use in parallel is
//! never disturbed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to open its AMQP port (a cold boot takes ~10 s on 2 cores).
const BOOT_LIMIT: Duration = Duration::from_secs(90);

/// A RabbitMQ node run as a child process of the test.
pub struct PrivateNode {
    dir: tempfile::TempDir,
    /// The Erlang node name (`tocsin-test-<uuid>@localhost`).
    pub name: String,
    /// The plain AMQP port.
    pub port: u16,
    dist_port: u16,
    child: Option<Child>,
}

/// `name` from RabbitMQ's own script directory when present: the `/usr/sbin` wrappers switch to
/// the `rabbitmq` user, whose Erlang cookie differs from the one our node is started with.
fn tool_path(name: &str) -> Option<PathBuf> {
    let direct = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if direct.is_file() {
        return Some(direct);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn tool(name: &str) -> PathBuf {
    tool_path(name).unwrap_or_else(|| PathBuf::from(name))
}

/// A port nothing listens on now (the OS picks it; a race with another process is possible but
/// shows as a clear start-up failure, not a wrong result).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port on 127.0.0.1")
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

impl PrivateNode {
    /// A node whose `rabbitmq.conf` is `extra_conf` plus a plain listener on a free port; not
    /// started. `None` (with a message) when RabbitMQ is not installed, unless `CI=true`.
    pub fn new(extra_conf: &str) -> Option<Self> {
        // Only looked up, never run: `rabbitmq-server` has no harmless flag, any invocation
        // boots a node with the default name and ports.
        let installed = tool_path("rabbitmq-server").is_some();
        if !installed {
            let msg = "rabbitmq-server is not installed: cannot run a private node";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("skipping: {msg}");
            return None;
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let dist_port = free_port();
        std::fs::write(
            dir.path().join("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{port}\n{extra_conf}\n"),
        )
        .expect("write rabbitmq.conf");
        // No plugins: the shared node's STOMP plugin would try to take 61613 again.
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("write plugins");
        std::fs::write(dir.path().join("rabbitmq-env.conf"), "").expect("write env conf");
        Some(PrivateNode {
            dir,
            name: format!("tocsin-test-{}@localhost", uuid::Uuid::new_v4().simple()),
            port,
            dist_port,
            child: None,
        })
    }

    /// The temporary directory (for certificates and the like).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn env(&self, cmd: &mut Command) {
        let d = self.dir.path();
        cmd.env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", d.join("plugins-expand"))
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            // Erlang writes crash dumps to the working directory (the crate) by default.
            .env("ERL_CRASH_DUMP", d.join("erl_crash.dump"));
    }

    /// Starts the node in the foreground as a child and waits for its AMQP port. Panics with the
    /// tail of its output when it does not come up.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node already started");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.out"))
            .expect("server output file");
        let err = out.try_clone().expect("server output file");
        let mut cmd = Command::new(tool("rabbitmq-server"));
        self.env(&mut cmd);
        let mut child = cmd
            .stdout(out)
            .stderr(err)
            .stdin(Stdio::null())
            .spawn()
            .expect("rabbitmq-server starts");
        let started = Instant::now();
        while !port_open(self.port) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "private RabbitMQ node {} exited ({status}) before listening:\n{}",
                    self.name,
                    self.output_tail()
                );
            }
            if started.elapsed() > BOOT_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "private RabbitMQ node {} did not listen on {} within {BOOT_LIMIT:?}:\n{}",
                    self.name,
                    self.port,
                    self.output_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.child = Some(child);
    }

    /// Stops the node gracefully (`rabbitmqctl stop`), as an operator's restart does, and waits
    /// for the process to end; kills it if that fails.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let mut cmd = Command::new(tool("rabbitmqctl"));
        self.env(&mut cmd);
        let stopped = cmd
            .args(["-q", "-n", &self.name, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = child.kill();
        }
        let _ = child.wait();
        let started = Instant::now();
        while port_open(self.port) && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn output_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        self.stop();
    }
}
