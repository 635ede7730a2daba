//! Load balancer target groups for the `aws_ec2` provider (design section 11), through
//! the official `aws-sdk-elasticloadbalancingv2`: RegisterTargets and
//! DeregisterTargets (in batches, on the mutate budget), DescribeTargetHealth of a whole
//! target group in one call (no target list: every registered and draining target), and
//! DescribeTargetGroupAttributes for the deregistration delay. Every call goes through
//! the provider's own retry loop, like the EC2 calls; `TargetGroupNotFound` becomes
//! [`ProviderError::TargetGroupNotFound`].

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use phoenix_core::traffic::{Target, TargetState};

use super::{AwsEc2Provider, classify};
use crate::retry::retry;
use crate::{ProviderError, TargetGroupInfo, TargetRef};

/// Targets per RegisterTargets / DeregisterTargets call.
pub const TARGET_BATCH: usize = 100;

/// The attribute that holds the deregistration delay, in seconds.
const DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";

/// ELBv2's default deregistration delay, when the attribute is absent.
const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_secs(300);

fn descriptions(targets: &[TargetRef]) -> Vec<TargetDescription> {
    targets
        .iter()
        .map(|t| {
            TargetDescription::builder()
                .id(&t.id)
                .set_port(t.port.map(i32::from))
                .build()
        })
        .collect()
}

impl AwsEc2Provider {
    /// The provider error of a failed ELBv2 call, `TargetGroupNotFound` made typed.
    fn elb_fail(
        &self,
        operation: &'static str,
        target_group: &str,
        err: (super::AttemptError, u32),
    ) -> ProviderError {
        match self.fail(operation, err) {
            ProviderError::Client { code, .. } if code == "TargetGroupNotFound" => {
                ProviderError::TargetGroupNotFound {
                    provider: self.name.clone(),
                    operation,
                    target_group: target_group.to_string(),
                }
            }
            other => other,
        }
    }

    pub(super) async fn elb_register(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> Result<(), ProviderError> {
        for batch in targets.chunks(TARGET_BATCH) {
            retry(self.max_attempts, self.backoff(), |_| {
                let call = self
                    .elb
                    .register_targets()
                    .target_group_arn(target_group)
                    .set_targets(Some(descriptions(batch)));
                async move {
                    self.budgets.mutate.acquire().await;
                    call.send().await.map_err(classify)
                }
            })
            .await
            .map_err(|err| self.elb_fail("RegisterTargets", target_group, err))?;
        }
        Ok(())
    }

    pub(super) async fn elb_deregister(
        &self,
        target_group: &str,
        targets: &[TargetRef],
    ) -> Result<(), ProviderError> {
        for batch in targets.chunks(TARGET_BATCH) {
            retry(self.max_attempts, self.backoff(), |_| {
                let call = self
                    .elb
                    .deregister_targets()
                    .target_group_arn(target_group)
                    .set_targets(Some(descriptions(batch)));
                async move {
                    self.budgets.mutate.acquire().await;
                    call.send().await.map_err(classify)
                }
            })
            .await
            .map_err(|err| self.elb_fail("DeregisterTargets", target_group, err))?;
        }
        Ok(())
    }

    pub(super) async fn elb_target_health(
        &self,
        target_group: &str,
    ) -> Result<Vec<Target>, ProviderError> {
        let out = retry(self.max_attempts, self.backoff(), |_| {
            let call = self
                .elb
                .describe_target_health()
                .target_group_arn(target_group);
            async move {
                self.budgets.describe.acquire().await;
                call.send().await.map_err(classify)
            }
        })
        .await
        .map_err(|err| self.elb_fail("DescribeTargetHealth", target_group, err))?;
        let mut targets = Vec::new();
        for d in out.target_health_descriptions() {
            let Some(id) = d.target().and_then(|t| t.id()) else {
                return Err(ProviderError::Malformed {
                    provider: self.name.clone(),
                    operation: "DescribeTargetHealth",
                    what: "a target without an id".to_string(),
                });
            };
            let state = d
                .target_health()
                .and_then(|h| h.state())
                .map_or(TargetState::Unavailable, |s| {
                    TargetState::from_elb(s.as_str())
                });
            targets.push(Target {
                id: id.into(),
                port: d
                    .target()
                    .and_then(|t| t.port())
                    .and_then(|p| u16::try_from(p).ok()),
                state,
            });
        }
        Ok(targets)
    }

    pub(super) async fn elb_target_group_info(
        &self,
        target_group: &str,
    ) -> Result<TargetGroupInfo, ProviderError> {
        let out = retry(self.max_attempts, self.backoff(), |_| {
            let call = self
                .elb
                .describe_target_group_attributes()
                .target_group_arn(target_group);
            async move {
                self.budgets.describe.acquire().await;
                call.send().await.map_err(classify)
            }
        })
        .await
        .map_err(|err| self.elb_fail("DescribeTargetGroupAttributes", target_group, err))?;
        let delay = out
            .attributes()
            .iter()
            .find(|a| a.key() == Some(DEREGISTRATION_DELAY))
            .and_then(|a| a.value())
            .map(|v| {
                v.parse::<u64>().map_err(|_| ProviderError::Malformed {
                    provider: self.name.clone(),
                    operation: "DescribeTargetGroupAttributes",
                    what: format!("{DEREGISTRATION_DELAY} is `{v}`, not a number of seconds"),
                })
            })
            .transpose()?
            .map_or(DEFAULT_DEREGISTRATION_DELAY, Duration::from_secs);
        Ok(TargetGroupInfo {
            deregistration_delay: delay,
        })
    }
}
