//! A real `tocsin serve` process under test: started from the binary built beside this one, on
//! a free loopback port and a temporary data directory, watched through its HTTP API and
//! `/proc/<pid>/status`.
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

/// The `tocsin` binary next to this executable (both are built by one `cargo build`).
pub fn tocsin_binary() -> Result<PathBuf> {
    let me = std::env::current_exe().context("locating tocsin-bench")?;
    let dir = me
        .parent()
        .context("tocsin-bench has no parent directory")?;
    let bin = dir.join("tocsin");
    if !bin.is_file() {
        bail!(
            "{} not found: build it beside tocsin-bench (cargo build --release -p tocsin -p tocsin-bench)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A free port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// A running server.
pub struct Server {
    child: Child,
    /// Its base URL.
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    config: PathBuf,
}

impl Server {
    /// Starts `tocsin serve` with `extra` YAML appended to a configuration that listens on a
    /// free port, stores in `data_dir` and processes pending work every second.
    pub async fn start(data_dir: &Path, extra: &str) -> Result<Server> {
        let port = free_port()?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let config = data_dir.join("bench-config.yaml");
        let yaml = format!(
            "http_listen_addr: \"127.0.0.1:{port}\"\nlog_level: warn\ntocsin:\n  data_dir: {dir:?}\n  process_interval: 1s\n  max_body_size: 1073741824\n{extra}",
            dir = data_dir.display().to_string(),
        );
        std::fs::write(&config, yaml).with_context(|| format!("writing {}", config.display()))?;
        let mut s = Server {
            child: Self::spawn(&config)?,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            config,
        };
        s.wait_healthy(Duration::from_secs(600)).await?;
        Ok(s)
    }

    fn spawn(config: &Path) -> Result<Child> {
        Command::new(tocsin_binary()?)
            .arg("--config")
            .arg(config)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting tocsin serve")
    }

    /// Waits until `/healthz` answers; returns how long it took.
    pub async fn wait_healthy(&mut self, limit: Duration) -> Result<Duration> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("tocsin serve exited during start-up: {status}");
            }
            if let Ok(r) = client.get(format!("{}/healthz", self.url)).send().await {
                if r.status().is_success() {
                    return Ok(started.elapsed());
                }
            }
            if started.elapsed() > limit {
                bail!("tocsin serve did not become healthy within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the process (SIGTERM, then waits) and starts it again on the same configuration and
    /// data; returns the time until it was healthy again (the index rebuild from the store).
    pub async fn restart(&mut self) -> Result<Duration> {
        self.stop().await?;
        self.child = Self::spawn(&self.config)?;
        self.wait_healthy(Duration::from_secs(3600)).await
    }

    /// Stops the process gracefully.
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            // SAFETY-free: kill(1) is a plain process, not FFI.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(r) => {
                r.context("waiting for tocsin serve to stop")?;
            }
            Err(_) => {
                self.child.kill().await.ok();
            }
        }
        Ok(())
    }

    /// Resident memory of the process, in bytes.
    pub fn rss(&self) -> Result<u64> {
        let pid = self.child.id().context("the server is not running")?;
        rss_of(pid)
    }

    /// One gauge or counter from `/metrics` (the sum over its label sets).
    pub async fn metric(&self, name: &str) -> Result<f64> {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                let bare = key.split('{').next()?;
                (bare == name).then(|| value.parse::<f64>().ok()).flatten()
            })
            .sum())
    }
}

/// `VmRSS` of a process, in bytes.
pub fn rss_of(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kb * 1024)
}
