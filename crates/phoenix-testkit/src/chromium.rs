//! Headless Chromium driven over the DevTools protocol, for tests of the built-in
//! dashboard in a real browser: open a page, wait until its JavaScript shows something,
//! read the DOM, click, take a PNG screenshot.
//!
//! The binary is Debian's `chromium` (`/usr/bin/chromium`, or `$PHOENIX_CHROMIUM`),
//! installed by `scripts/setup.sh`; without it the fixture panics with that instruction.
//! It runs with the flags of `/work/shared/services.md` (`--headless --no-sandbox
//! --disable-gpu --disable-background-networking --disable-component-update
//! --disable-sync --no-first-run`) and a fresh `--user-data-dir`, and speaks the protocol
//! over `--remote-debugging-pipe` (file descriptors 3 and 4, NUL-terminated JSON): no
//! port is opened at all. The two descriptors are named pipes (FIFOs) in a temp dir that
//! a `sh -c 'exec chromium ... 3<in 4>out'` wrapper hands to the browser, since the
//! workspace forbids the `unsafe` a `pre_exec` would need.
//!
//! Every read has a timeout (a reader thread feeds a channel), so a hung browser fails
//! the test instead of hanging it. The browser is killed by PID on drop.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// Where the binary is looked for when `PHOENIX_CHROMIUM` is not set.
pub const DEFAULT_BINARY: &str = "/usr/bin/chromium";

/// How long one protocol call may take before the test fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A running headless Chromium with one page.
pub struct Browser {
    child: Child,
    to_browser: File,
    from_browser: Receiver<Value>,
    next_id: u64,
    session: String,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("pid", &self.child.id())
            .field("dir", &self.dir.path())
            .finish()
    }
}

fn binary() -> PathBuf {
    let binary = std::env::var_os("PHOENIX_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BINARY));
    assert!(
        binary.is_file(),
        "{} not found: run scripts/setup.sh, which installs the Debian package chromium \
         (or set PHOENIX_CHROMIUM to the binary)",
        binary.display()
    );
    binary
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {} failed", path.display());
}

/// Opens a FIFO in a helper thread, so that a browser that never opens its end fails
/// the test after `timeout` instead of blocking it.
fn open_fifo(path: &Path, write: bool, timeout: Duration, log: &Path) -> File {
    let (tx, rx) = channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let file = if write {
            OpenOptions::new().write(true).open(&p)
        } else {
            File::open(&p)
        };
        let _ = tx.send(file);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(file)) => file,
        Ok(Err(e)) => panic!("open {}: {e}", path.display()),
        Err(_) => panic!(
            "Chromium did not open its DevTools pipe within {timeout:?}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    }
}

impl Browser {
    /// Start Chromium with a blank page of `width` x `height` CSS pixels and attach to it.
    pub fn launch(width: u32, height: u32) -> Browser {
        let binary = binary();
        let dir = tempfile::tempdir().expect("create a temp dir for Chromium");
        let (fifo_in, fifo_out) = (dir.path().join("cdp-in"), dir.path().join("cdp-out"));
        mkfifo(&fifo_in);
        mkfifo(&fifo_out);
        let log = dir.path().join("chromium.log");
        let log_file = File::create(&log).expect("create the Chromium log");
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<"$PHX_CDP_IN" 4>"$PHX_CDP_OUT""#)
            .arg(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .env("PHX_CDP_IN", &fifo_in)
            .env("PHX_CDP_OUT", &fifo_out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        // The wrapper opens fd 3 (reading our "in") first, then fd 4 (writing "out").
        let to_browser = open_fifo(&fifo_in, true, CALL_TIMEOUT, &log);
        let reader = open_fifo(&fifo_out, false, CALL_TIMEOUT, &log);
        let (tx, from_browser) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                message.pop();
                let Ok(value) = serde_json::from_slice::<Value>(&message) else {
                    continue;
                };
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        let mut browser = Browser {
            child,
            to_browser,
            from_browser,
            next_id: 0,
            session: String::new(),
            dir,
        };
        browser.attach(width, height);
        browser
    }

    fn attach(&mut self, width: u32, height: u32) {
        let targets = self.call(None, "Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .map(|t| t["targetId"].clone());
        let target = match page {
            Some(id) => id,
            None => {
                self.call(None, "Target.createTarget", json!({"url": "about:blank"}))["targetId"]
                    .clone()
            }
        };
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        self.session = attached["sessionId"]
            .as_str()
            .expect("attachToTarget gives a session id")
            .to_owned();
        self.page_call("Page.enable", json!({}));
        self.page_call("Runtime.enable", json!({}));
        self.resize(width, height);
    }

    /// The browser's log (stderr) so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default()
    }

    /// One protocol call; panics on a protocol error or after [`CALL_TIMEOUT`].
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call(session, method, params)
            .unwrap_or_else(|error| panic!("Chromium refused {method}: {error}"))
    }

    /// One protocol call: its result, or the protocol error Chromium answered with;
    /// panics when Chromium does not answer within [`CALL_TIMEOUT`] or goes away.
    fn try_call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = Value::from(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("a JSON value serialises");
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("write to Chromium ({method}): {e}"));
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_browser.recv_timeout(left) {
                Ok(answer) if answer["id"] == id => {
                    if let Some(error) = answer.get("error") {
                        return Err(error.clone());
                    }
                    return Ok(answer["result"].clone());
                }
                Ok(_) => continue, // an event, or the answer to an abandoned call
                Err(RecvTimeoutError::Timeout) => panic!(
                    "Chromium did not answer {method} within {CALL_TIMEOUT:?}; log:\n{}",
                    self.log_text()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "Chromium closed its DevTools pipe during {method}; log:\n{}",
                    self.log_text()
                ),
            }
        }
    }

    fn page_call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    /// Set the viewport to `width` x `height` CSS pixels (scale 1).
    pub fn resize(&mut self, width: u32, height: u32) {
        self.page_call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// Navigate to `url` and wait for its load event's navigation to commit.
    pub fn goto(&mut self, url: &str) {
        let answer = self.page_call("Page.navigate", json!({"url": url}));
        if let Some(error) = answer.get("errorText").and_then(Value::as_str) {
            panic!("Chromium could not open {url}: {error}");
        }
    }

    /// Evaluate `expression` in the page (awaiting a promise) and return its value;
    /// panics when it throws.
    pub fn eval(&mut self, expression: &str) -> Value {
        let answer = self.page_call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("the page threw evaluating `{expression}`: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Poll `expression` until it is truthy (an exception, as while the page is still
    /// loading, counts as not yet, and so does an evaluation Chromium refuses because the
    /// page is navigating, e.g. right after `location.reload()`); panics after `timeout`
    /// with `what` and the page's text.
    pub fn wait_for(&mut self, what: &str, expression: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let check = format!(
            "(() => {{ try {{ return Boolean({expression}); }} catch (e) {{ return false; }} }})()"
        );
        loop {
            let session = self.session.clone();
            let answer = self.try_call(
                Some(&session),
                "Runtime.evaluate",
                json!({"expression": check, "returnByValue": true, "awaitPromise": true}),
            );
            if answer.is_ok_and(|a| a["result"]["value"] == Value::Bool(true)) {
                return;
            }
            if Instant::now() > deadline {
                let text = self.text();
                panic!("timed out after {timeout:?} waiting for {what}; page text:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The page's visible text (`document.body.innerText`).
    pub fn text(&mut self) -> String {
        self.eval("document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The serialised DOM as the page's JavaScript left it.
    pub fn dom(&mut self) -> String {
        self.eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A PNG of the whole page (the viewport grown to the document's height, `width`
    /// wide).
    pub fn screenshot(&mut self, width: u32) -> Vec<u8> {
        let height = self
            .eval("Math.ceil(document.documentElement.scrollHeight)")
            .as_u64()
            .unwrap_or(800)
            .clamp(200, 8000);
        self.resize(width, u32::try_from(height).expect("clamped to 8000"));
        let answer = self.page_call("Page.captureScreenshot", json!({"format": "png"}));
        let data = answer["data"]
            .as_str()
            .expect("captureScreenshot gives data");
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("the screenshot is base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask first, so the browser takes its renderer processes down with it; kill
        // after a grace period.
        let close = format!("{}\0", json!({"id": u64::MAX, "method": "Browser.close"}));
        let _ = self.to_browser.write_all(close.as_bytes());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
