//! The host owner of an instance's device directories, derived from the instance's idmap.
//!
//! An unprivileged container sees host ids through its idmap (root inside is host uid 100000 on
//! a default LXD). A device directory must be owned by the *mapped* host ids to be writable
//! inside, so the owner is computed from LXD's `volatile.idmap.*` keys rather than hard-coded.

use serde::Deserialize;

use super::StorageError;

/// Host uid and gid to give a newly created device directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// One entry of LXD's idmap JSON, e.g.
/// `{"Isuid":true,"Isgid":false,"Hostid":100000,"Nsid":0,"Maprange":65536}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct IdMapEntry {
    #[serde(rename = "Isuid")]
    pub is_uid: bool,
    #[serde(rename = "Isgid")]
    pub is_gid: bool,
    #[serde(rename = "Hostid")]
    pub host_id: i64,
    #[serde(rename = "Nsid")]
    pub ns_id: i64,
    #[serde(rename = "Maprange")]
    pub map_range: i64,
}

/// How ids inside an instance map to host ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdMap {
    /// A privileged instance: ids are the same inside and on the host.
    Identity,
    /// An unprivileged instance's ranges.
    Ranges(Vec<IdMapEntry>),
}

/// The idmap keys, in the order they are consulted by [`IdMap::from_instance_config`].
///
/// `volatile.idmap.next` comes first: it is the map LXD applies at the next start, which is the
/// one that matters when device directories are created before (re)starting the instance.
/// `volatile.last_state.idmap` is `[]` on an instance that was never started (its root is not
/// shifted yet), so an empty map is never taken as meaning "identity" from these keys.
pub const IDMAP_KEYS: [&str; 3] = [
    "volatile.idmap.next",
    "volatile.idmap.current",
    "volatile.last_state.idmap",
];

impl IdMap {
    /// Parses one idmap JSON value as LXD stores it. `source` names where it came from (the
    /// config key) for error messages.
    pub fn parse(json: &str, source: &str) -> Result<IdMap, StorageError> {
        let entries: Vec<IdMapEntry> =
            serde_json::from_str(json).map_err(|e| StorageError::Invalid {
                what: format!("idmap in {source}"),
                problem: format!("not an LXD idmap JSON list ({e}): {json:?}"),
            })?;
        for entry in &entries {
            if entry.host_id < 0 || entry.ns_id < 0 || entry.map_range <= 0 {
                return Err(StorageError::Invalid {
                    what: format!("idmap in {source}"),
                    problem: format!("entry with negative ids or an empty range: {entry:?}"),
                });
            }
        }
        Ok(IdMap::Ranges(entries))
    }

    /// Picks the idmap of an instance from its config (LXD's expanded or local config map):
    /// the first non-empty value among [`IDMAP_KEYS`]; [`IdMap::Identity`] for an instance with
    /// `security.privileged=true` and no map; an error otherwise.
    pub fn from_instance_config<'a, I>(config: I) -> Result<IdMap, StorageError>
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        let config: std::collections::HashMap<&str, &str> = config
            .into_iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for key in IDMAP_KEYS {
            if let Some(value) = config.get(key) {
                let map = IdMap::parse(value, key)?;
                if !matches!(&map, IdMap::Ranges(entries) if entries.is_empty()) {
                    return Ok(map);
                }
            }
        }
        if config
            .get("security.privileged")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Ok(IdMap::Identity);
        }
        Err(StorageError::Invalid {
            what: "instance config".to_string(),
            problem: format!(
                "no idmap in any of {} and the instance is not privileged: cannot derive the device owner",
                IDMAP_KEYS.join(", ")
            ),
        })
    }

    /// The host uid of `ns_uid` inside the instance.
    pub fn host_uid(&self, ns_uid: u32) -> Option<u32> {
        self.map(ns_uid, |e| e.is_uid)
    }

    /// The host gid of `ns_gid` inside the instance.
    pub fn host_gid(&self, ns_gid: u32) -> Option<u32> {
        self.map(ns_gid, |e| e.is_gid)
    }

    /// The host owner of `inside` (e.g. `0:0` or `1000:1000` inside the instance).
    pub fn owner(&self, inside: Owner) -> Result<Owner, StorageError> {
        let uid = self
            .host_uid(inside.uid)
            .ok_or_else(|| StorageError::Invalid {
                what: "device owner".to_string(),
                problem: format!("uid {} is not mapped by the instance's idmap", inside.uid),
            })?;
        let gid = self
            .host_gid(inside.gid)
            .ok_or_else(|| StorageError::Invalid {
                what: "device owner".to_string(),
                problem: format!("gid {} is not mapped by the instance's idmap", inside.gid),
            })?;
        Ok(Owner { uid, gid })
    }

    fn map(&self, ns: u32, applies: impl Fn(&IdMapEntry) -> bool) -> Option<u32> {
        match self {
            IdMap::Identity => Some(ns),
            IdMap::Ranges(entries) => entries.iter().filter(|e| applies(e)).find_map(|e| {
                let ns = i64::from(ns);
                if ns >= e.ns_id && ns < e.ns_id + e.map_range {
                    u32::try_from(e.host_id + (ns - e.ns_id)).ok()
                } else {
                    None
                }
            }),
        }
    }
}

impl Owner {
    /// Parses `uid:gid` (e.g. a device-owner setting such as `1000:1000`); `what` names the
    /// setting for the error message.
    pub fn parse(text: &str, what: &str) -> Result<Owner, StorageError> {
        let invalid = || StorageError::Invalid {
            what: what.to_string(),
            problem: format!("{text:?} is not of the form uid:gid (two non-negative integers)"),
        };
        let (uid, gid) = text.trim().split_once(':').ok_or_else(invalid)?;
        Ok(Owner {
            uid: uid.trim().parse().map_err(|_| invalid())?,
            gid: gid.trim().parse().map_err(|_| invalid())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The value LXD 5.0.2 stored on the testbed for a default unprivileged container.
    const LXD_DEFAULT: &str = r#"[{"Isuid":true,"Isgid":false,"Hostid":100000,"Nsid":0,"Maprange":10000001},{"Isuid":false,"Isgid":true,"Hostid":100000,"Nsid":0,"Maprange":10000001}]"#;

    /// A map with a raw.idmap hole: uid/gid 1000 inside is host 1000, the rest is shifted.
    const WITH_RAW_IDMAP: &str = r#"[
        {"Isuid":true,"Isgid":false,"Hostid":1000000,"Nsid":0,"Maprange":1000},
        {"Isuid":true,"Isgid":true,"Hostid":1000,"Nsid":1000,"Maprange":1},
        {"Isuid":true,"Isgid":false,"Hostid":1001001,"Nsid":1001,"Maprange":64535},
        {"Isuid":false,"Isgid":true,"Hostid":1000000,"Nsid":0,"Maprange":1000},
        {"Isuid":false,"Isgid":true,"Hostid":1001001,"Nsid":1001,"Maprange":64535}]"#;

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_lxd_map_shifts_root_and_users() {
        let map = IdMap::parse(LXD_DEFAULT, "volatile.idmap.current").unwrap();
        assert_eq!(
            map.owner(Owner { uid: 0, gid: 0 }).unwrap(),
            Owner {
                uid: 100000,
                gid: 100000
            }
        );
        assert_eq!(
            map.owner(Owner {
                uid: 1000,
                gid: 1000
            })
            .unwrap(),
            Owner {
                uid: 101000,
                gid: 101000
            }
        );
        assert_eq!(map.host_uid(10000000), Some(10100000));
        assert_eq!(map.host_uid(10000001), None);
    }

    #[test]
    fn entries_with_both_flags_map_uid_and_gid() {
        let map = IdMap::parse(WITH_RAW_IDMAP, "volatile.idmap.next").unwrap();
        assert_eq!(
            map.owner(Owner {
                uid: 1000,
                gid: 1000
            })
            .unwrap(),
            Owner {
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!(
            map.owner(Owner { uid: 0, gid: 0 }).unwrap(),
            Owner {
                uid: 1000000,
                gid: 1000000
            }
        );
        assert_eq!(map.host_uid(1001), Some(1001001));
        assert_eq!(map.host_gid(999), Some(1000999));
    }

    #[test]
    fn unmapped_ids_are_an_error_naming_the_id() {
        let map = IdMap::parse(
            r#"[{"Isuid":true,"Isgid":true,"Hostid":100000,"Nsid":0,"Maprange":65536}]"#,
            "volatile.idmap.current",
        )
        .unwrap();
        let err = map.owner(Owner { uid: 70000, gid: 0 }).unwrap_err();
        assert!(err.to_string().contains("uid 70000"), "{err}");
        let err = map.owner(Owner { uid: 0, gid: 65536 }).unwrap_err();
        assert!(err.to_string().contains("gid 65536"), "{err}");
    }

    #[test]
    fn malformed_json_names_the_key() {
        let err = IdMap::parse("[{\"Isuid\":tru", "volatile.idmap.current").unwrap_err();
        assert!(err.to_string().contains("volatile.idmap.current"), "{err}");
        let err = IdMap::parse(
            r#"[{"Isuid":true,"Isgid":true,"Hostid":100000,"Nsid":0,"Maprange":0}]"#,
            "volatile.idmap.next",
        )
        .unwrap_err();
        assert!(err.to_string().contains("empty range"), "{err}");
    }

    #[test]
    fn instance_config_prefers_next_and_skips_empty_last_state() {
        // A container created but never started, as LXD 5.0.2 leaves it.
        let never_started = config(&[
            ("volatile.idmap.next", LXD_DEFAULT),
            ("volatile.last_state.idmap", "[]"),
        ]);
        let map = IdMap::from_instance_config(&never_started).unwrap();
        assert_eq!(map.host_uid(0), Some(100000));

        let next_differs = config(&[
            ("volatile.idmap.current", LXD_DEFAULT),
            ("volatile.idmap.next", WITH_RAW_IDMAP),
        ]);
        let map = IdMap::from_instance_config(&next_differs).unwrap();
        assert_eq!(map.host_uid(0), Some(1000000));

        let only_last_state = config(&[
            ("volatile.idmap.next", "[]"),
            ("volatile.last_state.idmap", LXD_DEFAULT),
        ]);
        let map = IdMap::from_instance_config(&only_last_state).unwrap();
        assert_eq!(map.host_gid(0), Some(100000));
    }

    #[test]
    fn privileged_instances_map_ids_to_themselves() {
        let privileged = config(&[
            ("security.privileged", "true"),
            ("volatile.idmap.next", "[]"),
            ("volatile.last_state.idmap", "[]"),
        ]);
        let map = IdMap::from_instance_config(&privileged).unwrap();
        assert_eq!(map, IdMap::Identity);
        assert_eq!(
            map.owner(Owner {
                uid: 1000,
                gid: 1000
            })
            .unwrap(),
            Owner {
                uid: 1000,
                gid: 1000
            }
        );
    }

    #[test]
    fn no_idmap_and_unprivileged_is_an_error() {
        let empty = config(&[("volatile.last_state.idmap", "[]")]);
        let err = IdMap::from_instance_config(&empty).unwrap_err();
        assert!(err.to_string().contains("volatile.idmap.next"), "{err}");
    }

    #[test]
    fn owner_parses_uid_gid() {
        assert_eq!(
            Owner::parse("1000:1000", "device-owner").unwrap(),
            Owner {
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!(
            Owner::parse(" 0:5 ", "device-owner").unwrap(),
            Owner { uid: 0, gid: 5 }
        );
        for bad in ["1000", "a:b", "-1:0", "1:2:3", ""] {
            let err = Owner::parse(bad, "device-owner").unwrap_err();
            assert!(err.to_string().contains("device-owner"), "{bad}: {err}");
        }
    }
}
