//! Fault points: the places where the engine can be made to die on purpose, to prove that a run
//! survives a crash at any of them.
//!
//! The engine calls [`Faults::hit`] at each moment around each step. In the simulation tests a
//! hook returns `true` to make the engine stop dead there (no further journal writes), which is
//! what a killed process looks like to the journal. In the real binary, built with the
//! `fault-injection` cargo feature, the `REROOT_FAULT` environment variable names a point and
//! the process aborts there (no cleanup, no destructors). Without that feature the variable is
//! ignored and the points cost nothing.

use std::fmt;
use std::sync::Arc;

/// When, relative to a step, a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Moment {
    /// After "step started" is recorded, before `apply` runs.
    BeforeApply,
    /// After `apply` returned, before its result is recorded.
    AfterApply,
    /// After the result is recorded.
    AfterRecord,
    /// After "undo started" is recorded, before `undo` runs.
    BeforeUndo,
    /// After `undo` returned, before "undo finished" is recorded.
    AfterUndo,
    /// After "undo finished" is recorded.
    AfterUndoRecord,
}

impl Moment {
    /// Every moment, in the order they happen.
    pub const ALL: [Moment; 6] = [
        Moment::BeforeApply,
        Moment::AfterApply,
        Moment::AfterRecord,
        Moment::BeforeUndo,
        Moment::AfterUndo,
        Moment::AfterUndoRecord,
    ];

    /// The moments of a forward (apply) pass.
    pub const FORWARD: [Moment; 3] = [Moment::BeforeApply, Moment::AfterApply, Moment::AfterRecord];

    /// The moments of an undo pass.
    pub const UNDO: [Moment; 3] = [
        Moment::BeforeUndo,
        Moment::AfterUndo,
        Moment::AfterUndoRecord,
    ];

    /// The name used in `REROOT_FAULT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Moment::BeforeApply => "before-apply",
            Moment::AfterApply => "after-apply",
            Moment::AfterRecord => "after-record",
            Moment::BeforeUndo => "before-undo",
            Moment::AfterUndo => "after-undo",
            Moment::AfterUndoRecord => "after-undo-record",
        }
    }

    /// Parses a name used in `REROOT_FAULT`.
    pub fn parse(s: &str) -> Option<Moment> {
        Moment::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for Moment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One point: a step of an instance at a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultPoint<'a> {
    /// The instance.
    pub instance: &'a str,
    /// The step's name.
    pub step: &'a str,
    /// The moment.
    pub moment: Moment,
}

type Hook = dyn Fn(&FaultPoint<'_>) -> bool + Send + Sync;

/// The fault hooks an engine consults. The default never fires.
#[derive(Clone, Default)]
pub struct Faults {
    hook: Option<Arc<Hook>>,
    /// Makes a step's `apply` fail (a lasting error) instead of running, at `BeforeApply`.
    fail: Option<Arc<Hook>>,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.hook.is_some(), self.fail.is_some()) {
            (false, false) => "Faults(none)",
            (true, false) => "Faults(crash)",
            (false, true) => "Faults(fail)",
            (true, true) => "Faults(crash, fail)",
        })
    }
}

impl Faults {
    /// No faults.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Faults decided by `hook`: when it returns `true` the engine stops dead at that point.
    pub fn from_hook(hook: impl Fn(&FaultPoint<'_>) -> bool + Send + Sync + 'static) -> Faults {
        Faults {
            hook: Some(Arc::new(hook)),
            fail: None,
        }
    }

    /// These faults, plus steps that fail where `hook` says so: at `BeforeApply` of a forward
    /// step, the step is not applied and fails with a lasting error, as a real step would
    /// whose daemon refused it.
    pub fn failing(
        mut self,
        hook: impl Fn(&FaultPoint<'_>) -> bool + Send + Sync + 'static,
    ) -> Faults {
        self.fail = Some(Arc::new(hook));
        self
    }

    /// True if the step must fail here instead of being applied.
    pub fn fails(&self, point: &FaultPoint<'_>) -> bool {
        self.fail.as_ref().is_some_and(|h| h(point))
    }

    /// The faults the environment asks for: `REROOT_FAULT=STEP:MOMENT[:INSTANCE]` aborts the
    /// process at that point, and `REROOT_FAIL=STEP[:INSTANCE]` makes that step fail every time
    /// it is applied. Only in builds with the `fault-injection` feature; otherwise none.
    pub fn from_env() -> Faults {
        let faults = Self::crash_from_env();
        #[cfg(feature = "fault-injection")]
        if let Ok(spec) = std::env::var("REROOT_FAIL") {
            let mut parts = spec.splitn(2, ':');
            let step = parts.next().unwrap_or_default().to_string();
            let instance = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
            if !step.is_empty() {
                return faults.failing(move |p| {
                    p.step == step && instance.as_deref().is_none_or(|i| i == p.instance)
                });
            }
            eprintln!("reroot: ignoring malformed REROOT_FAIL={spec:?} (want STEP[:INSTANCE])");
        }
        faults
    }

    fn crash_from_env() -> Faults {
        #[cfg(feature = "fault-injection")]
        if let Ok(spec) = std::env::var("REROOT_FAULT") {
            if let Some((step, moment, instance)) = parse_spec(&spec) {
                return Faults::from_hook(move |p| {
                    let hit = p.step == step
                        && p.moment == moment
                        && instance.as_deref().is_none_or(|i| i == p.instance);
                    if hit {
                        eprintln!(
                            "reroot: fault injected at {}:{}:{}",
                            p.step, p.moment, p.instance
                        );
                        std::process::abort();
                    }
                    false
                });
            }
            eprintln!(
                "reroot: ignoring malformed REROOT_FAULT={spec:?} (want STEP:MOMENT[:INSTANCE])"
            );
        }
        Faults::none()
    }

    /// True if the engine must stop dead at this point.
    pub fn hit(&self, point: &FaultPoint<'_>) -> bool {
        self.hook.as_ref().is_some_and(|h| h(point))
    }
}

/// Parses `STEP:MOMENT[:INSTANCE]`.
pub fn parse_spec(spec: &str) -> Option<(String, Moment, Option<String>)> {
    let mut parts = spec.splitn(3, ':');
    let step = parts.next().filter(|s| !s.is_empty())?.to_string();
    let moment = Moment::parse(parts.next()?)?;
    let instance = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
    Some((step, moment, instance))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_step_moment_and_optional_instance() {
        assert_eq!(
            parse_spec("stop:after-apply"),
            Some(("stop".to_string(), Moment::AfterApply, None))
        );
        assert_eq!(
            parse_spec("swap:before-undo:web1"),
            Some((
                "swap".to_string(),
                Moment::BeforeUndo,
                Some("web1".to_string())
            ))
        );
        assert_eq!(parse_spec("stop:sometime"), None);
        assert_eq!(parse_spec(":after-apply"), None);
        assert_eq!(parse_spec("stop"), None);
    }

    #[test]
    fn every_moment_round_trips_through_its_name() {
        for m in Moment::ALL {
            assert_eq!(Moment::parse(m.as_str()), Some(m));
        }
    }

    #[test]
    fn a_hook_decides_where_faults_strike() {
        let f = Faults::from_hook(|p| p.step == "b" && p.moment == Moment::AfterApply);
        let at = |step, moment| FaultPoint {
            instance: "i",
            step,
            moment,
        };
        assert!(f.hit(&at("b", Moment::AfterApply)));
        assert!(!f.hit(&at("b", Moment::BeforeApply)));
        assert!(!f.hit(&at("a", Moment::AfterApply)));
        assert!(!Faults::none().hit(&at("b", Moment::AfterApply)));
    }
}
