//! VHFFS's per-group disk quotas, re-applied at the target: the panel keeps each group's
//! quota in MB (`vhffs_groups.quota`) and its robot (`Vhffs::Robots::Group::quota`) sets it
//! as a filesystem group quota on the data directory's file system, blocks and inodes alike.
//! The target gets the same limits through `setquota -b` (one batch for every gid) once the
//! file system there enforces group quotas; when it does not, the dry run warns and the
//! cutover journals them as not applied, never silently.

use std::path::{Path, PathBuf};

use crate::panel::GroupQuota;
use crate::plan::{VhffsSource, VhffsTarget};
use crate::report::{PanelRows, Risk};
use crate::transport::{ExecRequest, Transport};

use super::Connections;

/// The target's data directory, whose file system gets the quotas.
pub fn target_datadir(v: &VhffsSource) -> PathBuf {
    match &v.target {
        VhffsTarget::Datadir(d) => d.clone(),
        VhffsTarget::Path(_) => v.datadir.clone(),
    }
}

/// The dry run's line for quotas, and a warning when the target will not enforce them.
pub fn review(
    v: &VhffsSource,
    quotas: &[GroupQuota],
    connections: &Connections,
) -> (PanelRows, Option<Risk>) {
    let path = target_datadir(v);
    let state = match connections.get(&v.target_host) {
        Ok(t) => enforcement(t.as_ref(), &path),
        Err(e) => Enforcement::Off {
            reason: e.to_string(),
        },
    };
    let count = quotas.len() as u64;
    match state {
        Enforcement::On { mount } => (
            PanelRows {
                kind: "quota".into(),
                count,
                moved: true,
                how: format!(
                    "group quotas set by `cutover` on `{}` of `{}` (`setquota -g -b`, VHFFS's limits: MB x 10^6 / 1024 blocks, / 4096 inodes)",
                    mount.display(),
                    v.target_host
                ),
            },
            None,
        ),
        Enforcement::Off { reason } => (
            PanelRows {
                kind: "quota".into(),
                count,
                moved: false,
                how: format!("not applied at the target: {reason}"),
            },
            Some(Risk::warning(
                "quota_not_enforced",
                format!("host {}", v.target_host),
                format!(
                    "{count} group quota(s) of the panel will not be applied at `{}`: {reason}; enable group quotas there (or accept groups without limits)",
                    path.display()
                ),
            )),
        ),
    }
}

/// Where the target stands on group quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    /// Group quotas are on for this mount point.
    On { mount: PathBuf },
    /// They are not, or cannot be set there: why, in words.
    Off { reason: String },
}

/// VHFFS's limits for `mb`: 1 KiB blocks and 4 KiB-per-inode counts, soft = hard, rounded up
/// (`POSIX::ceil( quota * 1000000 / 1024 )` and `/ 4096`).
pub fn limits(mb: u64) -> (u64, u64) {
    let bytes = mb.saturating_mul(1_000_000);
    (bytes.div_ceil(1024), bytes.div_ceil(4096))
}

/// `setquota -b`'s input: one `gid block-soft block-hard inode-soft inode-hard` line per group.
pub fn batch(quotas: &[GroupQuota]) -> String {
    let mut out = String::new();
    for q in quotas {
        let (blocks, inodes) = limits(q.mb);
        out.push_str(&format!("{} {blocks} {blocks} {inodes} {inodes}\n", q.gid));
    }
    out
}

/// The command that applies a batch to `mount`'s file system.
pub fn setquota(mount: &Path) -> ExecRequest {
    ExecRequest::new(
        "setquota",
        ["-g", "-b", &mount.display().to_string()].map(String::from),
    )
}

/// Whether the file system holding `path` (or its nearest existing ancestor, before the
/// first copy made it) enforces group quotas at the host.
pub fn enforcement(t: &dyn Transport, path: &Path) -> Enforcement {
    let mut mount = None;
    for dir in path.ancestors() {
        let req = ExecRequest::new(
            "findmnt",
            ["-n", "-o", "TARGET", "-T", &dir.display().to_string()].map(String::from),
        );
        match t.exec(&req) {
            Ok(o) if o.success() => {
                let m = String::from_utf8_lossy(&o.stdout).trim().to_string();
                if !m.is_empty() {
                    mount = Some(PathBuf::from(m));
                    break;
                }
            }
            Ok(_) => continue,
            Err(e) => {
                return Enforcement::Off {
                    reason: format!("cannot find its file system: {e}"),
                };
            }
        }
    }
    let Some(mount) = mount else {
        return Enforcement::Off {
            reason: format!("no file system found for `{}`", path.display()),
        };
    };
    let req = ExecRequest::new(
        "quotaon",
        ["-p", "-g", &mount.display().to_string()].map(String::from),
    );
    match t.exec(&req) {
        // `quotaon -p` prints `group quota on /srv (/dev/sdb1) is on` (or `off`).
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains(" is on") => Enforcement::On { mount },
        Ok(o) if o.code.is_none() => Enforcement::Off {
            reason: format!(
                "the quota tools (`quotaon`, `setquota`) are not installed on `{}`",
                t.host()
            ),
        },
        Ok(o) => Enforcement::Off {
            reason: format!(
                "group quotas are not enabled on `{}` ({})",
                mount.display(),
                first_line(&o.stdout, &o.stderr)
            ),
        },
        Err(e) => Enforcement::Off {
            reason: format!("cannot ask `quotaon`: {e}"),
        },
    }
}

fn first_line(stdout: &[u8], stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(if stdout.is_empty() { stderr } else { stdout });
    text.lines()
        .next()
        .unwrap_or("no answer")
        .trim()
        .to_string()
}

/// Applies every quota in one `setquota -b` run.
///
/// # Errors
/// The target does not enforce group quotas, or `setquota` failed (its message).
pub fn apply(t: &dyn Transport, path: &Path, quotas: &[GroupQuota]) -> Result<PathBuf, String> {
    let mount = match enforcement(t, path) {
        Enforcement::On { mount } => mount,
        Enforcement::Off { reason } => return Err(format!("not applied: {reason}")),
    };
    let mut req = setquota(&mount);
    req.stdin = batch(quotas).into_bytes();
    let out = t.exec(&req).map_err(|e| e.to_string())?;
    if out.success() {
        Ok(mount)
    } else {
        Err(format!("setquota failed: {}", out.stderr_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_vhffs_robot_and_the_batch_has_one_line_per_gid() {
        // 100 MB: ceil(1e8 / 1024) blocks, ceil(1e8 / 4096) inodes.
        assert_eq!(limits(100), (97_657, 24_415));
        assert_eq!(limits(1), (977, 245));
        let q = |gid, mb| GroupQuota {
            gid,
            group: format!("g{gid}"),
            mb,
        };
        assert_eq!(
            batch(&[q(10001, 1), q(10002, 100)]),
            "10001 977 977 245 245\n10002 97657 97657 24415 24415\n"
        );
        let r = setquota(Path::new("/srv"));
        assert_eq!(
            (r.program.as_str(), r.args.join(" ")),
            ("setquota", "-g -b /srv".into())
        );
    }
}
