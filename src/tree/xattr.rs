//! Extended attributes and POSIX ACLs: read at the source, compared, and set at the target as
//! raw xattr values (an ACL is the `system.posix_acl_*` xattr; numeric ids are kept, so the
//! same bytes mean the same ACL there and no libacl is needed). Symlinks are never followed.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Which attributes a sync keeps (rsync's `-X` and `-A`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keep {
    /// `user.*`; `security.*` and `trusted.*` too where the target runs as root.
    pub xattrs: bool,
    /// POSIX ACLs, access and default (`system.posix_acl_access`, `system.posix_acl_default`).
    pub acls: bool,
}

impl Keep {
    pub const NONE: Keep = Keep {
        xattrs: false,
        acls: false,
    };
    pub const ALL: Keep = Keep {
        xattrs: true,
        acls: true,
    };

    pub fn any(self) -> bool {
        self.xattrs || self.acls
    }
}

pub const ACL_ACCESS: &[u8] = b"system.posix_acl_access";
pub const ACL_DEFAULT: &[u8] = b"system.posix_acl_default";
/// The SELinux label belongs to the target's own policy: never copied, never removed there.
const SELINUX_LABEL: &[u8] = b"security.selinux";
/// The kernel's limit on one value (`XATTR_SIZE_MAX`) and on a list of names (`XATTR_LIST_MAX`).
const XATTR_SIZE_MAX: usize = 64 * 1024;

/// Whether `name` is copied (and removed at the target when the source lacks it) under
/// `keep`, by a writer that is root or not: other names are left alone on both sides.
pub fn managed(name: &[u8], keep: Keep, root: bool) -> bool {
    if name == ACL_ACCESS || name == ACL_DEFAULT {
        return keep.acls;
    }
    if name.starts_with(b"user.") {
        return keep.xattrs;
    }
    if name == SELINUX_LABEL {
        return false;
    }
    (name.starts_with(b"security.") || name.starts_with(b"trusted.")) && keep.xattrs && root
}

/// Names only root may set (`security.*`, `trusted.*`, file capabilities among them): left
/// out, and counted, when the target does not run as root.
pub fn needs_root(name: &[u8]) -> bool {
    managed(name, Keep::ALL, true) && !managed(name, Keep::ALL, false)
}

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// What a target entry must end up with: within `keep`, exactly `list` (names the target may
/// not set are left out there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wanted {
    pub keep: Keep,
    pub list: Vec<Xattr>,
}

impl Wanted {
    /// What the target's `path` must have: the source's attributes as `listed`, within
    /// `keep` (`None` when nothing is kept: the target's are left alone).
    pub fn of(
        keep: Keep,
        listed: &std::collections::BTreeMap<Vec<u8>, Vec<Xattr>>,
        path: &[u8],
    ) -> Option<Wanted> {
        keep.any().then(|| Wanted {
            keep,
            list: listed.get(path).cloned().unwrap_or_default(),
        })
    }
}

/// Whether two sorted lists agree on every name `keep` covers for a writer that is root or not.
pub fn same(a: &[Xattr], b: &[Xattr], keep: Keep, root: bool) -> bool {
    let kept = |l: &[Xattr]| {
        l.iter()
            .filter(|x| managed(&x.name, keep, root))
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect::<Vec<_>>()
    };
    kept(a) == kept(b)
}

/// Where attributes are read or set: an open descriptor, or a path whose last component is
/// never followed (`Path`) or one that names a pinned inode (`Pinned`: `/proc/self/fd/N` of an
/// `O_PATH | O_NOFOLLOW` descriptor known not to be a symlink, so following reaches only it).
#[derive(Clone, Copy)]
pub enum Handle<'a> {
    Fd(RawFd),
    Path(&'a CStr),
    Pinned(&'a CStr),
}

fn check(rc: isize) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

impl Handle<'_> {
    fn list_raw(self, buf: &mut [u8]) -> io::Result<usize> {
        let (p, n) = (buf.as_mut_ptr().cast(), buf.len());
        // SAFETY: valid descriptor or NUL-terminated path, and a buffer of `n` bytes (or none).
        check(unsafe {
            match self {
                Handle::Fd(fd) => libc::flistxattr(fd, p, n),
                Handle::Path(c) => libc::llistxattr(c.as_ptr(), p, n),
                Handle::Pinned(c) => libc::listxattr(c.as_ptr(), p, n),
            }
        })
    }

    fn get_raw(self, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
        let (p, n) = (buf.as_mut_ptr().cast(), buf.len());
        // SAFETY: as in `list_raw`, and a NUL-terminated name.
        check(unsafe {
            match self {
                Handle::Fd(fd) => libc::fgetxattr(fd, name.as_ptr(), p, n),
                Handle::Path(c) => libc::lgetxattr(c.as_ptr(), name.as_ptr(), p, n),
                Handle::Pinned(c) => libc::getxattr(c.as_ptr(), name.as_ptr(), p, n),
            }
        })
    }

    fn set(self, name: &CStr, value: &[u8]) -> io::Result<()> {
        let (p, n) = (value.as_ptr().cast(), value.len());
        // SAFETY: as in `get_raw`, with a value of `n` bytes.
        let rc = unsafe {
            match self {
                Handle::Fd(fd) => libc::fsetxattr(fd, name.as_ptr(), p, n, 0),
                Handle::Path(c) => libc::lsetxattr(c.as_ptr(), name.as_ptr(), p, n, 0),
                Handle::Pinned(c) => libc::setxattr(c.as_ptr(), name.as_ptr(), p, n, 0),
            }
        };
        check(rc as isize).map(|_| ())
    }

    fn remove(self, name: &CStr) -> io::Result<()> {
        // SAFETY: as in `get_raw`.
        let rc = unsafe {
            match self {
                Handle::Fd(fd) => libc::fremovexattr(fd, name.as_ptr()),
                Handle::Path(c) => libc::lremovexattr(c.as_ptr(), name.as_ptr()),
                Handle::Pinned(c) => libc::removexattr(c.as_ptr(), name.as_ptr()),
            }
        };
        match check(rc as isize) {
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Calls `f` with a buffer as big as the size it reports for an empty one; the value may
    /// grow in between (`ERANGE`), so it asks again a few times.
    fn sized(self, f: impl Fn(&mut [u8]) -> io::Result<usize>) -> io::Result<Vec<u8>> {
        for _ in 0..4 {
            let want = f(&mut [])?;
            if want == 0 {
                return Ok(Vec::new());
            }
            let mut buf = vec![0u8; want.min(XATTR_SIZE_MAX)];
            match f(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(
            "extended attributes kept changing while read",
        ))
    }

    /// Every name the entry has (`ENOTSUP`: a file system without xattrs has none).
    fn names(self) -> io::Result<Vec<Vec<u8>>> {
        let raw = match self.sized(|b| self.list_raw(b)) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
            r => r?,
        };
        Ok(raw
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(<[u8]>::to_vec)
            .collect())
    }

    /// The attributes `keep` covers (root's namespaces included), sorted by name.
    pub fn read(self, keep: Keep) -> io::Result<Vec<Xattr>> {
        if !keep.any() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for name in self.names()? {
            if !managed(&name, keep, true) {
                continue;
            }
            let c = CString::new(name.clone()).map_err(|_| io::Error::other("NUL in a name"))?;
            match self.sized(|b| self.get_raw(&c, b)) {
                Ok(value) => out.push(Xattr { name, value }),
                // Removed since it was listed.
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Makes the attributes `wanted.keep` covers exactly `wanted.list`: names the source lacks
    /// are removed (an ACL inherited from a default ACL, one removed at the source), the others
    /// set. Names a writer that is not root may not set are left alone.
    ///
    /// # Errors
    /// A name that cannot be set or removed (a file system without ACLs, no space for them).
    pub fn apply(self, wanted: &Wanted, root: bool) -> io::Result<()> {
        let keep = wanted.keep;
        if !keep.any() {
            return Ok(());
        }
        let name_of = |n: &[u8]| {
            CString::new(n).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "NUL in an attribute name")
            })
        };
        for name in self.names()? {
            if managed(&name, keep, root) && !wanted.list.iter().any(|x| x.name == name) {
                self.remove(&name_of(&name)?).map_err(|e| named(&name, e))?;
            }
        }
        for x in &wanted.list {
            // Names come from a peer: only those this side manages are written.
            if managed(&x.name, keep, root) {
                self.set(&name_of(&x.name)?, &x.value)
                    .map_err(|e| named(&x.name, e))?;
            }
        }
        Ok(())
    }
}

fn named(name: &[u8], e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "extended attribute `{}`: {e}",
            String::from_utf8_lossy(name)
        ),
    )
}

/// The attributes of `path` (never followed) that `keep` covers, sorted by name.
///
/// # Errors
/// Unreadable attributes.
pub fn read_path(path: &Path, keep: Keep) -> io::Result<Vec<Xattr>> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    Handle::Path(&c).read(keep)
}

/// How many of `list`'s names a writer that is not root must leave out.
pub fn root_only(list: &[Xattr], keep: Keep) -> usize {
    if !keep.xattrs {
        return 0;
    }
    list.iter().filter(|x| needs_root(&x.name)).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn x(name: &str, value: &str) -> Xattr {
        Xattr {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn namespaces_follow_the_options_and_the_writers_privilege() {
        let user = Keep {
            xattrs: true,
            acls: false,
        };
        let acls = Keep {
            xattrs: false,
            acls: true,
        };
        assert!(managed(b"user.mime", user, false));
        assert!(!managed(b"user.mime", acls, true));
        assert!(managed(ACL_ACCESS, acls, false) && managed(ACL_DEFAULT, acls, false));
        assert!(!managed(ACL_ACCESS, user, true));
        for privileged in [&b"security.capability"[..], b"trusted.md5"] {
            assert!(managed(privileged, user, true));
            assert!(!managed(privileged, user, false));
            assert!(needs_root(privileged));
        }
        assert!(!managed(b"security.selinux", Keep::ALL, true));
        assert!(!managed(b"system.nfs4_acl", Keep::ALL, true));
        assert!(!needs_root(b"user.x") && !needs_root(ACL_ACCESS));
        assert_eq!(
            root_only(&[x("user.a", "1"), x("security.capability", "c")], user),
            1
        );
    }

    #[test]
    fn comparison_sees_only_what_is_kept() {
        let a = [x("security.capability", "c"), x("user.a", "1")];
        let b = [x("user.a", "1")];
        assert!(
            same(&a, &b, Keep::ALL, false),
            "not root: caps are not ours"
        );
        assert!(!same(&a, &b, Keep::ALL, true));
        assert!(!same(&b, &[x("user.a", "2")], Keep::ALL, false));
        assert!(same(&b, &[x("user.a", "2")], Keep::NONE, true));
    }

    #[test]
    fn user_attributes_are_read_set_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let fd = Handle::Fd(f.as_raw_fd());
        if let Err(e) = fd.set(c"user.probe", b"1") {
            // A file system without user xattrs: nothing to check here.
            assert_eq!(e.raw_os_error(), Some(libc::ENOTSUP), "{e}");
            return;
        }
        fd.set(c"user.stale", b"old").unwrap();
        let wanted = Wanted {
            keep: Keep::ALL,
            list: vec![x("user.a", "1"), x("user.b", "")],
        };
        fd.apply(&wanted, false).unwrap();
        assert_eq!(read_path(&path, Keep::ALL).unwrap(), wanted.list);
        assert!(read_path(&path, Keep::NONE).unwrap().is_empty());
        // Leaving xattrs out leaves the target's alone.
        let acls_only = Wanted {
            keep: Keep {
                xattrs: false,
                acls: true,
            },
            list: Vec::new(),
        };
        fd.apply(&acls_only, false).unwrap();
        assert_eq!(read_path(&path, Keep::ALL).unwrap().len(), 2);
    }
}
