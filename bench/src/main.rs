//! puka's benchmarks: against RabbitMQ next to lapin, amiquip and amqprs,
//! against loopback servers (puka's client path alone, and the raw TCP
//! limit), and peak memory in child processes.
//!
//! ```text
//! cargo run --release --manifest-path bench/Cargo.toml -- [--quick] [--n 200000] [--rounds 3]
//!     [--client puka,puka-deferred,lapin,amiquip,amqprs] [--scenario publish,publish_confirm,consume_ack,
//!      consume_noack,get,rpc,loopback,memory] [--size 32|65536] [--url amqp://...]
//!     [--svg PATH]
//! ```
//!
//! See bench/README.md for what each figure measures.

mod c_amiquip;
mod c_amqprs;
mod c_lapin;
mod c_puka;
mod c_raw;
mod common;
mod failover;
mod loopback;
mod loopback_conns;
mod loopback_scale;
mod memory;
mod scale;
mod svg;

use common::*;
use puka::AckTiming;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lib {
    Puka,
    /// puka with `AckTiming::Deferred` (the consumer's acks may wait).
    PukaDeferred,
    Lapin,
    Amiquip,
    Amqprs,
    /// Hand-encoded frames over a blocking socket: the yardstick of `get`.
    Raw,
}

impl Lib {
    pub const ALL: [Lib; 6] = [
        Lib::Puka,
        Lib::PukaDeferred,
        Lib::Lapin,
        Lib::Amiquip,
        Lib::Amqprs,
        Lib::Raw,
    ];
    /// The clients run when `--client` is not given.
    pub const DEFAULT: [Lib; 4] = [Lib::Puka, Lib::Lapin, Lib::Amiquip, Lib::Amqprs];

    pub fn name(self) -> &'static str {
        match self {
            Lib::Puka => "puka",
            Lib::PukaDeferred => "puka-deferred",
            Lib::Lapin => "lapin",
            Lib::Amiquip => "amiquip",
            Lib::Amqprs => "amqprs",
            Lib::Raw => "raw",
        }
    }

    pub fn parse(s: &str) -> Option<Lib> {
        Lib::ALL.into_iter().find(|l| l.name() == s)
    }

    /// Whether this is puka (in either ack timing).
    pub fn is_puka(self) -> bool {
        matches!(self, Lib::Puka | Lib::PukaDeferred)
    }

    fn run(self, job: &Job) -> Res<Outcome> {
        match self {
            Lib::Puka => c_puka::run(job, AckTiming::Prompt),
            Lib::PukaDeferred => c_puka::run(job, AckTiming::Deferred),
            Lib::Lapin => c_lapin::run(job),
            Lib::Amiquip => c_amiquip::run(job),
            Lib::Amqprs => c_amqprs::run(job),
            Lib::Raw => c_raw::run(job),
        }
    }
}

struct Args {
    url: String,
    quick: bool,
    n: usize,
    rounds: usize,
    libs: Vec<Lib>,
    scenarios: Vec<String>,
    sizes: Vec<usize>,
    /// N of the scale scenarios (empty: each one's defaults).
    counts: Vec<usize>,
    /// Where to write the chart of the side-by-side throughput figures.
    svg: Option<String>,
}

const USAGE: &str = "\
Usage: cargo run --release --manifest-path bench/Cargo.toml -- [OPTIONS]

  --quick              small counts, one round (a smoke test, ~1 minute)
  --n N                messages per 32 B throughput run (default 200000;
                       64 KiB runs use N/20, get and rpc N/100 (at most 5000))
  --rounds R           rounds of the broker scenarios (default 3; --quick: 1)
  --client LIST        puka,lapin,amiquip,amqprs (default all four);
                       puka-deferred is puka with AckTiming::Deferred; raw
                       (get only) is hand-encoded frames on a blocking socket
  --scenario LIST      publish,publish_confirm,consume_ack,consume_noack,get,
                       rpc,loopback,memory (default all; loopback_consume,
                       loopback_publish or loopback_get for a third of
                       loopback)
  --size LIST          32,65536 (default both; broker and loopback scenarios)
  --counts LIST        N of the scale scenarios (default: connections
                       1,10,100,1000 (needs a broker allowed >1100 open
                       files); consumers 1,100,1000,10000; confirms
                       1000,100000,1000000)
  --svg PATH           after the run, write an SVG chart of the side-by-side
                       throughput figures (msgs/s relative to the best peer,
                       and client CPU per message) to PATH

Scale scenarios (issue 17; only when named): scale (all three),
scale_connections, scale_consumers, scale_confirms. Without a broker:
loopback_scale (all four), loopback_scale_connections (1,10,100,1000
connections, 1,000 deliveries/s trickled over them; PUKA_BENCH_TRICKLE_SECS,
default 5; variants on_event, on_read and raw (no client: the yardstick),
PUKA_BENCH_DRIVERS picks some), loopback_scale_consumers (1,100,1000,10000 consumers
acking 1M deliveries), loopback_scale_confirms (1000,100000,1000000 in
flight, confirmed in four orders), loopback_scale_acks (1000,100000,1000000
deliveries held, then acked in the same four orders); --counts and
--rounds apply.
Failover (issue 15; alone): --scenario failover [--kills 20] [--rate 200]
  [--outage 60] on the local 3-node cluster of scripts/cluster;
  --scenario failover_probe: the RabbitMQ 3.10 stale-leader nacks, alone.
  --url URL            broker (default $AMQP_URL or amqp://guest:guest@127.0.0.1:5672/%2f)
";

fn parse_args() -> Args {
    let mut a = Args {
        url: std::env::var("AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
        quick: false,
        n: 0,
        rounds: 0,
        libs: Lib::DEFAULT.to_vec(),
        scenarios: Vec::new(),
        sizes: vec![32, 65536],
        counts: Vec::new(),
        svg: None,
    };
    let mut it = std::env::args().skip(1);
    let list = |v: Option<String>| -> Vec<String> {
        v.unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--n" => {
                a.n = it
                    .next()
                    .and_then(|v| v.replace('_', "").parse().ok())
                    .unwrap_or(0)
            }
            "--rounds" => a.rounds = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--url" => a.url = it.next().unwrap_or_default(),
            "--client" => {
                a.libs = list(it.next())
                    .iter()
                    .map(|s| Lib::parse(s).unwrap_or_else(|| die(&format!("unknown client {s}"))))
                    .collect()
            }
            "--scenario" => a.scenarios = list(it.next()),
            "--svg" => {
                a.svg = Some(
                    it.next()
                        .filter(|p| !p.is_empty())
                        .unwrap_or_else(|| die("--svg needs a path")),
                )
            }
            "--counts" => {
                a.counts = list(it.next())
                    .iter()
                    .map(|s| {
                        s.replace('_', "")
                            .parse()
                            .unwrap_or_else(|_| die("bad --counts"))
                    })
                    .collect()
            }
            "--size" => {
                a.sizes = list(it.next())
                    .iter()
                    .map(|s| s.parse().unwrap_or_else(|_| die("bad --size")))
                    .collect()
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => die(&format!("unknown argument {other}")),
        }
    }
    if a.n == 0 {
        a.n = if a.quick { 20_000 } else { 200_000 };
    }
    if a.rounds == 0 {
        a.rounds = if a.quick { 1 } else { 3 };
    }
    a
}

fn die(msg: &str) -> ! {
    eprintln!("bench: {msg}\n\n{USAGE}");
    std::process::exit(2);
}

fn wants(args: &Args, name: &str) -> bool {
    args.scenarios.is_empty() || args.scenarios.iter().any(|s| s == name)
}

/// Messages per run for a scenario and body size.
fn count_for(args: &Args, s: Scenario, size: usize) -> usize {
    let base = if size > 1024 { args.n / 20 } else { args.n };
    if s.latency() {
        (args.n / 100).clamp(200, 5000) / if size > 1024 { 4 } else { 1 }
    } else {
        base.max(1)
    }
}

/// One figure of one run, as printed.
#[derive(Debug, Clone)]
struct Figure {
    scenario: String,
    client: String,
    n: usize,
    size: usize,
    secs: f64,
    cpu: f64,
    p50: f64,
    p99: f64,
}

impl Figure {
    fn msgs_per_s(&self) -> f64 {
        self.n as f64 / self.secs
    }
    fn mb_per_s(&self) -> f64 {
        (self.n * self.size) as f64 / self.secs / 1e6
    }
    fn cpu_us_per_msg(&self) -> f64 {
        self.cpu * 1e6 / self.n as f64
    }
    fn print(&self, round: usize) {
        let mut line = format!(
            "result scenario={} client={} size={} n={} round={} secs={:.4} msgs_per_s={:.0} \
             mb_per_s={:.1} cpu_s={:.4} cpu_us_per_msg={:.3}",
            self.scenario,
            self.client,
            self.size,
            self.n,
            round,
            self.secs,
            self.msgs_per_s(),
            self.mb_per_s(),
            self.cpu,
            self.cpu_us_per_msg(),
        );
        if !self.p50.is_nan() {
            line += &format!(" p50_us={:.1} p99_us={:.1}", self.p50, self.p99);
        }
        println!("{line}");
    }
}

fn broker_run(admin: &mut Admin, args: &Args, lib: Lib, s: Scenario, size: usize) -> Res<Figure> {
    let n = count_for(args, s, size);
    let queue = format!("puka-bench-{}", s.name());
    admin.fresh_queue(&queue, None)?;
    let prefill = match s {
        Scenario::Get => n + WARMUP,
        _ if s.prefilled() => n,
        _ => 0,
    };
    if prefill > 0 {
        admin.prefill(&queue, prefill, size)?;
    }
    let job = Job {
        url: args.url.clone(),
        scenario: s,
        queue: queue.clone(),
        n,
        size,
    };
    let out = lib.run(&job)?;
    if out.count != n {
        return Err(format!("counted {} messages, expected {n}", out.count));
    }
    match s {
        Scenario::Publish | Scenario::Confirm => {
            admin.await_count(&queue, n, Duration::from_secs(10))?;
        }
        _ => admin.await_count(&queue, 0, Duration::from_secs(10))?,
    }
    admin.delete(&queue)?;
    let mut lat = out.lat_us.clone();
    lat.sort_by(f64::total_cmp);
    Ok(Figure {
        scenario: s.name().into(),
        client: lib.name().into(),
        n,
        size,
        secs: out.secs,
        cpu: out.cpu,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
    })
}

type Key = (Scenario, usize);

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("__mem") {
        // A memory scenario in a fresh process (see memory.rs).
        std::process::exit(memory::child(&argv[2..]));
    }
    if argv.get(1).map(String::as_str) == Some("__scale") {
        // A scale figure in a fresh process (see scale.rs).
        std::process::exit(scale::child(&argv[2..]));
    }
    if argv
        .windows(2)
        .any(|w| w[0] == "--scenario" && (w[1] == "failover" || w[1] == "failover_probe"))
    {
        // The failover figures on the local 3-node cluster (failover.rs).
        std::process::exit(failover::main(&argv[1..]));
    }
    let args = parse_args();
    let started = Instant::now();
    // Taken before the run: what the caption of --svg names.
    let provenance = args.svg.as_ref().map(|_| (svg::now_utc(), svg::commit()));
    println!(
        "# puka bench: n={} rounds={} clients={} url host={} quick={}",
        args.n,
        args.rounds,
        args.libs
            .iter()
            .map(|l| l.name())
            .collect::<Vec<_>>()
            .join(","),
        url_parts(&args.url)
            .map(|p| format!("{}:{}", p.host, p.port))
            .unwrap_or_default(),
        args.quick
    );
    let mut results: BTreeMap<Key, BTreeMap<Lib, Vec<Figure>>> = BTreeMap::new();
    let mut failures = Vec::new();

    let broker_scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| wants(&args, s.name()))
        .collect();
    if !broker_scenarios.is_empty() {
        let mut admin = Admin::connect(&args.url).unwrap_or_else(|e| die(&e));
        for round in 1..=args.rounds {
            for &s in &broker_scenarios {
                for &size in &args.sizes {
                    // Alternate the clients, and rotate who goes first.
                    let k = args.libs.len();
                    for i in 0..k {
                        let lib = args.libs[(i + round - 1) % k];
                        match broker_run(&mut admin, &args, lib, s, size) {
                            Ok(f) => {
                                f.print(round);
                                results
                                    .entry((s, size))
                                    .or_default()
                                    .entry(lib)
                                    .or_default()
                                    .push(f);
                            }
                            Err(e) => {
                                let msg = format!(
                                    "{} {} size={size} round={round}: {e}",
                                    s.name(),
                                    lib.name()
                                );
                                println!("error {msg}");
                                failures.push(msg);
                                // A failed run may leave a broken admin connection.
                                admin = Admin::connect(&args.url).unwrap_or_else(|e| die(&e));
                            }
                        }
                    }
                }
            }
        }
    }

    let loop_dirs: Vec<&str> = ["consume", "publish", "get"]
        .into_iter()
        .filter(|d| wants(&args, "loopback") || wants(&args, &format!("loopback_{d}")))
        .collect();
    let loop_figs = if !loop_dirs.is_empty() && args.libs.contains(&Lib::Puka) {
        loopback::run_all(
            args.quick,
            args.n,
            args.rounds,
            &loop_dirs,
            &args.sizes,
            &mut failures,
        )
    } else {
        Vec::new()
    };

    let mem_figs = if wants(&args, "memory") {
        memory::run_all(&args.url, args.quick, &args.libs, &mut failures)
    } else {
        Vec::new()
    };

    // Scale figures only when named: they hold hundreds of the broker's
    // sockets and thousands of queues for a while.
    let scale_kinds = named_kinds(
        &args.scenarios,
        "scale",
        &["connections", "consumers", "confirms"],
    );
    let scale_figs = if scale_kinds.is_empty() {
        Vec::new()
    } else {
        scale::run_all(&args.url, &scale_kinds, &args.counts, &mut failures)
    };

    // The same scale questions against a scripted loopback server, which
    // batches alike whatever N is: only when named.
    let loop_scale_kinds = named_kinds(
        &args.scenarios,
        "loopback_scale",
        &["connections", "consumers", "confirms", "acks"],
    );
    let loop_scale_figs = if loop_scale_kinds.is_empty() {
        Vec::new()
    } else {
        loopback_scale::run_all(
            &loop_scale_kinds,
            &args.counts,
            args.rounds,
            args.quick,
            &mut failures,
        )
    };

    summary(&args, &results, &loop_figs, &mem_figs);
    if let (Some(path), Some((date, commit))) = (&args.svg, &provenance) {
        match write_svg(&args, &results, path, date, commit, started) {
            Ok(bars) => println!("# wrote {path} ({bars} bars per panel)"),
            Err(e) => {
                let msg = format!("--svg {path}: {e}");
                println!("error {msg}");
                failures.push(msg);
            }
        }
    }
    scale::summary(&scale_figs);
    loopback_scale::summary(&loop_scale_figs);
    println!("# total {:.0} s", started.elapsed().as_secs_f64());
    if !failures.is_empty() {
        println!("# {} FAILED runs:", failures.len());
        for f in &failures {
            println!("#   {f}");
        }
        std::process::exit(1);
    }
}

/// The chart of `--svg`: the throughput scenarios' medians, one group per
/// scenario × size, one bar per client.
fn write_svg(
    args: &Args,
    results: &BTreeMap<Key, BTreeMap<Lib, Vec<Figure>>>,
    path: &str,
    date: &str,
    commit: &str,
    started: Instant,
) -> Res<usize> {
    let libs: Vec<Lib> = Lib::ALL
        .into_iter()
        .filter(|l| args.libs.contains(l))
        .collect();
    let mut groups = Vec::new();
    for ((s, size), by_lib) in results {
        if s.latency() {
            continue;
        }
        let bars: Vec<svg::Bar> = libs
            .iter()
            .filter_map(|l| {
                let f = by_lib.get(l).filter(|f| !f.is_empty())?;
                let st = stat(f);
                Some(svg::Bar {
                    client: l.name().into(),
                    rate: st.rate,
                    rate_min: st.rate_min,
                    rate_max: st.rate_max,
                    cpu_us: st.cpu_us,
                })
            })
            .collect();
        let n = by_lib.values().flatten().next().map_or(0, |f| f.n);
        groups.push(svg::Group {
            scenario: s.name().into(),
            size: format!("{} · n={n}", size_name(*size)),
            bars,
        });
    }
    if groups.is_empty() {
        return Err(
            "no throughput figures to chart (publish, publish_confirm, consume_ack, consume_noack)"
                .into(),
        );
    }
    let bars = groups.iter().map(|g| g.bars.len()).sum();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let chart = svg::Chart {
        title: format!(
            "puka beside lapin, amiquip and amqprs on RabbitMQ (127.0.0.1), median of {} round(s)",
            args.rounds
        ),
        clients: libs.iter().map(|l| l.name().to_string()).collect(),
        groups,
        caption: vec![
            format!(
                "Measured {date}, puka commit {commit}, {:.0} s; {} cores; broker and clients on the same machine.",
                started.elapsed().as_secs_f64(),
                std::thread::available_parallelism().map_or(0, |n| n.get())
            ),
            format!(
                "cargo run --release --manifest-path bench/Cargo.toml -- {}",
                argv.join(" ")
            ),
            "Generated by the bench program (--svg); bench/README.md says what each scenario times and how each client is driven.".into(),
        ],
    };
    std::fs::write(path, svg::render(&chart)).map_err(|e| e.to_string())?;
    Ok(bars)
}

struct Stat {
    rate: f64,
    rate_min: f64,
    rate_max: f64,
    cpu_us: f64,
    p50: f64,
    p99: f64,
}

fn stat(figs: &[Figure]) -> Stat {
    let rates: Vec<f64> = figs.iter().map(Figure::msgs_per_s).collect();
    Stat {
        rate: median(&rates),
        rate_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
        rate_max: rates.iter().copied().fold(0.0, f64::max),
        cpu_us: median(&figs.iter().map(Figure::cpu_us_per_msg).collect::<Vec<_>>()),
        p50: median(&figs.iter().map(|f| f.p50).collect::<Vec<_>>()),
        p99: median(&figs.iter().map(|f| f.p99).collect::<Vec<_>>()),
    }
}

fn fmt_rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn size_name(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn summary(
    args: &Args,
    results: &BTreeMap<Key, BTreeMap<Lib, Vec<Figure>>>,
    loop_figs: &[loopback::LoopFigure],
    mem_figs: &[memory::MemFigure],
) {
    if !results.is_empty() {
        println!();
        println!(
            "## RabbitMQ 127.0.0.1, median of {} round(s) [min–max]: msgs/s, client CPU µs/msg \
             (getrusage RUSAGE_SELF: all threads of the process)",
            args.rounds
        );
        println!();
        let libs: Vec<Lib> = Lib::ALL
            .into_iter()
            .filter(|l| args.libs.contains(l))
            .collect();
        let mut head = "| scenario | size | n |".to_string();
        let mut sep = "| --- | --- | --- |".to_string();
        for l in &libs {
            head += &format!(" {} |", l.name());
            sep += " --- |";
        }
        println!("{head}");
        println!("{sep}");
        for ((s, size), by_lib) in results {
            let n = by_lib
                .values()
                .next()
                .and_then(|v| v.first())
                .map_or(0, |f| f.n);
            let mut row = format!("| {} | {} | {} |", s.name(), size_name(*size), n);
            for l in &libs {
                match by_lib.get(l) {
                    Some(f) if !f.is_empty() => {
                        let st = stat(f);
                        if s.latency() {
                            row += &format!(
                                " p50 {:.0} µs, p99 {:.0} µs ({}/s; {:.1} µs CPU) |",
                                st.p50,
                                st.p99,
                                fmt_rate(st.rate),
                                st.cpu_us
                            );
                        } else {
                            row += &format!(
                                " {} [{}–{}]; {:.2} µs CPU |",
                                fmt_rate(st.rate),
                                fmt_rate(st.rate_min),
                                fmt_rate(st.rate_max),
                                st.cpu_us
                            );
                        }
                    }
                    _ => row += " – |",
                }
            }
            println!("{row}");
        }
        // Ratios of each puka mode against the best peer.
        let pukas: Vec<Lib> = libs.iter().copied().filter(|l| l.is_puka()).collect();
        if !pukas.is_empty() && libs.iter().any(|l| !l.is_puka() && *l != Lib::Raw) {
            println!();
            println!("## puka against the best peer (medians)");
            println!();
            println!("| scenario | size | puka | best peer | ratio | target |");
            println!("| --- | --- | --- | --- | --- | --- |");
            for ((s, size), by_lib) in results {
                let peers: Vec<(Lib, Stat)> = by_lib
                    .iter()
                    .filter(|(l, f)| !l.is_puka() && **l != Lib::Raw && !f.is_empty())
                    .map(|(l, f)| (*l, stat(f)))
                    .collect();
                if peers.is_empty() {
                    continue;
                }
                for &p in &pukas {
                    let Some(pk) = by_lib.get(&p).filter(|f| !f.is_empty()).map(|f| stat(f)) else {
                        continue;
                    };
                    ratio_rows(*s, *size, p, &pk, &peers);
                }
            }
        }
    }
    loopback::summary(loop_figs);
    memory::summary(mem_figs);
}

/// The rows of the ratio table for one puka mode (`lib`) in one scenario
/// and size; a mode other than the default is named after the scenario.
fn ratio_rows(s: Scenario, size: usize, lib: Lib, pk: &Stat, peers: &[(Lib, Stat)]) {
    let sz = size_name(size);
    let name = if lib == Lib::Puka {
        s.name().to_string()
    } else {
        format!("{} ({})", s.name(), lib.name())
    };
    if s.latency() {
        for (label, get) in [
            ("p50", (|st: &Stat| st.p50) as fn(&Stat) -> f64),
            ("p99", |st: &Stat| st.p99),
        ] {
            let (bl, bv) = peers
                .iter()
                .map(|(l, st)| (*l, get(st)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let ratio = bv / get(pk);
            println!(
                "| {name} {label} latency | {sz} | {:.0} µs | {} {:.0} µs | {:.2}× faster | >1 {} |",
                get(pk),
                bl.name(),
                bv,
                ratio,
                if ratio > 1.0 { "met" } else { "MISSED" }
            );
        }
    } else {
        let (bl, bst) = peers
            .iter()
            .max_by(|a, b| a.1.rate.total_cmp(&b.1.rate))
            .unwrap();
        let ratio = pk.rate / bst.rate;
        println!(
            "| {name} throughput | {sz} | {} | {} {} | {:.2}× | ≥1.15 {} |",
            fmt_rate(pk.rate),
            bl.name(),
            fmt_rate(bst.rate),
            ratio,
            if ratio >= 1.15 { "met" } else { "MISSED" }
        );
        let (cl, cst) = peers
            .iter()
            .min_by(|a, b| a.1.cpu_us.total_cmp(&b.1.cpu_us))
            .unwrap();
        let cr = pk.cpu_us / cst.cpu_us;
        println!(
            "| {name} CPU/msg | {sz} | {:.2} µs | {} {:.2} µs | {:.2}× | ≤0.25 {} |",
            pk.cpu_us,
            cl.name(),
            cst.cpu_us,
            cr,
            if cr <= 0.25 { "met" } else { "MISSED" }
        );
    }
}

/// The kinds of a scenario family the command line names: all of them for
/// `family` itself, else each named as `family_kind`.
fn named_kinds(scenarios: &[String], family: &str, kinds: &[&'static str]) -> Vec<&'static str> {
    kinds
        .iter()
        .copied()
        .filter(|k| {
            scenarios
                .iter()
                .any(|s| s == family || *s == format!("{family}_{k}"))
        })
        .collect()
}
