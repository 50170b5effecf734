//! What the consumer's HTTP calls to a notifier share: one client shape (timeouts), the PSK
//! bearer token, and answers read within a size bound.
use std::time::Duration;

use tocsin_deliver::jwt::PskSigner;

use crate::KubeError;

/// A client whose calls end within `timeout` (connecting within ten seconds at most).
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, KubeError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(|e| KubeError::Config(format!("an HTTP client: {e}")))
}

/// `b` with a fresh PSK token, when there is a signer.
pub(crate) fn signed(
    b: reqwest::RequestBuilder,
    signer: Option<&PskSigner>,
) -> Result<reqwest::RequestBuilder, KubeError> {
    Ok(match signer {
        Some(s) => {
            let token = s
                .sign()
                .map_err(|e| KubeError::Config(format!("signing a request: {e}")))?;
            b.bearer_auth(token)
        }
        None => b,
    })
}

/// The body of `resp` (the answer to `what`), refused past `limit` bytes.
pub(crate) async fn body(
    mut resp: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, KubeError> {
    let failed = |e: &dyn std::fmt::Display| KubeError::Notifier(format!("{what}: {e}"));
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| failed(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(failed(&format!("the answer is larger than {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
