//! Peak memory, each scenario in a fresh child process (the bench binary
//! re-executed with the hidden `__mem` subcommand), so one peak never
//! hides another. The child reports its own VmHWM (peak resident set) from
//! /proc/self/status, and its VmRSS after connecting (the baseline).
//!
//! - publish: 1,000,000 messages of 1 KiB with publisher confirms, as fast
//!   as the API allows, then wait until all are confirmed. The queue has
//!   `x-max-length` 100000 so the broker does not hold a gigabyte.
//! - consume: 20,000 prefilled messages of 64 KiB, manual ack per message,
//!   prefetch 1000.

use crate::common::*;
use crate::Lib;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct MemFigure {
    pub kind: String,
    pub client: String,
    pub n: usize,
    pub size: usize,
    pub peak_kib: u64,
    pub base_kib: u64,
    pub secs: f64,
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The child: `__mem KIND CLIENT QUEUE N SIZE URL`.
pub fn child(args: &[String]) -> i32 {
    let go = || -> Res<String> {
        let [kind, client, queue, n, size, url] = args else {
            return Err("usage: __mem KIND CLIENT QUEUE N SIZE URL".into());
        };
        let lib = Lib::parse(client).ctx("client")?;
        let scenario = match kind.as_str() {
            "publish" => Scenario::ConfirmStream,
            "consume" => Scenario::ConsumeAck,
            _ => return Err(format!("unknown kind {kind}")),
        };
        let job = Job {
            url: url.clone(),
            scenario,
            queue: queue.clone(),
            n: n.parse().ctx("n")?,
            size: size.parse().ctx("size")?,
        };
        let t = Instant::now();
        let out = lib.run(&job)?;
        if out.count != job.n {
            return Err(format!("counted {} of {}", out.count, job.n));
        }
        Ok(format!(
            "mem peak_kib={} base_kib={} secs={:.3}",
            status_kib("VmHWM:"),
            out.base_kib,
            t.elapsed().as_secs_f64()
        ))
    };
    match go() {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("mem child: {e}");
            1
        }
    }
}

/// The peak resident set so far (`VmHWM`).
pub fn peak_kib() -> u64 {
    status_kib("VmHWM:")
}

/// The resident set now, for the clients to record after connecting.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

fn spawn(
    kind: &str,
    lib: Lib,
    queue: &str,
    n: usize,
    size: usize,
    url: &str,
) -> Res<(u64, u64, f64)> {
    let exe = std::env::current_exe().ctx("current_exe")?;
    let out = Command::new(exe)
        .args([
            "__mem",
            kind,
            lib.name(),
            queue,
            &n.to_string(),
            &size.to_string(),
            url,
        ])
        .output()
        .ctx("spawn child")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "child failed ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("mem "))
        .ctx("child output")?;
    let field = |k: &str| -> Res<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .ctx(k)
    };
    Ok((
        field("peak_kib=")? as u64,
        field("base_kib=")? as u64,
        field("secs=")?,
    ))
}

pub fn run_all(url: &str, quick: bool, libs: &[Lib], failures: &mut Vec<String>) -> Vec<MemFigure> {
    let (pub_n, con_n) = if quick {
        (100_000, 2_000)
    } else {
        (1_000_000, 20_000)
    };
    let queue = "puka-bench-mem";
    let mut figs = Vec::new();
    let mut admin = match Admin::connect(url) {
        Ok(a) => a,
        Err(e) => {
            failures.push(format!("memory: {e}"));
            return figs;
        }
    };
    for (kind, n, size) in [("publish", pub_n, 1024usize), ("consume", con_n, 65536)] {
        for &lib in libs {
            let r = (|| -> Res<MemFigure> {
                if kind == "publish" {
                    admin.fresh_queue(queue, Some(100_000))?;
                } else {
                    admin.fresh_queue(queue, None)?;
                    admin.prefill(queue, n, size)?;
                }
                let (peak_kib, base_kib, secs) = spawn(kind, lib, queue, n, size, url)?;
                if kind == "consume" {
                    admin.await_count(queue, 0, Duration::from_secs(10))?;
                }
                admin.delete(queue)?;
                Ok(MemFigure {
                    kind: kind.into(),
                    client: lib.name().into(),
                    n,
                    size,
                    peak_kib,
                    base_kib,
                    secs,
                })
            })();
            match r {
                Ok(f) => {
                    println!(
                        "result scenario=memory_{} client={} size={} n={} peak_rss_kib={} \
                         base_rss_kib={} secs={:.3}",
                        f.kind, f.client, f.size, f.n, f.peak_kib, f.base_kib, f.secs
                    );
                    figs.push(f);
                }
                Err(e) => {
                    println!("error memory {kind} {}: {e}", lib.name());
                    failures.push(format!("memory {kind} {}: {e}", lib.name()));
                    if let Ok(a) = Admin::connect(url) {
                        admin = a;
                    }
                }
            }
        }
    }
    let _ = admin.delete(queue);
    figs
}

pub fn summary(figs: &[MemFigure]) {
    if figs.is_empty() {
        return;
    }
    println!();
    println!("## Peak RSS (VmHWM of a fresh child process per figure)");
    println!();
    println!(
        "| scenario | client | n × size | peak RSS | RSS after connect | secs | puka target |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for f in figs {
        let mib = f.peak_kib as f64 / 1024.0;
        let target = if f.client != "puka" {
            String::new()
        } else if f.kind == "publish" {
            format!("< 64 MiB {}", if mib < 64.0 { "met" } else { "MISSED" })
        } else {
            let limit = (1000 * f.size) as f64 / 1048576.0 + 32.0;
            format!(
                "< {limit:.1} MiB (prefetch×size + 32 MiB) {}",
                if mib < limit { "met" } else { "MISSED" }
            )
        };
        println!(
            "| memory_{} | {} | {} × {} | {:.1} MiB | {:.1} MiB | {:.1} | {target} |",
            f.kind,
            f.client,
            f.n,
            if f.size >= 1024 {
                format!("{} KiB", f.size / 1024)
            } else {
                format!("{} B", f.size)
            },
            mib,
            f.base_kib as f64 / 1024.0,
            f.secs
        );
    }
}
