//! `tocsin.limits` through the real binary: a decompression bomb PUT to `tocsin serve` is a 413
//! naming the limit and stores nothing; `feed import` and `manifest import` refuse bombs the same
//! way; real data still imports, gzip JSON Lines included.
mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::{
    client, get_json, put, put_ok, read, run_cli, shared_data, CliOutput, ConfigSpec, Server,
};
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// A configuration with small limits (so that bombs of a few MiB cross them).
fn config(work: &Path, port: u16) -> PathBuf {
    let mut yaml = ConfigSpec::new(port, &work.join("data")).yaml();
    yaml.push_str(
        "  limits:\n    max_member_bytes: 1MiB\n    max_decompressed_bytes: 64MiB\n    max_archive_members: 10000\n    max_manifest_import_bytes: 4MiB\n    max_yaml_bytes: 64KiB\n",
    );
    let path = work.join("tocsin.yaml");
    std::fs::write(&path, yaml).expect("writing the configuration");
    path
}

/// One tar.gz member of `size` spaces named `name`: 16 MiB of them compress to ~16 KiB.
fn tar_gz_of_spaces(name: &str, size: u64) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, name, std::io::repeat(b' ').take(size))
        .expect("append");
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish the tar.gz")
}

fn gzip(data: impl Read) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut data = data;
    std::io::copy(&mut data, &mut gz).expect("gzip");
    gz.finish().expect("gzip")
}

fn cli(config: &Path, args: &[&str]) -> CliOutput {
    let config = config.to_str().expect("UTF-8 path");
    let mut all = vec!["--config", config];
    all.extend_from_slice(args);
    run_cli(&all)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_bomb_is_a_413_and_stores_nothing() {
    let work = tempfile::tempdir().expect("temporary directory");
    let port = common::free_port();
    let cfg = config(work.path(), port);
    let mut server = Server::start(&cfg, port, &work.path().join("tocsin.log"), &[]);
    server.ready().await;
    let http = client();
    let base = server.base.clone();
    let url = format!("{base}/api/v1/updaters/osv/bomb/snapshot");

    let bomb = tar_gz_of_spaces("bomb.json", 16 * MIB);
    let (status, body) = put(&http, &url, bomb).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "bad-request", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("bomb.json")
            && message.contains("tocsin.limits.max_member_bytes = 1048576 bytes (1 MiB)"),
        "{message}"
    );
    assert_eq!(
        get_json(&http, &format!("{base}/api/v1/updaters")).await,
        serde_json::json!({ "updaters": [], "clair": null }),
        "a refused snapshot stores nothing"
    );

    // The limits apply to what is bombed, not to real feeds.
    let Some(data) = shared_data() else { return };
    let real = read(&data.join("updates/crates.io/00-20260731T121131-e046f255a.tar.gz"));
    let v = put_ok(
        &http,
        &format!("{base}/api/v1/updaters/osv/crates.io/snapshot"),
        real,
    )
    .await;
    assert_eq!(v["outcome"], "created", "{v}");
}

#[test]
fn feed_import_refuses_a_bomb() {
    let work = tempfile::tempdir().expect("temporary directory");
    let cfg = config(work.path(), common::free_port());
    let bomb = work.path().join("bomb.tar.gz");
    std::fs::write(&bomb, tar_gz_of_spaces("crates/bomb.json", 16 * MIB)).expect("write");
    let err = cli(&cfg, &["feed", "import", "osv/bomb", path(&bomb)]).failure();
    assert!(
        err.contains("crates/bomb.json") && err.contains("raise tocsin.limits.max_member_bytes"),
        "{err}"
    );
    let listed = cli(&cfg, &["feed", "list"]).success();
    assert!(listed.trim().is_empty(), "{listed}");
}

/// A real IndexReport per line, under distinct digests.
fn fleet(data: &Path, n: u64) -> Vec<u8> {
    let template: Value = serde_json::from_slice(&read(
        &data.join("inventories/clair/docker.io-library-debian-10.index.json"),
    ))
    .expect("IndexReport JSON");
    let mut out = Vec::new();
    for i in 0..n {
        let (_, line) = common::index_report_copy(&template, 1000 + i);
        out.extend(line);
        out.push(b'\n');
    }
    out
}

#[test]
fn manifest_import_bounds_lines_and_gzip_streams() {
    let work = tempfile::tempdir().expect("temporary directory");
    let cfg = config(work.path(), common::free_port());

    // One "line" of 8 MiB of spaces without a newline, gzipped to a few KiB.
    let long_line = work.path().join("line.jsonl.gz");
    std::fs::write(&long_line, gzip(std::io::repeat(b' ').take(8 * MIB))).expect("write");
    let err = cli(&cfg, &["manifest", "import", path(&long_line)]).failure();
    assert!(
        err.contains("line 1") && err.contains("tocsin.limits.max_member_bytes = 1048576 bytes"),
        "{err}"
    );
    // 8 MiB of empty lines: every line is short, the stream is not.
    let newlines = work.path().join("newlines.jsonl.gz");
    std::fs::write(&newlines, gzip(std::io::repeat(b'\n').take(8 * MIB))).expect("write");
    let err = cli(&cfg, &["manifest", "import", path(&newlines)]).failure();
    assert!(
        err.contains("tocsin.limits.max_manifest_import_bytes = 4194304 bytes (4 MiB)"),
        "{err}"
    );
    let listed = cli(&cfg, &["manifest", "list"]).success();
    assert_eq!(listed.lines().count(), 1, "only the header: {listed}");

    // Real IndexReports, gzipped and plain, import under the same limits; a bomb line after
    // good ones imports nothing.
    let Some(data) = shared_data() else { return };
    let good = fleet(&data, 3);
    let mut bombed = good.clone();
    bombed.extend(std::iter::repeat_n(b' ', 2 * MIB as usize));
    let bombed_path = work.path().join("bombed.jsonl.gz");
    std::fs::write(&bombed_path, gzip(bombed.as_slice())).expect("write");
    let err = cli(&cfg, &["manifest", "import", path(&bombed_path)]).failure();
    assert!(err.contains("line 4"), "{err}");
    let listed = cli(&cfg, &["manifest", "list"]).success();
    assert_eq!(listed.lines().count(), 1, "all or nothing: {listed}");

    let gz = work.path().join("fleet.jsonl.gz");
    std::fs::write(&gz, gzip(good.as_slice())).expect("write");
    let out = cli(&cfg, &["manifest", "import", path(&gz)]).success();
    assert!(out.contains("imported 3 manifests"), "{out}");
    let plain = work.path().join("fleet.jsonl");
    let mut f = std::fs::File::create(&plain).expect("create");
    f.write_all(&fleet(&data, 5)).expect("write");
    drop(f);
    let out = cli(&cfg, &["manifest", "import", path(&plain)]).success();
    assert!(out.contains("imported 5 manifests"), "{out}");
    let listed = cli(&cfg, &["manifest", "list"]).success();
    assert_eq!(listed.lines().count(), 1 + 5, "{listed}");
}
