//! How much space a filesystem's data takes, for `reroot instance info`: ZFS knows it (`used`,
//! which counts its snapshots and children too); a btrfs subvolume without quotas and a plain
//! directory do not, so their tree is summed by `du`, staying on that one filesystem (`-x`:
//! a filesystem mounted inside belongs to someone else). Bounded like every host command.

use super::command::{self, FS_COMMAND_TIMEOUT};
use super::{Filesystem, FsKind, StorageError};

/// The first whitespace-separated field of `stdout` as a byte count (`zfs get -Hp` prints the
/// number alone, `du -s -B1` the number then the path).
fn parse_bytes(argv: &str, stdout: &str) -> Result<u64, StorageError> {
    let field = stdout.split_whitespace().next().unwrap_or_default();
    field.parse().map_err(|_| StorageError::Invalid {
        what: format!("output of `{argv}`"),
        problem: format!("expected a number of bytes, got {:?}", stdout.trim()),
    })
}

impl Filesystem {
    /// The bytes its data takes, or `None` if it does not exist.
    pub async fn size_bytes(&self) -> Result<Option<u64>, StorageError> {
        if !self.exists().await? {
            return Ok(None);
        }
        let (program, args): (&str, Vec<String>) = match &self.kind {
            FsKind::Zfs { dataset } => (
                "zfs",
                ["get", "-Hp", "-o", "value", "used", dataset.as_str()]
                    .map(String::from)
                    .to_vec(),
            ),
            FsKind::Btrfs { path } | FsKind::Dir { path } => (
                "du",
                vec![
                    "-s".into(),
                    "-x".into(),
                    "-B1".into(),
                    path.display().to_string(),
                ],
            ),
        };
        let argv = format!("{program} {}", args.join(" "));
        let out = command::run(program, args, FS_COMMAND_TIMEOUT).await?;
        parse_bytes(&argv, &out.stdout).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_are_read_from_zfs_and_du_output() {
        let cases = [
            ("155648\n", Some(155648)),
            ("4096\t/srv/x\n", Some(4096)),
            ("0 /srv/empty\n", Some(0)),
            ("-\n", None),
            ("", None),
            ("12K\t/srv/x\n", None),
        ];
        for (stdout, want) in cases {
            assert_eq!(parse_bytes("x", stdout).ok(), want, "{stdout:?}");
        }
        let err = parse_bytes("du -s", "12K\t/x").unwrap_err().to_string();
        assert!(err.contains("du -s") && err.contains("12K"), "{err}");
    }
}
