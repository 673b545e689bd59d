//! Time as the engine sees it: waits between retries and the wall clock for rate-limit resets.
//! Behind a trait so tests observe every wait exactly instead of sleeping through it.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + Debug {
    fn sleep(&self, duration: Duration) -> Sleep;
    /// Seconds since the Unix epoch.
    fn now_epoch(&self) -> i64;
}

/// The real clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }

    fn now_epoch(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as i64)
    }
}

/// A clock for tests: waits return at once and are recorded; time stands at a fixed instant.
#[derive(Debug, Default)]
pub struct RecordingClock {
    pub now: i64,
    pub sleeps: std::sync::Mutex<Vec<Duration>>,
}

impl RecordingClock {
    pub fn slept(&self) -> Vec<Duration> {
        self.sleeps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Clock for RecordingClock {
    fn sleep(&self, duration: Duration) -> Sleep {
        self.sleeps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(duration);
        Box::pin(std::future::ready(()))
    }

    fn now_epoch(&self) -> i64 {
        self.now
    }
}
