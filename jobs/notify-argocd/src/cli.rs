//! The flags, raw: every one reads an environment variable; values are
//! checked in [`crate::config`], booleans are parsed by `kit::cli`.

use clap::Parser;
use kit::secret::Secret;

/// Make Argo CD deploy the exact commit and wait until it is Synced and
/// Healthy on the cluster.
///
/// Refreshes each Application (GET ?refresh=normal|hard), optionally syncs it
/// (retrying while another operation runs), then follows the watch stream
/// (polling when the stream is unavailable or breaks) until all of these
/// hold: no operation pending; the sync this job requested Succeeded;
/// status.sync.revision (or one of status.sync.revisions) is --revision; the
/// app was reconciled after the operation finished; Synced; Healthy. Unlike
/// `argocd app wait`, an app that is Synced and Healthy on the previous
/// revision does not pass, and results of earlier operations are not taken
/// for this one.
///
/// Exit codes: 0 deployed; 1 Degraded after the new revision was applied, or
/// the sync operation Failed/Error (the unhealthy resources are named);
/// 2 bad flags; 3 Argo CD unreachable, refusing (401/403/404, 5xx after
/// retries) or answering in an unexpected shape; 4 --timeout reached (the
/// last state and what each app was waiting for are printed).
#[derive(Debug, Parser)]
#[command(name = "notify-argocd", version)]
#[command(after_help = "Examples:\n  \
    notify-argocd --server https://argocd.example.com --app sensor --revision \"$CONFIG_COMMIT\" --sync\n  \
    ARGOCD_APP=sensor-pi1,sensor-pi2 notify-argocd --revision 4e5b2f1 --timeout 10m\n  \
    notify-argocd --selector app.kubernetes.io/part-of=sensor-fleet --sync --prune\n\n\
    The token is read from ARGOCD_AUTH_TOKEN and never printed.")]
pub struct Args {
    /// Argo CD API server: https://HOST[:PORT][/BASE], http:// for plain HTTP,
    /// or HOST[:PORT] like the argocd CLI (HTTPS).
    #[arg(long, env = "ARGOCD_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// Application name; repeat the flag (or comma-separate) for several.
    #[arg(
        long = "app",
        env = "ARGOCD_APP",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub apps: Vec<String>,

    /// Also wait for every Application matching this label selector
    /// (e.g. `app.kubernetes.io/part-of=sensor-fleet`, one per cluster).
    #[arg(long, env = "ARGOCD_SELECTOR", value_name = "LABELS")]
    pub selector: Option<String>,

    /// API token (Bearer). Never printed.
    #[arg(
        long,
        env = "ARGOCD_AUTH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub auth_token: Option<Secret>,

    /// Local Argo CD user for a session login (POST /api/v1/session) when no
    /// token is given.
    #[arg(long, env = "ARGOCD_USERNAME", value_name = "USER")]
    pub username: Option<String>,

    /// Password for --username. Never printed.
    #[arg(
        long,
        env = "ARGOCD_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub password: Option<Secret>,

    /// The config-repo commit that must be deployed (full or 7+ character
    /// SHA). Without it, the revision Argo CD reports after the refresh.
    #[arg(long, env = "ARGOCD_REVISION", value_name = "SHA")]
    pub revision: Option<String>,

    /// Request a sync (to --revision unless the app has automated sync,
    /// which Argo CD only lets sync to its targetRevision).
    #[arg(long, env = "ARGOCD_SYNC")]
    pub sync: bool,

    /// Prune resources no longer in Git during the sync.
    #[arg(long, env = "ARGOCD_PRUNE")]
    pub prune: bool,

    /// Refresh with `hard` (regenerate manifests, bypassing the cache)
    /// instead of `normal`.
    #[arg(long, env = "ARGOCD_HARD_REFRESH")]
    pub hard_refresh: bool,

    /// Give up after this long (exit 4): e.g. 90s, 5m, 1h.
    #[arg(
        long,
        env = "ARGOCD_TIMEOUT",
        value_name = "DURATION",
        default_value = "5m"
    )]
    pub timeout: String,

    /// Namespace of the Application(s), for apps outside Argo CD's own namespace.
    #[arg(long, env = "ARGOCD_APP_NAMESPACE", value_name = "NS")]
    pub app_namespace: Option<String>,

    /// Argo CD project the Application(s) must belong to.
    #[arg(long, env = "ARGOCD_PROJECT", value_name = "PROJECT")]
    pub project: Option<String>,

    /// Do not verify the server's TLS certificate (a warning is printed).
    /// Prefer adding the CA via SSL_CERT_FILE or ADDITIONAL_CA_CERT_BUNDLE.
    #[arg(long, env = "ARGOCD_INSECURE")]
    pub insecure: bool,

    /// How to follow the apps: `auto` uses the watch stream and polls when
    /// it is unavailable or keeps breaking; `poll` only polls.
    #[arg(long, env = "NOTIFY_ARGOCD_WATCH", value_enum, default_value = "auto")]
    pub watch: WatchMode,

    /// Interval between reads when polling.
    #[arg(
        long,
        env = "NOTIFY_ARGOCD_POLL_INTERVAL",
        value_name = "DURATION",
        default_value = "3s"
    )]
    pub poll_interval: String,

    /// Dotenv file for `artifacts:reports:dotenv` (ARGOCD_APP_URL,
    /// DEPLOYED_REVISION, ARGOCD_APPS), written on success; empty: none.
    #[arg(
        long,
        env = "NOTIFY_ARGOCD_DOTENV",
        value_name = "PATH",
        default_value = "notify-argocd.env"
    )]
    pub dotenv: String,
}

/// How to follow an app after the sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchMode {
    /// The watch stream; polling when it is unavailable or keeps breaking.
    Auto,
    /// Polling only.
    Poll,
}
