//! A CSV inventory for platforms without a supported panel: one row per site,
//! `name,source_path,target_path,domains,databases,mail_domain` (lists separated by spaces,
//! fields may be double-quoted, `#` starts a comment line, a header row is skipped).

use std::path::{Path, PathBuf};

use super::{PanelError, PanelInventory, PanelMailDomain};
use crate::plan::{CsvSource, INVENTORY_RULE, Site};

const COLUMNS: &str = "name,source_path,target_path,domains,databases,mail_domain";

/// Splits one CSV line: commas separate, double quotes protect commas, `""` is a quote.
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (',', false) => out.push(std::mem::take(&mut cur).trim().to_string()),
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err("a quote is not closed".into());
    }
    out.push(cur.trim().to_string());
    Ok(out)
}

fn list(field: &str) -> Vec<String> {
    field.split_whitespace().map(str::to_string).collect()
}

/// Parses the file's text into sites; `file` names it in errors (with the line number).
///
/// # Errors
/// Every malformed row, each with its line.
pub fn parse(text: &str, file: &Path, source: &CsvSource) -> Result<PanelInventory, Vec<String>> {
    let mut inv = PanelInventory {
        source: format!("CSV file `{}`", file.display()),
        ..Default::default()
    };
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = format!("{}:{}", file.display(), i + 1);
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if i == 0 && trimmed.replace(' ', "").starts_with("name,source_path") {
            continue;
        }
        let f = match fields(line) {
            Ok(f) => f,
            Err(e) => {
                errors.push(format!("{at}: {e}"));
                continue;
            }
        };
        if !(3..=6).contains(&f.len()) {
            errors.push(format!(
                "{at}: expected up to 6 fields ({COLUMNS}), found {}",
                f.len()
            ));
            continue;
        }
        let get = |k: usize| f.get(k).map_or("", String::as_str);
        let (name, source_path, target_path) = (get(0), get(1), get(2));
        if name.is_empty() || name.contains('/') {
            errors.push(format!("{at}: expected a site name without `/`"));
            continue;
        }
        let mut absolute = true;
        for (what, p) in [("source_path", source_path), ("target_path", target_path)] {
            if !p.starts_with('/') {
                errors.push(format!("{at}: `{what}` must be absolute, found `{p}`"));
                absolute = false;
            }
        }
        if !absolute {
            continue;
        }
        let mail_domain = get(5).to_ascii_lowercase();
        if !mail_domain.is_empty() && !inv.mail_domains.iter().any(|m| m.domain == mail_domain) {
            inv.mail_domains.push(PanelMailDomain {
                domain: mail_domain,
                gid: 0,
                boxes: 0,
                redirects: 0,
                catchalls: 0,
                marks: vec![format!("site {name}")],
            });
        }
        inv.sites.push(Site {
            kind: crate::plan::UnitKind::Web,
            relink: None,
            name: name.to_string(),
            rule: INVENTORY_RULE,
            source_host: source.source_host.clone(),
            source_path: PathBuf::from(source_path),
            target_host: source.target_host.clone(),
            target_path: PathBuf::from(target_path),
            domains: list(get(3))
                .into_iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            databases: list(get(4))
                .into_iter()
                .map(crate::plan::SiteDatabase::named)
                .collect(),
            exclude: source.exclude.clone(),
            owner: None,
            marks: Vec::new(),
            tls: None,
        });
    }
    if errors.is_empty() {
        Ok(inv)
    } else {
        Err(errors)
    }
}

/// Reads the file (on this machine: it is part of the plan) and parses it.
///
/// # Errors
/// The file cannot be read, or has malformed rows (all named).
pub fn read(source: &CsvSource) -> Result<PanelInventory, PanelError> {
    let text = std::fs::read_to_string(&source.file).map_err(|e| {
        PanelError::Failed(format!(
            "cannot read CSV inventory `{}`: {e}",
            source.file.display()
        ))
    })?;
    parse(&text, &source.file, source).map_err(|e| PanelError::Failed(e.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> CsvSource {
        CsvSource {
            file: "sites.csv".into(),
            source_host: "old".into(),
            target_host: "new".into(),
            exclude: vec!["cache/".into()],
        }
    }

    #[test]
    fn rows_become_sites_with_lists_and_quotes() {
        let text = "name,source_path,target_path,domains,databases,mail_domain\n\
                    # a comment\n\
                    shop,/var/www/shop,/srv/www/shop,\"shop.example.org www.shop.example.org\",shop_wp shop_stats,example.org\n\
                    \"odd, name\",/var/www/odd,/srv/www/odd\n";
        let inv = parse(text, Path::new("sites.csv"), &source()).unwrap();
        assert_eq!(inv.sites.len(), 2);
        let shop = &inv.sites[0];
        assert_eq!(shop.domains, ["shop.example.org", "www.shop.example.org"]);
        assert_eq!(shop.databases, ["shop_wp", "shop_stats"]);
        assert_eq!(
            (shop.source_host.as_str(), shop.target_host.as_str()),
            ("old", "new")
        );
        assert_eq!(shop.exclude, ["cache/"]);
        assert_eq!(inv.sites[1].name, "odd, name");
        assert!(inv.sites[1].domains.is_empty());
        assert_eq!(inv.mail_domains[0].domain, "example.org");
    }

    #[test]
    fn every_bad_row_is_named_with_its_line() {
        let text = "a,relative/path,/srv/a\nb\nc,/x,/y,d,e,f,g\n\"d,/x,/y\n";
        let errors = parse(text, Path::new("sites.csv"), &source()).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].starts_with("sites.csv:1: `source_path` must be absolute"));
        assert!(errors[1].starts_with("sites.csv:2: expected up to 6 fields"));
        assert!(errors[3].contains("quote is not closed"));
    }
}
