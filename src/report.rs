//! What a person reads: tables of runs, of an instance's steps, and of a pass's outcome, built
//! from journal records. Runs of hundreds of instances stay readable: commands are shortened.
//! (`--json` output is the same data, with the full command, serialized by the commands from
//! the types here.)

use std::fmt::Write as _;

use journal::{RunState, RunSummary, StepStatus};
use serde::Serialize;

use crate::engine::{InstanceOutcome, RunReport};

/// `2026-11-22 03:41:07Z` from milliseconds since the epoch (UTC, no time-zone database).
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `1.234 s` or `87 ms`.
pub fn duration(ms: i64) -> String {
    if ms >= 1000 {
        format!("{:.3} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

/// Pads each column to its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// The short form of a run id that users type.
pub fn short_id(id: &journal::RunId) -> String {
    id.simple().to_string()[..8].to_string()
}

/// How many operands a shortened command line keeps: the subcommand and the first path or two
/// (or, for `undo`, the run id and the first instance).
const KEPT_OPERANDS: usize = 3;

/// A command line short enough for one line of a table, whatever the number of config files:
/// the program by its file name, every flag, the word after each flag, and the first
/// [`KEPT_OPERANDS`] operands (subcommand, config paths, run id, instance names); the other
/// operands become `… (+N more)`. Which flags take a value is not known here (the command may
/// have been recorded by another version of reroot), so the word after a flag is always kept:
/// a flag's value is never hidden, at the cost of an extra path after a flag that takes none.
/// Words a shell would need quoted are quoted. `--json` output keeps the full command.
pub fn short_command(argv: &[String]) -> String {
    let Some((program, args)) = argv.split_first() else {
        return String::new();
    };
    let program = std::path::Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program);
    // (word, is an operand)
    let mut words: Vec<(&str, bool)> = Vec::with_capacity(args.len());
    let mut value_may_follow = false;
    let mut flags_ended = false;
    for arg in args {
        if !flags_ended && arg.len() > 1 && arg.starts_with('-') {
            flags_ended = arg == "--";
            value_may_follow = !flags_ended && !arg.contains('=');
            words.push((arg, false));
        } else if value_may_follow {
            value_may_follow = false;
            words.push((arg, false));
        } else {
            words.push((arg, true));
        }
    }
    let operands = words.iter().filter(|(_, operand)| *operand).count();
    // Hiding a single operand would not make the line any shorter.
    let keep = if operands > KEPT_OPERANDS + 1 {
        KEPT_OPERANDS
    } else {
        operands
    };
    let mut parts = vec![shell_word(program)];
    let mut seen = 0;
    let mut hidden = 0;
    for (word, operand) in words {
        if operand {
            seen += 1;
            if seen > keep {
                hidden += 1;
                continue;
            }
        }
        if hidden > 0 {
            parts.push(format!("… (+{hidden} more)"));
            hidden = 0;
        }
        parts.push(shell_word(word));
    }
    if hidden > 0 {
        parts.push(format!("… (+{hidden} more)"));
    }
    parts.join(" ")
}

/// `word` as it would be typed to a shell: as is when plain, else in single quotes, so that a
/// path with a space does not read as two arguments.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `reroot history`: one line per run, with its number of instances and its command shortened.
pub fn runs_table(runs: &[RunSummary]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                short_id(&r.id),
                utc(r.started_at_ms),
                r.status.to_string(),
                r.instances.len().to_string(),
                short_command(&r.command),
            ]
        })
        .collect();
    table(&["RUN", "STARTED", "STATUS", "INSTANCES", "COMMAND"], &rows)
}

/// A run as `history --json` lists it: everything the journal says, and its instance count.
#[derive(Debug, Clone, Serialize)]
pub struct ListedRun<'a> {
    /// The journal's summary of the run (full command, every instance).
    #[serde(flatten)]
    pub run: &'a RunSummary,
    /// How many instances the run targets.
    pub instance_count: usize,
}

/// The runs of `history --json`.
pub fn listed_runs(runs: &[RunSummary]) -> Vec<ListedRun<'_>> {
    runs.iter()
        .map(|run| ListedRun {
            run,
            instance_count: run.instances.len(),
        })
        .collect()
}

/// The downtime an instance's `start` step recorded, if any.
pub fn downtime_ms(state: &RunState, instance: &str) -> Option<i64> {
    let out = state.step(instance, "start")?.output.as_ref()?;
    let v: serde_json::Value = serde_json::from_str(out).ok()?;
    v.get("downtime_ms")?.as_i64()
}

fn status_word(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Started => "started",
        StepStatus::Succeeded => "ok",
        StepStatus::Failed => "FAILED",
        StepStatus::UndoStarted => "undo started",
        StepStatus::UndoFinished => "undone",
        StepStatus::UndoFailed => "UNDO FAILED",
    }
}

/// `reroot show RUN`: the run, then each instance's steps with result and duration.
pub fn run_detail(state: &RunState) -> String {
    let h = &state.header;
    let mut out = String::new();
    let _ = writeln!(out, "run      {}", h.id);
    let _ = writeln!(out, "command  {}", short_command(&h.command));
    let _ = writeln!(out, "by       {}@{}", h.user, h.host);
    let _ = writeln!(out, "started  {}", utc(h.started_at_ms));
    let _ = writeln!(out, "status   {}", state.status);
    for inst in &state.instances {
        let _ = writeln!(out);
        let downtime = downtime_ms(state, &inst.name)
            .map(|d| format!(" (downtime {})", duration(d)))
            .unwrap_or_default();
        let _ = writeln!(out, "{}{downtime}", inst.name);
        let rows: Vec<Vec<String>> = inst
            .steps
            .iter()
            .map(|s| {
                vec![
                    format!("  {}", s.name),
                    status_word(s.status).to_string(),
                    s.attempt.to_string(),
                    s.ended_at_ms
                        .map(|e| duration(e - s.started_at_ms))
                        .unwrap_or_else(|| "-".into()),
                    s.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&table(&["  STEP", "RESULT", "TRY", "TIME", "ERROR"], &rows));
    }
    for note in &state.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// The end of `rebuild`, `snapshot`, `resume` and `undo`: how each instance ended; `done` is
/// the word for an instance whose steps all succeeded ("rebuilt").
pub fn pass_summary(report: &RunReport, state: &RunState, done: &str) -> String {
    let rows: Vec<Vec<String>> = report
        .instances
        .iter()
        .map(|(name, outcome)| {
            let (result, detail) = match outcome {
                InstanceOutcome::Succeeded => (done.to_string(), String::new()),
                InstanceOutcome::Undone => ("undone".to_string(), String::new()),
                InstanceOutcome::NotStarted => ("not started".to_string(), String::new()),
                InstanceOutcome::Failed { step, error } => {
                    (format!("FAILED at {step}"), error.clone())
                }
                InstanceOutcome::Reverted { step, error } if step.is_empty() => {
                    ("REVERTED to its old root".to_string(), error.clone())
                }
                InstanceOutcome::Reverted { step, error } => (
                    format!("FAILED at {step}, REVERTED to its old root"),
                    error.clone(),
                ),
                InstanceOutcome::UndoFailed { step, error } => {
                    (format!("UNDO FAILED at {step}"), error.clone())
                }
            };
            let downtime = match outcome {
                InstanceOutcome::Succeeded => downtime_ms(state, name)
                    .map(duration)
                    .unwrap_or_else(|| "-".into()),
                _ => "-".into(),
            };
            vec![name.clone(), result, downtime, detail]
        })
        .collect();
    let mut out = table(&["INSTANCE", "RESULT", "DOWNTIME", "DETAIL"], &rows);
    let _ = writeln!(out, "run {} {}", short_id(&report.run), report.outcome);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use journal::RunStatus;

    fn argv(words: &str) -> Vec<String> {
        words.split(' ').map(str::to_string).collect()
    }

    fn paths(n: usize) -> String {
        (0..n)
            .map(|i| format!("configs/web/w{i:03}.yaml"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn commands_keep_flags_and_the_first_operands() {
        let cases: Vec<(String, &str)> = vec![
            (
                format!("/usr/local/bin/reroot rebuild --parallel 8 {}", paths(100)),
                "reroot rebuild --parallel 8 configs/web/w000.yaml configs/web/w001.yaml … (+98 more)",
            ),
            // Four operands: hiding one would save nothing.
            (
                "reroot rebuild a.yaml b.yaml c.yaml".to_string(),
                "reroot rebuild a.yaml b.yaml c.yaml",
            ),
            (
                "reroot rebuild a.yaml b.yaml c.yaml d.yaml".to_string(),
                "reroot rebuild a.yaml b.yaml … (+2 more)",
            ),
            // Flags after the paths, and their values, stay where they were.
            (
                "reroot rebuild a b c d e --canaries 1 -P tpl=v2".to_string(),
                "reroot rebuild a b … (+3 more) --canaries 1 -P tpl=v2",
            ),
            // Global flags before the subcommand; a value joined with `=` has no word after.
            (
                "reroot --journal /j --socket=/s rebuild a b c d".to_string(),
                "reroot --journal /j --socket=/s rebuild a b … (+2 more)",
            ),
            // A flag that takes no value keeps the word after it: a value is never hidden.
            (
                "reroot rebuild --dry-run a b c d e".to_string(),
                "reroot rebuild --dry-run a b c … (+2 more)",
            ),
            (
                "reroot undo 1a2b3c4d web-1 web-2 web-3 web-4 web-5".to_string(),
                "reroot undo 1a2b3c4d web-1 … (+4 more)",
            ),
            // After `--` everything is an operand.
            (
                "reroot undo -- 1a2b3c4d -w1 -w2 -w3".to_string(),
                "reroot undo -- 1a2b3c4d -w1 … (+2 more)",
            ),
            ("reroot status".to_string(), "reroot status"),
        ];
        for (command, short) in cases {
            assert_eq!(short_command(&argv(&command)), short, "{command}");
        }
        assert_eq!(short_command(&[]), "");
        let odd: Vec<String> = ["reroot", "rebuild", "my site.yaml", "it's.yaml", ""]
            .map(String::from)
            .to_vec();
        assert_eq!(
            short_command(&odd),
            r"reroot rebuild 'my site.yaml' 'it'\''s.yaml' ''"
        );
    }

    #[test]
    fn history_lines_count_instances_and_shorten_commands() {
        let instances: Vec<String> = (0..150).map(|i| format!("w{i:03}")).collect();
        let run = RunSummary {
            id: uuid::Uuid::from_u128(0x1a2b3c4d_0000_0000_0000_000000000000),
            command: argv(&format!("reroot rebuild {}", paths(150))),
            instances,
            started_at_ms: 0,
            status: RunStatus::Succeeded,
            events: 1,
            last_at_ms: 0,
            user: "alice".into(),
        };
        let text = runs_table(std::slice::from_ref(&run));
        let line = text.lines().nth(1).expect("a line for the run");
        assert_eq!(
            line,
            "1a2b3c4d  1970-01-01 00:00:00Z  succeeded  150        reroot rebuild \
             configs/web/w000.yaml configs/web/w001.yaml … (+148 more)"
        );
        let json = serde_json::to_value(listed_runs(&[run])).unwrap();
        assert_eq!(json[0]["instance_count"], 150);
        assert_eq!(json[0]["command"].as_array().unwrap().len(), 152);
        assert_eq!(json[0]["instances"].as_array().unwrap().len(), 150);
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00Z");
        assert_eq!(utc(1_795_315_922_000), "2026-11-22 02:52:02Z");
        assert_eq!(utc(-1000), "1969-12-31 23:59:59Z");
    }

    #[test]
    fn durations_switch_to_seconds_at_one_second() {
        assert_eq!(duration(87), "87 ms");
        assert_eq!(duration(1234), "1.234 s");
    }

    #[test]
    fn table_pads_columns_to_the_widest_cell() {
        let t = table(
            &["A", "BB", "C"],
            &[vec!["xxx".into(), "y".into(), "z".into()]],
        );
        assert_eq!(t, "A    BB  C\nxxx  y   z\n");
    }
}
