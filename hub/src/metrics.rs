//! `/metrics` in the Prometheus text format: connections, documents,
//! changes accepted and rejected, sync bytes, and how long the hub takes
//! to handle one incoming message (a histogram, measured on the hub thread).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A lock-free histogram of message handling times.
#[derive(Default)]
pub struct Latency {
    counts: [AtomicU64; 12],
    over: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Latency {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        match BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.over.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// The hub's numbers at one moment (read on the hub thread).
pub struct Snapshot {
    pub connections: usize,
    pub stores_online: usize,
    pub stores: usize,
    pub documents: usize,
    pub cached_documents: usize,
    /// Lists whose status index is behind their documents.
    pub index_backlog: usize,
    pub counters: engine::replica::hub::HubCounters,
    /// Sync upgrades refused over a connection cap.
    pub connections_refused: u64,
}

impl Snapshot {
    /// The figures of two replica threads of one node together (the
    /// database's own figures, and the node's refusals, are the same in
    /// both and kept once).
    pub fn plus(&self, other: &Snapshot) -> Snapshot {
        Snapshot {
            connections: self.connections + other.connections,
            stores_online: self.stores_online + other.stores_online,
            stores: self.stores,
            documents: self.documents,
            cached_documents: self.cached_documents + other.cached_documents,
            index_backlog: self.index_backlog + other.index_backlog,
            counters: self.counters.plus(other.counters),
            connections_refused: self.connections_refused,
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, kind: &str, v: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
    );
}

pub fn render(s: &Snapshot, latency: &Latency) -> String {
    let mut out = String::new();
    gauge(
        &mut out,
        "hub_connections",
        "Open sync connections.",
        "gauge",
        s.connections,
    );
    gauge(
        &mut out,
        "hub_connections_refused_total",
        "Sync connections refused because their token or store held as many as its cap allows.",
        "counter",
        s.connections_refused,
    );
    gauge(
        &mut out,
        "hub_stores_connected",
        "Stores with at least one connected terminal.",
        "gauge",
        s.stores_online,
    );
    gauge(
        &mut out,
        "hub_stores",
        "Registered stores.",
        "gauge",
        s.stores,
    );
    gauge(
        &mut out,
        "hub_documents",
        "Documents stored at the hub.",
        "gauge",
        s.documents,
    );
    gauge(
        &mut out,
        "hub_documents_in_memory",
        "Documents loaded in memory.",
        "gauge",
        s.cached_documents,
    );
    gauge(
        &mut out,
        "hub_status_index_backlog",
        "Lists whose status (dashboard) figures are still being brought up to date.",
        "gauge",
        s.index_backlog,
    );
    let c = &s.counters;
    gauge(
        &mut out,
        "hub_changes_accepted_total",
        "Changes accepted from peers.",
        "counter",
        c.changes_accepted,
    );
    gauge(
        &mut out,
        "hub_changes_rejected_total",
        "Changes refused by validation.",
        "counter",
        c.changes_rejected,
    );
    gauge(
        &mut out,
        "hub_sync_bytes_in_total",
        "Sync bytes received.",
        "counter",
        c.bytes_in,
    );
    gauge(
        &mut out,
        "hub_sync_bytes_out_total",
        "Sync bytes sent.",
        "counter",
        c.bytes_out,
    );
    gauge(
        &mut out,
        "hub_messages_in_total",
        "Sync messages received.",
        "counter",
        c.messages_in,
    );
    latency.render(
        &mut out,
        "hub_message_seconds",
        "Time the hub takes to handle one incoming sync message.",
    );
    out
}

/// A cluster node's leases, Prometheus text: how many stores it serves
/// and each one's lease epoch (which grows at every change of node).
pub fn render_leases(held: &[(engine::ids::StoreId, i64)]) -> String {
    let mut out = String::new();
    out.push_str("# HELP hub_stores_served Stores whose lease this node holds now.\n");
    out.push_str("# TYPE hub_stores_served gauge\n");
    out.push_str(&format!("hub_stores_served {}\n", held.len()));
    out.push_str("# HELP hub_store_lease_epoch The epoch this node holds each store's lease at.\n");
    out.push_str("# TYPE hub_store_lease_epoch gauge\n");
    for (store, epoch) in held {
        out.push_str(&format!(
            "hub_store_lease_epoch{{store=\"{store}\"}} {epoch}\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_counts_everything() {
        let l = Latency::default();
        l.observe(Duration::from_micros(50));
        l.observe(Duration::from_millis(3));
        l.observe(Duration::from_secs(2));
        let mut out = String::new();
        l.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.0001\"} 1"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2"), "{out}");
        assert!(out.contains("x_bucket{le=\"1\"} 2"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3"), "{out}");
        assert!(out.contains("x_count 3"), "{out}");
    }
}
