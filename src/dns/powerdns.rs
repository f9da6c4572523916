//! The PowerDNS HTTP API as a provider: read the RRsets, compare, then one PATCH per zone.
//!
//! The API has no prerequisites, so the compare is a read just before the write: a change made
//! in between would not be seen. Signed RFC 2136 updates (which PowerDNS also takes) close that
//! window; this provider is for servers where only the API is open.

use std::net::SocketAddr;

use serde_json::{Value, json};

use super::provider::Provider;
use super::provider::{DnsError, RrKey, RrState, Swap};
use crate::plan::secret::Secret;

/// A PowerDNS server reached through its API.
pub struct PowerDnsApi {
    base: String,
    key: Secret,
    read_server: SocketAddr,
    agent: ureq::Agent,
}

impl PowerDnsApi {
    /// `api_url` such as `http://127.0.0.1:8081`; zones are read by DNS from `read_server`.
    pub fn new(api_url: &str, key: Secret, read_server: SocketAddr) -> PowerDnsApi {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(15)))
            .http_status_as_error(false)
            .build();
        PowerDnsApi {
            base: api_url.trim_end_matches('/').to_string(),
            key,
            read_server,
            agent: config.into(),
        }
    }

    fn zone_url(&self, zone: &str) -> String {
        format!(
            "{}/api/v1/servers/localhost/zones/{}",
            self.base,
            super::query::fqdn(zone)
        )
    }

    fn fail(&self, what: &str, status: u16, body: &str) -> DnsError {
        match status {
            401 | 403 => DnsError::ApiKeyRejected {
                server: self.base.clone(),
                reason: format!("HTTP {status}"),
            },
            404 | 422 => DnsError::NotAuthoritative {
                zone: what.into(),
                server: self.base.clone(),
            },
            _ => DnsError::Failed {
                name: what.into(),
                rtype: String::new(),
                server: self.base.clone(),
                code: format!("HTTP {status}: {}", body.trim()),
            },
        }
    }

    fn zone(&self, zone: &str) -> Result<Value, DnsError> {
        let unreachable = |e: ureq::Error| DnsError::Unreachable {
            server: self.base.clone(),
            message: e.to_string(),
        };
        let mut res = self
            .agent
            .get(&self.zone_url(zone))
            .header("X-API-Key", self.key.expose())
            .call()
            .map_err(unreachable)?;
        let status = res.status().as_u16();
        let body = res.body_mut().read_to_string().map_err(unreachable)?;
        if status != 200 {
            return Err(self.fail(zone, status, &body));
        }
        serde_json::from_str(&body).map_err(|e| DnsError::Invalid(format!("{}: {e}", self.base)))
    }
}

/// The RRset `name`/`rtype` in a zone document of the API.
fn rrset_of(zone: &Value, name: &str, rtype: &str) -> RrState {
    let fq = super::query::fqdn(name);
    let found = zone["rrsets"].as_array().into_iter().flatten().find(|r| {
        r["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(&fq))
            && r["type"] == rtype
    });
    match found {
        None => RrState {
            ttl: 0,
            values: Vec::new(),
        },
        Some(r) => {
            let mut values: Vec<String> = r["records"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|x| x["disabled"] != true)
                .filter_map(|x| x["content"].as_str().map(String::from))
                .collect();
            values.sort();
            RrState {
                ttl: r["ttl"].as_u64().unwrap_or(0) as u32,
                values,
            }
        }
    }
}

impl Provider for PowerDnsApi {
    fn label(&self) -> String {
        self.base.clone()
    }

    fn read_server(&self) -> SocketAddr {
        self.read_server
    }

    fn read(&self, key: &RrKey) -> Result<RrState, String> {
        self.zone(&key.zone)
            .map(|z| rrset_of(&z, &key.name, &key.rtype))
            .map_err(|e| e.to_string())
    }

    fn swap_all(&self, zone: &str, swaps: &[Swap<'_>]) -> Result<(), DnsError> {
        let doc = self.zone(zone)?;
        for s in swaps {
            if rrset_of(&doc, s.name, s.rtype).values != s.current.values {
                return Err(DnsError::Changed {
                    name: s.name.into(),
                    rtype: s.rtype.into(),
                    server: self.base.clone(),
                });
            }
        }
        let rrsets: Vec<Value> = swaps
            .iter()
            .map(|s| {
                json!({
                    "name": super::query::fqdn(s.name),
                    "type": s.rtype,
                    "ttl": s.new.ttl,
                    "changetype": "REPLACE",
                    "records": s.new.values.iter().map(|v| json!({ "content": v, "disabled": false })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let unreachable = |e: ureq::Error| DnsError::Unreachable {
            server: self.base.clone(),
            message: e.to_string(),
        };
        // One PATCH carries every RRset of the zone: PowerDNS applies it in one transaction.
        let mut res = self
            .agent
            .patch(&self.zone_url(zone))
            .header("X-API-Key", self.key.expose())
            .send_json(json!({ "rrsets": rrsets }))
            .map_err(unreachable)?;
        let status = res.status().as_u16();
        if status == 204 || status == 200 {
            return Ok(());
        }
        let body = res.body_mut().read_to_string().unwrap_or_default();
        Err(self.fail(zone, status, &body))
    }
}
