//! The OS type of an instance, which both config files (`ostype:`) and cloud-config (which
//! commands to run) speak of.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The operating system of an instance: chooses the commands cloud-config runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OsType {
    /// Alpine Linux: `apk`, busybox `adduser`/`addgroup`.
    Alpine,
    /// Debian and Ubuntu (`ubuntu` is accepted as a synonym): `apt-get`, `adduser`, `usermod`.
    Debian,
    /// A bare busybox system (the test images): no package manager; users are managed by
    /// editing `/etc/passwd`, `/etc/group` and `/etc/shadow`.
    Busybox,
    /// OpenWrt: `opkg` for packages; users and timezone are not supported.
    OpenWrt,
}

impl OsType {
    /// Every accepted spelling, for messages.
    pub const NAMES: &'static [&'static str] =
        &["alpine", "debian", "ubuntu", "busybox", "openwrt"];

    pub fn as_str(self) -> &'static str {
        match self {
            OsType::Alpine => "alpine",
            OsType::Debian => "debian",
            OsType::Busybox => "busybox",
            OsType::OpenWrt => "openwrt",
        }
    }
}

impl fmt::Display for OsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OsType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "alpine" => Ok(OsType::Alpine),
            "debian" | "ubuntu" => Ok(OsType::Debian),
            "busybox" => Ok(OsType::Busybox),
            "openwrt" => Ok(OsType::OpenWrt),
            _ => Err(format!(
                "unknown OS type `{s}` (known: {})",
                OsType::NAMES.join(", ")
            )),
        }
    }
}
