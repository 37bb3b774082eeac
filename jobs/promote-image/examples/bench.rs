//! Benchmark: promote-image beside `skopeo copy --all` in the same run.
//! Started by bench/promote-image/run.sh (see RESULTS.md there).
//!
//! Image: two platforms (linux/arm64, linux/amd64), 5 layers each, about
//! 200 MB of blobs in all. Cases, each on fresh registries so no tool
//! benefits from another's uploads:
//! 1. between two registries;
//! 2. between two repositories of one registry;
//! 3. the same promotions repeated (already complete at DST).
//!
//! Wall time is measured on direct connections (median of `--runs`);
//! requests and request-body bytes are counted by a pass-through harness
//! gateway in a separate run of each tool, so both tools are counted the
//! same way.

use std::process::Command;
use std::time::{Duration, Instant};

use harness::registry::{
    Gateway, GatewayOptions, ImageSpec, TestImage, TestRegistry, build_layout, push_layout,
};

const MB: usize = 1_000_000;

struct Args {
    binary: String,
    runs: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        binary: String::new(),
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--binary" => a.binary = it.next().expect("--binary PATH"),
            "--runs" => a.runs = it.next().expect("--runs N").parse().expect("number"),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        !a.binary.is_empty(),
        "--binary PATH of the release promote-image is required"
    );
    a
}

#[derive(Clone, Copy)]
enum Tool {
    Promote,
    Skopeo,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Promote => "promote-image",
            Tool::Skopeo => "skopeo copy --all",
        }
    }
}

static PEAK: std::sync::Mutex<f64> = std::sync::Mutex::new(0.0);

fn run(tool: Tool, binary: &str, src: &str, dst: &str, insecure: &[String]) -> Duration {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = match tool {
        Tool::Promote => {
            let mut c = Command::new(binary);
            // skopeo copies no cosign signatures or referrers: like for like
            // unless BENCH_WITH_SIGNATURES=true (then the extra probes count).
            let with = std::env::var("BENCH_WITH_SIGNATURES").unwrap_or_else(|_| "false".into());
            c.args([src, dst, "--insecure-registry", &insecure.join(",")])
                .arg(format!("--with-signatures={with}"))
                .env("PROMOTE_DOTENV", home.path().join("promote.env"))
                .env("DOCKER_CONFIG", home.path());
            c
        }
        Tool::Skopeo => {
            let mut c = Command::new("skopeo");
            c.args([
                "copy",
                "--all",
                "--preserve-digests",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                &format!("docker://{src}"),
                &format!("docker://{dst}"),
            ]);
            c
        }
    };
    let t = Instant::now();
    let out = cmd.output().expect("start tool");
    let elapsed = t.elapsed();
    assert!(
        out.status.success(),
        "{} {src} -> {dst} failed: {}",
        tool.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    // promote-image's summary: "peak memory 16.3 MB".
    let err = String::from_utf8_lossy(&out.stderr);
    if let Some(mb) = err
        .split("peak memory ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
    {
        let mut p = PEAK.lock().unwrap();
        *p = p.max(mb);
    }
    elapsed
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Row {
    case: String,
    tool: Tool,
    wall: Duration,
    requests: usize,
    bytes_in: u64,
}

fn main() {
    let args = parse_args();
    let layout = tempfile::tempdir().unwrap();
    let spec = ImageSpec {
        platforms: vec!["linux/arm64".into(), "linux/amd64".into()],
        layer_sizes: vec![40 * MB, 30 * MB, 20 * MB, 8 * MB, 2 * MB],
        attestation: false,
        index: true,
        seed: 42,
    };
    let img = build_layout(layout.path(), "1.0", &spec);
    eprintln!(
        "image {}: {} manifests, {} blobs, {:.1} MB",
        img.digest,
        img.manifests.len(),
        img.blobs.len(),
        img.total_blob_bytes as f64 / 1e6
    );
    let mut rows = Vec::new();
    for tool in [Tool::Promote, Tool::Skopeo] {
        rows.extend(between_registries(&args, tool, layout.path(), &img));
        rows.extend(within_registry(&args, tool, layout.path(), &img));
    }
    print_table(&rows, &img);
}

/// A registry holding the image as staging/app:1.0. It is pushed through a
/// throw-away gateway so skopeo's blob-info cache (which the push fills)
/// does not learn the registry's own address: a CI job starts with an empty
/// cache, and so does each benchmark run.
fn seeded_registry(layout: &std::path::Path) -> TestRegistry {
    let r = TestRegistry::start();
    let g = Gateway::start(&r.host(), GatewayOptions::default());
    push_layout(
        layout,
        "1.0",
        &format!("{}/staging/app:1.0", g.host()),
        None,
    );
    r
}

fn between_registries(
    args: &Args,
    tool: Tool,
    layout: &std::path::Path,
    img: &TestImage,
) -> Vec<Row> {
    let src = seeded_registry(layout);
    let src_ref = format!("{}/staging/app:1.0", src.host());
    // Timed runs, each into a fresh destination registry.
    let mut times = Vec::new();
    for _ in 0..args.runs {
        let dst = TestRegistry::start();
        times.push(run(
            tool,
            &args.binary,
            &src_ref,
            &format!("{}/prod/app:1.0", dst.host()),
            &[src.host(), dst.host()],
        ));
    }
    // Counted run (through the gateway), then the repeat.
    let dst = TestRegistry::start();
    let gs = Gateway::start(&src.host(), GatewayOptions::default());
    let gd = Gateway::start(&dst.host(), GatewayOptions::default());
    let src_ref_gw = format!("{}/staging/app:1.0", gs.host());
    let dst_ref_gw = format!("{}/prod/app:1.0", gd.host());
    let hosts = [gs.host(), gd.host()];
    let _ = run(tool, &args.binary, &src_ref_gw, &dst_ref_gw, &hosts);
    let first = Row {
        case: "two registries".into(),
        tool,
        wall: median(times),
        requests: gs.requests().len() + gd.requests().len(),
        bytes_in: gs.bytes_in() + gd.bytes_in(),
    };
    gs.reset_counters();
    gd.reset_counters();
    let wall = run(tool, &args.binary, &src_ref_gw, &dst_ref_gw, &hosts);
    let again = Row {
        case: "two registries, repeated".into(),
        tool,
        wall,
        requests: gs.requests().len() + gd.requests().len(),
        bytes_in: gs.bytes_in() + gd.bytes_in(),
    };
    let _ = img;
    vec![first, again]
}

fn within_registry(args: &Args, tool: Tool, layout: &std::path::Path, img: &TestImage) -> Vec<Row> {
    let mut times = Vec::new();
    for _ in 0..args.runs {
        let reg = seeded_registry(layout);
        times.push(run(
            tool,
            &args.binary,
            &format!("{}/staging/app:1.0", reg.host()),
            &format!("{}/prod/app:1.0", reg.host()),
            &[reg.host()],
        ));
    }
    let reg = seeded_registry(layout);
    let g = Gateway::start(&reg.host(), GatewayOptions::default());
    let src_ref = format!("{}/staging/app:1.0", g.host());
    let dst_ref = format!("{}/prod/app:1.0", g.host());
    let _ = run(tool, &args.binary, &src_ref, &dst_ref, &[g.host()]);
    let first = Row {
        case: "one registry".into(),
        tool,
        wall: median(times),
        requests: g.requests().len(),
        bytes_in: g.bytes_in(),
    };
    g.reset_counters();
    let wall = run(tool, &args.binary, &src_ref, &dst_ref, &[g.host()]);
    let again = Row {
        case: "one registry, repeated".into(),
        tool,
        wall,
        requests: g.requests().len(),
        bytes_in: g.bytes_in(),
    };
    let _ = img;
    vec![first, again]
}

fn print_table(rows: &[Row], img: &TestImage) {
    println!(
        "image: 2 platforms x 5 layers, {:.1} MB of blobs, {} blobs, digest {}",
        img.total_blob_bytes as f64 / 1e6,
        img.blobs.len(),
        img.digest
    );
    println!(
        "{:<26} {:<18} {:>9} {:>9} {:>13}",
        "case", "tool", "wall s", "requests", "bytes sent"
    );
    for r in rows {
        println!(
            "{:<26} {:<18} {:>9.2} {:>9} {:>13}",
            r.case,
            r.tool.name(),
            r.wall.as_secs_f64(),
            r.requests,
            r.bytes_in
        );
    }
    println!();
    for case in [
        "two registries",
        "one registry",
        "two registries, repeated",
        "one registry, repeated",
    ] {
        let p = rows
            .iter()
            .find(|r| r.case == case && matches!(r.tool, Tool::Promote));
        let s = rows
            .iter()
            .find(|r| r.case == case && matches!(r.tool, Tool::Skopeo));
        if let (Some(p), Some(s)) = (p, s) {
            println!(
                "{case}: wall ratio promote/skopeo = {:.2}; requests {} vs {}; bytes {} vs {}",
                p.wall.as_secs_f64() / s.wall.as_secs_f64(),
                p.requests,
                s.requests,
                p.bytes_in,
                s.bytes_in
            );
        }
    }
    println!(
        "promote-image peak memory (VmHWM) over all runs: {:.1} MB",
        *PEAK.lock().unwrap()
    );
    if let Some(p) = rows
        .iter()
        .find(|r| r.case == "two registries, repeated" && matches!(r.tool, Tool::Promote))
    {
        println!(
            "promote-image repeated promotion: {:.1} requests per platform",
            p.requests as f64 / 2.0
        );
    }
}
