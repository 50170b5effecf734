//! What a real `tocsin serve` does with oversized requests, over a socket: every refusal is
//! clean (a status, a JSON body where the router answers, the connection closed or usable) and
//! the server keeps serving. The router-level rules per route are in
//! crates/api/tests/surface.rs; this covers what only a listener shows (hyper's own head limit,
//! `Content-Length` refused before the body is sent, `tocsin.max_body_size` from the file).
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// Sends raw bytes and reads the answer until the server closes or 5 s pass.
fn exchange(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // The server may answer and close before it has read everything: a failed write is fine.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // One response is enough; stop at the end of a JSON body or an empty one.
                let text = String::from_utf8_lossy(&out);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    if len.is_some_and(|len| body.len() >= len) {
                        break;
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_cleanly_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_port();
    let config = dir.path().join("tocsin.yaml");
    std::fs::write(
        &config,
        format!(
            "http_listen_addr: 127.0.0.1:{port}\ntocsin:\n  data_dir: {:?}\n  max_body_size: 1MiB\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .expect("writing the configuration");
    let mut server = Server::start(&config, port, &dir.path().join("tocsin.log"), &[]);
    server.ready().await;
    let digest = format!("sha256:{}", "ab".repeat(32));

    let cases: Vec<(&str, Vec<u8>, &str, bool)> = vec![
        (
            "a request target over 16 KiB",
            format!(
                "GET /api/v1/manifests?after={} HTTP/1.1\r\nHost: t\r\n\r\n",
                "x".repeat(20 * 1024)
            )
            .into_bytes(),
            "HTTP/1.1 414",
            true,
        ),
        (
            "headers over 64 KiB",
            format!(
                "GET /api/v1/manifests HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n",
                "x".repeat(100 * 1024)
            )
            .into_bytes(),
            "HTTP/1.1 431",
            true,
        ),
        (
            "a request head over hyper's limit",
            format!(
                "GET /api/v1/manifests HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n",
                "x".repeat(1024 * 1024)
            )
            .into_bytes(),
            "HTTP/1.1 431",
            false,
        ),
        (
            "more header fields than hyper reads",
            format!(
                "GET /api/v1/manifests HTTP/1.1\r\nHost: t\r\n{}\r\n",
                (0..200).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
            )
            .into_bytes(),
            "HTTP/1.1 431",
            false,
        ),
        (
            "a Content-Length over max_body_size, before any body byte",
            format!(
                "PUT /api/v1/manifests/{digest} HTTP/1.1\r\nHost: t\r\nContent-Length: 10737418240\r\n\r\n"
            )
            .into_bytes(),
            "HTTP/1.1 413",
            true,
        ),
        (
            "a chunked body over max_body_size",
            {
                let mut r = b"PUT /api/v1/updaters/osv/x/snapshot HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec();
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..24 {
                    r.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    r.extend_from_slice(&chunk);
                    r.extend_from_slice(b"\r\n");
                }
                r.extend_from_slice(b"0\r\n\r\n");
                r
            },
            "HTTP/1.1 413",
            true,
        ),
    ];
    for (what, request, want, json) in cases {
        let answer = exchange(port, &request);
        assert!(
            status_line(&answer).starts_with(want),
            "{what}: {:?}",
            answer.chars().take(300).collect::<String>()
        );
        if json {
            let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            let v: serde_json::Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
            assert_eq!(v["code"], "bad-request", "{what}: {v}");
        }
        // Still serving.
        let answer = exchange(
            port,
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        assert!(
            status_line(&answer).starts_with("HTTP/1.1 200"),
            "after {what}: {answer}"
        );
    }
}
