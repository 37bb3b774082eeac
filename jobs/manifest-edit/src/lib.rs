//! Format-preserving edits of image references in a GitOps repo's YAML.
//!
//! Pure: no file, network or clock. The caller reads a tree listing and
//! file contents (from git or the GitLab API) and writes what comes back.
//!
//! ```text
//! yaml.rs   a read-only YAML tree with byte spans (saphyr-parser events)
//! edit.rs   byte-span edits: a scalar in its own quoting style, one mapping entry added or removed; unified diff
//! rules.rs  where references live (kustomize, Helm values, workloads, Argo CD Applications) and how each is updated
//! plan.rs   which files change: tree selection, per-file planning, every edited file re-parsed
//! paths.rs  `--path` entries: relative, no `..`, no empty entry, `.` only alone
//! state.rs  `.bump-manifest/state.json`: order keys (integers, or versions by semver precedence)
//! ```

pub mod edit;
pub mod paths;
pub mod plan;
pub mod rules;
pub mod state;
pub mod yaml;

pub use plan::{FileChange, Plan, TreeEntry};
pub use rules::{Found, Target, Version};

/// Why a file or the state cannot be edited. Every variant is the user's
/// input (a job maps them all to exit 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}:{line}:{col}: cannot parse YAML: {reason}; fix the file (nothing was changed)")]
    Yaml {
        path: String,
        line: usize,
        col: usize,
        reason: String,
    },
    #[error("{path}: not UTF-8 text; YAML files must be UTF-8")]
    NotUtf8 { path: String },
    #[error(
        "{path}:{line}: the image reference is a block scalar (| or >); write it as a plain or quoted scalar (nothing was changed)"
    )]
    BlockScalar { path: String, line: usize },
    #[error("{path}: the edit would make the YAML invalid ({source}); nothing was changed")]
    EditBreaksYaml {
        path: String,
        #[source]
        source: yaml::YamlError,
    },
    #[error("--path {0:?} does not exist in the repo")]
    PathMissing(String),
    #[error("--path {0:?} is a symlink; give the directory it points to")]
    PathIsSymlink(String),
    #[error("{0} is a symlink pointing outside the repo; refusing to read through it")]
    LinkLeavesRepo(String),
    #[error(
        "{path} is {size} bytes, over the {max}-byte bound (--max-file-size); raise it or narrow --path"
    )]
    TooLarge { path: String, size: u64, max: u64 },
    #[error(
        "{} in the config repo is not valid bump-manifest state",
        state::STATE_PATH
    )]
    BadState(#[source] serde_json::Error),
    #[error(
        "order keys {a:?} and {b:?} cannot be compared: use integers (e.g. $CI_PIPELINE_IID) or versions (1.2.3) consistently"
    )]
    IncomparableKeys { a: String, b: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
