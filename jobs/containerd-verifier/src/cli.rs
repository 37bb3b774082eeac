//! The flags. containerd calls verifiers Go-style, with one dash before long
//! names (`-name REF -digest D -stdin-media-type MT [-operation pull|run]`);
//! clap has no single-dash long flags, so [`go_style`] rewrites `-name` to
//! `--name` (and `-name=v` to `--name=v`) before clap parses. Every flag
//! also reads the environment variable shown. Nothing is validated here:
//! that is [`crate::config`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

pub const DEFAULT_POLICY: &str = "/etc/secdeliv/verify.yaml";
pub const DEFAULT_REGISTRIES: &str = "/etc/rancher/k3s/registries.yaml";
pub const DEFAULT_CACHE: &str = "/var/lib/secdeliv/verify-cache.json";

#[derive(Debug, Parser)]
#[command(
    name = "secdeliv-verifier",
    version,
    about = "containerd image verifier: allow a pull only when the node's policy finds a valid signature",
    long_about = "containerd image verifier (plugin io.containerd.image-verifier.v1.bindir). containerd runs every \
executable in its bin_dir before a pull through its transfer service completes, as\n\n  \
secdeliv-verifier -name REF -digest DIGEST -stdin-media-type application/vnd.oci.descriptor.v1+json\n\n\
with the image's OCI descriptor on stdin. This verifier looks REF's repository up in the policy (--policy): \
an image in a scope pulls only when DIGEST carries a sign-image/cosign signature (.sig tag) valid for one of the \
scope's keys and made for that repository; an image in no scope pulls or not as the policy's `unmatched` says \
(allow by default, so the K3s system images still pull). Signatures are read through the node's own mirrors and \
credentials (--registries, K3s's registries.yaml). Verified digests are cached (--cache), so a re-pull needs no registry.\n\n\
Standard output is one line, the reason containerd shows. It fails closed: a malformed policy, an unknown flag or \
stdin media type from a newer containerd, a descriptor naming another digest, an unreachable registry or the \
policy's timeout all refuse the pull.\n\n\
Exit codes: 0 allowed; 1 refused by the policy (no valid signature, or unmatched: deny); 2 usage or input \
(flags, stdin, policy, registries.yaml); 3 registry unreachable or failing; 4 the policy's timeout passed.",
    after_help = "Examples:\n  \
install -m 0755 secdeliv-verifier /var/lib/rancher/k3s/agent/image-verifier/bin/\n  \
echo '{\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"digest\":\"sha256:…\",\"size\":1}' | \\\n    \
secdeliv-verifier -name registry.example/acme/app:1 -digest sha256:… -stdin-media-type application/vnd.oci.descriptor.v1+json"
)]
pub struct Args {
    /// The image reference being pulled (containerd's -name).
    #[arg(long, env = "SECDELIV_VERIFY_NAME", value_name = "REF")]
    pub name: Option<String>,
    /// The digest the reference resolved to (containerd's -digest); the descriptor on stdin must name the same.
    #[arg(long, env = "SECDELIV_VERIFY_DIGEST", value_name = "DIGEST")]
    pub digest: Option<String>,
    /// The media type of stdin: application/vnd.oci.descriptor.v1+json, or application/vnd.containerd.image-verifier.input.v1+json (containerd with verify_on_run).
    #[arg(
        long,
        env = "SECDELIV_VERIFY_STDIN_MEDIA_TYPE",
        value_name = "MEDIA_TYPE"
    )]
    pub stdin_media_type: Option<String>,
    /// pull or run: when containerd verifies (sent only by a containerd with verify_on_run; both are checked the same way).
    #[arg(long, env = "SECDELIV_VERIFY_OPERATION", value_name = "pull|run")]
    pub operation: Option<String>,
    /// The policy: scopes of repository globs → public keys, `unmatched: allow|deny`, the timeout, cache bounds.
    #[arg(long, env = "SECDELIV_VERIFY_POLICY", default_value = DEFAULT_POLICY, value_name = "FILE")]
    pub policy: PathBuf,
    /// K3s's registries.yaml: mirrors and credentials to read signatures with (a missing file: none).
    #[arg(long, env = "SECDELIV_VERIFY_REGISTRIES", default_value = DEFAULT_REGISTRIES, value_name = "FILE")]
    pub registries: PathBuf,
    /// The verified-digest cache file (root's; its directory is created 0700). `none` turns the cache off.
    #[arg(long, env = "SECDELIV_VERIFY_CACHE", default_value = DEFAULT_CACHE, value_name = "FILE|none")]
    pub cache: String,
}

/// Rewrites Go-style single-dash long flags (`-name`, `-name=v`) to clap's
/// `--name`, leaving values alone: an argument right after a flag that
/// takes a value is never rewritten, so `-name -odd` stays a value.
pub fn go_style<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut out = Vec::new();
    let mut value_next = false;
    for (i, a) in args.into_iter().enumerate() {
        let a: OsString = a.into();
        if i == 0 || value_next {
            value_next = false;
            out.push(a);
            continue;
        }
        let Some(s) = a.to_str() else {
            out.push(a);
            continue;
        };
        let flag = s.strip_prefix('-').filter(|rest| {
            !rest.starts_with('-') && rest.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        });
        match flag {
            // `-h` and `-V` stay clap's short flags.
            Some(rest) if rest.len() > 1 => {
                if !rest.contains('=') && rest != "help" && rest != "version" {
                    value_next = true;
                }
                out.push(format!("--{rest}").into());
            }
            _ => {
                if let Some(rest) = s.strip_prefix("--")
                    && !rest.contains('=')
                    && !rest.is_empty()
                    && rest != "help"
                    && rest != "version"
                {
                    value_next = true;
                }
                out.push(a);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_flags_become_clap_flags() {
        let got = go_style([
            "v",
            "-name",
            "-odd",
            "-digest=sha256:x",
            "--stdin-media-type",
            "-x",
            "-h",
            "-operation",
            "run",
        ]);
        let got: Vec<_> = got.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(
            got,
            [
                "v",
                "--name",
                "-odd",
                "--digest=sha256:x",
                "--stdin-media-type",
                "-x",
                "-h",
                "--operation",
                "run"
            ]
        );
    }
}
