//! How two terminals of one store prove it to each other before they sync
//! over the store's LAN, without the store token ever crossing it: a
//! challenge-response with HMAC-SHA256 under a key derived from the store
//! token and the store id. Both sides prove; the proofs are bound to both
//! nonces and to the side that made them, so a proof cannot be replayed on
//! another connection or reflected back at its maker.
//!
//! The exchange is three JSON text frames on the WebSocket, before the
//! automerge-repo messages start (`PROTOCOL.md`, "Terminal peers"):
//!
//! ```text
//! connector -> listener   {"lan": 1, "store": S, "nonce": Nc}
//! listener  -> connector  {"nonce": Nl, "proof": HMAC(k, "listener" S Nc Nl)}
//! connector -> listener   {"proof": HMAC(k, "connector" S Nc Nl)}
//! ```
//!
//! with k = HMAC(token, "store-lan-v1" S). Sans-IO: nonces are arguments.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::StoreId;

/// The version the connector's hello names.
pub const LAN_AUTH_VERSION: u32 = 1;

/// A nonce's length in bytes (hex on the wire).
pub const NONCE_BYTES: usize = 32;

/// The key both terminals of a store hold: derived from its token, never
/// the token itself.
#[derive(Clone)]
pub struct PeerKey {
    key: [u8; 32],
    store: StoreId,
}

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerKey")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// The connector's first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub lan: u32,
    pub store: String,
    pub nonce: String,
}

/// The listener's answer: its nonce and its proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub nonce: String,
    pub proof: String,
}

/// The connector's proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub proof: String,
}

/// Why a peer was refused: the close reason both ends log and show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefusal {
    #[error("wrong store: this terminal belongs to store {ours}, the peer to {theirs}")]
    WrongStore { ours: String, theirs: String },
    #[error("bad proof: the peer does not hold this store's token")]
    BadProof,
    #[error("bad handshake: {0}")]
    Malformed(String),
}

/// Which side made a proof (so one side's proof never passes as the other's).
#[derive(Debug, Clone, Copy)]
enum Side {
    Listener,
    Connector,
}

impl PeerKey {
    /// The store's LAN key, from its token.
    pub fn derive(token: &str, store: &StoreId) -> PeerKey {
        let mut msg = b"store-lan-v1".to_vec();
        msg.extend_from_slice(store.as_str().as_bytes());
        PeerKey {
            key: hmac_sha256(token.as_bytes(), &msg),
            store: store.clone(),
        }
    }

    pub fn store(&self) -> &StoreId {
        &self.store
    }

    /// The connector's first frame, with its nonce.
    pub fn hello(&self, nonce: &[u8; NONCE_BYTES]) -> Hello {
        Hello {
            lan: LAN_AUTH_VERSION,
            store: self.store.as_str().to_owned(),
            nonce: hex::encode(nonce),
        }
    }

    /// At the listener: check the hello (our store, a well-formed nonce)
    /// and answer it with the listener's nonce and proof.
    pub fn challenge(
        &self,
        hello: &Hello,
        nonce: &[u8; NONCE_BYTES],
    ) -> Result<Challenge, PeerRefusal> {
        if hello.lan != LAN_AUTH_VERSION {
            return Err(PeerRefusal::Malformed(format!(
                "LAN handshake version {} (this terminal speaks {LAN_AUTH_VERSION})",
                hello.lan
            )));
        }
        if hello.store != self.store.as_str() {
            return Err(PeerRefusal::WrongStore {
                ours: self.store.as_str().to_owned(),
                theirs: hello.store.clone(),
            });
        }
        let theirs = parse_nonce(&hello.nonce)?;
        Ok(Challenge {
            nonce: hex::encode(nonce),
            proof: hex::encode(self.proof(Side::Listener, &theirs, nonce)),
        })
    }

    /// At the connector: check the listener's proof and make ours.
    pub fn answer(
        &self,
        my_nonce: &[u8; NONCE_BYTES],
        challenge: &Challenge,
    ) -> Result<Proof, PeerRefusal> {
        let theirs = parse_nonce(&challenge.nonce)?;
        let expected = self.proof(Side::Listener, my_nonce, &theirs);
        if !proof_matches(&expected, &challenge.proof) {
            return Err(PeerRefusal::BadProof);
        }
        Ok(Proof {
            proof: hex::encode(self.proof(Side::Connector, my_nonce, &theirs)),
        })
    }

    /// At the listener: check the connector's proof.
    pub fn verify(
        &self,
        hello: &Hello,
        my_nonce: &[u8; NONCE_BYTES],
        proof: &Proof,
    ) -> Result<(), PeerRefusal> {
        let theirs = parse_nonce(&hello.nonce)?;
        let expected = self.proof(Side::Connector, &theirs, my_nonce);
        if proof_matches(&expected, &proof.proof) {
            Ok(())
        } else {
            Err(PeerRefusal::BadProof)
        }
    }

    fn proof(
        &self,
        side: Side,
        connector_nonce: &[u8; NONCE_BYTES],
        listener_nonce: &[u8; NONCE_BYTES],
    ) -> [u8; 32] {
        let label: &[u8] = match side {
            Side::Listener => b"listener",
            Side::Connector => b"connector",
        };
        let mut msg = label.to_vec();
        msg.extend_from_slice(self.store.as_str().as_bytes());
        msg.push(0);
        msg.extend_from_slice(connector_nonce);
        msg.extend_from_slice(listener_nonce);
        hmac_sha256(&self.key, &msg)
    }
}

fn parse_nonce(hex_text: &str) -> Result<[u8; NONCE_BYTES], PeerRefusal> {
    let bytes =
        hex::decode(hex_text).map_err(|_| PeerRefusal::Malformed("the nonce is not hex".into()))?;
    bytes
        .try_into()
        .map_err(|_| PeerRefusal::Malformed(format!("the nonce is not {NONCE_BYTES} bytes")))
}

/// Compare without an early exit, so the time taken says nothing about
/// how much of a guessed proof was right.
fn proof_matches(expected: &[u8; 32], given_hex: &str) -> bool {
    let Ok(given) = hex::decode(given_hex) else {
        return false;
    };
    if given.len() != expected.len() {
        return false;
    }
    expected
        .iter()
        .zip(&given)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// HMAC-SHA256 (RFC 2104) over the workspace's `sha2`: a dozen lines, so
/// no second digest crate version (the `hmac` crate in the lock file is
/// for `sha2` 0.11, which the engine does not use).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| -> [u8; BLOCK] { block.map(|b| b ^ byte) };
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(s: &str) -> StoreId {
        s.parse().unwrap()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 1 and 6 (a key longer than the block).
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn two_terminals_of_a_store_prove_it_to_each_other() {
        let a = PeerKey::derive("token-1", &store("store-042"));
        let b = PeerKey::derive("token-1", &store("store-042"));
        let (nc, nl) = ([1; NONCE_BYTES], [2; NONCE_BYTES]);
        let hello = a.hello(&nc);
        assert!(
            !serde_json::to_string(&hello).unwrap().contains("token-1"),
            "the token never goes on the wire"
        );
        let challenge = b.challenge(&hello, &nl).unwrap();
        let proof = a.answer(&nc, &challenge).unwrap();
        b.verify(&hello, &nl, &proof).unwrap();
    }

    #[test]
    fn another_store_a_wrong_token_and_a_reflected_proof_are_refused() {
        let ours = PeerKey::derive("token-1", &store("store-042"));
        let (nc, nl) = ([1; NONCE_BYTES], [2; NONCE_BYTES]);
        let other_store = PeerKey::derive("token-1", &store("store-043"));
        assert!(matches!(
            ours.challenge(&other_store.hello(&nc), &nl),
            Err(PeerRefusal::WrongStore { .. })
        ));
        // A listener without the token: the connector refuses its proof.
        let stranger = PeerKey::derive("guessed", &store("store-042"));
        let challenge = stranger.challenge(&ours.hello(&nc), &nl).unwrap();
        assert_eq!(ours.answer(&nc, &challenge), Err(PeerRefusal::BadProof));
        // A connector without the token: the listener refuses its proof.
        let hello = stranger.hello(&nc);
        let challenge = ours.challenge(&hello, &nl).unwrap();
        let forged = Proof {
            proof: challenge.proof.clone(),
        };
        assert_eq!(
            ours.verify(&hello, &nl, &forged),
            Err(PeerRefusal::BadProof),
            "the listener's own proof reflected back is not the connector's"
        );
        assert!(stranger.answer(&nc, &challenge).is_err());
        // A proof for other nonces does not pass.
        let good = ours.answer(&nc, &challenge).unwrap();
        assert_eq!(
            ours.verify(&hello, &[3; NONCE_BYTES], &good),
            Err(PeerRefusal::BadProof)
        );
    }
}
