//! Integration tests of the LXD client against the real daemon of the testbed (no mocks).
//! They fail when LXD is not running: run scripts/testbed.sh first.
//!
//! Every test uses unique names and an [`LxdCleanup`] guard, so nothing is left behind even
//! when an assertion fails. Force stops are used except where a clean stop is the subject.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{lxd_client, lxd_socket, unique_name, LxdCleanup, LXD_LOCK};
use reroot::lxd::{
    Client, ConnectOptions, Device, Error, ExecRequest, FileOptions, FileType, InstancePatch,
    NewInstance, NewVolume, OptionalExt, ProfilePut, Stop,
};

const POOL: &str = "default";

fn device(pairs: &[(&str, &str)]) -> Device {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Creates a stopped container from the `reroot-old` image.
async fn new_container(lxd: &Client, cleanup: &LxdCleanup, test: &str) -> String {
    let name = cleanup.instance(&unique_name(test));
    lxd.create_instance(&NewInstance::from_image_alias(&name, "reroot-old"))
        .await
        .expect("create from image reroot-old");
    name
}

#[tokio::test]
async fn server_info_pools_and_image_aliases() {
    let lxd = lxd_client().await;
    assert_eq!(lxd.server_kind(), common::daemon().kind());
    assert!(!lxd.server_version().is_empty());
    assert!(lxd.has_extension("etag"));
    assert!(lxd.has_extension("container_exec_recording"));
    assert!(!lxd.has_extension("no_such_extension_xyz"));
    assert_eq!(lxd.socket(), lxd_socket().as_path());

    let fresh = lxd.fetch_server_info().await.unwrap();
    assert_eq!(fresh.environment.server_version, lxd.server_version());

    let pools = lxd.list_storage_pools().await.unwrap();
    let pool = pools.iter().find(|p| p.name == POOL).expect("pool default");
    assert_eq!(pool.driver, "btrfs");

    let aliases = lxd.list_image_aliases().await.unwrap();
    for wanted in ["reroot-old", "reroot-new"] {
        assert!(
            aliases.iter().any(|a| a.name == wanted),
            "{wanted} in {aliases:?}"
        );
    }
    let old = lxd.get_image_alias("reroot-old").await.unwrap();
    assert_eq!(old.target.len(), 64, "fingerprint: {old:?}");
    let missing = lxd.get_image_alias("rt-no-such-alias").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");
    assert!(lxd
        .get_image_alias("rt-no-such-alias")
        .await
        .optional()
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn missing_instance_is_not_found_and_delete_is_done() {
    let _serial = LXD_LOCK.lock().await;
    let lxd = lxd_client().await;
    let name = unique_name("missing");
    let err = lxd.get_instance(&name).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("GET /1.0/instances/{name}")) && text.contains("not found"),
        "{text}"
    );
    assert_eq!(err.request().method, "GET");
    assert!(!lxd.instance_exists(&name).await.unwrap());
    assert!(lxd.instance_state(&name).await.unwrap_err().is_not_found());
    assert!(!lxd.delete_instance(&name).await.unwrap(), "missing = done");
    assert!(!lxd.delete_profile(&name).await.unwrap());
    assert!(!lxd.delete_volume(POOL, &name).await.unwrap());

    // Projects: the parameter travels with every request.
    let other = lxd.with_project("rt-no-such-project");
    assert_eq!(other.project(), Some("rt-no-such-project"));
    assert!(other.list_instances().await.unwrap().is_empty());
    assert!(lxd.project().is_none());
}

#[tokio::test]
async fn unreachable_socket_is_a_transport_error_naming_the_path() {
    let opts = |socket: PathBuf| ConnectOptions {
        socket: Some(socket),
        request_timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    };
    let missing = PathBuf::from("/nonexistent/rt-dir/unix.socket");
    let err = Client::connect(opts(missing.clone())).await.unwrap_err();
    assert!(err.is_transport(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("/nonexistent/rt-dir/unix.socket"), "{text}");
    assert!(
        text.contains("does not exist") && text.contains("running"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let not_socket = dir.path().join("unix.socket");
    std::fs::write(&not_socket, b"not a socket").unwrap();
    let err = Client::connect(opts(not_socket.clone())).await.unwrap_err();
    assert!(err.is_transport(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&not_socket.display().to_string()), "{text}");
    assert!(text.contains("not a unix socket"), "{text}");
}

#[tokio::test]
async fn instance_lifecycle_exec_and_idempotent_state_changes() {
    let _serial = LXD_LOCK.lock().await;
    let lxd = lxd_client().await;
    let cleanup = LxdCleanup::new();
    let name = cleanup.instance(&unique_name("life"));
    let new = NewInstance::from_image_alias(&name, "reroot-old")
        .config_key("user.rt-role", "worker")
        .description("rt lifecycle");
    lxd.create_instance(&new).await.unwrap();

    let again = lxd.create_instance(&new).await.unwrap_err();
    assert!(again.is_conflict(), "{again:?}");

    let listed = lxd.list_instances().await.unwrap();
    let inst = listed.iter().find(|i| i.name == name).expect("listed");
    assert_eq!(inst.status, "Stopped");
    assert_eq!(inst.instance_type, "container");
    assert_eq!(inst.config["user.rt-role"], "worker");
    assert_eq!(inst.description, "rt lifecycle");
    assert_eq!(inst.profiles, vec!["default".to_string()]);
    assert!(inst.expanded_devices.contains_key("root"));
    assert!(!inst.created_at.is_empty());
    assert!(lxd.list_instance_names().await.unwrap().contains(&name));

    assert!(lxd.start_instance(&name).await.unwrap(), "started");
    assert!(
        !lxd.start_instance(&name).await.unwrap(),
        "already running = done"
    );
    let state = lxd.instance_state(&name).await.unwrap();
    assert!(state.is_running() && state.pid > 0, "{state:?}");

    // A running instance cannot be deleted: InUse.
    let busy = lxd.delete_instance(&name).await.unwrap_err();
    assert!(busy.is_in_use(), "{busy:?}");

    let out = lxd
        .exec(
            &name,
            &ExecRequest::shell("echo hello; printf 'to err\\n' >&2; exit 3"),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout_text(), "hello\n");
    assert_eq!(out.stderr_text(), "to err\n");
    assert!(!out.success());

    let out = lxd
        .exec(
            &name,
            &ExecRequest::shell("echo \"$RT_VAR $(id -u):$(id -g) $(pwd)\"")
                .env("RT_VAR", "from-env")
                .user(1000, 1000)
                .cwd("/tmp"),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0, "stderr: {}", out.stderr_text());
    assert_eq!(out.stdout_text(), "from-env 1000:1000 /tmp\n");

    let out = lxd
        .exec(&name, &ExecRequest::new(&["rt-no-such-command"]))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 127);

    // An operation that outlasts one 5 s slice of the client's wait: LXD answers the slice
    // with the operation still running, Incus with "context deadline exceeded".
    let started = Instant::now();
    let out = lxd
        .exec(&name, &ExecRequest::shell("sleep 6; echo slept"))
        .await
        .expect("an exec longer than one wait slice");
    assert_eq!(out.stdout_text(), "slept\n");
    assert!(started.elapsed() >= Duration::from_secs(6));

    let content = lxd.get_file(&name, "/etc/template-version").await.unwrap();
    assert_eq!(content.data, b"old\n".to_vec());

    assert!(
        lxd.stop_instance(&name, Stop::Force).await.unwrap(),
        "stopped"
    );
    assert!(
        !lxd.stop_instance(&name, Stop::Force).await.unwrap(),
        "already stopped = done"
    );
    assert!(lxd.instance_state(&name).await.unwrap().is_stopped());

    let exec_stopped = lxd
        .exec(&name, &ExecRequest::shell("true"))
        .await
        .unwrap_err();
    assert!(exec_stopped.is_bad_request(), "{exec_stopped:?}");

    let renamed = cleanup.instance(&unique_name("renamed"));
    lxd.rename_instance(&name, &renamed).await.unwrap();
    assert!(!lxd.instance_exists(&name).await.unwrap());
    assert!(lxd.instance_exists(&renamed).await.unwrap());

    assert!(lxd.delete_instance(&renamed).await.unwrap());
    assert!(!lxd.delete_instance(&renamed).await.unwrap());
}

#[tokio::test]
async fn clean_stop_is_bounded_and_waits_for_init() {
    let _serial = LXD_LOCK.lock().await;
    let lxd = lxd_client().await;
    let cleanup = LxdCleanup::new();
    let name = new_container(&lxd, &cleanup, "clean").await;
    lxd.start_instance(&name).await.unwrap();
    let timeout = Duration::from_secs(30);
    let t = Instant::now();
    let stopped = lxd
        .stop_instance(&name, Stop::Clean { timeout })
        .await
        .unwrap();
    assert!(stopped);
    // busybox init takes ~2.6 s; the wait is bounded by the stop timeout plus a margin.
    assert!(t.elapsed() < timeout + Duration::from_secs(10));
    assert!(lxd.instance_state(&name).await.unwrap().is_stopped());
    assert!(!lxd
        .stop_instance(
            &name,
            Stop::Clean {
                timeout: Duration::from_secs(5)
            }
        )
        .await
        .unwrap());
}

#[tokio::test]
async fn copy_from_template_snapshot() {
    let _serial = LXD_LOCK.lock().await;
    let lxd = lxd_client().await;
    let cleanup = LxdCleanup::new();
    let tpl = cleanup.instance(&unique_name("tpl"));
    lxd.create_instance(&NewInstance::from_image_alias(&tpl, "reroot-new"))
        .await
        .unwrap();
    lxd.create_snapshot(&tpl, "base", None).await.unwrap();

    let copy = cleanup.instance(&unique_name("copy"));
    let new = NewInstance::copy_of_snapshot(&copy, &tpl, "base")
        .profiles(vec!["default".into()])
        .config_key("user.rt-copy", "yes")
        .device(
            "tmpfs",
            device(&[
                ("type", "disk"),
                ("source", "/tmp"),
                ("path", "/mnt/host-tmp"),
            ]),
        );
    lxd.create_instance(&new).await.unwrap();

    let got = lxd.get_instance(&copy).await.unwrap();
    assert_eq!(got.value.status, "Stopped", "a copy is created stopped");
    assert_eq!(got.value.config["user.rt-copy"], "yes");
    assert_eq!(got.value.devices["tmpfs"]["path"], "/mnt/host-tmp");
    assert!(got.etag.is_some());
    // Only the instance was copied, not the template's snapshots.
    assert!(lxd.list_snapshots(&copy).await.unwrap().is_empty());
    let version = lxd.get_file(&copy, "/etc/template-version").await.unwrap();
    assert_eq!(version.data, b"new\n".to_vec());

    let missing = lxd
        .create_instance(&NewInstance::copy_of_snapshot(
            &unique_name("nocopy"),
            &tpl,
            "nope",
        ))
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");
}

#[tokio::test]
async fn snapshots_create_list_restore_rename_delete() {
    let _serial = LXD_LOCK.lock().await;
    let lxd = lxd_client().await;
    let cleanup = LxdCleanup::new();
    let name = new_container(&lxd, &cleanup, "snap").await;

    lxd.create_snapshot(&name, "s1", Some("2099-01-01T00:00:00Z"))
        .await
        .unwrap();
    lxd.create_snapshot(&name, "s2", None).await.unwrap();
    let dup = lxd.create_snapshot(&name, "s1", None).await.unwrap_err();
    assert!(dup.is_conflict(), "{dup:?}");

    let snaps = lxd.list_snapshots(&name).await.unwrap();
    let names: Vec<&str> = snaps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["s1", "s2"]);
    assert!(
        snaps[0].expires_at.starts_with("2099-01-01"),
        "{:?}",
        snaps[0]
    );
    let s1 = lxd.get_snapshot(&name, "s1").await.unwrap();
    assert_eq!(s1.value.name, "s1");

    // Change a file, restore, and the old content is back.
    lxd.push_file(
        &name,
        "/etc/template-version",
        "changed\n",
        &FileOptions::new(),
    )
    .await
    .unwrap();
    lxd.restore_snapshot(&name, "s1").await.unwrap();
    let back = lxd.get_file(&name, "/etc/template-version").await.unwrap();
    assert_eq!(back.data, b"old\n".to_vec());

    lxd.rename_snapshot(&name, "s2", "s2b").await.unwrap();
    assert!(lxd.delete_snapshot(&name, "s2b").await.unwrap());
    assert!(
        !lxd.delete_snapshot(&name, "s2b").await.unwrap(),
        "missing = done"
    );
    assert!(lxd.delete_snapshot(&name, "s1").await.unwrap());
    assert!(lxd.list_snapshots(&name).await.unwrap().is_empty());
}

#[tokio::test]
async fn stale_etag_is_refused_and_put_removes_a_device() {
    let _serial = LXD_LOCK.lock().await;
    let lxd = lxd_client().await;
    let cleanup = LxdCleanup::new();
    let name = new_container(&lxd, &cleanup, "etag").await;

    let first = lxd.get_instance(&name).await.unwrap();
    let old_etag = first.etag.clone().expect("instances have an ETag");
    let mut devices = BTreeMap::new();
    devices.insert(
        "data".to_string(),
        device(&[("type", "disk"), ("source", "/tmp"), ("path", "/mnt/data")]),
    );
    lxd.patch_instance(
        &name,
        &InstancePatch {
            devices: Some(devices),
            ..Default::default()
        },
        Some(&old_etag),
    )
    .await
    .unwrap();

    // The PATCH changed the instance: the ETag read before is stale now.
    let stale = lxd
        .put_instance(&name, &first.value.to_put(), Some(&old_etag))
        .await
        .unwrap_err();
    assert!(stale.is_precondition_failed(), "{stale:?}");
    assert!(stale
        .to_string()
        .contains(&format!("PUT /1.0/instances/{name}")));

    // GET, modify devices, PUT with the fresh ETag.
    let current = lxd.get_instance(&name).await.unwrap();
    assert!(current.value.devices.contains_key("data"));
    let mut put = current.value.to_put();
    put.devices.remove("data");
    lxd.put_instance(&name, &put, current.etag.as_deref())
        .await
        .unwrap();
    assert!(!lxd
        .get_instance(&name)
        .await
        .unwrap()
        .value
        .devices
        .contains_key("data"));
}

#[tokio::test]
async fn profiles_create_update_delete() {
    let _serial = LXD_LOCK.lock().await;
    let lxd = lxd_client().await;
    let cleanup = LxdCleanup::new();
    let prof = cleanup.profile(&unique_name("prof"));
    let mut def = ProfilePut {
        description: "rt profile".into(),
        ..Default::default()
    };
    def.config.insert("user.rt".into(), "1".into());
    lxd.create_profile(&prof, &def).await.unwrap();
    let dup = lxd.create_profile(&prof, &def).await.unwrap_err();
    assert!(dup.is_conflict(), "{dup:?}");

    let got = lxd.get_profile(&prof).await.unwrap();
    assert_eq!(got.value.description, "rt profile");
    assert_eq!(got.value.config["user.rt"], "1");
    let etag = got.etag.clone().expect("profiles have an ETag");

    lxd.patch_profile(
        &prof,
        &serde_json::json!({"config": {"user.rt2": "2"}}),
        Some(&etag),
    )
    .await
    .unwrap();
    let stale = lxd
        .put_profile(&prof, &got.value.to_put(), Some(&etag))
        .await
        .unwrap_err();
    assert!(stale.is_precondition_failed(), "{stale:?}");
    let fresh = lxd.get_profile(&prof).await.unwrap();
    assert_eq!(fresh.value.config["user.rt2"], "2");
    let mut put = fresh.value.to_put();
    put.config.remove("user.rt");
    lxd.put_profile(&prof, &put, fresh.etag.as_deref())
        .await
        .unwrap();
    let after = lxd.get_profile(&prof).await.unwrap().value;
    assert!(!after.config.contains_key("user.rt"));
    assert!(lxd
        .list_profiles()
        .await
        .unwrap()
        .iter()
        .any(|p| p.name == prof));

    // In use by an instance: refused with InUse.
    let inst = cleanup.instance(&unique_name("profuser"));
    lxd.create_instance(
        &NewInstance::from_image_alias(&inst, "reroot-old")
            .profiles(vec!["default".into(), prof.clone()]),
    )
    .await
    .unwrap();
    let in_use = lxd.delete_profile(&prof).await.unwrap_err();
    assert!(in_use.is_in_use(), "{in_use:?}");
    assert!(lxd.delete_instance(&inst).await.unwrap());

    let renamed = cleanup.profile(&unique_name("prof2"));
    lxd.rename_profile(&prof, &renamed).await.unwrap();
    assert!(lxd.get_profile(&prof).await.unwrap_err().is_not_found());
    assert!(lxd.delete_profile(&renamed).await.unwrap());
    assert!(!lxd.delete_profile(&renamed).await.unwrap());
}

#[tokio::test]
async fn files_push_read_mkdir_symlink_delete() {
    let _serial = LXD_LOCK.lock().await;
    let lxd = lxd_client().await;
    let cleanup = LxdCleanup::new();
    let name = new_container(&lxd, &cleanup, "files").await;

    // Binary bytes, NUL, CR/LF, '&' and '=': a form-encoded body would lose or mangle them.
    let mut content: Vec<u8> = b"line one\nkey=value&x=1\r\n".to_vec();
    content.extend((0u8..=255).rev());
    content.extend(b"\n\0end\n");
    let opts = FileOptions::new().owner(1000, 1001).mode(0o640);
    lxd.mkdir_p(&name, "/srv/rt/a/b/c", &FileOptions::new().mode(0o750))
        .await
        .unwrap();
    lxd.mkdir_p(&name, "/srv/rt/a/b/c", &FileOptions::new())
        .await
        .expect("existing directory is fine");
    let dir = lxd.get_file(&name, "/srv/rt/a/b").await.unwrap();
    assert_eq!(dir.file_type, FileType::Directory);
    assert_eq!(dir.entries, vec!["c".to_string()]);
    assert_eq!(dir.mode, 0o750);

    let path = "/srv/rt/a/b/c/data.bin";
    lxd.push_file(&name, path, content.clone(), &opts)
        .await
        .unwrap();
    let got = lxd.get_file(&name, path).await.unwrap();
    assert_eq!(got.data, content, "byte-for-byte");
    assert_eq!((got.uid, got.gid, got.mode), (1000, 1001, 0o640));
    assert_eq!(got.file_type, FileType::File);

    lxd.push_file(&name, path, "tail\n", &FileOptions::new().append())
        .await
        .unwrap();
    let appended = lxd.get_file(&name, path).await.unwrap();
    assert_eq!(appended.data.len(), content.len() + 5);
    assert!(appended.data.ends_with(b"tail\n"));

    lxd.symlink(&name, "/srv/rt/link", "a/b/c/data.bin", &FileOptions::new())
        .await
        .unwrap();
    assert_eq!(
        lxd.file_type(&name, "/srv/rt/link").await.unwrap(),
        Some(FileType::Symlink)
    );

    let no_parent = lxd
        .push_file(&name, "/srv/rt/missing/x", "x", &FileOptions::new())
        .await
        .unwrap_err();
    assert!(no_parent.is_not_found(), "{no_parent:?}");
    let file_in_way = lxd
        .mkdir_p(&name, "/srv/rt/a/b/c/data.bin/sub", &FileOptions::new())
        .await
        .unwrap_err();
    assert!(
        file_in_way.to_string().contains("not a directory"),
        "{file_in_way}"
    );

    assert!(lxd.delete_file(&name, path).await.unwrap());
    assert!(!lxd.delete_file(&name, path).await.unwrap());
    assert_eq!(lxd.file_type(&name, path).await.unwrap(), None);
    assert!(lxd.get_file(&name, path).await.unwrap_err().is_not_found());
}

/// LXD 5.0 can lose the socket of an instance's file helper (canonical/lxd#18403); every file
/// request then fails with "forkfile.sock: no such file or directory" and starts a helper that
/// makes the next one fail too. The client rides that out instead of failing a rebuild (seen
/// in CI during the random-SIGKILL crash test). Removing the socket while the helper runs
/// recreates the condition.
#[tokio::test]
async fn file_requests_ride_out_a_lost_file_helper() {
    let _serial = LXD_LOCK.lock().await;
    let lxd = lxd_client().await;
    let cleanup = LxdCleanup::new();
    let name = new_container(&lxd, &cleanup, "helper").await;
    lxd.push_file(&name, "/tmp/first", "1\n", &FileOptions::new())
        .await
        .unwrap();
    let socket = common::instance_runtime_dir(&name).join("forkfile.sock");
    assert!(
        socket.exists(),
        "the push left LXD's file helper listening on {}",
        socket.display()
    );
    std::fs::remove_file(&socket).unwrap();

    // mkdir_p starts with a HEAD (no message in a HEAD answer), then creates the directories.
    let started = Instant::now();
    lxd.mkdir_p(&name, "/srv/helper/a", &FileOptions::new().mode(0o700))
        .await
        .expect("mkdir -p after LXD lost the file helper");
    lxd.push_file(&name, "/srv/helper/a/f", "after\n", &FileOptions::new())
        .await
        .expect("push after LXD lost the file helper");
    let waited = started.elapsed();
    let dir = lxd.get_file(&name, "/srv/helper/a").await.unwrap();
    assert_eq!((dir.file_type, dir.mode), (FileType::Directory, 0o700));
    assert_eq!(
        lxd.get_file(&name, "/srv/helper/a/f").await.unwrap().data,
        b"after\n"
    );
    // The lost helper was really met: LXD held the first request until the old helper
    // exited (~15 s), and the client waited out the helper that request started.
    assert!(
        waited >= Duration::from_secs(17),
        "the requests took {waited:?}: the lost-helper path was not exercised"
    );
}

#[tokio::test]
async fn custom_volumes_create_copy_snapshot_delete() {
    let _serial = LXD_LOCK.lock().await;
    let lxd = lxd_client().await;
    let cleanup = LxdCleanup::new();
    let vol = cleanup.volume(POOL, &unique_name("vol"));
    lxd.create_volume(
        POOL,
        &NewVolume::filesystem(&vol).config_key("size", "64MiB"),
    )
    .await
    .unwrap();
    let dup = lxd
        .create_volume(POOL, &NewVolume::filesystem(&vol))
        .await
        .unwrap_err();
    assert!(dup.is_conflict(), "{dup:?}");
    let got = lxd.get_volume(POOL, &vol).await.unwrap();
    assert_eq!(got.value.content_type, "filesystem");
    assert!(got.etag.is_some());

    lxd.snapshot_volume(POOL, &vol, "snap0").await.unwrap();
    assert_eq!(
        lxd.list_volume_snapshots(POOL, &vol).await.unwrap(),
        vec!["snap0".to_string()]
    );
    let listed = lxd.list_volumes(POOL).await.unwrap();
    assert!(listed.iter().any(|v| v.name == vol));
    assert!(
        listed.iter().all(|v| !v.name.contains('/')),
        "snapshot entries are filtered out: {listed:?}"
    );

    let copy = cleanup.volume(POOL, &unique_name("volcopy"));
    lxd.copy_volume(POOL, &copy, POOL, &vol, false)
        .await
        .unwrap();
    assert_eq!(
        lxd.list_volume_snapshots(POOL, &copy).await.unwrap(),
        vec!["snap0".to_string()],
        "snapshots copied unless volume_only"
    );
    let from_snap = cleanup.volume(POOL, &unique_name("volsnap"));
    lxd.copy_volume(POOL, &from_snap, POOL, &format!("{vol}/snap0"), true)
        .await
        .unwrap();
    assert!(lxd
        .list_volume_snapshots(POOL, &from_snap)
        .await
        .unwrap()
        .is_empty());

    assert!(lxd
        .delete_volume_snapshot(POOL, &vol, "snap0")
        .await
        .unwrap());
    assert!(!lxd
        .delete_volume_snapshot(POOL, &vol, "snap0")
        .await
        .unwrap());
    for v in [&vol, &copy, &from_snap] {
        assert!(lxd.delete_volume(POOL, v).await.unwrap(), "{v}");
        assert!(!lxd.delete_volume(POOL, v).await.unwrap(), "{v}");
    }
    let names: Vec<String> = lxd
        .list_volumes(POOL)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert!(!names.contains(&vol) && !names.contains(&copy));
}

#[tokio::test]
async fn many_tasks_share_one_client() {
    let lxd = lxd_client().await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = lxd.clone();
        tasks.push(tokio::spawn(async move { c.list_storage_pools().await }));
    }
    for t in tasks {
        let pools = t.await.unwrap().unwrap();
        assert!(pools.iter().any(|p| p.name == POOL));
    }
    // The error type is Send + Sync + 'static, so it crosses tasks and boxes.
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Error>();
    assert_send_sync::<Client>();
}

/// A stale ETag met inside a read-modify-write is read again and the change applied again:
/// `update_instance` is asked twice, the first PATCH (with the ETag read before another client
/// changed the instance) is refused by LXD, the second goes through, and both changes are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_instance_rides_out_a_stale_etag() {
    let lxd = lxd_client().await;
    let cleanup = LxdCleanup::new();
    let name = new_container(&lxd, &cleanup, "etag-retry").await;
    let other = lxd_client().await;
    let mut calls = 0;
    let sent = lxd
        .update_instance(&name, |now| {
            calls += 1;
            if calls == 1 {
                // Another writer changes the instance between our read and our write.
                let patch = InstancePatch {
                    config: Some(BTreeMap::from([("user.other".into(), "1".into())])),
                    ..Default::default()
                };
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current()
                        .block_on(other.patch_instance(&name, &patch, None))
                })
                .expect("the concurrent change");
            }
            let mut config = now.config.clone();
            config.insert("user.ours".into(), "2".into());
            Some(InstancePatch {
                config: Some(config),
                ..Default::default()
            })
        })
        .await
        .expect("update_instance");
    assert!(sent);
    assert_eq!(calls, 2, "the stale ETag must make it read and ask again");
    let config = lxd.get_instance(&name).await.unwrap().value.config;
    assert_eq!(config.get("user.ours").map(String::as_str), Some("2"));
    assert_eq!(config.get("user.other").map(String::as_str), Some("1"));

    // Nothing to change: nothing is sent.
    let sent = lxd.update_instance(&name, |_| None).await.unwrap();
    assert!(!sent);
}

/// A unix-socket proxy in front of the real LXD socket that passes every request through, but
/// swallows LXD's answer to the first request whose head contains `cut`, closing the
/// connection instead: the daemon did the work, the client saw a failure.
async fn answer_losing_proxy(dir: &std::path::Path, cut: &'static str) -> PathBuf {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let path = dir.join("proxy.socket");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind the proxy socket");
    let cut_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let cut_done = cut_done.clone();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::UnixStream::connect(lxd_socket()).await else {
                    return;
                };
                let mut head = vec![0u8; 64 * 1024];
                let Ok(n) = client.read(&mut head).await else {
                    return;
                };
                let text = String::from_utf8_lossy(&head[..n]).to_string();
                if server.write_all(&head[..n]).await.is_err() {
                    return;
                }
                let swallow =
                    text.contains(cut) && !cut_done.swap(true, std::sync::atomic::Ordering::SeqCst);
                if swallow {
                    // Read the daemon's whole answer (the operation has ended by then), send
                    // none. The whole answer, not its head: Incus 6.0 sends the head of a
                    // `/wait` answer at once and its chunked body only when the operation
                    // ends; LXD 5.0 sends both together, with a Content-Length.
                    let mut answer = Vec::new();
                    let mut sink = vec![0u8; 64 * 1024];
                    let _ = tokio::time::timeout(Duration::from_secs(30), async {
                        while let Ok(n) = server.read(&mut sink).await {
                            if n == 0 {
                                break;
                            }
                            answer.extend_from_slice(&sink[..n]);
                            if http_answer_complete(&answer) {
                                break;
                            }
                        }
                    })
                    .await;
                    return; // both streams are dropped: the client's connection is cut
                }
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let _ = tokio::join!(
                    tokio::io::copy(&mut cr, &mut sw),
                    tokio::io::copy(&mut sr, &mut cw)
                );
            });
        }
    });
    path
}

/// True once `answer` holds a whole HTTP answer: its head, then the Content-Length bytes of
/// its body, or its chunked body up to the last (empty) chunk.
fn http_answer_complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let body = &answer[end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    body.len() >= length
}

/// "Failed but done": LXD renames the instance, but its answer never reaches the client (the
/// connection is cut). The client looks at the live state and reports the rename as done; a
/// rename that really did not happen still fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_whose_answer_is_lost_is_judged_by_the_live_state() {
    let lxd = lxd_client().await;
    let cleanup = LxdCleanup::new();
    let name = new_container(&lxd, &cleanup, "lost-answer").await;
    let renamed = cleanup.instance(&unique_name("lost-answer-to"));
    let dir = tempfile::tempdir().unwrap();
    // The rename is asynchronous: the client waits on its operation, and that answer is lost.
    let socket = answer_losing_proxy(dir.path(), "/wait").await;
    let through_proxy = Client::connect(ConnectOptions {
        socket: Some(socket),
        ..ConnectOptions::default()
    })
    .await
    .expect("connect through the proxy");
    through_proxy
        .rename_instance(&name, &renamed)
        .await
        .expect("the rename happened: the state says so, whatever the connection did");
    assert!(!lxd.instance_exists(&name).await.unwrap());
    assert!(lxd.instance_exists(&renamed).await.unwrap());

    // Control: a rename that cannot happen (the source does not exist) is still an error.
    let missing = unique_name("lost-answer-missing");
    let err = through_proxy
        .rename_instance(&missing, &unique_name("lost-answer-nowhere"))
        .await
        .expect_err("renaming a missing instance must fail");
    assert!(err.is_not_found(), "{err:?}");
}
