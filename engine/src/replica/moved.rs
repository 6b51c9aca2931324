//! The `moved` close reason: the hub node a terminal reached no longer
//! serves its store (the store's lease went to another node, or this node
//! lost it), so the terminal should reconnect at once, to the address
//! given if there is one. It travels like a [`Refusal`](super::Refusal):
//! as the text of an automerge-repo `error` message (JS peers only show
//! it), readable as it stands and ending with a stable code the agent
//! decodes: `(moved <url>)` or `(moved)`.
//!
//! The address comes from the network, so [`Moved::decode`] keeps it only
//! if it is a plain `ws://` or `wss://` URL of bounded length: a hostile or
//! broken hub cannot send a terminal to a `file:` or `http:` address.

/// The longest address a `moved` text may carry; a longer one is dropped
/// (the terminal then reconnects to its configured hub).
pub const MAX_MOVED_URL: usize = 512;

/// The store moved to another hub node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The sync URL of the node that serves the store now, when known.
    pub to: Option<String>,
}

impl Moved {
    /// The WebSocket close code the hub closes a moved store's connection
    /// with (the range 4000-4999 is the application's), so a client that
    /// only sees the close (the reason is cut to 123 bytes) knows it too.
    pub const CLOSE_CODE: u16 = 4001;

    /// The store moved to `to` (`None`: to a node this one does not know).
    /// An address that would not pass [`valid_url`] is left out, so what
    /// the hub sends always decodes as it was meant.
    pub fn new(to: Option<&str>) -> Moved {
        Moved {
            to: to.filter(|u| valid_url(u)).map(str::to_owned),
        }
    }

    /// The text of the `error` message (and the close reason) the hub sends.
    pub fn encode(&self) -> String {
        match &self.to {
            Some(url) => format!(
                "this store is now served by another hub node; reconnect there (moved {url})"
            ),
            None => "this store is no longer served by this hub node; reconnect (moved)".to_owned(),
        }
    }

    /// Read an `error` (or close) text back; `None` if it is not a `moved`.
    /// A `moved` whose address is not a valid [`valid_url`] decodes with
    /// no address: the store did move, but the terminal goes back to its
    /// configured hub rather than wherever the text pointed.
    pub fn decode(text: &str) -> Option<Moved> {
        let inner = text.strip_suffix(')')?;
        if inner.ends_with(" (moved") || inner == "(moved" {
            return Some(Moved { to: None });
        }
        // A valid URL has no spaces, so the last " (moved " is the code.
        let (_, url) = inner.rsplit_once(" (moved ")?;
        Some(Moved::new(Some(url)))
    }
}

/// Whether `url` may be followed: `ws://` or `wss://`, a host, at most
/// [`MAX_MOVED_URL`] bytes, and only printable ASCII without spaces,
/// quotes, angle brackets, backslashes or parentheses (which the text's
/// own syntax uses).
pub fn valid_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    url.len() <= MAX_MOVED_URL
        && !host.is_empty()
        && !host.contains('@')
        && url
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '<' | '>' | '\\' | '(' | ')' | '`'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::Refusal;

    #[test]
    fn a_moved_round_trips_with_and_without_an_address() {
        for to in [
            None,
            Some("ws://127.0.0.1:7400/sync"),
            Some("wss://hub-b.example.com/sync?x=1"),
        ] {
            let m = Moved::new(to);
            assert_eq!(m.to.as_deref(), to);
            let text = m.encode();
            assert_eq!(Moved::decode(&text), Some(m), "{text}");
        }
    }

    #[test]
    fn the_exact_texts() {
        assert_eq!(
            Moved::new(Some("ws://hub-b:7400/sync")).encode(),
            "this store is now served by another hub node; reconnect there \
             (moved ws://hub-b:7400/sync)"
        );
        assert_eq!(
            Moved::new(None).encode(),
            "this store is no longer served by this hub node; reconnect (moved)"
        );
        // Only the code matters to the agent, not the English before it.
        assert_eq!(
            Moved::decode("anything at all (moved wss://h/sync)"),
            Some(Moved {
                to: Some("wss://h/sync".into())
            })
        );
        assert_eq!(Moved::decode("(moved)"), Some(Moved { to: None }));
    }

    #[test]
    fn an_address_that_is_not_a_plain_websocket_url_is_dropped() {
        let long = format!("ws://h/{}", "a".repeat(MAX_MOVED_URL));
        for bad in [
            "http://hub-b/sync",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "wss://",
            "ws:///sync",
            "ws://user:pw@evil/sync",
            "ws://hub\u{7f}/sync",
            "ws://hüb/sync",
            "WS://hub/sync",
            long.as_str(),
        ] {
            assert!(!valid_url(bad), "{bad}");
            let text = format!("this store moved (moved {bad})");
            assert_eq!(
                Moved::decode(&text),
                Some(Moved { to: None }),
                "still a move, but not to {bad}"
            );
            assert_eq!(Moved::new(Some(bad)).to, None);
        }
        // A space cannot hide a second address.
        assert_eq!(
            Moved::decode("x (moved ws://a/sync ws://b/sync)"),
            Some(Moved { to: None })
        );
    }

    #[test]
    fn other_error_texts_are_not_moves() {
        for text in [
            "rate limit exceeded",
            "hub could not store changes: disk full",
            "moved",
            "the store (moved",
            "token revoked (rule other)",
        ] {
            assert_eq!(Moved::decode(text), None, "{text}");
        }
        // And a move is not a refusal.
        assert_eq!(Refusal::decode(&Moved::new(None).encode()), None);
    }
}
