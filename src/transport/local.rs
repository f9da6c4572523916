//! The transport for this machine: calls `tree/` in-process; the remote agent serves it too.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use globset::GlobBuilder;

use super::{ExecOutput, ExecRequest, FsSpace, Transport, TransportError};
use crate::tree::{self, ScanSummary};

/// This machine, under the plan's host name.
#[derive(Clone)]
pub struct LocalTransport {
    host: String,
    channel: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<super::channel::LocalChannel>>>,
}

impl LocalTransport {
    pub fn new(host: impl Into<String>) -> Self {
        LocalTransport {
            host: host.into(),
            channel: Default::default(),
        }
    }

    fn path_error(&self, path: &Path, message: impl Into<String>) -> TransportError {
        TransportError::Path {
            host: self.host.clone(),
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}

fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl Transport for LocalTransport {
    fn host(&self) -> &str {
        &self.host
    }

    fn glob_dirs(&self, pattern: &str) -> Result<Vec<PathBuf>, TransportError> {
        let pat = Path::new(pattern);
        if !pat.is_absolute() {
            return Err(self.path_error(pat, "expected an absolute glob"));
        }
        let mut current = vec![PathBuf::from("/")];
        for component in pattern
            .trim_end_matches('/')
            .split('/')
            .filter(|c| !c.is_empty())
        {
            if component == "**" {
                return Err(self.path_error(
                    pat,
                    "`**` is not supported in site globs: one `*` per directory level",
                ));
            }
            let mut next = Vec::new();
            if has_glob_meta(component) {
                let matcher = GlobBuilder::new(component)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| self.path_error(pat, format!("invalid glob: {e}")))?
                    .compile_matcher();
                for dir in &current {
                    let Ok(read) = std::fs::read_dir(dir) else {
                        continue;
                    };
                    for entry in read.flatten() {
                        let name = entry.file_name();
                        // Hidden directories only match a pattern that starts with a dot, as in a shell.
                        if name.as_bytes().starts_with(b".") && !component.starts_with('.') {
                            continue;
                        }
                        if matcher.is_match(&name) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                            next.push(entry.path());
                        }
                    }
                }
            } else {
                for dir in &current {
                    let candidate = dir.join(component);
                    if std::fs::symlink_metadata(&candidate).is_ok_and(|m| m.is_dir()) {
                        next.push(candidate);
                    }
                }
            }
            current = next;
        }
        current.sort();
        Ok(current)
    }

    fn scan_with(
        &self,
        root: &Path,
        exclude: &[String],
        keep: tree::xattr::Keep,
    ) -> Result<ScanSummary, TransportError> {
        tree::scan_with(root, exclude, keep).map_err(|e| self.path_error(root, e))
    }

    fn scan_parts(
        &self,
        root: &Path,
        exclude: &[String],
        keep: tree::xattr::Keep,
        on_part: &mut dyn FnMut(ScanSummary) -> Result<(), TransportError>,
    ) -> Result<ScanSummary, TransportError> {
        // The walk cannot be stopped half-way: after a refused part, the rest is not handed on.
        let mut refused = None;
        let rest = tree::scan::scan_streamed(
            root,
            exclude,
            keep,
            super::protocol::SCAN_PART,
            &mut |part| {
                if refused.is_none()
                    && let Err(e) = on_part(part)
                {
                    refused = Some(e);
                }
            },
        )
        .map_err(|e| self.path_error(root, e))?;
        refused.map_or(Ok(rest), Err)
    }

    fn scan_digested(
        &self,
        root: &Path,
        exclude: &[String],
        keep: tree::xattr::Keep,
    ) -> Result<ScanSummary, TransportError> {
        tree::scan_digested(root, exclude, keep).map_err(|e| self.path_error(root, e))
    }

    fn space(&self, path: &Path) -> Result<FsSpace, TransportError> {
        let mut probe = path.to_path_buf();
        while std::fs::symlink_metadata(&probe).is_err() {
            if !probe.pop() {
                return Err(self.path_error(path, "no existing parent directory"));
            }
        }
        let c = CString::new(probe.as_os_str().as_bytes())
            .map_err(|_| self.path_error(path, "path contains a NUL byte"))?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        if rc != 0 {
            return Err(self.path_error(path, std::io::Error::last_os_error().to_string()));
        }
        let frsize = st.f_frsize as u64;
        Ok(FsSpace {
            free_bytes: st.f_bavail as u64 * frsize,
            total_bytes: st.f_blocks as u64 * frsize,
        })
    }

    fn is_local(&self) -> bool {
        true
    }

    fn channel(
        &self,
        _index: usize,
    ) -> Result<std::sync::Arc<dyn super::channel::Channel>, TransportError> {
        Ok(self
            .channel
            .get_or_init(|| {
                std::sync::Arc::new(super::channel::LocalChannel::new(self.host.clone()))
            })
            .clone())
    }

    fn exec(&self, request: &ExecRequest) -> Result<ExecOutput, TransportError> {
        let mut cmd = Command::new(&request.program);
        super::own_process_group(&mut cmd)
            .args(&request.args)
            .envs(request.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Ok(ExecOutput {
                    code: None,
                    stdout: Vec::new(),
                    stderr: format!("cannot run `{}`: {e}", request.program).into_bytes(),
                });
            }
        };
        let mut stdin = child.stdin.take().expect("piped");
        let input = request.stdin.clone();
        // Feed stdin from a thread so a chatty child cannot deadlock on a full stdout pipe.
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child
            .wait_with_output()
            .map_err(|e| TransportError::Connect {
                host: self.host.clone(),
                message: format!("waiting for `{}`: {e}", request.program),
            })?;
        let _ = feeder.join();
        Ok(ExecOutput {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_directories_per_level() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["www/a", "www/b", "www/.hidden", "other/c"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("www/file"), b"").unwrap();
        std::os::unix::fs::symlink(dir.path().join("other/c"), dir.path().join("www/link"))
            .unwrap();
        let t = LocalTransport::new("local");
        let found = t
            .glob_dirs(&format!("{}/www/*/", dir.path().display()))
            .unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, vec!["a", "b"]);
        assert!(t.glob_dirs("relative/*").is_err());
    }

    #[test]
    fn exec_passes_env_and_stdin() {
        let t = LocalTransport::new("local");
        let out = t
            .exec(&ExecRequest {
                stdin: b"in".to_vec(),
                ..ExecRequest::new("sh", ["-c", "cat; printf \" $SECRET_X\""]).env("SECRET_X", "v")
            })
            .unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, b"in v");
        assert!(
            t.space(Path::new("/tmp/does/not/exist"))
                .unwrap()
                .total_bytes
                > 0
        );
    }
}
