//! `image: REMOTE:ALIAS`: an image on another LXD or Incus server, found before a run is
//! recorded.
//!
//! The alias is looked up on the remote (through the `lxc`/`incus` client configuration, as
//! `--remote` reaches a daemon) once, when the run is planned, and the run records the image's
//! fingerprint, the server's address and its certificate. Every root of the run, and its
//! resume on another day, is then pulled from that one image, even if the alias has moved
//! meanwhile; and whether a rebuild would change anything is known without asking the remote
//! again. The daemon pulls the image itself, as an untrusted client of that server, so the
//! image must be public there: that is checked here, before anything changes, rather than
//! left to the daemon's "Image not found" in the middle of the run.

use crate::lxd::{self, OptionalExt};
use crate::steps::plan::{RemoteImage, RootSource};
use crate::steps::InstancePlan;

/// Looks up, once per remote and alias, each remote image the plans name, and records it in
/// them; `files[i]` is the config file of `plans[i]`. An error names the config file, the
/// key, the remote and what to do; nothing changes.
pub async fn resolve(
    plans: &mut [InstancePlan],
    files: &[std::path::PathBuf],
) -> Result<(), String> {
    let mut found: std::collections::BTreeMap<(String, String), Option<RemoteImage>> =
        Default::default();
    for (i, plan) in plans.iter_mut().enumerate() {
        let file = files.get(i).map_or_else(
            || format!("instance {}", plan.name),
            |f| f.display().to_string(),
        );
        let RootSource::Image {
            alias,
            remote: remote_slot,
            pull,
        } = &mut plan.source
        else {
            continue;
        };
        let Some(remote) = remote_slot.clone() else {
            continue;
        };
        if pull.is_some() {
            continue;
        }
        let key = (remote.clone(), alias.clone());
        if !found.contains_key(&key) {
            let image = look_up(&remote, alias)
                .await
                .map_err(|e| format!("{file}: image: {remote}:{alias}: {e}"))?;
            found.insert(key.clone(), image);
        }
        match found[&key].clone() {
            Some(image) => *pull = Some(image),
            // The remote is the local daemon (`unix://`): its own image.
            None => *remote_slot = None,
        }
    }
    Ok(())
}

/// The image `alias` names on `remote`, or `None` when the remote is a local socket.
async fn look_up(remote: &str, alias: &str) -> Result<Option<RemoteImage>, String> {
    let found = lxd::Remote::find(remote).map_err(|e| match e {
        lxd::RemoteError::Unusable { .. } => format!(
            "{e}; reroot pulls images from LXD and Incus servers: copy it to the daemon first \
             (`incus image copy {remote}:{alias} local: --alias {alias}`, or `lxc image copy \
             ...`) and write `image: {alias}`"
        ),
        other => other.to_string(),
    })?;
    let https = match &found.endpoint {
        lxd::Endpoint::Unix(_) => return Ok(None),
        lxd::Endpoint::Https(h) => h.clone(),
    };
    let certificate = std::fs::read_to_string(&https.server_cert)
        .map_err(|e| format!("cannot read {}: {e}", https.server_cert.display()))?;
    let client = lxd::Client::connect_remote(&found, lxd::ConnectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let Some(target) = client
        .get_image_alias(alias)
        .await
        .optional()
        .map_err(|e| e.to_string())?
    else {
        return Err(format!("{remote} has no image alias {alias}"));
    };
    let image = client
        .get_image(&target.target)
        .await
        .map_err(|e| e.to_string())?;
    if !image.public {
        return Err(format!(
            "image {} is not public on {remote}: the daemon pulls it as an untrusted client \
             of {remote} and sees only its public images; make it public there (`public: true` \
             in `{} image edit {}`) or copy it to the daemon first",
            short(&image.fingerprint),
            if client.server_kind() == lxd::ServerKind::Incus {
                "incus"
            } else {
                "lxc"
            },
            short(&image.fingerprint)
        ));
    }
    Ok(Some(RemoteImage {
        fingerprint: image.fingerprint,
        server: format!("https://{}", host_port(&https.host, https.port)),
        certificate,
    }))
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

/// `HOST:PORT`, an IPv6 address in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_put_ipv6_hosts_in_brackets() {
        assert_eq!(host_port("127.0.0.1", 8443), "127.0.0.1:8443");
        assert_eq!(host_port("::1", 8443), "[::1]:8443");
        assert_eq!(host_port("lxd.example", 443), "lxd.example:443");
    }
}
