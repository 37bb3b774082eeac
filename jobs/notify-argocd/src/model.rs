//! Argo CD's answers as typed structs: the parts of the swagger spec's
//! definitions (`v1alpha1Application` and what it holds, the session and
//! list answers, the watch stream's lines) this job reads. Names follow the
//! spec; what Argo CD may leave out is an `Option` (serde reads a missing
//! or `null` one as `None`). Fields the job does not
//! read are not declared (serde skips them), so a newer Argo CD that adds
//! fields still reads; a field of the wrong type is an unexpected answer
//! (exit 3), never a default.

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `v1alpha1Application`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Application {
    pub metadata: ObjectMeta,
    pub spec: Option<ApplicationSpec>,
    pub status: Option<ApplicationStatus>,
    /// Set while an operation is requested or running.
    pub operation: Option<Operation>,
}

/// `v1ObjectMeta` (the parts read here).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "timestamp")]
    pub deletion_timestamp: Option<OffsetDateTime>,
}

/// `v1alpha1ApplicationSpec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    pub project: Option<String>,
    pub source: Option<ApplicationSource>,
    /// Multi-source apps have `sources` instead of `source`.
    pub sources: Option<Vec<ApplicationSource>>,
    pub sync_policy: Option<SyncPolicy>,
}

/// `v1alpha1ApplicationSource`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSource {
    #[serde(rename = "repoURL")]
    pub repo_url: Option<String>,
    pub path: Option<String>,
    pub chart: Option<String>,
    pub target_revision: Option<String>,
}

/// `v1alpha1SyncPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SyncPolicy {
    pub automated: Option<SyncPolicyAutomated>,
}

/// `v1alpha1SyncPolicyAutomated`; `enabled: false` (Argo CD 3) turns it off
/// while keeping the settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicyAutomated {
    pub enabled: Option<bool>,
    pub prune: Option<bool>,
    pub self_heal: Option<bool>,
}

/// `v1alpha1ApplicationStatus`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    pub sync: Option<SyncStatus>,
    pub health: Option<HealthStatus>,
    pub operation_state: Option<OperationState>,
    pub resources: Option<Vec<ResourceStatus>>,
    #[serde(default, deserialize_with = "timestamp")]
    pub reconciled_at: Option<OffsetDateTime>,
    pub history: Option<Vec<RevisionHistory>>,
}

/// `v1alpha1SyncStatus`: `revision` for one source, `revisions` (one per
/// source, in order) for several.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SyncStatus {
    pub status: Option<String>,
    pub revision: Option<String>,
    pub revisions: Option<Vec<String>>,
}

/// `v1alpha1AppHealthStatus` / `v1alpha1HealthStatus`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HealthStatus {
    pub status: Option<String>,
    pub message: Option<String>,
}

/// `v1alpha1OperationState`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationState {
    pub operation: Option<Operation>,
    pub phase: Option<String>,
    pub message: Option<String>,
    #[serde(default, deserialize_with = "timestamp")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "timestamp")]
    pub finished_at: Option<OffsetDateTime>,
    pub sync_result: Option<SyncOperationResult>,
}

/// `v1alpha1Operation`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Operation {
    pub sync: Option<SyncOperation>,
}

/// `v1alpha1SyncOperation`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SyncOperation {
    pub revision: Option<String>,
    pub revisions: Option<Vec<String>>,
}

/// `v1alpha1SyncOperationResult`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SyncOperationResult {
    pub revision: Option<String>,
    pub revisions: Option<Vec<String>>,
    pub resources: Option<Vec<ResourceResult>>,
}

/// `v1alpha1ResourceResult`: one resource of a sync result.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceResult {
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub message: Option<String>,
    pub hook_phase: Option<String>,
}

/// `applicationv1alpha1ResourceStatus`: one resource of the app.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ResourceStatus {
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub status: Option<String>,
    pub health: Option<HealthStatus>,
}

/// `v1alpha1RevisionHistory`: one deployment in `status.history`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionHistory {
    pub id: Option<i64>,
    pub revision: Option<String>,
    pub revisions: Option<Vec<String>>,
    #[serde(default, deserialize_with = "timestamp")]
    pub deployed_at: Option<OffsetDateTime>,
}

/// `v1alpha1ApplicationList`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ApplicationList {
    /// Argo CD sends `null` for an empty list.
    pub items: Option<Vec<Application>>,
}

/// `sessionSessionResponse`.
#[derive(Debug, Clone, Deserialize)]
pub struct SessionResponse {
    pub token: Option<String>,
}

/// One line of `GET /api/v1/stream/applications`: "Stream result of
/// v1alpha1ApplicationWatchEvent".
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StreamLine {
    pub result: Option<WatchEvent>,
    pub error: Option<StreamError>,
}

/// `v1alpha1ApplicationWatchEvent`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED`; absent means a change.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub application: Application,
}

/// `runtimeStreamError`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StreamError {
    pub grpc_code: Option<i32>,
    pub http_code: Option<i32>,
    pub message: Option<String>,
}

/// A `v1Time` (RFC 3339); a text that is not one is an unexpected answer.
fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => OffsetDateTime::parse(&s, &Rfc3339)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 time: {e}"))),
    }
}

/// The text of an optional string, "" when absent (for messages only).
pub fn text(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

impl Application {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    pub fn namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_deref()
    }

    fn status(&self) -> Option<&ApplicationStatus> {
        self.status.as_ref()
    }

    fn op_state(&self) -> Option<&OperationState> {
        self.status()?.operation_state.as_ref()
    }

    pub fn sync_status(&self) -> Option<&str> {
        self.status()?.sync.as_ref()?.status.as_deref()
    }

    /// `status.sync.revision`, else the first of `status.sync.revisions`.
    pub fn sync_revision(&self) -> Option<&str> {
        let s = self.status()?.sync.as_ref()?;
        s.revision
            .as_deref()
            .filter(|r| !r.is_empty())
            .or_else(|| s.revisions.as_ref()?.first().map(String::as_str))
    }

    /// Every revision the app was compared at (one per source).
    pub fn sync_revisions(&self) -> Vec<&str> {
        let Some(s) = self.status().and_then(|s| s.sync.as_ref()) else {
            return vec![];
        };
        s.revision
            .iter()
            .chain(s.revisions.iter().flatten())
            .map(String::as_str)
            .filter(|r| !r.is_empty())
            .collect()
    }

    pub fn health(&self) -> Option<&str> {
        self.status()?.health.as_ref()?.status.as_deref()
    }

    pub fn health_message(&self) -> Option<&str> {
        self.status()?.health.as_ref()?.message.as_deref()
    }

    /// `operation` is set: an operation is requested or running.
    pub fn operation_pending(&self) -> bool {
        self.operation.is_some()
    }

    /// The revision(s) of the pending operation.
    pub fn operation_revision(&self) -> Option<&str> {
        let s = self.operation.as_ref()?.sync.as_ref()?;
        s.revision
            .as_deref()
            .filter(|r| !r.is_empty())
            .or_else(|| s.revisions.as_ref()?.first().map(String::as_str))
    }

    pub fn phase(&self) -> Option<&str> {
        self.op_state()?.phase.as_deref()
    }

    pub fn op_message(&self) -> Option<&str> {
        self.op_state()?.message.as_deref()
    }

    pub fn op_started(&self) -> Option<OffsetDateTime> {
        self.op_state()?.started_at
    }

    pub fn op_finished(&self) -> Option<OffsetDateTime> {
        self.op_state()?.finished_at
    }

    /// The revisions the last operation synced: `syncResult.revision(s)`,
    /// else what the operation asked for.
    pub fn op_revisions(&self) -> Vec<&str> {
        let Some(os) = self.op_state() else {
            return vec![];
        };
        let from_result: Vec<&str> = os
            .sync_result
            .iter()
            .flat_map(|r| r.revision.iter().chain(r.revisions.iter().flatten()))
            .map(String::as_str)
            .filter(|r| !r.is_empty())
            .collect();
        if !from_result.is_empty() {
            return from_result;
        }
        os.operation
            .iter()
            .filter_map(|o| o.sync.as_ref())
            .flat_map(|s| s.revision.iter().chain(s.revisions.iter().flatten()))
            .map(String::as_str)
            .filter(|r| !r.is_empty())
            .collect()
    }

    pub fn reconciled_at(&self) -> Option<OffsetDateTime> {
        self.status()?.reconciled_at
    }

    /// Automated sync is on (`spec.syncPolicy.automated` set and not
    /// `enabled: false`).
    pub fn auto_sync(&self) -> bool {
        self.spec
            .as_ref()
            .and_then(|s| s.sync_policy.as_ref())
            .and_then(|p| p.automated.as_ref())
            .is_some_and(|a| a.enabled != Some(false))
    }

    /// `spec.sources` holds at least one source.
    pub fn multi_source(&self) -> bool {
        self.spec
            .as_ref()
            .and_then(|s| s.sources.as_ref())
            .is_some_and(|s| !s.is_empty())
    }

    /// `spec.source.targetRevision`, or each source's for a multi-source app.
    pub fn target_revisions(&self) -> Vec<&str> {
        let Some(spec) = &self.spec else {
            return vec![];
        };
        spec.source
            .iter()
            .chain(spec.sources.iter().flatten())
            .map(|s| s.target_revision.as_deref().unwrap_or("HEAD"))
            .collect()
    }

    /// Resources whose health is set and not Healthy.
    pub fn unhealthy(&self) -> Vec<Resource> {
        self.status()
            .and_then(|s| s.resources.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let h = r.health.as_ref()?;
                let status = h.status.as_deref().filter(|s| !s.is_empty())?;
                (status != "Healthy").then(|| Resource {
                    kind: text(&r.kind).into(),
                    namespace: text(&r.namespace).into(),
                    name: text(&r.name).into(),
                    status: status.into(),
                    message: text(&h.message).into(),
                })
            })
            .collect()
    }

    /// Resources the last operation failed to sync (or whose hook failed).
    pub fn failed_resources(&self) -> Vec<Resource> {
        self.op_state()
            .and_then(|o| o.sync_result.as_ref())
            .and_then(|r| r.resources.as_ref())
            .into_iter()
            .flatten()
            .filter(|r| {
                r.status.as_deref() == Some("SyncFailed")
                    || matches!(r.hook_phase.as_deref(), Some("Failed" | "Error"))
            })
            .map(|r| Resource {
                kind: text(&r.kind).into(),
                namespace: text(&r.namespace).into(),
                name: text(&r.name).into(),
                status: text(&r.status).into(),
                message: text(&r.message).into(),
            })
            .collect()
    }
}

/// One resource, as a failure message names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub status: String,
    pub message: String,
}

impl Resource {
    pub fn describe(&self) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_multi_source_app_reads_its_revisions() {
        let a: Application = serde_json::from_value(json!({
            "metadata": {"name": "sensor", "namespace": "argocd"},
            "spec": {"sources": [
                {"repoURL": "https://git/config.git", "path": "apps/sensor", "targetRevision": "main"},
                {"repoURL": "https://charts", "chart": "base", "targetRevision": "1.4.2"}
            ]},
            "status": {
                "sync": {"status": "Synced", "revisions": ["4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c", "1.4.2"]},
                "operationState": {"phase": "Succeeded",
                    "syncResult": {"revisions": ["4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c", "1.4.2"]}}
            }
        }))
        .unwrap();
        assert!(a.multi_source());
        assert_eq!(a.target_revisions(), ["main", "1.4.2"]);
        assert_eq!(
            a.sync_revision(),
            Some("4e5b2f1c9d8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c")
        );
        assert_eq!(a.sync_revisions().len(), 2);
        assert_eq!(a.op_revisions().len(), 2);
    }

    #[test]
    fn a_field_of_the_wrong_type_is_an_error_not_a_default() {
        let e = serde_json::from_value::<Application>(json!({
            "metadata": {"name": "sensor"},
            "status": {"sync": "Synced"}
        }))
        .unwrap_err();
        assert!(e.to_string().contains("invalid type: string"), "{e}");
        let e = serde_json::from_value::<Application>(json!({
            "metadata": {"name": "sensor"},
            "status": {"reconciledAt": "yesterday"}
        }))
        .unwrap_err();
        assert!(e.to_string().contains("not an RFC 3339 time"), "{e}");
        let e = serde_json::from_value::<Application>(json!({"status": {}})).unwrap_err();
        assert!(e.to_string().contains("missing field `metadata`"), "{e}");
    }

    #[test]
    fn automated_sync_can_be_disabled() {
        let a: Application = serde_json::from_value(json!({
            "metadata": {"name": "a"},
            "spec": {"syncPolicy": {"automated": {"enabled": false, "prune": true}}}
        }))
        .unwrap();
        assert!(!a.auto_sync());
        let a: Application = serde_json::from_value(json!({
            "metadata": {"name": "a"},
            "spec": {"syncPolicy": {"automated": {}}}
        }))
        .unwrap();
        assert!(a.auto_sync());
    }
}
