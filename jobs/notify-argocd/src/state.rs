//! What an Application's JSON says, and whether it means "deployed".
//!
//! The rules are the point of this job: `argocd app wait` passes on the
//! previous revision right after a push (it never checks the revision) and
//! reports stale results of earlier operations. Here an app is done only when
//! all of these hold:
//! - no `operation` is pending;
//! - when this job requested a sync: the operation it started (not an older
//!   one) ended `Succeeded`;
//! - `status.sync.revision` is the expected revision;
//! - `status.reconciledAt` is not earlier than the operation's `finishedAt`
//!   (health was assessed after the apply);
//! - sync `Synced` and health `Healthy`.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One resource as `status.resources[]` or `operationState.syncResult.resources[]` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub status: String,
    pub message: String,
}

impl Resource {
    fn describe(&self) -> String {
        let id = if self.namespace.is_empty() {
            format!("{}/{}", self.kind, self.name)
        } else {
            format!("{}/{}/{}", self.kind, self.namespace, self.name)
        };
        if self.message.is_empty() {
            format!("{id} {}", self.status)
        } else {
            format!("{id} {}: {}", self.status, self.message)
        }
    }
}

/// The fields of a `v1alpha1Application` this job looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppView {
    pub name: String,
    pub namespace: String,
    pub sync_status: String,
    pub sync_revision: String,
    pub sync_revisions: Vec<String>,
    pub health: String,
    pub health_message: String,
    /// `operation` is set: an operation is requested or running.
    pub operation_pending: bool,
    pub operation_revision: String,
    pub phase: String,
    pub op_message: String,
    pub op_started: String,
    pub op_finished: String,
    /// The revision the last operation synced (`syncResult.revision`, else
    /// `operationState.operation.sync.revision`).
    pub op_revision: String,
    pub reconciled_at: String,
    pub auto_sync: bool,
    pub multi_source: bool,
    pub target_revision: String,
    /// Resources whose health is neither Healthy nor empty.
    pub unhealthy: Vec<Resource>,
    /// Resources the last operation failed to sync.
    pub failed_resources: Vec<Resource>,
}

fn s(v: &Value, p: &str) -> String {
    v.pointer(p)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

impl AppView {
    pub fn from_json(v: &Value) -> AppView {
        let strings = |p: &str| -> Vec<String> {
            v.pointer(p)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let unhealthy = v
            .pointer("/status/resources")
            .and_then(Value::as_array)
            .map(|rs| {
                rs.iter()
                    .filter(|r| {
                        let h = s(r, "/health/status");
                        !h.is_empty() && h != "Healthy"
                    })
                    .map(|r| Resource {
                        kind: s(r, "/kind"),
                        namespace: s(r, "/namespace"),
                        name: s(r, "/name"),
                        status: s(r, "/health/status"),
                        message: s(r, "/health/message"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let failed_resources = v
            .pointer("/status/operationState/syncResult/resources")
            .and_then(Value::as_array)
            .map(|rs| {
                rs.iter()
                    .filter(|r| {
                        matches!(s(r, "/status").as_str(), "SyncFailed")
                            || matches!(s(r, "/hookPhase").as_str(), "Failed" | "Error")
                    })
                    .map(|r| Resource {
                        kind: s(r, "/kind"),
                        namespace: s(r, "/namespace"),
                        name: s(r, "/name"),
                        status: s(r, "/status"),
                        message: s(r, "/message"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut op_revision = s(v, "/status/operationState/syncResult/revision");
        if op_revision.is_empty() {
            op_revision = s(v, "/status/operationState/operation/sync/revision");
        }
        AppView {
            name: s(v, "/metadata/name"),
            namespace: s(v, "/metadata/namespace"),
            sync_status: s(v, "/status/sync/status"),
            sync_revision: s(v, "/status/sync/revision"),
            sync_revisions: strings("/status/sync/revisions"),
            health: s(v, "/status/health/status"),
            health_message: s(v, "/status/health/message"),
            operation_pending: v.get("operation").is_some_and(|o| !o.is_null()),
            operation_revision: s(v, "/operation/sync/revision"),
            phase: s(v, "/status/operationState/phase"),
            op_message: s(v, "/status/operationState/message"),
            op_started: s(v, "/status/operationState/startedAt"),
            op_finished: s(v, "/status/operationState/finishedAt"),
            op_revision,
            reconciled_at: s(v, "/status/reconciledAt"),
            auto_sync: v
                .pointer("/spec/syncPolicy/automated")
                .is_some_and(|a| !a.is_null()),
            multi_source: v
                .pointer("/spec/sources")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty()),
            target_revision: s(v, "/spec/source/targetRevision"),
            unhealthy,
            failed_resources,
        }
    }

    /// Whether the app's compared revision is `expected`.
    pub fn at_revision(&self, expected: &str) -> bool {
        revision_matches(expected, &self.sync_revision)
            || self
                .sync_revisions
                .iter()
                .any(|r| revision_matches(expected, r))
    }

    /// The state as one log line's worth of fields; a change in it is a
    /// "state change" worth a progress line.
    pub fn key(&self) -> (String, String, String, bool, String) {
        (
            self.sync_status.clone(),
            self.health.clone(),
            self.phase.clone(),
            self.operation_pending,
            short(&self.sync_revision),
        )
    }

    pub fn summary(&self) -> String {
        let op = match (self.operation_pending, self.phase.as_str()) {
            (true, "") => "requested".to_string(),
            (_, "") => "-".to_string(),
            (true, p) if p != "Running" => format!("{p}, next requested"),
            (_, p) => p.to_string(),
        };
        format!(
            "sync={} health={} operation={} revision={}",
            or_dash(&self.sync_status),
            or_dash(&self.health),
            op,
            or_dash(&short(&self.sync_revision))
        )
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
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

fn ts(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
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
    pub baseline_started: String,
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
    pub fn observe(&mut self, v: &AppView) {
        if self.sync_requested && v.phase == "Running" && v.op_started != self.baseline_started {
            self.seen_running = true;
        }
        if self.sync_requested && v.operation_pending {
            self.seen_pending = true;
        }
    }

    /// Whether the app's last operation is the one this job cares about.
    fn operation_is_ours(&self, v: &AppView) -> bool {
        if v.phase.is_empty() {
            return false;
        }
        if self.sync_requested {
            v.op_started != self.baseline_started
                || self.seen_running
                || (self.seen_pending && !v.operation_pending)
        } else {
            // Without a sync of our own, an operation (e.g. the automated
            // sync) counts when it synced the revision we wait for.
            self.revision
                .as_deref()
                .is_some_and(|r| revision_matches(r, &v.op_revision))
        }
    }

    pub fn evaluate(&self, v: &AppView) -> Verdict {
        let ours = self.operation_is_ours(v);
        if ours && matches!(v.phase.as_str(), "Failed" | "Error") && !v.operation_pending {
            let res = if v.failed_resources.is_empty() {
                String::new()
            } else {
                format!("; {}", list(&v.failed_resources))
            };
            return Verdict::Failed(format!(
                "sync operation {} on {}: {}{res}",
                v.phase,
                or_dash(&short(&v.op_revision)),
                or_dash(&v.op_message)
            ));
        }
        let rev_ok = self.revision.as_deref().is_none_or(|r| v.at_revision(r));
        let applied =
            !v.operation_pending && (!self.sync_requested || (ours && v.phase == "Succeeded"));
        if rev_ok && applied && v.sync_status == "Synced" && v.health == "Degraded" {
            let res = if v.unhealthy.is_empty() {
                or_dash(&v.health_message).to_string()
            } else {
                list(&v.unhealthy)
            };
            return Verdict::Failed(format!("Degraded on {}: {res}", short(&v.sync_revision)));
        }
        let waiting = |why: String| Verdict::Waiting(why);
        if v.operation_pending {
            return waiting(format!(
                "operation {}",
                if v.phase.is_empty() {
                    "requested"
                } else {
                    &v.phase
                }
            ));
        }
        if self.sync_requested && !ours {
            return waiting("the requested sync to start".into());
        }
        if self.sync_requested && v.phase != "Succeeded" {
            return waiting(format!("operation {}", or_dash(&v.phase)));
        }
        if let Some(r) = &self.revision
            && !rev_ok
        {
            return waiting(format!(
                "revision {} (Argo CD is at {})",
                short(r),
                or_dash(&short(&v.sync_revision))
            ));
        }
        if !v.op_finished.is_empty()
            && let (Some(done), Some(rec)) = (
                ts(&v.op_finished),
                ts(&v.reconciled_at).or(Some(OffsetDateTime::UNIX_EPOCH)),
            )
            && rec < done
        {
            return waiting("a reconcile after the operation".into());
        }
        if v.sync_status != "Synced" {
            let hint = if !self.sync_requested && !v.auto_sync {
                " (the app has no automated sync: add --sync)"
            } else {
                ""
            };
            return waiting(format!(
                "sync {} to become Synced{hint}",
                or_dash(&v.sync_status)
            ));
        }
        if v.health != "Healthy" {
            let m = if v.health_message.is_empty() {
                String::new()
            } else {
                format!(": {}", v.health_message)
            };
            return waiting(format!(
                "health {} to become Healthy{m}",
                or_dash(&v.health)
            ));
        }
        Verdict::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NEW: &str = "4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";
    const OLD: &str = "0110000000000000000000000000000000000000";

    fn app(
        rev: &str,
        sync: &str,
        health: &str,
        phase: &str,
        started: &str,
        finished: &str,
        reconciled: &str,
    ) -> AppView {
        AppView::from_json(&json!({
            "metadata": {"name": "sensor", "namespace": "argocd"},
            "spec": {"source": {"targetRevision": "main"}},
            "status": {
                "sync": {"status": sync, "revision": rev},
                "health": {"status": health},
                "reconciledAt": reconciled,
                "operationState": {"phase": phase, "startedAt": started, "finishedAt": finished,
                    "syncResult": {"revision": rev}},
            }
        }))
    }

    #[test]
    fn old_revision_synced_and_healthy_is_not_done() {
        let e = Expect {
            revision: Some(NEW.into()),
            ..Default::default()
        };
        let v = app(
            OLD,
            "Synced",
            "Healthy",
            "Succeeded",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:04Z",
            "2026-01-01T10:05:00Z",
        );
        assert!(matches!(e.evaluate(&v), Verdict::Waiting(w) if w.contains("revision 4e5b2f1")));
        let v = app(
            NEW,
            "Synced",
            "Healthy",
            "Succeeded",
            "2026-01-01T10:06:00Z",
            "2026-01-01T10:06:04Z",
            "2026-01-01T10:06:05Z",
        );
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
            baseline_started: "2026-01-01T09:00:00Z".into(),
            ..Default::default()
        };
        let done = app(
            NEW,
            "Synced",
            "Healthy",
            "Succeeded",
            "2026-01-01T09:00:00Z",
            "2026-01-01T09:00:00Z",
            "2026-01-01T09:00:01Z",
        );
        assert!(
            matches!(e.evaluate(&done), Verdict::Waiting(_)),
            "not yet known to be ours"
        );
        // The sync response shows our operation pending …
        let mut pending = AppView::from_json(&json!({
            "metadata": {"name": "sensor", "namespace": "argocd"},
            "operation": {"sync": {"revision": NEW}},
            "status": {"sync": {"status": "Synced", "revision": NEW}, "health": {"status": "Healthy"},
                "operationState": {"phase": "Succeeded", "startedAt": "2026-01-01T09:00:00Z"}},
        }));
        assert!(pending.operation_pending);
        e.observe(&pending);
        assert!(matches!(e.evaluate(&pending), Verdict::Waiting(_)));
        // … and once it has cleared, the terminal state is ours.
        pending.operation_pending = false;
        assert_eq!(e.evaluate(&done), Verdict::Done);
    }

    #[test]
    fn stale_operation_is_not_ours() {
        // Our sync was accepted, but the app still shows the previous, failed operation.
        let e = Expect {
            revision: Some(NEW.into()),
            sync_requested: true,
            baseline_started: "2026-01-01T09:00:00Z".into(),
            seen_running: false,
            seen_pending: false,
        };
        let v = app(
            OLD,
            "Synced",
            "Healthy",
            "Failed",
            "2026-01-01T09:00:00Z",
            "2026-01-01T09:00:04Z",
            "2026-01-01T10:00:00Z",
        );
        assert!(matches!(e.evaluate(&v), Verdict::Waiting(_)));
        // Without a sync of ours, a failure on another revision is stale too.
        let e2 = Expect {
            revision: Some(NEW.into()),
            ..Default::default()
        };
        assert!(matches!(e2.evaluate(&v), Verdict::Waiting(_)));
        // A new failed operation is ours.
        let v = app(
            NEW,
            "OutOfSync",
            "Healthy",
            "Failed",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:04Z",
            "2026-01-01T10:00:05Z",
        );
        assert!(
            matches!(e.evaluate(&v), Verdict::Failed(m) if m.contains("sync operation Failed"))
        );
    }

    #[test]
    fn reconcile_must_follow_the_operation() {
        let e = Expect {
            revision: Some(NEW.into()),
            ..Default::default()
        };
        let v = app(
            NEW,
            "Synced",
            "Healthy",
            "Succeeded",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:09Z",
            "2026-01-01T10:00:05Z",
        );
        assert!(matches!(e.evaluate(&v), Verdict::Waiting(w) if w.contains("reconcile")));
    }

    #[test]
    fn degraded_only_counts_after_the_new_revision_is_applied() {
        let e = Expect {
            revision: Some(NEW.into()),
            ..Default::default()
        };
        let mut v = app(
            OLD,
            "Synced",
            "Degraded",
            "Succeeded",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:04Z",
            "2026-01-01T10:00:05Z",
        );
        assert!(matches!(e.evaluate(&v), Verdict::Waiting(_)));
        v.sync_revision = NEW.into();
        v.unhealthy = vec![Resource {
            kind: "Deployment".into(),
            namespace: "sensors".into(),
            name: "sensor".into(),
            status: "Degraded".into(),
            message: "exceeded its progress deadline".into(),
        }];
        match e.evaluate(&v) {
            Verdict::Failed(m) => assert!(
                m.contains("Deployment/sensors/sensor Degraded: exceeded"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pending_operation_blocks() {
        let e = Expect::default();
        let mut v = app(
            NEW,
            "Synced",
            "Healthy",
            "Succeeded",
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:04Z",
            "2026-01-01T10:00:05Z",
        );
        assert_eq!(e.evaluate(&v), Verdict::Done);
        v.operation_pending = true;
        assert!(matches!(e.evaluate(&v), Verdict::Waiting(_)));
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
