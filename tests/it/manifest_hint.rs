//! Issue 16: the trusted-manifest hint. A pre-sync of a site verified before reads the
//! manifest its last clean verification kept instead of listing the target; the hint never
//! replaces the final comparison, and a stale one neither loses nor overwrites anything.

use std::path::Path;
use std::sync::Arc;

use crate::cli::bin;
use transhumance::sync::manifest::Hint;
use transhumance::sync::{Endpoint, SyncOptions};
use transhumance::transport::{LocalTransport, Transport};

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Every file under `root` with its content.
fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(root).unwrap().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Edits a file in place (same size, a new mtime), as someone at the target would.
fn edit_in_place(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    for b in &mut bytes {
        *b = b.wrapping_add(1);
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(path, &bytes).unwrap();
}

#[test]
fn a_stale_manifest_hint_is_corrected_by_the_final_pass() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (src, dst) = (w.join("old/alpha"), w.join("new/alpha"));
    write(&src.join("index.html"), b"<title>one</title>");
    write(&src.join("page.html"), b"page, as published");
    write(
        &src.join("gone.html"),
        b"removed at the target behind our back",
    );
    write(&src.join("deep/a.css"), b"body{}");
    let plan = w.join("plan.yaml");
    let write_plan = |hint: &str| {
        std::fs::write(
            &plan,
            format!(
                "version: 1\nname: hint-it\nstate_dir: state\ndefaults: {{ {hint} }}\n\
sites:\n  - name: alpha\n    from: {{ host: local, path: \"old/alpha/\" }}\n    to: {{ host: local, path: \"new/alpha/\" }}\n"
            ),
        )
        .unwrap();
    };
    let cli = |args: &[&str]| {
        let out = bin().args(args).arg(&plan).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    // A hint without the verification it comes from is a mistake, placed in the file.
    write_plan("manifest_hint: true, verify: none");
    let (code, text) = cli(&["validate"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("plan.yaml:4:")
            && text.contains("manifest hint comes from a clean verification"),
        "{text}"
    );
    write_plan("manifest_hint: true");
    let (code, text) = cli(&["validate"]);
    assert_eq!(code, Some(0), "{text}");

    // First pass: no manifest yet, the target is listed. A clean verification keeps one.
    let (code, text) = cli(&["sync"]);
    assert_eq!(code, Some(0), "{text}");
    let manifests = w.join("state/manifests");
    assert!(!manifests.exists(), "a sync alone keeps no manifest");
    let (code, text) = cli(&["verify"]);
    assert_eq!(code, Some(0), "{text}");
    let kept: Vec<_> = std::fs::read_dir(&manifests).unwrap().flatten().collect();
    assert_eq!(kept.len(), 1, "one manifest per target");
    let manifest = kept[0].path();

    // Behind the manifest's back, at the target: a file edited in place, one
    // removed, one added (a file someone put there: no pass may lose it unless a real listing
    // says it is extra). At the source: a change and a new file.
    edit_in_place(&dst.join("page.html"));
    std::fs::remove_file(dst.join("gone.html")).unwrap();
    write(&dst.join("stray.txt"), b"put there by hand");
    write(&src.join("index.html"), b"<title>two, longer</title>");
    write(&src.join("deep/new.js"), b"new");

    // A pre-sync with the hint: it trusts the manifest, so it sends what changed at the
    // source and leaves alone what it does not know about.
    let (code, text) = cli(&["sync"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        std::fs::read(dst.join("index.html")).unwrap(),
        b"<title>two, longer</title>"
    );
    assert_eq!(std::fs::read(dst.join("deep/new.js")).unwrap(), b"new");
    assert_eq!(
        std::fs::read(dst.join("stray.txt")).unwrap(),
        b"put there by hand",
        "the hint never deletes what it did not see"
    );
    assert!(
        !dst.join("gone.html").exists(),
        "the manifest said it was there"
    );
    assert_ne!(
        std::fs::read(dst.join("page.html")).unwrap(),
        b"page, as published"
    );

    // The final pass (the options `cutover` runs its final sync with: the hint not read) lists
    // the target for real: the target is the source again, the stray file deleted by the
    // mirror only now that a real listing saw it.
    let local: Arc<dyn Transport> = Arc::new(LocalTransport::new("local"));
    let end = |root: &Path| Endpoint {
        transport: local.clone(),
        root: root.to_path_buf(),
    };
    // As the plan's: a mirror keeping ACLs and extended attributes.
    let final_pass = SyncOptions {
        delete: true,
        acls: true,
        xattrs: true,
        manifest: Some(Hint {
            path: manifest.clone(),
            read: false,
        }),
        ..SyncOptions::default()
    };
    let report = transhumance::sync::sync(
        &end(&src),
        &end(&dst),
        &final_pass,
        &transhumance::event::Silent,
    )
    .unwrap();
    assert!(!report.target_from_manifest);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(files(&src), files(&dst));
    // The same options with the hint read: the manifest stands in for the listing.
    let hinted = SyncOptions {
        manifest: Some(Hint {
            path: manifest.clone(),
            read: true,
        }),
        ..final_pass.clone()
    };
    let (plan_hinted, _) = transhumance::sync::plan(&end(&src), &end(&dst), &hinted).unwrap();
    let (plan_listed, _) = transhumance::sync::plan(&end(&src), &end(&dst), &final_pass).unwrap();
    assert_eq!(plan_listed.totals().files_to_send, 0);
    assert!(
        plan_hinted.totals().files_to_send >= 1,
        "the manifest is stale: it says so"
    );

    // The plan's verification lists both sides for real: clean, and it keeps a new manifest,
    // with which a pre-sync has nothing to do.
    let (code, text) = cli(&["verify"]);
    assert_eq!(code, Some(0), "{text}");
    let (plan_hinted, _) = transhumance::sync::plan(&end(&src), &end(&dst), &hinted).unwrap();
    assert_eq!(plan_hinted.totals().files_to_send, 0);
    assert_eq!(plan_hinted.totals().delete_files, 0);

    // A verification that finds the target different forgets the manifest.
    write(&dst.join("stray.txt"), b"again");
    let (code, text) = cli(&["verify"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(!manifest.exists(), "a failed verification leaves no hint");
}
