//! linux/arm64 (the Raspberry Pi): the static aarch64 musl binaries of every
//! job, as `scripts/build-musl.sh` builds them and the job images package
//! them, run under `qemu-aarch64-static` (user-mode emulation, host network).
//!
//! - each binary is a static ELF for its architecture (no program
//!   interpreter), checked from the ELF header itself;
//! - each prints the workspace version, natively (x86_64) and under qemu (aarch64);
//! - the aarch64 `sign-image verify` accepts, against a real local
//!   docker-registry, a signature made by the host's `sign-image`, refuses
//!   an unsigned image and the wrong key (exit 1) and reports an unreachable
//!   registry (exit 3); and the host verifies what the aarch64 binary signed
//!   with a key it generated itself.
//!
//! Binaries: `$SECDELIV_MUSL_DIR/<triple>/release/`, else
//! `<workspace>/target/<triple>/release/`; missing ones fail the test with the
//! command that builds them. The host `sign-image` is the debug build in this
//! test's own target directory (`cargo build --workspace --bins`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harness::registry::{ImageSpec, TestRegistry, free_port, push_image};

const JOBS: [&str; 5] = [
    "scan-image",
    "promote-image",
    "sign-image",
    "bump-manifest",
    "notify-argocd",
];
const AARCH64: &str = "aarch64-unknown-linux-musl";
const X86_64: &str = "x86_64-unknown-linux-musl";
const EM_AARCH64: u16 = 183;
const EM_X86_64: u16 = 62;
const PT_INTERP: u32 = 3;

/// `<dir>/<triple>/release/<job>`, where dir is `$SECDELIV_MUSL_DIR` or the
/// workspace's `target/`; missing means a failed test saying how to build it.
fn musl_bin(triple: &str, job: &str) -> PathBuf {
    let from = if std::env::var_os("SECDELIV_MUSL_DIR").is_some() {
        "$SECDELIV_MUSL_DIR"
    } else {
        "<workspace>/target"
    };
    let path = e2e::flow::musl_dir().join(triple).join("release").join(job);
    assert!(
        path.is_file(),
        "{} does not exist ({from}/{triple}/release/{job}).\n\
         Build the static musl binaries of every job for both architectures with:\n  \
         bash scripts/build-musl.sh\n\
         (from the workspace root; it installs the rustup targets, ziglang and cargo-zigbuild it needs;\n\
         with CARGO_TARGET_DIR=DIR set, point SECDELIV_MUSL_DIR at DIR)",
        path.display()
    );
    path
}

/// The host's debug `sign-image`, from the target directory this test was
/// built in (`<target>/debug/deps/arm64-… → <target>/debug/sign-image`).
fn host_sign_image() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let debug_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in <target>/<profile>/deps");
    let path = debug_dir.join("sign-image");
    assert!(
        path.is_file(),
        "the host sign-image binary {} does not exist: run cargo build --workspace --bins",
        path.display()
    );
    path
}

fn qemu() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("qemu-aarch64-static"))
        .find(|p| p.is_file())
        .expect(
            "qemu-aarch64-static is not on PATH: apt-get install qemu-user-static (Debian package)",
        )
}

// --- ELF ------------------------------------------------------------------------

#[derive(Debug)]
struct Elf {
    machine: u16,
    program_header_types: Vec<u32>,
}

/// The parts of a 64-bit little-endian ELF header this test needs.
fn read_elf(path: &Path) -> Elf {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let what = path.display();
    assert!(bytes.len() >= 64, "{what}: too short for an ELF header");
    assert_eq!(&bytes[..4], b"\x7fELF", "{what}: not an ELF file");
    assert_eq!(bytes[4], 2, "{what}: not a 64-bit ELF (EI_CLASS)");
    assert_eq!(bytes[5], 1, "{what}: not little-endian (EI_DATA)");
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let machine = u16_at(18);
    let phoff = usize::try_from(u64_at(32)).unwrap();
    let phentsize = usize::from(u16_at(54));
    let phnum = usize::from(u16_at(56));
    assert!(phentsize >= 4 && phnum > 0, "{what}: no program headers");
    assert!(
        phoff + phentsize * phnum <= bytes.len(),
        "{what}: program headers past the end of the file"
    );
    let program_header_types = (0..phnum).map(|i| u32_at(phoff + i * phentsize)).collect();
    Elf {
        machine,
        program_header_types,
    }
}

#[test]
fn every_musl_binary_is_a_static_elf_for_its_architecture() {
    for (triple, machine) in [(AARCH64, EM_AARCH64), (X86_64, EM_X86_64)] {
        for job in JOBS {
            let path = musl_bin(triple, job);
            let elf = read_elf(&path);
            assert_eq!(
                elf.machine,
                machine,
                "{}: e_machine {} is not {triple}'s {machine}",
                path.display(),
                elf.machine
            );
            assert!(
                !elf.program_header_types.contains(&PT_INTERP),
                "{}: has a program interpreter (PT_INTERP): dynamically linked, not static",
                path.display()
            );
        }
    }
}

// --- running them ---------------------------------------------------------------

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn cause(&self) -> &str {
        self.stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
    }
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

#[track_caller]
fn assert_code(r: &Run, code: i32, what: &str) {
    assert_eq!(
        r.code, code,
        "{what}: exit code\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
}

/// `program args…` (the aarch64 ones under qemu) with an environment that
/// carries nothing from the caller's shell that could change the outcome
/// (keys, passwords, registry logins, proxies).
fn command(program: &Path, home: &Path) -> Command {
    let mut c = if read_elf(program).machine == EM_AARCH64 {
        let mut c = Command::new(qemu());
        c.arg(program);
        c
    } else {
        Command::new(program)
    };
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("NO_COLOR", "1");
    c
}

fn run(c: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().unwrap_or_else(|e| panic!("running {c:?}: {e}"));
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

#[test]
fn every_musl_binary_prints_the_workspace_version_natively_and_under_qemu() {
    let version = env!("CARGO_PKG_VERSION");
    let home = tempfile::tempdir().unwrap();
    for triple in [AARCH64, X86_64] {
        for job in JOBS {
            let r = run(command(&musl_bin(triple, job), home.path()).arg("--version"));
            assert_code(&r, 0, &format!("{triple} {job} --version"));
            assert_eq!(
                r.stdout.trim(),
                format!("{job} {version}"),
                "{triple} {job} --version"
            );
        }
    }
}

/// `generate-key-pair` into `dir/<prefix>.{key,pub}` with `password`.
fn generate_keys(bin: &Path, dir: &Path, prefix: &str, password: &str) -> (PathBuf, PathBuf) {
    let r = run(command(bin, dir)
        .current_dir(dir)
        .args(["generate-key-pair", "--output-key-prefix", prefix])
        .env("COSIGN_PASSWORD", password));
    assert_code(&r, 0, &format!("{} generate-key-pair", bin.display()));
    assert!(!r.all().contains(password), "password echoed:\n{}", r.all());
    let key = dir.join(format!("{prefix}.key"));
    let public = dir.join(format!("{prefix}.pub"));
    assert!(key.is_file() && public.is_file(), "{}", r.stderr);
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(
        pem.contains("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"),
        "{}: not cosign's encrypted key format",
        key.display()
    );
    (key, public)
}

#[test]
fn aarch64_sign_image_under_qemu_verifies_host_signatures_against_a_real_registry() {
    let arm = musl_bin(AARCH64, "sign-image");
    assert_eq!(
        read_elf(&arm).machine,
        EM_AARCH64,
        "{} is not an aarch64 binary",
        arm.display()
    );
    let host = host_sign_image();
    let reg = TestRegistry::start();
    let h = reg.host();
    let small = |seed| ImageSpec {
        layer_sizes: vec![512],
        seed,
        ..ImageSpec::default()
    };
    let signed = push_image(&reg, "pi/sensor", "1.0", &small(61), None);
    let unsigned = push_image(&reg, "pi/sensor", "2.0", &small(62), None);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Key A by the host, key B by the aarch64 binary under emulation.
    let pw_a = "host-key-pass-4711";
    let pw_b = "pi-key-pass-0815";
    let (key_a, pub_a) = generate_keys(&host, d, "host", pw_a);
    let (key_b, pub_b) = generate_keys(&arm, d, "pi", pw_b);

    // The host signs 1.0 (by tag: the index digest is signed).
    let r = run(command(&host, d)
        .args(["sign", &format!("{h}/pi/sensor:1.0")])
        .args(["--key", key_a.to_str().unwrap()])
        .env("COSIGN_PASSWORD", pw_a)
        .env("INSECURE_REGISTRY", &h));
    assert_code(&r, 0, "host sign");
    assert_eq!(r.stdout.trim(), format!("{h}/pi/sensor@{}", signed.digest));
    assert!(!r.all().contains(pw_a));

    let verify = |bin: &Path, image: &str, public: &Path| {
        run(command(bin, d)
            .args(["verify", image, "--key", public.to_str().unwrap()])
            .env("INSECURE_REGISTRY", image.split('/').next().unwrap()))
    };

    // aarch64 under qemu: the host's signature verifies, by tag and by digest.
    for image in [
        format!("{h}/pi/sensor:1.0"),
        format!("{h}/pi/sensor@{}", signed.digest),
    ] {
        let r = verify(&arm, &image, &pub_a);
        assert_code(&r, 0, &format!("aarch64 verify {image}"));
        let payloads: serde_json::Value = serde_json::from_str(r.stdout.trim())
            .unwrap_or_else(|e| panic!("verify stdout is not JSON ({e}):\n{}", r.stdout));
        assert_eq!(payloads.as_array().map(Vec::len), Some(1), "{}", r.stdout);
        assert_eq!(
            payloads[0]["critical"]["image"]["docker-manifest-digest"],
            signed.digest.as_str()
        );
        assert_eq!(
            payloads[0]["critical"]["identity"]["docker-reference"],
            format!("{h}/pi/sensor")
        );
    }

    // The wrong key: a signature exists but none verifies with it.
    let r = verify(&arm, &format!("{h}/pi/sensor:1.0"), &pub_b);
    assert_code(&r, 1, "aarch64 verify with the other key");
    assert!(r.cause().contains("none valid"), "{}", r.cause());
    assert!(r.stdout.trim().is_empty(), "{}", r.stdout);

    // An unsigned image.
    let r = verify(&arm, &format!("{h}/pi/sensor:2.0"), &pub_a);
    assert_code(&r, 1, "aarch64 verify of an unsigned image");
    assert!(
        r.cause().contains("has no signatures") && r.cause().contains(&unsigned.digest),
        "{}",
        r.cause()
    );

    // Nobody listens: the registry is unreachable.
    let port = free_port();
    let r = verify(&arm, &format!("127.0.0.1:{port}/pi/sensor:1.0"), &pub_a);
    assert_code(&r, 3, "aarch64 verify against an unreachable registry");
    assert!(
        r.cause().contains(&format!("127.0.0.1:{port}")),
        "{}",
        r.cause()
    );

    // The other way round: the aarch64 binary signs 2.0 with its own key and
    // the host verifies; key A still does not verify it.
    let r = run(command(&arm, d)
        .args(["sign", &format!("{h}/pi/sensor:2.0")])
        .args(["--key", key_b.to_str().unwrap()])
        .env("COSIGN_PASSWORD", pw_b)
        .env("INSECURE_REGISTRY", &h));
    assert_code(&r, 0, "aarch64 sign");
    assert!(!r.all().contains(pw_b));
    assert_code(
        &verify(&host, &format!("{h}/pi/sensor:2.0"), &pub_b),
        0,
        "host verify of the aarch64 signature",
    );
    assert_code(
        &verify(&host, &format!("{h}/pi/sensor:2.0"), &pub_a),
        1,
        "host verify of the aarch64 signature with the other key",
    );
}
