//! The dependencies between modules run one way (README, "Architecture"): no import cycle
//! between the top-level modules of `src/`, nor between the files of `journal/src`. Read from
//! the source (`crate::NAME` in code, test code left out), so a new cycle fails here, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The modules a file's code names as `crate::NAME`: comments and everything from the first
/// `#[cfg(test)]` on are left out (tests may use anything).
fn uses(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        let code = code.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let name: String = rest[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            rest = &rest[at + 7..];
        }
    }
    out
}

/// The module graph of a crate: `module -> modules it uses`, where a file's module is given by
/// `module_of` (`None`: left out).
fn graph(
    src: &Path,
    module_of: impl Fn(&Path) -> Option<String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).expect("below src");
        let Some(module) = module_of(rel) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read source");
        let used = uses(&text);
        let entry = g.entry(module.clone()).or_default();
        entry.extend(used.into_iter().filter(|u| *u != module));
    }
    // Only edges between modules of this crate.
    let known: BTreeSet<String> = g.keys().cloned().collect();
    for targets in g.values_mut() {
        targets.retain(|t| known.contains(t));
    }
    g
}

/// A cycle of the graph, as a path `a -> b -> ... -> a`, if there is one.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut c = path[at..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files that are test modules as a whole (declared `#[cfg(test)] mod ...;`).
fn is_test_file(rel: &Path) -> bool {
    matches!(
        rel.file_name().and_then(|n| n.to_str()),
        Some("tests.rs" | "simulation.rs")
    )
}

#[test]
fn top_level_modules_of_src_have_no_import_cycle() {
    let g = graph(&root().join("src"), |rel| {
        if is_test_file(rel) {
            return None;
        }
        let first = rel.components().next()?.as_os_str().to_str()?.to_string();
        match first.as_str() {
            "lib.rs" | "main.rs" | "bin" => None,
            f => Some(f.trim_end_matches(".rs").to_string()),
        }
    });
    for expected in [
        "cli",
        "config",
        "cloudconfig",
        "engine",
        "lxd",
        "steps",
        "storage",
    ] {
        assert!(g.contains_key(expected), "no module {expected} in {g:?}");
    }
    assert_eq!(
        cycle(&g),
        None,
        "import cycle between modules of src/: {g:#?}"
    );
    // The bottom of the drawing: the client and the engine know none of the others.
    for (low, allowed) in [("lxd", &[][..]), ("engine", &[][..]), ("input", &[][..])] {
        let used: Vec<&String> = g[low]
            .iter()
            .filter(|m| !allowed.contains(&m.as_str()))
            .collect();
        assert!(used.is_empty(), "{low} uses {used:?}");
    }
}

#[test]
fn files_of_the_journal_crate_have_no_import_cycle() {
    let g = graph(&root().join("journal/src"), |rel| {
        let name = rel.to_str()?;
        (!name.starts_with("bin/") && name != "lib.rs")
            .then(|| name.trim_end_matches(".rs").to_string())
    });
    assert!(g.contains_key("writer") && g.contains_key("state"), "{g:?}");
    assert_eq!(
        cycle(&g),
        None,
        "import cycle between files of journal/src: {g:#?}"
    );
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        uses("use crate::lxd::Client; // crate::nope\n#[cfg(test)]\nuse crate::steps;"),
        BTreeSet::from(["lxd".to_string()])
    );
}
