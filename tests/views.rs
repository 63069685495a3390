//! `reroot launch`, `configure`, `instance info` and `instance addresses` on the real daemon:
//! launch refuses an existing instance without recording a run; configure converges and
//! refuses a stopped or missing instance; the instance views show what was built and by which
//! run, and fail clearly for a missing instance.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reroot::lxd::{Client, ExecRequest, NewInstance, Stop};

/// A template, a journal and a config directory named after one unique prefix, removed (with
/// every instance, profile, dataset and subvolume of that prefix) when dropped.
struct Bed {
    prefix: String,
    dir: tempfile::TempDir,
    lxd: Client,
}

impl Bed {
    async fn new() -> Bed {
        common::require_zfs();
        common::require_btrfs();
        let lxd = common::lxd_client().await;
        let bed = Bed {
            prefix: common::unique_name("vw"),
            dir: tempfile::tempdir().expect("tempdir"),
            lxd,
        };
        bed.lxd
            .create_instance(&NewInstance::from_image_alias(
                &bed.template(),
                "reroot-old",
            ))
            .await
            .expect("create template");
        bed.lxd
            .create_snapshot(&bed.template(), "base", None)
            .await
            .expect("snapshot template");
        bed
    }

    fn template(&self) -> String {
        format!("{}-tpl", self.prefix)
    }

    fn instance(&self) -> String {
        format!("{}-web", self.prefix)
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("journal")
    }

    /// The cloud-config file of the instance, with `motd` as the content of /etc/app-motd.
    fn cloud_config(&self, motd: &str) -> PathBuf {
        let path = self.dir.path().join("app.cfg");
        std::fs::write(
            &path,
            format!(
                "#cloud-config\nwrite_files:\n  - path: /etc/app-motd\n    content: {motd}\n  \
                 - path: /etc/app-id\n    content: fixed\n"
            ),
        )
        .expect("write cloud-config");
        path
    }

    /// The instance's config file: a ZFS and a btrfs filesystem, a device on each, and the
    /// cloud-config file.
    fn config(&self) -> PathBuf {
        self.config_with_profiles("[default]")
    }

    /// [`Bed::config`] with these `profiles`. No wait for readiness (`wait-ready: 0`): the NIC
    /// of the test that adds one gets its address from the test after the launch (the testbed
    /// has no DHCP), so a wait would only run out.
    fn config_with_profiles(&self, profiles: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{}.yaml", self.instance()));
        let text = format!(
            "#lxdops\n\
             ostype: busybox\n\
             origin: {tpl}/base\n\
             profiles: {profiles}\n\
             device-owner: 100000:100000\n\
             stop-timeout: 0\n\
             wait-ready: 0\n\
             filesystems:\n  \
               data:\n    pattern: rerootz/{p}/(instance)\n  \
               logs:\n    kind: btrfs\n    pattern: /srv/reroot-btrfs/{p}-(instance)\n\
             devices:\n  \
               www:\n    path: /var/www\n    filesystem: data\n  \
               log:\n    path: /var/log/app\n    filesystem: logs\n    dir: .\n\
             cloud-config-files:\n  - {cc}\n",
            tpl = self.template(),
            p = self.prefix,
            cc = self.dir.path().join("app.cfg").display(),
        );
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn reroot(&self, args: &[&str]) -> Output {
        let out = common::reroot_command()
            .env_remove("REROOT_FAULT")
            .arg("--journal")
            .arg(self.journal())
            .args(args)
            .output()
            .expect("run reroot");
        eprintln!(
            "reroot {}: {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The ids of the runs in the journal, newest first.
    fn runs(&self) -> Vec<String> {
        if !self.journal().exists() {
            return Vec::new();
        }
        let out = self.reroot(&["history", "--json"]);
        assert!(out.status.success());
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history json");
        doc["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_string())
            .collect()
    }

    async fn cat(&self, path: &str) -> String {
        let out = self
            .lxd
            .exec(
                &self.instance(),
                &ExecRequest::shell(&format!("cat {path}")),
            )
            .await
            .expect("exec");
        assert_eq!(out.exit_code, 0, "cat {path}: {}", out.stderr_text());
        out.stdout_text()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        common::remove_everything_named(&self.prefix);
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn arg(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_refuses_an_existing_instance_and_configure_converges() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    bed.cloud_config("hello");
    let config = bed.config();

    // Launch: a rebuild run that creates the instance and applies its cloud-config.
    let launched = bed.reroot(&["launch", arg(&config)]);
    assert!(launched.status.success(), "{}", stderr(&launched));
    let runs = bed.runs();
    assert_eq!(runs.len(), 1);
    assert!(bed
        .lxd
        .instance_state(&bed.instance())
        .await
        .expect("state")
        .is_running());
    assert_eq!(bed.cat("/etc/app-motd").await.trim(), "hello");
    let created = bed
        .lxd
        .get_instance(&bed.instance())
        .await
        .expect("instance")
        .value
        .created_at;

    // Launch again: refused before any run, naming the instance and its config; nothing
    // changed, no run recorded; --dry-run is refused the same way.
    for extra in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["launch"];
        args.extend_from_slice(extra);
        args.push(arg(&config));
        let again = bed.reroot(&args);
        assert!(!again.status.success());
        let err = stderr(&again);
        assert!(
            err.contains("already exists")
                && err.contains(&bed.instance())
                && err.contains(arg(&config)),
            "{err}"
        );
        assert_eq!(bed.runs(), runs, "a refused launch recorded a run");
    }
    let now = bed
        .lxd
        .get_instance(&bed.instance())
        .await
        .expect("instance")
        .value;
    assert_eq!(
        now.created_at, created,
        "the refused launch replaced the instance"
    );
    assert_eq!(now.status, "Running");

    // Configure converges: launch applied it all, so nothing changes and it says so.
    let same = bed.reroot(&["configure", arg(&config)]);
    assert!(same.status.success());
    let text = stdout(&same);
    assert!(
        text.contains(&format!(
            "{}: nothing changed (2 already as wanted)",
            bed.instance()
        )),
        "{text}"
    );
    // A changed file is applied, once.
    bed.cloud_config("bye");
    let changed = bed.reroot(&["--json", "configure", arg(&config)]);
    assert!(changed.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&changed.stdout).expect("json");
    assert_eq!(doc["schema"], "reroot.configure/1");
    assert_eq!(doc["instances"][0]["instance"], bed.instance().as_str());
    assert_eq!(doc["instances"][0]["changed"], 1);
    assert_eq!(bed.cat("/etc/app-motd").await.trim(), "bye");
    let again = bed.reroot(&["--json", "configure", arg(&config)]);
    let doc: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(doc["instances"][0]["changed"], 0);
    assert_eq!(bed.runs(), runs, "configure recorded a run");

    // A stopped instance is refused, and stays stopped and as it was.
    bed.lxd
        .stop_instance(&bed.instance(), Stop::Force)
        .await
        .expect("stop");
    bed.cloud_config("stopped");
    let stopped = bed.reroot(&["configure", arg(&config)]);
    assert!(!stopped.status.success());
    let err = stderr(&stopped);
    assert!(
        err.contains(&format!("instance {} is Stopped", bed.instance()))
            && err.contains("start it first")
            && err.contains(arg(&config)),
        "{err}"
    );
    assert!(bed
        .lxd
        .instance_state(&bed.instance())
        .await
        .expect("state")
        .is_stopped());
    bed.lxd
        .start_instance(&bed.instance())
        .await
        .expect("start");
    assert_eq!(bed.cat("/etc/app-motd").await.trim(), "bye");

    // A missing instance is refused.
    let other = format!("{}-none", bed.prefix);
    let missing = bed.reroot(&["configure", "--name", &other, arg(&config)]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains(&format!("instance {other} does not exist")),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_info_and_addresses_show_the_instance_as_it_is() {
    let _serial = common::LXD_LOCK.lock().await;
    let bed = Bed::new().await;
    // A point-to-point NIC (the testbed has no bridge), given an address below.
    let net = format!("{}-net", bed.prefix);
    let nic: reroot::lxd::Device = [("type", "nic"), ("nictype", "p2p"), ("name", "eth0")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    bed.lxd
        .create_profile(
            &net,
            &reroot::lxd::ProfilePut {
                description: "views test".into(),
                config: Default::default(),
                devices: [("eth0".to_string(), nic)].into_iter().collect(),
            },
        )
        .await
        .expect("create profile");
    bed.cloud_config("hello");
    let config = bed.config_with_profiles(&format!("[default, {net}]"));
    let web = bed.instance();
    let missing = format!("{}-none", bed.prefix);

    // Before any run: the instance is missing, and both views say so.
    for view in ["info", "addresses"] {
        let out = bed.reroot(&["instance", view, "--name", &missing, arg(&config)]);
        assert!(
            !out.status.success(),
            "instance {view} of a missing instance"
        );
        assert!(
            stderr(&out).contains(&format!("instance {missing} does not exist")),
            "{}",
            stderr(&out)
        );
    }

    assert!(bed.reroot(&["launch", arg(&config)]).status.success());
    let run = bed.runs().first().cloned().expect("the launch run");
    let sh = |script: &'static str| {
        let lxd = &bed.lxd;
        let web = web.clone();
        async move {
            let out = lxd
                .exec(&web, &ExecRequest::shell(script))
                .await
                .expect("exec");
            assert_eq!(out.exit_code, 0, "`{script}`: {}", out.stderr_text());
        }
    };
    sh("head -c 300000 /dev/urandom > /var/www/blob; head -c 300000 /dev/urandom > /var/log/app/a.log").await;
    // zfs-fuse counts written data in `used` only once its transaction group is committed,
    // some seconds later: wait (bounded) until it does, so the size below is the real one.
    let dataset = format!("rerootz/{}/{web}", bed.prefix);
    let mut used = 0;
    for _ in 0..120 {
        let out = Command::new("zfs")
            .args(["get", "-Hp", "-o", "value", "used", &dataset])
            .output()
            .expect("zfs get");
        used = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0);
        if used >= 300_000 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(used >= 300_000, "zfs never counted the blob: used {used}");
    sh("ip link set eth0 up && ip addr add 10.213.7.2/24 dev eth0").await;

    // info --json: what it is built from and by which run, its profiles, devices with where
    // they come from, the filesystems on the host with their size, the runs.
    let out = bed.reroot(&["--json", "instance", "info", arg(&config)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info json");
    assert_eq!(doc["schema"], "reroot.instance-info/1");
    assert_eq!(doc["name"], web.as_str());
    assert_eq!(doc["status"], "Running");
    let source = format!("{}/base", bed.template());
    assert_eq!(doc["built_from"]["source"], source.as_str());
    assert_eq!(doc["built_from"]["run"], run.as_str());
    let profiles: Vec<&str> = doc["profiles"]
        .as_array()
        .expect("profiles")
        .iter()
        .map(|p| p.as_str().expect("name"))
        .collect();
    assert_eq!(profiles, ["default", net.as_str()]);
    let device = |name: &str| {
        doc["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no device {name}: {}", doc["devices"]))
            .clone()
    };
    assert_eq!(device("www")["type"], "disk");
    // The default placement: the disk devices are the instance's own.
    assert_eq!(device("www")["from"], "instance");
    assert_eq!(device("www")["keys"]["path"], "/var/www");
    let data_dir = format!("/rerootz/{}/{web}", bed.prefix);
    assert_eq!(
        device("www")["keys"]["source"],
        format!("{data_dir}/www").as_str()
    );
    assert_eq!(device("eth0")["type"], "nic");
    assert_eq!(device("eth0")["from"], format!("profile {net}").as_str());
    assert_eq!(device("root")["from"], "profile default");
    let fs = |id: &str| {
        doc["filesystems"]
            .as_array()
            .expect("filesystems")
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no filesystem {id}"))
            .clone()
    };
    let data = fs("data");
    assert_eq!(data["kind"], "zfs");
    assert_eq!(
        data["location"],
        format!("rerootz/{}/{web}", bed.prefix).as_str()
    );
    assert_eq!(data["exists"], true);
    assert_eq!(data["host_dir"], data_dir.as_str());
    assert!(
        data["size_bytes"].as_u64().expect("a size") >= 300_000,
        "{data}"
    );
    assert_eq!(data["devices"][0]["name"], "www");
    assert_eq!(data["devices"][0]["path"], "/var/www");
    assert_eq!(
        data["devices"][0]["host_dir"],
        format!("{data_dir}/www").as_str()
    );
    let logs = fs("logs");
    let logs_dir = format!("/srv/reroot-btrfs/{}-{web}", bed.prefix);
    assert_eq!(logs["kind"], "btrfs");
    assert_eq!(logs["host_dir"], logs_dir.as_str());
    assert!(
        logs["size_bytes"].as_u64().expect("a size") >= 300_000,
        "{logs}"
    );
    assert_eq!(logs["devices"][0]["host_dir"], logs_dir.as_str());
    assert_eq!(doc["runs"].as_array().expect("runs").len(), 1);
    assert_eq!(doc["runs"][0]["id"], run.as_str());
    assert!(doc["runs"][0]["started_at"]
        .as_str()
        .expect("time")
        .ends_with('Z'));
    assert!(doc["runs"][0]["started_at_ms"].as_i64().is_some());

    // The text form says the same.
    let out = bed.reroot(&["instance", "info", arg(&config)]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("instance {web} (project default): Running\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("built from: {source} (snapshot created ")),
        "{text}"
    );
    assert!(text.contains(&format!(" by run {}", &run[..8])), "{text}");
    assert!(
        text.contains(&format!("    www at /var/www <- {data_dir}/www\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("  {}  Succeeded  ", &run[..8])),
        "{text}"
    );

    // addresses: eth0 and its address, never lo.
    let out = bed.reroot(&["--json", "instance", "addresses", arg(&config)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("addresses json");
    assert_eq!(doc["schema"], "reroot.instance-addresses/1");
    assert_eq!(doc["instances"][0]["instance"], web.as_str());
    let nics = doc["instances"][0]["interfaces"]
        .as_array()
        .expect("interfaces");
    let names: Vec<&str> = nics
        .iter()
        .map(|n| n["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["eth0"], "{nics:?}");
    assert!(
        nics[0]["addresses"]
            .as_array()
            .expect("addresses")
            .iter()
            .any(|a| a["family"] == "inet" && a["address"] == "10.213.7.2" && a["netmask"] == "24"),
        "{nics:?}"
    );
    let out = bed.reroot(&["instance", "addresses", arg(&config)]);
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with(&web) && l.contains(" eth0 ") && l.contains("10.213.7.2/24")),
        "{text}"
    );
    assert!(
        !text.contains("127.0.0.1") && !text.contains(" lo "),
        "{text}"
    );

    // Stopped: no interfaces, said so.
    bed.lxd
        .stop_instance(&web, Stop::Force)
        .await
        .expect("stop");
    let out = bed.reroot(&["instance", "addresses", arg(&config)]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("(Stopped: no interfaces)"),
        "{}",
        stdout(&out)
    );
}
