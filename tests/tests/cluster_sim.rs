//! Several hub nodes over one database in the deterministic simulator
//! (`SimConfig::hubs`): stores placed by rendezvous hashing, served under
//! leases with the fence, with kills, pauses past the lease and lease
//! expiry on top of the usual link faults. After quiescence: epochs per
//! store only grow, no commit landed under an old epoch, every
//! acknowledged write is stored exactly once, and every replica of a
//! store holds the same heads and reads the same.
//!
//! A failing seed is printed; replay it with `SIM_SEED=<n>`.

use tests::sim::{for_each_seed, seeds, Sim, SimConfig};

const CI_SEEDS: u64 = 40;

fn config_for(seed: u64) -> SimConfig {
    let mut cfg = SimConfig::new(1 + (seed % 3) as usize);
    cfg.hubs = 2 + (seed % 2) as usize;
    // Node faults often enough that leases lapse in most runs.
    cfg.fault_percent = 8;
    cfg
}

#[test]
fn several_hub_nodes_with_leases_converge() {
    let seeds = seeds(CI_SEEDS);
    let totals = std::sync::Mutex::new((0u64, 0u64, 0usize, 0usize));
    for_each_seed("several_hub_nodes_with_leases_converge", &seeds, |seed| {
        let mut sim = Sim::with_config(seed, config_for(seed));
        sim.run(600);
        sim.run_until_quiescent();
        sim.check_converged();
        let table = sim.lease_table().expect("several nodes");
        let mut t = totals.lock().unwrap();
        t.0 += sim.stats().hub_pauses;
        t.1 += sim.stats().hub_crashes;
        t.2 += table.history().len();
        t.3 += table.refusals().len();
    });
    let (pauses, crashes, grants, refusals) = *totals.lock().unwrap();
    eprintln!(
        "{} seeds: {pauses} pauses, {crashes} kills, {grants} lease grants, {refusals} commits refused by the fence",
        seeds.len()
    );
    if seeds.len() as u64 >= CI_SEEDS {
        // The faults the test is about did happen.
        assert!(pauses > 0 && crashes > 0, "no node faults");
        assert!(grants > 2 * seeds.len(), "no lease ever moved");
        assert!(refusals > 0, "the fence never refused a commit");
    }
}

#[test]
fn a_cluster_seed_replays_exactly() {
    let run = || {
        let mut sim = Sim::with_config(7, config_for(7));
        sim.run(400);
        sim.run_until_quiescent();
        sim.trace_digest()
    };
    assert_eq!(run(), run());
}
