//! The registry client promote-image and sign-image share.
//!
//! It speaks the OCI distribution API over reqwest with the kit's CA
//! bundles and covers what oci-client 0.18 lacks (see README.md):
//!
//! - [`transport`]: every request through `kit::http::send_with_retry`
//!   (connect errors, resets, 429 honouring `Retry-After`, 502/503/504,
//!   backoff and jitter); credentials only to the registry's own origin;
//!   no HTTPS → HTTP downgrade anywhere.
//! - [`auth`]: Basic and the Bearer token flow, the token realm rule, a
//!   failed exchange as an error naming the realm, scope, status and reason.
//! - [`blobs`]: HEAD, GET, upload, mount, streamed copy (memory does not
//!   grow with the blob).
//! - [`manifests`]: resolve, exact bytes in and out, tags.
//! - [`referrers`]: OCI 1.1 referrers, through the referrers API or the
//!   referrers tag schema.
//! - [`error`]: [`Error`], one exit code per cause.
//! - [`creds`]: which credentials each registry gets.
//!
//! oci-client supplies the manifest models ([`manifest::Contents`] parses
//! with its `OciImageIndex` / `OciImageManifest`) and media types.
//!
//! ```no_run
//! # async fn demo() -> kit::JobResult<()> {
//! use registry::{ClientOptions, Registry, credentials_for};
//! let env = kit::env::ProcessEnv;
//! let image = kit::reference::ImageRef::parse("127.0.0.1:5000/team/app:1.0")?;
//! let opts = ClientOptions { insecure_registries: vec!["127.0.0.1:5000".into()], ..Default::default() };
//! let creds = credentials_for("source", &image.registry, None, &env)?;
//! let reg = Registry::for_image(&image, creds, &opts, &env)?;
//! let resolved = reg.resolve_image(&image).await?;           // digest + media type
//! let m = reg.manifest(&image.repository, &resolved.digest.to_string()).await?.expect("exists");
//! let blob = reg.push_blob(&image.repository, b"payload".to_vec()).await?;
//! reg.push_manifest(&image.repository, "sha256-abc.sig", &m.media_type, m.bytes.clone()).await?;
//! # let _ = blob; Ok(()) }
//! ```

pub mod auth;
pub mod blobs;
pub mod client;
pub mod creds;
pub mod error;
pub mod manifest;
pub mod manifests;
pub mod referrers;
pub mod transport;

pub use blobs::BlobCopy;
pub use client::{ClientOptions, Registry, Stats};
pub use creds::{RegistryEnv, credentials_for, credentials_for_with};
pub use error::Error;
pub use manifest::{Contents, Descriptor, IndexEntry, Manifest, sha256};
pub use manifests::{Resolved, display_ref, reference_of};
pub use referrers::{Referrer, ReferrersStore, describe_referrer, referrers_tag};
