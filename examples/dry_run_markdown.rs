//! Using the library: load a plan, run the dry run with a custom observer, print Markdown.
//!
//! `cargo run --example dry_run_markdown -- plans/local-example.yaml`
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::atomic::{AtomicU64, Ordering};

use transhumance::event::{Event, Observer};
use transhumance::lifecycle::{Connections, default_agent_binary, dry_run};
use transhumance::plan::{self, PlanError};
use transhumance::report::{Format, render};

/// Counts the sites looked at, to show how an embedding program follows progress.
#[derive(Default)]
struct SiteCounter(AtomicU64);

impl Observer for SiteCounter {
    fn on_event(&self, event: &Event) {
        if let Event::UnitDone { phase, .. } | Event::UnitFailed { phase, .. } = event
            && phase == "sites"
        {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn main() -> std::process::ExitCode {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "plans/local-example.yaml".into());
    let loaded = match plan::load(path.as_ref()) {
        Ok(l) => l,
        Err(PlanError::Invalid { issues, .. }) => {
            for i in issues {
                eprintln!("{path}:{}:{}: {}", i.loc.line, i.loc.column, i.message);
            }
            return std::process::ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let connections = Connections::new(&loaded.plan.hosts, default_agent_binary());
    let counter = SiteCounter::default();
    let report = dry_run(&loaded, &connections, &counter);
    print!("{}", render(&report, Format::Markdown));
    eprintln!("looked at {} site(s)", counter.0.load(Ordering::Relaxed));
    std::process::ExitCode::SUCCESS
}
