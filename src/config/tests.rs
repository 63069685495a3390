//! Unit tests of config resolution: merge order, includes, properties, every error path.

use std::path::{Path, PathBuf};

use super::*;

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Dir(tempfile::tempdir().expect("tempdir"))
    }
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

fn load_one(file: &Path, opts: &LoadOptions) -> ResolvedInstance {
    match load(&[file.to_path_buf()], opts) {
        Ok(mut v) => v.remove(0),
        Err(e) => panic!("load failed:\n{e}"),
    }
}

fn errors(file: &Path, opts: &LoadOptions) -> Vec<String> {
    verify(&[file.to_path_buf()], opts)
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

/// Options as the command line gives them: cloud-config files checked by cloudconfig.
fn opts() -> LoadOptions {
    LoadOptions {
        cloud_config_check: Some(crate::cloudconfig::check_files),
        ..LoadOptions::default()
    }
}

fn with_p(pairs: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        properties: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..opts()
    }
}

const BASE: &str = "#lxdops
ostype: alpine
image: base-image
project: base-project
profiles: [default, base]
filesystems:
  data:
    pattern: tank/(instance)
    destroy: true
  logs:
    pattern: /srv/logs/(instance)
devices:
  www:
    path: /var/www
    filesystem: data
    readonly: true
  log:
    path: /var/log/x
    filesystem: logs
    dir: .
properties:
  color: blue
  size: small
";

#[test]
fn including_file_wins_on_scalars_and_whole_map_entries_lists_append() {
    let d = Dir::new();
    d.write("base.yaml", BASE);
    let top = d.write(
        "web.yaml",
        "#lxdops
include: [base.yaml]
ostype: debian
image: top-image
profiles: [web]
filesystems:
  data:
    pattern: pool2/(instance)
devices:
  www:
    path: /srv/www
    filesystem: data
properties:
  color: red
",
    );
    let i = load_one(&top, &opts());
    assert_eq!(i.name, "web");
    // The parent wins even for ostype and image (lxops let the include win there).
    assert_eq!(i.ostype, Some(OsType::Debian));
    assert_eq!(i.image.as_deref(), Some("top-image"));
    assert_eq!(i.project, "base-project");
    assert_eq!(i.profiles, vec!["default", "base", "web"]);
    let data = i.filesystem("data").unwrap();
    assert_eq!(
        data.path,
        FilesystemPath::Zfs {
            dataset: "pool2/web".into()
        }
    );
    // The whole entry is replaced: `destroy: true` of the include is gone.
    assert!(!data.destroy);
    let www = i.devices.iter().find(|d| d.name == "www").unwrap();
    assert_eq!(www.path, "/srv/www");
    assert!(!www.readonly);
    assert_eq!(www.host_dir, PathBuf::from("/pool2/web/www"));
    let log = i.devices.iter().find(|d| d.name == "log").unwrap();
    assert_eq!(log.host_dir, PathBuf::from("/srv/logs/web"));
    assert_eq!(log.subdir, PathBuf::new());
    assert_eq!(i.files.len(), 2);
    assert_eq!(i.files[0].path, top);
    assert_eq!(i.files[0].sha256.len(), 64);
    assert_eq!(
        i.files[0].sha256,
        file::sha256_hex(&std::fs::read(&top).unwrap())
    );
}

#[test]
fn defaults_profile_name_and_rebuild_settings() {
    let d = Dir::new();
    let f = d.write(
        "site.yaml",
        "#lxops-v1
origin: sites_tpl/base
health-check:
  command: test -f /ok
",
    );
    let i = load_one(&f, &opts());
    assert_eq!(i.profile, "site.reroot");
    assert_eq!(i.profiles, vec!["default"]);
    assert_eq!(i.stop_timeout, DEFAULT_STOP_TIMEOUT);
    assert_eq!(
        i.health_check,
        Some(HealthCheck {
            command: vec!["sh".into(), "-c".into(), "test -f /ok".into()],
            timeout: 30
        })
    );
    // Both a project and a snapshot (lxops got the container name wrong here).
    assert_eq!(
        i.origin,
        Some(Origin {
            project: Some("sites".into()),
            instance: "tpl".into(),
            snapshot: Some("base".into())
        })
    );
    assert_eq!(i.project, "default");
}

#[test]
fn lxdops_os_section_maps_to_ostype_and_image() {
    let d = Dir::new();
    let f = d.write(
        "a.yaml",
        "#lxdops\nos:\n  name: ubuntu\n  image: ubuntu/22.04\n",
    );
    let i = load_one(&f, &opts());
    assert_eq!(i.ostype, Some(OsType::Debian));
    assert_eq!(i.image.as_deref(), Some("ubuntu/22.04"));
    let g = d.write(
        "b.yaml",
        "#lxdops\nos:\n  name: alpine\n  version: '3.18'\n",
    );
    let e = errors(&g, &opts());
    assert!(
        e.iter()
            .any(|m| m.contains("os.version") && m.contains("not used")),
        "{e:?}"
    );
}

#[test]
fn conditional_include_needs_a_defined_nonempty_cli_or_global_property() {
    let d = Dir::new();
    d.write("env/prod.yaml", "#lxdops\nprofiles: [prod]\n");
    let top = d.write(
        "web.yaml",
        "#lxdops\ninclude: [env/(env).yaml]\nproperties:\n  env: prod\n",
    );
    // A config property does not enable an include.
    assert_eq!(load_one(&top, &opts()).profiles, vec!["default"]);
    assert_eq!(
        load_one(&top, &with_p(&[("env", "")])).profiles,
        vec!["default"]
    );
    assert_eq!(
        load_one(&top, &with_p(&[("env", "prod")])).profiles,
        vec!["prod"]
    );
    // A global property does.
    let g = d.write("global/properties.yaml", "env: prod\n");
    let o = LoadOptions {
        config_dir: Some(g.parent().unwrap().to_path_buf()),
        ..opts()
    };
    assert_eq!(load_one(&top, &o).profiles, vec!["prod"]);
    // A defined property naming a missing file is an error.
    let e = errors(&top, &with_p(&[("env", "nope")]));
    assert!(
        e[0].contains("include[0]") && e[0].contains("does not exist"),
        "{e:?}"
    );
}

#[test]
fn include_cycle_is_reported_with_its_chain() {
    let d = Dir::new();
    d.write("a.yaml", "#lxdops\ninclude: [b.yaml]\n");
    d.write("b.yaml", "#lxdops\ninclude: [a.yaml]\n");
    let e = verify(&[d.path().join("a.yaml")], &opts());
    assert_eq!(e.len(), 1, "{e:?}");
    match &e[0] {
        ConfigError::IncludeCycle { chain } => {
            let names: Vec<_> = chain
                .iter()
                .map(|p| p.file_name().unwrap().to_str().unwrap())
                .collect();
            assert_eq!(names, ["a.yaml", "b.yaml", "a.yaml"]);
        }
        other => panic!("expected a cycle, got {other}"),
    }
    assert!(e[0].to_string().contains("include cycle"));
}

#[test]
fn diamond_include_is_merged_once() {
    let d = Dir::new();
    d.write("common.yaml", "#lxdops\nprofiles: [common]\n");
    d.write("a.yaml", "#lxdops\ninclude: [common.yaml]\nprofiles: [a]\n");
    d.write(
        "b.yaml",
        "#lxdops\ninclude: [./common.yaml]\nprofiles: [b]\n",
    );
    let top = d.write("top.yaml", "#lxdops\ninclude: [a.yaml, b.yaml]\n");
    let i = load_one(&top, &opts());
    assert_eq!(i.profiles, vec!["common", "a", "b"]);
    assert_eq!(i.files.len(), 4);
}

#[test]
fn property_precedence_builtin_cli_config_global() {
    let d = Dir::new();
    d.write("cfg/properties.d/10-a.yaml", "g1: d10\ng2: d10\n");
    d.write("cfg/properties.d/20-b.yaml", "g1: d20\n");
    d.write(
        "cfg/properties.yaml",
        "g2: main\ng3: main\nshared: global\n",
    );
    let explicit = d.write("explicit.yaml", "g3: explicit\n");
    let top = d.write(
        "web.yaml",
        "#lxdops
properties:
  shared: config
  instance: not-this
  cliwins: config
",
    );
    let o = LoadOptions {
        config_dir: Some(d.path().join("cfg")),
        properties_file: Some(explicit),
        properties: vec![
            ("cliwins".into(), "cli".into()),
            ("instance".into(), "nope".into()),
        ],
        ..opts()
    };
    let list = properties(std::slice::from_ref(&top), &o).unwrap();
    let get = |n: &str| {
        list[0]
            .properties
            .iter()
            .find(|p| p.name == n)
            .map(|p| (p.value.clone(), p.source.clone()))
            .unwrap()
    };
    assert_eq!(get("instance"), ("web".into(), PropertySource::BuiltIn));
    assert_eq!(get("cliwins"), ("cli".into(), PropertySource::CommandLine));
    assert_eq!(
        get("shared"),
        ("config".into(), PropertySource::Config(top))
    );
    assert_eq!(get("g1").0, "d20");
    assert_eq!(get("g2").0, "main");
    assert_eq!(get("g3").0, "explicit");
    assert_eq!(get("project/").0, "");
    assert_eq!(get("project_instance").0, "web");
}

#[test]
fn project_flag_overrides_config_and_feeds_builtins() {
    let d = Dir::new();
    let f = d.write(
        "web.yaml",
        "#lxdops\nproject: cfgproj\nfilesystems:\n  a:\n    pattern: /srv/(project/)(project_instance)\n",
    );
    let i = load_one(&f, &opts());
    assert_eq!(i.project, "cfgproj");
    assert_eq!(
        i.filesystems[0].path.default_dir(),
        PathBuf::from("/srv/cfgproj/cfgproj_web")
    );
    let o = LoadOptions {
        project: Some("flag".into()),
        ..opts()
    };
    assert_eq!(load_one(&f, &o).project, "flag");
}

#[test]
fn remote_names_the_instances_daemon_with_properties_and_a_bad_name_is_refused() {
    let d = Dir::new();
    let base = d.write("base.yaml", "#lxdops\nremote: (host)\n");
    let f = d.write(
        "web.yaml",
        &format!("#lxdops\ninclude: [{}]\n", base.display()),
    );
    assert_eq!(
        load_one(&f, &with_p(&[("host", "incus-b")]))
            .remote
            .as_deref(),
        Some("incus-b")
    );
    let plain = d.write("plain.yaml", "#lxdops\n");
    assert_eq!(load_one(&plain, &opts()).remote, None);
    for bad in ["a b", "images:alpine", "x/y"] {
        let f = d.write("bad.yaml", &format!("#lxdops\nremote: \"{bad}\"\n"));
        let e = errors(&f, &opts()).join("\n");
        assert!(
            e.contains("bad.yaml") && e.contains("remote") && e.contains("not a remote name"),
            "{bad}: {e}"
        );
    }
    let empty = d.write("empty.yaml", "#lxdops\nremote: \"\"\n");
    assert!(!errors(&empty, &opts()).is_empty());
}

#[test]
fn unknown_keys_are_errors_with_suggestions_and_key_paths() {
    let d = Dir::new();
    let f = d.write(
        "web.yaml",
        "#lxdops
filesytems:
  data:
    pattern: tank/x
devices:
  data:
    path: /data
    readnly: true
profiles-config: [a]
",
    );
    let e = errors(&f, &opts());
    let file = f.display().to_string();
    assert!(
        e.contains(&format!(
            "{file}: unknown key `filesytems` (did you mean `filesystems`?)"
        )),
        "{e:?}"
    );
    assert!(
        e.contains(&format!(
            "{file}: unknown key `devices.data.readnly` (did you mean `readonly`?)"
        )),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("`profiles-config` is an lxdops key")),
        "{e:?}"
    );
}

#[test]
fn a_template_ending_in_stop_and_snapshot_as_lxdops_defines_them() {
    let d = Dir::new();
    // The shape of the lxdops demo's templates.
    let f = d.write(
        "nginx.yaml",
        "#lxdops\nimage: reroot-old\nstop: true\nsnapshot: copy\n",
    );
    let i = load_one(&f, &opts());
    assert!(i.stop);
    assert_eq!(i.snapshot.as_deref(), Some("copy"));
    // Neither: nothing happens after the build.
    let g = d.write("plain.yaml", "#lxdops\nimage: reroot-old\n");
    let i = load_one(&g, &opts());
    assert!(!i.stop);
    assert_eq!(i.snapshot, None);
    // Included, and overridden by the including file; the name may come from a property.
    d.write("tpl.yaml", "#lxdops\nstop: true\nsnapshot: base\n");
    let h = d.write(
        "site.yaml",
        "#lxdops\ninclude: [tpl.yaml]\nimage: x\nstop: false\nsnapshot: (snap)\n",
    );
    let i = load_one(&h, &with_p(&[("snap", "v2")]));
    assert!(!i.stop);
    assert_eq!(i.snapshot.as_deref(), Some("v2"));
    // Bad values name the file and key.
    let b = d.write("bad.yaml", "#lxdops\nimage: x\nstop: yes please\n");
    let e = errors(&b, &opts());
    let file = b.display().to_string();
    assert_eq!(
        e,
        [format!(
            "{file}: stop: expected true or false, found a string"
        )]
    );
    let b = d.write("bad2.yaml", "#lxdops\nimage: x\nsnapshot: a/b\n");
    let e = errors(&b, &opts());
    let file = b.display().to_string();
    assert!(
        e.contains(&format!(
            "{file}: snapshot: `a/b` is not a valid snapshot name (no `/` or spaces)"
        )),
        "{e:?}"
    );
}

#[test]
fn an_image_on_a_remote_is_read_as_written_and_a_half_written_one_is_refused() {
    let d = Dir::new();
    // The lxops tutorial's template: whether `images` serves it is asked when a run is
    // planned (run::images), with the client configuration.
    let f = d.write(
        "ssh-template.yaml",
        "#lxops-v1\nostype: alpine\nimage: images:alpine/3.23\n",
    );
    assert_eq!(
        load_one(&f, &opts()).image.as_deref(),
        Some("images:alpine/3.23")
    );
    for bad in [":alpine", "images:", "a/b:c"] {
        let g = d.write("bad.yaml", &format!("#lxops-v1\nimage: \"{bad}\"\n"));
        assert_eq!(
            errors(&g, &opts()),
            [format!(
                "{}: image: `{bad}`: expected ALIAS, or REMOTE:ALIAS for an image on a remote \
                 of the lxc/incus client configuration",
                g.display()
            )]
        );
    }
    // A local alias, with or without a slash, is fine.
    let g = d.write("t.yaml", "#lxops-v1\nimage: alpine/3.23\n");
    assert_eq!(load_one(&g, &opts()).image.as_deref(), Some("alpine/3.23"));
}

#[test]
fn wait_ready_defaults_to_lxdops_300_seconds_and_is_set_per_config() {
    let d = Dir::new();
    let f = d.write("a.yaml", "#lxdops\nimage: x\n");
    assert_eq!(load_one(&f, &opts()).wait_ready, DEFAULT_WAIT_READY);
    assert_eq!(DEFAULT_WAIT_READY, 300);
    d.write("base.yaml", "#lxdops\nwait-ready: 60\n");
    let g = d.write("b.yaml", "#lxdops\ninclude: [base.yaml]\nimage: x\n");
    assert_eq!(load_one(&g, &opts()).wait_ready, 60);
    let h = d.write("c.yaml", "#lxdops\nimage: x\nwait-ready: 0\n");
    assert_eq!(load_one(&h, &opts()).wait_ready, 0);
    let bad = d.write("d.yaml", "#lxdops\nimage: x\nwait-ready: soon\n");
    let e = errors(&bad, &opts());
    assert!(
        e.iter()
            .any(|m| m.starts_with(&format!("{}: wait-ready:", bad.display()))),
        "{e:?}"
    );
}

#[test]
fn unknown_and_empty_properties_name_file_key_and_property() {
    let d = Dir::new();
    let f = d.write(
        "web.yaml",
        "#lxdops
properties:
  pool: tank
filesystems:
  data:
    pattern: (pol)/(instance)
  other:
    pattern: tank/()
",
    );
    let e = verify(std::slice::from_ref(&f), &opts());
    assert_eq!(e.len(), 2, "{e:?}");
    match &e[0] {
        ConfigError::UnknownProperty {
            file,
            key,
            property,
            suggestion,
        } => {
            assert_eq!(file, &f);
            assert_eq!(key, "filesystems.data.pattern");
            assert_eq!(property, "pol");
            assert_eq!(suggestion.as_deref(), Some("pool"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(
        matches!(&e[1], ConfigError::EmptyProperty { key, .. } if key == "filesystems.other.pattern")
    );
}

#[test]
fn bad_header_is_rejected() {
    let d = Dir::new();
    let f = d.write("web.yaml", "#cloud-config\nimage: x\n");
    let e = errors(&f, &opts());
    assert_eq!(e.len(), 1);
    assert!(
        e[0].contains("first line must be `#lxdops` or `#lxops-v1`, found `#cloud-config`"),
        "{e:?}"
    );
    assert!(parse_str(Path::new("x.yaml"), "image: x\n").is_err());
    assert!(parse_str(Path::new("x.yaml"), "#lxdops\nimage: x\n").is_ok());
}

#[test]
fn instance_names_follow_lxd_rules() {
    for bad in ["1web", "-web", "web-", "we_b", "web.site", ""] {
        assert!(check_instance_name(bad).is_err(), "{bad}");
    }
    assert!(check_instance_name(&"a".repeat(64)).is_err());
    assert!(check_instance_name(&"a".repeat(63)).is_ok());
    assert!(check_instance_name("web-1").is_ok());
    let d = Dir::new();
    let f = d.write("web_1.yaml", "#lxdops\n");
    let e = errors(&f, &opts());
    assert!(e[0].contains("instance name `web_1`"), "{e:?}");
    let named = LoadOptions {
        name: Some("good".into()),
        ..opts()
    };
    assert_eq!(load_one(&f, &named).name, "good");
    let g = d.write("other.yaml", "#lxdops\n");
    let e = verify(&[f, g], &named);
    assert!(matches!(e[0], ConfigError::NameWithManyFiles { count: 2 }));
}

#[test]
fn paths_cannot_escape_their_filesystem() {
    let d = Dir::new();
    let f = d.write(
        "web.yaml",
        "#lxdops
filesystems:
  data:
    pattern: tank/(instance)
  dir:
    pattern: /srv/(sub)
  btr:
    kind: btrfs
    pattern: srv/x
  bad:
    pattern: tank//x
devices:
  a:
    path: /a
    filesystem: data
    dir: (sub)
  b:
    path: /b
    filesystem: data
    dir: /etc
  c:
    path: relative
    filesystem: data
  d:
    path: /d
    dir: relative/dir
  e:
    path: /e
    filesystem: nosuch
",
    );
    let e = errors(&f, &with_p(&[("sub", "../etc")]));
    let has = |key: &str, what: &str| e.iter().any(|m| m.contains(key) && m.contains(what));
    assert!(has("filesystems.dir.pattern", "`..`"), "{e:?}");
    assert!(has("filesystems.btr.pattern", "absolute"), "{e:?}");
    assert!(has("filesystems.bad.pattern", "empty component"), "{e:?}");
    assert!(
        has("devices.a.dir", "would leave filesystem `data`"),
        "{e:?}"
    );
    assert!(has("devices.b.dir", "must be relative"), "{e:?}");
    assert!(has("devices.c.path", "absolute"), "{e:?}");
    assert!(has("devices.d.dir", "absolute"), "{e:?}");
    assert!(
        has("devices.e.filesystem", "no filesystem `nosuch`"),
        "{e:?}"
    );
}

#[test]
fn duplicates_are_rejected() {
    let d = Dir::new();
    d.write(
        "base.yaml",
        "#lxdops\nprofiles: [default, web]\ncloud-config-files: [a.cfg]\n",
    );
    d.write("a.cfg", "#cloud-config\n");
    let f = d.write(
        "web.yaml",
        "#lxdops
include: [base.yaml]
profiles: [web]
cloud-config-files: [./a.cfg]
filesystems:
  a:
    pattern: tank/x
  b:
    pattern: tank/x
devices:
  one:
    path: /data
    filesystem: a
  two:
    path: /data/
    filesystem: a
",
    );
    let e = verify(&[f], &opts());
    let dup = |what: &str| {
        e.iter()
            .any(|x| matches!(x, ConfigError::Duplicate { what: w, .. } if *w == what))
    };
    assert!(dup("profile"), "{e:?}");
    assert!(dup("cloud-config file"), "{e:?}");
    assert!(dup("filesystem path"), "{e:?}");
    assert!(dup("device path"), "{e:?}");
}

#[test]
fn template_is_resolved_with_its_own_name_and_the_cli_properties() {
    let d = Dir::new();
    let f = d.write(
        "site.yaml",
        "#lxdops
device-template: tpl
properties:
  pool: tank
filesystems:
  data:
    pattern: (pool)/(instance)
devices:
  www:
    path: /var/www
    filesystem: data
",
    );
    let source = |i: ResolvedInstance| match i.device_source {
        Some(DeviceSource::Template { instance }) => instance,
        other => panic!("expected a template, got {other:?}"),
    };
    // Without -P, the config's property; `(instance)` is the template's own name.
    let tpl = source(load_one(&f, &opts()));
    assert_eq!(tpl.name, "tpl");
    assert_eq!(
        tpl.filesystems[0].path,
        FilesystemPath::Zfs {
            dataset: "tank/tpl".into()
        }
    );
    assert_eq!(tpl.devices[0].host_dir, PathBuf::from("/tank/tpl/www"));
    // -P wins over the config for the template as for the instance.
    let i = load_one(&f, &with_p(&[("pool", "other")]));
    assert_eq!(
        i.filesystems[0].path,
        FilesystemPath::Zfs {
            dataset: "other/site".into()
        }
    );
    let tpl = source(i);
    assert_eq!(
        tpl.filesystems[0].path,
        FilesystemPath::Zfs {
            dataset: "other/tpl".into()
        }
    );
    assert_eq!(tpl.devices[0].host_dir, PathBuf::from("/other/tpl/www"));
    // The shape of the lxdops demo's websites: the root only -P defines (`(fsroot)`), a
    // device-template, and no properties in the file.
    let g = d.write(
        "site2.yaml",
        "#lxdops\ndevice-template: nginx\nfilesystems:\n  data:\n    pattern: (fsroot)/(instance)\ndevices:\n  www:\n    path: /var/www\n    filesystem: data\n",
    );
    let tpl = source(load_one(&g, &with_p(&[("fsroot", "/srv/demo")])));
    assert_eq!(
        tpl.devices[0].host_dir,
        PathBuf::from("/srv/demo/nginx/www")
    );
    // Without it, the error names the property and the source instance.
    let e = errors(&g, &opts());
    assert!(
        e.iter()
            .any(|m| m.contains("unknown property `(fsroot)`")
                && m.contains("source instance `nginx`")),
        "{e:?}"
    );
}

#[test]
fn source_config_and_device_origin() {
    let d = Dir::new();
    d.write(
        "tpl.yaml",
        "#lxdops\nproject: tplproj\nfilesystems:\n  data:\n    pattern: tank/tpl/(instance)\n",
    );
    let f = d.write(
        "site.yaml",
        "#lxdops
device-origin: golden@snap1
source-config: tpl.yaml
filesystems:
  data:
    pattern: tank/site/(instance)
  scratch:
    pattern: /srv/scratch/(instance)
    transient: true
",
    );
    let i = load_one(&f, &opts());
    match i.device_source {
        Some(DeviceSource::Origin { instance, snapshot }) => {
            assert_eq!(snapshot, "snap1");
            assert_eq!(instance.name, "golden");
            assert_eq!(instance.project, "tplproj");
            assert_eq!(instance.filesystems[0].path.display(), "tank/tpl/golden");
        }
        other => panic!("expected an origin, got {other:?}"),
    }
    let g = d.write(
        "bad.yaml",
        "#lxdops\ndevice-origin: golden\nfilesystems:\n  d:\n    pattern: /srv/x\n",
    );
    let e = errors(&g, &opts());
    assert!(e.iter().any(|m| m.contains("INSTANCE@SNAPSHOT")), "{e:?}");
    let h = d.write(
        "bad2.yaml",
        "#lxdops\ndevice-origin: golden@s\nfilesystems:\n  d:\n    pattern: /srv/x\n",
    );
    let e = errors(&h, &opts());
    assert!(
        e.iter().any(|m| m.contains("device-origin needs zfs")),
        "{e:?}"
    );
}

#[test]
fn lxc_options_map_to_config_profiles_and_ephemeral() {
    let d = Dir::new();
    let f = d.write(
        "web.yaml",
        "#lxdops
lxc-options: [-c, limits.cpu=2, '--config=limits.memory=1GB', -p extra, --ephemeral]
",
    );
    let i = load_one(&f, &opts());
    assert_eq!(
        i.instance_config.get("limits.cpu").map(String::as_str),
        Some("2")
    );
    assert_eq!(
        i.instance_config.get("limits.memory").map(String::as_str),
        Some("1GB")
    );
    assert_eq!(i.profiles, vec!["extra"]);
    assert!(i.ephemeral);
    let g = d.write("vm.yaml", "#lxdops\nlxc-options: [--vm, --storage, x]\n");
    let e = errors(&g, &opts());
    assert!(e.iter().any(|m| m.contains("containers only")), "{e:?}");
    assert!(
        e.iter()
            .any(|m| m.contains("unsupported lxc option `--storage`")),
        "{e:?}"
    );
    // The daemon deletes an ephemeral instance when it stops: `stop: true` would delete it.
    let h = d.write("eph.yaml", "#lxdops\nlxc-options: [-e]\nstop: true\n");
    let e = errors(&h, &opts());
    let file = h.display().to_string();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(&format!("{file}: stop: an ephemeral instance")),
        "{e:?}"
    );
}

#[test]
fn wrong_types_and_owner_format() {
    let d = Dir::new();
    let f = d.write(
        "web.yaml",
        "#lxdops
profiles: default
stop-timeout: -1
device-owner: root
filesystems:
  a:
    pattern: tank/a
    destroy: yes please
",
    );
    let e = errors(&f, &opts());
    assert!(
        e.iter()
            .any(|m| m.contains("profiles: expected a list of strings, found a string")),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.contains("stop-timeout")), "{e:?}");
    assert!(
        e.iter()
            .any(|m| m.contains("filesystems.a.destroy: expected true or false")),
        "{e:?}"
    );
    let g = d.write("owner.yaml", "#lxdops\ndevice-owner: root\n");
    let e = errors(&g, &opts());
    assert!(
        e.iter()
            .any(|m| m.contains("device-owner") && m.contains("uid:gid")),
        "{e:?}"
    );
}

#[test]
fn verify_reports_problems_of_every_file_and_cloud_config() {
    let d = Dir::new();
    d.write("bad.cfg", "#cloud-config\nwrite-files: []\n");
    let a = d.write(
        "a.yaml",
        "#lxdops\ncloud-config-files: [bad.cfg, missing.cfg]\n",
    );
    let b = d.write("b.yaml", "#lxdops\nimagee: x\n");
    let e: Vec<String> = verify(&[a, b], &opts())
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(e.len(), 3, "{e:?}");
    // a.yaml's two problems (in either order), then b.yaml's.
    assert!(
        e[..2]
            .iter()
            .any(|m| m.contains("bad.cfg: write-files: not a cloud-config key: lxdops ignored it")),
        "{e:?}"
    );
    assert!(
        e[..2]
            .iter()
            .any(|m| m.contains("missing.cfg does not exist")),
        "{e:?}"
    );
    assert!(
        e[2].contains("unknown key `imagee` (did you mean `image`?)"),
        "{e:?}"
    );
    assert!(load(&[d.path().join("b.yaml")], &opts()).is_err());
}

#[test]
fn yaml_syntax_errors_name_the_file() {
    let d = Dir::new();
    let f = d.write("web.yaml", "#lxdops\nimage: [unclosed\n");
    let e = errors(&f, &opts());
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(&format!("{}: invalid YAML", f.display())),
        "{e:?}"
    );
}

#[test]
fn cloud_config_files_are_checked_against_the_os_type() {
    let d = Dir::new();
    d.write("pkgs.cfg", "#cloud-config\npackages: [curl]\n");
    let f = d.write(
        "web.yaml",
        "#lxdops\nostype: busybox\ncloud-config-files: [pkgs.cfg]\n",
    );
    let e = errors(&f, &opts());
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].ends_with("pkgs.cfg: packages: busybox has no package manager"),
        "{e:?}"
    );
    let g = d.write(
        "deb.yaml",
        "#lxdops\nostype: debian\ncloud-config-files: [pkgs.cfg]\n",
    );
    assert!(errors(&g, &opts()).is_empty());
}

/// lxdops #4 differs on purpose: lxops applied `ostype` and `image` in pre-order, so an
/// included `#lxops-v1` file's value beat the including file's, against its own rule for every
/// other scalar. In reroot the including file wins for these too, whatever the header.
#[test]
fn an_included_lxops_file_does_not_override_the_parents_ostype_and_image() {
    let d = Dir::new();
    d.write(
        "base.yaml",
        "#lxops-v1\nostype: alpine\nimage: base-image\n",
    );
    let top = d.write(
        "site.yaml",
        "#lxops-v1\ninclude: [base.yaml]\nostype: debian\nimage: site-image\n",
    );
    let i = load_one(&top, &opts());
    assert_eq!(i.ostype, Some(OsType::Debian));
    assert_eq!(i.image.as_deref(), Some("site-image"));
    // An including file that leaves them unset still takes the include's.
    let bare = d.write("bare.yaml", "#lxops-v1\ninclude: [base.yaml]\n");
    let i = load_one(&bare, &opts());
    assert_eq!(i.ostype, Some(OsType::Alpine));
    assert_eq!(i.image.as_deref(), Some("base-image"));
}
