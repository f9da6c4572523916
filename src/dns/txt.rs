//! TXT records that name an address the plan switches away from (SPF `ip4:192.0.2.10`): the
//! switch changes A/AAAA records only, so these keep naming the old address and are reported.

use std::net::IpAddr;

use serde::Serialize;

/// A TXT record whose text names an old address of the switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxtRisk {
    pub name: String,
    /// The record's text, as served.
    pub text: String,
    /// The old address it names (or a network of it contains), and the one it switches to.
    pub from: IpAddr,
    pub to: IpAddr,
}

impl std::fmt::Display for TxtRisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TXT `{}` names {}, which switches to {}: it will still name the old address",
            self.text, self.from, self.to
        )
    }
}

/// The address or network one piece of text spells, if any (`192.0.2.10`, `192.0.2.0/24`,
/// `2001:db8::/32`).
fn address_or_network(token: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match token.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (token, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((ip, len))
}

fn contains((net, len): (IpAddr, u8), ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// The old addresses of `switch` that `text` names, by address or by a network holding it.
/// Text is cut at every character no address has (SPF's `ip4:`/`ip6:` prefixes are dropped),
/// so `192.0.2.100` never matches `192.0.2.10`.
pub fn named_addresses(text: &str, switch: &[(IpAddr, IpAddr)]) -> Vec<(IpAddr, IpAddr)> {
    let address_char = |c: char| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/');
    let mut found: Vec<(IpAddr, IpAddr)> = Vec::new();
    for token in text.split(|c: char| !address_char(c)) {
        // `ip4:192.0.2.10` is cut to `4:192.0.2.10`; a sentence may end on a dot.
        let token = token.trim_end_matches(['.', ':']);
        let candidates = [
            Some(token),
            token.strip_prefix("4:"),
            token.strip_prefix("6:"),
        ];
        for net in candidates
            .into_iter()
            .flatten()
            .filter_map(address_or_network)
        {
            for &(from, to) in switch {
                if contains(net, from) && !found.contains(&(from, to)) {
                    found.push((from, to));
                }
            }
        }
    }
    found
}

/// Every TXT record of `records` (owner, text) naming an old address of `switch`.
pub fn risks<'a>(
    records: impl IntoIterator<Item = (&'a str, &'a str)>,
    switch: &[(IpAddr, IpAddr)],
) -> Vec<TxtRisk> {
    let mut out = Vec::new();
    for (name, text) in records {
        for (from, to) in named_addresses(text, switch) {
            out.push(TxtRisk {
                name: name.to_string(),
                text: text.to_string(),
                from,
                to,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch() -> Vec<(IpAddr, IpAddr)> {
        vec![
            (
                "192.0.2.10".parse().unwrap(),
                "198.51.100.10".parse().unwrap(),
            ),
            (
                "2001:db8::10".parse().unwrap(),
                "2001:db8:1::10".parse().unwrap(),
            ),
        ]
    }

    fn named(text: &str) -> Vec<String> {
        named_addresses(text, &switch())
            .into_iter()
            .map(|(from, _)| from.to_string())
            .collect()
    }

    #[test]
    fn spf_mechanisms_and_plain_text_name_the_old_address() {
        assert_eq!(named("v=spf1 ip4:192.0.2.10 -all"), ["192.0.2.10"]);
        assert_eq!(named("v=spf1 ip4:192.0.2.0/24 mx -all"), ["192.0.2.10"]);
        assert_eq!(named("v=spf1 ip6:2001:db8::10 ~all"), ["2001:db8::10"]);
        assert_eq!(named("v=spf1 ip6:2001:db8::/32 ~all"), ["2001:db8::10"]);
        assert_eq!(named("\"our server is 192.0.2.10.\""), ["192.0.2.10"]);
        assert_eq!(
            named("v=spf1 ip4:192.0.2.10 ip4:192.0.2.10/32 ip6:2001:db8::10 -all"),
            ["192.0.2.10", "2001:db8::10"]
        );
    }

    #[test]
    fn other_addresses_and_ordinary_text_do_not() {
        assert!(named("v=spf1 ip4:192.0.2.100 ip4:10.192.0.2 -all").is_empty());
        assert!(named("v=spf1 ip4:192.0.3.0/24 a mx include:_spf.example.org -all").is_empty());
        assert!(named("v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC").is_empty());
        assert!(named("google-site-verification=abcdef0123 deadbeef cafe:").is_empty());
        assert!(named("ip4:192.0.2.10/33").is_empty(), "not a network");
    }

    #[test]
    fn risks_name_the_record_and_both_addresses() {
        let r = risks([("example.test.", "v=spf1 ip4:192.0.2.10 -all")], &switch());
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].to_string(),
            "TXT `v=spf1 ip4:192.0.2.10 -all` names 192.0.2.10, which switches to 198.51.100.10: it will still name the old address"
        );
    }
}
