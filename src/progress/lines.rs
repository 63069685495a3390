//! The line printed on stderr as each instance finishes, when stderr is not a terminal (a log,
//! a pipe, a CI job): one line per instance, so that a log of a 200-instance run reads as a
//! list of what became of each.

use crate::engine::InstanceOutcome;

/// How one instance ended, as a line for stderr (without its newline).
///
/// `done` is the run kind's word for success ("rebuilt"); `duration_ms` the instance's time in
/// this pass; `downtime_ms` the downtime its steps recorded; `down`: it is still inside its
/// downtime window (held, or its daemon gone); `earlier`: no step ran in this pass, the
/// instance was through before it (a resume).
pub fn finished_line(
    instance: &str,
    outcome: &InstanceOutcome,
    done: &str,
    duration_ms: Option<i64>,
    downtime_ms: Option<i64>,
    down: bool,
    earlier: bool,
) -> String {
    let took = match (earlier, duration_ms) {
        (true, _) => " earlier in this run".to_string(),
        (false, Some(ms)) => format!(" in {}", seconds(ms)),
        (false, None) => String::new(),
    };
    let still_down = if down { ", still DOWN" } else { "" };
    let what = match outcome {
        InstanceOutcome::Succeeded => {
            let downtime = downtime_ms
                .map(|ms| format!(" (down {})", seconds(ms)))
                .unwrap_or_default();
            format!("{done}{took}{downtime}")
        }
        InstanceOutcome::Undone => format!("undone{took}"),
        InstanceOutcome::NotStarted => "not started".to_string(),
        InstanceOutcome::Failed { step, error } => {
            format!("FAILED at {step}{still_down}: {}", one_line(error))
        }
        InstanceOutcome::Reverted { step, error } if step.is_empty() => {
            format!("REVERTED to its old root: {}", one_line(error))
        }
        InstanceOutcome::Reverted { step, error } => format!(
            "FAILED at {step}, REVERTED to its old root: {}",
            one_line(error)
        ),
        InstanceOutcome::UndoFailed { step, error } => {
            format!("UNDO FAILED at {step}{still_down}: {}", one_line(error))
        }
    };
    format!("reroot: {instance} {what}")
}

/// The line after the last instance when some never started (one line for all of them: they
/// are listed in the summary, and a run stopped early may leave hundreds).
pub fn not_started_line(count: usize) -> Option<String> {
    match count {
        0 => None,
        1 => Some("reroot: 1 instance not started".to_string()),
        n => Some(format!("reroot: {n} instances not started")),
    }
}

/// `4.2 s`, or `870 ms` under a second.
pub fn seconds(ms: i64) -> String {
    if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} ms", ms.max(0))
    }
}

/// An error message on one line: its lines joined with `; ` (a log line per instance stays
/// one line, whatever a daemon answered).
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuilt_instance_gives_its_time_and_downtime() {
        let ok = InstanceOutcome::Succeeded;
        assert_eq!(
            finished_line(
                "web-017",
                &ok,
                "rebuilt",
                Some(4210),
                Some(1290),
                false,
                false
            ),
            "reroot: web-017 rebuilt in 4.2 s (down 1.3 s)"
        );
        // Launched (it was not running before): no downtime.
        assert_eq!(
            finished_line("web-017", &ok, "rebuilt", Some(870), None, false, false),
            "reroot: web-017 rebuilt in 870 ms"
        );
        assert_eq!(
            finished_line("tpl", &ok, "snapshotted", None, None, false, false),
            "reroot: tpl snapshotted"
        );
        // A resume: it was through before this pass; no time of this pass is its own.
        assert_eq!(
            finished_line("web-017", &ok, "rebuilt", Some(1), None, false, true),
            "reroot: web-017 rebuilt earlier in this run"
        );
    }

    #[test]
    fn failures_name_the_step_and_what_became_of_the_instance() {
        let reverted = InstanceOutcome::Reverted {
            step: "reattach".into(),
            error: "profile web-018.reroot: not found".into(),
        };
        assert_eq!(
            finished_line(
                "web-018",
                &reverted,
                "rebuilt",
                Some(3000),
                None,
                false,
                false
            ),
            "reroot: web-018 FAILED at reattach, REVERTED to its old root: profile \
             web-018.reroot: not found"
        );
        let resumed_revert = InstanceOutcome::Reverted {
            step: String::new(),
            error: "put back earlier".into(),
        };
        assert_eq!(
            finished_line("w", &resumed_revert, "rebuilt", Some(1), None, false, false),
            "reroot: w REVERTED to its old root: put back earlier"
        );
        let held = InstanceOutcome::Failed {
            step: "swap".into(),
            error: "line one\n  line two\n".into(),
        };
        assert_eq!(
            finished_line("w", &held, "rebuilt", Some(1), None, true, false),
            "reroot: w FAILED at swap, still DOWN: line one; line two"
        );
        assert_eq!(
            finished_line("w", &held, "rebuilt", Some(1), None, false, false),
            "reroot: w FAILED at swap: line one; line two"
        );
        let undo = InstanceOutcome::UndoFailed {
            step: "retire".into(),
            error: "name taken".into(),
        };
        assert_eq!(
            finished_line("w", &undo, "rebuilt", Some(1), None, true, false),
            "reroot: w UNDO FAILED at retire, still DOWN: name taken"
        );
        assert_eq!(
            finished_line(
                "w",
                &InstanceOutcome::Undone,
                "rebuilt",
                Some(2000),
                None,
                false,
                false
            ),
            "reroot: w undone in 2.0 s"
        );
    }

    #[test]
    fn every_line_is_one_line() {
        let outcomes = [
            InstanceOutcome::Succeeded,
            InstanceOutcome::Undone,
            InstanceOutcome::NotStarted,
            InstanceOutcome::Failed {
                step: "s".into(),
                error: "a\nb\r\nc".into(),
            },
            InstanceOutcome::Reverted {
                step: "s".into(),
                error: "\n\na\n".into(),
            },
            InstanceOutcome::UndoFailed {
                step: "s".into(),
                error: "a\n".into(),
            },
        ];
        for o in &outcomes {
            let line = finished_line("w", o, "rebuilt", Some(5), Some(5), true, false);
            assert!(!line.contains(['\n', '\r']), "{line:?}");
            assert!(line.starts_with("reroot: w "), "{line:?}");
        }
    }

    #[test]
    fn instances_not_started_are_counted_on_one_line() {
        assert_eq!(not_started_line(0), None);
        assert_eq!(
            not_started_line(1).as_deref(),
            Some("reroot: 1 instance not started")
        );
        assert_eq!(
            not_started_line(183).as_deref(),
            Some("reroot: 183 instances not started")
        );
    }
}
