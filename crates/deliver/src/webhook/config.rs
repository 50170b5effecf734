//! The webhook channel's configuration (Clair's `notifier.webhook` plus `auth.psk`).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Url;

use crate::jwt::PskKey;
use crate::{Callback, DeliverError};

/// Configuration of one webhook channel.
///
/// Built by the service's configuration layer (which parses Clair's YAML and Go durations); this
/// crate only validates it, when [`WebhookDeliverer::new`](super::WebhookDeliverer::new) is called.
/// `Debug` hides the URLs' passwords and the header values (they often carry credentials).
#[derive(Clone, PartialEq)]
pub struct WebhookConfig {
    /// The channel name: the key of this channel's outbox receipts. `webhook` for Clair's single
    /// webhook; distinct per subscription when several webhooks are configured.
    pub channel: String,
    /// Where to `POST` (`webhook.target`), an `http` or `https` URL.
    pub target: String,
    /// The base of callback URLs (`webhook.callback`), e.g.
    /// `http://notifier:6060/notifier/api/v1/notification`; a trailing `/` is ensured.
    pub callback: String,
    /// Extra headers (`webhook.headers`), each name with one or more values.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Bound on establishing the connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Bound on the whole exchange, connection and response body included.
    pub timeout: Duration,
    /// When set, every call carries `Authorization: Bearer <PSK JWT>` (`auth.psk.key`).
    pub psk: Option<PskKey>,
    /// The `User-Agent`, unless `headers` sets one.
    pub user_agent: String,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: BTreeMap<&String, usize> =
            self.headers.iter().map(|(k, v)| (k, v.len())).collect();
        f.debug_struct("WebhookConfig")
            .field("channel", &self.channel)
            .field("target", &crate::redact_url(&self.target))
            .field("callback", &crate::redact_url(&self.callback))
            .field("headers (values per name)", &headers)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("psk", &self.psk)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

impl WebhookConfig {
    /// A configuration with tocsin's defaults: channel `webhook`, no extra headers, no PSK,
    /// 5 s to connect, 30 s in all, `User-Agent: tocsin/<version>`.
    pub fn new(target: impl Into<String>, callback: impl Into<String>) -> Self {
        WebhookConfig {
            channel: "webhook".to_owned(),
            target: target.into(),
            callback: callback.into(),
            headers: BTreeMap::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            psk: None,
            user_agent: crate::USER_AGENT.to_owned(),
        }
    }

    /// Checks every field and returns the parsed pieces the deliverer uses.
    pub(crate) fn validate(&self) -> Result<Validated, DeliverError> {
        let bad = |field: &str, message: String| DeliverError::Config {
            channel: "webhook",
            field: format!("webhook.{field}"),
            message,
        };
        if self.channel.trim().is_empty() {
            return Err(bad("channel", "must not be empty".into()));
        }
        let target = parse_http_url(&self.target).map_err(|m| bad("target", m))?;
        parse_http_url(&self.callback).map_err(|m| bad("callback", m))?;
        if self.connect_timeout.is_zero() {
            return Err(bad("connect_timeout", "must be positive".into()));
        }
        if self.timeout.is_zero() {
            return Err(bad("timeout", "must be positive".into()));
        }
        let mut headers = HeaderMap::new();
        for (name, values) in &self.headers {
            let hname = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| bad(&format!("headers.{name}"), format!("bad header name: {e}")))?;
            for (i, value) in values.iter().enumerate() {
                let mut hvalue = HeaderValue::from_str(value).map_err(|e| {
                    bad(
                        &format!("headers.{name}[{i}]"),
                        format!("bad header value: {e}"),
                    )
                })?;
                // Configured values are often credentials: never shown, never HPACK-indexed.
                hvalue.set_sensitive(true);
                headers.append(hname.clone(), hvalue);
            }
        }
        let user_agent = HeaderValue::from_str(&self.user_agent)
            .map_err(|e| bad("user_agent", format!("bad header value: {e}")))?;
        Ok(Validated {
            target,
            callback: Callback::new(&self.callback),
            headers,
            user_agent,
        })
    }
}

/// The parsed form of a [`WebhookConfig`] (header values marked sensitive, so `Debug` hides
/// them).
pub(crate) struct Validated {
    pub(crate) target: Url,
    pub(crate) callback: Callback,
    pub(crate) headers: HeaderMap,
    pub(crate) user_agent: HeaderValue,
}

impl std::fmt::Debug for Validated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validated")
            .field("target", &crate::redact_url(self.target.as_str()))
            .field("callback", &self.callback)
            .field("headers", &self.headers)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

/// An http(s) URL with a host; errors show it with its password hidden.
fn parse_http_url(s: &str) -> Result<Url, String> {
    let shown = crate::redact_url(s);
    let url = Url::parse(s).map_err(|e| format!("{shown:?} is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err(format!("{shown:?} has no host")),
        other => Err(format!("{shown:?}: scheme {other:?} is not http or https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(c: &WebhookConfig) -> String {
        match c.validate() {
            Err(DeliverError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn valid_config_parses_headers_multi_valued() {
        let mut c = WebhookConfig::new("https://quay.example/secscan/notify", "http://n:6060/cb");
        c.headers
            .insert("X-Team".into(), vec!["a".into(), "b".into()]);
        let v = c.validate().unwrap();
        assert_eq!(v.target.as_str(), "https://quay.example/secscan/notify");
        assert_eq!(v.callback.base(), "http://n:6060/cb/");
        let vals: Vec<_> = v.headers.get_all("x-team").iter().collect();
        assert_eq!(vals, ["a", "b"]);
        assert_eq!(v.user_agent, crate::USER_AGENT);
    }

    #[test]
    fn errors_name_the_field() {
        let ok = WebhookConfig::new("http://t/", "http://c/");
        let mut c = ok.clone();
        c.target = "not a url".into();
        assert_eq!(field_of(&c), "webhook.target");
        c = ok.clone();
        c.target = "ftp://t/".into();
        assert_eq!(field_of(&c), "webhook.target");
        c = ok.clone();
        c.callback = "/relative".into();
        assert_eq!(field_of(&c), "webhook.callback");
        c = ok.clone();
        c.timeout = Duration::ZERO;
        assert_eq!(field_of(&c), "webhook.timeout");
        c = ok.clone();
        c.headers.insert("Bad Name".into(), vec!["v".into()]);
        assert_eq!(field_of(&c), "webhook.headers.Bad Name");
        c = ok.clone();
        c.headers
            .insert("X-Ok".into(), vec!["fine".into(), "line\nbreak".into()]);
        assert_eq!(field_of(&c), "webhook.headers.X-Ok[1]");
        c = ok;
        c.channel = " ".into();
        assert_eq!(field_of(&c), "webhook.channel");
    }
}
