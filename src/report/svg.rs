//! `reroot show RUN --svg FILE`: a picture of a run. One row per instance (sorted by when it
//! started; those never started at the end), each attempt of each step a bar on a shared time
//! axis, coloured by step; failures red with a mark, retries outlined, undo in its own colour,
//! the downtime window (the run kind's: for a rebuild from the start of `stop` to the success
//! of `start`, or the undo of `stop`) highlighted behind the bars. A heading carries the run's
//! summary, a legend the colours. Every bar has a `<title>` (what a browser shows on hover).
//! Built from the run's events, so attempts that a later one replaced are drawn too. Rows are
//! 12 px, so a 200-instance run is about 2,500 px high.

use std::collections::HashMap;
use std::fmt::Write as _;

use journal::{Event, EventKind, RunState, RunStatus};

use super::{duration, instance_results, long_duration, overview, short_command, short_id, utc};
use crate::engine::Window;

const ROW: f64 = 12.0;
/// Above this many rows the time labels are repeated under the last row.
const BOTTOM_AXIS_ROWS: usize = 40;
const BAR: f64 = 8.0;
const CHART_W: f64 = 1000.0;
const LEFT_PAD: f64 = 8.0;
const LABEL_MAX: usize = 28;
const CHAR_W: f64 = 6.2;

/// Step colours, picked by the step's position in the run (the order steps first appear).
const PALETTE: [&str; 12] = [
    "#8fb8de", "#6a9fd4", "#4f86c6", "#f2c14e", "#8cc084", "#5fa35a", "#3d7d3a", "#9ad1d4",
    "#62b6cb", "#f4a261", "#a3b18a", "#588157",
];
const FAILED: &str = "#d62828";
const UNDO: &str = "#9b5de5";
const UNDO_FAILED: &str = "#5a189a";
const DOWNTIME: &str = "#ffb3b3";
const OPEN: &str = "#bbbbbb";
/// The run's moments (resumed, paused, undo asked).
const MARK: &str = "#3a0ca3";
/// Markers closer than this (px) share a line and a label.
const MARK_GAP: f64 = 70.0;
/// The width of a character of the summary's 11 px text, to cut the command line to fit.
const SUMMARY_CHAR_W: f64 = 6.4;

/// One bar: an attempt of a step or of its undo.
#[derive(Debug, Clone, PartialEq)]
struct Bar {
    step: String,
    attempt: u32,
    undo: bool,
    from_ms: i64,
    /// `None`: still going, or cut short by a crash the run was never resumed from: drawn to
    /// the end of the axis.
    to_ms: Option<i64>,
    /// `Some(error)` for a failure.
    error: Option<String>,
    /// Cut short: the process running it ended without a record of its end, and `to_ms` is
    /// when another process resumed the run (the attempt ended by then at the latest).
    cut: bool,
}

/// A moment of the whole run, drawn as a dashed line across the rows.
#[derive(Debug, Clone, PartialEq)]
struct Marker {
    at_ms: i64,
    /// `resumed`, `paused` or `undo`: the `data-kind` of its group.
    kind: &'static str,
    /// What the label says; the hover text adds the details.
    label: &'static str,
    detail: String,
}

/// An instance's bars and downtime window.
#[derive(Debug, Default)]
struct Lane {
    bars: Vec<Bar>,
    down_from: Option<i64>,
    down_to: Option<i64>,
}

/// An instance's lanes, the steps in the order they first appear, and the run's markers.
fn lanes(
    events: &[Event],
    window: Option<&Window>,
) -> (HashMap<String, Lane>, Vec<String>, Vec<Marker>) {
    let mut lanes: HashMap<String, Lane> = HashMap::new();
    let mut steps: Vec<String> = Vec::new();
    let mut markers = Vec::new();
    // The open bar of each (instance, step, undo).
    let mut open: HashMap<(String, String, bool), usize> = HashMap::new();
    for e in events {
        match &e.kind {
            // A resume takes over a run no process holds (the run's lock says so): a bar still
            // open then belonged to a process that died. The resume records no end for it (it
            // starts the step again as the next attempt), so it ends here, marked as cut short;
            // drawn to the end of the axis it would look like a step running all along.
            EventKind::RunResumed { pid } => {
                for ((inst, _, _), i) in open.drain() {
                    if let Some(bar) = lanes.get_mut(&inst).and_then(|l| l.bars.get_mut(i)) {
                        bar.to_ms = Some(e.at_ms);
                        bar.cut = true;
                    }
                }
                markers.push(Marker {
                    at_ms: e.at_ms,
                    kind: "resumed",
                    label: "resumed",
                    detail: format!("resumed by process {pid}"),
                });
                continue;
            }
            EventKind::RunPaused { reason } => {
                markers.push(Marker {
                    at_ms: e.at_ms,
                    kind: "paused",
                    label: "paused",
                    detail: format!("paused: {reason}"),
                });
                continue;
            }
            EventKind::UndoRequested { data } => {
                markers.push(Marker {
                    at_ms: e.at_ms,
                    kind: "undo",
                    label: "undo asked",
                    detail: if *data {
                        "undo asked, with the data (--data)".to_string()
                    } else {
                        "undo asked".to_string()
                    },
                });
                continue;
            }
            _ => {}
        }
        let (Some(inst), Some(step)) = (&e.instance, &e.step) else {
            continue;
        };
        if !e.kind.is_step_event() {
            continue;
        }
        if !steps.contains(step) {
            steps.push(step.clone());
        }
        let lane = lanes.entry(inst.clone()).or_default();
        let undo = e.kind.is_undo_event();
        let key = (inst.clone(), step.clone(), undo);
        match &e.kind {
            EventKind::StepStarted | EventKind::UndoStarted => {
                lane.bars.push(Bar {
                    step: step.clone(),
                    attempt: e.attempt,
                    undo,
                    from_ms: e.at_ms,
                    to_ms: None,
                    error: None,
                    cut: false,
                });
                open.insert(key, lane.bars.len() - 1);
                if window.is_some_and(|w| w.opens == step) && !undo && lane.down_from.is_none() {
                    lane.down_from = Some(e.at_ms);
                }
            }
            kind => {
                let error = match kind {
                    EventKind::StepFailed { error } | EventKind::UndoFailed { error } => {
                        Some(error.clone())
                    }
                    _ => None,
                };
                if let Some(i) = open.remove(&key) {
                    lane.bars[i].to_ms = Some(e.at_ms);
                    lane.bars[i].error = error;
                }
                // Down until the new root started, or (reverted) until the old one is back.
                let up = window.is_some_and(|w| {
                    (w.closes == step && matches!(kind, EventKind::StepSucceeded { .. }))
                        || (w.opens == step && matches!(kind, EventKind::UndoFinished))
                });
                if up && lane.down_from.is_some() && lane.down_to.is_none() {
                    lane.down_to = Some(e.at_ms);
                }
            }
        }
    }
    (lanes, steps, markers)
}

/// Escapes text for XML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A name cut to `LABEL_MAX` characters (with `…`), for the row labels.
fn label(name: &str) -> String {
    if name.chars().count() <= LABEL_MAX {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(LABEL_MAX - 1).collect();
        s.push('…');
        s
    }
}

/// A tick interval giving about 8 ticks over `span_ms`: 1, 2 or 5 times a power of ten ms.
fn tick_ms(span_ms: i64) -> i64 {
    let raw = (span_ms.max(1) as f64 / 8.0).max(1.0);
    let p = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p);
    step as i64
}

/// The SVG picture of a run from its state and events (`now_ms` ends the axis of a run that
/// is still going).
pub fn run_svg(state: &RunState, events: &[Event], now_ms: i64) -> String {
    // The pipeline's downtime window: from the start of the step that takes an instance down
    // to the success of the one that brings it back (or the undo of the first, a revert).
    let window = crate::run::spec::kind_of(state)
        .ok()
        .and_then(|k| k.window());
    let (lanes, steps, markers) = lanes(events, window.as_ref());
    let t0 = state.header.started_at_ms;
    let last_event = events.iter().map(|e| e.at_ms).max().unwrap_or(t0);
    let t1 = if matches!(state.status, RunStatus::Running | RunStatus::Paused) {
        last_event.max(now_ms.min(last_event + 60_000))
    } else {
        last_event
    }
    .max(t0 + 1);
    let span = (t1 - t0) as f64;

    // Rows: by first start; never started at the end, in the run's order.
    let results = instance_results(state);
    let mut rows: Vec<(&str, super::InstanceResult, Option<i64>)> = results
        .iter()
        .map(|(i, r)| {
            let first = lanes
                .get(&i.name)
                .and_then(|l| l.bars.iter().map(|b| b.from_ms).min());
            (i.name.as_str(), *r, first)
        })
        .collect();
    rows.sort_by_key(|(_, _, first)| (first.is_none(), first.unwrap_or(i64::MAX)));

    let label_w = rows
        .iter()
        .map(|(n, _, _)| label(n).chars().count())
        .max()
        .unwrap_or(4)
        .max(8) as f64
        * CHAR_W
        + 16.0;
    let x0 = LEFT_PAD + label_w;
    let x = |ms: i64| x0 + ((ms - t0).clamp(0, t1 - t0) as f64 / span) * CHART_W;
    let o = overview(state);
    let counts: Vec<String> = o
        .results
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{n} {}", r.word()))
        .collect();
    let width = x0 + CHART_W + 16.0;
    // The command on a line of its own, cut to the picture's width (a bulk run names hundreds
    // of configs; `short_command` keeps a few); the whole of it in the hover text.
    let command = short_command(&state.header.command);
    let fits = ((width - 2.0 * LEFT_PAD) / SUMMARY_CHAR_W) as usize;
    let mut summary = vec![
        format!(
            "run {} ({}) · started {} by {}@{}",
            short_id(&state.header.id),
            state.status.as_str(),
            utc(t0),
            state.header.user,
            state.header.host
        ),
        cut_to(&command, fits),
        format!("instances {}: {}", o.instance_count, counts.join(", ")),
    ];
    let mut third = Vec::new();
    if let Some(d) = o.downtime_ms {
        third.push(format!(
            "downtime p50 {}, p95 {}, max {} ({} instances)",
            duration(d.p50),
            duration(d.p95),
            duration(d.max),
            d.count
        ));
    }
    if let Some(w) = o.wall_time_ms {
        third.push(format!("wall time {}", long_duration(w)));
    }
    if !third.is_empty() {
        summary.push(third.join(" · "));
    }
    let head_h = 16.0 * summary.len() as f64 + 8.0;
    // Legend: the steps in order, then failure, retry, undo, downtime; wrapped to the width.
    let mut legend: Vec<(&str, String, &str)> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (PALETTE[i % PALETTE.len()], s.clone(), ""))
        .collect();
    legend.push((FAILED, "failed".into(), ""));
    legend.push((
        "white",
        "retry (try 2+)".into(),
        r#" stroke="black" stroke-width="1.5""#,
    ));
    legend.push((UNDO, "undo".into(), ""));
    legend.push((UNDO_FAILED, "undo failed".into(), ""));
    legend.push((DOWNTIME, "downtime".into(), ""));
    legend.push((OPEN, "running, or cut short by a crash".into(), ""));
    if !markers.is_empty() {
        legend.push((MARK, "resumed · paused · undo asked".into(), ""));
    }
    let mut placed = Vec::new();
    let (mut lx, mut ly) = (LEFT_PAD, head_h);
    for (colour, text, extra) in legend {
        let w = 13.0 + text.chars().count() as f64 * CHAR_W + 10.0;
        if lx + w > width && lx > LEFT_PAD {
            lx = LEFT_PAD;
            ly += 14.0;
        }
        placed.push((lx, ly, colour, text, extra));
        lx += w;
    }
    // Two lines above the axis: the markers' labels (and what the times count), then the
    // time labels.
    let axis_y = ly + 42.0;
    let rows_y = axis_y + 16.0;
    // A tall picture repeats the time labels under its last row, where a reader of the
    // bottom rows looks for them.
    let bottom_axis = rows.len() > BOTTOM_AXIS_ROWS;
    let rows_end = rows_y + ROW * rows.len() as f64;
    let height = rows_end + if bottom_axis { 26.0 } else { 12.0 };

    let mut out = String::with_capacity(4096 + rows.len() * 1500);
    let _ = writeln!(
        out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="10">
<title>reroot run {}</title>
<style>.row:hover .bg {{ fill: #eef3fb; }} text {{ fill: #222; }} .dim {{ fill: #777; }}</style>
<rect width="100%" height="100%" fill="white"/>"#,
        esc(&state.header.id.to_string())
    );
    out.push_str("<g class=\"summary\">\n");
    for (i, line) in summary.iter().enumerate() {
        // The command line's hover text is the whole command.
        let title = if i == 1 {
            format!("<title>{}</title>", esc(&state.header.command.join(" ")))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            r#"<text x="{LEFT_PAD}" y="{:.0}" font-size="{}">{title}{}</text>"#,
            14.0 + 16.0 * i as f64,
            if i == 0 { 12 } else { 11 },
            esc(line)
        );
    }
    out.push_str("</g>\n");

    out.push_str("<g class=\"legend\">\n");
    for (lx, ly, colour, text, extra) in &placed {
        let _ = writeln!(
            out,
            r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="8" fill="{colour}"{extra}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            ly + 2.0,
            lx + 13.0,
            ly + 9.5,
            esc(text)
        );
    }
    out.push_str("</g>\n");

    // Time axis: labels above the rows (and below them when tall); what they count is said
    // in the names' column.
    let tick = tick_ms(t1 - t0);
    out.push_str("<g class=\"axis\">\n");
    let _ = writeln!(
        out,
        r##"<text x="{LEFT_PAD}" y="{:.1}" class="dim">time since start</text><line x1="{x0:.1}" y1="{axis_y:.1}" x2="{:.1}" y2="{axis_y:.1}" stroke="#444"/>"##,
        axis_y - 18.0,
        x0 + CHART_W
    );
    let mut t = 0;
    while t <= t1 - t0 {
        let tx = x(t0 + t);
        let _ = writeln!(
            out,
            r##"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{axis_y:.1}" stroke="#444"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle" class="dim">{}</text>"##,
            axis_y - 3.0,
            axis_y - 4.0 - 2.0,
            esc(&tick_label(t))
        );
        if bottom_axis {
            let _ = writeln!(
                out,
                r##"<text x="{tx:.1}" y="{:.1}" text-anchor="middle" class="dim">{}</text>"##,
                rows_end + 14.0,
                esc(&tick_label(t))
            );
        }
        t += tick;
    }
    out.push_str("</g>\n");

    let steps_index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    for (n, (name, result, _)) in rows.iter().enumerate() {
        let y = rows_y + ROW * n as f64;
        let lane = lanes.get(*name);
        let _ = writeln!(
            out,
            r#"<g class="row" data-instance="{}" data-result="{}">"#,
            esc(name),
            result.word()
        );
        let _ = writeln!(
            out,
            r#"<rect class="bg" x="0" y="{y:.1}" width="{width:.0}" height="{ROW}" fill="{}"/>"#,
            if n % 2 == 0 { "#ffffff" } else { "#f7f7f7" }
        );
        let _ = writeln!(
            out,
            r#"<text x="{LEFT_PAD}" y="{:.1}"><title>{} ({})</title>{}</text>"#,
            y + 9.0,
            esc(name),
            result.word(),
            esc(&label(name))
        );
        let Some(lane) = lane else {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" class="dim">not started</text>"#,
                x0 + 4.0,
                y + 9.0
            );
            out.push_str("</g>\n");
            continue;
        };
        if let Some(from) = lane.down_from {
            let to = lane.down_to.unwrap_or(t1);
            let _ = writeln!(
                out,
                r#"<rect class="downtime" x="{:.1}" y="{y:.1}" width="{:.1}" height="{ROW}" fill="{DOWNTIME}" fill-opacity="0.7"><title>{}: down {}{}</title></rect>"#,
                x(from),
                (x(to) - x(from)).max(1.0),
                esc(name),
                duration(to - from),
                if lane.down_to.is_none() {
                    " (not back up)"
                } else {
                    ""
                }
            );
        }
        for b in &lane.bars {
            let to = b.to_ms.unwrap_or(t1);
            let fill = match (b.undo, &b.error, b.to_ms) {
                _ if b.cut => OPEN,
                (_, _, None) => OPEN,
                (false, Some(_), _) => FAILED,
                (true, Some(_), _) => UNDO_FAILED,
                (true, None, _) => UNDO,
                (false, None, _) => {
                    PALETTE[steps_index.get(b.step.as_str()).copied().unwrap_or(0) % PALETTE.len()]
                }
            };
            let stroke = if b.attempt > 1 {
                r#" stroke="black" stroke-width="1""#
            } else {
                ""
            };
            let what = match (&b.error, b.to_ms) {
                (Some(e), _) => format!("failed: {e}"),
                (None, Some(at)) if b.cut => format!(
                    "cut short (its process ended; the run was resumed at +{})",
                    duration(at - t0)
                ),
                (None, None) => "running or cut short".to_string(),
                (None, Some(_)) => "ok".to_string(),
            };
            let cut = if b.cut { r#" data-cut="crash""# } else { "" };
            let bx = x(b.from_ms);
            let _ = writeln!(
                out,
                r#"<rect class="{}"{cut} x="{bx:.1}" y="{:.1}" width="{:.1}" height="{BAR}" fill="{fill}"{stroke}><title>{} {}{} try {}: {} at +{}, {}</title></rect>"#,
                if b.undo { "undo" } else { "step" },
                y + (ROW - BAR) / 2.0,
                (x(to) - bx).max(1.0),
                esc(name),
                if b.undo { "undo of " } else { "" },
                esc(&b.step),
                b.attempt,
                esc(&what),
                duration(b.from_ms - t0),
                duration(to - b.from_ms)
            );
            if b.error.is_some() {
                let _ = writeln!(
                    out,
                    r#"<text class="failure" x="{:.1}" y="{:.1}" fill="{FAILED}" font-weight="bold">✕</text>"#,
                    x(to) + 1.0,
                    y + 9.5
                );
            }
        }
        out.push_str("</g>\n");
    }
    // Grid lines over the rows, drawn last so the rows' backgrounds do not hide them, faint
    // enough not to hide a bar.
    out.push_str("<g class=\"grid\">\n");
    let mut t = 0;
    while t <= t1 - t0 {
        let tx = x(t0 + t);
        let _ = writeln!(
            out,
            r##"<line x1="{tx:.1}" y1="{axis_y:.1}" x2="{tx:.1}" y2="{rows_end:.1}" stroke="#000" stroke-opacity="0.12"/>"##
        );
        t += tick;
    }
    out.push_str("</g>\n");
    // The run's moments over everything: a dashed line across the rows, its label above the
    // time labels. Moments closer than a label's width share one line (an undo of a crashed
    // run is asked and resumed within milliseconds).
    out.push_str("<g class=\"markers\">\n");
    let mut groups: Vec<(f64, Vec<&Marker>)> = Vec::new();
    for m in &markers {
        let mx = x(m.at_ms);
        match groups.last_mut() {
            Some((gx, group)) if mx - *gx < MARK_GAP => group.push(m),
            _ => groups.push((mx, vec![m])),
        }
    }
    for (mx, group) in &groups {
        let kinds: Vec<&str> = group.iter().map(|m| m.kind).collect();
        let labels: Vec<&str> = group.iter().map(|m| m.label).collect();
        let details: Vec<String> = group
            .iter()
            .map(|m| format!("{} at +{}", m.detail, duration(m.at_ms - t0)))
            .collect();
        let label = labels.join(", ");
        // Right of the line, or left of it where the picture ends (a resume that finished the
        // run is near its end).
        let (tx, anchor) = if mx + 2.0 + label.chars().count() as f64 * CHAR_W > width {
            (mx - 2.0, "end")
        } else {
            (mx + 2.0, "start")
        };
        let _ = writeln!(
            out,
            r##"<g class="marker" data-kind="{}"><title>{}</title><line x1="{mx:.1}" y1="{:.1}" x2="{mx:.1}" y2="{rows_end:.1}" stroke="{MARK}" stroke-width="1.2" stroke-dasharray="4 3"/><text x="{tx:.1}" y="{:.1}" text-anchor="{anchor}" fill="{MARK}">{}</text></g>"##,
            kinds.join(" "),
            esc(&details.join("; ")),
            axis_y - 26.0,
            axis_y - 18.0,
            esc(&label)
        );
    }
    out.push_str("</g>\n");
    out.push_str("</svg>\n");
    out
}

/// A time label of the axis: whole seconds as `5 s`, whole minutes past two as `4 min`, else
/// the shortest exact form (`1.5 s`, `200 ms`); `duration`'s `5.000 s` reads as five
/// thousand on an axis.
fn tick_label(ms: i64) -> String {
    if ms == 0 {
        "0".to_string()
    } else if ms >= 120_000 && ms % 60_000 == 0 {
        format!("{} min", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else if ms >= 1000 {
        let text = format!("{:.3}", ms as f64 / 1000.0);
        format!("{} s", text.trim_end_matches('0'))
    } else {
        format!("{ms} ms")
    }
}

/// `text` cut to `max` characters, with `…` for what was left out.
fn cut_to(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// The same picture in an HTML page (the SVG inline: hovering a bar shows its details).
pub fn run_html(state: &RunState, events: &[Event], now_ms: i64) -> String {
    let svg = run_svg(state, events, now_ms);
    let svg = svg
        .split_once("?>\n")
        .map_or(svg.as_str(), |(_, rest)| rest);
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>reroot run {}</title></head>\n<body style=\"margin:0\">\n{svg}</body></html>\n",
        esc(&short_id(&state.header.id))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(tick_ms(1), 1);
        assert_eq!(tick_ms(80), 10);
        assert_eq!(tick_ms(100), 20);
        assert_eq!(tick_ms(8_000), 1_000);
        assert_eq!(tick_ms(30_000), 5_000);
        assert_eq!(tick_ms(600_000), 100_000);
    }

    fn event(seq: u64, at_ms: i64, step: Option<(&str, u32)>, kind: EventKind) -> Event {
        Event {
            run: journal::RunId::nil(),
            seq,
            instance: step.map(|_| "web-1".to_string()),
            step: step.map(|(s, _)| s.to_string()),
            attempt: step.map_or(0, |(_, a)| a),
            at_ms,
            kind,
        }
    }

    #[test]
    fn a_step_a_crash_cut_short_ends_where_the_run_was_resumed() {
        let ok = || EventKind::StepSucceeded {
            output: String::new(),
        };
        let events = [
            event(2, 100, Some(("stop", 1)), EventKind::StepStarted),
            event(3, 300, Some(("stop", 1)), ok()),
            event(4, 300, Some(("start", 1)), EventKind::StepStarted),
            // The process died in `start`; another one resumed the run.
            event(5, 9_000, None, EventKind::RunResumed { pid: 42 }),
            event(6, 9_100, Some(("start", 2)), EventKind::StepStarted),
            event(7, 9_400, Some(("start", 2)), ok()),
        ];
        let window = Window {
            opens: "stop",
            closes: "start",
        };
        let (lanes, steps, markers) = lanes(&events, Some(&window));
        assert_eq!(steps, ["stop", "start"]);
        let lane = &lanes["web-1"];
        let ends: Vec<(&str, u32, Option<i64>, bool)> = lane
            .bars
            .iter()
            .map(|b| (b.step.as_str(), b.attempt, b.to_ms, b.cut))
            .collect();
        assert_eq!(
            ends,
            [
                ("stop", 1, Some(300), false),
                ("start", 1, Some(9_000), true),
                ("start", 2, Some(9_400), false),
            ]
        );
        // Down from the stop to the start that succeeded, across the crash.
        assert_eq!((lane.down_from, lane.down_to), (Some(100), Some(9_400)));
        assert_eq!(markers.len(), 1);
        assert_eq!((markers[0].kind, markers[0].at_ms), ("resumed", 9_000));
        assert!(markers[0].detail.contains("process 42"));
    }

    #[test]
    fn axis_labels_are_short_and_exact() {
        let labels: Vec<String> = [0, 20, 500, 1_500, 5_000, 60_000, 100_000, 120_000, 600_000]
            .into_iter()
            .map(tick_label)
            .collect();
        assert_eq!(
            labels,
            ["0", "20 ms", "500 ms", "1.5 s", "5 s", "60 s", "100 s", "2 min", "10 min"]
        );
        assert_eq!(tick_label(250), "250 ms");
        assert_eq!(tick_label(2_250), "2.25 s");
    }

    #[test]
    fn a_long_command_is_cut_to_fit() {
        assert_eq!(cut_to("reroot rebuild a.yaml", 40), "reroot rebuild a.yaml");
        let cut = cut_to("reroot rebuild a.yaml b.yaml", 10);
        assert_eq!(cut, "reroot re…");
        assert_eq!(cut.chars().count(), 10);
    }

    #[test]
    fn text_is_escaped_and_long_names_cut() {
        assert_eq!(esc("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos; ");
        let long = "x".repeat(40);
        assert_eq!(label(&long).chars().count(), LABEL_MAX);
        assert!(label(&long).ends_with('…'));
        assert_eq!(label("web-1"), "web-1");
    }
}
