//! The question commands that change DNS or freeze sites ask before they act: what they will do
//! (from the library's own preview: the plan they will apply), then `Proceed? [y/N]` on the
//! terminal. `--yes` answers for scripts; without a terminal and without `--yes` they refuse.

use super::exit;
use super::printer::Printer;
use crate::dns::cutover::Change;
use crate::dns::provider::RrKey;
use crate::lifecycle::migrate::Preview;

/// Refuses early (exit 2) when no question can be asked and `--yes` was not given.
pub fn can_ask(what: &str, printer: &Printer) -> Result<(), u8> {
    if printer.yes || printer.interactive() {
        Ok(())
    } else {
        printer.error(format!(
            "not a terminal: pass --yes to confirm {what} (nothing was changed)"
        ));
        Err(exit::INVALID)
    }
}

/// Shows `summary` and asks; `Err(2)` when the answer is not yes. `nothing` (nothing to do, or
/// a refusal coming anyway) asks nothing.
pub fn ask(what: &str, summary: &str, nothing: bool, printer: &Printer) -> Result<(), u8> {
    if printer.yes || nothing {
        return Ok(());
    }
    can_ask(what, printer)?;
    if printer.ask(summary, "Proceed?") {
        Ok(())
    } else {
        printer.notice("aborted: nothing changed");
        Err(exit::INVALID)
    }
}

/// What a lifecycle command will take: its sites with their state, then its DNS changes.
pub fn render(title: &str, dns_title: &str, preview: &Preview) -> String {
    let mut out = format!("{title}: {} site(s)\n", preview.sites.len());
    let width = preview
        .sites
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for s in &preview.sites {
        out.push_str(&format!(
            "  {:<width$}  {}\n",
            s.name,
            s.state.label(),
            width = width
        ));
    }
    out.push_str(&render_dns(dns_title, &preview.dns, &preview.left_alone));
    out
}

/// DNS records that will change (name, type, from -> to, TTL) and those left alone.
pub fn render_dns(title: &str, changes: &[Change], left_alone: &[(RrKey, String)]) -> String {
    let mut out = if changes.is_empty() {
        format!("{title}: none\n")
    } else {
        format!("{title} ({}):\n", changes.len())
    };
    for c in changes {
        let ttl = if c.from.ttl == c.to.ttl {
            format!("TTL {}", c.to.ttl)
        } else {
            format!("TTL {} -> {}", c.from.ttl, c.to.ttl)
        };
        out.push_str(&format!(
            "  {} {}  {} -> {}  ({ttl})\n",
            c.key.name,
            c.key.rtype,
            values(&c.from.values),
            values(&c.to.values)
        ));
    }
    if !left_alone.is_empty() {
        out.push_str(&format!("left alone ({}):\n", left_alone.len()));
        for (k, why) in left_alone {
            out.push_str(&format!("  {} {}: {why}\n", k.name, k.rtype));
        }
    }
    out
}

fn values(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::provider::RrState;
    use crate::lifecycle::migrate::PreviewSite;
    use crate::lifecycle::state::SiteState;

    fn key(name: &str) -> RrKey {
        RrKey {
            zone: "example.test".into(),
            name: name.into(),
            rtype: "A".into(),
        }
    }

    #[test]
    fn the_summary_names_sites_states_and_each_record_from_and_to() {
        let preview = Preview {
            sites: vec![
                PreviewSite {
                    name: "a.example.test".into(),
                    state: SiteState::PreSynced,
                },
                PreviewSite {
                    name: "bb.example.test".into(),
                    state: SiteState::Confirmed,
                },
            ],
            dns: vec![Change {
                key: key("a.example.test."),
                from: RrState {
                    ttl: 3600,
                    values: vec!["192.0.2.1".into()],
                },
                to: RrState {
                    ttl: 300,
                    values: vec!["198.51.100.1".into()],
                },
            }],
            left_alone: vec![(key("bb.example.test."), "changed by someone".into())],
        };
        assert_eq!(
            render("cutover", "DNS records that will switch", &preview),
            "cutover: 2 site(s)\n  a.example.test   pre-synced\n  bb.example.test  confirmed\n\
             DNS records that will switch (1):\n  a.example.test. A  192.0.2.1 -> 198.51.100.1  (TTL 3600 -> 300)\n\
             left alone (1):\n  bb.example.test. A: changed by someone\n"
        );
    }
}
