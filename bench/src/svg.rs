//! `--svg PATH`: the side-by-side throughput figures of a run as a
//! hand-written SVG chart (plain string building, no dependency).
//!
//! Two panels over the same groups (one per scenario × body size), one bar
//! per client in each group:
//!
//! - throughput relative to the best peer (the fastest client that is not
//!   puka: 1.0 is that client), linear, with min–max whiskers over the
//!   rounds and the median msgs/s written above each bar;
//! - client CPU per message in µs, on a log scale (the figures span three
//!   decades between 32 B and 64 KiB), the value above each bar.
//!
//! Colours are the Okabe–Ito palette (distinguishable with the common
//! colour-vision deficiencies); the legend also names the clients in order.

use std::fmt::Write as _;

/// One client's figures in one group (medians over the rounds).
#[derive(Debug, Clone)]
pub struct Bar {
    pub client: String,
    pub rate: f64,
    pub rate_min: f64,
    pub rate_max: f64,
    pub cpu_us: f64,
}

/// One scenario × size.
#[derive(Debug, Clone)]
pub struct Group {
    pub scenario: String,
    pub size: String,
    pub bars: Vec<Bar>,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    /// Legend order (and colour assignment).
    pub clients: Vec<String>,
    pub groups: Vec<Group>,
    /// Lines under the chart (date, commit, command).
    pub caption: Vec<String>,
}

/// Okabe–Ito colours: puka blue, puka-deferred sky blue, then orange,
/// bluish green, reddish purple, vermillion, yellow.
const PALETTE: [&str; 7] = [
    "#0072B2", "#56B4E9", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#F0E442",
];

fn is_puka(client: &str) -> bool {
    client.starts_with("puka")
}

pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            _ => o.push(c),
        }
    }
    o
}

fn fmt_rate(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn fmt_us(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn fmt_tick(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The rate every bar of a group is divided by: the best peer's median, or
/// the best of all when only puka ran.
fn reference(g: &Group) -> f64 {
    let best = |peers: bool| {
        g.bars
            .iter()
            .filter(|b| !peers || !is_puka(&b.client))
            .map(|b| b.rate)
            .filter(|r| r.is_finite() && *r > 0.0)
            .fold(0.0, f64::max)
    };
    let r = best(true);
    if r > 0.0 {
        r
    } else {
        best(false).max(f64::MIN_POSITIVE)
    }
}

const BAR_W: f64 = 22.0;
const GROUP_GAP: f64 = 30.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 72.0;
const PANEL_H: f64 = 250.0;

pub fn render(c: &Chart) -> String {
    let nclients = c.clients.len().max(1);
    let group_w = nclients as f64 * BAR_W + GROUP_GAP;
    let plot_w = (group_w * c.groups.len().max(1) as f64).max(900.0);
    let width = LEFT + plot_w + RIGHT;
    let colour = |client: &str| -> &str {
        let i = c.clients.iter().position(|x| x == client).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let gx = |gi: usize| LEFT + gi as f64 * group_w + GROUP_GAP / 2.0;
    let bx = |gi: usize, client: &str| {
        let i = c.clients.iter().position(|x| x == client).unwrap_or(0);
        gx(gi) + i as f64 * BAR_W
    };

    // Vertical layout.
    let title_y = 24.0;
    let legend_y = 48.0;
    let p1_title_y = 82.0;
    let p1_top = 114.0;
    let p1_bottom = p1_top + PANEL_H;
    let p2_title_y = p1_bottom + 62.0;
    let p2_top = p2_title_y + 32.0;
    let p2_bottom = p2_top + PANEL_H;
    let caption_y = p2_bottom + 62.0;
    let lines: Vec<String> = c
        .caption
        .iter()
        .flat_map(|l| wrap(l, ((width - LEFT - 8.0) / 6.2) as usize))
        .collect();
    let height = caption_y + 16.0 * lines.len() as f64 + 8.0;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif" font-size="12">
<title>{}</title>
<style>
.grid {{ stroke: #d0d0d0; stroke-width: 1; }}
.axis {{ stroke: #333; stroke-width: 1; }}
.ref {{ stroke: #333; stroke-width: 1.2; stroke-dasharray: 5 3; }}
.whisker {{ stroke: #222; stroke-width: 1; }}
.val {{ font-size: 9px; fill: #222; }}
.tick {{ font-size: 11px; fill: #333; }}
.group {{ font-size: 11px; fill: #222; }}
.ptitle {{ font-size: 13px; font-weight: bold; fill: #222; }}
.psub {{ font-size: 11px; fill: #444; }}
.cap {{ font-size: 11px; fill: #444; }}
</style>
<rect x="0" y="0" width="{width:.0}" height="{height:.0}" fill="white"/>"#,
        escape(&c.title)
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{title_y}" font-size="16" font-weight="bold" text-anchor="middle">{}</text>"#,
        width / 2.0,
        escape(&c.title)
    );

    // Legend, centred.
    let item_w: Vec<f64> = c
        .clients
        .iter()
        .map(|n| 22.0 + 7.0 * n.chars().count() as f64 + 18.0)
        .collect();
    let mut lx = (width - item_w.iter().sum::<f64>()) / 2.0;
    let _ = writeln!(s, r#"<g class="legend">"#);
    for (n, w) in c.clients.iter().zip(&item_w) {
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="14" height="14" fill="{}" stroke="rgb(34,34,34)" stroke-width="0.5"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            legend_y - 11.0,
            colour(n),
            lx + 20.0,
            legend_y,
            escape(n)
        );
        lx += w;
    }
    let _ = writeln!(s, "</g>");

    // Group labels under a panel.
    let group_labels = |s: &mut String, bottom: f64| {
        for (gi, g) in c.groups.iter().enumerate() {
            let cx = gx(gi) + nclients as f64 * BAR_W / 2.0;
            let _ = writeln!(
                s,
                r#"<text class="group" x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text><text class="group" x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                bottom + 16.0,
                escape(&g.scenario),
                bottom + 30.0,
                escape(&g.size)
            );
        }
    };
    let y_label = |s: &mut String, top: f64, bottom: f64, text: &str| {
        let cy = (top + bottom) / 2.0;
        let _ = writeln!(
            s,
            r#"<text class="tick" x="16" y="{cy:.1}" text-anchor="middle" transform="rotate(-90 16 {cy:.1})">{}</text>"#,
            escape(text)
        );
    };

    // Panel 1: throughput relative to the best peer.
    let ymax_raw = c
        .groups
        .iter()
        .flat_map(|g| {
            let r = reference(g);
            g.bars
                .iter()
                .map(move |b| b.rate_max.max(b.rate) / r)
                .filter(|v| v.is_finite())
        })
        .fold(1.0, f64::max);
    let step = if ymax_raw > 3.0 { 0.5 } else { 0.25 };
    let ymax = ((ymax_raw * 1.08) / step).ceil() * step;
    let y1 = |v: f64| p1_bottom - (v / ymax).clamp(0.0, 1.0) * PANEL_H;
    let _ = writeln!(
        s,
        r#"<text class="ptitle" x="{LEFT}" y="{p1_title_y}">Throughput relative to the best peer (1.0× = the fastest client that is not puka; higher is better)</text>
<text class="psub" x="{LEFT}" y="{:.1}">bars: median msgs/s of the rounds ÷ the best peer's; whiskers: min–max over the rounds; labels: median msgs/s</text>"#,
        p1_title_y + 16.0
    );
    let _ = writeln!(s, r#"<g class="panel" id="throughput">"#);
    let mut t = 0.0;
    while t <= ymax + 1e-9 {
        let y = y1(t);
        let _ = writeln!(
            s,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}×</text>"#,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0,
            fmt_tick(t)
        );
        t += step;
    }
    y_label(&mut s, p1_top, p1_bottom, "msgs/s ÷ best peer's msgs/s");
    for (gi, g) in c.groups.iter().enumerate() {
        let r = reference(g);
        for b in &g.bars {
            if !(b.rate.is_finite() && b.rate > 0.0) {
                continue;
            }
            let x = bx(gi, &b.client);
            let v = b.rate / r;
            let y = y1(v);
            let _ = writeln!(
                s,
                r#"<rect class="bar" data-client="{}" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {} {}: {:.0} msgs/s [{:.0}–{:.0}], {:.2}× the best peer</title></rect>"#,
                escape(&b.client),
                x + 1.0,
                BAR_W - 2.0,
                p1_bottom - y,
                colour(&b.client),
                escape(&b.client),
                escape(&g.scenario),
                escape(&g.size),
                b.rate,
                b.rate_min,
                b.rate_max,
                v
            );
            let cx = x + BAR_W / 2.0;
            let (lo, hi) = (y1(b.rate_min / r), y1(b.rate_max / r));
            if b.rate_min.is_finite() && b.rate_max.is_finite() && hi < lo {
                let _ = writeln!(
                    s,
                    r#"<path class="whisker" d="M{:.1} {hi:.1}H{:.1}M{cx:.1} {hi:.1}V{lo:.1}M{:.1} {lo:.1}H{:.1}"/>"#,
                    cx - 4.0,
                    cx + 4.0,
                    cx - 4.0,
                    cx + 4.0
                );
            }
            let ly = hi.min(y) - 4.0;
            let _ = writeln!(
                s,
                r#"<text class="val" x="{cx:.1}" y="{ly:.1}" transform="rotate(-90 {cx:.1} {ly:.1})">{}</text>"#,
                fmt_rate(b.rate)
            );
        }
    }
    let _ = writeln!(
        s,
        r#"<line class="ref" x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}"/><text class="tick" x="{2:.1}" y="{3:.1}">best peer</text>"#,
        y1(1.0),
        LEFT + plot_w,
        LEFT + plot_w + 4.0,
        y1(1.0) + 4.0
    );
    let _ = writeln!(
        s,
        r#"<line class="axis" x1="{LEFT}" y1="{p1_top}" x2="{LEFT}" y2="{p1_bottom}"/><line class="axis" x1="{LEFT}" y1="{p1_bottom}" x2="{:.1}" y2="{p1_bottom}"/>"#,
        LEFT + plot_w
    );
    group_labels(&mut s, p1_bottom);
    let _ = writeln!(s, "</g>");

    // Panel 2: CPU µs per message, log scale.
    let cpus: Vec<f64> = c
        .groups
        .iter()
        .flat_map(|g| g.bars.iter().map(|b| b.cpu_us))
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let min_cpu = cpus.iter().copied().fold(f64::INFINITY, f64::min);
    let lo_dec = min_cpu.log10().floor();
    let hi_dec = cpus.iter().copied().fold(0.0, f64::max).log10().ceil();
    let (lo_dec, hi_dec) = if lo_dec.is_finite() && hi_dec.is_finite() && hi_dec > lo_dec {
        (lo_dec, hi_dec)
    } else {
        (-1.0, 2.0)
    };
    // The axis starts at the 1-2-5 value at or below the smallest figure.
    let lo_val = [5.0, 2.0, 1.0]
        .map(|m| m * 10f64.powf(lo_dec))
        .into_iter()
        .find(|v| *v <= min_cpu)
        .unwrap_or(10f64.powf(lo_dec));
    let lo_log = lo_val.log10();
    // Room above the tallest bar for its label.
    let top_log = hi_dec + 0.25;
    let y2 = |v: f64| {
        let l = v.max(lo_val).log10();
        p2_bottom - ((l - lo_log) / (top_log - lo_log)).clamp(0.0, 1.0) * PANEL_H
    };
    let _ = writeln!(
        s,
        r#"<text class="ptitle" x="{LEFT}" y="{p2_title_y:.1}">Client CPU per message, µs (log scale; lower is better)</text>
<text class="psub" x="{LEFT}" y="{:.1}">median over the rounds of user + system CPU (getrusage, every thread of the client's process) ÷ messages; labels: µs</text>"#,
        p2_title_y + 16.0
    );
    let _ = writeln!(s, r#"<g class="panel" id="cpu">"#);
    let mut d = lo_dec;
    while d <= hi_dec + 1e-9 {
        let base = 10f64.powf(d);
        let y = y2(base);
        if base >= lo_val * 0.999 {
            let _ = writeln!(
                s,
                r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT + plot_w,
                LEFT - 6.0,
                y + 4.0,
                fmt_tick(base)
            );
        }
        if d < hi_dec {
            for m in [2.0, 5.0] {
                if base * m < lo_val * 0.999 {
                    continue;
                }
                let y = y2(base * m);
                let _ = writeln!(
                    s,
                    r#"<line class="grid" stroke-dasharray="2 3" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end" fill="rgb(119,119,119)">{}</text>"#,
                    LEFT + plot_w,
                    LEFT - 6.0,
                    y + 4.0,
                    fmt_tick(base * m)
                );
            }
        }
        d += 1.0;
    }
    y_label(&mut s, p2_top, p2_bottom, "CPU µs per message (log)");
    for (gi, g) in c.groups.iter().enumerate() {
        for b in &g.bars {
            if !(b.cpu_us.is_finite() && b.cpu_us > 0.0) {
                continue;
            }
            let x = bx(gi, &b.client);
            let y = y2(b.cpu_us);
            let _ = writeln!(
                s,
                r#"<rect class="cpubar" data-client="{}" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {} {}: {:.2} µs CPU per message</title></rect>"#,
                escape(&b.client),
                x + 1.0,
                BAR_W - 2.0,
                p2_bottom - y,
                colour(&b.client),
                escape(&b.client),
                escape(&g.scenario),
                escape(&g.size),
                b.cpu_us
            );
            let cx = x + BAR_W / 2.0;
            let ly = y - 4.0;
            let _ = writeln!(
                s,
                r#"<text class="val" x="{cx:.1}" y="{ly:.1}" transform="rotate(-90 {cx:.1} {ly:.1})">{}</text>"#,
                fmt_us(b.cpu_us)
            );
        }
    }
    let _ = writeln!(
        s,
        r#"<line class="axis" x1="{LEFT}" y1="{p2_top:.1}" x2="{LEFT}" y2="{p2_bottom:.1}"/><line class="axis" x1="{LEFT}" y1="{p2_bottom:.1}" x2="{:.1}" y2="{p2_bottom:.1}"/>"#,
        LEFT + plot_w
    );
    group_labels(&mut s, p2_bottom);
    let _ = writeln!(s, "</g>");

    for (i, line) in lines.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text class="cap" x="{LEFT}" y="{:.1}">{}</text>"#,
            caption_y + 16.0 * i as f64,
            escape(line)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Splits a caption line at spaces into lines of at most `max` characters
/// (a longer word stays whole); continuations are indented.
fn wrap(line: &str, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut fresh = true;
    for w in line.split(' ') {
        if !fresh && cur.chars().count() + 1 + w.chars().count() > max {
            out.push(std::mem::replace(&mut cur, "    ".into()));
            fresh = true;
        }
        if !fresh {
            cur.push(' ');
        }
        cur.push_str(w);
        fresh = false;
    }
    out.push(cur);
    out
}

/// The current UTC time as `YYYY-MM-DD HH:MM UTC`.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60
    )
}

/// puka's commit (the repository holding bench/), with a note when `src/`
/// has uncommitted changes: the bench builds puka from the working tree.
pub fn commit() -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(h) => {
            let dirty = git(&["status", "--porcelain", "--", "src", "Cargo.toml"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{h} (with uncommitted changes in src/)")
            } else {
                h
            }
        }
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small well-formedness check: every tag closes in order, attributes
    /// are quoted, `&` only starts an entity, and no text holds a raw `<`.
    fn well_formed(xml: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = xml;
        let mut roots = 0;
        let check_text = |t: &str| -> Result<(), String> {
            let mut it = t.split('&').skip(1);
            for piece in &mut it {
                let ent = piece.split(';').next().unwrap_or("");
                if !piece.contains(';')
                    || !matches!(ent, "amp" | "lt" | "gt" | "quot" | "apos")
                        && !ent.starts_with('#')
                {
                    return Err(format!(
                        "bad entity near &{}",
                        &piece[..piece.len().min(10)]
                    ));
                }
            }
            Ok(())
        };
        while let Some(i) = rest.find('<') {
            check_text(&rest[..i])?;
            if stack.is_empty() && !rest[..i].trim().is_empty() {
                return Err("text outside the root".into());
            }
            rest = &rest[i..];
            if rest.starts_with("<?") {
                let e = rest.find("?>").ok_or("unclosed <?")?;
                rest = &rest[e + 2..];
                continue;
            }
            if rest.starts_with("<!--") {
                let e = rest.find("-->").ok_or("unclosed comment")?;
                rest = &rest[e + 3..];
                continue;
            }
            // Find the tag's end outside quoted attribute values.
            let mut in_q = false;
            let mut end = None;
            for (j, ch) in rest.char_indices().skip(1) {
                match ch {
                    '"' => in_q = !in_q,
                    '<' if !in_q => return Err("< inside a tag".into()),
                    '>' if !in_q => {
                        end = Some(j);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unclosed tag")?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("stray </{name}>"))?;
                if open != name.trim() {
                    return Err(format!("</{name}> closes <{open}>"));
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name = body
                .split_whitespace()
                .next()
                .ok_or("empty tag")?
                .to_string();
            // Attributes: name="value" pairs.
            let mut attrs = body[name.len()..].trim();
            while !attrs.is_empty() {
                let eq = attrs
                    .find('=')
                    .ok_or(format!("attribute without = in <{name}>"))?;
                let after = attrs[eq + 1..].trim_start();
                if !after.starts_with('"') {
                    return Err(format!("unquoted attribute in <{name}>"));
                }
                let close = after[1..].find('"').ok_or("unclosed quote")?;
                check_text(&after[1..1 + close])?;
                attrs = after[close + 2..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name);
            }
        }
        check_text(rest)?;
        if !stack.is_empty() {
            return Err(format!("unclosed <{}>", stack.join("> <")));
        }
        if !rest.trim().is_empty() {
            return Err("text after the root".into());
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(())
    }

    fn chart() -> Chart {
        let clients: Vec<String> = ["puka", "puka-deferred", "lapin", "amiquip", "amqprs"]
            .map(String::from)
            .to_vec();
        let mut groups = Vec::new();
        for (scenario, size, base) in [
            ("publish", "32 B", 90_000.0),
            ("publish", "64 KiB", 15_000.0),
            ("consume_ack", "32 B", 60_000.0),
        ] {
            let bars = clients
                .iter()
                .enumerate()
                .map(|(i, c)| Bar {
                    client: c.clone(),
                    rate: base * (1.0 - 0.1 * i as f64),
                    rate_min: base * (0.9 - 0.1 * i as f64),
                    rate_max: base * (1.2 - 0.1 * i as f64),
                    cpu_us: 0.13 * (i + 1) as f64 * base.recip() * 1e5,
                })
                .collect();
            groups.push(Group {
                scenario: scenario.into(),
                size: size.into(),
                bars,
            });
        }
        // A group where one client failed every round.
        groups[2].bars.remove(3);
        Chart {
            title: "puka & peers <side by side>".into(),
            clients,
            groups,
            caption: vec![
                "2026-12-04 12:00 UTC, commit abc1234".into(),
                "cargo run -- --url \"amqp://g:g@h/%2f\" --client a&b".into(),
            ],
        }
    }

    #[test]
    fn svg_is_well_formed_with_one_bar_per_result() {
        let c = chart();
        let svg = render(&c);
        well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert!(svg.starts_with("<?xml"));
        let results: usize = c.groups.iter().map(|g| g.bars.len()).sum();
        assert_eq!(results, 14);
        assert_eq!(svg.matches(r#"<rect class="bar""#).count(), results);
        assert_eq!(svg.matches(r#"<rect class="cpubar""#).count(), results);
        for client in &c.clients {
            // Legend entry, and its bars in both panels.
            assert!(svg.contains(&format!(">{}</text>", escape(client))));
        }
        assert_eq!(
            svg.matches(r#"data-client="amiquip""#).count(),
            2 * 2,
            "amiquip has two groups of results"
        );
        assert!(svg.contains("commit abc1234"));
        assert!(svg.contains("a&amp;b"));
    }

    #[test]
    fn the_checker_rejects_broken_xml() {
        assert!(well_formed("<svg><g></svg>").is_err());
        assert!(well_formed("<svg a=b/>").is_err());
        assert!(well_formed("<svg>a & b</svg>").is_err());
        assert!(well_formed("<svg/><svg/>").is_err());
        assert!(well_formed(r#"<?xml version="1.0"?><svg x="1"><t>&amp;</t></svg>"#).is_ok());
    }

    #[test]
    fn long_caption_lines_wrap() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "    ccc"]);
        assert_eq!(wrap("short", 40), vec!["short"]);
        let mut c = chart();
        c.caption = vec![format!("cargo run -- {}", "--client puka ".repeat(100))];
        let svg = render(&c);
        well_formed(&svg).unwrap();
        assert!(svg.matches(r#"<text class="cap""#).count() > 1);
    }

    #[test]
    fn dates() {
        let d = now_utc();
        assert_eq!(d.len(), "2026-12-04 12:00 UTC".len(), "{d}");
        assert!(d.starts_with("20"), "{d}");
    }
}
