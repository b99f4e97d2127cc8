//! Request identity carried in a [`Context`](crate::Context): a request id and a W3C trace context.
//!
//! Both arrive from other hosts, so both parsers are total: any input gives a value or a
//! [`IdentityError`], never a panic.

use std::fmt;
use std::sync::Arc;

/// Longest request id accepted from the wire, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// Longest `tracestate` carried through, in bytes (W3C: 32 members; 512 is the common cap).
pub const MAX_TRACESTATE_LEN: usize = 512;

/// Why an identity header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// Empty value.
    Empty,
    /// Longer than the limit (the first field), in bytes (the second).
    TooLong(usize, usize),
    /// A byte outside the allowed set, at this offset.
    BadChar(usize),
    /// A `traceparent` that is not `version-traceid-parentid-flags`.
    Malformed(&'static str),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::Empty => f.write_str("empty value"),
            IdentityError::TooLong(max, got) => {
                write!(f, "{got} bytes, more than the limit of {max}")
            }
            IdentityError::BadChar(at) => write!(f, "byte {at} is outside the allowed characters"),
            IdentityError::Malformed(what) => write!(f, "malformed traceparent: {what}"),
        }
    }
}

impl std::error::Error for IdentityError {}

/// A request id: 1 to 128 bytes of `A-Z a-z 0-9 - _ . : @ / + =`.
///
/// The charset covers UUIDs, ULIDs, base64 and most vendor formats, and excludes everything that
/// could split a log line or a header (spaces, quotes, commas, control bytes).
///
/// ```
/// use timefuse::RequestId;
///
/// assert_eq!(RequestId::new("0192f3c4-7d2a-7b1e-9c4f-3a5b6c7d8e9f").unwrap().as_str().len(), 36);
/// assert!(RequestId::new("has space").is_err());
/// assert!(RequestId::new("").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// Validates `id` and wraps it.
    ///
    /// # Errors
    ///
    /// [`IdentityError`] when `id` is empty, longer than [`MAX_REQUEST_ID_LEN`] or has a byte
    /// outside the charset.
    pub fn new(id: &str) -> Result<RequestId, IdentityError> {
        Self::validate(id.as_bytes())?;
        Ok(RequestId(Arc::from(id)))
    }

    /// Checks raw header bytes against the request-id rules.
    ///
    /// # Errors
    ///
    /// As for [`RequestId::new`].
    pub fn validate(id: &[u8]) -> Result<(), IdentityError> {
        if id.is_empty() {
            return Err(IdentityError::Empty);
        }
        if id.len() > MAX_REQUEST_ID_LEN {
            return Err(IdentityError::TooLong(MAX_REQUEST_ID_LEN, id.len()));
        }
        match id.iter().position(|&b| !is_id_byte(b)) {
            Some(at) => Err(IdentityError::BadChar(at)),
            None => Ok(()),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@' | b'/' | b'+' | b'=')
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl std::str::FromStr for RequestId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RequestId::new(s)
    }
}

/// A W3C trace context (`traceparent` plus an opaque `tracestate`).
///
/// ```
/// use timefuse::TraceContext;
///
/// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let tc = TraceContext::parse(header, None).unwrap();
/// assert!(tc.sampled());
/// assert_eq!(tc.to_traceparent(), header);
/// assert!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
    state: Option<Arc<str>>,
}

impl TraceContext {
    /// A trace context from its parts (no `tracestate`).
    pub fn new(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> TraceContext {
        TraceContext {
            trace_id,
            parent_id,
            flags,
            state: None,
        }
    }

    /// Parses a `traceparent` header and, if given, keeps a `tracestate` of at most
    /// [`MAX_TRACESTATE_LEN`] bytes (a longer or non-ASCII one is dropped, as the W3C
    /// specification allows).
    ///
    /// Accepts version `00` exactly, and later versions by their first four fields (the
    /// specification's forward-compatibility rule); refuses version `ff`, upper-case hex, and
    /// all-zero ids.
    ///
    /// # Errors
    ///
    /// [`IdentityError::Malformed`] naming the first field that is wrong.
    pub fn parse(
        traceparent: &str,
        tracestate: Option<&str>,
    ) -> Result<TraceContext, IdentityError> {
        let b = traceparent.as_bytes();
        if b.len() < 55 {
            return Err(IdentityError::Malformed("shorter than 55 bytes"));
        }
        let version = hex_byte(&b[0..2]).ok_or(IdentityError::Malformed("version"))?;
        if version == 0xff {
            return Err(IdentityError::Malformed("version ff is invalid"));
        }
        if version == 0 && b.len() != 55 {
            return Err(IdentityError::Malformed(
                "version 00 must be exactly 55 bytes",
            ));
        }
        if version != 0 && b.len() > 55 && b[55] != b'-' {
            return Err(IdentityError::Malformed("fields after flags"));
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(IdentityError::Malformed("separators"));
        }
        let mut trace_id = [0u8; 16];
        for (i, out) in trace_id.iter_mut().enumerate() {
            *out =
                hex_byte(&b[3 + 2 * i..5 + 2 * i]).ok_or(IdentityError::Malformed("trace-id"))?;
        }
        let mut parent_id = [0u8; 8];
        for (i, out) in parent_id.iter_mut().enumerate() {
            *out = hex_byte(&b[36 + 2 * i..38 + 2 * i])
                .ok_or(IdentityError::Malformed("parent-id"))?;
        }
        let flags = hex_byte(&b[53..55]).ok_or(IdentityError::Malformed("flags"))?;
        if trace_id == [0; 16] {
            return Err(IdentityError::Malformed("all-zero trace-id"));
        }
        if parent_id == [0; 8] {
            return Err(IdentityError::Malformed("all-zero parent-id"));
        }
        let state = tracestate
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE_LEN)
            .filter(|s| s.bytes().all(|c| (0x20..0x7f).contains(&c)))
            .map(Arc::from);
        Ok(TraceContext {
            trace_id,
            parent_id,
            flags,
            state,
        })
    }

    /// The `traceparent` header for this context (always version `00`).
    pub fn to_traceparent(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.parent_id);
        s.push('-');
        push_hex(&mut s, &[self.flags]);
        s
    }

    /// The same trace with `span_id` as the parent id: what a hop sends downstream.
    pub fn with_parent_id(&self, span_id: [u8; 8]) -> TraceContext {
        TraceContext {
            parent_id: span_id,
            ..self.clone()
        }
    }

    /// The 16-byte trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        push_hex(&mut s, &self.trace_id);
        s
    }

    /// The 8-byte id of the caller's span.
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags byte.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// True when the `sampled` flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The `tracestate` carried through, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.state.as_deref()
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TraceContext")
            .field(&self.to_traceparent())
            .finish()
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(nibble(two[0])? << 4 | nibble(two[1])?)
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn traceparent_cases() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(!TraceContext::parse(ok, None).unwrap().sampled());
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad, None).is_err(), "{bad}");
        }
        let future =
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        assert!(TraceContext::parse(future, None).is_ok());
        let long_state = "a=".repeat(400);
        assert_eq!(
            TraceContext::parse(ok, Some(&long_state))
                .unwrap()
                .tracestate(),
            None
        );
        assert_eq!(
            TraceContext::parse(ok, Some("k=v")).unwrap().tracestate(),
            Some("k=v")
        );
    }

    proptest! {
        #[test]
        fn traceparent_round_trips(t in any::<[u8; 16]>(), p in any::<[u8; 8]>(), flags in any::<u8>()) {
            prop_assume!(t != [0; 16] && p != [0; 8]);
            let tc = TraceContext::new(t, p, flags);
            let parsed = TraceContext::parse(&tc.to_traceparent(), None).unwrap();
            prop_assert_eq!(parsed, tc);
        }

        #[test]
        fn parsers_never_panic(s in ".{0,200}", state in proptest::option::of(".{0,600}")) {
            let _ = TraceContext::parse(&s, state.as_deref());
            let _ = RequestId::new(&s);
        }

        #[test]
        fn request_id_accepts_exactly_its_charset(s in "[A-Za-z0-9._:@/+=-]{1,128}") {
            let id = RequestId::new(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
        }
    }
}
