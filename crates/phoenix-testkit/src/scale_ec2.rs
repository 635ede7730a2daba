//! [`ScaleEc2`]: an in-memory EC2 Query API endpoint for benchmarks at real cloud scale
//! (issue 20), never used by the product. moto cannot hold 300,000 instances (its cost
//! grows with the square of the fleet); this holds them in a vector and answers the
//! subset Phoenix's `aws_ec2` provider calls:
//!
//! - `DescribeInstances` with `tag:KEY` and `instance-state-name` filters (values OR-ed,
//!   filters AND-ed), `InstanceId.N`, `MaxResults` and `NextToken` paging;
//! - `DescribeInstanceStatus` with `InstanceId.N` and `IncludeAllInstances`;
//! - `RunInstances` with `MinCount`/`MaxCount`, `SubnetId`, `SecurityGroupId.N`,
//!   `TagSpecification` and `ClientToken` (a repeated token returns the first call's
//!   instances, as EC2 does);
//! - `TerminateInstances` (`InvalidInstanceID.NotFound` for an id it never had);
//! - `DescribeImages` with an `image-id` filter (images added with [`ScaleEc2::add_image`]).
//!
//! Two cost models make it a stand-in for EC2's limits rather than a free cloud: a
//! latency per call plus per instance returned ([`Latency`]), and EC2's per-action token
//! buckets ([`Buckets`]: non-mutating calls 100 and 20/s, `RunInstances` 5 and 2/s,
//! `TerminateInstances` 100 and 5/s by default), answering HTTP 503
//! `RequestLimitExceeded` when a bucket is empty. [`ScaleEc2::calls`] counts every call
//! by action and [`ScaleEc2::throttled`] the refused ones. A contract test in
//! phoenix-cloud runs the provider's contract suite against this endpoint and against
//! moto, so it cannot drift from what the SDK sees.
//!
//! HTTP/1.1 with keep-alive, one thread per connection, loopback only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The cost of a call: `per_call`, plus `per_instance` for each instance (or status)
/// a page returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Every call.
    pub per_call: Duration,
    /// Each instance in a `DescribeInstances` or `DescribeInstanceStatus` page.
    pub per_instance: Duration,
}

/// One token bucket: `capacity` tokens, refilled at `refill_per_sec`.
#[derive(Debug, Clone, Copy)]
pub struct BucketSpec {
    /// Most tokens held (the burst).
    pub capacity: f64,
    /// Tokens added per second.
    pub refill_per_sec: f64,
}

/// EC2's per-action buckets. `None` is unlimited.
#[derive(Debug, Clone, Copy)]
pub struct Buckets {
    /// Non-mutating calls (every `Describe*`).
    pub describe: Option<BucketSpec>,
    /// `RunInstances` requests.
    pub run: Option<BucketSpec>,
    /// `TerminateInstances`.
    pub terminate: Option<BucketSpec>,
}

impl Buckets {
    /// EC2's documented defaults for an account: non-mutating 100 and 20/s,
    /// `RunInstances` 5 and 2/s, `TerminateInstances` 100 and 5/s.
    pub fn ec2_defaults() -> Buckets {
        Buckets {
            describe: Some(BucketSpec {
                capacity: 100.0,
                refill_per_sec: 20.0,
            }),
            run: Some(BucketSpec {
                capacity: 5.0,
                refill_per_sec: 2.0,
            }),
            terminate: Some(BucketSpec {
                capacity: 100.0,
                refill_per_sec: 5.0,
            }),
        }
    }

    /// No limit at all.
    pub fn unlimited() -> Buckets {
        Buckets {
            describe: None,
            run: None,
            terminate: None,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    spec: BucketSpec,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(spec: BucketSpec) -> Bucket {
        Bucket {
            spec,
            tokens: spec.capacity,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.spec.refill_per_sec;
        self.tokens = (self.tokens + refill).min(self.spec.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One instance the endpoint holds.
#[derive(Debug, Clone)]
pub struct ScaleInstance {
    /// `i-` and 17 hex digits.
    pub id: String,
    /// The AMI.
    pub image: String,
    /// The instance type.
    pub instance_type: String,
    /// `pending`, `running` or `terminated`.
    pub state: &'static str,
    /// The subnet, if any.
    pub subnet: Option<String>,
    /// Security group ids.
    pub security_groups: Vec<String>,
    /// Tags, sorted by key.
    pub tags: BTreeMap<String, String>,
    /// The private IPv4 address.
    pub private_ip: String,
    /// Seconds since the epoch.
    pub launched_at: u64,
}

/// An image [`ScaleEc2::add_image`] registers for `DescribeImages`.
#[derive(Debug, Clone)]
pub struct ScaleImage {
    /// `ami-...`.
    pub id: String,
    /// The owner account.
    pub owner: String,
    /// The name.
    pub name: String,
    /// RFC 3339 creation date.
    pub created: String,
}

#[derive(Debug, Default)]
struct Fleet {
    instances: Vec<ScaleInstance>,
    index: BTreeMap<String, usize>,
    /// ClientToken -> ids of the call that first used it.
    client_tokens: BTreeMap<String, Vec<String>>,
    images: Vec<ScaleImage>,
    next_id: u64,
}

impl Fleet {
    fn push(&mut self, mut instance: ScaleInstance) -> String {
        self.next_id += 1;
        instance.id = format!("i-{:017x}", self.next_id);
        let n = self.next_id;
        instance.private_ip = format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
        let id = instance.id.clone();
        self.index.insert(id.clone(), self.instances.len());
        self.instances.push(instance);
        id
    }
}

#[derive(Debug)]
struct State {
    fleet: Mutex<Fleet>,
    latency: Latency,
    buckets: Mutex<BTreeMap<&'static str, Bucket>>,
    calls: Mutex<BTreeMap<String, u64>>,
    throttled: AtomicU64,
}

/// The endpoint: a loopback HTTP server on a free port, stopped when dropped.
#[derive(Debug)]
pub struct ScaleEc2 {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl ScaleEc2 {
    /// Start an empty endpoint with these costs.
    pub fn start(latency: Latency, buckets: Buckets) -> ScaleEc2 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let mut limits = BTreeMap::new();
        for (class, spec) in [
            ("describe", buckets.describe),
            ("run", buckets.run),
            ("terminate", buckets.terminate),
        ] {
            if let Some(spec) = spec {
                limits.insert(class, Bucket::new(spec));
            }
        }
        let state = Arc::new(State {
            fleet: Mutex::default(),
            latency,
            buckets: Mutex::new(limits),
            calls: Mutex::default(),
            throttled: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let state = Arc::clone(&state);
                            std::thread::spawn(move || serve(conn, &state));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        ScaleEc2 {
            addr,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`, the provider's `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Add `count` running instances with these tags (a generated fleet); returns
    /// their ids.
    pub fn add_instances(
        &self,
        count: usize,
        image: &str,
        subnet: Option<&str>,
        tags: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let mut fleet = self.state.fleet.lock().expect("fleet lock");
        (0..count)
            .map(|_| {
                fleet.push(ScaleInstance {
                    id: String::new(),
                    image: image.to_owned(),
                    instance_type: "t3.micro".to_owned(),
                    state: "running",
                    subnet: subnet.map(str::to_owned),
                    security_groups: Vec::new(),
                    tags: tags.clone(),
                    private_ip: String::new(),
                    launched_at: now_secs(),
                })
            })
            .collect()
    }

    /// Register an image for `DescribeImages`.
    pub fn add_image(&self, image: ScaleImage) {
        self.state
            .fleet
            .lock()
            .expect("fleet lock")
            .images
            .push(image);
    }

    /// Instances not terminated.
    pub fn live(&self) -> usize {
        self.state
            .fleet
            .lock()
            .expect("fleet lock")
            .instances
            .iter()
            .filter(|i| i.state != "terminated")
            .count()
    }

    /// Calls answered so far (throttled ones included), by action.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.state.calls.lock().expect("calls lock").clone()
    }

    /// Calls refused with `RequestLimitExceeded`.
    pub fn throttled(&self) -> u64 {
        self.state.throttled.load(Ordering::SeqCst)
    }
}

impl Drop for ScaleEc2 {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Requests on one connection until the client closes it.
fn serve(conn: TcpStream, state: &State) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Some(body) = read_request(&mut reader) {
        let form = parse_form(&body);
        let (status, xml) = answer(state, &form);
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            xml.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(xml.as_bytes()).is_err() {
            return;
        }
    }
}

/// The body of the next request, or `None` at the end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut length = 0usize;
    let mut first = true;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if first {
            first = false;
            continue;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

/// `application/x-www-form-urlencoded` into key -> value.
fn parse_form(body: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (!k.is_empty()).then(|| (decode(k), decode(v)))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let byte = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match byte {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Values of a numbered list parameter: `prefix.1`, `prefix.2`, ...
fn list(form: &BTreeMap<String, String>, prefix: &str) -> Vec<String> {
    (1..)
        .map_while(|n| form.get(&format!("{prefix}.{n}")).cloned())
        .collect()
}

/// The filters of a request: name -> accepted values.
fn filters(form: &BTreeMap<String, String>) -> Vec<(String, Vec<String>)> {
    (1..)
        .map_while(|n| {
            let name = form.get(&format!("Filter.{n}.Name"))?.clone();
            Some((name, list(form, &format!("Filter.{n}.Value"))))
        })
        .collect()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn error(status: &'static str, code: &str, message: &str) -> (&'static str, String) {
    (
        status,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{}</Message></Error></Errors><RequestID>scale-ec2</RequestID></Response>",
            escape(message)
        ),
    )
}

fn bucket_class(action: &str) -> &'static str {
    match action {
        "RunInstances" => "run",
        "TerminateInstances" => "terminate",
        _ => "describe",
    }
}

fn answer(state: &State, form: &BTreeMap<String, String>) -> (&'static str, String) {
    let action = form.get("Action").cloned().unwrap_or_default();
    *state
        .calls
        .lock()
        .expect("calls lock")
        .entry(action.clone())
        .or_default() += 1;
    if let Some(bucket) = state
        .buckets
        .lock()
        .expect("bucket lock")
        .get_mut(bucket_class(&action))
        && !bucket.take()
    {
        state.throttled.fetch_add(1, Ordering::SeqCst);
        return error(
            "503 Service Unavailable",
            "RequestLimitExceeded",
            "Request limit exceeded.",
        );
    }
    std::thread::sleep(state.latency.per_call);
    let (status, body, returned) = match action.as_str() {
        "DescribeInstances" => describe_instances(state, form),
        "DescribeInstanceStatus" => describe_status(state, form),
        "RunInstances" => run_instances(state, form),
        "TerminateInstances" => terminate(state, form),
        "DescribeImages" => describe_images(state, form),
        other => {
            let (s, b) = error(
                "400 Bad Request",
                "InvalidAction",
                &format!("the scale endpoint does not answer `{other}`"),
            );
            (s, b, 0)
        }
    };
    if returned > 0 {
        std::thread::sleep(
            state.latency.per_instance * u32::try_from(returned).unwrap_or(u32::MAX),
        );
    }
    (status, body)
}

fn state_code(state: &str) -> u32 {
    match state {
        "pending" => 0,
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        _ => 80,
    }
}

fn instance_xml(out: &mut String, i: &ScaleInstance) {
    let _ = write!(
        out,
        "<item><instanceId>{}</instanceId><imageId>{}</imageId><instanceState><code>{}</code><name>{}</name></instanceState><privateIpAddress>{}</privateIpAddress><instanceType>{}</instanceType><launchTime>{}</launchTime>",
        i.id,
        escape(&i.image),
        state_code(i.state),
        i.state,
        i.private_ip,
        escape(&i.instance_type),
        rfc3339(i.launched_at),
    );
    if let Some(subnet) = &i.subnet {
        let _ = write!(out, "<subnetId>{}</subnetId>", escape(subnet));
    }
    out.push_str("<groupSet>");
    for sg in &i.security_groups {
        let _ = write!(
            out,
            "<item><groupId>{}</groupId><groupName>{}</groupName></item>",
            escape(sg),
            escape(sg)
        );
    }
    out.push_str("</groupSet><tagSet>");
    for (k, v) in &i.tags {
        let _ = write!(
            out,
            "<item><key>{}</key><value>{}</value></item>",
            escape(k),
            escape(v)
        );
    }
    out.push_str("</tagSet></item>");
}

/// RFC 3339 for seconds since the epoch (UTC, days from the civil calendar).
fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn matches(i: &ScaleInstance, filters: &[(String, Vec<String>)], ids: &[String]) -> bool {
    (ids.is_empty() || ids.contains(&i.id))
        && filters.iter().all(|(name, values)| {
            let value = if let Some(key) = name.strip_prefix("tag:") {
                i.tags.get(key).map(String::as_str)
            } else if name == "instance-state-name" {
                Some(i.state)
            } else if name == "image-id" {
                Some(i.image.as_str())
            } else {
                None
            };
            value.is_some_and(|v| values.iter().any(|want| want == v))
        })
}

/// The page of `items` after `NextToken` (an offset), `MaxResults` long.
fn page(form: &BTreeMap<String, String>, total: usize) -> (usize, usize, Option<String>) {
    let start: usize = form
        .get("NextToken")
        .and_then(|t| t.strip_prefix("scale-"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
        .min(total);
    let size: usize = form
        .get("MaxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1000)
        .clamp(5, 1000);
    let end = (start + size).min(total);
    let next = (end < total).then(|| format!("scale-{end}"));
    (start, end, next)
}

fn describe_instances(
    state: &State,
    form: &BTreeMap<String, String>,
) -> (&'static str, String, usize) {
    let filters = filters(form);
    let ids = list(form, "InstanceId");
    let fleet = state.fleet.lock().expect("fleet lock");
    let found: Vec<&ScaleInstance> = fleet
        .instances
        .iter()
        .filter(|i| matches(i, &filters, &ids))
        .collect();
    let (start, end, next) = page(form, found.len());
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>scale-ec2</requestId><reservationSet>",
    );
    for i in &found[start..end] {
        let _ = write!(
            out,
            "<item><reservationId>r-{}</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet>",
            &i.id[2..]
        );
        instance_xml(&mut out, i);
        out.push_str("</instancesSet></item>");
    }
    out.push_str("</reservationSet>");
    if let Some(next) = next {
        let _ = write!(out, "<nextToken>{next}</nextToken>");
    }
    out.push_str("</DescribeInstancesResponse>");
    ("200 OK", out, end - start)
}

fn describe_status(
    state: &State,
    form: &BTreeMap<String, String>,
) -> (&'static str, String, usize) {
    let ids = list(form, "InstanceId");
    let all = form.get("IncludeAllInstances").is_some_and(|v| v == "true");
    let fleet = state.fleet.lock().expect("fleet lock");
    let found: Vec<&ScaleInstance> = fleet
        .instances
        .iter()
        .filter(|i| matches(i, &[], &ids) && (all || i.state == "running"))
        .collect();
    let (start, end, next) = page(form, found.len());
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstanceStatusResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>scale-ec2</requestId><instanceStatusSet>",
    );
    for i in &found[start..end] {
        let status = if i.state == "running" {
            "ok"
        } else {
            "not-applicable"
        };
        let _ = write!(
            out,
            "<item><instanceId>{}</instanceId><availabilityZone>us-east-1a</availabilityZone><instanceState><code>{}</code><name>{}</name></instanceState><systemStatus><status>{status}</status></systemStatus><instanceStatus><status>{status}</status></instanceStatus></item>",
            i.id,
            state_code(i.state),
            i.state
        );
    }
    out.push_str("</instanceStatusSet>");
    if let Some(next) = next {
        let _ = write!(out, "<nextToken>{next}</nextToken>");
    }
    out.push_str("</DescribeInstanceStatusResponse>");
    ("200 OK", out, end - start)
}

fn run_instances(state: &State, form: &BTreeMap<String, String>) -> (&'static str, String, usize) {
    let count: usize = form
        .get("MaxCount")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let Some(image) = form.get("ImageId").cloned() else {
        let (s, b) = error("400 Bad Request", "MissingParameter", "ImageId is required");
        return (s, b, 0);
    };
    let mut tags = BTreeMap::new();
    for n in 1.. {
        let Some(kind) = form.get(&format!("TagSpecification.{n}.ResourceType")) else {
            break;
        };
        if kind != "instance" {
            continue;
        }
        for m in 1.. {
            let Some(key) = form.get(&format!("TagSpecification.{n}.Tag.{m}.Key")) else {
                break;
            };
            let value = form
                .get(&format!("TagSpecification.{n}.Tag.{m}.Value"))
                .cloned()
                .unwrap_or_default();
            tags.insert(key.clone(), value);
        }
    }
    let mut fleet = state.fleet.lock().expect("fleet lock");
    let token = form.get("ClientToken").cloned();
    let ids = match token.as_ref().and_then(|t| fleet.client_tokens.get(t)) {
        Some(ids) => ids.clone(),
        None => {
            let template = ScaleInstance {
                id: String::new(),
                image,
                instance_type: form
                    .get("InstanceType")
                    .cloned()
                    .unwrap_or_else(|| "m1.small".to_owned()),
                state: "running",
                subnet: form.get("SubnetId").cloned(),
                security_groups: list(form, "SecurityGroupId"),
                tags,
                private_ip: String::new(),
                launched_at: now_secs(),
            };
            let ids: Vec<String> = (0..count).map(|_| fleet.push(template.clone())).collect();
            if let Some(token) = token {
                fleet.client_tokens.insert(token, ids.clone());
            }
            ids
        }
    };
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<RunInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>scale-ec2</requestId>",
    );
    let _ = write!(
        out,
        "<reservationId>r-{}</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet>",
        ids.first().map_or("0", |id| &id[2..])
    );
    for id in &ids {
        let i = &fleet.instances[fleet.index[id]];
        instance_xml(&mut out, i);
    }
    out.push_str("</instancesSet></RunInstancesResponse>");
    ("200 OK", out, 0)
}

fn terminate(state: &State, form: &BTreeMap<String, String>) -> (&'static str, String, usize) {
    let ids = list(form, "InstanceId");
    let mut fleet = state.fleet.lock().expect("fleet lock");
    if let Some(unknown) = ids.iter().find(|id| !fleet.index.contains_key(*id)) {
        let (s, b) = error(
            "400 Bad Request",
            "InvalidInstanceID.NotFound",
            &format!("The instance ID '{unknown}' does not exist"),
        );
        return (s, b, 0);
    }
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<TerminateInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>scale-ec2</requestId><instancesSet>",
    );
    for id in &ids {
        let at = fleet.index[id];
        let before = fleet.instances[at].state;
        fleet.instances[at].state = "terminated";
        let _ = write!(
            out,
            "<item><instanceId>{id}</instanceId><currentState><code>48</code><name>terminated</name></currentState><previousState><code>{}</code><name>{before}</name></previousState></item>",
            state_code(before)
        );
    }
    out.push_str("</instancesSet></TerminateInstancesResponse>");
    ("200 OK", out, 0)
}

fn describe_images(
    state: &State,
    form: &BTreeMap<String, String>,
) -> (&'static str, String, usize) {
    let wanted: Vec<String> = filters(form)
        .into_iter()
        .filter(|(name, _)| name == "image-id")
        .flat_map(|(_, values)| values)
        .chain(list(form, "ImageId"))
        .collect();
    let fleet = state.fleet.lock().expect("fleet lock");
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeImagesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>scale-ec2</requestId><imagesSet>",
    );
    for image in fleet
        .images
        .iter()
        .filter(|i| wanted.is_empty() || wanted.contains(&i.id))
    {
        let _ = write!(
            out,
            "<item><imageId>{}</imageId><imageOwnerId>{}</imageOwnerId><name>{}</name><creationDate>{}</creationDate><imageState>available</imageState><tagSet/></item>",
            escape(&image.id),
            escape(&image.owner),
            escape(&image.name),
            escape(&image.created)
        );
    }
    out.push_str("</imagesSet></DescribeImagesResponse>");
    ("200 OK", out, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_percent_and_plus() {
        let form = parse_form(
            b"Action=RunInstances&TagSpecification.1.Tag.1.Key=phoenix%3Aowner&V=a+b%2Fc&bad=%zz",
        );
        assert_eq!(form["Action"], "RunInstances");
        assert_eq!(form["TagSpecification.1.Tag.1.Key"], "phoenix:owner");
        assert_eq!(form["V"], "a b/c");
        assert_eq!(form["bad"], "%zz");
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_420_645), "2026-12-04T21:44:05.000Z");
    }

    #[test]
    fn buckets_refuse_when_empty() {
        let mut bucket = Bucket::new(BucketSpec {
            capacity: 2.0,
            refill_per_sec: 0.0,
        });
        assert!(bucket.take());
        assert!(bucket.take());
        assert!(!bucket.take());
    }
}
