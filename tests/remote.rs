//! Integration tests of remotes over HTTPS, against the testbed's real LXD listening on
//! 127.0.0.1:8443 and its real Incus on 127.0.0.1:8444 (scripts/testbed.sh, block
//! "remote-https"), with no mocks.
//!
//! The testbed leaves under `$REROOT_TESTBED_DIR/remote` (default /var/lib/reroot-testbed) an
//! lxc client configuration naming the remotes `loopback` (LXD) and `incus-loopback` (Incus),
//! a trusted and an untrusted client
//! certificate. The refused cases copy that configuration and change one file. They FAIL when
//! the testbed or the daemon is absent; they never skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{lxd_options, unique_name, LxdCleanup, LXD_LOCK};
use reroot::lxd::{
    Client, ConfigDir, ExecRequest, FileOptions, NewInstance, ProfilePut, Remote, RemoteError,
    ServerKind, Stop, Tool,
};

const REROOT: &str = env!("CARGO_BIN_EXE_reroot");
const ADDR: &str = "https://127.0.0.1:8443";

/// The testbed's LXD over its socket: the daemon behind the remote `loopback`, whichever
/// daemon the rest of the suite runs against (`REROOT_TEST_DAEMON`).
async fn local_lxd() -> Client {
    let options = reroot::lxd::ConnectOptions {
        socket: Some(PathBuf::from("/var/lib/lxd/unix.socket")),
        ..lxd_options()
    };
    match Client::connect(options).await {
        Ok(c) => c,
        Err(e) => panic!("LXD is not running or not answering ({e}): run scripts/testbed.sh"),
    }
}

/// The testbed's directory of remote files. Panics when the testbed did not make it.
fn remote_dir() -> PathBuf {
    let base = std::env::var_os("REROOT_TESTBED_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/reroot-testbed"));
    let dir = base.join("remote");
    for f in [
        "lxc-conf/config.yml",
        "lxc-conf/client.crt",
        "lxc-conf/client.key",
        "lxc-conf/servercerts/loopback.crt",
        "untrusted/client.crt",
        "untrusted/client.key",
    ] {
        assert!(
            dir.join(f).is_file(),
            "{} is missing: run scripts/testbed.sh (it enables LXD over HTTPS and writes it)",
            dir.join(f).display()
        );
    }
    dir
}

fn conf_dir() -> ConfigDir {
    ConfigDir::new(remote_dir().join("lxc-conf"), Tool::Lxc)
}

/// A copy of the testbed's client configuration in a temporary directory, to change one file.
fn conf_copy() -> (tempfile::TempDir, ConfigDir) {
    let src = remote_dir().join("lxc-conf");
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("servercerts")).unwrap();
    for f in [
        "config.yml",
        "client.crt",
        "client.key",
        "servercerts/loopback.crt",
    ] {
        std::fs::copy(src.join(f), t.path().join(f)).unwrap();
    }
    let d = ConfigDir::new(t.path(), Tool::Lxc);
    (t, d)
}

async fn connect(dir: &ConfigDir) -> reroot::lxd::Result<Client> {
    let remote = Remote::find_in(std::slice::from_ref(dir), "loopback")
        .unwrap_or_else(|e| panic!("the testbed's remote loopback cannot be read: {e}"));
    Client::connect_remote(&remote, lxd_options()).await
}

/// What the daemon holds, read over the unix socket: to show a refused case changed nothing.
async fn daemon_state(lxd: &Client) -> (Vec<String>, Vec<String>) {
    let mut instances = lxd.list_instance_names().await.unwrap();
    instances.sort();
    let mut profiles: Vec<String> = lxd
        .list_profiles()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    profiles.sort();
    (instances, profiles)
}

#[tokio::test]
async fn trusted_client_reads_and_changes_through_the_remote() {
    let _lock = LXD_LOCK.lock().await;
    let local = local_lxd().await;
    let remote = connect(&conf_dir())
        .await
        .unwrap_or_else(|e| panic!("the trusted client cannot use remote loopback: {e}"));
    assert_eq!(remote.remote(), Some(("loopback", ADDR)));
    assert_eq!(remote.address(), format!("remote loopback ({ADDR})"));
    assert_eq!(remote.server_kind(), ServerKind::Lxd);
    assert_eq!(remote.server_info().auth, "trusted");
    assert_eq!(remote.server_version(), local.server_version());
    assert_eq!(
        remote.server_info().environment.server_name,
        local.server_info().environment.server_name
    );

    let mut over_https = remote.list_instance_names().await.unwrap();
    let mut over_unix = local.list_instance_names().await.unwrap();
    over_https.sort();
    over_unix.sort();
    assert_eq!(over_https, over_unix);

    // A profile and an instance made through the remote are seen over the socket, and deleted
    // through the remote they are gone.
    let cleanup = LxdCleanup::new();
    let profile = cleanup.profile(&unique_name("remote"));
    let put = ProfilePut {
        description: "made over HTTPS".into(),
        ..ProfilePut::default()
    };
    remote.create_profile(&profile, &put).await.unwrap();
    assert_eq!(
        local.get_profile(&profile).await.unwrap().value.description,
        "made over HTTPS"
    );
    let instance = cleanup.instance(&unique_name("remote"));
    remote
        .create_instance(&NewInstance::from_image_alias(&instance, "reroot-old"))
        .await
        .unwrap();
    assert!(local.instance_exists(&instance).await.unwrap());
    assert!(remote.delete_instance(&instance).await.unwrap());
    assert!(!local.instance_exists(&instance).await.unwrap());
    assert!(remote.delete_profile(&profile).await.unwrap());
    assert!(local.get_profile(&profile).await.is_err());

    // One fresh TCP connection and TLS handshake per request: what it costs, for the record.
    let n = 20;
    let t = Instant::now();
    for _ in 0..n {
        remote.fetch_server_info().await.unwrap();
    }
    let https = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        local.fetch_server_info().await.unwrap();
    }
    let unix = t.elapsed() / n;
    eprintln!("GET /1.0: {https:?} over HTTPS (new connection each), {unix:?} over the socket");
    assert!(https < Duration::from_secs(2), "{https:?} per request");
}

/// What a rebuild does inside an instance, over HTTPS: start, exec with recorded output, a
/// binary file pushed and read back byte for byte, stop.
#[tokio::test]
async fn exec_and_files_through_the_remote() {
    let _lock = LXD_LOCK.lock().await;
    let remote = connect(&conf_dir()).await.unwrap();
    let cleanup = LxdCleanup::new();
    let name = cleanup.instance(&unique_name("remote"));
    remote
        .create_instance(&NewInstance::from_image_alias(&name, "reroot-old"))
        .await
        .unwrap();
    assert!(remote.start_instance(&name).await.unwrap());
    let out = remote
        .exec(&name, &ExecRequest::new(&["cat", "/etc/template-version"]))
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout_text().trim(), "old");
    let content: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    let opts = FileOptions::new().owner(1000, 1001).mode(0o640);
    remote
        .push_file(&name, "/root/data.bin", content.clone(), &opts)
        .await
        .unwrap();
    let got = remote.get_file(&name, "/root/data.bin").await.unwrap();
    assert_eq!(got.data, content, "byte-for-byte over HTTPS");
    assert_eq!((got.uid, got.gid, got.mode), (1000, 1001, 0o640));
    assert!(remote.stop_instance(&name, Stop::Force).await.unwrap());
    assert!(remote.delete_instance(&name).await.unwrap());
}

#[tokio::test]
async fn untrusted_certificate_is_refused_and_changes_nothing() {
    let _lock = LXD_LOCK.lock().await;
    let local = local_lxd().await;
    let before = daemon_state(&local).await;
    let (_t, dir) = conf_copy();
    let untrusted = remote_dir().join("untrusted");
    for f in ["client.crt", "client.key"] {
        std::fs::copy(untrusted.join(f), dir.path.join(f)).unwrap();
    }
    let err = connect(&dir).await.unwrap_err();
    assert!(err.is_untrusted(), "{err:?}");
    assert!(!err.is_outcome_unknown(), "{err:?}");
    let s = err.to_string();
    for part in [
        "remote \"loopback\"",
        ADDR,
        "does not trust",
        &dir.path.join("client.crt").display().to_string(),
        "\"untrusted\"",
        "lxc config trust add",
        "nothing was changed",
    ] {
        assert!(s.contains(part), "{part:?} not in: {s}");
    }
    assert_eq!(daemon_state(&local).await, before);
}

#[tokio::test]
async fn wrong_pinned_certificate_is_refused_and_changes_nothing() {
    let _lock = LXD_LOCK.lock().await;
    let local = local_lxd().await;
    let before = daemon_state(&local).await;
    let (_t, dir) = conf_copy();
    // Any other certificate as the pin: the untrusted client's.
    let pinned = dir.path.join("servercerts/loopback.crt");
    std::fs::copy(remote_dir().join("untrusted/client.crt"), &pinned).unwrap();
    let err = connect(&dir).await.unwrap_err();
    assert!(err.is_certificate_mismatch(), "{err:?}");
    assert!(!err.is_transport() && !err.is_outcome_unknown(), "{err:?}");
    let s = err.to_string();
    for part in [
        "remote \"loopback\"",
        ADDR,
        "not the pinned one",
        &pinned.display().to_string(),
        "SHA-256 fingerprint",
        "nothing was sent",
    ] {
        assert!(s.contains(part), "{part:?} not in: {s}");
    }
    assert_eq!(daemon_state(&local).await, before);
}

#[tokio::test]
async fn remote_that_does_not_listen_is_a_transport_error() {
    let (_t, dir) = conf_copy();
    let config = dir.config_file();
    let text = std::fs::read_to_string(&config).unwrap();
    // Port 9 (discard) on the loopback: nothing listens there on the testbed.
    std::fs::write(&config, text.replace("127.0.0.1:8443", "127.0.0.1:9")).unwrap();
    let err = connect(&dir).await.unwrap_err();
    assert!(err.is_transport(), "{err:?}");
    let s = err.to_string();
    assert!(
        s.contains("remote \"loopback\"") && s.contains("https://127.0.0.1:9"),
        "{s}"
    );
}

#[test]
fn unknown_remote_names_the_files_read_and_the_known_remotes() {
    let dir = conf_dir();
    let err = Remote::find_in(std::slice::from_ref(&dir), "nowhere").unwrap_err();
    assert!(matches!(err, RemoteError::Unknown { .. }), "{err:?}");
    let s = err.to_string();
    assert!(s.contains("\"nowhere\""), "{s}");
    assert!(s.contains(&dir.config_file().display().to_string()), "{s}");
    assert!(s.contains("loopback"), "{s}");
}

/// `reroot` itself, with `LXD_CONF` pointing at `conf` and no incus configuration.
fn reroot(conf: &Path, args: &[&str]) -> std::process::Output {
    Command::new(REROOT)
        .args(args)
        .env("LXD_CONF", conf)
        .env("INCUS_CONF", conf.join("no-incus"))
        .env_remove("REROOT_SOCKET")
        .env_remove("REROOT_REMOTE")
        .output()
        .expect("run reroot")
}

#[tokio::test]
async fn server_command_says_which_remote_answers() {
    let _lock = LXD_LOCK.lock().await;
    let conf = remote_dir().join("lxc-conf");
    let out = reroot(&conf, &["--remote", "loopback", "server"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("server:     LXD "), "{stdout}");
    assert!(
        stdout.contains(&format!("remote:     loopback at {ADDR}")),
        "{stdout}"
    );

    // The same through the environment, as JSON.
    let out = Command::new(REROOT)
        .args(["--json", "server"])
        .env("LXD_CONF", &conf)
        .env("INCUS_CONF", conf.join("no-incus"))
        .env("REROOT_REMOTE", "loopback")
        .env_remove("REROOT_SOCKET")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "reroot.server/1");
    assert_eq!(v["remote"]["name"], "loopback");
    assert_eq!(v["remote"]["addr"], ADDR);

    let out = reroot(&conf, &["--remote", "nowhere", "server"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown remote \"nowhere\"") && stderr.contains("loopback"),
        "{stderr}"
    );

    let out = reroot(
        &conf,
        &[
            "--remote",
            "loopback",
            "--socket",
            "/var/lib/lxd/unix.socket",
            "server",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

/// The testbed's Incus, over its socket: the daemon behind the remote `incus-loopback`.
async fn local_incus() -> Client {
    let options = reroot::lxd::ConnectOptions {
        socket: Some(PathBuf::from("/var/lib/incus/unix.socket")),
        ..lxd_options()
    };
    match Client::connect(options).await {
        Ok(c) => c,
        Err(e) => panic!("Incus is not running or not answering ({e}): run scripts/testbed.sh"),
    }
}

#[tokio::test]
async fn incus_over_https_trusts_the_testbed_client_and_refuses_another() {
    let _lock = LXD_LOCK.lock().await;
    let local = local_incus().await;
    let dir = conf_dir();
    assert!(
        dir.path.join("servercerts/incus-loopback.crt").is_file(),
        "run scripts/testbed.sh: it serves Incus over HTTPS too"
    );
    let remote = Remote::find_in(std::slice::from_ref(&dir), "incus-loopback")
        .unwrap_or_else(|e| panic!("the testbed's remote incus-loopback cannot be read: {e}"));
    let incus = Client::connect_remote(&remote, lxd_options())
        .await
        .unwrap_or_else(|e| panic!("the trusted client cannot use remote incus-loopback: {e}"));
    assert_eq!(incus.server_kind(), ServerKind::Incus);
    assert_eq!(incus.server_info().auth, "trusted");
    assert_eq!(
        incus.server_info().environment.certificate_fingerprint,
        local.server_info().environment.certificate_fingerprint
    );
    assert!(incus.on_this_host(), "a loopback remote is on this host");
    let mut over_https = incus.list_instance_names().await.unwrap();
    let mut over_unix = local.list_instance_names().await.unwrap();
    over_https.sort();
    over_unix.sort();
    assert_eq!(over_https, over_unix);

    // The untrusted certificate: refused before any change.
    let before = daemon_state(&local).await;
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("servercerts")).unwrap();
    std::fs::copy(dir.path.join("config.yml"), t.path().join("config.yml")).unwrap();
    std::fs::copy(
        dir.path.join("servercerts/incus-loopback.crt"),
        t.path().join("servercerts/incus-loopback.crt"),
    )
    .unwrap();
    for f in ["client.crt", "client.key"] {
        std::fs::copy(remote_dir().join("untrusted").join(f), t.path().join(f)).unwrap();
    }
    let copy = ConfigDir::new(t.path(), Tool::Lxc);
    let remote = Remote::find_in(std::slice::from_ref(&copy), "incus-loopback").unwrap();
    let err = Client::connect_remote(&remote, lxd_options())
        .await
        .unwrap_err();
    assert!(err.is_untrusted(), "{err:?}");
    let s = err.to_string();
    assert!(
        s.contains("incus-loopback") && s.contains("does not trust"),
        "{s}"
    );
    assert_eq!(daemon_state(&local).await, before);
}

/// `image: REMOTE:ALIAS`: the daemon under test pulls the image from the other daemon of the
/// testbed over HTTPS (it serves `reroot-old` publicly under an alias only it has), and what it
/// could not pull is refused before anything is created, naming the file and the key.
#[tokio::test]
async fn a_rebuild_pulls_an_image_from_the_other_daemon_and_refuses_what_it_cannot() {
    let _lock = LXD_LOCK.lock().await;
    let lxd = common::lxd_client().await;
    let (remote, alias, server) = match common::daemon() {
        common::Daemon::Lxd => (
            "incus-loopback",
            "reroot-served-by-incus",
            local_incus().await,
        ),
        common::Daemon::Incus => ("loopback", "reroot-served-by-lxc", local_lxd().await),
    };
    assert!(
        lxd.get_image_alias(alias).await.is_err(),
        "the daemon under test must not have {alias} itself, or a pull would prove nothing"
    );
    let served = server.get_image_alias(alias).await.unwrap().target;
    let cleanup = LxdCleanup::new();
    let name = cleanup.instance(&unique_name("img"));
    let dir = tempfile::tempdir().unwrap();
    // The testbed's client configuration, with the public image server every lxc has
    // (never reached: reroot refuses it before connecting).
    let conf = dir.path().join("lxc-conf");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(remote_dir().join("lxc-conf"))
        .arg(&conf)
        .status()
        .unwrap();
    assert!(copied.success());
    let yml = std::fs::read_to_string(conf.join("config.yml")).unwrap();
    std::fs::write(
        conf.join("config.yml"),
        yml.replacen(
            "remotes:\n",
            "remotes:\n  images:\n    addr: https://images.linuxcontainers.org\n    \
             protocol: simplestreams\n    public: true\n",
            1,
        ),
    )
    .unwrap();
    let journal = dir.path().join("journal");
    let config = dir.path().join(format!("{name}.yaml"));
    let rebuild = |image: &str| {
        std::fs::write(
            &config,
            format!("#lxdops\nostype: busybox\nimage: {image}\nstop-timeout: 0\n"),
        )
        .unwrap();
        let out = common::reroot_command()
            .arg("--journal")
            .arg(&journal)
            .arg("rebuild")
            .arg(&config)
            .env("LXD_CONF", &conf)
            .env("INCUS_CONF", conf.join("no-incus"))
            .env_remove("REROOT_REMOTE")
            .output()
            .expect("run reroot");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), printed)
    };

    for (image, says) in [
        (
            "nowhere:reroot-old".to_string(),
            "unknown remote \"nowhere\"",
        ),
        // The lxops tutorial's `images:alpine/3.23`: an image server, not a daemon.
        (
            "images:alpine/3.23".to_string(),
            "copy it to the daemon first (`incus image copy images:alpine/3.23 local: --alias \
             alpine/3.23`",
        ),
        (
            format!("{remote}:no-such-alias"),
            "has no image alias no-such-alias",
        ),
        // reroot-new is private on both daemons: a daemon pulling it would not see it.
        (format!("{remote}:reroot-new"), "is not public"),
    ] {
        let (ok, printed) = rebuild(&image);
        assert!(!ok, "image: {image} must be refused:\n{printed}");
        let key = format!("{}: image: {image}: ", config.display());
        assert!(
            printed.contains(&key) && printed.contains(says),
            "image: {image}: expected `{key}...{says}`:\n{printed}"
        );
        assert!(
            !lxd.instance_exists(&name).await.unwrap(),
            "image: {image}: refused, yet {name} was created"
        );
    }
    assert!(
        !journal.exists(),
        "refused before any run was recorded, yet the journal was made"
    );

    let (ok, printed) = rebuild(&format!("{remote}:{alias}"));
    assert!(ok, "{printed}");
    let inst = lxd.get_instance(&name).await.unwrap().value;
    assert!(inst.is_running(), "{name} is {}", inst.status);
    assert_eq!(
        inst.config.get("volatile.base_image"),
        Some(&served),
        "{name} must be built from the image {alias} names on {remote}"
    );
    assert_eq!(
        inst.config.get("user.reroot.source").map(String::as_str),
        Some(format!("image:{remote}:{alias}").as_str()),
        "the source as the config writes it"
    );

    // Built from that very image already: a second rebuild has nothing to do.
    let (ok, printed) = rebuild(&format!("{remote}:{alias}"));
    assert!(ok && printed.contains("skipped 1 instance"), "{printed}");
    common::remove_instance(&lxd, &name).await.unwrap();
}
