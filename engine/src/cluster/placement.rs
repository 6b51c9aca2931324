//! Placement of stores on hub nodes by rendezvous hashing (highest random
//! weight): a store belongs to the live node with the highest score of
//! `SHA-256(node ‖ 0 ‖ store)`. Every node computes the same owner from the
//! same list of live nodes, in any order, in any process and any Rust
//! version (SHA-256 is fixed; `DefaultHasher` is not). When a node leaves,
//! only its stores move; when one joins, it takes only the stores where it
//! now scores highest, about 1/(n+1) of them.

use sha2::{Digest, Sha256};

use crate::ids::{NodeId, StoreId};

/// The weight of `node` for `store`: the first 8 bytes (big-endian) of
/// `SHA-256(node ‖ 0x00 ‖ store)`. The zero byte separates the two codes, so
/// (`ab`, `c`) and (`a`, `bc`) do not collide; neither code may hold it.
pub fn score(node: &NodeId, store: &StoreId) -> u64 {
    let d = Sha256::new()
        .chain_update(node.as_str())
        .chain_update([0])
        .chain_update(store.as_str())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
}

/// The node among `live` that owns `store`, or `None` when no node is live.
/// Equal scores (astronomically rare) go to the greater node id, so the
/// answer never depends on the order of `live`.
pub fn placement<'a>(live: &'a [NodeId], store: &StoreId) -> Option<&'a NodeId> {
    live.iter()
        .max_by(|a, b| (score(a, store), a.as_str()).cmp(&(score(b, store), b.as_str())))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn node(s: &str) -> NodeId {
        s.parse().expect("a valid node code")
    }

    fn nodes(n: usize) -> Vec<NodeId> {
        (0..n).map(|i| node(&format!("hub-{i}"))).collect()
    }

    fn stores(n: usize) -> Vec<StoreId> {
        (0..n)
            .map(|i| format!("store-{i:05}").parse().expect("a valid store code"))
            .collect()
    }

    fn owners(live: &[NodeId], stores: &[StoreId]) -> Vec<NodeId> {
        stores
            .iter()
            .map(|s| placement(live, s).expect("some node is live").clone())
            .collect()
    }

    /// Pinned: if this changes, nodes of two builds would disagree on
    /// owners. The constant was computed outside Rust, with Python's
    /// `int.from_bytes(hashlib.sha256(b"hub-a\x00store-042").digest()[:8], "big")`.
    #[test]
    fn the_score_is_pinned() {
        let s: StoreId = "store-042".parse().unwrap();
        assert_eq!(score(&node("hub-a"), &s), 3_299_600_560_516_054_194);
    }

    #[test]
    fn no_live_node_owns_nothing() {
        assert_eq!(placement(&[], &"store-1".parse().unwrap()), None);
    }

    #[test]
    fn the_owner_does_not_depend_on_the_order_of_the_live_nodes() {
        let live = nodes(5);
        let mut reversed = live.clone();
        reversed.reverse();
        let mut rotated = live.clone();
        rotated.rotate_left(2);
        let s = stores(1000);
        let a = owners(&live, &s);
        assert_eq!(a, owners(&reversed, &s));
        assert_eq!(a, owners(&rotated, &s));
        // And the same call twice gives the same answer.
        assert_eq!(a, owners(&live, &s));
    }

    #[test]
    fn every_store_has_exactly_one_owner_and_every_node_some_share() {
        let live = nodes(4);
        let s = stores(10_000);
        let mut per_node: HashMap<NodeId, usize> = HashMap::new();
        for o in owners(&live, &s) {
            assert!(live.contains(&o));
            *per_node.entry(o).or_default() += 1;
        }
        assert_eq!(per_node.values().sum::<usize>(), 10_000);
        // A fair hash gives each of 4 nodes 2,500 ± a few percent.
        for (n, count) in &per_node {
            assert!((2_200..=2_800).contains(count), "{n} owns {count}");
        }
    }

    #[test]
    fn removing_a_node_moves_only_its_stores() {
        let live = nodes(5);
        let s = stores(10_000);
        let before = owners(&live, &s);
        let gone = node("hub-2");
        let rest: Vec<NodeId> = live.iter().filter(|n| **n != gone).cloned().collect();
        let after = owners(&rest, &s);
        for ((store, b), a) in s.iter().zip(&before).zip(&after) {
            if *b != gone {
                assert_eq!(a, b, "{store} moved though its owner stayed");
            } else {
                assert_ne!(*a, gone);
            }
        }
    }

    #[test]
    fn adding_a_node_moves_about_its_share_and_only_to_it() {
        for n in [1, 2, 3, 5, 9] {
            let live = nodes(n);
            let s = stores(10_000);
            let before = owners(&live, &s);
            let mut grown = live.clone();
            let new = node("hub-new");
            grown.push(new.clone());
            let after = owners(&grown, &s);
            let mut moved = 0usize;
            for (b, a) in before.iter().zip(&after) {
                if a != b {
                    assert_eq!(*a, new, "a store moved between two old nodes");
                    moved += 1;
                }
            }
            // Expect 10,000/(n+1); allow ±15% for the hash's spread.
            let expected = 10_000 / (n + 1);
            let (lo, hi) = (expected * 85 / 100, expected * 115 / 100);
            assert!(
                (lo..=hi).contains(&moved),
                "{n}+1 nodes: {moved} stores moved, expected about {expected}"
            );
        }
    }

    #[test]
    fn equal_scores_go_to_the_greater_node_id() {
        // The same node listed twice ties with itself; two distinct ids
        // tie only by a SHA-256 collision, so check the rule on the key
        // the comparison uses instead: (score, id) is a total order.
        let s: StoreId = "store-1".parse().unwrap();
        let twice = [node("hub-a"), node("hub-a")];
        assert_eq!(placement(&twice, &s), Some(&node("hub-a")));
        let (a, b) = (node("hub-a"), node("hub-b"));
        let ka = (score(&a, &s), a.as_str());
        let kb = (score(&b, &s), b.as_str());
        let winner = if ka > kb { &a } else { &b };
        assert_eq!(placement(&[a.clone(), b.clone()], &s), Some(winner));
        assert_eq!(placement(&[b.clone(), a.clone()], &s), Some(winner));
    }
}
