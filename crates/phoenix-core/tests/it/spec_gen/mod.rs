//! The ~1 KB spec the parse benchmark (`benches/spec_hash.rs`) measures, shared with the
//! fast-path agreement test (`tests/it/spec_fast_path.rs`), so the test checks the fast
//! reader on exactly what the benchmark times.

/// A ~1 KB spec in the shape of the design's example, varied per index.
pub fn spec(i: usize) -> String {
    format!(
        r##"# Desired state for one instance group.
apiVersion: phoenix/v1
kind: InstanceGroup
metadata:
  name: group-{i}
  labels: {{team: storefront, tier: web, cost-center: "cc-{i}"}}
spec:
  provider: aws-prod
  replicas: {replicas}
  template:
    image: ami-{i:017x}
    instanceType: t3.micro
    subnetIds: [subnet-aaa, subnet-bbb, subnet-ccc]
    securityGroupIds: [sg-123, sg-456]
    keyName: ops
    userData: "#!/bin/sh\nset -eu\necho 'starting group-{i}'\nexec /usr/local/bin/app --port 8080\n"
    tags: {{app: web, port: 8080, canary: false, owner-email: "team@example.com"}}
  rollout:
    strategy: rolling
    maxSurge: "25%"
    maxUnavailable: 0
    bake: 30s
    autoRollback: true
  health:
    check: http
    http: {{port: 8080, path: /healthz}}
    grace: 30s
    deadline: 5m
  approval: auto
  suspend: false
"##,
        replicas = i % 10 + 1
    )
}
