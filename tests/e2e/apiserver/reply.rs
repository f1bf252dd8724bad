//! HTTP responses of the test API server: JSON bodies, `Status` errors shaped like the real
//! server's, and the body type shared by whole and streamed (watch) responses.
//!
//! Invariant: every error the server answers is a `metav1.Status` JSON object with `code` equal
//! to the HTTP status, so kube-rs surfaces it as `Error::Api` with the right reason.

use std::io;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

/// The body of every response.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// A 200 response with a JSON body.
pub fn json_ok(value: &Value) -> Response<Body> {
    json_response(StatusCode::OK, value)
}

/// A `Status` failure with the given HTTP code, `reason` and message.
pub fn status_error(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &status_object(code.as_u16(), reason, message))
}

/// A response carrying a `Status` object, with its `code` as the HTTP status.
pub fn status_response(status: &Value) -> Response<Body> {
    let code = status["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, status)
}

/// 400 BadRequest.
pub fn bad_request(message: &str) -> Response<Body> {
    status_error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// 404 NotFound.
pub fn not_found(message: &str) -> Response<Body> {
    status_error(StatusCode::NOT_FOUND, "NotFound", message)
}

/// 429 TooManyRequests with `Retry-After` (header and `details.retryAfterSeconds`), as the API
/// server's priority and fairness answers a client over its share.
pub fn throttled(retry_after_secs: u64) -> Response<Body> {
    let message = "too many requests, please try again later (injected)";
    let mut status = status_object(429, "TooManyRequests", message);
    status["details"] = json!({ "retryAfterSeconds": retry_after_secs });
    let mut response = status_response(&status);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// A `metav1.Status` object describing a failure.
pub fn status_object(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// The Status a watch or list gets for a resourceVersion older than retained history.
pub fn expired_status(requested: &str, oldest: u64) -> Value {
    let message = format!("too old resource version: {requested} ({oldest})");
    status_object(410, "Expired", &message)
}

/// A streamed response (watch) whose body is `body`.
pub fn streaming(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    let bytes = Bytes::from(value.to_string());
    let body = Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
