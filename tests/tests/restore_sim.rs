//! A terminal restored from an older copy of its SQLite file (a backup of
//! its data directory, a reverted VM snapshot) in the simulator: the copy
//! names the actor the terminal used since, with fewer changes than the
//! hub holds under it, so the terminal's next changes reuse sequence
//! numbers the hub has for other content. The terminal must notice, take a
//! fresh actor, record its work again and converge, with every
//! acknowledged status event everywhere exactly once.
//!
//! Replay a failing seed with `SIM_SEED=<n> cargo test -p tests --test restore_sim`.

use tests::sim::{for_each_seed, seeds, Sim};

/// Backup, work that reaches the hub, restore, work offline under the
/// restored actor, reconnect: per seed, with random work and faults
/// (agent and hub crashes, cuts, partitions) around each step.
#[test]
fn a_terminal_restored_from_an_older_copy_converges_and_loses_nothing() {
    for_each_seed(
        "a_terminal_restored_from_an_older_copy_converges_and_loses_nothing",
        &seeds(6),
        |seed| {
            let mut sim = Sim::new(seed, 3);
            let restored = 0;
            sim.run(300);
            sim.run_until_quiescent();
            let backup = sim.back_up_agent(restored);
            let list = sim.lists()[0];

            // Work after the backup, under the actor the backup names,
            // all of it synced to the hub before the terminal is restored.
            for _ in 0..3 {
                sim.record_random_status_in(restored, list);
            }
            sim.run(300);
            sim.run_until_quiescent();
            let before = sim.acknowledged().len();

            // Restored while the hub is unreachable; the worker records
            // updates, which reuse the sequence numbers of the work above.
            sim.partition(restored);
            sim.restore_agent(&backup);
            let mut offline = 0;
            for _ in 0..4 {
                offline += usize::from(sim.record_random_status_in(restored, list).is_some());
            }
            assert!(offline > 0, "seed {seed}: nothing recorded offline");
            sim.run(300);
            sim.run_until_quiescent();
            sim.check_converged();

            assert!(sim.acknowledged().len() >= before + offline);
            let status = sim
                .agent(restored)
                .expect("up after quiescence")
                .sync_status()
                .expect("sync status");
            assert!(
                !status.actor_changes.is_empty(),
                "seed {seed}: the restored terminal reports no actor change"
            );
            assert!(
                status.actor_changes.iter().any(|c| c.doc == list),
                "seed {seed}: no actor change for {list}: {:?}",
                status.actor_changes
            );
        },
    );
}

/// Restored twice from the same backup: the second restore diverges from
/// the hub again (its history now also holds the first recovery's actor),
/// and the terminal recovers again.
#[test]
fn restoring_the_same_backup_twice_recovers_twice() {
    for_each_seed(
        "restoring_the_same_backup_twice_recovers_twice",
        &seeds(3),
        |seed| {
            let mut sim = Sim::new(seed, 2);
            let restored = 1;
            sim.run(200);
            sim.run_until_quiescent();
            let backup = sim.back_up_agent(restored);
            let list = sim.lists()[0];
            for round in 0..2 {
                for _ in 0..2 {
                    sim.record_random_status_in(restored, list);
                }
                sim.run_until_quiescent();
                sim.partition(restored);
                sim.restore_agent(&backup);
                for _ in 0..2 {
                    sim.record_random_status_in(restored, list);
                }
                sim.run(200);
                sim.run_until_quiescent();
                sim.check_converged();
                let changes = sim
                    .agent(restored)
                    .expect("up after quiescence")
                    .sync_status()
                    .expect("sync status")
                    .actor_changes;
                assert!(
                    !changes.is_empty(),
                    "seed {seed}, restore {round}: no actor change reported"
                );
            }
        },
    );
}
