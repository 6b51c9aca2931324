//! Shared helpers for multi-replica tests, the crash test's writer process
//! and the load benchmark.

pub mod bench_record;
pub mod browser;
pub mod cluster;
pub mod daily_lists;
pub mod fault_proxy;
pub mod lan_bench;
pub mod load_bench;
pub mod netbench;
pub mod procs;
pub mod sim;
pub mod storage_bench;
