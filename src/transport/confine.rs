//! What an agent started by a move's restricted key may do (`agent --stdio --confine ROOT`):
//! write files beneath its roots the way the file engine does (temp name, verified, renamed)
//! and feed the streams it is given tokens for. Nothing else: no commands, no listing, no
//! deletes, no roots elsewhere, no peers of its own.

use std::path::{Component, Path, PathBuf};

use super::protocol::Call;
use crate::tree::root::SafeRoot;

/// The roots and the stream directory a confined agent serves.
#[derive(Debug, Clone, Default)]
pub struct Confine {
    pub roots: Vec<PathBuf>,
    pub streams: Option<PathBuf>,
}

impl Confine {
    /// Whether a call (or a follow-up frame) is one a confined agent serves.
    ///
    /// # Errors
    /// The refusal, naming the call.
    pub fn admit(&self, call: &Call) -> Result<(), String> {
        match call {
            Call::OpenRoot { create: false, .. }
            | Call::CloseRoot { .. }
            | Call::Signature { .. }
            | Call::Signatures { .. }
            | Call::WriteBegin { .. }
            | Call::WriteData { .. }
            | Call::WriteDataZstd { .. }
            | Call::WriteDelta { .. }
            | Call::WriteEnd { .. }
            | Call::WriteSmall { .. }
            | Call::StreamTo { .. }
            | Call::ExecStdin { .. }
            | Call::ExecStdinZstd { .. }
            | Call::ExecStdinEnd => Ok(()),
            other => Err(format!(
                "refused: this agent serves a move's restricted key, and `{}` is not one of its calls",
                call_name(other)
            )),
        }
    }

    /// Opens `root` when it is one of the roots or beneath one, resolving what lies below the
    /// confining root with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`.
    ///
    /// # Errors
    /// The root is outside every confining root, is not a plain absolute path, or cannot be
    /// opened.
    pub fn open_root(&self, root: &Path) -> Result<SafeRoot, String> {
        let plain = root.is_absolute()
            && root
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        let refused = || {
            format!(
                "{}: outside the roots this agent is confined to: refused",
                root.display()
            )
        };
        if !plain {
            return Err(refused());
        }
        let Some((base, rel)) = self
            .roots
            .iter()
            .find_map(|c| root.strip_prefix(c).ok().map(|rel| (c, rel)))
        else {
            return Err(refused());
        };
        let opened = SafeRoot::open(base, false).and_then(|r| {
            if rel.as_os_str().is_empty() {
                Ok(r)
            } else {
                use std::os::unix::ffi::OsStrExt;
                r.open_under(rel.as_os_str().as_bytes())
            }
        });
        opened.map_err(|e| format!("{}: {e}", root.display()))
    }
}

/// A call's name, as the refusal says it.
fn call_name(call: &Call) -> String {
    let debug = format!("{call:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::ExecRequest;

    #[test]
    fn only_the_writes_of_the_file_engine_and_streams_are_admitted() {
        let c = Confine::default();
        for ok in [
            Call::OpenRoot {
                root: "/srv/a".into(),
                create: false,
            },
            Call::WriteEnd { hash: [0; 32] },
            Call::StreamTo { token: "x".into() },
            Call::ExecStdinEnd,
        ] {
            assert!(c.admit(&ok).is_ok(), "{ok:?}");
        }
        for refused in [
            Call::Exec(ExecRequest::new("id", Vec::<String>::new())),
            Call::ExecWrite(ExecRequest::new("sh", Vec::<String>::new())),
            Call::OpenRoot {
                root: "/srv/a".into(),
                create: true,
            },
            Call::Scan {
                root: "/".into(),
                exclude: vec![],
                keep: crate::tree::xattr::Keep::NONE,
            },
            Call::GlobDirs {
                pattern: "/*".into(),
            },
            Call::Remove {
                root: 0,
                path: b"x".to_vec(),
            },
            Call::RevokePeer {
                file: "f".into(),
                marker: "m".into(),
                streams: None,
            },
        ] {
            let e = c.admit(&refused).unwrap_err();
            assert!(e.starts_with("refused"), "{e}");
        }
        let e = c
            .admit(&Call::ExecSession(ExecRequest::default()))
            .unwrap_err();
        assert!(e.contains("`ExecSession`"), "{e}");
    }

    #[test]
    fn roots_open_only_beneath_the_confining_ones_without_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("www");
        std::fs::create_dir_all(base.join("site/sub")).unwrap();
        std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), base.join("link")).unwrap();
        let c = Confine {
            roots: vec![base.clone()],
            streams: None,
        };
        assert!(c.open_root(&base).is_ok());
        assert!(c.open_root(&base.join("site/sub")).is_ok());
        for bad in [
            dir.path().join("elsewhere"),
            base.join("../elsewhere"),
            base.join("link"),
            base.join("link/x"),
            dir.path().join("www2"),
            PathBuf::from("relative/www"),
        ] {
            assert!(c.open_root(&bad).is_err(), "{}", bad.display());
        }
    }
}
