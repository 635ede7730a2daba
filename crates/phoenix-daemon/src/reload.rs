//! What a config reload may change in a running daemon (issue 17, defect 1). `owner`
//! scopes inventory, planning and the tags the executor writes; `state` holds the
//! store, the Git cache and the sim cloud; `server`, `webhooks` and `alerts` are bound
//! when the daemon starts (listener, secrets read from the environment, receivers).
//! Changing any of them under a running daemon would leave parts of it on the old value
//! (an owner change made every pass launch again under the old tag), so [`check`]
//! refuses such a reload with a clear error naming the keys, and the running config stays
//! in force; restart the daemon to change them. `source`, `providers` and `reconcile`
//! are applied by the reload.

use phoenix_core::config::Config;

/// A reload refused, naming the keys that need a restart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "config reload refused: {} cannot change while the daemon runs; restart it to apply them (the running config stays in force)",
    keys.join(", ")
)]
pub struct ReloadRefused {
    /// The top-level keys whose change needs a restart.
    pub keys: Vec<&'static str>,
}

/// `Ok` when `new` may replace `running` by a reload; else the keys that need a restart.
pub fn check(running: &Config, new: &Config) -> Result<(), ReloadRefused> {
    let mut keys = Vec::new();
    if running.owner != new.owner {
        keys.push("owner");
    }
    if running.state != new.state {
        keys.push("state");
    }
    if running.server != new.server {
        keys.push("server");
    }
    if running.webhooks != new.webhooks {
        keys.push("webhooks");
    }
    if running.alerts != new.alerts {
        keys.push("alerts");
    }
    if keys.is_empty() {
        Ok(())
    } else {
        Err(ReloadRefused { keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(owner: &str, extra: &str) -> Config {
        Config::parse(&format!(
            "owner: {owner}\nsource: {{dir: {{path: desired}}}}\nproviders: [{{name: local, type: sim}}]\n{extra}"
        ))
        .expect("a valid config")
    }

    /// Issue 17, defect 1: an owner change on reload is refused (it made the executor
    /// launch under the old owner tag on every pass), and so are the other keys bound at
    /// start; what a reload applies passes.
    #[test]
    fn owner_and_start_time_keys_are_refused_on_reload() {
        let running = config("acme", "");
        let err = check(&running, &config("other", "")).expect_err("owner change refused");
        assert_eq!(err.keys, ["owner"]);
        assert!(err.to_string().contains("owner cannot change"), "{err}");
        let err = check(
            &running,
            &config(
                "acme",
                "state: {path: /elsewhere}\nserver: {listen: 127.0.0.1:9}\n",
            ),
        )
        .expect_err("state change refused");
        assert_eq!(err.keys, ["state", "server"]);
        check(
            &running,
            &config("acme", "reconcile: {interval: 5m, mode: enforce}\n"),
        )
        .expect("reconcile is applied by a reload");
    }
}
