//! What the executor knows of the load balancer target groups during one
//! [`super::Executor::advance`] call: each target group is read (DescribeTargetHealth)
//! at most once per call, lazily, by the first traffic step or floor check that needs
//! it, and what the executor registers or deregisters later in the call is written into
//! the view (registered targets read as `initial`, deregistered ones as `draining`), so
//! it stays exact for the executor's own actions without a second read. The view lives
//! for one call; the next call reads the target groups again, so after a crash every
//! traffic step recomputes what is left from the load balancer itself.

use phoenix_cloud::Provider;
use phoenix_core::traffic::{Serving, Target, TargetGroupHealth, TargetState, TrafficView};

/// Every target group read in one executor call.
#[derive(Debug, Default)]
pub(crate) struct TargetViews {
    view: TrafficView,
}

impl TargetViews {
    /// Read each of `target_groups` of `provider` unless this call already did.
    /// Returns the first read that failed, if any (its error text).
    pub async fn load(
        &mut self,
        provider: &dyn Provider,
        provider_name: &str,
        target_groups: &[String],
    ) -> Result<(), String> {
        for tg in target_groups {
            if self.view.get(provider_name, tg).is_none() {
                let read = match provider.target_health(tg).await {
                    Ok(targets) => TargetGroupHealth::complete(provider_name, tg, targets),
                    Err(err) => {
                        TargetGroupHealth::failed(provider_name, tg, crate::error_chain(&err))
                    }
                };
                self.view.insert(read);
            }
            if let Some(read) = self.view.get(provider_name, tg)
                && !read.complete
            {
                return Err(format!(
                    "target group {tg} could not be read: {}",
                    read.error.as_deref().unwrap_or("incomplete")
                ));
            }
        }
        Ok(())
    }

    /// The state of `id` in `tg` (`None`: not read, or the read failed).
    pub fn state(&self, provider: &str, tg: &str, id: &str) -> Option<TargetState> {
        self.view.get(provider, tg).and_then(|r| r.state_of(id))
    }

    /// Whether `id` is in service in every one of `target_groups`.
    pub fn serving(&self, provider: &str, target_groups: &[String], id: &str) -> Serving {
        self.view.serving(provider, target_groups, id)
    }

    /// The executor registered `ids` in `tg`: they read as `initial` now.
    pub fn registered(&mut self, provider: &str, tg: &str, ids: &[String]) {
        self.set(provider, tg, ids, TargetState::Initial);
    }

    /// The executor deregistered `ids` from `tg`: they read as `draining` now.
    pub fn deregistered(&mut self, provider: &str, tg: &str, ids: &[String]) {
        self.set(provider, tg, ids, TargetState::Draining);
    }

    fn set(&mut self, provider: &str, tg: &str, ids: &[String], state: TargetState) {
        let Some(read) = self.view.get(provider, tg).filter(|r| r.complete) else {
            return;
        };
        let mut targets = read.targets.clone();
        for id in ids {
            match targets.iter_mut().find(|t| t.id.as_str() == id) {
                Some(t) => t.state = state,
                None => targets.push(Target {
                    id: id.as_str().into(),
                    port: None,
                    state,
                }),
            }
        }
        self.view
            .insert(TargetGroupHealth::complete(provider, tg, targets));
    }
}
