//! Grant statements as MariaDB/MySQL print them (`SHOW GRANTS`, `SHOW CREATE USER`), read into
//! the things they give, so the grants of an account compare between two servers and what one
//! has more can be revoked; and the `IDENTIFIED` clause found (plugins, password hash) so it is
//! never replayed where it cannot be.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    Word(String),
    /// `` `quoted` ``, unquoted.
    Ident(String),
    /// `'string'` or `"string"`, unquoted.
    Str(String),
    Punct(char),
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) tok: Tok,
    pub(super) start: usize,
}

pub(super) fn tokenize(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if c.is_whitespace() {
            continue;
        }
        let tok = if matches!(c, '`' | '\'' | '"') {
            let mut v = String::new();
            while let Some((_, d)) = it.next() {
                if d == c {
                    // A doubled quote is the quote itself.
                    if it.peek().map(|&(_, e)| e) == Some(c) {
                        it.next();
                        v.push(c);
                        continue;
                    }
                    break;
                }
                if d == '\\' && c != '`' {
                    match it.next() {
                        Some((_, 'n')) => v.push('\n'),
                        Some((_, 't')) => v.push('\t'),
                        Some((_, '0')) => v.push('\0'),
                        Some((_, e)) => v.push(e),
                        None => {}
                    }
                    continue;
                }
                v.push(d);
            }
            if c == '`' { Tok::Ident(v) } else { Tok::Str(v) }
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = it.peek() {
                if !(d.is_alphanumeric() || d == '_' || d == '$') {
                    break;
                }
                end = j + d.len_utf8();
                it.next();
            }
            Tok::Word(s[i..end].to_string())
        } else {
            Tok::Punct(c)
        };
        out.push(Token { tok, start: i });
    }
    out
}

pub(super) fn is_word(t: Option<&Token>, w: &str) -> bool {
    matches!(t, Some(Token { tok: Tok::Word(x), .. }) if x.eq_ignore_ascii_case(w))
}

pub(super) fn has_words(tokens: &[Token], words: &[&str]) -> bool {
    tokens
        .windows(words.len())
        .any(|w| w.iter().zip(words).all(|(t, x)| is_word(Some(t), x)))
}

/// A name: an identifier, a string or a bare word.
pub(super) fn name_of(t: &Token) -> Option<String> {
    match &t.tok {
        Tok::Word(s) | Tok::Ident(s) | Tok::Str(s) => Some(s.clone()),
        Tok::Punct(_) => None,
    }
}

/// `user[@host]` at the start of `tokens`, and the tokens it took.
pub(super) fn parse_account(tokens: &[Token]) -> Option<((String, Option<String>), usize)> {
    let user = name_of(tokens.first()?)?;
    match (tokens.get(1), tokens.get(2)) {
        (
            Some(Token {
                tok: Tok::Punct('@'),
                ..
            }),
            Some(h),
        ) => Some(((user, name_of(h)), 3)),
        _ => Some(((user, None), 1)),
    }
}

pub(super) fn quote(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

pub(super) fn account_sql((user, host): &(String, Option<String>)) -> String {
    match host {
        Some(h) => format!("{}@{}", quote(user), quote(h)),
        None if user == "PUBLIC" => "PUBLIC".into(),
        None => quote(user),
    }
}

/// The `IDENTIFIED ...` clause of a `CREATE USER` or `GRANT`: its byte span and the
/// authentication plugins it names (lower case).
#[derive(Debug, PartialEq)]
pub(super) struct Identified {
    pub(super) span: (usize, usize),
    pub(super) plugins: Vec<String>,
}

pub(super) fn identified(tokens: &[Token]) -> Option<Identified> {
    let start = tokens.iter().position(|t| is_word(Some(t), "IDENTIFIED"))?;
    let mut plugins = Vec::new();
    let mut end = None;
    let mut i = start + 1;
    while i < tokens.len() {
        let t = Some(&tokens[i]);
        let after_by = is_word(tokens.get(i - 1), "BY");
        let next_clause = ["REQUIRE", "ACCOUNT", "DEFAULT", "COMMENT", "ATTRIBUTE"]
            .iter()
            .any(|w| is_word(t, w))
            || (is_word(t, "WITH") && i > start + 1)
            || (is_word(t, "PASSWORD") && !after_by);
        if next_clause {
            end = Some(tokens[i].start);
            break;
        }
        if is_word(t, "VIA") || is_word(t, "OR") || is_word(t, "WITH") {
            if let Some(p) = tokens.get(i + 1).and_then(name_of) {
                plugins.push(p.to_lowercase());
            }
            i += 2;
            continue;
        }
        i += 1;
    }
    if plugins.is_empty() && is_word(tokens.get(start + 1), "BY") {
        plugins.push("mysql_native_password".into());
    }
    Some(Identified {
        span: (tokens[start].start, end.unwrap_or(usize::MAX)),
        plugins,
    })
}

/// `text` without the byte span `cut` (to the end when it runs past it).
pub(super) fn without(text: &str, cut: Option<(usize, usize)>) -> String {
    match cut {
        Some((a, b)) => {
            let b = b.min(text.len());
            format!("{} {}", text[..a].trim_end(), text[b..].trim_start())
                .trim_end()
                .to_string()
        }
        None => text.to_string(),
    }
}

/// What a grant is on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Object {
    Global,
    /// A database or a pattern of databases (`site\_%`).
    Database(String),
    Table(String, String),
    /// `PROCEDURE`, `FUNCTION`, `PACKAGE`, `PACKAGE BODY`.
    Routine(String, String, String),
}

impl Object {
    pub(super) fn sql(&self) -> String {
        match self {
            Object::Global => "*.*".into(),
            Object::Database(d) => format!("{}.*", quote(d)),
            Object::Table(d, t) => format!("{}.{}", quote(d), quote(t)),
            Object::Routine(k, d, r) => format!("{k} {}.{}", quote(d), quote(r)),
        }
    }

    pub(super) fn concerns(&self, database: &str) -> bool {
        match self {
            Object::Global => true,
            Object::Database(pattern) => like(database, pattern),
            Object::Table(d, _) | Object::Routine(_, d, _) => d == database,
        }
    }
}

/// One thing a grant line gives, so two sides compare thing by thing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Item {
    /// A privilege on an object, on one column of it when `Some`.
    Privilege(Object, String, Option<String>),
    GrantOption(Object),
    /// `PROXY ON` the account (as SQL).
    Proxy(String),
    ProxyGrantOption(String),
    /// A role held (as SQL).
    Role(String),
    RoleAdmin(String),
    DefaultRole(String),
}

/// One line of `SHOW GRANTS`.
#[derive(Debug, Clone)]
pub(super) struct GrantLine {
    pub(super) grantee: (String, Option<String>),
    pub(super) items: Vec<Item>,
    /// The object, for privilege lines.
    pub(super) object: Option<Object>,
    /// The line to apply at the target: without its `IDENTIFIED` clause.
    pub(super) replay: String,
    /// Roles are granted before privileges, the default role set after.
    pub(super) order: u8,
}

impl GrantLine {
    pub(super) fn in_scope(&self, database: &str) -> bool {
        self.object.as_ref().is_none_or(|o| o.concerns(database))
    }

    /// Whether the line grants to `user` (at `host`; `None` for a role or PUBLIC).
    pub(super) fn is_for(&self, user: &str, host: Option<&str>) -> bool {
        self.grantee.0 == user && self.grantee.1.as_deref() == host
    }
}

pub(super) fn parse_grant(line: &str) -> Option<GrantLine> {
    let tokens = tokenize(line);
    if is_word(tokens.first(), "SET") {
        // SET DEFAULT ROLE <role> FOR <grantee>
        let for_at = tokens.iter().position(|t| is_word(Some(t), "FOR"))?;
        let (role, _) = parse_account(tokens.get(3..for_at)?)?;
        let (grantee, _) = parse_account(tokens.get(for_at + 1..)?)?;
        let items = if role.0.eq_ignore_ascii_case("NONE") && role.1.is_none() {
            Vec::new()
        } else {
            vec![Item::DefaultRole(account_sql(&role))]
        };
        return Some(GrantLine {
            grantee,
            items,
            object: None,
            replay: line.to_string(),
            order: 2,
        });
    }
    if !is_word(tokens.first(), "GRANT") {
        return None;
    }
    let mut depth = 0i32;
    let mut on = None;
    let mut to = None;
    for (i, t) in tokens.iter().enumerate().skip(1) {
        match &t.tok {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => depth -= 1,
            _ if depth == 0 && on.is_none() && to.is_none() && is_word(Some(t), "ON") => {
                on = Some(i)
            }
            _ if depth == 0 && is_word(Some(t), "TO") => {
                to = Some(i);
                break;
            }
            _ => {}
        }
    }
    let to = to?;
    let (grantee, took) = parse_account(tokens.get(to + 1..)?)?;
    let tail = &tokens[to + 1 + took..];
    let with = |w: &str| has_words(tail, &["WITH", w, "OPTION"]);
    let replay = without(line, identified(&tokens).map(|x| x.span));
    let Some(on) = on else {
        // GRANT <role> TO <grantee>
        let (role, _) = parse_account(&tokens[1..to])?;
        let role = account_sql(&role);
        let mut items = vec![Item::Role(role.clone())];
        if with("ADMIN") {
            items.push(Item::RoleAdmin(role));
        }
        return Some(GrantLine {
            grantee,
            items,
            object: None,
            replay,
            order: 0,
        });
    };
    let privileges = &tokens[1..on];
    let target = &tokens[on + 1..to];
    if privileges.len() == 1 && is_word(privileges.first(), "PROXY") {
        let (proxied, _) = parse_account(target)?;
        let proxied = account_sql(&proxied);
        let mut items = vec![Item::Proxy(proxied.clone())];
        if with("GRANT") {
            items.push(Item::ProxyGrantOption(proxied));
        }
        return Some(GrantLine {
            grantee,
            items,
            object: None,
            replay,
            order: 1,
        });
    }
    let object = parse_object(target)?;
    let mut items = Vec::new();
    for part in split_top_level(privileges) {
        let words: Vec<String> = part
            .iter()
            .take_while(|t| t.tok != Tok::Punct('('))
            .filter_map(|t| match &t.tok {
                Tok::Word(w) => Some(w.to_uppercase()),
                _ => None,
            })
            .collect();
        let columns: Vec<String> = part
            .iter()
            .skip_while(|t| t.tok != Tok::Punct('('))
            .filter_map(|t| match &t.tok {
                Tok::Ident(c) | Tok::Word(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        let privilege = words.join(" ");
        if privilege.is_empty() || privilege == "USAGE" {
            continue;
        }
        if columns.is_empty() {
            items.push(Item::Privilege(object.clone(), privilege.clone(), None));
        }
        for c in columns {
            items.push(Item::Privilege(object.clone(), privilege.clone(), Some(c)));
        }
    }
    if with("GRANT") {
        items.push(Item::GrantOption(object.clone()));
    }
    Some(GrantLine {
        grantee,
        items,
        object: Some(object),
        replay,
        order: 1,
    })
}

/// `tokens` split at the commas outside parentheses.
pub(super) fn split_top_level(tokens: &[Token]) -> Vec<&[Token]> {
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0i32, 0);
    for (i, t) in tokens.iter().enumerate() {
        match t.tok {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => depth -= 1,
            Tok::Punct(',') if depth == 0 => {
                parts.push(&tokens[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tokens[from..]);
    parts
}

/// `*.*`, `` `db`.* ``, `` `db`.`table` ``, `` PROCEDURE `db`.`name` ``.
pub(super) fn parse_object(tokens: &[Token]) -> Option<Object> {
    let mut kind = Vec::new();
    let mut i = 0;
    while let Some(Token {
        tok: Tok::Word(w), ..
    }) = tokens.get(i)
    {
        if !["PROCEDURE", "FUNCTION", "PACKAGE", "BODY", "TABLE"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
            || tokens.get(i + 1).is_some_and(|t| t.tok == Tok::Punct('.'))
        {
            break;
        }
        kind.push(w.to_uppercase());
        i += 1;
    }
    let rest = &tokens[i..];
    let part = |t: Option<&Token>| -> Option<Option<String>> {
        match &t?.tok {
            Tok::Punct('*') => Some(None),
            Tok::Ident(s) | Tok::Word(s) => Some(Some(s.clone())),
            _ => None,
        }
    };
    let (db, obj) = match rest.get(1).map(|t| &t.tok) {
        Some(Tok::Punct('.')) => (part(rest.first())?, part(rest.get(2))?),
        _ => return None,
    };
    let kind: Vec<String> = kind.into_iter().filter(|k| k != "TABLE").collect();
    Some(match (db, obj) {
        (None, None) => Object::Global,
        (Some(d), None) => Object::Database(d),
        (Some(d), Some(o)) if kind.is_empty() => Object::Table(d, o),
        (Some(d), Some(o)) => Object::Routine(kind.join(" "), d, o),
        (None, Some(_)) => return None,
    })
}

/// SQL `LIKE` as grant tables match database patterns: `%`, `_`, `\` escapes; case-sensitive.
pub(super) fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    fn go(t: &[char], p: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|k| go(&t[k..], &p[1..])),
            Some('_') => !t.is_empty() && go(&t[1..], &p[1..]),
            Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && go(&t[1..], &p[2..]),
            Some(c) => t.first() == Some(c) && go(&t[1..], &p[1..]),
        }
    }
    go(&t, &p)
}

/// The statements that take `extra` (grants the target has and the source not) away from
/// `grantee`: grant options first, a whole `ALL PRIVILEGES` at once.
pub(super) fn revokes(grantee: &str, extra: &[Item], keeps_default_role: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut privileges: BTreeMap<&Object, Vec<(&str, Option<&str>)>> = BTreeMap::new();
    for x in extra {
        match x {
            Item::GrantOption(o) => {
                out.push(format!("REVOKE GRANT OPTION ON {} FROM {grantee}", o.sql()))
            }
            Item::Privilege(o, p, c) => privileges
                .entry(o)
                .or_default()
                .push((p.as_str(), c.as_deref())),
            _ => {}
        }
    }
    for (o, ps) in privileges {
        if ps
            .iter()
            .any(|(p, c)| *p == "ALL PRIVILEGES" && c.is_none())
        {
            out.push(format!(
                "REVOKE ALL PRIVILEGES ON {} FROM {grantee}",
                o.sql()
            ));
            continue;
        }
        let whole: Vec<&str> = ps
            .iter()
            .filter(|(_, c)| c.is_none())
            .map(|(p, _)| *p)
            .collect();
        if !whole.is_empty() {
            out.push(format!(
                "REVOKE {} ON {} FROM {grantee}",
                whole.join(", "),
                o.sql()
            ));
        }
        let mut columns: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (p, c) in &ps {
            if let Some(c) = c {
                columns.entry(p).or_default().push(c);
            }
        }
        for (p, cs) in columns {
            let cs: Vec<String> = cs.iter().map(|c| quote(c)).collect();
            out.push(format!(
                "REVOKE {p} ({}) ON {} FROM {grantee}",
                cs.join(", "),
                o.sql()
            ));
        }
    }
    let mut proxies = BTreeSet::new();
    for x in extra {
        match x {
            Item::Proxy(p) | Item::ProxyGrantOption(p) if proxies.insert(p) => {
                out.push(format!("REVOKE PROXY ON {p} FROM {grantee}"));
            }
            Item::Role(r) => out.push(format!("REVOKE {r} FROM {grantee}")),
            Item::RoleAdmin(r) if !extra.contains(&Item::Role(r.clone())) => {
                out.push(format!("REVOKE ADMIN OPTION FOR {r} FROM {grantee}"));
            }
            Item::DefaultRole(_) if !keeps_default_role => {
                out.push(format!("SET DEFAULT ROLE NONE FOR {grantee}"));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(line: &str) -> Vec<Item> {
        parse_grant(line).unwrap().items
    }

    fn priv_(o: Object, p: &str, c: Option<&str>) -> Item {
        Item::Privilege(o, p.into(), c.map(Into::into))
    }

    #[test]
    fn grant_lines_of_every_level_parse_into_items() {
        let t = || Object::Table("d".into(), "t".into());
        assert_eq!(
            items("GRANT SELECT (`a`, `b`), UPDATE (`a`) ON `d`.`t` TO `cu`@`localhost`"),
            vec![
                priv_(t(), "SELECT", Some("a")),
                priv_(t(), "SELECT", Some("b")),
                priv_(t(), "UPDATE", Some("a")),
            ]
        );
        assert_eq!(
            items("GRANT SELECT, INSERT ON `d`.`t` TO `tu`@`%` WITH GRANT OPTION"),
            vec![
                priv_(t(), "SELECT", None),
                priv_(t(), "INSERT", None),
                Item::GrantOption(t()),
            ]
        );
        assert_eq!(
            items("GRANT EXECUTE ON PROCEDURE `d`.`p` TO `ru`@`%`"),
            vec![priv_(
                Object::Routine("PROCEDURE".into(), "d".into(), "p".into()),
                "EXECUTE",
                None
            )]
        );
        assert_eq!(
            items("GRANT PROXY ON `tu`@`%` TO `pu`@`%` WITH GRANT OPTION"),
            vec![
                Item::Proxy("`tu`@`%`".into()),
                Item::ProxyGrantOption("`tu`@`%`".into())
            ]
        );
        let r = parse_grant("GRANT `r1` TO `roleu`@`%` WITH ADMIN OPTION").unwrap();
        assert_eq!(
            r.items,
            vec![Item::Role("`r1`".into()), Item::RoleAdmin("`r1`".into())]
        );
        assert_eq!(r.grantee, ("roleu".to_string(), Some("%".to_string())));
        assert_eq!(
            items("SET DEFAULT ROLE `r1` FOR `roleu`@`%`"),
            vec![Item::DefaultRole("`r1`".into())]
        );
        let all = parse_grant("GRANT ALL PRIVILEGES ON `d`.* TO `r1`").unwrap();
        assert_eq!(all.grantee, ("r1".to_string(), None));
        assert_eq!(
            all.items,
            vec![priv_(Object::Database("d".into()), "ALL PRIVILEGES", None)]
        );
        assert_eq!(
            items("GRANT CREATE TEMPORARY TABLES, LOCK TABLES ON `d`.* TO PUBLIC"),
            vec![
                priv_(
                    Object::Database("d".into()),
                    "CREATE TEMPORARY TABLES",
                    None
                ),
                priv_(Object::Database("d".into()), "LOCK TABLES", None),
            ]
        );
    }

    #[test]
    fn the_password_never_replays_and_plugins_are_read() {
        let g = parse_grant("GRANT USAGE ON *.* TO `eu`@`%` IDENTIFIED VIA ed25519 USING 'ZIg+x/Y=' OR unix_socket WITH MAX_USER_CONNECTIONS 3").unwrap();
        assert!(g.items.is_empty());
        assert_eq!(
            g.replay,
            "GRANT USAGE ON *.* TO `eu`@`%` WITH MAX_USER_CONNECTIONS 3"
        );
        let c = "CREATE USER `eu`@`%` IDENTIFIED VIA ed25519 USING 'ZIg' OR unix_socket";
        let tokens = tokenize(c);
        let id = identified(&tokens).unwrap();
        assert_eq!(id.plugins, vec!["ed25519", "unix_socket"]);
        assert_eq!(without(c, Some(id.span)), "CREATE USER `eu`@`%`");
        let c =
            "CREATE USER `tu`@`%` IDENTIFIED BY PASSWORD '*B69027D4' PASSWORD EXPIRE ACCOUNT LOCK";
        let tokens = tokenize(c);
        let id = identified(&tokens).unwrap();
        assert_eq!(id.plugins, vec!["mysql_native_password"]);
        assert_eq!(
            without(c, Some(id.span)),
            "CREATE USER `tu`@`%` PASSWORD EXPIRE ACCOUNT LOCK"
        );
        let mysql = "CREATE USER `m`@`%` IDENTIFIED WITH 'caching_sha2_password' AS '$A$005$x' REQUIRE NONE";
        assert_eq!(
            identified(&tokenize(mysql)).unwrap().plugins,
            vec!["caching_sha2_password"]
        );
        assert!(identified(&tokenize("CREATE USER `ru`@`%`")).is_none());
    }

    #[test]
    fn scope_is_the_database_its_patterns_and_account_level_grants() {
        let scoped = |l: &str| parse_grant(l).unwrap().in_scope("site_a");
        assert!(scoped("GRANT SELECT ON *.* TO `g`@`%`"));
        assert!(scoped("GRANT SELECT ON `site\\_%`.* TO `r2`"));
        assert!(scoped("GRANT SELECT ON `site_a`.`t` TO `u`@`%`"));
        assert!(scoped("GRANT `r1` TO `u`@`%`"));
        assert!(!scoped("GRANT SELECT ON `site_b`.* TO `u`@`%`"));
        assert!(!scoped("GRANT SELECT ON `other`.`t` TO `u`@`%`"));
        assert!(!scoped("GRANT SELECT ON `site\\_b%`.* TO `u`@`%`"));
        assert!(like("site_a", "site\\_a"));
        assert!(!like("siteXa", "site\\_a"));
        assert!(like("site_a", "s%"));
        assert!(!like("Site_a", "site%"));
    }

    #[test]
    fn revocations_take_away_exactly_what_the_source_lost() {
        let t = Object::Table("d".into(), "t".into());
        let r = revokes(
            "`u`@`%`",
            &[
                priv_(t.clone(), "INSERT", None),
                priv_(t.clone(), "SELECT", Some("a")),
                priv_(t.clone(), "SELECT", Some("b")),
                Item::GrantOption(t.clone()),
                Item::Proxy("`x`@`%`".into()),
                Item::ProxyGrantOption("`x`@`%`".into()),
                Item::RoleAdmin("`r`".into()),
                Item::DefaultRole("`r`".into()),
            ],
            false,
        );
        assert_eq!(
            r,
            vec![
                "REVOKE GRANT OPTION ON `d`.`t` FROM `u`@`%`",
                "REVOKE INSERT ON `d`.`t` FROM `u`@`%`",
                "REVOKE SELECT (`a`, `b`) ON `d`.`t` FROM `u`@`%`",
                "REVOKE PROXY ON `x`@`%` FROM `u`@`%`",
                "REVOKE ADMIN OPTION FOR `r` FROM `u`@`%`",
                "SET DEFAULT ROLE NONE FOR `u`@`%`",
            ]
        );
        let r = revokes(
            "`r1`",
            &[
                priv_(t.clone(), "ALL PRIVILEGES", None),
                Item::Role("`r2`".into()),
                Item::RoleAdmin("`r2`".into()),
            ],
            false,
        );
        assert_eq!(
            r,
            vec![
                "REVOKE ALL PRIVILEGES ON `d`.`t` FROM `r1`",
                "REVOKE `r2` FROM `r1`"
            ]
        );
    }
}
