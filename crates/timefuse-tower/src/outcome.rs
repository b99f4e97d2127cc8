//! How a context's end maps to gRPC codes and HTTP statuses.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use timefuse::Cause;

/// gRPC status code for a context that ended with `cause`: `DEADLINE_EXCEEDED` (4) for a
/// timeout, `UNAVAILABLE` (14) for a shutdown, `CANCELLED` (1) otherwise.
///
/// ```
/// use timefuse::Cause;
/// assert_eq!(timefuse_tower::grpc_code_for(&Cause::DeadlineExceeded), 4);
/// assert_eq!(timefuse_tower::grpc_code_for(&Cause::ClientGone), 1);
/// ```
pub fn grpc_code_for(cause: &Cause) -> u16 {
    match cause {
        Cause::DeadlineExceeded => 4,
        Cause::Shutdown => 14,
        _ => 1,
    }
}

/// HTTP status for a context that ended with `cause`: 504 for a timeout, 503 for a shutdown,
/// 499 (client closed request) otherwise.
///
/// ```
/// use timefuse::Cause;
/// assert_eq!(timefuse_tower::http_status_for(&Cause::DeadlineExceeded).as_u16(), 504);
/// ```
pub fn http_status_for(cause: &Cause) -> StatusCode {
    match cause {
        Cause::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Cause::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::from_u16(499).expect("499 is a valid status code"),
    }
}

/// A gRPC trailers-only response carrying `code` and `message`.
pub(crate) fn grpc_response(code: u16, message: &str) -> Response<Option<Bytes>> {
    let mut res = Response::new(None);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(message)) {
        h.insert("grpc-message", v);
    }
    res
}

/// An HTTP response with a small JSON body: `{"error": .., "request_id": ..}`.
pub(crate) fn http_response(
    status: StatusCode,
    error: &str,
    request_id: Option<&str>,
) -> Response<Option<Bytes>> {
    let body = match request_id {
        Some(id) => format!("{{\"error\":\"{error}\",\"request_id\":\"{id}\"}}"),
        None => format!("{{\"error\":\"{error}\"}}"),
    };
    let mut res = Response::new(Some(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// The short machine name of a cause for error bodies and logs.
pub(crate) fn cause_name(cause: &Cause) -> &'static str {
    match cause {
        Cause::DeadlineExceeded => "deadline_exceeded",
        Cause::ClientGone => "client_gone",
        Cause::Shutdown => "shutting_down",
        _ => "canceled",
    }
}

/// gRPC's percent-encoding for `grpc-message` (everything outside printable ASCII and `%`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
