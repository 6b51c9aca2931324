//! The store's LAN in the deterministic simulator (`SimConfig::lan`): the
//! hub partitioned away (the store's internet link down) while the LAN
//! links between the store's terminals stay up, with cuts, crashes,
//! chaos (duplicated and reordered frames) on the LAN links and a rogue
//! terminal offering forbidden changes. The terminals converge among
//! themselves with the hub away, then with the hub once the link heals,
//! and every acknowledged write arrives everywhere exactly once.
//!
//! A failing seed is printed; replay it with `SIM_SEED=<n>`. The soak run
//! is `SIM_SEEDS=<n> cargo test -p tests --test lan_sim -- --ignored`.

use std::sync::Mutex;

use tests::sim::{for_each_seed, seeds, Sim, SimConfig, SimStats};

/// 2 to 4 terminals on the LAN; chaos on every other seed.
fn config_for(seed: u64) -> SimConfig {
    let mut cfg = SimConfig::new(2 + (seed % 3) as usize);
    cfg.lan = true;
    cfg.chaos = seed % 2 == 1;
    cfg
}

/// Online, quiet; then the WAN goes down for `steps` random steps (LAN
/// cuts, crashes, rogue changes); the terminals must agree among
/// themselves; then the WAN heals and everything must agree with the hub.
fn outage_run(seed: u64, steps: usize) -> (Sim, usize) {
    let mut sim = Sim::with_config(seed, config_for(seed));
    sim.run(100);
    sim.run_until_quiescent();
    let before = sim.acknowledged().len();
    sim.hold_wan_outage();
    sim.run(steps);
    sim.run_lan_until_quiescent();
    assert!(sim.wan_is_down(), "seed {seed}: the WAN stayed down");
    sim.check_lan_converged();
    let during = sim.acknowledged().len() - before;
    sim.run_until_quiescent();
    sim.check_converged();
    (sim, during)
}

/// Sums over seeds, to check the faults the tests are about happened.
#[derive(Default)]
struct Totals {
    seeds: usize,
    writes_during_outages: usize,
    stats: Vec<SimStats>,
}

impl Totals {
    fn sum(&self, f: impl Fn(&SimStats) -> u64) -> u64 {
        self.stats.iter().map(f).sum()
    }

    /// `outages`: the runs held the WAN down, and writes must have been
    /// made meanwhile.
    fn check(&self, at_least: usize, outages: bool) {
        let rogue_sent = self.sum(|s| s.rogue_changes_sent);
        let rogue_refused = self.sum(|s| s.rogue_changes_refused);
        eprintln!(
            "{} seeds: {} writes during outages, {} LAN frames, {} LAN cuts, {} crashes, {} duplicated, {} reordered, rogue changes {rogue_sent} sent, {rogue_refused} refused",
            self.seeds,
            self.writes_during_outages,
            self.sum(|s| s.lan_frames_delivered),
            self.sum(|s| s.lan_cuts),
            self.sum(|s| s.agent_crashes),
            self.sum(|s| s.frames_duplicated),
            self.sum(|s| s.frames_reordered),
        );
        assert_eq!(rogue_sent, rogue_refused, "every rogue change refused");
        if self.seeds >= at_least {
            assert!(
                !outages || self.writes_during_outages > 0,
                "no writes during an outage"
            );
            assert!(self.sum(|s| s.lan_cuts) > 0, "no LAN cuts");
            assert!(self.sum(|s| s.frames_duplicated) > 0, "no LAN chaos");
            assert!(rogue_sent > 0, "no rogue changes");
        }
    }
}

#[test]
fn terminals_converge_over_the_lan_while_the_hub_is_away_then_with_the_hub() {
    let seeds = seeds(12);
    let totals = Mutex::new(Totals::default());
    for_each_seed(
        "terminals_converge_over_the_lan_while_the_hub_is_away_then_with_the_hub",
        &seeds,
        |seed| {
            let (sim, during) = outage_run(seed, 300);
            let mut t = totals.lock().unwrap();
            t.seeds += 1;
            t.writes_during_outages += during;
            t.stats.push(sim.stats());
        },
    );
    totals.into_inner().unwrap().check(12, true);
}

#[test]
fn random_faults_with_the_store_lan_converge() {
    let seeds = seeds(12);
    let totals = Mutex::new(Totals::default());
    for_each_seed(
        "random_faults_with_the_store_lan_converge",
        &seeds,
        |seed| {
            let mut sim = Sim::with_config(seed, config_for(seed));
            // More faults than the default, so the WAN goes down and up.
            sim.run(500);
            sim.run_until_quiescent();
            sim.check_converged();
            let mut t = totals.lock().unwrap();
            t.seeds += 1;
            t.stats.push(sim.stats());
        },
    );
    let totals = totals.into_inner().unwrap();
    if totals.seeds >= 12 {
        assert!(totals.sum(|s| s.wan_outages) > 0, "the WAN never went down");
    }
    totals.check(12, false);
}

#[test]
fn a_lan_seed_replays_exactly() {
    let run = || {
        let (sim, _) = outage_run(5, 200);
        (sim.stats(), sim.trace_digest(), sim.acknowledged().to_vec())
    };
    assert_eq!(run(), run());
}

/// Thousands of seeds: `cargo test -p tests --test lan_sim -- --ignored`
/// (`SIM_SEEDS` sets how many, default 2000).
#[test]
#[ignore = "long: thousands of seeds"]
fn many_lan_seeds() {
    let seeds = seeds(2_000);
    let totals = Mutex::new(Totals::default());
    for_each_seed("many_lan_seeds", &seeds, |seed| {
        let (sim, during) = outage_run(seed, 600);
        let mut t = totals.lock().unwrap();
        t.seeds += 1;
        t.writes_during_outages += during;
        t.stats.push(sim.stats());
    });
    totals.into_inner().unwrap().check(12, true);
}

/// A terminal's writes crossed the LAN, then its disk was lost (restored
/// from a backup taken before them) and its peer restarted: the hub still
/// gets every write exactly once, from the peer, once the WAN is back.
#[test]
fn writes_reach_the_hub_through_a_peer_after_their_terminal_lost_them() {
    for_each_seed(
        "writes_reach_the_hub_through_a_peer_after_their_terminal_lost_them",
        &seeds(8),
        |seed| {
            let mut cfg = SimConfig::new(2);
            cfg.lan = true;
            let mut sim = Sim::with_config(seed, cfg);
            sim.run_until_quiescent();
            let backup = sim.back_up_agent(0);
            sim.hold_wan_outage();
            let list = sim.lists()[0];
            let written: Vec<_> = (0..5)
                .filter_map(|_| sim.record_random_status_in(0, list))
                .collect();
            assert!(!written.is_empty(), "seed {seed}: writes made");
            sim.run_lan_until_quiescent();
            sim.check_lan_converged();
            // Terminal 0 loses its disk; terminal 1 restarts from its own.
            sim.restore_agent(&backup);
            sim.crash_agent(1, None);
            sim.restart_agent(1);
            sim.run_until_quiescent();
            sim.check_converged();
        },
    );
}
