//! Per-stage counters from the budget ledgers of every hop of a chain.
//!
//! Each hop, when its work ends (however it ends), hands its request's ledger
//! ([`Context::budget_records`](timefuse::Context::budget_records)) to [`Stats::record`]: how
//! many stages and calls each name opened, how many ran out of time, how many were refused,
//! and the smallest budget a started downstream call was granted (the floor test reads it).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timefuse::budget::{BudgetKind, BudgetOutcome, BudgetRecord};

/// The counters of one stage or call name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageCounts {
    /// Opened and started.
    pub started: u64,
    /// Ran out of time.
    pub timed_out: u64,
    /// Not started: below the floor, or the context had ended.
    pub refused: u64,
    /// Canceled before the end of its budget (its request ended).
    pub canceled: u64,
    /// The smallest budget granted to a started downstream call, in microseconds.
    pub min_granted_us: Option<u64>,
    /// Started downstream calls granted less than the policy floor.
    pub under_floor: u64,
}

/// The counters of one chain, keyed `service/name`.
#[derive(Debug, Default)]
pub struct Stats {
    stages: Mutex<BTreeMap<String, StageCounts>>,
}

impl Stats {
    /// Empty counters.
    pub fn new() -> Stats {
        Stats::default()
    }

    /// Adds one hop's ledger; `floor` is the hop's policy floor.
    pub fn record(&self, service: &str, records: &[BudgetRecord], floor: Duration) {
        let mut map = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        for r in records {
            let c = map.entry(format!("{service}/{}", r.name)).or_default();
            match r.outcome {
                BudgetOutcome::Refused => c.refused += 1,
                outcome => {
                    c.started += 1;
                    if outcome == BudgetOutcome::TimedOut {
                        c.timed_out += 1;
                    }
                    if outcome == BudgetOutcome::Canceled {
                        c.canceled += 1;
                    }
                    if r.kind == BudgetKind::Downstream {
                        let g = r.granted.as_micros() as u64;
                        c.min_granted_us = Some(c.min_granted_us.map_or(g, |m| m.min(g)));
                        if r.granted < floor {
                            c.under_floor += 1;
                        }
                    }
                }
            }
        }
    }

    /// The counters so far.
    pub fn snapshot(&self) -> BTreeMap<String, StageCounts> {
        self.stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
