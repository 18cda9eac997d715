//! The pushed test images, built once and reused.
//!
//! The first test that needs them builds every image, pushes it to a throw-away writable
//! registry over HTTP, and keeps that registry's storage (plus `images.json`, the metadata) in
//! `target/e2e-images/template-<version>/`. Later test binaries and runs reuse it; the build is
//! deterministic, so the cache only saves time. Set `WHARF_E2E_REBUILD=1` to rebuild.
//!
//! Each upstream then serves a hardlinked copy (`cp -al`, instant): separate processes and
//! access logs, shared file contents. Distribution never rewrites blobs, and the upstreams run
//! in read-only mode, so the shared files stay intact.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

use crate::http::Http;
use crate::images::ImageSet;
use crate::process::run;
use crate::push::Pusher;
use crate::registry::{Storage, Upstream};
use crate::util::{e2e_dir, write_file};

/// Bump when the image set or its layout changes.
const VERSION: &str = "v1";

struct Template {
    storage: PathBuf,
    set: ImageSet,
}

static TEMPLATE: OnceLock<Template> = OnceLock::new();

/// The test images (building and pushing them on first use).
pub fn images() -> &'static ImageSet {
    &template().set
}

/// The prefilled storage directory every upstream copies.
pub fn template_storage() -> &'static Path {
    &template().storage
}

fn template() -> &'static Template {
    TEMPLATE.get_or_init(|| {
        let dir = e2e_dir().join(format!("template-{VERSION}"));
        let rebuild = std::env::var_os("WHARF_E2E_REBUILD").is_some_and(|v| v == "1");
        match load(&dir) {
            Some(t) if !rebuild => t,
            _ => build(&dir),
        }
    })
}

fn load(dir: &Path) -> Option<Template> {
    if !dir.join("COMPLETE").exists() {
        return None;
    }
    let json = std::fs::read(dir.join("images.json")).ok()?;
    let set = serde_json::from_slice(&json).ok()?;
    Some(Template {
        storage: dir.join("storage"),
        set,
    })
}

fn build(dir: &Path) -> Template {
    let started = Instant::now();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let work = e2e_dir().join(format!("building-{}-{nanos}", std::process::id()));
    let storage = work.join("storage");
    std::fs::create_dir_all(&storage).expect("mkdir template storage");
    let set = {
        let mut up = Upstream::builder().storage(Storage::Dir(storage)).start();
        let http = Http::new();
        let set = Pusher {
            base: up.url(),
            http: &http,
        }
        .all();
        up.stop();
        set
    };
    write_file(
        &work.join("images.json"),
        serde_json::to_vec_pretty(&set).expect("images json"),
    );
    write_file(&work.join("COMPLETE"), b"");
    if dir.exists() && std::env::var_os("WHARF_E2E_REBUILD").is_some_and(|v| v == "1") {
        let stale = e2e_dir().join(format!("stale-{}-{nanos}", std::process::id()));
        if std::fs::rename(dir, &stale).is_ok() {
            let _ = std::fs::remove_dir_all(&stale);
        }
    }
    if std::fs::rename(&work, dir).is_err() {
        // Another test binary finished first: use its copy (same bytes) and drop ours.
        let _ = std::fs::remove_dir_all(&work);
    }
    eprintln!(
        "[harness] built and pushed the test images in {:.1?} -> {}",
        started.elapsed(),
        dir.display()
    );
    load(dir).unwrap_or_else(|| panic!("template {} is incomplete", dir.display()))
}

/// A private copy of the template storage (hardlinks; a real copy if linking fails), inside a
/// temporary directory that is removed when the returned guard drops. The copy is at
/// `<guard>/storage`.
pub fn storage_copy() -> tempfile::TempDir {
    let src = template_storage();
    let runs = e2e_dir().join("run");
    std::fs::create_dir_all(&runs).expect("mkdir run dir");
    let tmp = tempfile::Builder::new()
        .prefix("upstream-")
        .tempdir_in(&runs)
        .expect("temp dir for storage copy");
    let dst = tmp.path().join("storage");
    let linked = run(
        Command::new("cp").arg("-al").arg(src).arg(&dst),
        Duration::from_secs(60),
    );
    if !linked.ok() {
        let _ = std::fs::remove_dir_all(&dst);
        run(
            Command::new("cp").arg("-a").arg(src).arg(&dst),
            Duration::from_secs(300),
        )
        .expect_ok("cp -a of the template storage");
    }
    tmp
}
