//! Dashboard sessions (issue #23): the cookie a browser signs in with,
//! and the CSRF token every write made with it must carry.
//!
//! A session is a personal token (so it can be listed and revoked like
//! one, and disabling an account ends it) kept in an `HttpOnly`,
//! `SameSite=Strict` cookie, `Secure` when the hub was reached over https.
//! The CSRF token is derived from the session token (SHA-256 of it with a
//! prefix): the page gets it when it signs in or asks `GET /api/session`,
//! and sends it in [`CSRF_HEADER`]; another site can neither read it nor
//! add the header without a CORS preflight the hub never grants.

use axum::http::{header, HeaderMap, HeaderValue};
use engine::replica::hub::token_hash;

/// The session cookie's name.
pub const COOKIE: &str = "hub_session";
/// The header a cookie-authenticated write carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a dashboard session lasts.
pub const LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;
/// What the session's personal token is listed as.
pub const LABEL: &str = "dashboard session";

/// The session token in the request's `Cookie` header, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// The CSRF token of the session `token`.
pub fn csrf_of(token: &str) -> String {
    hex::encode(token_hash(&format!("csrf:{token}")))
}

/// Whether the request carries the CSRF token of session `token`.
pub fn csrf_ok(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers.get(CSRF_HEADER).map(HeaderValue::as_bytes) else {
        return false;
    };
    let want = csrf_of(token);
    // Compared in full whatever differs, so timing says nothing of where.
    given.len() == want.len()
        && given
            .iter()
            .zip(want.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Whether the browser reached the hub over https. The hub itself speaks
/// plain HTTP, so https is a TLS-terminating proxy's, which says so in
/// `X-Forwarded-Proto` or `Forwarded`. Trusting a client that claims https
/// when it is not only makes its cookie stricter (the browser then keeps
/// it off plain HTTP), so a forged header gains nothing.
pub fn over_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        });
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split([';', ','])
                .filter_map(|kv| kv.trim().split_once('='))
                .any(|(k, v)| {
                    k.eq_ignore_ascii_case("proto")
                        && v.trim_matches('"').eq_ignore_ascii_case("https")
                })
        });
    forwarded_proto || forwarded
}

/// The `Set-Cookie` value that starts a session with `token`.
pub fn set_cookie(token: &str, https: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        LIFETIME_MS / 1000,
        if https { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends the session in the browser.
pub fn clear_cookie(https: bool) -> String {
    format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if https { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others_and_its_csrf_token_checked() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "theme=dark; hub_session=abc123; x=y".parse().unwrap(),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("abc123"));
        assert!(!csrf_ok(&h, "abc123"), "no header");
        h.insert(CSRF_HEADER, csrf_of("abc123").parse().unwrap());
        assert!(csrf_ok(&h, "abc123"));
        assert!(!csrf_ok(&h, "abc124"), "another session's");
    }

    #[test]
    fn https_is_what_the_proxy_says() {
        let mut h = HeaderMap::new();
        assert!(!over_https(&h));
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(over_https(&h));
        let mut h = HeaderMap::new();
        h.insert(
            header::FORWARDED,
            "for=1.2.3.4;proto=https".parse().unwrap(),
        );
        assert!(over_https(&h));
        assert!(set_cookie("t", true).ends_with("; Secure"));
        assert!(!set_cookie("t", false).contains("Secure"));
    }
}
