//! Issue 18: `describe_images` for `policy.images`, against a real moto server (images
//! made with RegisterImage and CreateImage, with tags and the moto account as owner;
//! moto has no deprecation) and on the sim's registry (deprecation and age), each
//! judged by the pure `phoenix_core::policy::evaluate`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use phoenix_cloud::Provider;
use phoenix_cloud::sim::SimProvider;
use phoenix_core::config::SimConfig;
use phoenix_core::policy::{ImageInfo, ImageLookup, ImagePolicy, evaluate};
use phoenix_testkit::moto::{FaultProxy, MotoServer};

use crate::contract::{aws_config, aws_provider, moto_network, raw_client, within};

/// The account moto owns every image with.
const MOTO_ACCOUNT: &str = "123456789012";

fn policy() -> ImagePolicy {
    ImagePolicy {
        owners: vec![MOTO_ACCOUNT.into()],
        name: Some("golden-*".into()),
        require_tags: [("source-commit".to_string(), "*".to_string())].into(),
        max_age: Some(Duration::from_secs(90 * 86_400)),
        deny_deprecated: true,
    }
}

fn rule(policy: &ImagePolicy, lookup: &ImageLookup, now: SystemTime) -> Option<&'static str> {
    evaluate(policy, lookup, now).map(|v| v.rule())
}

fn found(answers: &BTreeMap<String, ImageLookup>, id: &str) -> ImageInfo {
    match answers.get(id) {
        Some(ImageLookup::Found(info)) => info.clone(),
        other => panic!("expected {id} to be found, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_describe_images_on_moto_feeds_the_policy() {
    let moto = MotoServer::start();
    let client = raw_client(&moto.endpoint_url()).await;
    let (subnets, _) = moto_network(&client).await;

    // RegisterImage, tagged by the pipeline afterwards.
    let golden = within(
        30,
        client
            .register_image()
            .name("golden-web-7")
            .root_device_name("/dev/sda1")
            .send(),
    )
    .await
    .expect("register image")
    .image_id()
    .expect("image id")
    .to_string();
    within(
        30,
        client
            .create_tags()
            .resources(&golden)
            .tags(Tag::builder().key("source-commit").value("3f2a9c1").build())
            .send(),
    )
    .await
    .expect("tag the image");

    // CreateImage from an instance, tagged at creation but not by the pipeline's rules.
    let run = within(
        30,
        client
            .run_instances()
            .image_id("ami-12345678")
            .min_count(1)
            .max_count(1)
            .subnet_id(&subnets[0])
            .send(),
    )
    .await
    .expect("run an instance to image");
    let instance = run.instances()[0]
        .instance_id()
        .expect("instance id")
        .to_string();
    let handmade = within(
        30,
        client
            .create_image()
            .instance_id(&instance)
            .name("handmade-debug")
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Image)
                    .tags(Tag::builder().key("owner").value("bob").build())
                    .build(),
            )
            .send(),
    )
    .await
    .expect("create image")
    .image_id()
    .expect("image id")
    .to_string();

    // Through a counting proxy, to see the cache.
    let proxy = FaultProxy::start(moto.addr());
    let provider = aws_provider(&aws_config("aws", &proxy.endpoint_url())).await;
    let ids = vec![
        golden.clone(),
        handmade.clone(),
        "ami-0000000000000dead".to_string(),
    ];
    let answers = within(30, provider.describe_images(&ids))
        .await
        .expect("describe images");

    let info = found(&answers, &golden);
    assert_eq!(info.owner.as_deref(), Some(MOTO_ACCOUNT));
    assert_eq!(info.name.as_deref(), Some("golden-web-7"));
    assert_eq!(
        info.tags.get("source-commit").map(String::as_str),
        Some("3f2a9c1")
    );
    assert!(info.created.is_some(), "moto reports a creation date");
    assert_eq!(
        found(&answers, &handmade)
            .tags
            .get("owner")
            .map(String::as_str),
        Some("bob")
    );
    assert_eq!(
        answers.get("ami-0000000000000dead"),
        Some(&ImageLookup::NotFound)
    );

    let now = SystemTime::now();
    let policy = policy();
    assert_eq!(rule(&policy, &answers[&golden], now), None);
    assert_eq!(rule(&policy, &answers[&handmade], now), Some("name"));
    assert_eq!(
        rule(&policy, &answers["ami-0000000000000dead"], now),
        Some("exists")
    );
    let other_account = ImagePolicy {
        owners: vec!["999999999999".into()],
        ..policy.clone()
    };
    assert_eq!(rule(&other_account, &answers[&golden], now), Some("owners"));
    let stricter = ImagePolicy {
        require_tags: [("pipeline".to_string(), "packer-*".to_string())].into(),
        ..policy
    };
    assert_eq!(
        rule(&stricter, &answers[&golden], now),
        Some("require_tags")
    );

    // Cached per image id: asking again makes no DescribeImages call.
    let calls = |proxy: &FaultProxy| {
        proxy
            .actions()
            .iter()
            .filter(|a| a.as_str() == "DescribeImages")
            .count()
    };
    let before = calls(&proxy);
    assert!(before >= 1);
    let again = within(30, provider.describe_images(&ids[..1]))
        .await
        .expect("cached");
    assert_eq!(again[&golden], answers[&golden]);
    assert_eq!(calls(&proxy), before, "answered from the cache");
}

#[tokio::test]
async fn sim_registry_describes_images_with_deprecation_and_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let image = |id: &str, age_days: u32, deprecated_days_ago: Option<u32>| ImageInfo {
        id: id.into(),
        owner: Some(MOTO_ACCOUNT.into()),
        name: Some(format!("golden-{id}")),
        tags: [("source-commit".to_string(), "abc".to_string())].into(),
        created: Some(now - day * age_days),
        deprecated_at: deprecated_days_ago.map(|d| now - day * d),
    };
    let config = SimConfig {
        name: "sim".into(),
        launch_latency: Duration::ZERO,
        launch_failure_rate: 0.0,
        unhealthy_images: Vec::new(),
        images: vec![
            image("ami-fresh", 3, None),
            image("ami-deprecated", 10, Some(1)),
        ],
        target_groups: Vec::new(),
    };
    let sim = within(30, SimProvider::open(&config, dir.path()))
        .await
        .expect("open sim");
    sim.register_image(image("ami-old", 200, None));
    let ids: Vec<String> = ["ami-fresh", "ami-deprecated", "ami-old", "ami-unknown"]
        .map(String::from)
        .to_vec();
    let answers = within(30, sim.describe_images(&ids))
        .await
        .expect("describe");
    let policy = policy();
    assert_eq!(rule(&policy, &answers["ami-fresh"], now), None);
    assert_eq!(
        rule(&policy, &answers["ami-deprecated"], now),
        Some("deny_deprecated")
    );
    assert_eq!(rule(&policy, &answers["ami-old"], now), Some("max_age"));
    assert_eq!(rule(&policy, &answers["ami-unknown"], now), Some("exists"));
    let lenient = ImagePolicy {
        deny_deprecated: false,
        max_age: None,
        ..policy
    };
    assert_eq!(rule(&lenient, &answers["ami-deprecated"], now), None);
    assert_eq!(rule(&lenient, &answers["ami-old"], now), None);
}
