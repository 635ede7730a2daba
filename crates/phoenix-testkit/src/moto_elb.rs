//! A load balancer on a moto server for traffic tests (issue 16), made through moto's
//! query API with plain HTTP (this crate knows no AWS SDK): a VPC, two subnets in two
//! zones (an ALB needs two), a security group, an application load balancer and an
//! instance target group on port 80, and target health read back by the same API.

use crate::moto::{MotoServer, http_request};

/// What [`MotoServer::load_balancer`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MotoLoadBalancer {
    /// The VPC.
    pub vpc_id: String,
    /// Two subnets in two zones.
    pub subnet_ids: Vec<String>,
    /// A security group in the VPC.
    pub security_group_id: String,
    /// The target group's ARN.
    pub target_group_arn: String,
}

impl MotoServer {
    /// Make a VPC, two subnets, a security group, an ALB and an instance target group
    /// named `name` (port 80).
    pub fn load_balancer(&self, name: &str) -> MotoLoadBalancer {
        let vpc_id = self.call(
            "ec2",
            "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.2.0.0/16",
            "vpcId",
        );
        let mut subnet_ids = Vec::new();
        for (cidr, zone) in [
            ("10.2.0.0/20", "us-east-1a"),
            ("10.2.16.0/20", "us-east-1b"),
        ] {
            subnet_ids.push(self.call(
                "ec2",
                &format!(
                    "Action=CreateSubnet&Version=2016-11-15&VpcId={vpc_id}&CidrBlock={cidr}&AvailabilityZone={zone}"
                ),
                "subnetId",
            ));
        }
        let security_group_id = self.call(
            "ec2",
            &format!(
                "Action=CreateSecurityGroup&Version=2016-11-15&GroupName={name}&GroupDescription={name}&VpcId={vpc_id}"
            ),
            "groupId",
        );
        self.call(
            "elasticloadbalancing",
            &format!(
                "Action=CreateLoadBalancer&Version=2015-12-01&Name={name}-alb&Subnets.member.1={}&Subnets.member.2={}",
                subnet_ids[0], subnet_ids[1]
            ),
            "LoadBalancerArn",
        );
        let target_group_arn = self.call(
            "elasticloadbalancing",
            &format!(
                "Action=CreateTargetGroup&Version=2015-12-01&Name={name}&Protocol=HTTP&Port=80&VpcId={vpc_id}&TargetType=instance"
            ),
            "TargetGroupArn",
        );
        MotoLoadBalancer {
            vpc_id,
            subnet_ids,
            security_group_id,
            target_group_arn,
        }
    }

    /// The ids of every target of a target group (DescribeTargetHealth), sorted.
    pub fn target_ids(&self, target_group_arn: &str) -> Vec<String> {
        let body = self.raw(
            "elasticloadbalancing",
            &format!(
                "Action=DescribeTargetHealth&Version=2015-12-01&TargetGroupArn={}",
                encode(target_group_arn)
            ),
        );
        let mut ids: Vec<String> = values(&body, "Id");
        ids.sort();
        ids
    }

    /// Deregister targets out of band (DeregisterTargets).
    pub fn deregister_targets(&self, target_group_arn: &str, ids: &[String]) {
        let mut query = format!(
            "Action=DeregisterTargets&Version=2015-12-01&TargetGroupArn={}",
            encode(target_group_arn)
        );
        for (i, id) in ids.iter().enumerate() {
            query.push_str(&format!("&Targets.member.{}.Id={id}", i + 1));
        }
        self.raw("elasticloadbalancing", &query);
    }

    fn call(&self, service: &str, query: &str, field: &str) -> String {
        let body = self.raw(service, query);
        values(&body, field)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("moto answer to `{query}` has no <{field}>: {body}"))
    }

    fn raw(&self, service: &str, query: &str) -> String {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        let headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", auth.as_str()),
        ];
        let (status, body) = http_request(self.addr(), "POST", "/", &headers, query.as_bytes());
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, 200, "moto refused `{query}`: {body}");
        body
    }
}

/// Every `<field>value</field>` in an XML answer.
fn values(xml: &str, field: &str) -> Vec<String> {
    let (open, close) = (format!("<{field}>"), format!("</{field}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        out.push(after[..end].to_string());
        rest = &after[end + close.len()..];
    }
    out
}

/// Percent-encode a query value (ARNs hold `:` and `/`).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl MotoServer {
    /// Start moto's request recorder (every request from now on is kept).
    pub fn start_recording(&self) {
        let (status, body) = http_request(
            self.addr(),
            "POST",
            "/moto-api/recorder/start-recording",
            &[],
            b"",
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    /// The bodies of every request recorded since [`MotoServer::start_recording`], in
    /// order, decoded (EC2 and ELBv2 bodies are query strings).
    pub fn recorded_bodies(&self) -> Vec<String> {
        use base64::Engine;
        let (status, body) = http_request(
            self.addr(),
            "GET",
            "/moto-api/recorder/download-recording",
            &[],
            b"",
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let entry: serde_json::Value =
                    serde_json::from_str(line).expect("moto records JSON lines");
                let raw = entry["body"].as_str().unwrap_or_default();
                if entry["body_encoded"].as_bool() == Some(true) {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(raw)
                        .expect("a base64 body");
                    String::from_utf8_lossy(&bytes).into_owned()
                } else {
                    raw.to_string()
                }
            })
            .collect()
    }
}
