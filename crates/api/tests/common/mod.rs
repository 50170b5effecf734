//! Helpers shared by the HTTP-level tests: the shared data folder, an app over a fresh embedded
//! store, and one-call requests that return status, headers and body.
//!
//! Requests go through `tower::ServiceExt::oneshot` on the router itself rather than a socket:
//! the router is the whole application (middleware, fallbacks and body limits included), so this
//! exercises exactly what a listener would serve, without port allocation or client timeouts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use tempfile::TempDir;
pub use tocsin_api::Family;
use tocsin_api::{AppState, MetricsRenderer, TokenVerifier};
use tocsin_engine::{Engine, EngineConfig};
use tocsin_store::Store;
use tower::ServiceExt;

/// Largest request body the test apps accept (real snapshots are under 0.5 MiB).
pub const MAX_BODY: usize = 16 << 20;

#[allow(unused_imports)] // not every test binary that includes this module reads the data
pub use tocsin_testdata::dir as data;

/// An app over its own store; the temporary directory lives as long as the app.
pub struct TestApp {
    /// The router under test.
    pub router: Router,
    /// The engine behind it, for setting up state the HTTP API does not create.
    pub engine: Arc<Engine>,
    _dir: TempDir,
}

/// Options of [`TestApp::with`].
#[derive(Default)]
pub struct Options {
    /// Engine settings.
    pub engine: EngineConfig,
    /// Bearer-token verification.
    pub auth: Option<TokenVerifier>,
    /// Prometheus rendering.
    pub metrics: Option<MetricsRenderer>,
    /// Decompression bounds (`tocsin.limits`); `None` for the defaults.
    pub limits: Option<tocsin_api::Limits>,
}

impl TestApp {
    /// An app with default settings and no auth.
    pub async fn new() -> TestApp {
        TestApp::with(Options::default()).await
    }

    /// An app with the given settings.
    pub async fn with(o: Options) -> TestApp {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store: Arc<dyn Store> =
            Arc::new(tocsin_store_sqlite::SqliteStore::open(dir.path()).expect("open store"));
        let engine = Arc::new(Engine::open(store, o.engine).await.expect("open engine"));
        let router = tocsin_api::app(AppState {
            engine: Arc::clone(&engine),
            auth: o.auth,
            metrics: o.metrics,
            max_body: MAX_BODY,
            uploads: Default::default(),
            limits: o.limits.unwrap_or_default(),
            updaters: None,
            clair: None,
        });
        TestApp {
            router,
            engine,
            _dir: dir,
        }
    }

    /// The data directory of the app's store (to open a second "process" on it).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Sends one request.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router is infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("response body");
        Reply {
            status,
            headers,
            body: body.to_vec(),
        }
    }

    /// `method uri` with no body and no extra headers.
    pub async fn call(&self, method: Method, uri: &str) -> Reply {
        self.send(req(method, uri).body(Body::empty()).expect("request"))
            .await
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri).await
    }

    /// `PUT uri` with a body.
    pub async fn put(&self, uri: &str, body: impl Into<Body>) -> Reply {
        self.send(req(Method::PUT, uri).body(body.into()).expect("request"))
            .await
    }
}

/// A request builder.
pub fn req(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(uri)
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// The Content-Type header, or "".
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as JSON; panics with the body text when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: StatusCode) -> serde_json::Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        self.json()
    }

    /// Asserts a Clair error body: this status, this code, `application/json`, and a message.
    #[track_caller]
    pub fn expect_error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(self.status, status, "body: {}", self.text());
        assert_eq!(self.content_type(), "application/json", "{}", self.text());
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        let obj = v.as_object().expect("error body is an object");
        assert_eq!(obj.len(), 2, "only code and message: {v}");
        let message = v["message"].as_str().expect("message is a string");
        assert!(!message.is_empty(), "{v}");
        message.to_string()
    }
}

impl Reply {
    /// Asserts an error in the shape of `family` with this status (a gRPC status for
    /// [`Family::Grpc`], whose HTTP status is always 200), and returns its message.
    #[track_caller]
    pub fn expect_family_error(&self, family: Family, status: StatusCode) -> String {
        let header = |name: &str| {
            self.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        match family {
            Family::Clair => {
                let v = self.json();
                let code = v["code"].as_str().unwrap_or_default().to_string();
                let m = self.expect_error(status, &code);
                let known = [
                    "bad-request",
                    "unauthorized",
                    "not-found",
                    "method-not-allowed",
                    "too-many-requests",
                    "internal-error",
                ];
                assert!(known.contains(&code.as_str()), "{v}");
                m
            }
            Family::V2 => {
                assert_eq!(self.status, status, "body: {}", self.text());
                assert_eq!(self.content_type(), "application/json;charset=utf-8");
                assert_eq!(header("server"), "clair");
                let v = self.json();
                assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{v}");
                v["Error"]["Message"]
                    .as_str()
                    .unwrap_or_else(|| panic!("not a v2 error: {v}"))
                    .to_string()
            }
            Family::Gateway => {
                assert_eq!(self.status, status, "body: {}", self.text());
                assert_eq!(self.content_type(), "application/json");
                let v = self.json();
                assert!(v["code"].is_i64(), "{v}");
                assert_eq!(v["error"], v["message"], "{v}");
                v["message"]
                    .as_str()
                    .unwrap_or_else(|| panic!("not a gateway error: {v}"))
                    .to_string()
            }
            Family::Grpc => {
                assert_eq!(
                    self.status,
                    StatusCode::OK,
                    "gRPC errors travel as statuses"
                );
                assert_eq!(header("grpc-status"), grpc_code(status).to_string());
                header("grpc-message")
            }
        }
    }
}

/// The gRPC code tocsin answers for an HTTP error status outside the service.
pub fn grpc_code(status: StatusCode) -> i32 {
    match status {
        StatusCode::UNAUTHORIZED => 16,
        StatusCode::NOT_FOUND => 5,
        StatusCode::METHOD_NOT_ALLOWED => 12,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => 8,
        _ => 3,
    }
}

/// A request path for a route of the table: its parameters filled with well-formed values.
pub fn concrete(template: &str) -> String {
    template
        .replace("{id}", &uuid::Uuid::new_v4().to_string())
        .replace("{notification}", &uuid::Uuid::new_v4().to_string())
        .replace("{digest}", &digest_n(0xabc))
        .replace("{name}", "osv/none")
        .replace("{*method}", "GetNotification")
}

/// Snapshot files of an update sequence, oldest first.
pub fn snapshots(data: &Path, feed: &str) -> Vec<PathBuf> {
    let dir = data.join("updates").join(feed);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .collect();
    v.sort();
    v
}

/// Reads a file, naming it on failure.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A claircore IndexReport file re-keyed under another digest (the same real inventory as if it
/// were another image), as JSON bytes.
pub fn rekeyed_index_report(bytes: &[u8], digest: &str) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes).expect("IndexReport JSON");
    v["manifest_hash"] = serde_json::Value::String(digest.to_string());
    serde_json::to_vec(&v).expect("serialise")
}

/// A distinct, valid sha256 digest for index `i`.
pub fn digest_n(i: u64) -> String {
    format!("sha256:{:064x}", 0xd1_0000_0000u64 + i)
}

/// The jackson-databind buster IndexReport (old package versions, many Debian advisories).
pub const JACKSON: &str = "inventories/clair/indexreport-buster-jackson-databind.json";

/// An app with Clair v2's first-run behaviour (the first operation is a silent baseline), the
/// jackson inventory under `copies + 1` digests, and the first three Debian snapshots imported.
/// Returns the app and the operations processed after the baseline.
pub async fn legacy_fixture(
    data: &Path,
    copies: u64,
    engine: EngineConfig,
) -> (TestApp, Vec<uuid::Uuid>) {
    let app = TestApp::with(Options {
        engine: EngineConfig {
            first_update: tocsin_engine::FirstUpdate::Baseline,
            ..engine
        },
        ..Default::default()
    })
    .await;
    let jackson = read(&data.join(JACKSON));
    for i in 0..=copies {
        let d = digest_n(i);
        // Even copies carry an image label (for `legacy_layer_label`), odd ones none.
        let label = if i % 2 == 0 {
            format!("?label=image=registry.example/app:{i}")
        } else {
            String::new()
        };
        app.put(
            &format!("/api/v1/manifests/{d}{label}"),
            rekeyed_index_report(&jackson, &d),
        )
        .await
        .expect(axum::http::StatusCode::CREATED);
    }
    let mut ops = Vec::new();
    for (i, snap) in snapshots(data, "debian").iter().take(3).enumerate() {
        app.put("/api/v1/updaters/osv/debian/snapshot", read(snap))
            .await
            .expect(axum::http::StatusCode::CREATED);
        let op = processed_mark(&app, "osv/debian").await;
        if i == 0 {
            assert!(
                app.engine
                    .store()
                    .legacy_notifications(op)
                    .await
                    .unwrap()
                    .is_empty(),
                "the baseline operation creates no v2 notification"
            );
        } else {
            ops.push(op);
        }
    }
    // The real Debian sequence only adds advisories. An edited advisory (the same DSA with a new
    // summary: the old and the new version affect the same manifests) comes from the real
    // records of the advisories just notified, as a second updater's two snapshots.
    let store = app.engine.store();
    let cs = store.change_set(ops[0]).await.unwrap().unwrap();
    let ids: Vec<_> = cs
        .changes
        .iter()
        .filter(|c| !c.new_affected.is_empty())
        .filter_map(|c| c.new.clone())
        .take(2)
        .collect();
    let mut records = Vec::new();
    for (_, v) in store.vulnerabilities(&ids).await.unwrap() {
        let path = data.join("osv/debian").join(format!("{}.json", v.name));
        let rec: serde_json::Value = serde_json::from_slice(&read(&path)).unwrap();
        records.push(rec);
    }
    let mut edited = records.clone();
    edited[0]["summary"] = format!("{} (revised)", edited[0]["summary"].as_str().unwrap()).into();
    for (i, snapshot) in [records, edited].into_iter().enumerate() {
        app.put(
            "/api/v1/updaters/osv/debian-edited/snapshot",
            serde_json::to_vec(&snapshot).unwrap(),
        )
        .await
        .expect(axum::http::StatusCode::CREATED);
        if i == 1 {
            ops.push(processed_mark(&app, "osv/debian-edited").await);
        }
    }
    (app, ops)
}

/// The updater's processed mark.
pub async fn processed_mark(app: &TestApp, updater: &str) -> uuid::Uuid {
    let info = app.engine.store().updaters().await.unwrap();
    info.iter()
        .find(|u| u.name == updater)
        .and_then(|u| u.processed)
        .unwrap_or_else(|| panic!("{updater} has a processed operation"))
}
