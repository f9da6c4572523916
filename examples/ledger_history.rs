//! Measures what reading one unit's history costs in a plan's journal (used by
//! `scripts/bench lifecycle`): it must not grow with the number of sites.
//!
//! `cargo run --release --example ledger_history -- STATE_DIR [SAMPLES]`
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Instant;

use transhumance::dns::provider::DnsLog;
use transhumance::lifecycle::ledger::Ledger;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: ledger_history STATE_DIR [SAMPLES]");
        std::process::exit(2);
    };
    let samples: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let t = Instant::now();
    let ledger = match Ledger::open(std::path::Path::new(&dir)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let open = t.elapsed();
    let mut sites: Vec<String> = ledger.states().into_keys().collect();
    sites.sort();
    let step = (sites.len() / samples.max(1)).max(1);
    let picked: Vec<&String> = sites.iter().step_by(step).take(samples).collect();
    let t = Instant::now();
    let mut entries = 0usize;
    for site in &picked {
        entries += ledger.site_history(site).len();
        let name = format!("{}.", site.split('.').next().unwrap_or(site));
        entries += ledger.history(&[format!("{site}."), name]).len();
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / picked.len().max(1) as f64;
    let mut total = 0usize;
    if let Err(e) = ledger.for_each(|_| total += 1) {
        eprintln!("{e}");
        std::process::exit(1);
    }
    println!(
        "journal of {} sites, {} entries: opened in {:.1} ms; one unit's history (state + DNS) read in {per:.1} µs on average over {} units ({:.1} entries each)",
        sites.len(),
        total,
        open.as_secs_f64() * 1e3,
        picked.len(),
        entries as f64 / picked.len().max(1) as f64
    );
}
