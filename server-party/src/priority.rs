//! CPU priority inside a party: foreground before background.
//!
//! Work a caller waits for (keygen, full signing, online signing from a
//! presignature, a policy change, primes a keygen is waiting for) is
//! *foreground*; work that only restocks a pool (presign sessions, the
//! prime pool, multiexp tables built for a presign) is *background*.
//!
//! - Foreground steps run at once on tokio's blocking pool, at normal
//!   priority, and are counted by the [`Gate`] while queued or running.
//! - Background steps run on [`Background`]: a few dedicated threads at the
//!   lowest OS priority (Linux: nice 19 per thread; elsewhere the threads run
//!   at normal priority), which a step enters only after the gate lets it:
//!   when no foreground step is queued or running, or when background has
//!   had no start for [`STARVATION_BOUND`] (so background is slowed, never
//!   stopped: at least one step per bound while foreground is busy).
//!   Long jobs (a safe prime search, tens of seconds) take at most one of
//!   the threads, so presign steps always have one.
//!
//! One scheduler per process ([`scheduler`]): in `mpc dev` every party of
//! the process shares it, and a party process has its own.
//!
//! A background session is slowed, not given extra time: under continuous
//! foreground load a presign session may reach its deadline and expire; the
//! coordinator's pool refill then makes another later (and rests a signer
//! set after repeated failures).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;
use std::time::Instant;

use party_core::descriptor::SessionKind;
use tokio::sync::{oneshot, Notify, Semaphore};

/// Longest a background step waits for a busy foreground: while foreground
/// is busy, background still starts one step per this.
pub(crate) const STARVATION_BOUND: Duration = Duration::from_millis(250);

/// Threads of the background executor.
const BACKGROUND_THREADS: usize = 2;

/// Which lane a piece of CPU work runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// A caller waits for it: runs at once, at normal priority.
    Foreground,
    /// It restocks a pool: bounded, lowest priority, yields to foreground.
    Background,
}

impl Lane {
    /// The lane of a session's protocol steps: presign sessions restock the
    /// presignature pool (background); every other kind has a caller
    /// waiting for it (foreground).
    pub fn of(kind: &SessionKind) -> Lane {
        match kind {
            SessionKind::Presign { .. } => Lane::Background,
            SessionKind::Keygen { .. }
            | SessionKind::AuxInfo {}
            | SessionKind::Sign { .. }
            | SessionKind::OnlineSign { .. }
            | SessionKind::PolicyChange { .. } => Lane::Foreground,
        }
    }
}

/// Why work did not produce its result.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkError {
    /// The work panicked.
    #[error("task panicked")]
    Panicked,
    /// The executor is gone (process shutting down).
    #[error("executor stopped")]
    Stopped,
}

/// The foreground count and the background starvation clock.
#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<GateState>,
    changed: Notify,
}

/// The gate's decisions, on a clock the caller passes (tests pass their
/// own instants).
#[derive(Debug)]
struct GateState {
    /// Foreground steps queued or running.
    foreground: usize,
    /// When background last started a step, or foreground last became busy,
    /// whichever is later: a background step may start over a busy
    /// foreground once `bound` has passed since.
    clock: Instant,
    bound: Duration,
}

impl GateState {
    fn enter_foreground(&mut self, now: Instant) {
        if self.foreground == 0 {
            // Background's starvation is counted from when foreground
            // became busy, not from an earlier idle time.
            self.clock = now;
        }
        self.foreground += 1;
    }

    /// Whether foreground became idle.
    fn leave_foreground(&mut self) -> bool {
        self.foreground = self.foreground.saturating_sub(1);
        self.foreground == 0
    }

    /// A background step may start at `now` (recorded), or not before the
    /// instant returned unless foreground becomes idle first.
    fn start_background(&mut self, now: Instant) -> Result<(), Instant> {
        let starve_at = self.clock + self.bound;
        if self.foreground == 0 || now >= starve_at {
            self.clock = now;
            Ok(())
        } else {
            Err(starve_at)
        }
    }
}

/// Counts one foreground step for as long as it lives.
#[derive(Debug)]
pub(crate) struct ForegroundGuard(Arc<Gate>);

impl Drop for ForegroundGuard {
    fn drop(&mut self) {
        if self.0.lock().leave_foreground() {
            self.0.changed.notify_waiters();
        }
    }
}

impl Gate {
    pub(crate) fn new(bound: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(GateState {
                foreground: 0,
                clock: Instant::now(),
                bound,
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a foreground step (queued or running) until the guard drops.
    pub(crate) fn foreground(self: &Arc<Self>) -> ForegroundGuard {
        self.lock().enter_foreground(Instant::now());
        ForegroundGuard(self.clone())
    }

    /// Foreground steps queued or running.
    #[cfg(test)]
    fn foreground_count(&self) -> usize {
        self.lock().foreground
    }

    /// Returns when a background step may start: at once while no
    /// foreground step is queued or running; otherwise when foreground is
    /// idle again or background has had no start for the bound.
    pub(crate) async fn background_turn(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check: a wake-up between the check and
            // the wait is not lost.
            changed.as_mut().enable();
            let Err(starve_at) = self.lock().start_background(Instant::now()) else {
                return;
            };
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep_until(starve_at.into()) => {}
            }
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The background executor: a few lowest-priority threads behind the gate.
#[derive(Debug)]
pub(crate) struct Background {
    gate: Arc<Gate>,
    /// One permit per thread: a step takes one before passing the gate, so
    /// it starts the moment it passes.
    slots: Arc<Semaphore>,
    /// Long jobs (prime search) hold one thread at most.
    long: Arc<Semaphore>,
    /// `None` when no thread could be started: background work then runs on
    /// tokio's blocking pool (still behind the gate).
    jobs: Option<std::sync::mpsc::Sender<Job>>,
}

impl Background {
    pub(crate) fn new(gate: Arc<Gate>, threads: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("party-background-{i}"))
                .spawn(move || worker(&rx));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::warn!(error = %e, "background thread not started"),
            }
        }
        Self {
            gate,
            slots: Arc::new(Semaphore::new(started.max(1))),
            long: Arc::new(Semaphore::new(1)),
            jobs: (started > 0).then_some(tx),
        }
    }

    /// Runs `f` on a background thread once the gate lets it start. `long`:
    /// a long job (at most one runs at a time).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        long: bool,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WorkError> {
        let long_permit = if long {
            Some(
                self.long
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| WorkError::Stopped)?,
            )
        } else {
            None
        };
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| WorkError::Stopped)?;
        self.gate.background_turn().await;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            drop((slot, long_permit));
            let _ = tx.send(r);
        });
        match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|_| WorkError::Stopped)?,
            None => drop(tokio::task::spawn_blocking(job)),
        }
        rx.await
            .map_err(|_| WorkError::Stopped)?
            .map_err(|_| WorkError::Panicked)
    }
}

fn worker(rx: &Mutex<std::sync::mpsc::Receiver<Job>>) {
    lowest_priority();
    loop {
        let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// The nice value of background threads: 19 (the lowest priority) unless
/// `MPC_BACKGROUND_NICE` (0 to 19) says otherwise. Lower it where other
/// processes keep every core busy and background sessions must still meet
/// their deadlines (nice 19 gets about 1.5 % of a core against a busy nice-0
/// process; the kill-matrix test, which runs beside other CI tests, uses 0).
fn background_nice() -> i32 {
    std::env::var("MPC_BACKGROUND_NICE")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|n| (0..=19).contains(n))
        .unwrap_or(19)
}

/// Puts the calling thread at the background OS priority (Linux: nice 19
/// for this thread only, [`background_nice`]); a no-op elsewhere.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let nice = background_nice();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
            tracing::warn!(error = %e, "background thread keeps normal priority");
        }
    }
}

/// This thread's nice value (Linux; `None` elsewhere).
#[cfg(test)]
fn thread_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The process's gate and background executor.
#[derive(Debug)]
pub(crate) struct Scheduler {
    gate: Arc<Gate>,
    background: Background,
}

impl Scheduler {
    pub(crate) fn new(threads: usize, bound: Duration) -> Self {
        let gate = Gate::new(bound);
        Self {
            background: Background::new(gate.clone(), threads),
            gate,
        }
    }

    /// Runs a CPU step in `lane`: foreground at once on the blocking pool
    /// (counted while queued or running), background on the executor.
    pub(crate) async fn step<T: Send + 'static>(
        &self,
        lane: Lane,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WorkError> {
        match lane {
            Lane::Foreground => {
                let _counted = self.gate.foreground();
                tokio::task::spawn_blocking(f).await.map_err(|e| {
                    if e.is_panic() {
                        WorkError::Panicked
                    } else {
                        WorkError::Stopped
                    }
                })
            }
            Lane::Background => self.background.run(false, f).await,
        }
    }

    /// A long background job (a safe prime search): lowest priority, one at
    /// a time per process, behind the gate.
    pub(crate) async fn long_background<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WorkError> {
        self.background.run(true, f).await
    }

    /// Counts foreground work that runs elsewhere (a prime generation a
    /// keygen waits for, on its own threads) until the guard drops.
    pub(crate) fn foreground(&self) -> ForegroundGuard {
        self.gate.foreground()
    }
}

/// The process's scheduler, started on first use.
pub(crate) fn scheduler() -> &'static Scheduler {
    static SCHEDULER: OnceLock<Scheduler> = OnceLock::new();
    SCHEDULER.get_or_init(|| Scheduler::new(BACKGROUND_THREADS, STARVATION_BOUND))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    const BOUND: Duration = Duration::from_millis(250);

    fn state(at: Instant) -> GateState {
        GateState {
            foreground: 0,
            clock: at,
            bound: BOUND,
        }
    }

    /// Whether `fut` is still pending after every ready task has run. Not
    /// called again on a future that finished.
    async fn pending<F: std::future::Future + Unpin>(fut: &mut F) -> bool {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        futures_util::FutureExt::now_or_never(fut).is_none()
    }

    #[test]
    fn background_starts_at_once_while_foreground_is_idle() {
        let t0 = Instant::now();
        let mut g = state(t0);
        assert_eq!(g.start_background(t0), Ok(()));
        assert_eq!(g.start_background(t0), Ok(()), "idle: no pacing");
    }

    #[test]
    fn background_waits_while_a_foreground_step_runs_and_starts_when_it_ends() {
        let t0 = Instant::now();
        let mut g = state(t0);
        g.enter_foreground(t0);
        assert_eq!(g.start_background(t0), Err(t0 + BOUND));
        assert_eq!(g.start_background(t0 + BOUND / 2), Err(t0 + BOUND));
        assert!(g.leave_foreground(), "foreground idle again");
        assert_eq!(g.start_background(t0 + BOUND / 2), Ok(()));
    }

    #[test]
    fn background_is_not_starved_one_step_per_bound() {
        let t0 = Instant::now();
        let mut g = state(t0);
        g.enter_foreground(t0);
        g.enter_foreground(t0);
        assert!(!g.leave_foreground(), "one foreground step still runs");
        // One start per bound while foreground stays busy, no more.
        assert_eq!(g.start_background(t0 + BOUND), Ok(()));
        assert_eq!(g.start_background(t0 + BOUND), Err(t0 + BOUND * 2));
        assert_eq!(
            g.start_background(t0 + BOUND * 2 - Duration::from_millis(1)),
            Err(t0 + BOUND * 2)
        );
        assert_eq!(g.start_background(t0 + BOUND * 2), Ok(()));
    }

    #[test]
    fn starvation_is_counted_from_when_foreground_became_busy() {
        let t0 = Instant::now();
        let mut g = state(t0);
        // Idle for a long time, then foreground becomes busy.
        let busy = t0 + BOUND * 10;
        g.enter_foreground(busy);
        assert_eq!(
            g.start_background(busy),
            Err(busy + BOUND),
            "an idle past let background jump in"
        );
    }

    /// The async gate: a waiting background step wakes when the last
    /// foreground step ends (no clock involved: the bound is an hour).
    #[tokio::test]
    async fn a_waiting_background_step_starts_when_foreground_ends() {
        let gate = Gate::new(Duration::from_secs(3600));
        let first = gate.foreground();
        let second = gate.foreground();
        assert_eq!(gate.foreground_count(), 2);
        let mut turn = Box::pin(gate.background_turn());
        assert!(pending(&mut turn).await, "started under a busy foreground");
        drop(first);
        assert!(
            pending(&mut turn).await,
            "started while one step still runs"
        );
        drop(second);
        assert_eq!(gate.foreground_count(), 0);
        assert!(
            !pending(&mut turn).await,
            "not started when foreground ended"
        );
    }

    #[test]
    fn presign_sessions_are_background_and_the_rest_foreground() {
        let policy = party_core::authz::Policy {
            approvers: vec![],
            quorum: 1,
            digests: vec![],
            allow_bare_hash: false,
            max_signatures_per_hour: None,
        };
        let kinds = [
            (
                SessionKind::Keygen {
                    generate_aux: true,
                    policy: None,
                    aux_fingerprint: None,
                },
                Lane::Foreground,
            ),
            (
                SessionKind::Sign {
                    account_id: "a".into(),
                    message_hash: [0; 32],
                    derivation_path: vec![],
                },
                Lane::Foreground,
            ),
            (
                SessionKind::OnlineSign {
                    account_id: "a".into(),
                    presignature_id: uuid::Uuid::nil(),
                    message: vec![],
                    digest: party_core::descriptor::MessageDigest::Keccak256,
                },
                Lane::Foreground,
            ),
            (
                SessionKind::PolicyChange {
                    account_id: "a".into(),
                    policy,
                },
                Lane::Foreground,
            ),
            (
                SessionKind::Presign {
                    account_id: "a".into(),
                },
                Lane::Background,
            ),
        ];
        for (kind, lane) in kinds {
            assert_eq!(Lane::of(&kind), lane, "{}", kind.name());
        }
    }

    /// The executor runs work on its own lowest-priority threads, waits for
    /// a busy foreground, and survives a panicking job.
    #[tokio::test]
    async fn background_work_runs_behind_the_gate_at_the_lowest_priority() {
        let sched = Scheduler::new(1, Duration::from_secs(3600));
        let fg = sched.foreground();
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let work = sched.step(Lane::Background, move || {
            r.store(true, Ordering::SeqCst);
            (
                std::thread::current().name().map(str::to_owned),
                thread_nice(),
            )
        });
        tokio::pin!(work);
        assert!(pending(&mut work).await);
        assert!(!ran.load(Ordering::SeqCst), "ran under a busy foreground");
        drop(fg);
        let out = work.await.unwrap();
        assert_eq!(out.0.as_deref(), Some("party-background-0"));
        if cfg!(target_os = "linux") {
            assert_eq!(out.1, Some(19), "background thread not at nice 19");
        }
        let panicked: Result<(), _> = sched.step(Lane::Background, || panic!("boom")).await;
        assert!(matches!(panicked, Err(WorkError::Panicked)));
        assert_eq!(sched.step(Lane::Background, || 7).await.unwrap(), 7);
        assert_eq!(sched.step(Lane::Foreground, || 8).await.unwrap(), 8);
        assert_eq!(sched.gate.foreground_count(), 0);
    }
}
