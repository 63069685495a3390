//! `reroot export` and `reroot import` on the real testbed (ZFS via zfs-fuse, btrfs, a plain
//! directory), on the daemon REROOT_TEST_DAEMON chooses: the data comes back byte-identical;
//! a killed export leaves no manifest and its resume gives a valid export; a damaged archive,
//! another instance's manifest, an unknown kind and an existing filesystem are refused with
//! nothing changed; undo of an export removes only what it wrote, an import is not undone.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use reroot::storage::{Filesystem, FsKind};

struct Bed {
    prefix: String,
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Bed {
        common::require_zfs();
        common::require_btrfs();
        Bed {
            prefix: common::unique_name("ar"),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn instance(&self) -> String {
        format!("{}-web", self.prefix)
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    fn config(&self) -> PathBuf {
        let path = self.dir.path().join(format!("{}.yaml", self.instance()));
        let text = format!(
            "#lxdops\n\
             ostype: busybox\n\
             origin: tpl/base\n\
             profiles: [default]\n\
             filesystems:\n  \
               data:\n    pattern: rerootz/{p}/(instance)\n  \
               logs:\n    kind: btrfs\n    pattern: /srv/reroot-btrfs/{p}-(instance)\n  \
               files:\n    kind: dir\n    pattern: {d}/dirs/(instance)\n  \
               cache:\n    kind: dir\n    pattern: {d}/cache/(instance)\n    transient: true\n\
             devices:\n  \
               www:\n    path: /var/www\n    filesystem: data\n",
            p = self.prefix,
            d = self.dir.path().display()
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn filesystems(&self) -> Vec<Filesystem> {
        let i = self.instance();
        let fs = |id: &str, kind| Filesystem {
            id: id.into(),
            kind,
            transient: false,
            zfs_properties: BTreeMap::new(),
        };
        vec![
            fs(
                "data",
                FsKind::Zfs {
                    dataset: format!("rerootz/{}/{i}", self.prefix),
                },
            ),
            fs(
                "logs",
                FsKind::Btrfs {
                    path: format!("/srv/reroot-btrfs/{}-{i}", self.prefix).into(),
                },
            ),
            fs(
                "files",
                FsKind::Dir {
                    path: self.dir.path().join("dirs").join(&i),
                },
            ),
        ]
    }

    fn reroot(&self, fault: Option<&str>, args: &[&str]) -> Output {
        common::reroot_in(&self.journal(), fault, args)
    }

    fn last_run(&self) -> String {
        let out = self.reroot(None, &["history", "--json", "--limit", "1"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history json");
        doc["runs"][0]["id"].as_str().expect("a run id").to_string()
    }

    fn run_count(&self) -> usize {
        if !self.journal().exists() {
            return 0;
        }
        let out = self.reroot(None, &["history", "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history json");
        doc["runs"].as_array().map_or(0, Vec::len)
    }

    /// Every filesystem's content: path -> (mode, bytes or link target).
    async fn contents(&self) -> BTreeMap<String, (u32, Vec<u8>)> {
        let mut all = BTreeMap::new();
        for fs in self.filesystems() {
            let root = fs.host_dir().await.expect("host dir");
            walk(&root, &root, &fs.id, &mut all);
        }
        all
    }

    async fn exist(&self) -> Vec<bool> {
        let mut out = Vec::new();
        for fs in self.filesystems() {
            out.push(fs.exists().await.expect("exists"));
        }
        out
    }

    async fn destroy_all(&self) {
        for fs in self.filesystems() {
            fs.destroy().await.expect("destroy");
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        common::zfs_destroy_all(&format!("rerootz/{}", self.prefix));
        if let Ok(entries) = std::fs::read_dir(common::BTRFS_MOUNT) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().contains(&self.prefix) {
                    let _ = std::process::Command::new("btrfs")
                        .args(["subvolume", "delete"])
                        .arg(e.path())
                        .output();
                }
            }
        }
    }
}

fn walk(root: &Path, at: &Path, id: &str, out: &mut BTreeMap<String, (u32, Vec<u8>)>) {
    for e in std::fs::read_dir(at).expect("read dir").flatten() {
        let path = e.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let key = format!("{id}:{}", path.strip_prefix(root).unwrap().display());
        let mode = meta.permissions().mode();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            out.insert(key, (mode, target.to_string_lossy().as_bytes().to_vec()));
        } else if meta.is_dir() {
            out.insert(key, (mode, Vec::new()));
            walk(root, &path, id, out);
        } else {
            out.insert(key, (mode, std::fs::read(&path).unwrap()));
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fills a filesystem with a nested tree, a binary file, a symlink and odd modes.
fn fill(root: &Path, seed: u8) {
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    let bytes: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ seed)
        .collect();
    std::fs::write(root.join("a/b/blob"), &bytes).unwrap();
    std::fs::write(root.join("note"), format!("seed {seed}\n")).unwrap();
    std::fs::set_permissions(root.join("note"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("a/b/blob", root.join("link")).unwrap();
}

#[tokio::test]
async fn export_then_import_gives_the_data_back_and_refuses_what_is_unsafe() {
    if !cfg!(feature = "fault-injection") {
        panic!("run the tests with --features fault-injection (scripts/test.sh does)");
    }
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new();
    let config = bed.config();
    let cfg = config.to_str().unwrap();
    for (n, fs) in bed.filesystems().iter().enumerate() {
        fs.create().await.expect("create filesystem");
        fill(&fs.host_dir().await.unwrap(), n as u8);
    }
    let before = bed.contents().await;
    let out = bed.dir.path().join("export");
    let dir = out.to_str().unwrap();

    // --dry-run lists the files and writes nothing.
    let dry = bed.reroot(None, &["export", "--dry-run", cfg, dir]);
    assert!(dry.status.success());
    let listed = String::from_utf8_lossy(&dry.stdout).to_string();
    for file in ["data.zfs", "logs.btrfs", "files.tar", "manifest.json"] {
        assert!(listed.contains(file), "{file} in {listed}");
    }
    assert!(
        !listed.contains("cache"),
        "a transient filesystem is not exported: {listed}"
    );
    assert!(!out.exists());
    assert_eq!(bed.run_count(), 0);

    // A snapshot that a filesystem lacks: refused before any run is recorded.
    let missing = bed.reroot(None, &["export", "-s", "nosuch", cfg, dir]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("has no snapshot nosuch"),
        "{}",
        stderr(&missing)
    );
    assert!(!out.exists());
    assert_eq!(bed.run_count(), 0);

    // Killed after the archives were written, before that was recorded: no manifest; the
    // resume finds the complete files, and writes the manifest.
    let killed = bed.reroot(Some("export-archives:after-apply"), &["export", cfg, dir]);
    assert!(!killed.status.success());
    assert!(
        !out.join("manifest.json").exists(),
        "a killed export has a manifest"
    );
    let run = bed.last_run();
    assert!(bed.reroot(None, &["resume", &run]).status.success());
    let entries = verified_export(&out, &bed.instance());

    // A second export into the same directory is refused, with no run recorded.
    let runs = bed.run_count();
    let again = bed.reroot(None, &["export", cfg, dir]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("manifest.json"),
        "{}",
        stderr(&again)
    );
    assert_eq!(bed.run_count(), runs);

    // The filesystems exist: an import is refused, naming one, and changes nothing.
    let over = bed.reroot(None, &["import", cfg, dir]);
    assert!(!over.status.success());
    assert!(
        stderr(&over).contains("never overwrites"),
        "{}",
        stderr(&over)
    );
    assert_eq!(bed.contents().await, before);
    assert_eq!(bed.run_count(), runs);

    // Gone (destroyed through the storage module, snapshots and all).
    bed.destroy_all().await;
    assert_eq!(bed.exist().await, [false, false, false]);

    // Another instance's manifest, a damaged archive, an unknown kind: refused, nothing made.
    let other = bed.reroot(None, &["import", "--name", "someone-else", cfg, dir]);
    assert!(!other.status.success());
    assert!(
        stderr(&other).contains("export of instance"),
        "{}",
        stderr(&other)
    );
    let copy = |name: &str| {
        let to = bed.dir.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&out).unwrap().flatten() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
        to
    };
    let damaged = copy("damaged");
    let mut bytes = std::fs::read(damaged.join("logs.btrfs")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(damaged.join("logs.btrfs"), bytes).unwrap();
    let refused = bed.reroot(None, &["import", cfg, damaged.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("is damaged"),
        "{}",
        stderr(&refused)
    );
    let unknown = copy("unknown");
    let text = std::fs::read_to_string(unknown.join("manifest.json"))
        .unwrap()
        .replace("\"kind\": \"btrfs\"", "\"kind\": \"lvm\"");
    std::fs::write(unknown.join("manifest.json"), text).unwrap();
    let refused = bed.reroot(None, &["import", cfg, unknown.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("unknown filesystem kind \"lvm\""),
        "{}",
        stderr(&refused)
    );
    assert_eq!(bed.exist().await, [false, false, false]);
    assert_eq!(bed.run_count(), runs, "a refused import recorded a run");

    // --dry-run verifies and lists; then an import killed after receiving is resumed.
    let dry = bed.reroot(None, &["import", "--dry-run", cfg, dir]);
    assert!(dry.status.success());
    assert!(String::from_utf8_lossy(&dry.stdout).contains("SHA-256 verified"));
    assert_eq!(bed.exist().await, [false, false, false]);
    let killed = bed.reroot(Some("import-receive:after-apply"), &["import", cfg, dir]);
    assert!(!killed.status.success());
    let import_run = bed.last_run();
    assert!(bed.reroot(None, &["resume", &import_run]).status.success());
    assert_eq!(
        bed.contents().await,
        before,
        "the data came back byte-identical"
    );
    // The received btrfs subvolume is writable; the archive's snapshot sits beside it.
    let logs = bed.filesystems()[1].clone();
    std::fs::write(logs.host_dir().await.unwrap().join("new"), b"x").expect("writable");
    std::fs::remove_file(logs.host_dir().await.unwrap().join("new")).unwrap();
    let snapshot = entries[1]["snapshot"].as_str().unwrap();
    assert!(logs.has_snapshot(snapshot).await.unwrap());

    // An import is not undone: what it received is the instance's data now, and no step
    // but `destroy` removes an instance's data. The refusal says so and keeps it all.
    let refused = bed.reroot(None, &["undo", &import_run]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("cannot be undone")
            && stderr(&refused).contains("`reroot destroy`"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(bed.exist().await, [true, true, true]);
    assert_eq!(
        bed.contents().await,
        before,
        "a refused undo changed the data"
    );
    // Undo of the export removes what it wrote.
    assert!(bed.reroot(None, &["undo", &run]).status.success());
    assert!(
        !out.exists(),
        "the export directory the run made is removed"
    );
    assert!(bed.reroot(None, &["journal", "verify"]).status.success());
}

/// Checks an export directory: its manifest names the instance and three archives whose size
/// and SHA-256 match the files, and no `.partial` file is left. Returns the entries.
fn verified_export(out: &Path, instance: &str) -> Vec<serde_json::Value> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["instance"], instance);
    assert_eq!(manifest["format"], 1);
    let entries = manifest["filesystems"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 3, "{manifest}");
    for e in &entries {
        let file = out.join(e["file"].as_str().unwrap());
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(bytes.len() as u64, e["size"].as_u64().unwrap());
        use sha2::Digest;
        let sum: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sum, e["sha256"].as_str().unwrap(), "{}", file.display());
        assert!(e["snapshot"]
            .as_str()
            .unwrap()
            .starts_with("reroot-export-"));
    }
    assert!(
        std::fs::read_dir(out)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".partial")),
        "a partial file is left"
    );
    entries
}

/// A real SIGKILL while an archive is being streamed (its `.partial` file growing): the export
/// has no manifest; its resume writes the cut archive again and gives a valid export. The same
/// for an import killed mid-extract: its resume gives the data back byte-identical.
#[tokio::test]
async fn an_export_killed_mid_stream_resumes_to_a_valid_export() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new();
    let config = bed.config();
    let cfg = config.to_str().unwrap();
    for (n, fs) in bed.filesystems().iter().enumerate() {
        fs.create().await.expect("create filesystem");
        fill(&fs.host_dir().await.unwrap(), n as u8);
    }
    // Enough data that the stream takes a while (seconds in a debug build).
    let big: Vec<u8> = (0..96u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(
        bed.filesystems()[2].host_dir().await.unwrap().join("big"),
        big,
    )
    .unwrap();
    let before = bed.contents().await;
    let out = bed.dir.path().join("export");
    let mut child = common::reroot_command()
        .env_remove("REROOT_FAULT")
        .arg("--journal")
        .arg(bed.journal())
        .args(["export", cfg, out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn reroot");
    let started = std::time::Instant::now();
    let streaming = loop {
        let partial = std::fs::read_dir(&out).ok().and_then(|d| {
            d.flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(".tar.partial"))
        });
        if let Some(p) = partial {
            if p.metadata().map(|m| m.len() > 0).unwrap_or(false) {
                break p.path();
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the export ended before it was killed"
        );
        assert!(started.elapsed().as_secs() < 60, "no archive was streamed");
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    eprintln!("killed while writing {}", streaming.display());
    assert!(
        !out.join("manifest.json").exists(),
        "a killed export has a manifest"
    );
    let run = bed.last_run();
    assert!(bed.reroot(None, &["resume", &run]).status.success());
    verified_export(&out, &bed.instance());
    bed.destroy_all().await;

    // An import SIGKILLed while the directory's archive is being extracted into its staging
    // directory: the resume removes that and extracts again.
    let mut child = common::reroot_command()
        .env_remove("REROOT_FAULT")
        .arg("--journal")
        .arg(bed.journal())
        .args(["import", cfg, out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn reroot");
    let parent = bed.dir.path().join("dirs");
    let staged = format!(".{}.import-", bed.instance());
    let started = std::time::Instant::now();
    loop {
        let staging = std::fs::read_dir(&parent).ok().and_then(|d| {
            d.flatten()
                .find(|e| e.file_name().to_string_lossy().starts_with(&staged))
        });
        if let Some(s) = staging {
            if s.path().join("big").exists() {
                break;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended before it was killed"
        );
        assert!(started.elapsed().as_secs() < 60, "nothing was extracted");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    assert!(
        !bed.filesystems()[2].exists().await.unwrap(),
        "a half extract is in place"
    );
    let run = bed.last_run();
    assert!(bed.reroot(None, &["resume", &run]).status.success());
    assert_eq!(
        bed.contents().await,
        before,
        "the data came back byte-identical"
    );
    let left: Vec<String> = std::fs::read_dir(&parent)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "staging left: {left:?}");
}
