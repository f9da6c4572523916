//! The VHFFS panel's DNS tables as a provider: records read from `vhffs_dns_rr` and switched by
//! SQL through `psql` on the panel's host, one PL/pgSQL block per zone so a swap is all or
//! nothing, compare-and-swap on every row it touches, and the zone's serial bumped with it.
//!
//! Names as the panel stores them: relative to the zone (`www`), the apex as `''` or `@`, a name
//! ending with a dot absolute. Data is text; MX and SRV keep their priority in `aux`, so read
//! back as `<aux> <data>`. Targets of NS, CNAME, MX and SRV without a final dot are relative.
//! A swap bumps the zone's serial the way VHFFS does (date-based, `YYYYMMDDnn`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::provider::Provider;
use super::provider::{DnsError, RrKey, RrState, Swap};
use super::query::{Rr, fqdn};
use crate::db::discover::query;
use crate::plan::DbServer;
use crate::plan::raw::DbEngine;
use crate::transport::Transport;

/// Tag of the exception raised when a row no longer holds the value the swap expects.
const CHANGED: &str = "transhumance-changed:";
/// Tag of the exception raised when the panel has no such zone.
const NO_ZONE: &str = "transhumance-no-zone";

/// One `vhffs_dns_rr` row: id, stored name, type, data, aux, ttl.
type PanelRow = (i64, String, String, String, i64, u32);

/// The panel's database, reached through `psql` on its host.
pub struct VhffsDns {
    transport: Arc<dyn Transport>,
    panel: DbServer,
    database: String,
}

/// A SQL string literal. Backslashes are refused rather than trusted to
/// `standard_conforming_strings`; no address or host name holds one.
fn lit(s: &str) -> Result<String, DnsError> {
    if s.contains(['\\', '\0']) || s.contains("$th$") {
        return Err(DnsError::Invalid(format!(
            "`{s}` cannot be written to the panel's tables"
        )));
    }
    Ok(format!("'{}'", s.replace('\'', "''")))
}

/// The stored forms of absolute `name` in `zone`, lower case: how the panel may spell it.
fn stored_names(name: &str, zone: &str) -> Vec<String> {
    let name = fqdn(name);
    let zone = fqdn(zone);
    if name == zone {
        return vec![String::new(), "@".into(), zone];
    }
    match name.strip_suffix(&format!(".{zone}")) {
        Some(relative) => vec![relative.to_string(), name.clone()],
        None => vec![name],
    }
}

/// The absolute name of a stored `name`.
fn absolute(name: &str, zone: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n.is_empty() || n == "@" {
        fqdn(zone)
    } else if n.ends_with('.') {
        n
    } else {
        format!("{n}.{}", fqdn(zone))
    }
}

/// Record data as servers present it: relative targets made absolute, priorities in front.
fn presented(rtype: &str, data: &str, aux: i64, zone: &str) -> String {
    let target = |d: &str| {
        if d.ends_with('.') || d.is_empty() {
            d.to_ascii_lowercase()
        } else if d == "@" {
            fqdn(zone)
        } else {
            format!("{}.{}", d.to_ascii_lowercase(), fqdn(zone))
        }
    };
    match rtype {
        "NS" | "CNAME" | "PTR" => target(data),
        "MX" => format!("{aux} {}", target(data)),
        "SRV" => format!("{aux} {data}"),
        _ => data.to_string(),
    }
}

/// Multiset difference `a - b` of sorted value lists.
fn minus(a: &[String], b: &[String]) -> Vec<String> {
    let mut rest: Vec<&String> = b.iter().collect();
    a.iter()
        .filter(|v| match rest.iter().position(|r| r == v) {
            Some(i) => {
                rest.remove(i);
                false
            }
            None => true,
        })
        .cloned()
        .collect()
}

impl VhffsDns {
    pub fn new(transport: Arc<dyn Transport>, panel: DbServer, database: String) -> VhffsDns {
        VhffsDns {
            transport,
            panel,
            database,
        }
    }

    fn sql(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        query(
            self.transport.as_ref(),
            DbEngine::Postgres,
            &self.panel,
            Some(&self.database),
            sql,
        )
    }

    /// The rows of each of `zones` that the panel has (absent: no such zone), by zone name.
    fn rows_of(&self, zones: &[String]) -> Result<BTreeMap<String, Vec<PanelRow>>, DnsError> {
        let mut out: BTreeMap<String, Vec<PanelRow>> = BTreeMap::new();
        // Chunks keep each `psql -c` argument far below the kernel's limit on one argument.
        for chunk in zones.chunks(2_000) {
            let names = chunk
                .iter()
                .map(|z| lit(&crate::plan::validate::normalize_zone(z)))
                .collect::<Result<Vec<_>, _>>()?
                .join(", ");
            // Data hex-encoded: TXT records may hold tabs and newlines, which would break rows.
            // The outer join gives a zone without records one row without an id.
            let rows = self
                .sql(&format!(
                    "SELECT lower(trim(trailing '.' from d.domain)), r.id, COALESCE(r.name, ''), upper(r.type), \
                     encode(convert_to(COALESCE(r.data, ''), 'UTF8'), 'hex'), COALESCE(r.aux, 0), \
                     COALESCE(r.ttl, d.ttl, 3600) FROM vhffs_dns d LEFT JOIN vhffs_dns_rr r ON r.zone = d.dns_id \
                     WHERE lower(trim(trailing '.' from d.domain)) IN ({names}) ORDER BY r.id"
                ))
                .map_err(|message| DnsError::Unreachable {
                    server: self.label(),
                    message,
                })?;
            for r in rows.into_iter().filter(|r| r.len() >= 7) {
                let zone = out.entry(r[0].clone()).or_default();
                if r[1].is_empty() {
                    continue;
                }
                let data = (0..r[4].len())
                    .step_by(2)
                    .filter_map(|i| u8::from_str_radix(r[4].get(i..i + 2)?, 16).ok())
                    .collect::<Vec<u8>>();
                zone.push((
                    r[1].parse().unwrap_or_default(),
                    r[2].clone(),
                    r[3].clone(),
                    String::from_utf8_lossy(&data).into_owned(),
                    r[5].parse().unwrap_or_default(),
                    r[6].parse().unwrap_or_default(),
                ));
            }
        }
        Ok(out)
    }

    /// Every record of each of `zones` as the panel would have them served, in one round trip
    /// per 2,000 zones; a zone the panel does not have is absent.
    ///
    /// # Errors
    /// `psql` fails on the panel's host.
    pub fn records_of(&self, zones: &[String]) -> Result<BTreeMap<String, Vec<Rr>>, DnsError> {
        Ok(self
            .rows_of(zones)?
            .into_iter()
            .map(|(zone, rows)| {
                let records = rows
                    .into_iter()
                    .map(|(_, name, rtype, data, aux, ttl)| Rr {
                        name: absolute(&name, &zone),
                        data: presented(&rtype, &data, aux, &zone),
                        rtype,
                        ttl,
                    })
                    .collect();
                (zone, records)
            })
            .collect())
    }

    /// Every record of the zone as the panel would have it served.
    ///
    /// # Errors
    /// `psql` fails on the panel's host, or the panel has no such zone.
    pub fn records(&self, zone: &str) -> Result<Vec<Rr>, DnsError> {
        let name = crate::plan::validate::normalize_zone(zone);
        self.records_of(std::slice::from_ref(&name))?
            .remove(&name)
            .ok_or_else(|| DnsError::NotAuthoritative {
                zone: zone.into(),
                server: self.label(),
            })
    }

    /// The PL/pgSQL block that swaps `swaps` in `zone` all at once, or raises.
    fn swap_block(zone: &str, swaps: &[Swap<'_>]) -> Result<String, DnsError> {
        let zone_lit = lit(&crate::plan::validate::normalize_zone(zone))?;
        let mut b = format!(
            "DO $th$ DECLARE z integer; n integer; cur text[]; nm text; BEGIN \
             SELECT dns_id INTO z FROM vhffs_dns WHERE lower(trim(trailing '.' from domain)) = {zone_lit} FOR UPDATE; \
             IF z IS NULL THEN RAISE EXCEPTION '{NO_ZONE}'; END IF; "
        );
        for (i, s) in swaps.iter().enumerate() {
            let names = stored_names(s.name, zone)
                .iter()
                .map(|n| lit(n))
                .collect::<Result<Vec<_>, _>>()?
                .join(", ");
            let rrset = format!(
                "zone = z AND lower(COALESCE(name, '')) IN ({names}) AND upper(type) = {}",
                lit(&s.rtype.to_ascii_uppercase())?
            );
            let expected = s
                .current
                .values
                .iter()
                .map(|v| lit(v))
                .collect::<Result<Vec<_>, _>>()?
                .join(", ");
            let changed = format!("RAISE EXCEPTION '{CHANGED}{i}'");
            // Lock the RRset's rows, then compare all of them with what the plan read.
            b.push_str(&format!(
                "PERFORM 1 FROM vhffs_dns_rr WHERE {rrset} FOR UPDATE; \
                 SELECT COALESCE(array_agg(data ORDER BY data COLLATE \"C\"), '{{}}') INTO cur FROM vhffs_dns_rr WHERE {rrset}; \
                 IF cur IS DISTINCT FROM ARRAY[{expected}]::text[] THEN {changed}; END IF; \
                 SELECT name INTO nm FROM vhffs_dns_rr WHERE {rrset} ORDER BY id LIMIT 1; "
            ));
            let removed = minus(&s.current.values, &s.new.values);
            let added = minus(&s.new.values, &s.current.values);
            // Sorted old values pair with sorted new ones, so a rollback pairs them back and
            // every row gets its own value again.
            for (old, new) in removed.iter().zip(&added) {
                b.push_str(&format!(
                    "UPDATE vhffs_dns_rr SET data = {} WHERE id = (SELECT id FROM vhffs_dns_rr WHERE {rrset} AND data = {} ORDER BY id LIMIT 1); \
                     GET DIAGNOSTICS n = ROW_COUNT; IF n <> 1 THEN {changed}; END IF; ",
                    lit(new)?,
                    lit(old)?
                ));
            }
            for old in removed.iter().skip(added.len()) {
                b.push_str(&format!(
                    "DELETE FROM vhffs_dns_rr WHERE id = (SELECT id FROM vhffs_dns_rr WHERE {rrset} AND data = {} ORDER BY id DESC LIMIT 1); \
                     GET DIAGNOSTICS n = ROW_COUNT; IF n <> 1 THEN {changed}; END IF; ",
                    lit(old)?
                ));
            }
            let relative = lit(&stored_names(s.name, zone)[0])?;
            for new in added.iter().skip(removed.len()) {
                b.push_str(&format!(
                    "INSERT INTO vhffs_dns_rr (zone, name, type, data, aux, ttl) VALUES (z, COALESCE(nm, {relative}), {}, {}, 0, {}); ",
                    lit(&s.rtype.to_ascii_uppercase())?,
                    lit(new)?,
                    s.new.ttl
                ));
            }
            if s.new.ttl != s.current.ttl {
                b.push_str(&format!(
                    "UPDATE vhffs_dns_rr SET ttl = {} WHERE {rrset}; ",
                    s.new.ttl
                ));
            }
        }
        // The serial as VHFFS bumps it (`Vhffs::Services::DNS::get_next_serial`): today's
        // `YYYYMMDD01`, or one more when the serial is that far already.
        b.push_str(
            "UPDATE vhffs_dns SET serial = CASE WHEN serial >= to_char(now(), 'YYYYMMDD00')::int \
             THEN serial + 1 ELSE to_char(now(), 'YYYYMMDD01')::int END WHERE dns_id = z; END $th$",
        );
        Ok(b)
    }
}

impl Provider for VhffsDns {
    fn label(&self) -> String {
        format!(
            "vhffs_dns_rr in database `{}` on host `{}`",
            self.database, self.panel.host
        )
    }

    fn read_server(&self) -> std::net::SocketAddr {
        // Never queried: `read` and `list` go to the tables.
        std::net::SocketAddr::from(([127, 0, 0, 1], 53))
    }

    fn read(&self, key: &RrKey) -> Result<RrState, String> {
        let name = fqdn(&key.name);
        let rows = self.records(&key.zone).map_err(|e| e.to_string())?;
        let mine: Vec<&Rr> = rows
            .iter()
            .filter(|r| r.name == name && r.rtype == key.rtype)
            .collect();
        let mut values: Vec<String> = mine.iter().map(|r| r.data.clone()).collect();
        values.sort();
        Ok(RrState {
            ttl: mine.first().map_or(0, |r| r.ttl),
            values,
        })
    }

    fn list(&self, zone: &str) -> Option<Result<Vec<Rr>, DnsError>> {
        Some(self.records(zone))
    }

    fn list_many(&self, zones: &[String]) -> Option<Result<BTreeMap<String, Vec<Rr>>, DnsError>> {
        Some(self.records_of(zones))
    }

    fn swap_all(&self, zone: &str, swaps: &[Swap<'_>]) -> Result<(), DnsError> {
        if swaps.is_empty() {
            return Ok(());
        }
        let block = Self::swap_block(zone, swaps)?;
        match self.sql(&block) {
            Ok(_) => Ok(()),
            Err(message) => {
                if let Some(i) = message
                    .split(CHANGED)
                    .nth(1)
                    .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse::<usize>().ok())
                    && let Some(s) = swaps.get(i)
                {
                    return Err(DnsError::Changed {
                        name: s.name.into(),
                        rtype: s.rtype.into(),
                        server: self.label(),
                    });
                }
                if message.contains(NO_ZONE) {
                    return Err(DnsError::NotAuthoritative {
                        zone: zone.into(),
                        server: self.label(),
                    });
                }
                Err(DnsError::Failed {
                    name: zone.into(),
                    rtype: String::new(),
                    server: self.label(),
                    code: message,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_between_the_panel_and_absolute_form() {
        assert_eq!(absolute("", "example.org"), "example.org.");
        assert_eq!(absolute("@", "example.org"), "example.org.");
        assert_eq!(absolute("WWW", "example.org"), "www.example.org.");
        assert_eq!(
            absolute("mail.other.net.", "example.org"),
            "mail.other.net."
        );
        assert_eq!(
            stored_names("example.org.", "example.org"),
            ["", "@", "example.org."]
        );
        assert_eq!(
            stored_names("www.example.org.", "example.org"),
            ["www", "www.example.org."]
        );
        assert_eq!(
            presented("MX", "mail", 10, "example.org"),
            "10 mail.example.org."
        );
        assert_eq!(presented("A", "192.0.2.1", 0, "example.org"), "192.0.2.1");
    }

    #[test]
    fn a_swap_is_one_block_that_checks_every_row_it_touches() {
        let cur = RrState {
            ttl: 300,
            values: vec!["192.0.2.10".into(), "192.0.2.11".into()],
        };
        let new = RrState {
            ttl: 60,
            values: vec!["192.0.2.11".into(), "198.51.100.10".into()],
        };
        let block = VhffsDns::swap_block(
            "example.org",
            &[Swap {
                name: "www.example.org.",
                rtype: "A",
                current: &cur,
                new: &new,
            }],
        )
        .unwrap();
        assert!(block.starts_with("DO $th$"), "{block}");
        assert!(
            block.contains("SET data = '198.51.100.10'")
                && block.contains("AND data = '192.0.2.10'")
        );
        assert!(
            !block.contains("SET data = '192.0.2.11'"),
            "kept values stay"
        );
        assert!(block.contains("SET ttl = 60"));
        assert!(block.contains("THEN serial + 1 ELSE to_char(now(), 'YYYYMMDD01')"));
        assert!(
            VhffsDns::swap_block(
                "example.org",
                &[Swap {
                    name: "x.example.org.",
                    rtype: "TXT",
                    current: &cur,
                    new: &RrState {
                        ttl: 1,
                        values: vec!["a\\b".into()]
                    },
                }]
            )
            .is_err()
        );
    }
}
