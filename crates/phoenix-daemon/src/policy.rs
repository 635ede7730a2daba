//! `policy.images` in the daemon (design section 12): look up every image the desired
//! groups name with the providers' `describe_images` (cached per image id there) and
//! judge it with the pure [`phoenix_core::policy::evaluate`], once per pass before
//! planning ([`image_verdicts`]), and again just before each launch ([`recheck`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use phoenix_cloud::Provider;
use phoenix_core::policy::{ImageLookup, ImagePolicy, ImageVerdicts, Verdict, evaluate};
use phoenix_source::Revision;

/// Verdicts for every (provider, image) the revision's groups name. Without a policy
/// the answer is "not enforced" and no provider is asked. A provider that cannot answer
/// gives `Unknown` verdicts: those images are not launched this pass.
pub async fn image_verdicts(
    policy: Option<&ImagePolicy>,
    revision: Option<&Revision>,
    providers: &BTreeMap<String, Arc<dyn Provider>>,
    now: SystemTime,
) -> ImageVerdicts {
    let (Some(policy), Some(revision)) = (policy, revision) else {
        return ImageVerdicts::default();
    };
    let mut wanted: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for desired in revision.groups.values() {
        let spec = &desired.group.spec;
        wanted
            .entry(spec.provider.as_str())
            .or_default()
            .insert(spec.template.image.to_string());
    }
    let mut verdicts = ImageVerdicts::enforced();
    for (name, images) in wanted {
        let ids: Vec<String> = images.into_iter().collect();
        let answers = match providers.get(name) {
            Some(provider) => provider
                .describe_images(&ids)
                .await
                .map_err(|err| crate::error_chain(&err)),
            None => Err(format!("provider `{name}` is not configured")),
        };
        for id in &ids {
            let verdict = match &answers {
                Ok(answers) => {
                    let lookup = answers.get(id).cloned().unwrap_or(ImageLookup::NotFound);
                    match evaluate(policy, &lookup, now) {
                        None => Verdict::Allowed,
                        Some(violation) => Verdict::Denied(violation),
                    }
                }
                Err(reason) => Verdict::Unknown(reason.clone()),
            };
            if let Verdict::Unknown(reason) = &verdict {
                tracing::warn!(provider = name, image = %id, reason = %reason, "cannot check the image against policy.images; not launching it");
            }
            verdicts.insert(name, id, verdict);
        }
    }
    verdicts
}

/// Why `image` must not be launched on `provider` right now, checked just before a
/// launch: `Ok(())` when it may (or no policy is set), `Err(Denied)` when it breaks a
/// rule, `Err(Unknown)` when it cannot be checked.
pub async fn recheck(
    policy: Option<&ImagePolicy>,
    provider: &dyn Provider,
    image: &str,
    now: SystemTime,
) -> Result<(), Verdict> {
    let Some(policy) = policy else {
        return Ok(());
    };
    let ids = [image.to_string()];
    let lookup = match provider.describe_images(&ids).await {
        Ok(answers) => answers.get(image).cloned().unwrap_or(ImageLookup::NotFound),
        Err(err) => return Err(Verdict::Unknown(crate::error_chain(&err))),
    };
    match evaluate(policy, &lookup, now) {
        None => Ok(()),
        Some(violation) => Err(Verdict::Denied(violation)),
    }
}
