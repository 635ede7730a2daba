//! Traffic in the daemon (design section 11): before planning, read every target group
//! that a desired group's `spec.traffic` names, once per target group per pass
//! (DescribeTargetHealth, all of a provider's target groups concurrently), into the
//! [`TrafficView`] the planner and the status snapshot use. A read that fails is kept as
//! incomplete: the planner then neither declares anything `unregistered` nor plans a
//! deregistration or termination for the groups behind it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use phoenix_cloud::Provider;
use phoenix_core::InstanceGroup;
use phoenix_core::traffic::{TargetGroupHealth, TrafficView};

/// Read every (provider, target group) the groups name, each once.
pub async fn target_health<'a>(
    groups: impl IntoIterator<Item = &'a InstanceGroup>,
    providers: &BTreeMap<String, Arc<dyn Provider>>,
) -> TrafficView {
    let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
    let mut view = TrafficView::new();
    for group in groups {
        let spec = &group.spec;
        if let Some(traffic) = spec.traffic.as_deref() {
            view.name_group(
                spec.provider.as_str(),
                group.name().as_str(),
                traffic.target_group_names(),
            );
            for tg in traffic.target_groups.iter() {
                wanted.insert((spec.provider.as_str().to_string(), tg.to_string()));
            }
        }
    }
    let reads = wanted.into_iter().map(|(provider, tg)| {
        let handle = providers.get(&provider).cloned();
        async move {
            match handle {
                Some(p) => match p.target_health(&tg).await {
                    Ok(targets) => TargetGroupHealth::complete(&provider, &tg, targets),
                    Err(err) => {
                        tracing::warn!(provider = %provider, target_group = %tg, error = %phoenix_core::chain(&err), "target health could not be read");
                        let why = crate::error_chain(&err);
                        TargetGroupHealth::failed(&provider, &tg, why)
                    }
                },
                None => TargetGroupHealth::failed(&provider, &tg, "no such provider".into()),
            }
        }
    });
    for read in futures::future::join_all(reads).await {
        view.insert(read);
    }
    view
}

/// An instance's state in each target group of its group that was read completely this
/// pass, for the status API; `None` for a group without `spec.traffic`.
pub fn instance_traffic(
    view: &TrafficView,
    report: &phoenix_core::plan::GroupReport,
    id: &str,
) -> Option<Box<Vec<phoenix_api::InstanceTraffic>>> {
    let tgs = view.target_groups_of(report.provider.as_str(), report.name.as_str());
    if tgs.is_empty() {
        return None;
    }
    let states = tgs
        .iter()
        .filter_map(|tg| {
            let state = view.get(report.provider.as_str(), tg)?.state_of(id)?;
            Some(phoenix_api::InstanceTraffic {
                target_group: tg.clone(),
                state,
            })
        })
        .collect();
    Some(Box::new(states))
}

/// The target groups of a group with `spec.traffic`, for the status API; `None` without.
pub fn group_target_groups(
    view: &TrafficView,
    report: &phoenix_core::plan::GroupReport,
) -> Option<Box<Vec<String>>> {
    let tgs = view.target_groups_of(report.provider.as_str(), report.name.as_str());
    (!tgs.is_empty()).then(|| Box::new(tgs.to_vec()))
}
