//! A small tmpfs to fill to the last byte: the fixture of the full-disk tests and the soak.
//! Mounting needs root, as the tests run in CI; elsewhere `Tmpfs::mount` says so and returns
//! `None`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
pub struct Tmpfs {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("not root, cannot mount a tmpfs; skipped");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount")
            .success();
        assert!(ok, "mount -t tmpfs failed as root");
        Some(Tmpfs { _dir: dir, path })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A store's threads may still hold a file open for a moment after it is dropped:
        // retry, then detach it lazily (freed when the last file closes) rather than leave
        // the mount behind.
        for _ in 0..20 {
            let unmounted = Command::new("umount")
                .arg(&self.path)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if unmounted {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Writes a filler file until the file system refuses another byte.
pub fn fill_the_disk(dir: &Path) {
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let chunk = vec![0xa5u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let mut one = [0u8; 1];
    while f.write_all(&one).is_ok() {
        one[0] ^= 1;
    }
    let _ = f.sync_all();
}
