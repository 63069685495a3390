//! What a person reads: tables of runs, of an instance's steps, and of a pass's outcome, built
//! from journal records. (`--json` output is the same data serialized, done by the commands.)

use std::fmt::Write as _;

use journal::{RunState, RunSummary, StepStatus};

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

/// `reroot history`: one line per run.
pub fn runs_table(runs: &[RunSummary]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                short_id(&r.id),
                utc(r.started_at_ms),
                r.status.to_string(),
                r.instances.join(","),
                r.command.join(" "),
            ]
        })
        .collect();
    table(&["RUN", "STARTED", "STATUS", "INSTANCES", "COMMAND"], &rows)
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
    let _ = writeln!(out, "command  {}", h.command.join(" "));
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

/// `rebuild --dry-run`: one line per instance, what would happen and what changes.
pub fn forecast_table(forecasts: &[crate::steps::forecast::Forecast]) -> String {
    use crate::steps::forecast::Verdict;
    let rows: Vec<Vec<String>> = forecasts
        .iter()
        .map(|f| {
            let (what, detail) = match &f.verdict {
                Verdict::Launch => ("launch".to_string(), String::new()),
                Verdict::Rebuild => ("rebuild".to_string(), String::new()),
                Verdict::Skip { run } => (
                    "skip".to_string(),
                    format!("already built from it by run {}", &run[..run.len().min(8)]),
                ),
                Verdict::Refuse { reason } => ("REFUSED".to_string(), reason.clone()),
            };
            let profiles = if f.profiles_before == f.profiles_after {
                f.profiles_after.join(",")
            } else {
                format!(
                    "{} → {}",
                    f.profiles_before.join(","),
                    f.profiles_after.join(",")
                )
            };
            let created = if f.new_filesystems.is_empty() {
                "-".to_string()
            } else {
                f.new_filesystems.join(", ")
            };
            vec![
                f.instance.clone(),
                what,
                format!("{} → {}", f.from.as_deref().unwrap_or("-"), f.to),
                if f.running { "yes" } else { "no" }.to_string(),
                profiles,
                f.devices.clone(),
                created,
                detail,
            ]
        })
        .collect();
    table(
        &[
            "INSTANCE",
            "ACTION",
            "SOURCE",
            "DOWN",
            "PROFILES",
            "DEVICES",
            "NEW FILESYSTEMS",
            "DETAIL",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
