//! Cloud-config applied to real containers through the LXD API (busybox test images): every
//! write_files encoding with owner and mode checked inside, users created and re-applied,
//! a failing runcmd reported with its exit code, and a second apply leaving the same state.
//!
//! Needs the testbed (scripts/testbed.sh): fails, never skips, when LXD is missing.

mod common;

use std::path::{Path, PathBuf};

use common::{lxd_client, unique_name, LxdCleanup};
use reroot::cloudconfig::{self, CloudConfigError, Guest, LxdGuest, OsType};
use reroot::lxd::{Client, ExecRequest, NewInstance};

/// A running busybox container, removed when `cleanup` is dropped.
async fn container(cleanup: &LxdCleanup) -> (Client, String) {
    let client = lxd_client().await;
    let name = cleanup.instance(&unique_name("cc"));
    client
        .create_instance(&NewInstance::from_image_alias(&name, "reroot-old"))
        .await
        .unwrap_or_else(|e| {
            panic!("create {name} from image reroot-old (run scripts/testbed.sh): {e}")
        });
    client
        .start_instance(&name)
        .await
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    (client, name)
}

/// Run a shell script in the container; its stdout.
async fn sh(client: &Client, name: &str, script: &str) -> String {
    let out = client
        .exec(name, &ExecRequest::shell(script))
        .await
        .unwrap_or_else(|e| panic!("exec {script}: {e}"));
    assert_eq!(out.exit_code, 0, "{script}: {}", out.stderr_text());
    out.stdout_text()
}

fn cfg(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

const FILES: &str = r#"#cloud-config
write_files:
  - path: /etc/plain.txt
    content: |
      plain text
    permissions: "0600"
  - path: /etc/enc/b64.txt
    encoding: b64
    content: aGVsbG8gYjY0Cg==
  - path: /etc/enc/base64.txt
    encoding: base64
    content: aGVsbG8gYjY0Cg==
    permissions: "0755"
  - path: /etc/enc/gzip-b64.txt
    encoding: gzip+b64
    content: H4sIAAAAAAAAA/NIzcnJVyjPL8pJ4QIA1eA5twwAAAA=
  - path: /etc/enc/gz-b64.txt
    encoding: gz+b64
    content: H4sIAAAAAAAAA/NIzcnJVyjPL8pJ4QIA1eA5twwAAAA=
  - path: /etc/enc/gzip-base64.txt
    encoding: gzip+base64
    content: H4sIAAAAAAAAA/NIzcnJVyjPL8pJ4QIA1eA5twwAAAA=
  - path: /srv/owned/data.txt
    owner: app:appgrp
    permissions: "0640"
    content: owned
    defer: true
  - path: /srv/owned/by-uid.txt
    owner: "1234:5678"
    content: numeric
users:
  - name: app
    uid: 1500
    primary_group: appgrp
"#;

#[tokio::test]
async fn write_files_every_encoding_with_owner_and_mode() {
    let cleanup = LxdCleanup::new();
    let (client, name) = container(&cleanup).await;
    let dir = tempfile::tempdir().unwrap();
    let f = cfg(dir.path(), "files.cfg", FILES);
    let guest = LxdGuest::new(&client, &name);
    cloudconfig::apply_files(&guest, &[f], Some(OsType::Busybox))
        .await
        .unwrap_or_else(|e| panic!("apply: {e}"));

    let stat = |p: &str| format!("stat -c '%u %g %a' {p}; cat {p}");
    assert_eq!(
        sh(&client, &name, &stat("/etc/plain.txt")).await,
        "0 0 600\nplain text\n"
    );
    assert_eq!(
        sh(&client, &name, &stat("/etc/enc/b64.txt")).await,
        "0 0 644\nhello b64\n"
    );
    assert_eq!(
        sh(&client, &name, &stat("/etc/enc/base64.txt")).await,
        "0 0 755\nhello b64\n"
    );
    for p in ["gzip-b64", "gz-b64", "gzip-base64"] {
        let got = sh(&client, &name, &stat(&format!("/etc/enc/{p}.txt"))).await;
        assert_eq!(got, "0 0 644\nHello world\n", "{p}");
    }
    let uid = sh(&client, &name, "grep '^app:' /etc/passwd | cut -d: -f3,4").await;
    let gid = sh(&client, &name, "grep '^appgrp:' /etc/group | cut -d: -f3").await;
    let (uid, ugid) = uid.trim().split_once(':').unwrap();
    assert_eq!(uid, "1500");
    assert_eq!(ugid, gid.trim(), "the primary group of app is appgrp");
    assert_eq!(
        sh(&client, &name, &stat("/srv/owned/data.txt")).await,
        format!("1500 {} 640\nowned", gid.trim())
    );
    assert_eq!(
        sh(&client, &name, &stat("/srv/owned/by-uid.txt")).await,
        "1234 5678 644\nnumeric"
    );
}

const USERS: &str = r##"#cloud-config
write_files:
  - path: /etc/sudoers.d/README
    content: "# drop-in rules\n"
  - path: /etc/profile
    append: true
    content: |
      export FROM_CLOUD_CONFIG=1
users:
  - name: web
    uid: 1100
    gecos: Web owner
    shell: /bin/sh
    groups: [www-data, adm]
    sudo: true
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey1 one@example
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey2 two@example
  - name: deploy
    groups: www-data
    homedir: /srv/deploy
runcmd:
  - echo ran >> /tmp/runcmd.log
"##;

/// Everything the users and files of USERS leave in the container.
async fn user_state(client: &Client, name: &str) -> String {
    sh(
        client,
        name,
        "cat /etc/passwd /etc/group /etc/shadow /etc/profile /etc/sudoers.d/web; \
         stat -c '%n %u %g %a' /home/web /home/web/.ssh /home/web/.ssh/authorized_keys /srv/deploy /etc/sudoers.d/web; \
         cat /home/web/.ssh/authorized_keys",
    )
    .await
}

#[tokio::test]
async fn users_are_created_then_reapplying_converges() {
    let cleanup = LxdCleanup::new();
    let (client, name) = container(&cleanup).await;
    let dir = tempfile::tempdir().unwrap();
    let f = cfg(dir.path(), "users.cfg", USERS);
    let guest = LxdGuest::new(&client, &name);

    let first = cloudconfig::apply_files(&guest, std::slice::from_ref(&f), None)
        .await
        .unwrap_or_else(|e| panic!("first apply: {e}"));
    assert!(first.iter().all(|o| o.changed), "{first:?}");
    let passwd = sh(&client, &name, "cat /etc/passwd").await;
    assert!(
        passwd.contains("\nweb:x:1100:1100:Web owner:/home/web:/bin/sh\n"),
        "{passwd}"
    );
    assert!(passwd.contains("\ndeploy:x:"), "{passwd}");
    let group = sh(&client, &name, "cat /etc/group").await;
    assert!(group.contains("\nwww-data:x:1000:web,deploy\n"), "{group}");
    assert!(group.contains("\nadm:x:1001:web\n"), "{group}");
    assert_eq!(
        sh(
            &client,
            &name,
            "cat /etc/sudoers.d/web; stat -c %a /etc/sudoers.d/web"
        )
        .await,
        "web ALL=(ALL) NOPASSWD:ALL\n440\n"
    );
    assert_eq!(
        sh(
            &client,
            &name,
            "stat -c '%u %g %a' /home/web/.ssh /home/web/.ssh/authorized_keys /srv/deploy"
        )
        .await,
        "1100 1100 700\n1100 1100 600\n1000 1002 755\n"
    );
    assert_eq!(
        sh(&client, &name, "grep -c FROM_CLOUD_CONFIG /etc/profile").await,
        "1\n"
    );

    // A key added by hand survives; the second apply changes nothing but runs runcmd again.
    sh(
        &client,
        &name,
        "echo 'ssh-rsa AAAAmanual manual@host' >> /home/web/.ssh/authorized_keys",
    )
    .await;
    let before = user_state(&client, &name).await;
    let second = cloudconfig::apply_files(&guest, std::slice::from_ref(&f), Some(OsType::Busybox))
        .await
        .unwrap_or_else(|e| panic!("second apply: {e}"));
    assert_eq!(user_state(&client, &name).await, before);
    let changed: Vec<&str> = second
        .iter()
        .filter(|o| o.changed)
        .map(|o| o.what.as_str())
        .collect();
    assert_eq!(changed, ["runcmd[0]: sh -c 'echo ran >> /tmp/runcmd.log'"]);
    assert_eq!(
        sh(&client, &name, "cat /tmp/runcmd.log").await,
        "ran\nran\n"
    );
    let keys = sh(&client, &name, "cat /home/web/.ssh/authorized_keys").await;
    assert_eq!(keys.lines().count(), 3, "{keys}");

    // An existing user is updated, not re-created.
    let g = cfg(
        dir.path(),
        "update.cfg",
        "#cloud-config\nusers:\n  - name: web\n    shell: /bin/ash\n",
    );
    cloudconfig::apply_files(&guest, &[g], Some(OsType::Busybox))
        .await
        .unwrap();
    let passwd = sh(&client, &name, "grep '^web:' /etc/passwd").await;
    assert_eq!(passwd, "web:x:1100:1100:Web owner:/home/web:/bin/ash\n");
}

#[tokio::test]
async fn failing_runcmd_reports_argv_exit_code_and_stderr_and_stops() {
    let cleanup = LxdCleanup::new();
    let (client, name) = container(&cleanup).await;
    let dir = tempfile::tempdir().unwrap();
    let f = cfg(
        dir.path(),
        "fail.cfg",
        "#cloud-config\nruncmd:\n  - touch /tmp/first\n  - [sh, -c, 'echo broken >&2; exit 7']\n  - touch /tmp/never\n",
    );
    let guest = LxdGuest::new(&client, &name);
    let err = cloudconfig::apply_files(&guest, std::slice::from_ref(&f), Some(OsType::Busybox))
        .await
        .expect_err("the second command fails");
    match &err {
        CloudConfigError::Command {
            key,
            argv,
            exit_code,
            stderr,
            file,
        } => {
            assert_eq!(file, &f);
            assert_eq!(key, "runcmd[1]");
            assert_eq!(argv, &["sh", "-c", "echo broken >&2; exit 7"]);
            assert_eq!(*exit_code, 7);
            assert_eq!(stderr, "broken");
        }
        other => panic!("expected a command failure, got {other}"),
    }
    assert!(err.to_string().contains("exited with 7: broken"), "{err}");
    assert_eq!(sh(&client, &name, "ls /tmp").await, "first\n");

    // A command that does not exist is a failure too (exit 127), and a package list on busybox is
    // refused before anything runs.
    let g = cfg(
        dir.path(),
        "missing.cfg",
        "#cloud-config\nruncmd:\n  - [no-such-command]\n",
    );
    match cloudconfig::apply_files(&guest, &[g], Some(OsType::Busybox)).await {
        Err(CloudConfigError::Command { exit_code, .. }) => assert_eq!(exit_code, 127),
        other => panic!("expected exit 127, got {other:?}"),
    }
    let h = cfg(
        dir.path(),
        "pkgs.cfg",
        "#cloud-config\nwrite_files: [{path: /tmp/x, content: x}]\npackages: [curl]\n",
    );
    let e = cloudconfig::apply_files(&guest, &[h], None)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .ends_with("packages: busybox has no package manager"),
        "{e}"
    );
    assert_eq!(sh(&client, &name, "ls /tmp").await, "first\n");
}

#[tokio::test]
async fn example_cloud_configs_apply_twice_to_the_same_state_with_timezone() {
    let cleanup = LxdCleanup::new();
    let (client, name) = container(&cleanup).await;
    let dir = tempfile::tempdir().unwrap();
    // The test image has no tzdata: give it one zone file first.
    let tz = cfg(
        dir.path(),
        "tz.cfg",
        "#cloud-config\nwrite_files:\n  - path: /usr/share/zoneinfo/Europe/Athens\n    content: TZif-fake\ntimezone: Europe/Athens\n",
    );
    let files = vec![
        repo("configs/cloud/base.cfg"),
        repo("configs/cloud/site.cfg"),
        tz,
    ];
    let guest = LxdGuest::new(&client, &name);
    let state = |c: &Client, n: &str| {
        let (c, n) = (c.clone(), n.to_string());
        async move {
            sh(
                &c,
                &n,
                "cat /etc/passwd /etc/group /etc/shadow /etc/profile /etc/motd /etc/site-release /etc/site-banner \
                 /var/www/html/index.html /etc/timezone; readlink /etc/localtime; \
                 stat -c '%n %u %g %a' /etc/reroot/role /etc/site-release /var/www/html/index.html",
            )
            .await
        }
    };
    cloudconfig::apply_files(&guest, &files, Some(OsType::Busybox))
        .await
        .unwrap_or_else(|e| panic!("first apply: {e}"));
    let first = state(&client, &name).await;
    assert!(first.contains("site release 1\nHello world\n"), "{first}");
    assert!(
        first.contains("Europe/Athens\n/usr/share/zoneinfo/Europe/Athens\n"),
        "{first}"
    );
    assert!(first.contains("/etc/reroot/role 0 0 640"), "{first}");
    assert!(first.contains("/etc/site-release 1100 "), "{first}");
    cloudconfig::apply_files(&guest, &files, Some(OsType::Busybox))
        .await
        .unwrap_or_else(|e| panic!("second apply: {e}"));
    assert_eq!(state(&client, &name).await, first);

    // The guest itself: absent files read as None, the OS type is detected.
    assert_eq!(guest.read_file("/etc/no-such-file").await.unwrap(), None);
    assert_eq!(
        cloudconfig::detect_ostype(&guest).await.unwrap(),
        OsType::Busybox
    );
}

#[tokio::test]
async fn cli_prints_plans_and_applies() {
    let cleanup = LxdCleanup::new();
    let (client, name) = container(&cleanup).await;
    let dir = tempfile::tempdir().unwrap();
    let f = cfg(dir.path(), "cli.cfg", "#cloud-config\nwrite_files:\n  - path: /etc/from-cli\n    content: yes\nruncmd:\n  - [sh, -c, 'echo hi']\n");
    let bin = env!("CARGO_BIN_EXE_reroot");
    let print = std::process::Command::new(bin)
        .args(["cloudconfig", "print", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(print.status.success());
    let text = String::from_utf8_lossy(&print.stdout);
    assert!(
        text.contains("write /etc/from-cli (root:root 0644, 3 bytes)"),
        "{text}"
    );
    assert!(text.contains("runcmd[0]: run sh -c 'echo hi'"), "{text}");
    let print = std::process::Command::new(bin)
        .args(["--json", "cloudconfig", "print", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(print.status.success());
    let v: serde_json::Value = serde_json::from_slice(&print.stdout).unwrap();
    assert_eq!(v["schema"], "reroot.cloudconfig-plan/1");
    assert!(v["plan"].is_object() || v["plan"].is_array(), "{v}");
    let socket = common::lxd_socket();
    let apply = |json: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(["--socket", socket.to_str().unwrap()])
            .args(json)
            .args(["cloudconfig", "apply", &name, f.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    apply(&[]);
    assert_eq!(sh(&client, &name, "cat /etc/from-cli").await, "yes");
    // Again, as JSON: converged, nothing changed.
    let apply = apply(&["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&apply.stdout).unwrap();
    assert_eq!(v["schema"], "reroot.cloudconfig-apply/1");
    let outcomes = v["outcomes"].as_array().unwrap();
    assert!(!outcomes.is_empty(), "{v}");
    let file = outcomes
        .iter()
        .find(|o| o["what"].as_str().unwrap_or("").contains("/etc/from-cli"))
        .unwrap_or_else(|| panic!("the file's outcome: {v}"));
    assert_eq!(
        file["changed"], false,
        "a second apply rewrites nothing: {v}"
    );
}
