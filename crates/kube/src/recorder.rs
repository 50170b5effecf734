//! Records events through the API server, one object per (workload, vulnerability, reason)
//! ([`crate::events`]): created the first time; after that, a new notification naming the same
//! pair bumps the object's `series` (count and last time) and its notification mark, and the
//! notification it was last recorded for — replayed after a crash — changes nothing. The note,
//! like every other field the API server holds immutable on an event, is left as created.
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::PostParams;
use kube::{Api, Client};
use time::OffsetDateTime;

use crate::events::{self, Finding, Reporter, NOTIFICATION_ANNOTATION};
use crate::workloads::Workload;
use crate::KubeError;

/// Attempts at a read-modify-write of one event before giving up on conflicts.
const CONFLICT_ATTEMPTS: usize = 5;

/// What recording one finding did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A new event.
    Created,
    /// An existing event's series was bumped.
    Aggregated,
    /// The event already carries this notification's mark: nothing to do.
    AlreadyRecorded,
}

/// Records events as one reporter.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
}

fn api_error(what: String) -> impl FnOnce(kube::Error) -> KubeError {
    move |e| KubeError::Api {
        what,
        source: Box::new(e),
    }
}

fn is_status(e: &kube::Error, check: fn(&kube::core::Status) -> bool) -> bool {
    matches!(e, kube::Error::Api(s) if check(s))
}

/// A create answered "already exists". A create cannot conflict otherwise, so any 409 counts,
/// whatever its reason says (kube's `is_already_exists` wants the exact reason
/// `AlreadyExists`, which not every server spells so: kmock's emulator says
/// `Object Already Exists`).
fn already_exists(s: &kube::core::Status) -> bool {
    s.is_already_exists() || s.code == 409
}

/// Records findings (the consumer's view of a [`Recorder`]).
#[async_trait::async_trait]
pub trait Record: Send + Sync {
    /// Records `finding` on `workload` for notification `notification`.
    async fn record(
        &self,
        workload: &Workload,
        finding: &Finding,
        notification: &str,
    ) -> Result<Recorded, KubeError>;
}

#[async_trait::async_trait]
impl Record for Recorder {
    async fn record(
        &self,
        workload: &Workload,
        finding: &Finding,
        notification: &str,
    ) -> Result<Recorded, KubeError> {
        Recorder::record(self, workload, finding, notification).await
    }
}

impl Recorder {
    /// A recorder through `client`.
    pub fn new(client: Client, reporter: Reporter) -> Recorder {
        Recorder { client, reporter }
    }

    /// Records `finding` on `workload` for notification `notification`.
    pub async fn record(
        &self,
        workload: &Workload,
        finding: &Finding,
        notification: &str,
    ) -> Result<Recorded, KubeError> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &workload.namespace);
        let fresh = events::event(
            workload,
            finding,
            &self.reporter,
            notification,
            OffsetDateTime::now_utc(),
        );
        let name = events::event_name(workload, finding);
        let what = |doing: &str| format!("{doing} event {}/{name}", workload.namespace);
        for _ in 0..CONFLICT_ATTEMPTS {
            match api.create(&PostParams::default(), &fresh).await {
                Ok(_) => return Ok(Recorded::Created),
                Err(e) if is_status(&e, already_exists) => {}
                Err(e) => return Err(api_error(what("creating"))(e)),
            }
            let Some(mut existing) = api
                .get_opt(&name)
                .await
                .map_err(api_error(what("reading")))?
            else {
                // Deleted (expired) between the two calls: create it again.
                continue;
            };
            let annotations = existing.metadata.annotations.get_or_insert_default();
            if annotations.get(NOTIFICATION_ANNOTATION).map(String::as_str) == Some(notification) {
                return Ok(Recorded::AlreadyRecorded);
            }
            annotations.insert(NOTIFICATION_ANNOTATION.into(), notification.into());
            let count = existing.series.as_ref().map_or(1, |s| s.count) + 1;
            existing.series = Some(EventSeries {
                count,
                last_observed_time: fresh
                    .event_time
                    .clone()
                    .unwrap_or(MicroTime(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            });
            match api.replace(&name, &PostParams::default(), &existing).await {
                Ok(_) => return Ok(Recorded::Aggregated),
                // Another recorder changed it since it was read: read it again.
                Err(e) if is_status(&e, kube::core::Status::is_conflict) => continue,
                Err(e) if is_status(&e, kube::core::Status::is_not_found) => continue,
                Err(e) => return Err(api_error(what("updating"))(e)),
            }
        }
        Err(KubeError::Conflict(what("recording")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

    fn workload() -> Workload {
        crate::fixtures::workload("web")
    }

    fn finding() -> Finding {
        crate::fixtures::finding("DSA-5139-1")
    }

    fn recorder() -> (Recorder, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let reporter = Reporter::new("tocsin.dev/kube", "test").expect("a reporter");
        (
            Recorder::new(Client::new(service, "default"), reporter),
            handle,
        )
    }

    fn status(code: u16, reason: &str) -> Response<Body> {
        let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": reason, "reason": reason, "code": code});
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).expect("JSON")))
            .expect("a response")
    }

    fn ok(code: u16, body: &serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).expect("JSON")))
            .expect("a response")
    }

    /// Serves one request: checks its method and path, answers what `respond` makes of its
    /// JSON body (`null` when empty), and returns that body.
    async fn serve_with(
        handle: &mut Handle,
        method: &str,
        path: &str,
        respond: impl FnOnce(&serde_json::Value) -> Response<Body>,
    ) -> serde_json::Value {
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!((req.method().as_str(), req.uri().path()), (method, path));
        let bytes = req.into_body().collect_bytes().await.expect("a body");
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        send.send_response(respond(&body));
        body
    }

    async fn serve(
        handle: &mut Handle,
        method: &str,
        path: &str,
        response: Response<Body>,
    ) -> serde_json::Value {
        serve_with(handle, method, path, |_| response).await
    }

    fn existing(mark: &str, count: Option<i32>) -> serde_json::Value {
        let mut e = serde_json::to_value(events::event(
            &workload(),
            &finding(),
            &Reporter::new("tocsin.dev/kube", "test").expect("a reporter"),
            mark,
            OffsetDateTime::UNIX_EPOCH,
        ))
        .expect("JSON");
        e["metadata"]["resourceVersion"] = "7".into();
        if let Some(count) = count {
            e["series"] = serde_json::json!({"count": count,
                "lastObservedTime": "2026-01-01T00:00:00.000000Z"});
        }
        e
    }

    #[tokio::test]
    async fn a_new_pair_is_created() {
        let (rec, mut handle) = recorder();
        let task = tokio::spawn(async move { rec.record(&workload(), &finding(), "n-1").await });
        let sent = serve_with(&mut handle, "POST", EVENTS, |body| ok(201, body)).await;
        assert!(sent["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("image has vulnerability DSA-5139-1")));
        assert_eq!(
            sent["metadata"]["name"],
            events::event_name(&workload(), &finding())
        );
        assert_eq!(
            task.await.expect("joined").expect("recorded"),
            Recorded::Created
        );
    }

    #[tokio::test]
    async fn another_notification_bumps_the_series_and_the_same_one_adds_nothing() {
        let name = events::event_name(&workload(), &finding());
        let one = format!("{EVENTS}/{name}");

        let (rec, mut handle) = recorder();
        let task = tokio::spawn(async move { rec.record(&workload(), &finding(), "n-2").await });
        serve(&mut handle, "POST", EVENTS, status(409, "AlreadyExists")).await;
        serve(&mut handle, "GET", &one, ok(200, &existing("n-1", None))).await;
        let replaced = serve(&mut handle, "PUT", &one, ok(200, &existing("n-2", Some(2)))).await;
        assert_eq!(
            task.await.expect("joined").expect("recorded"),
            Recorded::Aggregated
        );
        assert_eq!(replaced["series"]["count"], 2);
        assert_eq!(
            replaced["metadata"]["annotations"][NOTIFICATION_ANNOTATION],
            "n-2"
        );
        assert_eq!(
            replaced["metadata"]["resourceVersion"], "7",
            "an optimistic update"
        );
        assert_eq!(
            replaced["note"],
            existing("n-1", None)["note"],
            "the note is immutable"
        );

        let (rec, mut handle) = recorder();
        let task = tokio::spawn(async move { rec.record(&workload(), &finding(), "n-2").await });
        serve(&mut handle, "POST", EVENTS, status(409, "AlreadyExists")).await;
        serve(&mut handle, "GET", &one, ok(200, &existing("n-2", Some(2)))).await;
        assert_eq!(
            task.await.expect("joined").expect("recorded"),
            Recorded::AlreadyRecorded
        );
    }

    /// Found against kmock's emulator, whose 409 says `Object Already Exists`: before, the
    /// notification failed on every retry.
    #[tokio::test]
    async fn any_409_on_create_means_it_exists() {
        let name = events::event_name(&workload(), &finding());
        let one = format!("{EVENTS}/{name}");
        let (rec, mut handle) = recorder();
        let task = tokio::spawn(async move { rec.record(&workload(), &finding(), "n-1").await });
        serve(
            &mut handle,
            "POST",
            EVENTS,
            status(409, "Object Already Exists"),
        )
        .await;
        serve(&mut handle, "GET", &one, ok(200, &existing("n-1", None))).await;
        assert_eq!(
            task.await.expect("joined").expect("recorded"),
            Recorded::AlreadyRecorded
        );
    }

    #[tokio::test]
    async fn a_conflicting_update_is_read_again() {
        let name = events::event_name(&workload(), &finding());
        let one = format!("{EVENTS}/{name}");
        let (rec, mut handle) = recorder();
        let task = tokio::spawn(async move { rec.record(&workload(), &finding(), "n-3").await });
        serve(&mut handle, "POST", EVENTS, status(409, "AlreadyExists")).await;
        serve(&mut handle, "GET", &one, ok(200, &existing("n-1", Some(2)))).await;
        serve(&mut handle, "PUT", &one, status(409, "Conflict")).await;
        serve(&mut handle, "POST", EVENTS, status(409, "AlreadyExists")).await;
        serve(&mut handle, "GET", &one, ok(200, &existing("n-2", Some(3)))).await;
        let replaced = serve(&mut handle, "PUT", &one, ok(200, &existing("n-3", Some(4)))).await;
        assert_eq!(
            task.await.expect("joined").expect("recorded"),
            Recorded::Aggregated
        );
        assert_eq!(replaced["series"]["count"], 4);
    }

    #[tokio::test]
    async fn other_api_errors_are_errors() {
        let (rec, mut handle) = recorder();
        let task = tokio::spawn(async move { rec.record(&workload(), &finding(), "n-1").await });
        serve(&mut handle, "POST", EVENTS, status(403, "Forbidden")).await;
        let err = task.await.expect("joined").expect_err("forbidden");
        assert!(
            err.to_string().contains("creating event shop/web."),
            "{err}"
        );
    }
}
