//! `manifest.json` of an export directory: what `reroot export` wrote and `reroot import`
//! checks before it changes anything.
//!
//! ```json
//! { "format": 1, "reroot_version": "0.1.0", "instance": "web",
//!   "filesystems": [ { "id": "data", "kind": "zfs", "location": "rerootz/app/web",
//!     "snapshot": "reroot-export-1a2b3c4d", "file": "data.zfs", "size": 123, "sha256": "…" } ] }
//! ```
//!
//! [`Manifest::parse`] never panics: every problem is an error naming the key.

use serde::{Deserialize, Serialize};

/// The manifest's file name in an export directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The format this build writes and reads.
pub const FORMAT: u64 = 1;

/// The manifest of one instance's export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u64,
    /// The reroot that wrote it.
    pub reroot_version: String,
    /// The instance whose filesystems these are.
    pub instance: String,
    /// One entry per archive file.
    pub filesystems: Vec<ArchiveEntry>,
}

/// One filesystem's archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveEntry {
    /// The filesystem's id in the config.
    pub id: String,
    /// `zfs`, `btrfs` or `dir`.
    pub kind: String,
    /// Its dataset or path when exported.
    pub location: String,
    /// The snapshot the archive was taken from (for `dir`, the export's snapshot name, though
    /// a directory has none: its archive is of the live content).
    pub snapshot: String,
    /// The archive's file name in the export directory.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

/// The kinds a manifest may name.
pub const KINDS: [&str; 3] = ["zfs", "btrfs", "dir"];

impl Manifest {
    /// Reads a manifest's text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Manifest, String> {
        let manifest: Manifest = serde_json::from_str(text)
            .map_err(|e| format!("{source}: not a reroot manifest: {e}"))?;
        manifest.check().map_err(|e| format!("{source}: {e}"))?;
        Ok(manifest)
    }

    /// The manifest as written (pretty JSON with a final newline).
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format {} (this reroot reads format {FORMAT}; a newer reroot wrote it?)",
                self.format
            ));
        }
        if self.instance.is_empty() {
            return Err("`instance` is empty".to_string());
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut files = std::collections::BTreeSet::new();
        for (i, e) in self.filesystems.iter().enumerate() {
            let at = format!("filesystems[{i}]");
            if e.id.is_empty() {
                return Err(format!("{at}.id is empty"));
            }
            if !ids.insert(&e.id) {
                return Err(format!("{at}.id `{}` appears twice", e.id));
            }
            if !KINDS.contains(&e.kind.as_str()) {
                return Err(format!(
                    "{at} (`{}`): unknown filesystem kind {:?} (known: zfs, btrfs, dir)",
                    e.id, e.kind
                ));
            }
            crate::storage::validate_snapshot_name(&e.snapshot)
                .map_err(|err| format!("{at}.snapshot: {err}"))?;
            let plain = !e.file.is_empty()
                && !e.file.starts_with('.')
                && e.file != MANIFEST_FILE
                && e.file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !plain {
                return Err(format!(
                    "{at}.file {:?}: must be a plain file name in the export directory",
                    e.file
                ));
            }
            if !files.insert(&e.file) {
                return Err(format!("{at}.file `{}` appears twice", e.file));
            }
            let hex = e.sha256.len() == 64
                && e.sha256
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
            if !hex {
                return Err(format!("{at}.sha256 is not 64 lower-case hex digits"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            reroot_version: "0.1.0".into(),
            instance: "web".into(),
            filesystems: vec![ArchiveEntry {
                id: "data".into(),
                kind: "zfs".into(),
                location: "rerootz/web".into(),
                snapshot: "s1".into(),
                file: "data.zfs".into(),
                size: 3,
                sha256: "a".repeat(64),
            }],
        }
    }

    #[test]
    fn a_manifest_round_trips_and_its_keys_are_pinned() {
        let m = sample();
        let text = m.to_text();
        assert_eq!(Manifest::parse(&text, "m").unwrap(), m);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&String> = v["filesystems"][0].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["file", "id", "kind", "location", "sha256", "size", "snapshot"]
        );
    }

    #[test]
    fn bad_manifests_are_refused_naming_the_problem() {
        type Change = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|m| m.format = 2), "format 2"),
            (
                Box::new(|m| m.filesystems[0].kind = "lvm".into()),
                "unknown filesystem kind \"lvm\"",
            ),
            (
                Box::new(|m| m.filesystems[0].file = "../x".into()),
                "plain file name",
            ),
            (
                Box::new(|m| m.filesystems[0].file = MANIFEST_FILE.into()),
                "plain file name",
            ),
            (
                Box::new(|m| m.filesystems[0].sha256 = "zz".into()),
                "sha256",
            ),
            (
                Box::new(|m| m.filesystems[0].snapshot = "-x".into()),
                "snapshot",
            ),
            (
                Box::new(|m| {
                    let e = m.filesystems[0].clone();
                    m.filesystems.push(e)
                }),
                "twice",
            ),
            (Box::new(|m| m.instance.clear()), "instance"),
        ];
        for (change, expected) in cases {
            let mut m = sample();
            change(&mut m);
            let err = Manifest::parse(&m.to_text(), "dir/manifest.json").unwrap_err();
            assert!(
                err.contains("dir/manifest.json") && err.contains(expected),
                "{err}"
            );
        }
        let err = Manifest::parse("{\"format\":1,\"extra\":1}", "m").unwrap_err();
        assert!(err.contains("not a reroot manifest"), "{err}");
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_any_text(text in ".{0,400}") {
            let _ = Manifest::parse(&text, "m");
        }

        #[test]
        fn parse_never_panics_on_a_damaged_manifest(cut in 0usize..400, at in 0usize..400, byte in any::<u8>()) {
            let mut bytes = sample().to_text().into_bytes();
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            bytes.truncate(cut.max(1).min(bytes.len()));
            let text = String::from_utf8_lossy(&bytes);
            let _ = Manifest::parse(&text, "m");
        }

        #[test]
        fn parse_never_panics_on_any_field_values(
            format in any::<u64>(), instance in ".{0,20}", id in ".{0,10}", kind in ".{0,8}",
            snapshot in ".{0,12}", file in ".{0,12}", size in any::<u64>(), sha in ".{0,70}",
        ) {
            let v = serde_json::json!({ "format": format, "reroot_version": "x", "instance": instance,
                "filesystems": [{ "id": id, "kind": kind, "location": "l", "snapshot": snapshot,
                    "file": file, "size": size, "sha256": sha }] });
            let _ = Manifest::parse(&v.to_string(), "m");
        }
    }
}
