//! Every secret a command will need, read before any unit moves: a missing environment
//! variable or an unreadable password file stops the command at once (invalid input) instead
//! of failing a site after its files were copied.

use std::collections::BTreeSet;

use crate::plan::model::{DnsProvider, MailRule};
use crate::plan::secret::SecretRef;
use crate::plan::{DatabaseRule, Plan};

/// What a command is about to move, for the secrets it needs.
pub struct Needs<'p> {
    /// The database rules whose servers it reaches.
    pub databases: Vec<&'p DatabaseRule>,
    /// The plan's mail rules (their IMAP users files and passwords).
    pub mail: bool,
    /// The DNS provider's key (a switch, a TTL change).
    pub dns: bool,
}

impl<'p> Needs<'p> {
    /// Everything the plan names: a cutover reaches every database (those no site names move
    /// with each batch), the mail and DNS.
    pub fn all(plan: &'p Plan) -> Needs<'p> {
        Needs {
            databases: plan.databases.iter().collect(),
            mail: true,
            dns: true,
        }
    }
}

/// Each secret of `needs` that cannot be read now, in words (the reference and why, never a
/// value), once per reference, in the plan's order.
pub fn unreadable(plan: &Plan, needs: &Needs<'_>) -> Vec<String> {
    let mut refs: Vec<(String, SecretRef)> = Vec::new();
    for rule in &needs.databases {
        for (end, server) in [("from", &rule.from), ("to", &rule.to)] {
            if let Some(r) = &server.password {
                refs.push((format!("databases[{}].{end}", rule.index), r.clone()));
            }
        }
    }
    let mut problems = Vec::new();
    if needs.mail {
        for (i, rule) in plan.mail.iter().enumerate() {
            let MailRule::Imap { users_file, .. } = rule else {
                continue;
            };
            match super::dry_run::read_users(users_file) {
                Ok(users) => {
                    for u in users {
                        refs.push((
                            format!("mail[{i}] user `{}`", u.source_user),
                            u.source_password,
                        ));
                        refs.push((
                            format!("mail[{i}] user `{}`", u.target_user),
                            u.target_password,
                        ));
                    }
                }
                Err(e) => problems.push(format!("mail[{i}]: {e}")),
            }
        }
    }
    if needs.dns {
        match plan.dns.as_ref().map(|d| &d.provider) {
            Some(DnsProvider::Rfc2136 {
                tsig: Some(tsig), ..
            }) => refs.push(("dns.provider.tsig".into(), tsig.secret.clone())),
            Some(DnsProvider::PowerDns { api_key, .. }) => {
                refs.push(("dns.provider.api_key".into(), api_key.clone()))
            }
            _ => {}
        }
    }
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (at, r) in refs {
        if let Err(why) = r.resolve()
            && seen.insert(r.to_string())
        {
            problems.push(format!("{at}: {why}"));
        }
    }
    problems
}

/// `unreadable` as one message for a refusal, or `None` when every secret reads.
pub fn refusal(plan: &Plan, needs: &Needs<'_>) -> Option<String> {
    let problems = unreadable(plan, needs);
    if problems.is_empty() {
        return None;
    }
    Some(format!(
        "{} the plan needs cannot be read, nothing was done: {}",
        if problems.len() == 1 {
            "a secret"
        } else {
            "secrets"
        },
        problems.join("; ")
    ))
}
