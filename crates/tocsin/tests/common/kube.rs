//! The Kubernetes side of the `tocsin kube` tests: kmock's API emulator
//! (`tests/kube/emulator.py`, installed by `scripts/kmock.sh`) and a kubeconfig pointing at it.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::Killed;

/// Starts the emulator seeded with `objects`; returns it and its URL.
///
/// `skip` is called with the reason when kmock cannot be installed (it fails under `CI=true`).
pub fn emulator(dir: &Path, objects: &[Value], skip: fn(&str)) -> Option<(Killed, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("scripts/kmock.sh"))
        .output()
        .ok()?;
    if !out.status.success() {
        skip(&format!(
            "scripts/kmock.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let seed = dir.join("seed.json");
    std::fs::write(&seed, serde_json::to_vec(objects).expect("JSON")).expect("seed");
    let mut child = Command::new(python)
        .env("EMULATOR_EVENT_DELAY", "0.05")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kube/emulator.py"))
        .arg(&seed)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("emulator.log")).expect("log"))
        .spawn()
        .expect("starting the emulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the emulator's URL");
    assert!(
        line.starts_with("http://127.0.0.1:"),
        "emulator: {line:?}, log: {}",
        std::fs::read_to_string(dir.join("emulator.log")).unwrap_or_default()
    );
    Some((Killed(child), line.trim().to_string()))
}

/// A kubeconfig in `dir` for the emulator at `url`, without credentials.
pub fn kubeconfig(dir: &Path, url: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: emu, cluster: {{server: \"{url}\"}}}}]\n\
             users: [{{name: u, user: {{}}}}]\n\
             contexts: [{{name: emu, context: {{cluster: emu, user: u}}}}]\ncurrent-context: emu\n"
        ),
    )
    .expect("kubeconfig");
    path
}

/// Waits (a minute at most) until the consumer listening on `port` answers `/healthz`.
pub async fn healthy(port: u16) {
    let http = super::client();
    super::eventually(
        std::time::Duration::from_secs(60),
        "the consumer is up",
        || {
            let http = http.clone();
            async move {
                let r = http
                    .get(format!("http://127.0.0.1:{port}/healthz"))
                    .send()
                    .await
                    .ok()?;
                (r.status() == 200).then_some(())
            }
        },
    )
    .await;
}
