//! The live view on a terminal: a line of counts (done, failed, in flight, down right now, not
//! started) with a bar, the elapsed time and an ETA, then a line per instance under way with
//! its current step. Failures are printed above it as they happen and stay; the rest is
//! cleared at the end, before the summary table.
//!
//! Drawn with `indicatif`, which redraws in place and knows the terminal's width. Anything else
//! written to stderr while the view is shown goes through [`suspend`], so log lines do not
//! leave half-drawn copies of the view behind.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::tally::{Flight, Tally};
use crate::engine::{Direction, EngineEvent, Fact};

/// At most this many instance lines: a view taller than the terminal cannot be redrawn in
/// place; the others under way are counted on the first line.
const MAX_LINES: usize = 10;

/// The view being shown, if one is, for [`suspend`].
static SHOWN: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Runs `f` (which writes to stderr) with the view, if one is shown, taken off the screen
/// meanwhile and drawn again after.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let shown = SHOWN.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match shown {
        Some(view) => view.suspend(f),
        None => f(),
    }
}

/// The view.
pub struct Live {
    view: MultiProgress,
    counts: ProgressBar,
    lines: BTreeMap<String, ProgressBar>,
    /// The widest instance name of the run, to line the instance lines up.
    width: usize,
}

impl Live {
    /// Starts showing the view on stderr.
    pub fn show() -> Live {
        Live::on(ProgressDrawTarget::stderr())
    }

    /// Starts showing the view on `target`.
    fn on(target: ProgressDrawTarget) -> Live {
        let view = MultiProgress::with_draw_target(target);
        let style = ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:20}] {pos}/{len} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let counts = view.add(ProgressBar::new(0).with_style(style));
        *SHOWN.lock().unwrap_or_else(|p| p.into_inner()) = Some(view.clone());
        Live {
            view,
            counts,
            lines: BTreeMap::new(),
            width: 0,
        }
    }

    /// Shows what `event` changed; `line` is the instance's finished line, printed above the
    /// view (and kept) when the instance failed.
    pub fn update(&mut self, tally: &Tally, event: &EngineEvent, line: Option<&str>) {
        match &event.fact {
            Fact::RunStarted { instances, .. } => {
                self.counts.set_length(tally.total as u64);
                self.width = instances
                    .iter()
                    .map(|i| i.chars().count())
                    .max()
                    .unwrap_or(0);
            }
            Fact::InstanceFinished {
                instance, outcome, ..
            } => {
                if let Some(bar) = self.lines.remove(instance) {
                    bar.finish_and_clear();
                    self.view.remove(&bar);
                }
                if let (true, Some(line)) = (outcome.is_failure(), line) {
                    let _ = self.view.println(line);
                }
            }
            _ => {}
        }
        // Instances under way get a line while there is room, in name order.
        for (name, flight) in &tally.in_flight {
            if self.lines.len() >= MAX_LINES {
                break;
            }
            if !self.lines.contains_key(name) {
                let style = ProgressStyle::with_template(&format!(
                    "  {{prefix:<{}}} {{elapsed:>4}}  {{wide_msg}}",
                    self.width
                ))
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
                let bar = ProgressBar::new_spinner()
                    .with_style(style)
                    .with_prefix(name.clone())
                    .with_elapsed(flight.since.elapsed());
                let bar = self.view.add(bar);
                self.lines.insert(name.clone(), bar);
            }
        }
        for (name, bar) in &self.lines {
            if let Some(flight) = tally.in_flight.get(name) {
                bar.set_message(flight_message(flight, tally.down.contains(name)));
            }
        }
        self.tick(tally);
    }

    /// Redraws the counts, the elapsed times and the ETA.
    pub fn tick(&self, tally: &Tally) {
        self.counts.set_position(tally.finished() as u64);
        let hidden = tally.in_flight.len().saturating_sub(self.lines.len());
        let more = if hidden > 0 {
            format!(" (+{hidden} not shown)")
        } else {
            String::new()
        };
        let eta = tally
            .eta(tally.began.elapsed())
            .map_or_else(|| "-".to_string(), clock);
        // The ETA first: a narrow terminal cuts the end of the line (a line wider than the
        // terminal would wrap and break the redraw in place).
        self.counts
            .set_message(format!("ETA {eta} · {}{more}", tally.counts()));
        self.counts.tick();
        for bar in self.lines.values() {
            bar.tick();
        }
    }

    /// Takes the view off the screen, leaving the lines printed above it.
    pub fn finish(self) {
        for bar in self.lines.values() {
            bar.finish_and_clear();
        }
        self.counts.finish_and_clear();
        let _ = self.view.clear();
        *SHOWN.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// `stop (try 2) · DOWN`, `undo start`, or `starting` before the first step.
fn flight_message(flight: &Flight, down: bool) -> String {
    let mut text = match (&flight.step, flight.direction) {
        (None, _) => "starting".to_string(),
        (Some(step), Direction::Forward) => step.clone(),
        (Some(step), Direction::Undo) => format!("undo {step}"),
    };
    if flight.attempt > 1 {
        text.push_str(&format!(" (try {})", flight.attempt));
    }
    if down {
        text.push_str(" · DOWN");
    }
    text
}

/// `1h02m`, `3m12s` or `42s`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::InstanceOutcome;
    use indicatif::InMemoryTerm;

    fn event(fact: Fact) -> EngineEvent {
        EngineEvent {
            run: uuid::Uuid::nil(),
            at_ms: 0,
            seq: None,
            fact,
        }
    }

    /// Feeds `fact` to the tally and the view, as the progress thread does.
    fn feed(live: &mut Live, tally: &mut Tally, fact: Fact, line: Option<&str>) {
        let e = event(fact);
        tally.apply(&e);
        live.update(tally, &e, line);
    }

    /// What the terminal shows once the view had time to draw (it draws at most 20 times a
    /// second).
    fn screen(live: &Live, tally: &Tally, term: &InMemoryTerm) -> String {
        std::thread::sleep(Duration::from_millis(120));
        live.tick(tally);
        term.contents()
    }

    #[test]
    fn the_view_shows_counts_and_instances_under_way_then_clears_all_but_failures() {
        let term = InMemoryTerm::new(20, 120);
        let mut live = Live::on(ProgressDrawTarget::term_like(Box::new(term.clone())));
        let mut tally = Tally::default();
        let names: Vec<String> = (1..=4).map(|i| format!("web-00{i}")).collect();
        feed(
            &mut live,
            &mut tally,
            Fact::RunStarted {
                direction: Direction::Forward,
                instances: names.clone(),
                steps: vec!["stop".into(), "start".into()],
                parallel: 2,
                resumed: false,
            },
            None,
        );
        for name in &names[..2] {
            feed(
                &mut live,
                &mut tally,
                Fact::InstanceStarted {
                    instance: name.clone(),
                },
                None,
            );
        }
        feed(
            &mut live,
            &mut tally,
            Fact::StepStarted {
                instance: names[0].clone(),
                step: "stop".into(),
                attempt: 2,
                direction: Direction::Forward,
            },
            None,
        );
        feed(
            &mut live,
            &mut tally,
            Fact::WindowOpened {
                instance: names[0].clone(),
                resumed: false,
            },
            None,
        );
        let shown = screen(&live, &tally, &term);
        assert!(
            shown.contains("0/4 ETA - · done 0 · failed 0 · in flight 2 · down 1 · not started 2"),
            "{shown}"
        );
        assert!(
            shown.contains("web-001") && shown.contains("stop (try 2) · DOWN"),
            "{shown}"
        );
        assert!(
            shown.contains("web-002") && shown.contains("starting"),
            "{shown}"
        );

        let failed = "reroot: web-002 FAILED at stop: refused";
        feed(
            &mut live,
            &mut tally,
            Fact::InstanceFinished {
                instance: names[1].clone(),
                outcome: InstanceOutcome::Failed {
                    step: "stop".into(),
                    error: "refused".into(),
                },
                duration_ms: Some(1000),
            },
            Some(failed),
        );
        let shown = screen(&live, &tally, &term);
        assert!(
            shown.starts_with(failed),
            "printed above the view:\n{shown}"
        );
        assert!(
            shown.contains("1/4") && shown.contains("failed 1"),
            "{shown}"
        );
        assert!(
            !shown.lines().any(|l| l.starts_with("  web-002")),
            "its line is gone:\n{shown}"
        );
        // One of two instances that started ended: the two left take about as long again.
        assert!(!shown.contains("ETA -"), "{shown}");

        live.finish();
        assert_eq!(term.contents(), failed, "only the failure is left");
        // Nothing is shown any more: writes to stderr go straight through.
        assert!(SHOWN.lock().unwrap().is_none());
    }

    #[test]
    fn an_instance_line_says_its_step_try_and_whether_it_is_down() {
        let mut f = Flight {
            step: None,
            attempt: 0,
            direction: Direction::Forward,
            since: std::time::Instant::now(),
        };
        assert_eq!(flight_message(&f, false), "starting");
        f.step = Some("stop".into());
        f.attempt = 2;
        assert_eq!(flight_message(&f, true), "stop (try 2) · DOWN");
        f.direction = Direction::Undo;
        f.attempt = 1;
        assert_eq!(flight_message(&f, false), "undo stop");
    }

    #[test]
    fn the_eta_reads_as_a_clock() {
        assert_eq!(clock(Duration::from_secs(42)), "42s");
        assert_eq!(clock(Duration::from_secs(192)), "3m12s");
        assert_eq!(clock(Duration::from_secs(3720)), "1h02m");
    }
}
