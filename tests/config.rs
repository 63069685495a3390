//! Instance config files end to end: the example configs in configs/ resolve and verify (through
//! the library and the `reroot config` commands), problems are reported with their file and
//! key, and neither parser panics on random or mutated input.

use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use reroot::cloudconfig;
use reroot::config::{self, DeviceSource, FilesystemPath, LoadOptions};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn example_configs() -> Vec<PathBuf> {
    let mut v = vec![repo("configs/template.yaml"), repo("configs/base.yaml")];
    let mut web: Vec<PathBuf> = std::fs::read_dir(repo("configs/web"))
        .expect("configs/web")
        .map(|e| e.unwrap().path())
        .collect();
    web.sort();
    v.extend(web);
    v
}

fn reroot(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_reroot"))
        .args(args)
        .env("HOME", "/nonexistent-reroot-test-home")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("REROOT_PROJECT")
        .output()
        .expect("run reroot")
}

#[test]
fn every_example_config_verifies() {
    let files = example_configs();
    assert!(files.len() >= 4, "{files:?}");
    let problems = config::verify(&files, &LoadOptions::default());
    assert!(problems.is_empty(), "{problems:#?}");
    let staging = LoadOptions {
        properties: vec![("env".into(), "staging".into())],
        ..LoadOptions::default()
    };
    assert!(config::verify(&files, &staging).is_empty());

    let mut args = vec!["config", "verify"];
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let out = reroot(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains(&format!("ok: {} config file(s)", files.len())));
}

#[test]
fn website_resolves_to_its_filesystems_devices_and_template() {
    let site = config::load(&[repo("configs/web/site-a.yaml")], &LoadOptions::default())
        .unwrap()
        .remove(0);
    assert_eq!(site.name, "site-a");
    assert_eq!(site.profile, "site-a.reroot");
    assert_eq!(site.profiles, ["default"]);
    assert_eq!(site.origin.as_ref().unwrap().instance, "template");
    assert_eq!(
        site.origin.as_ref().unwrap().snapshot.as_deref(),
        Some("base")
    );
    assert_eq!(
        site.filesystem("data").unwrap().path,
        FilesystemPath::Zfs {
            dataset: "rerootz/reroot/site-a".into()
        }
    );
    assert_eq!(
        site.filesystem("logs").unwrap().path,
        FilesystemPath::Btrfs {
            path: "/srv/reroot-btrfs/site-a".into()
        }
    );
    let www = site.devices.iter().find(|d| d.name == "www").unwrap();
    assert_eq!(www.host_dir, Path::new("/rerootz/reroot/site-a/www"));
    assert_eq!(
        site.instance_config
            .get("limits.memory")
            .map(String::as_str),
        Some("256MB")
    );
    assert_eq!(
        site.cloud_config_files,
        [
            repo("configs/cloud/base.cfg"),
            repo("configs/cloud/site.cfg")
        ]
    );
    assert_eq!(site.files.len(), 2);
    match &site.device_source {
        Some(DeviceSource::Template { instance }) => {
            assert_eq!(instance.name, "template");
            let data = instance
                .filesystems
                .iter()
                .find(|f| f.id == "data")
                .unwrap();
            assert_eq!(data.path.display(), "rerootz/reroot/template");
        }
        other => panic!("expected a template: {other:?}"),
    }
    // Through the CLI, as JSON.
    let out = reroot(&[
        "--json",
        "config",
        "print",
        repo("configs/web/site-a.yaml").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "reroot.config-print/1");
    assert_eq!(v["instances"][0]["name"], "site-a");
    assert_eq!(v["instances"][0]["stop_timeout"], 10);
}

#[test]
fn staging_include_is_conditional_on_a_property() {
    let f = [repo("configs/web/site-a.yaml")];
    let plain = config::load(&f, &LoadOptions::default()).unwrap().remove(0);
    assert_eq!(plain.stop_timeout, 10);
    let o = LoadOptions {
        properties: vec![("env".into(), "staging".into())],
        ..LoadOptions::default()
    };
    let staging = config::load(&f, &o).unwrap().remove(0);
    assert_eq!(staging.stop_timeout, 5);
    assert_eq!(
        staging.filesystem("data").unwrap().path.display(),
        "rerootz/staging/reroot/site-a"
    );
    let out = reroot(&[
        "config",
        "properties",
        "-P",
        "env=staging",
        f[0].to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("env") && text.contains("(-P)"), "{text}");
    assert!(
        text.contains("rerootz/staging") && text.contains("staging.yaml"),
        "{text}"
    );
}

#[test]
fn verify_prints_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    std::fs::write(&a, "#lxdops\nfilesytems: {}\nprofiles: [x, x]\n").unwrap();
    let b = dir.path().join("b.yaml");
    std::fs::write(
        &b,
        "#lxdops\nfilesystems:\n  d:\n    pattern: tank/(nope)\n",
    )
    .unwrap();
    let out = reroot(&["config", "verify", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("a.yaml: unknown key `filesytems` (did you mean `filesystems`?)"));
    assert!(lines[1].contains("a.yaml: profiles[1]: duplicate profile `x`"));
    assert!(lines[2].contains("b.yaml: filesystems.d.pattern: unknown property `(nope)`"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 problem(s)"));

    // The same as a versioned JSON document, and the properties too.
    let out = reroot(&[
        "--json",
        "config",
        "verify",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "reroot.config-verify/1");
    assert_eq!(v["files"], 2);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 3, "{v}");
    assert!(problems[2]
        .as_str()
        .unwrap()
        .contains("unknown property `(nope)`"));
    let site = repo("configs/web/site-a.yaml");
    let out = reroot(&["--json", "config", "properties", site.to_str().unwrap()]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "reroot.config-properties/1");
    assert_eq!(v["instances"][0]["instance"], "site-a", "{v}");
}

fn example_texts() -> Vec<String> {
    let mut files = example_configs();
    files.push(repo("configs/env/staging.yaml"));
    files.push(repo("configs/cloud/base.cfg"));
    files.push(repo("configs/cloud/site.cfg"));
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize, usize),
    Insert(usize, char),
    SwapLines(usize, usize),
}

fn mutate(text: &str, muts: &[Mutation]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for m in muts {
        if chars.is_empty() {
            chars.push('x');
        }
        let n = chars.len();
        match *m {
            Mutation::Delete(i) => {
                chars.remove(i % n);
            }
            Mutation::Duplicate(i, len) => {
                let start = i % n;
                let end = (start + len).min(n);
                let piece: Vec<char> = chars[start..end].to_vec();
                chars.splice(start..start, piece);
            }
            Mutation::Insert(i, c) => chars.insert(i % (n + 1), c),
            Mutation::SwapLines(a, b) => {
                let s: String = chars.iter().collect();
                let mut lines: Vec<&str> = s.split('\n').collect();
                let l = lines.len();
                lines.swap(a % l, b % l);
                chars = lines.join("\n").chars().collect();
            }
        }
    }
    chars.into_iter().collect()
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let c = prop_oneof![
        Just(':'),
        Just('('),
        Just(')'),
        Just('-'),
        Just(' '),
        Just('\n'),
        Just('\t'),
        Just('['),
        Just('{'),
        Just('"'),
        Just('\''),
        Just('&'),
        Just('*'),
        Just('!'),
        Just('#'),
        Just('.'),
        Just('/'),
        Just('@'),
        Just('|'),
        Just('>'),
        Just('é'),
        any::<char>()
    ];
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), 1usize..40).prop_map(|(i, l)| Mutation::Duplicate(i, l)),
        (any::<usize>(), c).prop_map(|(i, c)| Mutation::Insert(i, c)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

/// Both parsers, and the whole loader on a file on disk: no panic, whatever the input.
fn feed(text: &str, dir: &Path) {
    let _ = config::parse_str(Path::new("fuzz.yaml"), text);
    let _ = cloudconfig::parse_str(Path::new("fuzz.cfg"), text);
    let f = dir.join("fuzz.yaml");
    std::fs::write(&f, text).unwrap();
    let _ = config::verify(&[f], &LoadOptions::default());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_mutated_examples(
        which in any::<usize>(),
        muts in prop::collection::vec(mutation(), 1..8),
    ) {
        let texts = example_texts();
        let text = mutate(&texts[which % texts.len()], &muts);
        let dir = tempfile::tempdir().unwrap();
        feed(&text, dir.path());
        // The same text under the other header reaches the other parser's key checks too.
        let swapped = if text.starts_with("#cloud-config") {
            text.replacen("#cloud-config", "#lxdops", 1)
        } else {
            text.replacen("#lxdops", "#cloud-config", 1)
        };
        feed(&swapped, dir.path());
    }

    #[test]
    fn parsers_never_panic_on_random_yaml(
        header in prop_oneof![Just("#lxdops\n"), Just("#lxops-v1\n"), Just("#cloud-config\n"), Just("")],
        body in "[a-z_:\\- \n\\[\\]{}()0-9'\"/.@&*!|>#,]{0,300}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        feed(&format!("{header}{body}"), dir.path());
    }
}

/// `property set|get|list|unset` work on the global property file, and a config resolves with
/// the property set there.
#[test]
fn property_commands_edit_the_global_property_file() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_reroot"))
            .env("XDG_CONFIG_HOME", home.path())
            .args(args)
            .output()
            .unwrap()
    };
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(
        text(&run(&["property", "list"])).trim(),
        "no global properties"
    );
    assert!(!run(&["property", "get", "fsroot"]).status.success());
    assert!(run(&["property", "set", "fsroot", "/srv/sites"])
        .status
        .success());
    let file = home.path().join("reroot/properties.yaml");
    assert!(file.is_file());
    let got = run(&["property", "get", "fsroot"]);
    assert!(got.status.success());
    assert_eq!(text(&got).trim(), "/srv/sites");
    let listed = text(&run(&["property", "list"]));
    assert!(
        listed.contains("fsroot") && listed.contains(&file.display().to_string()),
        "{listed}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&text(&run(&["--json", "property", "list"]))).unwrap();
    assert_eq!(json["schema"], "reroot.properties/1");
    assert_eq!(json["properties"][0]["value"], "/srv/sites");
    // A config takes it.
    let cfg = home.path().join("web.yaml");
    std::fs::write(
        &cfg,
        "#lxdops\nfilesystems:\n  data:\n    pattern: (fsroot)/(instance)\n",
    )
    .unwrap();
    let shown = Command::new(env!("CARGO_BIN_EXE_reroot"))
        .env("XDG_CONFIG_HOME", home.path())
        .args(["config", "verify"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let bad = run(&["property", "set", "a(b)", "x"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("property name"));
    assert!(run(&["property", "unset", "fsroot"]).status.success());
    assert!(!run(&["property", "get", "fsroot"]).status.success());
}

/// A filesystem kind reroot does not know (lvm) is refused by `config verify` and by a run,
/// naming the file and the key, before anything is recorded or made.
#[test]
fn an_unknown_filesystem_kind_is_refused_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("web.yaml");
    std::fs::write(
        &cfg,
        "#lxdops\nfilesystems:\n  data:\n    kind: lvm\n    pattern: vg0/(instance)\n",
    )
    .unwrap();
    let says = format!(
        "{}: filesystems.data.kind: unknown filesystem kind `lvm` (known: zfs, btrfs, dir)",
        cfg.display()
    );
    let out = reroot(&["config", "verify", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&says));
    let journal = dir.path().join("journal");
    for command in ["rebuild", "launch", "snapshot"] {
        let out = reroot(&[
            "--socket",
            "/nonexistent/reroot.socket",
            "--journal",
            journal.to_str().unwrap(),
            command,
            cfg.to_str().unwrap(),
        ]);
        assert!(!out.status.success(), "{command}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&says),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!journal.exists(), "{command}: a journal was created");
    }
}
