//! The registry client promote-image and sign-image share.
//!
//! It speaks the OCI distribution API over the kit's reqwest client and
//! covers what oci-client 0.18 lacks (see README.md for the source lines):
//!
//! - **Retries**: every request goes through `kit::http::send_with_retry`
//!   (connect errors, resets, 429 honouring `Retry-After`, 502/503/504, with
//!   backoff and jitter); a streamed blob upload is retried whole.
//! - **Auth errors with their cause**: a failed token exchange is an exit-3
//!   error naming the realm, scope, status and the server's reason.
//! - **Independent credentials**: each [`Registry`] has its own credentials
//!   and token cache, so SRC and DST never share a login.
//! - **Exact manifest bytes**: [`Registry::push_manifest`] sends the bytes
//!   whose digest was computed and checks the registry's digest matches.
//! - **Streaming, mount, HEAD**: [`Registry::copy_blob`] streams GET → PUT
//!   (memory does not grow with the blob), mounts across repositories of the
//!   same registry and skips blobs already present.
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
pub mod client;
pub mod creds;
pub mod manifest;

pub use client::{BlobCopy, ClientOptions, Registry, Resolved, Stats, display_ref, reference_of};
pub use creds::credentials_for;
pub use manifest::{Contents, Descriptor, IndexEntry, Manifest, sha256};
