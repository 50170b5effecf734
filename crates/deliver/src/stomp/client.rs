//! A small STOMP 1.2 client: one connection, driven by a task that owns the socket.
//!
//! The task multiplexes three things, so that callers never touch the socket:
//! - frames to send, each optionally waiting for its `RECEIPT` (the task adds the `receipt`
//!   header and answers the caller when the matching `receipt-id` arrives);
//! - frames from the server: `RECEIPT` completes its waiter, `MESSAGE` goes to the subscription
//!   it names, `ERROR` fails every waiter with the server's message and ends the connection
//!   (the server closes it after an ERROR anyway);
//! - heart-beats, negotiated at CONNECT (`max(cx, sy)` to send, `max(sx, cy)` to expect, each 0
//!   when either side says 0): an EOL is sent when nothing else was written for a period, and a
//!   server silent for twice its period is taken as dead.
//!
//! When the task ends (error, server close, heart-beat loss, [`StompConnection::disconnect`]),
//! every waiter gets the reason and [`StompConnection::is_open`] turns false.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::Framed;

use super::frame::{Frame, FrameError, Incoming, Outgoing, StompCodec};

/// What went wrong on a STOMP connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StompError {
    /// TCP or TLS could not be established.
    #[error("connecting to {server}: {message}")]
    Connect {
        /// `host:port`.
        server: String,
        /// The cause.
        message: String,
    },
    /// The server sent an ERROR frame.
    #[error("the broker answered ERROR: {message}{}", if .details.is_empty() { String::new() } else { format!(" ({})", .details) })]
    Server {
        /// The `message` header.
        message: String,
        /// The start of the body, which usually explains.
        details: String,
    },
    /// The server broke the protocol or the connection failed.
    #[error("STOMP connection failed: {0}")]
    Protocol(String),
    /// The connection is closed.
    #[error("STOMP connection closed: {0}")]
    Closed(String),
    /// No answer in time.
    #[error("no answer from the broker within {0:?}")]
    Timeout(Duration),
}

/// How to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// The CONNECT `host` header: the virtual host (RabbitMQ refuses names it does not know; `/`
    /// is its default vhost; ActiveMQ ignores the header).
    pub vhost: String,
    /// `login` and `passcode`.
    pub login: Option<(String, String)>,
    /// TLS, with the name to verify the server certificate against ([`ConnectOptions::host`]).
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    /// Heart-beats offered: (send every, want every); zero means none.
    pub heartbeat: (Duration, Duration),
    /// Time allowed for TCP, TLS and CONNECT/CONNECTED.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("vhost", &self.vhost)
            .field("login", &self.login.as_ref().map(|(l, _)| l))
            .field("tls", &self.tls.is_some())
            .field("heartbeat", &self.heartbeat)
            .finish()
    }
}

impl ConnectOptions {
    /// `host:port`, bracketing IPv6 addresses.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

type Waiter = oneshot::Sender<Result<(), StompError>>;

enum Command {
    /// Write a frame; answer once written, or once its receipt arrives when `receipt` is set.
    Send {
        frame: Frame,
        receipt: bool,
        done: Waiter,
    },
    Subscribe {
        id: String,
        messages: mpsc::UnboundedSender<Frame>,
    },
}

/// An open STOMP 1.2 connection.
#[derive(Debug)]
pub struct StompConnection {
    commands: mpsc::UnboundedSender<Command>,
    open: Arc<AtomicBool>,
    closed_reason: Arc<Mutex<Option<StompError>>>,
    server: String,
    next_id: AtomicU64,
    session: Option<String>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl StompConnection {
    /// Connects, sends CONNECT (STOMP 1.2 only) and waits for CONNECTED.
    pub async fn connect(opts: &ConnectOptions) -> Result<Self, StompError> {
        let server = opts.server();
        tokio::time::timeout(opts.connect_timeout, Self::connect_inner(opts, &server))
            .await
            .map_err(|_| StompError::Connect {
                server: server.clone(),
                message: format!("no CONNECTED within {:?}", opts.connect_timeout),
            })?
    }

    async fn connect_inner(opts: &ConnectOptions, server: &str) -> Result<Self, StompError> {
        let conn_err = |message: String| StompError::Connect {
            server: server.to_owned(),
            message,
        };
        let tcp = TcpStream::connect((opts.host.as_str(), opts.port))
            .await
            .map_err(|e| conn_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &opts.tls {
            None => Box::new(tcp),
            Some(cfg) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(opts.host.clone())
                    .map_err(|e| conn_err(format!("invalid TLS server name: {e}")))?;
                let stream = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| conn_err(format!("TLS handshake: {e}")))?;
                Box::new(stream)
            }
        };
        let mut framed = Framed::new(io, StompCodec::new());
        let (cx, cy) = opts.heartbeat;
        let mut connect = Frame::new("CONNECT")
            .header("accept-version", "1.2")
            .header("host", opts.vhost.clone())
            .header(
                "heart-beat",
                format!("{},{}", cx.as_millis(), cy.as_millis()),
            );
        if let Some((login, passcode)) = &opts.login {
            connect = connect
                .header("login", login.clone())
                .header("passcode", passcode.clone());
        }
        framed
            .send(Outgoing::Frame(connect))
            .await
            .map_err(|e| conn_err(e.to_string()))?;
        let connected = loop {
            match framed.next().await {
                Some(Ok(Incoming::Heartbeat)) => continue,
                Some(Ok(Incoming::Frame(f))) => break f,
                Some(Err(e)) => return Err(conn_err(e.to_string())),
                None => return Err(conn_err("closed before CONNECTED".into())),
            }
        };
        match connected.command.as_str() {
            "CONNECTED" => {}
            "ERROR" => return Err(server_error(&connected)),
            other => return Err(conn_err(format!("expected CONNECTED, got {other}"))),
        }
        if connected.get("version") != Some("1.2") {
            return Err(conn_err(format!(
                "the broker does not speak STOMP 1.2 (version {:?})",
                connected.get("version")
            )));
        }
        let (sx, sy) = parse_heartbeat(connected.get("heart-beat").unwrap_or("0,0"))
            .map_err(|e| conn_err(e.to_string()))?;
        let send_every = negotiate(cx, sy);
        let expect_every = negotiate(cy, sx);

        let (tx, rx) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicBool::new(true));
        let closed_reason = Arc::new(Mutex::new(None));
        let actor = Actor {
            framed,
            commands: rx,
            receipts: HashMap::new(),
            written: Vec::new(),
            subscriptions: HashMap::new(),
            send_every,
            expect_every,
            next_receipt: 0,
            disconnecting: false,
        };
        let (open2, reason2) = (open.clone(), closed_reason.clone());
        tokio::spawn(async move {
            let reason = actor.run().await;
            *reason2.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
            open2.store(false, Ordering::SeqCst);
        });
        Ok(StompConnection {
            commands: tx,
            open,
            closed_reason,
            server: server.to_owned(),
            next_id: AtomicU64::new(0),
            session: connected.get("session").map(str::to_owned),
        })
    }

    /// `host:port` of the broker.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The broker's session id, if it sent one.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Whether the connection is still usable.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst) && !self.commands.is_closed()
    }

    /// A connection-unique id (for transactions and subscriptions).
    pub fn unique_id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn closed(&self) -> StompError {
        self.closed_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| StompError::Closed("the connection task ended".into()))
    }

    async fn command(&self, frame: Frame, receipt: bool) -> Result<(), StompError> {
        let (done, wait) = oneshot::channel();
        self.commands
            .send(Command::Send {
                frame,
                receipt,
                done,
            })
            .map_err(|_| self.closed())?;
        match wait.await {
            Ok(r) => r,
            Err(_) => Err(self.closed()),
        }
    }

    /// Writes `frame` (no receipt): returns once it is on the wire.
    pub async fn send(&self, frame: Frame) -> Result<(), StompError> {
        self.command(frame, false).await
    }

    /// Writes `frame` with a `receipt` header and waits for the broker's RECEIPT.
    pub async fn send_with_receipt(&self, frame: Frame) -> Result<(), StompError> {
        self.command(frame, true).await
    }

    /// Subscribes to `destination` with `ack:auto`; MESSAGE frames arrive on the receiver.
    /// Waits for the broker's receipt, so that messages sent afterwards are seen.
    pub async fn subscribe(
        &self,
        destination: &str,
    ) -> Result<mpsc::UnboundedReceiver<Frame>, StompError> {
        let id = self.unique_id("sub");
        let (tx, rx) = mpsc::unbounded_channel();
        self.commands
            .send(Command::Subscribe {
                id: id.clone(),
                messages: tx,
            })
            .map_err(|_| self.closed())?;
        self.send_with_receipt(
            Frame::new("SUBSCRIBE")
                .header("id", id)
                .header("destination", destination)
                .header("ack", "auto"),
        )
        .await?;
        Ok(rx)
    }

    /// Sends DISCONNECT with a receipt (so that everything before it was processed) and closes.
    pub async fn disconnect(self) -> Result<(), StompError> {
        self.send_with_receipt(Frame::new("DISCONNECT")).await
    }
}

/// Turns an ERROR frame into an error carrying its message and the start of its body.
fn server_error(f: &Frame) -> StompError {
    let body = String::from_utf8_lossy(&f.body);
    let details: String = body.trim().chars().take(300).collect();
    StompError::Server {
        message: f.get("message").unwrap_or("(no message header)").to_owned(),
        details,
    }
}

/// `"cx,cy"` in milliseconds.
pub(crate) fn parse_heartbeat(v: &str) -> Result<(Duration, Duration), FrameError> {
    let bad = || FrameError::Malformed(format!("heart-beat header {v:?} is not \"<ms>,<ms>\""));
    let (a, b) = v.split_once(',').ok_or_else(bad)?;
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    Ok((Duration::from_millis(a), Duration::from_millis(b)))
}

/// The period one side uses: 0 when either side declines, else the larger wish.
pub(crate) fn negotiate(mine: Duration, theirs: Duration) -> Duration {
    if mine.is_zero() || theirs.is_zero() {
        Duration::ZERO
    } else {
        mine.max(theirs)
    }
}

struct Actor {
    framed: Framed<Box<dyn Io>, StompCodec>,
    commands: mpsc::UnboundedReceiver<Command>,
    receipts: HashMap<String, Waiter>,
    /// Waiters of frames sent without a receipt, answered once the frame is flushed.
    written: Vec<Waiter>,
    subscriptions: HashMap<String, mpsc::UnboundedSender<Frame>>,
    send_every: Duration,
    expect_every: Duration,
    next_receipt: u64,
    disconnecting: bool,
}

impl Actor {
    /// Runs until the connection ends; returns why, after failing every waiter with it.
    async fn run(mut self) -> StompError {
        let reason = self.pump().await;
        for (_, w) in self.receipts.drain() {
            let _ = w.send(Err(reason.clone()));
        }
        for w in self.written.drain(..) {
            let _ = w.send(Err(reason.clone()));
        }
        // Commands already queued get the same answer instead of a bare "closed".
        self.commands.close();
        while let Ok(cmd) = self.commands.try_recv() {
            if let Command::Send { done, .. } = cmd {
                let _ = done.send(Err(reason.clone()));
            }
        }
        reason
    }

    async fn pump(&mut self) -> StompError {
        let tick = [self.send_every, self.expect_every]
            .into_iter()
            .filter(|d| !d.is_zero())
            .min()
            .map(|d| d / 2)
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(10));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_write = Instant::now();
        let mut last_read = Instant::now();
        loop {
            tokio::select! {
                cmd = self.commands.recv() => {
                    let Some(cmd) = cmd else {
                        return StompError::Closed("the client dropped the connection".into());
                    };
                    match cmd {
                        Command::Subscribe { id, messages } => {
                            self.subscriptions.insert(id, messages);
                        }
                        Command::Send { mut frame, receipt, done } => {
                            let disconnect = frame.command == "DISCONNECT";
                            if receipt {
                                self.next_receipt += 1;
                                let id = format!("r-{}", self.next_receipt);
                                frame.headers.push(("receipt".into(), id.clone()));
                                self.receipts.insert(id, done);
                            } else {
                                self.written.push(done);
                            }
                            if let Err(e) = self.framed.send(Outgoing::Frame(frame)).await {
                                return StompError::Protocol(format!("writing a frame: {e}"));
                            }
                            last_write = Instant::now();
                            for w in self.written.drain(..) {
                                let _ = w.send(Ok(()));
                            }
                            self.disconnecting |= disconnect;
                        }
                    }
                }
                incoming = self.framed.next() => {
                    last_read = Instant::now();
                    match incoming {
                        None => return StompError::Closed("the broker closed the connection".into()),
                        Some(Err(e)) => return StompError::Protocol(e.to_string()),
                        Some(Ok(Incoming::Heartbeat)) => {}
                        Some(Ok(Incoming::Frame(f))) => match f.command.as_str() {
                            "RECEIPT" => {
                                let id = f.get("receipt-id").unwrap_or_default();
                                let Some(w) = self.receipts.remove(id) else {
                                    return StompError::Protocol(format!("RECEIPT for unknown receipt-id {id:?}"));
                                };
                                let _ = w.send(Ok(()));
                            }
                            "MESSAGE" => {
                                let sub = f.get("subscription").unwrap_or_default().to_owned();
                                match self.subscriptions.get(&sub) {
                                    // A receiver that went away only loses its own messages.
                                    Some(tx) => { let _ = tx.send(f); }
                                    None => return StompError::Protocol(format!("MESSAGE for unknown subscription {sub:?}")),
                                }
                            }
                            "ERROR" => {
                                let err = server_error(&f);
                                if let Some(w) = f.get("receipt-id").and_then(|id| self.receipts.remove(id)) {
                                    let _ = w.send(Err(err.clone()));
                                }
                                return err;
                            }
                            other => return StompError::Protocol(format!("unexpected {other} frame from the broker")),
                        },
                    }
                }
                _ = ticker.tick() => {
                    let now = Instant::now();
                    if !self.expect_every.is_zero() && now.duration_since(last_read) > self.expect_every * 2 {
                        return StompError::Protocol(format!(
                            "no data or heart-beat from the broker for {:?} (expected every {:?})",
                            now.duration_since(last_read), self.expect_every
                        ));
                    }
                    if !self.send_every.is_zero() && now.duration_since(last_write) >= self.send_every / 2 {
                        if let Err(e) = self.framed.send(Outgoing::Heartbeat).await {
                            return StompError::Protocol(format!("writing a heart-beat: {e}"));
                        }
                        last_write = now;
                    }
                }
            }
            // After DISCONNECT's RECEIPT the broker has processed everything and will close.
            if self.disconnecting && self.receipts.is_empty() {
                return StompError::Closed("disconnected".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_negotiation_follows_the_spec() {
        let s = Duration::from_secs;
        assert_eq!(negotiate(s(10), s(5)), s(10));
        assert_eq!(negotiate(s(5), s(10)), s(10));
        assert_eq!(negotiate(s(0), s(10)), s(0));
        assert_eq!(negotiate(s(10), s(0)), s(0));
        assert_eq!(
            parse_heartbeat("4000, 0").unwrap(),
            (Duration::from_millis(4000), Duration::ZERO)
        );
        assert!(parse_heartbeat("4000").is_err());
        assert!(parse_heartbeat("a,b").is_err());
    }
}
