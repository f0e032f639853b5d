//! Where a training step's time goes, phase by phase: the wall time of each op's forward and
//! backward, the instruments' events, the loss, the optimiser, and what dfdx's own ops take.
//!
//! Off unless [`enable`]d (`bench_train --parts profile` turns it on), and then a step only adds
//! a clock read per span. Spans nest and each one is charged its *exclusive* time: a hook's
//! forward event inside an activation site's forward counts as the instruments' time, not the
//! activation's. Spans run on the thread that drives the step (the ops fan out to rayon inside
//! them), so the stack of open spans is per thread and the totals are shared.
//!
//! Hand-written rather than a tracing subscriber or `perf`: a phase here is a place in *our* step
//! (the same gemm kernel serves conv forward, conv backward and the dense layers), and the
//! benchmark prints the table on every machine it runs on, counters or not.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<BTreeMap<&'static str, Total>> = Mutex::new(BTreeMap::new());

thread_local! {
    /// Time spent in the children of each open span, innermost last.
    static OPEN: RefCell<Vec<Duration>> = const { RefCell::new(Vec::new()) };
}

/// A phase's exclusive time and how often it ran.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Total {
    pub time: Duration,
    pub calls: u64,
}

/// Starts (or stops) collecting; the totals collected so far are kept until [`take`].
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The totals per phase since the last call, emptied.
pub fn take() -> BTreeMap<&'static str, Total> {
    std::mem::take(&mut *TOTALS.lock().expect("profile totals poisoned"))
}

/// Runs `f`, charging its time, less that of the spans inside it, to `phase`.
#[inline]
pub fn span<R>(phase: &'static str, f: impl FnOnce() -> R) -> R {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    OPEN.with(|open| open.borrow_mut().push(Duration::ZERO));
    let start = Instant::now();
    let result = f();
    let inclusive = start.elapsed();
    let children = OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let children = open.pop().unwrap_or_default();
        if let Some(parent) = open.last_mut() {
            *parent += inclusive;
        }
        children
    });
    let mut totals = TOTALS.lock().expect("profile totals poisoned");
    let total = totals.entry(phase).or_default();
    total.time += inclusive.saturating_sub(children);
    total.calls += 1;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::sleep;

    /// One test, because the switch and the totals are process-wide.
    #[test]
    fn spans_charge_exclusive_time_and_nothing_when_off() {
        take();
        span("off", || sleep(Duration::from_millis(5)));
        enable(true);
        span("outer", || {
            sleep(Duration::from_millis(30));
            span("inner", || sleep(Duration::from_millis(20)));
            span("inner", || sleep(Duration::from_millis(20)));
        });
        enable(false);
        let totals = take();
        assert!(!totals.contains_key("off"));
        let outer = totals["outer"];
        let inner = totals["inner"];
        assert_eq!((outer.calls, inner.calls), (1, 2));
        // sleep lasts at least as long as asked; the outer span's own part is its 30 ms, not 70.
        assert!(inner.time >= Duration::from_millis(40), "{inner:?}");
        assert!(outer.time >= Duration::from_millis(30), "{outer:?}");
        // Were the children not taken off, it would be at least 70 ms.
        assert!(outer.time < Duration::from_millis(50), "{outer:?}");
        // Other tests may train while this one has the switch on; these keys are this test's.
        let again = take();
        assert!(!again.contains_key("outer") && !again.contains_key("inner"));
    }
}
