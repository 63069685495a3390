//! `/etc/passwd`, `/etc/group` and `/etc/shadow` as data: read, looked up and edited in place,
//! keeping every line reroot does not touch exactly as it was.

/// A `passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub password: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

impl PasswdEntry {
    fn line(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}:{}:{}",
            self.name, self.password, self.uid, self.gid, self.gecos, self.home, self.shell
        )
    }
}

/// A `group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub password: String,
    pub gid: u32,
    pub members: Vec<String>,
}

impl GroupEntry {
    fn line(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.name,
            self.password,
            self.gid,
            self.members.join(",")
        )
    }
}

/// A colon-separated account file; unparsable lines are kept verbatim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFile {
    lines: Vec<String>,
}

impl AccountFile {
    pub fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        AccountFile {
            lines: text.lines().map(str::to_string).collect(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = self.lines.join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        s.into_bytes()
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| l.split(':').next() == Some(name))
    }

    fn fields(&self, name: &str) -> Option<Vec<String>> {
        self.position(name)
            .map(|i| self.lines[i].split(':').map(str::to_string).collect())
    }

    fn set_line(&mut self, name: &str, line: String) {
        match self.position(name) {
            Some(i) => self.lines[i] = line,
            None => self.lines.push(line),
        }
    }

    // ---- passwd

    pub fn user(&self, name: &str) -> Option<PasswdEntry> {
        let f = self.fields(name)?;
        if f.len() < 7 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0].clone(),
            password: f[1].clone(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            gecos: f[4].clone(),
            home: f[5].clone(),
            shell: f[6..].join(":"),
        })
    }

    pub fn set_user(&mut self, e: &PasswdEntry) {
        self.set_line(&e.name, e.line());
    }

    // ---- group

    pub fn group(&self, name: &str) -> Option<GroupEntry> {
        let f = self.fields(name)?;
        if f.len() < 3 {
            return None;
        }
        Some(GroupEntry {
            name: f[0].clone(),
            password: f[1].clone(),
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|x| !x.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    pub fn group_by_gid(&self, gid: u32) -> Option<GroupEntry> {
        let name = self
            .lines
            .iter()
            .find(|l| l.split(':').nth(2).and_then(|g| g.parse::<u32>().ok()) == Some(gid))?
            .split(':')
            .next()?
            .to_string();
        self.group(&name)
    }

    pub fn set_group(&mut self, e: &GroupEntry) {
        self.set_line(&e.name, e.line());
    }

    // ---- shadow

    /// The password field of a shadow entry.
    pub fn shadow_password(&self, name: &str) -> Option<String> {
        self.fields(name).and_then(|f| f.get(1).cloned())
    }

    /// Set the password field of a shadow entry, adding the entry if it is missing.
    pub fn set_shadow_password(&mut self, name: &str, password: &str) {
        match self.fields(name) {
            Some(mut f) => {
                if f.len() < 2 {
                    f.resize(2, String::new());
                }
                f[1] = password.to_string();
                self.set_line(name, f.join(":"));
            }
            None => self
                .lines
                .push(format!("{name}:{password}:19000:0:99999:7:::")),
        }
    }

    /// Numeric ids in the third field (uids in passwd, gids in group).
    pub fn ids(&self) -> Vec<u32> {
        self.lines
            .iter()
            .filter_map(|l| l.split(':').nth(2)?.parse().ok())
            .collect()
    }

    /// The first id >= 1000 (and < 60000) not used in this file nor in `also`.
    pub fn next_free_id(&self, also: &[u32]) -> u32 {
        let used = self.ids();
        (1000..60000)
            .find(|i| !used.contains(i) && !also.contains(i))
            .unwrap_or(60000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

    #[test]
    fn reads_and_edits_users_keeping_other_lines() {
        let mut f = AccountFile::parse(PASSWD.as_bytes());
        let root = f.user("root").unwrap();
        assert_eq!((root.uid, root.home.as_str()), (0, "/root"));
        assert!(f.user("bob").is_none());
        let bob = PasswdEntry {
            name: "bob".into(),
            password: "x".into(),
            uid: f.next_free_id(&[]),
            gid: 1000,
            gecos: "Bob".into(),
            home: "/home/bob".into(),
            shell: "/bin/sh".into(),
        };
        f.set_user(&bob);
        assert_eq!(f.user("bob").unwrap().uid, 1000);
        let text = String::from_utf8(f.to_bytes()).unwrap();
        assert!(text.starts_with(PASSWD));
        assert!(text.ends_with("bob:x:1000:1000:Bob:/home/bob:/bin/sh\n"));
        assert_eq!(f.next_free_id(&[1001]), 1002);
    }

    #[test]
    fn groups_and_members() {
        let mut g = AccountFile::parse(b"root:x:0:\nweb:x:1005:alice,bob\n");
        assert_eq!(g.group("web").unwrap().members, vec!["alice", "bob"]);
        assert_eq!(g.group_by_gid(1005).unwrap().name, "web");
        let mut web = g.group("web").unwrap();
        web.members.push("carol".into());
        g.set_group(&web);
        assert_eq!(g.group("web").unwrap().members.len(), 3);
        assert!(g.group("root").unwrap().members.is_empty());
    }

    #[test]
    fn shadow_passwords() {
        let mut s = AccountFile::parse(b"root:*:19000:0:99999:7:::\n");
        assert_eq!(s.shadow_password("root").as_deref(), Some("*"));
        s.set_shadow_password("bob", "!");
        s.set_shadow_password("root", "!");
        assert_eq!(s.shadow_password("bob").as_deref(), Some("!"));
        assert_eq!(s.shadow_password("root").as_deref(), Some("!"));
    }
}
