//! `reroot profile list|diff|export|import` on the real daemon: no drift right after a
//! launch; drift made by hand through the client (a profile detached, an extra one attached, a
//! device of the device profile changed, a named profile missing) reported by `diff` with its
//! exit status; export then import under a fresh name; import leaving an identical profile
//! alone, refusing a differing one (nothing changed) unless --replace, and refusing bad YAML.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use reroot::lxd::{Client, InstancePatch, NewInstance, ProfilePut};

/// A template, a config directory and a journal under one prefix; everything of that prefix
/// removed when dropped.
struct Bed {
    prefix: String,
    dir: tempfile::TempDir,
    lxd: Client,
}

impl Bed {
    async fn new() -> Bed {
        common::require_zfs();
        let lxd = common::lxd_client().await;
        let bed = Bed {
            prefix: common::unique_name("pf"),
            dir: tempfile::tempdir().expect("tempdir"),
            lxd,
        };
        let tpl = bed.name("tpl");
        bed.lxd
            .create_instance(&NewInstance::from_image_alias(&tpl, "reroot-old"))
            .await
            .expect("create template");
        bed.lxd
            .create_snapshot(&tpl, "base", None)
            .await
            .expect("snapshot template");
        bed
    }

    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    /// The instance's config with these profiles: one ZFS filesystem with a device on it, the
    /// devices in the instance's device profile.
    fn config(&self, profiles: &str) -> PathBuf {
        self.config_with(profiles, "device-placement: profile\n")
    }

    /// [`Bed::config`] with `extra` (keys, one a line) instead of the device placement.
    fn config_with(&self, profiles: &str, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{}.yaml", self.name("web")));
        let text = format!(
            "#lxdops\nostype: busybox\norigin: {tpl}/base\nprofiles: {profiles}\n\
             {extra}device-owner: 100000:100000\nstop-timeout: 0\nwait-ready: 0\n\
             filesystems:\n  data:\n    pattern: rerootz/{p}/(instance)\n\
             devices:\n  www:\n    path: /var/www\n    filesystem: data\n",
            tpl = self.name("tpl"),
            p = self.prefix,
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn reroot(&self, args: &[&str]) -> Output {
        self.reroot_with(None, args)
    }

    /// reroot with `REROOT_FAULT` set to `fault` (the process aborted at that point).
    fn reroot_with(&self, fault: Option<&str>, args: &[&str]) -> Output {
        common::reroot_in(&self.dir.path().join("journal"), fault, args)
    }

    /// The id of the newest run.
    fn last_run(&self) -> String {
        let out = self.reroot(&["history", "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history json");
        doc["runs"][0]["id"].as_str().expect("run id").to_string()
    }

    fn diff_json(&self, config: &Path) -> (i32, serde_json::Value) {
        let out = self.reroot(&["--json", "profile", "diff", config.to_str().unwrap()]);
        let doc = serde_json::from_slice(&out.stdout).expect("diff json");
        (out.status.code().expect("exit code"), doc)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let worker = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let Ok(client) = Client::connect(common::lxd_options()).await else {
                    return eprintln!("cleanup: cannot connect");
                };
                if let Ok(names) = client.list_instance_names().await {
                    for n in names.iter().filter(|n| n.starts_with(&prefix)) {
                        if let Err(e) = common::remove_instance(&client, n).await {
                            eprintln!("cleanup: {n}: {e}");
                        }
                    }
                }
                if let Ok(profiles) = client.list_profiles().await {
                    for p in profiles.iter().filter(|p| p.name.starts_with(&prefix)) {
                        let _ = client.delete_profile(&p.name).await;
                    }
                }
            });
            common::zfs_destroy_all(&format!("rerootz/{prefix}"));
        });
        let _ = worker.join();
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

#[tokio::test]
async fn diff_sees_drift_made_by_hand() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let extra = bed.name("extra");
    let named = bed.name("named");
    for p in [&extra, &named] {
        bed.lxd
            .create_profile(p, &ProfilePut::default())
            .await
            .expect("create profile");
    }
    let web = bed.name("web");
    let device_profile = format!("{web}.reroot");
    let config = bed.config(&format!("[default, {named}]"));
    let cfg = config.to_str().unwrap();
    assert!(bed.reroot(&["launch", cfg]).status.success());

    // Right after the launch: nothing differs, exit 0.
    let (code, doc) = bed.diff_json(&config);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(doc["schema"], "reroot.profile-diff/1");
    assert_eq!(doc["drift"], false);
    let out = bed.reroot(&["profile", "diff", cfg]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no drift"));
    // And after a rebuild of the existing instance.
    assert!(bed.reroot(&["rebuild", "--force", cfg]).status.success());
    assert_eq!(bed.diff_json(&config).0, 0);

    let out = bed.reroot(&["--json", "profile", "list", cfg]);
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list json");
    assert_eq!(list["schema"], "reroot.profile-list/1");
    let inst = &list["instances"][0];
    let wanted: Vec<(String, bool, bool)> = inst["wanted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_string(),
                w["exists"].as_bool().unwrap(),
                w["device_profile"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        wanted,
        [
            ("default".to_string(), true, false),
            (named.clone(), true, false),
            (device_profile.clone(), true, true)
        ]
    );
    assert_eq!(
        strings(&inst["live"]),
        ["default", named.as_str(), device_profile.as_str()]
    );
    let out = bed.reroot(&["profile", "list", cfg]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains("EXISTS") && table.contains(&device_profile),
        "{table}"
    );

    // By hand: `named` detached, `extra` attached, the www device moved elsewhere.
    bed.lxd
        .update_instance(&web, |_| {
            Some(InstancePatch {
                profiles: Some(vec![
                    "default".into(),
                    device_profile.clone(),
                    extra.clone(),
                ]),
                ..Default::default()
            })
        })
        .await
        .expect("change profiles");
    let mut dp = bed
        .lxd
        .get_profile(&device_profile)
        .await
        .unwrap()
        .value
        .to_put();
    let www = dp.devices.get_mut("www").expect("www device");
    www.insert("path".into(), "/srv/elsewhere".into());
    bed.lxd
        .put_profile(&device_profile, &dp, None)
        .await
        .expect("change device");

    let (code, doc) = bed.diff_json(&config);
    assert_eq!(code, 3, "{doc:#}");
    assert_eq!(doc["drift"], true);
    let d = &doc["instances"][0];
    assert_eq!(strings(&d["not_attached"]), [named.as_str()]);
    assert_eq!(strings(&d["extra"]), [extra.as_str()]);
    assert_eq!(d["devices"][0]["device"], "www");
    assert_eq!(d["devices"][0]["kind"], "changed");
    assert_eq!(d["devices"][0]["wanted"]["path"], "/var/www");
    assert_eq!(d["devices"][0]["live"]["path"], "/srv/elsewhere");
    let out = bed.reroot(&["profile", "diff", cfg]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains(&format!("profile {named} is not attached")),
        "{text}"
    );
    assert!(text.contains(&format!(
        "profile {extra} is attached but not in the config"
    )));

    // Order only: the same profiles, the device profile first.
    bed.lxd
        .update_instance(&web, |_| {
            Some(InstancePatch {
                profiles: Some(vec![
                    device_profile.clone(),
                    "default".into(),
                    named.clone(),
                ]),
                ..Default::default()
            })
        })
        .await
        .expect("reorder");
    dp.devices
        .get_mut("www")
        .unwrap()
        .insert("path".into(), "/var/www".into());
    bed.lxd
        .put_profile(&device_profile, &dp, None)
        .await
        .unwrap();
    let (code, doc) = bed.diff_json(&config);
    assert_eq!(code, 3);
    let d = &doc["instances"][0];
    assert_eq!(d["order_differs"], true, "{d:#}");
    assert!(d["devices"].as_array().unwrap().is_empty());
    assert!(d["extra"].as_array().unwrap().is_empty());

    // A profile the config names that the daemon does not have.
    let gone = bed.name("gone");
    let config = bed.config(&format!("[default, {named}, {gone}]"));
    let (code, doc) = bed.diff_json(&config);
    assert_eq!(code, 3);
    assert_eq!(
        strings(&doc["instances"][0]["missing_on_daemon"]),
        [gone.as_str()]
    );
}

#[tokio::test]
async fn export_import_round_trip_and_refusals() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let src = bed.name("src");
    let put = ProfilePut {
        description: "exported by a test".into(),
        config: [("limits.cpu".to_string(), "1".to_string())].into(),
        devices: [(
            "data".to_string(),
            [
                ("type".to_string(), "disk".to_string()),
                ("path".to_string(), "/data".to_string()),
                ("source".to_string(), "/tmp".to_string()),
            ]
            .into(),
        )]
        .into(),
    };
    bed.lxd.create_profile(&src, &put).await.expect("create");
    let file = bed.dir.path().join("profiles.yaml");
    let out = bed.reroot(&["profile", "export", &src, "-o", file.to_str().unwrap()]);
    assert!(out.status.success());
    let stdout = bed.reroot(&["profile", "export", &src]);
    assert_eq!(
        String::from_utf8_lossy(&stdout.stdout),
        std::fs::read_to_string(&file).unwrap()
    );

    // Into a fresh name: the same contents.
    let copy = bed.name("copy");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(&format!("name: {src}"), &format!("name: {copy}"));
    let copy_file = bed.dir.path().join("copy.yaml");
    std::fs::write(&copy_file, &text).unwrap();
    let cf = copy_file.to_str().unwrap();
    let out = bed.reroot(&["profile", "import", cf, "--dry-run"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("would create profile {copy}")));
    assert!(
        bed.lxd.get_profile(&copy).await.is_err(),
        "dry run created it"
    );
    assert!(bed.reroot(&["profile", "import", cf]).status.success());
    assert_eq!(
        bed.lxd.get_profile(&copy).await.unwrap().value.to_put(),
        put
    );

    // Identical: left alone.
    let out = bed.reroot(&["profile", "import", cf]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("leave (identical)"));

    // Differing: refused by name, nothing changed (not even the profile that could be created).
    let mut changed = put.clone();
    changed.config.insert("limits.cpu".into(), "2".into());
    bed.lxd.put_profile(&copy, &changed, None).await.unwrap();
    let newer = bed.name("newer");
    std::fs::write(
        &copy_file,
        format!("{text}- name: {newer}\n  description: new\n"),
    )
    .unwrap();
    let out = bed.reroot(&["profile", "import", cf]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains(&copy) && err.contains(cf) && err.contains("--replace"),
        "{err}"
    );
    assert_eq!(
        bed.lxd.get_profile(&copy).await.unwrap().value.to_put(),
        changed
    );
    assert!(bed.lxd.get_profile(&newer).await.is_err());
    // --replace: overwritten, and the new one created.
    assert!(bed
        .reroot(&["profile", "import", cf, "--replace"])
        .status
        .success());
    assert_eq!(
        bed.lxd.get_profile(&copy).await.unwrap().value.to_put(),
        put
    );
    assert_eq!(
        bed.lxd.get_profile(&newer).await.unwrap().value.description,
        "new"
    );
    // What it overwrote was kept beside the file, 0600, and importing that puts it back.
    let kept: Vec<_> = std::fs::read_dir(bed.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("copy.replaced-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&kept[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&kept[0]).unwrap();
    assert!(text.contains(&copy) && !text.contains(&newer), "{text}");
    let out = bed.reroot(&[
        "--json",
        "profile",
        "import",
        kept[0].to_str().unwrap(),
        "--replace",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema"], "reroot.profile-import/1");
    assert_eq!(doc["actions"][0]["action"], "replace", "{doc}");
    assert!(doc["kept"].is_string(), "{doc}");
    assert_eq!(
        bed.lxd.get_profile(&copy).await.unwrap().value.to_put(),
        changed,
        "back as it was before the replace"
    );

    // Bad YAML: the file named, no panic.
    let bad = bed.dir.path().join("bad.yaml");
    std::fs::write(&bad, "profiles: [name: {\n").unwrap();
    let out = bed.reroot(&["profile", "import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("bad.yaml") && !err.contains("panicked"),
        "{err}"
    );
    // A missing profile to export: named.
    let out = bed.reroot(&["profile", "export", &bed.name("nope")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

/// The drift of [`diff_sees_drift_made_by_hand`] made again, then fixed by `apply`: killed
/// inside `apply-profiles` and resumed, undone back to the hand-made state, applied again;
/// refused for a missing profile with nothing changed and no run recorded.
#[tokio::test]
async fn apply_fixes_drift_resumes_after_a_kill_and_undoes() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let extra = bed.name("extra");
    let named = bed.name("named");
    for p in [&extra, &named] {
        bed.lxd
            .create_profile(p, &ProfilePut::default())
            .await
            .expect("create profile");
    }
    let web = bed.name("web");
    let device_profile = format!("{web}.reroot");
    let config = bed.config(&format!("[default, {named}]"));
    let cfg = config.to_str().unwrap();
    assert!(bed.reroot(&["launch", cfg]).status.success());
    let launch_run = bed.last_run();

    let hand_list = vec!["default".to_string(), device_profile.clone(), extra.clone()];
    bed.lxd
        .update_instance(&web, |_| {
            Some(InstancePatch {
                profiles: Some(hand_list.clone()),
                ..Default::default()
            })
        })
        .await
        .expect("change profiles");
    let mut hand_dp = bed
        .lxd
        .get_profile(&device_profile)
        .await
        .unwrap()
        .value
        .to_put();
    hand_dp
        .devices
        .get_mut("www")
        .unwrap()
        .insert("path".into(), "/srv/elsewhere".into());
    bed.lxd
        .put_profile(&device_profile, &hand_dp, None)
        .await
        .unwrap();
    assert_eq!(bed.diff_json(&config).0, 3);

    // --dry-run: says what, changes nothing, records no run.
    let out = bed.reroot(&["profile", "apply", "--dry-run", cfg]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("would set profiles"));
    assert_eq!(bed.last_run(), launch_run);
    let out = bed.reroot(&["--json", "profile", "apply", "--dry-run", cfg]);
    assert!(out.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("dry-run json");
    assert_eq!(plan["schema"], "reroot.profile-apply-plan/1");
    let i = &plan["instances"][0];
    assert_eq!(i["instance"], web.as_str());
    assert_eq!(i["changes"], true, "{plan:#}");
    assert_eq!(
        strings(&i["profiles"]),
        ["default", named.as_str(), device_profile.as_str()]
    );
    assert_eq!(strings(&i["diff"]["extra"]), [extra.as_str()]);
    assert_eq!(i["diff"]["devices"][0]["kind"], "changed");
    assert_eq!(bed.last_run(), launch_run);
    assert_eq!(
        bed.lxd.get_instance(&web).await.unwrap().value.profiles,
        hand_list
    );

    // Killed after changing, before recording: resume finishes it.
    let killed = bed.reroot_with(
        Some("apply-profiles:after-apply"),
        &["profile", "apply", cfg],
    );
    assert!(!killed.status.success());
    let run = bed.last_run();
    assert_ne!(run, launch_run);
    assert!(bed.reroot(&["resume", &run]).status.success());
    let (code, doc) = bed.diff_json(&config);
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(
        bed.lxd.get_instance(&web).await.unwrap().value.profiles,
        ["default", named.as_str(), device_profile.as_str()]
    );

    // Undo: the hand-made list and device back, though the kill came after the change.
    assert!(bed.reroot(&["undo", &run]).status.success());
    assert_eq!(
        bed.lxd.get_instance(&web).await.unwrap().value.profiles,
        hand_list
    );
    assert_eq!(
        bed.lxd
            .get_profile(&device_profile)
            .await
            .unwrap()
            .value
            .to_put(),
        hand_dp
    );
    let out = bed.reroot(&["history", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["runs"][0]["id"], run.as_str());
    assert_eq!(doc["runs"][0]["status"], "Undone", "{doc:#}");

    // Applied again: no drift.
    assert!(bed.reroot(&["profile", "apply", cfg]).status.success());
    assert_eq!(bed.diff_json(&config).0, 0);

    // A missing profile: refused by file, key and name; nothing changed, no run.
    bed.lxd
        .update_instance(&web, |_| {
            Some(InstancePatch {
                profiles: Some(hand_list.clone()),
                ..Default::default()
            })
        })
        .await
        .unwrap();
    let before = bed.last_run();
    let gone = bed.name("gone");
    let config = bed.config(&format!("[default, {gone}]"));
    let out = bed.reroot(&["profile", "apply", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("key profiles") && err.contains(&gone) && err.contains(".yaml"),
        "{err}"
    );
    assert_eq!(bed.last_run(), before);
    assert_eq!(
        bed.lxd.get_instance(&web).await.unwrap().value.profiles,
        hand_list
    );
}

/// With `device-placement: instance` the diff compares the instance's own disk devices, and
/// for every placement the instance config keys of `lxc-options`; `profile apply --dry-run
/// --json` says those are not its to change.
#[tokio::test]
async fn diff_compares_instance_devices_and_config_keys() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let web = bed.name("web");
    let config = bed.config_with(
        "[default]",
        "device-placement: instance\nlxc-options: [-c, user.reroot-note=a]\n",
    );
    let cfg = config.to_str().unwrap();
    let out = bed.reroot(&["launch", cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, doc) = bed.diff_json(&config);
    assert_eq!(code, 0, "{doc:#}");
    let d = &doc["instances"][0];
    assert_eq!(d["devices_on"], "instance");
    assert!(d["config"].as_array().unwrap().is_empty(), "{d:#}");

    // By hand: the key changed, the device moved, another disk added.
    bed.lxd
        .update_instance(&web, |now| {
            let mut devices = now.devices.clone();
            devices
                .get_mut("www")
                .expect("www device")
                .insert("path".into(), "/srv/elsewhere".into());
            devices.insert(
                "scratch".into(),
                reroot::lxd::Device::from([
                    ("type".to_string(), "disk".to_string()),
                    ("path".to_string(), "/scratch".to_string()),
                    ("source".to_string(), "/tmp".to_string()),
                ]),
            );
            let mut config = now.config.clone();
            config.insert("user.reroot-note".into(), "b".into());
            Some(InstancePatch {
                config: Some(config),
                devices: Some(devices),
                ..Default::default()
            })
        })
        .await
        .expect("change instance");
    let (code, doc) = bed.diff_json(&config);
    assert_eq!(code, 3, "{doc:#}");
    let d = &doc["instances"][0];
    assert_eq!(d["config"][0]["key"], "user.reroot-note");
    assert_eq!(d["config"][0]["wanted"], "a");
    assert_eq!(d["config"][0]["live"], "b");
    let kinds: Vec<(String, String)> = d["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["device"].as_str().unwrap().to_string(),
                x["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("www".to_string(), "changed".to_string()),
            ("scratch".to_string(), "extra".to_string())
        ],
        "{d:#}"
    );
    let out = bed.reroot(&["profile", "diff", cfg]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("config user.reroot-note is b, the config wants a"),
        "{text}"
    );
    assert!(text.contains("device www on the instance is"), "{text}");

    // Not `profile apply`'s to fix: its dry run would change nothing.
    let out = bed.reroot(&["--json", "profile", "apply", "--dry-run", cfg]);
    assert!(out.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("dry-run json");
    assert_eq!(plan["instances"][0]["changes"], false, "{plan:#}");
    assert_eq!(plan["instances"][0]["diff"]["config"][0]["live"], "b");
    assert_eq!(strings(&plan["instances"][0]["profiles"]), ["default"]);
}
