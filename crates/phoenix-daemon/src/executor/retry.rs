//! Attempts and backoff: which failed steps get another attempt, the next attempt's
//! number (or the wait while a retry delay runs), the delay itself, and which provider
//! errors are worth retrying.

use std::time::{Duration, SystemTime};

use phoenix_cloud::{ErrorKind, ProviderError};
use phoenix_core::backoff::Backoff;
use phoenix_store::{PlanId, StepAction, StepRecord, StepStatus};

use super::Executor;

impl Executor {
    /// Whether a failed step gets another attempt.
    pub(super) fn retryable(&self, step: &StepRecord) -> bool {
        match step.action {
            StepAction::Launch => step.attempt < self.options.launch_attempts,
            StepAction::Terminate | StepAction::Register | StepAction::Deregister => {
                step.attempt < self.options.terminate_attempts
            }
            StepAction::WaitHealthy
            | StepAction::Bake
            | StepAction::Rollback
            | StepAction::WaitInService
            | StepAction::WaitDrained => false,
        }
    }

    /// Delay before attempt `attempt + 1`: base doubled per attempt, capped (the shared
    /// [`Backoff`], without jitter: the delay is recomputed from the store after a crash).
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        Backoff::new(self.options.retry_base, self.options.retry_cap)
            .ceiling(attempt.saturating_sub(1))
    }

    /// The next attempt number for a step, or a wait while its retry delay runs.
    pub(super) fn next_attempt(
        &self,
        id: &PlanId,
        step: &StepRecord,
        now: SystemTime,
    ) -> Result<u32, Duration> {
        match step.status {
            StepStatus::Pending => Ok(1),
            StepStatus::Intent => Ok(step.attempt.max(1)),
            _ => {
                if let Some(at) = self.runtime.get(id).and_then(|r| r.retry_at)
                    && at > now
                {
                    return Err(at.duration_since(now).unwrap_or(Duration::ZERO));
                }
                Ok(step.attempt + 1)
            }
        }
    }

    /// Schedule the retry of a failed step after its backoff; returns the delay.
    pub(super) fn schedule_retry(
        &mut self,
        id: &PlanId,
        attempt: u32,
        now: SystemTime,
    ) -> Duration {
        let delay = self.backoff(attempt);
        self.runtime.entry(id.clone()).or_default().retry_at = Some(now + delay);
        delay
    }
}

/// Whether another attempt may help: not for refused requests (bad AMI, auth, config).
pub(super) fn retry_worth(err: &ProviderError) -> bool {
    !matches!(
        err.kind(),
        ErrorKind::Auth | ErrorKind::Client | ErrorKind::Config
    )
}
