//! `transhumance demo`: the whole lifecycle on a small old and new datacenter built in a temp
//! dir, with no server and no network; one site fails its probe through the new address before
//! the switch and is never switched.

use std::time::{Duration, Instant};

use super::exit;
use super::migration::finish;
use super::printer::Printer;
use super::progress::Bars;
use crate::demo::{self, BROKEN_SITE, NEW_ADDRESS, OLD_ADDRESS, WebServer};
use crate::event::{Observer, Silent};
use crate::lifecycle::migrate::{Migration, Selection, report};
use crate::lifecycle::{Connections, default_agent_binary, dry_run};
use crate::report::{Format, plural};

pub fn run(printer: &Printer) -> u8 {
    match demo(printer) {
        Ok(code) => code,
        Err(e) => {
            printer.error(format!("demo: {e}"));
            exit::FAILURES
        }
    }
}

fn demo(printer: &Printer) -> Result<u8, String> {
    let started = Instant::now();
    let root = tempfile::Builder::new()
        .prefix("transhumance-demo-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let port = demo::free_port().map_err(|e| e.to_string())?;
    let scenario = demo::build(&root, port).map_err(|e| e.to_string())?;
    let ip = |a: &str| a.parse().expect("demo address");
    let _old = WebServer::start(ip(OLD_ADDRESS), port, root.join("old-dc/www"), vec![])
        .map_err(|e| format!("web server of the old datacenter: {e}"))?;
    let _new = WebServer::start(
        ip(NEW_ADDRESS),
        port,
        root.join("new-dc/www"),
        vec![BROKEN_SITE.to_string()],
    )
    .map_err(|e| format!("web server of the new datacenter: {e}"))?;
    outln!("transhumance demo in {}", root.display());
    outln!(
        "  old datacenter: old-dc/ served on {OLD_ADDRESS}:{port}; new datacenter: new-dc/ on {NEW_ADDRESS}:{port}"
    );
    outln!(
        "  zone file: zones/demo.test.zone; plan: demo-plan.yaml; {BROKEN_SITE} will fail its probe (its PHP backend is missing in the new datacenter)"
    );
    let loaded = crate::plan::load(&scenario.plan).map_err(|e| e.to_string())?;
    let connections = Connections::new(&loaded.plan.hosts, default_agent_binary());
    let observer: Box<dyn Observer> = if printer.progress {
        Box::new(Bars::new())
    } else {
        Box::new(Silent)
    };

    outln!("\n== 1. dry run (reads everything, writes nothing)");
    let dry = dry_run(&loaded, &connections, observer.as_ref());
    observer.finish();
    outln!(
        "  {}, {}, {} to send; {}; {}",
        plural(dry.totals.sites, "site", "sites"),
        plural(dry.totals.files, "file", "files"),
        crate::plan::units::human_bytes(dry.totals.bytes_to_send),
        plural(dry.totals.dns_changes, "DNS change", "DNS changes"),
        plural(dry.risks.len() as u64, "risk", "risks")
    );

    let m = Migration::open(
        &loaded,
        &connections,
        observer.as_ref(),
        crate::check::Allowed::none(),
    )
    .map_err(|e| e.to_string())?;
    outln!("\n== 2. pre-sync, twice (the second one moves only what changed)");
    for _ in 0..2 {
        let o = m.sync(&[]).map_err(|e| e.to_string())?;
        if finish("pre-sync", &o, printer) != exit::OK {
            return Ok(exit::FAILURES);
        }
    }

    outln!("\n== 3. lower the TTLs, wait for the old ones to expire");
    let wait = m.lower_ttl().map_err(|e| e.to_string())?;
    outln!("  waiting {wait} s");
    std::thread::sleep(Duration::from_secs(wait + 1));

    outln!(
        "\n== 4. cutover: freeze, final sync, verify, probes through the new address, DNS switch, probes through DNS"
    );
    let outcomes = m.cutover(&Selection::All).map_err(|e| e.to_string())?;
    finish("cutover", &outcomes, printer);
    let restored = m.restore_ttl().map_err(|e| e.to_string())?;
    outln!(
        "  original TTLs back on {}",
        plural(
            restored.applied.len() as u64,
            "confirmed record",
            "confirmed records"
        )
    );
    drop(m);

    outln!("\n== 5. where things are");
    let r = report(&loaded, &connections).map_err(|e| e.to_string())?;
    super::printer::out(&crate::report::lifecycle::text(
        &r,
        false,
        super::printer::text_width(),
    ));
    let zone = std::fs::read_to_string(&scenario.zone_file).map_err(|e| e.to_string())?;
    outln!("  zone file now:");
    for line in zone
        .lines()
        .filter(|l| ["alpha", "beta", "gamma"].iter().any(|s| l.starts_with(s)))
    {
        outln!("    {line}");
    }
    let html = loaded.plan.state_dir.join("report.html");
    super::report::write_file(&r, Format::Html, None, &html).map_err(|e| e.to_string())?;
    outln!(
        "\nHTML report: {}\n(done in {:.1} s; the demo folder stays for you to look at, delete it when done)",
        html.display(),
        started.elapsed().as_secs_f64()
    );
    let confirmed = r.counts.get("confirmed").copied().unwrap_or(0);
    let failed = r.counts.get("failed").copied().unwrap_or(0);
    Ok(if confirmed == 2 && failed == 1 {
        exit::OK
    } else {
        exit::FAILURES
    })
}
