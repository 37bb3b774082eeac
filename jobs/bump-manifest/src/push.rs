//! `--mode push`: shallow bare clone (no checkout), read the YAML blobs,
//! edit in memory, write one commit with `git fast-import`, push. A
//! rejected push (someone else pushed first) means: fetch the new head,
//! re-apply the edit there (re-reading the order-key state), and try again
//! after a jittered pause. Never forced; bounded by --max-attempts.

use kit::joblog::{Section, info};
use kit::secret::redact_url_credentials;
use kit::{JobError, JobResult};

use crate::git::{self, Git, Push};
use crate::rules::Target;
use crate::state::STATE_PATH;
use crate::{Commit, Options, plan, plan_commit, write_dotenv};

pub fn run(opts: &Options, target: &Target) -> JobResult<()> {
    // The clone lives in a temp dir removed at the end, or in --workdir
    // (kept, for inspection).
    let tmp;
    let dir = match &opts.workdir {
        Some(w) => {
            if w.exists()
                && std::fs::read_dir(w)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                return Err(JobError::usage(format!(
                    "--workdir {} must not exist or be empty",
                    w.display()
                )));
            }
            let _ = std::fs::remove_dir(w);
            std::path::absolute(w)
                .map_err(|e| JobError::usage(format!("--workdir {}: {e}", w.display())))?
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("bump-manifest-")
                .tempdir()
                .map_err(|e| JobError::usage(format!("cannot create a temp dir: {e}")))?;
            tmp.path().join("repo.git")
        }
    };
    let auth = opts.auth();
    let author = opts.author();
    let url = git::clone_url(&opts.repo);
    let g = Git::with_transport(&dir, &url, auth.as_ref(), &author, opts.git_transport)?;
    let shown = redact_url_credentials(&opts.repo);
    let branch_ref = format!("refs/heads/{}", opts.branch);
    {
        let _s = Section::start(
            "bump_manifest_clone",
            &format!("Cloning {shown} ({})", opts.branch),
            true,
        );
        g.clone(&g.remote_url(&url), &opts.branch)?;
    }
    if g.remote_url(&url).starts_with("secdeliv::") {
        info(
            "git transport: built-in (git-remote-secdeliv over rustls); git's own HTTP helpers are not used",
        );
    }
    for attempt in 1..=opts.max_attempts {
        if attempt > 1 {
            g.refresh(&opts.branch)?;
        }
        let head = g.rev(&branch_ref)?;
        let (p, state_text, entries) =
            plan::plan_tree(&g, &head, &opts.paths, target, opts.max_file_size)?;
        let Some(Commit {
            diff,
            files,
            message,
            old,
            new,
        }) = plan_commit(opts, target, p, state_text.as_deref(), &head, attempt)?
        else {
            return Ok(());
        };
        if opts.dry_run {
            print!("{diff}");
            if let Some(f) = files.iter().find(|f| f.path == STATE_PATH) {
                print!("{}", crate::edit::unified_diff(&f.path, &f.old, &f.new));
            }
            info(format!(
                "dry run: would commit {old} -> {new} to {shown} {}; nothing changed",
                opts.branch
            ));
            return Ok(());
        }
        let blobs: Vec<(String, String, Vec<u8>)> = files
            .iter()
            .map(|f| {
                let mode = entries
                    .iter()
                    .find(|e| e.path == f.path)
                    .map_or("100644", |e| e.mode.as_str());
                (mode.to_string(), f.path.clone(), f.new.clone().into_bytes())
            })
            .collect();
        let sha = g.fast_commit(&opts.branch, &head, &author, &message, &blobs)?;
        match g.push(&opts.branch)? {
            Push::Pushed => {
                info(format!(
                    "pushed {sha} to {shown} {}: {old} -> {new} ({} file(s), attempt {attempt})",
                    opts.branch,
                    blobs.len()
                ));
                println!("{sha}");
                write_dotenv(
                    opts,
                    &[
                        ("BUMP_MANIFEST_COMMIT", &sha),
                        ("BUMP_MANIFEST_REFERENCE", &new),
                    ],
                )?;
                return Ok(());
            }
            Push::Rejected(why) => {
                let wait = opts.retry_delay(attempt);
                info(format!(
                    "push rejected ({why}); re-applying on the new head in {:.1}s (attempt {attempt}/{})",
                    wait.as_secs_f64(),
                    opts.max_attempts
                ));
                std::thread::sleep(wait);
            }
        }
    }
    Err(JobError::remote(format!(
        "push to {shown} {} still rejected after {} attempts (busy branch); re-run the job or raise --max-attempts",
        opts.branch, opts.max_attempts
    )))
}
