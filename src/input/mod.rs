//! What the readers of the files users write share: the instance-config reader (`config`) and
//! the cloud-config reader (`cloudconfig`) both report problems as [`ConfigError`]s naming the
//! file and the key, walk YAML with the same [`yaml::Walker`], check a file's first line the
//! same way, and speak of the same [`OsType`]. Neither reader depends on the other.

mod error;
mod ostype;
pub(crate) mod yaml;

use std::path::Path;

pub use error::ConfigError;
pub use ostype::OsType;

/// Check the first line against the accepted headers.
pub(crate) fn check_header(
    file: &Path,
    text: &str,
    accepted: &[&str],
    expected: &'static str,
) -> Result<(), ConfigError> {
    let first = text
        .trim_start_matches('\u{feff}')
        .lines()
        .next()
        .unwrap_or("");
    let first = first.trim_end();
    if accepted.contains(&first) {
        Ok(())
    } else {
        Err(ConfigError::Header {
            file: file.to_path_buf(),
            expected,
            found: first.chars().take(60).collect(),
        })
    }
}
