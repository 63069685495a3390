//! Profile-count benchmark: `cargo bench --bench profiles`, as root, on the real daemon of the
//! testbed (scripts/testbed.sh). Incus by default; `PROFILES_SOCKET=/var/lib/lxd/unix.socket`
//! measures LXD the same way.
//!
//! LXD 5.0.2 loads every profile of the project on each copy, start and rename (about 1 ms
//! more per profile, README "What LXD 5.0.2 does at scale"), which is why reroot moved disk
//! devices off per-instance profiles. This measures whether Incus does the same: at each level
//! of extra empty profiles (`PROFILES_LEVELS`, default `0 100 200`), `PROFILES_ROUNDS` times
//! (default 5) through the API:
//! - **rename** of a stopped instance (there and back: two samples a round);
//! - **start** of that instance (then a force stop, not measured);
//! - **copy** of a template's snapshot into a new instance (then deleted, not measured).
//!
//! Prints the medians per level and the profiles the project has. Everything it creates is
//! named `profbench-*` (not `bench-*`: the downtime bench removes those on LXD) and removed at
//! the start and at the end of a run.
//!
//! Seen on the testbed (2 cores, btrfs pools, busybox; 2026-12-02, medians of 10 rounds on
//! Incus, 5 on LXD): Incus 6.0.4 does not slow down with the profiles (rename 57 / 48 / 53 ms,
//! start 226 / 185 / 198 ms, copy 115 / 93 / 91 ms at 0 / 100 / 200 extra profiles); LXD 5.0.2
//! does (rename 32 / 65 / 94 ms, copy 74 / 146 / 185 ms; start 289 / 256 / 255 ms).

use std::time::{Duration, Instant};

use reroot::lxd::{Client, ConnectOptions, NewInstance, ProfilePut, Stop};

const PREFIX: &str = "profbench-";

fn env_string(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn median_ms(samples: &mut [Duration]) -> f64 {
    samples.sort();
    let n = samples.len();
    let mid = if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2
    };
    mid.as_secs_f64() * 1000.0
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = reroot::lxd::Result<T>>,
) -> Duration {
    let started = Instant::now();
    if let Err(e) = f.await {
        panic!("{what}: {e}");
    }
    started.elapsed()
}

/// Removes every `profbench-*` instance, then every `profbench-*` profile.
async fn clean(client: &Client) {
    for name in client.list_instance_names().await.expect("list instances") {
        if name.starts_with(PREFIX) {
            let _ = client.stop_instance(&name, Stop::Force).await;
            client
                .delete_instance(&name)
                .await
                .unwrap_or_else(|e| panic!("delete {name}: {e}"));
        }
    }
    for p in client.list_profiles().await.expect("list profiles") {
        if p.name.starts_with(PREFIX) {
            client
                .delete_profile(&p.name)
                .await
                .unwrap_or_else(|e| panic!("delete profile {}: {e}", p.name));
        }
    }
}

#[tokio::main]
async fn main() {
    let socket = env_string("PROFILES_SOCKET", "/var/lib/incus/unix.socket");
    let rounds: usize = env_string("PROFILES_ROUNDS", "5")
        .parse()
        .expect("PROFILES_ROUNDS: a number");
    let levels: Vec<usize> = env_string("PROFILES_LEVELS", "0 100 200")
        .split_whitespace()
        .map(|l| l.parse().expect("PROFILES_LEVELS: numbers"))
        .collect();
    let client = Client::connect(ConnectOptions {
        socket: Some(socket.clone().into()),
        ..ConnectOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{socket}: {e} (run scripts/testbed.sh)"));
    println!(
        "{} {} on {socket}, {rounds} rounds per level",
        client.server_kind(),
        client.server_version()
    );
    clean(&client).await;

    let tpl = format!("{PREFIX}tpl");
    let a = format!("{PREFIX}a");
    let b = format!("{PREFIX}b");
    let copy = format!("{PREFIX}copy");
    client
        .create_instance(&NewInstance::from_image_alias(&tpl, "reroot-old"))
        .await
        .expect("create the template from reroot-old");
    client
        .create_snapshot(&tpl, "base", None)
        .await
        .expect("snapshot the template");
    client
        .create_instance(&NewInstance::copy_of_snapshot(&a, &tpl, "base"))
        .await
        .expect("copy the instance");

    println!(
        "| extra profiles | profiles in the project | rename | start | copy from a snapshot |"
    );
    println!("|---|---|---|---|---|");
    let mut made = 0;
    for &level in &levels {
        while made < level {
            client
                .create_profile(&format!("{PREFIX}p{made}"), &ProfilePut::default())
                .await
                .expect("create an empty profile");
            made += 1;
        }
        let in_project = client.list_profiles().await.expect("list profiles").len();
        let (mut renames, mut starts, mut copies) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            renames.push(timed("rename", client.rename_instance(&a, &b)).await);
            renames.push(timed("rename back", client.rename_instance(&b, &a)).await);
            starts.push(timed("start", client.start_instance(&a)).await);
            client.stop_instance(&a, Stop::Force).await.expect("stop");
            let new = NewInstance::copy_of_snapshot(&copy, &tpl, "base");
            copies.push(timed("copy", client.create_instance(&new)).await);
            client
                .delete_instance(&copy)
                .await
                .expect("delete the copy");
        }
        println!(
            "| {level} | {in_project} | {:.0} ms | {:.0} ms | {:.0} ms |",
            median_ms(&mut renames),
            median_ms(&mut starts),
            median_ms(&mut copies)
        );
    }
    clean(&client).await;
}
