//! What an Application's JSON says, and whether it means "deployed".
//!
//! The rules are the point of this job: `argocd app wait` passes on the
//! previous revision right after a push (it never checks the revision) and
//! reports stale results of earlier operations. Here an app is done only when
//! all of these hold:
//! - no `operation` is pending;
//! - when this job requested a sync: the operation it started (not an older
//!   one) ended `Succeeded`;
//! - `status.sync.revision` (or, for several sources, one of
//!   `status.sync.revisions`) is the expected revision;
//! - `status.reconciledAt` is not earlier than the operation's `finishedAt`
//!   (health was assessed after the apply);
//! - sync `Synced` and health `Healthy`.

use time::OffsetDateTime;

use crate::model::{Application, Resource};

/// The state as one log line's worth of fields; a change in it is a
/// "state change" worth a progress line.
pub type Key = (
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    Option<String>,
);

/// Whether the app's compared revision (any of them, for several sources)
/// is `expected`.
pub fn at_revision(v: &Application, expected: &str) -> bool {
    v.sync_revisions()
        .iter()
        .any(|r| revision_matches(expected, r))
}

pub fn key(v: &Application) -> Key {
    (
        v.sync_status().map(str::to_string),
        v.health().map(str::to_string),
        v.phase().map(str::to_string),
        v.operation_pending(),
        v.sync_revision().map(short),
    )
}

/// `sync=… health=… operation=… revision=…` for progress lines and the
/// timeout message.
pub fn summary(v: &Application) -> String {
    let op = match (v.operation_pending(), v.phase()) {
        (true, None) => "requested".to_string(),
        (_, None) => "-".to_string(),
        (true, Some(p)) if p != "Running" => format!("{p}, next requested"),
        (_, Some(p)) => p.to_string(),
    };
    format!(
        "sync={} health={} operation={} revision={}",
        v.sync_status().unwrap_or("-"),
        v.health().unwrap_or("-"),
        op,
        v.sync_revision().map_or("-".to_string(), short)
    )
}

fn or_dash(s: Option<&str>) -> &str {
    match s {
        Some(s) if !s.is_empty() => s,
        _ => "-",
    }
}

/// The first 7 characters of a commit SHA (the whole string otherwise).
pub fn short(rev: &str) -> String {
    if rev.len() >= 40 && rev.chars().all(|c| c.is_ascii_hexdigit()) {
        rev[..7].to_string()
    } else {
        rev.to_string()
    }
}

/// `expected` equals `actual`, or is an abbreviated SHA (7+ hex digits) of it.
pub fn revision_matches(expected: &str, actual: &str) -> bool {
    if expected.is_empty() || actual.is_empty() {
        return false;
    }
    if expected.eq_ignore_ascii_case(actual) {
        return true;
    }
    expected.len() >= 7
        && expected.chars().all(|c| c.is_ascii_hexdigit())
        && actual.len() > expected.len()
        && actual[..expected.len()].eq_ignore_ascii_case(expected)
}

/// What the job waits for, for one app.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The revision that must be Synced (`--revision`, else what Argo CD
    /// reported after the refresh). `None`: any revision.
    pub revision: Option<String>,
    /// This job requested a sync, so its operation must have Succeeded.
    pub sync_requested: bool,
    /// `operationState.startedAt` before this job's sync: an operation with
    /// this start is an older one.
    pub baseline_started: Option<OffsetDateTime>,
    /// The job saw an operation Running after its sync was accepted.
    pub seen_running: bool,
    /// The job saw its requested operation pending (`operation` set), e.g.
    /// in the sync response. Once that clears, the operation state is ours
    /// even when its whole-second `startedAt` equals the baseline's (a sync
    /// right after another one finished in the same second).
    pub seen_pending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done,
    /// Still waiting, and for what.
    Waiting(String),
    /// A policy failure (exit 1): the message names the resources.
    Failed(String),
}

fn list(rs: &[Resource]) -> String {
    let parts: Vec<String> = rs.iter().take(5).map(Resource::describe).collect();
    let more = if rs.len() > 5 {
        format!(" (+{} more)", rs.len() - 5)
    } else {
        String::new()
    };
    format!("{}{more}", parts.join("; "))
}

impl Expect {
    /// Records what an update shows about our operation.
    pub fn observe(&mut self, v: &Application) {
        if self.sync_requested
            && v.phase() == Some("Running")
            && v.op_started() != self.baseline_started
        {
            self.seen_running = true;
        }
        if self.sync_requested && v.operation_pending() {
            self.seen_pending = true;
        }
    }

    /// Whether the app's last operation is the one this job cares about.
    fn operation_is_ours(&self, v: &Application) -> bool {
        if v.phase().is_none() {
            return false;
        }
        if self.sync_requested {
            v.op_started() != self.baseline_started
                || self.seen_running
                || (self.seen_pending && !v.operation_pending())
        } else {
            // Without a sync of our own, an operation (e.g. the automated
            // sync) counts when it synced the revision we wait for.
            self.revision
                .as_deref()
                .is_some_and(|r| v.op_revisions().iter().any(|o| revision_matches(r, o)))
        }
    }

    pub fn evaluate(&self, v: &Application) -> Verdict {
        let ours = self.operation_is_ours(v);
        let phase = v.phase();
        let pending = v.operation_pending();
        let sync_revision = v.sync_revision().map(short);
        if ours && matches!(phase, Some("Failed" | "Error")) && !pending {
            let failed = v.failed_resources();
            let res = if failed.is_empty() {
                String::new()
            } else {
                format!("; {}", list(&failed))
            };
            let op_rev = v.op_revisions().first().map(|r| short(r));
            return Verdict::Failed(format!(
                "sync operation {} on {}: {}{res}",
                or_dash(phase),
                or_dash(op_rev.as_deref()),
                or_dash(v.op_message())
            ));
        }
        let rev_ok = self.revision.as_deref().is_none_or(|r| at_revision(v, r));
        let applied = !pending && (!self.sync_requested || (ours && phase == Some("Succeeded")));
        let synced = v.sync_status() == Some("Synced");
        if rev_ok && applied && synced && v.health() == Some("Degraded") {
            let unhealthy = v.unhealthy();
            let res = if unhealthy.is_empty() {
                or_dash(v.health_message()).to_string()
            } else {
                list(&unhealthy)
            };
            return Verdict::Failed(format!(
                "Degraded on {}: {res}",
                or_dash(sync_revision.as_deref())
            ));
        }
        let waiting = |why: String| Verdict::Waiting(why);
        if pending {
            return waiting(format!("operation {}", phase.unwrap_or("requested")));
        }
        if self.sync_requested && !ours {
            return waiting("the requested sync to start".into());
        }
        if self.sync_requested && phase != Some("Succeeded") {
            return waiting(format!("operation {}", or_dash(phase)));
        }
        if let Some(r) = &self.revision
            && !rev_ok
        {
            let at: Vec<String> = v.sync_revisions().iter().map(|r| short(r)).collect();
            return waiting(format!(
                "revision {} (Argo CD is at {})",
                short(r),
                if at.is_empty() {
                    "-".to_string()
                } else {
                    at.join(", ")
                }
            ));
        }
        if let Some(done) = v.op_finished()
            && v.reconciled_at().is_none_or(|rec| rec < done)
        {
            return waiting("a reconcile after the operation".into());
        }
        if !synced {
            let hint = if !self.sync_requested && !v.auto_sync() {
                " (the app has no automated sync: add --sync)"
            } else {
                ""
            };
            return waiting(format!(
                "sync {} to become Synced{hint}",
                or_dash(v.sync_status())
            ));
        }
        if v.health() != Some("Healthy") {
            let m = v
                .health_message()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return waiting(format!(
                "health {} to become Healthy{m}",
                or_dash(v.health())
            ));
        }
        Verdict::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NEW: &str = "4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";
    const OLD: &str = "0110000000000000000000000000000000000000";

    fn parse(v: Value) -> Application {
        serde_json::from_value(v).expect("an Application")
    }

    fn t(s: &str) -> Option<OffsetDateTime> {
        Some(OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap())
    }

    fn app(
        rev: &str,
        sync: &str,
        health: &str,
        phase: &str,
        started: &str,
        finished: &str,
        reconciled: &str,
    ) -> Value {
        json!({
            "metadata": {"name": "sensor", "namespace": "argocd"},
            "spec": {"source": {"targetRevision": "main"}},
            "status": {
                "sync": {"status": sync, "revision": rev},
                "health": {"status": health},
                "reconciledAt": reconciled,
                "operationState": {"phase": phase, "startedAt": started, "finishedAt": finished,
                    "syncResult": {"revision": rev}},
            }
        })
    }

    #[test]
    fn old_revision_synced_and_healthy_is_not_done() {
        let e = Expect {
            revision: Some(NEW.into()),
            ..Default::default()
        };
        let v = parse(app(
            OLD,
            "Synced",
            "Healthy",
            "Succeeded",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:04Z",
            "2026-01-01T10:05:00Z",
        ));
        assert_eq!(
            e.evaluate(&v),
            Verdict::Waiting("revision 4e5b2f1 (Argo CD is at 0110000)".into())
        );
        let v = parse(app(
            NEW,
            "Synced",
            "Healthy",
            "Succeeded",
            "2026-01-01T10:06:00Z",
            "2026-01-01T10:06:04Z",
            "2026-01-01T10:06:05Z",
        ));
        assert_eq!(e.evaluate(&v), Verdict::Done);
        // Abbreviated SHAs match.
        let e = Expect {
            revision: Some("4E5B2F1".into()),
            ..Default::default()
        };
        assert_eq!(e.evaluate(&v), Verdict::Done);
    }

    #[test]
    fn sync_in_the_same_second_as_the_last_one_is_recognised_once_its_pending_state_clears() {
        // The previous operation started and finished in the second our sync
        // was accepted: startedAt alone cannot tell them apart.
        let mut e = Expect {
            revision: Some(NEW.into()),
            sync_requested: true,
            baseline_started: t("2026-01-01T09:00:00Z"),
            ..Default::default()
        };
        let done = parse(app(
            NEW,
            "Synced",
            "Healthy",
            "Succeeded",
            "2026-01-01T09:00:00Z",
            "2026-01-01T09:00:00Z",
            "2026-01-01T09:00:01Z",
        ));
        assert_eq!(
            e.evaluate(&done),
            Verdict::Waiting("the requested sync to start".into()),
            "not yet known to be ours"
        );
        // The sync response shows our operation pending …
        let pending = parse(json!({
            "metadata": {"name": "sensor", "namespace": "argocd"},
            "operation": {"sync": {"revision": NEW}},
            "status": {"sync": {"status": "Synced", "revision": NEW}, "health": {"status": "Healthy"},
                "operationState": {"phase": "Succeeded", "startedAt": "2026-01-01T09:00:00Z"}},
        }));
        assert!(pending.operation_pending());
        assert_eq!(pending.operation_revision(), Some(NEW));
        e.observe(&pending);
        assert_eq!(
            e.evaluate(&pending),
            Verdict::Waiting("operation Succeeded".into())
        );
        // … and once it has cleared, the terminal state is ours.
        assert_eq!(e.evaluate(&done), Verdict::Done);
    }

    #[test]
    fn stale_operation_is_not_ours() {
        // Our sync was accepted, but the app still shows the previous, failed operation.
        let e = Expect {
            revision: Some(NEW.into()),
            sync_requested: true,
            baseline_started: t("2026-01-01T09:00:00Z"),
            seen_running: false,
            seen_pending: false,
        };
        let v = parse(app(
            OLD,
            "Synced",
            "Healthy",
            "Failed",
            "2026-01-01T09:00:00Z",
            "2026-01-01T09:00:04Z",
            "2026-01-01T10:00:00Z",
        ));
        assert_eq!(
            e.evaluate(&v),
            Verdict::Waiting("the requested sync to start".into())
        );
        // Without a sync of ours, a failure on another revision is stale too.
        let e2 = Expect {
            revision: Some(NEW.into()),
            ..Default::default()
        };
        assert_eq!(
            e2.evaluate(&v),
            Verdict::Waiting("revision 4e5b2f1 (Argo CD is at 0110000)".into())
        );
        // A new failed operation is ours.
        let v = parse(app(
            NEW,
            "OutOfSync",
            "Healthy",
            "Failed",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:04Z",
            "2026-01-01T10:00:05Z",
        ));
        assert_eq!(
            e.evaluate(&v),
            Verdict::Failed("sync operation Failed on 4e5b2f1: -".into())
        );
    }

    #[test]
    fn an_error_phase_fails_like_failed_and_names_the_resources() {
        let e = Expect {
            revision: Some(NEW.into()),
            ..Default::default()
        };
        let mut j = app(
            NEW,
            "OutOfSync",
            "Healthy",
            "Error",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:04Z",
            "2026-01-01T10:00:05Z",
        );
        j["status"]["operationState"]["message"] = json!("kustomize build failed");
        j["status"]["operationState"]["syncResult"]["resources"] = json!([
            {"kind": "Job", "namespace": "sensors", "name": "verify", "status": "Synced",
             "hookPhase": "Error", "message": "pod failed"},
            {"kind": "Service", "namespace": "sensors", "name": "sensor", "status": "Synced",
             "hookPhase": "Succeeded"}
        ]);
        assert_eq!(
            e.evaluate(&parse(j)),
            Verdict::Failed(
                "sync operation Error on 4e5b2f1: kustomize build failed; Job/sensors/verify Synced: pod failed".into()
            )
        );
    }

    #[test]
    fn suspended_missing_and_unknown_health_keep_waiting() {
        let e = Expect {
            revision: Some(NEW.into()),
            ..Default::default()
        };
        for (health, message, want) in [
            (
                "Suspended",
                Some("Rollout is paused"),
                "health Suspended to become Healthy: Rollout is paused",
            ),
            ("Missing", None, "health Missing to become Healthy"),
            (
                "Unknown",
                Some("health check failed"),
                "health Unknown to become Healthy: health check failed",
            ),
        ] {
            let mut j = app(
                NEW,
                "Synced",
                health,
                "Succeeded",
                "2026-01-01T10:00:00Z",
                "2026-01-01T10:00:04Z",
                "2026-01-01T10:00:05Z",
            );
            if let Some(m) = message {
                j["status"]["health"]["message"] = json!(m);
            }
            assert_eq!(e.evaluate(&parse(j)), Verdict::Waiting(want.into()));
        }
    }

    #[test]
    fn a_multi_source_app_is_at_the_revision_when_any_source_is() {
        let e = Expect {
            revision: Some("4e5b2f1".into()),
            ..Default::default()
        };
        let v = parse(json!({
            "metadata": {"name": "sensor"},
            "spec": {"sources": [{"repoURL": "https://charts", "chart": "base", "targetRevision": "1.4.2"},
                                 {"repoURL": "https://git/config.git", "path": "apps/sensor", "targetRevision": "main"}]},
            "status": {
                "sync": {"status": "Synced", "revisions": ["1.4.2", NEW]},
                "health": {"status": "Healthy"},
                "reconciledAt": "2026-01-01T10:00:05Z",
                "operationState": {"phase": "Succeeded", "startedAt": "2026-01-01T10:00:00Z",
                    "finishedAt": "2026-01-01T10:00:04Z", "syncResult": {"revisions": ["1.4.2", NEW]}}
            }
        }));
        assert_eq!(e.evaluate(&v), Verdict::Done);
        let e = Expect {
            revision: Some(OLD.into()),
            ..Default::default()
        };
        assert_eq!(
            e.evaluate(&v),
            Verdict::Waiting("revision 0110000 (Argo CD is at 1.4.2, 4e5b2f1)".into())
        );
    }

    #[test]
    fn reconcile_must_follow_the_operation() {
        let e = Expect {
            revision: Some(NEW.into()),
            ..Default::default()
        };
        let v = parse(app(
            NEW,
            "Synced",
            "Healthy",
            "Succeeded",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:09Z",
            "2026-01-01T10:00:05Z",
        ));
        assert_eq!(
            e.evaluate(&v),
            Verdict::Waiting("a reconcile after the operation".into())
        );
    }

    #[test]
    fn degraded_only_counts_after_the_new_revision_is_applied() {
        let e = Expect {
            revision: Some(NEW.into()),
            ..Default::default()
        };
        let mut j = app(
            OLD,
            "Synced",
            "Degraded",
            "Succeeded",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:04Z",
            "2026-01-01T10:00:05Z",
        );
        assert!(matches!(e.evaluate(&parse(j.clone())), Verdict::Waiting(_)));
        j["status"]["sync"]["revision"] = json!(NEW);
        j["status"]["resources"] = json!([{
            "kind": "Deployment", "namespace": "sensors", "name": "sensor",
            "health": {"status": "Degraded", "message": "exceeded its progress deadline"}
        }, {
            "kind": "Service", "namespace": "sensors", "name": "sensor", "health": {"status": "Healthy"}
        }]);
        assert_eq!(
            e.evaluate(&parse(j)),
            Verdict::Failed(
                "Degraded on 4e5b2f1: Deployment/sensors/sensor Degraded: exceeded its progress deadline".into()
            )
        );
    }

    #[test]
    fn pending_operation_blocks() {
        let e = Expect::default();
        let mut j = app(
            NEW,
            "Synced",
            "Healthy",
            "Succeeded",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:04Z",
            "2026-01-01T10:00:05Z",
        );
        assert_eq!(e.evaluate(&parse(j.clone())), Verdict::Done);
        j["operation"] = json!({"sync": {"revision": NEW}});
        assert_eq!(
            e.evaluate(&parse(j)),
            Verdict::Waiting("operation Succeeded".into())
        );
    }

    #[test]
    fn revision_matching() {
        assert!(revision_matches(NEW, NEW));
        assert!(revision_matches("4e5b2f1", NEW));
        assert!(!revision_matches("4e5b2f", NEW));
        assert!(!revision_matches("main", "mainline"));
        assert!(!revision_matches("", NEW));
        assert_eq!(short(NEW), "4e5b2f1");
        assert_eq!(short("v1.2.0"), "v1.2.0");
    }
}
