//! `reroot completions` and `reroot man`: the bash completions load into bash and complete
//! commands and options; the manual pages render with `man -l`. No daemon is needed.

use std::path::Path;
use std::process::Command;

const REROOT: &str = env!("CARGO_BIN_EXE_reroot");

fn reroot(args: &[&str]) -> String {
    let out = Command::new(REROOT)
        .args(args)
        .output()
        .expect("run reroot");
    assert!(
        out.status.success(),
        "reroot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// What bash's completion function offers for the words of a command line (the last word is
/// the one being completed).
fn complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source {script}\n\
         complete -p reroot || exit 3\n\
         COMP_WORDS=({words})\n\
         COMP_CWORD={cword}\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         _reroot reroot \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = script.display(),
        words = quoted.join(" "),
        cword = words.len() - 1,
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bash: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    // `complete -p reroot` shows the registration first.
    let registered = lines.next().unwrap_or_default();
    assert!(
        registered.starts_with("complete ") && registered.ends_with(" reroot"),
        "{stdout}"
    );
    lines.map(str::to_string).collect()
}

#[test]
fn bash_completions_load_and_complete_commands_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("reroot.bash");
    std::fs::write(&script, reroot(&["completions", "bash"])).unwrap();
    assert_eq!(complete(&script, &["reroot", "jou"]), ["journal"]);
    let all = complete(&script, &["reroot", ""]);
    for c in [
        "rebuild",
        "resume",
        "undo",
        "history",
        "show",
        "completions",
        "man",
    ] {
        assert!(all.iter().any(|w| w == c), "{c} missing: {all:?}");
    }
    assert_eq!(
        complete(&script, &["reroot", "journal", "export", "--with"]),
        ["--with-content"]
    );
    assert_eq!(
        complete(&script, &["reroot", "completions", "fi"]),
        ["fish"]
    );
}

#[test]
fn zsh_and_fish_completions_name_the_commands() {
    let zsh = reroot(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef reroot"), "{}", &zsh[..80]);
    let fish = reroot(&["completions", "fish"]);
    for text in [&zsh, &fish] {
        assert!(text.contains("rebuild") && text.contains("with-content"));
    }
    assert!(fish.contains("complete -c reroot"));
    let out = Command::new(REROOT)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"));
}

/// `man -l PAGE` rendered as text, with what man said on stderr.
fn render(page: &Path) -> (String, String) {
    let out = Command::new("/usr/bin/man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("run /usr/bin/man");
    assert!(
        out.status.success(),
        "man -l {}: {}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn man_pages_render_with_man() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("reroot.1");
    std::fs::write(&page, reroot(&["man"])).unwrap();
    let (text, warnings) = render(&page);
    assert!(warnings.trim().is_empty(), "{warnings}");
    for want in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "--journal",
        "rebuild",
        "SUBCOMMANDS",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }

    let pages = dir.path().join("pages");
    reroot(&["man", "--dir", pages.to_str().unwrap()]);
    let mut names: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for want in ["reroot.1", "reroot-rebuild.1", "reroot-journal-export.1"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let (text, warnings) = render(&pages.join("reroot-journal-export.1"));
    assert!(warnings.trim().is_empty(), "{warnings}");
    assert!(text.contains("--with-content"), "{text}");
    assert!(text.contains("audit extract"), "{text}");
}
