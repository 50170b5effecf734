//! The OSV mirror against a real HTTP client (reqwest): layout, conditional requests, faults,
//! HEAD, 404, the request log; and the churn of the shared update sequences.
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_LENGTH, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;
use tocsin_testdata::osv_mirror::{
    churn, normalise_modified, read_records, record_modified, update_steps, Fault, OsvMirror,
    Record, SLOW_BODY_CHUNK,
};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn header(r: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn record(id: &str, modified: &str, extra: &str) -> Record {
    let json = format!(r#"{{"id":"{id}","modified":"{modified}","summary":"{extra}"}}"#);
    (id.to_string(), json.into_bytes())
}

fn unzip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("all.zip opens");
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut e = zip.by_index(i).unwrap();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        assert!(
            out.insert(e.name().to_string(), b).is_none(),
            "duplicate entry"
        );
    }
    out
}

/// Checks every published file of `eco` against `records` over HTTP.
async fn check_layout(m: &OsvMirror, eco: &str, records: &[Record]) {
    let c = client();
    let base = m.base_url();

    // modified_id.csv: `<modified>,<id>`, one a record, newest first, ties by id.
    let r = c
        .get(format!("{base}/{eco}/modified_id.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csv = r.text().await.unwrap();
    assert!(csv.ends_with('\n'));
    let lines: Vec<(&str, &str)> = csv
        .lines()
        .map(|l| l.split_once(',').expect("a comma"))
        .collect();
    assert_eq!(lines.len(), records.len());
    for (m, id) in &lines {
        let b = m.as_bytes();
        assert_eq!(b.len(), 20, "{m}");
        assert!(
            m.ends_with('Z') && b[10] == b'T' && b[4] == b'-' && b[13] == b':',
            "{m}"
        );
        assert!(!id.is_empty() && !id.contains(','), "{id}");
        assert_eq!(normalise_modified(m).as_deref(), Some(*m));
    }
    for w in lines.windows(2) {
        assert!(
            w[0].0 > w[1].0 || (w[0].0 == w[1].0 && w[0].1 < w[1].1),
            "order: {w:?}"
        );
    }
    let by_id: BTreeMap<&str, &Vec<u8>> = records.iter().map(|(i, b)| (i.as_str(), b)).collect();
    for (m, id) in &lines {
        let bytes = by_id.get(id).expect("a published id");
        assert_eq!(record_modified(bytes).as_deref(), Some(*m), "{id}");
    }

    // all.zip: one flat `<ID>.json` entry a record, bytes unchanged.
    let r = c.get(format!("{base}/{eco}/all.zip")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, reqwest::header::CONTENT_TYPE), "application/zip");
    let zip = unzip(&r.bytes().await.unwrap());
    assert_eq!(zip.len(), records.len());
    for (id, bytes) in records {
        assert_eq!(zip.get(&format!("{id}.json")), Some(bytes), "{id}");
    }

    // Per-record files equal the archive's (the id percent-encoded where it holds a ':').
    for (id, bytes) in records {
        let path = format!("{eco}/{id}.json").replace(':', "%3A");
        let r = c.get(format!("{base}/{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, CONTENT_LENGTH), bytes.len().to_string());
        assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..], "{path}");
    }
}

#[tokio::test]
async fn crates_io_snapshot_in_the_osv_layout() {
    let steps = update_steps("crates.io");
    let Some(first) = steps.first() else { return };
    let m = OsvMirror::start().await.unwrap();
    let records = read_records(first).unwrap();
    let stats = m.publish_path("crates.io", first).unwrap();
    assert_eq!(stats.records, records.len());
    assert_eq!(stats.added, records.len());
    check_layout(&m, "crates.io", &records).await;

    // The root files of the bucket.
    let c = client();
    let eco = c
        .get(m.url("ecosystems.txt"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(eco, "crates.io\n");
    let root = c
        .get(m.url("/modified_id.csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(root.lines().count(), records.len());
    assert!(root.lines().all(|l| l.contains(",crates.io/RUSTSEC-")));
}

#[tokio::test]
async fn almalinux_ids_with_colons_and_a_folder_snapshot() {
    let steps = update_steps("almalinux9");
    let Some(last) = steps.last() else { return };
    let m = OsvMirror::start().await.unwrap();
    let records = read_records(last).unwrap();
    m.publish_path("AlmaLinux:9", last).unwrap();
    check_layout(&m, "AlmaLinux:9", &records).await;

    // A folder gives the same records as the archive it was taken from (osv/almalinux9 is the
    // same day as the last update step).
    let data = tocsin_testdata::dir().unwrap();
    let folder = read_records(&data.join("osv/almalinux9")).unwrap();
    assert_eq!(folder.len(), 1783);
    assert_eq!(folder.len(), records.len());
}

#[tokio::test]
async fn conditional_requests_and_republishing() {
    let steps = update_steps("crates.io");
    if steps.len() < 3 {
        return;
    }
    let m = OsvMirror::start().await.unwrap();
    let c = client();
    let zip_url = m.url("crates.io/all.zip");
    m.publish_path("crates.io", &steps[1]).unwrap();

    let r = c.get(&zip_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (etag1, lm1) = (header(&r, ETAG), header(&r, LAST_MODIFIED));
    assert!(
        etag1.starts_with('"') && etag1.ends_with('"') && etag1.len() == 34,
        "{etag1}"
    );
    assert!(lm1.ends_with(" GMT"), "{lm1}");
    let body1 = r.bytes().await.unwrap();
    assert_eq!(m.file("crates.io/all.zip").unwrap().etag, etag1);

    // If-None-Match (exact, in a list, weak, `*`) and If-Modified-Since → 304, no body.
    for inm in [
        etag1.clone(),
        format!("\"nope\", {etag1}"),
        format!("W/{etag1}"),
        "*".to_string(),
    ] {
        let r = c
            .get(&zip_url)
            .header(IF_NONE_MATCH, &inm)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{inm}");
        assert_eq!(header(&r, ETAG), etag1);
        assert!(r.bytes().await.unwrap().is_empty());
    }
    let r = c
        .get(&zip_url)
        .header(IF_MODIFIED_SINCE, &lm1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(r.bytes().await.unwrap().is_empty());
    // A non-matching tag wins over a matching date.
    let r = c
        .get(&zip_url)
        .header(IF_NONE_MATCH, "\"other\"")
        .header(IF_MODIFIED_SINCE, &lm1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Re-publishing the same snapshot changes nothing: same validators, still 304.
    let again = m.publish_path("crates.io", &steps[1]).unwrap();
    assert_eq!((again.added, again.changed, again.removed), (0, 0, 0));
    let r = c
        .get(&zip_url)
        .header(IF_MODIFIED_SINCE, &lm1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&r, LAST_MODIFIED), lm1);

    // The next step changes two records (01→02): all.zip and those files get 200, a new ETag
    // and a later Last-Modified; an unchanged record stays 304.
    let old = read_records(&steps[1]).unwrap();
    let new = read_records(&steps[2]).unwrap();
    let stats = m.publish_path("crates.io", &steps[2]).unwrap();
    assert_eq!((stats.added, stats.removed, stats.changed), (0, 0, 2));
    for (validator, value) in [(IF_NONE_MATCH, &etag1), (IF_MODIFIED_SINCE, &lm1)] {
        let r = c
            .get(&zip_url)
            .header(validator, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let etag2 = header(&r, ETAG);
        assert_ne!(etag2, etag1);
        let lm2 = header(&r, LAST_MODIFIED);
        assert_eq!(lm2, stats.last_modified);
        assert!(parse(&lm2) > parse(&lm1), "{lm2} after {lm1}");
        assert_ne!(r.bytes().await.unwrap(), body1);
    }
    let mut seen_changed = 0;
    for ((id, ob), (nid, nb)) in old.iter().zip(&new) {
        assert_eq!(id, nid);
        let url = m.url(&format!("crates.io/{id}.json"));
        let r = c
            .get(&url)
            .header(IF_MODIFIED_SINCE, &lm1)
            .send()
            .await
            .unwrap();
        if ob == nb {
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{id}");
        } else {
            seen_changed += 1;
            assert_eq!(r.status(), 200, "{id}");
            assert_eq!(&r.bytes().await.unwrap()[..], &nb[..]);
        }
    }
    assert_eq!(seen_changed, 2);
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → comparable (year, month, day, h, m, s).
fn parse(date: &str) -> (u32, u32, u32, String) {
    let p: Vec<&str> = date.split(' ').collect();
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == p[2])
    .unwrap() as u32;
    (
        p[3].parse().unwrap(),
        month,
        p[1].parse().unwrap(),
        p[4].to_string(),
    )
}

#[tokio::test]
async fn publishes_in_one_second_get_increasing_last_modified() {
    let m = OsvMirror::start().await.unwrap();
    let mut dates = Vec::new();
    for i in 0..4 {
        let s = m
            .publish_records(
                "PyPI",
                vec![record("PYSEC-1", "2024-01-01T00:00:00Z", &i.to_string())],
            )
            .unwrap();
        dates.push(s.last_modified);
    }
    for w in dates.windows(2) {
        assert!(parse(&w[1]) > parse(&w[0]), "{w:?}");
    }
    m.put_file("feed.json", b"[]".to_vec());
    let f = m.file("/feed.json").unwrap();
    assert!(parse(&f.last_modified) > parse(&dates[3]));
}

#[tokio::test]
async fn publish_replaces_the_snapshot() {
    let m = OsvMirror::start().await.unwrap();
    let c = client();
    m.publish_records(
        "crates.io",
        vec![
            record("A-1", "2024-07-30T14:43:15.999+02:00", "a"),
            record("B-1", "2024-01-01T00:00:00Z", "b"),
        ],
    )
    .unwrap();
    let csv = c
        .get(m.url("crates.io/modified_id.csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        csv, "2024-07-30T12:43:15Z,A-1\n2024-01-01T00:00:00Z,B-1\n",
        "UTC, whole seconds, newest first"
    );
    let stats = m
        .publish_records(
            "crates.io",
            vec![
                record("B-1", "2024-01-01T00:00:00Z", "b changed"),
                record("C-1", "2024-01-01T00:00:00Z", "c"),
                ("D-1".into(), b"not json".to_vec()),
            ],
        )
        .unwrap();
    assert_eq!(
        (
            stats.records,
            stats.added,
            stats.removed,
            stats.changed,
            stats.unchanged
        ),
        (3, 2, 1, 1, 0)
    );
    let gone = c.get(m.url("crates.io/A-1.json")).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    let csv = c
        .get(m.url("crates.io/modified_id.csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    // The record without a readable `modified` gets the publish time (newer than the others).
    assert_eq!(lines.len(), 3);
    assert!(lines[0].ends_with(",D-1"), "{csv}");
    // B-1 changed without a newer `modified`: listed at the publish's newest time (A-1's, which
    // was listed before), so a client following the list fetches it again.
    assert_eq!(
        &lines[1..],
        ["2024-07-30T12:43:15Z,B-1", "2024-01-01T00:00:00Z,C-1"]
    );
    let zip = unzip(
        &c.get(m.url("crates.io/all.zip"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    );
    assert_eq!(
        zip.keys().collect::<Vec<_>>(),
        ["B-1.json", "C-1.json", "D-1.json"]
    );
    assert_eq!(zip["D-1.json"], b"not json");

    // Errors: duplicate ids, bad ecosystem.
    assert!(m
        .publish_records(
            "x",
            vec![
                record("A", "2024-01-01T00:00:00Z", ""),
                record("A", "2024-01-01T00:00:00Z", "")
            ]
        )
        .is_err());
    assert!(m.publish_records("a/b", vec![]).is_err());
}

#[tokio::test]
async fn head_404_405_and_put_remove() {
    let m = OsvMirror::start().await.unwrap();
    let c = client();
    let body = vec![7u8; 10_000];
    m.put_file("/feeds/debian.tar.gz", body.clone());
    let r = c.head(m.url("feeds/debian.tar.gz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, CONTENT_LENGTH), "10000");
    assert_eq!(
        header(&r, reqwest::header::CONTENT_TYPE),
        "application/gzip"
    );
    assert!(!header(&r, ETAG).is_empty() && !header(&r, LAST_MODIFIED).is_empty());
    assert!(r.bytes().await.unwrap().is_empty());
    let etag = m.file("feeds/debian.tar.gz").unwrap().etag;
    let r = c
        .head(m.url("feeds/debian.tar.gz"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    let r = c.get(m.url("nothing/here.zip")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.post(m.url("feeds/debian.tar.gz")).send().await.unwrap();
    assert_eq!(r.status(), 405);

    m.remove("feeds/debian.tar.gz");
    let r = c.get(m.url("feeds/debian.tar.gz")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(m.paths().is_empty());
}

#[tokio::test]
async fn status_faults_count_down() {
    let m = OsvMirror::start().await.unwrap();
    let c = client();
    m.put_file("f.json", b"{}".to_vec());
    m.set_fault("f.json", Fault::Status(500, 2));
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            c.get(m.url("f.json"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(got, [500, 500, 200]);

    // `*` applies to every path, including unknown ones; an exact entry wins.
    m.set_fault("*", Fault::Status(503, 100));
    m.set_fault("f.json", Fault::Status(429, 1));
    assert_eq!(c.get(m.url("f.json")).send().await.unwrap().status(), 429);
    assert_eq!(c.get(m.url("f.json")).send().await.unwrap().status(), 503);
    assert_eq!(c.get(m.url("x")).send().await.unwrap().status(), 503);
    m.clear_faults();
    assert_eq!(c.get(m.url("f.json")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn drop_mid_body_fails_the_read() {
    let m = OsvMirror::start().await.unwrap();
    let c = client();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    m.put_file("big.zip", body.clone());
    m.set_fault_times("big.zip", Fault::DropMidBody, 1);

    let mut r = c.get(m.url("big.zip")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, CONTENT_LENGTH), "100000");
    let mut received = Vec::new();
    let err = loop {
        match r.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => panic!("body completed after {} bytes", received.len()),
            Err(e) => break e,
        }
    };
    assert!(
        err.is_body() || err.is_decode() || err.is_request(),
        "{err:?}"
    );
    // The server hands over exactly half (the log below); what reaches the client before the
    // close is at most that.
    assert!(received.len() <= 50_000, "{}", received.len());
    assert_eq!(received, body[..received.len()]);

    // Used up: the next read is whole.
    let r = c.get(m.url("big.zip")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap(), body);

    // Persistent with set_fault: `bytes()` fails every time.
    m.set_fault("big.zip", Fault::DropMidBody);
    for _ in 0..2 {
        let r = c.get(m.url("big.zip")).send().await.unwrap();
        assert!(r.bytes().await.is_err());
    }
    let log = m.requests();
    let dropped: Vec<_> = log
        .iter()
        .filter(|r| r.fault == Some(Fault::DropMidBody))
        .collect();
    assert_eq!(dropped.len(), 3);
    assert!(dropped
        .iter()
        .all(|r| r.body_bytes == 50_000 && r.status == 200));
}

#[tokio::test]
async fn truncate_serves_a_shorter_complete_body() {
    let steps = update_steps("debian");
    let Some(first) = steps.first() else { return };
    let m = OsvMirror::start().await.unwrap();
    let c = client();
    m.publish_path("Debian", first).unwrap();
    let full = m.file("Debian/all.zip").unwrap();
    m.set_fault("Debian/all.zip", Fault::Truncate(full.bytes.len() / 3));
    let r = c.get(m.url("Debian/all.zip")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, CONTENT_LENGTH),
        (full.bytes.len() / 3).to_string()
    );
    assert_eq!(header(&r, ETAG), full.etag, "validators of the full file");
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), full.bytes.len() / 3);
    assert_eq!(&body[..], &full.bytes[..body.len()]);
    assert!(zip::ZipArchive::new(std::io::Cursor::new(&body[..])).is_err());
    // HEAD and a 304 neither use nor show the fault.
    let r = c
        .get(m.url("Debian/all.zip"))
        .header(IF_NONE_MATCH, &full.etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // Truncate(N) beyond the size serves the whole file.
    m.set_fault("Debian/all.zip", Fault::Truncate(usize::MAX));
    let r = c.get(m.url("Debian/all.zip")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap(), full.bytes);
}

#[tokio::test]
async fn delay_exceeds_a_client_timeout() {
    let m = OsvMirror::start().await.unwrap();
    m.put_file("slow.json", b"{}".to_vec());
    m.set_fault("slow.json", Fault::Delay(Duration::from_millis(1500)));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let t = Instant::now();
    let err = impatient.get(m.url("slow.json")).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(t.elapsed() < Duration::from_millis(1400));

    // A patient client gets the normal response after the delay.
    let t = Instant::now();
    let r = client().get(m.url("slow.json")).send().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(1500));
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), &b"{}"[..]);
}

#[tokio::test]
async fn slow_body_trickles() {
    let m = OsvMirror::start().await.unwrap();
    let body = vec![1u8; SLOW_BODY_CHUNK * 3 + 10]; // 4 chunks, 3 pauses
    m.put_file("trickle.zip", body.clone());
    m.set_fault("trickle.zip", Fault::SlowBody(Duration::from_millis(200)));

    let t = Instant::now();
    let r = client().get(m.url("trickle.zip")).send().await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(600),
        "headers before the trickle ends"
    );
    assert_eq!(r.bytes().await.unwrap(), body);
    assert!(t.elapsed() >= Duration::from_millis(600), "three pauses");

    // A client whose total timeout is shorter than the trickle fails mid-body.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(350))
        .build()
        .unwrap();
    let r = impatient.get(m.url("trickle.zip")).send().await.unwrap();
    let err = r.bytes().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn request_log() {
    let m = OsvMirror::start().await.unwrap();
    let c = client();
    m.put_file("crates.io/all.zip", vec![0u8; 1234]);
    let etag = m.file("crates.io/all.zip").unwrap().etag;
    c.get(m.url("crates.io/all.zip")).send().await.unwrap();
    c.get(m.url("crates.io/all.zip"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    c.get(m.url("crates.io/all.zip"))
        .header(IF_MODIFIED_SINCE, "Sun, 06 Nov 1994 08:49:37 GMT")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    c.head(m.url("AlmaLinux%3A9/x.json?a=1"))
        .send()
        .await
        .unwrap();

    let log = m.requests();
    let summary: Vec<_> = log
        .iter()
        .map(|r| {
            (
                r.method.as_str(),
                r.path.as_str(),
                r.status,
                r.body_bytes,
                r.if_none_match.as_deref(),
                r.if_modified_since.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("GET", "/crates.io/all.zip", 200, 1234, None, None),
            (
                "GET",
                "/crates.io/all.zip",
                304,
                0,
                Some(etag.as_str()),
                None
            ),
            (
                "GET",
                "/crates.io/all.zip",
                200,
                1234,
                None,
                Some("Sun, 06 Nov 1994 08:49:37 GMT")
            ),
            ("HEAD", "/AlmaLinux:9/x.json", 404, 0, None, None),
        ]
    );
    assert_eq!(log[3].query.as_deref(), Some("a=1"));
    m.reset_log();
    assert!(m.requests().is_empty());
}

#[test]
fn synchronous_start_and_stop_on_drop() {
    let m = OsvMirror::start_blocking().unwrap();
    let addr = m.addr();
    std::net::TcpStream::connect(addr).expect("listening");
    drop(m);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "stopped on drop"
    );
}

/// The churn of crates.io's update sequence (the `update_churn` example prints all three):
/// two edits (RUSTSEC-2026-0152 lost and regained a reference, 04→05→06) kept their
/// `modified`, so an incremental fetch driven by `modified_id.csv` misses them.
#[test]
fn crates_io_churn() {
    let steps = update_steps("crates.io");
    if steps.is_empty() {
        return;
    }
    let snaps: Vec<Vec<Record>> = steps.iter().map(|s| read_records(s).unwrap()).collect();
    let cs: Vec<_> = snaps.windows(2).map(|w| churn(&w[0], &w[1])).collect();
    let sum = |f: fn(&tocsin_testdata::osv_mirror::Churn) -> usize| cs.iter().map(f).sum::<usize>();
    assert_eq!(sum(|c| c.added), 50);
    assert_eq!(sum(|c| c.removed), 0);
    assert_eq!(sum(|c| c.changed), 12);
    assert_eq!(sum(|c| c.changed_same_modified), 2);
    assert_eq!(sum(|c| c.added_not_newer), 0);
    assert_eq!(cs[4].changed_same_modified, 1);
    assert_eq!(cs[5].changed_same_modified, 1);
}
