//! Captures what `--version` shows beyond the crate version: the git commit the binary was built
//! from (`+dirty` when tracked files differed from it) and the build date. Without git (a
//! tarball, a crate from the registry) both fall back to `unknown` / today, never to an error.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let manifest = Path::new(&manifest);
    let commit = commit(manifest).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TRANSHUMANCE_COMMIT={commit}");
    println!("cargo:rustc-env=TRANSHUMANCE_BUILD_DATE={}", build_date());
    // Rerun when the checkout moves or its tracked files change (the dirty mark), not otherwise.
    for path in ["build.rs", "Cargo.toml", "Cargo.lock", "src"] {
        println!("cargo:rerun-if-changed={path}");
    }
    for path in ["HEAD", "index", "packed-refs"] {
        if let Some(p) = git(manifest, &["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={}", manifest.join(p).display());
        }
    }
    if let Some(branch) = git(manifest, &["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(manifest, &["rev-parse", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={}", manifest.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}

/// `1a2b3c4d5e6f` or `1a2b3c4d5e6f+dirty`; `None` when the crate is not the top of a git
/// checkout (a tarball unpacked inside some other repository must not take its commit).
fn commit(manifest: &Path) -> Option<String> {
    let top = git(manifest, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != manifest.canonicalize().ok()? {
        return None;
    }
    let hash = git(manifest, &["rev-parse", "--short=12", "HEAD"])?;
    let dirty = git(manifest, &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{hash}+dirty") } else { hash })
}

/// The trimmed output of a successful git command, or `None` (no git, not a repository).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        // `git status` must not rewrite the index (that would rerun this script next build).
        .env("GIT_OPTIONAL_LOCKS", "0")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `YYYY-MM-DD` in UTC, from `SOURCE_DATE_EPOCH` when set (reproducible builds), else now.
fn build_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
