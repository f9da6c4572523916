//! Repositories checked usable where they landed: after the files are verified equal at both
//! ends, the repository tool itself reads the copy at the target (`git fsck`, `svnadmin
//! verify`, `hg verify`, `bzr check`), so a repository that would not open is never switched.

use crate::plan::Site;
use crate::transport::ExecRequest;

use super::Connections;

/// The command run at the target for `site`, as the dry run shows it; `None` for kinds with
/// no check of their own (web areas, homes, groups' directories, CVS, download areas).
pub fn command(site: &Site) -> Option<String> {
    site.kind.check_command().map(|c| c.join(" "))
}

/// Runs the kind's check in the unit's target directory (read-only commands; the path is an
/// argument, never part of a shell string). `Ok(None)` when the kind has no check.
///
/// # Errors
/// The target host is unreachable, the tool is missing there, or it finds the copy broken.
pub fn check(connections: &Connections, site: &Site) -> Result<Option<String>, String> {
    let Some(argv) = site.kind.check_command() else {
        return Ok(None);
    };
    let mut args = vec![
        "-c".to_string(),
        "cd -- \"$1\" && shift && exec \"$@\"".to_string(),
        "sh".to_string(),
        site.target_path.display().to_string(),
    ];
    args.extend(argv.iter().map(|a| a.to_string()));
    let request = ExecRequest::new("sh", args);
    let out = connections
        .run(&site.target_host, |t| t.exec(&request))
        .map_err(|e| e.to_string())?;
    let shown = argv.join(" ");
    if out.success() {
        Ok(Some(format!("`{shown}` passed at the target")))
    } else {
        let stderr = out.stderr_text();
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        Err(format!(
            "`{shown}` failed at the target ({}): {first}",
            out.code.map_or("killed".into(), |c| format!("exit {c}"))
        ))
    }
}
