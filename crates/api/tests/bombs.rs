//! Decompression bombs through the real router: `PUT /api/v1/updaters/{name}/snapshot` answers
//! 413 with Clair's error body naming the limit, and stores nothing; real snapshots still import
//! under the default limits.
mod common;

use std::io::{Read, Write};

use axum::http::StatusCode;
use common::*;
use tocsin_api::Limits;

const MIB: u64 = 1 << 20;
const SNAPSHOT: &str = "/api/v1/updaters/osv/bomb/snapshot";

/// A tar.gz of members `(name, size)`, each that many spaces.
fn tar_gz_of_spaces(members: &[(&str, u64)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, size) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(*size);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, std::io::repeat(b' ').take(*size))
            .expect("append");
    }
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish the tar.gz")
}

async fn app_with(limits: Limits) -> TestApp {
    TestApp::with(Options {
        limits: Some(limits),
        ..Default::default()
    })
    .await
}

async fn assert_nothing_stored(app: &TestApp) {
    assert_eq!(
        app.get("/api/v1/updaters").await.expect(StatusCode::OK),
        serde_json::json!({ "updaters": [], "clair": null }),
        "a refused snapshot stores nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_are_413_naming_the_limit_and_store_nothing() {
    let app = app_with(Limits {
        max_member_bytes: MIB,
        max_decompressed_bytes: 4 * MIB,
        max_archive_members: 100,
        max_manifest_import_bytes: 4 * MIB,
        max_yaml_bytes: 64 * 1024,
    })
    .await;

    // One member of spaces, 16× the member limit, in ~16 KiB.
    let bomb = tar_gz_of_spaces(&[("bomb.json", 16 * MIB)]);
    assert!(bomb.len() < 128 * 1024, "{}", bomb.len());
    let m = app
        .put(SNAPSHOT, bomb)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "bad-request");
    assert_eq!(
        m,
        "bomb.json: decompresses (or expands) to more than \
         tocsin.limits.max_member_bytes = 1048576 bytes (1 MiB); refused as a possible \
         decompression bomb (raise tocsin.limits.max_member_bytes in the configuration if this \
         input is genuine)"
    );
    // Members under the member limit, together over the total.
    let members: Vec<(String, u64)> = (0..8).map(|i| (format!("p{i}.txt"), MIB - 4096)).collect();
    let members: Vec<(&str, u64)> = members.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let m = app
        .put(SNAPSHOT, tar_gz_of_spaces(&members))
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "bad-request");
    assert!(
        m.contains("tocsin.limits.max_decompressed_bytes = 4194304 bytes"),
        "{m}"
    );
    // Too many members.
    let names: Vec<String> = (0..150).map(|i| format!("e{i}.txt")).collect();
    let members: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 0)).collect();
    let m = app
        .put(SNAPSHOT, tar_gz_of_spaces(&members))
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "bad-request");
    assert!(
        m.contains("tocsin.limits.max_archive_members = 100;"),
        "{m}"
    );
    assert_nothing_stored(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limits_stop_a_bomb_and_pass_the_real_feeds() {
    let app = TestApp::new().await;
    // Past the default member limit (32 MiB): refused from the member's header, unread.
    let bomb = tar_gz_of_spaces(&[("bomb.json", 40 * MIB)]);
    let m = app
        .put(SNAPSHOT, bomb)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "bad-request");
    assert!(
        m.contains("max_member_bytes = 33554432 bytes (32 MiB)"),
        "{m}"
    );
    // A zip whose entry inflates past the member limit, whatever it declares.
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .start_file("bomb.json", zip::write::SimpleFileOptions::default())
        .expect("start");
    let chunk = vec![b' '; MIB as usize];
    for _ in 0..33 {
        writer.write_all(&chunk).expect("write");
    }
    let zip = writer.finish().expect("finish").into_inner();
    let m = app
        .put(SNAPSHOT, zip)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "bad-request");
    assert!(m.starts_with("bomb.json: "), "{m}");
    assert_nothing_stored(&app).await;

    let Some(data) = data() else { return };
    for feed in ["debian", "almalinux9", "crates.io"] {
        // The largest of each series.
        let largest = snapshots(&data, feed)
            .into_iter()
            .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .expect("a snapshot");
        let v = app
            .put(
                &format!("/api/v1/updaters/osv/{feed}/snapshot"),
                read(&largest),
            )
            .await
            .expect(StatusCode::CREATED);
        assert_eq!(v["outcome"], "created", "{}: {v}", largest.display());
    }
}
