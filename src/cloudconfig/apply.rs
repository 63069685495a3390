//! Carrying out a [`Plan`] in a container through a [`Guest`], converging: applying the same
//! plan twice leaves the same state (runcmd commands run again, by nature).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

use serde::Serialize;

use super::accounts::{AccountFile, GroupEntry, PasswdEntry};
use super::parse::{User, WriteFile};
use super::plan::{display_argv, Action, Plan};
use super::{CloudConfigError, ExecOutput, Guest};
use crate::input::OsType;

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub file: PathBuf,
    pub what: String,
    /// False when the container already was in the wanted state.
    pub changed: bool,
}

struct Applier<'g, G> {
    guest: &'g G,
    os: Option<OsType>,
    file: PathBuf,
    known: &'g Known,
}

/// What `write_files` steps of one apply have learnt of the guest, so that a run of files
/// does not read `/etc/passwd` and `/etc/group` and look up the same directory again for
/// each (each is a request, and the early files are pushed while the instance is down).
/// Any other kind of step may change anything, so it forgets it all.
#[derive(Default)]
struct Known {
    /// Account files by path.
    accounts: Mutex<BTreeMap<&'static str, AccountFile>>,
    /// Directories that exist.
    dirs: Mutex<BTreeSet<String>>,
}

impl Known {
    fn forget(&self) {
        lock(&self.accounts).clear();
        lock(&self.dirs).clear();
    }

    /// A file was written at `path`: it is no directory, and a cached account file it
    /// replaces is stale.
    fn wrote(&self, path: &str) {
        lock(&self.accounts).retain(|p, _| *p != path);
        let below = format!("{path}/");
        lock(&self.dirs).retain(|d| d != path && !d.starts_with(&below));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn parent(path: &str) -> Option<&str> {
    let p = path.trim_end_matches('/');
    match p.rfind('/') {
        Some(0) => None,
        Some(i) => Some(&p[..i]),
        None => None,
    }
}

/// Apply every step in order; the first failure stops with an error naming the file, the
/// step and (for commands) the argument vector, exit code and stderr.
pub async fn apply<G: Guest + Sync>(
    guest: &G,
    plan: &Plan,
) -> Result<Vec<Outcome>, CloudConfigError> {
    let mut outcomes = Vec::new();
    let known = Known::default();
    for step in &plan.steps {
        if !matches!(step.action, Action::WriteFile(_)) {
            known.forget();
        }
        let a = Applier {
            guest,
            os: plan.ostype,
            file: step.file.clone(),
            known: &known,
        };
        let (what, changed) = match &step.action {
            Action::WriteFile(w) => (
                format!(
                    "{} {}",
                    if w.append { "append to" } else { "write" },
                    w.path
                ),
                a.write_file(w).await?,
            ),
            Action::Run { key, argv } => {
                a.run(key, argv).await?;
                (format!("{key}: {}", display_argv(argv)), true)
            }
            Action::User(u) => (format!("user {}", u.name), a.user(u).await?),
            Action::Timezone { zone } => (format!("timezone {zone}"), a.timezone(zone).await?),
        };
        outcomes.push(Outcome {
            file: step.file.clone(),
            what,
            changed,
        });
    }
    Ok(outcomes)
}

impl<G: Guest + Sync> Applier<'_, G> {
    fn guest_err(&self, key: &str, source: super::GuestError) -> CloudConfigError {
        CloudConfigError::Guest {
            file: self.file.clone(),
            key: key.to_string(),
            source,
        }
    }

    fn invalid(&self, key: &str, message: String) -> CloudConfigError {
        CloudConfigError::Apply {
            file: self.file.clone(),
            key: key.to_string(),
            message,
        }
    }

    async fn exec(&self, key: &str, argv: &[String]) -> Result<ExecOutput, CloudConfigError> {
        self.guest
            .exec(argv)
            .await
            .map_err(|e| self.guest_err(key, e))
    }

    /// Run a command that must succeed.
    async fn run(&self, key: &str, argv: &[String]) -> Result<ExecOutput, CloudConfigError> {
        let out = self.exec(key, argv).await?;
        if out.exit_code != 0 {
            return Err(CloudConfigError::Command {
                file: self.file.clone(),
                key: key.to_string(),
                argv: argv.to_vec(),
                exit_code: out.exit_code,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out)
    }

    async fn run_strs(&self, key: &str, argv: &[&str]) -> Result<ExecOutput, CloudConfigError> {
        let v: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.run(key, &v).await
    }

    async fn read(&self, key: &str, path: &str) -> Result<Option<Vec<u8>>, CloudConfigError> {
        self.guest
            .read_file(path)
            .await
            .map_err(|e| self.guest_err(key, e))
    }

    async fn write(
        &self,
        key: &str,
        path: &str,
        content: &[u8],
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> Result<(), CloudConfigError> {
        self.guest
            .write_file(path, content, uid, gid, mode)
            .await
            .map_err(|e| self.guest_err(key, e))
    }

    async fn mkdir_p(
        &self,
        key: &str,
        path: &str,
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> Result<(), CloudConfigError> {
        self.guest
            .mkdir_p(path, uid, gid, mode)
            .await
            .map_err(|e| self.guest_err(key, e))
    }

    async fn is_dir(&self, key: &str, path: &str) -> Result<bool, CloudConfigError> {
        let argv = ["sh", "-c", "test -d \"$1\"", "sh", path].map(String::from);
        Ok(self.exec(key, &argv).await?.exit_code == 0)
    }

    /// Like [`Self::accounts`], remembered for the following `write_files` steps.
    async fn known_accounts(
        &self,
        key: &str,
        path: &'static str,
    ) -> Result<AccountFile, CloudConfigError> {
        if let Some(a) = lock(&self.known.accounts).get(path) {
            return Ok(a.clone());
        }
        let a = self.accounts(key, path).await?;
        lock(&self.known.accounts).insert(path, a.clone());
        Ok(a)
    }

    async fn accounts(&self, key: &str, path: &str) -> Result<AccountFile, CloudConfigError> {
        Ok(AccountFile::parse(
            &self.read(key, path).await?.unwrap_or_default(),
        ))
    }

    /// Numeric ids of `user` and `group` (names looked up in the container).
    async fn owner(
        &self,
        key: &str,
        user: &str,
        group: Option<&str>,
    ) -> Result<(u32, u32), CloudConfigError> {
        let passwd = self.known_accounts(key, "/etc/passwd").await?;
        let groups = self.known_accounts(key, "/etc/group").await?;
        let entry = passwd.user(user);
        let uid = match (user.parse::<u32>(), &entry) {
            (Ok(n), _) => n,
            (_, Some(e)) => e.uid,
            _ => return Err(self.invalid(key, format!("owner: no user `{user}` in the container"))),
        };
        let gid = match group {
            Some(g) => match (g.parse::<u32>(), groups.group(g)) {
                (Ok(n), _) => n,
                (_, Some(e)) => e.gid,
                _ => {
                    return Err(self.invalid(key, format!("owner: no group `{g}` in the container")))
                }
            },
            None => match entry {
                Some(e) => e.gid,
                None => uid,
            },
        };
        Ok((uid, gid))
    }

    async fn write_file(&self, w: &WriteFile) -> Result<bool, CloudConfigError> {
        let key = &w.key;
        let (uid, gid) = self.owner(key, &w.user, w.group.as_deref()).await?;
        if let Some(dir) = parent(&w.path) {
            if !lock(&self.known.dirs).contains(dir) {
                self.mkdir_p(key, dir, 0, 0, 0o755).await?;
                lock(&self.known.dirs).insert(dir.to_string());
            }
        }
        let existing = self.read(key, &w.path).await?;
        let (content, changed) = if w.append {
            match existing {
                Some(old) if w.content.is_empty() || contains(&old, &w.content) => (old, false),
                Some(mut old) => {
                    old.extend_from_slice(&w.content);
                    (old, true)
                }
                None => (w.content.clone(), true),
            }
        } else {
            let changed = existing.as_deref() != Some(w.content.as_slice());
            (w.content.clone(), changed)
        };
        // Written even when unchanged, so that owner and mode converge too.
        self.known.wrote(&w.path);
        self.write(key, &w.path, &content, uid, gid, w.mode).await?;
        Ok(changed)
    }

    async fn timezone(&self, zone: &str) -> Result<bool, CloudConfigError> {
        let key = "timezone";
        let zoneinfo = format!("/usr/share/zoneinfo/{zone}");
        if self.read(key, &zoneinfo).await?.is_none() {
            return Err(self.invalid(
                key,
                format!("{zoneinfo} does not exist in the container (is tzdata installed?)"),
            ));
        }
        self.run_strs(key, &["ln", "-sf", &zoneinfo, "/etc/localtime"])
            .await?;
        let wanted = format!("{zone}\n");
        let current = self.read(key, "/etc/timezone").await?;
        if current.as_deref() == Some(wanted.as_bytes()) {
            return Ok(false);
        }
        self.write(key, "/etc/timezone", wanted.as_bytes(), 0, 0, 0o644)
            .await?;
        Ok(true)
    }

    async fn user(&self, u: &User) -> Result<bool, CloudConfigError> {
        let mut changed = match self.os {
            Some(OsType::Debian) => self.debian_user(u).await?,
            Some(OsType::Alpine) | Some(OsType::Busybox) => self.file_user(u).await?,
            other => {
                return Err(self.invalid(
                    &u.key,
                    format!(
                        "users are not supported on {}",
                        other.map_or("an unknown OS".into(), |o| o.to_string())
                    ),
                ))
            }
        };
        let passwd = self.accounts(&u.key, "/etc/passwd").await?;
        let Some(entry) = passwd.user(&u.name) else {
            return Err(self.invalid(
                &u.key,
                format!("user `{}` is still missing after creating it", u.name),
            ));
        };
        changed |= self.authorized_keys(u, &entry).await?;
        changed |= self.sudo(u).await?;
        Ok(changed)
    }

    async fn debian_user(&self, u: &User) -> Result<bool, CloudConfigError> {
        let key = &u.key;
        let mut changed = false;
        let groups = self.accounts(key, "/etc/group").await?;
        for g in u.primary_group.iter().chain(u.groups.iter()) {
            if groups.group(g).is_none() {
                self.run_strs(key, &["groupadd", g]).await?;
                changed = true;
            }
        }
        let passwd = self.accounts(key, "/etc/passwd").await?;
        let mut argv: Vec<String> = Vec::new();
        match passwd.user(&u.name) {
            None => {
                argv.push("useradd".into());
                if let Some(uid) = u.uid {
                    argv.extend(["-u".into(), uid.to_string()]);
                }
                argv.extend(["-d".into(), u.home()]);
                argv.push(if u.no_create_home { "-M" } else { "-m" }.into());
                if let Some(s) = &u.shell {
                    argv.extend(["-s".into(), s.clone()]);
                }
                match &u.primary_group {
                    Some(g) => argv.extend(["-g".into(), g.clone()]),
                    None => argv.push("-U".into()),
                }
                if let Some(c) = &u.gecos {
                    argv.extend(["-c".into(), c.clone()]);
                }
                if !u.groups.is_empty() {
                    argv.extend(["-G".into(), u.groups.join(",")]);
                }
                argv.push(u.name.clone());
                self.run(key, &argv).await?;
                changed = true;
            }
            Some(e) => {
                let groups = self.accounts(key, "/etc/group").await?;
                let mut flags: Vec<String> = Vec::new();
                if let Some(uid) = u.uid.filter(|x| *x != e.uid) {
                    flags.extend(["-u".into(), uid.to_string()]);
                }
                if let Some(s) = u.shell.as_ref().filter(|s| **s != e.shell) {
                    flags.extend(["-s".into(), s.clone()]);
                }
                if let Some(h) = u.homedir.as_ref().filter(|h| **h != e.home) {
                    flags.extend(["-d".into(), h.clone()]);
                }
                if let Some(c) = u.gecos.as_ref().filter(|c| **c != e.gecos) {
                    flags.extend(["-c".into(), c.clone()]);
                }
                if let Some(g) = &u.primary_group {
                    if groups.group(g).map(|x| x.gid) != Some(e.gid) {
                        flags.extend(["-g".into(), g.clone()]);
                    }
                }
                let missing: Vec<String> = u
                    .groups
                    .iter()
                    .filter(|g| !groups.group(g).is_some_and(|x| x.members.contains(&u.name)))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    flags.extend(["-a".into(), "-G".into(), missing.join(",")]);
                }
                if !flags.is_empty() {
                    let mut argv = vec!["usermod".to_string()];
                    argv.extend(flags);
                    argv.push(u.name.clone());
                    self.run(key, &argv).await?;
                    changed = true;
                }
            }
        }
        if u.lock_passwd {
            let shadow = self.accounts(key, "/etc/shadow").await?;
            let pw = shadow.shadow_password(&u.name).unwrap_or_default();
            if !(pw.starts_with('!') || pw == "*") {
                self.run_strs(key, &["passwd", "-l", &u.name]).await?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Alpine creates users and groups with its own tools; busybox (and updates on Alpine) by
    /// editing the account files.
    async fn file_user(&self, u: &User) -> Result<bool, CloudConfigError> {
        let key = &u.key;
        let alpine = self.os == Some(OsType::Alpine);
        let mut changed = false;
        let existed = self
            .accounts(key, "/etc/passwd")
            .await?
            .user(&u.name)
            .is_some();
        if alpine {
            let groups = self.accounts(key, "/etc/group").await?;
            for g in u.primary_group.iter().chain(u.groups.iter()) {
                if groups.group(g).is_none() {
                    self.run_strs(key, &["addgroup", g]).await?;
                    changed = true;
                }
            }
            if !existed {
                let mut argv: Vec<String> =
                    vec!["adduser".into(), "-D".into(), "-h".into(), u.home()];
                if u.no_create_home {
                    argv.push("-H".into());
                }
                if let Some(s) = &u.shell {
                    argv.extend(["-s".into(), s.clone()]);
                }
                if let Some(uid) = u.uid {
                    argv.extend(["-u".into(), uid.to_string()]);
                }
                if let Some(g) = &u.primary_group {
                    argv.extend(["-G".into(), g.clone()]);
                }
                argv.extend([
                    "-g".into(),
                    u.gecos.clone().unwrap_or_default(),
                    u.name.clone(),
                ]);
                self.run(key, &argv).await?;
                changed = true;
            }
        }
        let mut passwd = self.accounts(key, "/etc/passwd").await?;
        let mut groups = self.accounts(key, "/etc/group").await?;
        let shadow_bytes = self.read(key, "/etc/shadow").await?;
        let mut shadow = shadow_bytes.as_deref().map(AccountFile::parse);
        let (p0, g0, s0) = (passwd.clone(), groups.clone(), shadow.clone());

        // Groups first.
        for g in u.primary_group.iter().chain(u.groups.iter()) {
            if groups.group(g).is_none() {
                let gid = groups.next_free_id(&[]);
                groups.set_group(&GroupEntry {
                    name: g.clone(),
                    password: "x".into(),
                    gid,
                    members: Vec::new(),
                });
            }
        }
        let primary_gid = |groups: &AccountFile| {
            u.primary_group
                .as_ref()
                .and_then(|g| groups.group(g))
                .map(|g| g.gid)
        };
        match passwd.user(&u.name) {
            None => {
                let uid = match u.uid {
                    Some(uid) => uid,
                    None => passwd.next_free_id(&[]),
                };
                let gid = match primary_gid(&groups) {
                    Some(gid) => gid,
                    None => match groups.group(&u.name) {
                        Some(g) => g.gid,
                        None => {
                            let gid = if groups.ids().contains(&uid) {
                                groups.next_free_id(&[])
                            } else {
                                uid
                            };
                            groups.set_group(&GroupEntry {
                                name: u.name.clone(),
                                password: "x".into(),
                                gid,
                                members: Vec::new(),
                            });
                            gid
                        }
                    },
                };
                passwd.set_user(&PasswdEntry {
                    name: u.name.clone(),
                    password: if shadow.is_some() {
                        "x".into()
                    } else {
                        "*".into()
                    },
                    uid,
                    gid,
                    gecos: u.gecos.clone().unwrap_or_default(),
                    home: u.home(),
                    shell: u.shell.clone().unwrap_or_else(|| "/bin/sh".into()),
                });
                if let Some(s) = shadow.as_mut() {
                    s.set_shadow_password(&u.name, "*");
                }
            }
            Some(mut e) => {
                if let Some(uid) = u.uid.filter(|x| *x != e.uid) {
                    return Err(self.invalid(
                        key,
                        format!(
                            "user `{}` exists with uid {}; changing it to {uid} is not supported on {}",
                            u.name,
                            e.uid,
                            self.os.map_or("this OS".into(), |o| o.to_string())
                        ),
                    ));
                }
                if let Some(s) = &u.shell {
                    e.shell = s.clone();
                }
                if let Some(h) = &u.homedir {
                    e.home = h.clone();
                }
                if let Some(c) = &u.gecos {
                    e.gecos = c.clone();
                }
                if let Some(gid) = primary_gid(&groups) {
                    e.gid = gid;
                }
                passwd.set_user(&e);
                if alpine && !existed {
                    // adduser -D leaves `!`, which also blocks key logins with OpenSSH.
                    if let Some(s) = shadow.as_mut() {
                        s.set_shadow_password(&u.name, "*");
                    }
                }
            }
        }
        for g in &u.groups {
            if let Some(mut entry) = groups.group(g) {
                if !entry.members.contains(&u.name) {
                    entry.members.push(u.name.clone());
                    groups.set_group(&entry);
                }
            }
        }
        if u.lock_passwd {
            if let Some(s) = shadow.as_mut() {
                let pw = s.shadow_password(&u.name).unwrap_or_default();
                if pw.is_empty() {
                    s.set_shadow_password(&u.name, "*");
                } else if !(pw.starts_with('!') || pw == "*") {
                    s.set_shadow_password(&u.name, &format!("!{pw}"));
                }
            }
        }
        if groups != g0 {
            self.write(key, "/etc/group", &groups.to_bytes(), 0, 0, 0o644)
                .await?;
            changed = true;
        }
        if passwd != p0 {
            self.write(key, "/etc/passwd", &passwd.to_bytes(), 0, 0, 0o644)
                .await?;
            changed = true;
        }
        if let (Some(s), true) = (&shadow, shadow != s0) {
            let gid = groups.group("shadow").map_or(0, |g| g.gid);
            self.write(key, "/etc/shadow", &s.to_bytes(), 0, gid, 0o640)
                .await?;
            changed = true;
        }
        if !u.no_create_home {
            if let Some(e) = passwd.user(&u.name) {
                self.mkdir_p(key, &e.home, e.uid, e.gid, 0o755).await?;
            }
        }
        Ok(changed)
    }

    async fn authorized_keys(&self, u: &User, e: &PasswdEntry) -> Result<bool, CloudConfigError> {
        if u.ssh_authorized_keys.is_empty() {
            return Ok(false);
        }
        let key = format!("{}.ssh_authorized_keys", u.key);
        let home = u.homedir.clone().unwrap_or_else(|| e.home.clone());
        let dir = format!("{}/.ssh", home.trim_end_matches('/'));
        self.mkdir_p(&key, &dir, e.uid, e.gid, 0o700).await?;
        let path = format!("{dir}/authorized_keys");
        let existing = self.read(&key, &path).await?;
        let text = existing
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
            .into_owned();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let before = lines.len();
        for k in &u.ssh_authorized_keys {
            if !lines.iter().any(|l| l.trim() == k) {
                lines.push(k.clone());
            }
        }
        let changed = lines.len() != before || existing.is_none();
        let mut out = lines.join("\n");
        out.push('\n');
        if changed || !text.ends_with('\n') {
            self.write(&key, &path, out.as_bytes(), e.uid, e.gid, 0o600)
                .await?;
        }
        Ok(changed)
    }

    async fn sudo(&self, u: &User) -> Result<bool, CloudConfigError> {
        if u.sudo.is_empty() {
            return Ok(false);
        }
        let key = format!("{}.sudo", u.key);
        let (path, content, mode) = if self.is_dir(&key, "/etc/sudoers.d").await? {
            let prefix = format!("{} ", u.name);
            let lines: Vec<String> = u
                .sudo
                .iter()
                .map(|r| {
                    if r.starts_with(&prefix) {
                        r.clone()
                    } else {
                        format!("{prefix}{r}")
                    }
                })
                .collect();
            (
                format!("/etc/sudoers.d/{}", u.name),
                lines.join("\n") + "\n",
                0o440,
            )
        } else if self.is_dir(&key, "/etc/doas.d").await? {
            if u.sudo != [super::parse::SUDO_ALL] {
                return Err(self.invalid(
                    &key,
                    "only `sudo: true` can be expressed for doas (the container has /etc/doas.d, not /etc/sudoers.d)".into(),
                ));
            }
            (
                format!("/etc/doas.d/{}.conf", u.name),
                format!("permit nopass {}\n", u.name),
                0o600,
            )
        } else {
            return Err(self.invalid(
                &key,
                "neither /etc/sudoers.d nor /etc/doas.d exists in the container (install sudo or doas)".into(),
            ));
        };
        let existing = self.read(&key, &path).await?;
        let changed = existing.as_deref() != Some(content.as_bytes());
        self.write(&key, &path, content.as_bytes(), 0, 0, mode)
            .await?;
        Ok(changed)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Tell the OS type from `/etc/os-release` (and friends); a container without them is taken
/// for busybox.
pub async fn detect_ostype<G: Guest + Sync>(guest: &G) -> Result<OsType, super::GuestError> {
    if let Some(b) = guest.read_file("/etc/os-release").await? {
        let text = String::from_utf8_lossy(&b);
        let mut ids = Vec::new();
        for line in text.lines() {
            if let Some(v) = line
                .strip_prefix("ID=")
                .or_else(|| line.strip_prefix("ID_LIKE="))
            {
                ids.extend(v.trim_matches('"').split_whitespace().map(str::to_string));
            }
        }
        for id in ids {
            if let Ok(os) = id.parse::<OsType>() {
                return Ok(os);
            }
        }
    }
    for (path, os) in [
        ("/etc/alpine-release", OsType::Alpine),
        ("/etc/debian_version", OsType::Debian),
        ("/etc/openwrt_release", OsType::OpenWrt),
    ] {
        if guest.read_file(path).await?.is_some() {
            return Ok(os);
        }
    }
    Ok(OsType::Busybox)
}
