//! The configs lxdops's and lxops's users already have, run on the real daemon: a template
//! that ends in `stop: true` and `snapshot: copy`, websites whose filesystem roots come from a
//! `-P` property and that name a `device-template`, each step journaled and resumed after the
//! process is killed in the middle of it.
//!
//! Every test FAILS when the daemon, its test images or the `fault-injection` feature is
//! missing (run `scripts/testbed.sh`, then
//! `cargo test --features fault-injection --test parity`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use reroot::lxd::{Client, ExecRequest};

/// One test's configs, journal and data directory, named after a unique prefix; every
/// instance of that prefix (retired roots included) is removed when it is dropped.
struct Bed {
    prefix: String,
    dir: tempfile::TempDir,
    /// The `(fsroot)` of the configs: the data directories of every instance.
    fsroot: tempfile::TempDir,
    lxd: Client,
}

impl Bed {
    async fn new() -> Bed {
        if !cfg!(feature = "fault-injection") {
            panic!("run the tests with --features fault-injection (scripts/test.sh does)");
        }
        let lxd = common::lxd_client().await;
        if let Err(e) = lxd.get_image_alias("reroot-old").await {
            panic!(
                "{} has no image reroot-old ({e}): run scripts/testbed.sh",
                common::daemon()
            );
        }
        Bed {
            prefix: common::unique_name("par"),
            dir: tempfile::tempdir().expect("tempdir"),
            fsroot: tempfile::tempdir_in("/var/tmp").expect("tempdir"),
            lxd,
        }
    }

    fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    fn fsroot_arg(&self) -> String {
        format!("fsroot={}", self.fsroot.path().display())
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// The template, as the lxdops demo writes its templates: built from an image,
    /// configured, then stopped and snapshotted as `copy`. Its data root comes from `-P`.
    fn template_config(&self) -> PathBuf {
        self.write(
            "tpl.cfg",
            "#cloud-config\nruncmd:\n  - echo built >> /etc/reroot-runs\n  \
             - echo from the template > /var/www/index.html\n",
        );
        self.write(
            &format!("{}.yaml", self.name("tpl")),
            "#lxdops\n\
             ostype: busybox\n\
             image: reroot-old\n\
             stop-timeout: 0\n\
             filesystems:\n  data:\n    pattern: (fsroot)/(instance)\n\
             devices:\n  www:\n    path: /var/www\n    filesystem: data\n\
             cloud-config-files: [tpl.cfg]\n\
             stop: true\n\
             snapshot: copy\n",
        )
    }

    /// A website copied from the template's `copy`, its data seeded from the template's.
    fn site_config(&self) -> PathBuf {
        self.write(
            &format!("{}.yaml", self.name("site")),
            &format!(
                "#lxdops\n\
                 ostype: busybox\n\
                 origin: {tpl}/copy\n\
                 device-template: {tpl}\n\
                 stop-timeout: 0\n\
                 filesystems:\n  data:\n    pattern: (fsroot)/(instance)\n\
                 devices:\n  www:\n    path: /var/www\n    filesystem: data\n",
                tpl = self.name("tpl")
            ),
        )
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    /// `reroot --journal J ARGS...`, made to die at `fault` (`STEP:MOMENT`) when given.
    fn reroot_faulty(&self, fault: Option<&str>, args: &[&str]) -> Output {
        common::reroot_in(&self.journal(), fault, args)
    }

    fn reroot(&self, args: &[&str]) -> Output {
        self.reroot_faulty(None, args)
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.reroot(args);
        assert!(out.status.success(), "reroot {args:?} failed");
        out
    }

    /// Runs `args` made to die at `point`, and checks that it died there.
    fn killed_at(&self, point: &str, args: &[&str]) {
        let out = self.reroot_faulty(Some(point), args);
        assert!(!out.status.success(), "reroot {args:?} should have died");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("fault injected at {point}:")),
            "reroot {args:?} did not die at {point}: {err}"
        );
    }

    async fn sh(&self, instance: &str, script: &str) -> String {
        let out = self
            .lxd
            .exec(instance, &ExecRequest::shell(script))
            .await
            .expect("exec");
        assert_eq!(out.exit_code, 0, "`{script}`: {}", out.stderr_text());
        out.stdout_text()
    }

    async fn status(&self, instance: &str) -> String {
        self.lxd
            .get_instance(instance)
            .await
            .expect("instance")
            .value
            .status
    }

    async fn snapshots(&self, instance: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .lxd
            .list_snapshots(instance)
            .await
            .expect("snapshots")
            .into_iter()
            .map(|s| s.name)
            .collect();
        names.sort();
        names
    }

    /// The ids of the runs, newest first.
    fn runs(&self) -> Vec<String> {
        let out = self.ok(&["history", "--json"]);
        let history: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        history["runs"]
            .as_array()
            .expect("a list of runs")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// The instances of this bed.
    async fn instances(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .lxd
            .list_instance_names()
            .await
            .expect("list")
            .into_iter()
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        names.sort();
        names
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        common::remove_everything_named(&self.prefix);
    }
}

/// What a command printed, both streams (`config verify` lists problems on stdout).
fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_ending_in_stop_and_snapshot_survives_kills_and_websites_launch_from_it() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let tpl = bed.name("tpl");
    let site = bed.name("site");
    let tpl_cfg = bed.template_config();
    let site_cfg = bed.site_config();
    let fsroot = bed.fsroot_arg();

    // The configs verify once the property is given; without it the message names the
    // property and the template it was needed for, and nothing is created.
    bed.ok(&[
        "config",
        "verify",
        "-P",
        &fsroot,
        path(&tpl_cfg),
        path(&site_cfg),
    ]);
    let out = bed.reroot(&["config", "verify", path(&site_cfg)]);
    assert!(!out.status.success());
    let err = printed(&out);
    assert!(
        err.contains("unknown property `(fsroot)`")
            && err.contains(&format!("source instance `{tpl}`")),
        "{err}"
    );

    // A dry run says what the launch does after the start, the template's stop and snapshot
    // included, and changes nothing.
    let dry = bed.reroot(&["rebuild", "--dry-run", "-P", &fsroot, path(&tpl_cfg)]);
    let shown = printed(&dry);
    assert!(dry.status.success(), "{shown}");
    let row = shown
        .lines()
        .find(|l| l.starts_with(&tpl))
        .unwrap_or_else(|| panic!("no row for {tpl}:\n{shown}"));
    assert!(
        row.contains("cloud-config (1 file), stop, snapshot copy"),
        "the dry run must show the template's last steps:\n{shown}"
    );
    assert!(
        !bed.lxd.instance_exists(&tpl).await.unwrap(),
        "a dry run created {tpl}"
    );

    // Launch the template, killed right after `final-stop` was recorded: the resume takes
    // the snapshot and does not start the template again (its cloud-config ran once).
    let launch = ["rebuild", "-P", &fsroot, path(&tpl_cfg)];
    bed.killed_at("final-stop:after-record", &launch);
    assert_eq!(bed.status(&tpl).await, "Stopped");
    assert!(bed.snapshots(&tpl).await.is_empty());
    bed.ok(&["resume"]);
    assert_eq!(bed.status(&tpl).await, "Stopped");
    assert_eq!(bed.snapshots(&tpl).await, ["copy"]);
    let first_run = bed.runs()[0].clone();
    let show = bed.ok(&["--json", "show", &first_run]);
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(
        shown.contains("final-stop") && shown.contains(&format!("{tpl}/copy")),
        "{shown}"
    );

    // A website from it: its root is the template's `copy`, its data seeded from the
    // template's data directory, found through -P.
    bed.ok(&["rebuild", "-P", &fsroot, path(&site_cfg)]);
    assert_eq!(bed.status(&site).await, "Running");
    assert_eq!(bed.sh(&site, "cat /etc/reroot-runs").await, "built\n");
    assert_eq!(
        bed.sh(&site, "cat /var/www/index.html").await,
        "from the template\n"
    );
    let host_copy = bed.fsroot.path().join(&site).join("www/index.html");
    assert_eq!(
        std::fs::read_to_string(&host_copy).expect("the website's data on the host"),
        "from the template\n"
    );
    // The website itself has neither key: it stays running and gets no snapshot.
    assert!(bed.snapshots(&site).await.is_empty());

    // Rebuild the template, killed after the snapshot was taken but before it was recorded:
    // the resume finds it and takes no second one; the old template is retired with its own.
    bed.killed_at(
        "final-snapshot:after-apply",
        &["rebuild", "--force", "-P", &fsroot, path(&tpl_cfg)],
    );
    bed.ok(&["resume"]);
    assert_eq!(bed.status(&tpl).await, "Stopped");
    assert_eq!(bed.snapshots(&tpl).await, ["copy"]);
    let second_run = bed.runs()[0].clone();
    assert_ne!(second_run, first_run);
    let retired = format!("{tpl}-old-{}", &second_run[..8]);
    assert_eq!(bed.snapshots(&retired).await, ["copy"]);
    assert_eq!(bed.status(&retired).await, "Stopped");

    // Undo puts the first template back, its snapshot with it; the second one's is gone
    // with its root.
    bed.ok(&["undo", &second_run]);
    assert_eq!(bed.instances().await, [site.clone(), tpl.clone()]);
    assert_eq!(bed.status(&tpl).await, "Stopped");
    assert_eq!(bed.snapshots(&tpl).await, ["copy"]);
    assert!(bed.ok(&["journal", "verify"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_from_lxc_options_reaches_the_instance_and_survives_a_killed_rebuild_and_undo() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let name = bed.name("eph");
    let cfg = bed.write(
        &format!("{name}.yaml"),
        "#lxdops\nostype: busybox\nimage: reroot-old\nstop-timeout: 0\nlxc-options: [-e]\n",
    );
    let ephemeral = |i: &reroot::lxd::Instance| i.ephemeral;
    bed.ok(&["rebuild", path(&cfg)]);
    let first = bed.lxd.get_instance(&name).await.expect("launched").value;
    assert!(ephemeral(&first), "-e did not reach the instance");
    assert_eq!(first.status, "Running");
    let first_run = bed.runs()[0].clone();

    // Killed once the old root is stopped: the daemon must not have deleted it.
    bed.killed_at("stop:after-apply", &["rebuild", "--force", path(&cfg)]);
    let second_run = bed.runs()[0].clone();
    assert_ne!(second_run, first_run);
    let old = bed
        .lxd
        .get_instance(&name)
        .await
        .expect("old root kept")
        .value;
    assert_eq!(old.status, "Stopped");
    assert!(!ephemeral(&old));
    bed.ok(&["resume"]);
    let new = bed.lxd.get_instance(&name).await.expect("new root").value;
    assert!(ephemeral(&new), "the new root is not ephemeral");
    assert_eq!(new.status, "Running");
    assert_eq!(
        new.config.get("user.reroot.run").map(String::as_str),
        Some(second_run.as_str())
    );
    let retired = format!("{name}-old-{}", &second_run[..8]);
    let kept = bed.lxd.get_instance(&retired).await.expect("retired").value;
    assert_eq!(kept.status, "Stopped");
    assert!(!ephemeral(&kept));

    // Undo: the old root runs again under its name, ephemeral as it was.
    bed.ok(&["undo", &second_run]);
    let back = bed
        .lxd
        .get_instance(&name)
        .await
        .expect("old root back")
        .value;
    assert_eq!(
        back.config.get("user.reroot.run").map(String::as_str),
        Some(first_run.as_str())
    );
    assert_eq!(back.status, "Running");
    assert!(ephemeral(&back), "the old root is not ephemeral again");
    assert_eq!(bed.instances().await, vec![name]);
}

/// The images that carry `run` as their publisher.
async fn images_of(bed: &Bed, run: &str) -> Vec<reroot::lxd::Image> {
    bed.lxd
        .list_images()
        .await
        .expect("images")
        .into_iter()
        .filter(|i| i.properties.get("reroot.run").map(String::as_str) == Some(run))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_snapshot_is_published_as_an_image_that_a_website_launches_from() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let tpl = bed.name("tpl");
    let tpl_cfg = bed.template_config();
    let fsroot = bed.fsroot_arg();
    let alias = bed.name("img");
    bed.ok(&["rebuild", "-P", &fsroot, path(&tpl_cfg)]);
    assert_eq!(bed.snapshots(&tpl).await, ["copy"]);
    let runs_before = bed.runs().len();

    // Refusals, read-only and before any run is recorded: a missing snapshot, an alias that
    // another image has, more than one config, a config without `snapshot:` and no -s.
    let publish = |extra: &[&str]| {
        let mut args = vec!["publish", "-P", fsroot.as_str()];
        args.extend_from_slice(extra);
        bed.reroot(&args)
    };
    let out = publish(&["-s", "nope", "--alias", &alias, path(&tpl_cfg)]);
    assert!(!out.status.success());
    assert!(
        printed(&out).contains(&format!(
            "instance {tpl} has no snapshot nope: nothing was published"
        )),
        "{}",
        printed(&out)
    );
    let out = publish(&["--alias", "reroot-old", path(&tpl_cfg)]);
    assert!(!out.status.success());
    assert!(
        printed(&out).contains("image alias reroot-old already points to image"),
        "{}",
        printed(&out)
    );
    let site_cfg = bed.site_config();
    let out = publish(&["--alias", &alias, path(&tpl_cfg), path(&site_cfg)]);
    assert!(!out.status.success());
    assert!(
        printed(&out).contains("publish takes one config"),
        "{}",
        printed(&out)
    );
    let out = publish(&["--alias", &alias, path(&site_cfg)]);
    assert!(!out.status.success());
    assert!(
        printed(&out).contains("give -s SNAPSHOT (the config names no `snapshot:`)"),
        "{}",
        printed(&out)
    );
    assert_eq!(
        bed.runs().len(),
        runs_before,
        "a refused publish recorded a run"
    );
    assert!(bed.lxd.get_image_alias(&alias).await.is_err());

    // Killed once the daemon has made the image, before it was recorded: the resume finds
    // it by the run id it carries and publishes nothing more.
    bed.killed_at(
        "publish:after-apply",
        &["publish", "-P", &fsroot, "--alias", &alias, path(&tpl_cfg)],
    );
    let run = bed.runs()[0].clone();
    bed.ok(&["resume"]);
    let images = images_of(&bed, &run).await;
    assert_eq!(images.len(), 1, "{images:?}");
    let target = bed.lxd.get_image_alias(&alias).await.expect("alias").target;
    assert_eq!(target, images[0].fingerprint);
    assert_eq!(
        images[0].properties.get("os").map(String::as_str),
        Some("busybox")
    );

    // A website from the image: the template's root, as built.
    let web = bed.name("fromimg");
    let web_cfg = bed.write(
        &format!("{web}.yaml"),
        &format!("#lxdops\nostype: busybox\nimage: {alias}\nstop-timeout: 0\n"),
    );
    bed.ok(&["rebuild", path(&web_cfg)]);
    assert_eq!(bed.status(&web).await, "Running");
    assert_eq!(bed.sh(&web, "cat /etc/reroot-runs").await, "built\n");

    // The alias is now taken by that image: a second publish is refused, and changes nothing.
    let out = publish(&["--alias", &alias, path(&tpl_cfg)]);
    assert!(!out.status.success());
    assert!(
        printed(&out).contains("already points to image"),
        "{}",
        printed(&out)
    );

    // Undo deletes the image this run made (its alias with it); the website runs on.
    bed.ok(&["undo", &run]);
    assert!(images_of(&bed, &run).await.is_empty());
    assert!(bed.lxd.get_image_alias(&alias).await.is_err());
    assert_eq!(bed.status(&web).await, "Running");
    assert!(bed.ok(&["journal", "verify"]).status.success());
}

/// A profile with a NIC that gets no address by itself (a veth pair, no DHCP in the image).
async fn nic_profile(bed: &Bed) -> String {
    let name = bed.name("net");
    let mut nic = std::collections::BTreeMap::new();
    for (k, v) in [("type", "nic"), ("nictype", "p2p"), ("name", "eth0")] {
        nic.insert(k.to_string(), v.to_string());
    }
    let profile = reroot::lxd::ProfilePut {
        description: "a NIC without DHCP".into(),
        config: Default::default(),
        devices: [("eth0".to_string(), nic)].into_iter().collect(),
    };
    bed.lxd
        .create_profile(&name, &profile)
        .await
        .expect("create the NIC profile");
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_config_waits_for_an_address_on_the_nic_within_its_bound() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    let net = nic_profile(&bed).await;
    bed.write(
        "net.cfg",
        "#cloud-config\nruncmd:\n  - ip -4 addr show eth0 > /etc/addr-at-cloud-config\n",
    );
    let config = |name: &str, wait: u64| {
        bed.write(
            &format!("{name}.yaml"),
            &format!(
                "#lxdops\nostype: busybox\nimage: reroot-old\nstop-timeout: 0\n\
                 profiles: [default, {net}]\nwait-ready: {wait}\ncloud-config-files: [net.cfg]\n"
            ),
        )
    };

    // No address comes: the step gives up at its bound, and no cloud-config was applied.
    let lonely = bed.name("lonely");
    let cfg = config(&lonely, 3);
    let out = bed.reroot(&["rebuild", path(&cfg)]);
    assert!(!out.status.success());
    let text = printed(&out);
    assert!(
        text.contains("was not ready within 3 s (wait-ready): no address of global scope"),
        "{text}"
    );
    assert_eq!(bed.status(&lonely).await, "Running");
    let probe = bed
        .lxd
        .exec(
            &lonely,
            &ExecRequest::shell("test -e /etc/addr-at-cloud-config"),
        )
        .await
        .expect("exec");
    assert_ne!(probe.exit_code, 0, "cloud-config ran without an address");
    let failed = bed.runs()[0].clone();
    bed.ok(&["undo", &failed]);

    // The address comes while it waits: cloud-config runs after it, and sees it.
    let web = bed.name("web");
    let cfg = config(&web, 120);
    let child = common::reroot_command()
        .arg("--journal")
        .arg(bed.journal())
        .args(["rebuild", path(&cfg)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn reroot");
    let bound = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let state = bed.lxd.instance_state(&web).await;
        if state.is_ok_and(|s| s.is_running()) {
            break;
        }
        assert!(
            std::time::Instant::now() < bound,
            "{web} did not start within 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bed.sh(
        &web,
        "ip addr add 192.0.2.10/24 dev eth0 && ip link set eth0 up",
    )
    .await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait for reroot");
    assert!(out.status.success(), "{}", printed(&out));
    assert!(
        bed.sh(&web, "cat /etc/addr-at-cloud-config")
            .await
            .contains("192.0.2.10"),
        "cloud-config ran before the address"
    );
    let run = bed.runs()[0].clone();
    let show = bed.ok(&["--json", "show", &run]);
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).expect("json");
    let ready = shown["instances"][0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["name"] == "ready")
        .expect("a ready step")
        .clone();
    // A step's output is the JSON object it recorded (see docs/json.md).
    assert_eq!(ready["output"]["address"], "eth0 192.0.2.10", "{ready}");
}
