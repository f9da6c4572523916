//! Finds each site's certificate and key in the web server's own configuration on its source
//! host (`cutover.tls.discover`), for platforms where certificates live wherever each virtual
//! host says rather than under one path template. Apache (`SSLCertificateFile`) and nginx
//! (`ssl_certificate`) are read; the files themselves are read later, as for templates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::plan::{Plan, Site, SiteTls, TlsDiscovery};
use crate::transport::{Connections, ExecRequest};

/// `$@` the configured paths: a directory gives its files (one level, symlinks followed, as
/// `sites-enabled/` holds links), a file or a glob gives itself. Each file is printed after a
/// marker line; unreadable or absent paths are named on stderr and skipped.
const LIST: &str = r#"emit() {
  for f in "$@"; do
    [ -f "$f" ] || continue
    if [ -r "$f" ]; then printf '\n%s %s\n' '#transhumance-file' "$f"; cat -- "$f"; else echo "unreadable: $f" >&2; fi
  done
}
for p in "$@"; do
  if [ -d "$p" ]; then emit "$p"/*; elif [ -e "$p" ]; then emit "$p"; else emit $p; fi
done"#;

/// One TLS virtual host: the names it serves and the files it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vhost {
    /// Where it is defined (`file:line`), for the review.
    pub origin: String,
    pub names: Vec<String>,
    pub cert: PathBuf,
    /// `None`: the certificate file holds the key too (Apache without `SSLCertificateKeyFile`).
    pub key: Option<PathBuf>,
}

/// A block being read: its first line, names, certificate and key.
type Block = (usize, Vec<String>, Option<String>, Option<String>);

/// The TLS virtual hosts of an Apache configuration file: `<VirtualHost>` blocks with
/// `SSLCertificateFile`, their `ServerName` and every `ServerAlias`.
pub fn apache(file: &str, text: &str) -> Vec<Vhost> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (n, line) in logical_lines(text) {
        let mut words = split_words(&line);
        if words.is_empty() {
            continue;
        }
        let head = words.remove(0).to_ascii_lowercase();
        if head.starts_with("<virtualhost") {
            current = Some((n, Vec::new(), None, None));
            continue;
        }
        if head == "</virtualhost>" {
            if let Some((at, names, Some(cert), key)) = current.take() {
                out.push(Vhost {
                    origin: format!("{file}:{at}"),
                    names,
                    cert: PathBuf::from(cert),
                    key: key.map(PathBuf::from),
                });
            }
            current = None;
            continue;
        }
        let Some((_, names, cert, key)) = current.as_mut() else {
            continue;
        };
        match head.as_str() {
            "servername" => names.extend(words.into_iter().take(1).map(host_of)),
            "serveralias" => names.extend(words.into_iter().map(host_of)),
            "sslcertificatefile" => *cert = words.into_iter().next(),
            "sslcertificatekeyfile" => *key = words.into_iter().next(),
            _ => {}
        }
    }
    out
}

/// The TLS virtual hosts of an nginx configuration file: `server` blocks with
/// `ssl_certificate` (and `ssl_certificate_key`), their `server_name` names. Names and paths
/// holding variables (`$ssl_server_name`) say nothing about one site and are left out.
pub fn nginx(file: &str, text: &str) -> Vec<Vhost> {
    // Tokens with their line: words, `;`, `{`, `}`; comments dropped; quotes kept whole.
    let mut tokens: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut word = String::new();
        let mut quote: Option<char> = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') => break,
                (None, ';' | '{' | '}') => {
                    if !word.is_empty() {
                        tokens.push((i + 1, std::mem::take(&mut word)));
                    }
                    tokens.push((i + 1, c.to_string()));
                }
                (None, c) if c.is_whitespace() => {
                    if !word.is_empty() {
                        tokens.push((i + 1, std::mem::take(&mut word)));
                    }
                }
                (None, c) => word.push(c),
            }
        }
        if !word.is_empty() {
            tokens.push((i + 1, word));
        }
    }
    let mut out = Vec::new();
    // Open blocks: for a `server` block, its line, names, certificate and key.
    let mut stack: Vec<Option<Block>> = Vec::new();
    let mut statement: Vec<(usize, String)> = Vec::new();
    for (line, t) in tokens {
        match t.as_str() {
            "{" => {
                let server = statement.first().is_some_and(|(_, w)| w == "server");
                stack.push(server.then(|| (line, Vec::new(), None, None)));
                statement.clear();
            }
            "}" => {
                statement.clear();
                if let Some(Some((at, names, Some(cert), key))) = stack.pop()
                    && !cert.contains('$')
                {
                    out.push(Vhost {
                        origin: format!("{file}:{at}"),
                        names,
                        cert: PathBuf::from(cert),
                        key: key.filter(|k| !k.contains('$')).map(PathBuf::from),
                    });
                }
            }
            ";" => {
                if let Some(Some((_, names, cert, key))) = stack.last_mut() {
                    let words: Vec<String> = statement.drain(..).map(|(_, w)| w).collect();
                    match words.first().map(String::as_str) {
                        Some("server_name") => names.extend(
                            words[1..]
                                .iter()
                                .filter(|n| !n.contains('$') && !n.starts_with('~'))
                                .map(|n| host_of(n.clone())),
                        ),
                        Some("ssl_certificate") => *cert = words.get(1).cloned(),
                        Some("ssl_certificate_key") => *key = words.get(1).cloned(),
                        _ => {}
                    }
                }
                statement.clear();
            }
            _ => statement.push((line, t)),
        }
    }
    out
}

/// Apache lines with `\` continuations joined and comments dropped, with their first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let (n, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if acc.is_empty() && line.starts_with('#') {
            continue;
        }
        if let Some(body) = line.strip_suffix('\\') {
            acc.push_str(body);
            acc.push(' ');
            pending = Some((n, acc));
        } else {
            acc.push_str(line);
            out.push((n, acc));
        }
    }
    out.extend(pending);
    out
}

/// Whitespace-separated words, `"…"` kept whole.
fn split_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// A server name without a scheme or port, lower case.
fn host_of(name: String) -> String {
    let n = name
        .split_once("://")
        .map_or(name.as_str(), |(_, rest)| rest);
    n.split(':')
        .next()
        .unwrap_or(n)
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Whether a virtual host's name covers `domain`: equal, or a `*.` wildcard of one label.
fn covers(name: &str, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    match name.strip_prefix("*.") {
        Some(base) => domain
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == base),
        None => name == domain,
    }
}

/// The virtual host serving `site`: the one naming its first domain (or its name) exactly,
/// else one whose wildcard covers it.
pub fn vhost_for<'a>(vhosts: &'a [Vhost], site: &Site) -> Option<&'a Vhost> {
    let first = site
        .domains
        .first()
        .cloned()
        .unwrap_or_else(|| site.name.clone());
    let first = first.trim_end_matches('.').to_ascii_lowercase();
    vhosts
        .iter()
        .find(|v| v.names.contains(&first))
        .or_else(|| {
            vhosts
                .iter()
                .find(|v| v.names.iter().any(|n| covers(n, &first)))
        })
}

/// Every TLS virtual host of the configuration files printed by `LIST`.
fn parse_listing(listing: &str) -> Vec<Vhost> {
    let mut out = Vec::new();
    let marker = "\n#transhumance-file ";
    for chunk in listing.split(marker).skip(1) {
        let (file, text) = chunk.split_once('\n').unwrap_or((chunk, ""));
        let mut found = apache(file, text);
        if found.is_empty() {
            found = nginx(file, text);
        }
        out.extend(found);
    }
    out
}

/// What discovery found on one host, or why it could not look.
pub type Found = Result<Vec<Vhost>, String>;

/// Reads the configuration on every source host of `sites` that discovery concerns.
pub fn discover(plan: &Plan, sites: &[Site], connections: &Connections) -> BTreeMap<String, Found> {
    let Some(d) = &plan.cutover.tls.discover else {
        return BTreeMap::new();
    };
    let mut hosts: Vec<&str> = sites
        .iter()
        .filter(|s| plan.tls_templates(s).is_none())
        .map(|s| s.source_host.as_str())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    hosts
        .into_iter()
        .map(|h| (h.to_string(), read_host(d, h, connections)))
        .collect()
}

fn read_host(d: &TlsDiscovery, host: &str, connections: &Connections) -> Found {
    let mut args = vec!["-c".to_string(), LIST.to_string(), "sh".to_string()];
    args.extend(d.config.iter().map(|p| p.to_string_lossy().into_owned()));
    let out = connections
        .run(host, |t| t.exec(&ExecRequest::new("sh", args.clone())))
        .map_err(|e| e.to_string())?;
    if !out.success() {
        return Err(format!(
            "reading the web server configuration on host `{host}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let vhosts = parse_listing(&String::from_utf8_lossy(&out.stdout));
    Ok(vhosts)
}

/// The files discovery gives `site` (its target paths from the discovery's templates, else
/// the same paths), or `None` when no TLS virtual host serves it.
pub fn files_for(d: &TlsDiscovery, vhosts: &[Vhost], site: &Site) -> Option<SiteTls> {
    let v = vhost_for(vhosts, site)?;
    let key = v.key.clone().unwrap_or_else(|| v.cert.clone());
    let fill = |t: &crate::plan::template::Template| {
        PathBuf::from(t.render(|var| match var {
            "name" => Some(site.name.clone()),
            "domain" => site.domains.first().cloned(),
            _ => None,
        }))
    };
    Some(SiteTls {
        target_cert: d.target_cert.as_ref().map_or_else(|| v.cert.clone(), fill),
        target_key: d.target_key.as_ref().map_or_else(|| key.clone(), fill),
        cert: v.cert.clone(),
        key,
    })
}

/// Sets `site.tls` on every site discovery concerns; returns, per site without a virtual host,
/// why (for the review), and per host that could not be read, the error.
pub fn apply(plan: &Plan, sites: &mut [Site], found: &BTreeMap<String, Found>) -> Vec<String> {
    let Some(d) = &plan.cutover.tls.discover else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for (host, f) in found {
        if let Err(e) = f {
            problems.push(format!("host `{host}`: {e}"));
        }
    }
    for site in sites.iter_mut() {
        if plan.tls_templates(site).is_some() {
            continue;
        }
        if let Some(Ok(vhosts)) = found.get(&site.source_host) {
            site.tls = files_for(d, vhosts, site).map(Box::new);
        }
    }
    problems
}

/// The configured paths, as the review shows them.
pub fn shown(d: &TlsDiscovery) -> String {
    d.config
        .iter()
        .map(|p: &PathBuf| Path::display(p).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(name: &str, domains: &[&str]) -> Site {
        Site {
            name: name.into(),
            rule: 0,
            source_host: "local".into(),
            source_path: "/s".into(),
            target_host: "local".into(),
            target_path: "/t".into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            databases: Vec::new(),
            exclude: Vec::new(),
            owner: None,
            marks: Vec::new(),
            tls: None,
            kind: Default::default(),
            relink: None,
        }
    }

    #[test]
    fn apache_virtual_hosts_with_aliases_continuations_and_comments() {
        let conf = "\
<VirtualHost *:80>
  ServerName plain.example
</VirtualHost>
# <VirtualHost *:443> commented out
<VirtualHost *:443>
  ServerName https://Shop.Example:443
  ServerAlias www.shop.example \\
     old.shop.example
  SSLEngine on
  SSLCertificateFile \"/etc/ssl/shop dir/fullchain.pem\"
  SSLCertificateKeyFile /etc/ssl/shop/privkey.pem
</VirtualHost>
<VirtualHost *:443>
  ServerName both.example
  SSLCertificateFile /etc/ssl/both.pem
</VirtualHost>
";
        let v = apache("a.conf", conf);
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].origin, "a.conf:5");
        assert_eq!(
            v[0].names,
            ["shop.example", "www.shop.example", "old.shop.example"]
        );
        assert_eq!(v[0].cert, PathBuf::from("/etc/ssl/shop dir/fullchain.pem"));
        assert_eq!(v[0].key, Some(PathBuf::from("/etc/ssl/shop/privkey.pem")));
        assert_eq!(v[1].key, None, "the key is in the certificate file");
    }

    #[test]
    fn nginx_server_blocks_nested_in_http_without_variables() {
        let conf = "\
http {
  server { listen 80; server_name plain.example; }
  server {
    listen 443 ssl; # TLS
    server_name blog.example *.blog.example;
    ssl_certificate     /etc/ssl/blog/fullchain.pem;
    ssl_certificate_key '/etc/ssl/blog/privkey.pem';
    location / { root /srv/blog; }
  }
  server {
    listen 443 ssl;
    server_name _;
    ssl_certificate /etc/ssl/$ssl_server_name.pem;
  }
}
";
        let v = nginx("n.conf", conf);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].origin, "n.conf:3");
        assert_eq!(v[0].names, ["blog.example", "*.blog.example"]);
        assert_eq!(v[0].key, Some(PathBuf::from("/etc/ssl/blog/privkey.pem")));
    }

    #[test]
    fn a_site_takes_the_host_naming_its_first_domain_else_a_wildcard() {
        let v = |origin: &str, names: &[&str]| Vhost {
            origin: origin.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            cert: format!("/{origin}.pem").into(),
            key: None,
        };
        let hosts = [
            v("wild", &["*.example.org"]),
            v("exact", &["a.example.org", "www.a.example.org"]),
        ];
        let at = |s: &Site| vhost_for(&hosts, s).map(|v| v.origin.as_str());
        assert_eq!(at(&site("a", &["A.example.org."])), Some("exact"));
        assert_eq!(at(&site("b", &["b.example.org"])), Some("wild"));
        assert_eq!(at(&site("c", &["x.b.example.org"])), None, "one label");
        assert_eq!(at(&site("example.org", &[])), None);
        assert_eq!(at(&site("z.example.org", &[])), Some("wild"));
    }

    #[test]
    fn a_listing_is_split_by_file_and_each_file_read_as_its_server_reads_it() {
        let listing = "\n#transhumance-file /etc/apache2/sites-enabled/a.conf\n<VirtualHost *:443>\nServerName a.test\nSSLCertificateFile /a.pem\n</VirtualHost>\n\
\n#transhumance-file /etc/nginx/sites-enabled/b\nserver { server_name b.test; ssl_certificate /b.pem; ssl_certificate_key /b.key; }\n";
        let v = parse_listing(listing);
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].origin, "/etc/apache2/sites-enabled/a.conf:1");
        assert_eq!(v[1].names, ["b.test"]);
    }
}
