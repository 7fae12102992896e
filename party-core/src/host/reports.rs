//! The reports a party owes the coordinator and their retry schedule.

use super::{ReportOutcome, BACKOFF_MAX_MS, BACKOFF_START_MS};

/// How hard a report is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Persistence {
    /// Progress: one try per coordinator.
    BestEffort,
    /// Joined: retried until the give-up time.
    Retried,
    /// The result or failure: retried until the give-up time; settling it
    /// ends the session.
    Final,
}

#[derive(Debug)]
enum State {
    /// Handed to the host; waiting for its outcome.
    InFlight,
    /// To send again at this time.
    RetryAt(u64),
}

#[derive(Debug)]
struct Pending {
    id: u64,
    body: String,
    persistence: Persistence,
    attempts: usize,
    backoff: u64,
    state: State,
}

/// A report to hand to the host now.
#[derive(Debug)]
pub(super) struct Send {
    pub id: u64,
    pub body: String,
    pub best_effort: bool,
}

/// What settling a report outcome meant.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Settled {
    /// Nothing final happened.
    No,
    /// The final report is settled (delivered, refused or given up).
    Final,
}

/// Reports in flight or waiting for a retry.
#[derive(Debug)]
pub(super) struct Reports {
    pending: Vec<Pending>,
    next_id: u64,
    /// Coordinators the host rotates through.
    coordinators: usize,
    /// When retried reports are given up (Unix ms).
    give_up_at: u64,
}

impl Reports {
    pub fn new(coordinators: usize, give_up_at: u64) -> Self {
        Self {
            pending: Vec::new(),
            next_id: 1,
            coordinators: coordinators.max(1),
            give_up_at,
        }
    }

    /// Queues a report; returns what to send now.
    pub fn push(&mut self, body: String, persistence: Persistence) -> Send {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push(Pending {
            id,
            body: body.clone(),
            persistence,
            attempts: 0,
            backoff: BACKOFF_START_MS,
            state: State::InFlight,
        });
        Send {
            id,
            body,
            best_effort: persistence == Persistence::BestEffort,
        }
    }

    /// Records the outcome of one attempt.
    pub fn outcome(&mut self, id: u64, outcome: ReportOutcome, now: u64) -> Settled {
        let Some(k) = self
            .pending
            .iter()
            .position(|p| p.id == id && matches!(p.state, State::InFlight))
        else {
            return Settled::No;
        };
        let p = &mut self.pending[k];
        p.attempts += 1;
        let done = match outcome {
            ReportOutcome::Delivered | ReportOutcome::Refused => true,
            ReportOutcome::Unavailable => match p.persistence {
                Persistence::BestEffort => p.attempts >= self.coordinators,
                Persistence::Retried | Persistence::Final => now >= self.give_up_at,
            },
        };
        if !done {
            p.state = State::RetryAt(now.saturating_add(p.backoff));
            p.backoff = (p.backoff * 2).min(BACKOFF_MAX_MS);
            return Settled::No;
        }
        let p = self.pending.remove(k);
        if p.persistence == Persistence::Final {
            Settled::Final
        } else {
            Settled::No
        }
    }

    /// Reports whose retry time has come.
    pub fn due(&mut self, now: u64) -> Vec<Send> {
        let mut out = Vec::new();
        for p in &mut self.pending {
            if let State::RetryAt(t) = p.state {
                if t <= now {
                    p.state = State::InFlight;
                    out.push(Send {
                        id: p.id,
                        body: p.body.clone(),
                        best_effort: p.persistence == Persistence::BestEffort,
                    });
                }
            }
        }
        out
    }

    /// The earliest retry time.
    pub fn wake_at(&self) -> Option<u64> {
        self.pending
            .iter()
            .filter_map(|p| match p.state {
                State::RetryAt(t) => Some(t),
                State::InFlight => None,
            })
            .min()
    }
}
