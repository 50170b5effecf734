//! Wake-ups across processes: one dedicated connection `LISTEN`s on [`NOTIFY_CHANNEL`] and turns
//! notifications into [`StoreEvent`]s on a broadcast channel.
//!
//! Writers call `pg_notify` inside their transactions, so a notification is sent only when (and
//! after) the change commits. The connection is re-established with a growing pause when it
//! breaks (PostgreSQL restarted, network trouble); events sent meanwhile are lost, so each
//! reconnection is announced as [`StoreEvent::Resync`] and subscribers re-check.
use std::time::Duration;

use futures::StreamExt as _;
use tocsin_store::StoreEvent;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

use crate::schema::NOTIFY_CHANNEL;
use crate::tls::PgTls;

/// Decodes a notification payload (see the writers in `manifests`, `feeds`, `outbox`).
pub(crate) fn decode(payload: &str) -> Option<StoreEvent> {
    match payload.split_at_checked(1)? {
        ("m", "") => Some(StoreEvent::ManifestChanged),
        ("s", "") => Some(StoreEvent::SetCreated),
        ("i", updater) if !updater.is_empty() => {
            Some(StoreEvent::OperationImported(updater.to_string()))
        }
        _ => None,
    }
}

/// Listens until the task is aborted (when the store is dropped).
pub(crate) async fn run(
    config: tokio_postgres::Config,
    tls: PgTls,
    tx: broadcast::Sender<StoreEvent>,
) {
    let mut pause = Duration::from_millis(100);
    let mut ever_connected = false;
    loop {
        let mut connected = false;
        match listen_once(&config, &tls, &tx, ever_connected, &mut connected).await {
            Ok(()) => tracing::warn!("the store's notification connection closed; reconnecting"),
            Err(e) => tracing::warn!(
                error = %e,
                retry_in_ms = pause.as_millis() as u64,
                "the store's notification connection failed; reconnecting"
            ),
        }
        ever_connected |= connected;
        // A connection that worked starts the back-off afresh; repeated failures slow down.
        pause = match connected {
            true => Duration::from_millis(100),
            false => (pause * 2).min(Duration::from_secs(5)),
        };
        tokio::time::sleep(pause).await;
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &PgTls,
    tx: &broadcast::Sender<StoreEvent>,
    reconnecting: bool,
    connected: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    // The connection object must be polled for the client's requests to complete and to receive
    // notifications; the stream below does both.
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let sql = format!("LISTEN {NOTIFY_CHANNEL}");
    {
        let listen = client.batch_execute(&sql);
        futures::pin_mut!(listen);
        loop {
            tokio::select! {
                r = &mut listen => { r?; break; }
                m = messages.next() => match m {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                }
            }
        }
    }
    tracing::debug!("listening for store events");
    *connected = true;
    if reconnecting {
        // Whatever was announced while we were away is lost: tell subscribers to look again.
        let _ = tx.send(StoreEvent::Resync);
    }
    while let Some(m) = messages.next().await {
        match m? {
            AsyncMessage::Notification(n) => match decode(n.payload()) {
                // No subscriber is fine: events are hints.
                Some(e) => drop(tx.send(e)),
                None => tracing::debug!(payload = n.payload(), "unknown store event ignored"),
            },
            AsyncMessage::Notice(n) => tracing::debug!(notice = %n.message(), "server notice"),
            _ => {}
        }
    }
    drop(client);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_decode() {
        assert_eq!(decode("m"), Some(StoreEvent::ManifestChanged));
        assert_eq!(decode("s"), Some(StoreEvent::SetCreated));
        assert_eq!(
            decode("iosv/debian"),
            Some(StoreEvent::OperationImported("osv/debian".into()))
        );
        assert_eq!(decode("i"), None);
        assert_eq!(decode(""), None);
        assert_eq!(decode("mx"), None);
        assert_eq!(decode("é"), None);
    }
}
