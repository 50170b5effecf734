//! Clair's v4 notifier pull API (wire reference §2.5).
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tocsin_model::notification::{NotificationPage, PageInfo};
use uuid::Uuid;

use crate::{ApiError, AppState};

/// Page size when the client sends none (or 0, where Clair would answer 500).
pub const DEFAULT_PAGE_SIZE: u64 = 500;
/// Largest page a client may ask for.
pub const MAX_PAGE_SIZE: u64 = 10_000;
/// Clair's page media type, the default response type.
pub const PAGE_MEDIA_TYPE: &str = "application/vnd.clair.notification_page.v1+json";

/// Query parameters, kept as text so that parse failures get our own 400.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    page_size: Option<String>,
    next: Option<String>,
}

/// Encodes a page position as the UUID-shaped token Clair's clients expect.
pub fn encode_token(position: u64) -> String {
    Uuid::from_u64_pair(0, position).to_string()
}

/// Decodes a token made by [`encode_token`]: the hyphenated form only, as tokens are issued
/// (clients echo them unchanged).
pub fn decode_token(token: &str) -> Result<u64, ApiError> {
    if token.len() != 36 {
        return Err(ApiError::BadRequest(format!(
            "next token {token:?} is not a page token"
        )));
    }
    let u = Uuid::parse_str(token)
        .map_err(|_| ApiError::BadRequest(format!("next token {token:?} is not a page token")))?;
    match u.as_u64_pair() {
        (0, pos) => Ok(pos),
        _ => Err(ApiError::BadRequest(format!(
            "next token {token:?} was not issued by this server"
        ))),
    }
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id)
        .map_err(|_| ApiError::BadRequest(format!("notification id {id:?} is not a UUID")))
}

fn parse_page_size(raw: Option<&str>) -> Result<u64, ApiError> {
    let Some(raw) = raw.filter(|s| !s.is_empty()) else {
        return Ok(DEFAULT_PAGE_SIZE);
    };
    let n: i64 = raw
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("page_size {raw:?} is not an integer")))?;
    match n {
        n if n < 0 => Err(ApiError::BadRequest(format!("page_size {n} is negative"))),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n as u64 > MAX_PAGE_SIZE => Err(ApiError::BadRequest(format!(
            "page_size {n} exceeds the maximum of {MAX_PAGE_SIZE}"
        ))),
        n => Ok(n as u64),
    }
}

/// Picks the response type from `Accept`: Clair's media type by default, `application/json`
/// when asked, 415 when the client accepts neither.
fn negotiate(headers: &HeaderMap) -> Result<&'static str, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(PAGE_MEDIA_TYPE);
    };
    let mut json = false;
    for part in accept.split(',') {
        let media = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "" | "*/*" | "application/*" => return Ok(PAGE_MEDIA_TYPE),
            m if m == PAGE_MEDIA_TYPE => return Ok(PAGE_MEDIA_TYPE),
            "application/json" => json = true,
            _ => {}
        }
    }
    if json {
        Ok("application/json")
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "cannot produce {accept:?}; this endpoint serves {PAGE_MEDIA_TYPE} or application/json"
        )))
    }
}

/// `GET /notifier/api/v1/notification/{id}?page_size=N&next=TOKEN`
pub async fn get_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let size = parse_page_size(q.page_size.as_deref())?;
    let after = match q.next.as_deref().filter(|s| !s.is_empty()) {
        Some(t) => decode_token(t)?,
        None => 0,
    };
    let media = negotiate(&headers)?;
    let (notifications, next) = state
        .engine
        .store()
        .notification_page(id, after, size as usize)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("notification {id} not found")))?;
    let page = NotificationPage {
        page: PageInfo {
            size,
            next: next.map(encode_token),
        },
        notifications,
    };
    let body = serde_json::to_vec(&page).map_err(|e| ApiError::Internal(e.to_string()))?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, media)
        .body(Body::from(body))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `DELETE /notifier/api/v1/notification/{id}`: 200 with an empty body; 404 when unknown or
/// already deleted (Quay treats 404 as done; Clair's 500 made it retry).
pub async fn delete_set(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    if state
        .engine
        .store()
        .delete_notification_set(id, time::OffsetDateTime::now_utc())
        .await?
    {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError::NotFound(format!("notification {id} not found")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_look_like_uuids() {
        let t = encode_token(500);
        assert_eq!(t, "00000000-0000-0000-0000-0000000001f4");
        assert_eq!(decode_token(&t).unwrap(), 500);
        assert!(decode_token("nope").is_err());
        assert!(decode_token("000000000000000000000000000001f4").is_err());
        assert!(decode_token("{00000000-0000-0000-0000-0000000001f4}").is_err());
        assert!(decode_token(&Uuid::new_v4().to_string()).is_err());
    }

    #[test]
    fn page_size_rules() {
        assert_eq!(parse_page_size(None).unwrap(), 500);
        assert_eq!(parse_page_size(Some("0")).unwrap(), 500);
        assert_eq!(parse_page_size(Some("7")).unwrap(), 7);
        assert!(matches!(
            parse_page_size(Some("-1")),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_page_size(Some("x")),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_page_size(Some("10001")),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn negotiation() {
        let mut h = HeaderMap::new();
        assert_eq!(negotiate(&h).unwrap(), PAGE_MEDIA_TYPE);
        h.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert_eq!(negotiate(&h).unwrap(), "application/json");
        h.insert(header::ACCEPT, "text/html, */*;q=0.1".parse().unwrap());
        assert_eq!(negotiate(&h).unwrap(), PAGE_MEDIA_TYPE);
        h.insert(header::ACCEPT, "text/html".parse().unwrap());
        assert!(matches!(
            negotiate(&h),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }
}
