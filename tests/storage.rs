//! Integration tests of the storage module against the real ZFS (zfs-fuse, pool `rerootz`) and
//! the real btrfs filesystem mounted at /srv/reroot-btrfs, as set up by scripts/testbed.sh.
//! A missing pool or mount fails the tests; nothing is skipped. Every test works under its own
//! random names and removes them at the end, even when it fails.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{require_btrfs, require_zfs, BTRFS_MOUNT, ZFS_POOL as POOL};
use reroot::storage::{
    ensure_device_dir, rsync_template, set_owner, Ensured, Filesystem, FsKind, Owner, Removed,
    RollbackOutcome, SkipReason, SnapshotOutcome, StorageError,
};

const ALT_MOUNT_ROOT: &str = "/rerootz-alt";

fn unique() -> String {
    format!("rt-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Removes what a test made, when dropped (also while unwinding from a failed assertion).
struct Cleanup {
    zfs_roots: Vec<String>,
    btrfs_roots: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Cleanup {
    /// Destroys the dataset `root`, its children, snapshots and clones.
    fn zfs(root: &str) -> Cleanup {
        Cleanup {
            zfs_roots: vec![root.to_string()],
            btrfs_roots: Vec::new(),
            dirs: Vec::new(),
        }
    }

    /// Deletes every subvolume under the directory `root`, then `root`.
    fn btrfs(root: &Path) -> Cleanup {
        Cleanup {
            zfs_roots: Vec::new(),
            btrfs_roots: vec![root.to_path_buf()],
            dirs: Vec::new(),
        }
    }

    /// Also removes the directory `dir`.
    fn and_dir(mut self, dir: &Path) -> Cleanup {
        self.dirs.push(dir.to_path_buf());
        self
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for dataset in &self.zfs_roots {
            common::zfs_destroy_all(dataset);
        }
        for root in &self.btrfs_roots {
            delete_subvolumes_under(root);
            let _ = std::fs::remove_dir_all(root);
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn delete_subvolumes_under(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(m) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if m.is_dir() {
            delete_subvolumes_under(&path);
            if m.ino() == 256 {
                let _ = Command::new("btrfs")
                    .args(["subvolume", "delete"])
                    .arg(&path)
                    .output();
            }
        }
    }
}

fn zfs_fs(id: &str, dataset: &str) -> Filesystem {
    Filesystem {
        id: id.to_string(),
        kind: FsKind::Zfs {
            dataset: dataset.to_string(),
        },
        transient: false,
        zfs_properties: BTreeMap::new(),
    }
}

fn btrfs_fs(id: &str, path: &Path) -> Filesystem {
    Filesystem {
        id: id.to_string(),
        kind: FsKind::Btrfs {
            path: path.to_path_buf(),
        },
        transient: false,
        zfs_properties: BTreeMap::new(),
    }
}

fn dir_fs(id: &str, path: &Path) -> Filesystem {
    Filesystem {
        id: id.to_string(),
        kind: FsKind::Dir {
            path: path.to_path_buf(),
        },
        transient: false,
        zfs_properties: BTreeMap::new(),
    }
}

fn zfs_get(property: &str, dataset: &str) -> String {
    let out = Command::new("zfs")
        .args(["get", "-H", "-o", "value", property, dataset])
        .output()
        .expect("run zfs get");
    assert!(out.status.success(), "zfs get {property} {dataset} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()))
}

#[tokio::test]
async fn zfs_create_is_idempotent_and_never_wipes() {
    require_zfs();
    let root = format!("{POOL}/{}", unique());
    let _cleanup = Cleanup::zfs(&root);
    let mut fs = zfs_fs("data", &format!("{root}/app/data"));
    fs.zfs_properties
        .insert("atime".to_string(), "off".to_string());

    assert!(!fs.exists().await.unwrap());
    assert_eq!(fs.create().await.unwrap(), Ensured::Created);
    assert!(fs.exists().await.unwrap());
    assert_eq!(zfs_get("atime", &format!("{root}/app/data")), "off");

    let dir = fs.host_dir().await.unwrap();
    assert_eq!(dir, PathBuf::from(format!("/{root}/app/data")));
    write(&dir.join("keep.txt"), "live data");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();

    assert_eq!(fs.create().await.unwrap(), Ensured::AlreadyExisted);
    assert_eq!(read(&dir.join("keep.txt")), "live data");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o750, "create must not touch an existing dataset");
}

#[tokio::test]
async fn zfs_host_dir_is_the_real_mountpoint() {
    require_zfs();
    let name = unique();
    let root = format!("{POOL}/{name}");
    let alt = PathBuf::from(format!("{ALT_MOUNT_ROOT}/{name}"));
    let _cleanup = Cleanup::zfs(&root).and_dir(&alt);

    // A mountpoint given at creation.
    let mut fs = zfs_fs("data", &format!("{root}/data"));
    fs.zfs_properties.insert(
        "mountpoint".to_string(),
        alt.join("data").display().to_string(),
    );
    assert_eq!(fs.create().await.unwrap(), Ensured::Created);
    let dir = fs.host_dir().await.unwrap();
    assert_eq!(dir, alt.join("data"));
    write(&dir.join("f"), "x");
    assert!(
        !Path::new(&format!("/{root}/data/f")).exists(),
        "/<dataset> is not the dataset's directory"
    );
    assert_eq!(fs.create().await.unwrap(), Ensured::AlreadyExisted);
    assert_eq!(read(&dir.join("f")), "x");

    // A mountpoint changed afterwards with `zfs set`.
    let other = zfs_fs("other", &format!("{root}/other"));
    assert_eq!(other.create().await.unwrap(), Ensured::Created);
    assert_eq!(
        other.host_dir().await.unwrap(),
        PathBuf::from(format!("/{root}/other"))
    );
    let moved = alt.join("moved");
    let status = Command::new("zfs")
        .arg("set")
        .arg(format!("mountpoint={}", moved.display()))
        .arg(format!("{root}/other"))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(other.host_dir().await.unwrap(), moved);

    // No mountpoint at all: a clear error, not a guessed directory.
    let mut unmounted = zfs_fs("none", &format!("{root}/none"));
    unmounted
        .zfs_properties
        .insert("mountpoint".to_string(), "none".to_string());
    assert_eq!(unmounted.create().await.unwrap(), Ensured::Created);
    let err = unmounted.host_dir().await.unwrap_err();
    assert!(matches!(err, StorageError::NotMounted { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("{root}/none")), "{err}");

    // A missing dataset has no directory.
    let missing = zfs_fs("missing", &format!("{root}/missing"));
    let err = missing.host_dir().await.unwrap_err();
    assert!(matches!(err, StorageError::Missing { .. }), "{err:?}");
}

#[tokio::test]
async fn zfs_snapshot_clone_and_rollback() {
    require_zfs();
    let root = format!("{POOL}/{}", unique());
    let _cleanup = Cleanup::zfs(&root);
    let fs = zfs_fs("data", &format!("{root}/data"));
    fs.create().await.unwrap();
    let dir = fs.host_dir().await.unwrap();
    write(&dir.join("f"), "old bytes");

    assert_eq!(fs.snapshot("s1").await.unwrap(), SnapshotOutcome::Taken);
    assert_eq!(
        fs.snapshot("s1").await.unwrap(),
        SnapshotOutcome::AlreadyExisted
    );
    write(&dir.join("f"), "new bytes");
    assert!(fs.has_snapshot("s1").await.unwrap());
    assert!(!fs.has_snapshot("s2").await.unwrap());

    // zfs-fuse has no .zfs directory: read the snapshot through a clone of it.
    let view = zfs_fs("view", &format!("{root}/views/view"));
    assert_eq!(view.clone_from(&fs, "s1").await.unwrap(), Ensured::Created);
    let view_dir = view.host_dir().await.unwrap();
    assert_eq!(read(&view_dir.join("f")), "old bytes");
    write(&view_dir.join("g"), "clone data");
    assert_eq!(
        view.clone_from(&fs, "s1").await.unwrap(),
        Ensured::AlreadyExisted
    );
    assert_eq!(read(&view_dir.join("g")), "clone data");
    assert_eq!(read(&dir.join("f")), "new bytes");

    assert_eq!(fs.snapshot("s2").await.unwrap(), SnapshotOutcome::Taken);
    assert_eq!(fs.list_snapshots().await.unwrap(), vec!["s1", "s2"]);

    let outcome = fs.rollback("s1").await.unwrap();
    assert_eq!(outcome, RollbackOutcome::RolledBack { kept_as: None });
    assert_eq!(read(&dir.join("f")), "old bytes");
    // `zfs rollback -r` destroys the later snapshots.
    assert_eq!(fs.list_snapshots().await.unwrap(), vec!["s1"]);

    let err = fs.rollback("nope").await.unwrap_err();
    assert!(
        matches!(err, StorageError::SnapshotMissing { .. }),
        "{err:?}"
    );

    assert_eq!(view.destroy().await.unwrap(), Removed::Removed);
    assert_eq!(fs.delete_snapshot("s1").await.unwrap(), Removed::Removed);
    assert_eq!(
        fs.delete_snapshot("s1").await.unwrap(),
        Removed::AlreadyAbsent
    );
    assert!(fs.list_snapshots().await.unwrap().is_empty());
    // Deleting snapshots never touches the live dataset.
    assert_eq!(read(&dir.join("f")), "old bytes");

    assert_eq!(fs.destroy().await.unwrap(), Removed::Removed);
    assert!(!fs.exists().await.unwrap());
    assert_eq!(fs.destroy().await.unwrap(), Removed::AlreadyAbsent);
}

#[tokio::test]
async fn zfs_command_failure_names_argv_and_stderr() {
    require_zfs();
    let root = format!("{POOL}/{}", unique());
    let _cleanup = Cleanup::zfs(&root);
    let source = zfs_fs("data", &format!("{root}/source"));
    source.create().await.unwrap();
    let target = zfs_fs("data", &format!("{root}/target"));
    let err = target.clone_from(&source, "never-taken").await.unwrap_err();
    match &err {
        StorageError::CommandFailed { argv, code, stderr } => {
            assert_eq!(
                argv,
                &format!("zfs clone -p {root}/source@never-taken {root}/target")
            );
            assert_eq!(*code, Some(1));
            assert!(stderr.contains("does not exist"), "{stderr}");
        }
        other => panic!("expected CommandFailed, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("zfs clone -p"), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(!target.exists().await.unwrap());
}

#[tokio::test]
async fn zfs_missing_pool_is_a_clear_error() {
    require_zfs();
    let pool = format!("rerootnopool{}", &unique()[3..]);
    let fs = zfs_fs("data", &format!("{pool}/data"));
    for err in [
        fs.exists().await.unwrap_err(),
        fs.create().await.unwrap_err(),
        fs.destroy().await.unwrap_err(),
        fs.snapshot("s1").await.unwrap_err(),
    ] {
        assert!(
            matches!(&err, StorageError::PoolMissing { pool: p, .. } if *p == pool),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&format!("ZFS pool `{pool}`")) && message.contains("does not exist"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn zfs_transient_filesystems_are_not_snapshotted_and_not_cloned() {
    require_zfs();
    let root = format!("{POOL}/{}", unique());
    let _cleanup = Cleanup::zfs(&root);
    let source = zfs_fs("cache", &format!("{root}/source"));
    source.create().await.unwrap();
    write(&source.host_dir().await.unwrap().join("f"), "cached");
    source.snapshot("s1").await.unwrap();

    let mut cache = zfs_fs("cache", &format!("{root}/cache"));
    cache.transient = true;
    assert_eq!(
        cache.clone_from(&source, "s1").await.unwrap(),
        Ensured::Created
    );
    let dir = cache.host_dir().await.unwrap();
    assert!(
        !dir.join("f").exists(),
        "a transient filesystem is created empty, not cloned"
    );
    assert_eq!(
        cache.snapshot("s1").await.unwrap(),
        SnapshotOutcome::Skipped(SkipReason::Transient)
    );
    assert!(!cache.has_snapshot("s1").await.unwrap());
}

#[tokio::test]
async fn btrfs_create_snapshot_rollback_clone_destroy() {
    require_btrfs();
    let root = Path::new(BTRFS_MOUNT).join(unique());
    let _cleanup = Cleanup::btrfs(&root);
    let path = root.join("app/data");
    let fs = btrfs_fs("data", &path);

    assert!(!fs.exists().await.unwrap());
    assert_eq!(fs.create().await.unwrap(), Ensured::Created);
    assert!(fs.exists().await.unwrap());
    assert_eq!(fs.host_dir().await.unwrap(), path);
    write(&path.join("f"), "old bytes");
    assert_eq!(fs.create().await.unwrap(), Ensured::AlreadyExisted);
    assert_eq!(read(&path.join("f")), "old bytes");

    assert_eq!(fs.snapshot("s1").await.unwrap(), SnapshotOutcome::Taken);
    assert_eq!(
        fs.snapshot("s1").await.unwrap(),
        SnapshotOutcome::AlreadyExisted
    );
    write(&path.join("f"), "new bytes");
    assert!(fs.has_snapshot("s1").await.unwrap());
    assert!(!fs.has_snapshot("s2").await.unwrap());

    // The snapshot is a read-only sibling, outside the filesystem's own directory.
    let snap = root.join("app/data@s1");
    assert_eq!(read(&snap.join("f")), "old bytes");
    assert!(
        std::fs::write(snap.join("g"), "x").is_err(),
        "snapshots are read-only"
    );
    assert!(!path.join(".snapshots").exists());
    assert_eq!(fs.list_snapshots().await.unwrap(), vec!["s1"]);

    // A clone is a writable copy of the snapshot.
    let clone = btrfs_fs("data", &root.join("other/data"));
    assert_eq!(clone.clone_from(&fs, "s1").await.unwrap(), Ensured::Created);
    assert_eq!(read(&root.join("other/data/f")), "old bytes");
    write(&root.join("other/data/f"), "clone bytes");
    assert_eq!(
        clone.clone_from(&fs, "s1").await.unwrap(),
        Ensured::AlreadyExisted
    );
    assert_eq!(read(&root.join("other/data/f")), "clone bytes");
    let absent = btrfs_fs("data", &root.join("third/data"));
    let err = absent.clone_from(&fs, "missing").await.unwrap_err();
    assert!(
        matches!(err, StorageError::SnapshotMissing { .. }),
        "{err:?}"
    );

    // Rollback restores the old bytes and keeps the replaced state.
    let outcome = fs.rollback("s1").await.unwrap();
    let RollbackOutcome::RolledBack {
        kept_as: Some(kept),
    } = outcome
    else {
        panic!("btrfs rollback must keep the current state, got {outcome:?}");
    };
    assert!(kept.starts_with("pre-rollback-"), "{kept}");
    assert_eq!(read(&path.join("f")), "old bytes");
    let kept_path = root.join(format!("app/data@{kept}"));
    assert_eq!(read(&kept_path.join("f")), "new bytes");
    assert!(
        std::fs::write(kept_path.join("g"), "x").is_err(),
        "the kept state is read-only"
    );
    write(&path.join("after"), "writable again");
    let mut listed = fs.list_snapshots().await.unwrap();
    listed.sort();
    assert_eq!(listed, vec![kept.clone(), "s1".to_string()]);
    // The snapshot rolled back to is still there.
    assert_eq!(read(&snap.join("f")), "old bytes");

    // Deleting a snapshot leaves the live data alone.
    assert_eq!(fs.delete_snapshot(&kept).await.unwrap(), Removed::Removed);
    assert_eq!(
        fs.delete_snapshot(&kept).await.unwrap(),
        Removed::AlreadyAbsent
    );
    assert_eq!(read(&path.join("after")), "writable again");

    // Destroy removes the subvolume and its snapshots; again is fine.
    assert_eq!(fs.destroy().await.unwrap(), Removed::Removed);
    assert!(!path.exists() && !snap.exists());
    assert_eq!(fs.destroy().await.unwrap(), Removed::AlreadyAbsent);
    assert_eq!(read(&root.join("other/data/f")), "clone bytes");
}

#[tokio::test]
async fn btrfs_rollback_finishes_after_an_interruption() {
    require_btrfs();
    let root = Path::new(BTRFS_MOUNT).join(unique());
    let _cleanup = Cleanup::btrfs(&root);
    let path = root.join("data");
    let fs = btrfs_fs("data", &path);
    fs.create().await.unwrap();
    write(&path.join("f"), "old bytes");
    fs.snapshot("s1").await.unwrap();
    write(&path.join("f"), "new bytes");

    // Interrupted after the writable copy was made and the live subvolume renamed away, as a
    // crash between the two renames would leave it.
    let copy = root.join(".data@s1.rollback");
    let status = Command::new("btrfs")
        .args(["subvolume", "snapshot"])
        .arg(root.join("data@s1"))
        .arg(&copy)
        .output()
        .unwrap();
    assert!(status.status.success());
    let kept = root.join("data@pre-rollback-1");
    std::fs::rename(&path, &kept).unwrap();

    let outcome = fs.rollback("s1").await.unwrap();
    assert!(
        matches!(outcome, RollbackOutcome::RolledBack { .. }),
        "{outcome:?}"
    );
    assert_eq!(read(&path.join("f")), "old bytes");
    assert!(!copy.exists());
    assert_eq!(read(&kept.join("f")), "new bytes");
    write(&path.join("f"), "writable");

    // Rolling back again is a new rollback: the current state is kept once more.
    let RollbackOutcome::RolledBack {
        kept_as: Some(second),
    } = fs.rollback("s1").await.unwrap()
    else {
        panic!("expected a kept state");
    };
    assert_eq!(read(&path.join("f")), "old bytes");
    assert_eq!(
        read(&root.join(format!("data@{second}")).join("f")),
        "writable"
    );
    assert_eq!(fs.list_snapshots().await.unwrap().len(), 3);
    assert_eq!(fs.destroy().await.unwrap(), Removed::Removed);
    assert!(
        std::fs::read_dir(&root).unwrap().next().is_none(),
        "destroy leaves nothing"
    );
}

#[tokio::test]
async fn btrfs_refuses_a_plain_directory_in_place_of_a_subvolume() {
    require_btrfs();
    let root = Path::new(BTRFS_MOUNT).join(unique());
    let _cleanup = Cleanup::btrfs(&root);
    let path = root.join("data");
    std::fs::create_dir_all(&path).unwrap();
    write(&path.join("f"), "data");
    let fs = btrfs_fs("data", &path);
    let err = fs.create().await.unwrap_err();
    assert!(
        err.to_string().contains("is not a btrfs subvolume"),
        "{err}"
    );
    assert!(fs.destroy().await.is_err());
    assert_eq!(read(&path.join("f")), "data");
}

#[tokio::test]
async fn plain_directories_have_no_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a/b/data");
    let fs = dir_fs("data", &path);

    assert!(!fs.exists().await.unwrap());
    assert_eq!(fs.create().await.unwrap(), Ensured::Created);
    assert_eq!(fs.host_dir().await.unwrap(), path);
    write(&path.join("f"), "kept");
    assert_eq!(fs.create().await.unwrap(), Ensured::AlreadyExisted);
    assert_eq!(read(&path.join("f")), "kept");

    assert!(!fs.supports_snapshots());
    assert_eq!(
        fs.snapshot("s1").await.unwrap(),
        SnapshotOutcome::Skipped(SkipReason::PlainDirectory)
    );
    assert!(!fs.has_snapshot("s1").await.unwrap());
    assert!(fs.list_snapshots().await.unwrap().is_empty());
    let err = fs.rollback("s1").await.unwrap_err();
    assert!(matches!(err, StorageError::Unsupported { .. }), "{err:?}");
    let err = fs.clone_from(&fs.clone(), "s1").await.unwrap_err();
    assert!(
        err.to_string().contains("cannot clone a plain directory"),
        "{err}"
    );
    assert_eq!(read(&path.join("f")), "kept");

    assert_eq!(fs.destroy().await.unwrap(), Removed::Removed);
    assert!(!path.exists());
    assert_eq!(fs.destroy().await.unwrap(), Removed::AlreadyAbsent);
}

#[tokio::test]
async fn destroying_a_missing_filesystem_is_done() {
    require_zfs();
    require_btrfs();
    let name = unique();
    for fs in [
        zfs_fs("data", &format!("{POOL}/{name}/data")),
        btrfs_fs("data", &Path::new(BTRFS_MOUNT).join(&name).join("data")),
        dir_fs("data", &std::env::temp_dir().join(&name).join("data")),
    ] {
        assert_eq!(fs.destroy().await.unwrap(), Removed::AlreadyAbsent, "{fs}");
        assert_eq!(
            fs.delete_snapshot("s1").await.unwrap(),
            Removed::AlreadyAbsent,
            "{fs}"
        );
    }
}

#[tokio::test]
async fn device_dirs_are_chowned_only_when_created() {
    require_btrfs();
    let root = Path::new(BTRFS_MOUNT).join(unique());
    let _cleanup = Cleanup::btrfs(&root);
    let fs = btrfs_fs("data", &root.join("data"));
    assert_eq!(fs.create().await.unwrap(), Ensured::Created);
    let fs_dir = fs.host_dir().await.unwrap();
    let owner = Owner {
        uid: 100000,
        gid: 100000,
    };

    // A new filesystem's root is chowned explicitly by the caller.
    set_owner(&fs_dir, owner).await.unwrap();
    let m = std::fs::metadata(&fs_dir).unwrap();
    assert_eq!((m.uid(), m.gid()), (100000, 100000));

    // A new device directory is created with the owner.
    let dev = fs_dir.join("www/html");
    assert_eq!(
        ensure_device_dir(&dev, Some(owner)).await.unwrap(),
        Ensured::Created
    );
    let m = std::fs::metadata(&dev).unwrap();
    assert_eq!((m.uid(), m.gid()), (100000, 100000));
    assert!(
        !fs_dir.join("www/.html.reroot-new").exists(),
        "no staging directory left"
    );

    // A staging directory left by an interrupted call is reused.
    std::fs::create_dir(fs_dir.join(".logs.reroot-new")).unwrap();
    assert_eq!(
        ensure_device_dir(&fs_dir.join("logs"), Some(owner))
            .await
            .unwrap(),
        Ensured::Created
    );
    assert_eq!(
        std::fs::metadata(fs_dir.join("logs")).unwrap().uid(),
        100000
    );
    assert!(!fs_dir.join(".logs.reroot-new").exists());

    // An existing one keeps its owner and content.
    let existing = fs_dir.join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::os::unix::fs::chown(&existing, Some(101000), Some(101000)).unwrap();
    write(&existing.join("f"), "data");
    std::os::unix::fs::chown(existing.join("f"), Some(101000), Some(101000)).unwrap();
    assert_eq!(
        ensure_device_dir(&existing, Some(owner)).await.unwrap(),
        Ensured::AlreadyExisted
    );
    let m = std::fs::metadata(&existing).unwrap();
    assert_eq!((m.uid(), m.gid()), (101000, 101000));
    let m = std::fs::metadata(existing.join("f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (101000, 101000));
    assert_eq!(read(&existing.join("f")), "data");

    // No owner: created, owned by root.
    let plain = fs_dir.join("plain");
    assert_eq!(
        ensure_device_dir(&plain, None).await.unwrap(),
        Ensured::Created
    );
    assert_eq!(std::fs::metadata(&plain).unwrap().uid(), 0);

    // The filesystem root itself (device dir ".") exists: untouched.
    std::os::unix::fs::chown(&fs_dir, Some(0), Some(0)).unwrap();
    assert_eq!(
        ensure_device_dir(&fs_dir, Some(owner)).await.unwrap(),
        Ensured::AlreadyExisted
    );
    assert_eq!(std::fs::metadata(&fs_dir).unwrap().uid(), 0);

    // A file in the way is an error, and is left alone.
    let file = fs_dir.join("file");
    write(&file, "not a dir");
    assert!(ensure_device_dir(&file, Some(owner)).await.is_err());
    assert_eq!(read(&file), "not a dir");
}

#[tokio::test]
async fn rsync_template_copies_into_a_new_device_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let template = tmp.path().join("template/www");
    std::fs::create_dir_all(template.join("sub")).unwrap();
    write(&template.join("index.html"), "hello");
    write(&template.join("sub/script.sh"), "#!/bin/sh\n");
    std::fs::set_permissions(
        template.join("sub/script.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::os::unix::fs::chown(template.join("index.html"), Some(100033), Some(100033)).unwrap();

    let dir = tmp.path().join("instance/www");
    let owner = Owner {
        uid: 100000,
        gid: 100000,
    };
    assert_eq!(
        ensure_device_dir(&dir, Some(owner)).await.unwrap(),
        Ensured::Created
    );
    rsync_template(&template, &dir).await.unwrap();
    assert_eq!(read(&dir.join("index.html")), "hello");
    assert_eq!(read(&dir.join("sub/script.sh")), "#!/bin/sh\n");
    let mode = std::fs::metadata(dir.join("sub/script.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o750);
    assert_eq!(
        std::fs::metadata(dir.join("index.html")).unwrap().uid(),
        100033
    );
    // The device directory keeps the owner it was created with.
    let m = std::fs::metadata(&dir).unwrap();
    assert_eq!((m.uid(), m.gid()), (100000, 100000));
    // The contents, not the template directory itself, are copied.
    assert!(!dir.join("www").exists());

    // No --delete: files only in the target stay.
    write(&dir.join("local.txt"), "mine");
    rsync_template(&template, &dir).await.unwrap();
    assert_eq!(read(&dir.join("local.txt")), "mine");

    let err = rsync_template(&tmp.path().join("missing"), &dir)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("device template") && err.to_string().contains("missing"),
        "{err}"
    );
}
