//! The trusted-manifest hint: what a clean verification saw at a target (path, type, size,
//! mtime, mode, owner, inode; never content), kept by the controller and read back by a later
//! pass instead of listing the target (`defaults.manifest_hint`). Only a hint: the final pass
//! and `verify` always list the target for real, and a stale hint can only make a pass do
//! less than a real listing would (never write where a real listing would not).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::engine::{Endpoint, SyncOptions};
use crate::tree::root::Meta;
use crate::tree::{Entry, EntryKind, ScanSummary};

/// Where a target's manifest is kept, and whether this pass reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub path: PathBuf,
    /// Read instead of listing the target (a pre-sync); a final pass and `verify` never do,
    /// a clean `verify` writes it whatever this says.
    pub read: bool,
}

impl Hint {
    /// A target's manifest under `state_dir`, one file per target tree.
    pub fn under(state_dir: &Path, host: &str, root: &Path, read: bool) -> Hint {
        let id = blake3::hash(format!("{host}\0{}", normal(root).display()).as_bytes()).to_hex();
        Hint {
            path: state_dir
                .join("manifests")
                .join(format!("{}.manifest", &id[..16])),
            read,
        }
    }
}

/// Bumped when `Manifest` changes shape: an older file is then not read.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Manifest {
    version: u32,
    /// What the listing was of and with which options (`key`): another target, other
    /// excludes, and the hint is not used.
    key: String,
    listed_as_root: bool,
    root_meta: Option<Meta>,
    entries: Vec<Entry>,
    /// The kept attributes, as listed (`ScanSummary::xattrs`).
    xattrs: std::collections::BTreeMap<Vec<u8>, Vec<crate::tree::xattr::Xattr>>,
}

/// A root as written without what does not change it (a trailing `/`, `.` components).
fn normal(root: &Path) -> PathBuf {
    root.components().collect()
}

/// The target, root and options a listing depends on.
fn key(dst: &Endpoint, opts: &SyncOptions) -> String {
    let keep = opts.keep();
    format!(
        "{}\0{}\0{:?}\0{}{}",
        dst.transport.host(),
        normal(&dst.root).display(),
        opts.exclude,
        keep.xattrs,
        keep.acls
    )
}

/// Whether `opts` may use a manifest instead of the target's listing: asked for, and only
/// what a manifest holds decides (no content hashes).
pub(crate) fn readable(opts: &SyncOptions) -> Option<&Hint> {
    opts.manifest.as_ref().filter(|h| h.read && !opts.checksum)
}

/// The target's listing as the manifest recorded it, when the options allow the hint and a
/// manifest of this target and these options is there; anything else (none yet, another
/// version, unreadable) is `None`, and the target is listed.
pub fn load(dst: &Endpoint, opts: &SyncOptions) -> Option<ScanSummary> {
    let hint = readable(opts)?;
    let packed = std::fs::read(&hint.path).ok()?;
    let raw = zstd::stream::decode_all(packed.as_slice()).ok()?;
    let m: Manifest = postcard::from_bytes(&raw).ok()?;
    if m.version != VERSION || m.key != key(dst, opts) {
        return None;
    }
    Some(ScanSummary {
        exists: true,
        entries: m.entries,
        root_meta: m.root_meta,
        listed_as_root: m.listed_as_root,
        xattrs: m.xattrs,
        from_manifest: true,
        ..ScanSummary::default()
    })
}

/// Keeps `target` (a real listing of a target a verification found equal to its source) as
/// the manifest of `dst`, atomically; our own temp files are left out. Nothing is written
/// without `opts.manifest`, nor from a listing that was itself a manifest.
///
/// # Errors
/// The state directory cannot be written.
pub fn save(dst: &Endpoint, opts: &SyncOptions, target: &ScanSummary) -> std::io::Result<()> {
    let Some(hint) = &opts.manifest else {
        return Ok(());
    };
    if target.from_manifest || !target.exists {
        return Ok(());
    }
    let m = Manifest {
        version: VERSION,
        key: key(dst, opts),
        listed_as_root: target.listed_as_root,
        root_meta: target.root_meta,
        xattrs: target
            .xattrs
            .iter()
            .filter(|(p, _)| !super::diff::is_internal(p))
            .map(|(p, l)| (p.clone(), l.clone()))
            .collect(),
        entries: target
            .entries
            .iter()
            .filter(|e| !super::diff::is_internal(&e.path))
            .map(|e| Entry {
                // A symlink's target is what decides it; a file's content is never kept.
                link_target: (e.kind == EntryKind::Symlink)
                    .then(|| e.link_target.clone())
                    .flatten(),
                ..e.clone()
            })
            .collect(),
    };
    let raw = postcard::to_stdvec(&m).map_err(std::io::Error::other)?;
    let packed = zstd::bulk::compress(&raw, 3)?;
    let dir = hint.path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = hint.path.with_extension("manifest.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&packed)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &hint.path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Forgets `dst`'s manifest (a verification found the target different: no hint is better
/// than a wrong one).
pub fn forget(opts: &SyncOptions) {
    if let Some(hint) = &opts.manifest {
        let _ = std::fs::remove_file(&hint.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::LocalTransport;

    fn endpoint(root: &Path) -> Endpoint {
        Endpoint {
            transport: std::sync::Arc::new(LocalTransport::new("local")),
            root: root.to_path_buf(),
        }
    }

    #[test]
    fn read_back_only_for_the_same_target_and_options() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), b"x").unwrap();
        std::fs::create_dir_all(root.join(crate::tree::root::TEMP_DIR)).unwrap();
        let listed = crate::tree::scan(&root, &[]).unwrap();
        let hint = Hint::under(&dir.path().join("state"), "local", &root, true);
        assert_eq!(
            hint,
            Hint::under(&dir.path().join("state"), "local", &root.join(""), true),
            "a trailing slash names the same target"
        );
        let opts = SyncOptions {
            manifest: Some(hint.clone()),
            ..SyncOptions::default()
        };
        let dst = endpoint(&root);
        assert!(load(&dst, &opts).is_none(), "none kept yet");
        save(&dst, &opts, &listed).unwrap();
        let read = load(&dst, &opts).unwrap();
        assert!(read.from_manifest && read.exists);
        let paths: Vec<&[u8]> = read.entries.iter().map(|e| e.path.as_slice()).collect();
        assert_eq!(paths, [&b"d"[..], b"d/f"], "our temp directory is left out");
        assert_eq!(read.root_meta, listed.root_meta);
        // Not read: another root, other excludes, content compared, or not asked to.
        assert!(load(&endpoint(&dir.path().join("u")), &opts).is_none());
        for other in [
            SyncOptions {
                exclude: vec!["*.log".into()],
                ..opts.clone()
            },
            SyncOptions {
                checksum: true,
                ..opts.clone()
            },
            SyncOptions {
                manifest: Some(Hint {
                    read: false,
                    ..hint.clone()
                }),
                ..opts.clone()
            },
        ] {
            assert!(load(&dst, &other).is_none(), "{other:?}");
        }
        // A manifest is never made from a manifest; a failed verification forgets it.
        let before = std::fs::read(&hint.path).unwrap();
        save(&dst, &opts, &read).unwrap();
        assert_eq!(std::fs::read(&hint.path).unwrap(), before);
        forget(&opts);
        assert!(!hint.path.exists());
    }
}
