//! Command lines shown to people: an argument vector written as a POSIX shell would read it
//! back, so a path with a space or a quote shows as one word. One rule for every message: a
//! plain word (letters, digits and `-_./=:,+@%`) as it is, which keeps `-P tpl=v2` readable;
//! anything else quoted by `shlex` (it refuses only a NUL byte, which no argument can hold,
//! shown escaped then).

/// One word, quoted when a shell would otherwise split or expand it.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        return word.to_string();
    }
    match shlex::try_quote(word) {
        Ok(quoted) => quoted.into_owned(),
        Err(_) => format!("{word:?}"),
    }
}

/// An argument vector as one shell-like line.
pub fn display_argv<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_read_back_as_the_same_argument_vector() {
        let argv = [
            "rsync",
            "-a",
            "/srv/my site/",
            "it's",
            "",
            "$HOME",
            "plain=1",
        ];
        let line = display_argv(&argv);
        assert_eq!(shlex::split(&line).unwrap(), argv);
        assert!(line.starts_with("rsync -a "), "{line}");
        assert!(line.ends_with(" plain=1"), "{line}");
    }
}
