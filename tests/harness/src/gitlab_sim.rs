//! A simulator of the GitLab REST API endpoints bump-manifest uses, after
//! GitLab's API documentation (docs.gitlab.com/ee/api/): repository files,
//! tree, branches, commits with actions, merge requests. Real GitLab cannot
//! run here; tests using it say `simulated` in their names.
//!
//! Behaviour it reproduces, because clients must handle it:
//! - `POST /projects/:id/repository/commits`: an `update` whose
//!   `last_commit_id` is not the file's last commit on the branch → 400
//!   `{"message":"You are attempting to update a file that has changed since you started editing it."}`;
//!   `create` of an existing file → 400 "A file with this name already exists".
//! - `POST /projects/:id/merge_requests` while an open MR has the same source
//!   and target → 409 with `["Another open merge request already exists for this source branch: !N"]`.
//! - `PUT /projects/:id/merge_requests/:iid/merge` right after creation → 405
//!   (GitLab is still checking mergeability) for the first `early_merge_405` calls.
//! - Auth by `PRIVATE-TOKEN` or `JOB-TOKEN` header; anything else → 401.
//! - Merge-request notes (`GET|POST /projects/:id/merge_requests/:iid/notes`,
//!   `PUT …/notes/:note_id`): listed oldest first, paginated (`per_page` ≤ 100,
//!   `page`, `X-Next-Page`); a token added with [`GitLabSim::add_read_only_token`]
//!   (a Guest, or a job token) reads but writing a note answers 403
//!   `{"message":"403 Forbidden"}`; an unknown merge request 404.
//! - Job artifacts (`GET /projects/:id/jobs/artifacts/:ref_name/raw/*artifact_path?job=NAME`):
//!   the file of the latest successful job `NAME` on `ref_name` (put there
//!   with [`Repo::artifacts`]), else 404 `{"message":"404 Not found"}`; `job`
//!   missing → 400.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::http_server::{HttpServer, Recorded, Request, Response};

#[derive(Debug, Clone)]
pub struct Commit {
    pub id: String,
    pub parent: Option<String>,
    pub message: String,
    pub author_name: String,
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct MergeRequest {
    pub iid: u64,
    pub source_branch: String,
    pub target_branch: String,
    pub title: String,
    pub description: String,
    pub state: String,
    pub auto_merge: bool,
    /// Merge calls still to answer 405.
    pub early_405_left: u32,
}

#[derive(Debug, Default)]
pub struct Repo {
    pub commits: BTreeMap<String, Commit>,
    pub branches: BTreeMap<String, String>,
    pub mrs: Vec<MergeRequest>,
    /// (method, path, auth header name used)
    pub log: Vec<(String, String, String)>,
    /// Notes on merge requests, by merge-request iid, oldest first.
    pub notes: BTreeMap<u64, Vec<Note>>,
    /// (ref, job name, artifact path) → the file of that job's last
    /// successful run on the ref.
    pub artifacts: BTreeMap<(String, String, String), Vec<u8>>,
    /// Tokens that may read but not write (answer 403 to writes).
    pub read_only_tokens: Vec<String>,
    /// Before the next N commit calls, another writer changes this file on
    /// the target branch (simulates a concurrent pipeline).
    pub race: Vec<(String, String)>,
    pub early_merge_405: u32,
    /// Before the next merge request creation, another job opens the same
    /// one (so the create answers 409).
    pub mr_race: bool,
    counter: u64,
}

impl Repo {
    fn new_id(&mut self) -> String {
        self.counter += 1;
        format!("{:040x}", 0xc0ffee_u64 * 1_000_003 + self.counter)
    }

    /// Commits files onto a branch directly (as another user would).
    pub fn commit_files(&mut self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        let parent = self.branches.get(branch).cloned();
        let mut tree = parent
            .as_ref()
            .map(|p| self.commits[p].files.clone())
            .unwrap_or_default();
        for (p, c) in files {
            tree.insert(p.to_string(), c.to_string());
        }
        let id = self.new_id();
        self.commits.insert(
            id.clone(),
            Commit {
                id: id.clone(),
                parent,
                message: message.into(),
                author_name: "someone".into(),
                files: tree,
            },
        );
        self.branches.insert(branch.to_string(), id.clone());
        id
    }

    fn resolve(&self, r: &str) -> Option<&Commit> {
        let id = self.branches.get(r).map(String::as_str).unwrap_or(r);
        self.commits.get(id)
    }

    /// The last commit (from `start`) that changed `path`.
    pub fn last_commit_id(&self, start: &str, path: &str) -> Option<String> {
        let mut cur = self.resolve(start)?;
        let content = cur.files.get(path)?;
        while let Some(p) = cur.parent.as_ref().and_then(|p| self.commits.get(p)) {
            if p.files.get(path) != Some(content) {
                break;
            }
            cur = p;
        }
        Some(cur.id.clone())
    }

    /// Number of commits on a branch (first-parent chain).
    pub fn history(&self, branch: &str) -> Vec<Commit> {
        let mut out = Vec::new();
        let mut cur = self.resolve(branch);
        while let Some(c) = cur {
            out.push(c.clone());
            cur = c.parent.as_ref().and_then(|p| self.commits.get(p));
        }
        out
    }

    pub fn file(&self, r: &str, path: &str) -> Option<String> {
        self.resolve(r)?.files.get(path).cloned()
    }
}

/// A note on a merge request.
#[derive(Debug, Clone)]
pub struct Note {
    pub id: u64,
    pub body: String,
    pub author: String,
    /// How many times it was edited (PUT).
    pub edits: u32,
}

pub struct GitLabSim {
    pub repo: Arc<Mutex<Repo>>,
    pub token: String,
    /// The project as clients name it (`group/config`), and its numeric id.
    pub project_path: String,
    pub project_id: u64,
    http: HttpServer,
}

impl GitLabSim {
    /// Starts a simulator holding one project with `files` on `branch`.
    pub fn start(
        token: &str,
        project_path: &str,
        branch: &str,
        files: &[(String, String)],
    ) -> GitLabSim {
        let mut repo = Repo::default();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        repo.commit_files(branch, &refs, "initial");
        let repo = Arc::new(Mutex::new(repo));
        let (r2, t2, p2) = (repo.clone(), token.to_string(), project_path.to_string());
        let project_id = 42;
        let http = HttpServer::start(move |req| handle(&r2, &t2, &p2, project_id, req));
        GitLabSim {
            repo,
            token: token.into(),
            project_path: project_path.into(),
            project_id,
            http,
        }
    }

    /// `http://127.0.0.1:PORT/api/v4`
    pub fn api_url(&self) -> String {
        format!("{}/api/v4", self.http.base_url())
    }

    pub fn base_url(&self) -> String {
        self.http.base_url()
    }

    /// Adds a token that reads but cannot write (a Guest's, or what
    /// `CI_JOB_TOKEN` is to the notes API).
    pub fn add_read_only_token(&self, token: &str) {
        self.repo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_only_tokens
            .push(token.to_string());
    }

    /// Opens merge request `iid` from `source` into `target` (as a user would).
    pub fn open_merge_request(&self, source: &str, target: &str) -> u64 {
        let mut r = self.repo.lock().unwrap_or_else(|e| e.into_inner());
        let iid = r.mrs.len() as u64 + 1;
        r.mrs.push(MergeRequest {
            iid,
            source_branch: source.into(),
            target_branch: target.into(),
            title: format!("{source} into {target}"),
            description: String::new(),
            state: "opened".into(),
            auto_merge: false,
            early_405_left: 0,
        });
        iid
    }

    /// The notes of merge request `iid`, oldest first.
    pub fn notes(&self, iid: u64) -> Vec<Note> {
        self.repo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .notes
            .get(&iid)
            .cloned()
            .unwrap_or_default()
    }

    /// Stores `bytes` as artifact `path` of job `job`'s last successful run on `reference`.
    pub fn put_artifact(&self, reference: &str, job: &str, path: &str, bytes: &[u8]) {
        self.repo
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .artifacts
            .insert((reference.into(), job.into(), path.into()), bytes.to_vec());
    }

    /// Every request the simulator received (refused ones included), with
    /// headers and body.
    pub fn received(&self) -> Vec<Recorded> {
        self.http.received()
    }

    /// Reads every file of a directory tree as (relative path, content).
    pub fn files_of(dir: &std::path::Path) -> Vec<(String, String)> {
        fn walk(root: &std::path::Path, d: &std::path::Path, out: &mut Vec<(String, String)>) {
            let mut entries: Vec<_> = std::fs::read_dir(d)
                .expect("read dir")
                .filter_map(Result::ok)
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else if let Ok(text) = std::fs::read_to_string(&p) {
                    let rel = p
                        .strip_prefix(root)
                        .expect("prefix")
                        .to_string_lossy()
                        .replace('\\', "/");
                    out.push((rel, text));
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out
    }
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn msg(status: u16, m: &str) -> Response {
    Response::json(status, &json!({ "message": m }))
}

fn commit_json(c: &Commit) -> Value {
    json!({
        "id": c.id, "short_id": &c.id[..8], "title": c.message.lines().next().unwrap_or_default(),
        "message": c.message, "author_name": c.author_name, "parent_ids": c.parent.iter().collect::<Vec<_>>(),
    })
}

fn mr_json(base: &str, project: &str, m: &MergeRequest) -> Value {
    json!({
        "id": 1000 + m.iid, "iid": m.iid, "project_id": 42, "title": m.title, "description": m.description,
        "state": m.state, "source_branch": m.source_branch, "target_branch": m.target_branch,
        "merge_when_pipeline_succeeds": m.auto_merge,
        "web_url": format!("{base}/{project}/-/merge_requests/{}", m.iid),
    })
}

fn note_json(iid: u64, n: &Note) -> Value {
    json!({
        "id": n.id, "type": null, "body": n.body, "attachment": null,
        "author": {"id": 7, "username": n.author, "name": n.author, "state": "active"},
        "created_at": "2026-12-03T12:00:00.000Z", "updated_at": "2026-12-03T12:00:00.000Z",
        "system": false, "noteable_id": 1000 + iid, "noteable_type": "MergeRequest",
        "noteable_iid": iid, "resolvable": false, "confidential": false, "internal": false,
    })
}

/// `page`/`per_page` of `all`, with GitLab's pagination headers.
fn paginate(req: &Request, all: Vec<Value>, default_per_page: usize) -> Response {
    let per_page: usize = req
        .param("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(default_per_page)
        .clamp(1, 100);
    let page: usize = req
        .param("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let chunk: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let next = if page * per_page < all.len() {
        (page + 1).to_string()
    } else {
        String::new()
    };
    Response::json(200, &Value::Array(chunk))
        .with_header("X-Page", &page.to_string())
        .with_header("X-Per-Page", &per_page.to_string())
        .with_header("X-Total", &all.len().to_string())
        .with_header("X-Next-Page", &next)
}

fn handle(repo: &Mutex<Repo>, token: &str, project: &str, id: u64, req: Request) -> Response {
    let mut r = repo.lock().unwrap_or_else(|e| e.into_inner());
    let known = |t: &str| t == token || r.read_only_tokens.iter().any(|x| x == t);
    let (auth, presented) = match (req.header("private-token"), req.header("job-token")) {
        (Some(t), _) if known(t) => ("PRIVATE-TOKEN", t.to_string()),
        (_, Some(t)) if known(t) => ("JOB-TOKEN", t.to_string()),
        _ => return msg(401, "401 Unauthorized"),
    };
    let read_only = presented != token;
    r.log
        .push((req.method.clone(), req.path.clone(), auth.to_string()));
    let Some(rest) = req.path.strip_prefix("/api/v4/projects/") else {
        return msg(404, "404 Not Found");
    };
    let (pid, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let pid = decode(pid);
    if pid != project && pid != id.to_string() {
        return msg(404, "404 Project Not Found");
    }
    let base = format!("http://{}", req.header("host").unwrap_or("127.0.0.1"));
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let m = req.method.as_str();
    let segs: Vec<&str> = rest.split('/').collect();
    match (m, segs.as_slice()) {
        ("GET", ["repository", "branches", b]) => {
            let b = decode(b);
            match r.branches.get(&b) {
                Some(c) => Response::json(
                    200,
                    &json!({"name": b, "commit": commit_json(&r.commits[c])}),
                ),
                None => msg(404, "404 Branch Not Found"),
            }
        }
        ("GET", ["repository", "tree"]) => {
            let reference = req.param("ref").unwrap_or_else(|| "main".into());
            let Some(c) = r.resolve(&reference) else {
                return msg(404, "404 Tree Not Found");
            };
            let per_page: usize = req
                .param("per_page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(20)
                .clamp(1, 100);
            let page: usize = req
                .param("page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1);
            // Blobs and the directories above them, as GitLab lists them.
            let mut items: BTreeMap<String, &str> = BTreeMap::new();
            for path in c.files.keys() {
                let mut acc = String::new();
                let parts: Vec<&str> = path.split('/').collect();
                for d in &parts[..parts.len() - 1] {
                    if !acc.is_empty() {
                        acc.push('/');
                    }
                    acc.push_str(d);
                    items.insert(acc.clone(), "tree");
                }
                items.insert(path.clone(), "blob");
            }
            let all: Vec<Value> = items
                .iter()
                .map(|(p, t)| json!({"id": "0", "name": p.rsplit('/').next(), "type": t, "path": p, "mode": "100644"}))
                .collect();
            let chunk: Vec<Value> = all
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .cloned()
                .collect();
            let mut resp = Response::json(200, &Value::Array(chunk))
                .with_header("X-Page", &page.to_string())
                .with_header("X-Per-Page", &per_page.to_string())
                .with_header("X-Total", &all.len().to_string());
            let next = if page * per_page < all.len() {
                (page + 1).to_string()
            } else {
                String::new()
            };
            resp = resp.with_header("X-Next-Page", &next);
            resp
        }
        ("GET", ["repository", "files", f, "raw"]) => {
            let path = decode(f);
            let reference = req.param("ref").unwrap_or_else(|| "main".into());
            match r.file(&reference, &path) {
                Some(c) => Response::new(200, c).with_header("Content-Type", "text/plain"),
                None => msg(404, "404 File Not Found"),
            }
        }
        ("GET" | "HEAD", ["repository", "files", f]) => {
            let path = decode(f);
            let Some(reference) = req.param("ref") else {
                return msg(400, "ref is missing");
            };
            let (Some(content), Some(last)) = (
                r.file(&reference, &path),
                r.last_commit_id(&reference, &path),
            ) else {
                return msg(404, "404 File Not Found");
            };
            let commit = r
                .resolve(&reference)
                .map(|c| c.id.clone())
                .unwrap_or_default();
            use base64::Engine;
            let v = json!({
                "file_name": path.rsplit('/').next(), "file_path": path, "size": content.len(), "encoding": "base64",
                "content": base64::engine::general_purpose::STANDARD.encode(&content), "ref": reference,
                "commit_id": commit, "last_commit_id": last,
            });
            Response::json(200, &v)
                .with_header("X-Gitlab-File-Path", &path)
                .with_header("X-Gitlab-Commit-Id", &commit)
                .with_header("X-Gitlab-Last-Commit-Id", &last)
                .with_header("X-Gitlab-Ref", &reference)
        }
        ("POST", ["repository", "commits"]) => {
            let branch = body["branch"].as_str().unwrap_or_default().to_string();
            if branch.is_empty() || body["commit_message"].as_str().is_none() {
                return msg(400, "branch, commit_message are missing");
            }
            let races = std::mem::take(&mut r.race);
            for (p, c) in races {
                r.commit_files(&branch, &[(&p, &c)], "concurrent change");
            }
            let start = match (
                r.branches.contains_key(&branch),
                body["start_branch"].as_str(),
            ) {
                (true, _) => branch.clone(),
                (false, Some(s)) if r.branches.contains_key(s) => s.to_string(),
                (false, Some(_)) => return msg(400, "Invalid start branch"),
                (false, None) => {
                    return msg(
                        400,
                        "You can only create or edit files when you are on a branch",
                    );
                }
            };
            let head = r.branches[&start].clone();
            let mut files = r.commits[&head].files.clone();
            for a in body["actions"].as_array().cloned().unwrap_or_default() {
                let path = a["file_path"].as_str().unwrap_or_default().to_string();
                let exists = files.contains_key(&path);
                match a["action"].as_str() {
                    Some("create") if exists => {
                        return msg(400, "A file with this name already exists");
                    }
                    Some("update") if !exists => {
                        return msg(400, "A file with this name doesn't exist");
                    }
                    Some("create") | Some("update") => {}
                    _ => return msg(400, "actions[action] does not have a valid value"),
                }
                if let Some(last) = a["last_commit_id"].as_str()
                    && r.last_commit_id(&head, &path).as_deref() != Some(last)
                {
                    return msg(
                        400,
                        "You are attempting to update a file that has changed since you started editing it.",
                    );
                }
                files.insert(path, a["content"].as_str().unwrap_or_default().to_string());
            }
            let cid = r.new_id();
            let c = Commit {
                id: cid.clone(),
                parent: Some(head),
                message: body["commit_message"].as_str().unwrap_or_default().into(),
                author_name: body["author_name"].as_str().unwrap_or("api").into(),
                files,
            };
            let out = commit_json(&c);
            r.commits.insert(cid.clone(), c);
            r.branches.insert(branch, cid);
            Response::json(201, &out)
        }
        ("GET", ["merge_requests"]) => {
            let state = req.param("state");
            let sb = req.param("source_branch");
            let tb = req.param("target_branch");
            let list: Vec<Value> = r
                .mrs
                .iter()
                .filter(|x| state.as_ref().is_none_or(|s| s == "all" || *s == x.state))
                .filter(|x| sb.as_ref().is_none_or(|s| *s == x.source_branch))
                .filter(|x| tb.as_ref().is_none_or(|s| *s == x.target_branch))
                .map(|x| mr_json(&base, project, x))
                .collect();
            Response::json(200, &Value::Array(list))
        }
        ("POST", ["merge_requests"]) => {
            let (Some(sb), Some(tb), Some(title)) = (
                body["source_branch"].as_str(),
                body["target_branch"].as_str(),
                body["title"].as_str(),
            ) else {
                return msg(400, "source_branch, target_branch, title are missing");
            };
            if !r.branches.contains_key(sb) {
                return msg(400, "Source branch does not exist");
            }
            if std::mem::take(&mut r.mr_race) {
                let iid = r.mrs.len() as u64 + 1;
                r.mrs.push(MergeRequest {
                    iid,
                    source_branch: sb.into(),
                    target_branch: tb.into(),
                    title: "opened by another job".into(),
                    description: String::new(),
                    state: "opened".into(),
                    auto_merge: false,
                    early_405_left: 0,
                });
            }
            if let Some(x) = r
                .mrs
                .iter()
                .find(|x| x.state == "opened" && x.source_branch == sb && x.target_branch == tb)
            {
                return Response::json(
                    409,
                    &json!({"message": [format!("Another open merge request already exists for this source branch: !{}", x.iid)]}),
                );
            }
            let iid = r.mrs.len() as u64 + 1;
            let early = r.early_merge_405;
            let mr = MergeRequest {
                iid,
                source_branch: sb.into(),
                target_branch: tb.into(),
                title: title.into(),
                description: body["description"].as_str().unwrap_or_default().into(),
                state: "opened".into(),
                auto_merge: false,
                early_405_left: early,
            };
            let out = mr_json(&base, project, &mr);
            r.mrs.push(mr);
            Response::json(201, &out)
        }
        ("PUT", ["merge_requests", iid]) => {
            let Some(x) = r.mrs.iter_mut().find(|x| x.iid.to_string() == *iid) else {
                return msg(404, "404 Not found");
            };
            if let Some(t) = body["title"].as_str() {
                x.title = t.into();
            }
            if let Some(d) = body["description"].as_str() {
                x.description = d.into();
            }
            let out = mr_json(&base, project, x);
            Response::json(200, &out)
        }
        ("GET", ["merge_requests", iid, "notes"]) => {
            let Some(x) = r.mrs.iter().find(|x| x.iid.to_string() == *iid) else {
                return msg(404, "404 Not found");
            };
            let iid = x.iid;
            let all: Vec<Value> = r
                .notes
                .get(&iid)
                .into_iter()
                .flatten()
                .map(|n| note_json(iid, n))
                .collect();
            paginate(&req, all, 20)
        }
        ("POST", ["merge_requests", iid, "notes"]) => {
            let Some(x) = r.mrs.iter().find(|x| x.iid.to_string() == *iid) else {
                return msg(404, "404 Not found");
            };
            let iid = x.iid;
            if read_only {
                return msg(403, "403 Forbidden");
            }
            let Some(body) = body["body"].as_str().filter(|b| !b.is_empty()) else {
                return msg(400, "body is missing");
            };
            r.counter += 1;
            let n = Note {
                id: 5000 + r.counter,
                body: body.into(),
                author: "project_42_bot".into(),
                edits: 0,
            };
            let out = note_json(iid, &n);
            r.notes.entry(iid).or_default().push(n);
            Response::json(201, &out)
        }
        ("PUT", ["merge_requests", iid, "notes", note_id]) => {
            let Some(x) = r.mrs.iter().find(|x| x.iid.to_string() == *iid) else {
                return msg(404, "404 Not found");
            };
            let iid = x.iid;
            if read_only {
                return msg(403, "403 Forbidden");
            }
            let Some(text) = body["body"].as_str().filter(|b| !b.is_empty()) else {
                return msg(400, "body is missing");
            };
            let Some(n) = r
                .notes
                .get_mut(&iid)
                .and_then(|ns| ns.iter_mut().find(|n| n.id.to_string() == *note_id))
            else {
                return msg(404, "404 Note Not Found");
            };
            n.body = text.into();
            n.edits += 1;
            let out = note_json(iid, n);
            Response::json(200, &out)
        }
        ("GET", ["jobs", "artifacts", reference, "raw", path @ ..]) if !path.is_empty() => {
            let Some(job) = req.param("job") else {
                return msg(400, "job is missing");
            };
            let key = (decode(reference), job, decode(&path.join("/")));
            match r.artifacts.get(&key) {
                Some(b) => Response::new(200, b.clone())
                    .with_header("Content-Type", "application/octet-stream"),
                None => msg(404, "404 Not found"),
            }
        }
        ("PUT", ["merge_requests", iid, "merge"]) => {
            let Some(x) = r.mrs.iter_mut().find(|x| x.iid.to_string() == *iid) else {
                return msg(404, "404 Not found");
            };
            if x.early_405_left > 0 {
                x.early_405_left -= 1;
                return msg(405, "405 Method Not Allowed");
            }
            if body["merge_when_pipeline_succeeds"] == json!(true)
                || body["auto_merge"] == json!(true)
            {
                x.auto_merge = true;
            } else {
                x.state = "merged".into();
            }
            let out = mr_json(&base, project, x);
            Response::json(200, &out)
        }
        _ => msg(404, "404 Not Found"),
    }
}
