//! Where the loop's source and providers come from: [`Backends`], with
//! [`RealBackends`] for the daemon (the configured Git or folder source, the configured
//! providers) and fakes in the loop's tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use phoenix_cloud::{BuildOptions, Provider, ProviderError};
use phoenix_core::config::{ProviderConfig, SourceConfig};
use phoenix_source::{Source, SourceError};

use super::source::LoopSource;

/// The providers by config name.
pub type Providers = BTreeMap<String, Arc<dyn Provider>>;

/// Builds what the loop reads from and acts on, at start and on a config reload.
#[async_trait::async_trait]
pub trait Backends: Send + Sync {
    /// Open the configured source (no network IO yet).
    fn open_source(
        &self,
        config: &SourceConfig,
        state_dir: &Path,
    ) -> Result<Box<dyn LoopSource>, SourceError>;

    /// Build the configured providers.
    async fn build_providers(
        &self,
        config: &[ProviderConfig],
        state_dir: &Path,
    ) -> Result<Providers, ProviderError>;
}

/// The real source ([`Source::open`]) and providers ([`phoenix_cloud::build_providers`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealBackends;

#[async_trait::async_trait]
impl Backends for RealBackends {
    fn open_source(
        &self,
        config: &SourceConfig,
        state_dir: &Path,
    ) -> Result<Box<dyn LoopSource>, SourceError> {
        Ok(Box::new(Source::open(config, state_dir)?))
    }

    async fn build_providers(
        &self,
        config: &[ProviderConfig],
        state_dir: &Path,
    ) -> Result<Providers, ProviderError> {
        phoenix_cloud::build_providers(config, state_dir, &BuildOptions::default()).await
    }
}
