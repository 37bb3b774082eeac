//! From a plan and the state on one head to a decision: commit (with which
//! files and message), or end without one (nothing found, up to date, a
//! newer deploy). Shared by every mode.

use manifest_edit::state::{self, STATE_PATH, State, Verdict};
use manifest_edit::{FileChange, Plan};

use crate::config::Config;
use crate::error::Error;

/// What to do after planning against one head.
#[derive(Debug)]
pub enum Decision {
    /// Found nothing, and --allow-missing said that is fine.
    NothingFound,
    UpToDate,
    /// A greater order key is deployed: (key, reference).
    Newer(String, String),
    Commit(Commit),
}

/// What one attempt commits.
#[derive(Debug, Clone)]
pub struct Commit {
    /// Manifests and, with an order key, the state file.
    pub files: Vec<FileChange>,
    pub message: String,
    /// The previous version(s), in the form of `new`.
    pub old: String,
    pub new: String,
}

impl Commit {
    /// A unified diff of every file the commit changes (state included).
    pub fn diff(&self) -> String {
        self.files
            .iter()
            .map(|f| manifest_edit::edit::unified_diff(&f.path, &f.old, &f.new))
            .collect()
    }
}

/// Decides from a plan and the state file text on the same head.
pub fn decide(c: &Config, plan: Plan, state_text: Option<&str>) -> Result<Decision, Error> {
    let target = &c.target;
    if plan.found.is_empty() {
        if c.allow_missing {
            return Ok(Decision::NothingFound);
        }
        let place = if c.paths.is_empty() {
            "the repo".to_string()
        } else {
            c.paths.join(", ")
        };
        return Err(Error::NothingFound {
            image: c.image.clone(),
            place,
        });
    }
    let new = target.new_ref();
    let old = plan.previous(target).join(", ");
    let mut files = plan.files.clone();
    if let Some(key) = &c.order_key {
        let mut st = State::parse(state_text)?;
        let scope = c.scope();
        if let Verdict::Newer(k, r) = state::judge(&st, &scope, key)? {
            return Ok(Decision::Newer(k, r));
        }
        if !plan.changed() {
            return Ok(Decision::UpToDate);
        }
        st.images.insert(
            scope,
            state::Entry {
                order_key: key.clone(),
                reference: new.clone(),
                pipeline_url: c.pipeline_url.clone(),
                updated_at: Some(now_rfc3339()),
            },
        );
        files.push(FileChange {
            path: STATE_PATH.to_string(),
            old: state_text.unwrap_or_default().to_string(),
            new: st.render(),
        });
    } else if !plan.changed() {
        return Ok(Decision::UpToDate);
    }
    let message = commit_message(c, &old, &new);
    Ok(Decision::Commit(Commit {
        files,
        message,
        old,
        new,
    }))
}

/// RFC 3339 UTC time of now, for `updated_at`.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0);
    now.unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The commit message: the template, then trailers recording the image,
/// the order key and the source pipeline.
pub fn commit_message(c: &Config, old: &str, new: &str) -> String {
    let pipeline = c.pipeline_url.clone().unwrap_or_default();
    let body = c
        .message
        .replace("\\n", "\n")
        .replace("{image}", &c.image)
        .replace("{old}", if old.is_empty() { "(none)" } else { old })
        .replace("{new}", new)
        .replace(
            "{pipeline_url}",
            if pipeline.is_empty() {
                "(not given)"
            } else {
                &pipeline
            },
        );
    let mut msg = body.trim_end().to_string();
    msg.push_str("\n\n");
    msg.push_str(&format!("Bump-Manifest-Image: {}\n", c.target.image.name()));
    msg.push_str(&format!("Bump-Manifest-Reference: {new}\n"));
    if let Some(k) = &c.order_key {
        msg.push_str(&format!("Bump-Manifest-Order-Key: {k}\n"));
    }
    if !pipeline.is_empty() {
        msg.push_str(&format!("Source-Pipeline: {pipeline}\n"));
    }
    msg
}

/// Logs a decision that ends the job without a commit.
pub fn log_no_commit(d: &Decision, c: &Config) {
    match d {
        Decision::NothingFound => kit::joblog::warn(format!(
            "no reference to {} found; nothing to do (--allow-missing)",
            c.image
        )),
        Decision::UpToDate => kit::joblog::info(format!(
            "already up to date: the repo holds {}",
            c.target.new_ref()
        )),
        Decision::Newer(k, r) => kit::joblog::info(format!(
            "not going backwards: {r} (order key {k}) is already deployed, newer than order key {}; nothing changed",
            c.order_key.as_deref().unwrap_or("")
        )),
        Decision::Commit(_) => {}
    }
}

/// Logs what was found: a count (on `branch`), then one line per reference.
pub fn log_found(plan: &Plan, c: &Config) {
    kit::joblog::info(format!(
        "{} reference(s) to {} found on {}:",
        plan.found.len(),
        c.target.image.name(),
        c.branch
    ));
    // Long lists (a fleet of overlays) fold away in the GitLab log.
    let _section = (plan.found.len() > 20).then(|| {
        kit::joblog::Section::start(
            "bump_manifest_found",
            &format!("{} references", plan.found.len()),
            true,
        )
    });
    for (path, f) in &plan.found {
        let what = if f.changed() {
            format!("{} -> {}", f.old, f.new)
        } else {
            format!("{} (current)", f.old)
        };
        kit::joblog::info(format!("  {path}:{} [{}] {what}", f.line, f.layout));
    }
    for s in &plan.skipped {
        kit::joblog::info(format!("  {s}: skipped (Helm template, not YAML)"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kit::env::MapEnv;
    use kit::job::FromArgs;

    fn config(args: &[&str]) -> Config {
        let mut v = vec!["bump-manifest", "--repo", "/r", "--image", "acmeiot/app"];
        v.extend_from_slice(args);
        Config::from_args(kit::cli::try_parse_from(v).unwrap(), &MapEnv::new([])).unwrap()
    }

    #[test]
    fn message_template_and_trailers() {
        let c = config(&[
            "--new-tag",
            "2",
            "--order-key",
            "42",
            "--pipeline-url",
            "https://gl/p/1",
            "--message",
            "chore: {image} {old} -> {new}\\n\\nvia {pipeline_url}",
        ]);
        let m = commit_message(&c, "docker.io/acmeiot/app:1", &c.target.new_ref());
        assert_eq!(
            m,
            "chore: acmeiot/app docker.io/acmeiot/app:1 -> docker.io/acmeiot/app:2\n\nvia https://gl/p/1\n\n\
             Bump-Manifest-Image: docker.io/acmeiot/app\nBump-Manifest-Reference: docker.io/acmeiot/app:2\n\
             Bump-Manifest-Order-Key: 42\nSource-Pipeline: https://gl/p/1\n"
        );
    }

    #[test]
    fn old_is_the_distinct_previous_versions_in_the_form_of_new() {
        let c = config(&[
            "--new-tag",
            "1.4.0",
            "--message",
            "deploy {image}: {old} -> {new}",
        ]);
        let mut plan = Plan::default();
        let files = [
            (
                "k/kustomization.yaml",
                "images:\n  - name: acmeiot/app\n    newTag: 1.0.0\n",
            ),
            (
                "d.yaml",
                "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - image: docker.io/acmeiot/app:1.0.0\n",
            ),
            (
                "v.yaml",
                "image:\n  repository: acmeiot/app\n  tag: \"1.0.0\"\n",
            ),
        ];
        for (p, src) in files {
            manifest_edit::plan::plan_file(&mut plan, p, src.as_bytes(), &c.target).unwrap();
        }
        let Decision::Commit(commit) = decide(&c, plan, None).unwrap() else {
            panic!("no commit")
        };
        assert_eq!(commit.old, "docker.io/acmeiot/app:1.0.0");
        assert!(
            commit.message.starts_with(
                "deploy acmeiot/app: docker.io/acmeiot/app:1.0.0 -> docker.io/acmeiot/app:1.4.0\n"
            ),
            "{}",
            commit.message
        );
    }

    #[test]
    fn now_is_rfc3339_utc() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }
}
