//! sensor-app: serves a Raspberry Pi's temperature over HTTP (std only).
//!
//! GET /temperature  -> {"celsius":48.312,"source":"/sys/class/thermal/thermal_zone0/temp"}
//! GET /healthz      -> ok
//!
//! Environment: LISTEN (default 0.0.0.0:8080), THERMAL_ZONE (default
//! /sys/class/thermal/thermal_zone0/temp), SIMULATE=1 to simulate a sensor
//! (also used when the thermal zone cannot be read).

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smallvec::{SmallVec, smallvec};

/// Where a reading came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Sensor(PathBuf),
    Simulated,
}

/// Reads millidegrees Celsius from a sysfs thermal zone file.
pub fn read_thermal_zone(path: &Path) -> Result<f64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let milli: i64 = text
        .trim()
        .parse()
        .map_err(|e| format!("{}: not a number ({e})", path.display()))?;
    Ok(milli as f64 / 1000.0)
}

/// A plausible SoC temperature that drifts with time: 45 °C ± 5.
pub fn simulated(now_secs: u64) -> f64 {
    let phase = (now_secs % 600) as f64 / 600.0 * std::f64::consts::TAU;
    ((45.0 + 5.0 * phase.sin()) * 1000.0).round() / 1000.0
}

/// Configuration from the environment.
pub struct Config {
    pub listen: String,
    pub zone: PathBuf,
    pub simulate: bool,
}

impl Config {
    pub fn from_env() -> Self {
        Config {
            listen: std::env::var("LISTEN").unwrap_or_else(|_| "0.0.0.0:8080".into()),
            zone: std::env::var_os("THERMAL_ZONE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/sys/class/thermal/thermal_zone0/temp")),
            simulate: matches!(
                std::env::var("SIMULATE").as_deref(),
                Ok("1" | "true" | "yes")
            ),
        }
    }

    /// One reading: the sensor, or the simulation when asked or when the sensor is unreadable.
    pub fn reading(&self) -> (f64, Source) {
        if !self.simulate
            && let Ok(c) = read_thermal_zone(&self.zone)
        {
            return (c, Source::Sensor(self.zone.clone()));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        (simulated(now), Source::Simulated)
    }
}

fn json_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| -> SmallVec<[char; 6]> {
            match c {
                '"' => smallvec!['\\', '"'],
                '\\' => smallvec!['\\', '\\'],
                c if (c as u32) < 0x20 => format!("\\u{:04x}", c as u32).chars().collect(),
                c => smallvec![c],
            }
        })
        .collect()
}

/// The response (status line, content type, body) for a request line.
pub fn respond(cfg: &Config, request_line: &str) -> (&'static str, &'static str, String) {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path) {
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".into()),
        ("GET", "/temperature") => {
            let (c, source) = cfg.reading();
            let source = match source {
                Source::Sensor(p) => p.display().to_string(),
                Source::Simulated => "simulated".into(),
            };
            (
                "200 OK",
                "application/json",
                format!(
                    "{{\"celsius\":{c},\"source\":\"{}\"}}\n",
                    json_escape(&source)
                ),
            )
        }
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /temperature or /healthz\n".into(),
        ),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
    }
}

fn handle(cfg: &Config, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let (status, ctype, body) = respond(cfg, &request_line);
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn main() {
    let cfg = Config::from_env();
    let listener = match TcpListener::bind(&cfg.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sensor-app: cannot listen on {}: {e}", cfg.listen);
            std::process::exit(2);
        }
    };
    let (_, source) = cfg.reading();
    eprintln!("sensor-app: listening on {} ({source:?})", cfg.listen);
    for stream in listener.incoming().flatten() {
        if let Err(e) = handle(&cfg, stream) {
            eprintln!("sensor-app: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(zone: PathBuf, simulate: bool) -> Config {
        Config {
            listen: "127.0.0.1:0".into(),
            zone,
            simulate,
        }
    }

    #[test]
    fn reads_millidegrees_from_the_thermal_zone() {
        let dir = std::env::temp_dir().join(format!("sensor-app-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let zone = dir.join("temp");
        std::fs::write(&zone, "48312\n").unwrap();
        let c = cfg(zone.clone(), false);
        assert_eq!(c.reading(), (48.312, Source::Sensor(zone.clone())));
        let (status, ctype, body) = respond(&c, "GET /temperature HTTP/1.1\r\n");
        assert_eq!((status, ctype), ("200 OK", "application/json"));
        assert_eq!(
            body,
            format!("{{\"celsius\":48.312,\"source\":\"{}\"}}\n", zone.display())
        );
        std::fs::write(&zone, "garbage").unwrap();
        assert!(read_thermal_zone(&zone).is_err());
        assert_eq!(
            c.reading().1,
            Source::Simulated,
            "an unreadable sensor falls back to the simulation"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn simulation_stays_in_a_plausible_range() {
        for t in (0..1200).step_by(7) {
            let c = simulated(t);
            assert!((40.0..=50.0).contains(&c), "{c} at {t}");
        }
        assert_ne!(simulated(0), simulated(150));
    }

    #[test]
    fn routes() {
        let c = cfg(PathBuf::from("/nonexistent"), true);
        assert_eq!(respond(&c, "GET /healthz HTTP/1.1").2, "ok\n");
        assert!(
            respond(&c, "GET /temperature HTTP/1.1")
                .2
                .contains("\"source\":\"simulated\"")
        );
        assert_eq!(respond(&c, "GET /nope HTTP/1.1").0, "404 Not Found");
        assert_eq!(
            respond(&c, "POST /temperature HTTP/1.1").0,
            "405 Method Not Allowed"
        );
    }

    #[test]
    fn serves_over_tcp() {
        let c = cfg(PathBuf::from("/nonexistent"), true);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            handle(&c, s).unwrap();
        });
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        server.join().unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nok\n"), "{out}");
    }
}
