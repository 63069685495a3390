//! Unit tests of cloud-config parsing, planning and applying with an in-memory guest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::*;

/// Content, uid, gid, mode.
type FakeFile = (Vec<u8>, u32, u32, u32);

/// A container in memory: files with owner and mode, directories, and a log of commands.
#[derive(Default)]
struct FakeGuest {
    files: Mutex<BTreeMap<String, FakeFile>>,
    dirs: Mutex<BTreeMap<String, (u32, u32, u32)>>,
    execs: Mutex<Vec<Vec<String>>>,
    /// Every file request, as "read PATH", "write PATH" or "mkdir PATH".
    requests: Mutex<Vec<String>>,
}

impl FakeGuest {
    fn busybox() -> Self {
        let g = FakeGuest::default();
        g.put("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
        g.put("/etc/group", "root:x:0:\n");
        g.put("/etc/shadow", "root:*:19000:0:99999:7:::\n");
        for d in ["/", "/etc", "/root", "/home", "/tmp"] {
            g.dirs.lock().unwrap().insert(d.into(), (0, 0, 0o755));
        }
        g
    }
    fn put(&self, path: &str, text: &str) {
        self.files
            .lock()
            .unwrap()
            .insert(path.into(), (text.as_bytes().to_vec(), 0, 0, 0o644));
    }
    fn text(&self, path: &str) -> String {
        String::from_utf8(
            self.files
                .lock()
                .unwrap()
                .get(path)
                .map(|f| f.0.clone())
                .unwrap_or_default(),
        )
        .unwrap()
    }
    fn meta(&self, path: &str) -> Option<(u32, u32, u32)> {
        self.files
            .lock()
            .unwrap()
            .get(path)
            .map(|f| (f.1, f.2, f.3))
    }
    fn commands(&self) -> Vec<String> {
        self.execs
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.join(" "))
            .collect()
    }
}

impl Guest for FakeGuest {
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>, GuestError> {
        self.requests.lock().unwrap().push(format!("read {path}"));
        Ok(self.files.lock().unwrap().get(path).map(|f| f.0.clone()))
    }
    async fn write_file(
        &self,
        path: &str,
        content: &[u8],
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> Result<(), GuestError> {
        self.requests.lock().unwrap().push(format!("write {path}"));
        let parent = Path::new(path)
            .parent()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        if !self.dirs.lock().unwrap().contains_key(&parent) {
            return Err(GuestError(format!("no directory {parent}")));
        }
        self.files
            .lock()
            .unwrap()
            .insert(path.into(), (content.to_vec(), uid, gid, mode));
        Ok(())
    }
    async fn mkdir_p(&self, path: &str, uid: u32, gid: u32, mode: u32) -> Result<(), GuestError> {
        self.requests.lock().unwrap().push(format!("mkdir {path}"));
        let mut p = PathBuf::from("/");
        for c in Path::new(path).components().skip(1) {
            p.push(c);
            self.dirs
                .lock()
                .unwrap()
                .entry(p.to_str().unwrap().into())
                .or_insert((uid, gid, mode));
        }
        Ok(())
    }
    async fn exec(&self, argv: &[String]) -> Result<ExecOutput, GuestError> {
        self.execs.lock().unwrap().push(argv.to_vec());
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        let code = match a.as_slice() {
            ["sh", "-c", "test -d \"$1\"", "sh", dir] => {
                i32::from(!self.dirs.lock().unwrap().contains_key(*dir))
            }
            ["sh", "-c", script] if script.contains("exit 3") => {
                return Ok(ExecOutput {
                    exit_code: 3,
                    stdout: Vec::new(),
                    stderr: b"it broke\n".to_vec(),
                })
            }
            _ => 0,
        };
        Ok(ExecOutput {
            exit_code: code,
            ..Default::default()
        })
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn cc(text: &str) -> CloudConfig {
    match parse_str(Path::new("test.cfg"), text) {
        Ok(c) => c,
        Err(e) => panic!("parse failed:\n{e}"),
    }
}

fn parse_err(text: &str) -> String {
    parse_str(Path::new("test.cfg"), text)
        .unwrap_err()
        .to_string()
}

const FULL: &str = "#cloud-config
runcmd:
  - echo last
write_files:
  - path: /etc/late
    content: late
    defer: true
  - path: /etc/early
    content: early
timezone: Europe/Athens
users:
  - name: alice
packages: [curl]
";

fn kinds(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| match &s.action {
            Action::WriteFile(w) => format!("file {}", w.path),
            Action::Run { argv, .. } => format!("run {}", argv.join(" ")),
            Action::User(u) => format!("user {}", u.name),
            Action::Timezone { zone } => format!("tz {zone}"),
        })
        .collect()
}

#[test]
fn plan_order_is_files_packages_users_timezone_deferred_runcmd() {
    let plan = plan(&[cc(FULL)], Some(OsType::Alpine)).unwrap();
    assert_eq!(
        kinds(&plan),
        [
            "file /etc/early",
            "run apk add --no-progress curl",
            "user alice",
            "tz Europe/Athens",
            "file /etc/late",
            "run sh -c echo last",
        ]
    );
}

#[test]
fn debian_updates_package_lists_once() {
    let a = cc("#cloud-config\npackages: [nginx]\n");
    let b = cc("#cloud-config\npackages: [curl, git]\n");
    let p = plan(&[a, b], Some(OsType::Debian)).unwrap();
    assert_eq!(
        kinds(&p),
        [
            "run apt-get update",
            "run env DEBIAN_FRONTEND=noninteractive apt-get -y install nginx",
            "run env DEBIAN_FRONTEND=noninteractive apt-get -y install curl git",
        ]
    );
}

#[test]
fn os_dependent_sections_need_a_capable_os() {
    let e = plan(
        &[cc("#cloud-config\npackages: [curl]\n")],
        Some(OsType::Busybox),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "test.cfg: packages: busybox has no package manager"
    );
    let e = plan(&[cc("#cloud-config\nusers: [{name: bob}]\n")], None).unwrap_err();
    assert!(e.to_string().contains("users need an OS type"), "{e}");
    // Files and commands need none.
    assert!(plan(&[cc("#cloud-config\nruncmd: [ls]\n")], None).is_ok());
}

#[test]
fn parse_errors_name_file_and_key() {
    assert_eq!(
        parse_err("#cloud-config\nwrite-files: []\n"),
        "test.cfg: write-files: not a cloud-config key: lxdops ignored it without a word \
         (those files were never written); the key is `write_files`"
    );
    assert_eq!(
        parse_err("#cloud-config\nwrite_files:\n  - path: /x\n    mode: '0600'\n"),
        "test.cfg: write_files[0].mode: not a cloud-config key: lxdops ignored it without a word \
         (the file got the default permissions 0644); the key is `permissions`"
    );
    assert!(
        parse_err("#cloud-config\nusers:\n  - name: bob\n    ssh-authorized-keys: [k]\n")
            .contains("ssh-authorized-keys: not a cloud-config key: lxdops ignored it without a word (the setting never took effect); the key is `ssh_authorized_keys`")
    );
    // A plain typo is still a typo, with its suggestion.
    assert_eq!(
        parse_err("#cloud-config\nwrite_filez: []\n"),
        "test.cfg: unknown key `write_filez` (did you mean `write_files`?)"
    );
    assert!(parse_err(
        "#cloud-config\nwrite_files:\n  - path: /x\n    encoding: b46\n    content: eA==\n"
    )
    .contains("write_files[0].encoding: unknown encoding `b46` (did you mean `b64`?)"));
    assert!(parse_err(
        "#cloud-config\nwrite_files:\n  - path: /x\n    encoding: b64\n    content: '!!'\n"
    )
    .contains("write_files[0].content: content is not valid base64"));
    assert!(
        parse_err("#cloud-config\nwrite_files:\n  - path: /x\n    permissions: '0999'\n")
            .contains("write_files[0].permissions: `0999` is not an octal mode")
    );
    assert!(
        parse_err("#cloud-config\nwrite_files:\n  - path: relative\n")
            .contains("must be an absolute path")
    );
    assert!(
        parse_err("#cloud-config\nusers:\n  - name: bob\n    sudoo: true\n")
            .contains("`users[0].sudoo` (did you mean `sudo`?)")
    );
    assert!(parse_err("#cloud-config\nusers:\n  - default\n")
        .contains("`default` user is not supported"));
    assert!(
        parse_err("#cloud-config\nruncmd:\n  - {a: b}\n").contains("runcmd[0]: expected a string")
    );
    assert!(parse_err("packages: []\n").contains("first line must be `#cloud-config`"));
    assert!(parse_err("#cloud-config\ntimezone: ../../etc/passwd\n").contains("timezone"));
}

#[test]
fn encodings_and_fields_decode() {
    let c = cc("#cloud-config
write_files:
  - path: /a
    encoding: base64
    content: aGVsbG8K
  - path: /b
    encoding: gz+b64
    content: H4sIAAAAAAAAA/NIzcnJVyjPL8pJ4QIA1eA5twwAAAA=
  - path: /c
    permissions: 0600
    owner: web
  - path: /d
    owner: web:www
users:
  - name: bob
    groups: 'a, b,a'
    sudo: [ALL=(ALL) ALL]
    lock_passwd: false
runcmd:
  - [ls, -l]
  - ls -l
");
    assert_eq!(c.write_files[0].content, b"hello\n");
    assert_eq!(c.write_files[1].content, b"Hello world\n");
    assert_eq!(c.write_files[0].mode, 0o644);
    assert_eq!(c.write_files[2].mode, 0o600);
    assert_eq!(
        (
            c.write_files[2].user.as_str(),
            c.write_files[2].group.as_deref()
        ),
        ("web", None)
    );
    assert_eq!(c.write_files[3].group.as_deref(), Some("www"));
    assert_eq!(c.users[0].groups, ["a", "b"]);
    assert_eq!(c.users[0].sudo, ["ALL=(ALL) ALL"]);
    assert!(!c.users[0].lock_passwd);
    assert_eq!(c.runcmd[0], ["ls", "-l"]);
    assert_eq!(c.runcmd[1], ["sh", "-c", "ls -l"]);
}

const USERS: &str = "#cloud-config
write_files:
  - path: /etc/sudoers.d/README
    content: rules
  - path: /etc/profile
    append: true
    content: |
      export A=1
users:
  - name: web
    uid: 1100
    gecos: Web owner
    groups: [www-data]
    sudo: true
    ssh_authorized_keys: [ssh-ed25519 AAAA key1]
write_files:
  - path: /home/web/hello
    owner: web:www-data
    permissions: '0600'
    content: hi
    defer: true
";

#[test]
fn duplicate_yaml_keys_are_rejected() {
    assert!(parse_str(Path::new("t.cfg"), USERS).is_err());
}

const CONVERGE: &str = "#cloud-config
write_files:
  - path: /etc/sudoers.d/README
    content: rules
  - path: /etc/profile
    append: true
    content: |
      export A=1
  - path: /home/web/hello
    owner: web:www-data
    permissions: '0600'
    content: hi
    defer: true
users:
  - name: web
    uid: 1100
    gecos: Web owner
    groups: [www-data]
    sudo: true
    ssh_authorized_keys: [ssh-ed25519 AAAA key1]
runcmd:
  - echo done
";

#[test]
fn busybox_users_files_and_reapply_converge() {
    let g = FakeGuest::busybox();
    g.put("/etc/profile", "export PATH=/bin\n");
    let p = plan(&[cc(CONVERGE)], Some(OsType::Busybox)).unwrap();
    let first = block_on(apply(&g, &p)).unwrap();
    assert!(first.iter().all(|o| o.changed), "{first:?}");
    assert!(g
        .text("/etc/passwd")
        .contains("\nweb:x:1100:1100:Web owner:/home/web:/bin/sh\n"));
    assert!(
        g.text("/etc/group").contains("www-data:x:1000:web\n"),
        "{}",
        g.text("/etc/group")
    );
    assert!(g.text("/etc/group").contains("web:x:1100:\n"));
    assert!(g.text("/etc/shadow").contains("web:*:"));
    assert_eq!(g.text("/etc/sudoers.d/web"), "web ALL=(ALL) NOPASSWD:ALL\n");
    assert_eq!(g.meta("/etc/sudoers.d/web"), Some((0, 0, 0o440)));
    assert_eq!(
        g.text("/home/web/.ssh/authorized_keys"),
        "ssh-ed25519 AAAA key1\n"
    );
    assert_eq!(
        g.meta("/home/web/.ssh/authorized_keys"),
        Some((1100, 1100, 0o600))
    );
    assert_eq!(
        g.dirs.lock().unwrap().get("/home/web/.ssh"),
        Some(&(1100, 1100, 0o700))
    );
    assert_eq!(g.meta("/home/web/hello"), Some((1100, 1000, 0o600)));
    assert_eq!(g.text("/etc/profile"), "export PATH=/bin\nexport A=1\n");

    // Someone adds a key by hand; a second apply keeps it and changes nothing else.
    let keys = "ssh-ed25519 AAAA key1\nssh-rsa BBBB manual\n";
    g.put("/home/web/.ssh/authorized_keys", keys);
    let snapshot = |g: &FakeGuest| {
        (
            g.text("/etc/passwd"),
            g.text("/etc/group"),
            g.text("/etc/shadow"),
            g.text("/etc/profile"),
        )
    };
    let before = snapshot(&g);
    let second = block_on(apply(&g, &p)).unwrap();
    assert_eq!(snapshot(&g), before);
    assert_eq!(g.text("/home/web/.ssh/authorized_keys"), keys);
    let changed: Vec<&str> = second
        .iter()
        .filter(|o| o.changed)
        .map(|o| o.what.as_str())
        .collect();
    assert_eq!(changed, ["runcmd[0]: sh -c 'echo done'"]);
}

#[test]
fn existing_busybox_user_is_updated_not_recreated() {
    let g = FakeGuest::busybox();
    g.put(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nbob:x:1001:1001:old:/home/bob:/bin/false\n",
    );
    g.put("/etc/group", "root:x:0:\nbob:x:1001:\n");
    let p = plan(
        &[cc(
            "#cloud-config\nusers:\n  - name: bob\n    shell: /bin/sh\n",
        )],
        Some(OsType::Busybox),
    )
    .unwrap();
    block_on(apply(&g, &p)).unwrap();
    assert!(g
        .text("/etc/passwd")
        .contains("bob:x:1001:1001:old:/home/bob:/bin/sh\n"));
    assert_eq!(
        g.text("/etc/passwd")
            .lines()
            .filter(|l| l.starts_with("bob:"))
            .count(),
        1
    );
    let p = plan(
        &[cc("#cloud-config\nusers:\n  - name: bob\n    uid: 5\n")],
        Some(OsType::Busybox),
    )
    .unwrap();
    let e = block_on(apply(&g, &p)).unwrap_err().to_string();
    assert!(
        e.contains("users[0]: user `bob` exists with uid 1001"),
        "{e}"
    );
}

#[test]
fn debian_users_use_useradd_then_usermod() {
    let g = FakeGuest::busybox();
    let c = cc("#cloud-config\nusers:\n  - name: ann\n    uid: 1200\n    shell: /bin/bash\n    groups: [adm]\n    no_create_home: true\n");
    let p = plan(&[c], Some(OsType::Debian)).unwrap();
    // The fake does not create the user: the apply notices.
    let e = block_on(apply(&g, &p)).unwrap_err().to_string();
    assert!(e.contains("still missing"), "{e}");
    assert_eq!(
        g.commands(),
        [
            "groupadd adm",
            "useradd -u 1200 -d /home/ann -M -s /bin/bash -U -G adm ann",
            "passwd -l ann"
        ]
    );
    g.execs.lock().unwrap().clear();
    g.put(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nann:x:1200:1200::/home/ann:/bin/sh\n",
    );
    g.put("/etc/group", "root:x:0:\nadm:x:4:\nann:x:1200:\n");
    g.put("/etc/shadow", "ann:!:1:0:99999:7:::\n");
    block_on(apply(&g, &p)).unwrap();
    assert_eq!(g.commands(), ["usermod -s /bin/bash -a -G adm ann"]);
}

#[test]
fn failed_command_stops_with_argv_exit_code_and_stderr() {
    let g = FakeGuest::busybox();
    let c = cc(
        "#cloud-config\nruncmd:\n  - echo one\n  - [sh, -c, 'echo x; exit 3']\n  - echo never\n",
    );
    let p = plan(&[c], None).unwrap();
    let e = block_on(apply(&g, &p)).unwrap_err();
    match &e {
        CloudConfigError::Command {
            key,
            argv,
            exit_code,
            stderr,
            ..
        } => {
            assert_eq!(key, "runcmd[1]");
            assert_eq!(argv, &["sh", "-c", "echo x; exit 3"]);
            assert_eq!(*exit_code, 3);
            assert_eq!(stderr, "it broke");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(
        e.to_string(),
        "test.cfg: runcmd[1]: command `sh -c 'echo x; exit 3'` exited with 3: it broke"
    );
    assert_eq!(g.commands().len(), 2);
}

#[test]
fn unknown_owner_sudo_without_dirs_and_missing_zoneinfo_fail_clearly() {
    let g = FakeGuest::busybox();
    let p = plan(
        &[cc(
            "#cloud-config\nwrite_files:\n  - path: /x\n    owner: nobody2\n",
        )],
        None,
    )
    .unwrap();
    let e = block_on(apply(&g, &p)).unwrap_err().to_string();
    assert_eq!(
        e,
        "test.cfg: write_files[0]: owner: no user `nobody2` in the container"
    );
    let p = plan(
        &[cc("#cloud-config\nusers:\n  - name: s\n    sudo: true\n")],
        Some(OsType::Busybox),
    )
    .unwrap();
    let e = block_on(apply(&g, &p)).unwrap_err().to_string();
    assert!(
        e.contains("users[0].sudo: neither /etc/sudoers.d nor /etc/doas.d"),
        "{e}"
    );
    let p = plan(
        &[cc("#cloud-config\ntimezone: Europe/Athens\n")],
        Some(OsType::Busybox),
    )
    .unwrap();
    let e = block_on(apply(&g, &p)).unwrap_err().to_string();
    assert!(
        e.contains("/usr/share/zoneinfo/Europe/Athens does not exist"),
        "{e}"
    );
    g.put("/usr/share/zoneinfo/Europe/Athens", "TZif");
    let out = block_on(apply(&g, &p)).unwrap();
    assert!(out[0].changed);
    assert_eq!(g.text("/etc/timezone"), "Europe/Athens\n");
    assert!(g
        .commands()
        .contains(&"ln -sf /usr/share/zoneinfo/Europe/Athens /etc/localtime".to_string()));
    assert!(!block_on(apply(&g, &p)).unwrap()[0].changed);
}

#[test]
fn os_type_is_detected_from_os_release() {
    let g = FakeGuest::busybox();
    assert_eq!(block_on(detect_ostype(&g)).unwrap(), OsType::Busybox);
    g.put(
        "/etc/os-release",
        "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n",
    );
    assert_eq!(block_on(detect_ostype(&g)).unwrap(), OsType::Debian);
    g.put("/etc/os-release", "ID=alpine\n");
    assert_eq!(block_on(detect_ostype(&g)).unwrap(), OsType::Alpine);
}

#[test]
fn a_run_of_files_looks_up_accounts_and_directories_once_until_another_step() {
    let g = FakeGuest::busybox();
    g.put(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1100:1100::/home/web:/bin/sh\n",
    );
    g.put("/etc/group", "root:x:0:\nwww-data:x:33:\n");
    let text = "#cloud-config
write_files:
  - {path: /etc/a, content: a, owner: 'web:www-data'}
  - {path: /etc/b, content: b, owner: web}
  - {path: /srv/x/c, content: c}
  - {path: /srv/x/d, content: d, owner: '1100:33'}
  - {path: /srv/x/e, content: e, owner: bob, defer: true}
users:
  - name: bob
    uid: 1200
";
    let p = plan(&[cc(text)], Some(OsType::Busybox)).unwrap();
    block_on(apply(&g, &p)).unwrap();
    let requests = g.requests.lock().unwrap().clone();
    // The four early files, up to the users step.
    let users_start = requests
        .iter()
        .position(|r| r == "write /srv/x/d")
        .expect("d written")
        + 1;
    let early = &requests[..users_start];
    let count = |what: &str| early.iter().filter(|r| *r == what).count();
    assert_eq!(count("read /etc/passwd"), 1, "{early:?}");
    assert_eq!(count("read /etc/group"), 1, "{early:?}");
    assert_eq!(count("mkdir /etc"), 1, "{early:?}");
    assert_eq!(count("mkdir /srv/x"), 1, "{early:?}");
    assert_eq!(g.meta("/etc/a"), Some((1100, 33, 0o644)));
    assert_eq!(g.meta("/etc/b"), Some((1100, 1100, 0o644)));
    assert_eq!(g.meta("/srv/x/c"), Some((0, 0, 0o644)));
    assert_eq!(g.meta("/srv/x/d"), Some((1100, 33, 0o644)));
    // The users step changed the accounts: the deferred file after it finds bob.
    assert_eq!(g.meta("/srv/x/e"), Some((1200, 1200, 0o644)));
    let late = &requests[users_start..];
    let e_at = late.iter().position(|r| r == "write /srv/x/e").unwrap();
    assert!(
        late[..e_at]
            .iter()
            .rev()
            .take_while(|r| !r.starts_with("write /etc/passwd"))
            .any(|r| r == "read /etc/passwd"),
        "the accounts were not read again after the users step: {late:?}"
    );
}
