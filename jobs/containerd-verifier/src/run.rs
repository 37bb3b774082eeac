//! The work: which scopes the image falls in, the cache, then the
//! signatures through each endpoint the node pulls from
//! (`sign_image::ops::verify`, one call per endpoint with all of a scope's
//! keys; both signature formats sign-image reads: the `.sig` tag and cosign 3
//! bundles as OCI referrers).

use std::collections::BTreeMap;
use std::time::Duration;

use kit::env::Env;
use kit::http::RetryPolicy;
use kit::reference::ImageRef;
use sign_image::config::{RegistryConfig, VerifyConfig, VerifyKey};
use sign_image::identity::{IdentityRule, Repository};

use crate::cache::{self, Cache, Entry};
use crate::config::Config;
use crate::error::Error;
use crate::policy::{Scope, ScopeKey, Unmatched};
use crate::registries::Endpoint;

/// The judgement: stdout's line and the exit code (0 or 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed(String),
    Refused(String),
}

/// The environment one endpoint's client sees: the process environment,
/// with registries.yaml's `ca_file` as `SSL_CERT_FILE` (the kit's HTTP
/// client adds it to the platform roots).
struct EndpointEnv<'a> {
    base: &'a dyn Env,
    ca_file: Option<String>,
}

impl Env for EndpointEnv<'_> {
    fn var(&self, name: &str) -> Option<String> {
        if name == "SSL_CERT_FILE"
            && let Some(ca) = &self.ca_file
        {
            return Some(ca.clone());
        }
        self.base.var(name)
    }
}

pub async fn run(cfg: Config, env: &dyn Env) -> Result<Verdict, Error> {
    let repository = cfg.repository();
    let pinned = format!("{repository}@{}", cfg.digest);
    let scopes = cfg.policy.scopes_for(&repository);
    if scopes.is_empty() {
        return Ok(match cfg.policy.unmatched {
            Unmatched::Allow => Verdict::Allowed(format!(
                "{pinned}: no scope of {} matches {repository} (unmatched: allow)",
                cfg.policy.path.display()
            )),
            Unmatched::Deny => Verdict::Refused(format!(
                "{pinned}: no scope of {} matches {repository} and unmatched is deny",
                cfg.policy.path.display()
            )),
        });
    }
    // A scope that cannot be applied refuses, before any request.
    let mut needed: Vec<(&Scope, &[ScopeKey])> = Vec::new();
    for s in &scopes {
        match &s.keys {
            Ok(keys) => needed.push((s, keys)),
            Err(why) => return Ok(Verdict::Refused(format!("{pinned}: {why}"))),
        }
    }
    let now = cache::now();
    let mut cache = cfg
        .cache
        .as_ref()
        .map(|p| Cache::open(p, cfg.policy.max_entries, cfg.policy.max_age));
    let mut allowed: Vec<String> = Vec::new();
    let mut to_verify: Vec<(&Scope, &[ScopeKey])> = Vec::new();
    for (s, keys) in needed {
        let fps: Vec<&str> = keys.iter().map(|k| k.fingerprint.as_str()).collect();
        match cache
            .as_ref()
            .and_then(|c| c.lookup(&cfg.digest.to_string(), &repository, &fps, now))
        {
            Some(e) => {
                kit::joblog::info(format!(
                    "scope {:?}: verified with key {} at {} (cache)",
                    s.name, e.key, e.verified_at
                ));
                allowed.push(format!("scope {:?}: key {} (cached)", s.name, e.key));
            }
            None => to_verify.push((s, keys)),
        }
    }
    if !to_verify.is_empty() {
        let registries = match &cfg.registries {
            Ok(r) => r,
            Err(e) => {
                return Err(Error::Registries {
                    cause: kit::job::cause_line(e),
                });
            }
        };
        let endpoints = registries.endpoints(&cfg.image);
        let known: Vec<String> = cfg.policy.fingerprints().into_keys().collect();
        for (s, keys) in to_verify {
            match verify_scope(&cfg, s, keys, &endpoints, env).await? {
                ScopeVerdict::Verified(key) => {
                    allowed.push(format!(
                        "scope {:?}: key {} ({})",
                        s.name,
                        key.fingerprint,
                        key.path.display()
                    ));
                    if let Some(c) = cache.as_mut() {
                        let entry = Entry {
                            digest: cfg.digest.to_string(),
                            repository: repository.clone(),
                            key: key.fingerprint.clone(),
                            verified_at: now,
                        };
                        if let Err(e) = c.record(entry, &known, now) {
                            kit::joblog::warn(format!(
                                "cannot write the cache {}: {e} (the pull is allowed; the next one verifies again)",
                                cfg.cache
                                    .as_deref()
                                    .map(|p| p.display().to_string())
                                    .unwrap_or_default()
                            ));
                        }
                    }
                }
                ScopeVerdict::Refused(why) => return Ok(Verdict::Refused(why)),
            }
        }
    }
    Ok(Verdict::Allowed(format!(
        "{pinned}: signed; {}",
        allowed.join("; ")
    )))
}

fn client_options(ep: &Endpoint, timeout: Duration) -> registry::ClientOptions {
    let mut o = registry::ClientOptions::default();
    if ep.plain_http {
        o.insecure_registries.push(ep.host.clone());
    }
    o.http.accept_invalid_certs = ep.insecure_skip_verify;
    o.http.connect_timeout = timeout.min(Duration::from_secs(3));
    // Few, short retries: containerd's per_verifier_timeout (10 s by default)
    // bounds the whole verification, and the policy's timeout is shorter.
    o.retry = RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
        max_retry_after: Duration::from_secs(1),
    };
    o.base_timeout = Some(timeout);
    o
}

/// What one scope says about the image.
enum ScopeVerdict<'k> {
    /// This key's signature verified.
    Verified(&'k ScopeKey),
    /// The refusal line.
    Refused(String),
}

/// Outer `Err`: no endpoint could be read and none refused.
async fn verify_scope<'k>(
    cfg: &Config,
    scope: &Scope,
    keys: &'k [ScopeKey],
    endpoints: &[Endpoint],
    env: &dyn Env,
) -> Result<ScopeVerdict<'k>, Error> {
    let pinned = format!("{}@{}", cfg.repository(), cfg.digest);
    let original = Repository::of(&cfg.image);
    let mut refusals: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut failure: Option<Error> = None;
    let mut skipped: Vec<String> = Vec::new();
    for ep in endpoints {
        if let Some(why) = &ep.unusable {
            kit::joblog::warn(format!("skipping {why}"));
            skipped.push(why.clone());
            continue;
        }
        let at = ImageRef {
            registry: ep.host.clone(),
            repository: ep.repository.clone(),
            tag: None,
            digest: Some(cfg.digest.clone()),
        };
        // The payload must name the repository containerd pulls (a mirror's
        // own name is accepted too: pull-through caches sign nothing).
        let identity = IdentityRule::new(&at, vec![original.clone()], false);
        let endpoint_env = EndpointEnv {
            base: env,
            ca_file: ep.ca_file.as_ref().map(|p| p.display().to_string()),
        };
        // All of the scope's keys in one pass: any one verifies (rotation).
        let vcfg = VerifyConfig {
            image: at.clone(),
            keys: keys
                .iter()
                .map(|k| VerifyKey {
                    key: k.key.clone(),
                    origin: k.path.display().to_string(),
                })
                .collect(),
            annotations: BTreeMap::new(),
            identity: identity.clone(),
            registry: RegistryConfig {
                client: client_options(ep, cfg.policy.timeout),
                credentials: ep.credentials.clone(),
                platform: None,
                timeout: None,
            },
        };
        match sign_image::ops::verify(&vcfg, &endpoint_env).await {
            Ok(report) => match report.refusal {
                None => {
                    let by = report
                        .verified
                        .first()
                        .and_then(|v| keys.iter().find(|k| k.fingerprint == v.key_fingerprint));
                    if let Some(key) = by {
                        return Ok(ScopeVerdict::Verified(key));
                    }
                }
                Some(r) => refusals
                    .entry(ep.host.clone())
                    .or_default()
                    .push(r.to_string()),
            },
            Err(e) => {
                kit::joblog::warn(format!("{}: {}", ep.host, kit::job::cause_line(&e)));
                failure.get_or_insert(Error::Registry {
                    repository: cfg.repository(),
                    digest: cfg.digest.to_string(),
                    endpoint: ep.host.clone(),
                    source: Box::new(e),
                });
            }
        }
    }
    if !refusals.is_empty() {
        let reasons: Vec<String> = refusals.into_values().flatten().collect();
        return Ok(ScopeVerdict::Refused(format!(
            "{pinned}: no signature valid for scope {:?} ({} key(s)): {}",
            scope.name,
            keys.len(),
            reasons.join("; ")
        )));
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(ScopeVerdict::Refused(format!(
        "{pinned}: no endpoint to read signatures from: {}",
        skipped.join("; ")
    )))
}
